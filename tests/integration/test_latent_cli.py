"""model=stable_diffusion end to end, offline, on a tiny random SD folder (CLI runs in-process).

The Must show of issue 12: `python -m cartoonist.sample model=stable_diffusion ... sampler=hd`
with a prompt writes decoded images (grid.png, samples.pt `images`) and per-sample log p labelled
as a density of the latent.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from tests.helpers.cli import run_cli
from tests.helpers.latent import save_tiny_sd

pytest.importorskip("diffusers")
pytest.importorskip("transformers")


def _csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_sd(tmp_path_factory.mktemp("tiny_sd"), prediction_type="v_prediction")


def test_sample_hd_with_a_prompt_writes_images_and_latent_log_p(folder, tmp_path, monkeypatch):
    rc = run_cli(
        "sample",
        [
            "model=stable_diffusion",
            f"model.path={folder}",
            "model.prompt=a cat",
            "sampler=hd",
            "sampler.steps=6",
            "sampler.track_logp=true",
            "debug=smoke",
            "n_samples=4",
            "batch_size=2",
            f"paths.output_root={tmp_path}",
            "run_name=sd",
        ],
        monkeypatch,
    )
    assert rc == 0
    out = tmp_path / "sample" / "sd"
    rows = _csv(out / "per_sample.csv")
    assert len(rows) == 4 and {row["estimator"] for row in rows} == {"tracked"}
    for row in rows:
        assert row["condition"] == "a cat"
        assert row["density_of"].startswith("latent z") and "(4×8×8)" in row["density_of"]
        assert float(row["logp_nats"]) == float(row["logp_nats"])  # finite number, not NaN
    summary = json.loads((out / "summary.json").read_text())
    assert summary["density_of"].startswith("latent z")
    assert summary["bpd_unit"] == "bits per latent dimension"
    saved = torch.load(out / "samples.pt", weights_only=True)
    assert saved["x"].shape == (4, 4, 8, 8)  # the latents
    assert saved["images"].shape == (4, 3, 64, 64) and saved["images"].dtype == torch.uint8
    assert (out / "grid.png").stat().st_size > 0 and (out / "DONE").exists()


def test_guided_sampling_reports_the_conditional_log_p_only(folder, tmp_path, monkeypatch):
    """w = 3 with sampler=sde: no tracked value (the guided r is not a log-density); the PF-ODE
    likelihood scores the samples under the conditional model."""
    rc = run_cli(
        "sample",
        [
            "model=stable_diffusion",
            f"model.path={folder}",
            "model.prompt=[a cat,a dog]",
            "model.guidance_scale=3.0",
            "sampler=sde",
            "sampler.steps=4",
            "likelihood=pf_ode",
            "likelihood.steps=3",
            "debug=smoke",
            "n_samples=2",
            "batch_size=2",
            f"paths.output_root={tmp_path}",
            "run_name=guided",
        ],
        monkeypatch,
    )
    assert rc == 0
    out = tmp_path / "sample" / "guided"
    rows = _csv(out / "per_sample.csv")
    assert {row["estimator"] for row in rows} == {"pf_ode"}
    assert [row["condition"] for row in rows] == ["a cat", "a dog"]
    summary = json.loads((out / "summary.json").read_text())
    assert "conditional model (w = 1)" in summary["guidance"]
    assert "logp_tracked_mean" not in summary


def test_a_prompt_on_an_unconditional_model_is_one_line_before_compute(
    tmp_path, monkeypatch, capfd
):
    from tests.helpers.pretrained import save_tiny_diffusers

    pixel = save_tiny_diffusers(tmp_path / "ddpm")
    rc = run_cli(
        "sample",
        [
            "model=diffusers",
            f"model.path={pixel}",
            "model.prompt=a cat",
            "debug=smoke",
            f"paths.output_root={tmp_path}",
        ],
        monkeypatch,
    )
    stderr = capfd.readouterr().err
    assert rc == 2, stderr[-2000:]
    err = [line for line in stderr.splitlines() if "not text-conditional" in line]
    assert len(err) == 1 and "model.prompt" in err[0]


def test_evaluate_an_image_folder_encodes_then_scores_the_latent(folder, tmp_path, monkeypatch):
    from PIL import Image

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = torch.Generator().manual_seed(0)
    for i in range(20):
        px = (torch.rand(64, 64, 3, generator=rng) * 255).to(torch.uint8).numpy()
        Image.fromarray(px).save(imgs / f"{i}.png")
    rc = run_cli(
        "evaluate",
        [
            "model=stable_diffusion",
            f"model.path={folder}",
            "model.prompt=a cat",
            "source=dataset",
            "dataset=image_folder",
            f"dataset.source.path={imgs}",
            "dataset.source.size=64",
            "likelihood=pf_ode",
            "likelihood.steps=3",
            "debug=smoke",
            "n_samples=2",
            "batch_size=2",
            f"paths.output_root={tmp_path}",
            "run_name=ev",
        ],
        monkeypatch,
    )
    assert rc == 0
    out = tmp_path / "evaluate" / "ev"
    rows = _csv(out / "per_sample.csv")
    assert len(rows) == 2 and all(row["density_of"].startswith("latent z") for row in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert "posterior mean" in summary["scored_as"] and summary["density_of"].startswith("latent")
    saved = torch.load(out / "samples.pt", weights_only=True)
    assert saved["x"].shape == (2, 4, 8, 8) and saved["images"].shape == (2, 3, 64, 64)
