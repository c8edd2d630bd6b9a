"""What `sample` and `evaluate` share: the predict run over sample ids and the per-sample files."""

from __future__ import annotations

import io
import math
import shutil
from pathlib import Path

import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cartoonist.diffusion import bias_bounds, bits_per_dim
from cartoonist.errors import ConfigError
from cartoonist.lit import PartWriter, id_loader, merge_parts
from cartoonist.pipeline.files import atomic_write, save_figure, write_per_sample_csv
from cartoonist.pipeline.loggers import build_loggers
from cartoonist.plotting import sample_figure

__all__ = [
    "datamodule_of",
    "predictor",
    "gather",
    "settings_of",
    "rows_of",
    "summarise",
    "grid_caption",
    "write_results",
]


def datamodule_of(cfg: DictConfig):
    """The `dataset` group's data module, set up.

    Its ConfigError (e.g. `dataset.split`, an empty folder) surfaces as itself, not wrapped by
    Hydra's InstantiationException.
    """
    try:
        dm = instantiate(cfg.dataset)
    except InstantiationException as e:
        if isinstance(e.__cause__, ConfigError):
            raise e.__cause__ from None
        raise
    dm.setup()
    return dm


def settings_of(cfg: DictConfig, group: str) -> dict | None:
    """{"name": the group's option, **its settings}: what a collector reads instead of configs."""
    node = cfg.get(group)
    if node is None:
        return None
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    values = OmegaConf.to_container(node, resolve=True)
    settings = {k: v for k, v in values.items() if not k.startswith("_")}
    return {"name": choices.get(group) or group, **settings}


def predictor(cfg: DictConfig, out: Path, n: int | None = None):
    """(Trainer, loader over sample ids 0..n−1) for a `lit.jobs` module; parts go to out/.parts.

    n defaults to `cfg.n_samples`.

    Use as `trainer.predict(job, dataloaders=loader, return_predictions=False)`, then `gather`.
    """
    parts = out / ".parts"
    shutil.rmtree(parts, ignore_errors=True)
    trainer = instantiate(
        cfg.trainer,
        logger=False,
        callbacks=[PartWriter(parts)],
        default_root_dir=str(out),
        inference_mode=False,  # JVP/VJP estimators differentiate through the network
    )
    return trainer, id_loader(cfg.n_samples if n is None else n, cfg.batch_size)


def gather(trainer, out: Path) -> dict | None:
    """Every rank's predictions merged by sample id (rank 0; None on the other ranks)."""
    trainer.strategy.barrier()
    if trainer.global_rank != 0:
        return None
    parts = out / ".parts"
    merged = merge_parts(parts)
    shutil.rmtree(parts, ignore_errors=True)
    return merged


def rows_of(
    merged: dict,
    seed: int,
    dim: int,
    log_jacobian: float,
    score=None,
    columns: dict | None = None,
) -> list[dict]:
    """One row per (estimator, sample); an estimator's own `nfe_<name>`/`wall_s_<name>` if any.

    A model that says what its density is of (`score.density_of`, e.g. a latent model) adds a
    `density_of` column, and a conditional one (`score.condition_of(ids)`) a `condition` column.
    `columns` {name: list indexed by sample id} adds further per-sample columns (e.g. `file`).
    """
    rows = []
    ids = merged["sample_id"].tolist()
    density_of = getattr(score, "density_of", None)
    condition_of = getattr(score, "condition_of", None)
    conditions = condition_of(ids) if callable(condition_of) else None
    for key, val in merged.items():
        if not key.startswith("logp_"):
            continue
        est = key[5:]
        bpd = bits_per_dim(val, dim, log_jacobian)
        nfe = merged.get(f"nfe_{est}", merged["nfe"])
        wall = merged.get(f"wall_s_{est}", merged["wall_s"])
        for i, sid in enumerate(merged["sample_id"].tolist()):
            rows.append(
                dict(
                    sample_id=sid,
                    seed=seed,
                    estimator=est,
                    logp_nats=float(val[i]),
                    bpd=float(bpd[i]),
                    nfe=int(nfe[i]),
                    wall_s=float(wall[i]),
                    **{c: vals[sid] for c, vals in (columns or {}).items()},
                )
            )
            if conditions is not None:
                rows[-1]["condition"] = conditions[i]
            if isinstance(density_of, str):
                rows[-1]["density_of"] = density_of
    return rows


QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _stats(prefix: str, v: torch.Tensor) -> dict:
    """mean, sd, standard error and the 5/25/50/75/95 % quantiles of a [N] vector."""
    v = v.double()
    n = v.numel()
    sd = float(v.std()) if n > 1 else None  # one sample has no spread
    out = {f"{prefix}_mean": float(v.mean()), f"{prefix}_sd": sd}
    out[f"{prefix}_stderr"] = sd / math.sqrt(n) if sd is not None else None
    for q, val in zip(QUANTILES, torch.quantile(v, torch.tensor(QUANTILES, dtype=v.dtype))):
        out[f"{prefix}_q{round(q * 100):02d}"] = float(val)
    return out


def summarise(rows: list[dict]) -> dict:
    """Per estimator: log p (nats) and bits/dim statistics, NFE and wall time; the r_0 bounds.

    Keys per estimator `<est>`: `logp_<est>_{mean,sd,stderr,q05,q25,q50,q75,q95}` (nats, of the
    run's samples under the model), the same for `bpd_<est>` (bits/dim, pixel space),
    `nfe_<est>_mean` and `wall_s_<est>_total`. Where the run has both Theorem 1's r_0
    (`sde_tracking`) and the ELBO of the same samples, `r0_bias_{lower,upper,upper_stderr}`: the
    Theorem 3–4 bounds 0 ≤ E[r_0] − E[log p^SDE] ≤ E[r_0] − E[ELBO] (nats,
    `cartoonist.diffusion.bias_bounds`).
    """
    summary: dict = {}
    by_est: dict = {}
    for est in sorted({r["estimator"] for r in rows}):
        mine = sorted((r for r in rows if r["estimator"] == est), key=lambda r: r["sample_id"])
        by_est[est] = mine
        summary.update(_stats(f"logp_{est}", torch.tensor([r["logp_nats"] for r in mine])))
        summary.update(_stats(f"bpd_{est}", torch.tensor([r["bpd"] for r in mine])))
        summary[f"nfe_{est}_mean"] = sum(r["nfe"] for r in mine) / len(mine)
        summary[f"wall_s_{est}_total"] = sum(r["wall_s"] for r in mine)
    r0, el = by_est.get("sde_tracking"), by_est.get("elbo")
    if r0 and el and [r["sample_id"] for r in r0] == [r["sample_id"] for r in el] and len(r0) > 1:
        b = bias_bounds(
            torch.tensor([r["logp_nats"] for r in r0]), torch.tensor([r["logp_nats"] for r in el])
        )
        summary.update(
            r0_bias_lower=b.lower, r0_bias_upper=b.upper, r0_bias_upper_stderr=b.upper_stderr
        )
    return summary


def grid_caption(rows: list[dict], most: int = 16) -> str:
    """The wandb caption of a sample grid: each sample's id and log p, naming the estimator."""
    ests = {r["estimator"] for r in rows}
    est = next((e for e in ("exact", "pf_ode", "tracked", "sde_tracking") if e in ests), None)
    est = est or (sorted(ests)[0] if ests else None)
    if est is None:
        return "samples (no log p)"
    mine = sorted((r for r in rows if r["estimator"] == est), key=lambda r: r["sample_id"])
    shown = ", ".join(f"#{r['sample_id']}: {r['logp_nats']:.1f}" for r in mine[:most])
    more = f", … ({len(mine)} samples)" if len(mine) > most else ""
    return f"sample id: log p [nats, {est}] — {shown}{more}"


def write_results(
    run,
    merged: dict,
    shape,
    log_jacobian: float,
    extra: dict | None = None,
    schedule=None,
    score=None,
    columns: dict | None = None,
) -> dict:
    """per_sample.csv, samples.pt, grid.png and summary.json (with `extra`), then DONE.

    The summary (`summarise`) also carries n, NFE, wall time and the `schedule`'s λ range; the
    loggers get its numbers and, on wandb, the per-sample table and the grid with its caption.
    For a latent model (`score.space == "latent"`) samples.pt holds the latents `x` and the
    decoded 8-bit `images` [N, 3, H, W]; grid.png shows the images; summary.json's `density_of`
    says that every log p is of the latent (bits/dim are then per latent dimension).
    `columns` as `rows_of`. A run whose samples have no log p at all says so in one line
    (and its per_sample.csv has no rows).
    """
    cfg, out, task = run.cfg, run.out, run.task
    dim = int(merged["x"][0].numel())
    rows = rows_of(merged, cfg.seed, dim, log_jacobian, score, columns)
    if not rows:
        print(
            f"[cartoonist] {task}: no log p was computed for these samples (the sampler tracks "
            f"none and no likelihood group is set): per_sample.csv has no rows; add e.g. "
            f"likelihood=pf_ode (or sampler.track_logp=true for sampler=hd)"
        )
    write_per_sample_csv(out / "per_sample.csv", rows)
    buf = io.BytesIO()
    saved = {"x": merged["x"], "sample_id": merged["sample_id"]}
    if "images" in merged:
        saved["images"] = merged["images"]
    torch.save(saved, buf)
    atomic_write(out / "samples.pt", buf.getvalue())
    if "images" in merged:  # a latent model: show the decoded images, not the latents
        images = merged["images"].float() / 127.5 - 1.0
        save_figure(sample_figure(images, tuple(images.shape[1:])), out / "grid", ("png",), 120)
    else:
        save_figure(sample_figure(merged["x"], tuple(shape)), out / "grid", ("png",), 120)
    summary = summarise(rows)
    if isinstance(getattr(score, "density_of", None), str):
        summary["density_of"] = score.density_of
        summary["bpd_unit"] = "bits per latent dimension"
        if float(getattr(score, "guidance_scale", 1.0)) != 1.0:
            summary["guidance"] = (
                f"sampled with classifier-free guidance w = {score.guidance_scale:g}; every log p "
                f"is log p(z | c) of the conditional model (w = 1); the guided sampler's tracked "
                f"r is not a log-density and is not reported"
            )
    summary.update(
        n=int(merged["sample_id"].numel()),
        nfe_mean=float(merged["nfe"].double().mean()),
        wall_s_total=float(merged["wall_s"].double().sum()),
    )
    if schedule is not None:  # the model's λ range (a trained model's: the one it learned)
        summary.update(
            schedule_lambda_min=float(schedule.lambda_min),
            schedule_lambda_max=float(schedule.lambda_max),
        )
    numbers = {k: v for k, v in summary.items() if isinstance(v, (int, float))}
    for lg in build_loggers(cfg, out):
        lg.log_metrics({f"{task}/{k}": v for k, v in numbers.items()})
        if hasattr(lg, "log_table"):
            lg.log_table(key=f"{task}/per_sample", dataframe=pd.DataFrame(rows))
            lg.log_image(
                key=f"{task}/samples",
                images=[str(out / "grid.png")],
                caption=[grid_caption(rows)],
            )
        lg.finalize("success")
    summary.update(extra or {})
    return run.finish(summary, ["per_sample.csv", "samples.pt", "grid.png"])
