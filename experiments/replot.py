"""Re-plot a figure from outputs/figures/<name>.csv without recomputing (`make plot-<name>`).

Usage: python experiments/replot.py NAME [FIGURES_DIR]; the plot is
`cartoonist.plotting.figures.plot_<NAME>` (for NAME = <figure>__<model>, `plot_<figure>`).
"""

import sys
from pathlib import Path

import pandas as pd

from cartoonist.pipeline import save_figure
from cartoonist.plotting import figures


def replot(name: str, figures_dir: str | Path = "outputs/figures") -> None:
    """Read <figures_dir>/<name>.csv, plot it, write <name>.png and .pdf."""
    # A figure of a learned model is named <figure>__<model> (`${model_tag:}`): same plot.
    plot_fn = getattr(figures, f"plot_{name.split('__')[0]}", None)
    if plot_fn is None:
        sys.exit(f"error: no plot function plot_{name} in cartoonist.plotting.figures")
    figs = Path(figures_dir)
    src = figs / f"{name}.csv"
    if not src.exists():
        sys.exit(f"error: {src} does not exist; run `make {name}` first")
    save_figure(plot_fn(pd.read_csv(src)), figs / name)
    print(f"wrote {figs / name}.png and .pdf")


if __name__ == "__main__":
    replot(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "outputs/figures")
