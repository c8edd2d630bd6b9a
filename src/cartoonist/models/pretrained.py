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
import contextlib
import importlib
import inspect
import json
import math
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import Any, Iterator

from cartoonist.data.sources import PIXEL_SCALE
from cartoonist.errors import ConfigError
from cartoonist.models.adapters import ScoreModule

__all__ = ["PretrainedModel", "pixel_log_jacobian", "import_object", "build_object"]

IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


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


def _check_safetensors(path: Path, key: str = "model.path") -> None:
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
            raise ConfigError(f"{key}: corrupt weights file {path}: {e}") from None
    if 8 + n + max(ends, default=0) != size:
        raise ConfigError(f"{key}: corrupt (truncated?) weights file {path}")


# -- import paths (they run user code) ------------------------------------------------------------
@contextlib.contextmanager
def _explicit_sys_path(search_path) -> Iterator[None]:
    """sys.path without the working directory ('' , '.', cwd), plus `search_path` if given.

    `python -m` and the interactive interpreter put the working directory first on sys.path, so
    `import mynet` would silently run whatever mynet.py lies where the command is started. An
    import path is resolved only on the installed packages and PYTHONPATH, or in a folder the
    user names explicitly (`model.search_path`).
    """
    saved = list(sys.path)
    cwd = os.path.realpath(os.getcwd())

    def is_cwd(p: str) -> bool:
        return p in ("", ".") or os.path.realpath(p) == cwd

    sys.path[:] = [p for p in sys.path if not is_cwd(p)]
    if search_path is not None:
        sys.path.insert(0, str(Path(str(search_path)).expanduser().resolve()))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path[:] = saved


def import_object(path: str, search_path=None, key: str = "model.path"):
    """The object at import path `package.module:attr` (attr may be dotted). Runs user code.

    Args:
        path: "module:attr".
        search_path: a folder to import from, or None: the working directory is never searched
            implicitly (see `_explicit_sys_path`).
        key: the config key, for errors.

    Raises:
        ConfigError: one line naming `key`.
    """
    if search_path is not None and not Path(str(search_path)).expanduser().is_dir():
        raise ConfigError(f"model.search_path is not a folder: {search_path}")
    module, attr = str(path).split(":")
    try:
        with _explicit_sys_path(search_path):
            obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        hint = (
            " (the working directory is not searched: set model.search_path=<folder> to import "
            "from a folder)"
            if search_path is None and isinstance(e, ImportError)
            else ""
        )
        raise ConfigError(f"cannot import {key} {path}: {_root_cause(e)}{hint}") from None
    return obj


def _takes_positional(fn) -> bool:
    """Whether `fn` has a required positional parameter (an x to denoise or score)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind in kinds and p.default is inspect.Parameter.empty for p in params)


def build_object(obj, kwargs: dict | None, factory: bool | None, key: str = "model.path"):
    """The network an imported object stands for.

    A class, or a function called as a factory, is called with `kwargs`; any other callable is
    the network itself. `factory`: True (call it), False (it is the network), or None (decide:
    a class is called; a function with no required positional parameter — no x — is a factory).
    """
    kwargs = dict(kwargs or {})
    if factory is None:
        factory = isinstance(obj, type) or (inspect.isfunction(obj) and not _takes_positional(obj))
    if not factory:
        if kwargs:
            raise ConfigError(
                f"model.kwargs are given but {key} is not called as a factory (a class, or a "
                f"function without positional arguments; or set model.factory=true)"
            )
        return obj
    try:
        return obj(**kwargs)
    except TypeError as e:
        raise ConfigError(f"cannot build {key} with model.kwargs={kwargs}: {e}") from None


# -- state_dicts ----------------------------------------------------------------------------------
def is_state_dict(obj) -> bool:
    """A (possibly nested) dict whose leaves are all tensors: weights without the network."""
    import torch

    if not isinstance(obj, dict) or not obj:
        return False
    return all(isinstance(v, torch.Tensor) or is_state_dict(v) for v in obj.values())


STATE_DICT_ADVICE = "this is a state_dict: give model.path=module:Class and model.weights=<file>"


def check_not_a_state_dict(path: Path) -> None:
    """ConfigError if the file at model.path is a state_dict.

    A .safetensors file, or a torch file of tensors (read with weights_only=True: nothing is
    unpickled).
    """
    import torch

    if path.suffix == ".safetensors":
        raise ConfigError(f"model.path {path}: {STATE_DICT_ADVICE}")
    if not zipfile.is_zipfile(path):
        return
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not plain data: a whole pickled module, or not torch
        return
    if is_state_dict(obj):
        raise ConfigError(f"model.path {path}: {STATE_DICT_ADVICE}")


def load_weights(path, key: str = "model.weights") -> dict[str, Any]:
    """A state_dict from .safetensors or a torch file (weights_only=True: no pickled code)."""
    import torch

    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise ConfigError(f"{key} does not exist: {path}")
    try:
        if p.suffix == ".safetensors":
            _check_safetensors(p, key)
            from safetensors.torch import load_file

            sd = load_file(str(p), device="cpu")
        else:
            sd = torch.load(p, map_location="cpu", weights_only=True)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - any loading failure becomes one line
        raise ConfigError(
            f"cannot load {key} {path} (a state_dict, loaded with weights_only=True): "
            f"{_root_cause(e)}"
        ) from None
    if isinstance(sd, dict) and "state_dict" in sd and is_state_dict(sd["state_dict"]):
        sd = sd["state_dict"]
    if not is_state_dict(sd):
        raise ConfigError(f"{key} {path} is not a state_dict (a dict of tensors)")
    return sd


class PretrainedModel(abc.ABC):
    """A pretrained network in a local file or folder (`model.path`)."""

    path: str

    @abc.abstractmethod
    def check(self) -> None:
        """Raise a one-line ConfigError naming model.path if it cannot be a model of this kind."""

    @abc.abstractmethod
    def load(self) -> ScoreModule:
        """The network as a score module (CPU, eval mode, no parameter gradients)."""
