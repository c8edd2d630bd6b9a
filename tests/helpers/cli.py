"""`python -m cartoonist.<task> ARGS` in this process, for end-to-end tests of the command line.

The CLI's own `main()` runs (preflight, Hydra's `@hydra.main`, the task), so a test checks the
same path as a subprocess does, ~7 s of CPU less a run: a fresh interpreter mostly imports torch,
Lightning and diffusers, which this process has already imported. Tests about the interpreter
itself (its exit status and whole stderr for a bad command line, `sys.path`, signals, locks)
keep real subprocesses.
"""

from __future__ import annotations

import importlib
import logging
import sys


def run_cli(task: str, args: list[str], monkeypatch) -> int:
    """Run `python -m cartoonist.<task> ARGS` in-process; return its exit status.

    Hydra configures logging for its jobs: the root logger's handlers and level are given back
    afterwards, so the other tests keep theirs. Output goes where the test captures it
    (`capsys`/`capfd` read the one-line errors).
    """
    main = importlib.import_module(f"cartoonist.{task}").main
    monkeypatch.setattr(sys, "argv", [task] + list(args))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        main()
    except SystemExit as e:
        # as the interpreter exits: None is 0, a message (printed) is 1
        return 0 if e.code is None else e.code if isinstance(e.code, int) else 1
    finally:
        root.handlers = handlers
        root.setLevel(level)
    return 0
