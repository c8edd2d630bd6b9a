"""End-to-end: smoke runs of train/sample/evaluate, resumption, bad configs, DDP equality."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cartoonist import tasks
from cartoonist.pipeline import preflight
from tests.pipeline_helpers import compose_cfg

ENV = dict(os.environ, WANDB_MODE="disabled", PYTHONUNBUFFERED="1")


def _csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("sampler", ["sde", "pf_ode", "heun", "mode_tracking"])
def test_other_samplers_smoke(tmp_path, sampler):
    out = tmp_path / sampler
    summary = tasks.sample(
        compose_cfg("sample", ["debug=smoke", f"sampler={sampler}", "sampler.steps=20"], out)
    )
    assert summary["n"] == 8 and (out / "DONE").exists()


def test_sample_smoke_writes_outputs_and_skips_when_done(tmp_path):
    out = tmp_path / "s"
    cfg = compose_cfg("sample", ["debug=smoke", "sampler=hd"], out)
    summary = tasks.sample(cfg)
    for name in ("per_sample.csv", "samples.pt", "grid.png", "summary.json", "DONE"):
        assert (out / name).exists(), name
    rows = _csv(out / "per_sample.csv")
    assert {r["estimator"] for r in rows} == {"exact"} and len(rows) == 8
    assert summary["n"] == 8
    mtime = (out / "per_sample.csv").stat().st_mtime
    assert tasks.sample(cfg) == summary  # rerun: DONE → skipped
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
    summary = tasks.evaluate(cfg)
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
    s1 = tasks.train(compose_cfg("train", over, out))
    assert s1["global_step"] == 4 and not s1["resumed"]
    assert (out / "checkpoints" / "last.ckpt").exists() and "val/bpd_elbo" in s1
    (out / "DONE").unlink()
    s2 = tasks.train(compose_cfg("train", over[:-2] + ["trainer.max_steps=6"], out))
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
    assert tasks.sample(cfg)["n"] == 8


BAD = [
    (["sampler=nope"], "sampler/nope"),
    (["sampler.stepz=3"], "stepz"),
    (["sampler.steps=abc"], "sampler.steps"),
    (["sampler.steps=-5"], "sampler.steps"),
    (["sampler=hd", "sampler.lambda_threshold=50"], "sampler.lambda_threshold"),
    (["dataset=image_folder", "dataset.source.path=/no/such/dir"], "dataset.source.path"),
    (["model=mlp", "ckpt_path=/no/such.ckpt"], "ckpt_path"),
    (["model=mlp"], "ckpt_path"),
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
def test_killed_training_resumes_from_checkpoint(tmp_path):
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
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming from" in r.stdout
    import json

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resumed"] and summary["global_step"] == 400


@pytest.mark.slow
def test_ddp_evaluate_matches_single_process(tmp_path):
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
    for name, extra in (("one", []), ("two", ["trainer=ddp", "trainer.devices=2"])):
        r = subprocess.run(
            base + [f"run_name={name}"] + extra,
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
    from cartoonist.demo import run_demo

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
def test_hd_threshold_sweep_and_plot(tmp_path):
    """The multirun sweep (Hydra -m via the experiment), and the collector script."""
    import json

    small = ["n_samples=8", "sampler.steps=40", "logger=csv", f"paths.output_root={tmp_path}"]
    for exp, extra in (
        ("hd_threshold_baseline", []),
        ("hd_threshold", ["sampler.lambda_threshold=-4,4"]),
    ):
        r = subprocess.run(
            [sys.executable, "-m", "cartoonist.sample", f"experiment={exp}"] + small + extra,
            capture_output=True,
            text=True,
            env=ENV,
        )
        assert r.returncode == 0, r.stderr[-2000:]
    jobs = sorted((tmp_path / "sample" / "hd_threshold").glob("[0-9]*"))
    assert len(jobs) == 4 and all((j / "DONE").exists() for j in jobs)
    r = subprocess.run(
        [sys.executable, "experiments/hd_threshold/plot.py", str(tmp_path)],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((tmp_path / "figures" / "hd_threshold.json").read_text())
    assert {"mean_logp_sde", "mean_logp_pf_ode", "gain_hd_ode_-4", "gain_hd_sde_4"} <= set(metrics)


@pytest.mark.parametrize(
    "name,small",
    [
        ("fig3_tracking", ["compute.n=200", "compute.steps=200", "compute.step_counts=[50,200]"]),
        (
            "fig5_mode_tracking",
            ["compute.n_points=2", "compute.steps=60", "compute.check_every=20"],
        ),
        (
            "fig1_hd_samples",
            [
                "compute.n_rows=1",
                "compute.n_posterior=2",
                "compute.steps=40",
                "compute.iters=3",
                "compute.sources.patches.n=200",
            ],
        ),
        ("png_size", ["compute.n=16", "compute.steps=40", "compute.iters=3"]),
    ],
)
def test_figures_smoke_and_replot(tmp_path, name, small):
    import json

    root = tmp_path / "outputs"
    cfg = compose_cfg(
        "figure", [f"experiment={name}", "logger=csv"] + small, root / "figure" / name
    )
    cfg.paths.figures_dir = str(root / "figures")
    tasks.figure(cfg)
    for ext in ("png", "pdf", "csv", "json"):
        assert (root / "figures" / f"{name}.{ext}").exists(), ext
    metrics = json.loads((root / "figures" / f"{name}.json").read_text())
    if name == "fig5_mode_tracking":
        assert metrics["max_err_mode_tracking"] <= 1e-3  # 60 RK4 steps here; 400 give 1e-8
    elif name == "fig3_tracking":
        assert 0.5 < metrics["corr_r_true"] <= 1
    elif name == "png_size":
        assert -1 <= metrics["spearman"] <= 1 and metrics["n"] == 32
    else:  # the HD mode has a higher exact log p than a posterior sample of the same x_t
        post = metrics["faces: mean_logp[x_0 ~ p(x_0|x_t) #1]"]
        assert metrics["faces: mean_logp[HD-ODE y_0]"] > post
    (root / "figures" / f"{name}.png").unlink()
    r = subprocess.run(
        [sys.executable, "experiments/replot.py", name, str(root / "figures")],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert r.returncode == 0 and (root / "figures" / f"{name}.png").exists(), r.stderr


@pytest.mark.slow
def test_fig4_pipeline_small(tmp_path):
    """Train a tiny model on the exact 2-D mixture, evaluate r0 / PF-ODE / ELBO, collect fig4."""
    import json

    root = tmp_path / "outputs"
    train_over = [
        "dataset=gmm2d",
        "model=mlp",
        "logger=csv",
        "trainer.max_steps=20",
        "trainer.val_check_interval=10",
        "trainer.enable_progress_bar=false",
    ]
    tasks.train(compose_cfg("train", train_over, root / "train" / "fig4_toy"))
    ckpt = root / "train" / "fig4_toy" / "checkpoints" / "last.ckpt"
    for lik, extra in (("pf_ode", ["likelihood.steps=10"]), ("elbo", ["likelihood.n_lambda=8"])):
        over = [
            "experiment=fig4_eval",
            "dataset=gmm2d",
            "model=mlp",
            f"likelihood={lik}",
            f"ckpt_path={ckpt}",
            "n_samples=8",
            "sde_steps=50",
            "logger=csv",
        ] + extra
        tasks.evaluate(compose_cfg("evaluate", over, root / "evaluate" / f"fig4_toy__{lik}"))
    r = subprocess.run(
        [sys.executable, "experiments/fig4_r0_ode_elbo/plot.py", str(root)],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((root / "figures" / "fig4_r0_ode_elbo.json").read_text())
    assert m["toy/n"] == 8 and 0 <= m["toy/frac_r0_gt_ode_gt_elbo"] <= 1
    assert "toy/mae_pf_ode_vs_data" in m and "toy/spearman_sde_tracking_pf_ode" in m
