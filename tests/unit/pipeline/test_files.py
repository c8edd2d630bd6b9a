"""Atomic writes leave no temporary file behind, also when the write fails."""

import os

import pytest

from cartoonist.pipeline.files import atomic_write, remove_stale_temporaries


def test_a_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "summary.json"
    atomic_write(target, "old")
    with pytest.raises(TypeError):
        atomic_write(target, 42)  # not str or bytes: fails while writing the temporary file
    assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["summary.json"]


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path):
    (tmp_path / ".samples.pt.tmp12345").write_bytes(b"partial")
    (tmp_path / "per_sample.csv").write_text("kept")
    assert [p.name for p in remove_stale_temporaries(tmp_path)] == [".samples.pt.tmp12345"]
    assert sorted(os.listdir(tmp_path)) == ["per_sample.csv"]
