"""Fig. 1's learned-model path, fed an exact score, reproduces the oracle's own answers."""

import pytest
import torch

from cartoonist.diffusion import hd_ode, posterior_mean
from cartoonist.figures import LearnedModel, fig1_hd_samples
from cartoonist.figures.fig1_hd_samples import learned_columns, learned_log_prob
from tests.helpers.rng import gen


def test_tweedie_posterior_mean_matches_oracle(gmm2d):
    x = gmm2d.sample_noised(16, -1.0, gen(1))
    got = posterior_mean(gmm2d, gmm2d.schedule, x, -1.0)
    assert torch.allclose(got, gmm2d.posterior_mean(x, -1.0), atol=1e-12)


@pytest.fixture()
def toy(gmm2d):
    return LearnedModel("toy", gmm2d, gmm2d.schedule, gmm2d.sample(64, gen(2)))


def test_learned_columns_on_exact_score(toy, gmm2d):
    x_t = gmm2d.sample_noised(3, 0.0, gen(3))
    cols = learned_columns(toy, x_t, 0.0, steps=100, n_posterior=2, sde_steps=50)
    assert list(cols)[:2] == ["x_t / α_t", "HD-ODE y_0"] and len(cols) == 5
    hd = hd_ode(gmm2d, gmm2d.schedule, x_t, 100, lambda_start=0.0, method="heun").x
    assert torch.allclose(cols["HD-ODE y_0"], hd)
    assert torch.allclose(cols["E[x_0|x_t]"], gmm2d.posterior_mean(x_t, 0.0), atol=1e-12)
    # PF-ODE log p with the exact trace agrees with the exact log p at λ_max (to the ~0.01 nats of
    # the prior's N(0, σ²) approximation at λ_min = −8).
    x = torch.cat(list(cols.values()))
    lp = learned_log_prob(toy, x, steps=50, divergence="exact")
    exact = gmm2d.log_prob(x, gmm2d.schedule.lambda_max)
    assert (lp - exact).abs().max() < 0.05


def test_reverse_sde_from_x_t_samples_the_posterior(toy, gmm2d):
    """Posterior samples by the reverse SDE from λ_t: their mean is E[x_0 | x_t] (Tweedie)."""
    x_t = gmm2d.sample_noised(1, 1.0, gen(4))
    n = 2000
    cols = learned_columns(toy, x_t.expand(n, 2), 1.0, steps=10, n_posterior=1, sde_steps=200)
    post = cols["x_0 ~ p(x_0|x_t) #1"]
    exact = gmm2d.sample_posterior(x_t.expand(n, 2), 1.0, gen(5))
    se = exact.std(0) / n**0.5
    assert ((post.mean(0) - gmm2d.posterior_mean(x_t, 1.0)[0]).abs() < 4 * se).all()
    assert torch.allclose(post.std(0), exact.std(0), rtol=0.1)


def test_fig1_learned_part_rows_and_metrics(toy):
    data = fig1_hd_samples(
        {},
        seed=0,
        n_rows=2,
        n_posterior=2,
        steps=20,
        learned=toy,
        sde_steps=20,
        ode_steps=20,
        divergence="exact",
    )
    assert len(data.rows) == 2 * 5 and {r["logp_kind"] for r in data.rows} == {"pf_ode"}
    m = data.metrics
    assert {
        "toy: mean_logp_pf_ode[HD-ODE y_0]",
        "toy: mean_logp_pf_ode[E[x_0|x_t]]",
        "toy: mean_logp_pf_ode[posterior samples]",
        "toy: hd_gain_over_posterior_nats",
    } <= set(m)
    gain = m["toy: mean_logp_pf_ode[HD-ODE y_0]"] - m["toy: mean_logp_pf_ode[posterior samples]"]
    assert m["toy: hd_gain_over_posterior_nats"] == pytest.approx(gain)
