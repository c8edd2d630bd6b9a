"""The calling contract of every sampler and estimator, and its argument checks (written once).

Every sampler and estimator is called as

    fn(score, schedule, x, steps=..., *, grid=None, noise=None, ...)

    score       callable (x [B, ...], lam [B]) -> ∇_x log p_λ(x) [B, ...].
    schedule    a `Schedule`; λ is log-SNR, generation runs λ_min → λ_max.
    x           [B, ...] floating tensor: the initial state of a sampler (prior draws at λ_min, or
                states at the function's starting λ) or the data of an estimator (at λ_max).
    steps       number of grid intervals of a uniform λ grid over the function's default range
                (the only other positional argument); `grid=` (an explicit monotone λ tensor,
                float64) overrides it, in the direction the function integrates.
    noise       the one source of randomness: `Keys(seed, sample_ids)` (per-sample streams,
                batch-invariant), a torch.Generator (one fast batch-level stream) or None
                (= `Keys(0)`: seed 0, ids 0..B−1). See `rng`.
    track_logp  carry log p_λ(x_λ) along (samplers); logp_init [B] is its value at the start
                (default: the schedule's prior N(0, σ_{λ_min}² I) when the grid starts at λ_min).
    record      keep the state (and log-density) at every grid point (`Trajectory`).
    method      "euler", "heun", "adaptive" (`adams`) or a torchdiffeq method ("rk4", ...).
    divergence  Laplacian / divergence estimator: "hutchinson", "exact" or "analytic".
    probes      Hutchinson probes per evaluation; backend: "auto" (VJP on the CPU, JVP
                elsewhere), "forward" (JVP) or "reverse" (VJP).

All other arguments are keyword-only. Log-densities are per sample, in nats, float64. Samplers
return `SampleResult`, estimators `LikelihoodResult`. Every argument is checked before the score
is first evaluated: a bad one raises a single ValueError that names it (TypeError for a state
that is not a floating tensor).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from cartoonist.diffusion.integrators import ODE_METHODS, check_grid
from cartoonist.diffusion.rng import check_noise
from cartoonist.diffusion.schedules import Schedule, check_steps
from cartoonist.diffusion.score import check_batch, check_per_sample

__all__ = [
    "DIVERGENCES",
    "BACKENDS",
    "ODE_METHODS",
    "resolve_grid",
    "span_grid",
    "initial_logp",
    "check_choice",
    "check_ode_options",
    "ODEOptions",
    "check_divergence",
    "check_inputs",
    "check_lambda_value",
]

DIVERGENCES = ("hutchinson", "exact", "analytic")
BACKENDS = ("auto", "forward", "reverse")


def check_choice(value, choices, name: str, what: str | None = None) -> None:
    """ValueError naming `name` unless value is one of `choices`."""
    if value not in choices:
        raise ValueError(f"{what or name} must be one of {tuple(choices)}, got {value!r}")


def check_inputs(x, schedule, noise=None, name: str = "x") -> Tensor:
    """Validate the state batch, the schedule and the noise source; return x."""
    x = check_batch(x, name)
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be a Schedule, got {type(schedule).__name__}")
    check_noise(noise, x.shape[0])
    return x


def resolve_grid(
    schedule: Schedule,
    steps,
    grid,
    start: float,
    end: float,
    increasing: bool | None,
) -> Tensor:
    """The λ grid of a call: `grid` if given (checked), else `steps` steps from start to end."""
    if grid is None:
        if steps is None:
            raise ValueError("give either steps or grid")
        check_steps(steps)
        grid = schedule.grid(steps, start, end)
    return check_grid(grid, schedule, increasing)


def span_grid(schedule: Schedule, steps, grid, start, end, start_name: str, what: str) -> Tensor:
    """`grid` if given, else `steps` increasing steps from `start` (required) to `end` (λ_max).

    `start_name` names the start argument and `what` says what it is, for the error message.
    """
    if grid is None:
        if start is None:
            raise ValueError(f"{start_name} ({what}) is required, or an explicit grid")
        start = check_lambda_value(schedule, start, start_name)
        end = schedule.lambda_max if end is None else end
        end = check_lambda_value(schedule, end, "lambda_end")
    return resolve_grid(schedule, steps, grid, start, end, True)


def initial_logp(schedule: Schedule, x: Tensor, grid: Tensor, logp_init, track_logp: bool):
    """[B] float64 log p at the grid's start when tracking, else None.

    The default is the prior's log-density, valid only when the grid starts at λ_min.
    """
    if not track_logp:
        return None
    if logp_init is None:
        if float(grid[0]) != schedule.lambda_min:
            raise ValueError("logp_init is required when the grid does not start at lambda_min")
        logp_init = schedule.prior_log_prob(x)
    return check_per_sample(logp_init, x, "logp_init")


def check_ode_options(method: str, divergence: str, probes, backend: str) -> None:
    """Validate the integrator and Laplacian-estimator options of the ODE family."""
    check_choice(method, ODE_METHODS, "method")
    check_divergence(divergence, probes, backend)


@dataclass(frozen=True)
class ODEOptions:
    """The integrator and Laplacian-estimator options of the ODE family, checked once.

    Attributes:
        method: "euler", "heun", "adaptive" or a torchdiffeq method.
        divergence, probes, backend: the Laplacian estimator (see `check_divergence`).
        noise: Keys, torch.Generator or None: the Hutchinson probes (stream "probe").
        rtol, atol: tolerances of adaptive methods.
    """

    method: str
    divergence: str
    probes: int
    backend: str
    noise: object = None
    rtol: float = 1e-5
    atol: float = 1e-5

    def __post_init__(self):
        check_ode_options(self.method, self.divergence, self.probes, self.backend)


def check_divergence(divergence: str, probes, backend: str) -> None:
    """Validate the options of a Laplacian (divergence) estimator."""
    check_choice(divergence, DIVERGENCES, "divergence", "divergence method")
    check_choice(backend, BACKENDS, "backend", "divergence backend")
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
        raise ValueError(f"probes must be a positive integer, got {probes!r}")


def check_lambda_value(schedule: Schedule, value, name: str, open_upper: bool = False) -> float:
    """A λ in [λ_min, λ_max] of `schedule` (or [λ_min, λ_max) if `open_upper`), as a float."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    lo, hi = schedule.lambda_min, schedule.lambda_max
    ok = lo <= v < hi if open_upper else lo - 1e-9 <= v <= hi + 1e-9
    if not ok:
        raise ValueError(
            f"{name} must lie in [{lo:g}, {hi:g}{')' if open_upper else ']'}, got {value}"
        )
    return v
