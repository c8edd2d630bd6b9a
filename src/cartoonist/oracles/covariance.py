"""Covariance specifications of a Gaussian mixture, reduced to the forms `GaussianMixture` uses.

* diagonal:  Σ_k = diag(d_k), stored as `var` [K, D];
* eigen:     Σ_k = U_k diag(e_k) U_kᵀ + τ_k² (I − U_k U_kᵀ), stored as U [K, D, r] (orthonormal
             columns), e [K, r] and τ² [K].

Full covariances, isotropic variances and low-rank-plus-isotropic `LowRankCov` are converted here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["LowRankCov", "check_eigen", "parse_covariances"]


@dataclass
class LowRankCov:
    """Low-rank-plus-isotropic covariances Σ_k = W_k W_kᵀ + τ_k² I.

    Attributes:
        factors: [K, D, r] the W_k.
        noise_var: [K] (or a float) the τ_k².
    """

    factors: Tensor
    noise_var: Tensor | float


def parse_covariances(cov, K: int, D: int, dtype):
    """(var, None) for diagonal specifications, (None, (U, e, τ²)) for the others (unchecked)."""
    if isinstance(cov, LowRankCov):
        W = torch.as_tensor(cov.factors, dtype=dtype)
        tau2 = torch.as_tensor(cov.noise_var, dtype=dtype).expand(K).clone()
        if W.dim() != 3 or W.shape[:2] != (K, D):
            raise ValueError(f"LowRankCov.factors must be [K={K}, D={D}, r], got {tuple(W.shape)}")
        # W = Q R (thin QR), R = Ur diag(sv) Vᵀ (r×r SVD)  ⇒  W Wᵀ = (Q Ur) diag(sv²) (Q Ur)ᵀ
        Q, R = torch.linalg.qr(W)
        Ur, sv, _ = torch.linalg.svd(R)
        return None, (Q @ Ur, sv**2 + tau2[:, None], tau2)
    cov = torch.as_tensor(cov, dtype=dtype)
    if cov.dim() == 0 or cov.shape == (K,):
        var = cov.reshape(-1, 1).expand(K, D).clone()
    elif cov.shape == (K, D):
        var = cov.clone()
    elif cov.shape == (K, D, D):
        if not torch.allclose(cov, cov.transpose(1, 2)):
            raise ValueError("full covariances must be symmetric")
        e, U = torch.linalg.eigh(cov)
        return None, (U, e, torch.zeros(K, dtype=dtype))
    else:
        raise ValueError(
            f"covariances must be [K,D] (diagonal), [K,D,D] (full), [K] (isotropic) or "
            f"LowRankCov; got shape {tuple(cov.shape)} for K={K}, D={D}"
        )
    if (var <= 0).any():
        raise ValueError("diagonal variances must be positive")
    return var, None


def check_eigen(U: Tensor, e: Tensor, tau2: Tensor, K: int, D: int):
    """Validate an eigen form; returns (U, e clamped at 0, τ²)."""
    if U.dim() != 3 or U.shape[:2] != (K, D) or e.shape != (K, U.shape[2]) or U.shape[2] > D:
        raise ValueError(
            f"eigen form needs U [K={K}, D={D}, r ≤ D] and e [K, r], got "
            f"{tuple(U.shape)} and {tuple(e.shape)}"
        )
    # eigh returns round-off negatives (~1e-15) for singular PSD matrices: clamp those.
    tiny = 1e-10 * (e.abs().amax(dim=-1, keepdim=True).clamp(min=1.0) if e.numel() else 1.0)
    if (e < -tiny).any() or (tau2 < 0).any():
        raise ValueError("covariances must be positive semi-definite")
    return U, e.clamp(min=0), tau2
