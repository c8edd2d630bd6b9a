"""Your own network as a score in log-SNR time λ: `score_of_network` (pure torch).

A network trained with any of the usual conventions becomes a `ScoreModule`
`s(x [B, *event_shape], λ [B]) = ∇_x log p_λ(x)`. Three things say what the network computes:

**Its schedule** (the forward process it was trained on, x = α x_0 + σ ε):

* discrete-time VP (DDPM, Ho et al. 2020): N steps with ᾱ_n = ∏_{m ≤ n} (1 − β_m), given as the
  [N] tensor ᾱ (`ddpm_alphas_cumprod` makes the linear (Ho et al. 2020 §4) and cosine (Nichol &
  Dhariwal 2021, eq. 17) ones). Step n is at log-SNR λ_n = log ᾱ_n − log(1 − ᾱ_n), and our VP
  path (α² = sigmoid λ, digest §2.2) has sigmoid(λ_n) = ᾱ_n, so x_n *is* our x at λ_n;
* a continuous `cartoonist.diffusion.schedules.Schedule`: `VP(λ_min, λ_max)` (α² = sigmoid λ,
  σ² = sigmoid(−λ)) or `VE(λ_min, λ_max)` (α = 1, σ = e^{−λ/2}, so σ ∈ [e^{−λ_max/2},
  e^{−λ_min/2}], i.e. λ = −2 log σ).

**Its time input** (`time`), as a function of the λ the sampler asks for:

* "ddpm_step": the integer step n of a discrete schedule, the trained step nearest in λ (λ is
  rounded to the nearest λ_n), fed as torch.long, so a table-lookup time embedding
  (`nn.Embedding(N, d)`) works;
* "ddpm_t": the continuous t = n / (N − 1) ∈ [0, 1] of a discrete schedule, with n fractional
  between trained steps (linear in λ, `DiscreteTimeMap`);
* "sigma": the noise-to-signal ratio σ/α = e^{−λ/2} (since λ = log α²/σ²): VE's σ, EDM's σ;
* "lambda": λ itself;
* "c_noise": EDM's c_noise = ¼ ln σ with σ = e^{−λ/2}, i.e. −λ/8 (Karras et al. 2022, Table 1).

**Its output** (`prediction`), converted with `cartoonist.diffusion.score` (digest §2.1):
"epsilon" s = −ε̂/σ; "v" (v = α ε − σ x_0, Salimans & Ho 2022) ε̂ = (σ x + α v̂)/(α² + σ²);
"x0" s = (α x̂_0 − x)/σ²; "score" s itself.

The network is called `net(x, t)`, or `net(x, t, **{label_arg: labels [B]})` with per-sample
integer class labels (`cartoonist.models.class_labels.ClassLabels`). Its output may be a tensor,
a tuple (first entry) or an object with `.sample`; extra output channels (a learned variance)
are dropped.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from cartoonist.diffusion.schedules import VP, Schedule
from cartoonist.diffusion.score import score_from_eps, score_from_v, score_from_x0
from cartoonist.models.adapters import ScoreModule
from cartoonist.models.diffusers_adapters import DiscreteTimeMap, _UNetCaller

__all__ = [
    "NetworkScore",
    "score_of_network",
    "ddpm_alphas_cumprod",
    "PREDICTIONS",
    "TIMES",
]

PREDICTIONS = ("epsilon", "v", "x0", "score")
TIMES = ("ddpm_step", "ddpm_t", "sigma", "lambda", "c_noise")
DISCRETE_TIMES = ("ddpm_step", "ddpm_t")


def ddpm_alphas_cumprod(
    kind: str = "linear",
    num_steps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    cosine_s: float = 0.008,
) -> Tensor:
    """ᾱ_n, n = 0..N−1, of a discrete DDPM schedule (float64 [N]).

    * "linear": β_n linear from beta_start to beta_end (Ho et al. 2020, §4);
    * "cosine": ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/N + s)/(1 + s)) π/2) (Nichol & Dhariwal 2021,
      eq. 17), as β_n = min(1 − ᾱ(n + 1)/ᾱ(n), 0.999) (their clipping), ᾱ_n = ∏_{m≤n}(1 − β_m).
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps must be an integer ≥ 2, got {num_steps!r}")
    if kind == "linear":
        if not 0 < beta_start < beta_end < 1:
            raise ValueError(f"need 0 < beta_start < beta_end < 1, got {beta_start}, {beta_end}")
        betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
    elif kind == "cosine":
        t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
        f = torch.cos((t + cosine_s) / (1 + cosine_s) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    else:
        raise ValueError(f"kind must be 'linear' or 'cosine', got {kind!r}")
    return torch.cumprod(1 - betas, 0)


class NetworkScore(ScoreModule):
    """Score of a network with the given prediction, time input and schedule (module docstring).

    Args:
        net: the network, callable (x [B, *event_shape], t [B][, label_arg=labels [B]])
            -> prediction [B, *event_shape].
        prediction: one of `PREDICTIONS` ("epsilon" | "v" | "x0" | "score").
        time: one of `TIMES` ("ddpm_step" | "ddpm_t" | "sigma" | "lambda" | "c_noise");
            "ddpm_step" and "ddpm_t" need a discrete schedule.
        schedule: [N] ᾱ_n of a discrete VP schedule (e.g. `ddpm_alphas_cumprod`), or a
            continuous `cartoonist.diffusion.schedules.Schedule` (`VP(λ_min, λ_max)`, `VE(...)`).
        event_shape: shape of one example.
        log_jacobian: D log|a| (nats) of a data → model-space map, for bits/dim (0: none).
        class_labels: per-sample labels (`cartoonist.models.class_labels.ClassLabels`) or None.
        label_arg: keyword under which the labels are passed to the network.
        math_attention: run PyTorch attention with the math kernel (JVP-safe).
    """

    def __init__(
        self,
        net: Callable,
        prediction: str,
        time: str,
        schedule,
        event_shape: Sequence[int],
        log_jacobian: float = 0.0,
        class_labels=None,
        label_arg: str = "class_labels",
        math_attention: bool = True,
    ):
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        if time not in TIMES:
            raise ValueError(f"time must be one of {TIMES}, got {time!r}")
        if isinstance(schedule, Schedule):
            time_map = None
            if time in DISCRETE_TIMES:
                raise ValueError(
                    f"time={time} needs a discrete schedule (ᾱ_n), not a continuous {schedule}"
                )
        else:
            time_map = DiscreteTimeMap(schedule)
            schedule = VP(time_map.lambda_min, time_map.lambda_max)
        super().__init__(schedule, event_shape, log_jacobian)
        self.time_map, self.time, self.prediction = time_map, time, prediction
        if not isinstance(net, nn.Module):
            net = _Callable(net)
        self.net = _UNetCaller(net, math_attention, label_arg, float_time=None)
        self.class_labels = class_labels
        self._convert = {
            "epsilon": score_from_eps,
            "v": score_from_v,
            "x0": score_from_x0,
            "score": lambda fn, _schedule: fn,
        }[prediction]
        self._score = self._conditioned(None)

    def _conditioned(self, labels: Tensor | None):
        return self._convert(lambda x, lam: self.net_output(x, lam, labels), self.schedule)

    def network_time(self, lam: Tensor) -> Tensor:
        """The network's time input at log-SNR λ [B]: [B] long for ddpm_step, else float64."""
        lam = lam.to(torch.float64)
        if self.time == "ddpm_step":
            return self.time_map.timestep(lam).round().long()
        if self.time == "ddpm_t":
            return self.time_map.timestep(lam) / (self.time_map.num_steps - 1)
        if self.time == "sigma":
            return torch.exp(-0.5 * lam)
        if self.time == "c_noise":
            return -lam / 8
        return lam

    def net_output(self, x: Tensor, lam: Tensor, labels: Tensor | None = None) -> Tensor:
        """The raw network output (ε̂, v̂, x̂_0 or the score) at λ, [B, *event_shape]."""
        return self.net(x, self.network_time(lam), labels)


class _Callable(nn.Module):
    """A plain function as a module (so `_UNetCaller` can look for parameters)."""

    def __init__(self, fn: Callable):
        super().__init__()
        self.fn = fn

    def forward(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


def score_of_network(net: Callable, **conventions) -> NetworkScore:
    """Your own network as a score module: `NetworkScore(net, **conventions)`.

    The conventions (keywords: prediction, time, schedule, event_shape and optionally
    log_jacobian, class_labels, label_arg, math_attention) are `NetworkScore`'s arguments, their
    meaning is in the module docstring. Example, a DDPM ε-network with an `nn.Embedding` time
    embedding over 1000 linear steps::

        score = score_of_network(
            net, prediction="epsilon", time="ddpm_step",
            schedule=ddpm_alphas_cumprod("linear", 1000), event_shape=(3, 32, 32),
        )
        x = sample_sde(score, score.schedule, score.schedule.sample_prior((8, 3, 32, 32)), 100).x

    Returns:
        A `NetworkScore` (an nn.Module) with `schedule` (its trained λ range), `event_shape`,
        `log_jacobian` and `for_samples(ids)`.
    """
    return NetworkScore(net, **conventions)
