"""The one lifecycle every task shares: skip if DONE, validate, run, write DONE last.

    def sample(cfg):
        with task_run(cfg, "sample") as run:
            if run.done:
                return run.summary
            ...
            return run.finish(summary, files)

`task_run` locks the run directory against a second live run (`RunLock`), refuses a config that
is not the directory's own (`fingerprint.json`, see `cartoonist.pipeline.rundir`; Hydra's
`.hydra/*.yaml` of the run are put back), validates the config (one `ConfigError` naming the key,
before anything is built), creates the run directory, prints the resolved config, seeds
everything, and always finishes the wandb run and drops the lock. Under the command line
(`cartoonist.pipeline.cli`) a `ConfigError` becomes one line
on stderr and exit status 2; called from Python it propagates.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import lightning as L
from omegaconf import DictConfig, OmegaConf

from cartoonist.errors import ConfigError, format_error
from cartoonist.pipeline import cli
from cartoonist.pipeline.files import mark_done, remove_stale_temporaries, write_json
from cartoonist.pipeline.loggers import finish_wandb, quiet_duplicate_logs
from cartoonist.pipeline.rundir import (
    RunLock,
    check_fingerprint,
    keep_hydra_files,
    restore_hydra_files,
    write_fingerprint,
)
from cartoonist.pipeline.validate import validate

__all__ = ["Run", "task_run"]


class Run:
    """One run directory (`paths.output_dir`) of a task.

    Attributes:
        out: the run directory.
        done: it holds `DONE` (a finished run: nothing is recomputed).
        summary: the finished run's `summary.json` when `done`.
    """

    def __init__(self, cfg: DictConfig, task: str):
        self.cfg, self.task = cfg, task
        self.out = Path(cfg.paths.output_dir)
        self.lock = RunLock(self.out)
        self.rank_zero = _rank_zero()
        self.done = False
        self.summary: dict = {}
        self._record = True
        if self.rank_zero and self.out.is_dir():  # Hydra made it; in Python it may not exist yet
            self.lock.acquire()  # before anything is read: another live run may be writing
            try:
                self.done = (self.out / "DONE").exists()
                self._record = check_fingerprint(self.out, cfg, task, self.done)
            except BaseException:
                restore_hydra_files(self.out)  # the refused rerun's config is not the run's
                self.lock.release()
                raise
        else:
            self.done = (self.out / "DONE").exists()
        if self.done:
            restore_hydra_files(self.out)
            print(f"[cartoonist] {self.out} is DONE: skipping (delete DONE to recompute)")
            path = self.out / "summary.json"
            self.summary = json.loads(path.read_text()) if path.exists() else {}

    def start(self) -> Path:
        """Validate, create the run directory, print the config, seed; returns the directory."""
        # wandb never prompts or needs an account unless asked: WANDB_MODE=online opts in.
        os.environ.setdefault("WANDB_MODE", "offline")
        validate(self.cfg, self.task)
        quiet_duplicate_logs()
        self.out.mkdir(parents=True, exist_ok=True)
        if self.rank_zero:
            if self.lock.fd is None:
                self.lock.acquire()
            if self._record:
                write_fingerprint(self.out, self.cfg)
            keep_hydra_files(self.out)
        for folder in (self.out, self.out / "checkpoints"):  # left by a killed run
            for p in remove_stale_temporaries(folder) if folder.is_dir() else ():
                print(f"[cartoonist] removed {p.name}, left by an interrupted run")
        shown = OmegaConf.masked_copy(self.cfg, [k for k in self.cfg if k != "hydra"])
        print(OmegaConf.to_yaml(shown, resolve=True))
        print(f"[cartoonist] {self.task} → {self.out}")
        L.seed_everything(self.cfg.seed, workers=True, verbose=False)
        self.t0 = time.perf_counter()
        return self.out

    def finish(self, summary: dict, files: list[str]) -> dict:
        """Write summary.json (with the run's wall time, `wall_s_run`), then DONE; returns it."""
        if hasattr(self, "t0"):
            summary = {**summary, "wall_s_run": time.perf_counter() - self.t0}
        write_json(self.out / "summary.json", summary)
        mark_done(self.out)
        print(f"[cartoonist] wrote {', '.join(files + ['summary.json', 'DONE'])} in {self.out}")
        return summary


_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO, errno.EFBIG}


def _rank_zero() -> bool:
    """This process is the first of its run (DDP's other ranks re-run the task in the same dir)."""
    return all(os.environ.get(k, "0") == "0" for k in ("LOCAL_RANK", "NODE_RANK"))


@contextmanager
def task_run(cfg: DictConfig, task: str) -> Iterator[Run]:
    """The lifecycle of one task run (see the module docstring)."""
    run = None
    try:
        run = Run(cfg, task)
        yield run
    except ConfigError as e:
        if not cli.RUNNING:
            raise
        print(f"error: {str(e).strip().splitlines()[0]}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as e:
        # A full or read-only disk: one line and status 1 (DONE is never written after it).
        if not cli.RUNNING or e.errno not in _STORAGE_ERRNOS:
            raise
        print(f"error: {format_error(e)}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        finish_wandb()
        if run is not None:
            run.lock.release()
