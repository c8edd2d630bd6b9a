"""Figure plots: a table of plotted numbers (pandas DataFrame) in, a matplotlib Figure out."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from cartoonist.plotting.labels import ESTIMATORS  # noqa: E402
from cartoonist.plotting.samples import show_row  # noqa: E402

__all__ = [
    "OKABE_ITO",
    "plot_fig1_hd_samples",
    "plot_fig3_tracking",
    "plot_fig4_r0_ode_elbo",
    "plot_fig5_mode_tracking",
    "plot_hd_families",
    "plot_hd_threshold",
    "plot_png_size",
]

OKABE_ITO = [
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#F0E442",
    "#000000",
]


def plot_fig3_tracking(df: pd.DataFrame):
    """Tracked r_λ vs exact log p_λ along paths (top) and the error vs steps (bottom)."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for col, dim in enumerate((1, 2)):
        ax = axes[0, col]
        tr = df[(df.panel == "trajectory") & (df.dim == dim)]
        for i, (_, g) in enumerate(tr.groupby("sample")):
            c = OKABE_ITO[i % len(OKABE_ITO)]
            ax.plot(g.lam, g.logp_exact, color=c, lw=1.5)
            ax.plot(g.lam, g.logp_tracked, color=c, lw=1.2, ls="--")
        ax.plot([], [], color="k", lw=1.5, label="exact log p_λ(x_λ)")
        ax.plot([], [], color="k", lw=1.2, ls="--", label="tracked r_λ (Theorem 1)")
        ax.set_xlabel("log-SNR λ (noise → data)")
        ax.set_ylabel("log-density (nats)")
        ax.set_title(f"{dim}-D mixture: reverse-SDE paths")
        ax.legend(fontsize=8)
        ax = axes[1, col]
        er = df[(df.panel == "error") & (df.dim == dim)].sort_values("steps")
        schemes = er.scheme.unique() if "scheme" in er else ["euler"]
        for j, scheme in enumerate(schemes):
            e = er[er.scheme == scheme] if "scheme" in er else er
            name = "Euler–Maruyama (paper)" if scheme == "euler" else f"{scheme} (ours)"
            c, ls = OKABE_ITO[2 * j % len(OKABE_ITO)], "-" if scheme == "euler" else "--"
            ax.loglog(e.steps, e.mean_err.abs(), "o" + ls, color=c, label=f"|mean error|, {name}")
            ax.loglog(
                e.steps,
                e.mean_abs_err,
                "s" + ls,
                color=OKABE_ITO[(2 * j + 1) % 8],
                label=f"mean |error|, {name}",
            )
        if "mean_err_se" in er:
            se = er.groupby("steps").mean_err_se.max()
            ax.loglog(se.index, 2 * se.values, ":", color="0.4", label="2 s.e. (noise floor)")
        ax.set_xlabel("steps (score evaluations)")
        ax.set_ylabel("r₀ − log p (nats)")
        ax.set_title(f"{dim}-D: error at the end vs steps")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def plot_fig5_mode_tracking(df: pd.DataFrame):
    """Mode of p(x_s | x_t) along λ_s: Newton reference, Theorem 5 ODE and HD-ODE."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    p1 = df[(df.panel == "path") & (df.dim == 1)]
    ax = axes[0]
    for i, (_, g) in enumerate(p1.groupby("sample")):
        c = OKABE_ITO[i % len(OKABE_ITO)]
        ax.plot(g.lam, g.tracked, color=c, lw=1.5)
        ax.plot(g.lam, g.hd_ode, color=c, lw=1.0, ls="--")
        ax.plot(g.lam[::3], g.newton[::3], "o", color=c, ms=3)
    ax.plot([], [], "k-", label="mode-tracking ODE (Thm 5)")
    ax.plot([], [], "k--", label="HD-ODE (Remark 1)")
    ax.plot([], [], "ko", ms=3, label="Newton mode")
    ax.set_xlabel("log-SNR λ_s")
    ax.set_ylabel("mode of p(x_s | x_t)")
    ax.set_title("1-D mixture")
    ax.legend(fontsize=8)
    ax = axes[1]
    p2 = df[(df.panel == "path") & (df.dim == 2)]
    for i, (_, g) in enumerate(p2.groupby("sample")):
        c = OKABE_ITO[i % len(OKABE_ITO)]
        a, b = g[g.coord == 0], g[g.coord == 1]
        ax.plot(a.tracked.values, b.tracked.values, color=c, lw=1.5)
        ax.plot(a.hd_ode.values, b.hd_ode.values, color=c, lw=1.0, ls="--")
        ax.plot(a.newton.values[::3], b.newton.values[::3], "o", color=c, ms=3)
    ax.plot([], [], "k-", label="mode-tracking ODE (Thm 5)")
    ax.plot([], [], "k--", label="HD-ODE (Remark 1)")
    ax.plot([], [], "ko", ms=3, label="Newton mode")
    ax.legend(fontsize=8)
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    ax.set_title("2-D mixture: paths of the mode")
    fig.tight_layout()
    return fig


def _estimator_label(df: pd.DataFrame, column: str = "estimator") -> str:
    """The label of a table's log p estimator (`column`; "exact" when the table has none)."""
    est = str(df[column].iloc[0]) if column in df and len(df) else "exact"
    return ESTIMATORS.get(est, est)


def plot_hd_threshold(summary: pd.DataFrame, grids: dict, event_shape, per_row: int = 10):
    """Mean log p vs threshold (left) and HD sample rows per threshold (right).

    Args:
        summary: rows of `summarise_hd_threshold` (method, first_stage, lambda_threshold,
            mean_logp, se, and `estimator`: "exact" when absent), labelled by its estimator.
        grids: label -> samples [N, *event_shape] (shown `per_row` each, one row per label).
        event_shape: (C, H, W).
    """
    fig = plt.figure(figsize=(12, 0.9 * max(len(grids), 4) + 1.5))
    gs = fig.add_gridspec(len(grids), 2, width_ratios=[1.2, 1.6], wspace=0.3)
    ax = fig.add_subplot(gs[:, 0])
    hd = summary[summary.method == "hd"]
    for i, (stage, g) in enumerate(hd.groupby("first_stage")):
        g = g.sort_values("lambda_threshold")
        ax.errorbar(
            g.lambda_threshold,
            g.mean_logp,
            yerr=g.se,
            marker="o",
            capsize=3,
            color=OKABE_ITO[i],
            label=f"HD, first stage {stage}",
        )
    for j, (_, r) in enumerate(summary[summary.method != "hd"].iterrows()):
        ax.axhline(r.mean_logp, color=OKABE_ITO[2 + j], ls="--", label=f"regular {r.method}")
    ax.set_xlabel("threshold λ_thr (HD-ODE from here to λ_max)")
    ax.set_ylabel(f"mean {_estimator_label(summary)} (nats)")
    ax.set_title("Algorithm 1 vs regular sampling (same noise)")
    ax.legend(fontsize=8)
    for r, (label, x) in enumerate(grids.items()):
        show_row(fig.add_subplot(gs[r, 1]), x, event_shape, per_row, label)
    return fig


def plot_fig1_hd_samples(df: pd.DataFrame):
    """Rows: x_t per dataset; columns: x_t | HD mode | posterior samples | posterior mean.

    Each image's log p_{λ_max} (nats per image, model space) is written under it: exact for an
    oracle, the PF-ODE estimate for a learned model (column `logp_kind`; "exact" when absent).
    """
    import numpy as np

    kinds = {"exact": "exact log p", "pf_ode": "PF-ODE log p"}
    datasets = list(dict.fromkeys(df.dataset))
    ncol = int(df.col.max()) + 1
    nrow = sum(int(df[df.dataset == d].row.max()) + 1 for d in datasets)
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.45 * ncol, 1.55 * nrow + 0.5), squeeze=False)
    r0 = 0
    for d in datasets:
        sub = df[df.dataset == d]
        kind = kinds[sub.logp_kind.iloc[0]] if "logp_kind" in sub else kinds["exact"]
        for _, row in sub.iterrows():
            shape = [int(v) for v in str(row["shape"]).split("x")]
            img = np.array([float(v) for v in row.pixels.split()]).reshape(shape)
            img = np.clip((np.moveaxis(img, 0, -1) + 1) / 2, 0, 1)
            ax = axes[r0 + int(row.row), int(row.col)]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if int(row.col) > 0:
                ax.set_xlabel(f"{row.logp:.0f} nats", fontsize=7)
            if r0 + int(row.row) == 0:
                ax.set_title(row.column, fontsize=7)
            if int(row.col) == 0:
                ax.set_ylabel(f"{d}\n({kind})", fontsize=7)
        r0 += int(sub.row.max()) + 1
    fig.suptitle(
        "High-density mode of p(x_0 | x_t) vs samples; under each image its log p (nats/image):\n"
        "exact on the oracles, PF-ODE estimate on the learned model",
        fontsize=8,
    )
    fig.tight_layout()
    return fig


def plot_png_size(df: pd.DataFrame):
    """−log p (nats) against PNG size (bytes) of samples, one colour per sampler.

    The y label names the log p estimator (column `logp_kind`: exact or PF-ODE), the title the
    model (column `model`), when the table has them.
    """
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for i, (name, g) in enumerate(df.groupby("sampler", sort=False)):
        ax.scatter(g.png_bytes, g.neg_logp, s=8, alpha=0.7, color=OKABE_ITO[i], label=name)
    ax.set_xlabel("PNG file size (bytes, 8-bit)")
    ax.set_ylabel(f"−{_estimator_label(df, 'logp_kind')} (nats)")
    model = f": {df.model.iloc[0]}" if "model" in df and len(df) else ""
    ax.set_title(f"Information content vs compressed size{model}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_fig4_r0_ode_elbo(df: pd.DataFrame):
    """Per model (rows): r_0 vs PF-ODE log p and PF-ODE log p vs ELBO scatter (nats)."""
    models = list(dict.fromkeys(df.model))
    pairs = [("pf_ode", "sde_tracking"), ("pf_ode", "elbo"), ("data_exact", "pf_ode")]
    label = {
        "sde_tracking": "r₀ (Thm 1)",
        "pf_ode": "PF-ODE log p",
        "elbo": "ELBO",
        "data_exact": "exact data log p",
    }
    fig, axes = plt.subplots(
        len(models), len(pairs), figsize=(11, 3.4 * len(models)), squeeze=False
    )
    for r, model in enumerate(models):
        g = df[df.model == model]
        for c, (xa, ya) in enumerate(pairs):
            ax = axes[r, c]
            if xa not in g or ya not in g or g[xa].isna().all():
                ax.axis("off")
                continue
            ax.scatter(g[xa], g[ya], s=10, color=OKABE_ITO[c], alpha=0.8)
            lo = float(min(g[xa].min(), g[ya].min()))
            hi = float(max(g[xa].max(), g[ya].max()))
            ax.plot([lo, hi], [lo, hi], color="#999999", lw=1)
            ax.set_xlabel(f"{label[xa]} (nats)")
            ax.set_ylabel(f"{label[ya]} (nats)")
            ax.set_title(model, fontsize=9)
    fig.tight_layout()
    return fig


def plot_hd_families(df: pd.DataFrame):
    """Rows: samples (one noise each); columns: regular SDE, then HD at each λ_thr.

    Under each image its log p_{λ_max} (nats, the model's space) and bits/dim; the row label says
    which estimator (exact on an oracle, tracked along the sampler: Theorem 1 / Lemma).
    """
    import numpy as np

    kinds = {"exact": "exact log p", "tracked": "log p tracked along the sampler"}
    cols = list(dict.fromkeys(df.column))
    n = int(df["sample"].max()) + 1
    fig, axes = plt.subplots(n, len(cols), figsize=(1.6 * len(cols), 1.7 * n + 0.6), squeeze=False)
    for _, row in df.iterrows():
        shape = [int(v) for v in str(row["shape"]).split("x")]
        k = np.array([int(v) for v in str(row.pixels).split()], dtype=np.uint8).reshape(shape)
        ax = axes[int(row["sample"]), cols.index(row.column)]
        if len(shape) == 3:
            img = np.moveaxis(k, 0, -1)
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"{row.logp:.0f} nats\n{row.bpd:.2f} bits/dim", fontsize=7)
        if int(row["sample"]) == 0:
            ax.set_title(row.column, fontsize=8)
    kind = kinds.get(str(df.logp_kind.iloc[0]), str(df.logp_kind.iloc[0]))
    fig.suptitle(f"{df.model.iloc[0]}: same noise per row; {kind}", fontsize=8)
    fig.tight_layout()
    return fig
