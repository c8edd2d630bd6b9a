"""Loggers of a run (CSV, wandb) from the `logger` group; a resumed run continues its wandb run."""

from __future__ import annotations

import csv
import io
import logging
import os
import sys
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cartoonist.pipeline.files import atomic_write

__all__ = [
    "build_loggers",
    "finish_wandb",
    "quiet_duplicate_logs",
    "log_figure_to_wandb",
    "csv_metrics_path",
    "keep_metrics_history",
    "merge_metrics_history",
]

HISTORY = "metrics.before_resume.csv"


def quiet_duplicate_logs() -> None:
    """Keep one copy of Lightning's log lines: Hydra's root handler (console and <run>/<task>.log).

    Lightning adds a console handler of its own below Hydra's, which prints every line twice.
    """
    if not logging.getLogger().handlers:
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        lg = logging.getLogger(name)
        lg.handlers = [h for h in lg.handlers if type(h) is not logging.StreamHandler]


def build_loggers(cfg: DictConfig, out: Path) -> list:
    """The `logger` group's loggers; a resumed run continues its wandb run (`wandb_id.txt`)."""
    loggers = []
    for name, lc in (cfg.get("logger") or {}).items():
        if name == "wandb":
            id_file = out / "wandb_id.txt"
            if id_file.exists():  # a resumed run continues its wandb run
                lc = OmegaConf.merge(lc, {"id": id_file.read_text().strip(), "resume": "allow"})
            logger = instantiate(lc)
            if L.fabric.utilities.rank_zero.rank_zero_only.rank == 0:
                atomic_write(id_file, str(logger.experiment.id))
            loggers.append(logger)
        else:
            loggers.append(instantiate(lc))
    shown = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(shown, resolve=True))
    return loggers


def finish_wandb() -> None:
    """Finish the wandb run if one is open (also after an error).

    A run can be open only once wandb is imported (by a wandb logger or `log_figure_to_wandb`):
    a run without one does not import it (~3.7 s of CPU at the end of every CSV-only run).
    """
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def log_figure_to_wandb(name: str, table, metrics: dict, image: Path) -> None:
    """Log a collected figure (table, metrics, PNG) as its own wandb run (group = figure name).

    Used by the collector scripts of sweep figures; WANDB_MODE decides (offline by default).
    """
    os.environ.setdefault("WANDB_MODE", "offline")
    import wandb

    run = wandb.init(
        project="cartoonist",
        group=name,
        job_type="figure",
        name=name,
        dir=str(image.parent),
        reinit=True,
    )
    try:
        finite = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        run.log({f"figure/{k}": v for k, v in finite.items()})
        run.log(
            {
                f"figure/{name}": wandb.Table(dataframe=table),
                f"figure/{name}_plot": wandb.Image(str(image)),
            }
        )
    finally:
        run.finish()


def csv_metrics_path(cfg: DictConfig) -> Path | None:
    """<save_dir>/<name>/<version>/metrics.csv of the `logger.csv` logger (None without one)."""
    lc = OmegaConf.select(cfg, "logger.csv", default=None)
    if lc is None:
        return None
    version = lc.get("version")
    folder = Path(str(lc.save_dir)) / str(lc.get("name") or "")
    if version not in (None, ""):
        version = f"version_{version}" if isinstance(version, int) else str(version)
        folder = folder / version
    return folder / "metrics.csv"


def _read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write_rows(path: Path, rows: list[dict]) -> None:
    cols = sorted({k for r in rows for k in r})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, restval="")
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, buf.getvalue())


def _step(row: dict) -> float:
    try:
        return float(row.get("step") or "nan")
    except ValueError:
        return float("nan")


def keep_metrics_history(metrics: Path | None, resume_step: int) -> int:
    """Before a resumed run's CSVLogger starts (it deletes metrics.csv): keep its rows.

    The rows of steps before `resume_step` (those after it are recomputed by the resumed run),
    from metrics.csv and from an earlier resume's history, go to `metrics.before_resume.csv`;
    `merge_metrics_history` puts them back in front of the new rows. Returns the rows kept.
    """
    if metrics is None:
        return 0
    hist = metrics.with_name(HISTORY)
    rows = [r for r in _read_rows(hist) + _read_rows(metrics) if _step(r) < resume_step]
    if rows:
        _write_rows(hist, rows)
    metrics.unlink(missing_ok=True)
    return len(rows)


def merge_metrics_history(metrics: Path | None) -> None:
    """metrics.csv = the kept history + this run's rows (columns united); the history goes."""
    if metrics is None:
        return
    hist = metrics.with_name(HISTORY)
    if not hist.exists():
        return
    _write_rows(metrics, _read_rows(hist) + _read_rows(metrics))
    hist.unlink()
