"""What the figure task hands a figure beyond `compute`: debug=smoke sizes and a learned model.

- `debug=smoke` sets `smoke: true`; each experiment's `compute_smoke:` block (seconds-long sizes)
  is then merged into its `compute:` (`apply_smoke`).
- A figure run names a learned model the way `sample`/`evaluate` do: `ckpt_path=` (a checkpoint of
  `cartoonist.train`) or a `model=` option that is not the exact oracle (e.g. a pretrained
  adapter). `learned_from_config` builds it through `build_score`, so every model the
  pipeline can build works; figures that take a `learned` argument receive it (`compute_kwargs`).
"""

from __future__ import annotations

import inspect

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from cartoonist.data import NoData
from cartoonist.errors import ConfigError, format_error
from cartoonist.figures.fig1_hd_samples import LearnedModel
from cartoonist.pipeline.build import build_score, event_shape_of
from cartoonist.pipeline.names import model_tag
from cartoonist.pipeline.targets import model_kind

__all__ = ["apply_smoke", "wants_learned_model", "learned_from_config", "compute_kwargs"]


def apply_smoke(cfg: DictConfig) -> DictConfig:
    """Merge `compute_smoke` into `compute` when `smoke` is set (by debug=smoke); in place."""
    if cfg.get("smoke") and cfg.get("compute_smoke"):
        with open_dict(cfg):
            cfg.compute = OmegaConf.merge(cfg.compute, cfg.compute_smoke)
    return cfg


def wants_learned_model(cfg: DictConfig) -> bool:
    """True when the run names a checkpoint or a model that is not the exact oracle."""
    if cfg.get("ckpt_path"):
        return True
    return model_kind(cfg) not in (None, "oracle")


def _choice(group: str) -> str | None:
    try:
        return HydraConfig.get().runtime.choices.get(group)
    except ValueError:  # no Hydra context (a config built by hand)
        return None


def learned_from_config(cfg: DictConfig) -> LearnedModel:
    """The learned model a figure run names: its score via `build_score`, images from `dataset`.

    `data` is the dataset's validation split, or None with `dataset=none` (a pretrained model
    brings its shape; figures that only sample need no data). A network moves to `cfg.device`
    (e.g. device=cuda on a GPU machine; default cpu).

    Raises:
        ConfigError: the model cannot score the dataset's images, or examples of its own shape
            (one line).
    """
    ds = cfg.get("dataset")
    if ds is None:
        dm = NoData()
    else:
        dm = instantiate(ds)
        dm.setup()
    score, schedule, _, logjac = build_score(cfg, dm)
    if isinstance(score, torch.nn.Module):
        score = score.to(str(cfg.get("device") or "cpu"))
    data = None if isinstance(dm, NoData) else dm.val_data
    name = cfg.get("learned_name") or (
        f"{_choice('dataset')} ({_choice('model')})"
        if data is not None
        else model_tag(_root_=cfg).removeprefix("__") or str(_choice("model"))
    )
    model = LearnedModel(
        name=str(name),
        score=score,
        schedule=schedule,
        data=data,
        event_shape=event_shape_of(score, dm),
        log_jacobian=float(logjac or 0.0),
    )
    probe = data[:1] if data is not None else torch.zeros(1, *model.event_shape)
    try:  # fail here, in one line, rather than deep inside a solver
        lam = torch.full((1,), 0.5 * (schedule.lambda_min + schedule.lambda_max))
        score(probe.to(model.device), lam.to(model.device))
    except Exception as e:  # noqa: BLE001
        what = f"dataset={_choice('dataset')} images" if data is not None else "examples"
        raise ConfigError(
            f"the model cannot score {what} of shape {tuple(probe.shape[1:])}: {format_error(e)}"
        ) from e
    return model


def compute_kwargs(cfg: DictConfig, fn) -> dict:
    """Keyword arguments beyond `seed` for the figure computation `fn`: `learned` when named."""
    if not wants_learned_model(cfg):
        return {}
    if "learned" not in inspect.signature(fn).parameters:
        raise ConfigError(
            f"figure {cfg.figure_name} has no learned-model part: drop ckpt_path=/model="
        )
    return {"learned": learned_from_config(cfg)}
