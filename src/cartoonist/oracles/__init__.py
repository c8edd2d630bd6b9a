"""Exact oracles: densities whose noised marginals, scores and derivatives have closed forms."""

from cartoonist.oracles.covariance import LowRankCov
from cartoonist.oracles.gmm import GaussianMixture, fit_mppca
from cartoonist.oracles.toy import gmm1d, gmm2d

__all__ = ["GaussianMixture", "LowRankCov", "fit_mppca", "gmm1d", "gmm2d"]
