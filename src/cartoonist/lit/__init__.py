"""LightningModules: training (`DiffusionModule`) and per-sample predict jobs (`PredictJob`)."""

from cartoonist.lit.diffusion_module import DiffusionModule
from cartoonist.lit.predict import PartWriter, PredictJob, id_loader, merge_parts

__all__ = ["DiffusionModule", "PredictJob", "PartWriter", "id_loader", "merge_parts"]
