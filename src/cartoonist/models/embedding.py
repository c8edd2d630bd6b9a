"""Sinusoidal embedding of the log-SNR λ = log(α²/σ²), followed by a small MLP.

Choice of scaling: the network is conditioned on λ directly (not on a discrete DDPM step), so the
embedding is schedule-agnostic — any schedule (VP, VE, EDM, Flow) that reports λ can drive the same
network. λ is multiplied by ``lam_scale`` (default 50) before the usual transformer/DDPM sinusoid,
so λ ∈ [−10, 13] becomes u ∈ [−500, 650], the range the classic frequencies (1 … 1/max_period) are
tuned for (DDPM steps t ∈ [0, 1000]). The highest frequency then has a period of 2π/50 ≈ 0.13 in
λ (fine resolution), and the lowest is effectively linear over |λ| ≲ 20 (coarse, monotone
information), so nearby λ values map to distinct, smoothly varying features. Unlike
t = sigmoid(−λ/2)·1000 this does not saturate at the ends of the λ range.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["LambdaEmbedding", "sinusoidal_embedding", "batch_lam"]


def sinusoidal_embedding(u: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Transformer-style sinusoidal features of a scalar per sample.

    Args:
        u: values, shape [B].
        dim: number of features (an odd ``dim`` gets one trailing zero column).
        max_period: the longest period; frequencies are geometric in [1/max_period, 1].

    Returns:
        Tensor of shape [B, dim]: ``[cos(u f_0), …, cos(u f_{h-1}), sin(u f_0), …]``, h = dim // 2.
    """
    half = dim // 2
    k = torch.arange(half, device=u.device, dtype=u.dtype)
    freqs = torch.exp(-math.log(max_period) * k / max(half, 1))
    args = u[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def batch_lam(lam: Tensor | float, batch: int, like: Tensor) -> Tensor:
    """λ as a [batch] tensor with the dtype/device of ``like``.

    Args:
        lam: shape [batch], [1], 0-d, or a Python float (the latter three are broadcast).
        batch: the batch size B.
        like: a tensor whose dtype and device the result takes.

    Returns:
        Tensor of shape [B].

    Raises:
        ValueError: if ``lam`` has more than one element but not exactly ``batch``.
    """
    if not isinstance(lam, Tensor):
        lam = torch.tensor(lam)
    lam = lam.to(device=like.device, dtype=like.dtype).reshape(-1)
    if lam.shape[0] == 1 and batch != 1:
        lam = lam.expand(batch)
    elif lam.shape[0] != batch:
        raise ValueError(f"lam must have shape [{batch}] (or be a scalar), got {tuple(lam.shape)}")
    return lam


class LambdaEmbedding(nn.Module):
    """Embedding λ [B] → [B, dim]: sinusoid of ``lam_scale · λ`` followed by Linear–SiLU–Linear.

    Args:
        dim: embedding width (sinusoid width, MLP hidden width and output width); at least 2.
        max_period: longest sinusoid period (in units of ``lam_scale · λ``); must be > 1.
        lam_scale: factor applied to λ before the sinusoid (see module docstring); must be > 0.

    Shapes:
        lam: [B] (a 0-d tensor or Python float is broadcast to [1]). Output: [B, dim], in the dtype
        of the module's parameters.
    """

    def __init__(self, dim: int, max_period: float = 10000.0, lam_scale: float = 50.0):
        super().__init__()
        if not isinstance(dim, int) or dim < 2:
            raise ValueError(f"dim must be an int >= 2, got {dim!r}")
        if not max_period > 1.0:
            raise ValueError(f"max_period must be > 1, got {max_period!r}")
        if not lam_scale > 0.0:
            raise ValueError(f"lam_scale must be > 0, got {lam_scale!r}")
        self.dim = dim
        self.max_period = float(max_period)
        self.lam_scale = float(lam_scale)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, lam: Tensor) -> Tensor:
        """Embed λ.

        Args:
            lam: log-SNR values, shape [B] (or 0-d).

        Returns:
            Tensor of shape [B, dim].
        """
        w = self.mlp[0].weight
        if not isinstance(lam, Tensor):
            lam = torch.tensor(lam)
        lam = lam.to(device=w.device, dtype=w.dtype).reshape(-1)
        return self.mlp(sinusoidal_embedding(lam * self.lam_scale, self.dim, self.max_period))

    def extra_repr(self) -> str:
        """Hyper-parameters shown by ``repr``."""
        return f"dim={self.dim}, max_period={self.max_period:g}, lam_scale={self.lam_scale:g}"
