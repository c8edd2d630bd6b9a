"""The shared task lifecycle: a rerun cleans up what a killed run left."""

from cartoonist import tasks
from tests.helpers.pipeline import compose_cfg


def test_a_rerun_removes_the_temporary_file_of_a_killed_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".samples.pt.tmp999").write_bytes(b"partial")
    over = ["debug=smoke", "logger=csv", "sampler.steps=10"]  # any length of run cleans up
    tasks.sample.run(compose_cfg("sample", over, out))
    assert (out / "DONE").exists() and not list(out.glob(".*.tmp*"))


def test_a_rerun_with_other_settings_is_refused_and_keeps_the_runs_config(tmp_path):
    """Same settings: a skip (DONE); other settings: one line naming the key, nothing rewritten."""
    import json

    import pytest

    from cartoonist.pipeline.rundir import RunDirError

    out = tmp_path / "run"
    base = ["debug=smoke", "logger=csv", "sampler.steps=10"]
    first = tasks.sample.run(compose_cfg("sample", base, out))
    hydra = out / ".hydra"
    (hydra / "run").mkdir(parents=True)  # as Hydra and the first run left them
    (hydra / "config.yaml").write_text("sampler:\n  steps: 10\n")
    (hydra / "run" / "config.yaml").write_text("sampler:\n  steps: 10\n")
    fp = json.loads((out / "fingerprint.json").read_text())
    assert fp["config"]["sampler.steps"] == 10 and "paths.output_dir" not in fp["config"]
    # Names, loggers and devices are not settings: still the same run (a skip).
    again = ["debug=smoke", "logger=csv", "sampler.steps=10", "tags=[x]", "trainer.devices=1"]
    assert tasks.sample.run(compose_cfg("sample", again, out)) == first
    (hydra / "config.yaml").write_text("sampler:\n  steps: 20\n")  # Hydra's rewrite for a rerun
    with pytest.raises(RunDirError, match=r"sampler\.steps: 10 → 20") as e:
        tasks.sample.run(compose_cfg("sample", base[:2] + ["sampler.steps=20"], out))
    assert len(str(e.value).splitlines()) == 1
    assert (hydra / "config.yaml").read_text() == "sampler:\n  steps: 10\n"  # put back
    assert json.loads((out / "summary.json").read_text()) == first


def test_an_unfinished_train_resumes_only_for_a_longer_training(tmp_path):
    import pytest

    from cartoonist.pipeline.rundir import RunDirError, write_fingerprint

    out = tmp_path / "t"
    over = ["debug=smoke", "model=mlp", "dataset=gmm2d"]
    out.mkdir()
    write_fingerprint(out, compose_cfg("train", over + ["trainer.max_steps=2"], out))
    with pytest.raises(RunDirError, match=r"optim\.lr"):
        tasks.train.run(compose_cfg("train", over + ["trainer.max_steps=2", "optim.lr=1e-3"], out))
    assert not (out / "DONE").exists() and not (out / "checkpoints").exists()
    s = tasks.train.run(compose_cfg("train", over + ["trainer.max_steps=4"], out))
    assert s["global_step"] == 4
    with pytest.raises(RunDirError, match=r"trainer\.max_steps: 4 → 6"):  # DONE: finished
        tasks.train.run(compose_cfg("train", over + ["trainer.max_steps=6"], out))


def _hold_lock(path, conn) -> None:
    """A second process: take the run lock, say so, and stay alive until killed."""
    import time

    from cartoonist.pipeline.rundir import RunLock

    RunLock(path).acquire()
    conn.send("held")
    time.sleep(600)


def test_run_lock_refuses_a_second_holder_and_takes_over_a_dead_ones(tmp_path, capsys):
    """flock semantics across real processes: a live holder refuses, a killed one is taken over.

    The holder is a forked child (its own PID and open file, so its own flock) rather than a
    fresh interpreter, which would spend ~7 s importing cartoonist for one `acquire()`.
    """
    import multiprocessing

    import pytest

    from cartoonist.pipeline.rundir import RunDirError, RunLock

    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe()
    p = ctx.Process(target=_hold_lock, args=(tmp_path, theirs), daemon=True)
    p.start()
    try:
        assert ours.poll(60) and ours.recv() == "held"
        with pytest.raises(RunDirError, match=f"PID {p.pid} holds"):
            RunLock(tmp_path).acquire()
    finally:
        p.kill()
        p.join()
    lock = RunLock(tmp_path).acquire()  # the kernel dropped the dead process's flock
    assert f"stale lock {tmp_path / '.lock'} (PID {p.pid} has exited)" in capsys.readouterr().err
    assert (tmp_path / ".lock").read_text().strip() == str(__import__("os").getpid())
    lock.release()
    RunLock(tmp_path).acquire().release()  # a clean release leaves nothing to warn about
    assert "stale" not in capsys.readouterr().err
