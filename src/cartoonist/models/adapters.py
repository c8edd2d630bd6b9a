"""Score functions of pretrained networks in log-SNR time λ (pure torch; loading is elsewhere).

Three kinds of network become a score `s(x [B, *event_shape], λ [B]) = ∇_x log p_λ(x)` in our
variance-preserving (or variance-exploding) x-space, data in [−1, 1]:

* `DiscreteUNetScore` (in `diffusers_adapters`): a discrete-time VP model (DDPM/DDIM, Ho et al.
  2020) trained at N integer timesteps n with x_n = √ᾱ_n x_0 + √(1 − ᾱ_n) ε and an ε-, v- or
  x_0-prediction output. Its log-SNR is λ_n = log(ᾱ_n / (1 − ᾱ_n)). Our VP schedule has
  α² = sigmoid(λ), and sigmoid(λ_n) = ᾱ_n exactly, so x_n is the VP state at λ_n with no rescaling.
  A λ between two trained steps is fed as a fractional timestep (`DiscreteTimeMap`).
* `SigmaUNetScore` (in `diffusers_adapters`): a VE model trained on continuous σ (score-SDE
  NCSN++, Song et al. 2021) that outputs the score of y = x_0 + σ ε itself, with data y in an
  arbitrary range [lo, hi].
* `EDMScore`: an EDM-style denoiser D(y, σ, class_labels) ≈ E[x_0 | y = x_0 + σ ε]
  (Karras et al. 2022).

Every adapter is an `nn.Module`, so Lightning moves its weights to the trainer's device, and
carries `schedule` (restricted to the λ range the network was trained on), `event_shape` and
`log_jacobian` (D log|a| of the 8-bit pixel → [−1, 1] map, for bits/dim). The networks are given
as modules or plain callables; nothing here imports diffusers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import torch
from torch import Tensor, nn

from cartoonist.diffusion.schedules import Schedule
from cartoonist.diffusion.score import lam_batch, score_from_eps, score_from_x0

if TYPE_CHECKING:
    from cartoonist.models.class_labels import ClassLabels

__all__ = [
    "ScoreModule",
    "NetScore",
    "EDMScore",
]


def _lam(lam, x: Tensor) -> Tensor:
    """λ as a [B] float64 tensor on x's device (samplers may pass a float or a CPU tensor)."""
    lam = torch.as_tensor(lam, dtype=torch.float64).to(x.device)
    if lam.dim() == 0:
        lam = lam.expand(x.shape[0])
    if lam.shape != (x.shape[0],):
        raise ValueError(f"lam must be a scalar or have shape [{x.shape[0]}], got {lam.shape}")
    return lam


def _bc(v: Tensor, x: Tensor) -> Tensor:
    """[B] → [B, 1, …, 1] in x's dtype and device."""
    return v.reshape(v.shape + (1,) * (x.dim() - 1)).to(dtype=x.dtype, device=x.device)


class ScoreModule(nn.Module):
    """Base of the network-backed score functions: `forward(x, lam) -> ∇_x log p_λ(x)`.

    Subclasses set `self._score`, a score function built with a converter of
    `cartoonist.diffusion.score`.

    Args:
        schedule: the schedule the network was trained with, on its trained λ range.
        event_shape: shape of one example, e.g. (3, 32, 32).
        log_jacobian: D log|a| (nats) of the pixel → model-space map, for bits/dim.
    """

    def __init__(self, schedule: Schedule, event_shape: Sequence[int], log_jacobian: float):
        super().__init__()
        self.schedule = schedule
        self.event_shape = tuple(int(s) for s in event_shape)
        self.log_jacobian = float(log_jacobian)
        self._score: Callable[[Tensor, Tensor], Tensor] | None = None

    # -- conditions (class labels) --------------------------------------------------------------
    class_labels: "ClassLabels | None" = None  # set by a class-conditional adapter

    def _conditioned(self, labels: Tensor | None) -> Callable[[Tensor, Tensor], Tensor]:
        """The score function given the batch's labels [B, ...] (None: unconditional)."""
        return self._score

    def _check_shape(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"the model takes examples of shape {self.event_shape}, got {tuple(x.shape[1:])}"
            )

    def _labels(self, sample_ids: Sequence[int], x: Tensor) -> Tensor | None:
        if self.class_labels is None:
            return None
        if len(sample_ids) != x.shape[0]:
            raise ValueError(f"{len(sample_ids)} sample ids for a batch of {x.shape[0]}")
        return self.class_labels.of(sample_ids).to(x.device)

    def forward(self, x: Tensor, lam) -> Tensor:
        """Score ∇_x log p_λ(x), [B, *event_shape] in x's dtype.

        A class-conditional model called directly (not through `for_samples`) takes the
        samples' positions 0..B−1 as their ids.
        """
        self._check_shape(x)
        labels = self._labels(range(x.shape[0]), x)
        return self._conditioned(labels)(x, _lam(lam, x))

    # The space the score lives in: "pixel" (model space is the images') or "latent" (a VAE's
    # latent z; `decode` / `encode` map to and from images in [−1, 1]). Identity for pixels.
    space = "pixel"

    def decode(self, x: Tensor) -> Tensor:
        """Images [B, C, H, W] in [−1, 1] of model-space points (the identity for pixel models)."""
        return x

    def encode(self, images: Tensor) -> Tensor:
        """Model-space points of images in [−1, 1] (the identity for pixel models)."""
        return images

    def for_samples(self, sample_ids: Sequence[int]) -> Callable[[Tensor, Tensor], Tensor]:
        """The score function of the samples `sample_ids` [B] of one batch.

        An unconditional model returns itself. A conditional one binds each sample's condition
        (a class label, a prompt embedding), looked up by sample id, so a sample's numbers do not
        depend on which batch or process it is in — as with its noise (`Keys(seed, ids)`).
        """
        if self.class_labels is None:
            return self
        return _BoundScore(self, [int(i) for i in sample_ids])

    def condition_of(self, sample_ids: Sequence[int]) -> list[str] | None:
        """Each sample's condition as a string for per_sample.csv, e.g. "class=3".

        None for an unconditional model.
        """
        if self.class_labels is None:
            return None
        return self.class_labels.describe(sample_ids)


class _BoundScore:
    """A conditional score module with the conditions of one batch's sample ids bound."""

    def __init__(self, module: ScoreModule, sample_ids: list[int]):
        self.module, self.sample_ids = module, sample_ids
        self.schedule, self.event_shape = module.schedule, module.event_shape
        self.log_jacobian = module.log_jacobian

    def __call__(self, x: Tensor, lam) -> Tensor:
        """Score of the bound samples, x [B, *event_shape] with B = len(sample_ids)."""
        m = self.module
        m._check_shape(x)
        return m._conditioned(m._labels(self.sample_ids, x))(x, _lam(lam, x))


class NetScore(ScoreModule):
    """One of our own ε-prediction networks net(x, λ) as a score module (s = −ε̂/σ).

    Args:
        net: ε-prediction module (x [B, ...], lam [B]) -> [B, ...].
        schedule, event_shape, log_jacobian: see `ScoreModule`.
    """

    def __init__(self, net: nn.Module, schedule: Schedule, event_shape, log_jacobian: float):
        super().__init__(schedule, event_shape, log_jacobian)
        self.net = net
        self._score = score_from_eps(self.net, schedule)

    def forward(self, x: Tensor, lam) -> Tensor:
        """Score with λ in x's dtype, as the network was trained (numerics of `score_from_eps`)."""
        return self._score(x, lam_batch(lam, x))


# -- EDM-style denoisers --------------------------------------------------------------------------
class EDMScore(ScoreModule):
    """Score of an EDM-style denoiser D(y, σ, class_labels) ≈ E[x_0 | y], y = x_0 + σ ε.

    Derivation. Our state is x = α x_0 + σ ε (α = 1 for a VE schedule). Then
    y = x/α = x_0 + (σ/α) ε is the denoiser's input at σ_D = σ/α = e^{−λ/2} (since α²/σ² = e^λ),
    and E[x_0 | x] = E[x_0 | y] ≈ D(x/α, e^{−λ/2}). Tweedie's formula gives the score in x-space
    (`score_from_x0`):

        ∇_x log p_λ(x) = (α D(x/α, e^{−λ/2}) − x) / σ².

    Args:
        denoiser: callable (y [B, ...], σ [B], class_labels or None) -> x̂_0 [B, ...]; an
            `nn.Module` (also TorchScript) is registered, so it moves with the adapter. It is
            called as D(y, σ) when there are no labels.
        schedule: VP (α² = sigmoid λ) or VE/EDM (α = 1), on λ ∈ [−2 log σ_max, −2 log σ_min].
        event_shape, log_jacobian: see `ScoreModule`.
        class_labels: per-sample labels (`cartoonist.models.class_labels.ClassLabels`, one-hot
            rows or label vectors for a network with `label_dim`), or None.
    """

    def __init__(
        self,
        denoiser: Callable,
        schedule: Schedule,
        event_shape,
        log_jacobian: float,
        class_labels: "ClassLabels | None" = None,
    ):
        super().__init__(schedule, event_shape, log_jacobian)
        self.denoiser = denoiser
        self.class_labels = class_labels
        self._score = self._conditioned(None)

    def _conditioned(self, labels: Tensor | None) -> Callable[[Tensor, Tensor], Tensor]:
        return score_from_x0(lambda x, lam: self.denoised(x, lam, labels), self.schedule)

    def denoised(self, x: Tensor, lam: Tensor, labels: Tensor | None = None) -> Tensor:
        """x̂_0 = D(x/α_λ, e^{−λ/2}[, labels [B, ...]]), [B, *event_shape] in x's dtype."""
        a = _bc(self.schedule.alpha(lam), x)
        sigma = torch.exp(-0.5 * lam).to(x.dtype)
        if labels is None:
            out = self.denoiser(x / a, sigma)
        else:
            out = self.denoiser(x / a, sigma, labels)
        return out.to(x.dtype)
