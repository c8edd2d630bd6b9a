"""Structured-config schemas of the `sampler`, `likelihood` and `noise` config groups.

Each option `conf/<group>/<option>.yaml` starts with

    defaults:
      - <option>_schema
      - _self_

so Hydra composes it onto the dataclass stored here as `<group>/<option>_schema`: an unknown key
or a value of the wrong type fails at composition, and the error names the key
(`sampler.stepz=3`, `sampler.steps=abc`, `sampler.logp_scheme=rk4`). Hydra's `+key=value` adds a
key even to a Structured Config (by design, Hydra #1515): `unknown_keys` finds such keys, and
`cartoonist.pipeline.validate` refuses them in one line before anything is built
(`+sampler.foo=1`).
The YAML keeps the values (and their comments); the dataclass defaults equal them, so a
schema alone is a valid config too. `_target_` is a field whose default is the YAML's target.

Closed string choices are `Enum`s mixing in `str` (`_Choice`): OmegaConf checks the value at
composition and the target receives the member, which *is* a `str` equal to its value (`==`,
`in (...)`, dict keys, f-strings and JSON behave as with the plain string). Open choices stay
`str`: `method` (any torchdiffeq method besides "euler"/"heun") and the noise group's `schedule`,
`weighting` and `importance` (the train task stores `OmegaConf.to_container(cfg.noise)`, Enum
members included, in its checkpoints, which load with `torch.load(weights_only=True)`: an Enum
there would not load). TrainingNoise checks those values itself.

It imports nothing from cartoonist. `register_configs()` (idempotent) runs at import; the
package `cartoonist.pipeline` imports this module, so every composition sees the schemas.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

__all__ = [
    "Backend",
    "Divergence",
    "ElboEstimator",
    "FirstStage",
    "LogpScheme",
    "SDESampler",
    "HDSampler",
    "PFODESampler",
    "HeunSampler",
    "ModeTrackingSampler",
    "PFODELikelihood",
    "ELBOLikelihood",
    "ExactLikelihood",
    "SDETrackingLikelihood",
    "TrainingNoiseConfig",
    "VPNoise",
    "VENoise",
    "EDMNoise",
    "FlowNoise",
    "SCHEMAS",
    "register_configs",
    "unknown_keys",
]


# -- closed choices -----------------------------------------------------------------------------
class _Choice(str, Enum):
    """A string choice: a `str` equal to its value, printed as the value (like 3.11's StrEnum)."""

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return str.__format__(str.__str__(self), spec)


def _choices(name: str, doc: str, *values: str) -> type[_Choice]:
    """A `_Choice` enum whose members are `values` (member name = value)."""
    cls = _Choice(name, {v: v for v in values}, module=__name__, qualname=name)
    cls.__doc__ = doc
    return cls


FirstStage = _choices(
    "FirstStage", "Algorithm 1's first stage down to lambda_threshold.", "ode", "sde"
)
LogpScheme = _choices(
    "LogpScheme",
    "Theorem 1's r update: corrected (bias ∝ 1/N²), euler (the paper's, ∝ 1/N).",
    "corrected",
    "euler",
)
Divergence = _choices(
    "Divergence", "Laplacian / divergence estimator.", "hutchinson", "exact", "analytic"
)
Backend = _choices(
    "Backend", "Jacobian-vector products: by device, JVP or VJP.", "auto", "forward", "reverse"
)
ElboEstimator = _choices(
    "ElboEstimator", "The ELBO's integrand (Theorem 4).", "denoising", "divergence"
)


# -- ranges and choices ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """What a field's value may be besides its type: kept in the field's `metadata["check"]`.

    `cartoonist.pipeline.typecheck` applies it (OmegaConf ignores metadata): a number in
    [lo, hi] (either end open, or None for none), a value among `choices` (a tuple, or the name
    of a set the checker knows: `ODE_METHODS`), every item of a list (`each`), or a named rule
    (`rule`: "devices", "val_check_interval", "max_steps").
    """

    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False
    choices: Any = None
    each: bool = False
    rule: Optional[str] = None


ODE_METHODS = "ODE_METHODS"  # the checker's name for cartoonist.diffusion.integrators.ODE_METHODS


def _field(default: Any, check: Check) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"check": check})
    return field(default=default, metadata={"check": check})


def positive(default: Any) -> Any:
    """An integer ≥ 1 (each item for a list default)."""
    return _field(default, Check(lo=1, each=isinstance(default, list)))


def at_least(default: Any, lo: float) -> Any:
    """A number ≥ lo."""
    return _field(default, Check(lo=lo, each=isinstance(default, list)))


def between(
    default: Any,
    lo: Optional[float],
    hi: Optional[float],
    lo_open: bool = False,
    hi_open: bool = False,
) -> Any:
    """A number in [lo, hi] (`lo_open` / `hi_open`: that end excluded; None: unbounded)."""
    return _field(default, Check(lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open))


def choice(default: Any, choices: Any) -> Any:
    """A value among `choices` (or the name of a set the checker knows)."""
    return _field(default, Check(choices=choices))


def rule(default: Any, name: str) -> Any:
    """A value checked by the checker's named rule `name`."""
    return _field(default, Check(rule=name))


@dataclass
class _Partial:
    """A function with some arguments bound: `instantiate` returns a functools.partial."""

    _target_: str = ""
    _partial_: bool = True


# -- sampler ------------------------------------------------------------------------------------
@dataclass
class SDESampler(_Partial):
    """conf/sampler/sde.yaml: reverse SDE with the Theorem 1 log-density."""

    _target_: str = "cartoonist.sample_sde"
    steps: int = positive(1000)
    track_logp: bool = True
    logp_scheme: LogpScheme = LogpScheme.corrected


@dataclass
class HDSampler(_Partial):
    """conf/sampler/hd.yaml: Algorithm 1 (first stage to lambda_threshold, then the HD-ODE)."""

    _target_: str = "cartoonist.hd_sample"
    steps: int = positive(1000)
    lambda_threshold: float = 0.0  # in the schedule's [λ_min, λ_max): cross-field (validate)
    first_stage: FirstStage = FirstStage.ode
    method: str = choice("euler", ODE_METHODS)
    track_logp: bool = True  # its log p by default (one JVP per ODE step)


@dataclass
class PFODESampler(_Partial):
    """conf/sampler/pf_ode.yaml: PF-ODE, Euler steps (null steps: an adaptive method)."""

    _target_: str = "cartoonist.sample_ode"
    steps: Optional[int] = positive(256)
    method: str = choice("euler", ODE_METHODS)
    track_logp: bool = False


@dataclass
class HeunSampler(PFODESampler):
    """conf/sampler/heun.yaml: PF-ODE, Heun steps."""

    steps: Optional[int] = positive(128)
    method: str = choice("heun", ODE_METHODS)


@dataclass
class ModeTrackingSampler(_Partial):
    """conf/sampler/mode_tracking.yaml: Theorem 5 from SDE samples at lambda_t."""

    _target_: str = "cartoonist.sample_mode_tracking"
    steps: int = positive(400)
    lambda_t: float = 0.0  # in the schedule's open (λ_min, λ_max): cross-field (validate)
    sde_steps: int = positive(500)


# -- likelihood ---------------------------------------------------------------------------------
@dataclass
class PFODELikelihood(_Partial):
    """conf/likelihood/pf_ode.yaml: PF-ODE log-likelihood (null steps: an adaptive method)."""

    _target_: str = "cartoonist.ode_log_prob"
    steps: Optional[int] = positive(256)
    method: str = choice("heun", ODE_METHODS)
    divergence: Divergence = Divergence.hutchinson
    probes: int = positive(1)
    backend: Backend = Backend.auto
    rtol: float = between(1.0e-5, 0.0, None, lo_open=True)
    atol: float = between(1.0e-5, 0.0, None, lo_open=True)


@dataclass
class ELBOLikelihood(_Partial):
    """conf/likelihood/elbo.yaml: continuous-time ELBO (Theorem 4)."""

    _target_: str = "cartoonist.elbo"
    n_lambda: int = positive(64)
    estimator: ElboEstimator = ElboEstimator.denoising


@dataclass
class ExactLikelihood(_Partial):
    """conf/likelihood/exact.yaml: the oracle's exact log p (model=oracle only)."""

    _target_: str = "cartoonist.diffusion.estimators.exact_log_prob"


@dataclass
class SDETrackingLikelihood(_Partial):
    """conf/likelihood/sde_tracking.yaml: Theorem 1's r_0 of the model's own SDE samples."""

    _target_: str = "cartoonist.diffusion.estimators.sde_tracking"


# -- noise --------------------------------------------------------------------------------------
@dataclass
class TrainingNoiseConfig:
    """A TrainingNoise (not a partial); conf/noise/vp.yaml's values."""

    _target_: str = "cartoonist.diffusion.losses.TrainingNoise"
    schedule: str = choice("vp", ("vp", "ve", "edm", "flow"))
    lambda_min: float = -10.0  # below lambda_max: cross-field (validate)
    lambda_max: float = 10.0
    weighting: str = choice("elbo", ("elbo", "sigmoid"))
    sigmoid_bias: float = 2.0
    importance: str = choice("adaptive", ("uniform", "adaptive"))


@dataclass
class VPNoise(TrainingNoiseConfig):
    """conf/noise/vp.yaml."""


@dataclass
class VENoise(TrainingNoiseConfig):
    """conf/noise/ve.yaml: σ ∈ [0.002, 80]."""

    schedule: str = choice("ve", ("vp", "ve", "edm", "flow"))
    lambda_min: float = -8.764
    lambda_max: float = 12.429


@dataclass
class EDMNoise(TrainingNoiseConfig):
    """conf/noise/edm.yaml: σ ∈ [0.002, 80], sigmoid weighting."""

    schedule: str = choice("edm", ("vp", "ve", "edm", "flow"))
    lambda_min: float = -8.764
    lambda_max: float = 12.429
    weighting: str = choice("sigmoid", ("elbo", "sigmoid"))


@dataclass
class FlowNoise(TrainingNoiseConfig):
    """conf/noise/flow.yaml."""

    schedule: str = choice("flow", ("vp", "ve", "edm", "flow"))


# -- registration -------------------------------------------------------------------------------
#: (group, schema name) -> dataclass; conf/<group>/<option>.yaml uses <option>_schema
_OPTIONS: dict[str, dict[str, type]] = {
    "sampler": {
        "sde": SDESampler,
        "hd": HDSampler,
        "pf_ode": PFODESampler,
        "heun": HeunSampler,
        "mode_tracking": ModeTrackingSampler,
    },
    "likelihood": {
        "pf_ode": PFODELikelihood,
        "elbo": ELBOLikelihood,
        "exact": ExactLikelihood,
        "sde_tracking": SDETrackingLikelihood,
    },
    "noise": {"vp": VPNoise, "ve": VENoise, "edm": EDMNoise, "flow": FlowNoise},
}
SCHEMAS: dict[tuple[str, str], type] = {
    (group, f"{option}_schema"): cls
    for group, opts in _OPTIONS.items()
    for option, cls in opts.items()
}


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    for (group, name), node in SCHEMAS.items():
        cs.store(group=group, name=name, node=node)


def unknown_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Full keys of `cfg` that no schema declares, in nodes typed by a schema of SCHEMAS.

    Hydra composes onto the schema, so only a `+key=value` (or `++`) override can bring such a
    key: it force-adds by design, even into a Structured Config (Hydra #1515).
    """
    found: list[str] = []
    if not isinstance(cfg, DictConfig):
        return found
    types = set(SCHEMAS.values())
    for key, node in cfg.items_ex(resolve=False):
        if not isinstance(node, DictConfig) or (not prefix and key == "hydra"):
            continue
        typ = OmegaConf.get_type(node)
        if typ in types:
            declared = {f.name for f in fields(typ)}
            found += [f"{prefix}{key}.{k}" for k in node.keys() if k not in declared]
        else:
            found += unknown_keys(node, f"{prefix}{key}.")
    return found


register_configs()
