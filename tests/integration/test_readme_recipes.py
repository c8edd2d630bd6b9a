"""Every command of the README's "Pretrained models (offline)" section runs as printed.

How the commands are run (the only liberties taken, all here):
1. The section's ```bash block is executed by bash, line by line, in a temporary folder that
   holds a tiny random diffusers UNet saved as `ddpm-cifar10-32/` (the folder the README's
   download line writes), so `$PWD/ddpm-cifar10-32` and the `$M`/`$P` variables expand exactly as
   printed. The download line itself (network) is the only line skipped.
2. `python` and `make` are bash functions that record each command's argv; the test then runs
   them in order: `python -m cartoonist.<task> ...` as a subprocess with debug-sized overrides
   *appended* (later overrides win in Hydra: 2 samples, 3 steps), `trainer=gpu` → `trainer=cpu`
   and `device=cuda` → `device=cpu` replaced (no GPU here); scripts (`python experiments/...`)
   from the repository. `make <target>` is expanded with `make -n`, and each cartoonist command
   it would run is composed and validated (`preflight`) at the printed sizes, not executed (a
   threshold sweep of 12 jobs); one with a `<placeholder>` path (data the test does not have,
   e.g. CIFAR-10) is only expanded.
Each run must succeed and write what the README says: per_sample.csv rows with a log p (an HD run
included: its log p is on by default), samples, grid, summary, DONE.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cartoonist.pipeline import preflight
from tests.helpers.pretrained import save_tiny_diffusers

pytest.importorskip("diffusers")

REPO = Path(__file__).resolve().parents[2]
ENV = dict(
    os.environ,
    WANDB_MODE="disabled",
    HF_HUB_OFFLINE="1",
    OMP_NUM_THREADS="1",
    PYTHONUNBUFFERED="1",
    PYTHONPATH=f"{REPO / 'src'}:{REPO}",
)
ENV.pop("CARTOONIST_OUTPUT_ROOT", None)
# Appended to every task command (2 samples, 3 steps of everything, CPU, CSV logger).
SMALL = {
    "sample": ["n_samples=2", "batch_size=2", "sampler.steps=3"],
    "evaluate": ["n_samples=2", "batch_size=2", "sde_steps=3"],
}
LIK = {"pf_ode": ["likelihood.steps=3"], "elbo": ["likelihood.n_lambda=2"]}
COMMON = ["logger=csv", "trainer.enable_progress_bar=false"]


def readme_block() -> list[str]:
    """The ```bash block of the pretrained-model section, as printed."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Pretrained models (offline)", 1)[1].split("\n## ", 1)[0]
    # The latent subsection's commands need Stable Diffusion weights on a GPU; its CLI path runs
    # on tiny folders in tests/integration/test_latent_cli.py.
    section = section.split("\n### Latent", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the section has one bash block of recipes"
    return blocks[0].splitlines()


def recorded_commands(cwd: Path) -> list[list[str]]:
    """Run the block in bash with `python`/`make` recording their argv (NUL-separated)."""
    lines = [ln for ln in readme_block() if not re.match(r"\s*(huggingface-cli|hf) download", ln)]
    log = cwd / "argv.log"
    prelude = (
        f'rec() {{ printf "%s\\0" "$@" >> {shlex.quote(str(log))}; printf "\\n" >> '
        f"{shlex.quote(str(log))}; }}\n"
        'python() { rec python "$@"; }\nmake() { rec make "$@"; }\nset -e\n'
    )
    r = subprocess.run(
        ["bash", "-c", prelude + "\n".join(lines)], cwd=cwd, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    cmds = []
    for rec in log.read_text().split("\0\n"):
        if rec:
            cmds.append(rec.split("\0"))
    return cmds


def _small(task: str, args: list[str]) -> list[str]:
    extra = list(SMALL[task])
    for a in args:
        if a.startswith("likelihood=") and a.split("=", 1)[1] in LIK:
            extra += LIK[a.split("=", 1)[1]]
    args = [
        a.replace("device=cuda", "device=cpu").replace("trainer=gpu", "trainer=cpu") for a in args
    ]
    return args + extra + COMMON


def _rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "per_sample.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.long  # every README command end to end: ~15 min on 2 shared cores
def test_readme_pretrained_recipes_run_as_printed(tmp_path):
    save_tiny_diffusers(tmp_path / "ddpm-cifar10-32")
    cmds = recorded_commands(tmp_path)
    tasks_run = []
    for argv in cmds:
        if argv[0] == "make":
            continue  # test_readme_make_recipes_expand_and_validate
        if argv[0] == "python" and argv[1] == "-m":
            task = argv[2].split(".")[-1]
            args = _small(task, argv[3:])
            r = subprocess.run(
                [sys.executable, "-m", argv[2], *args],
                cwd=tmp_path,
                env=ENV,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert r.returncode == 0, f"{shlex.join(argv)}\n{r.stderr[-3000:]}"
            name = next(a.split("=", 1)[1] for a in argv if a.startswith("run_name="))
            out = tmp_path / "outputs" / task / name
            for f in ("per_sample.csv", "samples.pt", "grid.png", "summary.json", "DONE"):
                assert (out / f).exists(), f"{shlex.join(argv)}: no {f}"
            rows = _rows(out)
            assert rows, f"{shlex.join(argv)}: per_sample.csv has no log p"
            summary = json.loads((out / "summary.json").read_text())
            assert any(k.startswith("logp_") and k.endswith("_mean") for k in summary)
            if "sampler=hd" in argv:  # the HD run reports its own log p (tracked)
                assert {r["estimator"] for r in rows} == {"tracked"}
            tasks_run.append(task)
        elif argv[0] == "python":  # a collector script of the repository
            r = subprocess.run(
                [sys.executable, str(REPO / argv[1]), *argv[2:]],
                cwd=tmp_path,
                env=ENV,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert r.returncode == 0, f"{shlex.join(argv)}\n{r.stderr[-3000:]}"
            assert (tmp_path / "outputs" / "figures" / "fig4_r0_ode_elbo.csv").exists()
    assert tasks_run.count("sample") >= 3 and tasks_run.count("evaluate") >= 2


def test_readme_make_recipes_expand_and_validate(tmp_path):
    """`make <target> ARGS=...` of the block: `make -n` expands it, and every cartoonist command
    it would run composes and validates (`preflight`) as printed, `trainer=gpu` aside."""
    save_tiny_diffusers(tmp_path / "ddpm-cifar10-32")
    makes = [argv for argv in recorded_commands(tmp_path) if argv[0] == "make"]
    assert {a[1] for a in makes} >= {"hd_threshold", "png_size", "fig1_hd_samples", "hd_families"}
    checked = 0
    for argv in makes:
        r = subprocess.run(
            ["make", "-n", "-C", str(REPO), "-o", ".venv/.installed", "PY=python", *argv[1:]],
            env=ENV,
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, f"{shlex.join(argv)}\n{r.stderr}"
        for line in r.stdout.splitlines():
            if re.search(r"<[^>]+>", line):
                continue  # a <placeholder> path the user fills in
            words = shlex.split(line)
            if words[:2] == ["python", "-m"] and words[2].startswith("cartoonist."):
                preflight(
                    words[2].split(".")[1],
                    [w.replace("trainer=gpu", "trainer=cpu") for w in words[3:]],
                )
                checked += 1
    assert checked >= 3
