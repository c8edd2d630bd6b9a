"""The `train` task: fit an ε-prediction denoiser; a rerun resumes from `checkpoints/last.ckpt`."""

from __future__ import annotations

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cartoonist.lit import DiffusionModule
from cartoonist.pipeline.loggers import build_loggers
from cartoonist.tasks.lifecycle import task_run

__all__ = ["run"]


def run(cfg: DictConfig) -> dict:
    """Train the denoiser of `cfg.model` on `cfg.dataset` with the noise group's loss.

    A checkpoint stores the network's class and arguments as plain data (`spec`), so it loads
    with `torch.load(weights_only=True)` (`cartoonist.models.checkpoint`). Resuming is
    Lightning's own (`ckpt_path="last"`).
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
        trainer: L.Trainer = instantiate(
            cfg.trainer,
            logger=build_loggers(cfg, out),
            callbacks=callbacks,
            default_root_dir=str(out),
        )
        resumed = (out / "checkpoints" / "last.ckpt").exists()
        if resumed:
            print(f"[cartoonist] resuming from {out / 'checkpoints' / 'last.ckpt'}")
        trainer.fit(
            module, datamodule=dm, ckpt_path="last" if resumed else None, weights_only=True
        )
        if trainer.global_rank != 0:
            return {}
        summary = {k: float(v) for k, v in trainer.callback_metrics.items()}
        summary.update(global_step=int(trainer.global_step), resumed=resumed)
        return r.finish(summary, ["checkpoints/last.ckpt"])
