"""Sweep job directories named by their overrides; a sweep's jobs collected into one table."""

import json

from cartoonist.pipeline.files import mark_done, write_json
from cartoonist.pipeline.names import sweep_subdir
from cartoonist.pipeline.sweeps import collect_sweep
from tests.helpers.pipeline import compose_cfg


def test_sweep_subdir_names_the_overrides():
    assert sweep_subdir("sampler.lambda_threshold=-4", 3) == "sampler.lambda_threshold=-4"
    assert sweep_subdir("", 3) == "3"
    assert "/" not in sweep_subdir("model.path=/a/b", 0)
    long = [sweep_subdir("x=" + "a" * 300 + c, 0) for c in "bc"]
    assert len(long[0]) < 160 and long[0] != long[1]


def test_hydra_sweep_subdir_excludes_locations():
    cfg = compose_cfg("sample", ["experiment=hd_threshold"])
    hc = cfg.hydra.job.config.override_dirname
    assert {"paths.output_root", "experiment", "debug", "run_name"} <= set(hc.exclude_keys)
    assert "sweep_subdir" in str(cfg.hydra.sweep._get_node("subdir")._value())


def test_collect_sweep_reads_each_jobs_own_summary(tmp_path):
    for name, thr in (("a", -4.0), ("b", 4.0), ("unfinished", 0.0)):
        job = tmp_path / name
        write_json(job / "summary.json", {"sampler": {"name": "hd", "lambda_threshold": thr}})
        if name != "unfinished":
            mark_done(job)
    df = collect_sweep(tmp_path)
    assert list(df.job) == ["a", "b"] and list(df["sampler.lambda_threshold"]) == [-4.0, 4.0]
    assert (tmp_path / "summary.csv").read_text().splitlines()[0].startswith("job,")
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["sampler"]["name"] == "hd"
