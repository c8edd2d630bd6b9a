"""Classifier-free guidance: log p(x | c) along guided ODEs against exact Gaussian densities."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from cartoonist.diffusion import VP, Keys, hd_sample, sample_ode, sample_sde
from cartoonist.diffusion.guidance import (
    guided_hd_sample,
    guided_sample_ode,
    guided_score,
    sample_guided,
)

F64 = torch.float64

D = 3
S_C, S_U = 0.5, 1.2  # data std of the conditional and the unconditional Gaussian
MU = torch.tensor([1.0, -0.5, 0.25], dtype=F64)  # conditional mean (the unconditional one is 0)
SCHED = VP(-6.0, 8.0)


def _var(lam, s):
    a2 = SCHED.alpha(lam) ** 2
    return a2 * s * s + SCHED.g2(lam)


def s_c(x, lam):
    """Exact score of p_λ(x | c) = N(α μ, (α² s_c² + σ²) I)."""
    lam = torch.as_tensor(lam).expand(x.shape[0])
    a = SCHED.alpha(lam)[:, None]
    return (a * MU - x) / _var(lam, S_C)[:, None]


def s_u(x, lam):
    """Exact score of the unconditional p_λ(x) = N(0, (α² s_u² + σ²) I)."""
    lam = torch.as_tensor(lam).expand(x.shape[0])
    return -x / _var(lam, S_U)[:, None]


def log_p_c(x, lam):
    lam = torch.full((x.shape[0],), float(lam), dtype=F64)
    v = _var(lam, S_C)
    a = SCHED.alpha(lam)[:, None]
    return -0.5 * (((x - a * MU) ** 2).sum(1) / v + D * torch.log(2 * math.pi * v))


def _start(n=64, seed=0):
    x = torch.randn(n, D, generator=torch.Generator().manual_seed(seed), dtype=F64)
    lam0 = torch.tensor(SCHED.lambda_min, dtype=F64)
    x = x * _var(lam0, S_C).sqrt() + SCHED.alpha(lam0) * MU
    return x, log_p_c(x, SCHED.lambda_min)


@pytest.mark.parametrize("w", [0.0, 3.0])
def test_lemma_along_the_guided_pf_ode_is_the_conditional_density(w):
    """Guided PF-ODE paths (w ≠ 1 leave the conditional flow) carry log p(x | c): the error
    is the integrator's, shrinking with the step."""
    x, lp0 = _start()
    errs = []
    for steps in (50, 100):
        res = guided_sample_ode(
            s_c, s_u, SCHED, x, steps, guidance=w, logp_init=lp0, method="heun", divergence="exact"
        )
        errs.append(float((res.logp - log_p_c(res.x, SCHED.lambda_max)).abs().max()))
    assert errs[1] < 2e-3 and errs[0] / errs[1] > 2.0, errs  # discretisation error only
    plain = sample_ode(s_c, SCHED, x, 100, method="heun", divergence="exact", logp_init=lp0)
    assert float((res.x - plain.x).abs().max()) > 1e-2  # the guided path is another path


def test_lemma_along_the_guided_hd_sampler_is_the_conditional_density():
    x, lp0 = _start(seed=1)
    res = guided_hd_sample(
        s_c,
        s_u,
        SCHED,
        x,
        200,
        guidance=4.0,
        lambda_threshold=0.0,
        logp_init=lp0,
        method="heun",
        divergence="exact",
    )
    err = (res.logp - log_p_c(res.x, SCHED.lambda_max)).abs().max()
    assert float(err) < 1e-3, float(err)


def test_guidance_one_is_the_plain_sampler_with_the_same_probes():
    """w = 1: the guided variants reproduce hd_sample / sample_ode (Hutchinson, same keys)."""
    x, lp0 = _start(8, seed=2)
    keys = Keys(3, range(8))
    kw = dict(lambda_threshold=1.0, logp_init=lp0, track_logp=True)
    a = guided_hd_sample(s_c, s_u, SCHED, x, 20, guidance=1.0, noise=keys, **kw)
    b = hd_sample(s_c, SCHED, x, 20, noise=keys, **kw)
    torch.testing.assert_close(a.x, b.x, rtol=0, atol=1e-12)
    torch.testing.assert_close(a.logp, b.logp, rtol=0, atol=1e-10)


def test_sample_guided_dispatch_and_counts():
    """ODE/HD samplers with track_logp get the Lemma; others run guided and report no log p."""
    x, _ = _start(4, seed=3)
    keys = Keys(0, range(4))
    hd = functools.partial(hd_sample, steps=10, lambda_threshold=0.0, track_logp=True)
    res, is_density = sample_guided(hd, s_c, s_u, 2.0, SCHED, x, keys)
    assert is_density and res.logp is not None and torch.isfinite(res.logp).all()
    assert res.nfe == 2 * 10  # s_c (with its JVP) and s_u, once per Euler step
    sde = functools.partial(sample_sde, steps=10)
    res, is_density = sample_guided(sde, s_c, s_u, 2.0, SCHED, x, keys)
    assert not is_density and res.logp is None
    want = sample_sde(guided_score(s_c, s_u, 2.0), SCHED, x, 10, noise=keys)
    torch.testing.assert_close(res.x, want.x)
    pf = functools.partial(sample_ode, steps=10, method="euler", track_logp=False)
    assert sample_guided(pf, s_c, s_u, 2.0, SCHED, x, keys)[0].logp is None


def test_guided_score_is_the_linear_combination():
    x = torch.randn(5, D, dtype=F64)
    lam = torch.full((5,), 0.3, dtype=F64)
    for w in (0.0, 1.0, 7.5):
        want = s_u(x, lam) + w * (s_c(x, lam) - s_u(x, lam))
        torch.testing.assert_close(guided_score(s_c, s_u, w)(x, lam), want)
