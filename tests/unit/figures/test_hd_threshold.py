"""The hd_threshold collector's estimator choice and its summary in nats and bits/dim."""

import math

import pandas as pd
import pytest

from cartoonist.figures.hd_threshold import choose_estimator, summarise_hd_threshold


def test_choose_estimator_prefers_exact_then_pf_ode():
    oracle = {"sde": {"exact", "tracked"}, "hd": {"exact"}}
    assert choose_estimator(oracle) == "exact"
    learned = {"sde": {"tracked", "pf_ode"}, "hd": {"pf_ode"}}
    assert choose_estimator(learned) == "pf_ode"
    mixed = {"sde": {"exact", "pf_ode"}, "hd": {"pf_ode"}}  # exact must hold for every job
    assert choose_estimator(mixed) == "pf_ode"
    with pytest.raises(ValueError, match="likelihood=pf_ode") as e:
        choose_estimator({"sde": {"tracked"}, "hd": {"pf_ode"}})
    assert len(str(e.value).splitlines()) == 1 and "sde has no 'pf_ode'" in str(e.value)


def _rows(method, stage, thr, logp, dim, logjac):
    return [
        dict(
            method=method,
            first_stage=stage,
            lambda_threshold=thr,
            sample_id=i,
            logp_nats=v,
            bpd=-(v + logjac) / (dim * math.log(2)),
        )
        for i, v in enumerate(logp)
    ]


def test_summary_gain_in_nats_and_bits_per_dim():
    dim, logjac = 12, 12 * math.log(2 / 256)
    rows = _rows("pf_ode", "", float("nan"), [1.0, 2.0, 3.0], dim, logjac)
    rows += _rows("hd", "ode", 0.0, [4.0, 4.0, 7.0], dim, logjac)
    data = summarise_hd_threshold(pd.DataFrame(rows), "pf_ode")
    hd = next(r for r in data.rows if r["method"] == "hd")
    assert hd["estimator"] == "pf_ode" and data.metrics["logp_estimator"] == "pf_ode"
    assert hd["gain"] == pytest.approx(3.0) and hd["mean_logp"] == pytest.approx(5.0)
    # A gain of g nats is g / (D ln 2) fewer bits per dimension (the Jacobian cancels).
    assert hd["gain_bpd"] == pytest.approx(-3.0 / (dim * math.log(2)))
    assert hd["mean_bpd"] == pytest.approx(-(5.0 + logjac) / (dim * math.log(2)))
    assert data.metrics["hd_beats_regular_at_every_threshold"] is True
    with pytest.raises(ValueError, match="estimator"):
        summarise_hd_threshold(pd.DataFrame(rows), "tracked")
