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

from cartoonist.diffusion.any_ode import _probe_source, log_density_drift
from cartoonist.diffusion.integrators import check_grid, integrate_ode
from cartoonist.diffusion.ode_likelihood import sample_ode
from cartoonist.diffusion.results import SampleResult, Trajectory
from cartoonist.diffusion.schedules import Schedule, check_steps
from cartoonist.diffusion.score import as_counted, check_batch, check_per_sample
from cartoonist.diffusion.sde_tracking import sample_sde

__all__ = ["hd_ode", "hd_sample", "split_steps"]

HD_VELOCITY = 2.0  # w = f̃ y + (η/2) σ² s with η = 2: the reverse-SDE drift


def hd_ode(
    score,
    schedule: Schedule,
    x: Tensor,
    lambda_start: float,
    steps: int,
    *,
    lambda_end: float | None = None,
    method: str = "euler",
    track_logp: bool = False,
    logp_init=None,
    divergence: str = "hutchinson",
    probes: int = 1,
    seed: int = 0,
    sample_ids=None,
    noise=None,
    record: bool = False,
) -> SampleResult:
    """Follow the HD-ODE from λ_start to λ_end (default λ_max).

    Args:
        score: score function (x [B, ...], lam [B]) -> [B, ...].
        schedule: diffusion schedule.
        x: [B, ...] states at λ_start.
        lambda_start: starting log-SNR (inside the schedule's range).
        steps: grid steps (uniform in λ).
        lambda_end: final log-SNR (default λ_max).
        method: "euler" (the authors' choice), "heun" or a torchdiffeq method.
        track_logp: carry log p_λ along with the Lemma (one JVP per evaluation); needs logp_init.
        logp_init: [B] log p_{λ_start}(x).
        divergence, probes, seed, sample_ids, noise: Laplacian estimator for tracking.
        record: keep the trajectory.

    Returns:
        SampleResult(x [B, ...] at λ_end, logp [B] nats or None, nfe).
    """
    x = check_batch(x, "x")
    check_steps(steps)
    end = schedule.lambda_max if lambda_end is None else lambda_end
    grid = check_grid(schedule.grid(steps, lambda_start, end), schedule, True)
    sc = as_counted(score)
    lp = None
    if track_logp:
        if logp_init is None:
            raise ValueError("track_logp=True needs logp_init, the log-density at lambda_start")
        lp = check_per_sample(logp_init, x, "logp_init")
    probe_noise = _probe_source(noise, seed, x, sample_ids, method, probes, divergence)
    drift = log_density_drift(
        sc, schedule, HD_VELOCITY, track_logp, divergence, probes, probe_noise
    )
    acc0 = None if lp is None else lp * 0
    y, acc, traj = integrate_ode(drift, x, grid, acc0, method, score=sc, record=record)
    if traj is not None and lp is not None:
        traj.logp = lp + traj.logp
    return SampleResult(x=y, logp=None if lp is None else lp + acc, nfe=sc.nfe, trajectory=traj)


def split_steps(schedule: Schedule, lambda_threshold: float, steps: int) -> tuple[int, int]:
    """Split a step budget between Algorithm 1's two stages in proportion to their λ-lengths.

    The authors' script computes n_pf from (λ_max − λ_thr) and n_hd from (λ_thr − λ_min), i.e. the
    two counts swapped relative to the segments they integrate (digest §3.9); we allocate each
    stage steps proportional to its own segment, at least one each.

    Returns:
        (steps of the first stage on [λ_min, λ_thr], steps of the HD stage on [λ_thr, λ_max]).
    """
    check_steps(steps)
    if steps < 2:
        raise ValueError(f"Algorithm 1 needs steps ≥ 2 (one per stage), got {steps}")
    frac = (lambda_threshold - schedule.lambda_min) / (schedule.lambda_max - schedule.lambda_min)
    n1 = min(max(int(round(steps * frac)), 1), steps - 1)
    return n1, steps - n1


def hd_sample(
    score,
    schedule: Schedule,
    x_init: Tensor,
    lambda_threshold: float,
    steps: int,
    *,
    first_stage: str = "ode",
    method: str = "euler",
    seed: int = 0,
    sample_ids=None,
    noise=None,
    track_logp: bool = False,
    logp_init=None,
    divergence: str = "hutchinson",
    probes: int = 1,
    record: bool = False,
) -> SampleResult:
    """Algorithm 1: first stage to λ_thr, then the HD-ODE to λ_max.

    Args:
        score: score function (x [B, ...], lam [B]) -> [B, ...].
        schedule: diffusion schedule.
        x_init: [B, ...] prior draws at λ_min.
        lambda_threshold: λ_thr ∈ (λ_min, λ_max) where the HD-ODE takes over.
        steps: total step budget, split by `split_steps`.
        first_stage: "ode" (PF-ODE) or "sde" (reverse SDE with the free Theorem 1 log-density).
        method: "euler" or "heun" for the ODE stages.
        seed, sample_ids, noise: keyed per-sample noise (Brownian path, probes).
        track_logp: also return log p_{λ_max}(y) along the way (SDE stage: free; ODE stages:
            one JVP per evaluation, Lemma).
        logp_init: [B] log-density of x_init (default: the schedule's prior).
        divergence, probes: Laplacian estimator for tracking through ODE stages.
        record: keep the trajectory of both stages (concatenated).

    Returns:
        SampleResult(x [B, ...] at λ_max, logp or None, nfe); info holds the stage split.
    """
    if first_stage not in ("ode", "sde"):
        raise ValueError(f"first_stage must be 'ode' or 'sde', got {first_stage!r}")
    lo, hi = schedule.lambda_min, schedule.lambda_max
    if not lo < float(lambda_threshold) < hi:
        raise ValueError(f"lambda_threshold must lie in ({lo:g}, {hi:g}), got {lambda_threshold}")
    n1, n2 = split_steps(schedule, float(lambda_threshold), steps)
    grid1 = schedule.grid(n1, lo, lambda_threshold)
    common = dict(
        seed=seed,
        sample_ids=sample_ids,
        noise=noise,
        track_logp=track_logp,
        logp_init=logp_init,
        record=record,
    )
    if first_stage == "sde":
        stage1 = sample_sde(score, schedule, x_init, grid=grid1, **common)
    else:
        stage1 = sample_ode(
            score,
            schedule,
            x_init,
            grid=grid1,
            method=method,
            divergence=divergence,
            probes=probes,
            **common,
        )
    stage2 = hd_ode(
        score,
        schedule,
        stage1.x,
        lambda_threshold,
        n2,
        method=method,
        track_logp=track_logp,
        logp_init=stage1.logp,
        divergence=divergence,
        probes=probes,
        seed=seed + 1,
        sample_ids=sample_ids,
        noise=noise,
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


def _concat(t1: Trajectory, t2: Trajectory) -> Trajectory:
    logp = None
    if t1.logp is not None and t2.logp is not None:
        logp = torch.cat([t1.logp, t2.logp[1:]])
    return Trajectory(torch.cat([t1.lam, t2.lam[1:]]), torch.cat([t1.x, t2.x[1:]]), logp)
