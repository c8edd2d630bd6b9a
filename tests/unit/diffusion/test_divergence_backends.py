"""The reverse-mode Hutchinson/exact trace: its autograd path and its torch.func path agree."""

import pytest
import torch

from cartoonist import jacobian_trace
from cartoonist.diffusion.divergence import resolve_backend


def test_reverse_trace_same_in_and_out_of_inference_mode_and_zero_for_a_constant_field():
    """The reverse backend's two paths (autograd tape; torch.func.vjp under inference_mode)."""
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    A = torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def fn(z):
        return torch.tanh(z @ A)

    _, tape = jacobian_trace(fn, x, "exact", backend="reverse")
    with torch.inference_mode():
        _, func = jacobian_trace(fn, x, "exact", backend="reverse")
    _, fwd = jacobian_trace(fn, x, "exact", backend="forward")
    assert torch.allclose(tape, func, atol=1e-12) and torch.allclose(tape, fwd, atol=1e-12)
    c = torch.ones(5, 3, dtype=torch.float64)
    out, zero = jacobian_trace(lambda z: c * 2.0, x, "exact", backend="reverse")
    assert torch.equal(zero, torch.zeros(5, dtype=torch.float64)) and torch.equal(out, 2 * c)


def test_auto_backend_is_reverse_on_the_cpu_and_gives_the_same_trace():
    """The default "auto" resolves by device: the reverse backend on the CPU, the same numbers."""
    x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert resolve_backend("auto", x) == "reverse"
    assert resolve_backend("forward", x) == "forward"
    with pytest.raises(ValueError, match="'auto', 'forward' or 'reverse'"):
        resolve_backend("jvp", x)
    fn = lambda z: torch.tanh(z) * z.sum(1, keepdim=True)  # noqa: E731
    _, auto = jacobian_trace(fn, x, "exact")
    _, fwd = jacobian_trace(fn, x, "exact", backend="forward")
    torch.testing.assert_close(auto, fwd, rtol=1e-12, atol=1e-12)
