"""summary.json a reader can trust: spread, quantiles, NFE, wall time, λ range, r_0 bias bounds."""

import math

import numpy as np
import pytest

from cartoonist import tasks
from cartoonist.diffusion import bias_bounds
from cartoonist.tasks.per_sample import grid_caption, summarise
from tests.helpers.pipeline import compose_cfg


def _rows(est, values, nfe=7, wall=0.5):
    return [
        dict(sample_id=i, seed=0, estimator=est, logp_nats=v, bpd=-v / 10, nfe=nfe, wall_s=wall)
        for i, v in enumerate(values)
    ]


def test_summarise_gives_spread_and_quantiles_per_estimator():
    rng = np.random.default_rng(0)
    r0, elbo = rng.normal(-3, 1, 50), rng.normal(-5, 2, 50)
    s = summarise(_rows("sde_tracking", r0, nfe=100) + _rows("elbo", elbo, nfe=16))
    for est, v in (("sde_tracking", r0), ("elbo", elbo)):
        assert s[f"logp_{est}_mean"] == pytest.approx(v.mean())
        assert s[f"logp_{est}_sd"] == pytest.approx(v.std(ddof=1))
        assert s[f"logp_{est}_stderr"] == pytest.approx(v.std(ddof=1) / math.sqrt(50))
        for q in (5, 25, 50, 75, 95):
            assert s[f"logp_{est}_q{q:02d}"] == pytest.approx(np.quantile(v, q / 100))
            assert s[f"bpd_{est}_q{q:02d}"] == pytest.approx(np.quantile(-v / 10, q / 100))
        assert s[f"wall_s_{est}_total"] == pytest.approx(25.0)
    assert s["nfe_sde_tracking_mean"] == 100 and s["nfe_elbo_mean"] == 16
    b = bias_bounds(r0, elbo)
    assert s["r0_bias_lower"] == 0 and s["r0_bias_upper"] == pytest.approx(b.upper)
    assert s["r0_bias_upper_stderr"] == pytest.approx(b.upper_stderr)
    assert "r0_bias_upper" not in summarise(_rows("elbo", elbo))  # only with both ends
    one = summarise(_rows("exact", [-1.0]))
    assert one["logp_exact_sd"] is None and one["logp_exact_q50"] == -1.0


def test_grid_caption_names_ids_and_the_estimator():
    cap = grid_caption(_rows("tracked", [-1.0, -2.0]) + _rows("exact", [-3.25, -4.0]))
    assert cap.startswith("sample id: log p [nats, exact]") and "#0: -3.2" in cap
    assert "#1: -4.0" in cap and "tracked" not in cap.split("]")[1]


def test_evaluate_with_r0_and_elbo_records_the_bias_bounds_and_the_lambda_range(tmp_path):
    over = ["debug=smoke", "likelihood=elbo", "source=samples", "sde_steps=30"]
    s = tasks.evaluate.run(compose_cfg("evaluate", over, tmp_path / "e"))
    assert {"logp_sde_tracking_q95", "logp_elbo_stderr", "nfe_elbo_mean", "wall_s_run"} <= set(s)
    assert s["r0_bias_lower"] == 0 and math.isfinite(s["r0_bias_upper"])
    assert s["schedule_lambda_min"] < s["schedule_lambda_max"]
