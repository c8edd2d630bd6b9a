"""Loading a checkpoint written by `cartoonist.train`: the EMA denoiser and its training noise.

A checkpoint stores plain data: the architecture's name and arguments (`spec["net"]`), the
noise's arguments (`spec["noise"]`), the event shape and the log-Jacobian. The architecture is
looked up in a fixed table of our own classes, never imported from the name the file holds, so a
checkpoint cannot make the loader call anything else. Checkpoints written before the package was
reorganised name their classes with the same paths and keep loading.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cartoonist.diffusion.losses import TrainingNoise
from cartoonist.errors import ConfigError, format_error
from cartoonist.models.mlp import MLP
from cartoonist.models.unet import UNet

__all__ = ["ARCHITECTURES", "checkpoint_spec", "load_denoiser", "network_spec"]

# Every name a checkpoint may use for a network (the short and the module paths).
ARCHITECTURES: dict[str, type[nn.Module]] = {
    "cartoonist.models.MLP": MLP,
    "cartoonist.models.mlp.MLP": MLP,
    "cartoonist.models.UNet": UNet,
    "cartoonist.models.unet.UNet": UNet,
}
NOISES: dict[str, type[TrainingNoise]] = {
    "cartoonist.diffusion.losses.TrainingNoise": TrainingNoise,
    "cartoonist.diffusion.TrainingNoise": TrainingNoise,
}


def _kwargs(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if not k.startswith("_")}


def network_spec(spec: dict, event_shape) -> nn.Module:
    """Build the network a checkpoint's `spec["net"]` names (a class of `ARCHITECTURES`)."""
    cls = ARCHITECTURES.get(spec.get("_target_"))
    if cls is None:
        raise ConfigError(
            f"checkpoint names network {spec.get('_target_')!r}; known: "
            f"{', '.join(sorted(ARCHITECTURES))}"
        )
    return cls(event_shape=tuple(event_shape), **_kwargs(spec))


def _noise(spec: dict) -> TrainingNoise:
    cls = NOISES.get(spec.get("_target_"))
    if cls is None:
        raise ConfigError(f"checkpoint names noise {spec.get('_target_')!r}, not TrainingNoise")
    return cls(**_kwargs(spec))


def _load(path, allow_pickle: bool, mmap: bool = False):
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_pickle, mmap=mmap)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"cannot load checkpoint {path}: {format_error(e)}") from e


def checkpoint_spec(path: str | Path, allow_pickle: bool = False) -> dict:
    """The `spec` a training checkpoint stores (memory-mapped: the weights are not read).

    Raises:
        ConfigError: not loadable, or not a cartoonist training checkpoint (one line).
    """
    try:
        ck = _load(path, allow_pickle, mmap=True)
    except ConfigError:  # an old (non-zip) file cannot be memory-mapped
        ck = _load(path, allow_pickle)
    spec = ck.get("cartoonist") if isinstance(ck, dict) else None
    if not spec:
        raise ConfigError(f"{path} is not a cartoonist training checkpoint (no 'cartoonist' spec)")
    return spec


def load_denoiser(path: str | Path, allow_pickle: bool = False):
    """Rebuild the EMA denoiser and its noise from a training checkpoint.

    Loads with `torch.load(weights_only=True)` unless `allow_pickle` (pickles run code).

    Returns:
        (net in eval mode with EMA weights, TrainingNoise, spec dict).
    """
    ck = _load(path, allow_pickle)
    spec = ck.get("cartoonist") if isinstance(ck, dict) else None
    if not spec:
        raise ConfigError(f"{path} is not a cartoonist training checkpoint (no 'cartoonist' spec)")
    net = network_spec(spec["net"], spec["event_shape"])
    noise = _noise(spec["noise"])
    sd = ck["state_dict"]
    net.load_state_dict({k[4:]: v for k, v in sd.items() if k.startswith("ema.")})
    noise.load_state_dict({k[6:]: v for k, v in sd.items() if k.startswith("noise.")})
    return net.eval().requires_grad_(False), noise, spec
