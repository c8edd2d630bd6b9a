"""`python -m cartoonist.evaluate`: the evaluate task (conf/evaluate.yaml, `tasks.evaluate`)."""

from cartoonist.pipeline.cli import entry_point
from cartoonist.tasks.evaluate import run

main = entry_point("evaluate", run)

if __name__ == "__main__":
    main()
