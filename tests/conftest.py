"""Shared fixtures: exact Gaussian-mixture oracles (float64) and test environment settings."""

import os

import pytest
import torch

import cartoonist as c
from cartoonist.oracles import toy

os.environ.setdefault("WANDB_MODE", "disabled")
# The oracle tests run many small tensor ops: OpenMP threads only add overhead (and stall when the
# two cores are shared), so the suite runs single-threaded.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def vp8():
    """VP schedule on λ ∈ [−8, 8] (the digest's toy setting)."""
    return c.VP(-8.0, 8.0)


@pytest.fixture(scope="session")
def gmm2d(vp8):
    """A 2-D, 3-component mixture with diagonal covariances (digest §7 toy)."""
    return toy.gmm2d(schedule=vp8)


@pytest.fixture(scope="session")
def gmm1d():
    """A 1-D, 3-component mixture under VP on [−10, 10] (digest §3.7 toy)."""
    return toy.gmm1d(schedule=c.VP(-10.0, 10.0))
