"""Data sources: small classes that load a whole data set as one float32 tensor in model space.

Every source has `load() -> Tensor [N, *event_shape]`, the properties `event_shape` and
`log_jacobian`, a `name`, and `oracle(schedule)` (the exact `GaussianMixture` for synthetic data,
None for real data). Your own files (`ImageFolder`, `MNIST`, `CIFAR10`) are in `files`.
Constructors take plain, type-hinted arguments so Hydra can build them with
`_target_` and YAML keys equal to the argument names.

Pixel convention (all image sources). Images are first brought to 8-bit values k ∈ {0, …, 255}
(any resizing or padding happens on pixel values, then the result is rounded back to integers, so
the data always lie on the 8-bit lattice). Model space is

    x = 2 (k + u) / 256 − 1 ∈ [−1, 1),

with u the dequantisation: `load()` returns the bin centres u = 0.5 (x ∈ [−1 + 1/256, 1 − 1/256])
unless `dequantize=True`, which draws u ~ U[0, 1) from a generator seeded by `seed`. The affine map
has a = 2/256, so `log_jacobian = D log(2/256)` (nats) and

    bits/dim = −(log p(x) + log_jacobian) / (D ln 2)        (`cartoonist.bits_per_dim`);

a uniform density on [−1, 1)^D scores exactly 8 bits/dim. Synthetic (continuous) sources have
`log_jacobian = 0.0`, so the same formula gives −log p / (D ln 2).
"""

from __future__ import annotations

import abc
import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cartoonist.diffusion.schedules import Schedule
from cartoonist.oracles import GaussianMixture, LowRankCov
from cartoonist.oracles.toy import gmm2d_parameters

__all__ = [
    "PIXEL_SCALE",
    "to_model",
    "to_pixels",
    "GMM2D",
    "GMMND",
    "Digits",
    "Faces",
    "Patches",
]

PIXEL_SCALE = 2.0 / 256  # a in x = a (k + u) + b, b = −1
_BELOW_ONE = 1.0 - 2.0**-24  # the largest float32 below 1


def _positive(**kwargs) -> None:
    for key, value in kwargs.items():
        if value is not None and value < 1:
            raise ValueError(f"{key} must be ≥ 1, got {value}")


def _missing(path: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(f"{what} not found: '{path}' (check dataset.source.path)")


def to_model(pixels: Tensor, u: Tensor | float = 0.5) -> Tensor:
    """Map 8-bit pixel values to model space, x = 2 (k + u) / 256 − 1.

    Args:
        pixels: [N, ...] integer values k in 0..255 (any integer or float dtype).
        u: dequantisation offsets in [0, 1), a float or a tensor broadcastable to `pixels`.

    Returns:
        [N, ...] float32 in [−1, 1).
    """
    x = (PIXEL_SCALE * (pixels.double() + u) - 1.0).float()
    return x.clamp(max=_BELOW_ONE)  # float32 rounding could otherwise give x = 1 for u → 1


def to_pixels(x: Tensor) -> Tensor:
    """Inverse of `to_model` up to dequantisation: k = floor(128 (x + 1)), clamped, uint8."""
    return torch.floor((x + 1.0) / PIXEL_SCALE).clamp(0, 255).to(torch.uint8)


def _quantize(values: Tensor | np.ndarray, max_value: float = 255.0) -> Tensor:
    """Round values in [0, max_value] to 8-bit integers k = round(v · 255 / max_value), uint8."""
    v = torch.as_tensor(np.asarray(values), dtype=torch.float64)
    return torch.round(v * (255.0 / max_value)).clamp(0, 255).to(torch.uint8)


def _resize(pixels: Tensor, size: int) -> Tensor:
    """Bilinear resize of [N, C, H, W] uint8 pixels to size × size, re-quantised to uint8."""
    if pixels.shape[-2:] == (size, size):
        return pixels
    out = F.interpolate(pixels.double(), size=(size, size), mode="bilinear", align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


class _Synthetic(abc.ABC):
    """Base of the Gaussian-mixture sources: exact samples of the oracle, no Jacobian."""

    name = "synthetic"
    n: int
    dim: int
    seed: int

    @abc.abstractmethod
    def _mixture(self) -> tuple[Tensor, Tensor, object]:
        """(weights, means, covariances) of the mixture."""

    @property
    def event_shape(self) -> tuple:
        """Shape of one sample, (D,)."""
        return (self.dim,)

    @property
    def log_jacobian(self) -> float:
        """0.0: continuous data, bits/dim are −log p / (D ln 2)."""
        return 0.0

    def oracle(self, schedule: Schedule | None = None) -> GaussianMixture:
        """The exact data density as a `GaussianMixture` under `schedule` (default VP)."""
        weights, means, cov = self._mixture()
        return GaussianMixture(weights, means, cov, schedule=schedule)

    def load(self) -> Tensor:
        """Exact samples, [n, D] float32 (deterministic given `seed`)."""
        gen = torch.Generator().manual_seed(self.seed)
        return self.oracle().sample(self.n, gen).float()


class GMM2D(_Synthetic):
    """The fixed 2-D, 3-component toy mixture (digest §7) with diagonal covariances.

    Its parameters are `cartoonist.oracles.toy.gmm2d_parameters()`.

    Args:
        n: number of samples returned by `load()`.
        seed: seed of the sampling generator.
    """

    name = "gmm2d"

    def __init__(self, n: int = 20000, seed: int = 0):
        _positive(n=n)
        self.n, self.dim, self.seed = n, 2, seed

    def _mixture(self):
        return gmm2d_parameters()


class GMMND(_Synthetic):
    """A random mixture of low-rank-plus-isotropic Gaussians in `dim` dimensions.

    Component k is N(μ_k, W_k W_kᵀ + τ² I) with μ_k ~ N(0, ½ I), W_k ∈ R^{dim×rank} with
    N(0, 0.4/rank) entries and τ² = 0.1, so on average each coordinate has variance ≈ ½ between
    components and ≈ ½ within (≈ 1 overall); the means are ≈ √dim apart, i.e. well separated for
    dim ≳ 8. Weights are ∝ 0.5 + U[0, 1). Everything is deterministic given `seed`.

    Args:
        n: number of samples returned by `load()`.
        dim: data dimension D.
        components: number of mixture components K.
        rank: rank r ≤ dim of each W_k.
        seed: seed of the parameters (and of the samples).
    """

    name = "gmmnd"

    def __init__(
        self, n: int = 20000, dim: int = 64, components: int = 8, rank: int = 4, seed: int = 0
    ):
        _positive(n=n, dim=dim, components=components, rank=rank)
        if rank > dim:
            raise ValueError(f"rank must be ≤ dim, got rank={rank}, dim={dim}")
        self.n, self.dim, self.components, self.rank, self.seed = n, dim, components, rank, seed

    def _mixture(self):
        gen = torch.Generator().manual_seed(self.seed)
        K, D, r = self.components, self.dim, self.rank
        weights = 0.5 + torch.rand(K, generator=gen, dtype=torch.float64)
        means = math.sqrt(0.5) * torch.randn(K, D, generator=gen, dtype=torch.float64)
        factors = math.sqrt(0.4 / r) * torch.randn(K, D, r, generator=gen, dtype=torch.float64)
        return weights / weights.sum(), means, LowRankCov(factors, torch.full((K,), 0.1))

    def load(self) -> Tensor:
        """Exact samples, [n, dim] float32 (the sample stream is seeded by `seed + 1`)."""
        gen = torch.Generator().manual_seed(self.seed + 1)
        return self.oracle().sample(self.n, gen).float()


class _Pixels(abc.ABC):
    """Base of the 8-bit image sources (see the module docstring for the convention)."""

    name = "pixels"
    shape: tuple  # (C, H, W)

    def __init__(self, dequantize: bool = False, seed: int = 0):
        self.dequantize, self.seed = dequantize, seed

    @abc.abstractmethod
    def pixels(self) -> Tensor:
        """All images as 8-bit values k, [N, C, H, W] uint8."""

    @property
    def event_shape(self) -> tuple:
        """Shape of one image, (C, H, W)."""
        return tuple(self.shape)

    @property
    def log_jacobian(self) -> float:
        """D log(2/256) in nats: pass to `cartoonist.bits_per_dim` for bits per 8-bit value."""
        return math.prod(self.shape) * math.log(PIXEL_SCALE)

    def oracle(self, schedule: Schedule | None = None) -> None:
        """None: real data have no exact density (the pipeline fits a mixture)."""
        return None

    def load(self) -> Tensor:
        """All images in model space, [N, C, H, W] float32 in [−1, 1) (see module docstring)."""
        k = self.pixels()
        if tuple(k.shape[1:]) != self.event_shape:  # a loader bug, not a user error
            raise RuntimeError(f"{self.name}: got {tuple(k.shape)}, expected {self.event_shape}")
        if not self.dequantize:
            return to_model(k)
        gen = torch.Generator().manual_seed(self.seed)
        return to_model(k, torch.rand(k.shape, generator=gen))


class Digits(_Pixels):
    """scikit-learn's 8×8 handwritten digits (1797 images, levels 0..16), [N, 1, H, W].

    The 17 levels map to k = round(v · 255 / 16); optional bilinear upsampling to `size` × `size`
    (re-rounded to 8 bits) and centred zero-padding (k = 0, i.e. x = −1 + 1/256) to `pad_to`.

    Args:
        size: image side after resizing (8 keeps the originals).
        pad_to: image side after padding (≥ size), or None for no padding.
        dequantize: add U[0, 1) noise to k instead of the bin centre 0.5.
        seed: seed of the dequantisation noise.
    """

    name = "digits"

    def __init__(
        self, size: int = 8, pad_to: int | None = None, dequantize: bool = False, seed: int = 0
    ):
        _positive(size=size, pad_to=pad_to)
        if pad_to is not None and pad_to < size:
            raise ValueError(f"pad_to must be ≥ size, got pad_to={pad_to}, size={size}")
        super().__init__(dequantize, seed)
        self.size, self.pad_to = size, pad_to
        side = pad_to or size
        self.shape = (1, side, side)

    def pixels(self) -> Tensor:
        """The digits as 8-bit values, [1797, 1, H, W] uint8."""
        from sklearn.datasets import load_digits

        k = _resize(_quantize(load_digits().images, 16.0)[:, None], self.size)
        if self.pad_to is not None and self.pad_to > self.size:
            lo = (self.pad_to - self.size) // 2
            hi = self.pad_to - self.size - lo
            k = F.pad(k, (lo, hi, lo, hi), value=0)
        return k


class Faces(_Pixels):
    """scikit-image's LFW subset: 25×25 grey faces (100) and non-faces (100), [N, 1, 25, 25].

    The [0, 1] floats are quantised to k = round(255 v).

    Args:
        include_nonfaces: also return the 100 non-face patches (N = 200 instead of 100).
        dequantize: add U[0, 1) noise to k instead of the bin centre 0.5.
        seed: seed of the dequantisation noise.
    """

    name = "faces"
    shape = (1, 25, 25)

    def __init__(self, include_nonfaces: bool = False, dequantize: bool = False, seed: int = 0):
        super().__init__(dequantize, seed)
        self.include_nonfaces = include_nonfaces

    def pixels(self) -> Tensor:
        """The faces (then non-faces) as 8-bit values, [N, 1, 25, 25] uint8."""
        from skimage.data import lfw_subset

        images = lfw_subset()
        images = images if self.include_nonfaces else images[:100]
        return _quantize(images, 1.0)[:, None]


class Patches(_Pixels):
    """Random square crops from scikit-image's bundled sample images, [n, C, size, size].

    Crops are drawn uniformly: an image uniformly from `images`, then a top-left corner uniformly
    within it. With `grayscale=False` (C = 3) only colour images are used — grey ones are skipped
    with a warning rather than replicated to three equal channels, which would put the data on a
    lower-dimensional subspace and distort densities; an alpha channel is dropped. With
    `grayscale=True` (C = 1) colour images are converted to luminance
    round(0.299 R + 0.587 G + 0.114 B).

    Args:
        size: crop side in pixels.
        n: number of crops.
        images: names of `skimage.data` functions (e.g. "astronaut", "coffee", "camera").
        grayscale: return one luminance channel instead of RGB.
        dequantize: add U[0, 1) noise to k instead of the bin centre 0.5.
        seed: seed of the crop positions (numpy) and of the dequantisation noise (torch).
    """

    name = "patches"

    def __init__(
        self,
        size: int = 16,
        n: int = 5000,
        images: tuple[str, ...] = (
            "astronaut",
            "chelsea",
            "coffee",
            "rocket",
            "immunohistochemistry",
        ),
        grayscale: bool = False,
        dequantize: bool = False,
        seed: int = 0,
    ):
        _positive(size=size, n=n)
        images = (images,) if isinstance(images, str) else tuple(images)
        if not images:
            raise ValueError("images must name at least one skimage.data image")
        super().__init__(dequantize, seed)
        self.size, self.n, self.images, self.grayscale = size, n, images, grayscale
        self.shape = (1 if grayscale else 3, size, size)

    def _image(self, name: str) -> np.ndarray | None:
        import skimage.data

        fn = getattr(skimage.data, name, None)
        if fn is None or not callable(fn):
            raise ValueError(f"images: '{name}' is not a skimage.data image")
        im = np.asarray(fn())
        if im.dtype == bool:
            im = im.astype(np.uint8) * 255
        if im.ndim == 3:
            im = im[..., :3].astype(np.float64)
            if self.grayscale:
                return np.round(im @ np.array([0.299, 0.587, 0.114]))[None].astype(np.uint8)
            return im.transpose(2, 0, 1).astype(np.uint8)
        if im.ndim == 2 and self.grayscale:
            return im[None].astype(np.uint8)
        if im.ndim == 2:
            warnings.warn(f"Patches: skipping grey image '{name}' (grayscale=False)", stacklevel=3)
            return None
        raise ValueError(f"images: '{name}' has unsupported shape {im.shape}")

    def pixels(self) -> Tensor:
        """The crops as 8-bit values, [n, C, size, size] uint8."""
        ims = [im for im in map(self._image, self.images) if im is not None]
        if not ims:
            raise ValueError(f"images: no usable image among {self.images} (grayscale=False)")
        small = [im.shape[1:] for im in ims if min(im.shape[1:]) < self.size]
        if small:
            raise ValueError(f"size={self.size} exceeds an image of shape {small[0]}")
        rng = np.random.default_rng(self.seed)
        which = rng.integers(len(ims), size=self.n)
        out = np.empty((self.n, *self.shape), dtype=np.uint8)
        for i, j in enumerate(which):
            _, h, w = ims[j].shape
            y, x = rng.integers(h - self.size + 1), rng.integers(w - self.size + 1)
            out[i] = ims[j][:, y : y + self.size, x : x + self.size]
        return torch.from_numpy(out)
