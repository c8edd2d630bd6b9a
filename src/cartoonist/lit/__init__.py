"""LightningModules: training (`DiffusionModule`) and the predict jobs of sample and evaluate.

`SampleJob` and `EvaluateJob` (`jobs`) are predict steps over sample ids; `predict` has the part
writer that merges what each rank computed.
"""

from cartoonist.lit.diffusion_module import DiffusionModule
from cartoonist.lit.jobs import EvaluateJob, SampleJob
from cartoonist.lit.predict import PartWriter, id_loader, merge_parts

__all__ = ["DiffusionModule", "SampleJob", "EvaluateJob", "PartWriter", "id_loader", "merge_parts"]
