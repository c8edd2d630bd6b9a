"""`model=sd3`: a flow-matching latent transformer folder (Stable Diffusion 3 style).

The folder is what `StableDiffusion3Pipeline.save_pretrained` writes; this model reads
`transformer/` (`SD3Transformer2DModel`), `vae/` (`AutoencoderKL` with `scaling_factor` and
`shift_factor`) and `scheduler/` (`FlowMatchEulerDiscreteScheduler`, fixed `shift`, no dynamic
shifting). Everything runs on the latent z = scaling_factor · (E(x) − shift_factor) and every
log p is of z (see `cartoonist.models.flow_adapters` for the maths: the path, the λ ↔ t map, the
score from the velocity, the trained λ range).

Conditions are precomputed (SD3's three text encoders are not loaded): `prompt_embeds`, a
.safetensors file (read with safetensors, never a pickle) with `prompt_embeds` [P, L, E]
(E = the transformer's joint_attention_dim) and `pooled_prompt_embeds` [P, E']
(E' = pooled_projection_dim), as `StableDiffusion3Pipeline.encode_prompt` returns them, and for
guidance w ≠ 1 also `negative_prompt_embeds` [1, L, E] and `negative_pooled_prompt_embeds`
[1, E']. Sample i gets row i mod P.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cartoonist.errors import ConfigError
from cartoonist.models.adapters import ScoreModule
from cartoonist.models.diffusers_folders import (
    LatentPipelineModel,
    load_part,
    prompt_embeds_shapes,
    read_prompt_embeds,
    sample_hw,
)

__all__ = ["Sd3Model", "COMPONENTS", "flow_lambda_range"]

COMPONENTS = ("transformer", "vae", "scheduler")


def flow_lambda_range(num_train_timesteps: int, shift: float) -> tuple[float, float]:
    """The trained (λ_min, λ_max) of a FlowMatchEulerDiscreteScheduler grid.

    The grid is t'_k = s u_k / (1 + (s − 1) u_k), u_k = k/T, k = 1 … T (s = shift, as diffusers
    shifts its sigmas); λ(t) = 2 log((1 − t)/t). λ_max = λ(t'_1); t'_T = 1 is λ = −∞, so
    λ_min = λ(t'_{T−1}), the noisiest trained level short of pure noise.
    """
    T, s = int(num_train_timesteps), float(shift)

    def lam(u: float) -> float:
        t = s * u / (1 + (s - 1) * u)
        return 2 * (math.log1p(-t) - math.log(t))

    return lam((T - 1) / T), lam(1 / T)


@dataclass
class Sd3Model(LatentPipelineModel):
    """An SD3-style folder and its precomputed conditions (see the module docstring).

    Args:
        path: the pipeline folder (transformer/, vae/, scheduler/).
        prompt_embeds: a .safetensors file (module docstring).
        prompt: refused with a one-line error (text encoding is not supported; give embeddings).
        guidance_scale: classifier-free guidance w for sampling (1: no guidance).
        attention: "math" (JVP-safe) or "default" (fused kernels, sampling only).
    """

    kind = "sd3"
    components, folder = COMPONENTS, "an SD3 folder"
    network, network_config = "transformer", "transformer config"
    network_class = "SD3Transformer2DModel"
    takes = "an SD3Transformer2DModel"
    latent = "latent z = scaling_factor·(E(x) − shift_factor)"
    path: str
    prompt_embeds: Any = None
    prompt: Any = None
    guidance_scale: float = 1.0
    attention: str = "math"

    def _configs(self) -> tuple[Path, dict, dict]:
        root, tr, sched = self._read_folder()
        if sched.get("_class_name") != "FlowMatchEulerDiscreteScheduler":
            raise ConfigError(
                f"model.path: scheduler/ holds a {sched.get('_class_name')}; model=sd3 takes a "
                f"FlowMatchEulerDiscreteScheduler"
            )
        if sched.get("use_dynamic_shifting", False):
            raise ConfigError(
                "model.path: scheduler/ uses use_dynamic_shifting (a resolution-dependent shift); "
                "only a fixed shift is supported"
            )
        T, s = sched.get("num_train_timesteps", 1000), sched.get("shift", 1.0)
        if not isinstance(T, int) or T < 2 or not isinstance(s, (int, float)) or not s > 0:
            raise ConfigError(
                f"model.path: scheduler/ needs num_train_timesteps ≥ 2 and shift > 0, got {T}, {s}"
            )
        return root, tr, sched

    def _embeds_shapes(self, tr: dict) -> dict[str, list[int]]:
        if self.prompt_embeds in (None, ""):
            raise ConfigError(
                "model=sd3 needs model.prompt_embeds (a .safetensors file with prompt_embeds "
                "[P, L, E] and pooled_prompt_embeds [P, E'])"
            )
        f, shapes = prompt_embeds_shapes(self.prompt_embeds)
        pe, pp = shapes.get("prompt_embeds"), shapes.get("pooled_prompt_embeds")
        if pe is None or len(pe) != 3 or min(pe) < 1:
            raise ConfigError(f"model.prompt_embeds: {f} needs 'prompt_embeds' of shape [P, L, E]")
        if pp is None or len(pp) != 2 or pp[0] != pe[0]:
            raise ConfigError(
                f"model.prompt_embeds: {f} needs 'pooled_prompt_embeds' of shape [P, E'] with "
                f"P = {pe[0]}"
            )
        for key, got, want in (
            ("joint_attention_dim", pe[2], tr.get("joint_attention_dim")),
            ("pooled_projection_dim", pp[1], tr.get("pooled_projection_dim")),
        ):
            if isinstance(want, int) and got != want:
                raise ConfigError(
                    f"model.prompt_embeds: embedding width {got} ≠ the transformer's {key} {want}"
                )
        ne, np_ = shapes.get("negative_prompt_embeds"), shapes.get("negative_pooled_prompt_embeds")
        if (ne is None) != (np_ is None):
            raise ConfigError(
                "model.prompt_embeds: give both negative_prompt_embeds and "
                "negative_pooled_prompt_embeds, or neither"
            )
        if ne is not None and (list(ne[-2:]) != pe[1:] or list(np_[-1:]) != pp[1:]):
            raise ConfigError(
                f"model.prompt_embeds: negative embeddings {ne}, {np_} ≠ [L, E] = {pe[1:]}, "
                f"[E'] = {pp[1:]}"
            )
        if ne is None and self.guidance_scale != 1.0:
            raise ConfigError(
                f"model.guidance_scale = {self.guidance_scale:g} needs negative_prompt_embeds and "
                f"negative_pooled_prompt_embeds in model.prompt_embeds (no text encoder is loaded)"
            )
        return shapes

    def check(self) -> None:
        """Structural checks of the folder and the embeddings (no diffusers import)."""
        _, tr, _ = self._configs()
        if self.prompt not in (None, ""):
            raise ConfigError(
                "model.prompt: model=sd3 does not encode text (SD3's three text encoders are not "
                "loaded); give model.prompt_embeds from StableDiffusion3Pipeline.encode_prompt"
            )
        self._check_sampling()
        self._embeds_shapes(tr)
        self._latent_shape(tr)

    @staticmethod
    def _latent_shape(tr: dict) -> tuple[int, int, int]:
        h, w = sample_hw(tr, "transformer/config.json")
        size = tr["sample_size"]
        patch = int(tr.get("patch_size", 2))
        if h % patch or w % patch:
            raise ConfigError(f"model.path: sample_size {size} is not a multiple of patch {patch}")
        return int(tr.get("in_channels", 16)), int(h), int(w)

    def load(self) -> ScoreModule:
        """Load the transformer, the VAE and the embeddings."""
        self.check()
        root, tr_cfg, sched_cfg = self._configs()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import diffusers
        except ImportError:
            raise ConfigError(
                "model=sd3 needs diffusers: pip install 'cartoonist[diffusers]'"
            ) from None
        from cartoonist.models.conditional_adapters import LatentCodec
        from cartoonist.models.flow_adapters import FlowLatentScore

        transformer = load_part(diffusers.SD3Transformer2DModel, root, "transformer")
        transformer = transformer.eval().requires_grad_(False)
        vae = load_part(diffusers.AutoencoderKL, root, "vae").eval().requires_grad_(False)
        tensors = read_prompt_embeds(self.prompt_embeds)
        embeds, pooled = tensors["prompt_embeds"], tensors["pooled_prompt_embeds"]
        neg = negp = None
        if "negative_prompt_embeds" in tensors:
            neg = tensors["negative_prompt_embeds"].reshape(1, *embeds.shape[1:])
            negp = tensors["negative_pooled_prompt_embeds"].reshape(1, pooled.shape[1])
        T = int(sched_cfg.get("num_train_timesteps", 1000))
        lam_min, lam_max = flow_lambda_range(T, float(sched_cfg.get("shift", 1.0)))
        shape = self._latent_shape(tr_cfg)
        sf = getattr(vae.config, "scaling_factor", None) or 1.0
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        codec = LatentCodec(vae, sf, 2 ** (len(vae.config.block_out_channels) - 1), shift)
        return FlowLatentScore(
            transformer,
            lam_min,
            lam_max,
            T,
            embeds,
            pooled,
            neg,
            negp,
            [f"prompt_embeds[{k}]" for k in range(embeds.shape[0])],
            float(self.guidance_scale),
            codec,
            shape,
            self.density_label(shape),
            math_attention=self.attention == "math",
        )
