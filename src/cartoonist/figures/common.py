"""Shared pieces of the figure computations."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from cartoonist.diffusion import VP
from cartoonist.oracles import GaussianMixture, fit_mppca

__all__ = ["FigureData", "toy_mixture", "fit_image_oracle"]


@dataclass
class FigureData:
    """The plotted numbers of a figure and its headline metrics.

    Attributes:
        rows: one dict per plotted point (the figure's CSV).
        metrics: headline numbers (the figure's JSON).
    """

    rows: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)


def toy_mixture(dim: int, lambda_min: float = -8.0, lambda_max: float = 8.0) -> GaussianMixture:
    """The 1-D or 2-D three-component mixtures used by the toy figures (digest §7)."""
    if dim == 1:
        means, var, w = [[-2.0], [0.5], [2.5]], [[0.2], [0.3], [0.1]], [0.3, 0.4, 0.3]
    elif dim == 2:
        means = [[-2.0, 0.0], [1.5, 1.0], [0.0, -2.0]]
        var, w = [[0.3, 0.2], [0.1, 0.5], [0.4, 0.05]], [0.2, 0.5, 0.3]
    else:
        raise ValueError(f"toy mixtures exist for dim 1 and 2, got {dim}")
    f64 = torch.float64
    return GaussianMixture(
        w,
        torch.tensor(means, dtype=f64),
        torch.tensor(var, dtype=f64),
        schedule=VP(lambda_min, lambda_max),
    )


def fit_image_oracle(
    source,
    components: int,
    rank: int,
    iters: int,
    seed: int,
    lambda_min: float = -10.0,
    lambda_max: float = 10.0,
):
    """A mixture of PPCA fitted to an image source: an exact diffusion model of those images."""
    data = source.load()
    return fit_mppca(
        data, components, rank, iters=iters, seed=seed, schedule=VP(lambda_min, lambda_max)
    ), data
