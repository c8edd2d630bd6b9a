"""Shared helpers of the benchmarks: paired timing, tables, JSON outputs in outputs/bench/.

Timings on this kind of machine drift between runs, so every comparison is measured in one process
with the contenders interleaved (A B A B …) after a warm-up; ratios are taken per round and
reported as the median with the min–max spread.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("CARTOONIST_BENCH_DIR", ROOT / "outputs" / "bench"))


def parse(description: str, flags: dict[str, str] | None = None) -> argparse.Namespace:
    """The common command line: --quick (the `make bench-quick` sizes), --threads, --device.

    `flags`: a benchmark's own on/off options, name → help.
    """
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes (make bench-quick)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--device", default="cpu", help="torch device of the networks (e.g. cuda)")
    for name, help_ in (flags or {}).items():
        p.add_argument(f"--{name}", action="store_true", help=help_)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    a.device = torch.device(a.device)
    if a.device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is visible")
    return a


def sync(device=None) -> None:
    """Wait for queued CUDA work (a no-op on the CPU), so wall clocks measure the compute."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize(device)


def environment(args) -> dict:
    """What the numbers depend on: versions, threads, allocator."""
    pre = os.environ.get("LD_PRELOAD", "")
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": str(getattr(args, "device", "cpu")),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "allocator": "tcmalloc" if "tcmalloc" in pre else "glibc malloc",
        "quick": bool(args.quick),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def stats(values: list[float]) -> dict:
    """Median and min–max spread of repeated measurements."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def paired_times(fns: dict, repeat: int = 5, warmup: int = 1) -> dict[str, list[float]]:
    """Wall seconds of each callable, interleaved round by round after `warmup` rounds.

    On a GPU each call is followed by a synchronize, so it is timed to its last kernel.
    """
    for _ in range(warmup):
        for f in fns.values():
            f()
    sync()
    out = {k: [] for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            sync()
            out[k].append(time.perf_counter() - t)
    return out


def cpu_clock(device) -> tuple:
    """(clock, name) for paired timings: process CPU time on the CPU, the wall clock on a GPU.

    With one intra-op thread the process CPU time excludes the time another process holds the
    core, which is most of the round-to-round noise of wall clocks on a shared machine.
    """
    if getattr(device, "type", str(device)) == "cpu":
        return time.process_time, "process_time"
    return time.perf_counter, "wall (perf_counter + synchronize)"


def interleaved_times(
    fns: dict, rounds: int, warmup: int = 1, clock=time.perf_counter
) -> dict[str, list[float]]:
    """Seconds of each callable over `rounds` interleaved rounds, measured with `clock`.

    Every round runs each contender once; odd rounds run them in reverse order so that no
    contender always follows the same one (cache and frequency effects cancel in the ratio).
    """
    for _ in range(warmup):
        for f in fns.values():
            f()
    sync()
    out = {k: [] for k in fns}
    items = list(fns.items())
    for i in range(rounds):
        for k, f in items if i % 2 == 0 else items[::-1]:
            t = clock()
            f()
            sync()
            out[k].append(clock() - t)
    return out


def ratio_ci(num: list[float], den: list[float], level: float = 0.95, boot: int = 4000) -> dict:
    """Per-round ratios num/den of paired rounds: mean with a t interval and a bootstrap one.

    Returns mean, median, min, max, n, the t interval `ci` = [lo, hi] of the mean at `level`,
    `ci_halfwidth`, and the percentile bootstrap interval `ci_bootstrap` of the mean (resampling
    rounds, seeded), which does not assume normal per-round ratios.
    """
    r = torch.tensor([a / b for a, b in zip(num, den)], dtype=torch.float64)
    n = r.numel()
    mean, sd = float(r.mean()), float(r.std()) if n > 1 else float("nan")
    t = _t_quantile(0.5 + level / 2, n - 1)
    half = t * sd / math.sqrt(n)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, n, (boot, n), generator=g)
    means = r[idx].mean(1).sort().values
    a = (1 - level) / 2
    lo, hi = float(means[int(a * boot)]), float(means[min(boot - 1, int((1 - a) * boot))])
    return {
        "mean": mean,
        "median": float(r.median()),
        "min": float(r.min()),
        "max": float(r.max()),
        "n": n,
        "ci_level": level,
        "ci": [mean - half, mean + half],
        "ci_halfwidth": half,
        "ci_bootstrap": [lo, hi],
    }


def diff_ci(a: list[float], b: list[float], level: float = 0.95) -> dict:
    """Per-round differences a − b of paired rounds: mean with its t interval `ci`."""
    d = [x - y for x, y in zip(a, b)]
    n, mean = len(d), statistics.fmean(d)
    half = _t_quantile(0.5 + level / 2, n - 1) * statistics.stdev(d) / math.sqrt(n)
    return {"mean": mean, "n": n, "ci_level": level, "ci": [mean - half, mean + half]}


def _t_quantile(p: float, df: int) -> float:
    """Student t quantile, by the Cornish–Fisher expansion about the normal.

    Within 1 % of the exact quantile for df ≥ 5 and 0.1 % for df ≥ 10.
    """
    z = statistics.NormalDist().inv_cdf(p)
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def ratio_stats(num: list[float], den: list[float]) -> dict:
    """Per-round ratios num/den of paired measurements, as `stats`."""
    return stats([a / b for a, b in zip(num, den)])


def save(name: str, result: dict, args) -> Path:
    """Write outputs/bench/<name>.json (with the environment) and return its path.

    Runs on another device write <name>_<device type>.json (e.g. tracking_overhead_cuda.json).
    """
    device = getattr(args, "device", None)
    if device is not None and device.type != "cpu":
        name = f"{name}_{device.type}"
    OUT.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "environment": environment(args), **result}
    path = OUT / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, default=float) + "\n")
    tmp.replace(path)
    print(f"[bench] wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def table(rows: list[dict], cols: list[str], title: str = "") -> None:
    """Print rows as an aligned text table (floats with 4 significant digits)."""

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [
        max(len(c), *(len(x[i]) for x in cells)) if cells else len(c) for i, c in enumerate(cols)
    ]
    if title:
        print(f"\n== {title} ==")
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for x in cells:
        print("  ".join(v.ljust(w) for v, w in zip(x, widths)))
    sys.stdout.flush()


def unet(event_shape=(1, 8, 8), channels=(32, 64, 64), device="cpu"):
    """The small U-Net of the pipeline (random weights: timings do not depend on them)."""
    from cartoonist.models import UNet

    torch.manual_seed(0)
    net = UNet(event_shape=event_shape, channels=list(channels))
    return net.eval().requires_grad_(False).to(device)


def mlp(dim: int, device="cpu"):
    """The pipeline's residual MLP ε-predictor on flat data of `dim` dimensions."""
    from cartoonist.models import MLP

    torch.manual_seed(0)
    return MLP(event_shape=(dim,)).eval().requires_grad_(False).to(device)


def gpu_cases(device) -> list[tuple]:
    """The (name, network, event shape, batch) cases at GPU sizes.

    CIFAR-size U-Nets, where the network dominates a step and a per-step host overhead shows.
    """
    return [
        ("unet 3x32x32 ch 64-128-128", unet((3, 32, 32), (64, 128, 128), device), (3, 32, 32), 64),
        (
            "unet 3x32x32 ch 128-256-256",
            unet((3, 32, 32), (128, 256, 256), device),
            (3, 32, 32),
            256,
        ),
        ("mlp D=64", mlp(64, device), (64,), 1024),
    ]
