"""Scoring a folder of one's own images: `evaluate source=dataset dataset=image_folder`.

Every image is scored by default (`dataset.split=all`), in sorted-path order, each row naming its
file. The model is the exact EDM denoiser of N(0, s² I) (tests.helpers.pretrained), so each
image's PF-ODE log p (exact divergence, no Hutchinson noise) is checked against the closed-form
Gaussian density of that very image: a wrong file ↔ row association would fail it.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from cartoonist import tasks
from cartoonist.data.sources import to_model
from cartoonist.errors import ConfigError
from tests.helpers.pipeline import compose_cfg

S2 = 0.25  # the denoiser's data variance s²
FILES = ["a/00.png", "a/01.png", "b/c/02.png", "b/03.png", "z.png"]


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Five 4×4 grey PNGs in nested folders; {relative path: uint8 pixels [1, 4, 4]}."""
    from PIL import Image

    root = tmp_path_factory.mktemp("imgs")
    g = torch.Generator().manual_seed(1)
    pixels = {}
    for name in FILES:
        k = torch.randint(64, 192, (4, 4), generator=g, dtype=torch.uint8).numpy()
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(k, mode="L").save(root / name)
        pixels[name] = torch.from_numpy(np.array(k))[None]
    (root / "notes.txt").write_text("not an image")
    return root, pixels


def _over(root, *extra):
    over = ["model=edm", "model.path=tests.helpers.pretrained:GaussianDenoiser"]
    over += ["model.event_shape=[1,4,4]", "dataset=image_folder", f"dataset.source.path={root}"]
    over += ["dataset.source.size=4", "dataset.source.channels=1", "source=dataset"]
    over += ["likelihood=pf_ode", "likelihood.divergence=exact", "likelihood.steps=16"]
    # The exact trace by VJPs: the same log p as the JVP backend (agree to 1e-6 nats here) for
    # ~1/20 of the CPU (torch's CPU jvp); the backends themselves are tested in tests/unit.
    over += ["likelihood.backend=reverse"]
    return over + ["batch_size=2", "logger=csv", *extra]


def _gaussian_logp(x: torch.Tensor, lam: float) -> float:
    """log N(x; 0, (α² s² + σ²) I) with α² = sigmoid(λ), σ² = sigmoid(−λ) (nats)."""
    a2, s2 = torch.sigmoid(torch.tensor(lam)), torch.sigmoid(torch.tensor(-lam))
    var = float(a2 * S2 + s2)
    x = x.double().flatten()
    return float(-0.5 * (x @ x) / var - 0.5 * x.numel() * math.log(2 * math.pi * var))


@pytest.fixture(scope="module")
def scored(images, tmp_path_factory):
    """The whole folder scored once (default split=all): (summary, per_sample.csv rows)."""
    root, _ = images
    out = tmp_path_factory.mktemp("all")
    summary = tasks.evaluate.run(compose_cfg("evaluate", _over(root), out))
    return summary, _csv(out / "per_sample.csv")


def test_a_folder_scores_every_image_each_row_naming_its_file(images, scored):
    _, pixels = images
    summary, rows = scored
    assert [r["file"] for r in rows] == sorted(FILES)  # every image, sorted paths, no .txt
    assert [int(r["sample_id"]) for r in rows] == list(range(len(FILES)))
    assert summary["n"] == len(FILES) and summary["split"] == "all"
    lam = 2 * math.log(1 / 0.002)  # λ_max of sigma_min = 0.002 (λ = −2 log σ_EDM)
    D = 16
    for r in rows:
        want = _gaussian_logp(to_model(pixels[r["file"]]), lam)
        # 16 Heun steps of a smooth linear ODE, exact divergence: agrees to well under a nat
        assert float(r["logp_nats"]) == pytest.approx(want, abs=0.05)
        bpd = -(float(r["logp_nats"]) + D * math.log(2 / 256)) / (D * math.log(2))
        assert float(r["bpd"]) == pytest.approx(bpd)  # bits/dim on 8-bit pixels
    assert summary["bpd_pf_ode_mean"] == pytest.approx(np.mean([float(r["bpd"]) for r in rows]))


def test_train_and_val_splits_partition_the_folder(images, scored, tmp_path):
    root, _ = images
    full = {r["file"]: r for r in scored[1]}  # the run of the whole folder
    parts = {}
    for split in ("train", "val"):
        rows = _csv_of(root, tmp_path / split, f"dataset.split={split}")
        parts[split] = [r["file"] for r in rows]
        for r in rows:  # the same image gets the same number whichever split and batch it is in
            assert float(r["logp_nats"]) == pytest.approx(float(full[r["file"]]["logp_nats"]))
    assert len(parts["val"]) == 1  # round(0.1 · 5) = 0 → at least 1
    assert sorted(parts["train"] + parts["val"]) == sorted(FILES)


def _csv_of(root, out, *extra):
    tasks.evaluate.run(compose_cfg("evaluate", _over(root, *extra), out))
    return _csv(out / "per_sample.csv")


def test_bad_folder_settings_fail_in_one_line(images, tmp_path):
    root, _ = images
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["dataset.split=test"], "dataset.split"),
        (["dataset.val_fraction=1.0"], "dataset.val_fraction"),
        (["n_samples=6"], "n_samples=6 exceeds the 5"),
    ]
    for extra, needle in cases:
        with pytest.raises(ConfigError, match=needle) as e:
            tasks.evaluate.run(compose_cfg("evaluate", _over(root, *extra), tmp_path / "bad"))
        assert len(str(e.value).splitlines()) == 1
    over = [
        o if not o.startswith("dataset.source.path") else f"dataset.source.path={empty}"
        for o in _over(root)
    ]
    with pytest.raises(ConfigError, match="no .png/.jpg images"):
        tasks.evaluate.run(compose_cfg("evaluate", over, tmp_path / "bad2"))
    assert not list((tmp_path).rglob("DONE"))
