"""The command line: `python -m cartoonist.<task>` runs a one-line preflight, Hydra, the task.

`preflight` composes and validates every run's config before Hydra creates anything (each job
of a sweep, `-m` or an experiment that is a multirun, before the first one runs), and turns every
mistake into one line on stderr with exit status 2 (a traceback only with HYDRA_FULL_ERROR=1).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import hydra
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from cartoonist.errors import format_error
from cartoonist.pipeline.validate import validate

__all__ = ["CONF_DIR", "RUNNING", "preflight", "entry_point"]

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"
# True while a task runs from the command line: its ConfigError is printed as one line, exit 2.
RUNNING = False


_MULTIRUN_FLAGS = ("-m", "--multirun")


def _compose(task: str, overrides: list[str]) -> DictConfig:
    cfg = compose(task, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _jobs(task: str, argv: list[str], multirun: bool) -> list[list[str]] | DictConfig:
    """Every job's overrides, as Hydra's basic sweeper will launch them (a single run: its cfg).

    Inside `initialize_config_dir`. The sweep is `hydra.sweeper.params` (an experiment's) then
    the command line, crossed in that order (`BasicSweeper.split_arguments`).
    """
    loader = GlobalHydra.instance().config_loader()
    parser = OverridesParser.create(config_loader=loader)
    parsed = parser.parse_overrides(argv)
    fixed = [a for a, o in zip(argv, parsed) if not o.is_sweep_override()]
    cfg = _compose(task, fixed)
    multirun = multirun or cfg.hydra.mode == RunMode.MULTIRUN
    if not multirun and len(fixed) < len(argv):
        _compose(task, argv)  # a sweep in a single run: Hydra refuses it, so does composition
    if not multirun:
        return cfg
    # Hydra's plugin scan imports its plugin modules anew, so the class is compared by its
    # qualified name (`is` would fail for the very BasicSweeper).
    sweeper = get_class(OmegaConf.select(cfg, "hydra.sweeper._target_"))
    if _qualified(sweeper) != _qualified(BasicSweeper):
        return [fixed]  # another sweeper expands its own jobs: check the common config
    params = [f"{k}={v}" for k, v in (cfg.hydra.sweeper.params or {}).items()]
    batches = BasicSweeper.split_arguments(parser.parse_overrides(params + argv), None)
    return [list(job) for batch in batches for job in batch]


def preflight(task: str, argv: list[str]) -> None:
    """Compose and validate every run's config before Hydra creates anything.

    A single run is composed once; a sweep (`-m`, or an experiment that is a multirun) is
    expanded into its jobs as Hydra's basic sweeper does, and every job's config is composed and
    validated before the first one runs (an error names the job's overrides). Any error (a
    `ConfigError`, a Hydra composition error, a malformed override) becomes one line on stderr
    and exit status 2; `HYDRA_FULL_ERROR=1` shows the traceback instead. Hydra's other flags
    (`--help`, `--cfg`, ...) skip the preflight.
    """
    multirun = any(a in _MULTIRUN_FLAGS for a in argv)
    argv = [a for a in argv if a not in _MULTIRUN_FLAGS]
    if any(a.startswith("-") for a in argv):
        return
    job: list[str] | None = None
    jobs: list[list[str]] | DictConfig = []
    try:
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            jobs = _jobs(task, argv, multirun)
            if isinstance(jobs, DictConfig):
                validate(jobs, task)
            else:
                for job in jobs:
                    validate(_compose(task, job), task)
    except Exception as e:  # noqa: BLE001 - any composition error becomes one line
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        where = ""
        if job is not None and not isinstance(jobs, DictConfig) and len(jobs) > 1:
            where = f"multirun job {jobs.index(job)} ({' '.join(job)}): "
        print(f"error: {where}{format_error(e)}", file=sys.stderr)
        raise SystemExit(2) from None


def entry_point(task: str, run: Callable[[DictConfig], dict]) -> Callable[[], None]:
    """The `main()` of `python -m cartoonist.<task>`: preflight, then Hydra calls `run(cfg)`.

    Args:
        task: config name in conf/ (`conf/<task>.yaml`).
        run: the task, cfg -> summary dict (it reports its own errors in one line).
    """
    hydra_main = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=task)(run)

    def main() -> None:
        global RUNNING
        preflight(task, sys.argv[1:])
        RUNNING = True
        try:
            hydra_main()
        finally:
            RUNNING = False

    main.__doc__ = f"Entry point of `python -m cartoonist.{task}` (conf/{task}.yaml)."
    return main
