"""Q8 — cost of the keyed noise (Philox4x32-10, `Keys`) against `torch.randn` of the same size.

A step's [B, D] standard normals, four ways (five with --compile), interleaved round by round in
one process (each timed call draws S = max(1, min(64, 2¹⁶ // (B·D))) steps; times are per step):
  - `torch.randn`          the global generator: the floor, but not batch invariant;
  - `Keys` (default)       `SampleNoise.normal`: Philox words + Box–Muller in float64, cast to
                           float32 (what every sampler draws per step; small draws are computed
                           a run of steps per call);
  - `philox float32 work`  the same words, Box–Muller in float32 (`philox_normal(work=float32)`,
                           all the timed steps in one call);
  - `old CPU streams`      the previous implementation, kept here only as a baseline: one
                           torch.Generator per sample seeded by splitmix64, drawing a block of 64
                           steps at a time (its per-step cost = block time / 64), then moved;
  - `Keys, compiled words` (--compile) `Keys` with `philox.set_compiled`: the ten rounds in one
                           torch.compile'd kernel (its compile time is reported apart).
Reported: per-round ratios to `torch.randn` (median, min–max) of the thread's CPU time (one
intra-op thread: the compute itself, not the waits of a shared machine; the headline
`cost_ratio_vs_randn`) and of the wall time. With `--device cuda` the first three draw on the GPU
(the old streams still draw on the CPU and copy) and only wall times (synchronised) are meaningful
→ noise_cost_cuda.json. `ops_per_draw`: the torch ops (on a GPU, each a kernel launch) of one
`Keys` draw of the first case, counted by dispatch (views and allocations left out): on the run's
device, and on the CPU for the CPU's round loop and for the one other devices use.
"""

from __future__ import annotations

import time
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks.common import parse, ratio_stats, save, stats, sync, table
from cartoonist.diffusion import SampleNoise, philox
from cartoonist.diffusion.philox import philox_normal
from cartoonist.diffusion.rng import stream_key

_MASK64 = (1 << 64) - 1
OLD_BLOCK = 64


def _old_seed(seed: int, sample_id: int, code: int = 2) -> int:
    """The previous stream seed: splitmix64 of (seed, sample_id, stream code)."""

    def mix(z):
        z = (z + 0x9E3779B97F4A7C15) & _MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    return mix(mix(mix(seed) ^ sample_id) ^ code) >> 1


class _OpCounter(TorchDispatchMode):
    """Counts the aten ops run under it, views and allocations left out."""

    SKIP = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "lift_fresh"}

    def __init__(self):
        super().__init__()
        self.ops = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not func.is_view and name not in self.SKIP:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


def _ops_per_draw(B: int, D: int, device) -> dict:
    """Torch ops of one `Keys` draw of [B, D] (a fresh source: the call that computes it)."""

    def count(dev):
        src = SampleNoise(0, range(B), "brownian", dtype=torch.float32, device=dev)
        with _OpCounter() as c:
            src.normal((D,))
        return sum(c.ops.values())

    out = {"this_device": count(device), "cpu": count("cpu")}
    cpu_loop = philox._LOOPS["cpu"]
    philox._LOOPS["cpu"] = philox._rounds_views  # the loop of every other device, on the CPU
    try:
        out["other_devices_loop_on_cpu"] = count("cpu")
    finally:
        philox._LOOPS["cpu"] = cpu_loop
    return out


def _contenders(B: int, D: int, S: int, device, compiled: bool = False) -> dict:
    """Name → (callable drawing steps of [B, D] normals, the number of steps it draws)."""
    gens = [torch.Generator().manual_seed(_old_seed(0, i)) for i in range(B)]
    keyed = SampleNoise(0, range(B), "brownian", dtype=torch.float32, device=device)
    keyed_c = SampleNoise(0, range(B), "brownian", dtype=torch.float32, device=device)
    key = stream_key(0, "brownian")
    ids = torch.stack(
        [torch.arange(B, device=device), torch.zeros(B, dtype=torch.long, device=device)], 1
    )
    first = iter(range(0, 1 << 30, S))

    def randn():
        for _ in range(S):
            torch.randn(B, D, device=device)

    def keys():
        for _ in range(S):
            keyed.normal((D,))

    def old_block():  # 64 steps of the old per-sample streams, then one copy
        buf = torch.stack([torch.randn((OLD_BLOCK, D), generator=g) for g in gens])
        return buf.to(device=device)

    def keys_compiled():
        philox.set_compiled(True)
        try:
            for _ in range(S):
                keyed_c.normal((D,))
        finally:
            philox.set_compiled(False)

    out = {
        "torch.randn": (randn, S),
        "Keys (float64 work)": (keys, S),
        "philox float32 work": (
            lambda: philox_normal(key, ids, next(first), D, torch.float32, torch.float32, S),
            S,
        ),
        "old CPU streams": (old_block, OLD_BLOCK),
    }
    if compiled:
        out["Keys, compiled words"] = (keys_compiled, S)
    return out


def _times(fns: dict, repeat: int, warmup: int = 2) -> tuple[dict, dict]:
    """(wall, thread CPU) seconds of each callable, interleaved round by round after a warm-up."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    sync()
    wall, cpu = {k: [] for k in fns}, {k: [] for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            w, c = time.perf_counter(), time.thread_time()
            f()
            sync()
            cpu[k].append(time.thread_time() - c)
            wall[k].append(time.perf_counter() - w)
    return wall, cpu


def main():
    """Time the contenders per case, print the table and write noise_cost.json."""
    args = parse(
        __doc__.splitlines()[0],
        {"compile": "also time Keys with torch.compile'd Philox words (philox.set_compiled)"},
    )
    cases = [(64, 3072), (64, 64), (1024, 2)]
    cases = cases if args.quick else cases[:1] + [(256, 3072)] + cases[1:]
    repeat = 21 if args.quick else 61
    rows, out = [], {}
    for B, D in cases:
        S = max(1, min(64, (1 << 16) // (B * D)))  # steps per timed call: ≥ 64k normals
        fns = _contenders(B, D, S, args.device, args.compile)
        compile_s = None
        if args.compile:  # the first calls compile (one graph per broadcast pattern)
            t = time.perf_counter()
            fns["Keys, compiled words"][0]()
            sync()
            compile_s = time.perf_counter() - t
        wall, cpu = _times({k: f for k, (f, _) in fns.items()}, repeat)
        for t in (wall, cpu):  # seconds per step
            for k, (_, steps) in fns.items():
                t[k] = [x / steps for x in t[k]]
        case = {
            "randn_seconds": {"wall": stats(wall["torch.randn"]), "cpu": stats(cpu["torch.randn"])}
        }
        if compile_s is not None:
            case["compiled_first_call_seconds"] = compile_s
        for name in wall:
            if name == "torch.randn":
                continue
            rc = ratio_stats(cpu[name], cpu["torch.randn"])
            rw = ratio_stats(wall[name], wall["torch.randn"])
            case[name] = {
                "seconds_per_step": {"wall": stats(wall[name]), "cpu": stats(cpu[name])},
                "ratio_to_randn": {"cpu": rc, "wall": rw},
            }
            rows.append(
                {
                    "B x D": f"{B} x {D}",
                    "generator": name,
                    "cpu ms/step": 1e3 * stats(cpu[name])["median"],
                    "randn cpu ms": 1e3 * stats(cpu["torch.randn"])["median"],
                    "cpu ratio": rc["median"],
                    "min": rc["min"],
                    "max": rc["max"],
                    "wall ratio": rw["median"],
                }
            )
        out[f"{B}x{D}"] = case
    table(
        rows,
        [
            "B x D",
            "generator",
            "cpu ms/step",
            "randn cpu ms",
            "cpu ratio",
            "min",
            "max",
            "wall ratio",
        ],
        f"Q8 keyed noise cost per step, ratio to torch.randn ({args.device}, {repeat} rounds)",
    )
    metric = "cpu" if args.device.type == "cpu" else "wall"
    main_case = out[f"{cases[0][0]}x{cases[0][1]}"]
    save(
        "noise_cost",
        {
            "cost_ratio_vs_randn": main_case["Keys (float64 work)"]["ratio_to_randn"][metric],
            "cost_ratio_measure": f"{metric} time per step, B x D = "
            f"{cases[0][0]} x {cases[0][1]}, float32 output, Keys vs torch.randn",
            "ops_per_draw": {
                "measure": f"torch ops of one Keys draw of {cases[0][0]} x {cases[0][1]} "
                "(views, allocations left out); on a GPU each is a kernel launch",
                **_ops_per_draw(*cases[0], args.device),
            },
            "cases": out,
        },
        args,
    )


if __name__ == "__main__":
    main()
