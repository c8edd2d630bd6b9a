"""Fit an exact oracle to data: EM for a mixture of probabilistic PCA components.

Tipping & Bishop (1999): each component is N(μ_k, W_k W_kᵀ + τ_k² I). The M-step of a component is
the
closed-form PPCA solution on its responsibility-weighted covariance, obtained from an SVD of the
weighted, centred data (never a D×D matrix): the top-r eigenvalues λ_j and vectors U_k, and
τ_k² = (tr S_k − Σ_j λ_j)/(D − r). The fitted mixture's score is then exact at every noise level,
which gives ground truth for image-sized data (digits, faces, natural-image patches).

The EM here works on plain tensors (`MPPCAParams`); the E-step's component log-densities come from
a caller-supplied function, and `GaussianMixture.fit` / `fit_mppca` (in `gmm.py`) wrap the result
in the oracle.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor

__all__ = ["MPPCAParams", "em_mppca"]


class MPPCAParams(NamedTuple):
    """A mixture of PPCA components in eigen form, Σ_k = U_k diag(e_k) U_kᵀ + τ_k² (I − U_k U_kᵀ).

    Attributes:
        weights: [K]; means: [K, D]; U: [K, D, r] orthonormal; e: [K, r]; tau2: [K] (float64).
        log_likelihood: mean log p_0 of the training data per EM iteration (nats per point).
    """

    weights: Tensor
    means: Tensor
    U: Tensor
    e: Tensor
    tau2: Tensor
    log_likelihood: list[float]


# params -> (X [B, D] -> log π_k + log N(x; μ_k, Σ_k), [B, K])
LogitsFn = Callable[[MPPCAParams], Callable[[Tensor], Tensor]]


def _kmeanspp(X: Tensor, K: int, gen: torch.Generator) -> Tensor:
    idx = [int(torch.randint(X.shape[0], (1,), generator=gen))]
    d2 = ((X - X[idx[0]]) ** 2).sum(1)
    for _ in range(1, K):
        idx.append(int(torch.multinomial(d2 / d2.sum(), 1, generator=gen)))
        d2 = torch.minimum(d2, ((X - X[idx[-1]]) ** 2).sum(1))
    return X[idx].clone()


def _ppca(Xc: Tensor, nk: float, rank: int, floor: float, gen: torch.Generator):
    """PPCA of weighted, centred rows Xc [n, D] (Σ rows = nk): returns U [D, r], e [r], τ²."""
    D = Xc.shape[1]
    if min(Xc.shape) <= 2048:
        _, sv, Vh = torch.linalg.svd(Xc, full_matrices=False)
        V = Vh[:rank].T
    else:
        with torch.random.fork_rng():  # svd_lowrank draws from the global RNG: keep it seeded
            torch.manual_seed(int(torch.randint(2**62, (1,), generator=gen)))
            _, sv, V = torch.svd_lowrank(Xc, q=min(rank + 10, min(Xc.shape)), niter=4)
        V = V[:, :rank]
    lam = sv[:rank] ** 2 / nk
    if lam.shape[0] < rank:  # fewer effective points than the rank: pad the basis
        lam = torch.cat([lam, lam.new_zeros(rank - lam.shape[0])])
        Q, _ = torch.linalg.qr(
            torch.cat([V, torch.randn(D, rank - V.shape[1], dtype=V.dtype, generator=gen)], 1)
        )
        V = Q
    total = (Xc * Xc).sum() / nk
    tau2 = max(float((total - lam.sum()) / max(D - rank, 1)), floor)
    return V, torch.clamp(lam, min=tau2), tau2


def em_mppca(
    data: Tensor,
    n_components: int,
    rank: int,
    logits: LogitsFn,
    iters: int = 100,
    tol: float = 1e-5,
    seed: int = 0,
    min_noise_var: float = 1e-4,
    chunk: int = 1024,
) -> MPPCAParams:
    """Fit a mixture of PPCA components to data by EM.

    Args:
        data: [N, *event_shape] training points (any float dtype; fitted in float64).
        n_components: K.
        rank: r, the PPCA latent dimension per component (0 ≤ r < D).
        logits: the component log-densities of given parameters (the E-step).
        iters: maximum EM iterations.
        tol: stop when the mean log-likelihood improves by less than this (nats per point).
        seed: seed of the k-means++ initialisation.
        min_noise_var: floor of τ_k², relative to the mean per-dimension data variance, which keeps
            every component non-degenerate.
        chunk: points per E-step chunk (bounds memory to chunk·K·D).

    Returns:
        The parameters of the last M-step, with the log-likelihood history.
    """
    N = data.shape[0]
    X = data.reshape(N, -1).to(torch.float64)
    D = X.shape[1]
    if not 0 <= rank < D:
        raise ValueError(f"rank must be in [0, D={D}), got {rank}")
    if not 1 <= n_components <= N:
        raise ValueError(f"n_components must be in [1, N={N}], got {n_components}")
    gen = torch.Generator().manual_seed(seed)
    floor = min_noise_var * float(X.var(0).mean())
    means = _kmeanspp(X, n_components, gen)
    R = torch.nn.functional.one_hot(torch.cdist(X, means).argmin(1), n_components).to(X.dtype)
    history: list[float] = []
    params = None
    for _ in range(iters):
        params = _m_step(X, R, rank, floor, gen)
        R, ll = _e_step(logits(params), X, chunk)
        history.append(ll)
        if len(history) > 1 and abs(history[-1] - history[-2]) < tol:
            break
    return params._replace(log_likelihood=history)


def _m_step(X, R, rank, floor, gen) -> MPPCAParams:
    N, D = X.shape
    K = R.shape[1]
    nk = R.sum(0)
    Us, es, taus, means = [], [], [], []
    for k in range(K):
        if nk[k] < rank + 2:  # a dead component restarts on a random point with broad noise
            mu = X[int(torch.randint(N, (1,), generator=gen))]
            Q, _ = torch.linalg.qr(torch.randn(D, rank, dtype=X.dtype, generator=gen))
            var = float(X.var(0).mean())
            Us.append(Q), es.append(torch.full((rank,), var, dtype=X.dtype))
            taus.append(var), means.append(mu)
            continue
        w = R[:, k]
        mu = (w[:, None] * X).sum(0) / nk[k]
        keep = w > 1e-10
        Xc = w[keep].sqrt()[:, None] * (X[keep] - mu)
        U, e, tau2 = _ppca(Xc, float(nk[k]), rank, floor, gen)
        Us.append(U), es.append(e), taus.append(tau2), means.append(mu)
    weights = (nk + 1e-10) / (nk.sum() + K * 1e-10)
    return MPPCAParams(
        weights,
        torch.stack(means),
        torch.stack(Us),
        torch.stack(es),
        torch.tensor(taus, dtype=X.dtype),
        [],
    )


def _e_step(logits: Callable[[Tensor], Tensor], X: Tensor, chunk: int):
    Rs, lls = [], []
    for i in range(0, X.shape[0], chunk):
        lg = logits(X[i : i + chunk])
        Rs.append(torch.softmax(lg, dim=1))
        lls.append(torch.logsumexp(lg, 1))
    return torch.cat(Rs), float(torch.cat(lls).mean())
