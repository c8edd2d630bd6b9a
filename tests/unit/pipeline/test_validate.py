"""Cross-field checks before anything is built: run directories, Algorithm 1's threshold."""

import pytest

from cartoonist import tasks
from cartoonist.errors import ConfigError
from cartoonist.pipeline import preflight, validate
from tests.helpers.pipeline import compose_cfg


def test_a_run_name_cannot_leave_the_output_root(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        preflight("sample", ["run_name=../../escaped", f"paths.output_root={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "outside paths.output_root" in err[0]
    assert not (tmp_path.parent / "escaped").exists()


@pytest.mark.parametrize("thr, ok", [(-10.0, True), (9.99, True), (10.0, False), (-10.5, False)])
def test_threshold_range_is_the_papers_t_in_0_T(thr, ok, tmp_path):
    """λ_thr ∈ [λ_min, λ_max): t = T (λ_min, the HD-ODE from the prior) is allowed, t = 0 not."""
    cfg = compose_cfg("sample", ["sampler=hd", f"sampler.lambda_threshold={thr}"], tmp_path)
    if ok:
        validate(cfg, "sample")
    else:
        with pytest.raises(ConfigError, match=r"sampler.lambda_threshold must lie in \[-10, 10\)"):
            validate(cfg, "sample")


def test_a_sample_run_at_t_equal_T(tmp_path):
    # threshold = λ_min: the whole run is the HD-ODE from the prior; 20 steps (not the default
    # 1000) are enough to show it runs and records
    over = ["debug=smoke", "sampler=hd", "sampler.lambda_threshold=-10", "logger=csv"]
    over += ["sampler.steps=20"]
    summary = tasks.sample.run(compose_cfg("sample", over, tmp_path / "run"))
    assert (tmp_path / "run" / "DONE").exists() and summary["sampler"]["lambda_threshold"] == -10
    assert summary["n"] > 0 and "logp_exact_mean" in summary
