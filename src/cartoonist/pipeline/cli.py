"""The command line: `python -m cartoonist.<task>` runs a one-line preflight, Hydra, the task.

`preflight` composes and validates a single run's config before Hydra creates anything, and turns
every mistake into one line on stderr with exit status 2. Sweeps (`-m`, or an experiment that is a
multirun) are left to Hydra and each job validates itself when it starts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig

from cartoonist.errors import format_error
from cartoonist.pipeline.validate import validate

__all__ = ["CONF_DIR", "RUNNING", "preflight", "entry_point"]

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"
# True while a task runs from the command line: its ConfigError is printed as one line, exit 2.
RUNNING = False


def _is_sweep(argv: list[str]) -> bool:
    """A command-line sweep (`a,b,c`, `range(...)`, ...), told by Hydra's own override parser."""
    try:
        parsed = OverridesParser.create().parse_overrides(argv)
    except Exception:  # noqa: BLE001 - a malformed override: composition reports it
        return False
    return any(o.is_sweep_override() for o in parsed)


def preflight(task: str, argv: list[str]) -> None:
    """Compose and validate the config of a single run before Hydra creates anything.

    Multirun (-m) sweeps are validated per job instead. Exits with status 2 and one line on error.
    """
    if any(a.startswith("-") for a in argv) or _is_sweep(argv):
        return
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose(task, overrides=argv, return_hydra_config=True)
        if cfg.hydra.mode == RunMode.MULTIRUN:
            return  # an experiment that is a sweep: each job validates itself
        HydraConfig.instance().set_config(cfg)
        validate(cfg, task)
    except Exception as e:  # noqa: BLE001 - any composition error becomes one line
        print(f"error: {format_error(e)}", file=sys.stderr)
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
