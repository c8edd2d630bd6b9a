"""The demo figure: sample rows per sampler with their exact log p, and Theorem 1's tracking."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from cartoonist.plotting.samples import show_row  # noqa: E402

__all__ = ["demo_figure"]


def demo_figure(
    panels: dict[str, tuple[Tensor, Tensor]],
    event_shape,
    tracked: Tensor,
    exact: Tensor,
    per_row: int = 12,
):
    """Rows of samples (one per sampler, same noise) and a tracked-vs-exact log p scatter.

    Args:
        panels: name -> (samples [N, *event_shape], exact log p [N] in nats).
        event_shape: (C, H, W) of the images.
        tracked, exact: [M] Theorem 1 log p and the exact log p of the same SDE samples (nats).
        per_row: images per row.

    Returns:
        matplotlib Figure.
    """
    rows = len(panels)
    fig = plt.figure(figsize=(11, 1.3 * rows + 0.8))
    gs = fig.add_gridspec(rows, 2, width_ratios=[3.2, 1.3], wspace=0.25)
    for r, (name, (x, lp)) in enumerate(panels.items()):
        ax = fig.add_subplot(gs[r, 0])
        show_row(ax, x, event_shape, per_row, name, fontsize=9)
        ax.set_title(f"mean exact log p = {float(lp.mean()):.1f} nats", fontsize=8, loc="left")
    ax = fig.add_subplot(gs[:, 1])
    lo, hi = (
        float(torch.min(exact.min(), tracked.min())),
        float(torch.max(exact.max(), tracked.max())),
    )
    ax.plot([lo, hi], [lo, hi], color="#999999", lw=1, label="y = x")
    ax.scatter(exact, tracked, s=8, color="#D55E00", label="SDE samples")
    corr = float(torch.corrcoef(torch.stack([tracked, exact]))[0, 1])
    ax.set_xlabel("exact log p (nats)")
    ax.set_ylabel("tracked r₀, Theorem 1 (nats)")
    ax.set_title(f"Theorem 1 tracking, corr {corr:.3f}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    return fig
