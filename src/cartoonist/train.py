"""`python -m cartoonist.train`: the train task (conf/train.yaml, `cartoonist.tasks`)."""

from cartoonist.pipeline import entry_point

main = entry_point("train")

if __name__ == "__main__":
    main()
