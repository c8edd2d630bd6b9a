"""`python -m cartoonist.train`: the train task (conf/train.yaml, `cartoonist.tasks.train`)."""

from cartoonist.pipeline.cli import entry_point
from cartoonist.tasks.train import run

main = entry_point("train", run)

if __name__ == "__main__":
    main()
