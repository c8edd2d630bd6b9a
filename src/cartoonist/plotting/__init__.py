"""Pure plotting functions: tensors/tables in, matplotlib Figures out (no file or network I/O)."""

from cartoonist.plotting.samples import sample_figure

__all__ = ["sample_figure"]
