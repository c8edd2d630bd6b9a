"""Unit tests of the ODE integrators (orders of convergence, torchdiffeq hand-off, trajectories),
of the reported NFE, and of input validation in the public samplers and estimators.
"""

from __future__ import annotations

import math

import pytest
import torch

import cartoonist
from cartoonist import VP, GaussianMixture, integrate_ode

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)

DT = torch.float64


# -- a linear test ODE with a closed form --------------------------------------------------------
#   dx/dλ = cos(λ) x,            x(λ) = x0 exp(sin λ − sin λ0)
#   da/dλ = cos(λ) Σ_i x_i,      a(λ) = a0 + Σ x0 (exp(sin λ − sin λ0) − 1)
X0 = torch.tensor([[1.0, -0.5], [0.3, 2.0], [-1.2, 0.7]], dtype=DT)
A0 = torch.tensor([0.1, -0.4, 2.0], dtype=DT)


def _drift(x, lam):
    c = torch.cos(torch.as_tensor(lam, dtype=DT))
    return c * x, c * x.sum(1)


def _exact(lam0, lam):
    e = math.exp(math.sin(lam) - math.sin(lam0))
    return X0 * e, A0 + X0.sum(1) * (e - 1)


def _err(method, n, lo=0.0, hi=2.0):
    grid = torch.linspace(lo, hi, n + 1, dtype=DT)
    x, a, _ = integrate_ode(_drift, X0.clone(), grid, acc=A0.clone(), method=method)
    xe, ae = _exact(lo, hi)
    return float((x - xe).abs().max()), float((a - ae).abs().max())


@pytest.mark.parametrize("lo,hi", [(0.0, 2.0), (2.0, 0.0)])
def test_euler_is_first_order(lo, hi):
    for n in (40, 80):
        ex1, ea1 = _err("euler", n, lo, hi)
        ex2, ea2 = _err("euler", 2 * n, lo, hi)
        assert 1.8 <= ex1 / ex2 <= 2.2, (n, ex1, ex2)
        assert 1.8 <= ea1 / ea2 <= 2.2, (n, ea1, ea2)


@pytest.mark.parametrize("lo,hi", [(0.0, 2.0), (2.0, 0.0)])
def test_heun_is_second_order(lo, hi):
    for n in (20, 40):
        ex1, ea1 = _err("heun", n, lo, hi)
        ex2, ea2 = _err("heun", 2 * n, lo, hi)
        assert 3.6 <= ex1 / ex2 <= 4.4, (n, ex1, ex2)
        assert 3.6 <= ea1 / ea2 <= 4.4, (n, ea1, ea2)
    assert _err("heun", 40, lo, hi)[0] < _err("euler", 40, lo, hi)[0] / 10


@pytest.mark.parametrize("lo,hi", [(0.0, 2.0), (2.0, -1.0)])
def test_dopri5_matches_closed_form(lo, hi):
    grid = torch.linspace(lo, hi, 5, dtype=DT)
    x, a, traj = integrate_ode(
        _drift,
        X0.clone(),
        grid,
        acc=A0.clone(),
        method="dopri5",
        rtol=1e-11,
        atol=1e-12,
        record=True,
    )
    xe, ae = _exact(lo, hi)
    torch.testing.assert_close(x, xe, rtol=0, atol=1e-8)
    torch.testing.assert_close(a, ae, rtol=0, atol=1e-8)
    assert a.dtype == DT
    assert traj.x.shape == (5, 3, 2) and traj.logp.shape == (5, 3)
    for k in range(5):
        xk, ak = _exact(lo, float(grid[k]))
        torch.testing.assert_close(traj.x[k], xk, rtol=0, atol=1e-8)
        torch.testing.assert_close(traj.logp[k], ak, rtol=0, atol=1e-8)


def test_rk4_via_torchdiffeq():
    grid = torch.linspace(0.0, 2.0, 41, dtype=DT)
    x, a, _ = integrate_ode(_drift, X0.clone(), grid, acc=A0.clone(), method="rk4")
    xe, ae = _exact(0.0, 2.0)
    torch.testing.assert_close(x, xe, rtol=0, atol=1e-6)
    torch.testing.assert_close(a, ae, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", ["euler", "heun"])
@pytest.mark.parametrize("lo,hi", [(0.0, 2.0), (2.0, 0.0)])
def test_record_trajectory(method, lo, hi):
    n = 16
    grid = torch.linspace(lo, hi, n + 1, dtype=DT)
    x, a, traj = integrate_ode(
        _drift, X0.clone(), grid, acc=A0.clone(), method=method, record=True
    )
    assert traj.lam.shape == (n + 1,) and torch.equal(traj.lam, grid)
    assert traj.x.shape == (n + 1, 3, 2) and traj.logp.shape == (n + 1, 3)
    assert torch.equal(traj.x[0], X0) and torch.equal(traj.logp[0], A0)
    assert torch.equal(traj.x[-1], x) and torch.equal(traj.logp[-1], a)
    # the state recorded at grid point k is the result of integrating over grid[:k + 1]
    k = n // 2
    xk, ak, _ = integrate_ode(_drift, X0.clone(), grid[: k + 1], acc=A0.clone(), method=method)
    assert torch.equal(traj.x[k], xk) and torch.equal(traj.logp[k], ak)
    xe, _ = _exact(lo, float(grid[k]))
    torch.testing.assert_close(traj.x[k], xe, rtol=0, atol=0.2 if method == "euler" else 0.03)


def test_no_accumulator():
    grid = torch.linspace(0.0, 1.0, 11, dtype=DT)
    x, a, traj = integrate_ode(
        lambda x, lam: (_drift(x, lam)[0], None), X0.clone(), grid, method="heun", record=True
    )
    assert a is None and traj.logp is None and traj.x.shape == (11, 3, 2)
    x2, a2, _ = integrate_ode(
        lambda x, lam: (_drift(x, lam)[0], None),
        X0.clone(),
        grid,
        method="dopri5",
        rtol=1e-10,
        atol=1e-10,
    )
    assert a2 is None
    torch.testing.assert_close(x2, _exact(0.0, 1.0)[0], rtol=0, atol=1e-8)


def test_integrator_reports_nonfinite_state_step():
    grid = torch.linspace(0.0, 1.0, 6, dtype=DT)

    def drift(x, lam):
        bad = float(lam) > 0.5
        return (torch.full_like(x, math.inf) if bad else x), None

    with pytest.raises(FloatingPointError, match="step 3"):
        integrate_ode(drift, X0.clone(), grid, method="euler")


# -- NFE -----------------------------------------------------------------------------------------
SCH = VP(-8.0, 8.0)
ORACLE3 = GaussianMixture(
    [0.3, 0.7],
    [[-1.0, 0.5, 2.0], [1.5, -0.5, 0.0]],
    [[0.3, 0.8, 0.5], [0.6, 0.2, 1.1]],
    schedule=SCH,
)
ORACLE2 = GaussianMixture(
    [0.3, 0.7], [[-1.0, 0.5], [1.5, -0.5]], [[0.3, 0.8], [0.6, 0.2]], schedule=SCH
)


def _x(d=3, b=4):
    return SCH.sample_prior((b, d), noise=cartoonist.Keys(0), dtype=DT)


def test_nfe_sample_sde():
    res = cartoonist.sample_sde(ORACLE3, SCH, _x(), 37)
    assert res.nfe == 37
    res = cartoonist.sample_sde(ORACLE3, SCH, _x(), 37, track_logp=False)
    assert res.nfe == 37 and res.logp is None


def test_nfe_sample_ode():
    res = cartoonist.sample_ode(ORACLE3, SCH, _x(), 10, method="heun", track_logp=False)
    assert res.nfe == 20 and res.logp is None
    res = cartoonist.sample_ode(ORACLE3, SCH, _x(), 10, method="euler", track_logp=False)
    assert res.nfe == 10
    res = cartoonist.sample_ode(ORACLE3, SCH, _x(), 10, method="euler", track_logp=True)
    assert res.nfe == 10  # one JVP per evaluation counts once
    kw = dict(method="heun", track_logp=True, probes=3)
    res = cartoonist.sample_ode(ORACLE3, SCH, _x(), 10, backend="forward", **kw)
    assert res.nfe == 60  # one JVP per probe
    res = cartoonist.sample_ode(ORACLE3, SCH, _x(), 10, backend="reverse", **kw)
    assert res.nfe == 20  # one forward on the tape, one backward pass per probe


def test_nfe_exact_divergence():
    kw = dict(method="euler", divergence="exact")
    res = cartoonist.sample_ode(ORACLE2, SCH, _x(2), 10, backend="forward", **kw)
    assert res.nfe == 10 * 2  # one JVP per basis vector
    res = cartoonist.ode_log_prob(ORACLE2, SCH, ORACLE2.sample(4), 10, backend="forward", **kw)
    assert res.nfe == 10 * 2
    res = cartoonist.ode_log_prob(ORACLE2, SCH, ORACLE2.sample(4), 10, backend="reverse", **kw)
    assert res.nfe == 10  # one forward on the tape, D backward passes


def test_nfe_hd_sample():
    res = cartoonist.hd_sample(ORACLE3, SCH, _x(), 40, lambda_threshold=0.0, first_stage="sde")
    assert res.nfe == 40 and sum(res.info["steps"]) == 40
    res = cartoonist.hd_sample(
        ORACLE3, SCH, _x(), 40, lambda_threshold=0.0, first_stage="ode", method="heun"
    )
    assert res.nfe == 80


# -- validation ----------------------------------------------------------------------------------
def _never(x, lam):
    raise AssertionError("the score was evaluated before the inputs were validated")


X_OK = SCH.sample_prior((4, 3), noise=cartoonist.Keys(0), dtype=DT)

ENTRY_POINTS = {  # every public sampler / estimator that takes a state batch x
    "sample_sde": lambda x: cartoonist.sample_sde(_never, SCH, x, 10),
    "sample_ode": lambda x: cartoonist.sample_ode(_never, SCH, x, 10),
    "ode_log_prob": lambda x: cartoonist.ode_log_prob(_never, SCH, x, 10),
    "ode_log_prob_along": lambda x: cartoonist.ode_log_prob_along(_never, SCH, x, 10),
    "hd_sample": lambda x: cartoonist.hd_sample(_never, SCH, x, 10, lambda_threshold=0.0),
    "hd_ode": lambda x: cartoonist.hd_ode(_never, SCH, x, 10, lambda_start=0.0),
    "track_mode": lambda x: cartoonist.track_mode(_never, SCH, x, 10, lambda_t=0.0),
    "newton_mode": lambda x: cartoonist.newton_mode(_never, SCH, x, lambda_t=0.0),
    "sample_mode_tracking": lambda x: cartoonist.sample_mode_tracking(_never, SCH, x, 10),
    "elbo": lambda x: cartoonist.elbo(_never, SCH, x, 8),
    "forward_sde_log_prob": lambda x: cartoonist.forward_sde_log_prob(_never, SCH, x, 10),
}
ENTRY_POINTS = {k: (v, "x") for k, v in ENTRY_POINTS.items()}


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_rejects_unbatched_input(name):
    fn, arg = ENTRY_POINTS[name]
    with pytest.raises(ValueError, match=rf"{arg} must have shape \[B, \.\.\.\]"):
        fn(torch.zeros(3, dtype=DT))
    with pytest.raises(ValueError, match=arg):
        fn(torch.zeros(0, 3, dtype=DT))


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_rejects_integer_input(name):
    fn, arg = ENTRY_POINTS[name]
    with pytest.raises((TypeError, ValueError), match="floating"):
        fn(torch.zeros(4, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="Tensor"):
        fn([[0.0, 1.0, 2.0]])


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_rejects_nonfinite_input(name, bad):
    fn, arg = ENTRY_POINTS[name]
    x = X_OK.clone()
    x[1, 2] = bad
    with pytest.raises(ValueError, match=f"{arg} contains NaN"):
        fn(x)


@pytest.mark.parametrize("logp_init", [torch.zeros(3, dtype=DT), torch.zeros(4, 1, dtype=DT), 0.0])
def test_rejects_bad_logp_init(logp_init):
    with pytest.raises(ValueError, match="logp_init"):
        cartoonist.sample_sde(_never, SCH, X_OK, 10, logp_init=logp_init)
    with pytest.raises(ValueError, match="logp_init"):
        cartoonist.sample_ode(_never, SCH, X_OK, 10, logp_init=logp_init)
    with pytest.raises(ValueError, match="logp_init"):
        cartoonist.hd_ode(
            _never, SCH, X_OK, 10, lambda_start=0.0, track_logp=True, logp_init=logp_init
        )


def test_logp_init_required_off_lambda_min():
    grid = torch.linspace(-4.0, 8.0, 5, dtype=DT)
    with pytest.raises(ValueError, match="logp_init"):
        cartoonist.sample_sde(_never, SCH, X_OK, grid=grid)
    with pytest.raises(ValueError, match="logp_init"):
        cartoonist.sample_ode(_never, SCH, X_OK, grid=grid)
    with pytest.raises(ValueError, match="logp_init"):
        cartoonist.hd_ode(_never, SCH, X_OK, 10, lambda_start=0.0, track_logp=True)


@pytest.mark.parametrize(
    "grid,match",
    [
        ([-9.0, 0.0, 8.0], "grid outside the schedule's range"),
        ([-8.0, 0.0, 8.5], "grid outside the schedule's range"),
        ([-8.0, math.nan, 8.0], "grid"),
        ([-8.0, 2.0, 1.0, 8.0], "grid must be strictly monotone"),
        ([-8.0, 0.0, 0.0, 8.0], "grid must be strictly monotone"),
        ([8.0, 0.0, -8.0], "grid must be increasing"),
        ([0.0], "grid needs at least 2 points"),
    ],
)
def test_sample_sde_rejects_bad_grid(grid, match):
    with pytest.raises(ValueError, match=match):
        cartoonist.sample_sde(
            _never,
            SCH,
            X_OK,
            grid=torch.tensor(grid, dtype=DT),
            logp_init=torch.zeros(4, dtype=DT),
        )


def test_ode_samplers_check_grid_direction():
    up = SCH.grid(4)
    with pytest.raises(ValueError, match="grid must be decreasing"):
        cartoonist.ode_log_prob(_never, SCH, X_OK, grid=up)
    with pytest.raises(ValueError, match="grid must be increasing"):
        cartoonist.sample_ode(_never, SCH, X_OK, grid=up.flip(0))
    with pytest.raises(ValueError, match="grid outside"):
        cartoonist.ode_log_prob(_never, SCH, X_OK, grid=torch.tensor([9.0, 0.0], dtype=DT))


@pytest.mark.parametrize("thr", [8.0, -9.0, 8.5, math.nan, math.inf])
def test_hd_sample_rejects_threshold(thr):
    with pytest.raises(ValueError, match="lambda_threshold"):
        cartoonist.hd_sample(_never, SCH, X_OK, 10, lambda_threshold=thr)


def test_hd_sample_rejects_first_stage():
    with pytest.raises(ValueError, match="first_stage"):
        cartoonist.hd_sample(_never, SCH, X_OK, 10, lambda_threshold=0.0, first_stage="pf-ode")


def test_hd_ode_rejects_start_outside_range():
    with pytest.raises(ValueError, match="lambda_start"):
        cartoonist.hd_ode(_never, SCH, X_OK, 10, lambda_start=-9.0)


@pytest.mark.parametrize("steps", [0, -1, 2.5, True])
def test_rejects_bad_steps(steps):
    with pytest.raises(ValueError, match="steps"):
        cartoonist.sample_sde(_never, SCH, X_OK, steps)
    with pytest.raises(ValueError, match="steps"):
        cartoonist.sample_ode(_never, SCH, X_OK, steps)
    with pytest.raises(ValueError, match="steps"):
        cartoonist.ode_log_prob(_never, SCH, X_OK, steps)
    with pytest.raises(ValueError, match="steps"):
        cartoonist.hd_sample(_never, SCH, X_OK, steps, lambda_threshold=0.0)
    with pytest.raises(ValueError, match="steps"):
        cartoonist.hd_ode(_never, SCH, X_OK, steps, lambda_start=0.0)


def test_hd_sample_needs_two_steps():
    with pytest.raises(ValueError, match="steps"):
        cartoonist.hd_sample(_never, SCH, X_OK, 1, lambda_threshold=0.0)


def test_steps_none_without_grid():
    with pytest.raises(ValueError, match="steps"):
        cartoonist.ode_log_prob(_never, SCH, X_OK, None)
    with pytest.raises(ValueError, match="steps"):
        cartoonist.sample_sde(_never, SCH, X_OK, None)


def test_rejects_bad_divergence_method():
    with pytest.raises(ValueError, match="divergence method"):
        cartoonist.ode_log_prob(_never, SCH, X_OK, 10, divergence="bogus")
    with pytest.raises(ValueError, match="divergence method"):
        cartoonist.sample_ode(_never, SCH, X_OK, 10, divergence="bogus")
    with pytest.raises(ValueError, match="divergence backend"):
        cartoonist.ode_log_prob(_never, SCH, X_OK, 10, backend="sideways")


def test_rejects_sample_ids_of_wrong_length():
    with pytest.raises(ValueError, match="sample_ids"):
        cartoonist.sample_sde(_never, SCH, X_OK, 10, noise=cartoonist.Keys(0, [0, 1, 2]))
    with pytest.raises(ValueError, match="sample_ids"):
        cartoonist.ode_log_prob(_never, SCH, X_OK, 10, noise=cartoonist.Keys(0, range(5)))


def test_elbo_rejects_bad_arguments():
    with pytest.raises(ValueError, match="estimator"):
        cartoonist.elbo(_never, SCH, X_OK, 8, estimator="exact")
    with pytest.raises(ValueError, match="n_lambda"):
        cartoonist.elbo(_never, SCH, X_OK, 1)
    with pytest.raises(ValueError, match="n_lambda"):
        cartoonist.elbo(_never, SCH, X_OK, 8.0)


# -- one bad argument → one ValueError naming it, before the score is evaluated ------------------
_G = SCH.grid(10)
_KW = {  # entry point -> (callable(**overrides), the keyword arguments it accepts)
    "sample_sde": lambda **k: cartoonist.sample_sde(_never, SCH, X_OK, **{"steps": 10, **k}),
    "sample_ode": lambda **k: cartoonist.sample_ode(_never, SCH, X_OK, **{"steps": 10, **k}),
    "ode_log_prob": lambda **k: cartoonist.ode_log_prob(_never, SCH, X_OK, **{"steps": 10, **k}),
    "ode_log_prob_along": lambda **k: cartoonist.ode_log_prob_along(
        _never, SCH, X_OK, **{"steps": 10, **k}
    ),
    "hd_sample": lambda **k: cartoonist.hd_sample(
        _never, SCH, X_OK, **{"steps": 10, "lambda_threshold": 0.0, "track_logp": True, **k}
    ),
    "hd_ode": lambda **k: cartoonist.hd_ode(
        _never, SCH, X_OK, **{"steps": 10, "lambda_start": -8.0, "track_logp": True, **k}
    ),
    "track_mode": lambda **k: cartoonist.track_mode(
        _never, SCH, X_OK, **{"steps": 10, "lambda_t": 0.0, **k}
    ),
    "newton_mode": lambda **k: cartoonist.newton_mode(_never, SCH, X_OK, **{"lambda_t": 0.0, **k}),
    "sample_mode_tracking": lambda **k: cartoonist.sample_mode_tracking(
        _never, SCH, X_OK, **{"steps": 10, **k}
    ),
    "elbo": lambda **k: cartoonist.elbo(_never, SCH, X_OK, **{"n_lambda": 8, **k}),
    "forward_sde_log_prob": lambda **k: cartoonist.forward_sde_log_prob(
        _never, SCH, X_OK, **{"steps": 10, **k}
    ),
    "sample_prior": lambda **k: SCH.sample_prior((4, 3), **k),
}
_BAD = {  # argument -> (bad value, the entry points that take it)
    "noise": (cartoonist.Keys(0, [0, 1]), set(_KW) - {"newton_mode"}),
    "steps": (
        0,
        {
            "sample_sde",
            "sample_ode",
            "ode_log_prob",
            "ode_log_prob_along",
            "hd_sample",
            "hd_ode",
            "track_mode",
            "sample_mode_tracking",
            "forward_sde_log_prob",
        },
    ),
    "grid": (
        _G.flip(0)[:1],
        {
            "sample_sde",
            "sample_ode",
            "ode_log_prob",
            "ode_log_prob_along",
            "hd_sample",
            "hd_ode",
            "track_mode",
            "forward_sde_log_prob",
        },
    ),
    "method": (
        "bogus",
        {
            "sample_ode",
            "ode_log_prob",
            "ode_log_prob_along",
            "hd_sample",
            "hd_ode",
            "track_mode",
            "sample_mode_tracking",
        },
    ),
    "divergence": (
        "bogus",
        {
            "sample_ode",
            "ode_log_prob",
            "ode_log_prob_along",
            "hd_sample",
            "hd_ode",
            "forward_sde_log_prob",
        },
    ),
    "probes": (
        0,
        {
            "sample_ode",
            "ode_log_prob",
            "ode_log_prob_along",
            "hd_sample",
            "hd_ode",
            "forward_sde_log_prob",
            "elbo",
        },
    ),
    "backend": (
        "sideways",
        {
            "sample_ode",
            "ode_log_prob",
            "ode_log_prob_along",
            "hd_sample",
            "hd_ode",
            "forward_sde_log_prob",
        },
    ),
    "logp_init": (
        torch.zeros(3, dtype=DT),
        {"sample_sde", "sample_ode", "ode_log_prob_along", "hd_sample", "hd_ode"},
    ),
    "lambda_threshold": (9.0, {"hd_sample"}),
    "lambda_start": (-9.0, {"hd_ode"}),
    "lambda_t": (math.nan, {"track_mode", "newton_mode", "sample_mode_tracking"}),
    "lambda_end": (8.5, {"hd_ode", "track_mode"}),
    "lambda_s": (-1.0, {"newton_mode"}),
    "sde_steps": (-3, {"sample_mode_tracking"}),
    "n_lambda": (1, {"elbo"}),
    "estimator": ("exact", {"elbo"}),
    "proposal": ("uniform", {"elbo"}),
    "solver": ("lu", {"track_mode"}),
    "laplacian_probes": (0, {"track_mode"}),
    "logp_scheme": ("midpoint", {"sample_sde"}),
    "first_stage": ("pf-ode", {"hd_sample"}),
    "max_iter": (0, {"newton_mode"}),
    "start": (torch.zeros(4, 2, dtype=DT), {"newton_mode"}),
    "velocity": ("fast", {"ode_log_prob_along"}),
}
_NAMES = {
    "steps": "steps|sde_steps",
    "sde_steps": "steps",
    "logp_init": "logp_init",
    "grid": "grid",
    "divergence": "divergence method",
    "backend": "divergence backend",
}
_CASES = [(ep, arg) for arg, (_, eps) in _BAD.items() for ep in sorted(eps)]


def test_every_public_entry_point_is_covered():
    public = {
        "sample_sde",
        "sample_ode",
        "ode_log_prob",
        "ode_log_prob_along",
        "hd_ode",
        "hd_sample",
        "track_mode",
        "newton_mode",
        "elbo",
        "forward_sde_log_prob",
        "sample_mode_tracking",
        "sample_prior",
    }
    assert public <= set(_KW) and {ep for ep, _ in _CASES} == set(_KW)


@pytest.mark.parametrize("entry,arg", _CASES)
def test_bad_argument_raises_one_value_error_naming_it(entry, arg):
    value = _BAD[arg][0]
    with pytest.raises(ValueError, match=_NAMES.get(arg, arg)):
        _KW[entry](**{arg: value})


def test_integrate_ode_and_tracking_bias_validate_arguments():
    from cartoonist.diffusion.integrators import integrate_ode

    drift = lambda x, lam: (x, None)  # noqa: E731
    with pytest.raises(ValueError, match="drift"):
        integrate_ode("drift", X_OK, _G)
    with pytest.raises(ValueError, match="x must"):
        integrate_ode(drift, [1.0], _G)
    with pytest.raises(ValueError, match="grid"):
        integrate_ode(drift, X_OK, _G[:1])
    with pytest.raises(ValueError, match="acc"):
        integrate_ode(drift, X_OK, _G, acc=torch.zeros(3, dtype=DT))
    with pytest.raises(ValueError, match="method"):
        integrate_ode(drift, X_OK, _G, method="bogus")
    ok = lambda x, lam: x  # noqa: E731
    with pytest.raises(ValueError, match="score_model"):
        cartoonist.tracking_bias(None, ok, lambda lam: X_OK, SCH)
    with pytest.raises(ValueError, match="sample_marginal"):
        cartoonist.tracking_bias(ok, ok, 3, SCH)
    with pytest.raises(ValueError, match="schedule"):
        cartoonist.tracking_bias(ok, ok, lambda lam: X_OK, "VP")
    with pytest.raises(ValueError, match="n_lambda"):
        cartoonist.tracking_bias(ok, ok, lambda lam: X_OK, SCH, n_lambda=1)


def test_hd_sample_and_track_mode_accept_grid():
    x = X_OK[:, :2]
    grid = SCH.grid(10)
    a = cartoonist.hd_sample(ORACLE2, SCH, x, 10, lambda_threshold=0.0, first_stage="sde")
    b = cartoonist.hd_sample(ORACLE2, SCH, x, grid=grid, lambda_threshold=0.0, first_stage="sde")
    # the grids agree up to linspace round-off
    torch.testing.assert_close(a.x, b.x, rtol=1e-12, atol=1e-12)
    assert a.info["steps"] == b.info["steps"] == (5, 5)
    with pytest.raises(ValueError, match="lambda_threshold"):
        cartoonist.hd_sample(ORACLE2, SCH, x, grid=grid, lambda_threshold=0.5)
    m1 = cartoonist.track_mode(ORACLE2, SCH, x, 8, lambda_t=0.0, method="euler")
    m2 = cartoonist.track_mode(ORACLE2, SCH, x, grid=SCH.grid(8, 0.0), method="euler")
    assert torch.equal(m1.x, m2.x)
    h1 = cartoonist.hd_ode(ORACLE2, SCH, x, 8, lambda_start=0.0)
    h2 = cartoonist.hd_ode(ORACLE2, SCH, x, grid=SCH.grid(8, 0.0))
    assert torch.equal(h1.x, h2.x)


def test_keys_stage_reproduces_seed_plus_one():
    k = cartoonist.Keys(4, [3, 1])
    assert k.stage(1) == cartoonist.Keys(5, [3, 1])
    from cartoonist.diffusion.rng import next_stage

    assert next_stage(None) == cartoonist.Keys(1)
    g = torch.Generator()
    assert next_stage(g) is g
