"""`model=diffusers`: a diffusers `UNet2DModel` and its scheduler from a local folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cartoonist.errors import ConfigError
from cartoonist.models.adapters import ScoreModule
from cartoonist.models.class_labels import ClassLabels
from cartoonist.models.diffusers_adapters import DiscreteUNetScore, SigmaUNetScore
from cartoonist.models.diffusers_folders import (
    WEIGHTS,
    check_choice,
    check_weights,
    model_folder,
    scheduler_from_config,
)
from cartoonist.models.pretrained import (
    PretrainedModel,
    _event_shape,
    _read_json,
    _root_cause,
    pixel_log_jacobian,
)

__all__ = ["DiffusersModel"]

_WEIGHTS = (
    *WEIGHTS,
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.bin.index.json",
)
_CONTINUOUS_SIGMA = ("ScoreSdeVeScheduler",)


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
            `cartoonist.models.diffusers_adapters.DiscreteTimeMap`) or "nearest".
        class_labels: for a class-conditional UNet (`num_class_embeds`): an int (every sample),
            a list (sample i gets entry i mod its length), a .txt/.csv file of labels or
            "cycle" (sample i gets class i mod num_class_embeds); see
            `cartoonist.models.class_labels`. Range-checked in `check()`.
        attention: "math" (PyTorch's math attention kernel: needed for JVP-based estimators) or
            "default" (fused kernels: faster pure sampling, no PF-ODE likelihood).
        data_range: [lo, hi] of the network's data; None: [−1, 1] for discrete-time models, [0, 1]
            for score-SDE VE models. Only VE models can be rescaled to our [−1, 1].
        event_shape: (C, H, W); None: from the UNet config (in_channels, sample_size).
    """

    kind = "diffusers"  # the model= option, used in run names
    path: str
    timestep: str = "interpolate"
    class_labels: Any = None
    attention: str = "math"
    data_range: Any = None
    event_shape: Any = None
    prompt: Any = None  # refused: a UNet2DModel takes no text (model=stable_diffusion does)

    def _dirs(self) -> tuple[Path, Path]:
        root = model_folder(self.path, self.kind)
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
                f"(pixel-space, unconditional or class-conditional; a Stable Diffusion folder is "
                f"model=stable_diffusion): {self.path}"
            )
        missing = f"model.path has no diffusion_pytorch_model weights: {unet_dir}"
        check_weights(unet_dir, _WEIGHTS, missing)
        if "_class_name" not in sched:
            raise ConfigError(f"model.path: {sched_file} has no _class_name")
        return unet_dir, unet, sched

    def check(self) -> None:
        """Structural checks of the folder and the settings (no diffusers import)."""
        if self.prompt not in (None, ""):
            raise ConfigError(
                "model.prompt: model=diffusers (a UNet2DModel) is not text-conditional; a "
                "Stable Diffusion folder is model=stable_diffusion"
            )
        _, unet, sched = self._configs()
        check_choice("timestep", self.timestep, ("interpolate", "nearest"))
        check_choice("attention", self.attention, ("math", "default"))
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
                f"model.class_labels=<int>, a list, a file of labels or cycle"
            )
        if self.class_labels is not None and not (
            unet.get("num_class_embeds") or unet.get("class_embed_type")
        ):
            raise ConfigError("model.class_labels is set but the UNet is not class-conditional")
        self._labels(unet)
        if self.data_range is not None and sched["_class_name"] not in _CONTINUOUS_SIGMA:
            lo, hi = self.data_range
            if (float(lo), float(hi)) != (-1.0, 1.0):
                raise ConfigError(
                    "model.data_range other than [-1, 1] is supported for VE (score-SDE) models "
                    "only: a VP model's data range cannot be rescaled"
                )
        self._shape(unet)

    def shape(self) -> tuple[int, ...]:
        """(C, H, W) of one sample, from the folder's UNet config (nothing loaded)."""
        return self._shape(self._configs()[1])

    def _labels(self, unet: dict) -> ClassLabels | None:
        """Per-sample labels, range-checked against num_class_embeds (ConfigError)."""
        if self.class_labels is None:
            return None
        return ClassLabels(self.class_labels, unet.get("num_class_embeds") or None)

    def _shape(self, unet: dict) -> tuple[int, ...]:
        size = unet.get("sample_size")
        channels = unet.get("in_channels", 3)
        if self.event_shape is not None:
            shape = _event_shape(list(self.event_shape))
            hw = [size, size] if isinstance(size, int) else list(size or [])
            if len(shape) != 3 or shape[0] != channels or (hw and list(shape[1:]) != hw):
                raise ConfigError(
                    f"model.event_shape={list(shape)} does not fit the UNet: its config has "
                    f"in_channels={channels}, sample_size={size} (drop model.event_shape)"
                )
            return shape
        if size is None:
            raise ConfigError("the UNet config has no sample_size: set model.event_shape=[C,H,W]")
        hw = [size, size] if isinstance(size, int) else list(size)
        return _event_shape([channels] + hw, "UNet (in_channels, sample_size)")

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
        sched = scheduler_from_config(diffusers, sched_cfg)
        net = net.eval().requires_grad_(False)
        shape = self._shape(unet_cfg)
        common = dict(
            event_shape=shape,
            log_jacobian=pixel_log_jacobian(shape),
            class_labels=self._labels(unet_cfg),
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
