"""Sources from files the user has: a folder of images, MNIST idx files, CIFAR-10 batches.

Same contract and pixel convention as `sources` (`load() -> Tensor [N, *event_shape]` in model
space, `log_jacobian = D log(2/256)`).
"""

from __future__ import annotations

import gzip
import math
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cartoonist.data.sources import _missing, _Pixels, _positive
from cartoonist.errors import ConfigError

__all__ = ["ImageFolder", "MNIST", "CIFAR10", "load_array_pickle"]

# What a pickle of numpy arrays in plain containers needs, and nothing that can run code.
_ARRAY_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"{module}.{name} is not allowed: only numpy arrays in plain containers are read"
        )


def load_array_pickle(path: Path):
    """Unpickle `path` allowing only numpy arrays, numbers, strings, bytes, lists and dicts.

    A pickle that names any other class or function (the way a malicious file runs code) is
    refused with a ValueError before anything it names is imported or called.
    """
    with open(path, "rb") as f:
        try:
            return _ArrayUnpickler(f, encoding="bytes").load()
        except pickle.UnpicklingError as e:
            raise ValueError(f"{path}: {e}") from None


class ImageFolder(_Pixels):
    """All .png/.jpg/.jpeg images under a folder (recursively, sorted by path), [N, C, size, size].

    Each image is centre-cropped to a square, resized bilinearly to `size` × `size` with PIL and
    converted to RGB (`channels=3`) or luminance (`channels=1`).

    Args:
        path: the folder (config key `dataset.source.path`).
        size: image side after resizing.
        channels: 3 (RGB) or 1 (grey).
        dequantize: add U[0, 1) noise to k instead of the bin centre 0.5.
        seed: seed of the dequantisation noise.
    """

    name = "image_folder"
    extensions = (".png", ".jpg", ".jpeg")

    def __init__(
        self,
        path: str,
        size: int = 32,
        channels: int = 3,
        dequantize: bool = False,
        seed: int = 0,
    ):
        _positive(size=size)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        super().__init__(dequantize, seed)
        self.path, self.size, self.channels = Path(path).expanduser(), size, channels
        self.shape = (channels, size, size)

    def files(self) -> list[Path]:
        """The image files, sorted; FileNotFoundError if the folder is missing or has none."""
        if not self.path.is_dir():
            raise _missing(self.path, "image folder")
        files = sorted(
            p for p in self.path.rglob("*") if p.is_file() and p.suffix.lower() in self.extensions
        )
        if not files:
            raise FileNotFoundError(
                f"no .png/.jpg images under '{self.path}' (check dataset.source.path)"
            )
        return files

    def names(self) -> list[str]:
        """Each image's path relative to the folder (POSIX), in the order of `pixels()`."""
        return [f.relative_to(self.path).as_posix() for f in self.files()]

    def check(self) -> None:
        """Structural check before any compute: a folder with images that open and verify.

        Raises:
            ConfigError: naming dataset.source.path and the first bad file (missing folder, a
                file instead of a folder, no images, an image that is corrupt or truncated).
        """
        from PIL import Image

        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"dataset.source.path is a file, not a folder: {self.path}")
        try:
            files = self.files()
        except FileNotFoundError as e:
            raise ConfigError(f"dataset.source.path: {e}") from None
        for f in files:
            try:
                with Image.open(f) as im:
                    im.verify()  # PNG: every chunk's CRC; a truncated file fails here
            except Exception as e:  # noqa: BLE001 - PIL raises many kinds
                raise ConfigError(
                    f"dataset.source.path: {f} is not a readable image ({_first_line(e)})"
                ) from None

    def pixels(self) -> Tensor:
        """The images as 8-bit values, [N, C, size, size] uint8 (in sorted path order)."""
        out = []
        for f in self.files():
            try:
                out.append(self._read(f))
            except (OSError, ValueError, SyntaxError) as e:  # a JPEG truncated past verify()
                raise ConfigError(
                    f"dataset.source.path: {f} is not a readable image ({_first_line(e)})"
                ) from None
        return torch.from_numpy(np.stack(out))

    def _read(self, f: Path) -> np.ndarray:
        from PIL import Image

        with Image.open(f) as im:
            im = im.convert("RGB" if self.channels == 3 else "L")
            w, h = im.size
            s = min(w, h)
            left, top = (w - s) // 2, (h - s) // 2
            im = im.crop((left, top, left + s, top + s))
            im = im.resize((self.size, self.size), Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
        return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _find(folder: Path, names: list[str], what: str) -> Path:
    for name in names:
        for cand in (folder / name, folder / (name + ".gz")):
            if cand.is_file():
                return cand
    raise _missing(folder / names[0], what)


def _idx_dims(path: Path) -> tuple[int, ...]:
    """The dimensions an IDX file's header declares; ValueError unless its size matches."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
            raise ValueError(f"{path} is not an unsigned-byte IDX file")
        raw = f.read(4 * head[3])
        if len(raw) < 4 * head[3]:
            raise ValueError(f"{path}: truncated IDX header")
        dims = tuple(int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in range(head[3]))
        if path.suffix == ".gz":
            size = 0
            while chunk := f.read(1 << 20):
                size += len(chunk)
        else:
            size = path.stat().st_size - 4 - 4 * head[3]
    if size != math.prod(dims):
        raise ValueError(f"{path}: expected {math.prod(dims)} bytes of data, got {size}")
    return dims


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format, optionally gzipped) as a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != math.prod(dims):
        raise ValueError(f"{path}: expected {math.prod(dims)} bytes of data, got {data.size}")
    return data.reshape(dims)


class _UserFiles(_Pixels):
    """A standard dataset read from the user's files (`path`, `split`); labels kept if present."""

    def __init__(self, path: str, split: str = "train", dequantize: bool = False, seed: int = 0):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got '{split}'")
        super().__init__(dequantize, seed)
        self.path, self.split, self.labels = Path(path).expanduser(), split, None


class MNIST(_UserFiles):
    """MNIST from the standard IDX files in a user folder, [N, 1, 28, 28].

    Looks for `{train,t10k}-images-idx3-ubyte[.gz]` (and the matching `-labels-idx1-ubyte`, kept in
    `self.labels` after `load()` when present) in `path` or `path/MNIST/raw`.

    Args:
        path: the folder (config key `dataset.source.path`).
        split: "train" (60 000 images) or "test" (10 000).
        dequantize: add U[0, 1) noise to k instead of the bin centre 0.5.
        seed: seed of the dequantisation noise.
    """

    name = "mnist"
    shape = (1, 28, 28)

    def _images_file(self) -> Path:
        prefix = "train" if self.split == "train" else "t10k"
        if not self.path.is_dir():
            raise _missing(self.path, "MNIST folder")
        folder = self.path
        raw = folder / "MNIST" / "raw"  # torchvision's layout
        if not any(folder.glob(f"{prefix}-images-idx3-ubyte*")) and raw.is_dir():
            folder = raw
        return _find(folder, [f"{prefix}-images-idx3-ubyte"], "MNIST images")

    def check(self) -> None:
        """Structural check before any compute: the images file is an [N, 28, 28] IDX file.

        Raises:
            ConfigError: naming dataset.source.path (missing folder or file, a bad header, a
                size that does not match the header).
        """
        try:
            path = self._images_file()
            dims = _idx_dims(path)
        except (FileNotFoundError, ValueError, OSError, EOFError) as e:
            raise ConfigError(f"dataset.source.path: {_first_line(e)}") from None
        if len(dims) != 3 or dims[1:] != (28, 28):
            raise ConfigError(f"dataset.source.path: {path} holds {dims}, not [N, 28, 28] images")

    def pixels(self) -> Tensor:
        """The images as 8-bit values, [N, 1, 28, 28] uint8 (labels go to `self.labels`)."""
        prefix = "train" if self.split == "train" else "t10k"
        images_file = self._images_file()
        folder = images_file.parent
        images = _read_idx(images_file)
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise ValueError(f"MNIST images must be [N, 28, 28], got {images.shape}")
        try:
            self.labels = torch.from_numpy(
                _read_idx(_find(folder, [f"{prefix}-labels-idx1-ubyte"], "MNIST labels")).copy()
            ).long()
        except FileNotFoundError:
            self.labels = None
        return torch.from_numpy(images.copy())[:, None]


class CIFAR10(_UserFiles):
    """CIFAR-10 from the official python batches (`cifar-10-batches-py`), [N, 3, 32, 32].

    The batches are the official archive's pickled dicts of numpy arrays (`data`: [n, 3072] uint8
    in CHW order, `labels`); they are read only after all files are found, by an unpickler that
    accepts numpy arrays and plain containers and nothing else (`load_array_pickle`), so a file
    that would run code on unpickling is refused. Labels are kept in `self.labels` after `load()`.

    Args:
        path: the folder `cifar-10-batches-py` or its parent (config key `dataset.source.path`).
        split: "train" (data_batch_1..5, 50 000 images) or "test" (test_batch, 10 000).
        dequantize: add U[0, 1) noise to k instead of the bin centre 0.5.
        seed: seed of the dequantisation noise.
    """

    name = "cifar10"
    shape = (3, 32, 32)

    def _batches(self) -> tuple[Path, list[str]]:
        folder = self.path
        if not folder.is_dir():
            raise _missing(folder, "CIFAR-10 folder")
        if (folder / "cifar-10-batches-py").is_dir():
            folder = folder / "cifar-10-batches-py"
        train = [f"data_batch_{i}" for i in range(1, 6)]
        names = train if self.split == "train" else ["test_batch"]
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise _missing(folder / missing[0], "CIFAR-10 batch")
        return folder, names

    def check(self) -> None:
        """Structural check before any compute: every batch file of the split is there."""
        try:
            self._batches()
        except FileNotFoundError as e:
            raise ConfigError(f"dataset.source.path: {_first_line(e)}") from None

    def pixels(self) -> Tensor:
        """The images as 8-bit values, [N, 3, 32, 32] uint8 (labels go to `self.labels`)."""
        folder, names = self._batches()
        data, labels = [], []
        for n in names:
            batch = load_array_pickle(folder / n)
            data.append(np.asarray(batch.get(b"data", batch.get("data")), dtype=np.uint8))
            labels.append(np.asarray(batch.get(b"labels", batch.get("labels")), dtype=np.int64))
        images = np.concatenate(data)
        if images.ndim != 2 or images.shape[1] != 3072:
            raise ValueError(f"CIFAR-10 data must be [n, 3072], got {images.shape} in {folder}")
        self.labels = torch.from_numpy(np.concatenate(labels))
        return torch.from_numpy(images.reshape(-1, 3, 32, 32).copy())
