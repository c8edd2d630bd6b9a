"""Log-density along any ODE: the general instantaneous change of variables (digest §3.6).

If x follows an arbitrary ODE dx/dλ = w(x, λ), the diffusion marginal p_λ evaluated along it obeys
(the paper's Lemma)

    d log p_λ(x_λ)/dλ = −D f̃ − ½ σ² Δlog p_λ + (w − f̃ x − ½ σ² s)ᵀ s,      s = ∇log p_λ.

The PF-ODE (w = f̃ x + ½σ² s) recovers the classical −div v (Chen et al. 2018); the HD-ODE
(w = f̃ x + σ² s, Remark 1) gains +½ σ² ‖s‖² per unit λ. A velocity "η" means w = f̃ x + (η/2) σ² s.
The cost is one Jacobian-vector product (the Laplacian) per step, whatever w is.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from cartoonist.diffusion.divergence import score_and_laplacian
from cartoonist.diffusion.integrators import check_grid, integrate_ode
from cartoonist.diffusion.results import SampleResult
from cartoonist.diffusion.rng import as_noise
from cartoonist.diffusion.schedules import Schedule
from cartoonist.diffusion.score import (
    CountedScore,
    as_counted,
    check_batch,
    check_per_sample,
    lam_batch,
)

__all__ = ["log_density_drift", "ode_log_prob_along"]

Velocity = Callable[[Tensor, Tensor, Tensor], Tensor]


def _bc(v: Tensor, x: Tensor) -> Tensor:
    return v.reshape(-1, *[1] * (x.dim() - 1)).to(x.dtype)


def log_density_drift(
    score: CountedScore,
    schedule: Schedule,
    velocity: float | Velocity = 1.0,
    track: bool = True,
    divergence: str = "hutchinson",
    probes: int = 1,
    noise=None,
    backend: str = "forward",
    probe_kind: str = "rademacher",
):
    """Drift (dx/dλ, d log p/dλ) of an ODE with the Lemma's log-density tracking.

    Args:
        score: counted score function (x [B, ...], lam [B]) -> [B, ...].
        schedule: diffusion schedule (gives f̃ and σ²).
        velocity: η (w = f̃ x + (η/2) σ² s: 1 = PF-ODE, 2 = HD-ODE) or a callable
            (x, lam [B], s) -> w [B, ...].
        track: also return d log p/dλ (costs one Jacobian-vector product per call).
        divergence, probes, noise, backend, probe_kind: see `jacobian_trace`.

    Returns:
        drift(x, lam) -> (w [B, ...], d log p/dλ [B] float64 or None).
    """

    def drift(x: Tensor, lam: Tensor):
        lb = lam_batch(lam, x)
        f, g2 = _bc(schedule.f_tilde(lb), x), _bc(schedule.g2(lb), x)
        if track:
            s, lap = score_and_laplacian(
                score, x, lb, divergence, probes, noise, backend, probe_kind
            )
        else:
            s, lap = score(x, lb), None
        if callable(velocity):
            w = velocity(x, lb, s)
        else:
            w = f * x + (0.5 * float(velocity)) * g2 * s
        if not track:
            return w, None
        B, D = x.shape[0], x[0].numel()
        dlogp = -D * f.reshape(B) - 0.5 * g2.reshape(B) * lap  # −div v: the PF-ODE part
        if callable(velocity):
            dlogp = dlogp + ((w - f * x - 0.5 * g2 * s) * s).reshape(B, -1).sum(1)  # (w − v)ᵀ s
        elif velocity != 1.0:
            sq = (s * s).reshape(B, -1).sum(1)
            dlogp = dlogp + 0.5 * (float(velocity) - 1.0) * g2.reshape(B) * sq
        return w, dlogp.to(torch.float64)

    return drift


def ode_log_prob_along(
    score,
    schedule: Schedule,
    x_init: Tensor,
    grid,
    velocity: float | Velocity,
    logp_init,
    method: str = "euler",
    divergence: str = "hutchinson",
    probes: int = 1,
    backend: str = "forward",
    seed: int = 0,
    sample_ids=None,
    noise=None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    record: bool = False,
) -> SampleResult:
    """Integrate any ODE dx/dλ = w and track log p_λ(x_λ) with the Lemma (digest §3.6).

    Args:
        score: score function (x [B, ...], lam [B]) -> ∇log p_λ [B, ...].
        schedule: diffusion schedule.
        x_init: [B, ...] state at grid[0].
        grid: [N] λ points (either direction).
        velocity: η or callable (x, lam [B], s) -> w; see `log_density_drift`.
        logp_init: [B] log p_{grid[0]}(x_init) in nats.
        method: "euler", "heun" or a torchdiffeq method (adaptive ones fix the probes).
        divergence, probes, backend: Laplacian estimator ("hutchinson", "exact" or "analytic";
            see `score_and_laplacian`).
        seed, sample_ids, noise: keyed per-sample probe noise (stream "probe").
        record: keep the trajectory.

    Returns:
        SampleResult(x [B, ...] at grid[-1], logp [B] nats, nfe).
    """
    x = check_batch(x_init, "x_init")
    grid = check_grid(grid, schedule)
    lp = check_per_sample(logp_init, x, "logp_init")
    sc = as_counted(score)
    probe_noise = _probe_source(noise, seed, x, sample_ids, method, probes, divergence)
    drift = log_density_drift(
        sc, schedule, velocity, True, divergence, probes, probe_noise, backend
    )
    x, lp_delta, traj = integrate_ode(
        drift, x, grid, torch.zeros_like(lp), method, rtol, atol, sc, record
    )
    if traj is not None:
        traj.logp = lp + traj.logp
    return SampleResult(x=x, logp=lp + lp_delta, nfe=sc.nfe, trajectory=traj)


def _probe_source(noise, seed, x, sample_ids, method, probes, divergence):
    """Per-sample probe noise; fixed probes for adaptive solvers (their error control needs it)."""
    from cartoonist.diffusion.divergence import FixedProbes
    from cartoonist.diffusion.integrators import FIXED_METHODS

    src = as_noise(noise, seed, x.shape[0], sample_ids, "probe", dtype=x.dtype, device=x.device)
    if isinstance(src, FixedProbes):
        return src
    if divergence == "hutchinson" and method not in FIXED_METHODS:
        return FixedProbes(src, x.shape[1:], probes)
    return src
