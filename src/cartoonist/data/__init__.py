"""Data: in-memory sources and a Lightning data module over them.

Sources are synthetic mixtures with exact oracles or small bundled image sets (`sources`), or
the user's own files: a folder of images, MNIST, CIFAR-10 (`files`). `datamodule` holds the
LightningDataModule.

Sources are importable without Lightning; `ArrayDataModule` imports it lazily on first access.
"""

from cartoonist.data.files import CIFAR10, MNIST, ImageFolder
from cartoonist.data.sources import (
    GMM2D,
    GMMND,
    PIXEL_SCALE,
    Digits,
    Faces,
    Patches,
    to_model,
    to_pixels,
)

__all__ = [
    "ArrayDataModule",
    "CIFAR10",
    "Digits",
    "Faces",
    "GMM2D",
    "GMMND",
    "ImageFolder",
    "MNIST",
    "NoData",
    "PIXEL_SCALE",
    "Patches",
    "to_model",
    "to_pixels",
]


def __getattr__(name: str):
    if name in ("ArrayDataModule", "NoData"):
        from cartoonist.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
