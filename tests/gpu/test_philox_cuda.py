"""CUDA: the keyed Philox noise is the CPU's, drawn on the GPU without a host-to-device copy.

The words are integer ops only, so they must agree bitwise. The normals go through the devices'
own log/cos/sin (SLEEF on the CPU, CUDA's libm), each within ~1 ulp: float64 normals are compared
to a few ulps, float32 ones (Box–Muller in float64, then rounded) to one float32 ulp, with nearly
all equal. Skipped without CUDA; CARTOONIST_TEST_DEVICE=cpu runs it CPU against CPU.
"""

import os

import pytest
import torch

from cartoonist import Keys, SampleNoise
from cartoonist.diffusion import philox
from cartoonist.diffusion.philox import philox_normal, philox_words
from cartoonist.diffusion.rng import stream_key

CUDA = torch.device(os.environ.get("CARTOONIST_TEST_DEVICE", "cuda"))
pytestmark = pytest.mark.skipif(
    CUDA.type == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device"
)
IDS = [0, 1, 5, 2**33 + 7, 123456789]


def _ids(device):
    return torch.tensor([[i & 0xFFFFFFFF, i >> 32] for i in IDS], device=device)


def test_words_are_bitwise_equal_on_cuda():
    key = stream_key(4, "brownian")
    for step in (0, 1, 2**31 + 5):
        cpu = philox_words(key, _ids("cpu"), step, 777)
        gpu = philox_words(key, _ids(CUDA), step, 777)
        assert gpu.device.type == CUDA.type
        assert torch.equal(gpu.cpu(), cpu)


def test_compiled_words_are_bitwise_equal_on_cuda():
    """`philox.set_compiled`: one fused (Triton) kernel for the rounds, the CPU's words."""
    key = stream_key(4, "brownian")
    cpu = [philox_words(key, _ids("cpu"), 2**31 + 5, 777, n) for n in (None, 3)]
    philox.set_compiled(True)
    try:
        for n, w in zip((None, 3), cpu):
            assert torch.equal(philox_words(key, _ids(CUDA), 2**31 + 5, 777, n).cpu(), w)
    finally:
        philox.set_compiled(False)


def test_normals_match_the_cpu_to_the_last_ulps():
    key = stream_key(4, "probe")
    z64 = philox_normal(key, _ids("cpu"), 3, 3072, torch.float64)
    g64 = philox_normal(key, _ids(CUDA), 3, 3072, torch.float64).cpu()
    torch.testing.assert_close(g64, z64, rtol=8 * 2.0**-52, atol=8 * 2.0**-52)
    z32 = philox_normal(key, _ids("cpu"), 3, 3072, torch.float32)
    g32 = philox_normal(key, _ids(CUDA), 3, 3072, torch.float32).cpu()
    torch.testing.assert_close(g32, z32, rtol=2.0**-23, atol=2.0**-23)
    assert float((g32 != z32).double().mean()) < 1e-3


def test_sample_noise_draws_on_the_device_and_is_batch_invariant():
    full = Keys(9, IDS).source(len(IDS), "brownian", device=CUDA)
    one = Keys(9, [IDS[3]]).source(1, "brownian", device=CUDA)
    cpu = Keys(9, IDS).source(len(IDS), "brownian")
    for _ in range(3):
        z, z1, zc = full.normal((4, 8)), one.normal((4, 8)), cpu.normal((4, 8))
        assert z.device.type == CUDA.type and z.dtype == torch.float32
        assert torch.equal(z[3], z1[0])
        torch.testing.assert_close(z.cpu(), zc, rtol=2.0**-23, atol=2.0**-23)


def test_no_host_to_device_copy_per_step():
    if CUDA.type != "cuda":
        pytest.skip("copies only exist with CUDA")
    from torch.profiler import ProfilerActivity, profile

    src = SampleNoise(0, range(64), "brownian", device=CUDA)  # ids made on the device
    src.normal((3072,))
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            src.normal((3072,))
        torch.cuda.synchronize()
    copies = [e.name for e in prof.events() if "HtoD" in e.name]
    assert not copies, copies
