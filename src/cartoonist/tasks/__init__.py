"""The tasks behind the entry points, one module each, sharing one lifecycle (`lifecycle`).

`train`, `sample`, `evaluate`, `figure` and `demo` each have `run(cfg) -> summary dict`:
`cartoonist.tasks.sample.run(cfg)` is what `python -m cartoonist.sample` runs. `per_sample`
holds what sample and evaluate share (the predict run over sample ids, the per-sample files).
"""

from cartoonist.tasks import demo, evaluate, figure, sample, train

__all__ = ["train", "sample", "evaluate", "figure", "demo"]
