"""The three tasks behind the entry points: train, sample, evaluate (cfg → files in the run dir).

Each task: skips a run directory that holds `DONE`; validates before computing; writes its
per-sample table / checkpoints / summary atomically and `DONE` last; logs to CSV and wandb (whose
mode `WANDB_MODE` decides) and always finishes the wandb run.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import time
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cartoonist.diffusion import bits_per_dim
from cartoonist.lit import DiffusionModule, PartWriter, PredictJob, id_loader, merge_parts
from cartoonist.pipeline import (
    ConfigError,
    atomic_write,
    build_score,
    event_shape_of,
    mark_done,
    save_figure,
    validate,
    write_figure_outputs,
    write_json,
    write_per_sample_csv,
)
from cartoonist.pipeline_jobs import evaluate_job, sample_job

__all__ = ["train", "sample", "evaluate"]


def _out(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir)


def _already_done(out: Path) -> dict | None:
    if (out / "DONE").exists():
        print(f"[cartoonist] {out} is DONE: skipping (delete DONE to recompute)")
        summary = out / "summary.json"
        return json.loads(summary.read_text()) if summary.exists() else {}
    return None


def _quiet_duplicate_logs() -> None:
    """Keep one copy of Lightning's log lines: Hydra's root handler (console and <run>/<task>.log).

    Lightning adds a console handler of its own below Hydra's, which prints every line twice.
    """
    if not logging.getLogger().handlers:
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        lg = logging.getLogger(name)
        lg.handlers = [h for h in lg.handlers if type(h) is not logging.StreamHandler]


def _start(cfg: DictConfig, task: str) -> Path:
    # wandb never prompts or needs an account unless asked: WANDB_MODE=online opts in.
    os.environ.setdefault("WANDB_MODE", "offline")
    validate(cfg, task)
    _quiet_duplicate_logs()
    out = _out(cfg)
    out.mkdir(parents=True, exist_ok=True)
    shown = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    print(OmegaConf.to_yaml(shown, resolve=True))
    print(f"[cartoonist] {task} → {out}")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    return out


def _loggers(cfg: DictConfig, out: Path) -> list:
    loggers = []
    for name, lc in (cfg.get("logger") or {}).items():
        if name == "wandb":
            id_file = out / "wandb_id.txt"
            if id_file.exists():  # a resumed run continues its wandb run
                lc = OmegaConf.merge(lc, {"id": id_file.read_text().strip(), "resume": "allow"})
            logger = instantiate(lc)
            if L.fabric.utilities.rank_zero.rank_zero_only.rank == 0:
                atomic_write(id_file, str(logger.experiment.id))
            loggers.append(logger)
        else:
            loggers.append(instantiate(lc))
    shown = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(shown, resolve=True))
    return loggers


def _finish_wandb() -> None:
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except ImportError:  # pragma: no cover
        pass


def _done(out: Path, summary: dict, files: list[str]) -> dict:
    write_json(out / "summary.json", summary)
    mark_done(out)
    print(f"[cartoonist] wrote {', '.join(files + ['summary.json', 'DONE'])} in {out}")
    return summary


# -- train --------------------------------------------------------------------------------------
def train(cfg: DictConfig) -> dict:
    """Train the denoiser; resume from checkpoints/last.ckpt when it exists."""
    out = _out(cfg)
    if (done := _already_done(out)) is not None:
        return done
    out = _start(cfg, "train")
    if str(cfg.model.get("_target_", "")).endswith("OracleModel"):
        raise ConfigError("model=oracle is exact and has nothing to train: use model=mlp or unet")
    try:
        dm = instantiate(cfg.dataset)
        dm.setup()
        net = instantiate(cfg.model)(event_shape=dm.event_shape)
        noise = instantiate(cfg.noise)
        spec = {
            "net": OmegaConf.to_container(cfg.model, resolve=True),
            "noise": OmegaConf.to_container(cfg.noise, resolve=True),
            "event_shape": list(dm.event_shape),
            "log_jacobian": float(dm.log_jacobian),
        }
        module = DiffusionModule(net, noise, log_jacobian=dm.log_jacobian, spec=spec, **cfg.optim)
        callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
        trainer = instantiate(
            cfg.trainer, logger=_loggers(cfg, out), callbacks=callbacks, default_root_dir=str(out)
        )
        last = out / "checkpoints" / "last.ckpt"
        resume = str(last) if last.exists() else None
        if resume:
            print(f"[cartoonist] resuming from {last}")
        trainer.fit(module, datamodule=dm, ckpt_path=resume, weights_only=True)
        if trainer.global_rank != 0:
            return {}
        summary = {k: float(v) for k, v in trainer.callback_metrics.items()}
        summary.update(global_step=int(trainer.global_step), resumed=bool(resume))
        return _done(out, summary, ["checkpoints/last.ckpt"])
    finally:
        _finish_wandb()


# -- sample / evaluate --------------------------------------------------------------------------
def _predict(cfg: DictConfig, job, out: Path, score=None) -> dict | None:
    """Run `job` over sample ids through Trainer.predict; rank 0 gets the merged result.

    A network-backed `score` (an nn.Module) is handed to the LightningModule, so the trainer moves
    it to its device (trainer=gpu) and the job runs there.
    """
    parts = out / ".parts"
    shutil.rmtree(parts, ignore_errors=True)
    trainer = instantiate(
        cfg.trainer, logger=False, callbacks=[PartWriter(parts)], default_root_dir=str(out)
    )
    net = score if isinstance(score, torch.nn.Module) else None
    trainer.predict(
        PredictJob(job, net),
        dataloaders=id_loader(cfg.n_samples, cfg.batch_size),
        return_predictions=False,
    )
    trainer.strategy.barrier()
    if trainer.global_rank != 0:
        return None
    merged = merge_parts(parts)
    shutil.rmtree(parts, ignore_errors=True)
    return merged


def _rows(merged: dict, seed: int, dim: int, log_jacobian: float) -> list[dict]:
    """One row per (estimator, sample); an estimator's own `nfe_<name>`/`wall_s_<name>` if any."""
    rows = []
    for key, val in merged.items():
        if not key.startswith("logp_"):
            continue
        est = key[5:]
        bpd = bits_per_dim(val, dim, log_jacobian)
        nfe = merged.get(f"nfe_{est}", merged["nfe"])
        wall = merged.get(f"wall_s_{est}", merged["wall_s"])
        for i, sid in enumerate(merged["sample_id"].tolist()):
            rows.append(
                dict(
                    sample_id=sid,
                    seed=seed,
                    estimator=est,
                    logp_nats=float(val[i]),
                    bpd=float(bpd[i]),
                    nfe=int(nfe[i]),
                    wall_s=float(wall[i]),
                )
            )
    return rows


def _summarise(rows: list[dict]) -> dict:
    summary: dict = {}
    for est in sorted({r["estimator"] for r in rows}):
        v = torch.tensor([r["logp_nats"] for r in rows if r["estimator"] == est])
        b = torch.tensor([r["bpd"] for r in rows if r["estimator"] == est])
        summary[f"logp_{est}_mean"] = float(v.mean())
        summary[f"bpd_{est}_mean"] = float(b.mean())
    return summary


def _write_results(cfg, out: Path, merged: dict, shape, log_jacobian: float, task: str) -> dict:
    from cartoonist.plotting import sample_figure

    dim = int(merged["x"][0].numel())
    rows = _rows(merged, cfg.seed, dim, log_jacobian)
    write_per_sample_csv(out / "per_sample.csv", rows)
    buf = io.BytesIO()
    torch.save({"x": merged["x"], "sample_id": merged["sample_id"]}, buf)
    atomic_write(out / "samples.pt", buf.getvalue())
    save_figure(sample_figure(merged["x"], tuple(shape)), out / "grid", ("png",), 120)
    summary = _summarise(rows)
    summary.update(
        n=int(merged["sample_id"].numel()), nfe_mean=float(merged["nfe"].double().mean())
    )
    for lg in _loggers(cfg, out):
        lg.log_metrics({f"{task}/{k}": v for k, v in summary.items()})
        if hasattr(lg, "log_table"):
            import pandas as pd

            lg.log_table(key=f"{task}/per_sample", dataframe=pd.DataFrame(rows))
            lg.log_image(key=f"{task}/samples", images=[str(out / "grid.png")])
        lg.finalize("success")
    return _done(out, summary, ["per_sample.csv", "samples.pt", "grid.png"])


def sample(cfg: DictConfig) -> dict:
    """Draw `n_samples` with the sampler group; write samples, per-sample log p and a grid.

    Per sample: the sampler's own log p ("tracked", reverse SDE), the exact log p when the model
    is an oracle ("exact"), and, when the `likelihood` group is set (e.g. likelihood=pf_ode), that
    estimator's log p of the sample under its name (the log p of a learned model's samples).
    """
    out = _out(cfg)
    if (done := _already_done(out)) is not None:
        return done
    out = _start(cfg, "sample")
    try:
        dm = instantiate(cfg.dataset)
        dm.setup()
        score, schedule, oracle, logjac = build_score(cfg, dm)
        shape = event_shape_of(score, dm)
        likelihood = None
        if cfg.get("likelihood") is not None:
            name = HydraConfig.get().runtime.choices.get("likelihood") or "likelihood"
            likelihood = (name, instantiate(cfg.likelihood))
        sampler = instantiate(cfg.sampler)
        job = sample_job(score, schedule, sampler, shape, cfg.seed, oracle, likelihood)
        merged = _predict(cfg, job, out, score)
        return {} if merged is None else _write_results(cfg, out, merged, shape, logjac, "sample")
    finally:
        _finish_wandb()


def _truth(dm, schedule, shape):
    """The data set's exact mixture, when it has one of the model's shape (synthetic data)."""
    if tuple(dm.event_shape or ()) != tuple(shape):
        return None
    return dm.oracle(schedule)


def evaluate(cfg: DictConfig) -> dict:
    """Log-likelihood of the validation data or the model's SDE samples (the likelihood group)."""
    out = _out(cfg)
    if (done := _already_done(out)) is not None:
        return done
    out = _start(cfg, "evaluate")
    name = HydraConfig.get().runtime.choices.get("likelihood", "estimator")
    if cfg.source not in ("samples", "dataset"):
        raise ConfigError(f"source must be 'samples' or 'dataset', got {cfg.source!r}")
    if name == "sde_tracking" and cfg.source != "samples":
        raise ConfigError("likelihood=sde_tracking needs source=samples (r_0 of SDE samples)")
    try:
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
        job = evaluate_job(
            score,
            schedule,
            instantiate(cfg.likelihood),
            name,
            cfg.source,
            data,
            shape,
            cfg.sde_steps,
            cfg.seed,
            oracle,
            truth=_truth(dm, schedule, shape) if oracle is None else None,
            sde_logp_scheme=cfg.get("sde_logp_scheme", "corrected"),
        )
        t = time.perf_counter()
        merged = _predict(cfg, job, out, score)
        if merged is None:
            return {}
        res = _write_results(cfg, out, merged, shape, logjac, "evaluate")
        print(f"[cartoonist] evaluate took {time.perf_counter() - t:.1f} s")
        return res
    finally:
        _finish_wandb()


# -- figure -------------------------------------------------------------------------------------
def figure(cfg: DictConfig) -> dict:
    """Compute a figure, plot it, write outputs/figures/<name>.{csv,json,png,pdf}.

    Under debug=smoke the experiment's `compute_smoke` sizes replace those of `compute`; a figure
    that takes a learned model gets the one the config names (`ckpt_path=` or `model=`).
    """
    import pandas as pd

    from cartoonist.figures.inputs import apply_smoke, compute_kwargs

    out = _out(cfg)
    if (done := _already_done(out)) is not None:
        return done
    apply_smoke(cfg)
    out = _start(cfg, "figure")
    try:
        compute = instantiate(cfg.compute)
        data = compute(seed=cfg.seed, **compute_kwargs(cfg, compute))
        df = pd.DataFrame(data.rows)
        fig = instantiate(cfg.plot)(df)
        figs = Path(cfg.paths.figures_dir)
        name = cfg.figure_name
        files = [str(p) for p in write_figure_outputs(figs, name, df, data.metrics, fig)]
        # Metrics are numbers, except labels such as `logp_estimator` (JSON and console only).
        numbers = {k: v for k, v in data.metrics.items() if isinstance(v, (int, float))}
        for lg in _loggers(cfg, out):
            lg.log_metrics({f"figure/{k}": v for k, v in numbers.items()})
            if hasattr(lg, "log_table"):
                lg.log_table(key=f"figure/{name}", dataframe=df)
                lg.log_image(key=f"figure/{name}_plot", images=[str(figs / f"{name}.png")])
            lg.finalize("success")
        for k, v in data.metrics.items():
            print(f"  {k:34s} {v: .6g}" if k in numbers else f"  {k:34s} {v}")
        return _done(out, data.metrics, files)
    finally:
        _finish_wandb()
