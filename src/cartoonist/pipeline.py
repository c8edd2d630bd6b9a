"""Plumbing shared by the entry points: validation, builders, run directories, output files.

Nothing here does maths: it turns a composed Hydra config into objects of `cartoonist.diffusion`,
`cartoonist.data`, `cartoonist.models` and `cartoonist.lit`, and keeps each run directory resumable
(a `DONE` marker written last, atomic writes, `checkpoints/last.ckpt`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

import cartoonist.config_schemas  # noqa: F401,E402 - registers the sampler/likelihood/noise schemas

__all__ = [
    "ConfigError",
    "OracleModel",
    "validate",
    "atomic_write",
    "write_per_sample_csv",
    "load_denoiser",
    "build_score",
    "event_shape_of",
    "model_tag",
]

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key."""


# -- run names ----------------------------------------------------------------------------------
_KIND = {"DiffusersModel": "diffusers", "EDMDenoiser": "edm"}


def model_tag(*, _root_: DictConfig) -> str:
    """`${model_tag:}`: a run-name suffix naming the learned model a config uses ("" for none).

    Experiments that run on the exact oracle by default and on any learned model on request
    (`hd_threshold`, `png_size`) append it to their run and figure names, so the outputs of
    different models never share a directory (a finished job's `DONE` would be skipped) nor a
    figure file. The exact oracle and a config without a model give "" (the names stay as they
    were); `ckpt_path=.../<run>/checkpoints/last.ckpt` gives "__ckpt-<run>"; a pretrained model
    gives "__<diffusers|edm>-<the folder's or file's name>".
    """
    ckpt = OmegaConf.select(_root_, "ckpt_path", default=None)
    if ckpt:
        p = Path(str(ckpt))
        name = p.parent.parent.name if p.parent.name == "checkpoints" else p.stem
        return f"__ckpt-{_slug(name)}"
    target = str(OmegaConf.select(_root_, "model._target_", default="") or "")
    if not target or target.endswith("OracleModel"):
        return ""
    cls = target.rsplit(".", 1)[-1]
    path = OmegaConf.select(_root_, "model.path", default=None, throw_on_missing=False)
    if path is None or OmegaConf.is_missing(_root_.model, "path"):
        return f"__{_KIND.get(cls, cls.lower())}"
    p = Path(str(path).rstrip("/"))
    name = p.stem if p.suffix in (".pt", ".pth", ".pkl", ".ckpt") else p.name
    return f"__{_KIND.get(cls, cls.lower())}-{_slug(name)}"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"


if not OmegaConf.has_resolver("model_tag"):
    OmegaConf.register_new_resolver("model_tag", model_tag)


# -- validation ---------------------------------------------------------------------------------
def _positive_int(cfg, key: str) -> None:
    val = OmegaConf.select(cfg, key)
    if val is None:
        return
    if isinstance(val, bool) or not isinstance(val, int) or val < 1:
        raise ConfigError(f"{key} must be a positive integer, got {val!r}")


def validate(cfg: DictConfig, task: str) -> None:
    """Check a composed config before any computation; raise ConfigError naming the key."""
    for key in ("seed",):
        if not isinstance(OmegaConf.select(cfg, key), int):
            raise ConfigError(f"{key} must be an integer, got {OmegaConf.select(cfg, key)!r}")
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
    target = str(OmegaConf.select(cfg, "model._target_", default=""))
    pretrained = target.startswith("cartoonist.pretrained.")
    if pretrained and task == "train":
        raise ConfigError("a pretrained model (model=diffusers|edm) is not trained here")
    if pretrained:  # its own trained λ range applies (checked when it loads); noise is unused
        lo, hi = -math.inf, math.inf
    thr = OmegaConf.select(cfg, "sampler.lambda_threshold")
    if thr is not None and not (isinstance(thr, (int, float)) and lo < thr < hi):
        raise ConfigError(
            f"sampler.lambda_threshold must lie inside (noise.lambda_min, noise.lambda_max) = "
            f"({lo}, {hi}), got {thr!r}"
        )
    path = OmegaConf.select(cfg, "dataset.source.path")
    if path is not None and not Path(str(path)).expanduser().exists():
        raise ConfigError(f"dataset.source.path does not exist: {path}")
    if task == "train" and target.endswith("OracleModel"):
        raise ConfigError("model=oracle is exact and has nothing to train: use model=mlp or unet")
    no_data = str(OmegaConf.select(cfg, "dataset._target_", default="")).endswith("NoData")
    if no_data and (task == "train" or target.endswith("OracleModel")):
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
    lik = str(OmegaConf.select(cfg, "likelihood._target_", default=""))
    if task == "sample" and lik.endswith("sde_tracking"):
        raise ConfigError(
            "likelihood=sde_tracking cannot score samples afterwards: sampler=sde writes its "
            "Theorem 1 log p as estimator 'tracked' (use likelihood=pf_ode or elbo here)"
        )
    if lik.endswith("sde_tracking") and OmegaConf.select(cfg, "source") != "samples":
        raise ConfigError("likelihood=sde_tracking needs source=samples (r_0 of SDE samples)")
    ckpt = OmegaConf.select(cfg, "ckpt_path")
    if task in ("sample", "evaluate"):
        is_oracle = target.endswith("OracleModel")
        if ckpt is None and not is_oracle and not pretrained:
            raise ConfigError("ckpt_path is required for a trained model (or use model=oracle)")
        if ckpt is not None and is_oracle:
            raise ConfigError(
                "ckpt_path loads a network trained by cartoonist.train, but model=oracle is the "
                "exact model: name the network (model=unet or model=mlp)"
            )
        if ckpt is not None and not Path(str(ckpt)).expanduser().is_file():
            raise ConfigError(f"ckpt_path does not exist: {ckpt}")
        if lik.endswith("exact_log_prob") and not is_oracle:
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
    target = str(OmegaConf.select(cfg, "model._target_", default=""))
    if ckpt is None and target.startswith("cartoonist.models."):
        raise ConfigError(
            f"model ({target}) is a network trained by cartoonist.train: give "
            f"ckpt_path=<run>/checkpoints/last.ckpt (or drop the learned model with ~model)"
        )


def _validate_pretrained(cfg: DictConfig) -> None:
    """model=diffusers | edm: no ckpt_path, and a model.path that can load."""
    from hydra.utils import instantiate

    if OmegaConf.select(cfg, "ckpt_path") is not None:
        raise ConfigError(
            "ckpt_path is for cartoonist training checkpoints: a pretrained model loads model.path"
        )
    instantiate(cfg.model).check()


def format_error(e: BaseException) -> str:
    """One line from an exception chain (Hydra/OmegaConf errors span several lines)."""
    parts = []
    while e is not None and len(parts) < 3:
        line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if line not in parts:
            parts.append(line)
        e = e.__cause__ or e.__context__
    return " — ".join(parts)


def preflight(task: str, argv: list[str]) -> None:
    """Compose and validate the config of a single run before Hydra creates anything.

    Multirun (-m) sweeps are validated per job instead. Exits with status 2 and one line on error.
    """
    if any(a in ("-m", "--multirun") for a in argv) or any(a.startswith("-") for a in argv):
        return
    from hydra import compose, initialize_config_dir

    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose(task, overrides=argv, return_hydra_config=True)
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if cfg.hydra.mode == RunMode.MULTIRUN:
            return  # an experiment that is a sweep: each job validates itself
        HydraConfig.instance().set_config(cfg)
        validate(cfg, task)
    except Exception as e:  # noqa: BLE001 - any composition error becomes one line
        if "Ambiguous value" in str(e):
            return  # a sweep given on the command line (a,b,c): Hydra expands it
        print(f"error: {format_error(e)}", file=sys.stderr)
        raise SystemExit(2) from None


def entry_point(task: str, run=None):
    """The `main()` of `python -m cartoonist.<task>`: one-line preflight, then Hydra.

    Args:
        task: config name in conf/ (and, unless `run` is given, a function of `cartoonist.tasks`).
        run: cfg -> result, for tasks that live elsewhere (the demo).
    """
    import hydra

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=task)
    def _main(cfg):
        if run is not None:
            return run(cfg)
        from cartoonist import tasks

        try:
            return getattr(tasks, task)(cfg)
        except ConfigError as e:  # found while loading (e.g. a corrupt model file): one line
            print(f"error: {str(e).strip().splitlines()[0]}", file=sys.stderr)
            raise SystemExit(2) from None

    def main() -> None:
        preflight(task, sys.argv[1:])
        _main()

    main.__doc__ = f"Entry point of `python -m cartoonist.{task}` (conf/{task}.yaml)."
    return main


# -- output files -------------------------------------------------------------------------------
def atomic_write(path: Path, data: str | bytes) -> None:
    """Write a file via a temporary sibling and rename, so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def write_per_sample_csv(path: Path, rows: list[dict]) -> None:
    """The per-sample table: sample_id, seed, estimator, logp_nats, bpd, nfe, wall_s."""
    cols = ["sample_id", "seed", "estimator", "logp_nats", "bpd", "nfe", "wall_s"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for r in sorted(rows, key=lambda r: (r["estimator"], r["sample_id"])):
        w.writerow({k: r[k] for k in cols})
    atomic_write(path, buf.getvalue())


def write_json(path: Path, obj: Any) -> None:
    """Atomic pretty JSON."""
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n")


def save_figure(fig, stem: Path, exts=("png", "pdf"), dpi: int = 150) -> list[Path]:
    """Write a matplotlib figure atomically as <stem>.<ext> for each extension."""
    paths = []
    for ext in exts:
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=dpi)
        atomic_write(stem.with_name(f"{stem.name}.{ext}"), buf.getvalue())
        paths.append(stem.with_name(f"{stem.name}.{ext}"))
    return paths


def write_figure_outputs(figs_dir: Path, name: str, table, metrics: dict, fig) -> list[Path]:
    """A figure's outputs: <name>.csv (the plotted numbers), .json (metrics), .png and .pdf."""
    figs_dir = Path(figs_dir)
    atomic_write(figs_dir / f"{name}.csv", table.to_csv(index=False))
    write_json(figs_dir / f"{name}.json", metrics)
    return [figs_dir / f"{name}.csv", figs_dir / f"{name}.json"] + save_figure(
        fig, figs_dir / name
    )


def mark_done(out: Path) -> None:
    """Write the DONE marker last."""
    atomic_write(out / "DONE", time.strftime("%Y-%m-%dT%H:%M:%S\n"))


# -- models -------------------------------------------------------------------------------------
@dataclass
class OracleModel:
    """The exact model: the dataset's own mixture, or a mixture of PPCA fitted to its data.

    Args:
        components: mixture components when fitting to data.
        rank: PPCA rank per component when fitting.
        iters: EM iterations.
    """

    components: int = 8
    rank: int = 4
    iters: int = 30

    def build(self, dm, schedule, seed: int = 0):
        """Return the GaussianMixture for datamodule `dm` under `schedule`."""
        exact = dm.oracle(schedule)
        if exact is not None:
            return exact
        from cartoonist.oracles import fit_mppca

        rank = min(self.rank, dm.dim - 1)
        return fit_mppca(
            dm.data, self.components, rank, iters=self.iters, seed=seed, schedule=schedule
        )


def load_denoiser(path: str | Path, allow_pickle: bool = False):
    """Rebuild the EMA denoiser and its noise from a training checkpoint.

    Loads with `torch.load(weights_only=True)` unless `allow_pickle` (pickles run code).

    Returns:
        (net in eval mode with EMA weights, TrainingNoise, spec dict).
    """
    from hydra.utils import instantiate

    try:
        ck = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"cannot load checkpoint {path}: {format_error(e)}") from e
    spec = ck.get("cartoonist")
    if not spec:
        raise ConfigError(f"{path} is not a cartoonist training checkpoint (no 'cartoonist' spec)")
    net = instantiate(spec["net"])(event_shape=tuple(spec["event_shape"]))
    noise = instantiate(spec["noise"])
    sd = ck["state_dict"]
    net.load_state_dict({k[4:]: v for k, v in sd.items() if k.startswith("ema.")})
    noise.load_state_dict({k[6:]: v for k, v in sd.items() if k.startswith("noise.")})
    return net.eval().requires_grad_(False), noise, spec


def build_score(cfg: DictConfig, dm):
    """(score function, schedule, oracle or None, log_jacobian) for sample/evaluate.

    A network-backed score (our checkpoints, model=diffusers, model=edm) is a
    `cartoonist.models.pretrained.ScoreModule`: an nn.Module with `event_shape` and
    `log_jacobian`, which the predict loop moves to the trainer's device. A pretrained model
    brings its own schedule (its trained λ range); the `noise` group is then unused.
    """
    from hydra.utils import instantiate

    from cartoonist.models.pretrained import NetScore

    if cfg.get("ckpt_path"):
        net, noise, spec = load_denoiser(cfg.ckpt_path, cfg.get("allow_pickle", False))
        logjac = float(spec["log_jacobian"])
        score = NetScore(net, noise.schedule, spec["event_shape"], logjac)
        return score, noise.schedule, None, logjac
    model = instantiate(cfg.model)
    from cartoonist.pretrained import PretrainedModel

    if isinstance(model, PretrainedModel):
        score = model.load()
        _check_pretrained_fits(cfg, dm, score)
        return score, score.schedule, None, score.log_jacobian
    noise = instantiate(cfg.noise)
    oracle = model.build(dm, noise.schedule, seed=cfg.seed)
    return oracle, noise.schedule, oracle, dm.log_jacobian


def _check_pretrained_fits(cfg: DictConfig, dm, score) -> None:
    """The sampler's threshold lies in the model's λ range; evaluated data have its shape."""
    sch = score.schedule
    thr = OmegaConf.select(cfg, "sampler.lambda_threshold")
    if thr is not None and not sch.lambda_min < thr < sch.lambda_max:
        raise ConfigError(
            f"sampler.lambda_threshold={thr} is outside the model's trained log-SNR range "
            f"({sch.lambda_min:.4g}, {sch.lambda_max:.4g})"
        )
    data_shape = getattr(dm, "event_shape", None)
    if cfg.get("source") == "dataset" and tuple(data_shape or ()) != score.event_shape:
        raise ConfigError(
            f"the dataset's examples have shape {data_shape}, the model takes {score.event_shape}"
            f" (set dataset.source.size / channels to match)"
        )


def event_shape_of(score, dm) -> tuple:
    """Shape of one example: the model's if it has one (pretrained, checkpoint), else the data."""
    shape = getattr(score, "event_shape", None)
    return tuple(shape) if shape is not None else tuple(dm.event_shape)


def log_figure_to_wandb(name: str, table, metrics: dict, image: Path) -> None:
    """Log a collected figure (table, metrics, PNG) as its own wandb run (group = figure name).

    Used by the collector scripts of sweep figures; WANDB_MODE decides (offline by default).
    """
    os.environ.setdefault("WANDB_MODE", "offline")
    import wandb

    run = wandb.init(
        project="cartoonist",
        group=name,
        job_type="figure",
        name=name,
        dir=str(image.parent),
        reinit=True,
    )
    try:
        finite = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        run.log({f"figure/{k}": v for k, v in finite.items()})
        run.log(
            {
                f"figure/{name}": wandb.Table(dataframe=table),
                f"figure/{name}_plot": wandb.Image(str(image)),
            }
        )
    finally:
        run.finish()
