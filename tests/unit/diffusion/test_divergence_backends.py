"""The reverse-mode Hutchinson/exact trace: its autograd path and its torch.func path agree."""

import torch

from cartoonist import jacobian_trace


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
