"""`python -m cartoonist.figure`: the figure task (conf/figure.yaml, `cartoonist.tasks`)."""

from cartoonist.pipeline import entry_point

main = entry_point("figure")

if __name__ == "__main__":
    main()
