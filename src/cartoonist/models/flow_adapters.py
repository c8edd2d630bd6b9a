"""A text-conditional flow-matching latent transformer (SD3-style) as a score in log-SNR time.

Pure torch: the transformer, the VAE and the embeddings are given (loading is in
`cartoonist.models.sd3`); nothing here imports diffusers.

**Path and time.** SD3 is trained on the rectified-flow path of the latent
z = c · (E(x) − b) (c, b: the VAE's `scaling_factor` and `shift_factor`):

    z_t = (1 − t) z_0 + t ε,   t ∈ [0, 1],

which is `cartoonist.diffusion.schedules.Flow`: α = 1 − t, σ = t, so
λ = log(α²/σ²) = 2 log((1 − t)/t) and t = sigmoid(−λ/2). diffusers'
`FlowMatchEulerDiscreteScheduler` calls this t `sigma` and feeds the transformer the timestep
T · t (T = num_train_timesteps, 1000). The scheduler's `shift` s only moves where its grid lies,
t' = s t / (1 + (s − 1) t): the network's input is always T times the *actual* noise level of z_t,
so here the network time is T · sigmoid(−λ/2) for every λ (fractional; no rounding — the
scheduler's own timesteps are fractional too). The trained λ range is that of the shifted grid
t'_k = t'(k/T), k = 1 … T: λ_max = λ(t'(1/T)); at k = T, t' = 1 is λ = −∞ (pure noise), so
λ_min = λ(t'((T − 1)/T)), the noisiest trained level short of it (`Sd3Model` computes both).

**Score.** The transformer predicts the velocity û ≈ ε − z_0 = dz_t/dt. From z = (1 − t)(ε − u) +
t ε = ε − (1 − t) u:

    ε̂ = z + (1 − t) û,   ẑ_0 = z − t û,   s = −ε̂/σ = −(z + (1 − t) û)/t

(`cartoonist.diffusion.score.score_from_flow`). Consistency with the scheduler: the PF-ODE
dz/dλ = f̃ z + ½ σ² s with f̃ = ½ t and σ² = t² gives dz/dλ = −½ t (1 − t) û, and
dλ/dt = −2/(t (1 − t)), so dz/dt = û: the scheduler's Euler step z + (t_{k+1} − t_k) û is the
Euler step of our PF-ODE in t (tests check both identities on the same weights).

**Conditions and guidance** are as `cartoonist.models.conditional_adapters` (its docstring has
the maths): sample i gets row i mod P of `prompt_embeds` [P, L, E] and `pooled_prompt_embeds`
[P, E']; classifier-free guidance mixes the velocities, û_w = û_u + w (û_c − û_u), which is exactly
s_w = s_u + w (s_c − s_u) because s is affine in û with coefficients free of û. Every log p is
log p(z | c) of the conditional model (w = 1) on the scaled latent, in nats.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from cartoonist.diffusion.schedules import Flow
from cartoonist.diffusion.score import score_from_flow
from cartoonist.models.conditional_adapters import (
    ConditionalLatentScore,
    GuidedBound,
    LatentCodec,
)
from cartoonist.models.diffusers_adapters import _math_attention, _output_tensor, _param_dtype

__all__ = ["FlowLatentScore"]


class _JointTransformer(nn.Module):
    """Calls `net(hidden_states=z, encoder_hidden_states=e, pooled_projections=p, timestep=T t)`.

    (math SDPA kernel when `math_attention`; the output is cast back to z's dtype.)
    """

    def __init__(self, net: nn.Module, math_attention: bool):
        super().__init__()
        self.net, self.math_attention = net, bool(math_attention)

    def forward(self, z: Tensor, t: Tensor, emb: Tensor, pooled: Tensor) -> Tensor:
        dtype = _param_dtype(self.net, z)
        with _math_attention(self.math_attention):
            out = self.net(
                hidden_states=z.to(dtype),
                encoder_hidden_states=emb.to(device=z.device, dtype=dtype),
                pooled_projections=pooled.to(device=z.device, dtype=dtype),
                timestep=t.to(device=z.device, dtype=torch.float32),
            )
        return _output_tensor(out).to(z.dtype)


class _Bound(GuidedBound):
    """A transformer's guided velocity as a score: conditions are (embeddings, pooled)."""

    def __init__(self, module: "FlowLatentScore", emb: Tensor, pooled: Tensor, guidance: float):
        if float(guidance) != 1.0 and module.negative_embeds is None:
            raise ValueError(
                "guidance w ≠ 1 needs the unconditional embeddings (negative_prompt_embeds and "
                "negative_pooled_prompt_embeds)"
            )
        super().__init__(module, emb, guidance, score_from_flow)
        self.pooled = pooled

    def _cond(self, z: Tensor, t: Tensor) -> Tensor:
        return self.module.transformer(z, t, self.emb, self.pooled)

    def _uncond(self, z: Tensor, t: Tensor) -> Tensor:
        m, b = self.module, z.shape[0]
        return m.transformer(
            z, t, m.negative_embeds.expand(b, -1, -1), m.negative_pooled.expand(b, -1)
        )


class FlowLatentScore(ConditionalLatentScore):
    """Score of a text-conditional flow-matching latent transformer (SD3) on the scaled latent.

    Args:
        transformer: (hidden_states [B, C, h, w], encoder_hidden_states [B, L, E],
            pooled_projections [B, E'], timestep [B] float) -> û (diffusers
            `SD3Transformer2DModel`).
        lambda_min, lambda_max: the trained log-SNR range (module docstring).
        num_train_timesteps: T, the network time is T · t.
        prompt_embeds: [P, L, E]; sample i gets row i mod P.
        pooled_embeds: [P, E'] the pooled embeddings of the same prompts.
        negative_embeds, negative_pooled: [1, L, E], [1, E'] the unconditional branch of
            guidance, or None (then only w = 1 is available).
        prompts: P human-readable conditions (a name per precomputed row).
        guidance_scale: w of classifier-free guidance for sampling (1: conditional model).
        codec: the VAE (`LatentCodec`, with SD3's shift_factor) for `decode` / `encode`.
        event_shape: latent shape (C, h, w).
        density_of: what log p is the density of, for outputs.
        math_attention: math SDPA kernel (JVP-based estimators need it).
    """

    def __init__(
        self,
        transformer: nn.Module,
        lambda_min: float,
        lambda_max: float,
        num_train_timesteps: int,
        prompt_embeds: Tensor,
        pooled_embeds: Tensor,
        negative_embeds: Tensor | None,
        negative_pooled: Tensor | None,
        prompts: Sequence[str],
        guidance_scale: float,
        codec: LatentCodec,
        event_shape,
        density_of: str,
        math_attention: bool = True,
    ):
        p = prompt_embeds.shape[0] if prompt_embeds.dim() == 3 else -1
        if p < 1 or pooled_embeds.dim() != 2 or pooled_embeds.shape[0] != p:
            raise ValueError(
                f"prompt_embeds must be [P, L, E] and pooled_embeds [P, E'], got "
                f"{tuple(prompt_embeds.shape)} and {tuple(pooled_embeds.shape)}"
            )
        if (negative_embeds is None) != (negative_pooled is None):
            raise ValueError("give both negative_embeds and negative_pooled, or neither")
        if negative_embeds is not None and (
            negative_embeds.shape != (1, *prompt_embeds.shape[1:])
            or negative_pooled.shape != (1, pooled_embeds.shape[1])
        ):
            raise ValueError(
                f"negative embeddings must be [1, L, E] and [1, E'], got "
                f"{tuple(negative_embeds.shape)} and {tuple(negative_pooled.shape)}"
            )
        if len(prompts) != p:
            raise ValueError(f"{len(prompts)} prompt names for {p} embeddings")
        super().__init__(Flow(float(lambda_min), float(lambda_max)), event_shape, 0.0)
        self.num_train_timesteps = int(num_train_timesteps)
        self.transformer = _JointTransformer(transformer, math_attention)
        self._set_conditions(codec, prompt_embeds, prompts, guidance_scale, density_of)
        self.register_buffer("pooled_embeds", pooled_embeds.detach(), persistent=False)
        for name, v in (
            ("negative_embeds", negative_embeds),
            ("negative_pooled", negative_pooled),
        ):
            self.register_buffer(name, None if v is None else v.detach(), persistent=False)
        self._score = self._bind([0], 1.0)._score

    def network_time(self, lam: Tensor) -> Tensor:
        """The timestep fed to the transformer for log-SNR λ [B]: T · sigmoid(−λ/2) = T · t."""
        return self.num_train_timesteps * self.schedule.t_of_lambda(lam)

    def _bind(self, sample_ids: Sequence[int], guidance: float) -> _Bound:
        rows = self._rows(sample_ids)
        return _Bound(self, self.prompt_embeds[rows], self.pooled_embeds[rows], guidance)

    def forward(self, z: Tensor, lam) -> Tensor:
        """Conditional score (w = 1) of prompt 0 for every row (unbound use)."""
        return self._bind([0] * z.shape[0], 1.0)(z, lam)
