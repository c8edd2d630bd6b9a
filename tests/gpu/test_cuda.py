"""CUDA: every estimator gives the CPU's numbers on the GPU; the pipeline runs with trainer=gpu.

Per-sample noise is keyed Philox drawn on the device (convention C5; bitwise the CPU's words, the
same normals to the last ulps, tests/gpu/test_philox_cuda.py), so in float64 a CUDA run must
reproduce the CPU run to round-off: any device mix-up (a tensor left on the CPU, a generator on the
wrong device) fails here, not on a user's GPU. float32 networks are compared with a looser
tolerance: cuDNN picks other convolution algorithms (and TF32 where allowed).

Skipped without a CUDA device (CI has none); `make gpu-check` runs it on a GPU machine.
CARTOONIST_TEST_DEVICE=cpu runs the same checks CPU against CPU (to test the tests).
"""

import math
import os

import pytest
import torch

import cartoonist as c
from tests.helpers.rng import gen

CUDA = torch.device(os.environ.get("CARTOONIST_TEST_DEVICE", "cuda"))
TRAINER = "gpu" if CUDA.type == "cuda" else "cpu"
pytestmark = pytest.mark.skipif(
    CUDA.type == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device"
)


def close(cpu, gpu, atol=1e-9, rtol=1e-9):
    """CPU and CUDA results agree (the CUDA one is moved back)."""
    assert gpu.device.type == CUDA.type, gpu.device
    torch.testing.assert_close(gpu.cpu(), cpu, atol=atol, rtol=rtol)


@pytest.fixture(scope="module")
def gmm2d_cuda(gmm2d):
    return gmm2d.to(CUDA)


def test_oracle_on_cuda_matches_cpu(gmm2d, gmm2d_cuda):
    x = gmm2d.sample_noised(64, 0.5, gen(0))
    xc = x.to(CUDA)
    for name in ("log_prob", "score", "hessian", "laplacian", "grad_laplacian", "posterior_mean"):
        close(getattr(gmm2d, name)(x, 0.5), getattr(gmm2d_cuda, name)(xc, 0.5))
    # Sampling draws on the CPU generator: the same samples on both devices.
    close(gmm2d.sample_noised(32, -1.0, gen(1)), gmm2d_cuda.sample_noised(32, -1.0, gen(1)))
    close(gmm2d.sample_posterior(x, 0.5, gen(2)), gmm2d_cuda.sample_posterior(xc, 0.5, gen(2)))


@pytest.mark.parametrize("scheme", ["corrected", "euler"])
def test_sde_tracking_same_on_cuda(gmm2d, gmm2d_cuda, vp8, scheme):
    xT = gmm2d.sample_noised(256, vp8.lambda_min, gen(3))
    kw = dict(noise=c.Keys(3), logp_scheme=scheme)
    cpu = c.sample_sde(gmm2d, vp8, xT, 400, logp_init=gmm2d.log_prob(xT, vp8.lambda_min), **kw)
    xc = xT.to(CUDA)
    gpu = c.sample_sde(
        gmm2d_cuda, vp8, xc, 400, logp_init=gmm2d_cuda.log_prob(xc, vp8.lambda_min), **kw
    )
    close(cpu.x, gpu.x, atol=1e-8, rtol=1e-8)
    close(cpu.logp, gpu.logp, atol=1e-8, rtol=1e-8)
    # and it is still Theorem 1: r tracks the exact log-density on the GPU
    err = gpu.logp - gmm2d_cuda.log_prob(gpu.x, vp8.lambda_max)
    assert float(err.abs().mean()) < 0.5


def test_sde_with_a_cuda_generator(gmm2d, gmm2d_cuda, vp8):
    """BatchNoise with a CUDA generator draws on the GPU; Theorem 1 still holds."""
    if CUDA.type != "cuda":
        pytest.skip("a CUDA generator needs CUDA")
    xT = gmm2d_cuda.sample_noised(512, vp8.lambda_min, gen(11))
    g = torch.Generator(CUDA).manual_seed(11)
    res = c.sample_sde(
        gmm2d_cuda, vp8, xT, 400, noise=g, logp_init=gmm2d_cuda.log_prob(xT, vp8.lambda_min)
    )
    err = res.logp - gmm2d_cuda.log_prob(res.x, vp8.lambda_max)
    assert res.x.device.type == "cuda" and abs(float(err.mean())) < 0.1
    assert float(err.abs().mean()) < 0.5


@pytest.mark.parametrize(
    "kw",
    [
        dict(divergence="exact"),
        dict(divergence="hutchinson", backend="forward"),
        dict(divergence="hutchinson", backend="reverse"),
        dict(divergence="exact", method="dopri5", rtol=1e-8, atol=1e-8),
    ],
    ids=["exact", "hutch-fwd", "hutch-rev", "dopri5"],
)
def test_pf_ode_log_prob_same_on_cuda(gmm2d, gmm2d_cuda, vp8, kw):
    kw = {"steps": 64, **kw}
    x0 = gmm2d.sample(32, gen(4))
    cpu = c.ode_log_prob(gmm2d, vp8, x0, noise=c.Keys(4), **kw)
    gpu = c.ode_log_prob(gmm2d_cuda, vp8, x0.to(CUDA), noise=c.Keys(4), **kw)
    close(cpu.logp, gpu.logp, atol=1e-7, rtol=1e-7)
    if kw["divergence"] == "exact":  # PF-ODE of the exact score = the exact log-density
        true = gmm2d.log_prob(x0, vp8.lambda_max)
        assert float((gpu.logp.cpu() - true).abs().max()) < 0.05


def test_pf_ode_sampling_same_on_cuda(gmm2d, gmm2d_cuda, vp8):
    xT = vp8.sample_prior((32, 2), noise=c.Keys(5), dtype=torch.float64)
    cpu = c.sample_ode(gmm2d, vp8, xT, 64, divergence="exact")
    gpu = c.sample_ode(gmm2d_cuda, vp8, xT.to(CUDA), 64, divergence="exact")
    close(cpu.x, gpu.x, atol=1e-8, rtol=1e-8)
    close(cpu.logp, gpu.logp, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("estimator", ["denoising", "divergence"])
def test_elbo_same_on_cuda(gmm2d, gmm2d_cuda, vp8, estimator):
    x0 = gmm2d.sample(64, gen(6))
    cpu = c.elbo(gmm2d, vp8, x0, 32, estimator=estimator, noise=c.Keys(6))
    gpu = c.elbo(gmm2d_cuda, vp8, x0.to(CUDA), 32, estimator=estimator, noise=c.Keys(6))
    close(cpu.logp, gpu.logp, atol=1e-8, rtol=1e-8)


def test_forward_sde_same_on_cuda(gmm2d, gmm2d_cuda, vp8):
    x0 = gmm2d.sample(32, gen(7))
    cpu = c.forward_sde_log_prob(gmm2d, vp8, x0, 200, noise=c.Keys(7))
    gpu = c.forward_sde_log_prob(gmm2d_cuda, vp8, x0.to(CUDA), 200, noise=c.Keys(7))
    close(cpu.logp, gpu.logp, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("solver", ["exact", "cg"])
def test_mode_tracking_on_cuda_hits_newton(gmm2d, gmm2d_cuda, solver):
    lam_t = 0.0
    x_t = gmm2d.sample_noised(8, lam_t, gen(8)).to(CUDA)
    kw = dict(lambda_end=7.0, solver=solver, grad_laplacian_fn=gmm2d_cuda.grad_laplacian)
    if solver == "exact":
        kw["hessian_fn"] = gmm2d_cuda.hessian
    m = c.track_mode(gmm2d_cuda, gmm2d_cuda.schedule, x_t, 400, lambda_t=lam_t, **kw)
    ref = c.newton_mode(
        gmm2d_cuda,
        gmm2d_cuda.schedule,
        x_t,
        lambda_t=lam_t,
        lambda_s=7.0,
        start=m.x,
        hessian_fn=gmm2d_cuda.hessian,
        log_prob=gmm2d_cuda.log_prob,
    )
    assert m.x.device.type == CUDA.type and bool(ref.converged.all())
    assert float((m.x - ref.x).abs().max()) <= 1e-6


@pytest.mark.parametrize("first_stage", ["ode", "sde"])
def test_hd_sampler_same_on_cuda(gmm2d, gmm2d_cuda, vp8, first_stage):
    xT = vp8.sample_prior((64, 2), noise=c.Keys(9), dtype=torch.float64)
    kw = dict(first_stage=first_stage, noise=c.Keys(9), track_logp=True, divergence="exact")
    cpu = c.hd_sample(gmm2d, vp8, xT, 200, lambda_threshold=0.0, **kw)
    gpu = c.hd_sample(gmm2d_cuda, vp8, xT.to(CUDA), 200, lambda_threshold=0.0, **kw)
    close(cpu.x, gpu.x, atol=1e-8, rtol=1e-8)
    close(cpu.logp, gpu.logp, atol=1e-7, rtol=1e-7)


def test_unet_float32_on_cuda():
    """A float32 U-Net: samples and both log p estimates agree with the CPU to float32 accuracy."""
    from cartoonist.models import UNet

    torch.manual_seed(0)
    net = UNet(event_shape=(1, 8, 8), channels=[32, 64, 64]).eval().requires_grad_(False)
    sch = c.VP(-10.0, 10.0)
    xT = sch.sample_prior((16, 1, 8, 8), noise=c.Keys(10)).float()
    prev = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # compare float32 with float32
    try:
        out = {}
        for dev in ("cpu", CUDA):
            n = net.to(dev)
            s = c.score_from_eps(n, sch)
            res = c.sample_sde(s, sch, xT.to(dev), 100, noise=c.Keys(10))
            ll = c.ode_log_prob(s, sch, res.x, 32, noise=c.Keys(10))
            out[dev] = (res.x.cpu(), res.logp.cpu(), ll.logp.cpu())
    finally:
        torch.backends.cudnn.allow_tf32 = prev
        net.cpu()
    for a, b in zip(out["cpu"], out[CUDA]):
        assert torch.isfinite(b).all()
        scale = float(a.abs().max())
        assert float((a - b).abs().max()) <= 1e-3 * max(scale, 1.0), (a, b)


# -- the pipeline on the GPU ------------------------------------------------------------------


def _rows(path):
    import csv

    with open(path) as f:
        return {(r["sample_id"], r["estimator"]): float(r["logp_nats"]) for r in csv.DictReader(f)}


def test_pipeline_train_then_evaluate_with_trainer_gpu(tmp_path):
    """train → evaluate with trainer=gpu; the per-sample log p equal a trainer=cpu evaluation."""
    from cartoonist import tasks
    from tests.helpers.pipeline import compose_cfg

    tr = tmp_path / "train"
    over = ["debug=smoke", "model=unet", "dataset=digits", f"trainer={TRAINER}"]
    over.append("trainer.max_steps=20")
    s = tasks.train.run(compose_cfg("train", over, tr))
    assert s["global_step"] == 20
    ckpt = tr / "checkpoints" / "last.ckpt"
    ev = [
        "debug=smoke",
        "model=unet",
        "dataset=digits",
        f"ckpt_path={ckpt}",
        "likelihood=pf_ode",
        "likelihood.steps=16",
        "source=dataset",
    ]
    outs = {}  # with CARTOONIST_TEST_DEVICE=cpu both runs are trainer=cpu
    for dev in ("cpu", TRAINER):
        out = tmp_path / f"eval_{dev}"
        tasks.evaluate.run(compose_cfg("evaluate", ev + [f"trainer={dev}"], out))
        outs[dev] = _rows(out / "per_sample.csv")
    assert outs["cpu"].keys() == outs[TRAINER].keys() and outs["cpu"]
    for k, v in outs["cpu"].items():
        g = outs[TRAINER][k]
        assert math.isfinite(g) and abs(g - v) <= 1e-3 * max(abs(v), 1.0) + 0.05, (k, v, g)
