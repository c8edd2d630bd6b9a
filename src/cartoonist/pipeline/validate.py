"""Cross-field checks of a composed config, before anything is built or computed.

Each check raises a `ConfigError` whose message names the key; the entry point prints it as one
line and exits with status 2. What a value's type and range are is the schemas' business
(`cartoonist.pipeline.schemas`); here are the rules that span several keys or groups.
"""

from __future__ import annotations

import math
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cartoonist.diffusion.high_density import check_threshold as hd_threshold
from cartoonist.diffusion.schedules import VP
from cartoonist.errors import ConfigError
from cartoonist.pipeline.schemas import unknown_keys
from cartoonist.pipeline.targets import check_targets, is_no_data, likelihood_kind, model_kind
from cartoonist.pipeline.typecheck import check_config

__all__ = ["validate", "check_threshold"]


def _positive_int(cfg, key: str) -> None:
    val = OmegaConf.select(cfg, key)
    if val is None:
        return
    if isinstance(val, bool) or not isinstance(val, int) or val < 1:
        raise ConfigError(f"{key} must be a positive integer, got {val!r}")


def check_threshold(schedule, thr, key: str, whose: str) -> None:
    """Algorithm 1's threshold in [λ_min, λ_max) of `schedule` (the sampler's own check)."""
    try:
        hd_threshold(schedule, thr, key)
    except ValueError as e:
        raise ConfigError(f"{e}: outside {whose}") from None


def validate(cfg: DictConfig, task: str) -> None:
    """Check a composed config before any computation; raise ConfigError naming the key."""
    check_targets(cfg)
    if unknown := unknown_keys(cfg):  # only `+key=` can add them: Hydra allows it by design
        raise ConfigError(f"{unknown[0]} is not a setting of its group (a typo, or a `+`?)")
    _check_run_dir(cfg)
    if task == "figure" and OmegaConf.is_missing(cfg, "figure_name"):
        raise ConfigError("figure_name is not set: choose a figure with experiment=<name>")
    check_config(cfg, task)  # every key: known, of its type, in its range (the schemas)
    lo, hi = -math.inf, math.inf
    if "noise" in cfg:
        lo, hi = (
            OmegaConf.select(cfg, "noise.lambda_min"),
            OmegaConf.select(cfg, "noise.lambda_max"),
        )
        for key, val in (("noise.lambda_min", lo), ("noise.lambda_max", hi)):
            if not isinstance(val, (int, float)) or not math.isfinite(val):
                raise ConfigError(f"{key} must be a finite number, got {val!r}")
        if not lo < hi:
            raise ConfigError(f"noise.lambda_min ({lo}) must be below noise.lambda_max ({hi})")
    if task == "figure" and OmegaConf.is_missing(cfg, "figure_name"):
        raise ConfigError("figure_name is not set: choose a figure with experiment=<name>")
    for key in (
        "sampler.steps",
        "likelihood.steps",
        "likelihood.n_lambda",
        "n_samples",
        "batch_size",
        "dataset.batch_size",
        "trainer.max_steps",
        "trainer.devices",
    ):
        if key == "trainer.max_steps" and OmegaConf.select(cfg, key) == -1:
            continue
        _positive_int(cfg, key)
    kind = model_kind(cfg)
    pretrained = kind == "pretrained"
    is_oracle = kind == "oracle"
    if pretrained and task == "train":
        raise ConfigError("a pretrained model (model=diffusers|edm) is not trained here")
    if pretrained:  # its own trained λ range applies (checked when it loads); noise is unused
        lo, hi = -math.inf, math.inf
    thr = OmegaConf.select(cfg, "sampler.lambda_threshold")
    if thr is not None and not pretrained and math.isfinite(lo) and math.isfinite(hi):
        check_threshold(VP(lo, hi), thr, "sampler.lambda_threshold", "the noise group's range")
    path = OmegaConf.select(cfg, "dataset.source.path")
    if path is not None and not Path(str(path)).expanduser().exists():
        raise ConfigError(f"dataset.source.path does not exist: {path}")
    if task == "train" and is_oracle:
        raise ConfigError("model=oracle is exact and has nothing to train: use model=mlp or unet")
    no_data = is_no_data(cfg)
    if no_data and (task == "train" or is_oracle):
        raise ConfigError("dataset=none has no data: choose a dataset (e.g. dataset=digits)")
    if no_data and OmegaConf.select(cfg, "source") == "dataset":
        raise ConfigError(
            "source=dataset needs data: dataset=none has none (e.g. dataset=image_folder "
            "dataset.source.path=<folder of PNGs>)"
        )
    if pretrained:
        _validate_pretrained(cfg)
    for key in ("sampler.logp_scheme", "sde_logp_scheme"):
        val = OmegaConf.select(cfg, key)
        if val is not None and val not in ("corrected", "euler"):
            raise ConfigError(f"{key} must be 'corrected' or 'euler', got {val!r}")
    source = OmegaConf.select(cfg, "source")
    if task == "evaluate" and source not in ("samples", "dataset"):
        raise ConfigError(f"source must be 'samples' or 'dataset', got {source!r}")
    lik = likelihood_kind(cfg)
    if task == "sample" and lik == "sde_tracking":
        raise ConfigError(
            "likelihood=sde_tracking cannot score samples afterwards: sampler=sde writes its "
            "Theorem 1 log p as estimator 'tracked' (use likelihood=pf_ode or elbo here)"
        )
    if lik == "sde_tracking" and OmegaConf.select(cfg, "source") != "samples":
        raise ConfigError("likelihood=sde_tracking needs source=samples (r_0 of SDE samples)")
    ckpt = OmegaConf.select(cfg, "ckpt_path")
    if task in ("sample", "evaluate"):
        if ckpt is None and not is_oracle and not pretrained:
            raise ConfigError("ckpt_path is required for a trained model (or use model=oracle)")
        if ckpt is not None and is_oracle:
            raise ConfigError(
                "ckpt_path loads a network trained by cartoonist.train, but model=oracle is the "
                "exact model: name the network (model=unet or model=mlp)"
            )
        if ckpt is not None and not Path(str(ckpt)).expanduser().is_file():
            raise ConfigError(f"ckpt_path does not exist: {ckpt}")
        if lik == "exact" and not is_oracle:
            raise ConfigError(
                "likelihood=exact needs model=oracle (a learned model has no exact "
                "log p: use likelihood=pf_ode)"
            )
    if task == "figure":
        _validate_figure_model(cfg, ckpt)


def _validate_figure_model(cfg: DictConfig, ckpt) -> None:
    """A figure's learned model: the checkpoint exists; a network of ours comes with one."""
    if ckpt is not None and not Path(str(ckpt)).expanduser().is_file():
        raise ConfigError(
            f"ckpt_path does not exist: {ckpt} (train it first, e.g. `make fig-models`; "
            f"or drop the learned model with ~model)"
        )
    if ckpt is None and model_kind(cfg) == "network":
        raise ConfigError(
            f"model ({cfg.model._target_}) is a network trained by cartoonist.train: give "
            f"ckpt_path=<run>/checkpoints/last.ckpt (or drop the learned model with ~model)"
        )


def _validate_pretrained(cfg: DictConfig) -> None:
    """model=diffusers | edm: no ckpt_path, and a model.path that can load."""
    if OmegaConf.select(cfg, "ckpt_path") is not None:
        raise ConfigError(
            "ckpt_path is for cartoonist training checkpoints: a pretrained model loads model.path"
        )
    instantiate(cfg.model).check()


def _check_run_dir(cfg: DictConfig) -> None:
    """The run directory lies inside `paths.output_root` (`run_name=../..` would leave it)."""
    root = OmegaConf.select(cfg, "paths.output_root", default=None)
    if root is None:
        return
    for key in ("paths.output_dir", "hydra.run.dir"):
        out = OmegaConf.select(cfg, key, default=None)
        if out is None:
            continue
        out_p, root_p = Path(str(out)).resolve(), Path(str(root)).resolve()
        if out_p != root_p and not out_p.is_relative_to(root_p):
            raise ConfigError(
                f"run_name / {key} puts the run at {out_p}, outside paths.output_root ({root_p})"
            )
