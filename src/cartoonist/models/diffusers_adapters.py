"""Score functions of diffusers UNets in log-SNR time λ (pure torch; nothing imports diffusers).

* `DiscreteUNetScore`: a discrete-time VP model (DDPM/DDIM, Ho et al. 2020) trained at N integer
  timesteps n, ε-, v- or x_0-prediction; a λ between two trained steps is fed as a fractional
  timestep (`DiscreteTimeMap`).
* `SigmaUNetScore`: a VE model trained on continuous σ (score-SDE NCSN++, Song et al. 2021).

See `cartoonist.models.adapters` for the conventions every adapter shares.
"""

from __future__ import annotations

import contextlib
import math
from typing import Sequence

import torch
from torch import Tensor, nn

from cartoonist.diffusion.schedules import VE, VP
from cartoonist.diffusion.score import score_from_eps, score_from_v, score_from_x0
from cartoonist.models.adapters import ScoreModule

__all__ = ["DiscreteTimeMap", "DiscreteUNetScore", "SigmaUNetScore", "PREDICTION_TYPES"]

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


# -- discrete-time VP models (DDPM / DDIM) -------------------------------------------------------
class DiscreteTimeMap(nn.Module):
    """Log-SNR λ ↔ timestep of a discrete-time VP model trained on ᾱ_0 > … > ᾱ_{N−1}.

    λ_n = log ᾱ_n − log(1 − ᾱ_n) is strictly decreasing in n. A query λ ∈ [λ_{N−1}, λ_0] maps to
    the fractional timestep t obtained by interpolating n linearly in λ between the two trained
    steps around it: t = n + (λ_n − λ) / (λ_n − λ_{n+1}). The map is exact at every trained step
    (t(λ_n) = n), continuous and strictly decreasing in between.

    The network was only trained at integer n, so feeding a fractional t relies on its (smooth,
    sinusoidal) time embedding to interpolate. Piecewise-linear interpolation in λ is one choice
    among several (linear in log ᾱ, in β, ...); they agree at the trained steps and differ between
    them by a fraction of one step's λ increment (λ_n − λ_{n+1} ≈ 0.005–0.2 nats for the linear
    1000-step DDPM schedule). README "Pretrained models" gives the measured effect on the score.
    A zero-SNR final step (ᾱ_{N−1} = 0, λ = −∞) is dropped, so λ_min is finite.

    Args:
        alphas_cumprod: [N] the scheduler's ᾱ_n (as it was used in training), N ≥ 2.

    Attributes:
        lambdas: [M] float64 λ_n of the trained steps kept (M = N, or N − 1 for zero terminal SNR).
        lambda_min, lambda_max: λ_{M−1} and λ_0, the trained range.
    """

    def __init__(self, alphas_cumprod):
        super().__init__()
        a = torch.as_tensor(alphas_cumprod).detach().to(torch.float64).reshape(-1).cpu()
        if a.numel() < 2:
            raise ValueError(f"need at least 2 timesteps, got {a.numel()}")
        if not bool(((a >= 0) & (a < 1)).all()):
            raise ValueError("alphas_cumprod must lie in [0, 1): a step with ᾱ = 1 has no noise")
        if float(a[-1]) == 0.0:  # zero terminal SNR (Lin et al. 2024): λ = −∞, drop it
            a = a[:-1]
        if not bool((a > 0).all()) or a.numel() < 2:
            raise ValueError("alphas_cumprod must be positive (except a zero-SNR last step)")
        lam = torch.log(a) - torch.log1p(-a)
        if not bool((lam[1:] < lam[:-1]).all()):
            raise ValueError("alphas_cumprod must be strictly decreasing in the timestep")
        self.register_buffer("lambdas", lam)
        self.lambda_min, self.lambda_max = float(lam[-1]), float(lam[0])

    @property
    def num_steps(self) -> int:
        """Number of trained steps kept, M."""
        return self.lambdas.numel()

    def timestep(self, lam: Tensor) -> Tensor:
        """Fractional timestep t(λ) ∈ [0, M − 1] (float64, λ's shape); λ clamped to the range."""
        lam_inc = self.lambdas.flip(0)  # increasing; index m ↔ timestep M − 1 − m
        lam = lam.to(device=lam_inc.device, dtype=torch.float64).clamp(
            self.lambda_min, self.lambda_max
        )
        m = torch.searchsorted(lam_inc, lam).clamp(1, lam_inc.numel() - 1)
        lo, hi = lam_inc[m - 1], lam_inc[m]
        frac = (lam - lo) / (hi - lo)
        return (self.num_steps - 1) - ((m - 1) + frac)

    def lam(self, t: Tensor) -> Tensor:
        """Inverse map λ(t): λ_n at integers, linear in between (t clamped to [0, M − 1])."""
        t = torch.as_tensor(t, dtype=torch.float64).to(self.lambdas.device)
        t = t.clamp(0, self.num_steps - 1)
        n = t.floor().long().clamp(max=self.num_steps - 2)
        w = t - n
        return (1 - w) * self.lambdas[n] + w * self.lambdas[n + 1]


@contextlib.contextmanager
def _math_attention(enabled: bool):
    """Force PyTorch's math SDPA kernel: fused kernels have no forward-mode AD (JVP) rule."""
    if not enabled:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        yield


def _contiguous_group_norm_inputs(net: nn.Module) -> None:
    """Make every GroupNorm input contiguous.

    torch's forward-mode AD of group_norm fails on a non-contiguous input ("view size is not
    compatible", torch 2.13), which diffusers' attention blocks produce; `.contiguous()` is a no-op
    for contiguous inputs.
    """
    for m in net.modules():
        if isinstance(m, nn.GroupNorm):
            m.register_forward_pre_hook(lambda _m, inp: (inp[0].contiguous(),) + inp[1:])


def _param_dtype(net: nn.Module, x: Tensor) -> torch.dtype:
    """The dtype of the network's parameters (x's for a network without any)."""
    p = next(net.parameters(), None)
    return p.dtype if p is not None else x.dtype


def _output_tensor(out) -> Tensor:
    """A diffusers-style output as a tensor: its `.sample`, a tuple's first entry, or itself."""
    out = out.sample if hasattr(out, "sample") else out
    return out[0] if isinstance(out, (tuple, list)) else out


class _UNetCaller(nn.Module):
    """Calls a diffusers-style UNet `net(x, t[, class_labels]) -> .sample | (out,) | Tensor`.

    Casts x to the network's dtype and back, keeps the first C output channels (models with a
    learned variance output 2C), and runs attention with the math kernel when `math_attention`.
    A floating t is fed as float32; an integer t (timestep="nearest") as torch.long, so a
    table-lookup time embedding (`nn.Embedding`, diffusers' time_embedding_type="learned") works.

    Args:
        net: the network.
        math_attention: see `_math_attention`.
        label_arg: keyword under which class labels are passed (diffusers: "class_labels").
        float_time: dtype of a floating t (diffusers: float32); None: the network's dtype.
    """

    def __init__(
        self,
        net: nn.Module,
        math_attention: bool,
        label_arg: str = "class_labels",
        float_time: torch.dtype | None = torch.float32,
    ):
        super().__init__()
        self.net = net
        self.math_attention = bool(math_attention)
        self.label_arg = label_arg
        self.float_time = float_time
        _contiguous_group_norm_inputs(net)

    def forward(self, x: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        """Network output for x [B, C, ...] at time t [B] (labels [B] or None), in x's dtype."""
        dtype = _param_dtype(self.net, x)
        kw = {} if labels is None else {self.label_arg: labels.to(x.device)}
        t_dtype = (self.float_time or dtype) if t.is_floating_point() else torch.long
        with _math_attention(self.math_attention):
            out = self.net(x.to(dtype), t.to(device=x.device, dtype=t_dtype), **kw)
        return _output_tensor(out)[:, : x.shape[1]].to(x.dtype)


class DiscreteUNetScore(ScoreModule):
    """Score of a discrete-time VP UNet (DDPM/DDIM) at any λ in its trained range.

    The schedule is `VP(λ_{N−1}, λ_0)`: α_λ² = sigmoid(λ) equals ᾱ_n at λ = λ_n, so our x_λ is the
    network's x_n and no input scaling is needed. The output is converted with the core's
    converters: ε → s = −ε̂/σ, v → `score_from_v`, x_0 ("sample") → `score_from_x0`.

    Args:
        net: UNet (x [B, C, H, W], timestep [B] float) -> output (diffusers `UNet2DModel`).
        alphas_cumprod: [N] the scheduler's ᾱ_n.
        prediction_type: "epsilon" | "v_prediction" | "sample".
        event_shape: (C, H, W).
        log_jacobian: D log|a| of the pixel map, nats.
        timestep: "interpolate" (fractional t, see `DiscreteTimeMap`) or "nearest" (round to the
            closest trained step; needed for a learned, table-lookup time embedding).
        class_labels: per-sample integer labels for a class-conditional UNet
            (`cartoonist.models.class_labels.ClassLabels`), else None.
        math_attention: run attention with the math kernel (JVPs need it; `_math_attention`).
    """

    def __init__(
        self,
        net: nn.Module,
        alphas_cumprod,
        prediction_type: str,
        event_shape,
        log_jacobian: float,
        timestep: str = "interpolate",
        class_labels=None,
        math_attention: bool = True,
    ):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}"
            )
        if timestep not in ("interpolate", "nearest"):
            raise ValueError(f"timestep must be 'interpolate' or 'nearest', got {timestep!r}")
        time = DiscreteTimeMap(alphas_cumprod)
        super().__init__(VP(time.lambda_min, time.lambda_max), event_shape, log_jacobian)
        self.time, self.timestep_mode, self.prediction_type = time, timestep, prediction_type
        self.unet = _UNetCaller(net, math_attention)
        self.class_labels = class_labels
        self._convert = {
            "epsilon": score_from_eps,
            "v_prediction": score_from_v,
            "sample": score_from_x0,
        }[prediction_type]
        self._score = self._conditioned(None)

    def _conditioned(self, labels: Tensor | None):
        return self._convert(lambda x, lam: self.net_output(x, lam, labels), self.schedule)

    def network_time(self, lam: Tensor) -> Tensor:
        """The timestep fed to the network for log-SNR λ [B].

        float64 (interpolate), or the nearest trained step as torch.long (nearest: a
        table-lookup time embedding needs integers).
        """
        t = self.time.timestep(lam)
        return t.round().long() if self.timestep_mode == "nearest" else t

    def net_output(self, x: Tensor, lam: Tensor, labels: Tensor | None = None) -> Tensor:
        """The raw network output (ε̂, v̂ or x̂_0) at λ, [B, *event_shape]."""
        return self.unet(x, self.network_time(lam), labels)


# -- continuous-σ VE models (score SDE) ----------------------------------------------------------
class SigmaUNetScore(ScoreModule):
    """Score of a VE network trained on continuous σ that outputs ∇_y log p_σ(y) directly.

    The network's data y lie in [lo, hi] (score-SDE VE models: [0, 1]); ours are x = a y + b in
    [−1, 1], a = 2 / (hi − lo), b = −1 − a lo. A VE path y_σ = y_0 + σ ε maps to x_σ = x_0 + aσ ε,
    so in x-space the model is VE with σ_x = a σ, λ = −2 log σ_x, and

        ∇_x log p(x) = (1/a) · net((x − b)/a, σ_x / a).

    The schedule is `VE(−2 log(a σ_max), −2 log(a σ_min))`, the trained σ range.

    Args:
        net: (y [B, C, H, W], σ [B]) -> score [B, C, H, W] (diffusers `UNet2DModel` with a Fourier
            time embedding, as in `ScoreSdeVePipeline`).
        sigma_min, sigma_max: the trained noise range, in the network's data units.
        data_range: (lo, hi) of the network's data.
        event_shape, log_jacobian, class_labels, math_attention: as in `DiscreteUNetScore`.
    """

    def __init__(
        self,
        net: nn.Module,
        sigma_min: float,
        sigma_max: float,
        data_range: Sequence[float],
        event_shape,
        log_jacobian: float,
        class_labels=None,
        math_attention: bool = True,
    ):
        lo, hi = (float(v) for v in data_range)
        if not hi > lo:
            raise ValueError(f"data_range must be (lo, hi) with lo < hi, got {data_range}")
        self.scale, self.shift = 2.0 / (hi - lo), -1.0 - 2.0 * lo / (hi - lo)
        schedule = VE(-2 * math.log(self.scale * sigma_max), -2 * math.log(self.scale * sigma_min))
        super().__init__(schedule, event_shape, log_jacobian)
        self.unet = _UNetCaller(net, math_attention)
        self.class_labels = class_labels
        self._score = self._conditioned(None)

    def _conditioned(self, labels: Tensor | None):
        return lambda x, lam: self._ve_score(x, lam, labels)

    def _ve_score(self, x: Tensor, lam: Tensor, labels: Tensor | None = None) -> Tensor:
        sigma_net = torch.exp(-0.5 * lam) / self.scale
        return self.unet((x - self.shift) / self.scale, sigma_net, labels) / self.scale
