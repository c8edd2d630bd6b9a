"""Unit tests of the noise schedules in log-SNR time (`cartoonist.diffusion.schedules`).

Checks the defining relations α²/σ² = e^λ, f̃ = d log α/dλ, g̃² = σ², the per-family identities
(VP: α² + σ² = 1, Flow: α + σ = 1, VE: α = 1), the t-space identity g²(t) = −(dλ/dt) σ² behind the
λ-parametrisation, the time maps, EDM's ρ-grid (Karras et al. 2022, eq. 5), uniform grids with
their validation, and the prior (density and keyed sampling).
"""

from __future__ import annotations

import math

import pytest
import torch

import cartoonist
from cartoonist import EDM, VE, VP, Flow

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)

DT = torch.float64


SCHEDULES = {
    "VP": VP(-8.0, 8.0),
    "VE": VE(),
    "EDM": EDM.from_sigmas(0.002, 80.0),
    "Flow": Flow(-8.0, 8.0),
}


def _lams(sch, n: int = 41) -> torch.Tensor:
    return torch.linspace(sch.lambda_min, sch.lambda_max, n, dtype=DT)


@pytest.fixture(params=list(SCHEDULES), ids=list(SCHEDULES))
def sch(request):
    return SCHEDULES[request.param]


# -- defining relations --------------------------------------------------------------------------
def test_snr_is_exp_lambda(sch):
    lam = _lams(sch)
    a, s = sch.alpha(lam), sch.sigma(lam)
    assert a.dtype == DT and s.dtype == DT
    torch.testing.assert_close(a**2 / s**2, torch.exp(lam), rtol=1e-12, atol=0)


def test_f_tilde_is_dlogalpha_dlambda(sch):
    lam = _lams(sch)
    h = 1e-5
    num = (torch.log(sch.alpha(lam + h)) - torch.log(sch.alpha(lam - h))) / (2 * h)
    torch.testing.assert_close(sch.f_tilde(lam), num, rtol=0, atol=1e-7)


def test_g2_is_sigma_squared(sch):
    lam = _lams(sch)
    torch.testing.assert_close(sch.g2(lam), sch.sigma(lam) ** 2, rtol=1e-13, atol=0)


def test_float_input_broadcasts(sch):
    lam = 0.5 * (sch.lambda_min + sch.lambda_max)
    ref = sch.alpha(torch.tensor(lam, dtype=DT))
    assert abs(float(sch.alpha(lam)) - float(ref)) < 1e-6


def test_vp_variance_preserving():
    sch = SCHEDULES["VP"]
    lam = _lams(sch)
    torch.testing.assert_close(
        sch.alpha(lam) ** 2 + sch.sigma(lam) ** 2, torch.ones_like(lam), rtol=0, atol=1e-14
    )
    torch.testing.assert_close(sch.f_tilde(lam), 0.5 * torch.sigmoid(-lam), rtol=1e-14, atol=0)


def test_flow_linear_path():
    sch = SCHEDULES["Flow"]
    lam = _lams(sch)
    torch.testing.assert_close(
        sch.alpha(lam) + sch.sigma(lam), torch.ones_like(lam), rtol=0, atol=1e-14
    )


@pytest.mark.parametrize("name", ["VE", "EDM"])
def test_ve_alpha_is_one(name):
    sch = SCHEDULES[name]
    lam = _lams(sch)
    torch.testing.assert_close(sch.alpha(lam), torch.ones_like(lam), rtol=0, atol=0)
    torch.testing.assert_close(sch.f_tilde(lam), torch.zeros_like(lam), rtol=0, atol=0)
    torch.testing.assert_close(sch.sigma(lam), torch.exp(-0.5 * lam), rtol=1e-14, atol=0)


# -- the identity behind the λ-parametrisation ---------------------------------------------------
@pytest.mark.parametrize(
    "name,t_lo,t_hi",
    [
        ("VP", 0.02, 0.98),  # default linear time map
        ("Flow", 0.02, 0.98),  # t = σ
        ("EDM", 0.01, 60.0),  # t = σ
    ],
)
def test_t_space_diffusion_identity(name, t_lo, t_hi):
    """g²(t) = dσ²/dt − 2 f(t) σ² with f = d log α/dt equals −(dλ/dt) σ²."""
    sch = SCHEDULES[name]
    t = torch.linspace(t_lo, t_hi, 25, dtype=DT)
    h = 1e-6 * t.clamp(min=1.0)

    def sig2(tt):
        return sch.sigma(sch.lambda_of_t(tt)) ** 2

    def log_alpha(tt):
        return torch.log(sch.alpha(sch.lambda_of_t(tt)))

    dsig2 = (sig2(t + h) - sig2(t - h)) / (2 * h)
    f = (log_alpha(t + h) - log_alpha(t - h)) / (2 * h)
    dlam = (sch.lambda_of_t(t + h) - sch.lambda_of_t(t - h)) / (2 * h)
    s2 = sig2(t)
    g2_t = dsig2 - 2 * f * s2
    torch.testing.assert_close(g2_t, -dlam * s2, rtol=1e-6, atol=1e-8)
    # and in λ-time this is g̃² = σ² (g²(t) dt = −σ² dλ)
    torch.testing.assert_close(g2_t / (-dlam), sch.g2(sch.lambda_of_t(t)), rtol=1e-6, atol=1e-8)


def test_vp_identity_with_exact_derivatives():
    """The same identity with λ'(t) and the VP closed forms (no finite differences)."""
    sch = SCHEDULES["VP"]
    t = torch.linspace(0.0, 1.0, 11, dtype=DT)
    lam = sch.lambda_of_t(t)
    dlam = sch.lambda_min - sch.lambda_max  # linear map
    s2 = sch.g2(lam)
    dsig2_dt = -s2 * (1 - s2) * dlam  # d sigmoid(−λ)/dλ = −σ²α²
    f_t = sch.f_tilde(lam) * dlam
    torch.testing.assert_close(dsig2_dt - 2 * f_t * s2, -dlam * s2, rtol=1e-12, atol=1e-15)


# -- time maps -----------------------------------------------------------------------------------
def test_vp_time_map_inverse():
    sch = SCHEDULES["VP"]
    t = torch.linspace(0.0, 1.0, 21, dtype=DT)
    lam = sch.lambda_of_t(t)
    assert float(lam[0]) == sch.lambda_max and float(lam[-1]) == sch.lambda_min
    torch.testing.assert_close(sch.t_of_lambda(lam), t, rtol=0, atol=1e-14)
    lam2 = _lams(sch)
    torch.testing.assert_close(sch.lambda_of_t(sch.t_of_lambda(lam2)), lam2, rtol=0, atol=1e-12)


def test_edm_time_is_sigma():
    sch = SCHEDULES["EDM"]
    lam = _lams(sch)
    t = sch.t_of_lambda(lam)
    torch.testing.assert_close(t, sch.sigma(lam), rtol=1e-14, atol=0)
    torch.testing.assert_close(sch.lambda_of_t(t), lam, rtol=0, atol=1e-12)
    sig = torch.tensor([sch.sigma_min, 1.0, sch.sigma_max], dtype=DT)
    torch.testing.assert_close(sch.lambda_of_t(sig), -2 * torch.log(sig), rtol=0, atol=0)
    assert math.isclose(sch.sigma_min, 0.002, rel_tol=1e-14)
    assert math.isclose(sch.sigma_max, 80.0, rel_tol=1e-14)
    assert math.isclose(sch.lambda_min, -2 * math.log(80.0), rel_tol=1e-14)
    assert math.isclose(sch.lambda_max, -2 * math.log(0.002), rel_tol=1e-14)


def test_flow_time_is_sigma():
    sch = SCHEDULES["Flow"]
    lam = _lams(sch)
    t = sch.t_of_lambda(lam)
    torch.testing.assert_close(t, torch.sigmoid(-lam / 2), rtol=1e-14, atol=0)
    torch.testing.assert_close(t, sch.sigma(lam), rtol=1e-14, atol=0)
    torch.testing.assert_close(sch.lambda_of_t(t), lam, rtol=0, atol=1e-11)
    tt = torch.linspace(0.01, 0.99, 17, dtype=DT)
    torch.testing.assert_close(sch.t_of_lambda(sch.lambda_of_t(tt)), tt, rtol=0, atol=1e-14)


def test_edm_from_sigmas_rejects_bad_range():
    with pytest.raises(ValueError, match="sigma_min"):
        EDM.from_sigmas(80.0, 0.002)
    with pytest.raises(ValueError, match="sigma_min"):
        EDM.from_sigmas(0.0, 80.0)


# -- grids ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [1, 2, 18, 40])
def test_edm_rho_grid(steps):
    sch = SCHEDULES["EDM"]
    lam = sch.rho_grid(steps)
    assert lam.dtype == DT and lam.shape == (steps + 1,)
    assert float(lam[0]) == sch.lambda_min and float(lam[-1]) == sch.lambda_max
    assert bool((lam[1:] > lam[:-1]).all())
    rho, smin, smax = sch.rho, 0.002, 80.0
    i = torch.arange(steps + 1, dtype=DT)
    sig = (smax ** (1 / rho) + i / steps * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    torch.testing.assert_close(lam, -2 * torch.log(sig), rtol=0, atol=1e-10)
    torch.testing.assert_close(sch.sigma(lam), sig, rtol=1e-10, atol=0)


def test_edm_rho_grid_other_rho():
    sch = EDM.from_sigmas(0.01, 10.0, rho=3.0)
    lam = sch.rho_grid(5)
    i = torch.arange(6, dtype=DT)
    sig = (10.0 ** (1 / 3) + i / 5 * (0.01 ** (1 / 3) - 10.0 ** (1 / 3))) ** 3
    torch.testing.assert_close(sch.sigma(lam), sig, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["VP", "Flow"])
def test_uniform_grid(name):
    sch = SCHEDULES[name]
    g = sch.grid(16)
    assert g.dtype == DT and g.shape == (17,)
    assert float(g[0]) == sch.lambda_min and float(g[-1]) == sch.lambda_max
    d = g[1:] - g[:-1]
    torch.testing.assert_close(
        d, torch.full_like(d, (sch.lambda_max - sch.lambda_min) / 16), rtol=1e-12, atol=0
    )


def test_grid_custom_and_decreasing_endpoints():
    sch = SCHEDULES["VP"]
    g = sch.grid(4, -2.0, 6.0)
    torch.testing.assert_close(g, torch.tensor([-2.0, 0.0, 2.0, 4.0, 6.0], dtype=DT))
    g = sch.grid(3, sch.lambda_max, sch.lambda_min)  # encoding direction
    assert g.shape == (4,) and float(g[0]) == 8.0 and float(g[-1]) == -8.0
    assert bool((g[1:] < g[:-1]).all())


@pytest.mark.parametrize("steps", [0, -1, 2.5, True, None, "4"])
def test_grid_rejects_bad_steps(steps):
    with pytest.raises(ValueError, match="steps"):
        SCHEDULES["VP"].grid(steps)


@pytest.mark.parametrize("steps", [0, -3, 1.5, False])
def test_rho_grid_rejects_bad_steps(steps):
    with pytest.raises(ValueError, match="steps"):
        SCHEDULES["EDM"].rho_grid(steps)


@pytest.mark.parametrize("a,b", [(-9.0, 8.0), (-8.0, 8.5), (math.nan, 0.0), (0.0, math.inf)])
def test_grid_rejects_endpoints_outside_range(a, b):
    with pytest.raises(ValueError, match="grid endpoint"):
        SCHEDULES["VP"].grid(4, a, b)


@pytest.mark.parametrize("cls", [VP, VE, Flow])
@pytest.mark.parametrize("lo,hi", [(1.0, 1.0), (2.0, -2.0), (-math.inf, 1.0), (0.0, math.nan)])
def test_schedule_rejects_bad_range(cls, lo, hi):
    with pytest.raises(ValueError, match="lambda_m"):
        cls(lo, hi)


def test_check_lambda():
    sch = SCHEDULES["VP"]
    sch.check_lambda(torch.tensor([-8.0, 0.0, 8.0], dtype=DT))
    with pytest.raises(ValueError, match="my_lam"):
        sch.check_lambda(torch.tensor([-8.5], dtype=DT), "my_lam")


# -- prior ---------------------------------------------------------------------------------------
def _normal(std: float) -> torch.distributions.Normal:
    # float64 parameters: Normal(0.0, std) with Python floats would compute in float32
    return torch.distributions.Normal(torch.tensor(0.0, dtype=DT), torch.tensor(std, dtype=DT))


def test_prior_log_prob_matches_torch_normal(sch):
    g = torch.Generator().manual_seed(0)
    x = 3.0 * torch.randn(6, 2, 3, dtype=DT, generator=g)
    std = sch.prior_std
    assert math.isclose(
        std, float(sch.sigma(torch.tensor(sch.lambda_min, dtype=DT))), rel_tol=1e-15
    )
    ref = _normal(std).log_prob(x).reshape(6, -1).sum(1)
    got = sch.prior_log_prob(x)
    assert got.shape == (6,) and got.dtype == DT
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-10)


def test_prior_log_prob_float32_input_is_float64():
    sch = SCHEDULES["VP"]
    x = torch.randn(4, 5)
    got = sch.prior_log_prob(x)
    assert got.dtype == DT
    ref = _normal(sch.prior_std).log_prob(x.double()).sum(1)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-10)


def test_sample_prior_statistics(sch):
    x = sch.sample_prior((20000, 2), noise=cartoonist.Keys(5), dtype=DT)
    assert x.shape == (20000, 2) and x.dtype == DT
    std = sch.prior_std
    n = x.numel()
    # mean: 5 standard errors; std: relative SE ≈ 1/sqrt(2n)
    assert abs(float(x.mean())) < 5 * std / math.sqrt(n)
    assert abs(float(x.std()) / std - 1) < 5 / math.sqrt(2 * n)


def test_sample_prior_is_keyed_per_sample():
    sch = SCHEDULES["VP"]
    full = sch.sample_prior((5, 3), noise=cartoonist.Keys(1), dtype=DT)
    for i in range(5):
        one = sch.sample_prior((1, 3), noise=cartoonist.Keys(1, [i]), dtype=DT)
        assert torch.equal(one[0], full[i])
    # any order / subset of ids gives the same rows
    sub = sch.sample_prior((2, 3), noise=cartoonist.Keys(1, [4, 1]), dtype=DT)
    assert torch.equal(sub, full[[4, 1]])
    # another seed differs; the same seed repeats
    assert not torch.equal(sch.sample_prior((5, 3), noise=cartoonist.Keys(2), dtype=DT), full)
    assert torch.equal(sch.sample_prior((5, 3), noise=cartoonist.Keys(1), dtype=DT), full)
    # float32 draws come from the same float64 stream
    f32 = sch.sample_prior((5, 3), noise=cartoonist.Keys(1))
    assert f32.dtype == torch.float32
    torch.testing.assert_close(f32, full.float(), rtol=1e-6, atol=1e-7)


def test_sample_prior_event_shape_and_ids_length():
    sch = SCHEDULES["Flow"]
    x = sch.sample_prior((3, 2, 4), noise=cartoonist.Keys(0))
    assert x.shape == (3, 2, 4)
    with pytest.raises(ValueError, match="sample_ids"):
        sch.sample_prior(
            (3, 2),
            noise=cartoonist.Keys(0, [0, 1]),
        )


def test_public_exports():
    for name in ["VP", "VE", "EDM", "Flow", "Schedule"]:
        assert hasattr(cartoonist, name)


def test_rho_grid_drives_the_samplers():
    """An explicit EDM ρ-grid is accepted by the samplers (increasing for sampling, flipped for
    encoding), and PF-ODE encoding on it converges to the exact log-density."""
    sch = SCHEDULES["EDM"]
    gmm = cartoonist.GaussianMixture(
        [0.3, 0.7], [[-1.0, 0.5], [1.5, -0.5]], [[0.3, 0.8], [0.6, 0.2]], schedule=sch
    )
    x = sch.sample_prior((3, 2), noise=cartoonist.Keys(0), dtype=DT)
    res = cartoonist.sample_sde(gmm, sch, x, grid=sch.rho_grid(30))
    assert res.nfe == 30 and torch.isfinite(res.logp).all()
    x0 = gmm.sample(5, torch.Generator().manual_seed(0))
    ref = gmm.log_prob(x0, sch.lambda_max)
    errs = []
    for n in (20, 40):
        res = cartoonist.ode_log_prob(
            gmm, sch, x0, grid=sch.rho_grid(n).flip(0), divergence="exact"
        )
        errs.append(float((res.logp - ref).abs().max()))
    assert errs[1] < 0.05 and errs[1] < errs[0] / 2.5, errs
