"""Structured-config schemas of the `sampler`, `likelihood` and `noise` config groups.

Each option `conf/<group>/<option>.yaml` starts with

    defaults:
      - <option>_schema
      - _self_

so Hydra composes it onto the dataclass stored here as `<group>/<option>_schema`: an unknown key
or a value of the wrong type fails at composition, and the error names the key
(`sampler.stepz=3`, `sampler.steps=abc`, `sampler.logp_scheme=rk4`). Hydra's `+key=value` adds a
key even to a Structured Config (by design, Hydra #1515): `unknown_keys` finds such keys, and
`cartoonist.pipeline.validate` refuses them in one line before anything is built
(`+sampler.foo=1`).
The YAML keeps the values (and their comments); the dataclass defaults equal them, so a
schema alone is a valid config too. `_target_` is a field whose default is the YAML's target.

Closed string choices are `Enum`s mixing in `str` (`_Choice`): OmegaConf checks the value at
composition and the target receives the member, which *is* a `str` equal to its value (`==`,
`in (...)`, dict keys, f-strings and JSON behave as with the plain string). Open choices stay
`str`: `method` (any torchdiffeq method besides "euler"/"heun") and the noise group's `schedule`,
`weighting` and `importance` (the train task stores `OmegaConf.to_container(cfg.noise)`, Enum
members included, in its checkpoints, which load with `torch.load(weights_only=True)`: an Enum
there would not load). TrainingNoise checks those values itself.

It imports nothing from cartoonist. `register_configs()` (idempotent) runs at import; the
package `cartoonist.pipeline` imports this module, so every composition sees the schemas.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, ClassVar, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

__all__ = [
    "Backend",
    "Divergence",
    "ElboEstimator",
    "FirstStage",
    "LogpScheme",
    "SDESampler",
    "HDSampler",
    "PFODESampler",
    "HeunSampler",
    "ModeTrackingSampler",
    "PFODELikelihood",
    "ELBOLikelihood",
    "ExactLikelihood",
    "SDETrackingLikelihood",
    "TrainingNoiseConfig",
    "VPNoise",
    "VENoise",
    "EDMNoise",
    "FlowNoise",
    "SCHEMAS",
    "register_configs",
    "unknown_keys",
]


# -- closed choices -----------------------------------------------------------------------------
class _Choice(str, Enum):
    """A string choice: a `str` equal to its value, printed as the value (like 3.11's StrEnum)."""

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return str.__format__(str.__str__(self), spec)


def _choices(name: str, doc: str, *values: str) -> type[_Choice]:
    """A `_Choice` enum whose members are `values` (member name = value)."""
    cls = _Choice(name, {v: v for v in values}, module=__name__, qualname=name)
    cls.__doc__ = doc
    return cls


FirstStage = _choices(
    "FirstStage", "Algorithm 1's first stage down to lambda_threshold.", "ode", "sde"
)
LogpScheme = _choices(
    "LogpScheme",
    "Theorem 1's r update: corrected (bias ∝ 1/N²), euler (the paper's, ∝ 1/N).",
    "corrected",
    "euler",
)
Divergence = _choices(
    "Divergence", "Laplacian / divergence estimator.", "hutchinson", "exact", "analytic"
)
Backend = _choices("Backend", "Jacobian-vector products: JVP or VJP.", "forward", "reverse")
ElboEstimator = _choices(
    "ElboEstimator", "The ELBO's integrand (Theorem 4).", "denoising", "divergence"
)


# -- ranges and choices ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """What a field's value may be besides its type: kept in the field's `metadata["check"]`.

    `cartoonist.pipeline.typecheck` applies it (OmegaConf ignores metadata): a number in
    [lo, hi] (either end open, or None for none), a value among `choices` (a tuple, or the name
    of a set the checker knows: `ODE_METHODS`), every item of a list (`each`), or a named rule
    (`rule`: "devices", "val_check_interval", "max_steps").
    """

    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False
    choices: Any = None
    each: bool = False
    rule: Optional[str] = None


ODE_METHODS = "ODE_METHODS"  # the checker's name for cartoonist.diffusion.integrators.ODE_METHODS


def _field(default: Any, check: Check) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"check": check})
    return field(default=default, metadata={"check": check})


def positive(default: Any) -> Any:
    """An integer ≥ 1 (each item for a list default)."""
    return _field(default, Check(lo=1, each=isinstance(default, list)))


def at_least(default: Any, lo: float) -> Any:
    """A number ≥ lo."""
    return _field(default, Check(lo=lo, each=isinstance(default, list)))


def between(
    default: Any,
    lo: Optional[float],
    hi: Optional[float],
    lo_open: bool = False,
    hi_open: bool = False,
) -> Any:
    """A number in [lo, hi] (`lo_open` / `hi_open`: that end excluded; None: unbounded)."""
    return _field(default, Check(lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open))


def choice(default: Any, choices: Any) -> Any:
    """A value among `choices` (or the name of a set the checker knows)."""
    return _field(default, Check(choices=choices))


def rule(default: Any, name: str) -> Any:
    """A value checked by the checker's named rule `name`."""
    return _field(default, Check(rule=name))


@dataclass
class _Partial:
    """A function with some arguments bound: `instantiate` returns a functools.partial."""

    _target_: str = ""
    _partial_: bool = True


# -- sampler ------------------------------------------------------------------------------------
@dataclass
class SDESampler(_Partial):
    """conf/sampler/sde.yaml: reverse SDE with the Theorem 1 log-density."""

    _target_: str = "cartoonist.sample_sde"
    steps: int = positive(1000)
    track_logp: bool = True
    logp_scheme: LogpScheme = LogpScheme.corrected


@dataclass
class HDSampler(_Partial):
    """conf/sampler/hd.yaml: Algorithm 1 (first stage to lambda_threshold, then the HD-ODE)."""

    _target_: str = "cartoonist.hd_sample"
    steps: int = positive(1000)
    lambda_threshold: float = 0.0  # in the schedule's [λ_min, λ_max): cross-field (validate)
    first_stage: FirstStage = FirstStage.ode
    method: str = choice("euler", ODE_METHODS)
    track_logp: bool = True  # its log p by default (one JVP per ODE step)


@dataclass
class PFODESampler(_Partial):
    """conf/sampler/pf_ode.yaml: PF-ODE, Euler steps (null steps: an adaptive method)."""

    _target_: str = "cartoonist.sample_ode"
    steps: Optional[int] = positive(256)
    method: str = choice("euler", ODE_METHODS)
    track_logp: bool = False


@dataclass
class HeunSampler(PFODESampler):
    """conf/sampler/heun.yaml: PF-ODE, Heun steps."""

    steps: Optional[int] = positive(128)
    method: str = choice("heun", ODE_METHODS)


@dataclass
class ModeTrackingSampler(_Partial):
    """conf/sampler/mode_tracking.yaml: Theorem 5 from SDE samples at lambda_t."""

    _target_: str = "cartoonist.sample_mode_tracking"
    steps: int = positive(400)
    lambda_t: float = 0.0  # in the schedule's open (λ_min, λ_max): cross-field (validate)
    sde_steps: int = positive(500)


# -- likelihood ---------------------------------------------------------------------------------
@dataclass
class PFODELikelihood(_Partial):
    """conf/likelihood/pf_ode.yaml: PF-ODE log-likelihood (null steps: an adaptive method)."""

    _target_: str = "cartoonist.ode_log_prob"
    steps: Optional[int] = positive(256)
    method: str = choice("heun", ODE_METHODS)
    divergence: Divergence = Divergence.hutchinson
    probes: int = positive(1)
    backend: Backend = Backend.forward
    rtol: float = between(1.0e-5, 0.0, None, lo_open=True)
    atol: float = between(1.0e-5, 0.0, None, lo_open=True)


@dataclass
class ELBOLikelihood(_Partial):
    """conf/likelihood/elbo.yaml: continuous-time ELBO (Theorem 4)."""

    _target_: str = "cartoonist.elbo"
    n_lambda: int = positive(64)
    estimator: ElboEstimator = ElboEstimator.denoising


@dataclass
class ExactLikelihood(_Partial):
    """conf/likelihood/exact.yaml: the oracle's exact log p (model=oracle only)."""

    _target_: str = "cartoonist.diffusion.estimators.exact_log_prob"


@dataclass
class SDETrackingLikelihood(_Partial):
    """conf/likelihood/sde_tracking.yaml: Theorem 1's r_0 of the model's own SDE samples."""

    _target_: str = "cartoonist.diffusion.estimators.sde_tracking"


# -- noise --------------------------------------------------------------------------------------
@dataclass
class TrainingNoiseConfig:
    """A TrainingNoise (not a partial); conf/noise/vp.yaml's values."""

    _target_: str = "cartoonist.diffusion.losses.TrainingNoise"
    schedule: str = choice("vp", ("vp", "ve", "edm", "flow"))
    lambda_min: float = -10.0  # below lambda_max: cross-field (validate)
    lambda_max: float = 10.0
    weighting: str = choice("elbo", ("elbo", "sigmoid"))
    sigmoid_bias: float = 2.0
    importance: str = choice("adaptive", ("uniform", "adaptive"))


@dataclass
class VPNoise(TrainingNoiseConfig):
    """conf/noise/vp.yaml."""


@dataclass
class VENoise(TrainingNoiseConfig):
    """conf/noise/ve.yaml: σ ∈ [0.002, 80]."""

    schedule: str = choice("ve", ("vp", "ve", "edm", "flow"))
    lambda_min: float = -8.764
    lambda_max: float = 12.429


@dataclass
class EDMNoise(TrainingNoiseConfig):
    """conf/noise/edm.yaml: σ ∈ [0.002, 80], sigmoid weighting."""

    schedule: str = choice("edm", ("vp", "ve", "edm", "flow"))
    lambda_min: float = -8.764
    lambda_max: float = 12.429
    weighting: str = choice("sigmoid", ("elbo", "sigmoid"))


@dataclass
class FlowNoise(TrainingNoiseConfig):
    """conf/noise/flow.yaml."""

    schedule: str = choice("flow", ("vp", "ve", "edm", "flow"))


# -- dataset (a data module and its source) -------------------------------------------------------
@dataclass
class _Source:
    seed: int = rule(0, "seed")


@dataclass
class _PixelSource(_Source):
    dequantize: bool = False


@dataclass
class GMM2DSource(_Source):
    _target_: str = "cartoonist.data.GMM2D"
    n: int = positive(20000)


@dataclass
class GMMNDSource(_Source):
    _target_: str = "cartoonist.data.GMMND"
    n: int = positive(20000)
    dim: int = positive(64)
    components: int = positive(8)
    rank: int = positive(4)


@dataclass
class DigitsSource(_PixelSource):
    _target_: str = "cartoonist.data.Digits"
    size: int = positive(8)
    pad_to: Optional[int] = positive(None)


@dataclass
class FacesSource(_PixelSource):
    _target_: str = "cartoonist.data.Faces"
    include_nonfaces: bool = False


@dataclass
class PatchesSource(_PixelSource):
    _target_: str = "cartoonist.data.Patches"
    size: int = positive(16)
    n: int = positive(5000)
    images: Optional[list[str]] = None
    grayscale: bool = False


@dataclass
class ImageFolderSource(_PixelSource):
    _target_: str = "cartoonist.data.ImageFolder"
    path: str = "???"
    size: int = positive(32)
    channels: int = choice(3, (1, 3))


@dataclass
class MNISTSource(_PixelSource):
    _target_: str = "cartoonist.data.MNIST"
    path: str = "???"
    split: str = choice("train", ("train", "test"))


@dataclass
class CIFAR10Source(MNISTSource):
    _target_: str = "cartoonist.data.CIFAR10"


@dataclass
class ArrayDataModuleConfig:
    """conf/dataset/<option>.yaml (all but none): `source` is checked by its own `_target_`."""

    _target_: str = "cartoonist.data.ArrayDataModule"
    source: Any = rule(None, "target")
    batch_size: int = positive(128)
    val_fraction: float = between(0.1, 0.0, 1.0, hi_open=True)
    num_workers: int = at_least(0, 0)
    seed: int = rule(0, "seed")


@dataclass
class NoDataConfig:
    """conf/dataset/none.yaml."""

    _target_: str = "cartoonist.data.NoData"


# -- model ----------------------------------------------------------------------------------------
# A new model option: write a dataclass here whose fields are the option's YAML keys (with their
# types and `positive` / `between` / `choice` ranges, `_target_` defaulting to its class), and add
# it to `MODEL_SCHEMAS`. The checker finds it by the node's `_target_`; an option without a schema
# still has its keys checked against its target's arguments (`typecheck`).
@dataclass
class OracleModelConfig:
    """conf/model/oracle.yaml."""

    _target_: str = "cartoonist.models.oracle.OracleModel"
    components: int = positive(8)
    rank: int = positive(4)
    iters: int = positive(30)


@dataclass
class MLPConfig(_Partial):
    """conf/model/mlp.yaml (event_shape comes from the data)."""

    _target_: str = "cartoonist.models.MLP"
    hidden: int = positive(256)
    depth: int = positive(3)
    emb_dim: int = at_least(64, 2)
    layer_norm: bool = True


@dataclass
class UNetConfig(_Partial):
    """conf/model/unet.yaml (event_shape comes from the data)."""

    _target_: str = "cartoonist.models.UNet"
    channels: list[int] = positive([32, 64, 64])
    blocks_per_level: int = positive(1)
    emb_dim: int = at_least(128, 2)
    groups: int = positive(8)
    dropout: float = between(0.0, 0.0, 1.0, hi_open=True)


@dataclass
class DiffusersModelConfig:
    """conf/model/diffusers.yaml (event_shape vs the UNet config: cross-field, validate)."""

    _target_: str = "cartoonist.models.diffusers.DiffusersModel"
    path: str = "???"
    timestep: str = choice("interpolate", ("interpolate", "nearest"))
    class_labels: Optional[int] = at_least(None, 0)
    attention: str = choice("math", ("math", "default"))
    data_range: Optional[list[float]] = rule(None, "range2")
    event_shape: Optional[list[int]] = rule(None, "event_shape")


@dataclass
class EDMDenoiserConfig:
    """conf/model/edm.yaml."""

    _target_: str = "cartoonist.models.edm.EDMDenoiser"
    path: str = "???"
    event_shape: list[int] = rule("???", "event_shape")
    sigma_min: float = between(0.002, 0.0, None, lo_open=True)
    sigma_max: float = between(80.0, 0.0, None, lo_open=True)
    class_labels: Any = None
    schedule: str = choice("vp", ("vp", "edm"))
    allow_pickle: bool = False
    pickle_key: str = "ema"


MODEL_SCHEMAS: tuple[type, ...] = (
    OracleModelConfig,
    MLPConfig,
    UNetConfig,
    DiffusersModelConfig,
    EDMDenoiserConfig,
)


# -- trainer, callbacks, loggers (Lightning's: other arguments of the target pass) ----------------
@dataclass
class TrainerConfig:
    """conf/trainer/*.yaml: the keys we set; any other `lightning.Trainer` argument passes."""

    passthrough: ClassVar[bool] = True
    _target_: str = "lightning.Trainer"
    accelerator: str = "cpu"
    devices: Any = rule(1, "devices")
    strategy: Any = None
    num_nodes: int = positive(1)
    max_steps: int = rule(2000, "max_steps")
    max_epochs: Optional[int] = rule(None, "max_steps")
    val_check_interval: Any = rule(500, "val_check_interval")
    check_val_every_n_epoch: Optional[int] = positive(None)
    log_every_n_steps: int = positive(20)
    limit_val_batches: Any = rule(None, "val_check_interval")
    limit_train_batches: Any = rule(None, "val_check_interval")
    deterministic: Any = None
    enable_model_summary: bool = False
    enable_progress_bar: bool = True
    enable_checkpointing: bool = True
    gradient_clip_val: Optional[float] = at_least(None, 0.0)
    accumulate_grad_batches: int = positive(1)


@dataclass
class ModelCheckpointConfig:
    """conf/callbacks/default.yaml's checkpoint; any other ModelCheckpoint argument passes."""

    passthrough: ClassVar[bool] = True
    _target_: str = "lightning.pytorch.callbacks.ModelCheckpoint"
    dirpath: Optional[str] = "${paths.output_dir}/checkpoints"
    filename: str = "step_{step:07d}"
    auto_insert_metric_name: bool = False
    save_last: bool = True
    save_top_k: int = at_least(-1, -1)
    every_n_train_steps: Optional[int] = at_least(500, 0)


@dataclass
class CSVLoggerConfig:
    """conf/logger/csv.yaml."""

    passthrough: ClassVar[bool] = True
    _target_: str = "lightning.pytorch.loggers.CSVLogger"
    save_dir: Optional[str] = "${paths.output_dir}"
    name: str = "csv"
    version: Any = ""


@dataclass
class WandbLoggerConfig:
    """conf/logger/wandb.yaml (WANDB_MODE decides online/offline: checked by validate)."""

    passthrough: ClassVar[bool] = True
    _target_: str = "lightning.pytorch.loggers.WandbLogger"
    project: str = "cartoonist"
    save_dir: Optional[str] = "${paths.output_dir}"
    group: str = "${experiment_name}"
    job_type: str = "${task_name}"
    name: str = "${run_name}-${oc.select:hydra.job.num,0}"
    tags: list[str] = field(default_factory=list)
    entity: Optional[str] = None
    offline: bool = False


# -- top level of each task -----------------------------------------------------------------------
#: the most samples a run may ask for (n_samples); more is a typo (1e11), not a run
MAX_SAMPLES = 10_000_000


@dataclass
class OptimConfig:
    """train.yaml's optim: the DiffusionModule's optimiser and EMA."""

    lr: float = between(2e-4, 0.0, None, lo_open=True)
    warmup_steps: int = at_least(100, 0)
    ema_decay: float = between(0.999, 0.0, 1.0, hi_open=True)
    val_lambdas: int = positive(16)


@dataclass
class PathsConfig:
    """conf/paths/default.yaml."""

    output_root: str = "outputs"
    output_dir: Optional[str] = "${hydra:runtime.output_dir}"  # null outside a run
    figures_dir: str = "${.output_root}/figures"
    data_dir: str = "data"


@dataclass
class _TaskConfig:
    """Keys every task has; a group (dataset, model, ...) is checked by its own schema."""

    task_name: str = "???"
    experiment_name: str = "adhoc"
    run_name: str = "???"
    tags: list[str] = field(default_factory=list)
    seed: int = rule(0, "seed")
    smoke: bool = False
    paths: PathsConfig = field(default_factory=PathsConfig)
    dataset: Any = rule(None, "target")
    model: Any = rule(None, "target")
    noise: Any = rule(None, "target")
    logger: Any = rule(None, "targets")
    local: Any = None


@dataclass
class TrainTask(_TaskConfig):
    """conf/train.yaml."""

    trainer: Any = rule(None, "target")
    callbacks: Any = rule(None, "targets")
    optim: OptimConfig = field(default_factory=OptimConfig)
    # debug=smoke sets these for every task; train does not use them
    n_samples: Optional[int] = between(None, 1, MAX_SAMPLES)
    batch_size: Optional[int] = positive(None)


@dataclass
class SampleTask(_TaskConfig):
    """conf/sample.yaml."""

    sampler: Any = rule(None, "target")
    likelihood: Any = rule(None, "target")
    trainer: Any = rule(None, "target")
    n_samples: int = between(256, 1, MAX_SAMPLES)
    batch_size: int = positive(128)
    ckpt_path: Optional[str] = None
    allow_pickle: bool = False


@dataclass
class EvaluateTask(_TaskConfig):
    """conf/evaluate.yaml."""

    likelihood: Any = rule(None, "target")
    trainer: Any = rule(None, "target")
    source: str = choice("samples", ("samples", "dataset"))
    sde_steps: int = positive(1000)
    sde_logp_scheme: LogpScheme = LogpScheme.corrected
    n_samples: int = between(256, 1, MAX_SAMPLES)
    batch_size: int = positive(128)
    ckpt_path: Optional[str] = None
    allow_pickle: bool = False


@dataclass
class FigureTask(_TaskConfig):
    """conf/figure.yaml: an experiment's compute/plot/compute_smoke are the figure's own."""

    figure_name: str = "???"
    compute: Any = None
    plot: Any = None
    compute_smoke: Any = None
    ckpt_path: Optional[str] = None
    allow_pickle: bool = False
    device: str = "cpu"
    trained_checkpoints: Any = None
    learned_name: Any = None
    # debug=smoke sets these for every task; a figure's sizes are its compute_smoke
    trainer: Any = None
    n_samples: Optional[int] = between(None, 1, MAX_SAMPLES)
    batch_size: Optional[int] = positive(None)


@dataclass
class DemoTask(_TaskConfig):
    """conf/demo.yaml."""

    n_samples: int = between(64, 1, MAX_SAMPLES)
    sde_steps: int = positive(1000)
    sde_logp_scheme: LogpScheme = LogpScheme.corrected
    hd_steps: int = positive(500)
    thresholds: list[float] = field(default_factory=lambda: [-4.0, 0.0, 4.0, 8.0])
    batch_size: Optional[int] = positive(None)  # set by debug=smoke; unused


TASK_SCHEMAS: dict[str, type] = {
    "train": TrainTask,
    "sample": SampleTask,
    "evaluate": EvaluateTask,
    "figure": FigureTask,
    "demo": DemoTask,
}


# -- registration -------------------------------------------------------------------------------
#: (group, schema name) -> dataclass; conf/<group>/<option>.yaml uses <option>_schema
_OPTIONS: dict[str, dict[str, type]] = {
    "sampler": {
        "sde": SDESampler,
        "hd": HDSampler,
        "pf_ode": PFODESampler,
        "heun": HeunSampler,
        "mode_tracking": ModeTrackingSampler,
    },
    "likelihood": {
        "pf_ode": PFODELikelihood,
        "elbo": ELBOLikelihood,
        "exact": ExactLikelihood,
        "sde_tracking": SDETrackingLikelihood,
    },
    "noise": {"vp": VPNoise, "ve": VENoise, "edm": EDMNoise, "flow": FlowNoise},
}
SCHEMAS: dict[tuple[str, str], type] = {
    (group, f"{option}_schema"): cls
    for group, opts in _OPTIONS.items()
    for option, cls in opts.items()
}


_BY_TARGET: tuple[type, ...] = (
    *SCHEMAS.values(),
    GMM2DSource,
    GMMNDSource,
    DigitsSource,
    FacesSource,
    PatchesSource,
    ImageFolderSource,
    MNISTSource,
    CIFAR10Source,
    ArrayDataModuleConfig,
    NoDataConfig,
    *MODEL_SCHEMAS,
    TrainerConfig,
    ModelCheckpointConfig,
    CSVLoggerConfig,
    WandbLoggerConfig,
)
#: a node's `_target_` -> its schema (the first one listed for a shared target)
TARGET_SCHEMAS: dict[str, type] = {}
for _cls in _BY_TARGET:
    TARGET_SCHEMAS.setdefault(next(f.default for f in fields(_cls) if f.name == "_target_"), _cls)


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    for (group, name), node in SCHEMAS.items():
        cs.store(group=group, name=name, node=node)


def unknown_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Full keys of `cfg` that no schema declares, in nodes typed by a schema of SCHEMAS.

    Hydra composes onto the schema, so only a `+key=value` (or `++`) override can bring such a
    key: it force-adds by design, even into a Structured Config (Hydra #1515).
    """
    found: list[str] = []
    if not isinstance(cfg, DictConfig):
        return found
    types = set(SCHEMAS.values())
    for key, node in cfg.items_ex(resolve=False):
        if not isinstance(node, DictConfig) or (not prefix and key == "hydra"):
            continue
        typ = OmegaConf.get_type(node)
        if typ in types:
            declared = {f.name for f in fields(typ)}
            found += [f"{prefix}{key}.{k}" for k in node.keys() if k not in declared]
        else:
            found += unknown_keys(node, f"{prefix}{key}.")
    return found


register_configs()
