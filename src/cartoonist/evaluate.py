"""`python -m cartoonist.evaluate`: the evaluate task (conf/evaluate.yaml, `cartoonist.tasks`)."""

import sys

import hydra

from cartoonist.pipeline import CONF_DIR, preflight


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
def _main(cfg):
    from cartoonist.tasks import evaluate

    return evaluate(cfg)


def main() -> None:
    """Validate the command line's config in one line, then hand over to Hydra."""
    preflight("evaluate", sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
