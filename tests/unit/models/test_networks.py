"""Denoiser networks: shapes, zero init, per-sample independence, functorch AD, EMA."""

import pytest
import torch
from torch.func import jvp, vjp

from cartoonist.models import EMA, MLP, LambdaEmbedding, UNet, count_parameters

MLP_SHAPES = [(2,), (64,), (1, 8, 8)]
UNET_SHAPES = [(1, 8, 8), (1, 25, 25), (3, 16, 16), (1, 28, 28)]


def small_mlp(shape):
    return MLP(shape, hidden=32, depth=2, emb_dim=16)


def small_unet(shape):
    return UNet(shape, channels=(8, 16, 16), emb_dim=16, groups=4)


def perturb(net, seed=0, scale=0.05):
    """Give the zero-initialised output layer (and everything else) non-trivial weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return net


def make(kind, shape):
    return small_mlp(shape) if kind == "mlp" else small_unet(shape)


CASES = [("mlp", s) for s in MLP_SHAPES] + [("unet", s) for s in UNET_SHAPES]
IDS = [f"{k}-{'x'.join(map(str, s))}" for k, s in CASES]


def inputs(shape, batch=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *shape), generator=g)
    lam = torch.empty(batch).uniform_(-10.0, 13.0, generator=g)
    return x, lam


@pytest.mark.parametrize("kind,shape", CASES, ids=IDS)
def test_shape_and_zero_init(kind, shape):
    torch.manual_seed(0)
    net = make(kind, shape)
    x, lam = inputs(shape)
    out = net(x, lam)
    assert out.shape == x.shape
    assert torch.all(out == 0)
    out = perturb(net)(x, lam)
    assert out.shape == x.shape and torch.isfinite(out).all() and out.abs().max() > 0


def test_default_unet_shapes_and_size():
    torch.manual_seed(0)
    net = UNet((1, 28, 28))
    n = count_parameters(net)
    assert 300_000 < n < 3_000_000
    assert count_parameters(net, trainable_only=True) == n
    x, lam = inputs((1, 28, 28), batch=2)
    assert net(x, lam).shape == x.shape
    net = UNet((1, 25, 25))
    x, lam = inputs((1, 25, 25), batch=2)
    assert perturb(net)(x, lam).shape == x.shape


def test_default_mlp_shape():
    net = perturb(MLP((2,)))
    x, lam = inputs((2,), batch=4)
    assert net(x, lam).shape == (4, 2)


@pytest.mark.parametrize(
    "kind,shape", [("mlp", (2,)), ("mlp", (1, 8, 8)), ("unet", (1, 25, 25)), ("unet", (3, 16, 16))]
)
def test_batch_independence_and_jvp(kind, shape):
    torch.manual_seed(0)
    net = perturb(make(kind, shape))
    x, lam = inputs(shape, batch=4)
    out = net(x, lam)
    # changing the other samples (and their λ) leaves sample 0 unchanged
    x2, lam2 = x.clone(), lam.clone()
    x2[1:] = 3.0 * torch.randn_like(x2[1:])
    lam2[1:] = -lam2[1:]
    torch.testing.assert_close(net(x2, lam2)[0], out[0], rtol=1e-5, atol=1e-6)
    # a batched jvp equals the per-sample jvps
    v = torch.randn_like(x)
    y, t = jvp(lambda z: net(z, lam), (x,), (v,))
    torch.testing.assert_close(y, out, rtol=1e-5, atol=1e-6)
    for i in range(x.shape[0]):
        _, ti = jvp(lambda z: net(z, lam[i : i + 1]), (x[i : i + 1],), (v[i : i + 1],))
        torch.testing.assert_close(t[i : i + 1], ti, rtol=1e-4, atol=1e-5)
    # jvp matches a finite difference
    h = 1e-3
    fd = (net(x + h * v, lam) - net(x - h * v, lam)) / (2 * h)
    torch.testing.assert_close(t, fd, rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("kind,shape", [("mlp", (2,)), ("unet", (1, 8, 8))])
def test_vjp_matches_autograd_and_lambda_jvp(kind, shape):
    torch.manual_seed(0)
    net = perturb(make(kind, shape))
    x, lam = inputs(shape)
    u = torch.randn_like(x)
    y, pull = vjp(lambda z: net(z, lam), x)
    (g,) = pull(u)
    xr = x.clone().requires_grad_(True)
    (g_ref,) = torch.autograd.grad((net(xr, lam) * u).sum(), xr)
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-6)
    # derivative with respect to λ also works in forward mode
    _, dl = jvp(lambda l: net(x, l), (lam,), (torch.ones_like(lam),))
    assert dl.shape == x.shape and torch.isfinite(dl).all() and dl.abs().max() > 0


def test_float64_inputs_and_scalar_lambda():
    net = perturb(small_mlp((2,)))
    x, lam = inputs((2,))
    out = net(x.double(), lam.double())
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.float(), net(x, lam))
    torch.testing.assert_close(net(x, torch.tensor(1.5)), net(x, torch.full((3,), 1.5)))
    with pytest.raises(ValueError, match="lam"):
        net(x, torch.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        net(torch.zeros(3, 3), lam)


def test_lambda_embedding_distinguishes_values():
    torch.manual_seed(0)
    emb = LambdaEmbedding(32)
    lam = torch.tensor([-10.0, -5.0, -0.1, 0.0, 0.1, 5.0, 13.0])
    e = emb(lam)
    assert e.shape == (7, 32)
    d = torch.cdist(e, e)
    off = d[~torch.eye(7, dtype=torch.bool)]
    assert off.min() > 1e-3
    # odd width is allowed
    assert LambdaEmbedding(7)(lam).shape == (7, 7)


@pytest.mark.parametrize("kind,shape", [("mlp", (2,)), ("unet", (1, 8, 8))])
def test_gradients_reach_all_parameters(kind, shape):
    torch.manual_seed(0)
    net = make(kind, shape)
    with torch.no_grad():
        last = net.out if kind == "mlp" else net.conv_out
        last.weight.normal_(0, 0.05)
    x, lam = inputs(shape)
    loss = (net(x, lam) * torch.randn_like(x)).sum()
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().max() > 0, name


def test_ema():
    torch.manual_seed(0)
    net = small_unet((1, 8, 8))
    ema = EMA(net, decay=0.9)
    assert all(not p.requires_grad for p in ema.module.parameters())
    perturb(net)
    ema.update(net)
    w_net = net.conv_out.weight.detach().clone()
    torch.testing.assert_close(ema.module.conv_out.weight, 0.1 * w_net)  # shadow started at 0
    ema.decay = 0.0
    ema.update(net)
    for (k, a), b in zip(ema.module.state_dict().items(), net.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    assert ema.num_updates == 2

    # swap loads the shadow temporarily and restores the training weights afterwards
    ema.decay = 0.5
    perturb(net, seed=3)
    ema.update(net)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, lam = inputs((1, 8, 8))
    with ema.swap(net) as m:
        assert m is net
        torch.testing.assert_close(net(x, lam), ema.module(x, lam))
        assert not torch.equal(net.conv_out.weight, before["conv_out.weight"])
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    # swap restores even on error
    with pytest.raises(RuntimeError):
        with ema.swap(net):
            raise RuntimeError
    assert torch.equal(net.conv_out.weight, before["conv_out.weight"])

    # copy_to and state-dict round trip
    other = small_unet((1, 8, 8))
    ema.copy_to(other)
    torch.testing.assert_close(other(x, lam), ema.module(x, lam))
    ema2 = EMA(small_unet((1, 8, 8)), decay=0.1)
    ema2.load_state_dict(ema.state_dict())
    assert ema2.decay == 0.5 and ema2.num_updates == 3
    torch.testing.assert_close(ema2.module(x, lam), ema.module(x, lam))
    with pytest.raises(ValueError, match="decay"):
        EMA(net, decay=1.5)


def test_ema_warmup():
    """The warm-up option: d_n = min(d, (1 + n)/(10 + n)), n = update count or the given step."""
    net = perturb(small_mlp((2,)))
    ema = EMA(net, decay=0.5, warmup=True)
    assert [ema.decay_at(n) for n in (0, 1, 8, 10**6)] == [0.1, 2 / 11, 0.5, 0.5]
    assert EMA(net, decay=0.5).decay_at(0) == 0.5  # off by default
    start = {k: v.clone() for k, v in ema.module.state_dict().items()}
    perturb(net, seed=1)
    ema.update(net)  # n = num_updates = 0: d = 0.1
    for k, v in ema.module.state_dict().items():
        assert torch.equal(v, start[k].lerp(net.state_dict()[k], 0.9)), k
    prev = {k: v.clone() for k, v in ema.module.state_dict().items()}
    ema.update(net, step=1)  # an explicit step (a trainer's global step): d = 2/11
    for k, v in ema.module.state_dict().items():
        assert torch.equal(v, prev[k].lerp(net.state_dict()[k], 1.0 - 2 / 11)), k
    ema2 = EMA(net, decay=0.1)
    ema2.load_state_dict(ema.state_dict())
    assert ema2.warmup and ema2.num_updates == 2
    old = {k: v for k, v in ema.state_dict().items() if k != "warmup"}  # saved before `warmup`
    ema2.load_state_dict(old)
    assert not ema2.warmup


def _diffusion_module(seed=0):
    from cartoonist.diffusion.losses import TrainingNoise
    from cartoonist.lit import DiffusionModule

    torch.manual_seed(seed)
    net = MLP((2,), hidden=8, depth=1, emb_dim=4)
    return DiffusionModule(net, TrainingNoise("vp", -8.0, 8.0), lr=1e-2, warmup_steps=2)


def test_diffusion_module_ema_matches_the_former_loop():
    """DiffusionModule's EMA (models.EMA, warm-up by global step) reproduces, bit for bit, the
    hand-written update it replaced: for each parameter, e.lerp_(p, 1 − min(d, (1+n)/(10+n)))."""
    import lightning as L

    mod = _diffusion_module()
    assert mod.ema is mod._ema.module and mod._ema.warmup and mod._ema.decay == mod.decay
    ref = {k: v.clone() for k, v in mod.ema.named_parameters()}
    steps = []

    class Former(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            n = pl_module.global_step
            steps.append(n)
            d = min(pl_module.decay, (1 + n) / (10 + n))
            for k, p in pl_module.net.named_parameters():
                ref[k].lerp_(p.detach(), 1.0 - d)

    data = torch.utils.data.TensorDataset(
        torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    )
    trainer = L.Trainer(
        max_steps=12,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[Former()],
    )
    trainer.fit(mod, torch.utils.data.DataLoader(data, batch_size=8))
    assert steps == list(range(1, 13))
    for k, v in mod.ema.named_parameters():
        assert torch.equal(v, ref[k]), k
        assert not torch.equal(v, mod.net.get_parameter(k)), k


def test_diffusion_module_loads_checkpoints_of_the_former_layout():
    """Checkpoints written before models.EMA was used hold `net.*`, `noise.*` and `ema.*` (the
    shadow network's parameters): they load strictly, into the module's EMA shadow."""
    mod = _diffusion_module(seed=0)
    src = perturb(_diffusion_module(seed=1).net, seed=2)
    old = {f"net.{k}": v for k, v in mod.net.state_dict().items()}
    old |= {f"noise.{k}": v for k, v in mod.noise.state_dict().items()}
    old |= {f"ema.{k}": v.clone() for k, v in src.state_dict().items()}
    assert mod.state_dict().keys() == old.keys()
    mod.load_state_dict(old, strict=True)
    for k, v in mod._ema.module.state_dict().items():
        assert torch.equal(v, old[f"ema.{k}"]), k


def test_constructor_validation():
    with pytest.raises(ValueError, match="event_shape"):
        UNet((28, 28))
    with pytest.raises(ValueError, match="event_shape"):
        UNet((1, 0, 28))
    with pytest.raises(ValueError, match="channels"):
        UNet((1, 8, 8), channels=())
    with pytest.raises(ValueError, match="channels"):
        UNet((1, 8, 8), channels=(12, 16), groups=8)
    with pytest.raises(ValueError, match="blocks_per_level"):
        UNet((1, 8, 8), blocks_per_level=0)
    with pytest.raises(ValueError, match="dropout"):
        UNet((1, 8, 8), dropout=1.0)
    with pytest.raises(ValueError, match="event_shape"):
        MLP(())
    with pytest.raises(ValueError, match="event_shape"):
        MLP(5)
    with pytest.raises(ValueError, match="hidden"):
        MLP((2,), hidden=0)
    with pytest.raises(ValueError, match="depth"):
        MLP((2,), depth=0)
    with pytest.raises(ValueError, match="emb_dim"):
        MLP((2,), emb_dim=1)
    with pytest.raises(ValueError, match="dim"):
        LambdaEmbedding(1)


def test_unet_variants():
    torch.manual_seed(0)
    # one level (no resampling), two blocks per level, dropout in train mode, odd sizes
    for kw in [dict(channels=(8,)), dict(channels=(8, 8), blocks_per_level=2, dropout=0.1)]:
        net = perturb(UNet((2, 7, 9), emb_dim=8, groups=4, **kw))
        x, lam = inputs((2, 7, 9))
        assert net(x, lam).shape == x.shape
        net.eval()
        _, t = jvp(lambda z: net(z, lam), (x,), (torch.ones_like(x),))
        assert t.shape == x.shape
