"""Theorem 2: the augmented forward SDE — a single-path estimate of log p(x_0) for a given x_0.

Along the forward SDE dx = f̃ x dλ + σ dW (λ decreasing from the data end, |dλ| the time step),

    d log p_λ(x_λ) = [−D f̃ − σ² (Δlog p_λ + ½ ‖s‖²)] dλ + σ sᵀ dW              (Thm 2, digest §3.2)

so, pathwise, log p_{λ_max}(x_0) = log p_{λ_min}(x_{λ_min}) − Σ_k (increment_k). The estimate is
unbiased up to discretisation, with noise; it needs the Laplacian (one JVP per step). With a
learned score its expectation is the ELBO (Theorem 4; see `elbo`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from cartoonist.diffusion.contract import check_divergence, check_inputs, resolve_grid
from cartoonist.diffusion.divergence import score_and_laplacian
from cartoonist.diffusion.integrators import check_state, step_range
from cartoonist.diffusion.results import LikelihoodResult
from cartoonist.diffusion.rng import as_noise
from cartoonist.diffusion.schedules import Schedule
from cartoonist.diffusion.score import as_counted, lam_batch

__all__ = ["forward_sde_log_prob"]


def forward_sde_log_prob(
    score,
    schedule: Schedule,
    x: Tensor,
    steps: int | None = 1000,
    *,
    grid=None,
    divergence: str = "hutchinson",
    probes: int = 1,
    backend: str = "auto",
    noise=None,
    prior_log_prob=None,
) -> LikelihoodResult:
    """Pathwise Theorem 2 estimate of log p_{λ_max}(x0), in nats.

    Args:
        score: score function (x [B, ...], lam [B]) -> [B, ...].
        schedule: diffusion schedule; the path runs λ_max → λ_min.
        x: [B, ...] data points (at λ_max).
        steps: Euler–Maruyama steps (one JVP each).
        grid: explicit decreasing λ grid (overrides steps).
        divergence, probes, backend: Laplacian estimator (see `jacobian_trace`).
        noise: Keys (the Brownian path from stream "brownian", the probes from "probe"; default
            Keys(0)), or a torch.Generator / NoiseSource that supplies both.
        prior_log_prob: callable [B, ...] -> [B] at λ_min (default: the schedule's prior).

    Returns:
        LikelihoodResult(logp [B] nats, nfe, latent = x at λ_min).
    """
    x = check_inputs(x, schedule, noise)
    check_divergence(divergence, probes, backend)
    grid = resolve_grid(schedule, steps, grid, schedule.lambda_max, schedule.lambda_min, False)
    sc = as_counted(score, noise)
    B, D, event = x.shape[0], x[0].numel(), x.shape[1:]
    bm = as_noise(noise, B, "brownian", dtype=x.dtype, device=x.device)
    pr = as_noise(noise, B, "probe", dtype=x.dtype, device=x.device)
    f_all, g2_all = schedule.f_tilde(grid), schedule.g2(grid)
    acc = torch.zeros(B, dtype=torch.float64, device=x.device)
    n = grid.numel() - 1
    for k in step_range(n):
        h = float(grid[k + 1] - grid[k])  # < 0
        f, g2 = float(f_all[k]), float(g2_all[k])
        lb = lam_batch(grid[k], x)
        sc.where = f" at step {k} of {n}"
        s, lap = score_and_laplacian(sc, x, lb, divergence, probes, pr, backend)
        noise_x = (g2 * -h) ** 0.5 * bm.normal(event).to(x)
        ss = (s * s).reshape(B, -1).sum(1)
        drift = -D * f - g2 * (lap + 0.5 * ss)
        acc = acc + (drift * h + (s * noise_x).reshape(B, -1).sum(1)).to(torch.float64)
        x = x + f * x * h + noise_x
        check_state(x, k, float(grid[k]))
    prior = (prior_log_prob or schedule.prior_log_prob)(x).to(torch.float64)
    return LikelihoodResult(logp=prior - acc, nfe=sc.nfe, latent=x)
