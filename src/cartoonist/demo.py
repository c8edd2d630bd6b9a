"""`python -m cartoonist.demo`: the demo task (conf/demo.yaml, `cartoonist.tasks.demo`)."""

from cartoonist.pipeline.cli import entry_point
from cartoonist.tasks.demo import run

main = entry_point("demo", run)

if __name__ == "__main__":
    main()
