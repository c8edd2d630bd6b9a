"""Theorem 5: the mode-tracking ODE, and a Newton reference for the mode of p(x_s | x_t).

Fix x_t at log-SNR λ_t. The mode y_s of q_s(x) = p(x_s = x | x_t) ∝ p_s(x) N(x_t; α_{t|s} x,
σ²_{t|s} I) moves with s (λ_s ≥ λ_t) as (digest §3.7)

    dy/dλ = f̃ y + σ² s(y) + ½ σ² H_q(y)⁻¹ ∇Δlog p_λ(y),        y(λ_t) = x_t          (Thm 5)

with H_q = ∇²log p_λ − κ I, κ = α²_{t|s}/σ²_{t|s} = 1 / (σ_λ² (e^{λ − λ_t} − 1)). At λ = λ_t,
κ = ∞ and the correction vanishes: the ODE starts as the HD-ODE (Remark 1), which drops the
third-order term.

It needs the Hessian (a D×D solve — `solver="exact"`, small D — or conjugate gradients on
Hessian-vector products, `solver="cg"`) and the gradient of the Laplacian (third derivatives, by
autograd or a closed form). The implicit-function setting assumes H_q stays invertible; through a
bifurcation the ODE follows the continuous branch and ends at a local mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from cartoonist.diffusion.contract import (
    check_choice,
    check_inputs,
    check_lambda_value,
    resolve_grid,
    span_grid,
)
from cartoonist.diffusion.divergence import FixedProbes
from cartoonist.diffusion.integrators import GENERIC_METHODS, integrate_ode
from cartoonist.diffusion.results import SampleResult
from cartoonist.diffusion.rng import as_noise
from cartoonist.diffusion.schedules import Schedule
from cartoonist.diffusion.score import as_counted, check_batch, lam_batch

__all__ = [
    "track_mode",
    "newton_mode",
    "sample_mode_tracking",
    "ModeResult",
    "hessian",
    "grad_laplacian",
    "batched_cg",
]


def _flat(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1)


def hessian(score, y: Tensor, lam: Tensor) -> Tensor:
    """∇²log p_λ(y) = Jacobian of the score, [B, D, D], by D Jacobian-vector products."""
    D = y[0].numel()
    eye = torch.eye(D, dtype=y.dtype, device=y.device)
    basis = [eye[i].reshape(y.shape[1:]).expand_as(y) for i in range(D)]
    cols = [torch.func.jvp(lambda z: score(z, lam), (y,), (v,))[1] for v in basis]
    return torch.stack([_flat(c) for c in cols], dim=-1)


def grad_laplacian(score, y: Tensor, lam: Tensor, probes: list[Tensor] | None = None) -> Tensor:
    """∇_y Δlog p_λ(y), [B, ...], by reverse-over-forward autograd.

    Args:
        score: score function.
        y: [B, ...] points.
        lam: [B] log-SNR.
        probes: Hutchinson probes (each [B, ...]); None uses all D basis vectors (exact).
    """
    if probes is None:
        D = y[0].numel()
        eye = torch.eye(D, dtype=y.dtype, device=y.device)
        probes = [eye[i].reshape(y.shape[1:]).expand_as(y) for i in range(D)]
        scale = 1.0
    else:
        scale = 1.0 / len(probes)

    def lap_sum(z):
        tot = 0.0
        for v in probes:
            tot = tot + (v * torch.func.jvp(lambda q: score(q, lam), (z,), (v,))[1]).sum()
        return tot * scale

    return torch.func.grad(lap_sum)(y)


def batched_cg(
    matvec: Callable[[Tensor], Tensor], b: Tensor, tol: float = 1e-10, max_iter: int = 100
) -> Tensor:
    """Solve A u = b per sample for symmetric positive-definite A given by `matvec`, [B, D]."""
    u = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = (r * r).sum(1)
    stop = tol**2 * (b * b).sum(1).clamp(min=1e-300)
    for _ in range(max_iter):
        if bool((rr <= stop).all()):
            break
        Ap = matvec(p)
        a = rr / (p * Ap).sum(1).clamp(min=1e-300)
        u = u + a[:, None] * p
        r = r - a[:, None] * Ap
        rr_new = (r * r).sum(1)
        p = r + (rr_new / rr.clamp(min=1e-300))[:, None] * p
        rr = rr_new
    return u


def _kappa(schedule: Schedule, lam: float, lambda_t: float) -> float:
    """α²_{t|s}/σ²_{t|s} = 1/(σ_s² (e^{λ_s − λ_t} − 1)); inf at λ_s = λ_t."""
    em1 = math.expm1(lam - lambda_t)
    if em1 <= 0:
        return math.inf
    return 1.0 / (float(schedule.g2(torch.tensor(lam, dtype=torch.float64))) * em1)


def track_mode(
    score,
    schedule: Schedule,
    x: Tensor,
    steps: int | None = 1000,
    *,
    grid=None,
    lambda_t: float | None = None,
    lambda_end: float | None = None,
    method: str = "rk4",
    solver: str = "exact",
    hessian_fn=None,
    hvp_fn=None,
    grad_laplacian_fn=None,
    cg_tol: float = 1e-10,
    cg_iters: int | None = None,
    laplacian_probes: int | None = None,
    noise=None,
    rtol: float = 1e-9,
    atol: float = 1e-9,
    record: bool = False,
) -> SampleResult:
    """Integrate the Theorem 5 mode-tracking ODE from x_t at λ_t to λ_end (default λ_max).

    Args:
        score: score function (x [B, ...], lam [B]) -> [B, ...]; differentiated twice unless the
            closed forms below are given.
        schedule: diffusion schedule.
        x: [B, ...] noisy points x_t at λ_t.
        steps: grid steps (fixed methods) or output points (adaptive methods), uniform in λ from
            lambda_t to lambda_end.
        grid: explicit increasing λ grid starting at λ_t (overrides steps, lambda_t, lambda_end).
        lambda_t: the log-SNR of x (required without `grid`).
        lambda_end: final log-SNR (default λ_max).
        method: "rk4" (default), "heun", "euler" or an adaptive torchdiffeq method ("dopri5").
        solver: "exact" (full Hessian and a D×D solve per evaluation) or "cg" (matrix-free:
            conjugate gradients on Hessian-vector products).
        hessian_fn: optional closed form (y, lam) -> [B, D, D] (e.g. `GaussianMixture.hessian`).
        hvp_fn: optional closed form (y, lam, v) -> [B, ...] for the CG solver.
        grad_laplacian_fn: optional closed form (y, lam) -> [B, ...].
        cg_tol, cg_iters: CG stopping rule (iterations default to D).
        laplacian_probes: None computes ∇Δlog p exactly (D basis vectors); an integer n uses n
            fixed Rademacher probes per sample (Hutchinson; for image-sized D).
        noise: Keys, torch.Generator or None: those probes (stream "probe").
        rtol, atol: adaptive tolerances.
        record: keep the trajectory.

    Returns:
        SampleResult(x = the tracked mode [B, ...] at λ_end, logp None, nfe).
    """
    y0 = check_inputs(x, schedule, noise)
    check_choice(solver, ("exact", "cg"), "solver")
    check_choice(method, GENERIC_METHODS, "method")
    if laplacian_probes is not None and (
        isinstance(laplacian_probes, bool)
        or not isinstance(laplacian_probes, int)
        or laplacian_probes < 1
    ):
        raise ValueError(
            f"laplacian_probes must be None or a positive integer, got {laplacian_probes!r}"
        )
    grid = span_grid(schedule, steps, grid, lambda_t, lambda_end, "lambda_t", "the log-SNR of x")
    lambda_t = float(grid[0])
    sc = as_counted(score, noise)
    D = y0[0].numel()
    iters = cg_iters or max(D, 10)
    probes = None
    if laplacian_probes is not None:
        src = as_noise(noise, y0.shape[0], "probe", y0.dtype, y0.device)
        probes = FixedProbes(src, y0.shape[1:], laplacian_probes).probes

    def drift(y: Tensor, lam: Tensor):
        lb = lam_batch(lam, y)
        lam_f = float(lam)
        g2, f = float(schedule.g2(lam)), float(schedule.f_tilde(lam))
        s = sc(y, lb)
        w = f * y + g2 * s
        kappa = _kappa(schedule, lam_f, lambda_t)
        if math.isinf(kappa):
            return w, None
        gl = _flat(
            grad_laplacian_fn(y, lb) if grad_laplacian_fn else grad_laplacian(sc, y, lb, probes)
        )
        if solver == "exact":
            H = hessian_fn(y, lb) if hessian_fn else hessian(sc, y, lb)
            Hq = H - kappa * torch.eye(D, dtype=y.dtype, device=y.device)
            z = torch.linalg.solve(Hq, gl.unsqueeze(-1)).squeeze(-1)
        else:

            def matvec(v):  # (κI − H) v, SPD at a non-degenerate mode
                v_ = v.reshape(y.shape)
                hv = (
                    hvp_fn(y, lb, v_)
                    if hvp_fn
                    else torch.func.jvp(lambda q: sc(q, lb), (y,), (v_,))[1]
                )
                return kappa * v - _flat(hv)

            z = -batched_cg(matvec, gl, cg_tol, iters)
        return w + 0.5 * g2 * z.reshape(y.shape), None

    y, _, traj = integrate_ode(
        drift, y0, grid, method=method, rtol=rtol, atol=atol, score=sc, record=record
    )
    return SampleResult(x=y, logp=None, nfe=sc.nfe, trajectory=traj)


@dataclass
class ModeResult:
    """Output of `newton_mode`.

    Attributes:
        x: [B, ...] the mode of p(x_s | x_t).
        grad_norm: [B] ‖∇log q_s(x)‖ at the returned point.
        max_eig: [B] largest eigenvalue of ∇²log q_s there (< 0 at a strict local maximum).
        converged: [B] bool.
        iterations: Newton iterations used.
    """

    x: Tensor
    grad_norm: Tensor
    max_eig: Tensor
    converged: Tensor
    iterations: int


def newton_mode(
    score,
    schedule: Schedule,
    x: Tensor,
    *,
    lambda_t: float,
    lambda_s: float | None = None,
    start: Tensor | None = None,
    hessian_fn=None,
    log_prob=None,
    tol: float = 1e-11,
    max_iter: int = 100,
) -> ModeResult:
    """Newton's method for the mode of q_s(x) = p(x_s = x | x_t) (the reference for Theorem 5).

    log q_s(x) = log p_s(x) − ‖x_t − α_{t|s} x‖²/(2σ²_{t|s}) + const, with α_{t|s} = α_t/α_s and
    σ²_{t|s} = σ_t² (1 − e^{λ_t − λ_s}). Steps use the Hessian shifted to be negative definite
    when it is not, and backtrack on log q_s when `log_prob` is given. Small D only (full Hessian).

    Args:
        score, schedule: as in `track_mode`.
        x: [B, ...] noisy points x_t at λ_t.
        lambda_t: their log-SNR; lambda_s: the target level (default λ_max), > λ_t.
        start: [B, ...] Newton's starting points (default: the HD-ODE endpoint, 500 Euler steps).
        hessian_fn: closed-form Hessian (y, lam) -> [B, D, D]; else autograd.
        log_prob: (y, lam) -> [B] log p_s, enables the backtracking line search.
        tol: stop when ‖∇log q_s‖ < tol per sample.
        max_iter: iteration cap.

    Returns:
        ModeResult.
    """
    x_t = check_inputs(x, schedule)
    lambda_t = check_lambda_value(schedule, lambda_t, "lambda_t")
    lam_s = schedule.lambda_max if lambda_s is None else float(lambda_s)
    if not lam_s > lambda_t:
        raise ValueError(f"lambda_s must exceed lambda_t, got {lam_s} ≤ {lambda_t}")
    check_lambda_value(schedule, lam_s, "lambda_s")
    if start is not None and check_batch(start, "start").shape != x_t.shape:
        raise ValueError(f"start must have the shape of x {tuple(x_t.shape)}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    sched = lambda v: schedule.alpha(torch.tensor(v, dtype=torch.float64))  # noqa: E731
    a_ts = float(sched(lambda_t) / sched(lam_s))
    var_ts = -float(schedule.g2(torch.tensor(lambda_t, dtype=torch.float64))) * math.expm1(
        lambda_t - lam_s
    )
    kappa = a_ts**2 / var_ts
    if start is None:
        from cartoonist.diffusion.high_density import hd_ode

        start = hd_ode(score, schedule, x_t, 500, lambda_start=lambda_t, lambda_end=lam_s).x
    y = start.clone()
    lb = lam_batch(lam_s, y)
    D = y[0].numel()
    eye = torch.eye(D, dtype=y.dtype, device=y.device)

    def grad_q(z):
        return _flat(score(z, lb)) + (a_ts / var_ts) * _flat(x_t - a_ts * z)

    def logq(z):
        return log_prob(z, lb) - 0.5 * _flat(x_t - a_ts * z).pow(2).sum(1) / var_ts

    it = 0
    for it in range(1, max_iter + 1):
        g = grad_q(y)
        if bool((g.norm(dim=1) < tol).all()):
            break
        Hq = (hessian_fn(y, lb) if hessian_fn else hessian(score, y, lb)) - kappa * eye
        top = torch.linalg.eigvalsh(Hq)[:, -1]
        shift = torch.clamp(top + 1e-8 * kappa, min=0)  # keep the model negative definite
        step = -torch.linalg.solve(Hq - shift[:, None, None] * eye, g.unsqueeze(-1)).squeeze(-1)
        y = _line_search(y, step.reshape(y.shape), logq) if log_prob else y + step.reshape(y.shape)
    g = grad_q(y)
    Hq = (hessian_fn(y, lb) if hessian_fn else hessian(score, y, lb)) - kappa * eye
    top = torch.linalg.eigvalsh(Hq)[:, -1]
    gn = g.norm(dim=1)
    return ModeResult(
        x=y, grad_norm=gn, max_eig=top, converged=(gn < tol) & (top < 0), iterations=it
    )


def _line_search(y, step, logq, shrink=0.5, tries=30):
    f0 = logq(y)
    t = torch.ones(y.shape[0], dtype=y.dtype, device=y.device)
    shape = (-1,) + (1,) * (y.dim() - 1)
    for _ in range(tries):
        cand = y + t.reshape(shape) * step
        worse = logq(cand) < f0 - 1e-12 * f0.abs()
        if not bool(worse.any()):
            return cand
        t = torch.where(worse, t * shrink, t)
    return y + t.reshape(shape) * step


def sample_mode_tracking(
    score,
    schedule: Schedule,
    x: Tensor,
    steps: int = 400,
    *,
    lambda_t: float = 0.0,
    sde_steps: int = 500,
    noise=None,
    method: str = "rk4",
    record: bool = False,
) -> SampleResult:
    """Theorem 5 as a sampler: the reverse SDE λ_min → λ_t, then `track_mode` to λ_max.

    Uses the closed-form Hessian and ∇Δlog p when `score` is an oracle with `.hessian` and
    `.grad_laplacian` (e.g. a GaussianMixture), else autograd (small D only).

    Args:
        score, schedule: the model.
        x: [B, ...] prior draws at λ_min.
        steps: mode-tracking steps on [λ_t, λ_max].
        lambda_t: where the SDE stops and the mode tracking starts.
        sde_steps: Euler–Maruyama steps on [λ_min, λ_t].
        noise: Keys, torch.Generator or None: the Brownian path (stream "brownian").
        method: integrator of the mode-tracking ODE.
        record: keep the mode-tracking stage's trajectory.

    Returns:
        SampleResult(x = the tracked modes [B, ...] at λ_max, logp None, nfe of both stages).
    """
    from cartoonist.diffusion.sde_tracking import sample_sde

    x = check_inputs(x, schedule, noise)
    lambda_t = check_lambda_value(schedule, lambda_t, "lambda_t")
    check_choice(method, GENERIC_METHODS, "method")
    sde_grid = resolve_grid(schedule, sde_steps, None, schedule.lambda_min, lambda_t, True)
    resolve_grid(schedule, steps, None, lambda_t, schedule.lambda_max, True)
    x_t = sample_sde(score, schedule, x, grid=sde_grid, noise=noise, track_logp=False)
    kw = {}
    if hasattr(score, "hessian") and hasattr(score, "grad_laplacian"):
        kw = dict(hessian_fn=score.hessian, grad_laplacian_fn=score.grad_laplacian)
    res = track_mode(
        score, schedule, x_t.x, steps, lambda_t=lambda_t, method=method, record=record, **kw
    )
    res.nfe += x_t.nfe
    return res
