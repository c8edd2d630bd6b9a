"""Algorithm 1 swept over thresholds: mean log p of HD samples vs regular samples.

The log p of each sample is the best estimator every job of the sweep wrote (`choose_estimator`):
the exact log p of an oracle model, else the PF-ODE estimate the sample task writes for a learned
model (`likelihood=pf_ode`), else an ELBO (a lower bound). The summary says which.
"""

from __future__ import annotations

import math
from typing import Mapping

import pandas as pd

from cartoonist.figures.common import FigureData
from cartoonist.plotting.labels import ESTIMATORS

__all__ = ["ESTIMATORS", "choose_estimator", "summarise_hd_threshold"]

BASELINE = {"ode": "pf_ode", "sde": "sde"}


def choose_estimator(available: Mapping[str, set[str]]) -> str:
    """The best estimator of `ESTIMATORS` that every job wrote.

    Args:
        available: job name -> the estimators of its per-sample table.

    Returns:
        "exact" when every job has the exact log p (an oracle model), else "pf_ode", else "elbo".

    Raises:
        ValueError: no job, or no estimator common to all jobs (one line naming a job short of
            each).
    """
    if not available:
        raise ValueError("no jobs to collect")
    for est in ESTIMATORS:
        if all(est in ests for ests in available.values()):
            return est
    missing = {
        est: next(job for job, ests in available.items() if est not in ests) for est in ESTIMATORS
    }
    raise ValueError(
        "no log p estimator common to every job ("
        + ", ".join(f"{job} has no {est!r}" for est, job in missing.items())
        + "): rerun the learned model's sweeps with likelihood=pf_ode"
    )


def _mean_se(s: pd.Series) -> tuple[float, float]:
    return float(s.mean()), float(s.std() / math.sqrt(len(s)))


def _row(method, stage, thr, estimator, s, gain=0.0, gain_se=0.0, gain_bpd=0.0) -> dict:
    """One summary row of the samples `s` (columns logp_nats, bpd), with the gain given."""
    mean, se = _mean_se(s.logp_nats)
    bpd, bpd_se = _mean_se(s.bpd)
    return dict(
        method=method,
        first_stage=stage,
        lambda_threshold=thr,
        estimator=estimator,
        mean_logp=mean,
        se=se,
        gain=gain,
        gain_se=gain_se,
        mean_bpd=bpd,
        bpd_se=bpd_se,
        gain_bpd=gain_bpd,
        n=len(s),
    )


def summarise_hd_threshold(per_sample: pd.DataFrame, estimator: str = "exact") -> FigureData:
    """Mean log p per (first stage, threshold) and the paired gain over the regular sampler.

    Args:
        per_sample: one estimator's rows: method ("hd", "sde", "pf_ode"), first_stage,
            lambda_threshold, sample_id, logp_nats (log p_{λ_max}, nats), bpd (bits/dim).
        estimator: the estimator of `logp_nats` ("exact", "pf_ode", "elbo"): recorded in every
            row and as the metric `logp_estimator`.

    Returns:
        FigureData with one row per (method, first_stage, threshold): mean log p (nats) and
        bits/dim with standard errors, and for HD rows the gain over the regular sampler of the
        same noise (paired by sample id), in nats and in bits/dim (negative: fewer bits).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {sorted(ESTIMATORS)}, got {estimator!r}")
    data = FigureData()
    data.metrics["logp_estimator"] = estimator
    base = {
        m: g.set_index("sample_id")[["logp_nats", "bpd"]]
        for m, g in per_sample[per_sample.method != "hd"].groupby("method")
    }
    for m, s in base.items():
        row = _row(m, "", float("nan"), estimator, s)
        data.rows.append(row)
        data.metrics[f"mean_logp_{m}"] = row["mean_logp"]
        data.metrics[f"mean_bpd_{m}"] = row["mean_bpd"]
    hd = per_sample[per_sample.method == "hd"]
    all_positive = True
    for (stage, thr), g in hd.groupby(["first_stage", "lambda_threshold"]):
        s = g.set_index("sample_id")[["logp_nats", "bpd"]]
        ref = base.get(BASELINE[stage])
        if ref is None:
            d = s * float("nan")
        else:
            d = s - ref.reindex(s.index)
        gain, gse = _mean_se(d.logp_nats)
        all_positive &= gain > 0
        row = _row("hd", stage, float(thr), estimator, s, gain, gse, float(d.bpd.mean()))
        data.rows.append(row)
        data.metrics[f"mean_logp_hd_{stage}_{thr:g}"] = row["mean_logp"]
        data.metrics[f"gain_hd_{stage}_{thr:g}"] = gain
        data.metrics[f"mean_bpd_hd_{stage}_{thr:g}"] = row["mean_bpd"]
    data.metrics["hd_beats_regular_at_every_threshold"] = bool(all_positive)
    return data
