"""PF-ODE log-density: instantaneous change of variables (Chen et al. 2018; digest §3.0).

Along the probability-flow ODE dx/dλ = v = f̃ x + ½ σ² s,

    d log p_λ(x_λ)/dλ = −div v = −D f̃ − ½ σ² div s.

`ode_log_prob` encodes data x at λ_max to the prior at λ_min and returns
log p_{λ_max}(x) = log p_prior(x_{λ_min}) − ∫_{λ_max}^{λ_min} (−div v) dλ; `sample_ode` runs noise
→ data and carries log p along. With a learned score these are densities of the PF-ODE model p^ODE.
Both are the Lemma's runner (`any_ode.run_ode`) with velocity η = 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cartoonist.diffusion.any_ode import run_ode
from cartoonist.diffusion.contract import (
    ODEOptions,
    check_inputs,
    initial_logp,
    resolve_grid,
)
from cartoonist.diffusion.results import LikelihoodResult, SampleResult
from cartoonist.diffusion.schedules import Schedule

__all__ = ["ode_log_prob", "sample_ode"]

PF_VELOCITY = 1.0  # w = f̃ x + (η/2) σ² s with η = 1: the probability-flow ODE


def ode_log_prob(
    score,
    schedule: Schedule,
    x: Tensor,
    steps: int | None = 256,
    *,
    grid=None,
    method: str = "heun",
    divergence: str = "hutchinson",
    probes: int = 1,
    backend: str = "auto",
    noise=None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    prior_log_prob=None,
) -> LikelihoodResult:
    """Log p^ODE_{λ_max}(x) by PF-ODE encoding (data → noise), in nats.

    Args:
        score: score function (x [B, ...], lam [B]) -> [B, ...].
        schedule: diffusion schedule; the encoding runs λ_max → λ_min.
        x: [B, ...] data points (at λ_max).
        steps: grid steps for fixed methods ("euler", "heun"); for adaptive methods ("dopri5")
            only the tolerances matter.
        grid: explicit decreasing λ grid (overrides steps).
        method: "heun" (default), "euler", "adaptive" (`adams`: the fastest at a given
            error on the Q4 oracle) or a torchdiffeq method such as "dopri5".
        divergence: "hutchinson", "exact" (D JVPs per evaluation; small D) or "analytic" (an
            oracle's closed-form Laplacian).
        probes: Hutchinson probes per evaluation (fresh per step on fixed grids, fixed for
            adaptive methods).
        backend: "auto" (VJP on the CPU, JVP elsewhere), "forward" (JVP) or "reverse" (VJP).
        noise: Keys, torch.Generator or None: the probes (stream "probe").
        rtol, atol: adaptive tolerances.
        prior_log_prob: callable x [B, ...] -> [B] log-density at λ_min (default: the schedule's
            N(0, σ_{λ_min}² I)).

    Returns:
        LikelihoodResult(logp [B] nats, nfe, latent [B, ...] at λ_min).
    """
    x = check_inputs(x, schedule, noise)
    opts = ODEOptions(method, divergence, probes, backend, noise, rtol, atol)
    grid = resolve_grid(schedule, steps, grid, schedule.lambda_max, schedule.lambda_min, False)
    res, delta = run_ode(
        score, schedule, x, grid, PF_VELOCITY, opts, track_logp=True, logp_init=None
    )
    z = res.x
    prior = (prior_log_prob or schedule.prior_log_prob)(z).to(torch.float64)
    return LikelihoodResult(
        logp=prior - delta,
        nfe=res.nfe,
        latent=z,
        info={"method": method, "steps": grid.numel() - 1},
    )


def sample_ode(
    score,
    schedule: Schedule,
    x: Tensor,
    steps: int | None = 256,
    *,
    grid=None,
    method: str = "heun",
    track_logp: bool = True,
    logp_init=None,
    divergence: str = "hutchinson",
    probes: int = 1,
    backend: str = "auto",
    noise=None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    record: bool = False,
) -> SampleResult:
    """Sample with the PF-ODE (noise → data), optionally tracking log p^ODE_λ(x_λ).

    Args:
        score: score function (x [B, ...], lam [B]) -> [B, ...].
        schedule: diffusion schedule; the grid runs λ_min → λ_max unless `grid` is given.
        x: [B, ...] initial states (prior draws at λ_min, e.g. `schedule.sample_prior`).
        steps, grid, method, rtol, atol: as in `ode_log_prob` (grid increasing).
        track_logp: carry log p along (one JVP per evaluation).
        logp_init: [B] log-density of x (default: the schedule's prior).
        divergence, probes, backend, noise: as in `ode_log_prob`.
        record: keep the trajectory.

    Returns:
        SampleResult(x [B, ...] at λ_max, logp [B] nats or None, nfe).
    """
    x = check_inputs(x, schedule, noise)
    opts = ODEOptions(method, divergence, probes, backend, noise, rtol, atol)
    grid = resolve_grid(schedule, steps, grid, schedule.lambda_min, schedule.lambda_max, True)
    lp = initial_logp(schedule, x, grid, logp_init, track_logp)
    res, _ = run_ode(
        score,
        schedule,
        x,
        grid,
        PF_VELOCITY,
        opts,
        track_logp=track_logp,
        logp_init=lp,
        record=record,
    )
    return res
