"""model=sd3 end to end, offline, on a tiny random SD3 folder with precomputed embeddings.

`python -m cartoonist.sample model=sd3 ... sampler=hd` writes decoded images (grid.png, samples.pt
`images`) and per-sample log p labelled as a density of the latent; a folder missing a component
is one line before compute.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.helpers.cli import run_cli
from tests.helpers.latent import save_sd3_embeds, save_tiny_sd3

pytest.importorskip("diffusers")


def _sample(args: list[str], monkeypatch) -> int:
    """`python -m cartoonist.sample ARGS`, in this process (tests.helpers.cli)."""
    return run_cli("sample", args, monkeypatch)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_sd3(tmp_path_factory.mktemp("tiny_sd3"))


def test_sample_hd_writes_images_and_latent_log_p(folder, tmp_path, monkeypatch):
    emb = save_sd3_embeds(tmp_path / "emb.safetensors", n=2)
    rc = _sample(
        [
            "model=sd3",
            f"model.path={folder}",
            f"model.prompt_embeds={emb}",
            "sampler=hd",
            "sampler.steps=6",
            "sampler.track_logp=true",
            "debug=smoke",
            "n_samples=4",
            "batch_size=2",
            f"paths.output_root={tmp_path}",
            "run_name=sd3",
        ],
        monkeypatch,
    )
    assert rc == 0
    out = tmp_path / "sample" / "sd3"
    with open(out / "per_sample.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {row["estimator"] for row in rows} == {"tracked"}
    assert [row["condition"] for row in rows] == [f"prompt_embeds[{i % 2}]" for i in range(4)]
    for row in rows:
        assert row["density_of"].startswith("latent z") and "(4×8×8)" in row["density_of"]
        assert "sd3" in row["density_of"]
        assert float(row["logp_nats"]) == float(row["logp_nats"])  # a number, not NaN
    summary = json.loads((out / "summary.json").read_text())
    assert summary["density_of"].startswith("latent z")
    assert summary["bpd_unit"] == "bits per latent dimension"
    saved = torch.load(out / "samples.pt", weights_only=True)
    assert saved["x"].shape == (4, 4, 8, 8)  # the latents
    assert saved["images"].shape == (4, 3, 64, 64) and saved["images"].dtype == torch.uint8
    assert (out / "grid.png").stat().st_size > 0 and (out / "DONE").exists()


def test_a_missing_component_is_one_line_before_compute(folder, tmp_path, monkeypatch, capfd):
    emb = save_sd3_embeds(tmp_path / "emb.safetensors")
    broken = tmp_path / "no_vae"
    shutil.copytree(folder, broken)
    shutil.rmtree(broken / "vae")
    rc = _sample(
        [
            "model=sd3",
            f"model.path={broken}",
            f"model.prompt_embeds={emb}",
            "debug=smoke",
            f"paths.output_root={tmp_path}",
        ],
        monkeypatch,
    )
    stderr = capfd.readouterr().err
    assert rc == 2, stderr[-2000:]
    err = [line for line in stderr.splitlines() if "no vae/ folder" in line]
    assert len(err) == 1 and str(broken) in err[0]
    assert not (tmp_path / "sample").exists() or not any(Path(tmp_path / "sample").rglob("*.pt"))
