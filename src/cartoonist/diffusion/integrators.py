"""Integrators over augmented states (x, a): x [B, ...] and an accumulator a [B] (a log-density).

Fixed grids use our Euler and Heun loops (a fresh Hutchinson probe can be drawn at every step, and
each step is indexed for error messages); any other method name is handed to `torchdiffeq.odeint`
(adaptive "dopri5", "bosh3", ..., or its fixed-grid "rk4", "midpoint"). Accumulators are always
float64: a log-density summed over thousands of steps loses ~0.01 nats in float32.

The Euler–Maruyama loops of the SDE estimators live with their theorems (`sde_tracking`,
`forward_sde`): their updates share one Brownian increment between x and the log-density, which is
the point of them.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator

import torch
from torch import Tensor

from cartoonist.diffusion.results import Trajectory

__all__ = [
    "integrate_ode",
    "check_grid",
    "FIXED_METHODS",
    "GENERIC_METHODS",
    "ODE_METHODS",
    "ADAPTIVE_METHOD",
    "check_state",
    "show_progress",
    "step_range",
]

_PROGRESS: ContextVar[str | None] = ContextVar("cartoonist_progress", default=None)


@contextmanager
def show_progress(desc: str = "steps") -> Iterator[None]:
    """Within this context, fixed-grid loops show a tqdm progress bar labelled `desc`."""
    token = _PROGRESS.set(desc)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def step_range(n: int):
    """range(n), wrapped in a progress bar inside `show_progress`."""
    desc = _PROGRESS.get()
    if desc is None:
        return range(n)
    from tqdm.auto import tqdm

    return tqdm(range(n), desc=desc, leave=False, dynamic_ncols=True)


Drift = Callable[[Tensor, Tensor], "tuple[Tensor, Tensor | None]"]
FIXED_METHODS = ("euler", "heun")
_ADAPTIVE = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
# Our exponential Adams method in λ with the Gaussian control variate (`adams`); it needs the
# schedule, so `run_ode` runs it (the ODE family: PF-ODE likelihood and sampling, HD-ODE).
ADAPTIVE_METHOD = "adaptive"
# Every method name accepted: ours, then torchdiffeq's fixed-grid and adaptive solvers.
GENERIC_METHODS = (
    FIXED_METHODS
    + (
        "rk4",
        "midpoint",
        "explicit_adams",
        "implicit_adams",
        "fixed_adams",
    )
    + _ADAPTIVE
)
ODE_METHODS = GENERIC_METHODS + (ADAPTIVE_METHOD,)


def check_grid(grid, schedule=None, increasing: bool | None = None, name: str = "grid") -> Tensor:
    """Validate a λ grid: float64, ≥ 2 points, strictly monotone, inside the schedule's range."""
    grid = torch.as_tensor(grid, dtype=torch.float64).reshape(-1)
    if grid.numel() < 2:
        raise ValueError(f"{name} needs at least 2 points, got {grid.numel()}")
    d = grid[1:] - grid[:-1]
    if not ((d > 0).all() or (d < 0).all()):
        raise ValueError(f"{name} must be strictly monotone in λ")
    if increasing is not None and bool(d[0] > 0) != increasing:
        want = "increasing (noise → data)" if increasing else "decreasing (data → noise)"
        raise ValueError(f"{name} must be {want}")
    if schedule is not None:
        schedule.check_lambda(grid, name)
    return grid


def check_state(x: Tensor, k: int, lam: float) -> None:
    """Raise FloatingPointError if x has a non-finite entry after step k."""
    if not bool(torch.isfinite(x).all()):
        raise FloatingPointError(
            f"the state became NaN/inf at step {k} (λ={lam:.6g}); the step is too large for the "
            f"dynamics or the score is unstable there"
        )


def integrate_ode(
    drift: Drift,
    x: Tensor,
    grid: Tensor,
    *,
    acc: Tensor | None = None,
    method: str = "heun",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    score=None,
    record: bool = False,
) -> tuple[Tensor, Tensor | None, Trajectory | None]:
    """Integrate dx/dλ = drift_x, da/dλ = drift_a along a λ grid.

    Args:
        drift: (x [B, ...], lam 0-d float64 tensor) -> (dx/dλ [B, ...], da/dλ [B] or None).
        x: [B, ...] initial state.
        grid: [N] λ points (monotone). Fixed methods step on it; adaptive methods use its ends
            (and report the state at every point when `record`).
        acc: [B] initial accumulator (float64) or None when nothing is tracked.
        method: "euler", "heun", or a torchdiffeq method name ("dopri5", "rk4", ...).
        rtol, atol: tolerances of adaptive methods.
        score: the CountedScore in use, told which step is running (for error messages).
        record: keep the state at every grid point.

    Returns:
        (x at grid[-1], acc at grid[-1], Trajectory or None).
    """
    if not callable(drift):
        raise ValueError(
            f"drift must be callable (x, lam) -> (dx, da), got {type(drift).__name__}"
        )
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 1 or x.numel() < 1:
        raise ValueError(f"x must be a non-empty floating tensor [B, ...], got {x!r:.60}")
    grid = check_grid(grid)
    if acc is not None and (not isinstance(acc, Tensor) or acc.shape != (x.shape[0],)):
        got = tuple(acc.shape) if isinstance(acc, Tensor) else type(acc).__name__
        raise ValueError(f"acc must be a [{x.shape[0]}] tensor (one value per sample), got {got}")
    if method not in GENERIC_METHODS:
        if method == ADAPTIVE_METHOD:
            raise ValueError(
                "method='adaptive' needs the schedule: it runs through the ODE family "
                "(ode_log_prob, sample_ode, hd_ode), not integrate_ode"
            )
        raise ValueError(f"method must be one of {GENERIC_METHODS}, got {method!r}")
    if method in FIXED_METHODS:
        return _fixed(drift, x, grid, acc, method, score, record)
    return _torchdiffeq(drift, x, grid, acc, method, rtol, atol, record)


def _fixed(drift, x, grid, acc, method, score, record):
    xs, accs = ([x], [acc]) if record else (None, None)
    n = grid.numel() - 1
    for k in step_range(n):
        lam, lam_next = grid[k], grid[k + 1]
        h = float(lam_next - lam)
        if score is not None:
            score.where = f" at step {k} of {n}"
        dx, da = drift(x, lam)
        if method == "heun":
            dx2, da2 = drift(x + h * dx, lam_next)
            dx, da = 0.5 * (dx + dx2), None if da is None else 0.5 * (da + da2)
        x = x + h * dx
        if acc is not None:
            acc = acc + h * da.to(torch.float64)
        check_state(x, k, float(lam))
        if record:
            xs.append(x)
            accs.append(acc)
    if score is not None:
        score.where = ""
    traj = _trajectory(grid, xs, accs) if record else None
    return x, acc, traj


def _trajectory(grid, xs, accs) -> Trajectory:
    logp = torch.stack(accs) if accs[0] is not None else None
    return Trajectory(lam=grid.clone(), x=torch.stack(xs), logp=logp)


def _torchdiffeq(drift, x, grid, acc, method, rtol, atol, record):
    try:
        from torchdiffeq import odeint
    except ImportError as e:  # pragma: no cover - torchdiffeq is a dependency
        raise ImportError("adaptive ODE methods need torchdiffeq (pip install torchdiffeq)") from e
    dtype = x.dtype
    ts = grid if record else grid[[0, -1]]
    options = None
    if not record and method not in _ADAPTIVE:
        # Fixed-grid torchdiffeq methods (rk4, midpoint, …) step on our grid but return only its
        # ends, so memory stays O(1) in the number of steps.
        options = {"grid_constructor": lambda func, y0, t: grid.to(t)}

    def func(t, state):
        xs = state[0].to(dtype)
        dx, da = drift(xs, t)
        out = (dx.to(torch.float64),)
        return out + ((da.to(torch.float64),) if acc is not None else ())

    y0 = (x.to(torch.float64),) + ((acc.to(torch.float64),) if acc is not None else ())
    ys = odeint(func, y0, ts.to(x.device), rtol=rtol, atol=atol, method=method, options=options)
    x_end = ys[0][-1].to(dtype)
    acc_end = ys[1][-1] if acc is not None else None
    check_state(x_end, ts.numel() - 2, float(ts[-1]))
    traj = None
    if record:
        traj = Trajectory(
            lam=ts.clone(), x=ys[0].to(dtype), logp=ys[1] if acc is not None else None
        )
    return x_end, acc_end, traj
