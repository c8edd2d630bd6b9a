"""Re-plot a figure from its saved CSV (the exact plotted numbers) without recomputing."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pandas as pd


def replot(name: str, plot_fn, figures_dir: str | Path = "outputs/figures") -> None:
    """Read <figures_dir>/<name>.csv, plot it with `plot_fn`, write <name>.png and .pdf."""
    from cartoonist.pipeline import atomic_write

    figs = Path(figures_dir)
    src = figs / f"{name}.csv"
    if not src.exists():
        sys.exit(f"error: {src} does not exist; run `make {name}` first")
    fig = plot_fn(pd.read_csv(src))
    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=150)
        atomic_write(figs / f"{name}.{ext}", buf.getvalue())
    print(f"wrote {figs / name}.png and .pdf")
