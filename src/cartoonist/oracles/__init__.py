"""Exact oracles: densities whose noised marginals, scores and derivatives have closed forms.

`gmm` (the Gaussian mixture and `fit_mppca`, its EM fit as a mixture of PPCA), `covariance`
(the low-rank-plus-isotropic `LowRankCov`), `fit` (the EM itself, on plain tensors) and `toy`
(the 1-D and 2-D mixtures of the tests and toy figures). Pure torch; above `diffusion` only.
"""

from cartoonist.oracles.covariance import LowRankCov
from cartoonist.oracles.gmm import GaussianMixture, fit_mppca
from cartoonist.oracles.toy import gmm1d, gmm2d

__all__ = ["GaussianMixture", "LowRankCov", "fit_mppca", "gmm1d", "gmm2d"]
