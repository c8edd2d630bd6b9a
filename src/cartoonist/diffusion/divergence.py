"""Divergence (Jacobian trace) of a vector field: exact, or Hutchinson with explicit noise.

For a batched field fn: [B, ...] → [B, ...] whose samples do not interact (no batch statistics),
the Jacobian is block diagonal, so one Jacobian-vector product with a batch of probes v gives every
sample's J_i v_i at once. Hutchinson: div ≈ (1/n) Σ_p v_pᵀ J v_p with E[v vᵀ] = I (Rademacher or
Gaussian).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = ["jacobian_trace", "FixedProbes"]


class FixedProbes:
    """A noise source that returns the same probes at every call (adaptive solvers need this).

    Args:
        source: the NoiseSource the probes are drawn from once.
        event_shape: shape of one probe.
        probes: number of distinct probes n.
        kind: "rademacher" or "gaussian".
    """

    def __init__(self, source, event_shape, probes: int = 1, kind: str = "rademacher"):
        draw = source.rademacher if kind == "rademacher" else source.normal
        self.batch_size = source.batch_size
        self.probes = [draw(event_shape) for _ in range(probes)]
        self._i = 0

    @classmethod
    def from_tensors(cls, probes: list[Tensor]) -> "FixedProbes":
        """Given probes ([B, ...] each), e.g. to share one probe with another implementation."""
        self = cls.__new__(cls)
        self.batch_size, self.probes, self._i = probes[0].shape[0], list(probes), 0
        return self

    def next(self) -> Tensor:
        """The probes in a fixed cycle."""
        v = self.probes[self._i % len(self.probes)]
        self._i += 1
        return v


def _draw(noise, event_shape, kind: str) -> Tensor:
    if isinstance(noise, FixedProbes):
        return noise.next()
    if kind == "rademacher":
        return noise.rademacher(event_shape)
    if kind == "gaussian":
        return noise.normal(event_shape)
    raise ValueError(f"probe kind must be 'rademacher' or 'gaussian', got {kind!r}")


def resolve_backend(backend: str, x: Tensor) -> str:
    """Resolve "auto" to "reverse" on the CPU and "forward" elsewhere; pass the others through.

    On the CPU (torch 2.13) forward-mode AD takes slow paths for products with Python scalars and
    for broadcasts (0.2–0.5 ms an op against ~5 µs), so a JVP cost 3.1–3.5× a VJP per evaluation
    on the digits U-Net and 4.4–4.7× on the digits oracle (`benchmarks/pf_ode_cost.py`, heun/jvp
    against heun/vjp, two runs). Elsewhere the JVP stays the default: it stores no activations.
    """
    if backend == "auto":
        return "reverse" if x.device.type == "cpu" else "forward"
    if backend not in ("forward", "reverse"):
        raise ValueError(
            f"divergence backend must be 'auto', 'forward' or 'reverse', got {backend!r}"
        )
    return backend


def jacobian_trace(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    method: str = "hutchinson",
    probes: int = 1,
    noise=None,
    backend: str = "auto",
    kind: str = "rademacher",
) -> tuple[Tensor, Tensor]:
    """Evaluate fn(x) and the trace of its Jacobian per sample.

    Args:
        fn: batched field [B, ...] → [B, ...] (samples independent).
        x: [B, ...] evaluation point.
        method: "exact" (D Jacobian-vector products with basis vectors; small D only) or
            "hutchinson" (`probes` random probes).
        probes: number of Hutchinson probes per call.
        noise: NoiseSource or FixedProbes supplying the probes (required for "hutchinson").
        backend: "auto" (the default: "reverse" on the CPU, "forward" elsewhere; see
            `resolve_backend`), "forward" (torch.func.jvp, one evaluation per probe) or "reverse"
            (one forward pass, one backward pass per probe: `torch.autograd.grad` on a tape, or
            torch.func.vjp under torch.inference_mode; the same numbers).
        kind: probe distribution, "rademacher" (lower variance) or "gaussian".

    Returns:
        (fn(x) [B, ...], trace [B] in x's dtype; for Hutchinson an unbiased estimate).
    """
    if method not in ("exact", "hutchinson"):
        raise ValueError(f"divergence method must be 'exact' or 'hutchinson', got {method!r}")
    backend = resolve_backend(backend, x)
    B, event = x.shape[0], x.shape[1:]
    if method == "exact":
        D = x[0].numel()
        eye = torch.eye(D, dtype=x.dtype, device=x.device)
        vs = [eye[i].reshape(event).expand_as(x) for i in range(D)]
    else:
        if noise is None:
            raise ValueError("Hutchinson divergence needs a noise source for its probes")
        if not isinstance(probes, int) or probes < 1:
            raise ValueError(f"probes must be a positive integer, got {probes!r}")
        vs = [_draw(noise, event, kind).to(x) for _ in range(probes)]
    total = torch.zeros(B, dtype=x.dtype, device=x.device)
    out = None
    if backend == "forward":
        for v in vs:
            out, jv = torch.func.jvp(fn, (x,), (v,))
            total = total + (v * jv).reshape(B, -1).sum(1)
    elif torch.is_inference_mode_enabled():  # no autograd graph here: functorch's transform
        out, vjp_fn = torch.func.vjp(fn, x)
        for v in vs:
            (vj,) = vjp_fn(v)
            total = total + (vj * v).reshape(B, -1).sum(1)
    else:  # the tape: one forward, one backward per probe (~1/3 cheaper than torch.func.vjp)
        out, vjs = _vjps(fn, x, vs)
        for v, vj in zip(vs, vjs):
            total = total + (vj * v).reshape(B, -1).sum(1)
    scale = 1.0 if method == "exact" else 1.0 / len(vs)
    return out.detach(), (total * scale).detach()


def _vjps(fn, x: Tensor, vs: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """fn(x) and the vector-Jacobian products vᵀ ∂fn/∂x for each v, by reverse-mode autograd.

    The same products as `torch.func.vjp`, with less per-call overhead (measured 2.3 vs 3.7 ms a
    call on the digits oracle): the Q4 benchmark's cost per NFE. Works under `torch.no_grad`.
    """
    with torch.enable_grad():
        z = x.detach().requires_grad_(True)
        out = fn(z)
        if not out.requires_grad:  # fn does not depend on x (differentiably): J = 0
            return out, [torch.zeros_like(x) for _ in vs]
        vjs = []
        for i, v in enumerate(vs):
            (g,) = torch.autograd.grad(
                out, z, v.to(out), retain_graph=i < len(vs) - 1, allow_unused=True
            )
            vjs.append(torch.zeros_like(x) if g is None else g)
    return out, vjs


def score_and_laplacian(
    score,
    x: Tensor,
    lam: Tensor,
    method: str = "hutchinson",
    probes: int = 1,
    noise=None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """The score s = ∇log p_λ(x) and its divergence Δlog p_λ(x) per sample (Rademacher probes).

    Args:
        score: a CountedScore (x [B, ...], lam [B]) -> [B, ...].
        x: [B, ...]; lam: [B].
        method: "exact", "hutchinson" (see `jacobian_trace`), or "analytic": the closed-form
            Laplacian of an exact oracle (`score.fn.laplacian(x, lam)`, e.g. a GaussianMixture),
            one evaluation and no autograd.
        probes, noise, backend: see `jacobian_trace`.

    Returns:
        (s [B, ...], Δlog p [B]).
    """
    if method == "analytic":
        lap_fn = getattr(getattr(score, "fn", score), "laplacian", None)
        if lap_fn is None:
            raise ValueError(
                "divergence='analytic' needs a score with a closed-form .laplacian "
                "(an exact oracle); use 'exact' or 'hutchinson'"
            )
        return score(x, lam), lap_fn(x, lam).to(x.dtype)
    backend = resolve_backend(backend, x)
    s, lap = jacobian_trace(lambda z: score(z, lam), x, method, probes, noise, backend)
    if hasattr(score, "_check"):
        if backend == "forward" or torch.is_inference_mode_enabled():
            score._check(s, x, lam)  # the check inside a functorch transform cannot index samples
        score.check_finite(lap, lam, "the divergence of the score is")  # a NaN in the tangent
    return s, lap
