"""Q9 — the divergence's cost per evaluation: forward mode (JVP) against reverse mode (VJP).

What `backend="auto"` (the default of every estimator with a Hutchinson divergence) rests on:
one score with its Hutchinson divergence (one fixed Rademacher probe, `score_and_laplacian`) by
torch.func.jvp and by the autograd tape, and a plain score for scale, on the same inputs, timed in
interleaved rounds (process CPU time on the CPU, the synchronised wall clock on a GPU). Saved per
case: the median cost of each, the per-round ratio forward/reverse with its 95 % interval, which
backend "auto" picks on this device and whether that is the faster one.

Cases: the pipeline's U-Net and MLP (random weights: costs do not depend on them) and the digits
PPCA oracle (float64) on the CPU; `--device cuda` runs the GPU-size U-Nets and the oracle there.
"""

from __future__ import annotations

import torch

from benchmarks.common import (
    cpu_clock,
    gpu_cases,
    interleaved_times,
    mlp,
    parse,
    ratio_ci,
    save,
    table,
    unet,
)
from cartoonist.diffusion import VP, score_from_eps
from cartoonist.diffusion.divergence import FixedProbes, resolve_backend, score_and_laplacian
from cartoonist.diffusion.score import as_counted


def oracle_case(device):
    """The digits PPCA oracle's exact score (D = 64, float64) on its own schedule."""
    from benchmarks.pf_ode_cost import oracle_setup

    case = oracle_setup(quick=False, device=device)
    return "digits PPCA oracle (float64)", case["score"], case["x"]


def network_cases(device, quick: bool):
    """(name, score, x) of the networks at this device's sizes."""
    sch = VP(-10.0, 10.0)
    if device.type == "cpu":
        nets = [("unet 1x8x8 (digits)", unet((1, 8, 8)), (1, 8, 8), 64)]
        nets.append(("mlp D=64", mlp(64), (64,), 256))
    else:
        nets = gpu_cases(device)
    g = torch.Generator().manual_seed(0)
    out = []
    for name, net, shape, batch in nets:
        x = torch.randn(batch if not quick else max(8, batch // 4), *shape, generator=g)
        out.append((name, score_from_eps(net, sch), x.to(device)))
    return out


def measure(name, score, x, rounds: int, clock) -> dict:
    """Plain score, JVP and VJP divergence of `score` at x: costs and the forward/reverse ratio."""
    lam = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    v = (torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(x)
    sc = as_counted(score)

    def div(backend):
        return lambda: score_and_laplacian(
            sc, x, lam, "hutchinson", 1, FixedProbes.from_tensors([v]), backend
        )

    def plain():
        with torch.no_grad():
            sc(x, lam)

    jobs = {"plain": plain, "forward": div("forward"), "reverse": div("reverse")}
    t = interleaved_times(jobs, rounds, warmup=2, clock=clock)
    med = {k: sorted(w)[len(w) // 2] for k, w in t.items()}
    ratio = ratio_ci(t["forward"], t["reverse"])
    faster = "forward" if ratio["ci"][1] < 1.0 else "reverse" if ratio["ci"][0] > 1.0 else "tie"
    auto = resolve_backend("auto", x)
    return {
        "case": name,
        "batch": x.shape[0],
        "plain_ms": 1e3 * med["plain"],
        "forward_ms": 1e3 * med["forward"],
        "reverse_ms": 1e3 * med["reverse"],
        "forward_over_reverse": ratio["mean"],
        "forward_over_reverse_ci95": ratio["ci"],
        "faster": faster,
        "auto_picks": auto,
        "auto_is_not_slower": faster in (auto, "tie"),
    }


def main():
    """Run the benchmark and write its JSON."""
    args = parse(__doc__.splitlines()[0])
    clock, clock_name = cpu_clock(args.device)
    print(f"[bench] clock: {clock_name}, device {args.device}")
    rounds = 8 if args.quick else 20
    cases = [oracle_case(args.device), *network_cases(args.device, args.quick)]
    rows = [measure(name, score, x, rounds, clock) for name, score, x in cases]
    for r in rows:
        lo, hi = r["forward_over_reverse_ci95"]
        r["ci95"] = f"{lo:.3g}–{hi:.3g}"
    table(
        rows,
        ["case", "batch", "plain_ms", "forward_ms", "reverse_ms", "forward_over_reverse", "ci95"]
        + ["auto_picks", "auto_is_not_slower"],
        "Q9 divergence per evaluation: forward mode (JVP) / reverse mode (VJP), one probe",
    )
    ok = all(r["auto_is_not_slower"] for r in rows)
    save("divergence_backend", {"auto_is_not_slower_everywhere": ok, "cases": rows}, args)


if __name__ == "__main__":
    main()
