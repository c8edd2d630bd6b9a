"""The continuous-time ELBO (Theorem 4; Song et al. 2021) and bits per dimension.

Theorem 4: the expectation of the Theorem 2 estimator run with a learned score s_θ is

    ELBO(x_0) = E[log p_prior(x_{λ_min}) | x_0]
                − ∫_{λ_min}^{λ_max} E_{x_λ}[D f̃ + σ²(div s_θ + ½‖s_θ‖²)] dλ,

with x_λ = α x_0 + σ ε (digest §3.4). Stein's identity E[div s_θ] = E[s_θ · ε/σ] turns it into the
denoising form used by default, which needs no divergence (no JVP) and has lower variance:

    ELBO(x_0) = E[log p_prior] − D (log α_{λ_max} − log α_{λ_min}) + D (λ_max − λ_min)/2
                − ½ ∫ E‖σ s_θ(x_λ) + ε‖² dλ.

(With ε-prediction, σ s_θ = −ε̂ and the integrand is the familiar ½‖ε − ε̂‖².) The ELBO lower-bounds
E_ε[log p^SDE_{λ_max}(α_{λ_max} x_0 + σ_{λ_max} ε)], the model's density at the truncation level
smoothed by its noise; with the exact score and prior the bound is tight. The λ-integral is
estimated by Monte Carlo with stratified λ draws from a proposal density q(λ) (importance weights
1/q).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from cartoonist.diffusion.contract import check_choice, check_divergence, check_inputs
from cartoonist.diffusion.divergence import score_and_laplacian
from cartoonist.diffusion.results import LikelihoodResult
from cartoonist.diffusion.rng import as_noise
from cartoonist.diffusion.schedules import Schedule
from cartoonist.diffusion.score import as_counted

__all__ = ["LambdaProposal", "elbo", "bits_per_dim", "dequantize"]


@dataclass
class LambdaProposal:
    """Piecewise-constant proposal density q(λ) on [edges[0], edges[-1]] for importance sampling.

    Attributes:
        edges: [M + 1] increasing bin edges.
        weights: [M] non-negative bin masses (normalised internally).
    """

    edges: Tensor
    weights: Tensor

    @classmethod
    def uniform(cls, lambda_min: float, lambda_max: float) -> "LambdaProposal":
        """q(λ) = 1/(λ_max − λ_min)."""
        return cls(
            torch.tensor([lambda_min, lambda_max], dtype=torch.float64),
            torch.ones(1, dtype=torch.float64),
        )

    @classmethod
    def from_values(cls, lam: Tensor, values: Tensor, edges: Tensor, floor: float = 0.05):
        """Fit bins to pilot integrand magnitudes (Kingma & Gao-style adaptive proposal).

        Args:
            lam: [N] pilot λ points; values: [N] pilot |integrand| values.
            edges: [M + 1] bin edges.
            floor: fraction of uniform mass mixed in, so no bin has zero density.
        """
        edges = edges.to(torch.float64)
        idx = torch.bucketize(lam.to(torch.float64), edges[1:-1])
        M = edges.numel() - 1
        tot = torch.zeros(M, dtype=torch.float64).index_add_(0, idx, values.abs().double())
        cnt = torch.zeros(M, dtype=torch.float64).index_add_(0, idx, torch.ones_like(tot[idx]))
        mass = (tot / cnt.clamp(min=1)) * (edges[1:] - edges[:-1])
        mass = mass / mass.sum()
        width = (edges[1:] - edges[:-1]) / (edges[-1] - edges[0])
        return cls(edges, (1 - floor) * mass + floor * width)

    def _cdf(self):
        w = self.weights / self.weights.sum()
        return w, torch.cat([w.new_zeros(1), torch.cumsum(w, 0)])

    def icdf(self, u: Tensor) -> Tensor:
        """Inverse CDF: u ∈ [0, 1) -> λ."""
        w, cdf = self._cdf()
        i = torch.clamp(torch.bucketize(u, cdf[1:-1]), 0, w.numel() - 1)
        frac = (u - cdf[i]) / w[i].clamp(min=1e-300)
        return self.edges[i] + frac * (self.edges[i + 1] - self.edges[i])

    def pdf(self, lam: Tensor) -> Tensor:
        """q(λ)."""
        w, _ = self._cdf()
        i = torch.clamp(torch.bucketize(lam, self.edges[1:-1]), 0, w.numel() - 1)
        return w[i] / (self.edges[i + 1] - self.edges[i])


def elbo(
    score,
    schedule: Schedule,
    x: Tensor,
    n_lambda: int = 64,
    *,
    estimator: str = "denoising",
    proposal: LambdaProposal | None = None,
    noise=None,
    prior_log_prob=None,
    probes: int = 1,
) -> LikelihoodResult:
    """Monte Carlo continuous-time ELBO per sample, in nats (Theorem 4).

    Args:
        score: score function (x [B, ...], lam [B]) -> [B, ...].
        schedule: diffusion schedule (integral over [λ_min, λ_max]).
        x: [B, ...] data points (at λ_max).
        n_lambda: λ points per sample (stratified: one per quantile interval of the proposal).
        estimator: "denoising" (default; no divergence) or "divergence" (the Theorem 4 form
            with a Hutchinson trace).
        proposal: q(λ) (default uniform); see `LambdaProposal.from_values` for an adaptive one.
        noise: Keys (per-sample draws of λ from stream "lambda", ε from "brownian", probes from
            "probe"; default Keys(0)), or a torch.Generator / NoiseSource that supplies all.
        prior_log_prob: callable [B, ...] -> [B] density at λ_min; by default the schedule's
            Gaussian prior, whose expectation is taken in closed form.
        probes: Hutchinson probes (divergence estimator only).

    Returns:
        LikelihoodResult(logp [B] = ELBO in nats, nfe, stderr [B] of the Monte Carlo estimate).
    """
    x0 = check_inputs(x, schedule, noise)
    check_choice(estimator, ("denoising", "divergence"), "estimator")
    if isinstance(n_lambda, bool) or not isinstance(n_lambda, int) or n_lambda < 2:
        raise ValueError(f"n_lambda must be an integer ≥ 2, got {n_lambda!r}")
    check_divergence("hutchinson", probes, "forward")
    if proposal is not None and not isinstance(proposal, LambdaProposal):
        raise ValueError(f"proposal must be a LambdaProposal, got {type(proposal).__name__}")
    proposal = proposal or LambdaProposal.uniform(schedule.lambda_min, schedule.lambda_max)
    schedule.check_lambda(proposal.edges[[0, -1]], "proposal support")
    sc = as_counted(score, noise)
    B, D, event = x0.shape[0], x0[0].numel(), x0.shape[1:]
    lam_src = as_noise(noise, B, "lambda", dtype=torch.float64)
    eps_src = as_noise(noise, B, "brownian", dtype=x0.dtype, device=x0.device)
    probe_src = as_noise(noise, B, "probe", dtype=x0.dtype, device=x0.device)
    vals = []
    for j in range(n_lambda):
        u = (j + torch.special.ndtr(lam_src.normal(()))) / n_lambda  # stratified uniform
        lam = proposal.icdf(u.clamp(0, 1 - 1e-12))
        vals.append(
            _integrand(
                sc, schedule, x0, lam, eps_src.normal(event).to(x0), estimator, probes, probe_src
            )
            / proposal.pdf(lam).to(x0.device)
        )
    vals = torch.stack(vals, 1)  # [B, n]
    integral, stderr = vals.mean(1), vals.std(1) / math.sqrt(n_lambda)
    lo, hi = schedule.lambda_min, schedule.lambda_max
    prior = _prior_term(schedule, x0, prior_log_prob, eps_src)
    if estimator == "denoising":
        la = schedule.log_alpha2(torch.tensor([lo, hi], dtype=torch.float64)) / 2
        const = -D * float(la[1] - la[0]) + 0.5 * D * (hi - lo)
        value = prior + const - integral
    else:
        value = prior - integral
    return LikelihoodResult(
        logp=value, nfe=sc.nfe, stderr=stderr, info={"estimator": estimator, "n_lambda": n_lambda}
    )


def _integrand(sc, schedule, x0, lam, eps, estimator, probes, probe_src) -> Tensor:
    """Per-sample integrand at per-sample λ [B] (float64 result)."""
    B, D = x0.shape[0], x0[0].numel()
    shape = (B,) + (1,) * (x0.dim() - 1)
    lam_x = lam.to(x0.dtype)
    a = schedule.alpha(lam).reshape(shape).to(x0)
    s = schedule.sigma(lam).reshape(shape).to(x0)
    x = a * x0 + s * eps
    if estimator == "denoising":
        r = s * sc(x, lam_x) + eps
        return 0.5 * (r * r).reshape(B, -1).sum(1).to(torch.float64)
    out, div = score_and_laplacian(sc, x, lam_x, "hutchinson", probes, probe_src)
    sq = (out * out).reshape(B, -1).sum(1)
    g2 = (s * s).reshape(B)
    return D * schedule.f_tilde(lam).to(x0.device) + g2.double() * (div + 0.5 * sq).double()


def _prior_term(schedule, x0, prior_log_prob, eps_src) -> Tensor:
    """E[log p_prior(x_{λ_min}) | x_0]: closed form for the Gaussian prior, else one MC draw."""
    lo = torch.tensor(schedule.lambda_min, dtype=torch.float64)
    a2, s2 = float(schedule.log_alpha2(lo).exp()), float(schedule.log_sigma2(lo).exp())
    B, D = x0.shape[0], x0[0].numel()
    if prior_log_prob is None:
        var = schedule.prior_std**2
        sq = (x0.double() ** 2).reshape(B, -1).sum(1)
        return -0.5 * D * math.log(2 * math.pi * var) - (a2 * sq + D * s2) / (2 * var)
    x = a2**0.5 * x0 + s2**0.5 * eps_src.normal(x0.shape[1:]).to(x0)
    return prior_log_prob(x).to(torch.float64)


def bits_per_dim(logp: Tensor, dim: int, log_jacobian: float = 0.0) -> Tensor:
    """Bits per dimension from a log-density in nats.

    For discrete pixels k ∈ {0, …, 255}^D mapped to model space by x = a (k + u) + b with u ~ U[0,
    1)^D (uniform dequantisation), Jensen's inequality gives the discrete log-likelihood bound log
    P(k) ≥ E_u[log p(x)] + D log|a|; pass `log_jacobian = D log|a|` (e.g. D log(2/256) for data
    scaled to [−1, 1]) so the result is in bits per 8-bit pixel value.

    Args:
        logp: [B] log-density of the model-space points (nats).
        dim: D.
        log_jacobian: D log|a| of the affine map from pixel space (nats).

    Returns:
        [B] bits/dim = −(logp + log_jacobian) / (D ln 2).
    """
    return -(logp + log_jacobian) / (dim * math.log(2.0))


def dequantize(
    pixels: Tensor,
    scale: float = 2.0 / 256,
    shift: float = -1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, float]:
    """Uniformly dequantise integer pixels: x = scale · (k + u) + shift, u ~ U[0, 1).

    Args:
        pixels: [B, ...] integer values (e.g. uint8 in 0..255).
        scale, shift: the affine map to model space (default [−1, 1) for 8-bit data).

    Returns:
        (x [B, ...] float32, log_jacobian = D log|scale| to pass to `bits_per_dim`).
    """
    u = torch.rand(pixels.shape, generator=generator)
    x = scale * (pixels.float() + u) + shift
    return x, pixels[0].numel() * math.log(abs(scale))
