"""Networks and everything that turns a model file into a score function.

- networks: `MLP`, `UNet` (`mlp`, `unet`, `embedding`), conditioned on the log-SNR λ, with
  the call signature ``net(x [B, *event_shape], lam [B]) -> ε̂ [B, *event_shape]``
  (ε-prediction; a score via ``cartoonist.diffusion.score_from_eps``), and `EMA` (`ema`);
- adapters to a score in log-SNR time: `adapters` (our networks, EDM denoisers) and
  `diffusers_adapters` (diffusers UNets, discrete-time or continuous σ);
- loaders of pretrained files: `diffusers` (model=diffusers), `edm` (model=edm), `pretrained`
  (their base class and file checks), `diffusers_folders` (the checks of diffusers folders and
  the base of the latent pipelines `stable_diffusion` and `sd3`); `checkpoint` (our training
  checkpoints, plain data only);
- `oracle`: model=oracle, the exact mixture of a data set;
- your own network: `score_of_network` (`network_adapters`: prediction, time input and schedule
  conventions, with the λ conversions) and model=network (`network`); per-sample class labels of
  conditional models: `class_labels`.

Samples never interact (no batch statistics), so Jacobian-vector products over a batch are
per-sample.
"""

from torch import nn

from cartoonist.models.ema import EMA
from cartoonist.models.embedding import LambdaEmbedding
from cartoonist.models.mlp import MLP
from cartoonist.models.network_adapters import ddpm_alphas_cumprod, score_of_network
from cartoonist.models.unet import UNet

__all__ = [
    "MLP",
    "UNet",
    "EMA",
    "LambdaEmbedding",
    "count_parameters",
    "score_of_network",
    "ddpm_alphas_cumprod",
]


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``module``.

    Args:
        module: the module.
        trainable_only: count only parameters with ``requires_grad``.

    Returns:
        The total number of parameter elements.
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
