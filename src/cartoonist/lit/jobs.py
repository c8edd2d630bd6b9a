"""The per-sample work of `sample` and `evaluate`, as predict steps over batches of sample ids.

Under `trainer=ddp` Lightning splits the ids across processes; all randomness of sample i is keyed
by (seed, i), so the numbers equal a one-process run. Each step returns per-sample tensors on the
CPU: `x`, `nfe`, `wall_s` and one `logp_<estimator>` [B] (nats) per estimator, with an
estimator's own `nfe_<name>` / `wall_s_<name>` when it is not the one that made `x`.

The Trainer runs with `inference_mode=False` (set by the task), so JVP/VJP-based estimators may
build graphs; `torch.enable_grad()` re-enables the gradients Lightning's `no_grad` turns off.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

import lightning as L
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from torch import Tensor, nn

from cartoonist.diffusion import Keys, Schedule, sample_sde
from cartoonist.diffusion.guidance import sample_guided
from cartoonist.diffusion.integrators import show_progress

__all__ = ["SampleJob", "EvaluateJob"]


@contextmanager
def _clock(desc: str, wall: list) -> Iterator[None]:
    """Time the block into `wall` (appended, seconds), with step progress bars on rank 0."""
    t = time.perf_counter()
    if getattr(rank_zero_only, "rank", 0) == 0:
        with show_progress(desc):
            yield
    else:
        yield
    wall.append(time.perf_counter() - t)


def _uint8_images(img: Tensor) -> Tensor:
    """8-bit images k = round((x + 1) · 127.5) of images x in [−1, 1] (clamped), uint8."""
    return ((img.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def _name(fn) -> str:
    return getattr(getattr(fn, "func", fn), "__name__", "job")


class _IdJob(L.LightningModule):
    """A predict step over sample ids, on the device of the score's network (CPU without one).

    Args:
        score, schedule: the model. A network-backed score (an `nn.Module`) is a submodule, so
            the trainer moves it to its device (trainer=gpu) and the job runs there; exact oracles
            stay on the CPU in float64.
        event_shape: shape of one sample.
        seed: keys the prior draws and every noise by (seed, sample id).
        oracle: the exact model, when there is one.
    """

    def __init__(self, score, schedule: Schedule, event_shape, seed: int, oracle=None):
        super().__init__()
        self.score = score
        self.schedule, self.event_shape, self.seed, self.oracle = (
            schedule,
            tuple(event_shape),
            int(seed),
            oracle,
        )
        self.dtype_ = torch.float64 if oracle is not None else torch.float32

    def _where(self) -> torch.device:
        return self.device if isinstance(self.score, nn.Module) else torch.device("cpu")

    def _prior(self, keys: Keys) -> Tensor:
        shape = (len(keys.sample_ids), *self.event_shape)
        return self.schedule.sample_prior(
            shape, noise=keys, dtype=self.dtype_, device=self._where()
        )

    def _score_of(self, ids: Tensor):
        """The score bound to the batch's sample ids (a conditional model's conditions)."""
        bind = getattr(self.score, "for_samples", None)
        return bind(ids.tolist()) if bind is not None else self.score

    def _density_score_of(self, ids: Tensor, sampler_score):
        """The score whose density the estimators report.

        A guided model's conditional (w = 1) score `conditional_of(ids)`; else the sampler's own.
        """
        cond = getattr(self.score, "conditional_of", None)
        return cond(ids.tolist()) if cond is not None else sampler_score

    def _guided(self) -> bool:
        """True when the sampler follows a guided score (w ≠ 1): it has no marginal density."""
        return float(getattr(self.score, "guidance_scale", 1.0)) != 1.0

    def _images(self, x: Tensor) -> Tensor | None:
        """8-bit images [B, C, H, W] of a latent model's points (its VAE decoder), else None."""
        if getattr(self.score, "space", "pixel") != "latent":
            return None
        with torch.no_grad():
            img = self.score.decode(x.to(self._where()))
        return _uint8_images(img)

    @staticmethod
    def _per_sample(n: int, nfe: int, wall: float) -> tuple[Tensor, Tensor]:
        return torch.full((n,), nfe), torch.full((n,), wall / n, dtype=torch.float64)

    @staticmethod
    def _cpu(out: dict, ids: Tensor) -> dict:
        out = {k: v.detach().cpu() if isinstance(v, Tensor) else v for k, v in out.items()}
        out["sample_id"] = ids.cpu()
        return out


class SampleJob(_IdJob):
    """`sample`: {x, nfe, wall_s, logp_tracked?, logp_exact?, logp_<likelihood>?} per sample.

    A latent model's samples x are latents, with their decoded 8-bit `images`. A guided model
    (guidance_scale w ≠ 1) is sampled on the guided field with `sample_guided`: "tracked" is then
    log p(x | c) of the conditional model by the Lemma (ODE/HD samplers with track_logp), or
    absent (a guided sampler's own r is not a log-density); the likelihood estimator scores the
    conditional model (`conditional_of`).

    Args:
        sampler: (score, schedule, x, noise=Keys(seed, ids)) -> SampleResult.
        likelihood: (name, estimator) that also scores every sample, e.g. ("pf_ode",
            ode_log_prob partial): written as `logp_<name>` (nats), so a learned model's samples
            get a log p too.
        (the rest as `_IdJob`)
    """

    def __init__(
        self,
        score,
        schedule,
        sampler: Callable,
        event_shape,
        seed,
        oracle=None,
        likelihood: tuple[str, Callable] | None = None,
    ):
        super().__init__(score, schedule, event_shape, seed, oracle)
        self.sampler, self.likelihood = sampler, likelihood

    def predict_step(self, batch, batch_idx: int) -> dict:
        """Draw the prior, run the sampler, score the samples."""
        (ids,) = batch
        keys, n, wall = Keys(self.seed, ids.tolist()), ids.numel(), []
        score = self._score_of(ids)
        density = self._density_score_of(ids, score)
        x_init = self._prior(keys)
        with torch.enable_grad(), _clock(_name(self.sampler), wall):
            if self._guided():  # log p(x | c) by the Lemma along the guided ODE, or none
                uncond = self.score.unconditional_of(ids.tolist())
                res, _ = sample_guided(
                    self.sampler,
                    density,
                    uncond,
                    self.score.guidance_scale,
                    self.schedule,
                    x_init,
                    keys,
                )
            else:
                res = self.sampler(score, self.schedule, x_init, noise=keys)
        out = {"x": res.x.float()}
        out["nfe"], out["wall_s"] = self._per_sample(n, res.nfe, wall[0])
        if res.logp is not None:
            out["logp_tracked"] = res.logp.double()
        images = self._images(res.x)
        if images is not None:
            out["images"] = images
        if self.oracle is not None:
            out["logp_exact"] = self.oracle.log_prob(res.x, self.schedule.lambda_max)
        if self.likelihood is not None:
            name, estimator = self.likelihood
            with torch.enable_grad(), _clock(_name(estimator), wall):
                lik = estimator(density, self.schedule, res.x, noise=keys)
            out[f"logp_{name}"] = lik.logp.double()
            out[f"nfe_{name}"], out[f"wall_s_{name}"] = self._per_sample(n, lik.nfe, wall[1])
        return self._cpu(out, ids)


class EvaluateJob(_IdJob):
    """`evaluate`: {x, logp_<name>, logp_sde_tracking?, logp_data_exact?, nfe, wall_s}.

    Args:
        estimator, name: the likelihood group's estimator and its option name; None for
            `sde_tracking` (the r_0 of the SDE samples is the estimate).
        data: [N, ...] examples for source=dataset, or None for the model's own SDE samples
            (`sde_steps` Euler–Maruyama steps, r update `sde_logp_scheme`).
        truth: the dataset's exact mixture when a learned model is evaluated on synthetic data:
            its log p of the same points ("data_exact") is the ground truth.
        (the rest as `_IdJob`)
    """

    def __init__(
        self,
        score,
        schedule,
        estimator: Callable | None,
        name: str,
        data,
        event_shape,
        sde_steps: int,
        seed,
        oracle=None,
        truth=None,
        sde_logp_scheme: str = "corrected",
    ):
        super().__init__(score, schedule, event_shape, seed, oracle)
        self.estimator, self.name, self.data, self.truth = estimator, name, data, truth
        self.sde_steps, self.sde_logp_scheme = sde_steps, sde_logp_scheme

    def predict_step(self, batch, batch_idx: int) -> dict:
        """Generate or load the points, then score them with the estimator."""
        (ids,) = batch
        keys, n, wall, out = Keys(self.seed, ids.tolist()), ids.numel(), [], {}
        score = self._density_score_of(ids, self._score_of(ids))
        if self.data is None:
            x_init = self._prior(keys)
            with torch.enable_grad(), _clock("sample_sde", wall):
                gen = sample_sde(
                    score,
                    self.schedule,
                    x_init,
                    self.sde_steps,
                    noise=keys,
                    logp_scheme=self.sde_logp_scheme,
                )
            x, out["logp_sde_tracking"] = gen.x, gen.logp
        else:
            x = self.data[ids].to(dtype=self.dtype_).to(self._where())
            if getattr(self.score, "space", "pixel") == "latent":  # images → z (posterior mean)
                out["images"] = _uint8_images(x)
                x = self.score.encode(x)
        if self.estimator is not None:
            with torch.enable_grad(), _clock(_name(self.estimator), wall):
                res = self.estimator(score, self.schedule, x, noise=keys)
            out[f"logp_{self.name}"] = res.logp.double()
            out["nfe"], out["wall_s"] = self._per_sample(n, res.nfe, wall[-1])
        else:
            out["nfe"], out["wall_s"] = self._per_sample(n, self.sde_steps, 0.0)
        if self.truth is not None:
            out["logp_data_exact"] = self.truth.log_prob(
                x.double().cpu(), self.schedule.lambda_max
            )
        out["x"] = x.float()
        if "images" not in out and (images := self._images(x)) is not None:
            out["images"] = images
        return self._cpu(out, ids)
