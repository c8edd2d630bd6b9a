"""Checks and loading shared by the models read from diffusers folders.

`model=diffusers` (`models/diffusers.py`), `model=stable_diffusion` (`models/stable_diffusion.py`)
and `model=sd3` (`models/sd3.py`) read folders that diffusers' `save_pretrained` writes. The
checks here read files and JSON only (no diffusers import) and raise one-line `ConfigError`s
naming the config key; `load_part` and `scheduler_from_config` are called from `load()` with
diffusers imported. `LatentPipelineModel` is the base of the two latent text-conditional
pipelines (a network, a VAE and a scheduler in their subfolders).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from cartoonist.errors import ConfigError
from cartoonist.models.pretrained import (
    PretrainedModel,
    _check_safetensors,
    _read_json,
    _root_cause,
)

__all__ = [
    "LatentPipelineModel",
    "WEIGHTS",
    "model_folder",
    "check_weights",
    "check_choice",
    "check_guidance_scale",
    "safetensors_shapes",
    "prompt_embeds_shapes",
    "read_prompt_embeds",
    "sample_hw",
    "load_part",
    "scheduler_from_config",
]

#: a component's weights, the first one found is read
WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def model_folder(path, kind: str) -> Path:
    """`model.path` as an existing folder (`kind`: the model= option, for the error)."""
    root = Path(str(path)).expanduser()
    if not root.exists():
        raise ConfigError(f"model.path does not exist: {path}")
    if not root.is_dir():
        raise ConfigError(f"model.path is not a folder (model={kind}): {path}")
    return root


def check_weights(folder: Path, names, missing: str) -> None:
    """Check the weights file of a component: the first of `names` found in `folder`.

    ConfigError(`missing`) when there is none; a .safetensors file must be whole.
    """
    found = [folder / n for n in names if (folder / n).is_file()]
    if not found:
        raise ConfigError(missing)
    if found[0].suffix == ".safetensors":
        _check_safetensors(found[0])


def check_choice(key: str, value, choices: tuple[str, str]) -> None:
    """`model.<key>` must be one of the two `choices`."""
    if value not in choices:
        raise ConfigError(f"model.{key} must be {choices[0]} or {choices[1]}, got {value!r}")


def check_guidance_scale(w) -> None:
    """Classifier-free guidance w: a finite number ≥ 0 (not a bool)."""
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
        raise ConfigError(f"model.guidance_scale must be a number ≥ 0, got {w!r}")


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name → shape from a safetensors header (no tensor is read)."""
    _check_safetensors(path)
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


def prompt_embeds_shapes(value) -> tuple[Path, dict[str, list[int]]]:
    """The `model.prompt_embeds` file and the shapes of its tensors (none is read)."""
    f = Path(str(value)).expanduser()
    if not f.is_file() or f.suffix != ".safetensors":
        raise ConfigError(f"model.prompt_embeds must be an existing .safetensors file: {value}")
    return f, safetensors_shapes(f)


def read_prompt_embeds(value) -> dict:
    """The tensors of the `model.prompt_embeds` file, float32 (safetensors: nothing unpickled)."""
    from safetensors.torch import load_file

    tensors = load_file(str(Path(str(value)).expanduser()))
    return {k: v.float() for k, v in tensors.items()}


def sample_hw(config: dict, where: str) -> tuple[int, int]:
    """(H, W) of a network config's `sample_size` (an int or a pair); `where`: its file."""
    size = config.get("sample_size")
    if size is None:
        raise ConfigError(f"model.path: {where} has no sample_size")
    h, w = (size, size) if isinstance(size, int) else size
    return h, w


def load_part(cls, root: Path, name: str):
    """`cls.from_pretrained(root/name)`, local files only, any failure one ConfigError line.

    diffusers classes are loaded with low_cpu_mem_usage=False (weights materialised, no meta
    tensors); other classes (transformers') with their defaults.
    """
    try:
        kw = {"low_cpu_mem_usage": False} if cls.__module__.startswith("diffusers") else {}
        return cls.from_pretrained(str(root / name), local_files_only=True, **kw)
    except Exception as e:  # noqa: BLE001 - any loading failure becomes one line
        raise ConfigError(f"cannot load {name}/ in {root}: {_root_cause(e)}") from None


def scheduler_from_config(diffusers, config: dict):
    """The diffusers scheduler class named by `config["_class_name"]`, built from `config`."""
    cls = getattr(diffusers, config["_class_name"], None)
    if cls is None or not hasattr(cls, "from_config"):
        raise ConfigError(f"model.path: unknown scheduler {config['_class_name']!r}")
    return cls.from_config(config)


class LatentPipelineModel(PretrainedModel):
    """A latent text-conditional pipeline folder: a network, a VAE and a scheduler.

    Subclasses are dataclasses of the config's fields (`path`, `prompt_embeds`,
    `guidance_scale`, `attention`, …) and name their parts in class attributes: `kind` (the
    model= option), `components` (the subfolders), `folder` (what such a folder is called in
    errors), `network` (the network's subfolder), `network_config` (its config, in errors),
    `network_class` (its `_class_name`), `takes` (what the kind takes, in errors) and `latent`
    (the latent's definition, for `density_label`).
    """

    kind: str
    components: tuple[str, ...]
    folder: str
    network: str
    network_config: str
    network_class: str
    takes: str
    latent: str

    def _read_folder(self) -> tuple[Path, dict, dict]:
        """(root, network config, scheduler config) of the folder.

        Checked: the components, the network's class, the network's and the VAE's weights.
        """
        root = model_folder(self.path, self.kind)
        for name in self.components:
            if not (root / name).is_dir():
                raise ConfigError(
                    f"model.path has no {name}/ folder ({self.folder} has "
                    f"{', '.join(c + '/' for c in self.components)}): {self.path}"
                )
        net = _read_json(root / self.network / "config.json", self.network_config)
        sched = _read_json(root / "scheduler" / "scheduler_config.json", "scheduler config")
        if net.get("_class_name") != self.network_class:
            raise ConfigError(
                f"model.path: {self.network}/ holds a {net.get('_class_name')}; "
                f"model={self.kind} takes {self.takes}"
            )
        for part in (self.network, "vae"):
            missing = f"model.path: {part}/ has no diffusion_pytorch_model weights"
            check_weights(root / part, WEIGHTS, missing)
        return root, net, sched

    def _check_sampling(self) -> None:
        """The attention kernel and the guidance scale."""
        check_choice("attention", self.attention, ("math", "default"))
        check_guidance_scale(self.guidance_scale)

    def density_label(self, shape) -> str:
        """What every log p of this model is the density of (for CSV, JSON and figures)."""
        dims = "×".join(str(s) for s in shape)
        name = Path(str(self.path)).expanduser().resolve().name
        return f"{self.latent} ({dims}), {self.kind} {name}"
