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

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from cartoonist.diffusion.schedules import Schedule
from cartoonist.diffusion.score import lam_batch, score_from_eps, score_from_x0

__all__ = [
    "ScoreModule",
    "NetScore",
    "EDMScore",
    "class_label_tensor",
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

    def forward(self, x: Tensor, lam) -> Tensor:
        """Score ∇_x log p_λ(x), [B, *event_shape] in x's dtype."""
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"the model takes examples of shape {self.event_shape}, got {tuple(x.shape[1:])}"
            )
        return self._score(x, _lam(lam, x))

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
        return self


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
        class_labels: [1, ...] labels (one-hot rows or integers), broadcast to the batch.
    """

    def __init__(
        self,
        denoiser: Callable,
        schedule: Schedule,
        event_shape,
        log_jacobian: float,
        class_labels: Tensor | None = None,
    ):
        super().__init__(schedule, event_shape, log_jacobian)
        self.denoiser = denoiser
        self.register_buffer("labels", class_labels, persistent=False)
        self._score = score_from_x0(self.denoised, schedule)

    def denoised(self, x: Tensor, lam: Tensor) -> Tensor:
        """x̂_0 = D(x/α_λ, e^{−λ/2}), [B, *event_shape] in x's dtype."""
        a = _bc(self.schedule.alpha(lam), x)
        sigma = torch.exp(-0.5 * lam).to(x.dtype)
        if self.labels is None:
            out = self.denoiser(x / a, sigma)
        else:
            out = self.denoiser(
                x / a, sigma, self.labels.expand(x.shape[0], *self.labels.shape[1:])
            )
        return out.to(x.dtype)


def class_label_tensor(class_labels, label_dim: int | None) -> Tensor | None:
    """Labels from config as a [1, ...] tensor broadcast over the batch, or None.

    Args:
        class_labels: None, an int (one class for every sample) or a list of floats (one label
            vector, e.g. soft labels, for every sample).
        label_dim: the network's number of classes when it takes one-hot rows (EDM's `label_dim`),
            None when it takes integer class indices (diffusers' `num_class_embeds`).

    Returns:
        [1] long (integer labels), [1, label_dim] float (one-hot or the given vector), or None.
    """
    if class_labels is None:
        return None
    if isinstance(class_labels, bool):
        raise ValueError(f"class_labels must be an int or a list of numbers, got {class_labels!r}")
    if isinstance(class_labels, int):
        if label_dim is None:
            return torch.tensor([class_labels], dtype=torch.long)
        if not 0 <= class_labels < label_dim:
            raise ValueError(f"class_labels={class_labels} is outside 0..{label_dim - 1}")
        return nn.functional.one_hot(torch.tensor([class_labels]), label_dim).float()
    if label_dim is None:
        raise ValueError("this model takes integer class labels: give model.class_labels=<int>")
    vec = torch.as_tensor([float(v) for v in class_labels]).reshape(1, -1)
    if vec.shape[1] != label_dim:
        raise ValueError(f"class_labels has {vec.shape[1]} entries, the model takes {label_dim}")
    return vec
