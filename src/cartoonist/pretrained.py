"""Pretrained models from local files, never the network: `model=diffusers` and `model=edm`.

The config objects below are what Hydra builds from `conf/model/{diffusers,edm}.yaml`. Each has

* `check()`: cheap structural checks (files exist, JSON parses, values are sane), run by
  `pipeline.validate` before anything is created or computed; raises a one-line `ConfigError`
  naming `model.path`;
* `load()`: the network as a `cartoonist.models.pretrained.ScoreModule` (score in log-SNR time,
  the trained λ range as its schedule, `event_shape` and `log_jacobian`).

Image conventions: model space is [−1, 1] with 8-bit pixels k ↦ x = 2(k + ½)/256 − 1, so
`log_jacobian = D log(2/256)` and bits/dim are on 8-bit pixels, as for our image data sets
(`cartoonist.data.sources`). `diffusers` is an optional extra:
`pip install 'cartoonist[diffusers]'`.
"""

from __future__ import annotations

import abc
import importlib
import json
import math
import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cartoonist.data.sources import PIXEL_SCALE
from cartoonist.diffusion.schedules import EDM, VP
from cartoonist.models.pretrained import (
    DiscreteUNetScore,
    EDMScore,
    ScoreModule,
    SigmaUNetScore,
    class_label_tensor,
)
from cartoonist.pipeline import ConfigError

__all__ = ["PretrainedModel", "DiffusersModel", "EDMDenoiser", "pixel_log_jacobian"]

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_WEIGHTS = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.bin.index.json",
)
_CONTINUOUS_SIGMA = ("ScoreSdeVeScheduler",)


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


# -- diffusers ----------------------------------------------------------------------------------
@dataclass
class DiffusersModel(PretrainedModel):
    """A diffusers `UNet2DModel` and its scheduler config, from a local folder.

    The folder is what `UNet2DModel.save_pretrained` plus `scheduler.save_pretrained` write
    (`config.json`, `diffusion_pytorch_model.safetensors` or `.bin`, `scheduler_config.json`), or a
    pipeline folder with `unet/` and `scheduler/` subfolders (as `DDPMPipeline.save_pretrained`
    writes it). Supported schedulers: any discrete-time one with ᾱ_n
    (DDPM, DDIM, PNDM, …; ε-, v- or x_0-prediction) and `ScoreSdeVeScheduler` (continuous σ).

    Args:
        path: the folder.
        timestep: "interpolate" (fractional timestep between trained steps; see
            `cartoonist.models.pretrained.DiscreteTimeMap`) or "nearest".
        class_labels: class index for a class-conditional UNet (every sample), else None.
        attention: "math" (PyTorch's math attention kernel: needed for JVP-based estimators) or
            "default" (fused kernels: faster pure sampling, no PF-ODE likelihood).
        data_range: [lo, hi] of the network's data; None: [−1, 1] for discrete-time models, [0, 1]
            for score-SDE VE models. Only VE models can be rescaled to our [−1, 1].
        event_shape: (C, H, W); None: from the UNet config (in_channels, sample_size).
    """

    path: str
    timestep: str = "interpolate"
    class_labels: int | None = None
    attention: str = "math"
    data_range: Any = None
    event_shape: Any = None

    def _dirs(self) -> tuple[Path, Path]:
        root = Path(str(self.path)).expanduser()
        if not root.exists():
            raise ConfigError(f"model.path does not exist: {self.path}")
        if not root.is_dir():
            raise ConfigError(f"model.path is not a folder (model=diffusers): {self.path}")
        unet = root / "unet" if (root / "unet" / "config.json").is_file() else root
        if not (unet / "config.json").is_file():
            raise ConfigError(f"model.path has no config.json (nor unet/config.json): {self.path}")
        for sched in (
            root / "scheduler" / "scheduler_config.json",
            root / "scheduler_config.json",
        ):
            if sched.is_file():
                return unet, sched
        raise ConfigError(
            f"model.path has no scheduler_config.json (nor scheduler/scheduler_config.json): "
            f"{self.path}"
        )

    def _configs(self) -> tuple[Path, dict, dict]:
        unet_dir, sched_file = self._dirs()
        unet = _read_json(unet_dir / "config.json", "UNet config")
        sched = _read_json(sched_file, "scheduler config")
        if unet.get("_class_name", "UNet2DModel") != "UNet2DModel":
            raise ConfigError(
                f"model.path holds a {unet['_class_name']}; model=diffusers takes a UNet2DModel "
                f"(pixel-space, unconditional or class-conditional): {self.path}"
            )
        weights = [unet_dir / w for w in _WEIGHTS if (unet_dir / w).is_file()]
        if not weights:
            raise ConfigError(f"model.path has no diffusion_pytorch_model weights: {unet_dir}")
        if weights[0].suffix == ".safetensors":
            _check_safetensors(weights[0])
        if "_class_name" not in sched:
            raise ConfigError(f"model.path: {sched_file} has no _class_name")
        return unet_dir, unet, sched

    def check(self) -> None:
        """Structural checks of the folder and the settings (no diffusers import)."""
        _, unet, sched = self._configs()
        if self.timestep not in ("interpolate", "nearest"):
            raise ConfigError(
                f"model.timestep must be interpolate or nearest, got {self.timestep!r}"
            )
        if self.attention not in ("math", "default"):
            raise ConfigError(f"model.attention must be math or default, got {self.attention!r}")
        if self.timestep == "interpolate" and unet.get("time_embedding_type") == "learned":
            raise ConfigError(
                "model.timestep=interpolate needs a continuous time embedding; this UNet looks "
                "timesteps up in a table: set model.timestep=nearest"
            )
        pred = sched.get("prediction_type", "epsilon")
        if pred not in ("epsilon", "v_prediction", "sample"):
            raise ConfigError(f"model.path: unsupported prediction_type {pred!r} in {self.path}")
        if sched.get("timestep_type", "discrete") != "discrete":
            raise ConfigError(
                f"model.path: timestep_type={sched['timestep_type']!r} is not supported "
                f"(discrete timesteps only): {self.path}"
            )
        if unet.get("num_class_embeds") and self.class_labels is None:
            raise ConfigError(
                f"the UNet is class-conditional ({unet['num_class_embeds']} classes): set "
                f"model.class_labels=<int>"
            )
        if self.class_labels is not None and not (
            unet.get("num_class_embeds") or unet.get("class_embed_type")
        ):
            raise ConfigError("model.class_labels is set but the UNet is not class-conditional")
        if self.data_range is not None and sched["_class_name"] not in _CONTINUOUS_SIGMA:
            lo, hi = self.data_range
            if (float(lo), float(hi)) != (-1.0, 1.0):
                raise ConfigError(
                    "model.data_range other than [-1, 1] is supported for VE (score-SDE) models "
                    "only: a VP model's data range cannot be rescaled"
                )
        self._shape(unet)

    def _shape(self, unet: dict) -> tuple[int, ...]:
        if self.event_shape is not None:
            return _event_shape(list(self.event_shape))
        size = unet.get("sample_size")
        if size is None:
            raise ConfigError("the UNet config has no sample_size: set model.event_shape=[C,H,W]")
        hw = [size, size] if isinstance(size, int) else list(size)
        return _event_shape([unet.get("in_channels", 3)] + hw, "UNet (in_channels, sample_size)")

    def load(self) -> ScoreModule:
        """Load the UNet (weights_only for .bin files, as diffusers does) and the scheduler."""
        self.check()
        unet_dir, unet_cfg, sched_cfg = self._configs()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only, never the Hub
        try:
            import diffusers
        except ImportError:
            raise ConfigError(
                "model=diffusers needs the diffusers package: pip install 'cartoonist[diffusers]'"
            ) from None
        try:
            net = diffusers.UNet2DModel.from_pretrained(
                str(unet_dir), local_files_only=True, low_cpu_mem_usage=False
            )
        except Exception as e:  # noqa: BLE001 - any loading failure becomes one line
            raise ConfigError(f"cannot load the UNet in {unet_dir}: {_root_cause(e)}") from None
        cls = getattr(diffusers, sched_cfg["_class_name"], None)
        if cls is None or not hasattr(cls, "from_config"):
            raise ConfigError(f"model.path: unknown scheduler {sched_cfg['_class_name']!r}")
        sched = cls.from_config(sched_cfg)
        net = net.eval().requires_grad_(False)
        shape = self._shape(unet_cfg)
        try:
            labels = class_label_tensor(self.class_labels, None)
        except ValueError as e:
            raise ConfigError(f"model.class_labels: {e}") from None
        common = dict(
            event_shape=shape,
            log_jacobian=pixel_log_jacobian(shape),
            class_labels=labels,
            math_attention=self.attention == "math",
        )
        if sched_cfg["_class_name"] in _CONTINUOUS_SIGMA:
            rng = self.data_range if self.data_range is not None else (0.0, 1.0)
            c = sched.config
            return SigmaUNetScore(net, c.sigma_min, c.sigma_max, rng, **common)
        if getattr(sched, "alphas_cumprod", None) is None:
            raise ConfigError(
                f"model.path: scheduler {sched_cfg['_class_name']} has no discrete ᾱ schedule "
                f"(alphas_cumprod) and is not a continuous-σ VE scheduler"
            )
        pred = sched.config.get("prediction_type", "epsilon")
        return DiscreteUNetScore(net, sched.alphas_cumprod, pred, timestep=self.timestep, **common)


# -- EDM-style denoisers --------------------------------------------------------------------------
@dataclass
class EDMDenoiser(PretrainedModel):
    """Any callable D(x, σ, class_labels) ≈ E[x_0 | x = x_0 + σ ε] (Karras et al. 2022).

    `path` is one of
      * an import path `package.module:attr` (a callable, or a class built with no arguments);
      * a TorchScript file (`torch.jit.save`);
      * a pickle (`pickle.dump`, e.g. an EDM network pickle whose defining code is importable, or
        `torch.save` of a whole module): only with `allow_pickle=true`, since unpickling runs code.
        A dict is indexed with `pickle_key` (EDM pickles store the network under "ema").

    Args:
        path: see above.
        event_shape: shape of one example, e.g. [3, 64, 64] (a callable does not say).
        sigma_min, sigma_max: the noise range the denoiser was trained on (EDM: 0.002, 80).
        class_labels: None, an int (one class for every sample; one-hot when the network has a
            `label_dim`) or a list (one label vector for every sample).
        schedule: "vp" (our default x-space, α² = sigmoid λ) or "edm" (VE, α = 1). Both give the
            same λ range [−2 log σ_max, −2 log σ_min].
        allow_pickle: allow loading a pickle (it runs code).
        pickle_key: key of the network in a pickled dict.
    """

    path: str
    event_shape: Any = None
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    class_labels: Any = None
    schedule: str = "vp"
    allow_pickle: bool = False
    pickle_key: str = "ema"

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
        if _IMPORT_PATH.match(str(self.path)):
            return "import"
        raise ConfigError(
            f"model.path does not exist and is not an import path 'module:attr': {self.path}"
        )

    def check(self) -> None:
        """Path kind, pickle permission, shape and σ range."""
        try:
            kind = self._kind()
        except (OSError, zipfile.BadZipFile) as e:
            raise ConfigError(f"model.path is unreadable: {self.path}: {_root_cause(e)}") from None
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
            module, attr = path.split(":")
            try:
                obj = importlib.import_module(module)
                for part in attr.split("."):
                    obj = getattr(obj, part)
            except (ImportError, AttributeError) as e:
                raise ConfigError(f"cannot import model.path {path}: {_root_cause(e)}") from None
            return obj() if isinstance(obj, type) else obj
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
        if isinstance(obj, dict):
            if self.pickle_key not in obj:
                raise ConfigError(
                    f"model.path {path} holds a dict without {self.pickle_key!r} "
                    f"(keys: {sorted(map(str, obj))}): set model.pickle_key"
                )
            obj = obj[self.pickle_key]
        return obj

    def load(self) -> ScoreModule:
        """The denoiser as a score module (see `cartoonist.models.pretrained.EDMScore`)."""
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
        try:
            labels = class_label_tensor(self.class_labels, label_dim)
        except ValueError as e:
            raise ConfigError(f"model.class_labels: {e}") from None
        lo, hi = -2 * math.log(float(self.sigma_max)), -2 * math.log(float(self.sigma_min))
        schedule = VP(lo, hi) if self.schedule == "vp" else EDM(lo, hi)
        shape = _event_shape(list(self.event_shape))
        return EDMScore(obj, schedule, shape, pixel_log_jacobian(shape), labels)
