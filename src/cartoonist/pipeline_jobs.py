"""Per-sample jobs of the sample and evaluate tasks, and the config-only samplers/estimators.

A job maps a batch of sample ids to per-sample tensors; all its randomness is keyed by
(seed, sample_id), so Lightning can split ids over processes without changing any number.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import Tensor

from cartoonist.diffusion import Keys, LikelihoodResult, Schedule, sample_sde
from cartoonist.diffusion.integrators import show_progress

__all__ = ["sample_job", "evaluate_job", "sde_tracking", "exact_log_prob"]


def sde_tracking(*args, **kwargs):
    """Marker of the Theorem 1 estimator: its r_0 comes with the SDE samples (source=samples)."""
    raise ValueError(
        "likelihood=sde_tracking gives r_0 of the model's own SDE samples: use source=samples"
    )


def exact_log_prob(score, schedule: Schedule, x: Tensor, **_) -> LikelihoodResult:
    """Exact log p_{λ_max}(x) of an oracle model (nats)."""
    if not hasattr(score, "log_prob"):
        raise ValueError("likelihood=exact needs model=oracle")
    return LikelihoodResult(logp=score.log_prob(x, schedule.lambda_max), nfe=0)


def _timed(fn: Callable, *args, **kwargs):
    """Run fn, with step progress bars on rank 0; return (result, seconds)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    t = time.perf_counter()
    if getattr(rank_zero_only, "rank", 0) == 0:
        with show_progress(getattr(fn, "func", fn).__name__):
            out = fn(*args, **kwargs)
    else:
        out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def sample_job(
    score,
    schedule: Schedule,
    sampler: Callable,
    event_shape,
    seed: int,
    oracle=None,
    likelihood: tuple[str, Callable] | None = None,
) -> Callable[..., dict]:
    """Job for `sample`: (ids, device) → {x, nfe, wall_s, logp_tracked?, logp_exact?, ...}.

    Args:
        score, schedule: the model.
        sampler: (score, schedule, x, noise=Keys(seed, ids)) -> SampleResult.
        event_shape: shape of one sample.
        seed: keys the prior draws and every noise by (seed, sample id).
        oracle: the exact model, when there is one: its log p_{λ_max} is written as "exact".
        likelihood: (name, estimator) that also scores every sample, e.g. ("pf_ode",
            ode_log_prob partial): written as `logp_<name>` (nats) with its own `nfe_<name>` and
            `wall_s_<name>`, so a learned model's samples get a log p too.
    """

    def job(ids: Tensor, device=None) -> dict:
        n = ids.numel()
        dtype = torch.float64 if oracle is not None else torch.float32
        keys = Keys(seed, ids.tolist())
        x_init = schedule.sample_prior((n, *event_shape), noise=keys, dtype=dtype, device=device)
        res, wall = _timed(sampler, score, schedule, x_init, noise=keys)
        out = {
            "x": res.x.float(),
            "nfe": torch.full((n,), res.nfe),
            "wall_s": torch.full((n,), wall / n, dtype=torch.float64),
        }
        if res.logp is not None:
            out["logp_tracked"] = res.logp.double()
        if oracle is not None:
            out["logp_exact"] = oracle.log_prob(res.x, schedule.lambda_max)
        if likelihood is not None:
            name, estimator = likelihood
            lik, lwall = _timed(estimator, score, schedule, res.x, noise=keys)
            out[f"logp_{name}"] = lik.logp.double()
            out[f"nfe_{name}"] = torch.full((n,), lik.nfe)
            out[f"wall_s_{name}"] = torch.full((n,), lwall / n, dtype=torch.float64)
        return out

    return job


def evaluate_job(
    score,
    schedule: Schedule,
    estimator: Callable,
    name: str,
    source: str,
    data: Tensor | None,
    event_shape,
    sde_steps: int,
    seed: int,
    oracle=None,
    truth=None,
    sde_logp_scheme: str = "corrected",
) -> Callable[..., dict]:
    """Job for `evaluate`: (ids, device) → {x, logp_<name>, logp_sde_tracking?, logp_data_exact?}.

    `truth` is the dataset's exact mixture when a learned model is evaluated on synthetic data: its
    log p of the same points ("data_exact") is the ground truth the estimators are compared with.
    """

    def job(ids: Tensor, device=None) -> dict:
        n, keys = ids.numel(), Keys(seed, ids.tolist())
        out: dict = {}
        if source == "samples":
            dtype = torch.float64 if oracle is not None else torch.float32
            x_init = schedule.sample_prior(
                (n, *event_shape), noise=keys, dtype=dtype, device=device
            )
            gen, _ = _timed(
                sample_sde,
                score,
                schedule,
                x_init,
                sde_steps,
                noise=keys,
                logp_scheme=sde_logp_scheme,
            )
            x = gen.x
            out["logp_sde_tracking"] = gen.logp
        else:
            x = data[ids].to(dtype=torch.float64 if oracle is not None else torch.float32)
            x = x.to(device)
        if name != "sde_tracking":
            res, wall = _timed(estimator, score, schedule, x, noise=keys)
            out[f"logp_{name}"] = res.logp.double()
            out["nfe"] = torch.full((n,), res.nfe)
            out["wall_s"] = torch.full((n,), wall / n, dtype=torch.float64)
        else:
            out["nfe"] = torch.full((n,), sde_steps)
            out["wall_s"] = torch.zeros(n, dtype=torch.float64)
        if truth is not None:
            out["logp_data_exact"] = truth.log_prob(x.double().cpu(), schedule.lambda_max)
        out["x"] = x.float()
        return out

    return job
