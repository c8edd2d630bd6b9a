"""What `sample` and `evaluate` share: the predict run over sample ids and the per-sample files."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cartoonist.diffusion import bits_per_dim
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
    merged: dict, seed: int, dim: int, log_jacobian: float, columns: dict | None = None
) -> list[dict]:
    """One row per (estimator, sample); an estimator's own `nfe_<name>`/`wall_s_<name>` if any.

    `columns` {name: list indexed by sample id} adds per-sample columns (e.g. `file`).
    """
    rows = []
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
    return rows


def summarise(rows: list[dict]) -> dict:
    """Mean log p (nats) and bits/dim of each estimator."""
    summary: dict = {}
    for est in sorted({r["estimator"] for r in rows}):
        v = torch.tensor([r["logp_nats"] for r in rows if r["estimator"] == est])
        b = torch.tensor([r["bpd"] for r in rows if r["estimator"] == est])
        summary[f"logp_{est}_mean"] = float(v.mean())
        summary[f"bpd_{est}_mean"] = float(b.mean())
    return summary


def write_results(
    run,
    merged: dict,
    shape,
    log_jacobian: float,
    extra: dict | None = None,
    columns: dict | None = None,
) -> dict:
    """per_sample.csv, samples.pt, grid.png and summary.json (with `extra`), then DONE.

    `columns` as `rows_of` (extra per-sample columns of per_sample.csv). A run whose samples
    have no log p at all says so in one line (and its per_sample.csv has no rows).
    """
    cfg, out, task = run.cfg, run.out, run.task
    dim = int(merged["x"][0].numel())
    rows = rows_of(merged, cfg.seed, dim, log_jacobian, columns)
    if not rows:
        print(
            f"[cartoonist] {task}: no log p was computed for these samples (the sampler tracks "
            f"none and no likelihood group is set): per_sample.csv has no rows; add e.g. "
            f"likelihood=pf_ode (or sampler.track_logp=true for sampler=hd)"
        )
    write_per_sample_csv(out / "per_sample.csv", rows)
    buf = io.BytesIO()
    torch.save({"x": merged["x"], "sample_id": merged["sample_id"]}, buf)
    atomic_write(out / "samples.pt", buf.getvalue())
    save_figure(sample_figure(merged["x"], tuple(shape)), out / "grid", ("png",), 120)
    summary = summarise(rows)
    summary.update(
        n=int(merged["sample_id"].numel()), nfe_mean=float(merged["nfe"].double().mean())
    )
    for lg in build_loggers(cfg, out):
        lg.log_metrics({f"{task}/{k}": v for k, v in summary.items()})
        if hasattr(lg, "log_table"):
            lg.log_table(key=f"{task}/per_sample", dataframe=pd.DataFrame(rows))
            lg.log_image(key=f"{task}/samples", images=[str(out / "grid.png")])
        lg.finalize("success")
    summary.update(extra or {})
    return run.finish(summary, ["per_sample.csv", "samples.pt", "grid.png"])
