"""Files of a run directory, written atomically (readers never see a partial file); `DONE` last."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write",
    "write_per_sample_csv",
    "write_json",
    "save_figure",
    "write_figure_outputs",
    "mark_done",
    "remove_stale_temporaries",
]


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write a file via a temporary sibling and rename, so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    finally:  # a failed write (full disk, an error) leaves no temporary file behind
        tmp.unlink(missing_ok=True)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files of `atomic_write` that a killed run left in `folder`."""
    stale = [p for p in Path(folder).glob(".*.tmp[0-9]*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_per_sample_csv(path: Path, rows: list[dict]) -> None:
    """The per-sample table: sample_id, seed, estimator, logp_nats, bpd, nfe, wall_s, extras.

    Extras: any further per-sample columns of the rows (e.g. `file`), in first-seen order.
    """
    cols = ["sample_id", "seed", "estimator", "logp_nats", "bpd", "nfe", "wall_s"]
    cols += list(dict.fromkeys(k for r in rows for k in r if k not in cols))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for r in sorted(rows, key=lambda r: (r["estimator"], r["sample_id"])):
        w.writerow({k: r[k] for k in cols})
    atomic_write(path, buf.getvalue())


def write_json(path: Path, obj: Any) -> None:
    """Atomic pretty JSON."""
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n")


def save_figure(fig, stem: Path, exts=("png", "pdf"), dpi: int = 150) -> list[Path]:
    """Write a matplotlib figure atomically as <stem>.<ext> for each extension."""
    paths = []
    for ext in exts:
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=dpi)
        atomic_write(stem.with_name(f"{stem.name}.{ext}"), buf.getvalue())
        paths.append(stem.with_name(f"{stem.name}.{ext}"))
    return paths


def write_figure_outputs(figs_dir: Path, name: str, table, metrics: dict, fig) -> list[Path]:
    """A figure's outputs: <name>.csv (the plotted numbers), .json (metrics), .png and .pdf."""
    figs_dir = Path(figs_dir)
    atomic_write(figs_dir / f"{name}.csv", table.to_csv(index=False))
    write_json(figs_dir / f"{name}.json", metrics)
    return [figs_dir / f"{name}.csv", figs_dir / f"{name}.json"] + save_figure(
        fig, figs_dir / name
    )


def mark_done(out: Path) -> None:
    """Write the DONE marker last."""
    atomic_write(out / "DONE", time.strftime("%Y-%m-%dT%H:%M:%S\n"))
