"""Plumbing between a composed Hydra config and the layers below; no maths here.

- `schemas`: structured-config schemas of the sampler, likelihood and noise groups;
- `targets`: what a config node builds, decided by the type of its `_target_` (never its text);
- `names`: run names (`${model_tag:}`); `validate`: cross-field checks before anything is built;
- `build`: the score of a run (oracle, our checkpoint, a pretrained model); `figure_inputs`: what
  the figure task hands a figure (smoke sizes, a learned model);
- `files`: atomic writes of a run directory, `DONE` last; `loggers`: CSV and wandb;
- `cli`: `python -m cartoonist.<task>` (one-line preflight, then Hydra).
"""

from cartoonist.errors import ConfigError, format_error
from cartoonist.pipeline import schemas  # noqa: F401 - registers the config schemas
from cartoonist.pipeline.build import build_score, event_shape_of
from cartoonist.pipeline.cli import CONF_DIR, entry_point, preflight
from cartoonist.pipeline.files import (
    atomic_write,
    mark_done,
    save_figure,
    write_figure_outputs,
    write_json,
    write_per_sample_csv,
)
from cartoonist.pipeline.loggers import log_figure_to_wandb
from cartoonist.pipeline.names import model_tag
from cartoonist.pipeline.validate import validate

__all__ = [
    "CONF_DIR",
    "ConfigError",
    "atomic_write",
    "build_score",
    "entry_point",
    "event_shape_of",
    "format_error",
    "log_figure_to_wandb",
    "mark_done",
    "model_tag",
    "preflight",
    "save_figure",
    "validate",
    "write_figure_outputs",
    "write_json",
    "write_per_sample_csv",
]
