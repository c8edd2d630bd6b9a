"""Unit tests of keyed randomness (`rng`), batch-size invariance of the samplers, and the
Jacobian-trace estimators (`divergence`).

Convention C5: all noise of sample i comes from a generator keyed by (seed, sample_id, stream), so
a sample's result does not depend on the batch it is computed in.
"""

from __future__ import annotations

import math

import pytest
import torch

import cartoonist
from cartoonist import VP, FixedProbes, GaussianMixture, SampleNoise, jacobian_trace

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)

DT = torch.float64


# -- SampleNoise ---------------------------------------------------------------------------------
def _draws(seed, ids, stream="brownian", n=3, shape=(4,), kind="normal"):
    src = SampleNoise(seed, ids, stream, dtype=DT)
    f = src.normal if kind == "normal" else src.rademacher
    return torch.stack([f(shape) for _ in range(n)], 1)  # [B, n, *shape]


def test_sample_noise_is_batch_invariant():
    full = _draws(7, range(7))
    assert full.shape == (7, 3, 4)
    one = _draws(7, [3])
    assert torch.equal(one[0], full[3])
    pair = _draws(7, [6, 2])
    assert torch.equal(pair[0], full[6]) and torch.equal(pair[1], full[2])
    # ids as a tensor, non-contiguous, larger than the batch
    big = _draws(7, torch.tensor([100, 3]))
    assert torch.equal(big[1], full[3])
    assert not torch.equal(big[0], full[3])


def test_sample_noise_rows_are_distinct():
    full = _draws(7, range(7))
    for i in range(7):
        for j in range(i + 1, 7):
            assert not torch.equal(full[i], full[j])


def test_sample_noise_streams_and_seeds_differ():
    base = _draws(1, range(3), "brownian")
    assert not torch.equal(base, _draws(1, range(3), "probe"))
    assert not torch.equal(base, _draws(1, range(3), "prior"))
    assert not torch.equal(base, _draws(2, range(3), "brownian"))
    assert not torch.equal(_draws(1, range(3), "custom-a"), _draws(1, range(3), "custom-b"))
    assert torch.equal(base, _draws(1, range(3), "brownian"))


def test_sample_noise_many_steps_keep_invariance():
    """150 steps, interleaving two event shapes: every step is keyed, so sub-batches agree."""
    n = 150
    src_full = SampleNoise(11, range(5), dtype=DT)
    src_sub = SampleNoise(11, [4, 0], dtype=DT)
    a_full, a_sub, b_full, b_sub = [], [], [], []
    for k in range(n):
        a_full.append(src_full.normal((2,)))
        a_sub.append(src_sub.normal((2,)))
        if k % 3 == 0:
            b_full.append(src_full.normal((2, 3)))
            b_sub.append(src_sub.normal((2, 3)))
    a_full, a_sub = torch.stack(a_full, 1), torch.stack(a_sub, 1)
    b_full, b_sub = torch.stack(b_full, 1), torch.stack(b_sub, 1)
    assert torch.equal(a_sub[0], a_full[4]) and torch.equal(a_sub[1], a_full[0])
    assert torch.equal(b_sub[0], b_full[4]) and torch.equal(b_sub[1], b_full[0])
    # successive draws are fresh (no repeated step)
    assert not torch.equal(a_full[:, 0], a_full[:, 64])
    assert len({tuple(r.tolist()) for r in a_full[0]}) == n


def test_sample_noise_dtype_does_not_change_stream():
    """Box–Muller runs in float64: a float32 draw is the float64 draw rounded."""
    d64 = SampleNoise(3, range(4), dtype=DT).normal((5,))
    d32 = SampleNoise(3, range(4), dtype=torch.float32).normal((5,))
    assert d32.dtype == torch.float32
    assert torch.equal(d32, d64.float())


def test_batch_noise_draws_on_its_generators_device():
    g = torch.Generator("cpu").manual_seed(0)
    z = cartoonist.BatchNoise(4, g, dtype=torch.float32).normal((3,))
    ref = torch.randn((4, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert z.dtype == torch.float32 and torch.equal(z, ref.float())  # drawn in float64


def test_sample_noise_statistics():
    z = _draws(0, range(4), n=2000, shape=(3,))  # 24000 draws
    assert abs(float(z.mean())) < 5 / math.sqrt(z.numel())
    assert abs(float(z.std()) - 1) < 5 / math.sqrt(2 * z.numel())


def test_rademacher_values_and_mean():
    r = _draws(5, range(4), n=1000, shape=(3,), kind="rademacher")  # 12000 signs
    assert set(r.unique().tolist()) == {-1.0, 1.0}
    assert abs(float(r.mean())) < 5 / math.sqrt(r.numel())
    # batch invariance holds for Rademacher draws too
    r1 = _draws(5, [2], n=1000, shape=(3,), kind="rademacher")
    assert torch.equal(r1[0], r[2])


def test_empty_batch():
    src = SampleNoise(0, [], dtype=DT)
    assert src.normal((3,)).shape == (0, 3)


# -- batch-size invariance of the samplers -------------------------------------------------------
SCH = VP(-8.0, 8.0)
ORACLE = GaussianMixture(
    [0.3, 0.7],
    [[-1.0, 0.5, 2.0], [1.5, -0.5, 0.0]],
    [[0.3, 0.8, 0.5], [0.6, 0.2, 1.1]],
    schedule=SCH,
)
N = 64
SLICES = [(5, 6), (10, 17), (0, 64)]  # batch sizes 1, 7, 64


def _prior_x():
    return SCH.sample_prior((N, 3), noise=cartoonist.Keys(0), dtype=DT)


def _data_x():
    return ORACLE.sample(N, torch.Generator().manual_seed(1))


RUNNERS = {
    "sample_sde": (
        _prior_x,
        lambda x, ids: cartoonist.sample_sde(
            ORACLE,
            SCH,
            x,
            50,
            noise=cartoonist.Keys(3, ids),
        ),
    ),
    "ode_log_prob": (
        _data_x,
        lambda x, ids: cartoonist.ode_log_prob(
            ORACLE,
            SCH,
            x,
            20,
            noise=cartoonist.Keys(3, ids),
        ),
    ),
    "hd_sample": (
        _prior_x,
        lambda x, ids: cartoonist.hd_sample(
            ORACLE,
            SCH,
            x,
            lambda_threshold=0.0,
            steps=40,
            first_stage="sde",
            noise=cartoonist.Keys(3, ids),
        ),
    ),
    "hd_sample_ode_tracked": (
        _prior_x,
        lambda x, ids: cartoonist.hd_sample(
            ORACLE,
            SCH,
            x,
            lambda_threshold=0.0,
            steps=20,
            first_stage="ode",
            noise=cartoonist.Keys(3, ids),
            track_logp=True,
        ),
    ),
    "elbo": (
        _data_x,
        lambda x, ids: cartoonist.elbo(
            ORACLE,
            SCH,
            x,
            16,
            noise=cartoonist.Keys(3, ids),
        ),
    ),
}


@pytest.mark.parametrize("name", list(RUNNERS))
def test_samplers_are_batch_size_invariant(name):
    make_x, run = RUNNERS[name]
    x = make_x()
    full = run(x, range(N))
    for a, b in SLICES:
        part = run(x[a:b].clone(), range(a, b))
        if hasattr(full, "x"):
            torch.testing.assert_close(part.x, full.x[a:b], rtol=0, atol=1e-12)
        if full.logp is not None:
            assert part.logp is not None
            torch.testing.assert_close(part.logp, full.logp[a:b], rtol=0, atol=1e-12)
    assert torch.isfinite(full.logp if full.logp is not None else full.x).all()


def test_sample_sde_seed_changes_path():
    x = _prior_x()[:4]
    a = cartoonist.sample_sde(ORACLE, SCH, x, 20, noise=cartoonist.Keys(3))
    b = cartoonist.sample_sde(ORACLE, SCH, x, 20, noise=cartoonist.Keys(4))
    c = cartoonist.sample_sde(ORACLE, SCH, x, 20, noise=cartoonist.Keys(3))
    assert not torch.allclose(a.x, b.x)
    assert torch.equal(a.x, c.x) and torch.equal(a.logp, c.logp)


def test_generator_noise_is_accepted_but_batch_dependent():
    x = _prior_x()[:4]
    g = torch.Generator().manual_seed(0)
    res = cartoonist.sample_sde(ORACLE, SCH, x, 10, noise=g)
    assert res.x.shape == x.shape and torch.isfinite(res.logp).all()


# -- jacobian_trace ------------------------------------------------------------------------------
D4 = GaussianMixture(
    [0.2, 0.5, 0.3],
    [[-1.0, 0.5, 2.0, 0.0], [1.5, -0.5, 0.0, 1.0], [0.0, 1.0, -1.0, -1.5]],
    [[0.3, 0.8, 0.5, 1.0], [0.6, 0.2, 1.1, 0.4], [1.5, 0.7, 0.3, 0.9]],
    schedule=SCH,
)


def _d4_points(B=5):
    g = torch.Generator().manual_seed(2)
    x = 1.5 * torch.randn(B, 4, dtype=DT, generator=g)
    lam = torch.linspace(-2.0, 3.0, B, dtype=DT)
    return x, lam


def test_exact_trace_equals_hessian_trace():
    x, lam = _d4_points()
    fn = lambda z: D4.score(z, lam)  # noqa: E731
    ref = torch.diagonal(D4.hessian(x, lam), dim1=-2, dim2=-1).sum(-1)
    for backend in ("forward", "reverse"):
        out, tr = jacobian_trace(fn, x, "exact", backend=backend)
        torch.testing.assert_close(out, D4.score(x, lam), rtol=0, atol=1e-14)
        torch.testing.assert_close(tr, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(tr, D4.laplacian(x, lam), rtol=1e-10, atol=1e-10)


def test_exact_trace_event_shape():
    """[B, 2, 2] inputs: the trace is over all event entries."""
    x, lam = _d4_points()
    fn = lambda z: D4.score(z.reshape(-1, 4), lam).reshape(z.shape)  # noqa: E731
    _, tr = jacobian_trace(fn, x.reshape(-1, 2, 2), "exact")
    torch.testing.assert_close(tr, D4.laplacian(x, lam), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_forward_and_reverse_agree_on_same_probes(kind):
    x, lam = _d4_points()
    fn = lambda z: D4.score(z, lam)  # noqa: E731
    src = SampleNoise(0, range(x.shape[0]), "probe", dtype=DT)
    fp = FixedProbes(src, (4,), probes=3, kind=kind)
    _, fwd = jacobian_trace(fn, x, "hutchinson", probes=3, noise=fp, backend="forward")
    _, rev = jacobian_trace(fn, x, "hutchinson", probes=3, noise=fp, backend="reverse")
    torch.testing.assert_close(fwd, rev, rtol=1e-13, atol=1e-13)
    # and both equal the explicit quadratic forms vᵀ H v averaged over the probes
    H = D4.hessian(x, lam)
    ref = sum(torch.einsum("bi,bij,bj->b", v, H, v) for v in fp.probes) / 3
    torch.testing.assert_close(fwd, ref, rtol=1e-10, atol=1e-10)
    # keyed probes from fresh SampleNoise sources also agree between backends
    _, f2 = jacobian_trace(
        fn, x, "hutchinson", 2, SampleNoise(9, range(5), "probe", dtype=DT), "forward", kind
    )
    _, r2 = jacobian_trace(
        fn, x, "hutchinson", 2, SampleNoise(9, range(5), "probe", dtype=DT), "reverse", kind
    )
    torch.testing.assert_close(f2, r2, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(kind):
    """Mean of 4000 single-probe estimates is within 3 standard errors of the exact trace.

    The 4000 probes are drawn in one batched call: the samples are replicated 4000 times (samples
    do not interact, so every replica is an independent single-probe estimate).
    """
    x, lam = _d4_points()
    B, n = x.shape[0], 4000
    exact = D4.laplacian(x, lam)
    xr, lr = x.repeat(n, 1), lam.repeat(n)
    src = SampleNoise(123, range(n * B), "probe", dtype=DT)
    _, est = jacobian_trace(lambda z: D4.score(z, lr), xr, "hutchinson", 1, src, "forward", kind)
    est = est.reshape(n, B)
    mean, se = est.mean(0), est.std(0) / math.sqrt(n)
    assert bool((se > 0).all())
    assert bool(((mean - exact).abs() < 3 * se).all()), (mean, exact, se)
    if kind == "rademacher":
        # Rademacher has no variance from the diagonal: var = 2 Σ_{i≠j} H_ij² (≤ Gaussian's)
        H = D4.hessian(x, lam)
        off = H - torch.diag_embed(torch.diagonal(H, dim1=-2, dim2=-1))
        var = 2 * (off**2).sum((-2, -1))
        torch.testing.assert_close(est.var(0), var, rtol=0.15, atol=1e-6)


def test_hutchinson_multi_probe_is_mean_of_single_probes():
    x, lam = _d4_points()
    fn = lambda z: D4.score(z, lam)  # noqa: E731
    src = SampleNoise(4, range(5), "probe", dtype=DT)
    fp = FixedProbes(src, (4,), probes=4)
    _, multi = jacobian_trace(fn, x, "hutchinson", 4, fp)
    singles = [jacobian_trace(fn, x, "hutchinson", 1, fp)[1] for _ in range(4)]
    torch.testing.assert_close(multi, sum(singles) / 4, rtol=1e-13, atol=1e-13)


def test_jacobian_trace_rejects_bad_arguments():
    x, lam = _d4_points()
    fn = lambda z: D4.score(z, lam)  # noqa: E731
    src = SampleNoise(0, range(5), "probe", dtype=DT)
    with pytest.raises(ValueError, match="method"):
        jacobian_trace(fn, x, "bogus", noise=src)
    with pytest.raises(ValueError, match="backend"):
        jacobian_trace(fn, x, "exact", backend="sideways")
    with pytest.raises(ValueError, match="noise"):
        jacobian_trace(fn, x, "hutchinson")
    with pytest.raises(ValueError, match="probes"):
        jacobian_trace(fn, x, "hutchinson", probes=0, noise=src)
    with pytest.raises(ValueError, match="kind"):
        jacobian_trace(fn, x, "hutchinson", noise=src, kind="uniform")


# -- FixedProbes ---------------------------------------------------------------------------------
def test_fixed_probes_repeat():
    src = SampleNoise(0, range(3), "probe", dtype=DT)
    fp = FixedProbes(src, (4,), probes=1)
    first = fp.next()
    assert first.shape == (3, 4) and fp.batch_size == 3
    for _ in range(5):
        assert torch.equal(fp.next(), first)


def test_fixed_probes_cycle_and_kind():
    src = SampleNoise(0, range(3), "probe", dtype=DT)
    fp = FixedProbes(src, (4,), probes=3)
    seq = [fp.next() for _ in range(7)]
    assert torch.equal(seq[0], seq[3]) and torch.equal(seq[1], seq[4])
    assert torch.equal(seq[2], seq[5]) and torch.equal(seq[0], seq[6])
    assert not torch.equal(seq[0], seq[1])
    for v in seq:
        assert set(v.unique().tolist()) <= {-1.0, 1.0}
    g = FixedProbes(SampleNoise(0, range(3), "probe", dtype=DT), (4,), 2, kind="gaussian")
    assert not set(g.next().unique().tolist()) <= {-1.0, 1.0}


def test_fixed_probes_give_repeatable_traces():
    x, lam = _d4_points()
    fn = lambda z: D4.score(z, lam)  # noqa: E731
    fp = FixedProbes(SampleNoise(1, range(5), "probe", dtype=DT), (4,), probes=2)
    _, a = jacobian_trace(fn, x, "hutchinson", 2, fp)
    _, b = jacobian_trace(fn, x, "hutchinson", 2, fp)
    assert torch.equal(a, b)
