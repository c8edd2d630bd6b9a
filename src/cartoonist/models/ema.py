"""Exponential moving average of a model's weights (framework-free)."""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """A shadow copy of a model whose floating-point weights track θ̄ ← d·θ̄ + (1 − d)·θ.

    Buffers that are not floating point (e.g. counters) are copied verbatim on every update. The
    shadow is a frozen, eval-mode deep copy available as :attr:`module`, so it can be called
    directly (e.g. ``ema.module(x, lam)``) for sampling.

    Args:
        model: the model to track; its current weights initialise the shadow.
        decay: EMA decay d in [0, 1]; 0 copies the model, 1 freezes the shadow.
        warmup: warm the decay up as d_n = min(d, (1 + n)/(10 + n)) at update n, so that the
            early shadow is not dominated by the initial weights.

    Attributes:
        module: the shadow model.
        decay: the decay.
        warmup: whether the decay is warmed up.
        num_updates: how many times :meth:`update` has been called.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = False):
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
        if not 0.0 <= float(decay) <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay!r}")
        self.decay, self.warmup = float(decay), bool(warmup)
        self.num_updates = 0
        self.module = copy.deepcopy(model)
        self.module.eval()
        self.module.requires_grad_(False)

    def _pairs(self, model: nn.Module):
        src = model.state_dict()
        dst = self.module.state_dict()
        if src.keys() != dst.keys():
            raise ValueError("model does not match the EMA shadow (different state_dict keys)")
        return ((dst[k], src[k]) for k in dst)

    def decay_at(self, step: int) -> float:
        """The decay used by update number ``step`` (``decay``, or its warm-up)."""
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        """Move the shadow towards ``model``'s current weights by one EMA step.

        Args:
            model: the model being trained (same architecture as the shadow).
            step: the step n of the decay warm-up (default: :attr:`num_updates`); a trainer
                passes its global step so that a resumed run continues the warm-up.
        """
        decay = self.decay_at(self.num_updates if step is None else step)
        for s, p in self._pairs(model):
            p = p.detach().to(device=s.device, dtype=s.dtype)
            if s.is_floating_point() or s.is_complex():
                s.lerp_(p, 1.0 - decay)
            else:
                s.copy_(p)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite ``model``'s weights (and buffers) with the shadow's.

        Args:
            model: the model to receive the EMA weights.
        """
        for s, p in self._pairs(model):
            p.copy_(s.to(device=p.device, dtype=p.dtype))

    @contextmanager
    def swap(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the EMA weights into ``model``; the originals return on exit.

        Args:
            model: the model to swap the weights of.

        Yields:
            ``model``, holding the EMA weights inside the ``with`` block.
        """
        backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    v.copy_(backup[k])

    def to(self, *args: Any, **kwargs: Any) -> "EMA":
        """Move the shadow (``nn.Module.to`` arguments); returns self."""
        self.module.to(*args, **kwargs)
        return self

    def state_dict(self) -> dict[str, Any]:
        """The decay, warm-up flag, update count and shadow weights."""
        return {
            "decay": self.decay,
            "warmup": self.warmup,
            "num_updates": self.num_updates,
            "shadow": self.module.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` output.

        Args:
            state: a dict with keys ``decay``, ``num_updates``, ``shadow`` and optionally
                ``warmup`` (absent from states saved before it existed: no warm-up).
        """
        self.decay = float(state["decay"])
        self.warmup = bool(state.get("warmup", False))
        self.num_updates = int(state["num_updates"])
        self.module.load_state_dict(state["shadow"])
