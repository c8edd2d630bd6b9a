"""The hd_families figure: HD samples at several thresholds beside regular samples of the same
noise, each with its log p, on the oracle (exact), a learned model (tracked), and any `model=`."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from cartoonist import tasks
from cartoonist.figures import LearnedModel, hd_families, toy_mixture
from tests.helpers.pipeline import compose_cfg


def test_tracked_log_p_agrees_with_the_exact_one_on_a_mixture():
    """A learned model's log p here is tracked along each sampler: on an exact mixture used as
    the 'learned' score it must agree with the exact log p of the same samples."""
    gmm = toy_mixture(2)
    learned = LearnedModel("gmm2d", gmm, gmm.schedule, event_shape=(2,))
    data = hd_families(seed=0, n=64, steps=300, thresholds=(0.0,), learned=learned)
    df = pd.DataFrame(data.rows)
    assert set(df.column) == {"regular SDE", "HD λ_thr=0"} and (df.logp_kind == "tracked").all()
    for col in df.column.unique():
        sub = df[df.column == col]
        assert len(sub) == 64 and sub.logp.map(math.isfinite).all()
    # The rows hold 8-bit renderings only: redraw the same keyed samples (same keys, so the same
    # x) and take their exact log p.
    from cartoonist.diffusion import Keys, hd_sample, sample_sde

    ids = list(range(64))
    x_T = gmm.schedule.sample_prior((64, 2), noise=Keys(0, ids), dtype=torch.float32)
    xs = {
        "regular SDE": sample_sde(gmm, gmm.schedule, x_T, 300, noise=Keys(0, ids)).x,
        "HD λ_thr=0": hd_sample(
            gmm,
            gmm.schedule,
            x_T,
            300,
            lambda_threshold=0.0,
            first_stage="sde",
            noise=Keys(0, ids),
        ).x,
    }
    for col, x in xs.items():
        lp_exact = gmm.log_prob(x.double(), gmm.schedule.lambda_max)
        err = torch.tensor(df[df.column == col].logp.to_numpy()) - lp_exact
        # per-sample Hutchinson noise averages out; the step bias is small at 300 steps
        tol = 0.1 + 3 * float(err.std()) / 8
        assert abs(float(err.mean())) < tol, (col, float(err.mean()), tol)


def test_figure_on_the_oracle_and_on_a_diffusers_folder(tmp_path):
    pytest.importorskip("diffusers")
    from tests.helpers.pretrained import save_tiny_diffusers

    folder = save_tiny_diffusers(tmp_path / "tiny")
    for name, extra in (
        ("oracle", []),
        ("diffusers", ["model=diffusers", f"model.path={folder}"]),
    ):
        cfg = compose_cfg(
            "figure", ["experiment=hd_families", "debug=smoke"] + extra, tmp_path / name / "run"
        )
        summary = tasks.figure.run(cfg)
        figs = list((tmp_path / name).rglob("hd_families*.csv"))
        assert len(figs) == 1 and figs[0].with_suffix(".png").exists()
        df = pd.read_csv(figs[0])
        want = {"regular SDE", "HD λ_thr=-4", "HD λ_thr=0", "HD λ_thr=4"}
        assert set(df.column) == want and len(df) == 4 * 2  # smoke: 2 samples per column
        assert df.logp.map(math.isfinite).all()
        kind = "exact" if name == "oracle" else "tracked"
        assert summary["logp_estimator"] == kind and (df.logp_kind == kind).all()
