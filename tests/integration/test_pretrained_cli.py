"""Pretrained models end to end, offline: a tiny random diffusers folder and an EDM denoiser.

The CLI runs sample with the tracked log p (reverse SDE), the HD sampler, and the PF-ODE
likelihood (a sweep, a corrupt folder and DDP as real subprocesses, the others through the CLI's
`main()` in this process); in-process runs cover evaluation on an image folder and bad
configurations.
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cartoonist import tasks
from cartoonist.pipeline import ConfigError, preflight
from tests.helpers.cli import run_cli
from tests.helpers.pipeline import compose_cfg
from tests.helpers.pretrained import save_tiny_diffusers

pytest.importorskip("diffusers")

# One thread per process: the machine's cores are shared, and oversubscription makes tiny models
# ~50x slower. HF_HUB_OFFLINE: no network, ever.
ENV = dict(
    os.environ,
    WANDB_MODE="disabled",
    HF_HUB_OFFLINE="1",
    OMP_NUM_THREADS="1",
    PYTHONUNBUFFERED="1",
)
SMALL = ["n_samples=4", "batch_size=4", "logger=csv", "trainer.enable_progress_bar=false"]


def _csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _run(task: str, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"cartoonist.{task}"] + args,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_diffusers(tmp_path_factory.mktemp("tiny_ddpm"))


def test_cli_sample_sde_tracked_and_hd(folder, tmp_path):
    """One process, two jobs (-m): reverse SDE with Theorem 1's log p, and Algorithm 1.

    The fast suite's successful run in a fresh interpreter (the other CLI runs are in-process):
    what only a new process shows (imports, resolvers, the sweeper's plugin scan) is seen here.
    """
    r = _run(
        "sample",
        ["-m", "model=diffusers", f"model.path={folder}", "sampler=sde,hd", "sampler.steps=6"]
        + SMALL
        + [f"paths.output_root={tmp_path}"],
    )
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = {d.name.rsplit("sampler=", 1)[-1]: d for d in (tmp_path / "sample" / "adhoc").iterdir()}
    sde, hd = jobs["sde"], jobs["hd"]  # job directories are named by their overrides
    rows = _csv(sde / "per_sample.csv")
    assert {r["estimator"] for r in rows} == {"tracked"} and len(rows) == 4
    D = 3 * 8 * 8
    for row in rows:  # bits/dim on 8-bit pixels: −(log p + D log(2/256)) / (D ln 2)
        want = -(float(row["logp_nats"]) + D * math.log(2 / 256)) / (D * math.log(2))
        assert float(row["bpd"]) == pytest.approx(want) and int(row["nfe"]) == 6
    x = torch.load(hd / "samples.pt", weights_only=True)["x"]
    assert x.shape == (4, 3, 8, 8) and torch.isfinite(x).all()
    assert (hd / "grid.png").exists() and (hd / "DONE").exists()


def test_cli_evaluate_pf_ode(folder, tmp_path, monkeypatch):
    args = ["model=diffusers", f"model.path={folder}", "likelihood=pf_ode", "likelihood.steps=3"]
    args += ["sde_steps=4", "run_name=ode", f"paths.output_root={tmp_path}"]
    assert run_cli("evaluate", args + SMALL, monkeypatch) == 0
    rows = _csv(tmp_path / "evaluate" / "ode" / "per_sample.csv")
    assert {r["estimator"] for r in rows} == {"pf_ode", "sde_tracking"} and len(rows) == 8
    assert all(math.isfinite(float(r["logp_nats"])) for r in rows)


def test_cli_corrupt_weights_exit_2_in_one_line(folder, tmp_path):
    """A real process: its whole stderr is the one line (no warning, no traceback)."""
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    w = bad / "diffusion_pytorch_model.safetensors"
    w.write_bytes(w.read_bytes()[:-64])
    r = _run("sample", ["model=diffusers", f"model.path={bad}", f"paths.output_root={tmp_path}"])
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    assert str(w) in r.stderr and not (tmp_path / "sample").exists()


def test_error_while_loading_exits_2_in_one_line(folder, tmp_path, monkeypatch, capsys):
    """A ConfigError raised inside the task (weights of the wrong shapes): one line, rc 2."""
    import json
    import shutil

    bad = tmp_path / "wrong"
    shutil.copytree(folder, bad)
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps(dict(cfg, block_out_channels=[8, 32])))
    argv = ["model=diffusers", f"model.path={bad}", "logger=csv"]
    rc = run_cli("sample", argv + [f"paths.output_root={tmp_path / 'out'}"], monkeypatch)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: ") and str(bad) in err[-1]
    assert not list((tmp_path / "out").rglob("DONE"))


def test_evaluate_on_an_image_folder(folder, tmp_path):
    """A pretrained model scores real 8-bit images (evaluate source=dataset)."""
    from PIL import Image

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(20):
        k = torch.randint(0, 256, (8, 8, 3), generator=g, dtype=torch.uint8).numpy()
        Image.fromarray(k).save(imgs / f"{i:02d}.png")
    out = tmp_path / "eval"
    over = ["model=diffusers", f"model.path={folder}", "dataset=image_folder"]
    over += [f"dataset.source.path={imgs}", "dataset.source.size=8", "source=dataset"]
    over += ["likelihood=elbo", "likelihood.n_lambda=4", "n_samples=2", "batch_size=2"]
    summary = tasks.evaluate.run(compose_cfg("evaluate", over + ["logger=csv"], out))
    rows = _csv(out / "per_sample.csv")
    assert {r["estimator"] for r in rows} == {"elbo"} and summary["n"] == 2
    assert math.isfinite(summary["bpd_elbo_mean"])
    with pytest.raises(ConfigError, match="shape"):  # 16x16 images, an 8x8 model
        bad = [
            o if not o.startswith("dataset.source.size") else "dataset.source.size=16"
            for o in over
        ]
        tasks.evaluate.run(compose_cfg("evaluate", bad + ["logger=csv"], tmp_path / "bad"))


def test_edm_denoiser_samples_in_process(tmp_path):
    over = ["model=edm", "model.path=tests.helpers.pretrained:GaussianDenoiser"]
    over += ["model.event_shape=[1,4,4]", "sampler=sde", "sampler.steps=20", "logger=csv"]
    summary = tasks.sample.run(compose_cfg("sample", over + ["n_samples=4"], tmp_path / "edm"))
    assert summary["n"] == 4 and math.isfinite(summary["logp_tracked_mean"])


PRE = [
    (["model=diffusers", "model.path=/no/such/folder"], "/no/such/folder"),
    (["model=diffusers"], "model.path"),
    (["model=edm", "model.path=/no/such.pkl", "model.event_shape=[1,2,2]"], "/no/such.pkl"),
    (["model=edm", "model.path=tests.helpers.pretrained:GaussianDenoiser"], "event_shape"),
    (["model=diffusers", "model.path=/tmp", "ckpt_path=/tmp"], "ckpt_path"),
    (["model=diffusers", "model.path=/tmp", "dataset=none", "source=dataset"], "dataset=none"),
    (
        ["model=edm", "model.path=tests.helpers.pretrained:GaussianDenoiser"]
        + ["model.event_shape=[1,2,2]", "likelihood=exact"],
        "likelihood=exact",
    ),
]


@pytest.mark.parametrize("overrides,needle", PRE, ids=[p[1] for p in PRE])
def test_bad_pretrained_configs_fail_before_compute(overrides, needle, tmp_path, capsys):
    task = "evaluate" if any(o.startswith("source=") for o in overrides) else "sample"
    with pytest.raises(SystemExit) as e:
        preflight(task, overrides + [f"paths.output_root={tmp_path}"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not list(tmp_path.rglob("*"))


def test_pickle_refused_without_allow_pickle_and_threshold_checked(folder, tmp_path, capsys):
    import pickle

    from tests.helpers.pretrained import GaussianDenoiser

    pkl = tmp_path / "net.pkl"
    pkl.write_bytes(pickle.dumps(GaussianDenoiser()))
    with pytest.raises(SystemExit):
        preflight("sample", ["model=edm", f"model.path={pkl}", "model.event_shape=[1,2,2]"])
    assert "allow_pickle=true" in capsys.readouterr().err
    # the trained λ range of the tiny DDPM is [−10.1, 9.21]: a threshold above it is refused
    over = [
        "model=diffusers",
        f"model.path={folder}",
        "sampler=hd",
        "sampler.lambda_threshold=9.5",
    ]
    with pytest.raises(ConfigError, match="trained log-SNR range"):
        tasks.sample.run(compose_cfg("sample", over + ["logger=csv"], tmp_path / "thr"))


@pytest.mark.slow
def test_ddp_splits_pretrained_sampling(folder, tmp_path, monkeypatch):
    """trainer=ddp (2 CPU processes) gives the same per-sample log p as one process (the CLI's
    main in this one)."""
    base = ["model=diffusers", f"model.path={folder}", "sampler=sde", "sampler.steps=5"]
    base += ["n_samples=6", "batch_size=2", "logger=csv", f"paths.output_root={tmp_path}"]
    assert run_cli("sample", base + ["run_name=one"], monkeypatch) == 0
    r = _run("sample", base + ["run_name=two", "trainer=ddp", "trainer.devices=2"])
    assert r.returncode == 0, r.stderr[-3000:]
    one = _csv(tmp_path / "sample" / "one" / "per_sample.csv")
    two = _csv(tmp_path / "sample" / "two" / "per_sample.csv")
    assert [r["sample_id"] for r in one] == [r["sample_id"] for r in two] == list("012345")
    for a, b in zip(one, two):  # batches differ in composition: equal up to float32 round-off
        assert float(a["logp_nats"]) == pytest.approx(float(b["logp_nats"]), rel=1e-5)
