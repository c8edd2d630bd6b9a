"""Quality of the keyed counter-based noise (`philox`, behind `Keys` / `SampleNoise`).

Known-answer vectors of Philox4x32-10 (the Random123 distribution's kat_vectors, Salmon et al.
2011), an independent pure-Python reference (exact big-integer products) for both round loops
(the CPU's and the int32-view one other devices use), the normals and signs bitwise against the
textbook formulas applied to the words, moments, a Kolmogorov–Smirnov test per stream, zero
correlation between neighbouring ids / steps / streams / seeds, and batch invariance. Every
statistical assertion has an n-dependent tolerance: a statistic with standard error se is
required within 5 se (|ρ| < 4/√n for correlations, as the issue asks).
"""

from __future__ import annotations

import math
import random
import shutil

import pytest
import torch

from cartoonist import Keys, SampleNoise
from cartoonist.diffusion import philox
from cartoonist.diffusion.philox import (
    philox4x32,
    philox_normal,
    philox_rademacher,
    philox_words,
)
from cartoonist.diffusion.rng import stream_key

stats = pytest.importorskip("scipy.stats")

DT = torch.float64
M32 = 0xFFFFFFFF

# (counter c0..c3, key k0 k1) -> output, from Random123's kat_vectors ("philox4x32 10 ...")
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((M32,) * 4, (M32, M32), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


def _reference(c, k, rounds=10):
    """Philox4x32 from the paper's definition with exact Python integers (no limbs)."""
    c, k = list(c), list(k)
    for r in range(rounds):
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k[0], p1 & M32, (p0 >> 32) ^ c[3] ^ k[1], p0 & M32]
        k = [(k[0] + 0x9E3779B9) & M32, (k[1] + 0xBB67AE85) & M32]
    return tuple(c)


def _words(counters, key):
    cols = [torch.tensor([c[i] for c in counters], dtype=torch.int64) for i in range(4)]
    out = philox4x32(*cols, *key)
    return [tuple(int(w[i]) for w in out) for i in range(len(counters))]


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_known_answer_vectors(counter, key, expected):
    assert _words([counter], key)[0] == expected
    assert _reference(counter, key) == expected  # the reference agrees with the published values


# 0, 2^31, 2^32 - 1 and the 16-bit edges; M0·c and M1·c wrap past 2^63 from c ≈ 0x9C000000 on
EDGES = [0, 1, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0x9C000000, 0x9F000000, M32 - 1, M32]


@pytest.fixture(params=["int64", "views"])
def loop(request, monkeypatch):
    """Each round loop on the CPU: its own (contiguous int64) and the int32-view one of CUDA."""
    if request.param == "views":
        monkeypatch.setitem(philox._LOOPS, "cpu", philox._rounds_views)
    return request.param


def test_matches_reference_on_random_counters_and_keys(loop):
    """Bitwise agreement with the big-integer reference, incl. edge words and wrapped products."""
    rng = random.Random(0)
    for _ in range(20):
        key = (rng.choice(EDGES + [rng.getrandbits(32)]), rng.getrandbits(32))
        counters = [
            tuple(rng.choice(EDGES) if rng.random() < 0.3 else rng.getrandbits(32) for _ in "abcd")
            for _ in range(50)
        ]
        assert _words(counters, key) == [_reference(c, key) for c in counters]
    # scalar and broadcast counter words
    c2 = torch.tensor([[0], [M32], [0x80000000]])
    out = philox4x32(7, torch.tensor([1, 2**31]), c2, M32, *KAT[2][1])
    for i in range(3):
        for j in range(2):
            ref = _reference((7, [1, 2**31][j], int(c2[i, 0]), M32), KAT[2][1])
            assert tuple(int(w[i, j]) for w in out) == ref


def test_blocks_match_the_reference(loop):
    """`philox_words`: block j of row b at step s is Philox of (j, s, id_lo, id_hi) (odd sizes)."""
    ids = [0, 2**31, M32, 2**32 * M32 + 5, 0x9F0000009C000000]
    key, step, n_blocks = (0x9C000001, M32), M32 - 2, 37
    w = philox_words(key, _ids(ids), step, n_blocks, n_steps=3)  # [5, 3, 4 · 37]
    for b, i in enumerate(ids):
        for s in range(3):
            for j in range(n_blocks):
                ref = _reference((j, step + s, i & M32, i >> 32), key)
                assert tuple(w[b, s, 4 * j : 4 * j + 4].tolist()) == ref


def _unit(w, dtype, plus_one):
    """(w + plus_one)·2⁻³² in dtype: exact in float64; in float32 the top 24 bits and the low 8
    bits, each exact, summed with one rounding."""
    if dtype == torch.float64:
        return (w + int(plus_one)).to(dtype) * 2.0**-32
    return (w >> 8).to(dtype) * 2.0**-24 + ((w & 0xFF) + int(plus_one)).to(dtype) * 2.0**-32


@pytest.mark.parametrize("numel", [1, 6, 37])
def test_normals_are_box_muller_of_the_words(loop, numel):
    """Bitwise the textbook Box–Muller of word pairs (w0, w1), (w2, w3), in every dtype pair."""
    ids, key = _ids([3, 2**40 + 1, M32]), (0x80000000, 12345)
    for n_steps in (None, 3):
        w = philox_words(key, ids, 5, -(-numel // 4), n_steps)
        w = w.view(*w.shape[:-1], -1, 2, 2)
        for work in (torch.float32, torch.float64):
            r = _unit(w[..., 0], work, True).log().mul(-2.0).sqrt()
            theta = _unit(w[..., 1], work, False) * (2 * math.pi)
            z = torch.stack([r * theta.cos(), r * theta.sin()], -1).flatten(-3)[..., :numel]
            for dtype in (torch.float32, torch.float64):
                got = philox_normal(key, ids, 5, numel, dtype, work, n_steps)
                assert got.dtype == dtype and torch.equal(got, z.to(dtype)), (n_steps, work, dtype)


def test_rademacher_is_the_top_bit_of_the_words(loop):
    ids, key = _ids([0, 9, M32]), (1, M32)
    w = philox_words(key, ids, 2, 10, n_steps=2)[..., :37]
    ref = torch.where(w >= 2**31, -1.0, 1.0)
    for dtype in (torch.float32, torch.float64):
        assert torch.equal(philox_rademacher(key, ids, 2, 37, dtype, n_steps=2), ref.to(dtype))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on the CPU needs g++")
def test_compiled_words_are_the_eager_words():
    """`set_compiled` (one fused kernel per broadcast pattern) changes no word, normal or sign."""
    ids, key = _ids([0, 7, 2**33 + M32]), (0x9C000000, M32)
    eager = [
        (philox_words(key, ids, M32 - 3, 9, n), philox_normal(key, ids, 0, 33, DT, n_steps=n))
        for n in (None, 4)
    ]
    philox.set_compiled(True)
    try:
        for n, (w, z) in zip((None, 4), eager):
            assert torch.equal(philox_words(key, ids, M32 - 3, 9, n), w)
            assert torch.equal(philox_normal(key, ids, 0, 33, DT, n_steps=n), z)
        other = (5, 6)  # a new key is not a new graph, and gives its own words
        assert torch.equal(
            philox_rademacher(other, ids, 1, 36, DT), philox_rademacher(other, ids, 1, 36, DT)
        )
    finally:
        philox.set_compiled(False)
    assert torch.equal(philox_rademacher(other, ids, 1, 36, DT)[0], _signs(other, 0, 1, 36))


def _signs(key, sample_id, step, numel):
    words = [w for j in range(-(-numel // 4)) for w in _reference((j, step, sample_id, 0), key)]
    return torch.tensor([-1.0 if w >> 31 else 1.0 for w in words[:numel]], dtype=DT)


def test_words_are_32_bit_and_distinct():
    ids = torch.tensor([[i, 0] for i in range(64)])
    w = philox_words(stream_key(0, "brownian"), ids, 0, 256)
    assert w.dtype == torch.int64 and int(w.min()) >= 0 and int(w.max()) <= M32
    # 65536 words of 2^32: ≈ 0.5 repeated words expected (birthday), P(> 8) < 1e-8
    assert w.numel() - w.unique().numel() <= 8
    # the 128-bit blocks are distinct (Philox is a bijection of the counter under one key)
    blocks = w.reshape(-1, 4)
    assert torch.unique(blocks, dim=0).shape[0] == blocks.shape[0]


def _ids(ids):
    return torch.tensor([[i & M32, (i >> 32) & M32] for i in ids], dtype=torch.int64)


def _normals(seed=0, stream="brownian", n_ids=256, numel=4096, step=0, ids=None):
    ids = range(n_ids) if ids is None else ids
    return philox_normal(stream_key(seed, stream), _ids(ids), step, numel, DT)


def test_moments():
    z = _normals().flatten()  # 2^20 normals
    n = z.numel()
    m = z.mean()
    c = z - m
    var = (c**2).mean()
    skew = (c**3).mean() / var**1.5
    kurt = (c**4).mean() / var**2 - 3
    assert abs(float(m)) < 5 / math.sqrt(n)
    assert abs(float(var) - 1) < 5 * math.sqrt(2 / n)
    assert abs(float(skew)) < 5 * math.sqrt(6 / n)
    assert abs(float(kurt)) < 5 * math.sqrt(24 / n)
    assert float(z.abs().max()) < math.sqrt(64 * math.log(2))  # the 32-bit uniforms' bound


@pytest.mark.parametrize("stream", ["prior", "brownian", "probe", "lambda", "custom"])
def test_kolmogorov_smirnov_per_stream(stream):
    z = _normals(stream=stream, n_ids=64, numel=1024, step=3).flatten().numpy()
    assert stats.kstest(z, "norm").pvalue > 1e-4
    # the words themselves: uniform on [0, 2^32)
    w = philox_words(stream_key(0, stream), _ids(range(64)), 3, 256).double() / 2.0**32
    assert stats.kstest(w.flatten().numpy(), "uniform").pvalue > 1e-4


def test_kolmogorov_smirnov_of_one_sample_over_steps():
    """One sample's draws across 4096 steps (what a sampler consumes) are standard normal."""
    src = SampleNoise(5, [17], "brownian", dtype=DT)
    z = torch.cat([src.normal((8,))[0] for _ in range(4096)]).numpy()
    assert stats.kstest(z, "norm").pvalue > 1e-4


def _corr(a, b):
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm())), a.numel()


def test_no_correlation_between_neighbours():
    base = _normals(n_ids=257, numel=1024)  # [257, 1024]
    pairs = {
        "ids i, i+1": (base[:-1], base[1:]),
        "elements e, e+1": (base[:, :-1], base[:, 1:]),
        "elements e, e+4 (next block)": (base[:, :-4], base[:, 4:]),
        "steps k, k+1": (base, _normals(n_ids=257, numel=1024, step=1)),
        "streams brownian, probe": (base, _normals(stream="probe", n_ids=257, numel=1024)),
        "streams prior, brownian": (_normals(stream="prior", n_ids=257, numel=1024), base),
        "seeds s, s+1 (Keys.stage)": (base, _normals(seed=1, n_ids=257, numel=1024)),
    }
    for name, (a, b) in pairs.items():
        rho, n = _corr(a, b)
        assert abs(rho) < 4 / math.sqrt(n), (name, rho)
    # squared values too (Box–Muller's cos/sin pair shares a radius: this is where it would show)
    rho, n = _corr(base[:, 0::2] ** 2, base[:, 1::2] ** 2)
    assert abs(rho) < 4 / math.sqrt(n)


def test_batch_invariance_of_positions_and_sizes():
    ids = [7, 2**40 + 3, 0, 123456789]
    full = _normals(ids=ids, numel=37, step=5)
    for pos, i in enumerate(ids):
        alone = _normals(ids=[i], numel=37, step=5)
        assert torch.equal(alone[0], full[pos])
        padded = _normals(ids=[99, 98, i, 97], numel=37, step=5)
        assert torch.equal(padded[2], full[pos])
    # a longer event extends the draw: element e does not depend on the event size
    assert torch.equal(_normals(ids=ids, numel=64, step=5)[:, :37], full)
    # ids are 64-bit: the high word matters, and negative ids are taken modulo 2^64
    assert not torch.equal(_normals(ids=[3], numel=8), _normals(ids=[2**32 + 3], numel=8))
    src = SampleNoise(0, [-1, 2**64 - 1], dtype=DT)
    z = src.normal((6,))
    assert torch.equal(z[0], z[1])


def test_keys_sources_match_the_generator_and_are_invariant():
    """`Keys(seed, ids)` draws (seed, id, stream, step): the same whatever the batch."""
    a = Keys(3, [10, 11, 12]).source(3, "probe", dtype=DT)
    b = Keys(3, [12]).source(1, "probe", dtype=DT)
    for step in range(4):
        za, zb = a.normal((3, 5)), b.normal((3, 5))
        assert torch.equal(za[2], zb[0])
        ref = philox_normal(stream_key(3, "probe"), _ids([12]), step, 15, DT)
        assert torch.equal(zb[0], ref.reshape(3, 5))
    # Keys(seed) without ids: ids 0..B-1 built on the device, the same as explicit ones
    za = Keys(3).source(4, "prior", dtype=DT).normal((6,))
    zb = Keys(3, [0, 1, 2, 3]).source(4, "prior", dtype=DT).normal((6,))
    assert torch.equal(za, zb)


def test_runs_of_steps_change_no_number():
    """Small draws compute runs of steps at once (B-dependent length); values stay per step."""
    ids = [3, 1000]
    small = SampleNoise(8, ids, "brownian", dtype=DT)  # runs of 64 steps
    big = SampleNoise(8, ids + list(range(5000, 8000)), "brownian", dtype=DT)  # runs of 2-3
    key = stream_key(8, "brownian")
    for step in range(70):
        shape = (2, 4) if step % 5 else (3,)
        kind = "rademacher" if step % 7 == 3 else "normal"
        a, b = getattr(small, kind)(shape), getattr(big, kind)(shape)
        assert torch.equal(a, b[:2])
        direct = philox_normal if kind == "normal" else philox_rademacher
        ref = direct(key, _ids(ids), step, math.prod(shape), DT).reshape(2, *shape)
        assert torch.equal(a, ref)
    run = philox_normal(key, _ids(ids), 10, 8, DT, n_steps=5)
    for k in range(5):
        assert torch.equal(run[:, k], philox_normal(key, _ids(ids), 10 + k, 8, DT))


def test_inference_mode_changes_no_number():
    """The first call may come under torch.inference_mode (cached constants stay usable)."""
    with torch.inference_mode():
        a = SampleNoise(1, range(3), dtype=DT).normal((4,))
    b = SampleNoise(1, range(3), dtype=DT).normal((4,))
    with torch.enable_grad():
        c = SampleNoise(1, range(3), dtype=DT).normal((4,))
    assert torch.equal(a, b) and torch.equal(b, c)


def test_float32_work_is_close_to_float64():
    key, ids = stream_key(2, "brownian"), _ids(range(32))
    z64 = philox_normal(key, ids, 0, 4096, DT)
    z32 = philox_normal(key, ids, 0, 4096, torch.float32, work=torch.float32)
    err = (z32.double() - z64).abs()
    # a few float32 ulps of 2π·r in the angle; the radius near u ≈ 1 rounds to within √(2·2⁻²³)
    assert float(err.max()) < 2 * math.sqrt(2 * 2.0**-23)
    assert float(err.median()) < 4 * 2.0**-24
    with pytest.raises(ValueError, match="work"):
        philox_normal(key, ids, 0, 4, DT, work=torch.float16)


def test_rademacher_is_fair_and_keyed():
    key = stream_key(1, "probe")
    r = philox_rademacher(key, _ids(range(128)), 0, 1024, DT)
    assert set(r.unique().tolist()) == {-1.0, 1.0}
    assert abs(float(r.mean())) < 5 / math.sqrt(r.numel())
    rho, n = _corr(r[:, :-1], r[:, 1:])
    assert abs(rho) < 4 / math.sqrt(n)
    assert torch.equal(philox_rademacher(key, _ids([5]), 0, 1024, DT)[0], r[5])


def test_step_range_is_checked():
    with pytest.raises(ValueError, match="steps"):
        philox_words((0, 0), _ids([0]), 2**32, 1)
    with pytest.raises(ValueError, match="steps"):
        philox_words((0, 0), _ids([0]), 2**32 - 2, 1, n_steps=3)
