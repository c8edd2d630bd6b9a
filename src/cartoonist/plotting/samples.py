"""Sample grids (images) and scatter plots (vectors)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

__all__ = ["sample_figure", "image_grid", "show_row"]


def image_grid(x: Tensor, ncol: int | None = None, pad: int = 1) -> Tensor:
    """Tile images [N, C, H, W] in [−1, 1] into one [H', W', C] array in [0, 1]."""
    n, c, h, w = x.shape
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    grid = torch.ones(c, nrow * (h + pad) + pad, ncol * (w + pad) + pad)
    for i in range(n):
        r, q = divmod(i, ncol)
        grid[
            :,
            pad + r * (h + pad) : pad + r * (h + pad) + h,
            pad + q * (w + pad) : pad + q * (w + pad) + w,
        ] = (x[i].float().clamp(-1, 1) + 1) / 2
    return grid.permute(1, 2, 0)


def sample_figure(x: Tensor, event_shape: tuple, max_images: int = 64, title: str | None = None):
    """A grid of image samples ([N, C, H, W]) or a scatter of vector samples ([N, D]).

    Args:
        x: [N, *event_shape] samples in model space ([−1, 1] for images).
        event_shape: the dataset's event shape; 3-D shapes are drawn as images.
        max_images: images shown at most.
        title: optional title.

    Returns:
        matplotlib Figure.
    """
    if len(event_shape) == 3:
        g = image_grid(x[:max_images].reshape(-1, *event_shape))
        fig, ax = plt.subplots(figsize=(6, 6))
        ax.imshow(g.squeeze(-1) if g.shape[-1] == 1 else g, cmap="gray", vmin=0, vmax=1)
        ax.axis("off")
    else:
        pts = x.reshape(x.shape[0], -1).float()
        fig, ax = plt.subplots(figsize=(5, 5))
        y = pts[:, 1] if pts.shape[1] > 1 else torch.zeros_like(pts[:, 0])
        ax.scatter(pts[:, 0], y, s=4, alpha=0.6, color="#0072B2")
        ax.set_xlabel("x₁")
        ax.set_ylabel("x₂" if pts.shape[1] > 1 else "")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def show_row(ax, x, event_shape, per_row: int, label: str, fontsize: int = 8) -> None:
    """Draw the first `per_row` samples of x [N, ...] as one grid row on `ax`, labelled `label`."""
    g = image_grid(x[:per_row].reshape(-1, *event_shape), ncol=per_row)
    ax.imshow(g.squeeze(-1) if g.shape[-1] == 1 else g, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=fontsize)
