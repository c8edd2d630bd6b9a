"""Tiny randomly initialised pretrained-model folders for offline tests of model=diffusers/edm."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tiny_unet(channels: int = 3, size: int = 8, seed: int = 0, **kw):
    """A ~45k-parameter UNet2DModel with one attention level (random weights)."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    args = dict(
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        attention_head_dim=4,
    )
    args.update(kw)
    return UNet2DModel(**args).eval()


def save_tiny_diffusers(
    folder: Path,
    prediction_type: str = "epsilon",
    scheduler: str = "DDPMScheduler",
    channels: int = 3,
    num_train_timesteps: int = 1000,
    pipeline_layout: bool = False,
    **unet_kw,
) -> Path:
    """Save a tiny UNet and a scheduler config to `folder` (flat, or unet/ + scheduler/)."""
    import diffusers

    folder = Path(folder)
    if scheduler == "ScoreSdeVeScheduler":
        sched = diffusers.ScoreSdeVeScheduler(sigma_min=0.01, sigma_max=50.0)
        unet_kw.setdefault("time_embedding_type", "fourier")
    else:
        sched = getattr(diffusers, scheduler)(
            num_train_timesteps=num_train_timesteps, prediction_type=prediction_type
        )
    if unet_kw.get("time_embedding_type") == "learned":  # an nn.Embedding over the steps
        unet_kw.setdefault("num_train_timesteps", num_train_timesteps)
    unet = tiny_unet(channels, **unet_kw)
    unet.save_pretrained(folder / "unet" if pipeline_layout else folder)
    sched.save_pretrained(folder / "scheduler" if pipeline_layout else folder)
    return folder


class GaussianDenoiser(nn.Module):
    """Exact EDM denoiser of x_0 ~ N(μ_c, s² I): D(y, σ, c) = μ_c + s²/(s² + σ²) (y − μ_c).

    Unconditional (label_dim = 0): μ = 0. Conditional: one-hot labels of `label_dim` classes with
    μ_c = c − 1. Under the VP path x = α x_0 + σ ε the score is (α μ_c − x)/(α² s² + σ²).
    """

    def __init__(self, s: float = 0.5, label_dim: int = 0):
        super().__init__()
        self.s2 = s * s
        self.label_dim = label_dim
        self.register_buffer("class_means", torch.arange(max(label_dim, 1)).double() - 1.0)

    def forward(self, x: Tensor, sigma: Tensor, class_labels: Optional[Tensor] = None) -> Tensor:
        shape = [-1] + [1] * (x.dim() - 1)
        sig2 = sigma.reshape(shape).to(x.dtype) ** 2
        mu = torch.zeros_like(x)
        if class_labels is not None:
            mu = mu + (class_labels.to(x.dtype) @ self.class_means.to(x.dtype)).reshape(shape)
        return mu + self.s2 / (self.s2 + sig2) * (x - mu)


class ConditionalDenoiser(GaussianDenoiser):
    """Import-path target: the class-conditional Gaussian denoiser with 3 classes."""

    def __init__(self):
        super().__init__(0.5, 3)


def exact_denoiser(x: Tensor, sigma: Tensor) -> Tensor:
    """Import-path target: a plain function D(x, σ) (the unconditional s = 0.5 case)."""
    return 0.25 / (0.25 + sigma.reshape([-1] + [1] * (x.dim() - 1)) ** 2) * x


def make_denoiser(s: float = 0.5, label_dim: int = 0) -> GaussianDenoiser:
    """Import-path target: a factory function (no positional argument), called with kwargs."""
    return GaussianDenoiser(s, label_dim)


class TinyEpsNet(nn.Module):
    """Import-path target for model=network: ε(x, n) with an nn.Embedding over `steps` steps."""

    def __init__(self, channels: int = 1, steps: int = 1000):
        super().__init__()
        self.emb = nn.Embedding(steps, channels)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return torch.tanh(0.5 * x + self.emb(t)[:, :, None, None])
