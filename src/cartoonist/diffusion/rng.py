"""Randomness keyed per sample (convention C5).

All noise used for sample i — its initial draw, Brownian increments, Hutchinson probes, the λ
points of a Monte Carlo ELBO — is a function of (seed, sample_id, stream, step, element): the
k-th draw (`step` k) of a stream, element e of the event, is Philox4x32-10 (`philox`) of the
counter (⌊e/4⌋, k, sample_id) under a key mixed from (seed, stream). A sample's numbers are then
the same whatever the batch it is computed in, its position there, the batch size, the number of
processes or the device: they are computed where the state lives (no host-to-device copy), with
integer ops that are identical on the CPU and CUDA (the normals' final log/cos/sin may differ in
the last ulp between the two, see `philox`).
"""

from __future__ import annotations

import math
from typing import Protocol, Sequence

import torch
from torch import Tensor

from cartoonist.diffusion.philox import MASK32, philox_normal, philox_rademacher

__all__ = [
    "Keys",
    "NoiseSource",
    "SampleNoise",
    "BatchNoise",
    "as_noise",
    "check_noise",
    "next_stage",
    "stream_key",
]

_MASK64 = (1 << 64) - 1
RUN_ELEMENTS = 1 << 16  # values per Philox call at least, for small draws (see SampleNoise._draw)
MAX_RUN = 64  # steps per call at most
_STREAMS = {"prior": 1, "brownian": 2, "probe": 3, "lambda": 4, "data": 5, "posterior": 6}


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def stream_key(seed: int, stream: str | int) -> tuple[int, int]:
    """The 64-bit Philox key (k0, k1) of (seed, stream), mixed with splitmix64."""
    code = _STREAMS.get(stream, stream) if isinstance(stream, str) else int(stream)
    if isinstance(code, str):
        code = sum((i + 1) * ord(c) for i, c in enumerate(code)) + 1000
    z = _splitmix64(_splitmix64(int(seed) & _MASK64) ^ (code & _MASK64))
    return z & MASK32, z >> 32


class NoiseSource(Protocol):
    """Something that draws a batch of standard normal or Rademacher tensors.

    `normal(event_shape)` returns [B, *event_shape]; successive calls return fresh draws.
    """

    batch_size: int

    def normal(self, event_shape: Sequence[int]) -> Tensor:
        """A fresh standard normal draw [B, *event_shape]."""
        ...

    def rademacher(self, event_shape: Sequence[int]) -> Tensor:
        """A fresh ±1 draw [B, *event_shape]."""
        ...


class SampleNoise:
    """Per-sample streams keyed by (seed, sample_id, stream); batch invariant, drawn on `device`.

    The k-th call (`normal` or `rademacher`, k = 0, 1, …) is step k of the stream: one
    vectorised Philox evaluation of the whole [B, D] block on `device` (for small blocks, of the
    next steps too, which are then sliced: the same numbers, fewer calls).

    Args:
        seed: base seed.
        sample_ids: [B] integer ids (any order, need not be contiguous; taken modulo 2⁶⁴).
        stream: a name ("prior", "brownian", "probe", "lambda", ...) separating independent uses.
        dtype, device: of the returned tensors. Box–Muller runs in float64, so a float32 draw is
            the float64 draw rounded: one stream for every dtype.
    """

    def __init__(
        self,
        seed: int,
        sample_ids: Sequence[int] | Tensor,
        stream: str = "brownian",
        dtype: torch.dtype = torch.float32,
        device=None,
    ):
        self.dtype, self.device = dtype, torch.device("cpu") if device is None else device
        self._key, self._step = stream_key(seed, stream), 0
        if isinstance(sample_ids, range) and sample_ids.step == 1 and 0 <= sample_ids.start:
            lo = torch.arange(sample_ids.start, sample_ids.stop, device=self.device)
            ids = torch.stack([lo & MASK32, lo >> 32], 1)  # made on the device: no copy
        else:
            ids = sample_ids.tolist() if isinstance(sample_ids, Tensor) else list(sample_ids)
            ids = [int(i) & _MASK64 for i in ids]  # one small copy of B ids, not of the noise
            ids = torch.tensor([[i & MASK32, i >> 32] for i in ids], device=self.device)
        self._ids = ids.to(torch.int64).reshape(-1, 2)  # [B, 2]: low, high 32 bits of each id
        self.batch_size = self._ids.shape[0]
        self._runs: dict[tuple, tuple[int, Tensor]] = {}  # (kind, shape) → (first step, run)

    def _draw(self, kind: str, event_shape: Sequence[int]) -> Tensor:
        """Step k of the stream (k = calls so far), from a run of steps computed together.

        A call costs ~80 small torch ops whatever its size (~60 on CUDA), so for small [B, D]
        the next `n_steps` steps of this shape are computed in one call (≈ RUN_ELEMENTS values)
        and sliced. Every value is a function of (key, id, step, element) only, so this changes no
        number: a run is a cache, and a step of another shape in between just leaves one unused.
        """
        shape = tuple(int(s) for s in event_shape)
        step, numel = self._step, math.prod(shape)
        self._step += 1
        first, run = self._runs.get((kind, shape), (0, None))
        if run is None or not first <= step < first + run.shape[1]:
            n = max(1, min(MAX_RUN, RUN_ELEMENTS // max(1, self.batch_size * numel)))
            n = min(n, MASK32 + 1 - step)
            if kind == "normal":
                run = philox_normal(self._key, self._ids, step, numel, self.dtype, n_steps=n)
            else:
                run = philox_rademacher(self._key, self._ids, step, numel, self.dtype, n_steps=n)
            first = step
            self._runs[(kind, shape)] = (first, run)
        return run[:, step - first].reshape(self.batch_size, *shape)

    def normal(self, event_shape: Sequence[int]) -> Tensor:
        """A fresh standard normal draw [B, *event_shape]."""
        return self._draw("normal", event_shape)

    def rademacher(self, event_shape: Sequence[int]) -> Tensor:
        """A fresh ±1 draw [B, *event_shape] (top bits of the draw's Philox words)."""
        return self._draw("rademacher", event_shape)


class BatchNoise:
    """One generator for the whole batch: fastest, but a sample's draws depend on the batch.

    Args:
        batch_size: B.
        generator: a torch.Generator; None uses the global (CPU) RNG. A CPU generator draws in
            float64 (the same numbers for every dtype); a CUDA one, e.g.
            `torch.Generator("cuda").manual_seed(0)`, draws in `dtype` on its device (no copies,
            but its numbers are its device's own).
    """

    def __init__(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device=None,
    ):
        self.batch_size, self.generator = batch_size, generator
        self.dtype, self.device = dtype, device

    def normal(self, event_shape: Sequence[int]) -> Tensor:
        """A fresh standard normal draw [B, *event_shape]."""
        shape = (self.batch_size, *event_shape)
        g = self.generator
        if g is not None and g.device.type != "cpu":
            return torch.randn(shape, generator=g, dtype=self.dtype, device=g.device)
        z = torch.randn(shape, generator=g, dtype=torch.float64)
        return z.to(dtype=self.dtype, device=self.device)

    def rademacher(self, event_shape: Sequence[int]) -> Tensor:
        """A fresh ±1 draw [B, *event_shape]."""
        z = self.normal(event_shape)
        return torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


class Keys:
    """The key of per-sample randomness: a base seed and the batch's sample ids.

    The one `noise=` argument of every sampler and estimator takes a `Keys`, a torch.Generator or
    None (= `Keys(0)`: seed 0, ids 0..B−1). A function draws each of its uses from its own stream
    (`keys.source(B, "brownian")`, `"probe"`, `"prior"`, `"lambda"`), so passing the same Keys to
    `sample_prior` and to a sampler gives independent prior draws and Brownian paths.

    Args:
        seed: base seed (an integer).
        sample_ids: [B] integer ids (any order), or None for 0..B−1 of whatever batch uses them.
    """

    __slots__ = ("seed", "sample_ids")

    def __init__(self, seed: int = 0, sample_ids: Sequence[int] | Tensor | None = None):
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"noise: Keys seed must be an integer, got {seed!r}")
        if sample_ids is not None:
            ids = sample_ids.tolist() if isinstance(sample_ids, Tensor) else list(sample_ids)
            sample_ids = tuple(int(i) for i in ids)
        self.seed, self.sample_ids = seed, sample_ids

    def __repr__(self) -> str:
        return f"Keys(seed={self.seed}, sample_ids={self.sample_ids})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Keys) and (self.seed, self.sample_ids) == (
            other.seed,
            other.sample_ids,
        )

    def __hash__(self) -> int:
        return hash((self.seed, self.sample_ids))

    def ids(self, batch_size: int) -> Sequence[int]:
        """The ids of a batch of `batch_size` (ValueError naming `noise` if they do not match)."""
        if self.sample_ids is None:
            return range(batch_size)
        if len(self.sample_ids) != batch_size:
            raise ValueError(
                f"noise: Keys has {len(self.sample_ids)} sample_ids but the batch has {batch_size}"
            )
        return self.sample_ids

    def source(
        self, batch_size: int, stream: str, dtype=torch.float32, device=None
    ) -> "SampleNoise":
        """The per-sample NoiseSource of `stream` ("prior", "brownian", "probe", "lambda", ...)."""
        return SampleNoise(self.seed, self.ids(batch_size), stream, dtype=dtype, device=device)

    def stage(self, k: int = 1) -> "Keys":
        """The keys of a later stage of one sampler: `Keys(seed + k, sample_ids)`.

        Algorithm 1 (`hd_sample`) draws its second stage from `keys.stage(1)`.
        """
        return Keys(self.seed + int(k), self.sample_ids)


def check_noise(noise, batch_size: int) -> None:
    """Validate a `noise=` argument against the batch (ValueError naming `noise`)."""
    if noise is None or isinstance(noise, torch.Generator):
        return
    if isinstance(noise, Keys):
        noise.ids(batch_size)
        return
    if not hasattr(noise, "batch_size"):
        raise ValueError(
            f"noise must be a Keys, a torch.Generator, a NoiseSource or None, got "
            f"{type(noise).__name__}"
        )
    if noise.batch_size != batch_size:
        raise ValueError(
            f"noise source has batch_size {noise.batch_size}, the batch has {batch_size}"
        )


def as_noise(noise, batch_size: int, stream: str, dtype=torch.float32, device=None) -> NoiseSource:
    """Resolve a `noise=` argument to the NoiseSource of one stream.

    Args:
        noise: None (= Keys(0)), a Keys (its per-sample `stream`), a torch.Generator (wrapped in
            BatchNoise: fast, but a sample's draws depend on its batch) or a NoiseSource (as is).
        batch_size: B.
        stream: stream name, used by Keys.
    """
    check_noise(noise, batch_size)
    if noise is None:
        noise = Keys()
    if isinstance(noise, Keys):
        return noise.source(batch_size, stream, dtype=dtype, device=device)
    if isinstance(noise, torch.Generator):
        return BatchNoise(batch_size, noise, dtype=dtype, device=device)
    return noise


def next_stage(noise, k: int = 1):
    """The `noise=` of a later stage of a sampler.

    `Keys.stage(k)` for keys (None counts as Keys(0)); a Generator or NoiseSource is shared and
    continues its draws.
    """
    if noise is None:
        noise = Keys()
    return noise.stage(k) if isinstance(noise, Keys) else noise
