"""`model=network`: your own network from an import path, with its conventions stated.

The import path `package.module:attr` runs that module's code (as any import does): use it only
for code you trust. It is resolved on the installed packages and PYTHONPATH only — the working
directory is never searched implicitly; a module in a folder of your own needs
`model.search_path=<folder>`. The conventions (prediction, time input, schedule) and the maths
are in `cartoonist.models.network_adapters`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from cartoonist.diffusion.schedules import VE, VP
from cartoonist.errors import ConfigError
from cartoonist.models.adapters import ScoreModule
from cartoonist.models.class_labels import ClassLabels
from cartoonist.models.network_adapters import (
    DISCRETE_TIMES,
    PREDICTIONS,
    TIMES,
    NetworkScore,
    ddpm_alphas_cumprod,
)
from cartoonist.models.pretrained import (
    IMPORT_PATH,
    PretrainedModel,
    _event_shape,
    build_object,
    check_not_a_state_dict,
    import_object,
    load_weights,
    pixel_log_jacobian,
)

__all__ = ["NetworkModel"]

SCHEDULES = ("ddpm_linear", "ddpm_cosine", "vp", "ve")
_LABEL_COUNT_ATTRS = ("num_classes", "num_class_embeds", "label_dim")


def _number(value, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    return float(value)


@dataclass
class NetworkModel(PretrainedModel):
    """Your own network `net(x, t[, class_labels])` and its training conventions.

    Args:
        path: import path `package.module:attr` of the network: a module class or factory
            function called with `kwargs` (a class is always called; a function is a factory
            when it takes no required positional argument, or when `factory=true`), or the
            network itself (an nn.Module instance or a function of (x, t)). Runs user code.
        kwargs: keyword arguments of the class or factory.
        factory: None (decide as above), true or false.
        weights: a state_dict for the built module: .safetensors, or a torch file read with
            weights_only=True (never unpickled code); None: the module as built.
        search_path: a folder to import from; the working directory is never searched unless
            named here.
        prediction: what the network outputs: epsilon | v | x0 | score.
        time: its time input: ddpm_step (integer step n, nearest trained step, torch.long) |
            ddpm_t (n / (N − 1) ∈ [0, 1], fractional between steps) | sigma (σ/α = e^{−λ/2}) |
            lambda | c_noise (EDM's ¼ ln σ).
        schedule: ddpm_linear (beta_start, beta_end, num_steps) | ddpm_cosine (num_steps;
            Nichol & Dhariwal) | vp (continuous, lambda_min..lambda_max) | ve (continuous,
            sigma_min..sigma_max, λ = −2 log σ).
        beta_start, beta_end, num_steps: the DDPM schedule.
        lambda_min, lambda_max: the trained λ range of a continuous vp schedule.
        sigma_min, sigma_max: the trained σ range of a ve schedule.
        event_shape: shape of one example, e.g. [3, 32, 32]; data in [−1, 1] (8-bit pixels map
            to it, so bits/dim are on 8-bit pixels as for every pretrained model).
        class_labels: per-sample labels (`cartoonist.models.class_labels`), passed as the
            keyword `label_arg` ([B] long); None for an unconditional network.
        num_classes: the number of classes (range check, "cycle"); None: the network's
            `num_classes`, `num_class_embeds` or `label_dim` attribute if it has one.
        label_arg: keyword of the network's class-label argument.
        attention: "math" (JVP-safe PyTorch attention kernel) or "default".
    """

    kind = "network"  # the model= option, used in run names
    path: str
    kwargs: Any = None
    factory: Any = None
    weights: Any = None
    search_path: Any = None
    prediction: str = "epsilon"
    time: str = "ddpm_step"
    schedule: str = "ddpm_linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    num_steps: int = 1000
    lambda_min: float = -10.0
    lambda_max: float = 10.0
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    event_shape: Any = None
    class_labels: Any = None
    num_classes: Any = None
    label_arg: str = "class_labels"
    attention: str = "math"

    def check(self) -> None:
        """The settings and the path's form (no import: that runs user code)."""
        path = str(self.path)
        p = Path(path).expanduser()
        if p.is_file():
            check_not_a_state_dict(p)  # the advice for weights without their network
        if not IMPORT_PATH.match(path):
            raise ConfigError(
                f"model.path must be an import path package.module:attr (model=network), got "
                f"{path!r} (a TorchScript or pickled denoiser: model=edm)"
            )
        if self.search_path is not None and not Path(str(self.search_path)).expanduser().is_dir():
            raise ConfigError(f"model.search_path is not a folder: {self.search_path}")
        if self.weights is not None and not Path(str(self.weights)).expanduser().is_file():
            raise ConfigError(f"model.weights does not exist: {self.weights}")
        if self.factory not in (None, True, False):
            raise ConfigError(f"model.factory must be null, true or false, got {self.factory!r}")
        if self.kwargs is not None and not hasattr(self.kwargs, "keys"):
            raise ConfigError(f"model.kwargs must be a mapping, got {self.kwargs!r}")
        for key, val, allowed in (
            ("model.prediction", self.prediction, PREDICTIONS),
            ("model.time", self.time, TIMES),
            ("model.schedule", self.schedule, SCHEDULES),
            ("model.attention", self.attention, ("math", "default")),
        ):
            if val not in allowed:
                raise ConfigError(f"{key} must be one of {' | '.join(allowed)}, got {val!r}")
        if self.time in DISCRETE_TIMES and not self.schedule.startswith("ddpm_"):
            raise ConfigError(
                f"model.time={self.time} is a DDPM step: it needs model.schedule=ddpm_linear or "
                f"ddpm_cosine, not {self.schedule}"
            )
        _event_shape(None if self.event_shape is None else list(self.event_shape))
        self._schedule()
        if self.class_labels is not None and self.num_classes is not None:
            self._labels(None)

    def _schedule(self):
        """[N] ᾱ_n (ddpm_*) or a continuous Schedule."""
        if self.schedule.startswith("ddpm_"):
            n = self.num_steps
            if isinstance(n, bool) or not isinstance(n, int) or n < 2:
                raise ConfigError(f"model.num_steps must be an integer ≥ 2, got {n!r}")
            b0 = _number(self.beta_start, "model.beta_start")
            b1 = _number(self.beta_end, "model.beta_end")
            if self.schedule == "ddpm_linear" and not 0 < b0 < b1 < 1:
                raise ConfigError(
                    f"need 0 < model.beta_start < model.beta_end < 1, got {b0}, {b1}"
                )
            return ddpm_alphas_cumprod(self.schedule[5:], n, b0, b1)
        if self.schedule == "vp":
            lo = _number(self.lambda_min, "model.lambda_min")
            hi = _number(self.lambda_max, "model.lambda_max")
            if not lo < hi:
                raise ConfigError(f"need model.lambda_min < model.lambda_max, got {lo}, {hi}")
            return VP(lo, hi)
        s0 = _number(self.sigma_min, "model.sigma_min")
        s1 = _number(self.sigma_max, "model.sigma_max")
        if not 0 < s0 < s1:
            raise ConfigError(f"need 0 < model.sigma_min < model.sigma_max, got {s0}, {s1}")
        return VE(-2 * math.log(s1), -2 * math.log(s0))

    def _labels(self, net) -> ClassLabels | None:
        if self.class_labels is None:
            return None
        k = self.num_classes
        if k is None and net is not None:
            for attr in _LABEL_COUNT_ATTRS:
                v = getattr(net, attr, None)
                if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                    k = v
                    break
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ConfigError(f"model.num_classes must be a positive integer, got {k!r}")
        return ClassLabels(self.class_labels, k)

    def load(self) -> ScoreModule:
        """Import and build the network, load its weights, wrap it (`NetworkScore`)."""
        self.check()
        obj = import_object(str(self.path), self.search_path)
        kwargs = None if self.kwargs is None else dict(self.kwargs)
        net = build_object(obj, kwargs, self.factory)
        if not callable(net):
            raise ConfigError(
                f"model.path {self.path} gives a {type(net).__name__}, not a network net(x, t)"
            )
        if self.weights is not None:
            if not isinstance(net, nn.Module):
                raise ConfigError(
                    f"model.weights given, but model.path builds a {type(net).__name__}, not an "
                    f"nn.Module"
                )
            try:
                net.load_state_dict(load_weights(self.weights), strict=True)
            except RuntimeError as e:
                lines = str(e).strip().splitlines()
                raise ConfigError(
                    f"model.weights {self.weights} do not fit the module: "
                    f"{' '.join(lines[:2])[:300]}"
                ) from None
        if isinstance(net, nn.Module):
            net = net.eval()
            for p in net.parameters():
                p.requires_grad_(False)
        shape = _event_shape(list(self.event_shape))
        return NetworkScore(
            net,
            self.prediction,
            self.time,
            self._schedule(),
            shape,
            pixel_log_jacobian(shape),
            class_labels=self._labels(net),
            label_arg=str(self.label_arg),
            math_attention=self.attention == "math",
        )
