"""Counter-based random numbers: Philox4x32-10 in torch integer ops, and normals from it.

Philox4x32-10 (Salmon, Moraes, Dror & Shaw 2011, "Parallel random numbers: as easy as 1, 2, 3",
SC'11) is a keyed bijection of a 128-bit counter (four 32-bit words) under a 64-bit key (two
words): ten rounds of

    (c0, c1, c2, c3) ← (hi(M1·c2) ⊕ c1 ⊕ k0,  lo(M1·c2),  hi(M0·c0) ⊕ c3 ⊕ k1,  lo(M0·c0))
    (k0, k1) ← (k0 + W0, k1 + W1)  mod 2³²

with M0 = 0xD2511F53, M1 = 0xCD9E8D57 and the Weyl increments W0 = 0x9E3779B9, W1 = 0xBB67AE85.
Distinct counters under one key give distinct outputs, so every (counter, key) is its own draw:
no generator state, nothing to copy, and any element can be computed anywhere.

torch has no unsigned 32-bit multiply-high on every device, so the words are held in int64 tensors
(values in [0, 2³²)) and each 32×32 → 64-bit product is split over 16-bit limbs of the counter
word, which keeps every intermediate below 2⁴⁹: only integer +, *, >>, &, ^ on int64, identical on
the CPU and on CUDA by construction.

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

import torch
from torch import Tensor

__all__ = ["philox4x32", "philox_words", "philox_normal", "philox_rademacher", "M0", "M1"]

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF
ROUNDS = 10


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


def _mulhilo(m: Tensor, x: Tensor, hi: Tensor, lo: Tensor, tmp: Tensor) -> None:
    """hi, lo ← the 32-bit halves of the 64-bit products m·x of 32-bit words held in int64.

    x = xh·2¹⁶ + xl with 16-bit limbs; p_l = m·xl and p_h = m·xh are < 2⁴⁸, and
    m·x = p_h·2¹⁶ + p_l gives lo = (p_l + (p_h mod 2¹⁶)·2¹⁶) mod 2³² and
    hi = ⌊(p_h + ⌊p_l / 2¹⁶⌋) / 2¹⁶⌋, every intermediate < 2⁴⁹. Written into the given buffers
    (no allocation: fresh large tensors cost page faults on the CPU).
    """
    torch.bitwise_and(x, 0xFFFF, out=hi).mul_(m)  # p_l (becomes hi below)
    torch.bitwise_right_shift(x, 16, out=tmp).mul_(m)  # p_h
    torch.bitwise_and(tmp, 0xFFFF, out=lo).bitwise_left_shift_(16).add_(hi).bitwise_and_(MASK32)
    hi.bitwise_right_shift_(16).add_(tmp).bitwise_right_shift_(16)


def philox4x32(c0, c1, c2, c3, k0: int, k1: int, rounds: int = ROUNDS):
    """Philox4x32-`rounds` of a counter (c0, c1, c2, c3) under the key (k0, k1).

    The two multiplied words (c0, c2) are stacked, so a round is ~15 elementwise ops, all into
    five buffers allocated once.

    Args:
        c0..c3: int64 tensors (broadcastable to one shape, on one device) or ints, each holding a
            32-bit word.
        k0, k1: the key words (ints in [0, 2³²)).

    Returns:
        Four int64 tensors of the broadcast shape, the output words in [0, 2³²).
    """
    k0, k1 = int(k0) & MASK32, int(k1) & MASK32
    words = [c for c in (c0, c1, c2, c3) if isinstance(c, Tensor)]
    device = words[0].device if words else torch.device("cpu")
    # (torch.broadcast_shapes would import for ~1 s on its first call)
    shape = torch.broadcast_tensors(*words)[0].shape if words else torch.Size()
    a = torch.stack([torch.as_tensor(c, device=device).expand(shape) for c in (c0, c2)])
    m = _multipliers(device).view(2, *[1] * len(shape))
    hi, tmp, lo, lo_next = (torch.empty_like(a) for _ in range(4))
    for r in range(rounds):
        _mulhilo(m, a, hi, lo_next, tmp)  # [2, *shape]: M0·c0 and M1·c2
        torch.bitwise_xor(hi[1], c1, out=a[0]).bitwise_xor_(k0)  # c0 ← hi(M1·c2) ⊕ c1 ⊕ k0
        torch.bitwise_xor(hi[0], c3, out=a[1]).bitwise_xor_(k1)  # c2 ← hi(M0·c0) ⊕ c3 ⊕ k1
        lo, lo_next = lo_next, lo
        c1, c3 = lo[1], lo[0]  # c1 ← lo(M1·c2), c3 ← lo(M0·c0)
        if r < rounds - 1:
            k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
    return a[0], c1, a[1], c3


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
    if not (0 <= step and step + k - 1 <= MASK32 and k >= 1):
        raise ValueError(f"noise: steps {step}..{step + k - 1} outside [0, 2^32)")
    dev, B = ids.device, ids.shape[0]
    j = torch.arange(n_blocks, dtype=torch.int64, device=dev).view(1, 1, n_blocks)
    c1 = step if k == 1 else torch.arange(step, step + k, device=dev).view(1, k, 1)
    w = philox4x32(j, c1, ids[:, :1, None], ids[:, 1:, None], *key)  # each [B, k, J]
    w = torch.stack([x.expand(B, k, n_blocks) for x in w], -1).reshape(B, k, 4 * n_blocks)
    return w[:, 0] if n_steps is None else w


def _unit(w: Tensor, dtype: torch.dtype, plus_one: bool) -> Tensor:
    """(w + plus_one)·2⁻³² in `dtype`: exact in float64, correctly rounded in float32.

    In float32 the word is split into its top 24 bits and low 8 bits, each exact, so one
    correctly rounded addition forms the value (the same on every device).
    """
    if dtype == torch.float64:
        return (w + int(plus_one)).to(dtype).mul_(2.0**-32)
    hi = (w >> 8).to(dtype).mul_(2.0**-24)
    lo = ((w & 0xFF) + int(plus_one)).to(dtype).mul_(2.0**-32)
    return hi.add_(lo)


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
    J = -(-numel // 4)
    w = philox_words(key, ids, step, J, 1 if n_steps is None else n_steps)
    w = w.view(*w.shape[:2], J, 2, 2)
    u, v = w[..., 0], w[..., 1]  # [B, k, J, 2]: pairs (w0, w1) and (w2, w3)
    r = _unit(u, work, True).log_().mul_(-2.0).sqrt_()  # u ∈ (0, 1]: never log 0
    theta = _unit(v, work, False).mul_(2 * math.pi)
    z = torch.stack([r * theta.cos(), r.mul_(theta.sin_())], -1)  # [B, k, J, 2, 2]
    z = z.reshape(*w.shape[:2], 4 * J)[..., :numel].to(dtype)
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
    return (1 - 2 * (w >> 31)).to(dtype)
