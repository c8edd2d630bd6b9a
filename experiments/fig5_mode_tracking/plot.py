"""Re-plot fig5_mode_tracking from its CSV in outputs/figures/ (`make plot-fig5_mode_tracking`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plot_common import replot  # noqa: E402

from cartoonist.plotting.figures import plot_fig5_mode_tracking  # noqa: E402

if __name__ == "__main__":
    replot(
        "fig5_mode_tracking",
        plot_fig5_mode_tracking,
        sys.argv[1] if len(sys.argv) > 1 else "outputs/figures",
    )
