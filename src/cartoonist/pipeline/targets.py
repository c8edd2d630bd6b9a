"""What a config node builds, decided by the type of its `_target_`, never by its text.

A group option's `_target_` is resolved to the class or function it names (only objects of this
package: a target elsewhere is refused, so a command line cannot make a run call `os.system`), and
the pipeline's choices depend on that object's type: `issubclass(cls, PretrainedModel)`,
`fn is exact_log_prob`, ... Moving a class to another module changes nothing here.
"""

from __future__ import annotations

from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from cartoonist.data import NoData
from cartoonist.diffusion.estimators import exact_log_prob, sde_tracking
from cartoonist.errors import ConfigError, format_error
from cartoonist.models.oracle import OracleModel
from cartoonist.models.pretrained import PretrainedModel

__all__ = [
    "ALLOWED_ROOTS",
    "check_targets",
    "resolve",
    "model_kind",
    "is_no_data",
    "likelihood_kind",
]

# The packages whose objects a config may build (`_target_`); anything else is refused.
ALLOWED_ROOTS = ("cartoonist", "lightning")


def resolve(cfg: DictConfig | None, key: str) -> Any:
    """The object `cfg.<key>._target_` names (None when the node or its target is absent).

    Raises:
        ConfigError: the target is outside cartoonist/lightning or cannot be imported (one line).
    """
    target = OmegaConf.select(cfg, f"{key}._target_", default=None) if cfg is not None else None
    if target is None:
        return None
    path = str(target)
    if path.split(".", 1)[0] not in ALLOWED_ROOTS:
        raise ConfigError(f"{key}._target_={path!r}: only cartoonist's own classes can be built")
    try:
        return get_object(path)
    except Exception as e:  # noqa: BLE001 - Hydra raises ImportError with a long chain
        raise ConfigError(f"{key}._target_={path!r} cannot be imported: {format_error(e)}") from e


def check_targets(cfg: DictConfig) -> None:
    """Every `_target_` of the run (Hydra's own node aside) names an object of `ALLOWED_ROOTS`.

    `instantiate` would import and call whatever a `_target_` names (`builtins.open`,
    `os.system`): a command line or an experiment file can only build this package's objects.
    """

    def walk(node, where: str) -> None:
        if OmegaConf.is_dict(node):
            for key in node.keys():
                if where == "" and key == "hydra":
                    continue
                path = f"{where}.{key}" if where else str(key)
                if key == "_target_":
                    target = str(node._get_node(key)._value())
                    if target.split(".", 1)[0] not in ALLOWED_ROOTS:
                        raise ConfigError(
                            f"{path}={target!r}: only cartoonist's own classes can be built"
                        )
                else:
                    walk(node._get_node(key), path)
        elif OmegaConf.is_list(node):
            for i, item in enumerate(node._iter_ex(resolve=False)):
                walk(item, f"{where}[{i}]")

    walk(cfg, "")


def model_kind(cfg: DictConfig) -> str | None:
    """Kind of `cfg.model`: oracle (exact), pretrained (diffusers|edm), network (ours) or None."""
    cls = resolve(cfg, "model")
    if cls is None:
        return None
    if isinstance(cls, type) and issubclass(cls, OracleModel):
        return "oracle"
    if isinstance(cls, type) and issubclass(cls, PretrainedModel):
        return "pretrained"
    return "network"


def is_no_data(cfg: DictConfig) -> bool:
    """True for dataset=none (a pretrained model brings its shape)."""
    cls = resolve(cfg, "dataset")
    return isinstance(cls, type) and issubclass(cls, NoData)


def likelihood_kind(cfg: DictConfig) -> str | None:
    """Kind of `cfg.likelihood`: exact (an oracle's), sde_tracking (r_0), estimator or None."""
    fn = resolve(cfg, "likelihood")
    if fn is None:
        return None
    if fn is exact_log_prob:
        return "exact"
    if fn is sde_tracking:
        return "sde_tracking"
    return "estimator"
