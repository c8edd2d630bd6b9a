"""Figure 3: Theorem 1's tracked log-density r_λ against the exact log p_λ(x_λ) on toy mixtures."""

from __future__ import annotations

import torch

from cartoonist.diffusion import Keys, sample_sde
from cartoonist.figures.common import FigureData, toy_mixture

__all__ = ["fig3_tracking"]


def fig3_tracking(
    seed: int = 0,
    n: int = 2000,
    steps: int = 4000,
    step_counts: tuple = (100, 250, 1000, 4000),
    n_traj: int = 6,
    record_every: int = 20,
    schemes: tuple = ("euler", "corrected"),
) -> FigureData:
    """Reverse-SDE sampling with tracked r_λ (Theorem 1) on the 1-D and 2-D toy mixtures.

    Rows: `panel="trajectory"` (dim, sample, λ, tracked and exact log p, nats) for `n_traj` paths
    at `steps` steps with the paper's Euler–Maruyama update, and `panel="error"` (dim, scheme,
    steps, mean error and its standard error, MAE, corr) for every step count and r-update scheme.
    Metrics (2-D mixture at `steps`, Euler–Maruyama): corr_r_true, mean_err, mean_abs_err (nats);
    and per dim and step count the mean error of each scheme (`mean_err_<dim>d_<k>steps` for
    Euler–Maruyama, `mean_err_corrected_<dim>d_<k>steps` for the corrected scheme).

    Args:
        seed: keys the initial draws and Brownian paths.
        n: samples per run.
        steps: Euler–Maruyama steps of the headline run and the trajectories.
        step_counts: steps of the error-vs-steps panel.
        schemes: r-update schemes of that panel (`sample_sde`'s logp_scheme); the same paths.
        n_traj: trajectories drawn per mixture.
        record_every: keep every k-th grid point of the trajectories.
    """
    data = FigureData()
    for dim in (1, 2):
        gmm = toy_mixture(dim)
        sch = gmm.schedule
        x_T = gmm.sample_noised(n, sch.lambda_min, torch.Generator().manual_seed(seed))
        lp0 = gmm.log_prob(x_T, sch.lambda_min)
        for k in sorted(set(step_counts) | {steps}):
            for scheme in dict.fromkeys(("euler", *schemes)):
                headline = k == steps and scheme == "euler"
                res = sample_sde(
                    gmm,
                    sch,
                    x_T,
                    k,
                    noise=Keys(seed),
                    logp_init=lp0,
                    logp_scheme=scheme,
                    record=headline,
                )
                true = gmm.log_prob(res.x, sch.lambda_max)
                err = res.logp - true
                corr = float(torch.corrcoef(torch.stack([res.logp, true]))[0, 1])
                row = dict(
                    panel="error",
                    dim=dim,
                    scheme=scheme,
                    steps=k,
                    mean_err=float(err.mean()),
                    mean_err_se=float(err.std() / err.numel() ** 0.5),
                    mean_abs_err=float(err.abs().mean()),
                    corr=corr,
                )
                data.rows.append(row)
                tag = "" if scheme == "euler" else f"{scheme}_"
                data.metrics[f"mean_err_{tag}{dim}d_{k}steps"] = row["mean_err"]
                if headline:
                    data.rows += _trajectories(gmm, res.trajectory, dim, n_traj, record_every)
                    if dim == 2:
                        data.metrics.update(
                            corr_r_true=corr,
                            mean_err=row["mean_err"],
                            mean_abs_err=row["mean_abs_err"],
                            steps=steps,
                        )
                    data.metrics[f"corr_r_true_{dim}d"] = corr
    return data


def _trajectories(gmm, traj, dim: int, n_traj: int, every: int) -> list[dict]:
    rows = []
    idx = list(range(0, traj.lam.numel(), every))
    if idx[-1] != traj.lam.numel() - 1:
        idx.append(traj.lam.numel() - 1)
    for j in idx:
        lam = float(traj.lam[j])
        true = gmm.log_prob(traj.x[j, :n_traj], lam)
        for i in range(n_traj):
            rows.append(
                dict(
                    panel="trajectory",
                    dim=dim,
                    sample=i,
                    lam=lam,
                    logp_tracked=float(traj.logp[j, i]),
                    logp_exact=float(true[i]),
                )
            )
    return rows
