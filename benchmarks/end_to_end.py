"""Q6 — end to end: wall time of `make test`, `make demo` and `make figures` on this machine.

Each target runs as a subprocess with a fresh output root (CARTOONIST_OUTPUT_ROOT in a temporary
folder, so nothing is skipped as DONE and outputs/ is untouched) and WANDB_MODE=disabled. The JSON
is rewritten after every target, so an interrupted run keeps what it measured. `--quick` skips this
benchmark (minutes, not seconds).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import torch

from benchmarks.common import ROOT, environment, save, table


def main():
    """Run the benchmark and write its JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("targets", nargs="*", default=["test", "demo", "figures"])
    args = p.parse_args()
    if args.quick:
        print("[bench] end_to_end: skipped with --quick (make bench runs it)")
        return
    torch.set_num_threads(args.threads)
    rows, out = [], {}
    for target in args.targets:
        with tempfile.TemporaryDirectory(prefix="cartoonist-e2e-") as tmp:
            env = dict(os.environ, CARTOONIST_OUTPUT_ROOT=tmp, WANDB_MODE="disabled")
            t = time.perf_counter()
            r = subprocess.run(["make", target], cwd=ROOT, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t
        out[target] = {"wall_s": wall, "returncode": r.returncode}
        rows.append(dict(target=f"make {target}", wall_min=wall / 60, returncode=r.returncode))
        if r.returncode != 0:
            print(r.stdout[-3000:], r.stderr[-3000:], file=sys.stderr)
        save("end_to_end", {"environment_note": environment(args), "targets": out}, args)
    table(rows, ["target", "wall_min", "returncode"], "Q6 end-to-end wall time (minutes)")


if __name__ == "__main__":
    main()
