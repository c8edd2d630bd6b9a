"""`ArrayDataModule`: a Lightning data module over a source that fits in memory."""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from cartoonist.errors import ConfigError

__all__ = ["ArrayDataModule", "NoData", "SPLITS"]

# What `evaluate source=dataset` scores (`dataset.split`): every example, or one side of the split.
SPLITS = ("all", "train", "val")


class ArrayDataModule(L.LightningDataModule):
    """Loads a source once, splits it into train/val by a seeded permutation and serves batches.

    Batches are 1-tuples `(x,)` with x [B, *event_shape] float32 (a `TensorDataset`). Under DDP
    Lightning swaps in a `DistributedSampler`; nothing here is rank-specific.

    Args:
        source: a data source (`cartoonist.data.sources`): `load()`, `event_shape`,
            `log_jacobian`, `oracle(schedule)`.
        batch_size: examples per batch.
        val_fraction: fraction of the data held out for validation, in [0, 1); the validation set
            has round(val_fraction · N) examples, at least 1, and training at least 1.
        num_workers: DataLoader worker processes.
        seed: seed of the split permutation and of the training shuffle.
        split: the examples that are *scored* (`evaluate source=dataset`, `eval_data`): "all"
            (every example, in the source's order: sorted paths for a folder), "train" or "val".
            Training always trains on `train_data` and validates on `val_data`, whatever this is.

    Attributes:
        data: [N, *event_shape] the full data set (loaded on first access).
        train_data, val_data: the two splits, [N_train, ...] and [N_val, ...] (N ≥ 2 needed).
        eval_data, eval_names: the `split` examples, and their names (a folder's relative paths;
            None for sources without files).
        event_shape, dim, log_jacobian: from the source (D = prod(event_shape)).
    """

    def __init__(
        self,
        source,
        batch_size: int = 128,
        val_fraction: float = 0.1,
        num_workers: int = 0,
        seed: int = 0,
        split: str = "val",
    ):
        super().__init__()
        if split not in SPLITS:
            raise ConfigError(f"dataset.split must be one of {'|'.join(SPLITS)}, got {split!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(
                f"dataset.val_fraction must be in [0, 1), got {val_fraction} (to score every "
                f"example use dataset.split=all)"
            )
        if num_workers < 0:
            raise ValueError(f"num_workers must be ≥ 0, got {num_workers}")
        self.source, self.batch_size, self.val_fraction = source, batch_size, val_fraction
        self.num_workers, self.seed, self.split = num_workers, seed, split
        self._data: Tensor | None = None
        self._perm: Tensor | None = None
        self._n_val = 0

    # -- source metadata (no loading needed) ---------------------------------------------------
    @property
    def event_shape(self) -> tuple:
        """Shape of one example."""
        return tuple(self.source.event_shape)

    @property
    def dim(self) -> int:
        """D = prod(event_shape)."""
        return math.prod(self.event_shape)

    @property
    def log_jacobian(self) -> float:
        """D log|a| of the pixel → model map (nats), 0.0 for continuous data."""
        return float(self.source.log_jacobian)

    def oracle(self, schedule=None):
        """The source's exact `GaussianMixture` under `schedule`, or None for real data."""
        return self.source.oracle(schedule)

    # -- data ----------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Load the source (once) and split it deterministically."""
        if self._data is not None:
            return
        try:
            data = self.source.load().float()
        except FileNotFoundError as e:  # a missing or empty folder/file: one line, before compute
            raise ConfigError(str(e).strip().splitlines()[0]) from None
        n = data.shape[0]
        self._n_val = min(max(1, round(self.val_fraction * n)), n - 1)
        self._perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        self._data = data

    def _indices(self, split: str) -> Tensor:
        """Indices into `data` of one split (all: 0..N−1 in the source's order)."""
        self.setup()
        n = self._data.shape[0]
        if split == "all":
            return torch.arange(n)
        if n < 2:
            name = getattr(self.source, "name", "source")
            raise ConfigError(
                f"{name}: need ≥ 2 examples for a train/val split, got {n} (dataset.split=all "
                f"scores every example)"
            )
        return self._perm[: self._n_val] if split == "val" else self._perm[self._n_val :]

    @property
    def data(self) -> Tensor:
        """The full data set, [N, *event_shape] float32."""
        self.setup()
        return self._data

    @property
    def train_data(self) -> Tensor:
        """The training split, [N_train, *event_shape]."""
        return self._data_of("train")

    @property
    def val_data(self) -> Tensor:
        """The validation split, [N_val, *event_shape]."""
        return self._data_of("val")

    @property
    def eval_data(self) -> Tensor:
        """The examples `dataset.split` names, [N_split, *event_shape] (what evaluate scores)."""
        return self._data_of(self.split)

    @property
    def eval_names(self) -> list[str] | None:
        """The name of each `eval_data` example: its file relative to the folder, or None."""
        names = getattr(self.source, "names", None)
        if names is None:
            return None
        names = names()
        return [names[i] for i in self._indices(self.split).tolist()]

    def _data_of(self, split: str) -> Tensor:
        idx = self._indices(split)
        return self._data if split == "all" else self._data[idx]

    def _loader(self, x: Tensor, shuffle: bool) -> DataLoader:
        gen = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            TensorDataset(x),
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=False,
            generator=gen,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled (seeded) training batches `(x,)`."""
        return self._loader(self.train_data, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches `(x,)` in a fixed order."""
        return self._loader(self.val_data, shuffle=False)


class NoData:
    """`dataset=none`: no examples. A pretrained model supplies the shape and pixel convention.

    Stands in for `ArrayDataModule` where a task needs no data (sampling, or evaluating a model on
    its own samples); asking it for data raises ValueError.
    """

    event_shape = None
    log_jacobian = None

    def setup(self, stage: str | None = None) -> None:
        """Nothing to load."""

    def oracle(self, schedule=None) -> None:
        """No data, so no exact density."""
        return None

    def _none(self):
        raise ValueError("dataset=none has no data: choose a dataset (e.g. dataset=image_folder)")

    data = train_data = val_data = property(_none)
