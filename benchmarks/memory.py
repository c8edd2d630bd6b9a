"""Q5 — peak memory of the PF-ODE likelihood and of mode tracking as steps and batch grow.

Each configuration runs in a fresh subprocess; after the model is built, the kernel's peak-RSS
counter is reset (`/proc/self/clear_refs` = 5) and VmHWM is read after the computation, so the
number is the peak resident memory the computation itself added, in MiB. Neither estimator
stores its trajectory, so the peak must not grow with the number of steps; it grows linearly with
the batch.
"""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.common import ROOT, parse, save, table

CHILD = r"""
import json, re, sys, torch
torch.set_num_threads(1)
kind, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
from cartoonist.diffusion import VP, ode_log_prob, score_from_eps, track_mode
sch = VP(-10.0, 10.0)
if kind == "pf_ode":
    from cartoonist.models import UNet
    torch.manual_seed(0)
    net = UNet(event_shape=(1, 8, 8)).eval().requires_grad_(False)
    score = score_from_eps(net, sch)
    x = torch.randn(batch, 1, 8, 8)
    run = lambda: ode_log_prob(score, sch, x, steps, method="heun", backend="reverse")
else:
    from cartoonist.oracles import GaussianMixture
    g = torch.Generator().manual_seed(0)
    D = 64
    gmm = GaussianMixture([0.5, 0.5], torch.randn(2, D, generator=g, dtype=torch.float64),
                          0.1 + torch.rand(2, D, generator=g, dtype=torch.float64), sch)
    x = gmm.sample_noised(batch, 0.0, g)
    run = lambda: track_mode(gmm, sch, x, steps, lambda_t=0.0, method="rk4", solver="cg",
                             hvp_fn=gmm.hvp, grad_laplacian_fn=gmm.grad_laplacian)
def hwm():
    return int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1)) / 1024
def rss():
    return int(re.search(r"VmRSS:\s+(\d+)", open("/proc/self/status").read()).group(1)) / 1024
run_small = run
base = rss()
open("/proc/self/clear_refs", "w").write("5")
run()
print(json.dumps({"peak_added_mib": hwm() - base, "base_mib": base}))
"""


def measure(kind: str, steps: int, batch: int) -> dict:
    """Peak MiB added by one computation, from a fresh interpreter."""
    r = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(steps), str(batch)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if r.returncode != 0:
        raise RuntimeError(f"{kind} steps={steps} batch={batch} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    """Run the benchmark and write its JSON."""
    args = parse(__doc__.splitlines()[0])
    grid = {
        "pf_ode": {
            "steps": [16, 128] if args.quick else [16, 64, 256, 1024],
            "batch": 32,
            "batches": [] if args.quick else [8, 32, 128],
            "at_steps": 32,
        },
        "mode_tracking": {
            "steps": [50, 400] if args.quick else [50, 200, 800, 3200],
            "batch": 32,
            "batches": [] if args.quick else [8, 32, 128],
            "at_steps": 100,
        },
    }
    rows, out = [], {}
    for kind, g in grid.items():
        by_steps = {s: measure(kind, s, g["batch"]) for s in g["steps"]}
        by_batch = {b: measure(kind, g["at_steps"], b) for b in g["batches"]}
        for s, m in by_steps.items():
            rows.append(
                dict(estimator=kind, steps=s, batch=g["batch"], peak_added_mib=m["peak_added_mib"])
            )
        for b, m in by_batch.items():
            rows.append(
                dict(
                    estimator=kind,
                    steps=g["at_steps"],
                    batch=b,
                    peak_added_mib=m["peak_added_mib"],
                )
            )
        peaks = [m["peak_added_mib"] for m in by_steps.values()]
        out[kind] = {
            "by_steps": {str(s): m for s, m in by_steps.items()},
            "by_batch": {str(b): m for b, m in by_batch.items()},
            # Growth from the fewest to the most steps (MiB); ~0 means O(1) in steps.
            "growth_with_steps_mib": peaks[-1] - peaks[0],
            "steps_ratio": g["steps"][-1] / g["steps"][0],
        }
    table(
        rows,
        ["estimator", "steps", "batch", "peak_added_mib"],
        "Q5 peak memory added by one call (MiB); must not grow with steps",
    )
    ok = all(abs(v["growth_with_steps_mib"]) < 16 for v in out.values())
    save("memory", {"constant_in_steps": ok, "estimators": out}, args)


if __name__ == "__main__":
    main()
