"""method="adaptive": the exponential Adams PECE in λ with the Gaussian control variate (adams)."""

import math

import pytest
import torch

import cartoonist as c
from cartoonist.diffusion.adams import DEFAULT_REFERENCE_VAR, gaussian_reference, step_weights
from cartoonist.diffusion.any_ode import log_density_drift
from cartoonist.diffusion.divergence import FixedProbes
from cartoonist.diffusion.integrators import integrate_ode
from cartoonist.diffusion.score import as_counted
from cartoonist.oracles import GaussianMixture
from tests.helpers.rng import gen

EDM = c.EDM.from_sigmas(0.002, 80.0)
SCHEDULES = {"vp": c.VP(-8.0, 8.0), "edm": EDM, "flow": c.Flow()}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_reference_integral_is_the_antiderivative(name):
    """R′(λ) = r(λ): the closed form added back is the integral of what is subtracted."""
    sch = SCHEDULES[name]
    r, big_r = gaussian_reference(sch, 7, 0.3)
    h = 1e-5
    for lam in torch.linspace(sch.lambda_min + 0.1, sch.lambda_max - 0.1, 9, dtype=torch.float64):
        fd = (big_r(lam + h) - big_r(lam - h)) / (2 * h)
        assert float(fd) == pytest.approx(float(r(lam)), rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_reference_is_the_gaussian_pf_ode_integrand(name):
    """For N(0, c² I) data the Lemma's d log p/dλ along the PF-ODE is r(λ) at every x (sign!)."""
    sch, D, var = SCHEDULES[name], 3, 0.3
    g = GaussianMixture([1.0], torch.zeros(1, D), torch.full((1, D), var), schedule=sch)
    r, _ = gaussian_reference(sch, D, var)
    drift = log_density_drift(as_counted(g), sch, 1.0, True, "exact")
    x = torch.randn(5, D, generator=gen(0), dtype=torch.float64)
    for lam in (sch.lambda_min + 0.5, 0.0, sch.lambda_max - 0.5):
        lam = torch.tensor(lam, dtype=torch.float64)
        _, dl = drift(x, lam)
        assert torch.allclose(dl, r(lam).expand(5), atol=1e-9), (dl, r(lam))


@pytest.mark.parametrize("name", ["vp", "edm"])
def test_adaptive_matches_the_closed_form(gmm2d, name):
    """Exact trace and exact prior: the PF-ODE log p is the mixture's own log-density."""
    sch = SCHEDULES[name]
    g = gmm2d.with_schedule(sch)
    x0 = g.sample_noised(60, sch.lambda_max, gen(1))
    res = c.ode_log_prob(
        g,
        sch,
        x0,
        1,
        method="adaptive",
        divergence="exact",
        rtol=1e-7,
        atol=1e-7,
        prior_log_prob=lambda z: g.log_prob(z, sch.lambda_min),
    )
    err = (res.logp - g.log_prob(x0, sch.lambda_max)).abs().max()
    assert float(err) < 1e-4, float(err)


def _mixture(D=16, K=4, seed=3):
    gnr = gen(seed)
    means = 2.0 * torch.randn(K, D, generator=gnr, dtype=torch.float64)
    var = 0.05 + torch.rand(K, D, generator=gnr, dtype=torch.float64)
    return GaussianMixture(torch.ones(K), means, var, schedule=EDM)


def test_adaptive_agrees_with_torchdiffeq_on_the_same_probe():
    """Hutchinson with one fixed probe: the same integral as dopri5 in λ, to the tolerances."""
    g = _mixture()
    x0 = g.sample_noised(8, EDM.lambda_max, gen(4))
    v = torch.randint(0, 2, x0.shape, generator=gen(5)).to(x0) * 2 - 1

    def run(method, tol):
        return c.ode_log_prob(
            g, EDM, x0, 1, method=method, backend="reverse", rtol=tol, atol=tol,
            noise=FixedProbes.from_tensors([v]),
        ).logp  # fmt: skip

    ref = run("dopri5", 1e-10)
    errs = [float((run("adaptive", tol) - ref).abs().max()) for tol in (1e-3, 1e-5, 1e-7)]
    assert errs[-1] < 1e-4, errs
    assert errs[0] > errs[1] > errs[2], errs  # the error falls with the tolerance


def test_adaptive_sampling_inverts_the_encoding():
    """noise → data with log p tracked from the prior undoes data → noise (both directions)."""
    g = _mixture(D=6, K=3, seed=7)
    x0 = g.sample_noised(10, EDM.lambda_max, gen(8))
    kw = dict(method="adaptive", divergence="exact", rtol=1e-6, atol=1e-6)
    enc = c.ode_log_prob(g, EDM, x0, 1, **kw)
    back = c.sample_ode(g, EDM, enc.latent, 1, track_logp=True, record=True, **kw)
    # Each direction is within ~10 atol of the exact flow (measured: 2e-5 nats), so the round
    # trip agrees to a few 1e-5; a sign error in either direction's log p would be O(10) nats.
    assert torch.allclose(back.x, x0, atol=1e-4)
    assert torch.allclose(back.logp, enc.logp, atol=2e-4)
    traj = back.trajectory
    assert traj.lam[0] == EDM.lambda_min and traj.lam[-1] == pytest.approx(EDM.lambda_max)
    assert bool((traj.lam[1:] > traj.lam[:-1]).all())
    assert torch.allclose(traj.logp[-1], back.logp, atol=1e-12)
    assert torch.allclose(traj.x[-1], back.x)


def test_adaptive_hd_ode_tracks_the_exact_log_density(gmm2d, vp8):
    """HD-ODE (η = 2, Remark 1): the tracked log p ends at the exact marginal density."""
    x_t = gmm2d.sample_noised(20, 0.0, gen(9))
    lp0 = gmm2d.log_prob(x_t, 0.0)
    res = c.hd_ode(
        gmm2d, vp8, x_t, 1, lambda_start=0.0, track_logp=True, logp_init=lp0, method="adaptive",
        divergence="exact",
    )  # default tolerances 1e-5  # fmt: skip
    exact = gmm2d.log_prob(res.x, vp8.lambda_max)
    assert float((res.logp - exact).abs().max()) < 1e-3


def test_adaptive_is_not_a_generic_integrator_method(vp8):
    drift = lambda x, lam: (x, None)  # noqa: E731
    with pytest.raises(ValueError, match="needs the schedule"):
        integrate_ode(drift, torch.zeros(2, 1), torch.tensor([0.0, 1.0]), method="adaptive")
    with pytest.raises(ValueError, match="method"):
        c.sample_mode_tracking(
            lambda x, lam: -x, vp8, torch.zeros(2, 2), lambda_t=0.0, method="adaptive"
        )


def test_reference_data_leave_nothing_to_integrate():
    """Data equal to the reference: nothing is left, Δ log p = R(λ_min) − R(λ_max) exactly."""
    D, var = 8, DEFAULT_REFERENCE_VAR
    g = GaussianMixture([1.0], torch.zeros(1, D), torch.full((1, D), var), schedule=EDM)
    x0 = g.sample_noised(6, EDM.lambda_max, gen(10))
    res = c.ode_log_prob(
        g, EDM, x0, 1, method="adaptive", divergence="exact", rtol=1e-3, atol=1e-3
    )  # fmt: skip
    _, big_r = gaussian_reference(EDM, D, var)
    lo, hi = (torch.tensor(v, dtype=torch.float64) for v in (EDM.lambda_min, EDM.lambda_max))
    delta = EDM.prior_log_prob(res.latent).double() - res.logp
    assert torch.allclose(delta, (big_r(lo) - big_r(hi)).expand(6), atol=1e-8)
    # and the encoding itself is accurate to the tolerance (the prior term carries its error)
    assert float((res.logp - g.log_prob(x0, EDM.lambda_max)).abs().max()) < 0.05


def _exp_moment(m: int, a: float, b: float) -> float:
    """∫_a^b ½ e^{−(b−τ)/2} τ^m dτ in closed form (integration by parts)."""
    f = 2.0 * (1.0 - math.exp(0.5 * (a - b)))
    for j in range(1, m + 1):
        f = 2.0 * (b**j - math.exp(0.5 * (a - b)) * a**j) - 2.0 * j * f
    return 0.5 * f


@pytest.mark.parametrize("a, h", [(3.0, -0.3), (3.0, -3.0), (-1.0, 0.7), (12.0, 2.5)])
def test_step_weights_integrate_polynomials_exactly(a, h):
    """Each weight set reproduces ∫ K τ^m for every degree its nodes interpolate (both kernels)."""
    b = a + h
    nodes = [a - 1.3 * h * i for i in range(4)][::-1]  # past nodes, oldest first, newest = a
    wp, wc, wq, wl = step_weights(nodes, a, b)
    sets = [
        (wp, nodes, True),
        (wc, nodes + [b], True),
        (wq, nodes + [b], False),
        (wl, nodes[1:] + [b], False),
    ]
    for w, nd, expo in sets:
        for m in range(len(nd)):
            got = sum(wj * t**m for wj, t in zip(w, nd))
            want = _exp_moment(m, a, b) if expo else (b ** (m + 1) - a ** (m + 1)) / (m + 1)
            assert got == pytest.approx(want, rel=1e-10, abs=1e-10), (m, expo, got, want)


def test_adaptive_error_falls_with_the_tolerance_off_the_reference():
    """Gaussian data with a spectrum unlike the control variate's: a smooth, non-zero remainder.

    The closed-form answer is the data's own log-density. The tolerance is per step, but the
    steps' errors are estimated conservatively: measured max errors 0.28, 0.48 and 0.75 atol at
    atol = 1e-2, 1e-4, 1e-6; the bound is 2 atol at each.
    """
    D = 6
    var = torch.tensor([0.01, 0.05, 0.3, 1.0, 2.0, 4.0], dtype=torch.float64)
    g = GaussianMixture(
        [1.0], torch.full((1, D), 0.5, dtype=torch.float64), var[None], schedule=EDM
    )
    x0 = g.sample_noised(12, EDM.lambda_max, gen(11))
    exact = g.log_prob(x0, EDM.lambda_max)
    errs = []
    for tol in (1e-2, 1e-4, 1e-6):
        res = c.ode_log_prob(
            g, EDM, x0, 1, method="adaptive", divergence="exact", rtol=tol, atol=tol,
            prior_log_prob=lambda z: g.log_prob(z, EDM.lambda_min),
        )  # fmt: skip
        errs.append(float((res.logp - exact).abs().max()))
        assert errs[-1] < 2 * tol, (tol, errs)
    assert errs[0] > errs[1] > errs[2], errs


def test_adaptive_with_a_callable_velocity_is_the_same_solve(gmm2d, vp8):
    """A velocity given as a function of (x, λ, s) runs the same steps as its η (here η = 2)."""
    x_t = gmm2d.sample_noised(7, 0.0, gen(12))
    lp0 = gmm2d.log_prob(x_t, 0.0)

    def hd(x, lam, s):
        f, g2 = (v.reshape(-1, 1).to(x) for v in (vp8.f_tilde(lam), vp8.g2(lam)))
        return f * x + g2 * s

    grid = torch.tensor([0.0, vp8.lambda_max])
    kw = dict(
        grid=grid, logp_init=lp0, method="adaptive", divergence="exact", rtol=1e-4, atol=1e-4
    )
    a = c.ode_log_prob_along(gmm2d, vp8, x_t, velocity=2.0, **kw)
    b = c.ode_log_prob_along(gmm2d, vp8, x_t, velocity=hd, **kw)
    assert a.nfe == b.nfe
    assert torch.allclose(a.x, b.x, atol=1e-10) and torch.allclose(a.logp, b.logp, atol=1e-8)
    exact = gmm2d.log_prob(a.x, vp8.lambda_max)
    assert float((a.logp - exact).abs().max()) < 1e-3
