"""The shared task lifecycle: a rerun cleans up what a killed run left."""

from cartoonist import tasks
from tests.helpers.pipeline import compose_cfg


def test_a_rerun_removes_the_temporary_file_of_a_killed_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".samples.pt.tmp999").write_bytes(b"partial")
    tasks.sample.run(compose_cfg("sample", ["debug=smoke", "logger=csv"], out))
    assert (out / "DONE").exists() and not list(out.glob(".*.tmp*"))
