"""Q7 — cost of the keyed noise (Philox4x32-10, `Keys`) against `torch.randn` of the same size.

One step's [B, D] standard normals, four ways, interleaved round by round in one process:
  - `torch.randn`          the global generator: the floor, but not batch invariant;
  - `Keys` (default)       `SampleNoise.normal`: Philox words + Box–Muller in float64, cast to
                           float32 (what every sampler draws per step);
  - `philox float32 work`  the same words, Box–Muller in float32 (`philox_normal(work=float32)`);
  - `old CPU streams`      the previous implementation, kept here only as a baseline: one
                           torch.Generator per sample seeded by splitmix64, drawing a block of 64
                           steps at a time (its per-step cost = block time / 64), then moved.
Reported: per-round ratios to `torch.randn` (median, min–max) of the thread's CPU time (one
intra-op thread: the compute itself, not the waits of a shared machine; the headline
`cost_ratio_vs_randn`) and of the wall time. With `--device cuda` the first three draw on the GPU
(the old streams still draw on the CPU and copy) and only wall times (synchronised) are meaningful
→ noise_cost_cuda.json.
"""

from __future__ import annotations

import time

import torch

from benchmarks.common import parse, ratio_stats, save, stats, sync, table
from cartoonist.diffusion import SampleNoise
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


def _contenders(B: int, D: int, device):
    gens = [torch.Generator().manual_seed(_old_seed(0, i)) for i in range(B)]
    keyed = SampleNoise(0, range(B), "brownian", dtype=torch.float32, device=device)
    key = stream_key(0, "brownian")
    ids = torch.stack(
        [torch.arange(B, device=device), torch.zeros(B, dtype=torch.long, device=device)], 1
    )
    step = iter(range(1 << 30))

    def old_block():  # 64 steps of the old per-sample streams, then one copy
        buf = torch.stack([torch.randn((OLD_BLOCK, D), generator=g) for g in gens])
        return buf.to(device=device)

    return {
        "torch.randn": lambda: torch.randn(B, D, device=device),
        "Keys (float64 work)": lambda: keyed.normal((D,)),
        "philox float32 work": lambda: philox_normal(
            key, ids, next(step), D, torch.float32, work=torch.float32
        ),
        "old CPU streams (64-step block)": old_block,
    }


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
    args = parse(__doc__.splitlines()[0])
    cases = [(64, 3072), (1024, 64)] if args.quick else [(64, 3072), (256, 3072), (1024, 64)]
    repeat = 21 if args.quick else 61
    rows, out = [], {}
    old = "old CPU streams (64-step block)"
    for B, D in cases:
        wall, cpu = _times(_contenders(B, D, args.device), repeat)
        for t in (wall, cpu):
            t[old] = [x / OLD_BLOCK for x in t[old]]
        case = {
            "randn_seconds": {"wall": stats(wall["torch.randn"]), "cpu": stats(cpu["torch.randn"])}
        }
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
                    "cpu ms": 1e3 * stats(cpu[name])["median"],
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
        ["B x D", "generator", "cpu ms", "randn cpu ms", "cpu ratio", "min", "max", "wall ratio"],
        f"Q7 keyed noise cost per step, ratio to torch.randn ({args.device}, {repeat} rounds)",
    )
    metric = "cpu" if args.device.type == "cpu" else "wall"
    main_case = out[f"{cases[0][0]}x{cases[0][1]}"]
    save(
        "noise_cost",
        {
            "cost_ratio_vs_randn": main_case["Keys (float64 work)"]["ratio_to_randn"][metric],
            "cost_ratio_measure": f"{metric} time per step, B x D = {cases[0][0]} x {cases[0][1]}, "
            "float32 output, Keys vs torch.randn",
            "cases": out,
        },
        args,
    )


if __name__ == "__main__":
    main()
