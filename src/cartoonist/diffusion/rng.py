"""Randomness keyed per sample (convention C5).

All noise used for sample i — its initial draw, Brownian increments, Hutchinson probes, the λ
points of a Monte Carlo ELBO — comes from a generator seeded by (seed, sample_id, stream). A
sample's numbers are then the same whatever the batch it is computed in, the batch size or the
number of processes.

Generators draw in fixed-size blocks of steps (not per step), which makes per-sample streams ~50×
cheaper on CPU; the block size is a constant of the stream, so results still do not depend on the
batch. Draws are made on the CPU in float32, so they are also the same on every device. For a GPU
run a block is filled by a thread pool and moved in one copy, and the next block is prepared in the
background while the current one is used, which keeps the CPU off the sampler's critical path
(benchmarks/sampler_overhead.py --device cuda).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, Sequence

import torch
from torch import Tensor

__all__ = [
    "Keys",
    "NoiseSource",
    "SampleNoise",
    "BatchNoise",
    "as_noise",
    "check_noise",
    "next_stage",
    "stream_seed",
]

_MASK64 = (1 << 64) - 1
_STREAMS = {"prior": 1, "brownian": 2, "probe": 3, "lambda": 4, "data": 5, "posterior": 6}


_POOL: ThreadPoolExecutor | None = None
_AHEAD: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """The shared pool that fills noise blocks for non-CPU devices (torch.randn frees the GIL)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    return _POOL


def _ahead() -> ThreadPoolExecutor:
    """One background thread that prepares next blocks (it hands the filling to `_pool`)."""
    global _AHEAD
    if _AHEAD is None:
        _AHEAD = ThreadPoolExecutor(max_workers=1)
    return _AHEAD


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def stream_seed(seed: int, sample_id: int, stream: str | int) -> int:
    """A 63-bit generator seed mixed from (seed, sample_id, stream) with splitmix64."""
    code = _STREAMS.get(stream, stream) if isinstance(stream, str) else int(stream)
    if isinstance(code, str):
        code = sum((i + 1) * ord(c) for i, c in enumerate(code)) + 1000
    z = _splitmix64(int(seed) & _MASK64)
    z = _splitmix64(z ^ (int(sample_id) & _MASK64))
    z = _splitmix64(z ^ code)
    return z >> 1


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
    """Per-sample streams keyed by (seed, sample_id, stream); batch-size invariant.

    Args:
        seed: base seed.
        sample_ids: [B] integer ids (any order, need not be contiguous).
        stream: a name ("prior", "brownian", "probe", "lambda", ...) separating independent uses.
        dtype, device: of the returned tensors.
        block: number of draws generated per refill (a constant of the stream, not of the batch).
        threads: fill each block with this many threads (default: 1 on the CPU, where the
            sampler's own ops use the cores; up to 8 for other devices). The numbers do not
            depend on it.
        prefetch: prepare the next block in the background once half of the current one is
            used (default: on for non-CPU devices). Only while a single event shape is drawn:
            if another shape comes first, the generators are rewound and the draws stay in the
            synchronous order, so the numbers do not depend on it either.
    """

    def __init__(
        self,
        seed: int,
        sample_ids: Sequence[int] | Tensor,
        stream: str = "brownian",
        dtype: torch.dtype = torch.float32,
        device=None,
        block: int = 64,
        threads: int | None = None,
        prefetch: bool | None = None,
    ):
        ids = sample_ids.tolist() if isinstance(sample_ids, Tensor) else list(sample_ids)
        self.batch_size = len(ids)
        self.dtype, self.device, self.block = dtype, device, block
        on_cpu = device is None or torch.device(device).type == "cpu"
        self.threads = threads if threads is not None else (1 if on_cpu else 8)
        self.prefetch = (not on_cpu) if prefetch is None else prefetch
        self._gens = [torch.Generator().manual_seed(stream_seed(seed, i, stream)) for i in ids]
        self._buf: dict[tuple, tuple[Tensor, int]] = {}
        self._next = None  # (key, Future of its next block, generator states before it)

    def _refill(self, key: tuple) -> Tensor:
        """Every stream's next `block` draws of shape `key`: [B, block, *key] on self.device."""
        shape = (self.block, *key)
        B = len(self._gens)
        # Generated in float32 on the CPU, so the stream is the same for every dtype and device.
        if self.threads <= 1 or B < 2:
            buf = torch.stack([torch.randn(shape, generator=g) for g in self._gens]) if B else None
            buf = torch.empty((0, *shape)) if buf is None else buf
        else:
            buf = torch.empty((B, *shape))
            chunks = [range(i, B, self.threads) for i in range(min(self.threads, B))]

            inference = buf.is_inference()  # made under inference_mode, which is per thread

            def fill(rows):
                with torch.inference_mode(inference):
                    for i in rows:
                        torch.randn(shape, generator=self._gens[i], out=buf[i])

            for f in [_pool().submit(fill, rows) for rows in chunks]:
                f.result()
        # One copy per block; each step then takes a slice where the sampler runs.
        return buf.to(dtype=self.dtype, device=self.device)

    def _next_block(self, key: tuple) -> Tensor:
        """The next block of `key`: the prefetched one if it is for `key`, else drawn now."""
        if self._next is not None:
            k, future, states = self._next
            self._next = None
            block = future.result()
            if k == key:
                return block
            for g, state in zip(self._gens, states):  # another shape came first: rewind
                g.set_state(state)
        return self._refill(key)

    def normal(self, event_shape: Sequence[int]) -> Tensor:
        """A fresh standard normal draw [B, *event_shape]."""
        key = tuple(int(s) for s in event_shape)
        buf, pos = self._buf.get(key, (None, self.block))
        if pos >= self.block:
            buf, pos = self._next_block(key), 0
        self._buf[key] = (buf, pos + 1)
        if self.prefetch and pos == self.block // 2 and len(self._buf) == 1 and not self._next:
            states = [g.get_state() for g in self._gens]
            self._next = (key, _ahead().submit(self._refill, key), states)
        return buf[:, pos]

    def rademacher(self, event_shape: Sequence[int]) -> Tensor:
        """A fresh ±1 draw [B, *event_shape] (the sign of a normal draw)."""
        z = self.normal(event_shape)
        return torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


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
