"""Every key of a composed config against its schema: type, range, known key; one line each.

`check_config(cfg, task)` walks the config from the task's top-level schema
(`run_schemas.TASK_SCHEMAS`): a group node (dataset, model, trainer, each callback and logger,
...) is checked against the schema of its `_target_` (`run_schemas.TARGET_SCHEMAS`), or the
structured type it was composed onto (sampler, likelihood, noise). Rules, each a `ConfigError`
naming the full key:

* a key no schema declares is refused (`+n_sample=16`, `+model.foo=1`); a schema marked
  `passthrough` (Lightning's Trainer, callbacks, loggers) also lets through any other argument
  of its target, and a node whose target has no schema has its keys checked against the
  target's arguments;
* `bool` takes only true/false (`maybe`, `2`, `yes` refused, also where OmegaConf would have
  converted them: `check_overrides` reads the command line), `int` only integers (`1e11`,
  `true` refused), `float` only finite numbers (`nan`, `true` refused), a choice only its values;
* a field's `Check` (`schemas.positive`, `between`, `choice`, `rule`) bounds its value.

It builds nothing: a node is only read (a `_target_` is resolved to read its arguments, and only
within `targets.ALLOWED_ROOTS`).
"""

from __future__ import annotations

import enum
import inspect
import math
import typing
from dataclasses import fields, is_dataclass
from functools import lru_cache
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf

from cartoonist.diffusion.integrators import ODE_METHODS
from cartoonist.errors import ConfigError, format_error
from cartoonist.pipeline import schemas
from cartoonist.pipeline.run_schemas import TARGET_SCHEMAS, TASK_SCHEMAS
from cartoonist.pipeline.schemas import Check
from cartoonist.pipeline.targets import resolve

__all__ = ["check_config", "check_overrides", "command_line", "schema_of"]

_NAMED_CHOICES = {schemas.ODE_METHODS: ODE_METHODS}
_HYDRA_KEYS = {"_target_", "_partial_", "_args_", "_recursive_", "_convert_"}
_SEED_END = 2**63


def _show(v: Any) -> str:
    if isinstance(v, (DictConfig, ListConfig)):
        v = OmegaConf.to_container(v, resolve=False)
    return repr(v)


def schema_of(node: Any) -> type | None:
    """The schema of a config node: the structured type it was composed onto, or its target's."""
    if not isinstance(node, DictConfig):
        return None
    typ = OmegaConf.get_type(node)
    if is_dataclass(typ):
        return typ
    target = node.get("_target_") if "_target_" in node else None
    return TARGET_SCHEMAS.get(str(target)) if target is not None else None


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@lru_cache(maxsize=None)
def _arguments(obj: Any) -> frozenset[str] | None:
    """Parameter names of a class's __init__ or a function; None if it takes **kwargs."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return frozenset(sig.parameters)


def _target_arguments(node: DictConfig, key: str) -> frozenset[str] | None:
    """Argument names of what `node._target_` names (None: unknown, or it takes **kwargs)."""
    if "_target_" not in node:
        return None
    holder = OmegaConf.create({"node": {"_target_": node._get_node("_target_")._value()}})
    try:
        obj = resolve(holder, "node")
    except ConfigError as e:
        raise ConfigError(str(e).replace("node._target_", f"{key}._target_", 1)) from None
    return _arguments(obj)


def _unknown(key: str, where: str) -> ConfigError:
    return ConfigError(f"{key} is not a setting of {where} (a typo, or a `+`?)")


def check_node(node: Any, schema: type | None, key: str, where: str | None = None) -> None:
    """Check a DictConfig at `key` against `schema` (None: the node's own schema)."""
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{key} must be a group of settings, got {_show(node)}")
    schema = schema or schema_of(node)
    prefix = f"{key}." if key else ""
    if schema is None:  # a target without a schema: its arguments are the keys
        args = _target_arguments(node, key)
        if args is not None:
            for k in node.keys():
                if k not in _HYDRA_KEYS and k not in args:
                    raise _unknown(f"{prefix}{k}", f"{node._target_}")
        return
    declared = {f.name: f for f in fields(schema)}
    hints = _hints(schema)
    where = where or (key or "the config")
    args: frozenset[str] | None | bool = False
    for k in node.keys():
        full = f"{prefix}{k}"
        if not key and k == "hydra":
            continue
        if k not in declared:
            if getattr(schema, "passthrough", False):
                if args is False:
                    args = _target_arguments(node, key)
                if args is None or k in args:
                    continue
            raise _unknown(full, where)
        f = declared[k]
        if OmegaConf.is_missing(node, k):
            raise ConfigError(f"{full} is not set (give {full}=...)")
        try:
            value = node[k]
        except Exception as e:  # noqa: BLE001 - an interpolation that cannot resolve
            raise ConfigError(f"{full} cannot be resolved: {format_error(e)}") from None
        check_value(value, hints[k], f.metadata.get("check"), full)


def _optional(typ: Any) -> tuple[Any, bool]:
    if typing.get_origin(typ) is typing.Union:
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(typ)) == 2:
            return args[0], True
    return typ, False


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_value(value: Any, typ: Any, check: Check | None, key: str) -> None:
    """One value against its annotated type and its `Check` (ConfigError naming `key`)."""
    typ, optional = _optional(typ)
    if value is None:
        if optional or typ is Any:
            return
        raise ConfigError(f"{key} must be set, got null")
    if check is not None and check.rule in _RULES:
        _RULES[check.rule](value, key)
        return
    if typ is Any:
        pass
    elif is_dataclass(typ):
        check_node(value, typ, key)
        return
    elif typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be a boolean (true/false), got {_show(value)}")
    elif typ is int:
        if not _is_int(value):
            raise ConfigError(f"{key} must be an integer, got {_show(value)}")
    elif typ is float:
        if not _is_number(value) or not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {_show(value)}")
    elif typ is str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(f"{key} must be a string, got {_show(value)}")
    elif isinstance(typ, type) and issubclass(typ, enum.Enum):
        allowed = tuple(m.value for m in typ)
        if str(value) not in allowed or not isinstance(value, str):
            raise ConfigError(f"{key} must be one of {allowed}, got {_show(value)}")
    elif typing.get_origin(typ) is list:
        if not isinstance(value, (ListConfig, list, tuple)):
            raise ConfigError(f"{key} must be a list, got {_show(value)}")
        (item,) = typing.get_args(typ) or (Any,)
        each = check if check is not None and check.each else None
        if each is not None and len(value) == 0:
            raise ConfigError(f"{key} must be a non-empty list, got []")
        for i, v in enumerate(value):
            check_value(v, item, each, f"{key}[{i}]")
        return
    if check is not None:
        _bounds(value, check, key)


def _bounds(value: Any, check: Check, key: str) -> None:
    if check.choices is not None:
        choices = _NAMED_CHOICES.get(check.choices, check.choices)
        if value not in choices:
            raise ConfigError(f"{key} must be one of {tuple(choices)}, got {_show(value)}")
    lo, hi = check.lo, check.hi
    if lo is None and hi is None:
        return
    if not _is_number(value) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {_show(value)}")
    low_ok = lo is None or (value > lo if check.lo_open else value >= lo)
    high_ok = hi is None or (value < hi if check.hi_open else value <= hi)
    if low_ok and high_ok:
        return
    if lo == 1 and hi is None and _is_int(value):
        raise ConfigError(f"{key} must be a positive integer, got {_show(value)}")
    left = "(" if check.lo_open else "["
    right = ")" if check.hi_open else "]"
    span = f"{left}{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}"
    raise ConfigError(f"{key} must lie in {span}{right}, got {_show(value)}")


# -- named rules
def _seed(v: Any, key: str) -> None:
    if not _is_int(v) or not 0 <= v < _SEED_END:
        raise ConfigError(f"{key} must be an integer in [0, 2**63), got {_show(v)}")


def _devices(v: Any, key: str) -> None:
    if v == "auto" or (_is_int(v) and (v >= 1 or v == -1)):
        return
    if isinstance(v, (ListConfig, list)) and len(v) > 0 and all(_is_int(d) and d >= 0 for d in v):
        return
    raise ConfigError(
        f"{key} must be a positive integer, -1 (all), 'auto' or a list of device indices, "
        f"got {_show(v)}"
    )


def _max_steps(v: Any, key: str) -> None:
    if v is None or (_is_int(v) and (v >= 1 or v == -1)):
        return
    raise ConfigError(f"{key} must be a positive integer or -1 (no limit), got {_show(v)}")


def _interval(v: Any, key: str) -> None:
    """val_check_interval / limit_*_batches: a count ≥ 1, or a fraction in (0, 1]."""
    if v is None or (_is_int(v) and v >= 1):
        return
    if _is_number(v) and not _is_int(v) and 0.0 < v <= 1.0:
        return
    if key.split(".")[-1].startswith("limit_") and _is_int(v) and v == 0:
        return  # limit_val_batches=0 turns validation off
    raise ConfigError(
        f"{key} must be a positive integer (batches) or a fraction in (0, 1], got {_show(v)}"
    )


def _event_shape(v: Any, key: str) -> None:
    if v is None:
        return
    if isinstance(v, (ListConfig, list)) and len(v) > 0 and all(_is_int(s) and s >= 1 for s in v):
        return
    raise ConfigError(
        f"{key} must be a list of positive integers (e.g. [3, 32, 32]), got {_show(v)}"
    )


def _range2(v: Any, key: str) -> None:
    if v is None:
        return
    ok = isinstance(v, (ListConfig, list)) and len(v) == 2
    ok = ok and all(_is_number(x) and math.isfinite(x) for x in v) and v[0] < v[1]
    if not ok:
        raise ConfigError(f"{key} must be [lo, hi] with lo < hi (e.g. [-1, 1]), got {_show(v)}")


def _target(v: Any, key: str) -> None:
    check_node(v, None, key)


def _targets(v: Any, key: str) -> None:
    if not isinstance(v, DictConfig):
        raise ConfigError(f"{key} must be a group of settings, got {_show(v)}")
    for name in v.keys():
        node = v[name]
        if node is not None:
            check_node(node, None, f"{key}.{name}")


_RULES = {
    "seed": _seed,
    "devices": _devices,
    "max_steps": _max_steps,
    "val_check_interval": _interval,
    "event_shape": _event_shape,
    "range2": _range2,
    "target": _target,
    "targets": _targets,
}


# -- the command line: booleans OmegaConf would convert
def command_line(cfg: DictConfig) -> list:
    """The run's command-line overrides, parsed (Hydra `Override`s); [] outside Hydra."""
    if "hydra" in cfg:
        over = list(OmegaConf.select(cfg, "hydra.overrides.task", default=None) or [])
    elif HydraConfig.initialized():
        over = list(HydraConfig.get().overrides.task)
    else:
        over = []
    try:
        return OverridesParser.create().parse_overrides(over) if over else []
    except Exception:  # noqa: BLE001 - composition already accepted them
        return []


def check_overrides(cfg: DictConfig, task: str) -> None:
    """A command-line value for a `bool` setting is true or false, nothing else.

    OmegaConf turns `2`, `yes`, `on` into True for a field typed bool (the sampler group's
    `track_logp`), so the composed config cannot tell; the override itself can.
    """
    for o in command_line(cfg):
        if o.is_delete() or o.is_sweep_override() or "@" in o.key_or_group:
            continue
        path = o.key_or_group.split(".")
        parent = cfg if len(path) == 1 else OmegaConf.select(cfg, ".".join(path[:-1]))
        schema = TASK_SCHEMAS.get(task) if len(path) == 1 else schema_of(parent)
        if schema is None or path[-1] not in _hints(schema):
            continue
        typ, _ = _optional(_hints(schema)[path[-1]])
        value = o.value()
        if typ is bool and not isinstance(value, bool):
            raise ConfigError(
                f"{o.key_or_group} must be a boolean (true/false), got {_show(value)}"
            )


def check_config(cfg: DictConfig, task: str) -> None:
    """Every key of `cfg` against the schemas (see the module docstring)."""
    schema = TASK_SCHEMAS.get(task)
    if schema is None:
        return
    check_node(cfg, schema, "", where=f"`{task}`")
    check_overrides(cfg, task)
