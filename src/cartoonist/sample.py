"""`python -m cartoonist.sample`: the sample task (conf/sample.yaml, `cartoonist.tasks.sample`)."""

from cartoonist.pipeline.cli import entry_point
from cartoonist.tasks.sample import run

main = entry_point("sample", run)

if __name__ == "__main__":
    main()
