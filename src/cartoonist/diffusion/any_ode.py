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

from cartoonist.diffusion.adams import integrate_adams
from cartoonist.diffusion.contract import (
    ODEOptions,
    check_inputs,
    initial_logp,
    resolve_grid,
)
from cartoonist.diffusion.divergence import score_and_laplacian
from cartoonist.diffusion.integrators import ADAPTIVE_METHOD, integrate_ode
from cartoonist.diffusion.results import SampleResult
from cartoonist.diffusion.rng import as_noise
from cartoonist.diffusion.schedules import Schedule
from cartoonist.diffusion.score import CountedScore, as_counted, lam_batch

__all__ = ["log_density_drift", "ode_log_prob_along", "run_ode"]

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
    backend: str = "auto",
    with_score: bool = False,
):
    """Drift (dx/dλ, d log p/dλ) of an ODE with the Lemma's log-density tracking.

    Args:
        score: counted score function (x [B, ...], lam [B]) -> [B, ...].
        schedule: diffusion schedule (gives f̃ and σ²).
        velocity: η (w = f̃ x + (η/2) σ² s: 1 = PF-ODE, 2 = HD-ODE) or a callable
            (x, lam [B], s) -> w [B, ...].
        track: also return d log p/dλ (costs one Jacobian-vector product per call).
        divergence, probes, noise, backend: see `score_and_laplacian` (Rademacher probes).
        with_score: also return the score s [B, ...] at x (the adaptive solver's error control).

    Returns:
        drift(x, lam) -> (w [B, ...], d log p/dλ [B] float64 or None), with s appended when
        `with_score`.
    """

    def drift(x: Tensor, lam: Tensor):
        lb = lam_batch(lam, x)
        f, g2 = _bc(schedule.f_tilde(lb), x), _bc(schedule.g2(lb), x)
        if track:
            s, lap = score_and_laplacian(score, x, lb, divergence, probes, noise, backend)
        else:
            s, lap = score(x, lb), None
        if callable(velocity):
            w = velocity(x, lb, s)
        else:
            w = f * x + (0.5 * float(velocity)) * g2 * s
        if not track:
            return (w, None, s) if with_score else (w, None)
        B, D = x.shape[0], x[0].numel()
        dlogp = -D * f.reshape(B) - 0.5 * g2.reshape(B) * lap  # −div v: the PF-ODE part
        if callable(velocity):
            dlogp = dlogp + ((w - f * x - 0.5 * g2 * s) * s).reshape(B, -1).sum(1)  # (w − v)ᵀ s
        elif velocity != 1.0:
            sq = (s * s).reshape(B, -1).sum(1)
            dlogp = dlogp + 0.5 * (float(velocity) - 1.0) * g2.reshape(B) * sq
        return (w, dlogp.to(torch.float64), s) if with_score else (w, dlogp.to(torch.float64))

    return drift


def run_ode(
    score,
    schedule: Schedule,
    x: Tensor,
    grid: Tensor,
    velocity: float | Velocity,
    opts: ODEOptions,
    *,
    track_logp: bool,
    logp_init: Tensor | None,
    record: bool = False,
) -> tuple[SampleResult, Tensor | None]:
    """The one runner of the ODE family: integrate dx/dλ = w along `grid` with the Lemma.

    Arguments are assumed checked (see `contract`; `opts` checks itself). Args as in
    `ode_log_prob_along`; `logp_init` [B] float64 or None (then log p is still tracked when
    `track_logp`, from 0).

    Returns:
        (SampleResult(x at grid[-1], logp = logp_init + Δ or None, nfe, trajectory),
         Δ [B] = ∫ d log p/dλ dλ along the path (float64) or None).
    """
    sc = as_counted(score, opts.noise)
    method, divergence, probes = opts.method, opts.divergence, opts.probes
    probe_noise = _probe_source(opts.noise, x, method, probes, divergence)
    adaptive = method == ADAPTIVE_METHOD
    drift = log_density_drift(
        sc, schedule, velocity, track_logp, divergence, probes, probe_noise, opts.backend,
        with_score=adaptive,
    )  # fmt: skip
    acc0 = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device) if track_logp else None
    common = dict(acc=acc0, rtol=opts.rtol, atol=opts.atol, score=sc, record=record)
    if adaptive:
        plain = log_density_drift(
            sc, schedule, velocity, False, divergence, probes, with_score=True
        )
        ends = float(grid[0]), float(grid[-1])
        x, delta, traj = integrate_adams(drift, plain, schedule, x, *ends, **common)
    else:
        x, delta, traj = integrate_ode(drift, x, grid, method=method, **common)
    lp = None
    if logp_init is not None:
        lp = logp_init + delta
        if traj is not None:
            traj.logp = logp_init + traj.logp
    return SampleResult(x=x, logp=lp, nfe=sc.nfe, trajectory=traj), delta


def ode_log_prob_along(
    score,
    schedule: Schedule,
    x: Tensor,
    steps: int | None = None,
    *,
    grid=None,
    velocity: float | Velocity = 1.0,
    logp_init=None,
    method: str = "euler",
    divergence: str = "hutchinson",
    probes: int = 1,
    backend: str = "auto",
    noise=None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    record: bool = False,
) -> SampleResult:
    """Integrate any ODE dx/dλ = w and track log p_λ(x_λ) with the Lemma (digest §3.6).

    Args:
        score: score function (x [B, ...], lam [B]) -> ∇log p_λ [B, ...].
        schedule: diffusion schedule.
        x: [B, ...] state at grid[0].
        steps: uniform steps λ_min → λ_max when no `grid` is given.
        grid: [N] λ points (either direction).
        velocity: η or callable (x, lam [B], s) -> w; see `log_density_drift` (1 = PF-ODE,
            2 = HD-ODE).
        logp_init: [B] log p_{grid[0]}(x) in nats (default: the prior, if grid[0] = λ_min).
        method: "euler", "heun", "adaptive" (`adams`) or a torchdiffeq method (adaptive
            ones fix the probes).
        divergence, probes, backend: Laplacian estimator ("hutchinson", "exact" or "analytic";
            see `score_and_laplacian`).
        noise: Keys, torch.Generator or None: the probes (stream "probe").
        record: keep the trajectory.

    Returns:
        SampleResult(x [B, ...] at grid[-1], logp [B] nats, nfe).
    """
    x = check_inputs(x, schedule, noise)
    numeric = isinstance(velocity, (int, float)) and not isinstance(velocity, bool)
    if not (callable(velocity) or numeric):
        raise ValueError(f"velocity must be a number η or a callable, got {velocity!r}")
    opts = ODEOptions(method, divergence, probes, backend, noise, rtol, atol)
    grid = resolve_grid(schedule, steps, grid, schedule.lambda_min, schedule.lambda_max, None)
    lp = initial_logp(schedule, x, grid, logp_init, True)
    res, _ = run_ode(
        score, schedule, x, grid, velocity, opts, track_logp=True, logp_init=lp, record=record
    )
    return res


def _probe_source(noise, x, method, probes, divergence):
    """Per-sample probe noise; fixed probes for adaptive solvers (their error control needs it)."""
    from cartoonist.diffusion.divergence import FixedProbes
    from cartoonist.diffusion.integrators import FIXED_METHODS

    src = as_noise(noise, x.shape[0], "probe", dtype=x.dtype, device=x.device)
    if isinstance(src, FixedProbes):
        return src
    if divergence == "hutchinson" and method not in FIXED_METHODS:
        return FixedProbes(src, x.shape[1:], probes)
    return src
