"""The `train` task: fit an ε-prediction denoiser; a rerun resumes from `checkpoints/last.ckpt`."""

from __future__ import annotations

import os

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cartoonist.lit import DiffusionModule
from cartoonist.pipeline.checkpoints import resume_point
from cartoonist.pipeline.loggers import (
    build_loggers,
    csv_metrics_path,
    keep_metrics_history,
    merge_metrics_history,
)
from cartoonist.tasks.lifecycle import task_run

__all__ = ["run"]


def trainer_rank_zero() -> bool:
    """The first process (DDP's other ranks resume from what Lightning broadcasts)."""
    return all(os.environ.get(k, "0") == "0" for k in ("LOCAL_RANK", "NODE_RANK"))


def run(cfg: DictConfig) -> dict:
    """Train the denoiser of `cfg.model` on `cfg.dataset` with the noise group's loss.

    A checkpoint stores the network's class and arguments as plain data (`spec`), so it loads
    with `torch.load(weights_only=True)` (`cartoonist.models.checkpoint`). A rerun resumes from
    `last.ckpt`, or from the newest valid `step_*.ckpt` when `last.ckpt` is corrupt
    (`cartoonist.pipeline.checkpoints.resume_point`), and metrics.csv keeps the rows of the steps
    before the resume (Lightning's CSVLogger would start it afresh).
    """
    with task_run(cfg, "train") as r:
        if r.done:
            return r.summary
        out = r.start()
        dm = instantiate(cfg.dataset)
        dm.setup()
        net = instantiate(cfg.model)(event_shape=dm.event_shape)
        noise = instantiate(cfg.noise)
        spec = {
            "net": OmegaConf.to_container(cfg.model, resolve=True),
            "noise": OmegaConf.to_container(cfg.noise, resolve=True),
            "event_shape": list(dm.event_shape),
            "log_jacobian": float(dm.log_jacobian),
        }
        module = DiffusionModule(net, noise, log_jacobian=dm.log_jacobian, spec=spec, **cfg.optim)
        callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
        point = resume_point(out / "checkpoints")  # every rank: each loads it
        metrics = csv_metrics_path(cfg)
        if point is not None and trainer_rank_zero():
            keep_metrics_history(metrics, point[1])
        trainer: L.Trainer = instantiate(
            cfg.trainer,
            logger=build_loggers(cfg, out),
            callbacks=callbacks,
            default_root_dir=str(out),
        )
        resumed = point is not None
        if resumed:
            print(f"[cartoonist] resuming from {point[0]} (step {point[1]})")
        trainer.fit(
            module, datamodule=dm, ckpt_path=str(point[0]) if resumed else None, weights_only=True
        )
        if trainer.global_rank != 0:
            return {}
        merge_metrics_history(metrics)
        summary = {k: float(v) for k, v in trainer.callback_metrics.items()}
        summary.update(global_step=int(trainer.global_step), resumed=resumed)
        return r.finish(summary, ["checkpoints/last.ckpt"])
