"""Collect the fig4 evaluations (`make fig4_r0_ode_elbo`) into outputs/figures/."""

import sys
from pathlib import Path

import pandas as pd

from cartoonist.figures.fig4_r0_ode_elbo import summarise_fig4
from cartoonist.pipeline import log_figure_to_wandb, write_figure_outputs
from cartoonist.plotting.figures import plot_fig4_r0_ode_elbo


def main(root: Path) -> None:
    """Merge outputs/evaluate/fig4_<model>__<likelihood>/per_sample.csv, summarise and plot."""
    frames = []
    for run in sorted((root / "evaluate").glob("fig4_*__*")):
        if not (run / "DONE").exists():
            continue
        model = run.name[len("fig4_") :].split("__")[0]
        frames.append(pd.read_csv(run / "per_sample.csv").assign(model=model))
    if not frames:
        sys.exit(f"error: no finished fig4 evaluations under {root}/evaluate")
    df = pd.concat(frames).drop_duplicates(["model", "sample_id", "estimator"])
    data = summarise_fig4(df)
    wide = pd.DataFrame(data.rows)
    fig = plot_fig4_r0_ode_elbo(wide)
    figs = root / "figures"
    write_figure_outputs(figs, "fig4_r0_ode_elbo", wide, data.metrics, fig)
    log_figure_to_wandb("fig4_r0_ode_elbo", wide, data.metrics, figs / "fig4_r0_ode_elbo.png")
    for k, v in data.metrics.items():
        print(f"  {k:48s} {v: .4f}")
    print(f"wrote {figs}/fig4_r0_ode_elbo.{{png,pdf,csv,json}}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "outputs"))
