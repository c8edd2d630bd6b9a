"""User files are data, never code: CIFAR-10 batches go through a numpy-only unpickler."""

import os
import pickle

import numpy as np
import pytest

from cartoonist.data import CIFAR10
from cartoonist.data.files import load_array_pickle


class _Payload:
    """Unpickling this calls os.system (what a malicious batch file does)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_batches_load_with_every_protocol(tmp_path, protocol):
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    with open(tmp_path / "b", "wb") as f:
        pickle.dump({b"data": data, b"labels": [1, 7], "name": "x"}, f, protocol=protocol)
    out = load_array_pickle(tmp_path / "b")
    assert np.array_equal(out[b"data"], data) and out[b"labels"] == [1, 7]


def test_a_batch_that_runs_code_is_refused_and_runs_nothing(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "pwned"
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": _Payload(marker), b"labels": [1]}, f)
    with pytest.raises(ValueError, match="posix.system is not allowed|os.system is not allowed"):
        CIFAR10(str(tmp_path)).load()
    assert not marker.exists()
