"""The errors a user sees: the lowest layer, imported by every other.

`ConfigError` is raised for a wrong setting (the message names the key); the entry points turn it
into one line on stderr and exit status 2. `format_error` makes one line of an exception chain.
"""

from __future__ import annotations

__all__ = ["ConfigError", "format_error"]


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key."""


def format_error(e: BaseException) -> str:
    """One line from an exception chain (Hydra/OmegaConf errors span several lines)."""
    parts = []
    while e is not None and len(parts) < 3:
        line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if line not in parts and line != "None" and "$VALUE" not in line:
            parts.append(line)
        # `raise ... from None` hides the context: so does this line
        e = e.__cause__ if e.__cause__ is not None or e.__suppress_context__ else e.__context__
    return " — ".join(parts)
