"""`python -m cartoonist.figure`: the figure task (conf/figure.yaml, `cartoonist.tasks.figure`)."""

from cartoonist.pipeline.cli import entry_point
from cartoonist.tasks.figure import run

main = entry_point("figure", run)

if __name__ == "__main__":
    main()
