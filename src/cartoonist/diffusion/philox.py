"""Counter-based random numbers: Philox4x32-10 in torch integer ops, and normals from it.

Philox4x32-10 (Salmon, Moraes, Dror & Shaw 2011, "Parallel random numbers: as easy as 1, 2, 3",
SC'11) is a keyed bijection of a 128-bit counter (four 32-bit words) under a 64-bit key (two
words): ten rounds of

    (c0, c1, c2, c3) ← (hi(M1·c2) ⊕ c1 ⊕ k0,  lo(M1·c2),  hi(M0·c0) ⊕ c3 ⊕ k1,  lo(M0·c0))
    (k0, k1) ← (k0 + W0, k1 + W1)  mod 2³²

with M0 = 0xD2511F53, M1 = 0xCD9E8D57 and the Weyl increments W0 = 0x9E3779B9, W1 = 0xBB67AE85.
Distinct counters under one key give distinct outputs, so every (counter, key) is its own draw:
no generator state, nothing to copy, and any element can be computed anywhere.

The words are held in int64 tensors (values in [0, 2³²)). Each 32×32 → 64-bit product is one
int64 multiply: the product is < 2⁶⁴, so as a signed int64 it may wrap past 2⁶³, and
two's-complement wrapping keeps all its 64 bits. The multiply is the hardware's, mod 2⁶⁴: on the
CPU (imul / vpmullq; the tests check it against exact integers) and on CUDA, whose 64-bit integer
multiply (`mul.lo.s64`) returns the low 64 bits of the product. Its low word is p & (2³² − 1);
its high word is the arithmetic p >> 32 with the sign-extended upper bits masked off. The two
multiplied words (c0, c2) are stacked in one [2, ...] tensor, so a round is six whole-tensor
integer ops on the CPU (`_rounds_int64`) or four on other devices (`_rounds_views`, through int32
views of the halves: fewer kernel launches, but strided loops, slower on the CPU); both give
the same words. `set_compiled` opts in to one torch.compile'd kernel for all ten rounds.

Normals (`philox_normal`) use Box–Muller on pairs of words (u, v):
z = √(−2 log u) · (cos 2πv, sin 2πv), with u = (w + 1)·2⁻³² ∈ (0, 1] (never log 0) and
v = w·2⁻³² ∈ [0, 1). One Philox block (4 words) gives 4 normals. The uniforms are exact in
float64, and the float work is the same few elementwise torch ops on every device, in float64 by
default (a float32 draw is the float64 one rounded). Caveat: torch's `log`, `cos` and `sin` are the
device's own libraries (SLEEF on the CPU, CUDA's libm on the GPU), each within ~1 ulp, so CPU
and CUDA normals may differ in the last ulp of a few values (the words never differ; a float32
result differs only where a float64 ulp crosses a float32 rounding boundary, ~2⁻²⁹ per value).
The 32-bit uniforms put the largest |z| at √(64 ln 2) ≈ 6.66: tails beyond are not drawn
(probability 2.7e-11 per value).
"""

from __future__ import annotations

import math
import sys

import torch
from torch import Tensor

__all__ = [
    "philox4x32",
    "philox_words",
    "philox_normal",
    "philox_rademacher",
    "set_compiled",
    "M0",
    "M1",
]

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF
ROUNDS = 10
# the int32 views of `_rounds_views` read the low word of an int64 first (CUDA is little-endian)
_LITTLE = sys.byteorder == "little"

_MULTIPLIERS: dict = {}


def _multipliers(device) -> Tensor:
    """[M0, M1] as an int64 [2] tensor on `device`, filled there (no copy), cached."""
    key = str(device)
    if key not in _MULTIPLIERS:
        with torch.inference_mode(False):  # a normal tensor, usable in and out of that mode
            m = torch.full((2,), M0, dtype=torch.int64, device=device)
            one = torch.ones(1, dtype=torch.int64, device=device)
            _MULTIPLIERS[key] = m.index_fill_(0, one, M1)
    return _MULTIPLIERS[key]


def _keys(k0: int, k1: int, rounds: int):
    """The round keys (k0, k1) + r·(W0, W1) mod 2³², r = 0 … rounds − 1."""
    for _ in range(rounds):
        yield k0, k1
        k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32


def _rounds_int64(x: Tensor, prev: Tensor, k0: int, k1: int, rounds: int) -> Tensor:
    """`rounds` Philox rounds in place on x = (c0, c2) [2, *S] int64, contiguous ops only.

    `prev` holds (c3, c1) in its low 32 bits (it becomes a buffer). Per round: p = (M0, M1)·x,
    z = (p >> 32) ⊕ prev (the high words ⊕ the previous low words, upper bits garbage), then
    x ← (z₁ ⊕ k0, z₀ ⊕ k1) & (2³² − 1) and prev ← p: six ops. Returns the last p, whose low
    words are (c3, c1).
    """
    m = _multipliers(x.device).view(2, *[1] * (x.dim() - 1))
    p, z = torch.empty_like(x), torch.empty_like(x)
    (x0, x1), (z0, z1) = x, z  # the rows' views, made once
    for k0, k1 in _keys(k0, k1, rounds):
        torch.mul(x, m, out=p)  # (M0·c0, M1·c2) mod 2⁶⁴
        torch.bitwise_right_shift(p, 32, out=z).bitwise_xor_(prev)  # (c2' ⊕ k1, c0' ⊕ k0)
        torch.bitwise_xor(z1, k0, out=x0)
        torch.bitwise_xor(z0, k1, out=x1)
        x.bitwise_and_(MASK32)
        p, prev = prev, p
    return prev


def _rounds_views(x: Tensor, prev: Tensor, k0: int, k1: int, rounds: int) -> Tensor:
    """As `_rounds_int64`, in four ops per round on int32 views of the int64 halves.

    The high words of p are read, and x's low words written, through strided int32 views (x's
    high words stay 0), so nothing is shifted or masked: fewer kernels (for CUDA), but strided
    loops that are slower than contiguous ones on the CPU.
    """
    if not _LITTLE:
        return _rounds_int64(x, prev, k0, k1, rounds)
    m = _multipliers(x.device).view(2, *[1] * (x.dim() - 1))
    z = torch.empty(x.shape, dtype=torch.int32, device=x.device)
    (z0, z1), (x0, x1) = z, x.view(torch.int32)[..., 0::2]  # x0, x1: the low words of x
    bufs = [torch.empty_like(x), prev]  # p of even / odd rounds; prev: the one before
    hi = [b.view(torch.int32)[..., 1::2] for b in bufs]
    lo = [b.view(torch.int32)[..., 0::2] for b in bufs]

    def i32(k):  # the int32 of the same bits
        return k - (1 << 32) if k >> 31 else k

    for r, (k0, k1) in enumerate(_keys(k0, k1, rounds)):
        torch.mul(x, m, out=bufs[r % 2])
        torch.bitwise_xor(hi[r % 2], lo[1 - r % 2], out=z)  # (c2' ⊕ k1, c0' ⊕ k0)
        torch.bitwise_xor(z1, i32(k0), out=x0)
        torch.bitwise_xor(z0, i32(k1), out=x1)
    return bufs[(rounds - 1) % 2]


# the round loop per device type (others: `_rounds_views`, the fewest kernels)
_LOOPS = {"cpu": _rounds_int64}


def _philox(x: Tensor, prev: Tensor, k0: int, k1: int, rounds: int = ROUNDS) -> Tensor:
    """Philox rounds on the state of `_rounds_int64`, with the loop of the state's device."""
    loop = _LOOPS.get(x.device.type, _rounds_views)
    return loop(x, prev, int(k0) & MASK32, int(k1) & MASK32, rounds)


def _philox_fused(c0, c1, c2, c3, key: Tensor, rounds: int = ROUNDS) -> tuple[Tensor, Tensor]:
    """(x, p) of `_philox` (p masked) from broadcastable int64 words, in functional ops.

    For torch.compile to fuse into one kernel (`set_compiled`). key: [2] int64 on the words'
    device, a tensor so that a new key is not a recompile.
    """
    k0, k1 = key[0], key[1]
    for _ in range(rounds):
        p0, p2 = c0 * M0, c2 * M1  # mod 2⁶⁴, as in `_rounds_int64`
        c0, c1, c2, c3 = (
            ((p2 >> 32) & MASK32) ^ c1 ^ k0,
            p2 & MASK32,
            ((p0 >> 32) & MASK32) ^ c3 ^ k1,
            p0 & MASK32,
        )
        k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
    x, p = torch.broadcast_tensors(c0, c2), torch.broadcast_tensors(c3, c1)
    return torch.stack(x), torch.stack(p)


_COMPILED: dict = {"on": False, "fn": None, "keys": {}}


def set_compiled(enabled: bool = True) -> None:
    """Opt in (or out) to torch.compile'd Philox words in philox_words / _normal / _rademacher.

    The ten rounds become one fused kernel instead of 40–60 small ones (for CUDA, where each
    eager op is a kernel launch; Box–Muller stays eager). The same words bitwise (tested on the
    CPU). It compiles on the first call and again for each new broadcast pattern (one step or a
    run of steps, one sample or several): 10–20 s each on a 2-core CPU, ~5 s from inductor's
    disk cache, so it pays only over long runs; off by default. Each key is copied to the device
    once (cached).
    """
    if enabled and _COMPILED["fn"] is None:  # one compiled function: toggling keeps its graphs
        _COMPILED["fn"] = torch.compile(_philox_fused, dynamic=True, fullgraph=True)
    _COMPILED["on"] = bool(enabled)


def _key_tensor(key, device) -> Tensor:
    """(k0, k1) as an int64 [2] tensor on `device`, cached (at most 256 keys)."""
    cache, k = _COMPILED["keys"], (int(key[0]) & MASK32, int(key[1]) & MASK32, str(device))
    if k not in cache:
        if len(cache) >= 256:
            cache.pop(next(iter(cache)))
        with torch.inference_mode(False):
            cache[k] = torch.tensor(k[:2], dtype=torch.int64, device=device)
    return cache[k]


def _pair(a, b, shape, device) -> Tensor:
    """(a, b) stacked into a fresh [2, *shape] int64 tensor (ints filled, tensors broadcast)."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return torch.stack([a.expand(shape), b.expand(shape)])
    out = torch.empty((2, *shape), dtype=torch.int64, device=device)
    for row, c in zip(out, (a, b)):
        if isinstance(c, Tensor):
            row.copy_(c)
        else:
            row.fill_(int(c) & MASK32)
    return out


def philox4x32(c0, c1, c2, c3, k0: int, k1: int, rounds: int = ROUNDS):
    """Philox4x32-`rounds` of a counter (c0, c1, c2, c3) under the key (k0, k1).

    Args:
        c0..c3: int64 tensors (broadcastable to one shape, on one device) or ints, each holding a
            32-bit word.
        k0, k1: the key words (ints in [0, 2³²)).

    Returns:
        Four int64 tensors of the broadcast shape, the output words in [0, 2³²).
    """
    words = [c for c in (c0, c1, c2, c3) if isinstance(c, Tensor)]
    device = words[0].device if words else torch.device("cpu")
    # (torch.broadcast_shapes would import for ~1 s on its first call)
    shape = torch.broadcast_tensors(*words)[0].shape if words else torch.Size()
    x = _pair(c0, c2, shape, device)
    lo = _philox(x, _pair(c3, c1, shape, device), k0, k1, rounds) & MASK32
    return x[0], lo[1], x[1], lo[0]


def _blocks(key, ids: Tensor, step: int, n_blocks: int, k: int) -> tuple[Tensor, Tensor]:
    """(x, p) of `_philox` for the counters (j, step + s, id_lo, id_hi): [2, B, k, n_blocks]."""
    if not (0 <= step and step + k - 1 <= MASK32 and k >= 1):
        raise ValueError(f"noise: steps {step}..{step + k - 1} outside [0, 2^32)")
    dev, shape = ids.device, (ids.shape[0], k, n_blocks)
    j = torch.arange(n_blocks, dtype=torch.int64, device=dev).view(1, 1, n_blocks)
    c1 = torch.arange(step, step + k, dtype=torch.int64, device=dev).view(1, k, 1)
    lo, hi = ids[:, :1, None], ids[:, 1:, None]
    if _COMPILED["on"]:
        return _COMPILED["fn"](j, c1, lo, hi, _key_tensor(key, dev))
    x = _pair(j, lo, shape, dev)
    return x, _philox(x, _pair(hi, c1, shape, dev), *key)


def philox_words(
    key: tuple[int, int], ids: Tensor, step: int, n_blocks: int, n_steps: int | None = None
) -> Tensor:
    """The words of J = `n_blocks` Philox blocks per row: [B, 4J] (or [B, n_steps, 4J]).

    With `n_steps`, the steps step … step + n_steps − 1 are computed in one call.

    Block j of row b at step k is Philox4x32-10 of the counter (j, k, id_lo, id_hi) under `key`,
    where id = ids[b] as a 64-bit word: a row's words depend only on its id and the step, never on
    its position, on the batch, or on how many steps are computed together.

    Args:
        key: (k0, k1), the 64-bit key of a (seed, stream) pair.
        ids: [B, 2] int64 (low, high 32-bit halves of each sample id) on the target device.
        step: the (first) draw's index in its stream; steps stay < 2³².
        n_blocks: blocks per row (< 2³²).
        n_steps: None for one step ([B, 4 · n_blocks]), else a run of steps.
    """
    k = 1 if n_steps is None else int(n_steps)
    x, p = _blocks(key, ids, step, n_blocks, k)
    lo = p.bitwise_and_(MASK32)
    w = torch.stack([x[0], lo[1], x[1], lo[0]], -1).view(ids.shape[0], k, 4 * n_blocks)
    return w[:, 0] if n_steps is None else w


def _uniforms(x: Tensor, p: Tensor, work: torch.dtype) -> tuple[Tensor, Tensor]:
    """Box–Muller's (u, 2πv) in `work`, [*S, 2]: pair i is (words 2i, 2i + 1) of each block.

    u = (c + 1)·2⁻³² of c = (c0, c2) = x and v = c·2⁻³² of c = (c1, c3), the low words of p. In
    float64 both are exact and 2πv is one rounding; in float32 u and v are the exact values
    correctly rounded, and 2πv is v·fl(2π) rounded. (Row by row: one copy into the [*S, 2]
    layout would loop over its innermost size-2 axis on the CPU.)
    """
    u = torch.empty((*x.shape[1:], 2), dtype=work, device=x.device)
    v = torch.empty_like(u)
    f64 = work == torch.float64
    if not f64:
        x.add_(1)  # x + 1 ≤ 2³², rounded once to float32 by the copy (x is not used again)
    lo = p.bitwise_and_(MASK32)
    for i in range(2):
        u[..., i].copy_(x[i])  # c0, c2
        v[..., i].copy_(lo[1 - i])  # c1, c3
    if f64:
        u.add_(1.0)  # exact in float64
    u.mul_(2.0**-32)  # exact (a power of two)
    if f64:  # (v·2⁻³²)·2π is the same single rounding as v·(2π·2⁻³²)
        return u, v.mul_(2 * math.pi * 2.0**-32)
    return u, v.mul_(2.0**-32).mul_(2 * math.pi)


def philox_normal(
    key: tuple[int, int],
    ids: Tensor,
    step: int,
    numel: int,
    dtype=torch.float32,
    work: torch.dtype = torch.float64,
    n_steps: int | None = None,
) -> Tensor:
    """Standard normals [B, numel] (or [B, n_steps, numel]) of keyed draws, by Box–Muller.

    Element e of row b is Box–Muller output e mod 4 of block ⌊e / 4⌋ (see `philox_words`), for
    every `numel` ≥ e + 1 and however many steps are computed together.

    Args:
        key, ids, step, n_steps: as `philox_words`.
        numel: normals per row.
        dtype: of the result.
        work: the dtype of the Box–Muller arithmetic. float64 (default): a float32 result is
            then the float64 draw correctly rounded, so both dtypes share one stream, and the
            devices' last-ulp differences in log/cos/sin almost never reach a float32 result.
            float32: cheaper on the CPU, a few float32 ulps from the float64 draw (more for
            |z| < 1e-3, where float32 u ≈ 1 rounds the radius).
    """
    if work not in (torch.float32, torch.float64):
        raise ValueError(f"noise: work dtype must be float32 or float64, got {work}")
    J, k, B = -(-numel // 4), 1 if n_steps is None else int(n_steps), ids.shape[0]
    u, theta = _uniforms(*_blocks(key, ids, step, J, k), work)  # [B, k, J, 2] each
    r = u.log_().mul_(-2.0).sqrt_()  # u ∈ (0, 1]: never log 0
    cos = torch.cos(theta)
    z = torch.empty((B, k, J, 2, 2), dtype=dtype, device=ids.device)
    torch.mul(r, cos, out=z[..., 0])
    torch.mul(r, theta.sin_(), out=z[..., 1])
    z = z.view(B, k, 4 * J)[..., :numel]
    return z[:, 0] if n_steps is None else z


def philox_rademacher(
    key: tuple[int, int],
    ids: Tensor,
    step: int,
    numel: int,
    dtype=torch.float32,
    n_steps: int | None = None,
) -> Tensor:
    """±1 [B, numel] (or [B, n_steps, numel]) of keyed draws.

    Element e is the top bit of word e (see `philox_words`).
    """
    w = philox_words(key, ids, step, -(-numel // 4), n_steps)[..., :numel]
    return torch.rsub(w.bitwise_right_shift_(31), 1, alpha=2).to(dtype)
