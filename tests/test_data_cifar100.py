"""CIFAR-100 in the dataset registry: usable only when its files are on disk (offline).

Written in the real `cifar-100-python` format (python pickles with 'data' rows of
R|G|B planes and 'fine_labels'), so loading goes through the same restricted
unpickler as CIFAR-10; missing files give one line naming the folder to fill.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from explorer_core import data as D
from explorer_core.errors import DatasetUnavailable, one_line


def write_cifar100(folder: Path, n_train: int = 12, n_test: int = 5) -> dict[str, dict]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        batch = {"filenames": [f"{name}{i}.png" for i in range(n)],
                 "batch_label": f"{name} batch",
                 "fine_labels": [int(v) for v in rng.integers(0, 100, n)],
                 "coarse_labels": [int(v) for v in rng.integers(0, 20, n)],
                 "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)
        out[name] = batch
    with open(folder / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": list(D.DATASETS["cifar100"].classes)}, fh, protocol=2)
    return out


def test_cifar100_is_registered_with_its_hundred_classes():
    info = D.get_info("cifar100")
    assert info.num_classes == 100 and len(set(info.classes)) == 100
    assert info.classes[0] == "apple" and info.classes[-1] == "worm"
    assert info.input_shape == (3, 32, 32)


def test_cifar100_unavailable_offline_names_the_folder(tmp_path):
    ok, reason = D.availability("cifar100", tmp_path)
    assert not ok
    assert "CIFAR-100 is not available offline" in reason
    assert str(tmp_path / "cifar-100-python") in reason
    with pytest.raises(DatasetUnavailable) as exc:
        D.load_dataset("cifar100", root=tmp_path)
    assert str(tmp_path / "cifar-100-python") in one_line(exc)


def test_cifar100_in_the_real_format_loads(tmp_path):
    batches = write_cifar100(tmp_path / "cifar-100-python")
    assert D.availability("cifar100", tmp_path)[0]
    ds = D.load_dataset("cifar100", root=tmp_path, val_fraction=0.25)
    info = ds.info
    assert ds.test.x.shape == (5, 3, 32, 32) and len(ds.train) + len(ds.val) == 12
    assert ds.test.y.tolist() == batches["test"]["fine_labels"]
    row = batches["test"]["data"][1]
    for c in range(3):
        raw = row[c * 1024 + 7 * 32 + 9]
        assert ds.test.x[1, c, 7, 9].item() == pytest.approx(
            (raw / 255 - info.mean[c]) / info.std[c], abs=1e-5)


def test_cifar100_labels_out_of_range_are_refused(tmp_path):
    folder = tmp_path / "cifar-100-python"
    write_cifar100(folder)
    with open(folder / "test", "wb") as fh:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "fine_labels": [0, 100]}, fh)
    with pytest.raises(DatasetUnavailable) as exc:
        D.load_dataset("cifar100", root=tmp_path, seed=1)
    assert "labels outside 0..99" in one_line(exc)
