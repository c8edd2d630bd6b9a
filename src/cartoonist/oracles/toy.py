"""The toy mixtures of the low-dimensional experiments (digest §7), defined once.

* `gmm2d`: weights [0.2, 0.5, 0.3], means [[−2, 0], [1.5, 1], [0, −2]], diagonal variances
  [[0.3, 0.2], [0.1, 0.5], [0.4, 0.05]] (the `gmm2d` dataset, the tests' toy, Figs. 3 and 5);
* `gmm1d`: weights [0.3, 0.4, 0.3], means [−2, 0.5, 2.5], variances [0.2, 0.3, 0.1].
"""

from __future__ import annotations

import torch
from torch import Tensor

from cartoonist.diffusion.schedules import Schedule
from cartoonist.oracles.gmm import GaussianMixture

__all__ = ["gmm1d", "gmm1d_parameters", "gmm2d", "gmm2d_parameters"]

_F64 = torch.float64


def gmm2d_parameters() -> tuple[Tensor, Tensor, Tensor]:
    """(weights [3], means [3, 2], diagonal variances [3, 2]) of the 2-D toy, float64."""
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=_F64)
    means = torch.tensor([[-2.0, 0.0], [1.5, 1.0], [0.0, -2.0]], dtype=_F64)
    var = torch.tensor([[0.3, 0.2], [0.1, 0.5], [0.4, 0.05]], dtype=_F64)
    return weights, means, var


def gmm1d_parameters() -> tuple[Tensor, Tensor, Tensor]:
    """(weights [3], means [3, 1], variances [3, 1]) of the 1-D toy, float64."""
    weights = torch.tensor([0.3, 0.4, 0.3], dtype=_F64)
    means = torch.tensor([[-2.0], [0.5], [2.5]], dtype=_F64)
    var = torch.tensor([[0.2], [0.3], [0.1]], dtype=_F64)
    return weights, means, var


def gmm2d(schedule: Schedule | None = None) -> GaussianMixture:
    """The 2-D, 3-component toy mixture under `schedule` (default `VP()`)."""
    return GaussianMixture(*gmm2d_parameters(), schedule=schedule)


def gmm1d(schedule: Schedule | None = None) -> GaussianMixture:
    """The 1-D, 3-component toy mixture under `schedule` (default `VP()`)."""
    return GaussianMixture(*gmm1d_parameters(), schedule=schedule)
