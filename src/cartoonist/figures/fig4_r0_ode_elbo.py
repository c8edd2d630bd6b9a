"""Figure 4: r_0 (Theorem 1) vs PF-ODE log p vs ELBO on the same samples of trained models."""

from __future__ import annotations

import itertools

import pandas as pd
import torch
from torchmetrics.functional import pearson_corrcoef, spearman_corrcoef

from cartoonist.diffusion import bias_bounds
from cartoonist.figures.common import FigureData

__all__ = ["summarise_fig4", "ESTIMATORS"]

ESTIMATORS = ("sde_tracking", "pf_ode", "elbo")


def summarise_fig4(per_sample: pd.DataFrame) -> FigureData:
    """Per model: means, pairwise Pearson/Spearman, the ordering fraction and the bias bounds.

    Args:
        per_sample: columns model, sample_id, estimator (sde_tracking = r_0, pf_ode, elbo, and
            data_exact where the data density is known), logp_nats.

    Returns:
        FigureData: rows = one per (model, sample) with each estimator's log p (the scatter
        points); metrics per model = means (nats), correlations, the fraction with
        r_0 > log p^ODE > ELBO, the Theorem 3–4 bounds [0, E r_0 − E ELBO] on the r_0 bias, and,
        with data_exact, each estimator's mean error and MAE against it.
    """
    wide = per_sample.pivot_table(
        index=["model", "sample_id"], columns="estimator", values="logp_nats"
    ).reset_index()
    data = FigureData(rows=wide.to_dict("records"))
    for model, g in wide.groupby("model"):
        cols = [e for e in ESTIMATORS if e in g]
        v = {e: torch.tensor(g[e].values, dtype=torch.float64) for e in cols}
        m = {f"{model}/mean_{e}": float(v[e].mean()) for e in cols}
        for a, b in itertools.combinations(cols, 2):
            m[f"{model}/pearson_{a}_{b}"] = float(pearson_corrcoef(v[a], v[b]))
            m[f"{model}/spearman_{a}_{b}"] = float(spearman_corrcoef(v[a], v[b]))
        if all(e in v for e in ESTIMATORS):
            order = (v["sde_tracking"] > v["pf_ode"]) & (v["pf_ode"] > v["elbo"])
            m[f"{model}/frac_r0_gt_ode_gt_elbo"] = float(order.double().mean())
        if "sde_tracking" in v and "elbo" in v:
            b = bias_bounds(v["sde_tracking"], v["elbo"])
            m[f"{model}/bias_bound_upper"] = b.upper
            m[f"{model}/bias_bound_upper_stderr"] = b.upper_stderr
        if "data_exact" in g and bool(g["data_exact"].notna().all()):
            t = torch.tensor(g["data_exact"].values, dtype=torch.float64)
            for e in cols:
                m[f"{model}/mean_err_{e}_vs_data"] = float((v[e] - t).mean())
                m[f"{model}/mae_{e}_vs_data"] = float((v[e] - t).abs().mean())
        m[f"{model}/n"] = len(g)
        data.metrics.update(m)
    return data
