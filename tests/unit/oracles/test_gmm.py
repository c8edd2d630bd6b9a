"""Unit tests of the exact Gaussian-mixture oracle `cartoonist.oracles.gmm`.

Every closed form is checked against an independent brute-force reference built from dense
covariance matrices (torch.distributions.MultivariateNormal, torch.func derivatives, textbook
Gaussian conditioning), in float64, for each covariance parametrisation the oracle accepts.
"""

from __future__ import annotations

import math
import time

import pytest
import torch
from torch.distributions import MultivariateNormal

import cartoonist
from cartoonist.oracles import GaussianMixture, LowRankCov

# torch.func's internal decompositions still call the deprecated torch.jit.script
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)

DT = torch.float64
K, D = 3, 4
KINDS = ["diagonal", "full", "isotropic", "lowrank", "eigen"]
LAMS = [-3.0, 0.0, 4.0, math.inf]


# -- construction of test mixtures with their dense reference covariances
# ---------------------------
def _make(kind: str, seed: int = 0, schedule=None, event_shape=None, d: int = D):
    """A K-component mixture of the given covariance kind and its dense covariances [K, d, d]."""
    g = torch.Generator().manual_seed(seed)
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=DT)
    means = 1.2 * torch.randn(K, d, dtype=DT, generator=g)
    eye = torch.eye(d, dtype=DT)
    if kind == "diagonal":
        var = 0.3 + 1.5 * torch.rand(K, d, dtype=DT, generator=g)
        cov, dense = var, torch.diag_embed(var)
    elif kind == "full":
        A = torch.randn(K, d, d, dtype=DT, generator=g)
        dense = A @ A.transpose(1, 2) / d + 0.3 * eye
        cov = dense
    elif kind == "isotropic":
        var = torch.tensor([0.5, 1.0, 1.7], dtype=DT)
        cov, dense = var, var[:, None, None] * eye
    elif kind == "lowrank":
        W = torch.randn(K, d, 2, dtype=DT, generator=g)
        tau2 = torch.tensor([0.2, 0.4, 0.6], dtype=DT)
        cov = LowRankCov(W, tau2)
        dense = W @ W.transpose(1, 2) + tau2[:, None, None] * eye
    elif kind == "eigen":  # from_eigen with r < D: Σ = U diag(e) Uᵀ + τ² (I − U Uᵀ)
        U, _ = torch.linalg.qr(torch.randn(K, d, 2, dtype=DT, generator=g))
        e = 0.5 + 2 * torch.rand(K, 2, dtype=DT, generator=g)
        tau2 = torch.tensor([0.3, 0.1, 0.5], dtype=DT)
        P = U @ U.transpose(1, 2)
        dense = U @ torch.diag_embed(e) @ U.transpose(1, 2) + tau2[:, None, None] * (eye - P)
        gmm = GaussianMixture.from_eigen(
            weights, means, U, e, tau2, schedule=schedule, event_shape=event_shape
        )
        return gmm, weights, means, dense
    else:
        raise AssertionError(kind)
    gmm = GaussianMixture(weights, means, cov, schedule=schedule, event_shape=event_shape)
    return gmm, weights, means, dense


def _a2s2(schedule, lam: float):
    lam_t = torch.tensor(lam, dtype=DT)
    return float(torch.exp(schedule.log_alpha2(lam_t))), float(
        torch.exp(schedule.log_sigma2(lam_t))
    )


def _dense_components(weights, means, dense, a2, s2):
    """Noised component parameters: means α μ_k and covariances α² Σ_k + σ² I."""
    d = means.shape[1]
    C = a2 * dense + s2 * torch.eye(d, dtype=DT)
    return math.sqrt(a2) * means, C


def _ref_log_prob(x, weights, means, dense, a2, s2):
    loc, C = _dense_components(weights, means, dense, a2, s2)
    comp = MultivariateNormal(loc, covariance_matrix=C).log_prob(x[:, None, :])  # [B, K]
    return torch.logsumexp(comp + torch.log(weights / weights.sum()), dim=1)


def _ref_posterior(x, weights, means, dense, a2, s2):
    """Brute-force posterior p(x_0 | x_λ = x) as a mixture: responsibilities [B,K], means [B,K,D],
    covariances [K,D,D] (textbook conditioning Σ − α² Σ C⁻¹ Σ)."""
    loc, C = _dense_components(weights, means, dense, a2, s2)
    logits = MultivariateNormal(loc, covariance_matrix=C).log_prob(x[:, None, :])
    resp = torch.softmax(logits + torch.log(weights / weights.sum()), dim=1)
    a = math.sqrt(a2)
    Cinv = torch.linalg.inv(C)
    v = x[:, None, :] - loc[None]  # [B, K, D]
    m = means[None] + a * torch.einsum("kde,kef,bkf->bkd", dense, Cinv, v)
    P = dense - a2 * dense @ Cinv @ dense
    return resp, m, P


def _points(n: int = 5, d: int = D, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return 1.5 * torch.randn(n, d, dtype=DT, generator=g)


# -- 1. log-density ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lam", LAMS)
def test_log_prob_matches_dense_reference(kind, lam):
    gmm, w, mu, dense = _make(kind)
    x = _points()
    a2, s2 = _a2s2(cartoonist.VP(), lam)
    got = gmm.log_prob(x, lam)
    ref = _ref_log_prob(x, w, mu, dense, a2, s2)
    assert got.shape == (x.shape[0],) and got.dtype == torch.float64
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["diagonal", "full", "isotropic"])  # low-rank needs D > 1
def test_log_prob_normalised_in_1d_quadrature(kind):
    """Sanity check independent of MultivariateNormal: a 1-D mixture integrates to 1."""
    g = torch.Generator().manual_seed(0)
    w = torch.tensor([0.2, 0.5, 0.3], dtype=DT)
    mu = torch.randn(K, 1, dtype=DT, generator=g)
    cov = {
        "diagonal": torch.tensor([[0.3], [1.0], [2.0]], dtype=DT),
        "full": torch.tensor([[[0.3]], [[1.0]], [[2.0]]], dtype=DT),
        "isotropic": torch.tensor([0.3, 1.0, 2.0], dtype=DT),
    }[kind]
    gmm = GaussianMixture(w, mu, cov)
    grid = torch.linspace(-15, 15, 6001, dtype=DT)[:, None]
    for lam in (-3.0, 0.0, math.inf):
        mass = torch.trapezoid(gmm.log_prob(grid, lam).exp(), grid[:, 0])
        assert abs(float(mass) - 1) < 1e-8


@pytest.mark.parametrize("kind", KINDS)
def test_lam_batch_matches_scalar(kind):
    gmm, *_ = _make(kind)
    x = _points(4)
    lam = torch.tensor([-3.0, 0.0, 4.0, math.inf], dtype=DT)
    lp, sc = gmm.log_prob(x, lam), gmm.score(x, lam)
    for i in range(4):
        torch.testing.assert_close(
            lp[i], gmm.log_prob(x[i : i + 1], float(lam[i]))[0], rtol=1e-12, atol=1e-12
        )
        torch.testing.assert_close(
            sc[i], gmm.score(x[i : i + 1], float(lam[i]))[0], rtol=1e-12, atol=1e-12
        )


# -- 2. derivatives -------------------------------------------------------------------------------
def _autograd_derivs(gmm, x, lam):
    """Per-sample gradient, Hessian and ∇(tr Hessian) of log_prob by torch.func."""

    def f(x1):
        return gmm.log_prob(x1[None], lam)[0]

    hess = torch.func.hessian(f)
    grads, hs, glaps = [], [], []
    for xb in x:
        grads.append(torch.func.grad(f)(xb))
        hs.append(hess(xb))
        glaps.append(torch.func.jacrev(lambda x1: torch.trace(hess(x1)))(xb))
    return torch.stack(grads), torch.stack(hs), torch.stack(glaps)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lam", LAMS)
def test_derivatives_match_autograd(kind, lam):
    gmm, *_ = _make(kind)
    x = _points(3)
    g_ref, H_ref, gl_ref = _autograd_derivs(gmm, x, lam)
    tol = dict(rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(gmm.score(x, lam), g_ref, **tol)
    torch.testing.assert_close(gmm(x, lam), g_ref, **tol)  # __call__ alias
    torch.testing.assert_close(gmm.hessian(x, lam), H_ref, **tol)
    u = torch.randn(x.shape, dtype=DT, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(gmm.hvp(x, lam, u), torch.einsum("bij,bj->bi", H_ref, u), **tol)
    lap_ref = torch.diagonal(H_ref, dim1=1, dim2=2).sum(-1)
    torch.testing.assert_close(gmm.laplacian(x, lam), lap_ref, **tol)
    torch.testing.assert_close(gmm.grad_laplacian(x, lam), gl_ref, **tol)


def test_hessian_symmetric_and_float32_io():
    gmm, *_ = _make("lowrank")
    x = _points(3)
    H = gmm.hessian(x, 0.0)
    torch.testing.assert_close(H, H.transpose(1, 2), rtol=0, atol=1e-12)
    x32 = x.float()
    assert gmm.score(x32, 0.0).dtype == torch.float32
    assert gmm.log_prob(x32, 0.0).dtype == torch.float64
    assert gmm.laplacian(x32, 0.0).dtype == torch.float32
    torch.testing.assert_close(gmm.score(x32, 0.0), gmm.score(x32.double(), 0.0).float())


# -- 3. posterior mean ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lam", [-3.0, 0.0, 4.0])
def test_posterior_mean_matches_conditioning(kind, lam):
    gmm, w, mu, dense = _make(kind)
    x = _points()
    a2, s2 = _a2s2(cartoonist.VP(), lam)
    resp, m, _ = _ref_posterior(x, w, mu, dense, a2, s2)
    ref = (resp[..., None] * m).sum(1)
    torch.testing.assert_close(gmm.posterior_mean(x, lam), ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_posterior_at_lambda_inf_is_identity(kind):
    gmm, *_ = _make(kind)
    x = _points()
    torch.testing.assert_close(gmm.posterior_mean(x, math.inf), x, rtol=0, atol=1e-12)
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(
        gmm.sample_posterior(x, math.inf, generator=g), x, rtol=0, atol=1e-12
    )


# -- 4. sampling moments --------------------------------------------------------------------------
def _check_moments(samples, mean, cov, n_se_mean=4.5, n_se_cov=5.0):
    """Sample mean within n_se_mean standard errors of `mean`, and each second moment
    E[(x−m)_i (x−m)_j] (about the true mean) within n_se_cov standard errors of `cov`.

    The standard errors are estimated from the samples themselves. The thresholds allow for the
    ~100 comparisons made across this file (Bonferroni: 4.5 σ ≈ 7e-6 two-sided per comparison).
    """
    n = samples.shape[0]
    se = samples.std(0) / math.sqrt(n)
    z = (samples.mean(0) - mean).abs() / se
    assert float(z.max()) < n_se_mean, f"mean off by {float(z.max()):.2f} SE"
    c = samples - mean
    prods = c[:, :, None] * c[:, None, :]  # [n, D, D]
    se_c = prods.std(0) / math.sqrt(n)
    zc = (prods.mean(0) - cov).abs() / se_c
    assert float(zc.max()) < n_se_cov, f"covariance off by {float(zc.max()):.2f} SE"


def _mixture_moments(weights, means, covs):
    w = weights / weights.sum()
    m = (w[:, None] * means).sum(0)
    second = (w[:, None, None] * (covs + means[:, :, None] * means[:, None, :])).sum(0)
    return m, second - m[:, None] * m[None, :]


N_SAMPLES = 60_000


@pytest.mark.parametrize("kind", KINDS)
def test_sample_moments(kind):
    gmm, w, mu, dense = _make(kind)
    g = torch.Generator().manual_seed(10)
    xs = gmm.sample(N_SAMPLES, generator=g)
    assert xs.shape == (N_SAMPLES, D) and xs.dtype == DT
    m, C = _mixture_moments(w, mu, dense)
    _check_moments(xs, m, C)
    # reproducible under a seeded generator
    torch.testing.assert_close(
        gmm.sample(7, torch.Generator().manual_seed(3)),
        gmm.sample(7, torch.Generator().manual_seed(3)),
        rtol=0,
        atol=0,
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lam", [-3.0, 0.0, 4.0])
def test_sample_noised_moments(kind, lam):
    gmm, w, mu, dense = _make(kind)
    g = torch.Generator().manual_seed(11)
    xs = gmm.sample_noised(N_SAMPLES, lam, generator=g)
    assert xs.shape == (N_SAMPLES, D)
    a2, s2 = _a2s2(cartoonist.VP(), lam)
    m, C = _mixture_moments(w, mu, dense)
    _check_moments(xs, math.sqrt(a2) * m, a2 * C + s2 * torch.eye(D, dtype=DT))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lam", [-3.0, 0.0, 4.0])
def test_sample_posterior_moments(kind, lam):
    gmm, w, mu, dense = _make(kind)
    a2, s2 = _a2s2(cartoonist.VP(), lam)
    # a point between the components so that the posterior is a genuine mixture
    x = (math.sqrt(a2) * (0.5 * mu[0] + 0.5 * mu[1]))[None]
    resp, m, P = _ref_posterior(x, w, mu, dense, a2, s2)
    assert float(resp.max()) < 0.999  # the check is not a single-Gaussian one
    pm, pcov = _mixture_moments(resp[0], m[0], P)
    torch.testing.assert_close(gmm.posterior_mean(x, lam)[0], pm, rtol=1e-9, atol=1e-9)
    g = torch.Generator().manual_seed(12)
    xs = gmm.sample_posterior(x.expand(N_SAMPLES, D), lam, generator=g)
    assert xs.shape == (N_SAMPLES, D)
    _check_moments(xs, pm, pcov)


# -- 5. event shape -------------------------------------------------------------------------------
def test_event_shape():
    gmm, w, mu, dense = _make("lowrank", d=6, event_shape=(2, 3))
    flat, *_ = _make("lowrank", d=6)
    x = _points(5, d=6).reshape(5, 2, 3)
    xf = x.reshape(5, 6)
    lam = 0.5
    assert gmm.event_shape == (2, 3) and gmm.dim == 6 and gmm.n_components == K
    assert gmm.log_prob(x, lam).shape == (5,)
    torch.testing.assert_close(gmm.log_prob(x, lam), flat.log_prob(xf, lam))
    for name in ("score", "grad_laplacian", "posterior_mean"):
        out = getattr(gmm, name)(x, lam)
        assert out.shape == (5, 2, 3), name
        torch.testing.assert_close(out.reshape(5, 6), getattr(flat, name)(xf, lam))
    assert gmm(x, lam).shape == (5, 2, 3)
    assert gmm.hvp(x, lam, torch.ones_like(x)).shape == (5, 2, 3)
    assert gmm.laplacian(x, lam).shape == (5,)
    assert gmm.hessian(x, lam).shape == (5, 6, 6)
    g = torch.Generator().manual_seed(0)
    assert gmm.sample(4, g).shape == (4, 2, 3)
    assert gmm.sample_noised(4, lam, g).shape == (4, 2, 3)
    assert gmm.sample_posterior(x, lam, g).shape == (5, 2, 3)
    # flattened inputs are accepted too, and keep their shape
    assert gmm.score(xf, lam).shape == (5, 6)


# -- 6. input validation --------------------------------------------------------------------------
def test_bad_inputs_raise():
    w = torch.tensor([0.2, 0.5, 0.3], dtype=DT)
    mu = torch.zeros(K, D, dtype=DT)
    var = torch.ones(K, D, dtype=DT)
    with pytest.raises(ValueError):  # means not 2-D
        GaussianMixture(w, torch.zeros(K, D, 1), var)
    with pytest.raises(ValueError):
        GaussianMixture(w, torch.zeros(D), var)
    with pytest.raises(ValueError):  # weights of the wrong length
        GaussianMixture(torch.ones(K + 1), mu, var)
    with pytest.raises(ValueError):  # negative weights
        GaussianMixture(torch.tensor([0.5, -0.1, 0.6]), mu, var)
    for bad in (
        torch.ones(K, D + 1),
        torch.ones(K + 1),
        torch.ones(K, D, D + 1),
        torch.ones(K + 1, D, D),
        torch.ones(K, D, D, 1),
    ):
        with pytest.raises(ValueError):  # covariance of the wrong shape
            GaussianMixture(w, mu, bad)
    with pytest.raises(ValueError):
        GaussianMixture(w, mu, LowRankCov(torch.ones(K, D + 1, 2), 0.1))
    with pytest.raises(ValueError):
        GaussianMixture(w, mu, LowRankCov(torch.ones(K, D), 0.1))
    with pytest.raises(ValueError):  # non-positive diagonal variances
        GaussianMixture(w, mu, torch.zeros(K, D))
    with pytest.raises(ValueError):  # asymmetric full covariance
        GaussianMixture(w, mu, torch.eye(D).expand(K, D, D) + torch.triu(torch.ones(D, D), 1))
    with pytest.raises(ValueError):  # indefinite full covariance
        GaussianMixture(w, mu, -torch.eye(D, dtype=DT).expand(K, D, D))
    with pytest.raises(ValueError):  # event_shape inconsistent with D
        GaussianMixture(w, mu, var, event_shape=(3, 3))
    gmm = GaussianMixture(w, mu, var)
    for bad_x in (torch.zeros(2, D + 1), torch.zeros(2, D, 1), torch.zeros(2, 2, 2)):
        for method in ("log_prob", "score", "laplacian", "posterior_mean"):
            with pytest.raises(ValueError):  # wrong trailing shape
                getattr(gmm, method)(bad_x, 0.0)
    x = torch.zeros(3, D, dtype=DT)
    for bad_lam in (torch.zeros(2), torch.zeros(4), torch.zeros(1)):
        with pytest.raises(ValueError):  # lam of the wrong length
            gmm.log_prob(x, bad_lam)
        with pytest.raises(ValueError):
            gmm.score(x, bad_lam)


def test_singular_psd_full_covariance_accepted():
    """A rank-deficient (PSD, not PD) full covariance is valid input for λ < inf."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(K, D, 2, dtype=DT, generator=g)
    mu = torch.zeros(K, D, dtype=DT)
    gmm = GaussianMixture(torch.ones(K), mu, W @ W.transpose(1, 2))
    ref = GaussianMixture(torch.ones(K), mu, LowRankCov(W, 0.0))  # the same p_0
    x = _points()
    torch.testing.assert_close(gmm.log_prob(x, 0.0), ref.log_prob(x, 0.0))


# -- 7. scale -------------------------------------------------------------------------------------
def test_low_rank_scales_to_images():
    Kb, Db, r, B = 20, 3072, 8, 16
    g = torch.Generator().manual_seed(0)
    W = 0.1 * torch.randn(Kb, Db, r, dtype=DT, generator=g)
    gmm = GaussianMixture(
        torch.ones(Kb),
        torch.randn(Kb, Db, dtype=DT, generator=g),
        LowRankCov(W, torch.full((Kb,), 0.05, dtype=DT)),
        event_shape=(3, 32, 32),
    )
    assert gmm.U.shape == (Kb, Db, r)  # eigen form, no D×D storage
    x = torch.randn(B, 3, 32, 32, dtype=DT, generator=g)
    t0 = time.perf_counter()
    for lam in (-3.0, 2.0, math.inf):
        lp, s = gmm.log_prob(x, lam), gmm.score(x, lam)
        assert lp.shape == (B,) and torch.isfinite(lp).all()
        assert s.shape == (B, 3, 32, 32) and torch.isfinite(s).all()
    lap, gl = gmm.laplacian(x, 0.0), gmm.grad_laplacian(x, 0.0)
    assert lap.shape == (B,) and torch.isfinite(lap).all()
    assert gl.shape == x.shape and torch.isfinite(gl).all()
    assert gmm.sample_posterior(x, 0.0, g).shape == x.shape
    assert time.perf_counter() - t0 < 10.0


# -- 8. other schedules ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_with_schedule_ve(kind):
    gmm, w, mu, dense = _make(kind)
    ve = gmm.with_schedule(cartoonist.VE())
    assert isinstance(ve.schedule, cartoonist.VE) and isinstance(gmm.schedule, cartoonist.VP)
    x = 3 * _points()
    for lam in (-3.0, 0.0, 4.0, math.inf):
        s2 = math.exp(-lam)  # VE: α = 1, σ² = e^{−λ}
        torch.testing.assert_close(
            ve.log_prob(x, lam), _ref_log_prob(x, w, mu, dense, 1.0, s2), rtol=1e-10, atol=1e-10
        )
        resp, m, _ = _ref_posterior(x, w, mu, dense, 1.0, s2)
        torch.testing.assert_close(
            ve.posterior_mean(x, lam), (resp[..., None] * m).sum(1), rtol=1e-9, atol=1e-9
        )
    # the original oracle is untouched (VP at λ = 0: α² = σ² = ½)
    torch.testing.assert_close(
        gmm.log_prob(x, 0.0), _ref_log_prob(x, w, mu, dense, 0.5, 0.5), rtol=1e-10, atol=1e-10
    )
    # VE at λ = 0 differs from VP at λ = 0 (α = 1, σ = 1)
    assert not torch.allclose(ve.log_prob(x, 0.0), gmm.log_prob(x, 0.0))


def test_schedule_argument_and_isotropic_float():
    """A float isotropic covariance and a schedule given at construction."""
    w = torch.tensor([1.0, 3.0], dtype=DT)
    mu = torch.tensor([[0.0, 1.0, 2.0], [1.0, -1.0, 0.0]], dtype=DT)
    gmm = GaussianMixture(w, mu, 0.7, schedule=cartoonist.VE())
    x = _points(4, d=3)
    dense = 0.7 * torch.eye(3, dtype=DT).expand(2, 3, 3)
    torch.testing.assert_close(
        gmm.log_prob(x, 1.0),
        _ref_log_prob(x, w, mu, dense, 1.0, math.exp(-1.0)),
        rtol=1e-10,
        atol=1e-10,
    )


def test_toy_mixtures_are_defined_once():
    """`cartoonist.oracles.toy` is the one definition of the toys of the dataset and figures."""
    from cartoonist.data import GMM2D
    from cartoonist.figures import toy_mixture
    from cartoonist.oracles import gmm2d

    w, mu, var = gmm2d().log_weights.exp(), gmm2d().means, gmm2d().var
    torch.testing.assert_close(w, torch.tensor([0.2, 0.5, 0.3], dtype=DT))
    assert mu.tolist() == [[-2.0, 0.0], [1.5, 1.0], [0.0, -2.0]]
    assert var.tolist() == [[0.3, 0.2], [0.1, 0.5], [0.4, 0.05]]
    for other in (GMM2D(n=4).oracle(), toy_mixture(2)):
        for k in ("log_weights", "means", "var"):
            assert torch.equal(getattr(other, k), getattr(gmm2d(), k)), k
    assert toy_mixture(1).means.tolist() == [[-2.0], [0.5], [2.5]]
