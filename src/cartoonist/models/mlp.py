"""Residual MLP ε-prediction network for low-dimensional (or flattened) data."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from cartoonist.models.embedding import LambdaEmbedding, batch_lam

__all__ = ["MLP"]


def _check_event_shape(event_shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in event_shape)
    except (TypeError, ValueError) as e:
        raise ValueError(f"event_shape must be a sequence of ints, got {event_shape!r}") from e
    if len(shape) == 0 or any(s < 1 for s in shape):
        raise ValueError(f"event_shape must be non-empty with positive sizes, got {event_shape!r}")
    return shape


class _ResBlock(nn.Module):
    """h ← h + Linear(SiLU(Linear(SiLU(Norm(h))) + E(emb)))."""

    def __init__(self, hidden: int, emb_dim: int, layer_norm: bool):
        super().__init__()
        self.norm = nn.LayerNorm(hidden) if layer_norm else nn.Identity()
        self.fc1 = nn.Linear(hidden, hidden)
        self.emb = nn.Linear(emb_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.act = nn.SiLU()

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        z = self.fc1(self.act(self.norm(h))) + self.emb(emb)
        return h + self.fc2(self.act(z))


class MLP(nn.Module):
    """Noise-prediction MLP ε̂(x, λ) with residual SiLU blocks conditioned on λ.

    x is flattened to D = prod(event_shape) features, concatenated with the λ embedding, mapped to
    ``hidden`` units, passed through ``depth`` residual blocks (each of which also adds a learned
    projection of the embedding), then normalised and projected back to D outputs by a
    zero-initialised linear layer (so ε̂ ≡ 0 at initialisation).

    Samples never interact (LayerNorm normalises per sample), so the Jacobian with respect to a
    batch is block diagonal, as the likelihood code assumes.

    Args:
        event_shape: shape of one sample, e.g. (2,) or (1, 8, 8).
        hidden: width of the hidden layers (>= 1).
        depth: number of residual blocks (>= 1).
        emb_dim: width of the λ embedding (>= 2).
        layer_norm: use LayerNorm before each block and the output layer.

    Shapes:
        x: [B, *event_shape]; lam: [B] (or a scalar, broadcast). Output: [B, *event_shape], in
        x's dtype (computation runs in the parameters' dtype).
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        hidden: int = 256,
        depth: int = 3,
        emb_dim: int = 64,
        layer_norm: bool = True,
    ):
        super().__init__()
        self.event_shape = _check_event_shape(event_shape)
        if not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be a positive int, got {hidden!r}")
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive int, got {depth!r}")
        if not isinstance(emb_dim, int) or emb_dim < 2:
            raise ValueError(f"emb_dim must be an int >= 2, got {emb_dim!r}")
        d = 1
        for s in self.event_shape:
            d *= s
        self.dim = d
        self.embed = LambdaEmbedding(emb_dim)
        self.inp = nn.Linear(d + emb_dim, hidden)
        self.blocks = nn.ModuleList(_ResBlock(hidden, emb_dim, layer_norm) for _ in range(depth))
        self.out_norm = nn.LayerNorm(hidden) if layer_norm else nn.Identity()
        self.act = nn.SiLU()
        self.out = nn.Linear(hidden, d)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, lam: Tensor) -> Tensor:
        """Predict the noise.

        Args:
            x: noisy samples, shape [B, *event_shape].
            lam: log-SNR per sample, shape [B] (or a scalar).

        Returns:
            ε̂ of shape [B, *event_shape].
        """
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"x must have shape [B, {', '.join(map(str, self.event_shape))}], "
                f"got {tuple(x.shape)}"
            )
        w = self.inp.weight
        b = x.shape[0]
        emb = self.embed(batch_lam(lam, b, w))
        h = self.inp(torch.cat([x.reshape(b, self.dim).to(w.dtype), emb], dim=-1))
        for block in self.blocks:
            h = block(h, emb)
        eps = self.out(self.act(self.out_norm(h)))
        return eps.reshape(x.shape).to(x.dtype)
