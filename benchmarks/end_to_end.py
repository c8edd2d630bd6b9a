"""Q6 — end to end: wall time of `make test`, `make demo` and `make figures` on this machine.

Each target runs as a subprocess with a fresh output root, `<bench dir>/e2e/<target>` (emptied
first, so nothing is skipped as DONE; the rest of outputs/ is untouched; the figures it makes are
kept there to read), and WANDB_MODE=disabled. The JSON is rewritten after every target, so an
interrupted run keeps what it measured; targets timed by an earlier run and not named this time
are kept. `--quick` skips this benchmark (minutes, not seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import torch

from benchmarks.common import OUT, ROOT, environment, save, table


def main():
    """Run the benchmark and write its JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("targets", nargs="*", default=["test", "demo", "figures"])
    args = p.parse_args()
    if args.quick:
        print("[bench] end_to_end: skipped with --quick (make bench runs it)")
        return
    torch.set_num_threads(args.threads)
    rows, out = [], {}
    old = OUT / "end_to_end.json"
    if old.exists():  # keep the targets an earlier run timed; those named now are re-measured
        out = json.loads(old.read_text()).get("targets", {})
    for target in args.targets:
        root = OUT / "e2e" / target
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        env = dict(os.environ, CARTOONIST_OUTPUT_ROOT=str(root), WANDB_MODE="disabled")
        env.pop("OMP_NUM_THREADS", None)  # the targets run with their own defaults
        t = time.perf_counter()
        r = subprocess.run(["make", target], cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        (root / "make.log").write_text(r.stdout + r.stderr)
        out[target] = {"wall_s": wall, "returncode": r.returncode, "output_root": str(root)}
        rows.append(dict(target=f"make {target}", wall_min=wall / 60, returncode=r.returncode))
        if r.returncode != 0:
            print(r.stdout[-3000:], r.stderr[-3000:], file=sys.stderr)
        save("end_to_end", {"environment_note": environment(args), "targets": out}, args)
    table(rows, ["target", "wall_min", "returncode"], "Q6 end-to-end wall time (minutes)")


if __name__ == "__main__":
    main()
