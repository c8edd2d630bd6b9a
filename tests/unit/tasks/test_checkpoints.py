"""Crash-safe checkpoints: atomic writes, a truncated last.ckpt, metrics.csv across a resume."""

import csv

from cartoonist import tasks
from cartoonist.pipeline.checkpoints import checkpoint_step, resume_point
from tests.helpers.pipeline import compose_cfg

OVER = ["debug=smoke", "model=mlp", "dataset=gmm2d", "trainer.log_every_n_steps=1"]
OVER += ["callbacks.checkpoint.every_n_train_steps=2", "logger.csv.flush_logs_every_n_steps=1"]


def _steps(path) -> list[int]:
    with open(path) as f:
        return sorted({int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")})


def test_truncated_checkpoints_resume_from_the_newest_valid_one(tmp_path, capsys):
    out = tmp_path / "t"
    tasks.train.run(compose_cfg("train", OVER + ["trainer.max_steps=6"], out))
    ckpts = out / "checkpoints"
    names = sorted(p.name for p in ckpts.iterdir())
    assert names == ["last.ckpt", "step_0000002.ckpt", "step_0000004.ckpt", "step_0000006.ckpt"]
    assert [checkpoint_step(ckpts / n) for n in names] == [6, 2, 4, 6]
    before = _steps(out / "csv" / "metrics.csv")
    assert before == list(range(6))
    # A crash after step 4: step 6 never written whole, last.ckpt truncated mid-write.
    (ckpts / "step_0000006.ckpt").unlink()
    for name in ("last.ckpt", "step_0000004.ckpt"):
        data = (ckpts / name).read_bytes()
        (ckpts / name).write_bytes(data[: len(data) // 2])
    (out / "DONE").unlink()
    capsys.readouterr()
    assert resume_point(ckpts) == (ckpts / "step_0000002.ckpt", 2)
    assert "last.ckpt is corrupt or truncated: resuming from step_0000002.ckpt" in (
        capsys.readouterr().err
    )
    s = tasks.train.run(compose_cfg("train", OVER + ["trainer.max_steps=8"], out))
    assert s["resumed"] and s["global_step"] == 8
    assert checkpoint_step(ckpts / "last.ckpt") == 8  # rewritten whole
    # History before the resume step kept, later rows recomputed once, none lost.
    assert _steps(out / "csv" / "metrics.csv") == list(range(8))
    assert not (out / "csv" / "metrics.before_resume.csv").exists()
    assert not list(ckpts.glob(".*.tmp*"))


def test_nothing_valid_to_resume_from(tmp_path, capsys):
    (tmp_path / "last.ckpt").write_bytes(b"PK\x03\x04 not a zip")
    assert resume_point(tmp_path) is None
    assert "training from scratch" in capsys.readouterr().err
    assert resume_point(tmp_path / "none") is None
