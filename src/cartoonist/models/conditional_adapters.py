"""Text-conditional latent diffusion (Stable Diffusion 1.x/2.x) as a score in log-SNR time.

Pure torch: the UNet, the VAE and the prompt embeddings are given (loading is in
`cartoonist.models.stable_diffusion`); nothing here imports diffusers.

**What the density is of.** The UNet is a discrete-time VP model of the *scaled latent*
z = c · E(x) (c = the VAE's `scaling_factor`, e.g. 0.18215 for SD 1.x/2.x; E(x) the posterior
mean of the VAE encoder, see below). So every sampler and estimator runs on z, with
event_shape = (4, H/8, W/8), and every log p is log p(z | prompt) of the scaled latent in nats —
never a pixel density (the decoder is not invertible, so no pixel density exists). Bits/dim, if
read at all, are bits per latent dimension (log_jacobian = 0). Images are x = D(z / c) for grids
and figures; scoring given images encodes them deterministically, z = c · mean(q(z | x)) (the
posterior mean, no sampling).

**Score.** As `DiscreteUNetScore`: α_λ² = sigmoid(λ) equals ᾱ_n at λ_n, so z_λ is the UNet's
z_n, and the output (ε̂, v̂ or x̂_0) converts with `score_from_eps` / `score_from_v` /
`score_from_x0` (digest §2.1). For sample i with text embedding e_i (prompt i mod P):

    s_c(z, λ) = ∇_z log p_λ(z | c_i)  from  out(z, t(λ), e_i),
    s_u(z, λ) = ∇_z log p_λ(z)        from  out(z, t(λ), e_∅)   (e_∅: the negative prompt,
                                                                 "" by default)

**Classifier-free guidance** (Ho & Salimans 2022) with scale w:

    s_w = s_u + w (s_c − s_u).

Each converter is affine in the network output with coefficients that do not depend on it
(s = a_λ z + b_λ · out), and the weights (1 − w) + w sum to one, so guiding the outputs,
out_w = out_u + w (out_c − out_u), is exactly guiding the scores (for ε: s = −ε̂/σ).
w = 1 is the plain conditional model, w = 0 the unconditional one.

**log p under guidance.** For w ≠ 1, s_w is not the score of any diffusion marginal: the guided
PF-ODE/SDE has no density p_λ whose score it is, so Theorem 1's r (the sampler's tracked value)
is not the log-density of anything and is never reported as one. What is reported is
log p(z | c) of the conditional model (w = 1), the model whose score s_c is:

* w = 1: tracked for free by the samplers (Theorem 1 / the Lemma), as for any model;
* any w, ODE/HD samplers with track_logp: the Lemma along the guided ODE
  (`cartoonist.diffusion.guidance`, on `cartoonist.diffusion.any_ode`),
  with the velocity the guided drift w_η = f̃ z + (η/2) σ² s_w and the density that of s_c:

      d log p_λ(z_λ | c)/dλ = −D f̃ − ½ σ² Δ_z log p_λ(z | c) + (w_η − f̃ z − ½ σ² s_c)ᵀ s_c,

  one JVP of s_c per step (plus one extra network call for s_u);
* any sampler: PF-ODE encoding of the final samples with s_c (`likelihood=pf_ode`), the
  paper's protocol.

**Conditions per sample.** `for_samples(ids)` binds e_{ids mod P} (the guided score, as the
sampler uses it) and `conditional_of(ids)` the w = 1 score (what the estimators use); both look
the condition up by sample id, so a sample's numbers do not depend on its batch. These and the
guidance are `ConditionalLatentScore` and `GuidedBound`, shared with the flow-matching latent
transformer (`cartoonist.models.flow_adapters`).
"""

from __future__ import annotations

import abc
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from cartoonist.diffusion.schedules import VP
from cartoonist.diffusion.score import score_from_eps, score_from_v, score_from_x0
from cartoonist.models.adapters import ScoreModule, _lam
from cartoonist.models.diffusers_adapters import (
    PREDICTION_TYPES,
    DiscreteTimeMap,
    _contiguous_group_norm_inputs,
    _math_attention,
    _output_tensor,
    _param_dtype,
)

__all__ = ["LatentCodec", "ConditionalLatentScore", "TextLatentScore"]

_CONVERT = {"epsilon": score_from_eps, "v_prediction": score_from_v, "sample": score_from_x0}


class LatentCodec(nn.Module):
    """The VAE between images x ∈ [−1, 1]^{3×H×W} and scaled latents z = c · (E(x) − b).

    Args:
        vae: module with `encode(x).latent_dist.mean` (or `.mean`, or a tensor) and
            `decode(u).sample` (or a tensor), as a diffusers `AutoencoderKL`.
        scaling_factor: c.
        downsampling: image side / latent side (8 for SD's VAE).
        shift_factor: b (the VAE config's `shift_factor`: 0 for SD 1.x/2.x, e.g. 0.0609 for SD3).
    """

    def __init__(
        self,
        vae: nn.Module,
        scaling_factor: float,
        downsampling: int = 8,
        shift_factor: float = 0.0,
    ):
        super().__init__()
        self.vae = vae
        self.scaling_factor, self.downsampling = float(scaling_factor), int(downsampling)
        self.shift_factor = float(shift_factor)

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """Latents z = c · (mean of q(z | x) − b) (deterministic), [B, C, H/8, W/8]."""
        out = self.vae.encode(images.to(_param_dtype(self.vae, images)))
        dist = getattr(out, "latent_dist", out)
        mean = getattr(dist, "mean", dist)
        return (self.scaling_factor * (mean - self.shift_factor)).to(images.dtype)

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """Images x = D(z / c + b) clamped to [−1, 1], [B, 3, H, W] in z's dtype."""
        u = z / self.scaling_factor + self.shift_factor
        out = self.vae.decode(u.to(_param_dtype(self.vae, z)))
        x = getattr(out, "sample", out)
        return x.clamp(-1, 1).to(z.dtype)


class _CondUNet(nn.Module):
    """Calls `unet(z, t, encoder_hidden_states=e) -> .sample | (out,) | Tensor` (math SDPA)."""

    def __init__(self, net: nn.Module, math_attention: bool):
        super().__init__()
        self.net, self.math_attention = net, bool(math_attention)
        _contiguous_group_norm_inputs(net)

    def forward(self, z: Tensor, t: Tensor, emb: Tensor) -> Tensor:
        dtype = _param_dtype(self.net, z)
        with _math_attention(self.math_attention):
            out = self.net(
                z.to(dtype),
                t.to(device=z.device, dtype=torch.float32),
                encoder_hidden_states=emb.to(device=z.device, dtype=dtype),
            )
        return _output_tensor(out)[:, : z.shape[1]].to(z.dtype)


class GuidedBound(abc.ABC):
    """The score of one batch's samples: (z [B, *event_shape], λ) -> s [B, *event_shape].

    Guidance mixes the network outputs of the conditional branch (`_cond`, the samples'
    conditions `emb` [B, ...]) and the unconditional one (`_uncond`) at the network time
    `module.network_time(λ)`: out_w = out_u + w (out_c − out_u), the guided score (module
    docstring); `convert` ((z, λ) -> output, schedule) -> score turns it into a score.
    """

    def __init__(self, module: "ConditionalLatentScore", emb: Tensor, guidance: float, convert):
        self.module, self.emb, self.guidance = module, emb, float(guidance)
        self._score = convert(self._output, module.schedule)

    @abc.abstractmethod
    def _cond(self, z: Tensor, t: Tensor) -> Tensor:
        """The conditional branch's network output [B, ...] at network time t."""

    @abc.abstractmethod
    def _uncond(self, z: Tensor, t: Tensor) -> Tensor:
        """The unconditional branch's network output [B, ...] at network time t."""

    def _output(self, z: Tensor, lam: Tensor) -> Tensor:
        if z.shape[0] != self.emb.shape[0]:
            raise ValueError(
                f"the score is bound to {self.emb.shape[0]} samples, got a batch of {z.shape[0]}"
            )
        t = self.module.network_time(lam)
        if self.guidance == 0.0:  # the unconditional model
            return self._uncond(z, t)
        out_c = self._cond(z, t)
        if self.guidance == 1.0:
            return out_c
        out_u = self._uncond(z, t)
        return out_u + self.guidance * (out_c - out_u)  # = guided score (module docstring)

    def __call__(self, z: Tensor, lam) -> Tensor:
        if tuple(z.shape[1:]) != self.module.event_shape:
            raise ValueError(
                f"the model takes latents of shape {self.module.event_shape}, "
                f"got {tuple(z.shape[1:])}"
            )
        return self._score(z, _lam(lam, z))


class ConditionalLatentScore(ScoreModule, abc.ABC):
    """Base of the text-conditional latent scores: conditions per sample, guidance, the VAE.

    A subclass calls `_set_conditions` in its `__init__` and gives `network_time(λ)` and
    `_bind(sample_ids, w)`, the `GuidedBound` of the samples' conditions (module docstring).
    """

    space = "latent"

    def _set_conditions(
        self,
        codec: LatentCodec,
        prompt_embeds: Tensor,
        prompts: Sequence[str],
        guidance_scale: float,
        density_of: str,
    ) -> None:
        """The VAE, the [P, L, E] embeddings and their P names, w and the density's name."""
        self.codec = codec
        self.register_buffer("prompt_embeds", prompt_embeds.detach(), persistent=False)
        self.prompts = list(prompts)
        self.guidance_scale = float(guidance_scale)
        self.density_of = density_of
        f = codec.downsampling
        self.image_shape = (3, self.event_shape[1] * f, self.event_shape[2] * f)

    @abc.abstractmethod
    def network_time(self, lam: Tensor) -> Tensor:
        """The network's time input for log-SNR λ [B] (float64)."""

    @abc.abstractmethod
    def _bind(self, sample_ids: Sequence[int], guidance: float) -> GuidedBound:
        """The GuidedBound of these samples' conditions at guidance w."""

    def _rows(self, sample_ids: Sequence[int]) -> Tensor:
        ids = torch.as_tensor(list(sample_ids), dtype=torch.long)
        return ids.remainder(self.prompt_embeds.shape[0]).to(self.prompt_embeds.device)

    def for_samples(self, sample_ids: Sequence[int], guidance: float | None = None) -> Callable:
        """Score of samples `sample_ids` under their conditions, guided with scale `guidance`.

        The default is the model's `guidance_scale`: the score the sampler follows.
        """
        w = self.guidance_scale if guidance is None else float(guidance)
        return self._bind(sample_ids, w)

    def conditional_of(self, sample_ids: Sequence[int]) -> Callable:
        """The conditional model's score s_c (w = 1): the density every log p is of."""
        return self.for_samples(sample_ids, guidance=1.0)

    def unconditional_of(self, sample_ids: Sequence[int]) -> Callable:
        """The unconditional score s_u (the negative prompt's; w = 0) of the samples."""
        return self.for_samples(sample_ids, guidance=0.0)

    def condition_of(self, sample_ids: Sequence[int]) -> list[str]:
        """Each sample's condition (its prompt, or the name of its embedding row)."""
        return [self.prompts[int(i)] for i in self._rows(sample_ids).tolist()]

    def decode(self, z: Tensor) -> Tensor:
        """Images [B, 3, H, W] in [−1, 1] of latents z [B, C, h, w] (VAE decoder)."""
        return self.codec.decode(z)

    def encode(self, images: Tensor) -> Tensor:
        """Scaled latents z = c · (E(x) − b) [B, C, h, w] of images in [−1, 1] (posterior mean)."""
        return self.codec.encode(images)


class _Bound(GuidedBound):
    """A UNet's guided score: conditions are the text embeddings (encoder_hidden_states)."""

    def __init__(self, module: "TextLatentScore", emb: Tensor, guidance: float):
        super().__init__(module, emb, guidance, _CONVERT[module.prediction_type])

    def _cond(self, z: Tensor, t: Tensor) -> Tensor:
        return self.module.unet(z, t, self.emb)

    def _uncond(self, z: Tensor, t: Tensor) -> Tensor:
        m = self.module
        return m.unet(z, t, m.negative_embeds.expand(z.shape[0], -1, -1))


class TextLatentScore(ConditionalLatentScore):
    """Score of a text-conditional latent UNet (SD 1.x ε, SD 2.x v) on the scaled latent z.

    Args:
        unet: (z [B, 4, h, w], t [B] float, encoder_hidden_states=[B, L, E]) -> output
            (diffusers `UNet2DConditionModel`).
        alphas_cumprod: [N] the scheduler's ᾱ_n.
        prediction_type: "epsilon" | "v_prediction" | "sample".
        prompt_embeds: [P, L, E] text embeddings; sample i gets row i mod P.
        negative_embeds: [1, L, E] the unconditional (negative-prompt) embedding e_∅.
        prompts: P human-readable conditions (the prompts, or a name per precomputed row).
        guidance_scale: w of classifier-free guidance for sampling (1: conditional model).
        codec: the VAE (`LatentCodec`) for `decode` / `encode`.
        event_shape: latent shape (4, h, w).
        density_of: what log p is the density of, for outputs.
        timestep: "interpolate" or "nearest" (see `DiscreteTimeMap`).
        math_attention: math SDPA kernel (JVP-based estimators need it).
    """

    def __init__(
        self,
        unet: nn.Module,
        alphas_cumprod,
        prediction_type: str,
        prompt_embeds: Tensor,
        negative_embeds: Tensor,
        prompts: Sequence[str],
        guidance_scale: float,
        codec: LatentCodec,
        event_shape,
        density_of: str,
        timestep: str = "interpolate",
        math_attention: bool = True,
    ):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}")
        if prompt_embeds.dim() != 3 or negative_embeds.shape != (1, *prompt_embeds.shape[1:]):
            raise ValueError(
                f"prompt_embeds must be [P, L, E] and negative_embeds [1, L, E], got "
                f"{tuple(prompt_embeds.shape)} and {tuple(negative_embeds.shape)}"
            )
        if len(prompts) != prompt_embeds.shape[0]:
            raise ValueError(
                f"{len(prompts)} prompt names for {prompt_embeds.shape[0]} embeddings"
            )
        time = DiscreteTimeMap(alphas_cumprod)
        super().__init__(VP(time.lambda_min, time.lambda_max), event_shape, 0.0)
        self.time, self.timestep_mode, self.prediction_type = time, timestep, prediction_type
        self.unet = _CondUNet(unet, math_attention)
        self._set_conditions(codec, prompt_embeds, prompts, guidance_scale, density_of)
        self.register_buffer("negative_embeds", negative_embeds.detach(), persistent=False)
        self._score = _Bound(self, self.prompt_embeds[:1], 1.0)._score

    def network_time(self, lam: Tensor) -> Tensor:
        """The timestep fed to the UNet for log-SNR λ [B] (float64)."""
        t = self.time.timestep(lam)
        return t.round() if self.timestep_mode == "nearest" else t

    def forward(self, z: Tensor, lam) -> Tensor:
        """Conditional score (w = 1) of prompt 0 for every row (unbound use)."""
        emb = self.prompt_embeds[:1].expand(z.shape[0], -1, -1)
        return _Bound(self, emb, 1.0)(z, lam)

    def _bind(self, sample_ids: Sequence[int], guidance: float) -> _Bound:
        return _Bound(self, self.prompt_embeds[self._rows(sample_ids)], guidance)
