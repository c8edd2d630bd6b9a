"""Run names: the `${model_tag:}` resolver that keeps different models' outputs apart."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cartoonist.pipeline.targets import model_kind, resolve

__all__ = ["model_tag", "slug", "sweep_subdir"]


def slug(name: str) -> str:
    """A file-name-safe version of `name` (letters, digits, `._-`)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"


def model_tag(*, _root_: DictConfig) -> str:
    """`${model_tag:}`: a run-name suffix naming the learned model a config uses ("" for none).

    Experiments that run on the exact oracle by default and on any learned model on request
    (`hd_threshold`, `png_size`) append it to their run and figure names, so the outputs of
    different models never share a directory (a finished job's `DONE` would be skipped) nor a
    figure file. The exact oracle and a config without a model give "" (the names stay as they
    were); `ckpt_path=.../<run>/checkpoints/last.ckpt` gives "__ckpt-<run>"; a pretrained model
    gives "__<its kind: diffusers|edm>-<the folder's or file's name>".
    """
    ckpt = OmegaConf.select(_root_, "ckpt_path", default=None)
    if ckpt:
        p = Path(str(ckpt))
        name = p.parent.parent.name if p.parent.name == "checkpoints" else p.stem
        return f"__ckpt-{slug(name)}"
    kind = model_kind(_root_)
    if kind in (None, "oracle"):
        return ""
    cls = resolve(_root_, "model")
    label = getattr(cls, "kind", None) or getattr(cls, "__name__", "model").lower()
    path = OmegaConf.select(_root_, "model.path", default=None, throw_on_missing=False)
    if path is None or OmegaConf.is_missing(_root_.model, "path"):
        return f"__{label}"
    p = Path(str(path).rstrip("/"))
    name = p.stem if p.suffix in (".pt", ".pth", ".pkl", ".ckpt") else p.name
    return f"__{label}-{slug(name)}"


def sweep_subdir(override_dirname: str, num) -> str:
    """`${sweep_subdir:...}`: a sweep job's directory named by its overrides (else its number).

    `hydra.job.override_dirname` (the job's overrides minus `hydra.job.config.override_dirname.
    exclude_keys`, e.g. `sampler.first_stage=ode,sampler.lambda_threshold=-4`) with `/` made safe;
    one over 150 characters is cut and ends with a hash of the whole, so names stay unique.
    """
    name = str(override_dirname).replace("/", "%2F")
    if not name:
        return str(num)
    if len(name) > 150:
        name = f"{name[:130]}~{hashlib.sha256(name.encode()).hexdigest()[:12]}"
    return name


if not OmegaConf.has_resolver("sweep_subdir"):
    OmegaConf.register_new_resolver("sweep_subdir", sweep_subdir)

if not OmegaConf.has_resolver("model_tag"):
    OmegaConf.register_new_resolver("model_tag", model_tag)
