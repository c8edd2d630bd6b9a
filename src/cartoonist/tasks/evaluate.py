"""The `evaluate` task: log-likelihood of data or of the model's own samples (likelihood group)."""

from __future__ import annotations

import time

from hydra.utils import instantiate
from omegaconf import DictConfig

from cartoonist.errors import ConfigError
from cartoonist.lit import EvaluateJob
from cartoonist.pipeline.build import build_score, event_shape_of
from cartoonist.pipeline.targets import likelihood_kind
from cartoonist.tasks.lifecycle import task_run
from cartoonist.tasks.per_sample import (
    datamodule_of,
    gather,
    predictor,
    settings_of,
    write_results,
)

__all__ = ["run"]


def _truth(dm, schedule, shape):
    """The data set's exact mixture, when it has one of the model's shape (synthetic data)."""
    if tuple(dm.event_shape or ()) != tuple(shape):
        return None
    return dm.oracle(schedule)


# source=samples with n_samples=null: this many SDE samples.
DEFAULT_N_SAMPLES = 256


def _points(cfg: DictConfig, dm):
    """(data or None, names or None, n): what source=dataset scores (`dataset.split`), checked.

    n_samples=null scores every example of the split (source=dataset) or `DEFAULT_N_SAMPLES`
    SDE samples (source=samples); an n_samples above the split's size is refused.
    """
    if cfg.source != "dataset":
        return None, None, cfg.n_samples or DEFAULT_N_SAMPLES
    data = dm.eval_data
    split = getattr(dm, "split", "val")
    if cfg.n_samples is not None and cfg.n_samples > data.shape[0]:
        raise ConfigError(
            f"n_samples={cfg.n_samples} exceeds the {data.shape[0]} examples of "
            f"dataset.split={split} (n_samples=null scores them all)"
        )
    n = data.shape[0] if cfg.n_samples is None else cfg.n_samples
    return data, getattr(dm, "eval_names", None), n


def run(cfg: DictConfig) -> dict:
    """Log p of data (`source=dataset`: the `dataset.split` examples) or of SDE samples.

    With source=dataset, sample id i is example i of the split (a folder: sorted paths, `file`
    column of per_sample.csv).

    With source=samples every sample also carries Theorem 1's r_0 ("sde_tracking"), and with a
    learned model on synthetic data the data set's exact log p ("data_exact").
    """
    with task_run(cfg, "evaluate") as r:
        if r.done:
            return r.summary
        r.start()
        lik = settings_of(cfg, "likelihood")
        dm = datamodule_of(cfg)
        data, names, n = _points(cfg, dm)  # before the model loads
        score, schedule, oracle, logjac = build_score(cfg, dm)
        shape = event_shape_of(score, dm)
        estimator = None if likelihood_kind(cfg) == "sde_tracking" else instantiate(cfg.likelihood)
        job = EvaluateJob(
            score,
            schedule,
            estimator,
            lik["name"],
            data,
            shape,
            cfg.sde_steps,
            cfg.seed,
            oracle,
            truth=_truth(dm, schedule, shape) if oracle is None else None,
            sde_logp_scheme=cfg.get("sde_logp_scheme", "corrected"),
        )
        t = time.perf_counter()
        trainer, ids = predictor(cfg, r.out, n)
        trainer.predict(job, dataloaders=ids, return_predictions=False)
        merged = gather(trainer, r.out)
        if merged is None:
            return {}
        extra = {"likelihood": lik, "source": cfg.source}
        if cfg.source == "dataset" and getattr(score, "space", "pixel") == "latent":
            extra["scored_as"] = "images encoded to z = scaling_factor · posterior mean of the VAE"
        if data is not None:
            extra["split"] = getattr(dm, "split", "val")
        columns = {"file": names} if names is not None else None
        res = write_results(
            r, merged, shape, logjac, extra, schedule, score=score, columns=columns
        )
        print(f"[cartoonist] evaluate took {time.perf_counter() - t:.1f} s")
        return res
