"""cartoonist: density in diffusion models (Karczewski, Heinonen & Garg, ICLR 2025).

The public API: schedules (`VP`, `VE`, `EDM`, `Flow`), the exact oracle `GaussianMixture`, and the
paper's estimators and samplers (`sample_sde`, `ode_log_prob`, `elbo`, `hd_sample`, `track_mode`,
…), all pure PyTorch. See `cartoonist.diffusion` for the full list.
"""

from cartoonist.diffusion import *  # noqa: F401,F403
from cartoonist.diffusion import __all__ as _diffusion_all
from cartoonist.oracles import GaussianMixture, LowRankCov, fit_mppca

__version__ = "0.1.0"
__all__ = list(_diffusion_all) + ["GaussianMixture", "LowRankCov", "fit_mppca"]
