"""`python -m cartoonist.sample`: the sample task (conf/sample.yaml, `cartoonist.tasks.sample`)."""

import sys

import hydra

from cartoonist.pipeline import CONF_DIR, preflight


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="sample")
def _main(cfg):
    from cartoonist.tasks import sample

    return sample(cfg)


def main() -> None:
    """Validate the command line's config in one line, then hand over to Hydra."""
    preflight("sample", sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
