"""Data sources and the Lightning data module (fast, CPU, offline)."""

import gzip
import math
import pickle

import numpy as np
import pytest
import torch

import cartoonist as c
from cartoonist.data import (
    CIFAR10,
    GMM2D,
    GMMND,
    MNIST,
    ArrayDataModule,
    Digits,
    Faces,
    ImageFolder,
    Patches,
    to_model,
    to_pixels,
)

LOG_A = math.log(2 / 256)


def _check_pixels(x, shape):
    assert x.dtype == torch.float32 and tuple(x.shape) == shape
    assert x.min() >= -1 + 1 / 256 - 1e-6 and x.max() <= 1 - 1 / 256 + 1e-6
    # bin centres: 128 (x + 1) − 0.5 is an integer
    k = 128 * (x.double() + 1) - 0.5
    assert torch.allclose(k, k.round(), atol=1e-4)


# -- synthetic ---------------------------------------------------------------------------------
def test_gmm2d_load_matches_oracle():
    src = GMM2D(n=20000, seed=3)
    x = src.load()
    assert x.shape == (20000, 2) and x.dtype == torch.float32
    assert src.event_shape == (2,) and src.log_jacobian == 0.0
    assert torch.equal(x, GMM2D(n=20000, seed=3).load())
    assert not torch.equal(x, GMM2D(n=20000, seed=4).load())
    orc = src.oracle(c.VP(-8.0, 8.0))
    assert isinstance(orc, c.GaussianMixture) and orc.dim == 2
    mean = torch.tensor([0.2 * -2 + 0.5 * 1.5, 0.5 * 1.0 + 0.3 * -2])  # exact E[x]
    assert torch.allclose(x.mean(0), mean, atol=0.05)
    y = orc.sample(20000, torch.Generator().manual_seed(9)).float()
    assert torch.allclose(x.mean(0), y.mean(0), atol=0.05)
    assert torch.allclose(x.T.cov(), y.T.cov(), atol=0.08)
    # the samples are likely under their own density
    assert orc.log_prob(x[:500], math.inf).mean() > orc.log_prob(x[:500] + 3.0, math.inf).mean()


def test_gmmnd_shapes_and_determinism():
    src = GMMND(n=300, dim=16, components=3, rank=2, seed=1)
    x = src.load()
    assert x.shape == (300, 16) and src.event_shape == (16,) and src.log_jacobian == 0.0
    assert torch.equal(x, GMMND(n=300, dim=16, components=3, rank=2, seed=1).load())
    orc = src.oracle(c.VP())
    assert orc.n_components == 3 and orc.dim == 16 and orc._rank == 2
    assert 0.4 < x.var(0).mean() < 2.0  # roughly unit variance
    with pytest.raises(ValueError, match="rank"):
        GMMND(dim=4, rank=5)


# -- pixel sources -----------------------------------------------------------------------------
def test_digits_default_and_upsampled_padded():
    src = Digits()
    x = src.load()
    _check_pixels(x, (1797, 1, 8, 8))
    assert src.event_shape == (1, 8, 8) and src.oracle(c.VP()) is None
    assert src.log_jacobian == pytest.approx(64 * LOG_A)
    levels = torch.unique(to_pixels(x)).tolist()
    assert set(levels) <= {round(v * 255 / 16) for v in range(17)} and 255 in levels
    big = Digits(size=20, pad_to=28)
    y = big.load()
    _check_pixels(y, (1797, 1, 28, 28))
    assert big.log_jacobian == pytest.approx(784 * LOG_A)
    border = torch.cat([y[..., :4, :].flatten(), y[..., -4:, :].flatten()])
    assert torch.all(border == -1 + 1 / 256)
    with pytest.raises(ValueError, match="size"):
        Digits(size=0)
    with pytest.raises(ValueError, match="pad_to"):
        Digits(size=20, pad_to=16)


def test_dequantize_noise_within_bins_and_seeded():
    centre = Digits().load()
    a = Digits(dequantize=True, seed=1).load()
    assert torch.equal(a, Digits(dequantize=True, seed=1).load())
    assert not torch.equal(a, Digits(dequantize=True, seed=2).load())
    assert torch.equal(to_pixels(a), to_pixels(centre))  # same 8-bit bins
    assert (a - centre).abs().max() <= 1 / 256 + 1e-6 and a.std() > 0
    assert -1 <= a.min() and a.max() < 1


def test_uniform_density_is_8_bits_per_dim():
    D = 64
    logp = torch.full((3,), -D * math.log(2.0))  # uniform on [−1, 1)^D
    bpd = c.bits_per_dim(logp, D, Digits().log_jacobian)
    assert torch.allclose(bpd, torch.full((3,), 8.0, dtype=bpd.dtype))
    k = torch.arange(256)
    assert torch.equal(to_pixels(to_model(k)), k.to(torch.uint8))


def test_faces():
    x = Faces().load()
    _check_pixels(x, (100, 1, 25, 25))
    _check_pixels(Faces(include_nonfaces=True).load(), (200, 1, 25, 25))
    assert Faces().log_jacobian == pytest.approx(625 * LOG_A)


def test_patches():
    src = Patches(size=8, n=50, seed=2)
    x = src.load()
    _check_pixels(x, (50, 3, 8, 8))
    assert torch.equal(x, Patches(size=8, n=50, seed=2).load())
    assert not torch.equal(x, Patches(size=8, n=50, seed=3).load())
    g = Patches(size=8, n=20, images=("camera", "coffee"), grayscale=True).load()
    _check_pixels(g, (20, 1, 8, 8))
    with pytest.warns(UserWarning, match="camera"):
        rgb = Patches(size=8, n=10, images=("camera", "coffee")).load()
    assert rgb.shape == (10, 3, 8, 8)
    with pytest.raises(ValueError, match="n must"):
        Patches(n=0)
    with pytest.raises(ValueError, match="not_an_image"):
        Patches(n=2, images=("not_an_image",)).load()


# -- folder / file formats ---------------------------------------------------------------------
def test_image_folder(tmp_path):
    import matplotlib.image as mpimg

    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(12, 12), (10, 14), (20, 16)]):
        mpimg.imsave(tmp_path / f"im{i}.png", rng.random((h, w, 3)))
    (tmp_path / "notes.txt").write_text("ignored")
    x = ImageFolder(str(tmp_path), size=8).load()
    _check_pixels(x, (3, 3, 8, 8))
    g = ImageFolder(str(tmp_path), size=6, channels=1)
    _check_pixels(g.load(), (3, 1, 6, 6))
    assert g.log_jacobian == pytest.approx(36 * LOG_A)
    # an exactly representable image survives the round trip
    img = np.zeros((8, 8, 3), dtype=np.uint8)
    img[2:5, 1:3] = [10, 200, 255]
    sub = tmp_path / "one"
    sub.mkdir()
    mpimg.imsave(sub / "a.png", img)
    k = to_pixels(ImageFolder(str(sub), size=8).load())[0]
    assert torch.equal(k, torch.from_numpy(img).permute(2, 0, 1))


def _write_idx(path, arr, gz=False):
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_round_trip(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(10, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=10, dtype=np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte", images, gz)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", labels, gz)
    src = MNIST(str(tmp_path))
    x = src.load()
    _check_pixels(x, (10, 1, 28, 28))
    assert torch.equal(to_pixels(x)[:, 0], torch.from_numpy(images))
    assert torch.equal(src.labels, torch.from_numpy(labels).long())
    assert src.log_jacobian == pytest.approx(784 * LOG_A)
    with pytest.raises(FileNotFoundError, match="dataset.source.path"):
        MNIST(str(tmp_path), split="test").load()


def test_cifar10_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(2, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": [1, 7]}, f)
        batches.append(data)
    src = CIFAR10(str(tmp_path))
    x = src.load()
    _check_pixels(x, (10, 3, 32, 32))
    want = torch.from_numpy(np.concatenate(batches[:5]).reshape(10, 3, 32, 32))
    assert torch.equal(to_pixels(x), want)
    assert src.labels.tolist() == [1, 7] * 5
    test = CIFAR10(str(folder), split="test").load()
    assert torch.equal(to_pixels(test), torch.from_numpy(batches[5].reshape(2, 3, 32, 32)))
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        CIFAR10(str(tmp_path)).load()


@pytest.mark.parametrize("cls", [ImageFolder, MNIST, CIFAR10])
def test_missing_paths(tmp_path, cls):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as err:
        cls(str(missing)).load()
    msg = str(err.value)
    assert str(missing) in msg and "dataset.source.path" in msg and "\n" not in msg
    with pytest.raises(FileNotFoundError, match="dataset.source.path"):
        cls(str(tmp_path)).load()  # exists but empty


# -- data module -------------------------------------------------------------------------------
def test_datamodule_split_and_batches():
    dm = ArrayDataModule(Digits(), batch_size=64, val_fraction=0.1, seed=0)
    assert dm.event_shape == (1, 8, 8) and dm.dim == 64
    assert dm.log_jacobian == pytest.approx(64 * LOG_A) and dm.oracle(c.VP()) is None
    dm.setup("fit")
    assert dm.data.shape == (1797, 1, 8, 8)
    assert len(dm.val_data) == 180 and len(dm.train_data) == 1617
    # a partition of the data
    assert torch.equal(
        torch.cat([dm.train_data, dm.val_data]).flatten(1).sum(0), dm.data.flatten(1).sum(0)
    )
    (xb,) = next(iter(dm.train_dataloader()))
    assert xb.shape == (64, 1, 8, 8) and xb.dtype == torch.float32
    assert sum(len(b[0]) for b in dm.val_dataloader()) == 180  # drop_last=False

    dm2 = ArrayDataModule(Digits(), batch_size=64, seed=0)
    dm2.setup()
    assert torch.equal(dm.val_data, dm2.val_data)
    assert torch.equal(next(iter(dm.train_dataloader()))[0], next(iter(dm2.train_dataloader()))[0])
    dm3 = ArrayDataModule(Digits(), seed=1)
    assert not torch.equal(dm.val_data, dm3.val_data)


def test_datamodule_small_and_oracle():
    dm = ArrayDataModule(GMM2D(n=5), batch_size=4, val_fraction=0.0)
    assert len(dm.val_data) == 1 and len(dm.train_data) == 4
    assert isinstance(dm.oracle(c.VP()), c.GaussianMixture)
    with pytest.raises(ValueError, match="val_fraction"):
        ArrayDataModule(GMM2D(), val_fraction=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        ArrayDataModule(GMM2D(), batch_size=0)
