"""A run directory under real processes: a second live run, a kill and a rerun, a full disk."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cartoonist.pipeline.checkpoints import checkpoint_step
from tests.helpers.cli import run_cli

ENV = dict(os.environ, WANDB_MODE="disabled", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")


def _train(root: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cartoonist.train",
        "dataset=gmm2d",
        "model=mlp",
        "logger=csv",
        "logger.csv.flush_logs_every_n_steps=1",
        "trainer.log_every_n_steps=1",
        "trainer.val_check_interval=1000000",
        "trainer.enable_progress_bar=false",
        "callbacks.checkpoint.every_n_train_steps=10",
        f"paths.output_root={root}",
        "run_name=r",
        *extra,
    ]


def _wait(cond, p, what: str, limit: float = 240.0) -> None:
    t0 = time.time()
    while not cond():
        assert p.poll() is None, f"the first run exited ({p.returncode}) before {what}"
        assert time.time() - t0 < limit, f"timed out waiting for {what}"
        time.sleep(0.2)


def _loss_steps(path: Path) -> list[int]:
    with open(path) as f:
        return [int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")]


@pytest.mark.slow  # four training processes: ~5 min on 2 shared cores
def test_second_live_run_refused_then_kill_and_rerun_keeps_history(tmp_path, monkeypatch, capfd):
    run = tmp_path / "train" / "r"
    ckpts = run / "checkpoints"
    first = subprocess.Popen(
        _train(tmp_path, "trainer.max_steps=1000000"),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: (checkpoint_step(ckpts / "last.ckpt") or 0) >= 20, first, "a checkpoint")
        first.send_signal(signal.SIGSTOP)  # live, holding the lock, its checkpoint on disk
        assert (run / ".lock").read_text().strip() == str(first.pid)
        # A second run in the same directory, even with other settings: refused, names the PID,
        # never resumes from the live checkpoint, leaves the first's config in place.
        second = subprocess.run(
            _train(tmp_path, "trainer.max_steps=1000000", "seed=1"),
            env=ENV,
            capture_output=True,
            text=True,
        )
        assert second.returncode == 2, second.stderr[-2000:]
        err = second.stderr.strip().splitlines()
        assert len(err) == 1 and f"PID {first.pid}" in err[0], err
        assert "resuming" not in second.stdout
        assert "seed: 0" in (run / ".hydra" / "config.yaml").read_text()
        assert json.loads((run / "fingerprint.json").read_text())["config"]["seed"] == 0
        first.send_signal(signal.SIGCONT)
        step = checkpoint_step(ckpts / "last.ckpt")
        _wait(lambda: (checkpoint_step(ckpts / "last.ckpt") or 0) > step, first, "a 2nd ckpt")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert not (run / "DONE").exists()
    killed_at = checkpoint_step(ckpts / "last.ckpt")
    assert min(_loss_steps(run / "csv" / "metrics.csv")) == 0
    # The rerun takes over the dead process's lock, resumes and keeps the steps before the kill
    # (this process: the CLI's main, tests.helpers.cli; no fresh interpreter is needed for it).
    target = killed_at + 10
    capfd.readouterr()
    assert run_cli("train", _train(tmp_path, f"trainer.max_steps={target}")[3:], monkeypatch) == 0
    out = capfd.readouterr()
    assert f"resuming from {ckpts / 'last.ckpt'} (step {killed_at})" in out.out
    assert "taking over the stale lock" in out.err
    assert _loss_steps(run / "csv" / "metrics.csv") == list(range(target))  # each step once
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed"] and summary["global_step"] == target and (run / "DONE").exists()
    # A finished run rerun with other settings: refused in one line, its config kept.
    r = subprocess.run(
        _train(tmp_path, f"trainer.max_steps={target}", "optim.lr=1e-3"),
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    assert "optim.lr: 0.0002 → 0.001" in r.stderr
    assert "lr: 0.0002" in (run / ".hydra" / "config.yaml").read_text()
    assert json.loads((run / "summary.json").read_text()) == summary


def _tmpfs(path: Path, size: str) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full-disk test needs root to mount a small tmpfs")
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
    if r.returncode != 0:
        pytest.skip("mount -t tmpfs is not permitted here")


@pytest.mark.slow  # ~1.5 min
def test_full_disk_fails_in_one_line_and_leaves_no_partial_files(tmp_path):
    root = tmp_path / "small"
    _tmpfs(root, "12m")  # one mlp checkpoint (~7.6 MB) fits, the second does not
    try:
        r = subprocess.run(
            _train(root, "trainer.max_steps=40"), env=ENV, capture_output=True, text=True
        )
        run = root / "train" / "r"
        assert r.returncode == 1, r.stderr[-3000:]
        err = [line for line in r.stderr.strip().splitlines() if line.startswith("error:")]
        assert len(err) == 1 and "could not write checkpoint" in err[0], r.stderr[-3000:]
        assert r.stderr.strip().splitlines()[-1] == err[0]  # the last line, no traceback after
        assert not (run / "DONE").exists()
        ckpts = run / "checkpoints"
        assert not list(ckpts.glob(".*.tmp*"))
        for p in ckpts.glob("*.ckpt"):  # what is there loads: no truncated checkpoint
            assert checkpoint_step(p) is not None, p.name
    finally:
        subprocess.run(["umount", str(root)])
