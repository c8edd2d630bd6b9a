"""The package's shape: no import cycle (imports inside functions included), small modules, no
behaviour chosen by `_target_` text, and a short path from the command line to the sampler."""

import ast
import inspect
import re
import runpy
import sys
from pathlib import Path

import cartoonist
import cartoonist.diffusion as diffusion

SRC = Path(cartoonist.__file__).parent
MODULES = {
    ".".join(p.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__"): p
    for p in SRC.rglob("*.py")
}


def _imports(name: str, path: Path) -> set[str]:
    """Modules of ours that `name` imports anywhere in its file (the most specific module)."""
    tree = ast.parse(path.read_text())
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + [base])
            found |= {
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            }
    return {m for m in found if m in MODULES and m != name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (c := visit(n)):
                return c
        state[m] = 2
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_no_import_cycle_even_inside_functions():
    graph = {m: _imports(m, p) for m, p in MODULES.items()}
    # A package's own __init__ importing its submodules is not a cycle with them; a submodule
    # importing its package's __init__ would be (and is counted).
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_modules_are_at_most_400_lines():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 400}
    assert not long


def test_no_behaviour_chosen_by_target_text():
    pattern = re.compile(
        r"_target_.*(endswith|startswith|==|!=|\bin\b)|(endswith|startswith)\(.*_target_"
    )
    has_key = re.compile(r"[\"']_target_[\"'] (not )?in \w+")  # whether a node has the key
    hits = [
        f"{p.relative_to(SRC)}:{i}: {line.strip()}"
        for p in MODULES.values()
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(has_key.sub("", line)) and not line.lstrip().startswith("#")
    ]
    assert not hits


def test_cli_to_sample_sde_is_at_most_four_frames_of_ours(monkeypatch, tmp_path):
    """`python -m cartoonist.sample` (run as runpy runs -m) down to `sample_sde`."""
    seen = []
    real = diffusion.sample_sde

    def spy(*args, **kwargs):
        frames = inspect.stack()[1:]
        seen.append(
            [
                f"{Path(f.filename).name}:{f.function}"
                for f in frames
                if Path(f.filename).resolve().is_relative_to(SRC)
            ]
        )
        return real(*args, **kwargs)

    monkeypatch.setattr(cartoonist, "sample_sde", spy)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "sample",
            "debug=smoke",
            "n_samples=2",
            "batch_size=2",
            "logger=csv",
            f"paths.output_root={tmp_path}",
        ],
    )
    import logging

    handlers = list(logging.getLogger().handlers)
    try:
        runpy.run_module("cartoonist.sample", run_name="__main__", alter_sys=True)
    finally:  # Hydra configured logging for its job: give the other tests theirs back
        logging.getLogger().handlers = handlers
    assert seen, "sample_sde was not called"
    print("frames of ours:", seen[0])
    assert len(seen[0]) <= 4, seen[0]
