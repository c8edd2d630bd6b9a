"""Collect the hd_threshold sweeps (`make hd_threshold`) into outputs/figures/hd_threshold.*."""

import sys
from pathlib import Path

import pandas as pd
import torch
from omegaconf import OmegaConf

from cartoonist.figures.hd_threshold import summarise_hd_threshold
from cartoonist.pipeline import log_figure_to_wandb, write_figure_outputs
from cartoonist.plotting.figures import plot_hd_threshold


def load(root: Path):
    """Per-sample exact log p of every finished job, and a few samples per job."""
    rows, grids, shape = [], {}, None
    for exp in ("hd_threshold_baseline", "hd_threshold"):
        for job in sorted((root / "sample" / exp).glob("[0-9]*"), key=lambda p: int(p.name)):
            if not (job / "DONE").exists():
                continue
            cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
            target = cfg.sampler._target_.rsplit(".", 1)[-1]
            method = {"hd_sample": "hd", "sample_sde": "sde", "sample_ode": "pf_ode"}[target]
            stage = cfg.sampler.get("first_stage", "") if method == "hd" else ""
            thr = float(cfg.sampler.get("lambda_threshold", float("nan")))
            df = pd.read_csv(job / "per_sample.csv")
            df = df[df.estimator == "exact"].assign(
                method=method, first_stage=stage, lambda_threshold=thr
            )
            rows.append(df)
            x = torch.load(job / "samples.pt", weights_only=True)["x"]
            shape = tuple(x.shape[1:])
            if method != "hd" or stage == "ode":
                grids[f"{method} λ_thr={thr:g}" if method == "hd" else method] = x
    if not rows:
        sys.exit(
            f"error: no finished hd_threshold jobs under {root}/sample; run `make hd_threshold`"
        )
    order = sorted(
        grids, key=lambda k: (k.startswith("hd"), float(k.split("=")[-1]) if "=" in k else 0.0)
    )
    return pd.concat(rows), {k: grids[k] for k in order}, shape


def main(root: Path) -> None:
    """Summarise, plot and write outputs/figures/hd_threshold.{csv,json,png,pdf}."""
    per_sample, grids, shape = load(root)
    data = summarise_hd_threshold(per_sample)
    summary = pd.DataFrame(data.rows)
    fig = plot_hd_threshold(summary, grids, shape)
    figs = root / "figures"
    write_figure_outputs(figs, "hd_threshold", summary, data.metrics, fig)
    log_figure_to_wandb("hd_threshold", summary, data.metrics, figs / "hd_threshold.png")
    print(summary.to_string(index=False))
    print(f"wrote {figs}/hd_threshold.{{png,pdf,csv,json}}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "outputs"))
