"""`python -m cartoonist.figure experiment=<name>`: compute a figure's numbers, plot, save, log."""

import sys

import hydra

from cartoonist.pipeline import CONF_DIR, preflight


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="figure")
def _main(cfg):
    from cartoonist.tasks import figure

    return figure(cfg)


def main() -> None:
    """Validate the command line's config in one line, then hand over to Hydra."""
    preflight("figure", sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
