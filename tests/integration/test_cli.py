"""End-to-end: smoke runs of train/sample/evaluate, resumption, bad configs, DDP equality."""

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cartoonist import tasks
from cartoonist.pipeline import ConfigError, preflight
from tests.helpers.cli import run_cli
from tests.helpers.pipeline import compose_cfg

# One OpenMP thread per subprocess, as in conftest: on shared cores more threads stall (5× slower).
ENV = dict(os.environ, WANDB_MODE="disabled", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")


def _csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("sampler", ["sde", "pf_ode", "heun", "mode_tracking"])
def test_other_samplers_smoke(tmp_path, sampler):
    out = tmp_path / sampler
    summary = tasks.sample.run(
        compose_cfg("sample", ["debug=smoke", f"sampler={sampler}", "sampler.steps=20"], out)
    )
    assert summary["n"] == 8 and (out / "DONE").exists()


def test_sample_smoke_writes_outputs_and_skips_when_done(tmp_path):
    out = tmp_path / "s"
    # 20 steps, not the default 1000: the outputs and the skip do not depend on the step count
    cfg = compose_cfg("sample", ["debug=smoke", "sampler=hd", "sampler.steps=20"], out)
    summary = tasks.sample.run(cfg)
    for name in ("per_sample.csv", "samples.pt", "grid.png", "summary.json", "DONE"):
        assert (out / name).exists(), name
    rows = _csv(out / "per_sample.csv")
    # the oracle's exact log p, and the one HD sampling tracks (on by default: track_logp=true)
    assert {r["estimator"] for r in rows} == {"exact", "tracked"} and len(rows) == 16
    assert summary["n"] == 8
    mtime = (out / "per_sample.csv").stat().st_mtime
    assert tasks.sample.run(cfg) == summary  # rerun: DONE → skipped
    assert (out / "per_sample.csv").stat().st_mtime == mtime


@pytest.mark.parametrize(
    "likelihood,source",
    [
        ("pf_ode", "samples"),
        ("elbo", "dataset"),
        ("exact", "dataset"),
        ("sde_tracking", "samples"),
    ],
)
def test_evaluate_smoke(tmp_path, likelihood, source):
    out = tmp_path / likelihood
    cfg = compose_cfg(
        "evaluate",
        [
            "debug=smoke",
            f"likelihood={likelihood}",
            f"source={source}",
            "sde_steps=50",
            "likelihood.steps=20" if likelihood == "pf_ode" else "seed=0",
        ],
        out,
    )
    summary = tasks.evaluate.run(cfg)
    ests = {r["estimator"] for r in _csv(out / "per_sample.csv")}
    assert likelihood in ests
    assert f"logp_{likelihood}_mean" in summary and (out / "DONE").exists()


def test_train_smoke_then_resume(tmp_path):
    out = tmp_path / "t"
    over = [
        "debug=smoke",
        "model=mlp",
        "dataset=gmm2d",
        "trainer.max_steps=4",
        "callbacks.checkpoint.every_n_train_steps=2",
    ]
    s1 = tasks.train.run(compose_cfg("train", over, out))
    assert s1["global_step"] == 4 and not s1["resumed"]
    assert (out / "checkpoints" / "last.ckpt").exists() and "val/bpd_elbo" in s1
    (out / "DONE").unlink()
    s2 = tasks.train.run(compose_cfg("train", over[:-2] + ["trainer.max_steps=6"], out))
    assert s2["resumed"] and s2["global_step"] == 6
    # The trained checkpoint loads (weights_only) and samples.
    so = tmp_path / "from_ckpt"
    cfg = compose_cfg(
        "sample",
        [
            "debug=smoke",
            "model=mlp",
            "sampler.steps=10",
            f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}",
        ],
        so,
    )
    assert tasks.sample.run(cfg)["n"] == 8


BAD = [
    (["sampler=nope"], "sampler/nope"),
    (["sampler.stepz=3"], "stepz"),
    (["sampler.steps=abc"], "sampler.steps"),
    (["sampler.steps=-5"], "sampler.steps"),
    (["sampler=hd", "sampler.lambda_threshold=50"], "sampler.lambda_threshold"),
    (["dataset=image_folder", "dataset.source.path=/no/such/dir"], "dataset.source.path"),
    (["model=mlp", "ckpt_path=/no/such.ckpt"], "ckpt_path"),
    (["model=mlp"], "ckpt_path"),
    (["sampler.logp_scheme=rk4"], "sampler.logp_scheme"),
    ([f"ckpt_path={__file__}"], "model=unet or model=mlp"),  # a network is not model=oracle
    (["likelihood=sde_tracking"], "estimator 'tracked'"),  # sample: already the SDE's log p
]


@pytest.mark.parametrize("overrides,key", BAD, ids=[b[1] for b in BAD])
def test_bad_config_fails_in_one_line_before_compute(overrides, key, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        preflight("sample", overrides + [f"paths.output_root={tmp_path}"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err, err
    assert not list(tmp_path.rglob("DONE")) and not list(tmp_path.rglob("*.csv"))


def test_cli_bad_config_exit_code(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cartoonist.sample",
            "sampler.steps=0",
            f"paths.output_root={tmp_path}",
        ],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert r.returncode == 2 and "sampler.steps" in r.stderr and len(r.stderr.splitlines()) == 1
    assert not list(tmp_path.rglob("*"))


@pytest.mark.slow
def test_killed_training_resumes_from_checkpoint(tmp_path, monkeypatch, capfd):
    cmd = [
        sys.executable,
        "-m",
        "cartoonist.train",
        "dataset=gmm2d",
        "model=mlp",
        "logger=csv",
        "trainer.max_steps=400",
        "trainer.val_check_interval=200",
        "callbacks.checkpoint.every_n_train_steps=20",
        "trainer.enable_progress_bar=false",
        f"paths.output_root={tmp_path}",
        "run_name=killme",
    ]
    run_dir = tmp_path / "train" / "killme"
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run_dir / "checkpoints" / "last.ckpt"
    t0 = time.time()
    while not last.exists() and time.time() - t0 < 240 and p.poll() is None:
        time.sleep(0.5)
    assert last.exists(), "no checkpoint appeared"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (run_dir / "DONE").exists()
    # The rerun needs no fresh interpreter: the same command line through the CLI's main here.
    assert run_cli("train", cmd[3:], monkeypatch) == 0
    assert "resuming from" in capfd.readouterr().out
    import json

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resumed"] and summary["global_step"] == 400


@pytest.mark.slow
def test_ddp_evaluate_matches_single_process(tmp_path, monkeypatch):
    base = [
        sys.executable,
        "-m",
        "cartoonist.evaluate",
        "debug=smoke",
        "n_samples=12",
        "batch_size=3",
        "sde_steps=40",
        "likelihood.steps=10",
        f"paths.output_root={tmp_path}",
    ]
    # The single process is the CLI's main here; DDP's two are real processes.
    assert run_cli("evaluate", base[3:] + ["run_name=one"], monkeypatch) == 0
    r = subprocess.run(
        base + ["run_name=two", "trainer=ddp", "trainer.devices=2"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    one = _csv(tmp_path / "evaluate" / "one" / "per_sample.csv")
    two = _csv(tmp_path / "evaluate" / "two" / "per_sample.csv")
    key = lambda rows: [(r["sample_id"], r["estimator"], r["logp_nats"]) for r in rows]  # noqa: E731
    assert len(one) == 24 and key(one) == key(two)


def test_demo_runs_small(tmp_path):
    from cartoonist.tasks.demo import run as run_demo

    out = tmp_path / "demo"
    cfg = compose_cfg(
        "demo",
        [
            "n_samples=8",
            "sde_steps=50",
            "hd_steps=40",
            "model.components=3",
            "model.rank=2",
            "model.iters=5",
        ],
        out,
    )
    summary = run_demo(cfg)
    assert (out / "demo.png").exists() and (out / "DONE").exists()
    # Algorithm 1 from high noise beats regular PF-ODE samples of the same noise (exact log p).
    assert summary["mean_logp[HD λ_thr=-4]"] > summary["mean_logp[PF-ODE]"]


@pytest.mark.slow
def test_hd_threshold_sweep_and_plot(tmp_path, monkeypatch):
    """The multirun sweep (Hydra -m via the experiment), and the collector script.

    Both sweeps through the CLI's main and the script by runpy, in this process (the sweep's
    fresh-interpreter run is tests/integration/test_pretrained_cli.py's).
    """
    import json
    import runpy

    small = ["debug=smoke", "sampler.steps=40", f"paths.output_root={tmp_path}"]
    small += ["model.iters=2"]  # each job fits the digits oracle: 2 EM iterations, not 30 (~2.5 s)
    for exp, extra in (
        ("hd_threshold_baseline", []),
        ("hd_threshold", ["sampler.lambda_threshold=-4,4"]),
    ):
        assert run_cli("sample", [f"experiment={exp}"] + small + extra, monkeypatch) == 0
    jobs = sorted(p for p in (tmp_path / "sample" / "hd_threshold").iterdir() if p.is_dir())
    assert len(jobs) == 4 and all((j / "DONE").exists() for j in jobs)
    script = Path(__file__).resolve().parents[2] / "experiments" / "hd_threshold" / "plot.py"
    monkeypatch.setattr(sys, "argv", [str(script), str(tmp_path)])
    runpy.run_path(str(script), run_name="__main__")
    metrics = json.loads((tmp_path / "figures" / "hd_threshold.json").read_text())
    assert {"mean_logp_sde", "mean_logp_pf_ode", "gain_hd_ode_-4", "gain_hd_sde_4"} <= set(metrics)
    assert metrics["logp_estimator"] == "exact"


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory):
    """An output root holding a tiny digits U-Net where fig1 looks for the fig4 digits model."""
    root = tmp_path_factory.mktemp("smoke_outputs")
    over = [
        "debug=smoke",
        "dataset=digits",
        "model=unet",
        "model.channels=[8,8]",
        "model.emb_dim=16",
        "noise.weighting=elbo",
        "callbacks.checkpoint.every_n_train_steps=4",
    ]
    tasks.train.run(compose_cfg("train", over, root / "train" / "fig4_digits_elbo"))
    assert (root / "train" / "fig4_digits_elbo" / "checkpoints" / "last.ckpt").exists()
    return root


def _finite(metrics: dict) -> bool:
    """Every number is finite (labels such as `logp_estimator` are strings)."""
    return all(math.isfinite(v) for v in metrics.values() if not isinstance(v, str))


def _check_fig3(m: dict) -> None:
    assert {"corr_r_true", "mean_err", "mean_abs_err"} <= set(m) and _finite(m)
    assert {"mean_err_2d_50steps", "mean_err_2d_200steps", "mean_err_1d_50steps"} <= set(m)
    assert 0.5 < m["corr_r_true"] <= 1 and m["mean_abs_err"] >= abs(m["mean_err"])


def _check_fig5(m: dict) -> None:
    assert _finite(m) and m["newton_strict_max_fraction"] == 1.0
    # 60 RK4 steps here (400 give 1e-8); the HD-ODE is near, not on, the mode of a mixture.
    assert m["max_err_mode_tracking"] <= 1e-3 < m["max_err_hd_ode"]


def _check_png_size(m: dict) -> None:
    assert -1 <= m["spearman"] <= 1 and m["n"] == 32 and _finite(m)
    assert m["logp_estimator"] == "exact" and "mean_bpd[sde]" in m  # the faces oracle


def _check_fig1(m: dict) -> None:
    assert _finite(m)
    cols = ["HD-ODE y_0", "x_0 ~ p(x_0|x_t) #1", "x_0 ~ p(x_0|x_t) #2", "E[x_0|x_t]"]
    cols += ["posterior samples"]
    for name, kind in (("faces", ""), ("patches", ""), ("digits (unet)", "_pf_ode")):
        assert {f"{name}: mean_logp{kind}[{c}]" for c in cols} <= set(m), name
        gain = m[f"{name}: mean_logp{kind}[HD-ODE y_0]"]
        gain -= m[f"{name}: mean_logp{kind}[posterior samples]"]
        assert m[f"{name}: hd_gain_over_posterior_nats"] == pytest.approx(gain)
    # Exact oracles: the HD mode is more likely than every posterior sample of the same x_t.
    for name in ("faces", "patches"):
        assert m[f"{name}: hd_gain_over_posterior_nats"] > 0


CHECKS = {
    "fig3_tracking": _check_fig3,
    "fig5_mode_tracking": _check_fig5,
    "png_size": _check_png_size,
    "fig1_hd_samples": _check_fig1,
}


@pytest.mark.parametrize("name", list(CHECKS))
def test_figure_at_debug_smoke_and_replot(smoke_root, name, monkeypatch):
    """Each figure at literally `debug=smoke` (fig1 with its learned part on the tiny U-Net).

    `python experiments/replot.py NAME DIR` runs as a script in this process (runpy, its
    `__main__` and argv; a subprocess would spend ~7 s importing what this one has).
    """
    import json
    import runpy

    import pandas as pd

    out = smoke_root / f"figure_{name}"  # the run dir; its parent is the output root
    cfg = compose_cfg("figure", [f"experiment={name}", "debug=smoke"], out)
    assert cfg.smoke and cfg.paths.figures_dir == str(smoke_root / "figures")
    tasks.figure.run(cfg)
    figs = smoke_root / "figures"
    for ext in ("png", "pdf", "csv", "json"):
        assert (figs / f"{name}.{ext}").exists(), ext
    CHECKS[name](json.loads((figs / f"{name}.json").read_text()))
    if name == "fig1_hd_samples":  # 1 x_t × (x_t, HD, 2 samples, mean) per dataset
        df = pd.read_csv(figs / f"{name}.csv")
        assert len(df) == 3 * 5 and set(df[df.dataset == "digits (unet)"].logp_kind) == {"pf_ode"}
    (figs / f"{name}.png").unlink()
    script = Path(__file__).resolve().parents[2] / "experiments" / "replot.py"
    monkeypatch.setattr(sys, "argv", [str(script), name, str(figs)])
    runpy.run_path(str(script), run_name="__main__")  # sys.exit on an error fails the test
    assert (figs / f"{name}.png").exists()


def test_smoke_figure_writes_under_its_own_root(tmp_path):
    """debug=smoke never touches the real run directory or figure (nor marks it DONE)."""
    cfg = compose_cfg("figure", ["experiment=fig3_tracking", "debug=smoke"])
    assert cfg.paths.output_root.endswith("/smoke") and cfg.compute_smoke.n == 200
    real = compose_cfg("figure", ["experiment=fig3_tracking"])
    assert not real.smoke and real.paths.output_root != cfg.paths.output_root


def test_fig1_missing_checkpoint_fails_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        preflight("figure", ["experiment=fig1_hd_samples", f"paths.output_root={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert "fig4_digits_elbo/checkpoints/last.ckpt" in err and "make fig-models" in err
    with pytest.raises(SystemExit):  # a network of ours without its checkpoint
        preflight("figure", ["experiment=fig3_tracking", "dataset=digits", "model=unet"])
    assert "ckpt_path" in capsys.readouterr().err
    # `~model` drops the learned part: nothing left to validate.
    preflight("figure", ["experiment=fig1_hd_samples", "~model", f"paths.output_root={tmp_path}"])


def test_figure_without_learned_part_rejects_a_model(smoke_root, tmp_path):
    ckpt = smoke_root / "train" / "fig4_digits_elbo" / "checkpoints" / "last.ckpt"
    over = ["experiment=fig3_tracking", "debug=smoke", "dataset=digits", "model=unet"]
    cfg = compose_cfg("figure", over + [f"ckpt_path={ckpt}"], tmp_path / "f")
    with pytest.raises(ConfigError, match="no learned-model part"):
        tasks.figure.run(cfg)
    # A model that cannot score the dataset's images (RGB patches, a grey U-Net): one line.
    over = ["experiment=fig1_hd_samples", "debug=smoke", "dataset=patches"]
    cfg = compose_cfg("figure", over + [f"ckpt_path={ckpt}"], tmp_path / "g")
    with pytest.raises(ConfigError, match=r"cannot score dataset=patches images of shape \(3, "):
        tasks.figure.run(cfg)


def test_hd_threshold_and_png_size_on_our_checkpoint(smoke_root, tmp_path):
    """The two oracle figures take a checkpoint of ours (ckpt_path= model=unet): PF-ODE log p."""
    import json

    ckpt = smoke_root / "train" / "fig4_digits_elbo" / "checkpoints" / "last.ckpt"
    learned = ["model=unet", f"ckpt_path={ckpt}"]
    # One job of the HD sweep (the sweep's CLI runs are tested on a pretrained model).
    over = ["experiment=hd_threshold", "debug=smoke", "sampler.steps=10", "likelihood.steps=4"]
    over += ["sampler.lambda_threshold=0", "sampler.first_stage=ode"]
    cfg = compose_cfg("sample", over + learned, tmp_path / "hd")
    assert cfg.experiment_name == "hd_threshold__ckpt-fig4_digits_elbo"
    summary = tasks.sample.run(cfg)
    rows = _csv(tmp_path / "hd" / "per_sample.csv")
    assert {r["estimator"] for r in rows} == {"pf_ode"} and len(rows) == 8
    assert math.isfinite(summary["logp_pf_ode_mean"]) and math.isfinite(summary["bpd_pf_ode_mean"])
    over = ["experiment=png_size", "debug=smoke", "compute_smoke.n=4", "compute_smoke.steps=6"]
    over += ["compute_smoke.ode_steps=3"]
    cfg = compose_cfg("figure", over + learned, tmp_path / "figure" / "png")
    tasks.figure.run(cfg)
    m = json.loads((Path(cfg.paths.figures_dir) / f"{cfg.figure_name}.json").read_text())
    assert cfg.figure_name == "png_size__ckpt-fig4_digits_elbo"
    assert m["logp_estimator"] == "pf_ode" and m["n"] == 8 and _finite(m)


@pytest.mark.slow
def test_fig4_pipeline_small(tmp_path, monkeypatch):
    """Train a tiny model on the exact 2-D mixture, evaluate r0 / PF-ODE / ELBO, collect fig4."""
    import json
    import runpy

    root = tmp_path / "outputs"
    train_over = ["debug=smoke", "dataset=gmm2d", "model=mlp"]
    tasks.train.run(compose_cfg("train", train_over, root / "train" / "fig4_toy"))
    ckpt = root / "train" / "fig4_toy" / "checkpoints" / "last.ckpt"
    for lik, extra in (("pf_ode", ["likelihood.steps=10"]), ("elbo", ["likelihood.n_lambda=8"])):
        over = [
            "experiment=fig4_r0_ode_elbo",
            "dataset=gmm2d",
            "model=mlp",
            f"likelihood={lik}",
            f"ckpt_path={ckpt}",
            "debug=smoke",
            "sde_steps=50",
        ] + extra
        tasks.evaluate.run(compose_cfg("evaluate", over, root / "evaluate" / f"fig4_toy__{lik}"))
    script = Path(__file__).resolve().parents[2] / "experiments" / "fig4_r0_ode_elbo" / "plot.py"
    monkeypatch.setattr(sys, "argv", [str(script), str(root)])
    runpy.run_path(str(script), run_name="__main__")  # the script as `python plot.py ROOT`
    m = json.loads((root / "figures" / "fig4_r0_ode_elbo.json").read_text())
    assert m["toy/n"] == 8 and 0 <= m["toy/frac_r0_gt_ode_gt_elbo"] <= 1
    assert "toy/mae_pf_ode_vs_data" in m and "toy/spearman_sde_tracking_pf_ode" in m
