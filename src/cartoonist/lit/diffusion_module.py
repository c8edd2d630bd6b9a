"""LightningModule that trains an ε-prediction denoiser and reports its ELBO in bits/dim."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from cartoonist.diffusion import Keys, bits_per_dim, elbo, score_from_eps
from cartoonist.diffusion.losses import TrainingNoise
from cartoonist.models.ema import EMA

__all__ = ["DiffusionModule"]


class DiffusionModule(L.LightningModule):
    """Train `net` with the noise group's weighted denoising loss; keep EMA weights.

    Args:
        net: ε-prediction network (x [B, ...], lam [B]) -> [B, ...].
        noise: schedule, λ proposal and weighting (`TrainingNoise`).
        lr: Adam learning rate; warmup_steps: linear warm-up.
        ema_decay: decay of the EMA copy used for validation, sampling and checkpoints' `ema`
            (`cartoonist.models.EMA` with the decay warm-up min(decay, (1 + n)/(10 + n)) at
            global step n; the shadow is the submodule `ema`, so checkpoints hold `ema.*` keys).
        val_lambdas: λ points per example of the validation ELBO.
        log_jacobian: D log|a| of the pixel → model-space map, for bits/dim.
        spec: plain-data description of how to rebuild `net` and `noise` (stored in checkpoints,
            which then load with `weights_only=True`).
    """

    def __init__(
        self,
        net: nn.Module,
        noise: TrainingNoise,
        lr: float = 2e-4,
        warmup_steps: int = 100,
        ema_decay: float = 0.999,
        val_lambdas: int = 16,
        log_jacobian: float = 0.0,
        spec: dict | None = None,
    ):
        super().__init__()
        self.net, self.noise = net, noise
        self._ema = EMA(net, ema_decay, warmup=True)
        self.ema = self._ema.module  # registered submodule: moved, saved and loaded with self
        self.ema.train(net.training)  # Lightning sets modes module-wide (it warns on eval ones)
        self.lr, self.warmup, self.decay = lr, warmup_steps, ema_decay
        self.val_lambdas, self.log_jacobian = val_lambdas, log_jacobian
        self.spec = spec or {}

    def score(self, use_ema: bool = True):
        """Score function of the (EMA) network: s = −ε̂/σ."""
        return score_from_eps(self.ema if use_ema else self.net, self.noise.schedule)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        """One denoising-loss step; logs train/loss (nats per dimension)."""
        loss = self.noise.loss(self.net, batch[0]).mean()
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        """Update the EMA weights (decay warmed up as min(decay, (1 + n)/(10 + n)))."""
        self._ema.update(self.net, step=self.global_step)

    def validation_step(self, batch, batch_idx: int) -> None:
        """Validation ELBO of the EMA network, in nats and bits/dim (Theorem 4)."""
        x0 = batch[0]
        ids = torch.arange(x0.shape[0]) + batch_idx * 100_000
        res = elbo(self.score(), self.noise.schedule, x0, self.val_lambdas, noise=Keys(0, ids))
        D = x0[0].numel()
        self.log("val/elbo_nats", res.logp.mean(), sync_dist=True, batch_size=x0.shape[0])
        bpd = bits_per_dim(res.logp, D, self.log_jacobian).mean()
        self.log("val/bpd_elbo", bpd, prog_bar=True, sync_dist=True, batch_size=x0.shape[0])

    def configure_optimizers(self) -> Any:
        """Adam with linear warm-up."""
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: min(1.0, (step + 1) / max(self.warmup, 1))
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store the plain-data spec so `load_denoiser` can rebuild the network."""
        checkpoint["cartoonist"] = self.spec
