"""Q1 — the paper's "no additional cost": wall(SDE sampling with Theorem 1 log p) / wall(without).

Both runs draw the same Brownian increments and evaluate the network the same number of times; the
tracked run adds O(D) dot products per step (and, for the corrected scheme, a few more). Goal:
overhead_ratio ≤ 1.01 on the small U-Net at image size and on an MLP.
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
from cartoonist.diffusion import VP, Keys, sample_sde, score_from_eps


def main():
    """Run the benchmark and write its JSON."""
    args = parse(__doc__.splitlines()[0])
    sch = VP(-10.0, 10.0)
    if args.device.type == "cuda":
        cases = gpu_cases(args.device)
    else:
        cases = [
            ("unet 1x8x8 (digits)", unet((1, 8, 8)), (1, 8, 8), 64),
            ("mlp D=64", mlp(64), (64,), 256),
        ]
        if not args.quick:
            cases.insert(1, ("unet 1x28x28 (MNIST size)", unet((1, 28, 28)), (1, 28, 28), 16))
            cases.append(("mlp D=2", mlp(2), (2,), 1024))
    steps, repeat = (10, 5) if args.quick else (40, 7)
    rows, out = [], {}
    for name, net, shape, batch in cases:
        score = score_from_eps(net, sch)
        x = sch.sample_prior((batch, *shape), noise=Keys(0), device=args.device).float()

        def run(track, scheme="corrected"):
            return lambda: sample_sde(
                score, sch, x, steps, noise=Keys(1), track_logp=track, logp_scheme=scheme
            )

        with torch.inference_mode():
            t = paired_times(
                {"off": run(False), "euler": run(True, "euler"), "corrected": run(True)},
                repeat=repeat,
            )
        r_eu, r_co = ratio_stats(t["euler"], t["off"]), ratio_stats(t["corrected"], t["off"])
        rows.append(
            dict(
                model=name,
                batch=batch,
                steps=steps,
                wall_off_s=stats(t["off"])["median"],
                ratio_euler=r_eu["median"],
                ratio_corrected=r_co["median"],
                spread_corrected=f"{r_co['min']:.3f}–{r_co['max']:.3f}",
            )
        )
        out[name] = {
            "batch": batch,
            "steps": steps,
            "wall_s": {k: stats(v) for k, v in t.items()},
            "overhead_ratio_euler": r_eu,
            "overhead_ratio": r_co,
        }
    table(
        rows,
        [
            "model",
            "batch",
            "steps",
            "wall_off_s",
            "ratio_euler",
            "ratio_corrected",
            "spread_corrected",
        ],
        "Q1 tracking overhead: wall(with log p) / wall(without), goal ≤ 1.01",
    )
    worst = max(v["overhead_ratio"]["median"] for v in out.values())
    save(
        "tracking_overhead",
        {"goal": 1.01, "overhead_ratio": worst, "met": worst <= 1.01, "cases": out},
        args,
    )


if __name__ == "__main__":
    main()
