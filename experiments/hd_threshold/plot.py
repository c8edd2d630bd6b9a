"""Collect the hd_threshold sweeps (`make hd_threshold`) into outputs/figures/hd_threshold*.

Usage: python experiments/hd_threshold/plot.py [OVERRIDES...]  (or a single output root)

OVERRIDES are those given to the two sample sweeps (e.g. `model=diffusers model.path=...` or
`paths.output_root=...`; sweep values such as `a,b` are ignored): composing the experiments with
them gives the sweep directories (`<output_root>/sample/hd_threshold[_baseline]<model tag>`) and
the figure's name, exactly as the runs had them; each job's sampler and its settings are read from
the job's own summary.json. Each sample's log p is the exact one when every
job has it (oracle), else the PF-ODE estimate (learned model); the figure and JSON say which.
"""

import json
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

from cartoonist.figures.hd_threshold import choose_estimator, summarise_hd_threshold
from cartoonist.pipeline import CONF_DIR, log_figure_to_wandb, write_figure_outputs
from cartoonist.pipeline.sweeps import collect_sweep, job_dirs
from cartoonist.plotting.figures import plot_hd_threshold

EXPERIMENTS = ("hd_threshold_baseline", "hd_threshold")


def sweep_dirs(overrides: list[str]) -> tuple[list[Path], Path, str]:
    """(sweep directories, figures directory, figure name) of the runs these overrides made."""
    if len(overrides) == 1 and "=" not in overrides[0]:  # an output root, as before
        overrides = [f"paths.output_root={overrides[0]}"]
    parsed = OverridesParser.create().parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    dirs = []
    for exp in EXPERIMENTS:
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("sample", [f"experiment={exp}"] + fixed, return_hydra_config=True)
        dirs.append(Path(cfg.hydra.sweep.dir))
    return dirs, Path(cfg.paths.figures_dir), str(cfg.experiment_name)


def load(dirs: list[Path]):
    """Per-sample log p of every finished job (one estimator for all), and samples per job."""
    tables, grids, shape = {}, {}, None
    for sweep in dirs:
        collect_sweep(sweep)  # <sweep>/summary.csv: one row per job, its own recorded settings
        for job in job_dirs(sweep):  # directories named by overrides (or numbers, older sweeps)
            sampler = json.loads((job / "summary.json").read_text()).get("sampler")
            if not sampler:
                sys.exit(f"error: {job}/summary.json names no sampler: rerun `make hd_threshold`")
            method = sampler["name"]  # the sampler= option the job ran: hd, sde or pf_ode
            stage = sampler.get("first_stage", "") if method == "hd" else ""
            thr = float(sampler.get("lambda_threshold", float("nan")))
            df = pd.read_csv(job / "per_sample.csv")
            tables[str(job)] = df.assign(method=method, first_stage=stage, lambda_threshold=thr)
            x = torch.load(job / "samples.pt", weights_only=True)["x"]
            shape = tuple(x.shape[1:])
            if method != "hd" or stage == "ode":
                grids[f"{method} λ_thr={thr:g}" if method == "hd" else method] = x
    if not tables:
        where = " and ".join(str(d) for d in dirs)
        sys.exit(f"error: no finished hd_threshold jobs in {where}; run `make hd_threshold`")
    try:
        est = choose_estimator({job: set(df.estimator) for job, df in tables.items()})
    except ValueError as e:
        sys.exit(f"error: {e}")
    per_sample = pd.concat([df[df.estimator == est] for df in tables.values()])
    order = sorted(
        grids, key=lambda k: (k.startswith("hd"), float(k.split("=")[-1]) if "=" in k else 0.0)
    )
    return per_sample, est, {k: grids[k] for k in order}, shape


def main(overrides: list[str]) -> None:
    """Summarise, plot and write <figures>/<name>.{csv,json,png,pdf}."""
    dirs, figs, name = sweep_dirs(overrides)
    per_sample, est, grids, shape = load(dirs)
    data = summarise_hd_threshold(per_sample, est)
    summary = pd.DataFrame(data.rows)
    fig = plot_hd_threshold(summary, grids, shape)
    write_figure_outputs(figs, name, summary, data.metrics, fig)
    plt.close(fig)
    log_figure_to_wandb(name, summary, data.metrics, figs / f"{name}.png")
    print(f"log p estimator: {est}")
    print(summary.to_string(index=False))
    print(f"wrote {figs}/{name}.{{png,pdf,csv,json}}")


if __name__ == "__main__":
    main(sys.argv[1:])
