"""The Fig. 4 summary: correlations, the ordering fraction and the bias bounds on known numbers."""

import pandas as pd
import pytest

from cartoonist.figures.fig4_r0_ode_elbo import summarise_fig4


def test_summary_on_constructed_table():
    rows = []
    for i in range(10):
        truth = float(i)
        for est, off in (
            ("sde_tracking", 2.0),
            ("pf_ode", 1.0 + 0.1 * (i % 2)),
            ("elbo", -1.0),
            ("data_exact", 0.0),
        ):
            rows.append(dict(model="m", sample_id=i, estimator=est, logp_nats=truth + off))
    m = summarise_fig4(pd.DataFrame(rows)).metrics
    assert m["m/frac_r0_gt_ode_gt_elbo"] == 1.0
    assert m["m/mean_sde_tracking"] == pytest.approx(6.5)
    assert m["m/bias_bound_upper"] == pytest.approx(3.0)  # E r0 − E ELBO
    assert m["m/pearson_sde_tracking_elbo"] == pytest.approx(1.0)
    assert m["m/mean_err_elbo_vs_data"] == pytest.approx(-1.0)
    assert m["m/mae_pf_ode_vs_data"] == pytest.approx(1.05)
