"""Theorem 2: the augmented forward SDE's pathwise estimate of log p(x_0)."""

import torch

import cartoonist as c
from tests.helpers.rng import gen


def test_pathwise_estimate_on_gmm(gmm2d, vp8):
    x0 = gmm2d.sample_noised(400, vp8.lambda_max, gen(0))
    true = gmm2d.log_prob(x0, vp8.lambda_max)
    prior = lambda z: gmm2d.log_prob(z, vp8.lambda_min)  # noqa: E731 - exact p_{λ_min}
    res = c.forward_sde_log_prob(gmm2d, vp8, x0, 1000, divergence="analytic", prior_log_prob=prior)
    err = res.logp - true
    assert res.nfe == 1000
    assert float(err.abs().mean()) < 0.3  # digest §7.2: MAE < 0.3 at 1000 steps
    se = float(err.std()) / 400**0.5
    assert abs(float(err.mean())) < 0.02 + 4 * se  # unbiased up to O(1/steps)


def test_hutchinson_version_is_unbiased_too(gmm2d, vp8):
    x0 = gmm2d.sample_noised(400, vp8.lambda_max, gen(1))
    true = gmm2d.log_prob(x0, vp8.lambda_max)
    prior = lambda z: gmm2d.log_prob(z, vp8.lambda_min)  # noqa: E731
    res = c.forward_sde_log_prob(gmm2d, vp8, x0, 1000, prior_log_prob=prior, noise=c.Keys(1))
    err = res.logp - true
    assert res.nfe == 1000
    se = float(err.std()) / 400**0.5
    assert abs(float(err.mean())) < 0.02 + 4 * se


def test_flipped_laplacian_sign_is_caught(gmm2d, vp8):
    """Dropping the Itô correction (a wrong-sign/absent g²Δ term) biases the estimate visibly."""
    x0 = gmm2d.sample_noised(300, vp8.lambda_max, gen(2))
    true = gmm2d.log_prob(x0, vp8.lambda_max)
    prior = lambda z: gmm2d.log_prob(z, vp8.lambda_min)  # noqa: E731
    good = c.forward_sde_log_prob(gmm2d, vp8, x0, 300, divergence="analytic", prior_log_prob=prior)
    # The scaled score 0.5·s has the same zeros but a different Laplacian and norm: estimate moves.
    bad = c.forward_sde_log_prob(
        lambda x, l: 0.5 * gmm2d.score(x, l),
        vp8,
        x0,
        300,
        divergence="exact",
        prior_log_prob=prior,
    )
    assert float((good.logp - true).mean().abs()) < 0.1
    assert float((bad.logp - true).mean()) < -1.0  # with a wrong score it is an ELBO: lower


def test_autograd_trace_equals_closed_form_laplacian(gmm2d, vp8):
    x0 = gmm2d.sample_noised(50, vp8.lambda_max, gen(3))
    kw = dict(prior_log_prob=lambda z: gmm2d.log_prob(z, vp8.lambda_min), noise=c.Keys(3))
    a = c.forward_sde_log_prob(gmm2d, vp8, x0, 50, divergence="exact", backend="forward", **kw)
    b = c.forward_sde_log_prob(gmm2d, vp8, x0, 50, divergence="analytic", **kw)
    assert a.nfe == 50 * 2 and b.nfe == 50  # exact trace in D = 2: two JVPs per step
    r = c.forward_sde_log_prob(gmm2d, vp8, x0, 50, divergence="exact", backend="reverse", **kw)
    assert r.nfe == 50  # one forward on the tape, D backward passes
    torch.testing.assert_close(r.logp, b.logp, rtol=0, atol=1e-9)
    torch.testing.assert_close(a.logp, b.logp, rtol=0, atol=1e-9)
