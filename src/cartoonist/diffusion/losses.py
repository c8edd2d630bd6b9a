"""Denoising score-matching loss in log-SNR time, with Kingma & Gao (2023) weighting and sampling.

With ε-prediction the weighted denoising loss is

    L(x_0) = ½ ∫_{λ_min}^{λ_max} w(λ) E_ε ‖ε̂(α x_0 + σ ε, λ) − ε‖² dλ,

estimated with λ ~ q(λ) as ½ w(λ)/q(λ) ‖ε̂ − ε‖². w ≡ 1 is the ELBO (likelihood) weighting — up to
constants the negative ELBO of `cartoonist.diffusion.elbo` — and w(λ) = sigmoid(b − λ) the
"quality" weighting of the authors' second CIFAR-10 model (digest §4.1). The proposal q is uniform
or adaptive: a histogram over λ-bins proportional to an exponential moving average of the per-bin
weighted loss, which minimises the estimator's variance (Kingma & Gao 2023, app. F). λ is drawn
low-discrepancy over the batch (one stratum per example). The loss is reported per dimension.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from cartoonist.diffusion.schedules import EDM, VE, VP, Flow, Schedule

__all__ = ["TrainingNoise", "make_schedule"]

_SCHEDULES = {"vp": VP, "ve": VE, "edm": EDM, "flow": Flow}


def make_schedule(kind: str, lambda_min: float, lambda_max: float) -> Schedule:
    """Schedule by name ("vp", "ve", "edm", "flow") on [lambda_min, lambda_max]."""
    if kind not in _SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(_SCHEDULES)}, got {kind!r}")
    return _SCHEDULES[kind](float(lambda_min), float(lambda_max))


class TrainingNoise(nn.Module):
    """A noise schedule with its training distribution of λ and loss weighting.

    Args:
        schedule: "vp", "ve", "edm" or "flow".
        lambda_min, lambda_max: log-SNR range of training and sampling.
        weighting: "elbo" (w = 1) or "sigmoid" (w = sigmoid(sigmoid_bias − λ)).
        sigmoid_bias: b of the sigmoid weighting.
        importance: "uniform" or "adaptive" (histogram proposal, Kingma & Gao 2023).
        bins: histogram bins of the adaptive proposal.
        ema: decay of the per-bin loss average.
        floor: fraction of uniform mass kept in the adaptive proposal.
    """

    def __init__(
        self,
        schedule: str = "vp",
        lambda_min: float = -10.0,
        lambda_max: float = 10.0,
        weighting: str = "elbo",
        sigmoid_bias: float = 2.0,
        importance: str = "adaptive",
        bins: int = 100,
        ema: float = 0.99,
        floor: float = 0.05,
    ):
        super().__init__()
        self.schedule = make_schedule(schedule, lambda_min, lambda_max)
        if weighting not in ("elbo", "sigmoid"):
            raise ValueError(f"weighting must be 'elbo' or 'sigmoid', got {weighting!r}")
        if importance not in ("uniform", "adaptive"):
            raise ValueError(f"importance must be 'uniform' or 'adaptive', got {importance!r}")
        if not (isinstance(bins, int) and bins >= 1 and 0 <= ema < 1 and 0 < floor <= 1):
            raise ValueError("need bins ≥ 1, 0 ≤ ema < 1 and 0 < floor ≤ 1")
        self.weighting, self.sigmoid_bias = weighting, float(sigmoid_bias)
        self.importance, self.ema, self.floor = importance, float(ema), float(floor)
        edges = torch.linspace(float(lambda_min), float(lambda_max), bins + 1, dtype=torch.float64)
        self.register_buffer("edges", edges)
        self.register_buffer("bin_loss", torch.ones(bins, dtype=torch.float64))

    def weight(self, lam: Tensor) -> Tensor:
        """w(λ), [B]."""
        if self.weighting == "elbo":
            return torch.ones_like(lam)
        return torch.sigmoid(self.sigmoid_bias - lam)

    def _probs(self) -> Tensor:
        if self.importance == "uniform":
            return torch.full_like(self.bin_loss, 1.0 / self.bin_loss.numel())
        p = self.bin_loss / self.bin_loss.sum()
        return (1 - self.floor) * p + self.floor / p.numel()

    def sample_lambda(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Stratified λ draws from the proposal and their density q(λ), both [n] float64."""
        u = (
            torch.arange(n, dtype=torch.float64)
            + torch.rand(n, generator=generator, dtype=torch.float64)
        ) / n
        u = u[torch.randperm(n, generator=generator)].to(self.edges.device)
        p = self._probs()
        cdf = torch.cat([p.new_zeros(1), torch.cumsum(p, 0)])
        i = torch.clamp(torch.bucketize(u, cdf[1:-1]), 0, p.numel() - 1)
        width = self.edges[1:] - self.edges[:-1]
        lam = self.edges[i] + (u - cdf[i]) / p[i] * width[i]
        return lam, p[i] / width[i]

    def loss(self, net, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Per-example weighted denoising loss (nats per dimension, up to constants), [B].

        Args:
            net: ε-prediction network (x [B, ...], lam [B]) -> [B, ...].
            x0: [B, ...] clean data.
            generator: for λ and ε (None: the global RNG).
        """
        B = x0.shape[0]
        lam, q = self.sample_lambda(B, generator)
        shape = (B,) + (1,) * (x0.dim() - 1)
        a = self.schedule.alpha(lam).reshape(shape).to(x0)
        s = self.schedule.sigma(lam).reshape(shape).to(x0)
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        err = (net(a * x0 + s * eps, lam.to(x0.dtype)) - eps).pow(2).reshape(B, -1).mean(1)
        span = self.edges[-1] - self.edges[0]
        per = 0.5 * self.weight(lam) * err.double() / (q * span)
        if self.training and self.importance == "adaptive":
            self._update(lam, (self.weight(lam) * err.double()).detach())
        return per.to(x0.dtype)

    @torch.no_grad()
    def _update(self, lam: Tensor, val: Tensor) -> None:
        i = torch.clamp(torch.bucketize(lam, self.edges[1:-1]), 0, self.bin_loss.numel() - 1)
        tot = torch.zeros_like(self.bin_loss).index_add_(0, i, val)
        cnt = torch.zeros_like(self.bin_loss).index_add_(0, i, torch.ones_like(val))
        seen = cnt > 0
        mean = tot[seen] / cnt[seen]
        self.bin_loss[seen] = self.ema * self.bin_loss[seen] + (1 - self.ema) * mean
        if not math.isfinite(float(self.bin_loss.sum())):
            raise FloatingPointError("non-finite loss in the adaptive λ proposal")
