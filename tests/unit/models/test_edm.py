"""model=edm: EDM-style denoisers D(x, σ, labels) as scores, and how they are loaded.

Ground truth: the exact posterior mean of a Gaussian-mixture oracle *is* an EDM denoiser (under the
VE path y = x_0 + σ ε), so the adapter's VP-space score must equal the oracle's exact score.
"""

from __future__ import annotations

import math
import pickle
import warnings

import pytest
import torch

from cartoonist import EDM, VP, GaussianMixture, ode_log_prob
from cartoonist.errors import ConfigError
from cartoonist.models.adapters import EDMScore
from cartoonist.models.checkpoint import load_denoiser
from cartoonist.models.edm import EDMDenoiser
from tests.helpers.pretrained import GaussianDenoiser

DT = torch.float64
MEANS = [[-1.0, 0.5, 2.0, 0.0], [1.5, -0.5, 0.0, 1.0]]
VARS = [[0.3, 0.8, 0.5, 0.2], [0.6, 0.2, 1.1, 0.4]]
LO, HI = -2 * math.log(80.0), -2 * math.log(0.002)  # EDM's σ ∈ [0.002, 80] as log-SNR


def _lams(n: int = 6) -> torch.Tensor:
    return torch.linspace(LO, HI, n, dtype=DT)


@pytest.mark.parametrize("schedule", ["vp", "edm"])
def test_oracle_denoiser_gives_the_oracle_score(schedule):
    """EDM denoiser = E[x_0 | y] of the oracle under VE; the adapter's score = exact score."""
    ve = GaussianMixture([0.3, 0.7], MEANS, VARS, schedule=EDM(LO, HI))

    def denoiser(y, sigma):  # the exact EDM denoiser at σ (VE: λ = −2 log σ)
        return ve.posterior_mean(y, -2 * torch.log(sigma))

    sch = VP(LO, HI) if schedule == "vp" else EDM(LO, HI)
    exact = ve.with_schedule(sch)
    score = EDMScore(denoiser, sch, (4,), 0.0)
    g = torch.Generator().manual_seed(0)
    for lam in _lams():
        x = exact.sample_noised(5, lam, g)
        got = score(x, torch.full((5,), float(lam), dtype=DT))
        want = exact.score(x, lam)
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-9 * float(want.abs().max()))


def test_gaussian_denoiser_pf_ode_likelihood_matches_closed_form():
    """End to end through the VP↔VE scaling: PF-ODE log p of data equals N(0, (α²s²+σ²) I)."""
    score = EDMScore(GaussianDenoiser(0.5).double(), VP(LO, HI), (1, 2, 2), 0.0)
    x = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(1), dtype=DT) * 0.5
    res = ode_log_prob(score, score.schedule, x, 40, divergence="exact")
    lam = torch.tensor(HI, dtype=DT)
    var = float(score.schedule.alpha(lam) ** 2 * 0.25 + score.schedule.sigma(lam) ** 2)
    want = -0.5 * 4 * math.log(2 * math.pi * var) - 0.5 * (x**2).sum((1, 2, 3)) / var
    assert torch.allclose(res.logp, want, atol=2e-3)


def _expected_score(x, lam, mu=0.0):
    sch = VP(LO, HI)
    a2, s2 = sch.alpha(lam) ** 2, sch.sigma(lam) ** 2
    a = a2.sqrt().reshape(-1, 1, 1, 1)
    return (a * mu - x) / (a2 * 0.25 + s2).reshape(-1, 1, 1, 1)


def _check_loaded(score, label_mu=0.0):
    x = torch.randn(4, 1, 2, 2, generator=torch.Generator().manual_seed(2), dtype=DT)
    lam = torch.tensor([-5.0, 0.0, 3.0, 10.0], dtype=DT)
    assert torch.allclose(score(x, lam), _expected_score(x, lam, label_mu), rtol=1e-9, atol=1e-9)


def test_import_path_class_and_labels(tmp_path):
    """module:attr of a class (built with no arguments) or a function; one-hot class labels."""
    cfg = dict(event_shape=[1, 2, 2], schedule="vp")
    score = EDMDenoiser("tests.helpers.pretrained:GaussianDenoiser", **cfg).load()
    assert score.schedule == VP(LO, HI) and score.event_shape == (1, 2, 2)
    assert score.log_jacobian == pytest.approx(4 * math.log(2 / 256))
    _check_loaded(score)
    _check_loaded(EDMDenoiser("tests.helpers.pretrained:exact_denoiser", **cfg).load())
    cond = EDMDenoiser("tests.helpers.pretrained:ConditionalDenoiser", class_labels=2, **cfg)
    _check_loaded(cond.load(), label_mu=1.0)  # class 2 → one-hot [0, 0, 1] → μ = 1
    soft = EDMDenoiser(
        "tests.helpers.pretrained:ConditionalDenoiser", class_labels=[[0.5, 0.0, 0.5]], **cfg
    )
    _check_loaded(soft.load(), label_mu=0.0)  # the mean of classes 0 and 2: μ = 0
    with pytest.raises(ConfigError, match="outside"):
        EDMDenoiser("tests.helpers.pretrained:ConditionalDenoiser", class_labels=5, **cfg).load()
    with pytest.raises(ConfigError, match="cannot import"):
        EDMDenoiser("tests.helpers.pretrained:NoSuchThing", **cfg).load()


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_file(tmp_path):
    path = tmp_path / "denoiser.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script is deprecated
        torch.jit.script(GaussianDenoiser()).save(str(path))
    den = EDMDenoiser(str(path), event_shape=[1, 2, 2])
    den.check()  # a TorchScript archive is not a pickle: no allow_pickle needed
    _check_loaded(den.load())


@pytest.mark.parametrize("fmt", ["pickle", "torch_save", "edm_dict"])
def test_pickles_need_allow_pickle(tmp_path, fmt):
    path = tmp_path / "net.pkl"
    net = GaussianDenoiser()
    if fmt == "torch_save":
        torch.save(net, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(dict(ema=net) if fmt == "edm_dict" else net, f)
    with pytest.raises(ConfigError, match="allow_pickle=true") as e:
        EDMDenoiser(str(path), event_shape=[1, 2, 2]).check()
    assert str(path) in str(e.value) and len(str(e.value).splitlines()) == 1
    _check_loaded(EDMDenoiser(str(path), event_shape=[1, 2, 2], allow_pickle=True).load())


def test_bad_paths_and_settings_fail_in_one_line(tmp_path):
    bad = tmp_path / "garbage.pkl"
    bad.write_bytes(b"not a pickle at all")
    cases = [
        (dict(path=str(tmp_path / "missing.pt")), "missing.pt"),
        (dict(path=str(tmp_path)), "not a file"),
        (dict(path=str(bad), allow_pickle=True), "garbage.pkl"),
        (
            dict(path="tests.helpers.pretrained:GaussianDenoiser", sigma_min=1.0, sigma_max=0.5),
            "sigma",
        ),
    ]
    for kw, needle in cases:
        kw.setdefault("event_shape", [1, 2, 2])
        with pytest.raises(ConfigError) as e:
            EDMDenoiser(**kw).load()
        msg = str(e.value)
        assert needle in msg and len(msg.splitlines()) == 1, msg
    with pytest.raises(ConfigError, match="event_shape"):
        EDMDenoiser("tests.helpers.pretrained:GaussianDenoiser", event_shape=None).check()
    with open(tmp_path / "d.pkl", "wb") as f:
        pickle.dump({"net": GaussianDenoiser()}, f)
    with pytest.raises(ConfigError, match="pickle_key"):
        EDMDenoiser(str(tmp_path / "d.pkl"), event_shape=[1, 2, 2], allow_pickle=True).load()


def test_own_checkpoint_loads_weights_only(tmp_path):
    """Our checkpoints are plain data: torch.load(weights_only=True) refuses anything else."""
    from cartoonist.diffusion.losses import TrainingNoise
    from cartoonist.models import MLP

    net, noise = MLP((2,), hidden=8, depth=1, emb_dim=4), TrainingNoise("vp", -8.0, 8.0)
    spec = {
        "net": {
            "_target_": "cartoonist.models.MLP",
            "_partial_": True,
            "hidden": 8,
            "depth": 1,
            "emb_dim": 4,
        },
        "noise": {
            "_target_": "cartoonist.diffusion.losses.TrainingNoise",
            "schedule": "vp",
            "lambda_min": -8.0,
            "lambda_max": 8.0,
        },
        "event_shape": [2],
        "log_jacobian": 0.0,
    }
    sd = {f"ema.{k}": v for k, v in net.state_dict().items()}
    sd.update({f"noise.{k}": v for k, v in noise.state_dict().items()})
    torch.save({"cartoonist": spec, "state_dict": sd}, tmp_path / "ok.ckpt")
    loaded, _, _ = load_denoiser(tmp_path / "ok.ckpt")
    x, lam = torch.randn(3, 2), torch.zeros(3)
    assert torch.equal(loaded(x, lam), net.eval()(x, lam))
    torch.save(
        {"cartoonist": spec, "state_dict": sd, "code": GaussianDenoiser()}, tmp_path / "p.ckpt"
    )
    with pytest.raises(ConfigError, match="cannot load checkpoint"):
        load_denoiser(tmp_path / "p.ckpt")  # an object that needs unpickling code: refused
    assert load_denoiser(tmp_path / "p.ckpt", allow_pickle=True)[2]["event_shape"] == [2]


def test_factory_function_kwargs_and_weights(tmp_path):
    """module:make_net is called with model.kwargs; a state_dict loads into a class."""
    from safetensors.torch import save_file

    cfg = dict(event_shape=[1, 2, 2], schedule="vp")
    fac = EDMDenoiser("tests.helpers.pretrained:make_denoiser", kwargs={"label_dim": 3}, **cfg)
    _check_loaded(EDMDenoiser(**{**fac.__dict__, "class_labels": 2}).load(), label_mu=1.0)
    _check_loaded(EDMDenoiser("tests.helpers.pretrained:make_denoiser", **cfg).load())
    with pytest.raises(ConfigError, match="cannot build"):
        EDMDenoiser("tests.helpers.pretrained:make_denoiser", kwargs={"nope": 1}, **cfg).load()
    with pytest.raises(ConfigError, match="not called as a factory"):
        EDMDenoiser("tests.helpers.pretrained:exact_denoiser", kwargs={"s": 1}, **cfg).load()
    sd = GaussianDenoiser(0.5, 3).state_dict()
    sd["class_means"] = sd["class_means"] + 1.0  # μ_c = c: the weights are used
    save_file(sd, str(tmp_path / "w.safetensors"))
    torch.save(sd, tmp_path / "w.pt")
    for w in ("w.safetensors", "w.pt"):
        den = EDMDenoiser(
            "tests.helpers.pretrained:GaussianDenoiser",
            kwargs={"label_dim": 3},
            weights=str(tmp_path / w),
            class_labels=0,
            **cfg,
        )
        _check_loaded(den.load(), label_mu=0.0)  # class 0 now has mean 0 (was −1)


@pytest.mark.parametrize("fmt", ["safetensors", "torch_save", "pickled_dict"])
def test_a_state_dict_gets_the_advice_that_helps(tmp_path, fmt):
    from safetensors.torch import save_file

    sd = GaussianDenoiser(0.5, 3).state_dict()
    path = tmp_path / ("w.safetensors" if fmt == "safetensors" else "w.pt")
    if fmt == "safetensors":
        save_file(sd, str(path))
    elif fmt == "torch_save":
        torch.save(sd, path)
    else:
        path.write_bytes(pickle.dumps(sd))
    den = EDMDenoiser(str(path), event_shape=[1, 2, 2], allow_pickle=fmt == "pickled_dict")
    with pytest.raises(ConfigError) as e:
        den.load()
    msg = str(e.value)
    assert "this is a state_dict: give model.path=module:Class and model.weights" in msg
    assert "pickle_key" not in msg and len(msg.splitlines()) == 1


def test_per_sample_labels_one_hot_and_range_checked():
    """label_dim=3: a list is cycled over sample ids, "cycle" is i mod 3; one-hot rows."""
    cfg = dict(event_shape=[1, 2, 2], schedule="vp")
    x = torch.randn(4, 1, 2, 2, generator=torch.Generator().manual_seed(2), dtype=DT)
    lam = torch.tensor([-5.0, 0.0, 3.0, 10.0], dtype=DT)
    for spec, classes in (([2, 0], [2, 0, 2, 0]), ("cycle", [0, 1, 2, 0])):
        score = EDMDenoiser(
            "tests.helpers.pretrained:ConditionalDenoiser", class_labels=spec, **cfg
        ).load()
        got = score.for_samples([0, 1, 2, 3])(x, lam)
        for i, c in enumerate(classes):  # class c → μ = c − 1
            want = _expected_score(x[i : i + 1], lam[i : i + 1], c - 1.0)
            assert torch.allclose(got[i : i + 1], want, rtol=1e-9, atol=1e-9)
        assert score.condition_of([1]) == [f"class={classes[1]}"]
    with pytest.raises(ConfigError, match=r"model.class_labels: label 3 .*outside 0..2"):
        EDMDenoiser(
            "tests.helpers.pretrained:ConditionalDenoiser", class_labels=[0, 3], **cfg
        ).load()


def test_edm_import_path_does_not_search_the_working_directory(tmp_path, monkeypatch):
    import sys

    mod = "cartoonist_test_cwd_denoiser_xyz"
    (tmp_path / f"{mod}.py").write_text("def D(x, sigma):\n    return 0 * x\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", ["", str(tmp_path)] + sys.path)
    with pytest.raises(ConfigError, match="model.search_path"):
        EDMDenoiser(f"{mod}:D", event_shape=[1, 2, 2]).load()
    EDMDenoiser(f"{mod}:D", event_shape=[1, 2, 2], search_path=str(tmp_path)).load()
    sys.modules.pop(mod, None)
