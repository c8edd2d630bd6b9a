"""Small result containers shared by samplers and estimators."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

__all__ = ["Trajectory", "SampleResult", "LikelihoodResult"]


@dataclass
class Trajectory:
    """States recorded at every grid point.

    Attributes:
        lam: [N] log-SNR of each record.
        x: [N, B, ...] states.
        logp: [N, B] tracked log-density (nats) or None.
    """

    lam: Tensor
    x: Tensor
    logp: Tensor | None = None


@dataclass
class SampleResult:
    """Output of a sampler.

    Attributes:
        x: [B, ...] final states (at the grid's last λ).
        logp: [B] tracked log p_λ(x) in nats (float64), or None when not tracked.
        nfe: number of score-network evaluations (a Jacobian-vector product counts as one).
        trajectory: recorded states, when asked for.
    """

    x: Tensor
    logp: Tensor | None
    nfe: int
    trajectory: Trajectory | None = None
    info: dict = field(default_factory=dict)


@dataclass
class LikelihoodResult:
    """Output of a log-likelihood estimator.

    Attributes:
        logp: [B] estimated log p_{λ_max}(x) in nats (float64).
        nfe: number of score-network evaluations.
        latent: [B, ...] the encoded point at λ_min (ODE/SDE encoders), else None.
        stderr: [B] Monte Carlo standard error of logp, where the estimator provides one.
    """

    logp: Tensor
    nfe: int
    latent: Tensor | None = None
    stderr: Tensor | None = None
    info: dict = field(default_factory=dict)
