"""High-density sampling: the HD-ODE (Remark 1) and Algorithm 1.

HD-ODE (Remark 1, eq. 18; digest §3.8): the reverse-SDE drift without its noise,

    dy/dλ = f̃ y + σ² ∇log p_λ(y),

i.e. the mode-tracking ODE of Theorem 5 without its third-order correction. It is exact for
Gaussian data, where it lands on the mode (= mean) of p(x_{λ_end} | x_λ). Algorithm 1: sample x at
a threshold λ_thr with the reverse SDE or the PF-ODE from the prior, then follow the HD-ODE to
λ_max. A threshold near λ_min gives "cartoons" (the mode of the whole model), one near λ_max blurry
versions of ordinary samples. The sampler costs one score evaluation per step, like ordinary
sampling.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cartoonist.diffusion.any_ode import run_ode
from cartoonist.diffusion.contract import (
    ODEOptions,
    check_choice,
    check_inputs,
    check_lambda_value,
    check_ode_options,
    initial_logp,
    span_grid,
)
from cartoonist.diffusion.integrators import check_grid
from cartoonist.diffusion.ode_likelihood import sample_ode
from cartoonist.diffusion.results import SampleResult, Trajectory
from cartoonist.diffusion.rng import next_stage
from cartoonist.diffusion.schedules import Schedule, check_steps
from cartoonist.diffusion.sde_tracking import sample_sde

__all__ = ["hd_ode", "hd_sample", "split_steps", "check_threshold"]

HD_VELOCITY = 2.0  # w = f̃ y + (η/2) σ² s with η = 2: the reverse-SDE drift


def hd_ode(
    score,
    schedule: Schedule,
    x: Tensor,
    steps: int | None = None,
    *,
    grid=None,
    lambda_start: float | None = None,
    lambda_end: float | None = None,
    method: str = "euler",
    track_logp: bool = False,
    logp_init=None,
    divergence: str = "hutchinson",
    probes: int = 1,
    backend: str = "auto",
    noise=None,
    record: bool = False,
) -> SampleResult:
    """Follow the HD-ODE from λ_start to λ_end (default λ_max).

    Args:
        score: score function (x [B, ...], lam [B]) -> [B, ...].
        schedule: diffusion schedule.
        x: [B, ...] states at λ_start.
        steps: grid steps (uniform in λ from lambda_start to lambda_end).
        grid: explicit increasing λ grid (overrides steps, lambda_start and lambda_end).
        lambda_start: starting log-SNR (required without `grid`).
        lambda_end: final log-SNR (default λ_max).
        method: "euler" (the authors' choice), "heun", "adaptive" or a torchdiffeq method.
        track_logp: carry log p_λ along with the Lemma (one JVP per evaluation); needs logp_init
            unless the grid starts at λ_min.
        logp_init: [B] log p_{λ_start}(x).
        divergence, probes, backend, noise: Laplacian estimator for tracking (stream "probe").
        record: keep the trajectory.

    Returns:
        SampleResult(x [B, ...] at λ_end, logp [B] nats or None, nfe).
    """
    x = check_inputs(x, schedule, noise)
    opts = ODEOptions(method, divergence, probes, backend, noise)
    grid = span_grid(
        schedule, steps, grid, lambda_start, lambda_end, "lambda_start", "the HD-ODE's start"
    )
    lp = initial_logp(schedule, x, grid, logp_init, track_logp)
    res, _ = run_ode(
        score,
        schedule,
        x,
        grid,
        HD_VELOCITY,
        opts,
        track_logp=track_logp,
        logp_init=lp,
        record=record,
    )
    return res


def check_threshold(schedule: Schedule, value, name: str = "lambda_threshold") -> float:
    """Algorithm 1's threshold λ_thr ∈ [λ_min, λ_max), as a float (ValueError naming `name`).

    The paper's t ∈ (0, T] is λ_thr ∈ [λ_min, λ_max): at λ_thr = λ_min (t = T) there is no first
    stage and the HD-ODE runs from the prior.
    """
    return check_lambda_value(schedule, value, name, open_upper=True)


def split_steps(schedule: Schedule, lambda_threshold: float, steps: int) -> tuple[int, int]:
    """Split a step budget between Algorithm 1's two stages in proportion to their λ-lengths.

    The authors' script computes n_pf from (λ_max − λ_thr) and n_hd from (λ_thr − λ_min), i.e. the
    two counts swapped relative to the segments they integrate (digest §3.9); we allocate each
    stage steps proportional to its own segment, at least one each.

    Returns:
        (steps of the first stage on [λ_min, λ_thr], steps of the HD stage on [λ_thr, λ_max]).
    """
    check_steps(steps)
    if lambda_threshold <= schedule.lambda_min:  # t = T: the HD-ODE alone
        return 0, steps
    if steps < 2:
        raise ValueError(f"Algorithm 1 needs steps ≥ 2 (one per stage), got {steps}")
    frac = (lambda_threshold - schedule.lambda_min) / (schedule.lambda_max - schedule.lambda_min)
    n1 = min(max(int(round(steps * frac)), 1), steps - 1)
    return n1, steps - n1


def _split_grid(schedule: Schedule, grid, thr: float) -> tuple[Tensor, Tensor]:
    """An explicit λ_min → λ_max grid cut at λ_thr (which must be one of its points)."""
    grid = check_grid(grid, schedule, increasing=True)
    hit = (grid - thr).abs() <= 1e-12
    if not bool(hit.any()):
        raise ValueError(f"grid must contain lambda_threshold={thr:g} as one of its points")
    k = int(hit.nonzero()[0])
    if k == grid.numel() - 1 or (k == 0 and thr > schedule.lambda_min):
        raise ValueError("grid must have points on both sides of lambda_threshold")
    return grid[: k + 1], grid[k:]


def _stage_grids(schedule: Schedule, lambda_threshold, steps, grid) -> tuple[Tensor, Tensor]:
    """Algorithm 1's two λ grids: [λ_min, λ_thr] and [λ_thr, λ_max] (float64).

    From the step budget (`split_steps`) or an explicit `grid` through λ_thr (`_split_grid`).
    An empty first stage (λ_thr = λ_min) is the one-point grid [λ_thr].
    """
    thr = check_threshold(schedule, lambda_threshold)
    if grid is not None:
        return _split_grid(schedule, grid, thr)
    n1, n2 = split_steps(schedule, thr, steps)
    grid2 = schedule.grid(n2, thr, schedule.lambda_max)
    grid1 = grid2[:1] if n1 == 0 else schedule.grid(n1, schedule.lambda_min, thr)
    return grid1, grid2


def hd_sample(
    score,
    schedule: Schedule,
    x: Tensor,
    steps: int | None = 1000,
    *,
    lambda_threshold: float,
    grid=None,
    first_stage: str = "ode",
    method: str = "euler",
    noise=None,
    track_logp: bool = False,
    logp_init=None,
    divergence: str = "hutchinson",
    probes: int = 1,
    backend: str = "auto",
    record: bool = False,
) -> SampleResult:
    """Algorithm 1: first stage to λ_thr, then the HD-ODE to λ_max.

    Args:
        score: score function (x [B, ...], lam [B]) -> [B, ...].
        schedule: diffusion schedule.
        x: [B, ...] prior draws at λ_min.
        steps: total step budget, split by `split_steps`.
        lambda_threshold: λ_thr ∈ [λ_min, λ_max) where the HD-ODE takes over (λ_min: t = T, the
            HD-ODE from the prior, no first stage).
        grid: explicit increasing λ grid that contains λ_thr (overrides steps); the stages run on
            its two parts.
        first_stage: "ode" (PF-ODE) or "sde" (reverse SDE with the free Theorem 1 log-density).
        method: "euler" or "heun" for the ODE stages.
        noise: Keys, torch.Generator or None. The first stage draws from it (Brownian path or
            probes), the HD stage from `Keys.stage(1)` (seed + 1; a Generator is shared).
        track_logp: also return log p_{λ_max}(y) along the way (SDE stage: free; ODE stages:
            one JVP per evaluation, Lemma).
        logp_init: [B] log-density of x (default: the schedule's prior).
        divergence, probes, backend: Laplacian estimator for tracking through ODE stages.
        record: keep the trajectory of both stages (concatenated).

    Returns:
        SampleResult(x [B, ...] at λ_max, logp or None, nfe); info holds the stage split.
    """
    x = check_inputs(x, schedule, noise)
    check_choice(first_stage, ("ode", "sde"), "first_stage")
    check_ode_options(method, divergence, probes, backend)
    grid1, grid2 = _stage_grids(schedule, lambda_threshold, steps, grid)
    n1, n2 = grid1.numel() - 1, grid2.numel() - 1
    lp = initial_logp(schedule, x, grid1, logp_init, track_logp)
    common = dict(noise=noise, track_logp=track_logp, logp_init=lp, record=record)
    if n1 == 0:  # λ_thr = λ_min (t = T): no first stage
        stage1 = SampleResult(x=x, logp=lp, nfe=0, trajectory=_start(grid1, x, lp, record))
    elif first_stage == "sde":
        stage1 = sample_sde(score, schedule, x, grid=grid1, **common)
    else:
        stage1 = sample_ode(
            score,
            schedule,
            x,
            grid=grid1,
            method=method,
            divergence=divergence,
            probes=probes,
            backend=backend,
            **common,
        )
    stage2 = hd_ode(
        score,
        schedule,
        stage1.x,
        grid=grid2,
        method=method,
        track_logp=track_logp,
        logp_init=stage1.logp,
        divergence=divergence,
        probes=probes,
        backend=backend,
        noise=next_stage(noise),
        record=record,
    )
    traj = None
    if record:
        traj = _concat(stage1.trajectory, stage2.trajectory)
    return SampleResult(
        x=stage2.x,
        logp=stage2.logp,
        nfe=stage1.nfe + stage2.nfe,
        trajectory=traj,
        info={"steps": (n1, n2), "first_stage": first_stage},
    )


def _start(grid1: Tensor, x: Tensor, lp, record: bool) -> Trajectory | None:
    """The one-point trajectory of an empty first stage."""
    if not record:
        return None
    return Trajectory(grid1.clone(), x.unsqueeze(0), None if lp is None else lp.unsqueeze(0))


def _concat(t1: Trajectory, t2: Trajectory) -> Trajectory:
    logp = None
    if t1.logp is not None and t2.logp is not None:
        logp = torch.cat([t1.logp, t2.logp[1:]])
    return Trajectory(torch.cat([t1.lam, t2.lam[1:]]), torch.cat([t1.x, t2.x[1:]]), logp)
