"""Noise schedules in log-SNR time.

Every schedule is parametrised by the log signal-to-noise ratio λ = log(α²/σ²) (paper §2; digest
§2.2), with the forward kernel p(x_λ | x_0) = N(α_λ x_0, σ_λ² I). Generation runs λ_min → λ_max
(dλ > 0).
In λ the diffusion quantities are

    f̃(λ) = d log α_λ / dλ          (drift coefficient, f(t) dt = f̃(λ) dλ)
    g̃²(λ) = σ_λ²                    (diffusion coefficient, g²(t) dt = −σ_λ² dλ)

so the reverse SDE reads dx = [f̃ x + σ² s] dλ + σ dW_λ and the PF-ODE dx/dλ = f̃ x + ½ σ² s, where
s = ∇ log p_λ. These identities hold for every schedule because g²(t) = −(dλ/dt) σ_t².
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from cartoonist.diffusion.rng import as_noise

__all__ = ["Schedule", "VP", "VE", "EDM", "Flow"]


def _as_tensor(lam, like: Tensor | None = None) -> Tensor:
    if isinstance(lam, Tensor):
        return lam
    dtype = like.dtype if like is not None else torch.float64
    device = like.device if like is not None else None
    return torch.as_tensor(lam, dtype=dtype, device=device)


@dataclass(frozen=True)
class Schedule(abc.ABC):
    """Base class of a Gaussian diffusion schedule on λ ∈ [lambda_min, lambda_max].

    Subclasses implement `log_alpha2` and `log_sigma2` (as functions of λ) and `f_tilde`. All
    methods accept λ as a float or a tensor of any shape and broadcast elementwise.

    Attributes:
        lambda_min: log-SNR at the noise end (the prior), in nats.
        lambda_max: log-SNR at the data end.
    """

    lambda_min: float
    lambda_max: float

    def __post_init__(self):
        if not (math.isfinite(self.lambda_min) and math.isfinite(self.lambda_max)):
            raise ValueError(
                f"{type(self).__name__}: lambda_min and lambda_max must be finite, "
                f"got [{self.lambda_min}, {self.lambda_max}]"
            )
        if not self.lambda_min < self.lambda_max:
            raise ValueError(
                f"{type(self).__name__}: need lambda_min < lambda_max, "
                f"got [{self.lambda_min}, {self.lambda_max}]"
            )

    # -- coefficients -------------------------------------------------------------------------
    @abc.abstractmethod
    def log_alpha2(self, lam):
        """Log α_λ²."""

    @abc.abstractmethod
    def log_sigma2(self, lam):
        """Log σ_λ²."""

    @abc.abstractmethod
    def f_tilde(self, lam):
        """Drift coefficient f̃(λ) = d log α_λ / dλ (dimensionless)."""

    def alpha(self, lam) -> Tensor:
        """Signal scale α_λ."""
        return torch.exp(0.5 * self.log_alpha2(_as_tensor(lam)))

    def sigma(self, lam) -> Tensor:
        """Noise scale σ_λ."""
        return torch.exp(0.5 * self.log_sigma2(_as_tensor(lam)))

    def g2(self, lam) -> Tensor:
        """Squared diffusion coefficient in λ-time, g̃²(λ) = σ_λ² (digest §2.2)."""
        return torch.exp(self.log_sigma2(_as_tensor(lam)))

    # -- prior ----------------------------------------------------------------------------------
    @property
    def prior_std(self) -> float:
        """Standard deviation σ_{λ_min} of the prior N(0, σ_{λ_min}² I).

        The α x_0 part of the marginal at λ_min is ignored, as in the authors' code.
        """
        return float(self.sigma(torch.tensor(self.lambda_min, dtype=torch.float64)))

    def prior_log_prob(self, x: Tensor) -> Tensor:
        """Log-density of the prior N(0, σ_{λ_min}² I) in nats.

        Args:
            x: [B, ...] points at λ_min.

        Returns:
            [B] log-density per sample (float64).
        """
        x = x.reshape(x.shape[0], -1).to(torch.float64)
        var = self.prior_std**2
        d = x.shape[1]
        return -0.5 * d * math.log(2 * math.pi * var) - 0.5 * (x * x).sum(1) / var

    def sample_prior(self, shape, *, noise=None, dtype=torch.float32, device=None) -> Tensor:
        """Draw x ~ N(0, σ_{λ_min}² I), keyed per sample (see `cartoonist.diffusion.rng`).

        Args:
            shape: (B, *event_shape).
            noise: Keys(seed, sample_ids): sample i uses the stream (seed, sample_ids[i],
                "prior"); None = Keys(0); or a torch.Generator / NoiseSource.
            dtype, device: of the draw.

        Returns:
            [B, *event_shape] prior draw.
        """
        shape = tuple(shape)
        if len(shape) < 1:
            raise ValueError(f"shape must be (B, *event_shape), got {shape}")
        src = as_noise(noise, shape[0], "prior", dtype=dtype, device=device)
        return self.prior_std * src.normal(shape[1:])

    # -- time conversions -----------------------------------------------------------------------
    def lambda_of_t(self, t) -> Tensor:
        """λ as a function of the schedule's own time t ∈ [0, 1].

        Default: linear in λ, t = 0 at λ_max and t = 1 at λ_min.
        """
        t = _as_tensor(t)
        return self.lambda_max + t * (self.lambda_min - self.lambda_max)

    def t_of_lambda(self, lam) -> Tensor:
        """Inverse of `lambda_of_t`."""
        lam = _as_tensor(lam)
        return (self.lambda_max - lam) / (self.lambda_max - self.lambda_min)

    # -- grids ----------------------------------------------------------------------------------
    def grid(
        self, steps: int, lambda_start: float | None = None, lambda_end: float | None = None
    ) -> Tensor:
        """Uniform grid in λ with `steps` intervals (steps + 1 points, float64).

        Args:
            steps: number of steps, ≥ 1.
            lambda_start: first point (default λ_min).
            lambda_end: last point (default λ_max). May be smaller than lambda_start for encoding.
        """
        check_steps(steps)
        a = self.lambda_min if lambda_start is None else float(lambda_start)
        b = self.lambda_max if lambda_end is None else float(lambda_end)
        self.check_lambda(torch.tensor([a, b], dtype=torch.float64), "grid endpoint")
        return torch.linspace(a, b, steps + 1, dtype=torch.float64)

    def check_lambda(self, lam, name: str = "lambda", tol: float = 1e-9) -> None:
        """Raise ValueError if any λ lies outside [λ_min, λ_max] (with a small tolerance)."""
        lam = _as_tensor(lam)
        if not torch.isfinite(lam).all():
            raise ValueError(f"{name} must be finite, got {lam.tolist()}")
        lo, hi = float(lam.min()), float(lam.max())
        if lo < self.lambda_min - tol or hi > self.lambda_max + tol:
            raise ValueError(
                f"{name} outside the schedule's range [{self.lambda_min:g}, {self.lambda_max:g}]: "
                f"got [{lo:g}, {hi:g}]"
            )


def check_steps(steps) -> None:
    """Raise ValueError unless `steps` is a positive integer."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")


@dataclass(frozen=True)
class VP(Schedule):
    """Variance preserving: α² = sigmoid(λ), σ² = sigmoid(−λ), f̃ = ½ sigmoid(−λ) (digest §2.2)."""

    lambda_min: float = -10.0
    lambda_max: float = 10.0

    def log_alpha2(self, lam):
        """Log sigmoid(λ)."""
        return torch.nn.functional.logsigmoid(_as_tensor(lam))

    def log_sigma2(self, lam):
        """Log sigmoid(−λ)."""
        return torch.nn.functional.logsigmoid(-_as_tensor(lam))

    def f_tilde(self, lam):
        """½ sigmoid(−λ)."""
        return 0.5 * torch.sigmoid(-_as_tensor(lam))


@dataclass(frozen=True)
class VE(Schedule):
    """Variance exploding: α = 1, σ = e^{−λ/2}, f̃ = 0."""

    lambda_min: float = -2 * math.log(80.0)
    lambda_max: float = -2 * math.log(0.002)

    def log_alpha2(self, lam):
        """0."""
        return torch.zeros_like(_as_tensor(lam))

    def log_sigma2(self, lam):
        """−λ."""
        return -_as_tensor(lam)

    def f_tilde(self, lam):
        """0."""
        return torch.zeros_like(_as_tensor(lam))


@dataclass(frozen=True)
class EDM(VE):
    """EDM (Karras et al. 2022): VE with t = σ ∈ [sigma_min, sigma_max] and a ρ-spaced σ grid.

    Construct with `EDM.from_sigmas(sigma_min, sigma_max, rho)`; λ = −2 log σ.
    """

    lambda_min: float = -2 * math.log(80.0)
    lambda_max: float = -2 * math.log(0.002)
    rho: float = 7.0

    @classmethod
    def from_sigmas(cls, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0):
        """Schedule on σ ∈ [sigma_min, sigma_max]."""
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        return cls(-2 * math.log(sigma_max), -2 * math.log(sigma_min), rho)

    @property
    def sigma_min(self) -> float:
        """Smallest noise level."""
        return math.exp(-0.5 * self.lambda_max)

    @property
    def sigma_max(self) -> float:
        """Largest noise level."""
        return math.exp(-0.5 * self.lambda_min)

    def lambda_of_sigma(self, sigma) -> Tensor:
        """λ = −2 log σ."""
        return -2 * torch.log(_as_tensor(sigma))

    def lambda_of_t(self, t) -> Tensor:
        """EDM time is σ itself: λ = −2 log t."""
        return self.lambda_of_sigma(t)

    def t_of_lambda(self, lam) -> Tensor:
        """T = σ = e^{−λ/2}."""
        return torch.exp(-0.5 * _as_tensor(lam))

    def rho_grid(self, steps: int) -> Tensor:
        """EDM's ρ-spaced grid (Karras et al. 2022, eq. 5) in λ, from σ_max to σ_min.

        Returns steps + 1 points.

        σ_i = (σ_max^{1/ρ} + i/N (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, i = 0..N.
        """
        check_steps(steps)
        i = torch.arange(steps + 1, dtype=torch.float64) / steps
        a, b = self.sigma_max ** (1 / self.rho), self.sigma_min ** (1 / self.rho)
        sig = (a + i * (b - a)) ** self.rho
        lam = -2 * torch.log(sig)
        lam[0], lam[-1] = self.lambda_min, self.lambda_max  # remove round-off at the ends
        return lam


@dataclass(frozen=True)
class Flow(Schedule):
    """Linear (rectified-flow / flow-matching) path x_t = (1 − t) x_0 + t ε.

    α = 1 − t = sigmoid(λ/2), σ = t = sigmoid(−λ/2), so f̃ = d log α/dλ = ½ sigmoid(−λ/2).
    """

    lambda_min: float = -10.0
    lambda_max: float = 10.0

    def log_alpha2(self, lam):
        """2 log sigmoid(λ/2)."""
        return 2 * torch.nn.functional.logsigmoid(0.5 * _as_tensor(lam))

    def log_sigma2(self, lam):
        """2 log sigmoid(−λ/2)."""
        return 2 * torch.nn.functional.logsigmoid(-0.5 * _as_tensor(lam))

    def f_tilde(self, lam):
        """½ sigmoid(−λ/2)."""
        return 0.5 * torch.sigmoid(-0.5 * _as_tensor(lam))

    def lambda_of_t(self, t) -> Tensor:
        """λ = 2 log((1 − t)/t)."""
        t = _as_tensor(t)
        return 2 * (torch.log1p(-t) - torch.log(t))

    def t_of_lambda(self, lam) -> Tensor:
        """T = sigmoid(−λ/2)."""
        return torch.sigmoid(-0.5 * _as_tensor(lam))
