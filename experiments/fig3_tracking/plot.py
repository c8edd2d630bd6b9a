"""Re-plot fig3_tracking from outputs/figures/fig3_tracking.csv (`make plot-fig3_tracking`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plot_common import replot  # noqa: E402

from cartoonist.plotting.figures import plot_fig3_tracking  # noqa: E402

if __name__ == "__main__":
    replot(
        "fig3_tracking",
        plot_fig3_tracking,
        sys.argv[1] if len(sys.argv) > 1 else "outputs/figures",
    )
