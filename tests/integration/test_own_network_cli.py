"""Issue 12 failures, end to end: integer time embeddings, per-sample class labels, model=network.

* a diffusers UNet with a learned (table-lookup) time embedding runs with model.timestep=nearest
  (it crashed in torch.embedding on float timesteps);
* class labels per sample: a list / "cycle", range-checked before compute, recorded in
  per_sample.csv's `condition` column, and a sample's numbers do not depend on its batch;
* model=network from a folder of one's own (model.search_path) through `python -m
  cartoonist.sample`.
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
from cartoonist.pipeline import preflight
from tests.helpers.cli import run_cli
from tests.helpers.pipeline import compose_cfg
from tests.helpers.pretrained import save_tiny_diffusers

pytest.importorskip("diffusers")

SMALL = ["logger=csv", "trainer.enable_progress_bar=false"]


def _csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_learned_time_embedding_with_nearest_timesteps(tmp_path):
    """time_embedding_type="learned" (nn.Embedding): sample + PF-ODE likelihood run."""
    folder = save_tiny_diffusers(
        tmp_path / "learned", num_train_timesteps=100, time_embedding_type="learned"
    )
    over = ["model=diffusers", f"model.path={folder}", "model.timestep=nearest"]
    over += ["sampler=sde", "sampler.steps=4", "likelihood=pf_ode", "likelihood.steps=2"]
    over += ["n_samples=2", "batch_size=2"] + SMALL
    summary = tasks.sample.run(compose_cfg("sample", over, tmp_path / "out"))
    assert summary["n"] == 2 and math.isfinite(summary["logp_pf_ode_mean"])
    rows = _csv(tmp_path / "out" / "per_sample.csv")
    assert "condition" not in rows[0]  # an unconditional model has no condition column


@pytest.fixture(scope="module")
def cond_folder(tmp_path_factory):
    return save_tiny_diffusers(tmp_path_factory.mktemp("cond"), num_class_embeds=3)


def test_class_labels_per_sample_batch_invariant_and_recorded(cond_folder, tmp_path):
    base = ["model=diffusers", f"model.path={cond_folder}", "model.class_labels=[2,0,1,1,0]"]
    base += ["sampler=sde", "sampler.steps=3", "n_samples=5"] + SMALL
    out = {}
    for bs in (5, 2):
        cfg = compose_cfg("sample", base + [f"batch_size={bs}"], tmp_path / f"bs{bs}")
        tasks.sample.run(cfg)
        out[bs] = _csv(tmp_path / f"bs{bs}" / "per_sample.csv")
    assert [r["condition"] for r in out[5]] == [f"class={c}" for c in (2, 0, 1, 1, 0)]
    for a, b in zip(out[5], out[2]):  # same sample id, different batch: the same numbers
        assert a["sample_id"] == b["sample_id"] and a["condition"] == b["condition"]
        assert float(a["logp_nats"]) == pytest.approx(float(b["logp_nats"]), rel=1e-5)
    x5 = torch.load(tmp_path / "bs5" / "samples.pt", weights_only=True)["x"]
    x2 = torch.load(tmp_path / "bs2" / "samples.pt", weights_only=True)["x"]
    assert torch.allclose(x5, x2, rtol=1e-4, atol=1e-4)  # float32 round-off of batching


@pytest.mark.parametrize(
    "labels,needle",
    [("3", "outside 0..2"), ("[0,1,7]", "outside 0..2"), ("[0.5,1]", "must be an int")],
)
def test_label_out_of_range_is_one_line_before_compute(
    cond_folder, tmp_path, capsys, labels, needle
):
    over = ["model=diffusers", f"model.path={cond_folder}", f"model.class_labels={labels}"]
    with pytest.raises(SystemExit) as e:
        preflight("sample", over + [f"paths.output_root={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert "model.class_labels" in err and needle in err, err
    assert not list(tmp_path.rglob("*"))


NET = '''
import torch
from torch import nn


class EpsNet(nn.Module):
    """ε-network with nn.Embedding time and class embeddings."""

    def __init__(self, steps=100, num_classes=3):
        super().__init__()
        self.num_classes = num_classes
        self.t = nn.Embedding(steps, 1)
        self.c = nn.Embedding(num_classes, 1)

    def forward(self, x, t, class_labels=None):
        h = 0.5 * x + self.t(t)[:, :, None, None]
        if class_labels is not None:
            h = h + self.c(class_labels)[:, :, None, None]
        return torch.tanh(h)
'''


def test_cli_own_network_from_a_folder(tmp_path, monkeypatch):
    """python -m cartoonist.sample model=network: search_path needed, labels cycled, HD runs.

    The refusal is a real process started in the module's folder (`python -m` puts the working
    directory first on sys.path); the run with model.search_path is the CLI's main in this
    process (tests.helpers.cli), its module forgotten afterwards.
    """
    code = tmp_path / "code"
    code.mkdir()
    (code / "my_eps_net.py").write_text(NET)
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    args = [sys.executable, "-m", "cartoonist.sample", "model=network"]
    args += ["model.path=my_eps_net:EpsNet", "model.kwargs={steps:100}", "model.num_steps=100"]
    args += ["model.event_shape=[1,4,4]", "model.class_labels=cycle", "sampler=hd"]
    args += ["sampler.steps=4", "sampler.track_logp=true", "n_samples=4", "batch_size=4"]
    args += SMALL + [f"paths.output_root={tmp_path / 'runs'}", "run_name=own"]
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, cwd=code)
    assert r.returncode == 2 and "model.search_path" in r.stderr, r.stderr[-2000:]
    monkeypatch.chdir(tmp_path)
    try:
        assert run_cli("sample", args[3:] + [f"model.search_path={code}"], monkeypatch) == 0
    finally:
        sys.modules.pop("my_eps_net", None)
    rows = _csv(tmp_path / "runs" / "sample" / "own" / "per_sample.csv")
    assert [r["condition"] for r in rows] == ["class=0", "class=1", "class=2", "class=0"]
    assert all(math.isfinite(float(r["logp_nats"])) for r in rows)
