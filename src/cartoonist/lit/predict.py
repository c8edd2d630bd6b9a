"""Running per-sample jobs (`lit.jobs`) through `Trainer.predict`: ids in, merged parts out.

Under `trainer=ddp` Lightning splits the ids across processes; every sample's noise is keyed by
(seed, sample_id), so the numbers equal a one-process run. Each rank writes its part; rank 0
merges.
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["PartWriter", "id_loader", "merge_parts"]


def id_loader(n: int, batch_size: int) -> DataLoader:
    """A loader over sample ids 0..n−1 (no shuffling)."""
    return DataLoader(TensorDataset(torch.arange(n)), batch_size=batch_size, shuffle=False)


class PartWriter(BasePredictionWriter):
    """Writes each rank's predictions to `<dir>/part_<rank>.pt` at the end of predict."""

    def __init__(self, out_dir: Path):
        super().__init__(write_interval="epoch")
        self.out_dir = Path(out_dir)

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        """Save this rank's part."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        merged = _cat(predictions)
        torch.save(merged, self.out_dir / f"part_{trainer.global_rank}.pt")


def _cat(preds: list[dict]) -> dict:
    if not preds:
        return {}
    out = {}
    for k in preds[0]:
        v = [p[k] for p in preds]
        out[k] = torch.cat(v) if isinstance(v[0], Tensor) else sum(v, [])
    return out


def merge_parts(parts_dir: Path) -> dict:
    """Merge all ranks' parts, ordered by sample id, duplicates (sampler padding) removed."""
    parts = [torch.load(p, weights_only=True) for p in sorted(Path(parts_dir).glob("part_*.pt"))]
    merged = _cat([p for p in parts if p])
    ids = merged["sample_id"]
    order = torch.argsort(ids)
    keep = torch.ones_like(order, dtype=torch.bool)
    keep[1:] = ids[order][1:] != ids[order][:-1]
    idx = order[keep]
    return {k: v[idx] for k, v in merged.items()}
