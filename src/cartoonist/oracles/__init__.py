"""Exact oracles: densities whose noised marginals, scores and derivatives have closed forms."""

from cartoonist.oracles.fit import fit_mppca
from cartoonist.oracles.gmm import GaussianMixture, LowRankCov

__all__ = ["GaussianMixture", "LowRankCov", "fit_mppca"]
