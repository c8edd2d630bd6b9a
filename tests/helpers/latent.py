"""Tiny random Stable-Diffusion-style folders for offline tests of model=stable_diffusion.

The folder has the real pipeline layout (`unet/`, `vae/`, `text_encoder/`, `tokenizer/`,
`scheduler/`, `model_index.json`), every component built from a small config with random weights,
and a CLIP tokenizer written from a vocabulary of single characters (each also as an end-of-word
token) with no merges.
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

EMBED = 16  # text embedding width E = the UNet's cross_attention_dim
MAX_LEN = 8  # tokenizer model_max_length L


def write_tokenizer(folder: Path) -> Path:
    """A CLIPTokenizer folder: vocab.json of characters (and '<c></w>'), an empty merges.txt."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(string.ascii_lowercase + string.digits + ".,!?'-")
    tokens = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(
        str(folder / "vocab.json"),
        str(folder / "merges.txt"),
        model_max_length=MAX_LEN,
        pad_token="<|endoftext|>",
    )
    tok.save_pretrained(str(folder))
    return folder


def tiny_text_encoder(seed: int = 0):
    """A 2-layer CLIPTextModel with hidden size EMBED and the tokenizer's vocabulary."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    n_vocab = 2 + 2 * len(string.ascii_lowercase + string.digits + ".,!?'-")
    cfg = CLIPTextConfig(
        vocab_size=n_vocab,
        hidden_size=EMBED,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=MAX_LEN,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModel(cfg).eval()


def tiny_cond_unet(latent: int = 8, seed: int = 0, **kw):
    """A small UNet2DConditionModel on 4×latent×latent latents, cross-attention width EMBED."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    args = dict(
        sample_size=latent,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=EMBED,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    args.update(kw)
    return UNet2DConditionModel(**args).eval()


def tiny_vae(seed: int = 0):
    """An AutoencoderKL with 4 latent channels and a downsampling factor of 8 (4 blocks)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(4, 4, 4, 4),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=2,
        sample_size=8 * 8,
        scaling_factor=0.18215,
    ).eval()


def save_tiny_sd(
    folder: Path,
    prediction_type: str = "epsilon",
    latent: int = 8,
    num_train_timesteps: int = 1000,
    skip: tuple[str, ...] = (),
    seed: int = 0,
) -> Path:
    """Write a tiny SD folder (DDIM scheduler, scaled-linear β as SD uses); `skip` components."""
    from diffusers import DDIMScheduler

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    parts = {
        "unet": lambda p: tiny_cond_unet(latent, seed).save_pretrained(p),
        "vae": lambda p: tiny_vae(seed).save_pretrained(p),
        "text_encoder": lambda p: tiny_text_encoder(seed).save_pretrained(p),
        "tokenizer": write_tokenizer,
        "scheduler": lambda p: DDIMScheduler(
            num_train_timesteps=num_train_timesteps,
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            prediction_type=prediction_type,
        ).save_pretrained(p),
    }
    for name, save in parts.items():
        if name not in skip:
            save(folder / name)
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1"}
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


# -- SD3-style (flow-matching transformer) folders --------------------------------------------
SD3_JOINT = 16  # joint_attention_dim E of prompt_embeds
SD3_POOLED = 16  # pooled_projection_dim E' of pooled_prompt_embeds
SD3_LEN = 5  # token length L of the precomputed embeddings


def tiny_sd3_transformer(latent: int = 8, channels: int = 4, seed: int = 0):
    """A one-layer SD3Transformer2DModel on channels×latent×latent latents (patch 2)."""
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(seed)
    return SD3Transformer2DModel(
        sample_size=latent,
        patch_size=2,
        in_channels=channels,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=SD3_JOINT,
        caption_projection_dim=16,
        pooled_projection_dim=SD3_POOLED,
        out_channels=channels,
        pos_embed_max_size=latent,
    ).eval()


def save_tiny_sd3(
    folder: Path,
    latent: int = 8,
    channels: int = 4,
    shift: float = 3.0,
    num_train_timesteps: int = 1000,
    skip: tuple[str, ...] = (),
    seed: int = 0,
) -> Path:
    """Write a tiny SD3 folder (transformer/, vae/ with a shift_factor, scheduler/)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def vae(p):
        torch.manual_seed(seed)
        AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=channels,
            block_out_channels=(4, 4, 4, 4),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=1,
            norm_num_groups=2,
            sample_size=8 * latent,
            scaling_factor=1.5305,
            shift_factor=0.0609,
        ).save_pretrained(p)

    parts = {
        "transformer": lambda p: tiny_sd3_transformer(latent, channels, seed).save_pretrained(p),
        "vae": vae,
        "scheduler": lambda p: FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=num_train_timesteps, shift=shift
        ).save_pretrained(p),
    }
    for name, save in parts.items():
        if name not in skip:
            save(folder / name)
    index = {"_class_name": "StableDiffusion3Pipeline", "_diffusers_version": "0.42.1"}
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def save_sd3_embeds(path: Path, n: int = 2, negative: bool = True, seed: int = 0) -> Path:
    """A .safetensors file of random precomputed SD3 embeddings (n prompts, ± negatives)."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    t = {
        "prompt_embeds": torch.randn(n, SD3_LEN, SD3_JOINT, generator=g),
        "pooled_prompt_embeds": torch.randn(n, SD3_POOLED, generator=g),
    }
    if negative:
        t["negative_prompt_embeds"] = torch.randn(1, SD3_LEN, SD3_JOINT, generator=g)
        t["negative_pooled_prompt_embeds"] = torch.randn(1, SD3_POOLED, generator=g)
    save_file(t, str(path))
    return Path(path)
