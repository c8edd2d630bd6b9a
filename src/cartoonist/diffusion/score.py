"""Score functions: converters from network parametrisations, and the counted/checked wrapper.

A score function has the signature `score(x [B, ...], lam [B]) -> [B, ...]` and returns ∇_x log
p_λ(x).
With x = α x_0 + σ ε (digest §2.1):

    ε-prediction:   s = −ε̂ / σ
    x0-prediction:  s = (α x̂_0 − x) / σ²
    v-prediction:   v = α ε − σ x_0  ⇒  ε̂ = (σ x + α v̂) / (α² + σ²),  s = −ε̂ / σ
    flow velocity:  u = ε − x_0      ⇒  ε̂ = (x + α û) / (α + σ),        s = −ε̂ / σ
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from cartoonist.diffusion.schedules import Schedule

__all__ = [
    "ScoreFn",
    "score_from_eps",
    "score_from_x0",
    "score_from_v",
    "score_from_flow",
    "posterior_mean",
    "CountedScore",
    "NonFiniteScoreError",
]

ScoreFn = Callable[[Tensor, Tensor], Tensor]


def _bcast(v: Tensor, x: Tensor) -> Tensor:
    """[B] → [B, 1, ..., 1] matching x (dtype and device)."""
    return v.reshape(v.shape + (1,) * (x.dim() - v.dim())).to(dtype=x.dtype, device=x.device)


def score_from_eps(net: Callable[[Tensor, Tensor], Tensor], schedule: Schedule) -> ScoreFn:
    """Score from a noise-prediction network ε̂(x, λ): s = −ε̂/σ_λ.

    Args:
        net: callable (x [B, ...], lam [B]) -> ε̂ [B, ...].
        schedule: the schedule the network was trained with.
    """

    def score(x: Tensor, lam: Tensor) -> Tensor:
        return -net(x, lam) / _bcast(schedule.sigma(lam), x)

    return score


def score_from_x0(net: Callable[[Tensor, Tensor], Tensor], schedule: Schedule) -> ScoreFn:
    """Score from a data-prediction (denoiser) network x̂_0(x, λ): s = (α x̂_0 − x)/σ².

    Args:
        net: callable (x [B, ...], lam [B]) -> x̂_0 [B, ...].
        schedule: the schedule the network was trained with.
    """

    def score(x: Tensor, lam: Tensor) -> Tensor:
        a, s2 = _bcast(schedule.alpha(lam), x), _bcast(schedule.g2(lam), x)
        return (a * net(x, lam) - x) / s2

    return score


def score_from_v(net: Callable[[Tensor, Tensor], Tensor], schedule: Schedule) -> ScoreFn:
    """Score from a v-prediction network, v = α ε − σ x_0 (Salimans & Ho 2022).

    Args:
        net: callable (x [B, ...], lam [B]) -> v̂ [B, ...].
        schedule: the schedule the network was trained with.
    """

    def score(x: Tensor, lam: Tensor) -> Tensor:
        a, s = _bcast(schedule.alpha(lam), x), _bcast(schedule.sigma(lam), x)
        eps = (s * x + a * net(x, lam)) / (a * a + s * s)
        return -eps / s

    return score


def score_from_flow(net: Callable[[Tensor, Tensor], Tensor], schedule: Schedule) -> ScoreFn:
    """Score from a flow-matching (rectified-flow) velocity network û ≈ ε − x_0.

    With x = α x_0 + σ ε and x_0 = ε − u: x = (α + σ) ε − α u, so ε̂ = (x + α û)/(α + σ) and
    s = −ε̂/σ. On the linear path of `Flow` (α = 1 − t, σ = t, α + σ = 1) this is

        s = −(x + (1 − t) û)/t,   x̂_0 = x − t û,   ε̂ = x + (1 − t) û,

    and û = dx_t/dt is the PF-ODE velocity in t (SD3 / `FlowMatchEulerDiscreteScheduler`).

    Args:
        net: callable (x [B, ...], lam [B]) -> û [B, ...].
        schedule: the schedule the network was trained with (`Flow` for SD3-style models).
    """

    def score(x: Tensor, lam: Tensor) -> Tensor:
        a, s = _bcast(schedule.alpha(lam), x), _bcast(schedule.sigma(lam), x)
        return -(x + a * net(x, lam)) / ((a + s) * s)

    return score


def posterior_mean(score: ScoreFn, schedule: Schedule, x: Tensor, lam) -> Tensor:
    """E[x_0 | x_λ = x] from the score by Tweedie's formula, (x + σ_λ² ∇log p_λ(x)) / α_λ.

    Exact for the true score of any schedule with x_λ = α_λ x_0 + σ_λ ε; with a learned score it
    is the network's denoised estimate.

    Args:
        score: score function (x [B, ...], lam [B]) -> [B, ...].
        schedule: diffusion schedule.
        x: [B, ...] states at log-SNR λ.
        lam: λ as a float, a 0-d or a [B] tensor.

    Returns:
        [B, ...] posterior mean, in x's dtype.
    """
    lam = lam_batch(lam, x)
    a, s2 = _bcast(schedule.alpha(lam), x), _bcast(schedule.g2(lam), x)
    return (x + s2 * score(x, lam)) / a


class NonFiniteScoreError(FloatingPointError):
    """The score function returned NaN or inf."""


class CountedScore:
    """Wraps a score function: counts evaluations (NFE) and checks the output.

    One call — plain, or traced once inside `torch.func.jvp`/`vjp` — counts as one network function
    evaluation. The output is checked to be finite and of the input's shape; a failure raises one
    error naming the sample (its id when the caller's noise keys say it), the step and λ (set by
    the caller through `where`).

    Args:
        fn: callable (x [B, ...], lam [B]) -> [B, ...].
        check: verify shape and finiteness of every output.
        sample_ids: the ids of the batch's samples, for error messages (default: their positions).
    """

    def __init__(self, fn: ScoreFn, check: bool = True, sample_ids=None):
        self.fn, self.check, self.nfe = fn, check, 0
        self.where = ""
        self.sample_ids = None if sample_ids is None else [int(i) for i in sample_ids]

    def __call__(self, x: Tensor, lam: Tensor) -> Tensor:
        """Evaluate the score, count it and check the output."""
        self.nfe += 1
        out = self.fn(x, lam)
        if self.check:
            self._check(out, x, lam)
        return out

    def _check(self, out, x, lam) -> None:
        if not isinstance(out, Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"score function returned {got}, expected shape {tuple(x.shape)} (the shape of x)"
            )
        self.check_finite(out, lam, "score function returned")

    def check_finite(self, values: Tensor, lam, what: str) -> None:
        """NonFiniteScoreError naming the first sample whose `values` [B, ...] are not finite."""
        bad = _nonfinite(values)
        if bad is not None:
            lam_v = float(lam.reshape(-1)[0]) if isinstance(lam, Tensor) else float(lam)
            sid = self.sample_ids[bad] if self.sample_ids is not None else bad
            raise NonFiniteScoreError(
                f"{what} NaN/inf for sample {sid}{self.where} (λ={lam_v:.6g})"
            )


def _nonfinite(out: Tensor):
    """Index of the first sample with a non-finite entry, or None. Works on plain tensors only."""
    try:
        ok = torch.isfinite(out.detach())
        if bool(ok.all()):
            return None
        return int((~ok.reshape(ok.shape[0], -1).all(1)).nonzero()[0])
    except RuntimeError:
        # Inside torch.func transforms data-dependent control flow is not allowed; the caller
        # re-checks the primal output outside the transform.
        return None


def lam_batch(lam, x: Tensor) -> Tensor:
    """λ as a [B] tensor in x's dtype (accepts a float, a 0-d or a [B] tensor)."""
    lam = torch.as_tensor(lam, dtype=x.dtype, device=x.device)
    if lam.dim() == 0:
        lam = lam.expand(x.shape[0])
    if lam.shape != (x.shape[0],):
        raise ValueError(
            f"lam must be a scalar or have shape [{x.shape[0]}], got {tuple(lam.shape)}"
        )
    return lam


def as_counted(score, noise=None) -> CountedScore:
    """Wrap a score function in a fresh CountedScore (NFE from zero).

    `noise`: the call's noise argument; keys that name sample ids (`Keys(seed, ids)`) make the
    errors name those ids.
    """
    if not callable(score):
        raise TypeError(
            f"score must be callable (x [B, ...], lam [B]) -> [B, ...], got {type(score).__name__}"
        )
    ids = getattr(noise, "sample_ids", None)
    return CountedScore(score.fn if isinstance(score, CountedScore) else score, sample_ids=ids)


def check_batch(x, name: str = "x") -> Tensor:
    """Validate a batch of states: a floating tensor [B, ...] with B ≥ 1, D ≥ 1, all finite."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [B, ...], got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.dim() < 2 or x.shape[0] < 1 or x[0].numel() < 1:
        raise ValueError(
            f"{name} must have shape [B, ...] with B ≥ 1 and ≥ 1 feature, got {tuple(x.shape)}"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def check_per_sample(v, x: Tensor, name: str) -> Tensor:
    """Validate a per-sample vector [B] (e.g. an initial log-density) against x [B, ...]."""
    v = torch.as_tensor(v, dtype=torch.float64)
    if v.shape != (x.shape[0],):
        raise ValueError(
            f"{name} must have shape [{x.shape[0]}] (one value per sample), got {tuple(v.shape)}"
        )
    return v
