"""Cross-field checks of a composed config, before anything is built or computed.

Each check raises a `ConfigError` whose message names the key; the entry point prints it as one
line and exits with status 2. What a value's type and range are is the schemas' business
(`cartoonist.pipeline.schemas`); here are the rules that span several keys or groups.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from urllib.parse import urlparse

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cartoonist.diffusion.high_density import check_threshold as hd_threshold
from cartoonist.diffusion.schedules import VP
from cartoonist.errors import ConfigError
from cartoonist.pipeline.schemas import unknown_keys
from cartoonist.pipeline.targets import check_targets, is_no_data, likelihood_kind, model_kind
from cartoonist.pipeline.typecheck import check_config

__all__ = ["validate", "check_threshold"]


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
    _check_environment(cfg)
    if task in ("sample", "evaluate"):
        _check_sampler(cfg, lo, hi, pretrained)
        _check_attention(cfg)
        shape = _check_checkpoint(cfg, ckpt) if ckpt is not None else None
        _check_mode_tracking_dim(cfg, shape)
    if task != "figure" or OmegaConf.select(cfg, "model") is not None:
        _check_data(cfg)


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


#: the largest dimension D for which sampler=mode_tracking runs: Theorem 5 needs the D × D Hessian
#: of log p per sample (and ∇Δ log p); at D = 1024 that is 8 MiB per sample in float64, at
#: D = 3072 (CIFAR) 72 MiB and D Hessian-vector products per step — hours, then out of memory.
MODE_TRACKING_MAX_DIM = 1024


def _sampler_fn(cfg: DictConfig):
    from cartoonist.pipeline.targets import resolve

    return resolve(cfg, "sampler")


def _check_sampler(cfg: DictConfig, lo: float, hi: float, pretrained: bool) -> None:
    """mode_tracking's λ_t lies strictly inside the schedule's range (an SDE stage before it)."""
    from cartoonist.diffusion import sample_mode_tracking

    if _sampler_fn(cfg) is not sample_mode_tracking or pretrained:
        return  # a pretrained model's own range is checked when it loads
    lam = OmegaConf.select(cfg, "sampler.lambda_t")
    if math.isfinite(lo) and math.isfinite(hi) and not lo < lam < hi:
        raise ConfigError(
            f"sampler.lambda_t must lie in ({lo:g}, {hi:g}) (the noise group's range: the SDE "
            f"runs from λ_min to λ_t, the mode tracking on to λ_max), got {lam}"
        )


def _jvp_users(cfg: DictConfig) -> list[str]:
    """The settings of this run that differentiate through the network forward (JVP)."""
    from cartoonist.diffusion import ode_log_prob, sample_mode_tracking, sample_sde

    users = []
    fn = _sampler_fn(cfg)
    if fn is sample_mode_tracking:
        users.append("sampler=mode_tracking (Hessians)")
    elif fn is not None and fn is not sample_sde and OmegaConf.select(cfg, "sampler.track_logp"):
        users.append("sampler.track_logp=true")
    from cartoonist.pipeline.targets import resolve

    lik = resolve(cfg, "likelihood")
    backend = OmegaConf.select(cfg, "likelihood.backend")
    if lik is ode_log_prob and backend in ("forward", "auto"):  # auto: forward on GPUs
        users.append(f"likelihood=pf_ode with likelihood.backend={backend}")
    return users


def _check_attention(cfg: DictConfig) -> None:
    """model.attention=default (fused kernels, no JVP rule) with an estimator that needs JVPs."""
    if OmegaConf.select(cfg, "model.attention") != "default":
        return
    if users := _jvp_users(cfg):
        raise ConfigError(
            f"model.attention=default (fused attention kernels) has no forward-mode derivative, "
            f"which {users[0]} needs: set model.attention=math"
        )


def _check_mode_tracking_dim(cfg: DictConfig, shape) -> None:
    """sampler=mode_tracking only up to D = MODE_TRACKING_MAX_DIM."""
    from cartoonist.diffusion import sample_mode_tracking

    if _sampler_fn(cfg) is not sample_mode_tracking:
        return
    shape = shape or _model_or_data_shape(cfg)
    if shape is None:
        return
    dim = math.prod(shape)
    if dim > MODE_TRACKING_MAX_DIM:
        raise ConfigError(
            f"sampler=mode_tracking needs the D × D Hessian of every sample: D = {dim} "
            f"(shape {tuple(shape)}) is above its limit of {MODE_TRACKING_MAX_DIM} "
            f"(use sampler=hd for high-density samples of large images)"
        )


def _model_or_data_shape(cfg: DictConfig):
    """The event shape of the run's model (a pretrained one's) or data, without loading either."""
    if model_kind(cfg) == "pretrained":
        model = instantiate(cfg.model)
        return tuple(model.shape()) if hasattr(model, "shape") else None
    if is_no_data(cfg) or OmegaConf.select(cfg, "dataset") is None:
        return None
    return tuple(instantiate(cfg.dataset).event_shape)


def _explicit(cfg: DictConfig) -> dict[str, object]:
    """Group choices and `model.` / `dataset.` values given on the command line."""
    from cartoonist.pipeline.typecheck import command_line

    out: dict[str, object] = {}
    for o in command_line(cfg):
        if o.is_delete() or o.is_sweep_override():
            continue
        out[o.key_or_group] = o.value()
    return out


def _check_checkpoint(cfg: DictConfig, ckpt) -> tuple | None:
    """A checkpoint brings its own network: a different model= or dataset= is refused."""
    from cartoonist.models.checkpoint import ARCHITECTURES, checkpoint_spec
    from cartoonist.pipeline.targets import resolve

    if model_kind(cfg) != "network":
        return None
    spec = checkpoint_spec(ckpt, bool(OmegaConf.select(cfg, "allow_pickle")))
    net = spec.get("net") or {}
    shape = tuple(spec.get("event_shape") or ())
    given = _explicit(cfg)
    theirs = ARCHITECTURES.get(net.get("_target_"))
    ours = resolve(cfg, "model")
    if "model" in given and theirs is not None and ours is not theirs:
        raise ConfigError(
            f"model={given['model']} but ckpt_path holds a {theirs.__name__} network: drop "
            f"model= or choose the checkpoint's (model={theirs.__name__.lower()})"
        )
    for key, value in given.items():
        name = key.split(".", 1)[1] if key.startswith("model.") else None
        if name in net and OmegaConf.create({"v": value}).v != net[name]:
            raise ConfigError(
                f"{key}={value} but the checkpoint's network has {name}={net[name]}: a "
                f"checkpoint brings its own network (drop {key})"
            )
    if ("dataset" in given or OmegaConf.select(cfg, "source") == "dataset") and shape:
        data = _model_or_data_shape(cfg)
        if data is not None and tuple(data) != shape:
            which = f"dataset={given['dataset']}" if "dataset" in given else "the dataset"
            raise ConfigError(
                f"{which} has examples of shape {tuple(data)}, the checkpoint's network was "
                f"trained on {shape}: choose its dataset"
            )
    return shape or None


def _check_data(cfg: DictConfig) -> None:
    """The data set's files are there and readable (a structural check, nothing loaded)."""
    node = OmegaConf.select(cfg, "dataset.source")
    if node is None or is_no_data(cfg):
        return
    source = instantiate(node)
    if hasattr(source, "check"):
        source.check()


def _check_environment(cfg: DictConfig) -> None:
    """A wandb logger online has an API key; the run directory can be created."""
    if OmegaConf.select(cfg, "logger.wandb") is not None:
        if os.environ.get("WANDB_MODE", "offline") == "online" and not _wandb_key():
            raise ConfigError(
                "logger.wandb: WANDB_MODE=online needs a wandb API key (WANDB_API_KEY or "
                "`wandb login`); use WANDB_MODE=offline to log locally"
            )
    root = OmegaConf.select(cfg, "paths.output_root", default=None)
    if root is not None:
        _check_writable(Path(str(root)).expanduser())


def _wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc

    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _check_writable(root: Path) -> None:
    """paths.output_root exists as a writable folder, or can be created (nothing is created)."""
    p = root.resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        raise ConfigError(f"paths.output_root: {p} is a file, not a folder (for {root})")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(f"paths.output_root: {p} is not writable (for {root})")
