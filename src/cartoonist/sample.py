"""`python -m cartoonist.sample`: the sample task (conf/sample.yaml, `cartoonist.tasks`)."""

from cartoonist.pipeline import entry_point

main = entry_point("sample")

if __name__ == "__main__":
    main()
