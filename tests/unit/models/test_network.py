"""Your own network (`score_of_network`, model=network) against the exact score of Gaussian data.

The "network" below knows its own convention and computes α, σ from its time input by itself
(DDPM ᾱ from the diffusers scheduler when available, else from the betas; σ_D = σ/α; c_noise),
then returns the exact prediction of x_0 ~ N(μ, s² I). The wrapped score must equal the exact
score (α μ − x)/(α² s² + σ²) at the λ asked for, for every time convention and prediction type:
a wrong sign or a wrong λ conversion fails.
"""

from __future__ import annotations

import math
import sys

import pytest
import torch
from torch import Tensor, nn

from cartoonist.diffusion.schedules import VE, VP
from cartoonist.errors import ConfigError
from cartoonist.models import ddpm_alphas_cumprod, score_of_network
from cartoonist.models.class_labels import ClassLabels
from cartoonist.models.network import NetworkModel

DT = torch.float64
MU, S = 0.3, 0.5
N = 50


def _abar(kind: str) -> Tensor:
    """ᾱ_n of the DDPM schedule, from diffusers' own scheduler if installed (an outside oracle)."""
    try:
        from diffusers import DDPMScheduler
    except ImportError:
        betas = (
            torch.linspace(1e-4, 0.02, N, dtype=DT)
            if kind == "linear"
            else torch.tensor(
                [
                    min(
                        1
                        - math.cos((n + 1 + 0.008 * N) / (N * 1.008) * math.pi / 2) ** 2
                        / math.cos((n + 0.008 * N) / (N * 1.008) * math.pi / 2) ** 2,
                        0.999,
                    )
                    for n in range(N)
                ],
                dtype=DT,
            )
        )
        return torch.cumprod(1 - betas, 0)
    name = "linear" if kind == "linear" else "squaredcos_cap_v2"
    return DDPMScheduler(num_train_timesteps=N, beta_schedule=name).alphas_cumprod.double()


class GaussianNet(nn.Module):
    """The exact prediction of x_0 ~ N(μ_c, s² I) under the stated convention (no parameters).

    Class c (labels [B] long) has mean μ + c; unconditional: μ.
    """

    def __init__(self, prediction: str, time: str, ve: bool = False, abar: Tensor | None = None):
        super().__init__()
        self.prediction, self.time, self.ve, self.abar = prediction, time, ve, abar
        self.seen_dtypes: list = []

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        if self.time == "ddpm_step":
            assert t.dtype == torch.long
            a2 = self.abar[t]
            return a2.sqrt(), (1 - a2).sqrt()
        if self.time == "ddpm_t":
            n = t * (len(self.abar) - 1)
            assert torch.allclose(n, n.round(), atol=1e-6)  # tested at the trained steps
            a2 = self.abar[n.round().long()]
            return a2.sqrt(), (1 - a2).sqrt()
        if self.time == "sigma":
            sd = t
        elif self.time == "c_noise":
            sd = torch.exp(4 * t)
        else:  # lambda
            sd = torch.exp(-t / 2)
        if self.ve:
            return torch.ones_like(sd), sd
        return 1 / torch.sqrt(1 + sd**2), sd / torch.sqrt(1 + sd**2)

    def forward(self, x: Tensor, t: Tensor, class_labels: Tensor | None = None) -> Tensor:
        self.seen_dtypes.append(t.dtype)
        a, s = (v.to(x.dtype).reshape(-1, *[1] * (x.dim() - 1)) for v in self.alpha_sigma(t))
        mu = torch.full_like(x, MU)
        if class_labels is not None:
            mu = mu + class_labels.to(x.dtype).reshape(a.shape)
        var = a * a * S * S + s * s
        eps = s * (x - a * mu) / var
        x0 = mu + a * S * S * (x - a * mu) / var
        return {
            "epsilon": eps,
            "x0": x0,
            "v": a * eps - s * x0,
            "score": -(x - a * mu) / var,
        }[self.prediction]


def _exact_score(x, lam, ve, mu=MU):
    lam = lam.reshape(-1, *[1] * (x.dim() - 1))
    a2 = torch.ones_like(lam) if ve else torch.sigmoid(lam)
    s2 = torch.exp(-lam) if ve else torch.sigmoid(-lam)
    return (a2.sqrt() * mu - x) / (a2 * S * S + s2)


CASES = [
    ("ddpm_step", "linear"),
    ("ddpm_step", "cosine"),
    ("ddpm_t", "linear"),
    ("ddpm_t", "cosine"),
    ("sigma", "vp"),
    ("sigma", "ve"),
    ("lambda", "vp"),
    ("lambda", "ve"),
    ("c_noise", "vp"),
    ("c_noise", "ve"),
]


@pytest.mark.parametrize("prediction", ["epsilon", "v", "x0", "score"])
@pytest.mark.parametrize("time,schedule", CASES, ids=[f"{t}-{s}" for t, s in CASES])
def test_wrapped_score_is_the_exact_score(prediction, time, schedule):
    ve = schedule == "ve"
    if schedule in ("linear", "cosine"):
        abar = _abar(schedule)
        assert torch.allclose(ddpm_alphas_cumprod(schedule, N), abar, rtol=1e-5)
        sched = abar  # the scheduler's ᾱ_n; tested at its trained steps n
        lam = (torch.log(abar) - torch.log1p(-abar))[torch.tensor([0, 7, 23, N - 2])]
    else:
        sched = VE(-8.0, 9.0) if ve else VP(-9.0, 9.0)
        lam = torch.tensor([-7.5, -1.0, 0.5, 8.0], dtype=DT)
        abar = None
    net = GaussianNet(prediction, time, ve, abar)
    score = score_of_network(
        net, prediction=prediction, time=time, schedule=sched, event_shape=(1, 2, 2)
    )
    x = torch.randn(4, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=DT)
    got = score(x, lam.to(DT))
    want = _exact_score(x, lam.to(DT), ve)
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-8), (got - want).abs().max()
    assert isinstance(score.schedule, VE if ve else VP)


def test_ddpm_step_feeds_the_nearest_step_as_long_to_an_embedding():
    """An nn.Embedding time embedding: λ between trained steps goes to the nearest one."""
    abar = ddpm_alphas_cumprod("linear", N)
    lam_n = torch.log(abar) - torch.log1p(-abar)

    class EmbNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(N, 4)
            self.seen: list[Tensor] = []

        def forward(self, x, t):
            self.seen.append(t)
            return x * self.emb(t).sum(1).reshape(-1, 1, 1, 1)

    net = EmbNet()
    score = score_of_network(
        net, prediction="epsilon", time="ddpm_step", schedule=abar, event_shape=(1, 2, 2)
    )
    w = torch.tensor([0.3, 0.7, 0.5001, 0.0])  # between steps 10 and 11
    lam = (1 - w) * lam_n[10] + w * lam_n[11]
    out = score(torch.randn(4, 1, 2, 2), lam.float())
    t = net.seen[-1]
    assert t.dtype == torch.long and t.tolist() == [
        int((lam_n - v).abs().argmin()) for v in lam.double()
    ]
    assert torch.isfinite(out).all()
    # forward-mode AD through the embedding (the PF-ODE/HD estimators' JVPs)
    x, v = torch.randn(2, 1, 2, 2), torch.randn(2, 1, 2, 2)
    _, jvp = torch.func.jvp(lambda y: score(y, lam[:2].float()), (x,), (v,))
    assert torch.isfinite(jvp).all()


def test_conditions_are_keyed_by_sample_id_not_batch_position():
    """The same sample id in different batches gets the same label and the same score."""
    net = GaussianNet("epsilon", "lambda")
    labels = ClassLabels([0, 2, 1, 2], num_classes=3)
    score = score_of_network(
        net,
        prediction="epsilon",
        time="lambda",
        schedule=VP(-9.0, 9.0),
        event_shape=(1, 2, 2),
        class_labels=labels,
    )
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 1, 2, 2, generator=g, dtype=DT)  # x[i] is sample i's point
    lam = torch.linspace(-3, 3, 6, dtype=DT)
    full = score.for_samples(range(6))(x, lam)
    for ids in ([5, 1], [3], [4, 0, 2]):
        part = score.for_samples(ids)(x[ids], lam[ids])
        assert torch.equal(part, full[ids])
    mus = MU + torch.tensor([0, 2, 1, 2, 0, 2], dtype=DT)  # sample i gets list[i mod 4]
    for i in range(6):
        assert torch.allclose(full[i], _exact_score(x[i : i + 1], lam[i : i + 1], False, mus[i]))
    assert score.condition_of([5, 1]) == ["class=2", "class=2"]
    assert not torch.allclose(full[1], score.for_samples([0])(x[1:2], lam[1:2])[0])


def test_class_labels_forms_and_range_checks(tmp_path):
    assert ClassLabels(2, 3).of([0, 7]).tolist() == [2, 2]
    assert ClassLabels("cycle", 3).of([0, 1, 2, 3, 7]).tolist() == [0, 1, 2, 0, 1]
    f = tmp_path / "labels.csv"
    f.write_text("label\n1\n0\n\n2\n")
    assert ClassLabels(str(f), 3).of([0, 1, 2, 3]).tolist() == [1, 0, 2, 1]
    assert ClassLabels(1, 3, one_hot=True).of([4]).tolist() == [[0.0, 1.0, 0.0]]
    assert ClassLabels([[0.5, 0, 0.5]], 3, one_hot=True).describe([9]) == ["label=[0.5 0 0.5]"]
    bad = [
        (5, "outside 0..2"),
        ([0, 1, 3], "outside 0..2"),
        (-1, "outside 0..2"),
        (True, "must be an int"),
        ([0.5, 1.5], "must be an int"),
        ("nope.txt", "not a file"),
        ([[1.0, 0.0, 0.0]], "not label vectors"),
    ]
    for spec, needle in bad:
        with pytest.raises(ConfigError) as e:
            ClassLabels(spec, 3)
        msg = str(e.value)
        assert msg.startswith("model.class_labels") and needle in msg, msg
        assert len(msg.splitlines()) == 1
    f.write_text("0\n7\n")
    with pytest.raises(ConfigError, match=r"model.class_labels: label 7 .*line 2.* outside 0..2"):
        ClassLabels(str(f), 3)
    with pytest.raises(ConfigError, match="cycle needs"):
        ClassLabels("cycle", None)
    pkl = tmp_path / "labels.pkl"
    pkl.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ConfigError, match=".txt or .csv"):
        ClassLabels(str(pkl), 3)


# -- model=network: the config object ------------------------------------------------------------
class TinyEps(nn.Module):
    """An ε-network with a learned (table-lookup) time embedding over `steps` DDPM steps."""

    def __init__(self, channels: int = 1, steps: int = 1000, num_classes: int = 0):
        super().__init__()
        self.emb = nn.Embedding(steps, channels)
        self.conv = nn.Conv2d(channels, channels, 1)
        self.num_classes = num_classes
        if num_classes:
            self.cls = nn.Embedding(num_classes, channels)

    def forward(self, x, t, class_labels=None):
        h = self.conv(x) + self.emb(t)[:, :, None, None]
        if class_labels is not None:
            h = h + self.cls(class_labels)[:, :, None, None]
        return torch.tanh(h)


def make_tiny(channels: int = 1) -> TinyEps:
    """A factory function (no positional argument): called with model.kwargs."""
    return TinyEps(channels, steps=100)


def test_network_model_class_factory_and_weights(tmp_path):
    from safetensors.torch import save_file

    here = "tests.unit.models.test_network"
    base = dict(event_shape=[1, 2, 2], num_steps=100)
    torch.manual_seed(0)
    ref = TinyEps(1, 100)
    save_file(ref.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save(ref.state_dict(), tmp_path / "w.pt")
    x, lam = torch.randn(3, 1, 2, 2), torch.tensor([-5.0, 0.0, 5.0])
    want = score_of_network(
        ref.eval(),
        prediction="epsilon",
        time="ddpm_step",
        schedule=ddpm_alphas_cumprod("linear", 100),
        event_shape=(1, 2, 2),
    )(x, lam)
    for w in ("w.safetensors", "w.pt"):
        m = NetworkModel(
            f"{here}:TinyEps", kwargs={"steps": 100}, weights=str(tmp_path / w), **base
        )
        assert torch.equal(m.load()(x, lam), want)
    fac = NetworkModel(f"{here}:make_tiny", kwargs={"channels": 1}, **base).load()
    assert isinstance(fac.net.net, TinyEps) and fac(x, lam).shape == x.shape
    # a state_dict at model.path: the advice that helps
    for w in ("w.safetensors", "w.pt"):
        with pytest.raises(
            ConfigError, match="this is a state_dict: give model.path=module:Class"
        ):
            NetworkModel(str(tmp_path / w), **base).check()
    with pytest.raises(ConfigError, match="do not fit"):
        NetworkModel(
            f"{here}:TinyEps", kwargs={"steps": 10}, weights=str(tmp_path / "w.pt"), **base
        ).load()


def test_network_model_class_labels_from_the_net(tmp_path):
    here = "tests.unit.models.test_network"
    kw = dict(event_shape=[1, 2, 2], num_steps=100, kwargs={"steps": 100, "num_classes": 3})
    score = NetworkModel(f"{here}:TinyEps", class_labels="cycle", **kw).load()
    assert score.condition_of([0, 4]) == ["class=0", "class=1"]
    with pytest.raises(ConfigError, match=r"model.class_labels: label 3 .*outside 0..2"):
        NetworkModel(f"{here}:TinyEps", class_labels=[0, 3], **kw).load()


def test_import_never_searches_the_working_directory(tmp_path, monkeypatch):
    mod = "cartoonist_test_cwd_net_xyz"
    (tmp_path / f"{mod}.py").write_text(
        "import torch\n\ndef eps(x, t):\n    return torch.zeros_like(x)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # as `python -m` would: cwd first on sys.path
    monkeypatch.setattr(sys, "path", [""] + sys.path)
    cfg = dict(path=f"{mod}:eps", event_shape=[1, 2, 2], time="lambda", schedule="vp")
    with pytest.raises(ConfigError, match="model.search_path") as e:
        NetworkModel(**cfg).load()
    assert len(str(e.value).splitlines()) == 1 and mod not in sys.modules
    score = NetworkModel(**cfg, search_path=str(tmp_path)).load()
    assert torch.equal(score(torch.ones(1, 1, 2, 2), torch.zeros(1)), torch.zeros(1, 1, 2, 2))
    sys.modules.pop(mod, None)


def test_bad_network_settings_fail_in_one_line(tmp_path):
    here = "tests.unit.models.test_network:TinyEps"
    cases = [
        (dict(prediction="eps"), "model.prediction"),
        (dict(time="t"), "model.time"),
        (dict(schedule="vp", time="ddpm_step"), "ddpm_step"),
        (dict(schedule="cosine"), "model.schedule"),
        (dict(beta_start=0.1, beta_end=0.01), "beta_start"),
        (dict(num_steps=1), "num_steps"),
        (dict(event_shape=None), "event_shape"),
        (dict(path="not an import path"), "import path"),
        (dict(search_path=str(tmp_path / "nope")), "search_path"),
        (dict(weights=str(tmp_path / "nope.pt")), "model.weights"),
        (dict(class_labels=4, num_classes=3), "outside 0..2"),
    ]
    for kw, needle in cases:
        cfg = dict(path=here, event_shape=[1, 2, 2])
        cfg.update(kw)
        with pytest.raises(ConfigError) as e:
            NetworkModel(**cfg).check()
        msg = str(e.value)
        assert needle in msg and len(msg.splitlines()) == 1, msg
