"""Pretrained models from local files, never the network: `model=diffusers` and `model=edm`.

The config objects `DiffusersModel` (`models/diffusers.py`) and `EDMDenoiser` (`models/edm.py`)
are what Hydra builds from `conf/model/{diffusers,edm}.yaml`; both subclass `PretrainedModel`
here. Each has

* `check()`: cheap structural checks (files exist, JSON parses, values are sane), run by
  `cartoonist.pipeline.validate` before anything is created or computed; raises a one-line
  `ConfigError` naming `model.path`;
* `load()`: the network as a `cartoonist.models.adapters.ScoreModule` (score in log-SNR time,
  the trained λ range as its schedule, `event_shape` and `log_jacobian`).

Image conventions: model space is [−1, 1] with 8-bit pixels k ↦ x = 2(k + ½)/256 − 1, so
`log_jacobian = D log(2/256)` and bits/dim are on 8-bit pixels, as for our image data sets
(`cartoonist.data.sources`). `diffusers` is an optional extra:
`pip install 'cartoonist[diffusers]'`.
"""

from __future__ import annotations

import abc
import json
import math
from pathlib import Path

from cartoonist.data.sources import PIXEL_SCALE
from cartoonist.errors import ConfigError
from cartoonist.models.adapters import ScoreModule

__all__ = ["PretrainedModel", "pixel_log_jacobian"]


def pixel_log_jacobian(event_shape) -> float:
    """D log(2/256), nats: the 8-bit pixel → [−1, 1] map's log-Jacobian (for bits/dim)."""
    return math.prod(event_shape) * math.log(PIXEL_SCALE)


def _root_cause(e: BaseException) -> str:
    """First line of the innermost exception of a chain (the actual reason, e.g. a bad header)."""
    while (e.__cause__ or e.__context__) is not None:
        e = e.__cause__ or e.__context__
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"model.path: {what} {path} is unreadable: {_root_cause(e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"model.path: {what} {path} is not a JSON object")
    return data


def _event_shape(value, key: str = "model.event_shape") -> tuple[int, ...]:
    shape = tuple(value) if isinstance(value, (list, tuple)) else ()
    if not shape or not all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape
    ):
        raise ConfigError(
            f"{key} must be a list of positive integers (e.g. [3, 32, 32]), got {value!r}"
        )
    return shape


def _check_safetensors(path: Path) -> None:
    """A safetensors file is an 8-byte header length, a JSON header, then exactly the tensors."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        try:
            if n > size - 8:
                raise ValueError("truncated header")
            header = json.loads(f.read(n))
            ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ConfigError(f"model.path: corrupt weights file {path}: {e}") from None
    if 8 + n + max(ends, default=0) != size:
        raise ConfigError(f"model.path: corrupt (truncated?) weights file {path}")


class PretrainedModel(abc.ABC):
    """A pretrained network in a local file or folder (`model.path`)."""

    path: str

    @abc.abstractmethod
    def check(self) -> None:
        """Raise a one-line ConfigError naming model.path if it cannot be a model of this kind."""

    @abc.abstractmethod
    def load(self) -> ScoreModule:
        """The network as a score module (CPU, eval mode, no parameter gradients)."""
