"""Schemas of a run's config: dataset, model, trainer, callbacks, loggers, optim, paths, tasks.

`cartoonist.pipeline.typecheck` matches a group node to its schema by `_target_`
(`TARGET_SCHEMAS`) and the top level by the task (`TASK_SCHEMAS`); the field helpers and the
sampler/likelihood/noise schemas are in `cartoonist.pipeline.schemas`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Optional

from cartoonist.pipeline.model_schemas import MODEL_SCHEMAS
from cartoonist.pipeline.schemas import (
    SCHEMAS,
    LogpScheme,
    at_least,
    between,
    choice,
    positive,
    rule,
)

__all__ = ["MODEL_SCHEMAS", "TASK_SCHEMAS", "TARGET_SCHEMAS"]


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
    split: str = choice("val", ("all", "train", "val"))  # what evaluate source=dataset scores
    num_workers: int = at_least(0, 0)
    seed: int = rule(0, "seed")


@dataclass
class NoDataConfig:
    """conf/dataset/none.yaml."""

    _target_: str = "cartoonist.data.NoData"


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
    _target_: str = "cartoonist.pipeline.checkpoints.AtomicModelCheckpoint"
    dirpath: Optional[str] = "${paths.output_dir}/checkpoints"
    filename: str = "step_{step:07d}"
    auto_insert_metric_name: bool = False
    save_last: bool = True
    save_top_k: int = at_least(-1, -1)
    every_n_train_steps: Optional[int] = at_least(500, 0)
    enable_version_counter: bool = False


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
    # null: every example of dataset.split (source=dataset), 256 SDE samples (source=samples)
    n_samples: Optional[int] = between(None, 1, MAX_SAMPLES)
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
