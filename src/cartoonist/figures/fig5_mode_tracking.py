"""Figure 5: the Theorem 5 mode-tracking ODE recovers the mode of p(x_s | x_t) along s."""

from __future__ import annotations

import torch

from cartoonist.diffusion import hd_ode, newton_mode, track_mode
from cartoonist.figures.common import FigureData, toy_mixture

__all__ = ["fig5_mode_tracking"]


def fig5_mode_tracking(
    seed: int = 0,
    n_points: int = 6,
    steps: int = 400,
    lambda_t: tuple = (-1.0, 0.0),
    check_every: int = 10,
) -> FigureData:
    """Mode of p(x_s | x_t) along λ_s ∈ (λ_t, λ_max]: Newton reference, Theorem 5 ODE, HD-ODE.

    Rows (`panel="path"`): dim, sample, λ, coordinate, and the three modes. Metrics: the maximum
    absolute error of the tracked mode and of the HD-ODE against Newton (over all samples, checked
    λ and coordinates), per dimension and overall, and the fraction of Newton points that are
    strict local maxima.

    Args:
        seed: seeds the draws of x_t.
        n_points: x_t per mixture.
        steps: RK4 steps of the mode-tracking ODE (and Heun steps of the HD-ODE).
        lambda_t: λ_t for the 1-D and the 2-D mixture.
        check_every: Newton reference at every k-th grid point.
    """
    data = FigureData()
    worst = {"mode": 0.0, "hd": 0.0}
    n_max = n_ok = 0
    for dim, lam_t in zip((1, 2), lambda_t):
        gmm = toy_mixture(dim)
        sch = gmm.schedule
        x_t = gmm.sample_noised(n_points, lam_t, torch.Generator().manual_seed(seed + dim))
        closed = dict(hessian_fn=gmm.hessian, grad_laplacian_fn=gmm.grad_laplacian)
        tm = track_mode(gmm, sch, x_t, steps, lambda_t=lam_t, record=True, **closed)
        hd = hd_ode(gmm, sch, x_t, steps, lambda_start=lam_t, method="heun", record=True)
        errs = {"mode": 0.0, "hd": 0.0}
        for j in range(check_every, steps + 1, check_every):
            lam = float(tm.trajectory.lam[j])
            ref = newton_mode(
                gmm,
                sch,
                x_t,
                lambda_t=lam_t,
                lambda_s=lam,
                start=tm.trajectory.x[j],
                hessian_fn=gmm.hessian,
                log_prob=gmm.log_prob,
            )
            n_max += ref.converged.numel()
            n_ok += int(ref.converged.sum())
            y_m, y_h = tm.trajectory.x[j], hd.trajectory.x[j]
            errs["mode"] = max(errs["mode"], float((y_m - ref.x).abs().max()))
            errs["hd"] = max(errs["hd"], float((y_h - ref.x).abs().max()))
            for i in range(n_points):
                for c in range(dim):
                    data.rows.append(
                        dict(
                            panel="path",
                            dim=dim,
                            sample=i,
                            lam=lam,
                            coord=c,
                            newton=float(ref.x[i, c]),
                            tracked=float(y_m[i, c]),
                            hd_ode=float(y_h[i, c]),
                        )
                    )
        for k in errs:
            data.metrics[f"max_err_{k}_{dim}d"] = errs[k]
            worst[k] = max(worst[k], errs[k])
    data.metrics.update(
        max_err_mode_tracking=worst["mode"],
        max_err_hd_ode=worst["hd"],
        newton_strict_max_fraction=n_ok / max(n_max, 1),
        steps=steps,
    )
    return data
