"""Class labels per sample for class-conditional models (`model.class_labels`).

A label is keyed by sample id, like the noise (`cartoonist.diffusion.Keys(seed, ids)`), so a
sample's numbers do not depend on its batch or process. `model.class_labels` is one of

* an int c: every sample gets class c;
* a list [c_0, c_1, …] of ints: sample i gets c_{i mod len} (the list is cycled, so [0, 1, 2]
  gives classes 0, 1, 2, 0, 1, 2, … and a list as long as n_samples gives one label each);
* a list of lists of numbers (EDM-style networks taking label vectors only): sample i gets the
  vector number i mod len, e.g. [[0.5, 0, 0.5]] (a soft label) for every sample;
* a file path (.txt or .csv, one integer label per line, blank lines and a non-integer header
  line ignored; never a pickle): cycled like a list;
* "cycle": sample i gets class i mod num_classes.

Every label is range-checked against the model's number of classes before any compute; a label
out of range is one `ConfigError` naming `model.class_labels` and the range.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from cartoonist.errors import ConfigError

__all__ = ["ClassLabels"]

KEY = "model.class_labels"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _read_label_file(path: Path) -> list[int]:
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{KEY}: cannot read {path}: {e}") from None
    lines = [ln.split(",")[0].strip() for ln in lines if ln]
    if lines and not lines[0].lstrip("-").isdigit():
        lines = lines[1:]  # a header line (e.g. "label")
    labels = []
    for i, ln in enumerate(lines):
        try:
            labels.append(int(ln))
        except ValueError:
            raise ConfigError(
                f"{KEY}: {path} line {i + 1}: {ln!r} is not an integer label"
            ) from None
    if not labels:
        raise ConfigError(f"{KEY}: {path} holds no labels")
    return labels


class ClassLabels:
    """The class label of every sample id, from a `model.class_labels` value.

    Args:
        spec: the config value (see the module docstring); OmegaConf lists are accepted.
        num_classes: the model's number of classes (labels are checked to lie in
            0..num_classes − 1), or None when the model does not say (no range check; "cycle"
            is then refused).
        one_hot: the network takes label vectors [B, num_classes] (EDM's `label_dim`) rather
            than integer indices [B].

    Raises:
        ConfigError: naming model.class_labels, for a malformed value or a label out of range.
    """

    def __init__(self, spec, num_classes: int | None, one_hot: bool = False):
        self.num_classes = None if num_classes is None else int(num_classes)
        self.one_hot = bool(one_hot)
        if one_hot and self.num_classes is None:
            raise ValueError("one_hot labels need num_classes")
        self.cycle = False
        self.table: Tensor  # [K] long, or [K, num_classes] float (label vectors)
        if hasattr(spec, "_iter_ex") or isinstance(spec, (list, tuple)):
            spec = list(spec)
        if isinstance(spec, str) and spec == "cycle":
            if self.num_classes is None:
                raise ConfigError(
                    f"{KEY}=cycle needs the model's number of classes, which it does not say: "
                    f"give a list or a file of labels"
                )
            self.cycle = True
            self.table = torch.arange(self.num_classes)
        elif isinstance(spec, (str, Path)):
            path = Path(str(spec)).expanduser()
            if not path.is_file():
                raise ConfigError(
                    f"{KEY} must be an int, a list, a .txt/.csv file or 'cycle'; {spec!r} is not "
                    f"a file"
                )
            if path.suffix.lower() not in (".txt", ".csv"):
                raise ConfigError(
                    f"{KEY}: a label file is .txt or .csv (one label per line): {spec}"
                )
            self.table = self._ints(_read_label_file(path), str(path))
        elif _is_int(spec):
            self.table = self._ints([spec], None)
        elif isinstance(spec, list) and spec and all(_is_int(v) for v in spec):
            self.table = self._ints(spec, None)
        elif (
            isinstance(spec, list)
            and spec
            and all(hasattr(v, "_iter_ex") or isinstance(v, (list, tuple)) for v in spec)
        ):
            self.table = self._vectors([list(v) for v in spec])
        else:
            raise ConfigError(
                f"{KEY} must be an int, a list of ints (one per sample, cycled), a list of label "
                f"vectors, a .txt/.csv file of labels or 'cycle'; got {spec!r}"
            )

    def _ints(self, labels: list[int], where: str | None) -> Tensor:
        k = self.num_classes
        if k is not None:
            for i, c in enumerate(labels):
                if not 0 <= c < k:
                    at = f" ({where} line {i + 1})" if where else (f" (entry {i})" if i else "")
                    raise ConfigError(
                        f"{KEY}: label {c}{at} is outside 0..{k - 1} (the model has {k} classes)"
                    )
        return torch.tensor(labels, dtype=torch.long)

    def _vectors(self, rows: list[list]) -> Tensor:
        if not self.one_hot:
            raise ConfigError(
                f"{KEY}: this model takes integer class labels, not label vectors: give an int, "
                f"a list of ints, a file or 'cycle'"
            )
        try:
            vec = torch.tensor([[float(v) for v in r] for r in rows], dtype=torch.float32)
        except (TypeError, ValueError):
            raise ConfigError(f"{KEY}: label vectors must hold numbers, got {rows!r}") from None
        if vec.shape[1] != self.num_classes:
            raise ConfigError(
                f"{KEY}: a label vector has {vec.shape[1]} entries, the model takes "
                f"{self.num_classes}"
            )
        return vec

    def indices(self, sample_ids: Sequence[int]) -> Tensor:
        """[B] long: the row of `table` of each sample id (id mod table length)."""
        ids = torch.as_tensor(list(sample_ids), dtype=torch.long)
        return ids % self.table.shape[0]

    def of(self, sample_ids: Sequence[int]) -> Tensor:
        """The network's labels for `sample_ids`.

        [B] long, or [B, num_classes] float (one-hot rows or the given label vectors) when
        `one_hot`.
        """
        lab = self.table[self.indices(sample_ids)]
        if self.one_hot and lab.dim() == 1:
            return nn.functional.one_hot(lab, self.num_classes).float()
        return lab

    def describe(self, sample_ids: Sequence[int]) -> list[str]:
        """One string per sample for per_sample.csv: "class=<c>", or "label=[…]" for a vector."""
        lab = self.table[self.indices(sample_ids)]
        if lab.dim() == 1:
            return [f"class={int(c)}" for c in lab]
        return ["label=[" + " ".join(f"{float(v):g}" for v in row) + "]" for row in lab]
