"""Shared pieces of the figure computations."""

from __future__ import annotations

from dataclasses import dataclass, field

from cartoonist.diffusion import VP
from cartoonist.oracles import GaussianMixture, fit_mppca, gmm1d, gmm2d

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
    """The 1-D or 2-D three-component toy mixtures (`cartoonist.oracles.toy`) of the figures."""
    toys = {1: gmm1d, 2: gmm2d}
    if dim not in toys:
        raise ValueError(f"toy mixtures exist for dim 1 and 2, got {dim}")
    return toys[dim](VP(lambda_min, lambda_max))


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
