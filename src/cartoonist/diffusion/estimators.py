"""Two likelihood options that are not integrators: an oracle's exact log p, and a marker.

`exact_log_prob` is `likelihood=exact`: the closed-form log p_{λ_max}(x) of a model that has one
(an oracle). `sde_tracking` is `likelihood=sde_tracking`: Theorem 1's r_0 comes with the model's
own reverse-SDE samples (`sample_sde(track_logp=True)`), so there is nothing to compute afterwards;
calling it is an error that says so.
"""

from __future__ import annotations

from torch import Tensor

from cartoonist.diffusion.results import LikelihoodResult
from cartoonist.diffusion.schedules import Schedule

__all__ = ["exact_log_prob", "sde_tracking"]


def exact_log_prob(score, schedule: Schedule, x: Tensor, **_) -> LikelihoodResult:
    """Exact log p_{λ_max}(x) [B] in nats of a model with a closed-form `log_prob` (an oracle)."""
    if not hasattr(score, "log_prob"):
        raise ValueError("likelihood=exact needs model=oracle")
    return LikelihoodResult(logp=score.log_prob(x, schedule.lambda_max), nfe=0)


def sde_tracking(*args, **kwargs):
    """Marker of the Theorem 1 estimator: its r_0 comes with the SDE samples (source=samples)."""
    raise ValueError(
        "likelihood=sde_tracking gives r_0 of the model's own SDE samples: use source=samples"
    )
