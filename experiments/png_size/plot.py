"""Re-plot png_size from its CSV in outputs/figures/ (`make plot-png_size`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plot_common import replot  # noqa: E402

from cartoonist.plotting.figures import plot_png_size  # noqa: E402

if __name__ == "__main__":
    replot("png_size", plot_png_size, sys.argv[1] if len(sys.argv) > 1 else "outputs/figures")
