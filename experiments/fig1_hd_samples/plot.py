"""Re-plot fig1_hd_samples from its CSV in outputs/figures/ (`make plot-fig1_hd_samples`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plot_common import replot  # noqa: E402

from cartoonist.plotting.figures import plot_fig1_hd_samples  # noqa: E402

if __name__ == "__main__":
    replot(
        "fig1_hd_samples",
        plot_fig1_hd_samples,
        sys.argv[1] if len(sys.argv) > 1 else "outputs/figures",
    )
