"""Exact oracle: a Gaussian mixture whose noised marginals stay Gaussian mixtures.

If p_0 = Σ_k π_k N(μ_k, Σ_k) and x_λ = α_λ x_0 + σ_λ ε, then p_λ = Σ_k π_k N(α μ_k, C_k) with
C_k = α² Σ_k + σ² I. Everything the paper needs — log p_λ, the score, Hessian-vector products, the
Laplacian, the gradient of the Laplacian (Theorem 5), E[x_0 | x_λ] and exact posterior samples —
has a closed form, at every noise level λ.

Covariances are stored in an eigen form that makes noising cheap and never builds D×D matrices:

* diagonal:  Σ_k = diag(d_k)                                   (C_k = diag(α² d_k + σ²))
* eigen:     Σ_k = U_k diag(e_k) U_kᵀ + τ_k² (I − U_k U_kᵀ),    U_k ∈ R^{D×r} orthonormal
             (C_k has eigenvalues a = α² e_k + σ² on span U_k and c = α² τ_k² + σ² elsewhere)

The eigen form covers full covariances (r = D) and low-rank-plus-isotropic ones (W Wᵀ + τ² I, the
probabilistic-PCA model fitted by `fit_mppca`). Cost per call is O(B K D r) time and memory.

Notation of the derivatives (per component k, v_k = x − α μ_k, b_k = −C_k⁻¹ v_k, responsibilities
r_k):
    s      = Σ r_k b_k
    H v    = Σ r_k (−C_k⁻¹ v + b_k (b_k·v)) − s (s·v)
    Δ      = Σ r_k L_k − ‖s‖²,          L_k = −tr C_k⁻¹ + ‖b_k‖²
    ∇Δ     = Σ r_k L_k (b_k − s) − 2 Σ r_k C_k⁻¹ b_k − 2 H s
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from cartoonist.diffusion.schedules import VP, Schedule
from cartoonist.oracles.covariance import LowRankCov, check_eigen, parse_covariances
from cartoonist.oracles.fit import MPPCAParams, em_mppca

__all__ = ["GaussianMixture", "LowRankCov", "fit_mppca"]


@dataclass
class _Parts:
    """Per-call intermediate quantities (all batch-first)."""

    v: Tensor  # [B, K, D]  x − α μ_k
    b: Tensor  # [B, K, D]  −C_k⁻¹ v_k (component scores)
    resp: Tensor  # [B, K]   responsibilities
    logits: Tensor  # [B, K]  log π_k + log N_k(x)
    A: Tensor  # [B, K, r] noised eigenvalues on the subspace (diag: [B, K, D])
    c: Tensor | None  # [B, K] noised complement variance (eigen form with r < D)
    trinv: Tensor  # [B, K] tr C_k⁻¹

    @property
    def score(self) -> Tensor:
        return (self.resp.unsqueeze(-1) * self.b).sum(1)


class GaussianMixture:
    """Gaussian mixture p_0 with closed-form noised marginals p_λ under a schedule.

    Args:
        weights: [K] mixture weights (normalised internally).
        means: [K, D] component means (event shape is flattened; see `event_shape`).
        covariances: one of
            * [K, D]  diagonal variances,
            * [K, D, D] full covariances,
            * [K] or a float: isotropic variances,
            * `LowRankCov(factors [K, D, r], noise_var [K])`.
        schedule: the diffusion schedule defining p_λ (default `VP()`).
        event_shape: shape of one sample (default (D,)); inputs [B, *event_shape] are accepted.
        dtype: computation dtype (default float64: the oracle is the ground truth).

    All methods take x of shape [B, *event_shape] and λ as a float (λ = inf gives p_0) or a [B]
    tensor, and return results in x's dtype (log-densities in float64, nats).
    """

    def __init__(
        self,
        weights,
        means,
        covariances,
        schedule: Schedule | None = None,
        event_shape=None,
        dtype=torch.float64,
    ):
        means = torch.as_tensor(means, dtype=dtype)
        if means.dim() != 2:
            raise ValueError(f"means must be [K, D], got shape {tuple(means.shape)}")
        K, D = means.shape
        weights = torch.as_tensor(weights, dtype=dtype).reshape(-1)
        if weights.shape != (K,) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"weights must be [K={K}] non-negative with positive sum")
        self.log_weights = torch.log(weights / weights.sum())
        self.means, self.schedule, self.dtype = means, schedule or VP(), dtype
        self.event_shape = tuple(event_shape) if event_shape is not None else (D,)
        if math.prod(self.event_shape) != D:
            raise ValueError(f"event_shape {self.event_shape} does not have D={D} elements")
        self.U = self.e = self.tau2 = self.var = None
        self._set_covariances(covariances, K, D, dtype)

    # -- construction --------------------------------------------------------------------------
    def _set_covariances(self, cov, K, D, dtype):
        self.var, eigen = parse_covariances(cov, K, D, dtype)
        if eigen is not None:
            self._set_eigen(*eigen)

    def _set_eigen(self, U, e, tau2):
        self.U, self.e, self.tau2 = check_eigen(U, e, tau2, *self.means.shape)

    @classmethod
    def from_eigen(cls, weights, means, U, e, tau2, **kwargs) -> "GaussianMixture":
        """Build from the eigen form Σ_k = U_k diag(e_k) U_kᵀ + τ_k² (I − U_k U_kᵀ).

        Args:
            weights: [K]; means: [K, D]; U: [K, D, r] with orthonormal columns; e: [K, r] ≥ 0;
            tau2: [K] ≥ 0 (ignored when r = D).
            **kwargs: schedule, event_shape and dtype, as for the constructor.
        """
        new = cls(weights, means, 1.0, **kwargs)  # isotropic placeholder, replaced below
        new.var, dt = None, new.dtype
        new._set_eigen(
            torch.as_tensor(U, dtype=dt),
            torch.as_tensor(e, dtype=dt),
            torch.as_tensor(tau2, dtype=dt).expand(new.n_components).clone(),
        )
        return new

    @classmethod
    def fit(
        cls, data: Tensor, n_components: int, rank: int, schedule: Schedule | None = None, **kwargs
    ) -> "GaussianMixture":
        """Fit a mixture of probabilistic PCA components by EM (`cartoonist.oracles.fit`).

        Args:
            data: [N, *event_shape] training points; n_components: K; rank: r (0 ≤ r < D).
            schedule: schedule attached to the returned oracle.
            **kwargs: iters, tol, seed, min_noise_var, chunk of `em_mppca`.

        Returns:
            GaussianMixture with eigen-form covariances; `fit_log_likelihood` holds the mean
            log p_0 of the training data per EM iteration (nats per point).
        """

        def build(p: MPPCAParams) -> "GaussianMixture":
            return cls.from_eigen(
                p.weights, p.means, p.U, p.e, p.tau2, schedule=schedule, event_shape=event_shape
            )

        def logits(p: MPPCAParams):  # the E-step's log π_k + log N_k(x) under p_0
            gmm, inf = build(p), torch.tensor(math.inf, dtype=p.means.dtype)
            return lambda X: gmm._parts(*gmm._prep(X, inf)).logits

        event_shape = tuple(data.shape[1:])
        params = em_mppca(data, n_components, rank, logits, **kwargs)
        gmm = build(params)
        gmm.fit_log_likelihood = params.log_likelihood
        return gmm

    def with_schedule(self, schedule: Schedule) -> "GaussianMixture":
        """The same p_0 under another diffusion schedule (tensors are shared)."""
        new = object.__new__(GaussianMixture)
        new.__dict__.update(self.__dict__)
        new.schedule = schedule
        return new

    def to(self, device=None, dtype=None) -> "GaussianMixture":
        """The same mixture with its tensors on `device` and in `dtype` (e.g. "cuda").

        Sampling still draws from CPU generators (the same numbers on every device) and moves
        the draws; the schedule is shared.
        """
        new = object.__new__(GaussianMixture)
        new.__dict__.update(self.__dict__)
        new.dtype = dtype or self.dtype
        for k in ("log_weights", "means", "U", "e", "tau2", "var"):
            v = getattr(self, k)
            if v is not None:
                setattr(new, k, v.to(device=device, dtype=new.dtype))
        return new

    @property
    def device(self) -> torch.device:
        """Where the mixture's tensors live."""
        return self.means.device

    @property
    def dim(self) -> int:
        """Data dimension D."""
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        """Number of components K."""
        return self.means.shape[0]

    @property
    def _diag(self) -> bool:
        return self.var is not None

    @property
    def _rank(self) -> int:
        return self.dim if self._diag else self.U.shape[2]

    # -- linear algebra in the eigen form ------------------------------------------------------
    def _coords(self, v: Tensor) -> Tensor:
        return v if self._diag else torch.einsum("bkd,kdr->bkr", v, self.U)

    def _from_coords(self, c: Tensor) -> Tensor:
        return c if self._diag else torch.einsum("bkr,kdr->bkd", c, self.U)

    def _apply(self, fa: Tensor, fc: Tensor | None, v: Tensor) -> Tensor:
        """φ(C_k) v_k for [B, K, D] v, given φ on the subspace (fa) and on the complement (fc)."""
        co = self._coords(v)
        out = self._from_coords(fa * co)
        if fc is not None:
            out = out + fc.unsqueeze(-1) * (v - self._from_coords(co))
        return out

    def _spectrum(self, a2: Tensor, s2: Tensor):
        a2, s2 = a2[:, None, None], s2[:, None, None]
        if self._diag:
            return a2 * self.var + s2, None
        A = a2 * self.e + s2
        c = (a2[..., 0] * self.tau2 + s2[..., 0]) if self._rank < self.dim else None
        return A, c

    # -- core evaluation -----------------------------------------------------------------------
    def _prep(self, x: Tensor, lam):
        if x.shape[1:] != self.event_shape and x.shape[1:] != (self.dim,):
            raise ValueError(
                f"x must be [B, {', '.join(map(str, self.event_shape))}], got {tuple(x.shape)}"
            )
        xf = x.reshape(x.shape[0], -1).to(self.dtype)
        lam = torch.as_tensor(lam, dtype=self.dtype, device=xf.device)
        lam = lam.expand(xf.shape[0]) if lam.dim() == 0 else lam.reshape(-1)
        if lam.shape[0] != xf.shape[0]:
            raise ValueError(f"lam must be a scalar or [B={xf.shape[0]}], got {tuple(lam.shape)}")
        a2 = torch.exp(self.schedule.log_alpha2(lam))
        s2 = torch.exp(self.schedule.log_sigma2(lam))
        return xf, a2, s2

    def _parts(self, xf: Tensor, a2: Tensor, s2: Tensor) -> _Parts:
        D, r = self.dim, self._rank
        A, c = self._spectrum(a2, s2)
        v = xf[:, None, :] - a2.sqrt()[:, None, None] * self.means[None]
        co = self._coords(v)
        quad = (co * co / A).sum(-1)
        logdet = torch.log(A).sum(-1)
        trinv = (1 / A).sum(-1)
        b = -self._from_coords(co / A)
        if c is not None:
            resid = v - self._from_coords(co)
            quad = quad + (resid * resid).sum(-1) / c
            logdet = logdet + (D - r) * torch.log(c)
            trinv = trinv + (D - r) / c
            b = b - resid / c.unsqueeze(-1)
        logits = self.log_weights - 0.5 * (D * math.log(2 * math.pi) + logdet + quad)
        resp = torch.softmax(logits, dim=1)
        return _Parts(v, b, resp, logits, A, c, trinv)

    def _out(self, t: Tensor, x: Tensor) -> Tensor:
        return t.reshape(x.shape).to(x.dtype)

    # -- public closed forms -------------------------------------------------------------------
    def log_prob(self, x: Tensor, lam) -> Tensor:
        """Log p_λ(x) in nats, [B] float64 (λ = inf gives the data density p_0)."""
        p = self._parts(*self._prep(x, lam))
        return torch.logsumexp(p.logits, dim=1)

    def score(self, x: Tensor, lam) -> Tensor:
        """∇_x log p_λ(x), [B, *event_shape]."""
        return self._out(self._parts(*self._prep(x, lam)).score, x)

    def __call__(self, x: Tensor, lam) -> Tensor:
        """Alias of `score`, so the oracle is itself a score function."""
        return self.score(x, lam)

    def _hvp(self, p: _Parts, a2, s2, u: Tensor) -> Tensor:
        """H u for [B, D] u."""
        A, c = p.A, p.c
        Cinv_u = self._apply(
            1 / A, None if c is None else 1 / c, u[:, None, :].expand_as(p.v).contiguous()
        )
        bu = (p.b * u[:, None, :]).sum(-1, keepdim=True)
        s = p.score
        inner = (p.resp.unsqueeze(-1) * (-Cinv_u + p.b * bu)).sum(1)
        return inner - s * (s * u).sum(-1, keepdim=True)

    def hvp(self, x: Tensor, lam, u: Tensor) -> Tensor:
        """Hessian-vector product ∇²log p_λ(x) u, [B, *event_shape]."""
        xf, a2, s2 = self._prep(x, lam)
        p = self._parts(xf, a2, s2)
        return self._out(self._hvp(p, a2, s2, u.reshape(xf.shape).to(self.dtype)), x)

    def hessian(self, x: Tensor, lam) -> Tensor:
        """Full Hessian ∇²log p_λ(x), [B, D, D] (small D only: D Hessian-vector products)."""
        xf, a2, s2 = self._prep(x, lam)
        p = self._parts(xf, a2, s2)
        eye = torch.eye(self.dim, dtype=self.dtype, device=xf.device)
        cols = [self._hvp(p, a2, s2, eye[i].expand_as(xf)) for i in range(self.dim)]
        return torch.stack(cols, dim=-1).to(x.dtype)

    def laplacian(self, x: Tensor, lam) -> Tensor:
        """Δ log p_λ(x) = tr ∇²log p_λ(x), [B]."""
        p = self._parts(*self._prep(x, lam))
        L = -p.trinv + (p.b * p.b).sum(-1)
        s = p.score
        return ((p.resp * L).sum(1) - (s * s).sum(-1)).to(x.dtype)

    def grad_laplacian(self, x: Tensor, lam) -> Tensor:
        """∇_x Δ log p_λ(x) (third derivatives; Theorem 5), [B, *event_shape]."""
        xf, a2, s2 = self._prep(x, lam)
        p = self._parts(xf, a2, s2)
        s = p.score
        L = -p.trinv + (p.b * p.b).sum(-1)
        Cinv_b = self._apply(1 / p.A, None if p.c is None else 1 / p.c, p.b)
        term1 = (p.resp.unsqueeze(-1) * L.unsqueeze(-1) * (p.b - s[:, None])).sum(1)
        term2 = -2 * (p.resp.unsqueeze(-1) * Cinv_b).sum(1)
        return self._out(term1 + term2 - 2 * self._hvp(p, a2, s2, s), x)

    def posterior_mean(self, x: Tensor, lam) -> Tensor:
        """E[x_0 | x_λ = x] by Tweedie's formula (x + σ² ∇log p_λ)/α, [B, *event_shape]."""
        xf, a2, s2 = self._prep(x, lam)
        s = self._parts(xf, a2, s2).score
        return self._out((xf + s2[:, None] * s) / a2.sqrt()[:, None], x)

    # -- sampling ------------------------------------------------------------------------------
    def _sqrt_apply(self, k: Tensor, fa: Tensor, fc: Tensor | None, z: Tensor) -> Tensor:
        """φ(Σ_k)^{1/2}-type product for the selected components k [B]: U(fa ⊙ Uᵀz) + fc·resid."""
        if self._diag:
            return fa * z
        U = self.U[k]  # [B, D, r]
        co = torch.einsum("bd,bdr->br", z, U)
        out = torch.einsum("br,bdr->bd", fa * co, U)
        if fc is not None:
            out = out + fc[:, None] * (z - torch.einsum("br,bdr->bd", co, U))
        return out

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Exact samples x_0 ~ p_0, [n, *event_shape]."""
        dev = self.device  # draws on the CPU (generator), then moved: the same on every device
        w = self.log_weights.exp().cpu()
        k = torch.multinomial(w, n, replacement=True, generator=generator).to(dev)
        z = torch.randn(n, self.dim, dtype=self.dtype, generator=generator).to(dev)
        if self._diag:
            x = self.means[k] + self.var[k].sqrt() * z
        else:
            fc = self.tau2[k].sqrt() if self._rank < self.dim else None
            x = self.means[k] + self._sqrt_apply(k, self.e[k].sqrt(), fc, z)
        return x.reshape(n, *self.event_shape)

    def sample_noised(self, n: int, lam, generator: torch.Generator | None = None) -> Tensor:
        """Exact samples x_λ ~ p_λ (x_0 ~ p_0, x_λ = α x_0 + σ ε), [n, *event_shape]."""
        lam = torch.as_tensor(lam, dtype=self.dtype, device=self.device).expand(n)
        a = self.schedule.alpha(lam).reshape(n, *[1] * len(self.event_shape))
        s = self.schedule.sigma(lam).reshape(a.shape)
        x0 = self.sample(n, generator)
        eps = torch.randn(x0.shape, dtype=self.dtype, generator=generator).to(self.device)
        return a * x0 + s * eps

    def sample_posterior(self, x: Tensor, lam, generator: torch.Generator | None = None) -> Tensor:
        """Exact samples x_0 ~ p(x_0 | x_λ = x), [B, *event_shape].

        Per component the posterior is Gaussian with mean μ_k + α Σ_k C_k⁻¹ v_k and covariance
        σ² Σ_k C_k⁻¹ (same eigenbasis as Σ_k); the component is drawn from the responsibilities.
        """
        xf, a2, s2 = self._prep(x, lam)
        p = self._parts(xf, a2, s2)
        B = xf.shape[0]
        dev = xf.device
        k = torch.multinomial(p.resp.cpu(), 1, generator=generator)[:, 0].to(dev)
        idx = torch.arange(B, device=dev)
        A, v = p.A[idx, k], p.v[idx, k]
        z = torch.randn(B, self.dim, dtype=self.dtype, generator=generator).to(dev)
        a = a2.sqrt()[:, None]
        if self._diag:
            var = self.var[k]
            mean = self.means[k] + a * var / A * v
            return self._out(mean + (var * s2[:, None] / A).sqrt() * z, x)
        e, fc, fcm = self.e[k], None, None
        if p.c is not None:
            c, tau2 = p.c[idx, k], self.tau2[k]
            fc, fcm = (tau2 * s2 / c).sqrt(), a[:, 0] * tau2 / c
        mean = self.means[k] + self._sqrt_apply(k, a * e / A, fcm, v)
        return self._out(mean + self._sqrt_apply(k, (e * s2[:, None] / A).sqrt(), fc, z), x)


def fit_mppca(data: Tensor, n_components: int, rank: int, **kwargs) -> GaussianMixture:
    """Fit a mixture of PPCA components to data by EM: `GaussianMixture.fit`."""
    return GaussianMixture.fit(data, n_components, rank, **kwargs)
