"""`model=edm`: an EDM-style denoiser D(x, σ, class_labels) from an import path or a file."""

from __future__ import annotations

import math
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cartoonist.diffusion.schedules import EDM, VP
from cartoonist.errors import ConfigError
from cartoonist.models.adapters import EDMScore, ScoreModule
from cartoonist.models.class_labels import ClassLabels
from cartoonist.models.pretrained import (
    IMPORT_PATH,
    STATE_DICT_ADVICE,
    PretrainedModel,
    _event_shape,
    _root_cause,
    build_object,
    check_not_a_state_dict,
    import_object,
    is_state_dict,
    load_weights,
    pixel_log_jacobian,
)

__all__ = ["EDMDenoiser"]


@dataclass
class EDMDenoiser(PretrainedModel):
    """Any callable D(x, σ, class_labels) ≈ E[x_0 | x = x_0 + σ ε] (Karras et al. 2022).

    `path` is one of
      * an import path `package.module:attr`: the denoiser itself (a callable D(x, σ, …)), or a
        class or factory function that builds it, called with `kwargs`. A class is always
        called; a function is a factory when it takes no required positional argument (no x),
        or when `factory=true`. The import runs that module's code, and never searches the
        working directory: a module in a folder of your own needs `search_path=<folder>`.
        `weights` (a state_dict: .safetensors, or a torch file read with weights_only=True)
        are then loaded into the built module;
      * a TorchScript file (`torch.jit.save`);
      * a pickle (`pickle.dump`, e.g. an EDM network pickle whose defining code is importable, or
        `torch.save` of a whole module): only with `allow_pickle=true`, since unpickling runs code.
        A dict is indexed with `pickle_key` (EDM pickles store the network under "ema").
    A state_dict (weights only) at `path` is refused with the advice to give the class and the
    weights.

    Args:
        path: see above.
        event_shape: shape of one example, e.g. [3, 64, 64] (a callable does not say).
        sigma_min, sigma_max: the noise range the denoiser was trained on (EDM: 0.002, 80).
        class_labels: None, or per-sample labels (`cartoonist.models.class_labels`): an int, a
            list of ints (cycled over sample ids), a list of label vectors, a .txt/.csv file or
            "cycle"; one-hot rows when the network has a `label_dim` (range-checked against it).
        schedule: "vp" (our default x-space, α² = sigmoid λ) or "edm" (VE, α = 1). Both give the
            same λ range [−2 log σ_max, −2 log σ_min].
        allow_pickle: allow loading a pickle (it runs code).
        pickle_key: key of the network in a pickled dict.
        kwargs: keyword arguments of the class or factory at an import path.
        factory: None (decide as above), true or false.
        weights: a state_dict file for the module built from an import path, or None.
        search_path: a folder to import the module from (never the working directory
            implicitly), or None.
    """

    kind = "edm"  # the model= option, used in run names
    path: str
    event_shape: Any = None
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    class_labels: Any = None
    schedule: str = "vp"
    allow_pickle: bool = False
    pickle_key: str = "ema"
    kwargs: Any = None
    factory: Any = None
    weights: Any = None
    search_path: Any = None

    def _kind(self) -> str:
        p = Path(str(self.path)).expanduser()
        if p.is_file():
            if zipfile.is_zipfile(p):
                with zipfile.ZipFile(p) as z:
                    names = z.namelist()
                if any("/code/" in n or n.endswith("constants.pkl") for n in names):
                    return "torchscript"
            return "pickle"
        if p.exists():
            raise ConfigError(f"model.path is not a file (model=edm): {self.path}")
        if IMPORT_PATH.match(str(self.path)):
            return "import"
        raise ConfigError(
            f"model.path does not exist and is not an import path 'module:attr': {self.path}"
        )

    def shape(self) -> tuple[int, ...]:
        """(C, H, W) of one sample: model.event_shape."""
        return _event_shape(None if self.event_shape is None else list(self.event_shape))

    def check(self) -> None:
        """Path kind, pickle permission, shape and σ range."""
        try:
            kind = self._kind()
        except (OSError, zipfile.BadZipFile) as e:
            raise ConfigError(f"model.path is unreadable: {self.path}: {_root_cause(e)}") from None
        if kind == "pickle":  # (a TorchScript archive is a network, never a state_dict)
            check_not_a_state_dict(Path(str(self.path)).expanduser())
        if kind != "import":
            if self.weights is not None:
                raise ConfigError(
                    "model.weights are loaded into a module built from an import path: give "
                    "model.path=module:Class"
                )
        if self.factory not in (None, True, False):
            raise ConfigError(f"model.factory must be null, true or false, got {self.factory!r}")
        if kind == "pickle" and not self.allow_pickle:
            raise ConfigError(
                f"model.path is a pickle, and unpickling runs code: set model.allow_pickle=true "
                f"only if you trust {self.path}"
            )
        _event_shape(None if self.event_shape is None else list(self.event_shape))
        if not 0 < float(self.sigma_min) < float(self.sigma_max):
            raise ConfigError(
                f"need 0 < model.sigma_min < model.sigma_max, got "
                f"{self.sigma_min}, {self.sigma_max}"
            )
        if self.schedule not in ("vp", "edm"):
            raise ConfigError(f"model.schedule must be vp or edm, got {self.schedule!r}")

    def _object(self, kind: str):
        path = str(self.path)
        if kind == "import":
            obj = import_object(path, self.search_path)
            obj = build_object(obj, self.kwargs, self.factory)
            if self.weights is not None:
                _load_state(obj, load_weights(self.weights), self.weights)
            return obj
        try:
            if kind == "torchscript":
                return torch.jit.load(path, map_location="cpu")
            if zipfile.is_zipfile(path):  # torch.save of a whole module
                obj = torch.load(path, map_location="cpu", weights_only=False)
            else:
                with open(path, "rb") as f:
                    obj = pickle.load(f)
        except Exception as e:  # noqa: BLE001 - any loading failure becomes one line
            raise ConfigError(f"cannot load model.path {path}: {_root_cause(e)}") from None
        if is_state_dict(obj):
            raise ConfigError(f"model.path {path}: {STATE_DICT_ADVICE}")
        if isinstance(obj, dict):
            if self.pickle_key not in obj:
                raise ConfigError(
                    f"model.path {path} holds a dict without {self.pickle_key!r} "
                    f"(keys: {sorted(map(str, obj))}): set model.pickle_key"
                )
            obj = obj[self.pickle_key]
        return obj

    def load(self) -> ScoreModule:
        """The denoiser as a score module (see `cartoonist.models.adapters.EDMScore`)."""
        self.check()
        obj = self._object(self._kind())
        if not callable(obj):
            raise ConfigError(
                f"model.path {self.path} gives a {type(obj).__name__}, "
                f"not a callable D(x, σ, labels)"
            )
        if isinstance(obj, nn.Module):
            obj = obj.eval()
            for p in obj.parameters():  # (ScriptModules have no requires_grad_)
                p.requires_grad_(False)
        label_dim = getattr(obj, "label_dim", None)
        label_dim = int(label_dim) if isinstance(label_dim, int) and label_dim > 0 else None
        labels = None
        if self.class_labels is not None:
            labels = ClassLabels(self.class_labels, label_dim, one_hot=label_dim is not None)
        lo, hi = -2 * math.log(float(self.sigma_max)), -2 * math.log(float(self.sigma_min))
        schedule = VP(lo, hi) if self.schedule == "vp" else EDM(lo, hi)
        shape = _event_shape(list(self.event_shape))
        return EDMScore(obj, schedule, shape, pixel_log_jacobian(shape), labels)


def _load_state(module, state: dict, where) -> None:
    """Load a state_dict into the built module (strict: every key must match)."""
    if not isinstance(module, nn.Module):
        raise ConfigError(
            f"model.weights given, but model.path builds a {type(module).__name__}, not an "
            f"nn.Module"
        )
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ConfigError(
            f"model.weights {where} do not fit the module: {' '.join(first[:2])[:300]}"
        ) from None
