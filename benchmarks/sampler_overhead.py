"""Q2 — sampler overhead: wall(sampler) / (NFE × wall(one network forward)) for SDE, PF-ODE, HD.

Everything that is not the network (score conversion, noise draws, the state and log p updates,
the Python loop) counts as overhead. The network forward is timed alone on the same batch in the
same process, interleaved with the samplers. Goal ≤ 1.05.
"""

from __future__ import annotations

import torch

from benchmarks.common import (
    gpu_cases,
    mlp,
    paired_times,
    parse,
    ratio_stats,
    save,
    stats,
    table,
    unet,
)
from cartoonist.diffusion import VP, Keys, hd_sample, sample_ode, sample_sde, score_from_eps


def main():
    """Run the benchmark and write its JSON."""
    args = parse(__doc__.splitlines()[0])
    sch = VP(-10.0, 10.0)
    if args.device.type == "cuda":
        cases = gpu_cases(args.device)
    else:
        cases = [("unet 1x8x8 (digits)", unet((1, 8, 8)), (1, 8, 8), 64)]
        if not args.quick:
            cases.append(("unet 1x28x28 (MNIST size)", unet((1, 28, 28)), (1, 28, 28), 16))
            cases.append(("mlp D=64", mlp(64), (64,), 256))
    steps, repeat = (8, 3) if args.quick else (32, 5)
    rows, out = [], {}
    for name, net, shape, batch in cases:
        score = score_from_eps(net, sch)
        x = sch.sample_prior((batch, *shape), noise=Keys(0), device=args.device).float()
        lam = torch.full((batch,), 0.5, device=args.device)
        samplers = {
            "sde (Thm 1 log p)": (lambda: sample_sde(score, sch, x, steps, noise=Keys(1)), steps),
            "pf_ode heun (no log p)": (
                lambda: sample_ode(score, sch, x, steps // 2, track_logp=False),
                2 * (steps // 2),
            ),
            "hd (sde → HD-ODE)": (
                lambda: hd_sample(
                    score, sch, x, steps, lambda_threshold=0.0, first_stage="sde", noise=Keys(1)
                ),
                steps,
            ),
        }
        if args.device.type == "cuda":  # per-sample noise streams are drawn on the CPU (C5)
            samplers["sde, one CPU generator"] = (
                lambda: sample_sde(score, sch, x, steps, noise=torch.Generator().manual_seed(1)),
                steps,
            )
            # Longer than one 64-draw noise block: what prefetching the next block buys.
            samplers["sde (Thm 1 log p), 256 steps"] = (
                lambda: sample_sde(score, sch, x, 256, noise=Keys(1)),
                256,
            )
            samplers["sde, one CUDA generator"] = (
                lambda: sample_sde(
                    score, sch, x, steps, noise=torch.Generator(x.device).manual_seed(1)
                ),
                steps,
            )
        nfe_check = {k: f().nfe for k, (f, _) in samplers.items()}
        fns = {"forward": lambda: net(x, lam), **{k: f for k, (f, _) in samplers.items()}}
        with torch.inference_mode():
            t = paired_times(fns, repeat=repeat)
        out[name] = {"batch": batch, "forward_s": stats(t["forward"]), "samplers": {}}
        for k, (_, nfe) in samplers.items():
            assert nfe_check[k] == nfe, (k, nfe_check[k], nfe)
            r = ratio_stats(t[k], [nfe * f for f in t["forward"]])
            out[name]["samplers"][k] = {"nfe": nfe, "wall_s": stats(t[k]), "overhead_ratio": r}
            rows.append(
                dict(
                    model=name,
                    sampler=k,
                    nfe=nfe,
                    forward_ms=1e3 * stats(t["forward"])["median"],
                    ratio=r["median"],
                    spread=f"{r['min']:.3f}–{r['max']:.3f}",
                )
            )
    table(
        rows,
        ["model", "sampler", "nfe", "forward_ms", "ratio", "spread"],
        "Q2 sampler overhead: wall / (NFE × forward), goal ≤ 1.05",
    )
    worst = max(
        s["overhead_ratio"]["median"] for c in out.values() for s in c["samplers"].values()
    )
    save(
        "sampler_overhead",
        {"goal": 1.05, "worst_ratio": worst, "met": worst <= 1.05, "cases": out},
        args,
    )


if __name__ == "__main__":
    main()
