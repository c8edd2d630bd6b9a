"""The corrected Theorem 1 discretisation (`logp_scheme="corrected"`): its local-error formula, its
free estimator, and its 1/N² bias against the exact oracle."""

import math

import numpy as np
import pytest
import torch

import cartoonist as c
from cartoonist.diffusion.sde_tracking import schedule_derivatives
from cartoonist.oracles import GaussianMixture
from tests.helpers.rng import gen


def _gauss_hermite_2d(n=40):
    z, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / math.sqrt(2 * math.pi)
    zz = torch.tensor(np.stack(np.meshgrid(z, z, indexing="ij"), -1).reshape(-1, 2))
    ww = torch.tensor(np.outer(w, w).reshape(-1))
    return zz, ww  # E[φ(ε)] = Σ ww φ(zz) for ε ~ N(0, I₂), exact for polynomials of degree < 2n


def _one_step(gmm, sch, x0, lam, h):
    """Exact expectations over ε of one Euler–Maruyama step's r-error and of its correction."""
    eps, w = _gauss_hermite_2d()
    co = schedule_derivatives(sch, torch.tensor([lam, lam + h], dtype=torch.float64))
    f, g2 = float(co["f"][0]), float(co["g2"][0])
    x = x0.expand(eps.shape[0], 2)
    lam0 = torch.full((x.shape[0],), lam, dtype=torch.float64)
    s = gmm.score(x, lam0)
    n = math.sqrt(g2 * h) * eps
    x1 = x + (f * x + g2 * s) * h + n
    s1 = gmm.score(x1, lam0 + h)
    dr = (-2 * f + 0.5 * g2 * (s * s).sum(1)) * h + (s * n).sum(1)
    dl = gmm.log_prob(x1, lam + h) - gmm.log_prob(x, lam)
    err = float((w * (dr - dl)).sum())
    # The corrected scheme's C_k with coefficients averaged over the step (as in sample_sde).
    av = {k: float(v.mean()) for k, v in co.items()}
    a_hh = 0.5 * (co["f"] + 0.5 * co["dlog_g2"])
    a_ss = 0.5 * co["g2"] * (co["f"] + 0.5 * co["dlog_g2"])
    a_xs = 0.5 * (co["f"] ** 2 + co["df"])
    ds = s1 - s
    cor = (
        0.25 * av["g2"] * h * (ds * ds).sum(1)
        + float(a_hh.mean()) * h * (ds * n).sum(1)
        + h * h * float(a_ss.mean()) * 0.5 * ((s * s).sum(1) + (s1 * s1).sum(1))
        + h * h * float(a_xs.mean()) * 0.5 * ((x * s).sum(1) + (x1 * s1).sum(1))
        + h * h * 0.5 * 2 * av["df"]
    )
    return err, float((w * cor).sum())


def _formula(gmm, sch, x0, lam):
    """h⁻² × the leading expected local error of Euler–Maruyama (module docstring)."""
    co = schedule_derivatives(sch, torch.tensor([lam], dtype=torch.float64))
    f, g2, df, dlg = (float(co[k][0]) for k in ("f", "g2", "df", "dlog_g2"))
    lam_b = torch.tensor([lam], dtype=torch.float64)
    s, H = gmm.score(x0, lam_b)[0], gmm.hessian(x0, lam_b)[0]
    L = float(torch.diagonal(H).sum())
    return (
        0.25 * g2**2 * float((H * H).sum())
        + 0.5 * (f * g2 + 0.5 * g2 * dlg * 1.0) * (L + float(s @ s))
        + 0.5 * (f * f + df) * float(x0[0] @ s)
        + 0.5 * 2 * df
    )


@pytest.mark.parametrize("sched", ["vp", "ve"])
@pytest.mark.parametrize("point", [(-1.0, 0.3, 0.0), (0.8, 0.9, 3.0), (0.2, -1.6, -2.0)])
def test_local_error_formula_and_its_free_estimate(gmm2d, sched, point):
    """On a non-Gaussian mixture: E[Δr − Δlog p]/h² → the derived formula as h → 0 (linearly), and
    the correction built from s_k and s_{k+1} has the same leading term."""
    sch = c.VP(-8.0, 8.0) if sched == "vp" else c.VE(-8.0, 8.0)
    gmm = gmm2d.with_schedule(sch)
    x0 = torch.tensor([point[:2]], dtype=torch.float64)
    lam = point[2]
    q = _formula(gmm, sch, x0, lam)
    gaps, cgaps = [], []
    for h in (4e-3, 2e-3, 1e-3):
        err, cor = _one_step(gmm, sch, x0, lam, h)
        gaps.append(abs(err / h**2 - q))
        cgaps.append(abs(cor / h**2 - q))
    scale = max(abs(q), 1.0)
    # Remainders are O(h): halving h halves them; at h = 1e-3 they are a few % of the term.
    assert gaps[2] < 0.05 * scale, (q, gaps)
    assert cgaps[2] < 0.05 * scale, (q, cgaps)
    assert gaps[2] < 0.7 * gaps[0] and cgaps[2] < 0.7 * cgaps[0]


def test_formula_sign_is_checked():
    """The same test detects a flipped ‖H‖²_F term (the dominant one in high D)."""
    D = 2
    sch = c.VP(-8.0, 8.0)
    g = GaussianMixture(
        [1.0],
        torch.zeros(1, D, dtype=torch.float64),
        torch.tensor([[1e-2, 1.0]], dtype=torch.float64),
        sch,
    )
    x0 = torch.tensor([[0.05, 0.4]], dtype=torch.float64)
    err, _ = _one_step(g, sch, x0, 2.0, 1e-3)
    lam_b = torch.tensor([2.0], dtype=torch.float64)
    H = g.hessian(x0, lam_b)[0]
    g2 = float(sch.g2(2.0))
    q = _formula(g, sch, x0, 2.0)
    q_flipped = q - 0.5 * g2**2 * float((H * H).sum())
    assert abs(err / 1e-6 - q) < 0.05 * abs(q) < abs(err / 1e-6 - q_flipped)


def _bias(gmm, sch, steps, scheme, n, seed=0):
    xT = gmm.sample_noised(n, sch.lambda_min, gen(seed))
    res = c.sample_sde(
        gmm,
        sch,
        xT,
        steps,
        logp_init=gmm.log_prob(xT, sch.lambda_min),
        logp_scheme=scheme,
        noise=gen(seed + 100),
    )
    e = res.logp - gmm.log_prob(res.x, sch.lambda_max)
    return float(e.mean()), float(e.std() / math.sqrt(n)), res


@pytest.mark.parametrize("sched", ["vp", "ve", "edm"])
def test_corrected_removes_the_bias_on_a_2d_mixture(gmm2d, sched):
    sch = {"vp": c.VP(-8.0, 8.0), "ve": c.VE(-8.0, 8.0), "edm": c.EDM.from_sigmas(0.002, 80.0)}[
        sched
    ]
    gmm = gmm2d.with_schedule(sch)
    b_em, se, r_em = _bias(gmm, sch, 100, "euler", 4000)
    b_co, se, r_co = _bias(gmm, sch, 100, "corrected", 4000)
    assert torch.equal(r_em.x, r_co.x) and r_em.nfe == r_co.nfe == 100  # same path, same cost
    assert b_em > 0.25  # Euler–Maruyama: ≈ +0.3 (VP), +0.7 (VE), +1.0 (EDM)
    assert abs(b_co) < b_em / 3, (b_em, b_co, se)  # measured −0.07 (VP), −0.20, −0.39
    b4, se4, _ = _bias(gmm, sch, 400, "corrected", 4000)
    assert abs(b4) < 3 * se4 + 0.02, (b4, se4)  # second order: ≈ 16× smaller at 4× the steps


def _gaussian_3072():
    D = 3072
    var = torch.logspace(0, -4, D, dtype=torch.float64)
    sch = c.VP(-10.0, 10.0)
    return GaussianMixture([1.0], torch.zeros(1, D, dtype=torch.float64), var[None], sch), sch


def test_corrected_is_10x_better_in_3072d_at_256_steps():
    """Digest §3.1's stress test: Euler–Maruyama is off by ≈ +566 nats at 256 steps."""
    g, sch = _gaussian_3072()
    b_em, se, _ = _bias(g, sch, 256, "euler", 48)
    b_co, se, _ = _bias(g, sch, 256, "corrected", 48)
    assert b_em > 450
    assert abs(b_co) + 3 * se < b_em / 10, (b_em, b_co, se)


@pytest.mark.slow
def test_corrected_bias_falls_as_one_over_n_squared_in_3072d():
    g, sch = _gaussian_3072()
    b256, se256, _ = _bias(g, sch, 256, "corrected", 192, seed=1)
    b1024, se1024, _ = _bias(g, sch, 1024, "corrected", 192, seed=1)
    # Euler–Maruyama's +138 nats at 1024 steps (per-sample sd ≈ 20): 48 samples put a tenth of
    # it at 13.8 ± 0.3, far above |b1024| + 3 se (≈ 6 measured); the corrected runs need 192.
    e1024, _, _ = _bias(g, sch, 1024, "euler", 48, seed=1)
    assert abs(b1024) + 3 * se1024 < e1024 / 10, (e1024, b1024, se1024)
    assert abs(b1024) < abs(b256) / 6, (b256, b1024)  # 1/N² predicts /16; noise ±1.5 at 1024


def test_unknown_scheme_is_rejected(gmm2d, vp8):
    with pytest.raises(ValueError, match="logp_scheme"):
        c.sample_sde(gmm2d, vp8, torch.zeros(2, 2, dtype=torch.float64), 4, logp_scheme="rk4")


def test_schedule_derivatives_match_closed_forms():
    lam = torch.linspace(-9, 9, 7, dtype=torch.float64)
    co = schedule_derivatives(c.VP(-10.0, 10.0), lam)
    a2, s2 = torch.sigmoid(lam), torch.sigmoid(-lam)
    assert torch.allclose(co["df"], -0.5 * a2 * s2, atol=1e-8)  # f̃ = ½σ², σ²′ = −α²σ²
    assert torch.allclose(co["dlog_g2"], -a2, atol=1e-8)
    ve = schedule_derivatives(c.VE(-10.0, 10.0), lam)
    assert torch.all(ve["df"] == 0) and torch.allclose(
        ve["dlog_g2"], -torch.ones(7, dtype=torch.float64)
    )


@pytest.mark.parametrize("ctx", [torch.inference_mode, torch.no_grad])
def test_corrected_scheme_runs_without_autograd(gmm2d, vp8, ctx):
    x = gmm2d.sample_noised(4, vp8.lambda_min, gen(0))
    with ctx():
        res = c.sample_sde(gmm2d, vp8, x, 8)
    assert torch.isfinite(res.logp).all()


@pytest.mark.parametrize("sched", ["vp", "edm"])
def test_fused_corrected_update_equals_the_term_by_term_formula(gmm2d, sched):
    """The batched inner products and per-step weights give the docstring's r to float rounding:
    r is recomputed here from the recorded path, one term of Theorem 1 and C_k at a time."""
    sch = {"vp": c.VP(-8.0, 8.0), "edm": c.EDM.from_sigmas(0.002, 80.0)}[sched]
    gmm = gmm2d.with_schedule(sch)
    x = gmm.sample_noised(6, sch.lambda_min, gen(3))
    res = c.sample_sde(gmm, sch, x, 12, noise=gen(4), record=True)
    grid, xs = res.trajectory.lam, res.trajectory.x
    co = schedule_derivatives(sch, grid)
    f, g2, df, dlg = co["f"], co["g2"], co["df"], co["dlog_g2"]
    mean = lambda v, k: float(v[k] + v[k + 1]) / 2  # noqa: E731 - a coefficient over step k
    a_hh, a_ss = 0.5 * (f + 0.5 * dlg), 0.5 * g2 * (f + 0.5 * dlg)
    a_xs, a_0 = 0.5 * (f**2 + df), 0.5 * 2 * df
    r = sch.prior_log_prob(x).to(torch.float64)
    dot = lambda a, b: (a * b).sum(1)  # noqa: E731
    prev = None
    for k in range(grid.numel() - 1):
        h = float(grid[k + 1] - grid[k])
        s = gmm.score(xs[k], torch.full((6,), float(grid[k]), dtype=torch.float64))
        n = xs[k + 1] - xs[k] - (f[k] * xs[k] + g2[k] * s) * h  # the Brownian increment used
        if prev is not None:
            s0, n0, x0, hp = prev
            ds, j = s - s0, k - 1
            r = r - (
                0.25 * mean(g2, j) * hp * dot(ds, ds)
                + mean(a_hh, j) * hp * dot(ds, n0)
                + hp * hp * mean(a_ss, j) * 0.5 * (dot(s0, s0) + dot(s, s))
                + hp * hp * mean(a_xs, j) * 0.5 * (dot(x0, s0) + dot(xs[k], s))
                + hp * hp * mean(a_0, j)
            )
            assert torch.allclose(res.trajectory.logp[k], r, rtol=0, atol=1e-9)
        r = r + (-2 * f[k] * h + 0.5 * g2[k] * h * dot(s, s) + dot(s, n))
        prev = (s, n, xs[k], h)
    assert torch.allclose(res.logp, r, rtol=0, atol=1e-9), (res.logp - r).abs().max()
