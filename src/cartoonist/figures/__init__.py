"""Figure computations: pure functions from settings to the plotted numbers (no file I/O).

Each returns a `FigureData`: `rows` (exactly the plotted numbers, one dict per point) and `metrics`
(the headline numbers written to `outputs/figures/<name>.json`).
"""

from cartoonist.figures.common import FigureData, toy_mixture
from cartoonist.figures.fig1_hd_samples import LearnedModel, fig1_hd_samples
from cartoonist.figures.fig3_tracking import fig3_tracking
from cartoonist.figures.fig5_mode_tracking import fig5_mode_tracking
from cartoonist.figures.hd_families import hd_families
from cartoonist.figures.png_size import png_size

__all__ = [
    "FigureData",
    "LearnedModel",
    "toy_mixture",
    "fig1_hd_samples",
    "fig3_tracking",
    "fig5_mode_tracking",
    "hd_families",
    "png_size",
]
