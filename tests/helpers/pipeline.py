"""Compose configs the way the entry points do, for in-process pipeline tests."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from cartoonist.pipeline import CONF_DIR


def compose_cfg(task: str, overrides: list[str], out: Path | None = None):
    """Compose conf/<task>.yaml with overrides; point paths.output_dir at `out`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(task, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    if out is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(out)
            cfg.paths.output_root = str(out.parent)
    return cfg


def spec_checkpoint(
    path: Path, target: str = "cartoonist.models.UNet", event_shape=(1, 8, 8), **net
):
    """A file that reads as a cartoonist training checkpoint's spec (no weights: not loadable).

    Enough for the checks before anything is built (`validate` reads only the spec).
    """
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    spec = {
        "net": {"_target_": target, **net},
        "noise": {"_target_": "cartoonist.diffusion.losses.TrainingNoise"},
        "event_shape": list(event_shape),
        "log_jacobian": 0.0,
    }
    torch.save({"cartoonist": spec, "state_dict": {}}, path)
    return path
