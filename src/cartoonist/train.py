"""`python -m cartoonist.train`: the train task (conf/train.yaml, `cartoonist.tasks.train`)."""

import sys

import hydra

from cartoonist.pipeline import CONF_DIR, preflight


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _main(cfg):
    from cartoonist.tasks import train

    return train(cfg)


def main() -> None:
    """Validate the command line's config in one line, then hand over to Hydra."""
    preflight("train", sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
