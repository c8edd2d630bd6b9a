"""A run directory belongs to one configuration and one live process.

`fingerprint.json` (written when a run starts, and kept next to `DONE`) holds the SHA-256 of the
resolved config and the config itself, flattened, minus the keys that name *where* or *how* a run
is written rather than *what* it computes (`EXCLUDED`):

- `hydra`, `paths`: output and data locations (moving an output root keeps its runs);
- `run_name`, `experiment_name`, `tags`: names and labels, not settings;
- `logger`: where metrics go (CSV and/or wandb);
- `callbacks.checkpoint`: how often checkpoints are kept;
- `trainer.{accelerator,devices,num_nodes,strategy,enable_progress_bar,log_every_n_steps}`: the
  device layout and console output (results do not depend on them: sample ids seed each sample).

Everything else (model, its path or checkpoint, dataset, sampler, likelihood, seed, sizes,
`trainer.precision`, ...) is part of it. A rerun with the same fingerprint is a skip (`DONE`) or a
resume; a rerun with another one is refused with one line naming the first differing keys
(`RunDirError`, exit status 2); only `train` may resume an unfinished run with a longer
`trainer.max_steps`/`max_epochs` (`RESUMABLE`). Hydra rewrites `.hydra/*.yaml` before a task
starts, so the run's own copies are kept in `.hydra/run/` and put back whenever this process does
not run (a skip or a refusal).

`RunLock` holds `<run>/.lock` (fcntl.flock, with the holder's PID in it) for the whole run; a
second live run in the same directory is refused naming that PID. A lock file whose process is
gone is not locked any more (the kernel drops a dead process's flock) and is taken over with a
warning.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cartoonist.errors import ConfigError
from cartoonist.pipeline.files import write_json

__all__ = [
    "EXCLUDED",
    "RESUMABLE",
    "RunDirError",
    "RunLock",
    "fingerprint_of",
    "check_fingerprint",
    "write_fingerprint",
    "keep_hydra_files",
    "restore_hydra_files",
]

EXCLUDED = (
    "hydra",
    "paths",
    "run_name",
    "experiment_name",
    "tags",
    "logger",
    "callbacks.checkpoint",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
)
RESUMABLE = {"train": ("trainer.max_steps", "trainer.max_epochs")}
FILE = "fingerprint.json"


class RunDirError(ConfigError):
    """The run directory belongs to another configuration, or another live run holds it."""


def _flatten(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        out: dict = {}
        for k, v in node.items():
            if not _excluded(f"{prefix}{k}"):
                out.update(_flatten(v, f"{prefix}{k}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def _excluded(key: str) -> bool:
    return any(key == e or key.startswith(e + ".") for e in EXCLUDED)


def fingerprint_of(cfg: DictConfig) -> tuple[str, dict]:
    """(SHA-256 hex, flat {key: value}) of the resolved config minus `EXCLUDED` keys."""
    values = {}
    for k in cfg:
        if _excluded(str(k)):
            continue
        node = cfg[k]  # resolved in place: interpolations see the whole config
        values[k] = (
            OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
        )
    flat = {k: v for k, v in _flatten(values).items() if not _excluded(k)}
    text = json.dumps(flat, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest(), json.loads(text)


def _differing(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k, "<unset>") != new.get(k, "<unset>")]


def _show(v) -> str:
    return "<unset>" if v == "<unset>" else json.dumps(v, default=str)


def check_fingerprint(out: Path, cfg: DictConfig, task: str, done: bool) -> bool:
    """Refuse a config that is not the run directory's own; True when its record must be updated.

    Raises:
        RunDirError: one line naming the first differing keys, old → new.
    """
    path = Path(out) / FILE
    if not path.exists():
        if done:
            print(
                f"[cartoonist] warning: {out} has no {FILE} (made before fingerprints): its "
                f"settings are not checked",
                file=sys.stderr,
            )
        return not done
    old = json.loads(path.read_text())
    try:
        digest, flat = fingerprint_of(cfg)
    except Exception:  # noqa: BLE001 - a config that does not resolve: `validate` names the key
        return True
    if old.get("sha256") == digest:
        return False
    diff = _differing(old.get("config", {}), flat)
    if not done and diff and set(diff) <= set(RESUMABLE.get(task, ())):
        return True  # a longer training of the same run
    if not done and task != "train":
        return True  # an unfinished sample/evaluate has nothing to resume: the new config owns it
    shown = ", ".join(
        f"{k}: {_show(old.get('config', {}).get(k, '<unset>'))} → {_show(flat.get(k, '<unset>'))}"
        for k in diff[:3]
    )
    more = f" (+{len(diff) - 3} more)" if len(diff) > 3 else ""
    raise RunDirError(
        f"{out} holds a run of another configuration ({shown}{more}): choose another run_name, "
        f"or delete the directory to recompute"
    )


def write_fingerprint(out: Path, cfg: DictConfig) -> None:
    """Record the run's fingerprint (atomically) in <out>/fingerprint.json."""
    digest, flat = fingerprint_of(cfg)
    write_json(Path(out) / FILE, {"sha256": digest, "excluded": list(EXCLUDED), "config": flat})


def keep_hydra_files(out: Path) -> None:
    """Copy `.hydra/*.yaml` (this run's config, as Hydra wrote it) to `.hydra/run/`."""
    src = Path(out) / ".hydra"
    if not src.is_dir():
        return
    dst = src / "run"
    dst.mkdir(exist_ok=True)
    for p in src.glob("*.yaml"):
        tmp = dst / f".{p.name}.tmp{os.getpid()}"
        shutil.copy2(p, tmp)
        os.replace(tmp, dst / p.name)


def restore_hydra_files(out: Path) -> None:
    """Put the run's own `.hydra/*.yaml` back (Hydra rewrote them for a rerun that did not run)."""
    kept = Path(out) / ".hydra" / "run"
    for p in kept.glob("*.yaml") if kept.is_dir() else ():
        shutil.copy2(p, Path(out) / ".hydra" / p.name)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """An exclusive `fcntl.flock` on <out>/.lock for one process's run; `release()` drops it."""

    def __init__(self, out: Path):
        self.path = Path(out) / ".lock"
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        """Take the lock or raise `RunDirError` naming the live PID that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunDirError(
                f"{self.path.parent} is in use by another live run (PID {holder} holds "
                f"{self.path}): wait for it, or choose another run_name"
            ) from None
        old = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if old.isdigit() and int(old) != os.getpid():
            state = "has exited" if not _pid_alive(int(old)) else "no longer holds it"
            print(
                f"[cartoonist] warning: taking over the stale lock {self.path} "
                f"(PID {old} {state})",
                file=sys.stderr,
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        """Drop the lock; the file stays, emptied (a PID left in it names a killed holder)."""
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
