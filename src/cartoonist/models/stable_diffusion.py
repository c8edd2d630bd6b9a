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

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cartoonist.errors import ConfigError
from cartoonist.models.adapters import ScoreModule
from cartoonist.models.pretrained import (
    PretrainedModel,
    _check_safetensors,
    _read_json,
    _root_cause,
)

__all__ = ["StableDiffusionModel", "COMPONENTS"]

COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
_PREDICTIONS = ("epsilon", "v_prediction", "sample")


def _safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name → shape from a safetensors header (no tensor is read)."""
    _check_safetensors(path)
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


@dataclass
class StableDiffusionModel(PretrainedModel):
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
    path: str
    prompt: Any = None
    negative_prompt: Any = None
    prompt_file: Any = None
    prompt_embeds: Any = None
    guidance_scale: float = 1.0
    timestep: str = "interpolate"
    attention: str = "math"

    # -- checks (no diffusers import) --------------------------------------------------------
    def _root(self) -> Path:
        root = Path(str(self.path)).expanduser()
        if not root.exists():
            raise ConfigError(f"model.path does not exist: {self.path}")
        if not root.is_dir():
            raise ConfigError(f"model.path is not a folder (model=stable_diffusion): {self.path}")
        for name in COMPONENTS:
            if not (root / name).is_dir():
                raise ConfigError(
                    f"model.path has no {name}/ folder (a Stable Diffusion folder has "
                    f"{', '.join(c + '/' for c in COMPONENTS)}): {self.path}"
                )
        return root

    def _configs(self) -> tuple[Path, dict, dict]:
        root = self._root()
        unet = _read_json(root / "unet" / "config.json", "UNet config")
        sched = _read_json(root / "scheduler" / "scheduler_config.json", "scheduler config")
        if unet.get("_class_name") != "UNet2DConditionModel":
            raise ConfigError(
                f"model.path: unet/ holds a {unet.get('_class_name')}; model=stable_diffusion "
                f"takes a UNet2DConditionModel (a pixel UNet2DModel is model=diffusers)"
            )
        for part in ("unet", "vae"):
            weights = [root / part / w for w in _WEIGHTS if (root / part / w).is_file()]
            if not weights:
                raise ConfigError(f"model.path: {part}/ has no diffusion_pytorch_model weights")
            if weights[0].suffix == ".safetensors":
                _check_safetensors(weights[0])
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
        f = Path(str(self.prompt_embeds)).expanduser()
        if not f.is_file() or f.suffix != ".safetensors":
            raise ConfigError(
                f"model.prompt_embeds must be an existing .safetensors file: {self.prompt_embeds}"
            )
        shapes = _safetensors_shapes(f)
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
        if self.timestep not in ("interpolate", "nearest"):
            raise ConfigError(
                f"model.timestep must be interpolate or nearest, got {self.timestep!r}"
            )
        if self.attention not in ("math", "default"):
            raise ConfigError(f"model.attention must be math or default, got {self.attention!r}")
        w = self.guidance_scale
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ConfigError(f"model.guidance_scale must be a number ≥ 0, got {w!r}")
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
        size = unet.get("sample_size")
        if size is None:
            raise ConfigError("model.path: unet/config.json has no sample_size")
        h, w = (size, size) if isinstance(size, int) else size
        return int(unet.get("in_channels", 4)), int(h), int(w)

    def density_label(self, shape) -> str:
        """What every log p of this model is the density of (for CSV, JSON and figures)."""
        dims = "×".join(str(s) for s in shape)
        name = Path(str(self.path)).expanduser().resolve().name
        return f"latent z = scaling_factor·E(x) ({dims}), stable_diffusion {name}"

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

        def load_part(cls, name):
            try:
                kw = {"low_cpu_mem_usage": False} if cls.__module__.startswith("diffusers") else {}
                return cls.from_pretrained(str(root / name), local_files_only=True, **kw)
            except Exception as e:  # noqa: BLE001 - any loading failure becomes one line
                raise ConfigError(f"cannot load {name}/ in {root}: {_root_cause(e)}") from None

        unet = load_part(diffusers.UNet2DConditionModel, "unet").eval().requires_grad_(False)
        vae = load_part(diffusers.AutoencoderKL, "vae").eval().requires_grad_(False)
        cls = getattr(diffusers, sched_cfg["_class_name"], None)
        if cls is None or not hasattr(cls, "from_config"):
            raise ConfigError(f"model.path: unknown scheduler {sched_cfg['_class_name']!r}")
        sched = cls.from_config(sched_cfg)
        if getattr(sched, "alphas_cumprod", None) is None:
            raise ConfigError(f"model.path: scheduler {sched_cfg['_class_name']} has no ᾱ_n")

        prompts = self._prompt_list()
        neg_text = self.negative_prompt or ""
        embeds = neg = None
        if self.prompt_embeds not in (None, ""):
            from safetensors.torch import load_file

            tensors = load_file(str(Path(str(self.prompt_embeds)).expanduser()))
            embeds = tensors["prompt_embeds"].float()
            prompts = [f"prompt_embeds[{k}]" for k in range(embeds.shape[0])]
            if "negative_prompt_embeds" in tensors:
                neg = tensors["negative_prompt_embeds"].float().reshape(1, *embeds.shape[1:])
                neg_text = "negative_prompt_embeds"
        if prompts is None:
            print("[cartoonist] model=stable_diffusion: no prompt given, using the empty prompt")
            prompts = [""]
        if embeds is None or neg is None:
            tok = load_part(transformers.AutoTokenizer, "tokenizer")
            enc_cfg = _read_json(root / "text_encoder" / "config.json", "text encoder config")
            arch = (enc_cfg.get("architectures") or ["CLIPTextModel"])[0]
            enc_cls = getattr(transformers, arch, transformers.CLIPTextModel)
            encoder = load_part(enc_cls, "text_encoder").eval().requires_grad_(False)
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
