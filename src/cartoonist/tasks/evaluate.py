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
from cartoonist.tasks.per_sample import gather, predictor, settings_of, write_results

__all__ = ["run"]


def _truth(dm, schedule, shape):
    """The data set's exact mixture, when it has one of the model's shape (synthetic data)."""
    if tuple(dm.event_shape or ()) != tuple(shape):
        return None
    return dm.oracle(schedule)


def run(cfg: DictConfig) -> dict:
    """Log p of the validation data (`source=dataset`) or of SDE samples (`source=samples`).

    With source=samples every sample also carries Theorem 1's r_0 ("sde_tracking"), and with a
    learned model on synthetic data the data set's exact log p ("data_exact").
    """
    with task_run(cfg, "evaluate") as r:
        if r.done:
            return r.summary
        r.start()
        lik = settings_of(cfg, "likelihood")
        dm = instantiate(cfg.dataset)
        dm.setup()
        score, schedule, oracle, logjac = build_score(cfg, dm)
        shape = event_shape_of(score, dm)
        data = dm.val_data if cfg.source == "dataset" else None
        if data is not None and cfg.n_samples > data.shape[0]:
            raise ConfigError(
                f"n_samples={cfg.n_samples} exceeds the {data.shape[0]} validation "
                f"examples of the dataset"
            )
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
        trainer, ids = predictor(cfg, r.out)
        trainer.predict(job, dataloaders=ids, return_predictions=False)
        merged = gather(trainer, r.out)
        if merged is None:
            return {}
        extra = {"likelihood": lik, "source": cfg.source}
        if cfg.source == "dataset" and getattr(score, "space", "pixel") == "latent":
            extra["scored_as"] = "images encoded to z = scaling_factor · posterior mean of the VAE"
        res = write_results(r, merged, shape, logjac, extra, schedule, score=score)
        print(f"[cartoonist] evaluate took {time.perf_counter() - t:.1f} s")
        return res
