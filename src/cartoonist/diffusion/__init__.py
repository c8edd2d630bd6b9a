"""The paper's maths in pure PyTorch (no Lightning, Hydra or wandb imports).

Every sampler and estimator works in log-SNR time λ (see `schedules`) and follows one contract,
documented in `cartoonist.diffusion.contract`:

    fn(score, schedule, x, steps=..., *, grid=None, noise=None, track_logp=..., logp_init=None,
       record=False, method=..., divergence="hutchinson", probes=1, backend="auto", ...)

with `score(x [B, ...], lam [B]) -> ∇log p_λ(x) [B, ...]`, `noise` a `Keys(seed, sample_ids)`, a
torch.Generator or None (= Keys(0)), and log-densities per sample in nats (float64).
"""

from cartoonist.diffusion.any_ode import log_density_drift, ode_log_prob_along
from cartoonist.diffusion.bounds import BiasBounds, bias_bounds, tracking_bias
from cartoonist.diffusion.divergence import FixedProbes, jacobian_trace
from cartoonist.diffusion.elbo import LambdaProposal, bits_per_dim, dequantize, elbo
from cartoonist.diffusion.forward_sde import forward_sde_log_prob
from cartoonist.diffusion.high_density import hd_ode, hd_sample, split_steps
from cartoonist.diffusion.integrators import integrate_ode
from cartoonist.diffusion.mode_tracking import (
    ModeResult,
    newton_mode,
    sample_mode_tracking,
    track_mode,
)
from cartoonist.diffusion.ode_likelihood import ode_log_prob, sample_ode
from cartoonist.diffusion.results import LikelihoodResult, SampleResult, Trajectory
from cartoonist.diffusion.rng import BatchNoise, Keys, SampleNoise
from cartoonist.diffusion.schedules import EDM, VE, VP, Flow, Schedule
from cartoonist.diffusion.score import (
    CountedScore,
    NonFiniteScoreError,
    posterior_mean,
    score_from_eps,
    score_from_flow,
    score_from_v,
    score_from_x0,
)
from cartoonist.diffusion.sde_tracking import sample_sde

__all__ = [
    "BatchNoise",
    "BiasBounds",
    "CountedScore",
    "EDM",
    "Flow",
    "FixedProbes",
    "Keys",
    "LambdaProposal",
    "LikelihoodResult",
    "ModeResult",
    "NonFiniteScoreError",
    "SampleNoise",
    "SampleResult",
    "Schedule",
    "Trajectory",
    "VE",
    "VP",
    "bias_bounds",
    "bits_per_dim",
    "dequantize",
    "elbo",
    "forward_sde_log_prob",
    "hd_ode",
    "hd_sample",
    "integrate_ode",
    "jacobian_trace",
    "log_density_drift",
    "newton_mode",
    "ode_log_prob",
    "ode_log_prob_along",
    "posterior_mean",
    "sample_mode_tracking",
    "sample_ode",
    "sample_sde",
    "score_from_eps",
    "score_from_flow",
    "score_from_v",
    "score_from_x0",
    "split_steps",
    "track_mode",
    "tracking_bias",
]
