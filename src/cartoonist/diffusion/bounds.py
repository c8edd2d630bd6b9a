"""Theorems 3–4: the bias of the tracked log-density r_0 with a learned score, and its bounds.

Theorem 3 (digest §3.3): with a learned score s_θ, x following the model's reverse SDE (marginals
q_λ) and r the Theorem 1 recursion started at the prior's log-density,

    E[r_0] − E[log p^SDE(x_0)] = ½ ∫_{λ_min}^{λ_max} σ_λ² E_{x∼q_λ} ‖s_θ(x, λ) − ∇log q_λ(x)‖² dλ
    ≥ 0.

Theorem 4 makes the ELBO a lower bound of log p^SDE, so on samples of the model (digest §3.5)

    E[ELBO] ≤ E[log p^SDE] ≤ E[r_0],   hence   0 ≤ E[r_0] − E[log p^SDE] ≤ E[r_0] − E[ELBO].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from cartoonist.diffusion.schedules import Schedule

__all__ = ["BiasBounds", "bias_bounds", "tracking_bias"]


@dataclass
class BiasBounds:
    """Interval for the bias E[r_0] − E[log p^SDE] (nats), from per-sample r_0 and ELBO.

    Attributes:
        mean_r0, mean_elbo: sample means (nats).
        lower: 0 (Theorem 3).
        upper: mean_r0 − mean_elbo (Theorems 3–4).
        upper_stderr: standard error of `upper` (paired differences).
        n: number of samples.
    """

    mean_r0: float
    mean_elbo: float
    lower: float
    upper: float
    upper_stderr: float
    n: int


def bias_bounds(r0: Tensor, elbo: Tensor) -> BiasBounds:
    """Bounds on the Theorem 3 bias from the same samples' r_0 and ELBO.

    Args:
        r0: [N] Theorem 1 log-densities of samples drawn from the model's reverse SDE (nats).
        elbo: [N] ELBO of the same samples (nats).

    Returns:
        BiasBounds; `upper` < 0 beyond its standard error signals a wrong estimator or too few
        steps.
    """
    r0, elbo = torch.as_tensor(r0, dtype=torch.float64), torch.as_tensor(elbo, dtype=torch.float64)
    if r0.dim() != 1 or r0.shape != elbo.shape or r0.numel() < 2:
        raise ValueError(
            f"r0 and elbo must be matching [N] vectors with N ≥ 2, got "
            f"{tuple(r0.shape)} and {tuple(elbo.shape)}"
        )
    d = r0 - elbo
    return BiasBounds(
        mean_r0=float(r0.mean()),
        mean_elbo=float(elbo.mean()),
        lower=0.0,
        upper=float(d.mean()),
        upper_stderr=float(d.std() / math.sqrt(d.numel())),
        n=d.numel(),
    )


def tracking_bias(
    score_model: Callable[[Tensor, Tensor], Tensor],
    score_marginal: Callable[[Tensor, Tensor], Tensor],
    sample_marginal: Callable[[float], Tensor],
    schedule: Schedule,
    *,
    n_lambda: int = 200,
) -> float:
    """The Theorem 3 bias formula ½ ∫ σ² E_{q_λ}‖s_θ − ∇log q_λ‖² dλ, by quadrature in λ.

    Needs the model's own marginals q_λ (known e.g. for a linear score on Gaussian data).

    Args:
        score_model: s_θ(x [B, ...], lam [B]).
        score_marginal: ∇log q_λ(x [B, ...], lam [B]) of the model's reverse-SDE marginals.
        sample_marginal: lam -> [B, ...] samples of q_λ.
        schedule: diffusion schedule.
        n_lambda: trapezoid nodes on [λ_min, λ_max].

    Returns:
        The bias in nats.
    """
    for name, fn in (
        ("score_model", score_model),
        ("score_marginal", score_marginal),
        ("sample_marginal", sample_marginal),
    ):
        if not callable(fn):
            raise ValueError(f"{name} must be callable, got {type(fn).__name__}")
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be a Schedule, got {type(schedule).__name__}")
    if isinstance(n_lambda, bool) or not isinstance(n_lambda, int) or n_lambda < 2:
        raise ValueError(f"n_lambda must be an integer ≥ 2, got {n_lambda!r}")
    grid = schedule.grid(n_lambda)
    vals = []
    for lam in grid.tolist():
        x = sample_marginal(lam)
        lb = torch.full((x.shape[0],), lam, dtype=x.dtype)
        diff = (score_model(x, lb) - score_marginal(x, lb)).reshape(x.shape[0], -1)
        vals.append(float(schedule.g2(torch.tensor(lam)) * (diff * diff).sum(1).mean()))
    return 0.5 * float(torch.trapezoid(torch.tensor(vals, dtype=torch.float64), grid))
