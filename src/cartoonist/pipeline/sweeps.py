"""A sweep's jobs collected into one table: `<sweep dir>/summary.csv`, one row per finished job.

Each row holds the job's directory name and its own `summary.json`, flattened (`sampler.name`,
`sampler.lambda_threshold`, `logp_exact_mean`, ...): the settings each job recorded, never ones
read from directory names or the sweep's config. `SweepSummary` is a Hydra callback
(conf/hydra/default.yaml) that writes it when a multirun ends; `collect_sweep` is the same for
collectors and for sweeps run before it existed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from cartoonist.pipeline.files import atomic_write

__all__ = ["SweepSummary", "collect_sweep", "flatten", "job_dirs"]


def flatten(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} → {"a.b": 1} (lists stay values)."""
    out: dict = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def job_dirs(sweep: Path) -> list[Path]:
    """The finished jobs (`DONE`) of a sweep directory, sorted by name."""
    sweep = Path(sweep)
    if not sweep.is_dir():
        return []
    return sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "DONE").exists())


def collect_sweep(sweep: Path, write: bool = True) -> pd.DataFrame:
    """One row per finished job: `job` (its directory) and its summary.json, flattened.

    Writes `<sweep>/summary.csv` (atomically) when `write` and any job finished.
    """
    rows = []
    for job in job_dirs(sweep):
        path = job / "summary.json"
        summary = json.loads(path.read_text()) if path.exists() else {}
        rows.append({"job": job.name, **flatten(summary)})
    df = pd.DataFrame(rows)
    if write and rows:
        atomic_write(Path(sweep) / "summary.csv", df.to_csv(index=False))
    return df


class SweepSummary(Callback):
    """Hydra callback: at the end of a multirun, write its `summary.csv` (`collect_sweep`)."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        """Collect the finished jobs of `hydra.sweep.dir`."""
        sweep = Path(str(config.hydra.sweep.dir))
        df = collect_sweep(sweep)
        if len(df):
            print(f"[cartoonist] {len(df)} finished jobs collected in {sweep / 'summary.csv'}")
