"""The `sample` task: draw `n_samples` with the sampler group, each with its log p."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig

from cartoonist.lit import SampleJob
from cartoonist.pipeline.build import build_score, event_shape_of
from cartoonist.tasks.lifecycle import task_run
from cartoonist.tasks.per_sample import gather, predictor, settings_of, write_results

__all__ = ["run"]


def run(cfg: DictConfig) -> dict:
    """Samples, per-sample log p and a grid in the run directory.

    Per sample: the sampler's own log p ("tracked", reverse SDE), the exact log p when the model
    is an oracle ("exact"), and, when the `likelihood` group is set (e.g. likelihood=pf_ode), that
    estimator's log p of the sample under its name (the log p of a learned model's samples).
    `summary.json` records the sampler's and the estimator's names and settings.
    """
    with task_run(cfg, "sample") as r:
        if r.done:
            return r.summary
        r.start()
        dm = instantiate(cfg.dataset)
        dm.setup()
        score, schedule, oracle, logjac = build_score(cfg, dm)
        shape = event_shape_of(score, dm)
        likelihood = None
        if cfg.get("likelihood") is not None:
            likelihood = (settings_of(cfg, "likelihood")["name"], instantiate(cfg.likelihood))
        job = SampleJob(
            score, schedule, instantiate(cfg.sampler), shape, cfg.seed, oracle, likelihood
        )
        trainer, ids = predictor(cfg, r.out)
        trainer.predict(job, dataloaders=ids, return_predictions=False)
        merged = gather(trainer, r.out)
        if merged is None:
            return {}
        extra = {
            "sampler": settings_of(cfg, "sampler"),
            "likelihood": settings_of(cfg, "likelihood"),
        }
        return write_results(r, merged, shape, logjac, extra, schedule, score=score)
