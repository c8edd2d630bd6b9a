"""Schemas of the `model` group's options (`pipeline.typecheck` finds one by `_target_`).

A new model option: write a dataclass here whose fields are the option's YAML keys (with their
types and `positive` / `between` / `choice` ranges, `_target_` defaulting to its class), and add it
to `MODEL_SCHEMAS`. An option without a schema still has its keys checked against its target's
arguments (`typecheck`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from cartoonist.pipeline.schemas import _Partial, at_least, between, choice, positive, rule

__all__ = ["MODEL_SCHEMAS"]


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
    class_labels: Any = None  # int | list | file | cycle: range-checked by the model's check()
    attention: str = choice("math", ("math", "default"))
    data_range: Optional[list[float]] = rule(None, "range2")
    event_shape: Optional[list[int]] = rule(None, "event_shape")
    prompt: Any = None  # refused by check() (not text-conditional)


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
    kwargs: Any = None
    factory: Optional[bool] = None
    weights: Optional[str] = None
    search_path: Optional[str] = None


MODEL_SCHEMAS: tuple[type, ...] = (
    OracleModelConfig,
    MLPConfig,
    UNetConfig,
    DiffusersModelConfig,
    EDMDenoiserConfig,
)
