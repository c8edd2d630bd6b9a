"""PF-ODE log-density: instantaneous change of variables (Chen et al. 2018; digest §3.0).

Along the probability-flow ODE dx/dλ = v = f̃ x + ½ σ² s,

    d log p_λ(x_λ)/dλ = −div v = −D f̃ − ½ σ² div s.

`ode_log_prob` encodes data x at λ_max to the prior at λ_min and returns
log p_{λ_max}(x) = log p_prior(x_{λ_min}) − ∫_{λ_max}^{λ_min} (−div v) dλ; `sample_ode` runs noise
→ data and carries log p along. With a learned score these are densities of the PF-ODE model p^ODE.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cartoonist.diffusion.any_ode import _probe_source, log_density_drift
from cartoonist.diffusion.integrators import check_grid, integrate_ode
from cartoonist.diffusion.results import LikelihoodResult, SampleResult
from cartoonist.diffusion.schedules import Schedule, check_steps
from cartoonist.diffusion.score import as_counted, check_batch, check_per_sample

__all__ = ["ode_log_prob", "sample_ode"]


def _grid(schedule: Schedule, steps, grid, start, end, increasing: bool):
    if grid is None:
        if steps is None:
            raise ValueError("give either steps or grid")
        check_steps(steps)
        grid = schedule.grid(steps, start, end)
    return check_grid(grid, schedule, increasing)


def ode_log_prob(
    score,
    schedule: Schedule,
    x0: Tensor,
    steps: int | None = 256,
    *,
    method: str = "heun",
    grid=None,
    divergence: str = "hutchinson",
    probes: int = 1,
    backend: str = "forward",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    seed: int = 0,
    sample_ids=None,
    noise=None,
    prior_log_prob=None,
) -> LikelihoodResult:
    """Log p^ODE_{λ_max}(x0) by PF-ODE encoding (data → noise), in nats.

    Args:
        score: score function (x [B, ...], lam [B]) -> [B, ...].
        schedule: diffusion schedule; the encoding runs λ_max → λ_min.
        x0: [B, ...] data points (at λ_max).
        steps: grid steps for fixed methods ("euler", "heun"); for adaptive methods ("dopri5")
            only the tolerances matter.
        method: "heun" (default), "euler", or a torchdiffeq method such as "dopri5".
        grid: explicit decreasing λ grid (overrides steps).
        divergence: "hutchinson", "exact" (D JVPs per evaluation; small D) or "analytic" (an
            oracle's closed-form Laplacian).
        probes: Hutchinson probes per evaluation (fresh per step on fixed grids, fixed for
            adaptive methods).
        backend: "forward" (JVP) or "reverse" (VJP) for the trace.
        rtol, atol: adaptive tolerances.
        seed, sample_ids, noise: keyed per-sample probes (stream "probe").
        prior_log_prob: callable x [B, ...] -> [B] log-density at λ_min (default: the schedule's
            N(0, σ_{λ_min}² I)).

    Returns:
        LikelihoodResult(logp [B] nats, nfe, latent [B, ...] at λ_min).
    """
    x = check_batch(x0, "x0")
    grid = _grid(schedule, steps, grid, schedule.lambda_max, schedule.lambda_min, False)
    sc = as_counted(score)
    probe_noise = _probe_source(noise, seed, x, sample_ids, method, probes, divergence)
    drift = log_density_drift(sc, schedule, 1.0, True, divergence, probes, probe_noise, backend)
    acc0 = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    z, acc, _ = integrate_ode(drift, x, grid, acc0, method, rtol, atol, sc)
    prior = (prior_log_prob or schedule.prior_log_prob)(z).to(torch.float64)
    return LikelihoodResult(
        logp=prior - acc, nfe=sc.nfe, latent=z, info={"method": method, "steps": grid.numel() - 1}
    )


def sample_ode(
    score,
    schedule: Schedule,
    x_init: Tensor,
    steps: int | None = 256,
    *,
    method: str = "heun",
    grid=None,
    track_logp: bool = True,
    logp_init=None,
    divergence: str = "hutchinson",
    probes: int = 1,
    backend: str = "forward",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    seed: int = 0,
    sample_ids=None,
    noise=None,
    record: bool = False,
) -> SampleResult:
    """Sample with the PF-ODE (noise → data), optionally tracking log p^ODE_λ(x_λ).

    Args:
        score: score function (x [B, ...], lam [B]) -> [B, ...].
        schedule: diffusion schedule; the grid runs λ_min → λ_max unless `grid` is given.
        x_init: [B, ...] initial states (prior draws at λ_min, e.g. `schedule.sample_prior`).
        steps, method, grid, rtol, atol: as in `ode_log_prob` (grid increasing).
        track_logp: carry log p along (one JVP per evaluation).
        logp_init: [B] log-density of x_init (default: the schedule's prior).
        divergence, probes, backend, seed, sample_ids, noise: as in `ode_log_prob`.
        record: keep the trajectory.

    Returns:
        SampleResult(x [B, ...] at λ_max, logp [B] nats or None, nfe).
    """
    x = check_batch(x_init, "x_init")
    grid = _grid(schedule, steps, grid, schedule.lambda_min, schedule.lambda_max, True)
    sc = as_counted(score)
    lp = None
    if track_logp:
        if logp_init is None:
            if float(grid[0]) != schedule.lambda_min:
                raise ValueError(
                    "logp_init is required when the grid does not start at lambda_min"
                )
            logp_init = schedule.prior_log_prob(x)
        lp = check_per_sample(logp_init, x, "logp_init")
    probe_noise = _probe_source(noise, seed, x, sample_ids, method, probes, divergence)
    drift = log_density_drift(
        sc, schedule, 1.0, track_logp, divergence, probes, probe_noise, backend
    )
    acc0 = torch.zeros_like(lp) if track_logp else None
    x, acc, traj = integrate_ode(drift, x, grid, acc0, method, rtol, atol, sc, record)
    if traj is not None and track_logp:
        traj.logp = lp + traj.logp
    return SampleResult(x=x, logp=None if lp is None else lp + acc, nfe=sc.nfe, trajectory=traj)
