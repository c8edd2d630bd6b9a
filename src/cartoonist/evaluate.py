"""`python -m cartoonist.evaluate`: the evaluate task (conf/evaluate.yaml, `cartoonist.tasks`)."""

from cartoonist.pipeline import entry_point

main = entry_point("evaluate")

if __name__ == "__main__":
    main()
