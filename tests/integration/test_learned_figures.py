"""hd_threshold and png_size on learned models (offline): PF-ODE log p where no exact one exists.

A tiny random diffusers UNet (8×8 RGB) stands in for a downloaded model; the oracle runs keep their
exact log p. Sizes are tiny: the numbers are checked for shape, labels and finiteness, and the
sample task's PF-ODE log p against the exact one on a 2-D oracle.
"""

from __future__ import annotations

import csv
import json
import math
import runpy
from pathlib import Path

import pytest

from cartoonist import tasks
from tests.helpers.cli import run_cli
from tests.helpers.pipeline import compose_cfg

pytest.importorskip("diffusers")

ROOT = Path(__file__).resolve().parents[2]
D = 3 * 8 * 8  # the tiny UNet's examples: [3, 8, 8] in [−1, 1]


def _csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _finite_numbers(m: dict) -> bool:
    return all(math.isfinite(v) for v in m.values() if isinstance(v, (int, float)))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from tests.helpers.pretrained import save_tiny_diffusers

    return save_tiny_diffusers(tmp_path_factory.mktemp("tiny_ddpm"))


def test_sample_scores_each_sample_with_the_likelihood_group(tmp_path):
    """likelihood=pf_ode on the sample task: the PF-ODE log p of each sample, its own NFE.

    On the exact 2-D mixture (exact trace, 40 Heun steps) it equals the exact log p of the same
    sample to 0.05 nats, so rows are matched to the right samples.
    """
    over = ["debug=smoke", "sampler.steps=30", "likelihood=pf_ode", "likelihood.steps=40"]
    over += ["likelihood.divergence=exact"]
    summary = tasks.sample.run(compose_cfg("sample", over, tmp_path / "s"))
    rows = _csv(tmp_path / "s" / "per_sample.csv")
    by = {(r["estimator"], r["sample_id"]): r for r in rows}
    assert {r["estimator"] for r in rows} == {"tracked", "exact", "pf_ode"}
    for i in range(8):
        ode, exact = by[("pf_ode", str(i))], by[("exact", str(i))]
        assert abs(float(ode["logp_nats"]) - float(exact["logp_nats"])) < 0.05
        assert int(exact["nfe"]) == 30 and int(ode["nfe"]) > 40  # Heun: ~2 per step
    assert math.isfinite(summary["bpd_pf_ode_mean"])


def _sample_cli(args: list[str], monkeypatch) -> None:
    """`python -m cartoonist.sample ARGS` in this process (tests.helpers.cli)."""
    assert run_cli("sample", args, monkeypatch) == 0


def test_hd_threshold_pipeline_on_a_pretrained_model(folder, tmp_path, monkeypatch):
    """`make hd_threshold ARGS="model=diffusers model.path=..."` at tiny size: both multiruns
    (Hydra -m via the experiments), then the collector with the same overrides.
    """
    args = ["model=diffusers", f"model.path={folder}", "debug=smoke", "n_samples=4"]
    args += ["batch_size=4", "sampler.steps=6", "likelihood.steps=3"]
    args += [f"paths.output_root={tmp_path}"]
    _sample_cli(["experiment=hd_threshold_baseline"] + args, monkeypatch)
    _sample_cli(
        ["experiment=hd_threshold"] + args + ["sampler.lambda_threshold=-4,4"], monkeypatch
    )
    name = f"hd_threshold__diffusers-{folder.name}"
    sde = _csv(
        tmp_path
        / "sample"
        / f"hd_threshold_baseline__diffusers-{folder.name}"
        / next(  # the job named by its overrides, the sampler last
            p.name
            for p in (
                tmp_path / "sample" / f"hd_threshold_baseline__diffusers-{folder.name}"
            ).iterdir()
            if p.name.endswith("sampler=sde")
        )
        / "per_sample.csv"
    )
    assert {r["estimator"] for r in sde} == {"tracked", "pf_ode"}  # no exact log p
    jobs = sorted(p for p in (tmp_path / "sample" / name).iterdir() if p.is_dir())
    assert len(jobs) == 4 and all((j / "DONE").exists() for j in jobs)
    plot = runpy.run_path(str(ROOT / "experiments" / "hd_threshold" / "plot.py"))
    plot["main"](args)
    figs = tmp_path / "figures"
    m = json.loads((figs / f"{name}.json").read_text())
    assert m["logp_estimator"] == "pf_ode" and _finite_numbers(m)
    for stage in ("ode", "sde"):
        for thr in ("-4", "4"):
            assert math.isfinite(m[f"mean_logp_hd_{stage}_{thr}"])
            assert math.isfinite(m[f"mean_bpd_hd_{stage}_{thr}"])
    table = _csv(figs / f"{name}.csv")
    assert {r["estimator"] for r in table} == {"pf_ode"} and len(table) == 2 + 4
    for r in table:  # bits/dim on 8-bit pixels: −(log p + D log(2/256)) / (D ln 2)
        want = -(float(r["mean_logp"]) + D * math.log(2 / 256)) / (D * math.log(2))
        assert float(r["mean_bpd"]) == pytest.approx(want, rel=1e-9)
    assert (figs / f"{name}.png").exists()
    assert not (figs / "hd_threshold.json").exists()  # the oracle figure's name is left alone


def test_png_size_on_a_pretrained_model(folder, tmp_path):
    """`make png_size ARGS="model=diffusers model.path=..."` at debug=smoke, tinier still."""
    over = ["experiment=png_size", "debug=smoke", "model=diffusers", f"model.path={folder}"]
    over += ["compute_smoke.n=4", "compute_smoke.steps=6", "compute_smoke.ode_steps=3"]
    over += ["compute.batch_size=3"]  # two batches: 3 + 1
    cfg = compose_cfg("figure", over, tmp_path / "figure" / "png")
    assert cfg.figure_name == f"png_size__diffusers-{folder.name}"
    tasks.figure.run(cfg)
    figs = Path(cfg.paths.figures_dir)
    m = json.loads((figs / f"{cfg.figure_name}.json").read_text())
    assert m["logp_estimator"] == "pf_ode" and m["n"] == 8 and _finite_numbers(m)
    assert -1 <= m["spearman"] <= 1 and {"mean_bpd[sde]", "mean_bpd[hd λ_thr=0]"} <= set(m)
    rows = _csv(figs / f"{cfg.figure_name}.csv")
    assert {r["logp_kind"] for r in rows} == {"pf_ode"} and len(rows) == 8
    for r in rows:
        want = (float(r["neg_logp"]) - D * math.log(2 / 256)) / (D * math.log(2))
        assert float(r["bpd"]) == pytest.approx(want, rel=1e-9)
    (figs / f"{cfg.figure_name}.png").unlink()  # `make plot-<name>` finds plot_png_size
    runpy.run_path(str(ROOT / "experiments" / "replot.py"))["replot"](cfg.figure_name, figs)
    assert (figs / f"{cfg.figure_name}.png").exists()


def test_hd_threshold_collector_keeps_the_exact_log_p_of_the_oracle(tmp_path, monkeypatch):
    """The default (oracle) sweeps: no PF-ODE, the figure uses and says `exact`, old names."""
    args = ["debug=smoke", "n_samples=4", "batch_size=4", "sampler.steps=6", "model.iters=2"]
    args += [f"paths.output_root={tmp_path}"]
    _sample_cli(["experiment=hd_threshold_baseline"] + args, monkeypatch)
    _sample_cli(["experiment=hd_threshold"] + args + ["sampler.lambda_threshold=0"], monkeypatch)
    (job,) = [
        d for d in (tmp_path / "sample" / "hd_threshold").iterdir() if "first_stage=ode" in d.name
    ]
    hd = _csv(job / "per_sample.csv")
    assert {r["estimator"] for r in hd} == {"exact"}  # the oracle's samples are not re-scored
    runpy.run_path(str(ROOT / "experiments" / "hd_threshold" / "plot.py"))["main"]([str(tmp_path)])
    m = json.loads((tmp_path / "figures" / "hd_threshold.json").read_text())
    assert m["logp_estimator"] == "exact" and _finite_numbers(m)
    assert {"mean_logp_sde", "mean_logp_pf_ode", "gain_hd_ode_0", "gain_hd_sde_0"} <= set(m)
    assert {r["estimator"] for r in _csv(tmp_path / "figures" / "hd_threshold.csv")} == {"exact"}


def test_fig1_without_images_for_the_learned_part_fails_in_one_line(folder, tmp_path):
    """png_size needs no data (dataset=none); Fig. 1's part (b) noises images, so it says so."""
    from cartoonist.pipeline import ConfigError

    over = ["experiment=fig1_hd_samples", "debug=smoke", "model=diffusers", f"model.path={folder}"]
    cfg = compose_cfg("figure", over + ["dataset=none"], tmp_path / "figure" / "f1")
    with pytest.raises(ConfigError, match="noises images") as e:
        tasks.figure.run(cfg)
    assert len(str(e.value).splitlines()) == 1 and not (tmp_path / "figures").exists()


def test_hd_threshold_job_on_an_edm_denoiser_scores_samples_correctly(tmp_path):
    """model=edm: one HD job of the sweep; its PF-ODE log p is checked against the exact one.

    The test denoiser is exact for x_0 ~ N(0, s² I), s = 0.5, so at λ_max the density is
    N(0, (α² s² + σ²) I) with α² = sigmoid(λ_max), σ² = sigmoid(−λ_max).
    """
    import torch

    over = ["experiment=hd_threshold", "model=edm", "model.event_shape=[1,4,4]"]
    over += ["model.path=tests.helpers.pretrained:GaussianDenoiser", "debug=smoke"]
    over += ["sampler.lambda_threshold=0", "sampler.first_stage=ode", "sampler.steps=20"]
    over += ["likelihood.steps=16", "likelihood.divergence=exact"]
    over += ["likelihood.backend=reverse"]  # the same trace as JVPs, ~1/20 of the CPU
    cfg = compose_cfg("sample", over, tmp_path / "edm")
    assert cfg.experiment_name == "hd_threshold__edm-tests.helpers.pretrained-GaussianDenoiser"
    tasks.sample.run(cfg)
    rows = _csv(tmp_path / "edm" / "per_sample.csv")
    assert {r["estimator"] for r in rows} == {"pf_ode"} and len(rows) == 8
    x = torch.load(tmp_path / "edm" / "samples.pt", weights_only=True)["x"].double()
    lam_max = -2 * math.log(0.002)  # model.sigma_min
    var = 0.25 * torch.sigmoid(torch.tensor(lam_max)) + torch.sigmoid(torch.tensor(-lam_max))
    dim = x[0].numel()
    exact = -0.5 * (x.flatten(1) ** 2).sum(1) / var - 0.5 * dim * torch.log(2 * math.pi * var)
    for r in rows:
        assert abs(float(r["logp_nats"]) - float(exact[int(r["sample_id"])])) < 0.05
