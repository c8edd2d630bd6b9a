"""Unit tests of `cartoonist.diffusion.score`: network-parametrisation converters and CountedScore.

Ground truth is the exact Gaussian-mixture oracle: from its score we build exact ε-, x0- and
v-prediction "networks" and check that the converters give the oracle's score back.
"""

from __future__ import annotations

import pytest
import torch

import cartoonist
from cartoonist import (
    VP,
    CountedScore,
    Flow,
    GaussianMixture,
    NonFiniteScoreError,
    score_from_eps,
    score_from_v,
    score_from_x0,
)
from cartoonist.diffusion import score_from_flow

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)

DT = torch.float64
MEANS = [[-1.0, 0.5, 2.0], [1.5, -0.5, 0.0]]
VARS = [[0.3, 0.8, 0.5], [0.6, 0.2, 1.1]]


def _oracle(schedule):
    return GaussianMixture([0.3, 0.7], MEANS, VARS, schedule=schedule)


def _bc(v, x):
    return v.reshape(-1, *[1] * (x.dim() - 1))


def _nets(oracle, sch):
    """Exact ε-, x0- and v-prediction networks built from the oracle's score."""

    def eps_net(x, lam):
        return -_bc(sch.sigma(lam), x) * oracle.score(x, lam)

    def x0_net(x, lam):  # Tweedie
        a, s = _bc(sch.alpha(lam), x), _bc(sch.sigma(lam), x)
        return (x + s * s * oracle.score(x, lam)) / a

    def v_net(x, lam):
        a, s = _bc(sch.alpha(lam), x), _bc(sch.sigma(lam), x)
        x0 = x0_net(x, lam)
        eps = (x - a * x0) / s
        return a * eps - s * x0

    return eps_net, x0_net, v_net


def _points(sch, n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    lam = (
        sch.lambda_min
        + 0.05
        + (sch.lambda_max - sch.lambda_min - 0.1) * torch.rand(n, dtype=DT, generator=g)
    )
    x = 2.0 * torch.randn(n, 3, dtype=DT, generator=g)
    return x, lam


SCHEDULES = {"VP": VP(-8.0, 8.0), "Flow": Flow(-8.0, 8.0)}


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("kind", ["eps", "x0", "v", "flow"])
def test_converters_reproduce_oracle_score(name, kind):
    sch = SCHEDULES[name]
    oracle = _oracle(sch)
    eps_net, x0_net, v_net = _nets(oracle, sch)
    conv = {
        "eps": score_from_eps(eps_net, sch),
        "x0": score_from_x0(x0_net, sch),
        "v": score_from_v(v_net, sch),
        "flow": score_from_flow(lambda x, lam: eps_net(x, lam) - x0_net(x, lam), sch),
    }[kind]
    x, lam = _points(sch)
    ref = oracle.score(x, lam)
    got = conv(x, lam)
    assert got.shape == x.shape and got.dtype == DT
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


def test_v_net_consistent_with_definition():
    """Sanity check of the test's own v-net: v = α ε − σ x0 with x = α x0 + σ ε."""
    sch = Flow(-8.0, 8.0)
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(10, 3, dtype=DT, generator=g)
    eps = torch.randn(10, 3, dtype=DT, generator=g)
    lam = torch.linspace(-5, 5, 10, dtype=DT)
    a, s = _bc(sch.alpha(lam), x0), _bc(sch.sigma(lam), x0)
    x = a * x0 + s * eps
    v = a * eps - s * x0

    # a v-net that knows (x0, eps) recovers the noise → score_from_v gives −ε/σ
    score = score_from_v(lambda xx, ll: v, sch)
    torch.testing.assert_close(score(x, lam), -eps / s, rtol=1e-12, atol=1e-12)
    score = score_from_x0(lambda xx, ll: x0, sch)
    torch.testing.assert_close(score(x, lam), -eps / s, rtol=1e-10, atol=1e-10)
    # a flow-velocity net that knows them (u = ε − x0, SD3's target) does too
    score = score_from_flow(lambda xx, ll: eps - x0, sch)
    torch.testing.assert_close(score(x, lam), -eps / s, rtol=1e-10, atol=1e-10)
    score = score_from_eps(lambda xx, ll: eps, sch)
    torch.testing.assert_close(score(x, lam), -eps / s, rtol=1e-14, atol=0)


def test_converters_image_shaped():
    """[B, C, H, W]-shaped inputs broadcast the per-sample coefficients."""
    sch = VP(-8.0, 8.0)
    oracle = GaussianMixture(
        [0.4, 0.6],
        torch.randn(2, 12, dtype=DT),
        0.5 + torch.rand(2, 12, dtype=DT),
        schedule=sch,
        event_shape=(3, 2, 2),
    )
    eps_net, x0_net, v_net = _nets(oracle, sch)
    x = torch.randn(5, 3, 2, 2, dtype=DT)
    lam = torch.linspace(-4, 4, 5, dtype=DT)
    ref = oracle.score(x, lam)
    for conv in (
        score_from_eps(eps_net, sch),
        score_from_x0(x0_net, sch),
        score_from_v(v_net, sch),
    ):
        torch.testing.assert_close(conv(x, lam), ref, rtol=1e-10, atol=1e-10)


# -- CountedScore --------------------------------------------------------------------------------
def test_counted_score_counts_plain_calls():
    sch = VP(-8.0, 8.0)
    oracle = _oracle(sch)
    cs = CountedScore(oracle)
    x, lam = _points(sch, 6)
    assert cs.nfe == 0
    for i in range(3):
        out = cs(x, lam)
        assert cs.nfe == i + 1
    torch.testing.assert_close(out, oracle.score(x, lam), rtol=0, atol=0)


def test_counted_score_counts_inside_jvp_and_vjp():
    sch = VP(-8.0, 8.0)
    oracle = _oracle(sch)
    cs = CountedScore(oracle)
    x, lam = _points(sch, 6)
    v = torch.randn_like(x)
    out, jv = torch.func.jvp(lambda z: cs(z, lam), (x,), (v,))
    assert cs.nfe == 1
    torch.testing.assert_close(out, oracle.score(x, lam), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(jv, oracle.hvp(x, lam, v), rtol=1e-10, atol=1e-10)
    out, vjp_fn = torch.func.vjp(lambda z: cs(z, lam), x)
    (vj,) = vjp_fn(v)
    assert cs.nfe == 2
    torch.testing.assert_close(vj, oracle.hvp(x, lam, v), rtol=1e-10, atol=1e-10)
    # exact divergence in D=3 via forward JVPs: one evaluation per basis vector
    _, tr = cartoonist.jacobian_trace(lambda z: cs(z, lam), x, "exact", backend="forward")
    assert cs.nfe == 2 + 3
    torch.testing.assert_close(tr, oracle.laplacian(x, lam), rtol=1e-10, atol=1e-10)


def test_counted_score_nfe_in_sampler_result():
    sch = VP(-8.0, 8.0)
    oracle = _oracle(sch)
    x = sch.sample_prior((4, 3), noise=cartoonist.Keys(0), dtype=DT)
    res = cartoonist.sample_sde(CountedScore(oracle), sch, x, 12)
    assert res.nfe == 12  # a fresh count per call, even for an already counted score
    cs = CountedScore(oracle)
    cs(x, torch.zeros(4, dtype=DT))
    res = cartoonist.sample_sde(cs, sch, x, 12)
    assert res.nfe == 12


def _nan_after_zero(oracle):
    def score(x, lam):
        s = oracle.score(x, lam)
        if bool((lam > 0).any()):
            return torch.full_like(s, float("nan"))
        return s

    return score


def test_nonfinite_score_in_sample_sde_names_step_and_lambda():
    sch = VP(-8.0, 8.0)
    oracle = _oracle(sch)
    x = sch.sample_prior((3, 3), noise=cartoonist.Keys(0), dtype=DT)
    # grid λ_k = −8 + 0.5 k: the first λ > 0 is λ = 0.5 at step 17
    with pytest.raises(NonFiniteScoreError) as info:
        cartoonist.sample_sde(_nan_after_zero(oracle), sch, x, 32)
    msg = str(info.value)
    assert "step 17" in msg
    assert "λ=0.5" in msg
    assert isinstance(info.value, FloatingPointError)


def test_nonfinite_score_names_the_sample():
    sch = VP(-8.0, 8.0)
    oracle = _oracle(sch)
    x = sch.sample_prior((4, 3), noise=cartoonist.Keys(0), dtype=DT)

    def score(x, lam):
        s = oracle.score(x, lam)
        s = s.clone()
        s[2, 1] = float("inf")
        return s

    with pytest.raises(NonFiniteScoreError, match=r"sample 2.*step 0"):
        cartoonist.sample_sde(score, sch, x, 8)


def test_nonfinite_score_in_ode_sampler_names_step():
    sch = VP(-8.0, 8.0)
    oracle = _oracle(sch)
    x = sch.sample_prior((3, 3), noise=cartoonist.Keys(0), dtype=DT)
    with pytest.raises(NonFiniteScoreError, match="step 17"):
        cartoonist.sample_ode(
            _nan_after_zero(oracle), sch, x, 32, method="euler", track_logp=False
        )
    with pytest.raises(NonFiniteScoreError, match="step 17"):
        cartoonist.sample_ode(_nan_after_zero(oracle), sch, x, 32, method="euler", track_logp=True)


def test_wrong_shape_score_raises_value_error():
    sch = VP(-8.0, 8.0)
    oracle = _oracle(sch)
    x = sch.sample_prior((3, 3), noise=cartoonist.Keys(0), dtype=DT)
    with pytest.raises(ValueError, match="shape"):
        cartoonist.sample_sde(lambda z, lam: oracle.score(z, lam)[:, :2], sch, x, 8)
    with pytest.raises(ValueError, match="shape"):
        CountedScore(lambda z, lam: oracle.score(z, lam).reshape(-1))(x, torch.zeros(3, dtype=DT))
    with pytest.raises(ValueError, match="shape"):
        CountedScore(lambda z, lam: 0.0)(x, torch.zeros(3, dtype=DT))


def test_unchecked_counted_score_passes_nan_through():
    cs = CountedScore(lambda z, lam: torch.full_like(z, float("nan")), check=False)
    out = cs(torch.zeros(2, 3, dtype=DT), torch.zeros(2, dtype=DT))
    assert torch.isnan(out).all() and cs.nfe == 1


def test_non_callable_score_raises_type_error():
    sch = VP(-8.0, 8.0)
    x = sch.sample_prior((3, 3), noise=cartoonist.Keys(0), dtype=DT)
    with pytest.raises(TypeError, match="callable"):
        cartoonist.sample_sde("not a score", sch, x, 8)


def test_nonfinite_score_names_the_sample_id_of_its_keys():
    sch = VP(-8.0, 8.0)
    oracle = _oracle(sch)
    keys = cartoonist.Keys(0, [10, 11, 12, 13])
    x = sch.sample_prior((4, 3), noise=keys, dtype=DT)

    def score(x, lam):
        s = oracle.score(x, lam).clone()
        s[2, 1] = float("nan")
        return s

    with pytest.raises(NonFiniteScoreError, match=r"sample 12.*step 0"):
        cartoonist.sample_sde(score, sch, x, 8, noise=keys)


def _nan_tangent(oracle, bad: int):
    """A score whose values are finite but whose Jacobian is NaN for sample `bad`."""

    def score(x, lam):
        shift = torch.ones_like(x)
        shift[bad] = 0.0  # d√z/dz at z = 0 is inf, times dz = 0: NaN in the tangent only
        return oracle.score(x, lam) + torch.sqrt(x * 0.0 + shift) - torch.sqrt(shift)

    return score


@pytest.mark.parametrize("backend", ["forward", "reverse"])
def test_a_nan_only_in_the_jacobian_raises_naming_the_sample(backend):
    sch = VP(-8.0, 8.0)
    oracle = _oracle(sch)
    keys = cartoonist.Keys(0, [5, 6, 7])
    x = sch.sample_prior((3, 3), noise=keys, dtype=DT)
    score = _nan_tangent(oracle, 1)
    assert torch.isfinite(score(x, torch.zeros(3, dtype=DT))).all()  # the values are fine
    with pytest.raises(NonFiniteScoreError, match=r"divergence of the score.*sample 6"):
        cartoonist.ode_log_prob(score, sch, x, 8, noise=keys, backend=backend)
    with pytest.raises(NonFiniteScoreError, match=r"divergence of the score.*sample 6"):
        cartoonist.sample_ode(score, sch, x, 8, noise=keys, divergence="exact", track_logp=True)
