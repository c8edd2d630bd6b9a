"""The `figure` task: compute, plot, write `outputs/figures/<name>.{csv,json,png,pdf}`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from cartoonist.pipeline.figure_inputs import apply_smoke, compute_kwargs
from cartoonist.pipeline.files import write_figure_outputs
from cartoonist.pipeline.loggers import build_loggers
from cartoonist.tasks.lifecycle import task_run

__all__ = ["run"]


def run(cfg: DictConfig) -> dict:
    """Compute a figure, plot it, write outputs/figures/<name>.{csv,json,png,pdf}.

    Under debug=smoke the experiment's `compute_smoke` sizes replace those of `compute`; a figure
    that takes a learned model gets the one the config names (`ckpt_path=` or `model=`).
    """
    with task_run(cfg, "figure") as r:
        if r.done:
            return r.summary
        apply_smoke(cfg)
        out = r.start()
        compute = instantiate(cfg.compute)
        data = compute(seed=cfg.seed, **compute_kwargs(cfg, compute))
        df = pd.DataFrame(data.rows)
        fig = instantiate(cfg.plot)(df)
        figs = Path(cfg.paths.figures_dir)
        name = cfg.figure_name
        files = [str(p) for p in write_figure_outputs(figs, name, df, data.metrics, fig)]
        # Metrics are numbers, except labels such as `logp_estimator` (JSON and console only).
        numbers = {k: v for k, v in data.metrics.items() if isinstance(v, (int, float))}
        for lg in build_loggers(cfg, out):
            lg.log_metrics({f"figure/{k}": v for k, v in numbers.items()})
            if hasattr(lg, "log_table"):
                lg.log_table(key=f"figure/{name}", dataframe=df)
                lg.log_image(key=f"figure/{name}_plot", images=[str(figs / f"{name}.png")])
            lg.finalize("success")
        for k, v in data.metrics.items():
            print(f"  {k:34s} {v: .6g}" if k in numbers else f"  {k:34s} {v}")
        return r.finish(data.metrics, files)
