"""Theorem 1: the log-density of a reverse-SDE sample, tracked at no extra network evaluation.

Along the reverse SDE dx = [f̃ x + σ² s] dλ + σ dW_λ (generation, dλ > 0), with s = ∇log p_λ,

    d log p_λ(x_λ) = [−D f̃ + ½ σ² ‖s‖²] dλ + σ sᵀ dW_λ                         (Thm 1, digest §3.1)

driven by the same Brownian increment. No Laplacian appears, so the update needs only the score
that the
x-update already computed. Euler–Maruyama on a grid λ_0 < … < λ_N, with h = λ_{k+1} − λ_k, ε ~
N(0, I):

    x ← x + (f̃ x + σ² s) h + σ √h ε
    r ← r + (−D f̃ + ½ σ² ‖s‖²) h + σ √h sᵀε

With a learned score s_θ, r_N over-estimates the SDE model's log-density on average (Theorem 3; see
`bounds`). Euler–Maruyama's own bias grows with D and shrinks as 1/steps (digest §3.1).
"""

from __future__ import annotations

import torch
from torch import Tensor

from cartoonist.diffusion.integrators import check_grid, check_state, step_range
from cartoonist.diffusion.results import SampleResult, Trajectory
from cartoonist.diffusion.rng import as_noise
from cartoonist.diffusion.schedules import Schedule, check_steps
from cartoonist.diffusion.score import as_counted, check_batch, check_per_sample, lam_batch

__all__ = ["sample_sde"]


def sample_sde(
    score,
    schedule: Schedule,
    x_init: Tensor,
    steps: int | None = 1000,
    *,
    grid=None,
    seed: int = 0,
    sample_ids=None,
    noise=None,
    track_logp: bool = True,
    logp_init=None,
    record: bool = False,
) -> SampleResult:
    """Reverse-SDE sampling (Euler–Maruyama in λ) with the Theorem 1 log-density r_λ.

    Args:
        score: score function (x [B, ...], lam [B]) -> ∇log p_λ [B, ...].
        schedule: diffusion schedule; the grid runs λ_min → λ_max unless `grid` is given.
        x_init: [B, ...] initial states, e.g. `schedule.sample_prior((B, ...), seed)`.
        steps: number of Euler–Maruyama steps (one score evaluation each).
        grid: explicit increasing λ grid (overrides steps).
        seed, sample_ids: key the Brownian increments per sample (stream "brownian").
        noise: explicit NoiseSource or torch.Generator (overrides seed; a Generator is fast but
            makes a sample's path depend on the batch).
        track_logp: carry r_λ (free: an O(D) dot product per step).
        logp_init: [B] log-density of x_init (default: the schedule's prior N(0, σ_{λ_min}² I)).
        record: keep x and r at every grid point.

    Returns:
        SampleResult(x [B, ...] at the last λ, logp [B] = r in nats or None, nfe = steps).
    """
    x = check_batch(x_init, "x_init")
    if grid is None:
        check_steps(steps)
        grid = schedule.grid(steps)
    grid = check_grid(grid, schedule, increasing=True)
    r = None
    if track_logp:
        if logp_init is None:
            if float(grid[0]) != schedule.lambda_min:
                raise ValueError(
                    "logp_init is required when the grid does not start at lambda_min"
                )
            logp_init = schedule.prior_log_prob(x)
        r = check_per_sample(logp_init, x, "logp_init").to(x.device)
    sc = as_counted(score)
    src = as_noise(noise, seed, x.shape[0], sample_ids, "brownian", dtype=x.dtype, device=x.device)
    B, D, event = x.shape[0], x[0].numel(), x.shape[1:]
    f_all, g2_all = schedule.f_tilde(grid), schedule.g2(grid)
    xs, rs = ([x], [r]) if record else (None, None)
    n = grid.numel() - 1
    for k in step_range(n):
        h = float(grid[k + 1] - grid[k])
        f, g2 = float(f_all[k]), float(g2_all[k])
        sc.where = f" at step {k} of {n}"
        s = sc(x, lam_batch(grid[k], x))
        eps = src.normal(event).to(x)
        noise_x = (g2 * h) ** 0.5 * eps
        if track_logp:
            ss = (s * s).reshape(B, -1).sum(1).to(torch.float64)
            s_eps = (s * noise_x).reshape(B, -1).sum(1).to(torch.float64)
            r = r + (-D * f + 0.5 * g2 * ss) * h + s_eps  # Thm 1, same ε as the x-update
        x = x + (f * x + g2 * s) * h + noise_x
        check_state(x, k, float(grid[k]))
        if record:
            xs.append(x)
            rs.append(r)
    traj = None
    if record:
        traj = Trajectory(grid.clone(), torch.stack(xs), torch.stack(rs) if track_logp else None)
    return SampleResult(x=x, logp=r, nfe=sc.nfe, trajectory=traj)
