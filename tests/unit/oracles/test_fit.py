"""Unit tests of the mixture-of-PPCA EM fitter `cartoonist.oracles.fit_mppca`."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import cartoonist
from cartoonist.oracles import GaussianMixture, LowRankCov, fit_mppca

DT = torch.float64
D, R, N = 10, 2, 2000
TRUE_WEIGHTS = torch.tensor([0.3, 0.7], dtype=DT)
TRUE_TAU2 = torch.tensor([0.1, 0.2], dtype=DT)


def _true_model() -> GaussianMixture:
    g = torch.Generator().manual_seed(0)
    means = torch.zeros(2, D, dtype=DT)
    means[0, :5], means[1, 5:] = 3.0, -3.0  # ‖μ_0 − μ_1‖ ≈ 9.5, a few component std apart
    W = torch.randn(2, D, R, dtype=DT, generator=g)
    return GaussianMixture(TRUE_WEIGHTS, means, LowRankCov(W, TRUE_TAU2))


@pytest.fixture(scope="module")
def problem():
    """The true model, its N training points, and the EM fit (computed once per module)."""
    true = _true_model()
    data = true.sample(N, generator=torch.Generator().manual_seed(1))
    fitted = fit_mppca(data, n_components=2, rank=R, seed=0)
    return true, data, fitted


def _matching(true: GaussianMixture, fitted: GaussianMixture):
    """The permutation of fitted components that best matches the true means."""
    perms = list(itertools.permutations(range(true.n_components)))
    errs = [float((fitted.means[list(p)] - true.means).norm()) for p in perms]
    return list(perms[min(range(len(perms)), key=errs.__getitem__)])


def test_returns_oracle(problem):
    _, _, fitted = problem
    assert isinstance(fitted, GaussianMixture)
    assert fitted.n_components == 2 and fitted.dim == D and fitted.event_shape == (D,)
    assert fitted.U.shape == (2, D, R) and fitted.e.shape == (2, R) and fitted.tau2.shape == (2,)
    assert isinstance(fitted.schedule, cartoonist.VP)
    # U has orthonormal columns, the eigenvalues on the subspace dominate the noise
    UtU = fitted.U.transpose(1, 2) @ fitted.U
    torch.testing.assert_close(UtU, torch.eye(R, dtype=DT).expand(2, R, R), rtol=0, atol=1e-10)
    assert (fitted.e >= fitted.tau2[:, None]).all() and (fitted.tau2 > 0).all()


def test_log_likelihood_history_non_decreasing(problem):
    _, _, fitted = problem
    hist = torch.tensor(fitted.fit_log_likelihood, dtype=DT)
    assert 1 < len(hist) <= 100 and torch.isfinite(hist).all()
    assert (hist[1:] - hist[:-1] >= -1e-8).all(), hist.tolist()


def test_final_log_likelihood_close_to_truth(problem):
    true, data, fitted = problem
    inf = math.inf
    ll_fit = float(fitted.log_prob(data, inf).mean())
    ll_true = float(true.log_prob(data, inf).mean())
    # the recorded history is the mean train log p_0 of the returned model
    assert abs(ll_fit - fitted.fit_log_likelihood[-1]) < 1e-10
    # a maximum-likelihood fit may beat the true model on its own training data, but only by about
    # (#parameters)/(2N) ≈ 0.015 nats; it must not be much worse either
    assert abs(ll_fit - ll_true) < 0.05, (ll_fit, ll_true)


def test_recovers_parameters(problem):
    true, _, fitted = problem
    perm = _matching(true, fitted)
    w = fitted.log_weights.exp()[perm]
    assert (w - TRUE_WEIGHTS).abs().max() < 0.05, w
    assert (fitted.means[perm] - true.means).norm(dim=1).max() < 0.3
    tau2 = fitted.tau2[perm]
    assert ((tau2 - TRUE_TAU2).abs() / TRUE_TAU2).max() < 0.2, tau2
    # the fitted principal subspaces match the true ones (principal angles near 0)
    for k, j in enumerate(perm):
        cos = torch.linalg.svdvals(true.U[k].T @ fitted.U[j])
        assert float(cos.min()) > 0.95


def test_deterministic_and_classmethod_and_event_shape(problem):
    _, data, fitted = problem
    again = GaussianMixture.fit(data.reshape(N, 2, 5), 2, R, seed=0, schedule=cartoonist.VE())
    assert again.event_shape == (2, 5) and isinstance(again.schedule, cartoonist.VE)
    assert again.fit_log_likelihood == fitted.fit_log_likelihood
    x = data[:8]
    torch.testing.assert_close(
        again.log_prob(x.reshape(8, 2, 5), math.inf), fitted.log_prob(x, math.inf), rtol=0, atol=0
    )
    assert again.score(x.reshape(8, 2, 5), 0.0).shape == (8, 2, 5)


@pytest.mark.parametrize("seed", [1, 2])
def test_em_monotone_with_too_many_components(problem, seed):
    """EM never decreases the likelihood, also when K exceeds the true number of components."""
    _, data, _ = problem
    fitted = fit_mppca(data[:1000], n_components=4, rank=R, iters=30, seed=seed)
    hist = torch.tensor(fitted.fit_log_likelihood, dtype=DT)
    assert len(hist) > 1 and torch.isfinite(hist).all()
    assert (hist[1:] - hist[:-1] >= -1e-8).all(), hist.tolist()


def test_rank_zero_and_float32_input(problem):
    """rank 0 is an isotropic mixture; float32 data are fitted in float64."""
    _, data, _ = problem
    iso = fit_mppca(data.float()[:500], n_components=2, rank=0, iters=30)
    hist = torch.tensor(iso.fit_log_likelihood, dtype=DT)
    assert torch.isfinite(hist).all() and (hist[1:] - hist[:-1] >= -1e-8).all()
    assert iso.means.dtype == DT and iso.U.shape == (2, D, 0)
    assert torch.isfinite(iso.score(data[:4], 1.0)).all()


def test_bad_arguments_raise():
    data = torch.randn(20, 4, dtype=DT)
    for rank in (4, 5, -1):
        with pytest.raises(ValueError):
            fit_mppca(data, n_components=2, rank=rank)
    for k in (21, 0):
        with pytest.raises(ValueError):
            fit_mppca(data, n_components=k, rank=1)


def test_oracle_modules_import_without_cycles():
    """The oracles' modules import one another only at top level, and without a cycle."""
    import ast
    from pathlib import Path

    pkg = Path(cartoonist.oracles.__file__).parent
    deps = {}
    for f in pkg.glob("*.py"):
        tree = ast.parse(f.read_text())
        top = {id(n) for n in tree.body}
        deps[f.stem] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "cartoonist.oracles."
            ):
                assert id(node) in top, f"{f.name}:{node.lineno} imports inside a function"
                deps[f.stem].add(node.module.rsplit(".", 1)[1])
    seen, done = set(), set()

    def visit(m):
        assert m not in seen or m in done, f"import cycle through {m}"
        if m not in seen:
            seen.add(m)
            for d in deps.get(m, ()):
                visit(d)
            done.add(m)

    for m in deps:
        visit(m)
    assert deps["fit"] == set() and "fit" in deps["gmm"]
