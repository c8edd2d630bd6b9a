"""`model=stable_diffusion`: a text-conditional latent diffusion folder (SD 1.x ε, SD 2.x v).

The folder is what `StableDiffusionPipeline.save_pretrained` writes: `unet/`
(`UNet2DConditionModel`), `vae/` (`AutoencoderKL`), `text_encoder/` (`CLIPTextModel`),
`tokenizer/` (`CLIPTokenizer`), `scheduler/` (any discrete-time scheduler with ᾱ_n: DDIM, PNDM,
DDPM, …). Everything runs on the scaled latent z = scaling_factor · E(x) and every log p is of z
(see `cartoonist.models.conditional_adapters` for the maths, guidance included).

Conditions: `prompt` (a string or a list), `prompt_file` (one prompt per line) or `prompt_embeds`
(a .safetensors file with `prompt_embeds` [P, L, E] and optionally `negative_prompt_embeds`
[1, L, E] or [L, E]; read with safetensors, never a pickle). Sample i gets prompt i mod P. With
none of them the model is run on the empty prompt (printed once). `negative_prompt` (default "")
is the unconditional branch of classifier-free guidance (`guidance_scale` w; w = 1: the plain
conditional model). Prompts longer than the tokenizer's `model_max_length` are truncated, as the
diffusers pipelines do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cartoonist.errors import ConfigError
from cartoonist.models.adapters import ScoreModule
from cartoonist.models.diffusers_folders import (
    LatentPipelineModel,
    check_choice,
    load_part,
    prompt_embeds_shapes,
    read_prompt_embeds,
    sample_hw,
    scheduler_from_config,
)
from cartoonist.models.pretrained import _read_json, _root_cause

__all__ = ["StableDiffusionModel", "COMPONENTS"]

COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
_PREDICTIONS = ("epsilon", "v_prediction", "sample")


@dataclass
class StableDiffusionModel(LatentPipelineModel):
    """A Stable-Diffusion-style folder and its conditions (see the module docstring).

    Args:
        path: the pipeline folder.
        prompt: a prompt or a list of prompts (sample i gets prompt i mod P).
        negative_prompt: the unconditional prompt of guidance ("" when None).
        prompt_file: a text file, one prompt per line (blank lines skipped).
        prompt_embeds: a .safetensors file with `prompt_embeds` [P, L, E] (and optionally
            `negative_prompt_embeds`).
        guidance_scale: classifier-free guidance w for sampling (1: no guidance).
        timestep: "interpolate" or "nearest" (see `DiscreteTimeMap`).
        attention: "math" (JVP-safe) or "default" (fused kernels, sampling only).
    """

    kind = "stable_diffusion"
    components = COMPONENTS
    folder = "a Stable Diffusion folder"
    network, network_config, network_class = "unet", "UNet config", "UNet2DConditionModel"
    takes = "a UNet2DConditionModel (a pixel UNet2DModel is model=diffusers)"
    latent = "latent z = scaling_factor·E(x)"
    path: str
    prompt: Any = None
    negative_prompt: Any = None
    prompt_file: Any = None
    prompt_embeds: Any = None
    guidance_scale: float = 1.0
    timestep: str = "interpolate"
    attention: str = "math"

    # -- checks (no diffusers import) --------------------------------------------------------
    def _configs(self) -> tuple[Path, dict, dict]:
        root, unet, sched = self._read_folder()
        pred = sched.get("prediction_type", "epsilon")
        if pred not in _PREDICTIONS:
            raise ConfigError(f"model.path: unsupported prediction_type {pred!r} in scheduler/")
        if "_class_name" not in sched:
            raise ConfigError("model.path: scheduler/scheduler_config.json has no _class_name")
        if sched.get("timestep_type", "discrete") != "discrete":
            raise ConfigError("model.path: only discrete-timestep schedulers are supported")
        return root, unet, sched

    def _prompt_list(self) -> list[str] | None:
        given = [
            k
            for k in ("prompt", "prompt_file", "prompt_embeds")
            if getattr(self, k) not in (None, "")
        ]
        if len(given) > 1:
            raise ConfigError(f"give one of model.prompt, prompt_file, prompt_embeds, not {given}")
        p = self.prompt
        if isinstance(p, str) and p != "":
            return [p]
        if isinstance(p, (list, tuple)) or (p is not None and hasattr(p, "__iter__")):
            items = list(p)
            if not items or not all(isinstance(s, str) for s in items):
                raise ConfigError(f"model.prompt must be a string or a list of strings, got {p!r}")
            return items
        if p not in (None, ""):
            raise ConfigError(f"model.prompt must be a string or a list of strings, got {p!r}")
        if self.prompt_file not in (None, ""):
            f = Path(str(self.prompt_file)).expanduser()
            if not f.is_file():
                raise ConfigError(f"model.prompt_file does not exist: {self.prompt_file}")
            try:
                lines = [s.strip() for s in f.read_text().splitlines()]
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(f"model.prompt_file is unreadable: {_root_cause(e)}") from None
            lines = [s for s in lines if s]
            if not lines:
                raise ConfigError(f"model.prompt_file has no prompts: {self.prompt_file}")
            return lines
        return None

    def _embeds_shapes(self, width) -> dict[str, list[int]] | None:
        if self.prompt_embeds in (None, ""):
            return None
        f, shapes = prompt_embeds_shapes(self.prompt_embeds)
        pe = shapes.get("prompt_embeds")
        if pe is None or len(pe) != 3 or min(pe) < 1:
            raise ConfigError(
                f"model.prompt_embeds: {f} needs a tensor 'prompt_embeds' of shape [P, L, E]"
            )
        ne = shapes.get("negative_prompt_embeds")
        if ne is not None and list(ne[-2:]) != pe[1:]:
            raise ConfigError(
                f"model.prompt_embeds: negative_prompt_embeds {ne} ≠ [L, E] = {pe[1:]}"
            )
        if width is not None and pe[2] != width:
            raise ConfigError(
                f"model.prompt_embeds: embedding width {pe[2]} ≠ the UNet's cross_attention_dim "
                f"{width}"
            )
        return shapes

    def check(self) -> None:
        """Structural checks of the folder and the conditions (no diffusers import)."""
        _, unet, _ = self._configs()
        check_choice("timestep", self.timestep, ("interpolate", "nearest"))
        self._check_sampling()
        if self.negative_prompt is not None and not isinstance(self.negative_prompt, str):
            raise ConfigError(
                f"model.negative_prompt must be a string, got {self.negative_prompt!r}"
            )
        self._prompt_list()
        width = unet.get("cross_attention_dim")
        self._embeds_shapes(width if isinstance(width, int) else None)
        self._latent_shape(unet)

    @staticmethod
    def _latent_shape(unet: dict) -> tuple[int, int, int]:
        h, w = sample_hw(unet, "unet/config.json")
        return int(unet.get("in_channels", 4)), int(h), int(w)

    # -- loading ------------------------------------------------------------------------------
    def load(self) -> ScoreModule:
        """Load the UNet, the VAE and the scheduler; encode the prompts (text encoder freed)."""
        self.check()
        root, unet_cfg, sched_cfg = self._configs()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import diffusers
            import torch
            import transformers
        except ImportError:
            raise ConfigError(
                "model=stable_diffusion needs diffusers and transformers: "
                "pip install 'cartoonist[diffusers]'"
            ) from None
        from cartoonist.models.conditional_adapters import LatentCodec, TextLatentScore

        unet = load_part(diffusers.UNet2DConditionModel, root, "unet").eval().requires_grad_(False)
        vae = load_part(diffusers.AutoencoderKL, root, "vae").eval().requires_grad_(False)
        sched = scheduler_from_config(diffusers, sched_cfg)
        if getattr(sched, "alphas_cumprod", None) is None:
            raise ConfigError(f"model.path: scheduler {sched_cfg['_class_name']} has no ᾱ_n")

        prompts = self._prompt_list()
        neg_text = self.negative_prompt or ""
        embeds = neg = None
        if self.prompt_embeds not in (None, ""):
            tensors = read_prompt_embeds(self.prompt_embeds)
            embeds = tensors["prompt_embeds"]
            prompts = [f"prompt_embeds[{k}]" for k in range(embeds.shape[0])]
            if "negative_prompt_embeds" in tensors:
                neg = tensors["negative_prompt_embeds"].reshape(1, *embeds.shape[1:])
                neg_text = "negative_prompt_embeds"
        if prompts is None:
            print("[cartoonist] model=stable_diffusion: no prompt given, using the empty prompt")
            prompts = [""]
        if embeds is None or neg is None:
            tok = load_part(transformers.AutoTokenizer, root, "tokenizer")
            enc_cfg = _read_json(root / "text_encoder" / "config.json", "text encoder config")
            arch = (enc_cfg.get("architectures") or ["CLIPTextModel"])[0]
            enc_cls = getattr(transformers, arch, transformers.CLIPTextModel)
            encoder = load_part(enc_cls, root, "text_encoder").eval().requires_grad_(False)
            with torch.no_grad():
                texts = ([] if embeds is not None else prompts) + [neg_text]
                ids = tok(
                    texts,
                    padding="max_length",
                    max_length=tok.model_max_length,
                    truncation=True,
                    return_tensors="pt",
                ).input_ids
                hidden = encoder(ids)[0].float()  # last hidden state [n, L, E], as SD 1.x/2.x
            if embeds is None:
                embeds = hidden[:-1]
            neg = hidden[-1:]
            del encoder
        if embeds.shape[-1] != unet_cfg.get("cross_attention_dim", embeds.shape[-1]):
            raise ConfigError(
                f"the text embeddings have width {embeds.shape[-1]}, the UNet's "
                f"cross_attention_dim is {unet_cfg.get('cross_attention_dim')}"
            )
        shape = self._latent_shape(unet_cfg)
        sf = getattr(vae.config, "scaling_factor", 0.18215) or 0.18215
        return TextLatentScore(
            unet,
            sched.alphas_cumprod,
            sched.config.get("prediction_type", "epsilon"),
            embeds,
            neg,
            prompts,
            float(self.guidance_scale),
            LatentCodec(vae, sf, 2 ** (len(vae.config.block_out_channels) - 1)),
            shape,
            self.density_label(shape),
            timestep=self.timestep,
            math_attention=self.attention == "math",
        )
