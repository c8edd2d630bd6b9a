"""`ArrayDataModule`: a Lightning data module over a source that fits in memory."""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["ArrayDataModule", "NoData"]


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

    Attributes:
        data: [N, *event_shape] the full data set (loaded on first access).
        train_data, val_data: the two splits, [N_train, ...] and [N_val, ...].
        event_shape, dim, log_jacobian: from the source (D = prod(event_shape)).
    """

    def __init__(
        self,
        source,
        batch_size: int = 128,
        val_fraction: float = 0.1,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be ≥ 0, got {num_workers}")
        self.source, self.batch_size, self.val_fraction = source, batch_size, val_fraction
        self.num_workers, self.seed = num_workers, seed
        self._data: Tensor | None = None
        self._train: Tensor | None = None
        self._val: Tensor | None = None

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
        data = self.source.load().float()
        n = data.shape[0]
        if n < 2:
            name = getattr(self.source, "name", "source")
            raise ValueError(f"{name}: need ≥ 2 examples to split, got {n}")
        n_val = min(max(1, round(self.val_fraction * n)), n - 1)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        self._data, self._val, self._train = data, data[perm[:n_val]], data[perm[n_val:]]

    @property
    def data(self) -> Tensor:
        """The full data set, [N, *event_shape] float32."""
        self.setup()
        return self._data

    @property
    def train_data(self) -> Tensor:
        """The training split, [N_train, *event_shape]."""
        self.setup()
        return self._train

    @property
    def val_data(self) -> Tensor:
        """The validation split, [N_val, *event_shape]."""
        self.setup()
        return self._val

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
