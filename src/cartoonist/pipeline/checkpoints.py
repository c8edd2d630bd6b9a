"""Crash-safe training checkpoints: written atomically, and a corrupt `last.ckpt` is never resumed.

`AtomicModelCheckpoint` is Lightning's `ModelCheckpoint` with every file (`step_*.ckpt` and
`last.ckpt`) written to a temporary sibling `.<name>.tmp<pid>` and renamed over the old one
(`os.replace`), so a kill or a full disk mid-write leaves the previous checkpoint whole (and the
temporary file is removed by the next run). `resume_point` picks what a rerun resumes from:
`last.ckpt` if it loads, else the newest `step_*.ckpt` that loads, with a warning.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sys
from pathlib import Path

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

__all__ = ["AtomicModelCheckpoint", "CheckpointWriteError", "checkpoint_step", "resume_point"]


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, ...); the previous file is kept whole."""


class AtomicModelCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` whose files appear whole or not at all (temporary file + os.replace)."""

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        path = Path(filepath)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            super()._save_checkpoint(trainer, str(tmp))  # rank 0 writes; every rank waits
            if trainer.is_global_zero:
                os.replace(tmp, path)
        except Exception as e:  # torch.save reports a full disk as a RuntimeError
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            free = shutil.disk_usage(path.parent).free
            raise CheckpointWriteError(
                getattr(e, "errno", None) or errno.EIO,
                f"could not write checkpoint {path} ({first}; {free / 2**20:.1f} MiB free "
                f"there): the previous {path.name}, if any, is kept",
            ) from e
        finally:
            if trainer.is_global_zero:
                tmp.unlink(missing_ok=True)
        self._last_checkpoint_saved = str(path)


def checkpoint_step(path: Path) -> int | None:
    """The global step stored in a Lightning checkpoint, or None when it does not load."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(ckpt["global_step"])
    except Exception:  # noqa: BLE001 - truncated, corrupt or not a checkpoint
        return None


def _step_of_name(p: Path) -> int:
    m = re.search(r"(\d+)", p.stem)
    return int(m.group(1)) if m else -1


def resume_point(folder: Path) -> tuple[Path, int] | None:
    """(checkpoint to resume from, its global step), or None when there is nothing to resume.

    `last.ckpt` when it loads; otherwise (truncated by a crash or a full disk) the newest
    `step_*.ckpt` that loads, with a warning on stderr; None when no checkpoint loads.
    """
    folder = Path(folder)
    last = folder / "last.ckpt"
    if last.exists():
        step = checkpoint_step(last)
        if step is not None:
            return last, step
    for p in sorted(folder.glob("step_*.ckpt"), key=_step_of_name, reverse=True):
        step = checkpoint_step(p)
        if step is not None:
            if last.exists():
                print(
                    f"[cartoonist] warning: {last} is corrupt or truncated: resuming from "
                    f"{p.name} "
                    f"(step {step}) instead",
                    file=sys.stderr,
                )
            return p, step
    if last.exists():
        print(
            f"[cartoonist] warning: {last} is corrupt and no step_*.ckpt loads: training from "
            f"scratch",
            file=sys.stderr,
        )
    return None
