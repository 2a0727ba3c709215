"""Real data: Fashion-MNIST from the Debian package `dataset-fashion-mnist`.

This test fails (never skips) when the package is missing: `.ci/run` installs it, and
a green suite must mean the real-data check actually ran.
"""
from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from explorer_core import data as D
from explorer_core.models import build_model, spec_for_dataset
from explorer_core.training import TrainConfig, evaluate, train

FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def require_debian_data() -> None:
    missing = [f for f in FILES if not (D.DEBIAN_FASHION_MNIST / f).is_file()]
    if missing:
        pytest.fail(f"Fashion-MNIST is missing from {D.DEBIAN_FASHION_MNIST} ({', '.join(missing)}): "
                    "install it with `apt-get install dataset-fashion-mnist`", pytrace=False)


def test_fashion_mnist_loads_from_the_debian_package():
    require_debian_data()
    assert D.locate("fashion_mnist", "/nonexistent-root") == D.DEBIAN_FASHION_MNIST
    ds = D.load_dataset("fashion_mnist", seed=0)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (54000, 6000, 10000)
    assert ds.train.x.shape[1:] == (1, 28, 28) and ds.info.num_classes == 10
    # the split's labels are the file's labels; every class appears in every split
    with gzip.open(D.DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz") as fh:
        test_labels = np.frombuffer(fh.read()[8:], dtype=np.uint8)
    assert ds.test.y.tolist() == test_labels.tolist()
    for split in (ds.train, ds.val, ds.test):
        assert torch.bincount(split.y, minlength=10).min() > 0
    # the registry's normalisation constants are the real pixel statistics
    with gzip.open(D.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz") as fh:
        pixels = np.frombuffer(fh.read()[16:], dtype=np.uint8) / 255.0
    assert ds.info.mean[0] == pytest.approx(pixels.mean(), abs=1e-3)
    assert ds.info.std[0] == pytest.approx(pixels.std(), abs=1e-3)


def test_default_mlp_one_epoch_reaches_84_percent():
    """The thesis' SimpleNN (784-256-64-10, ReLU), default training settings, one epoch.

    Measured with these defaults (Adam 1e-3, batch 64, stable-then-decay schedule):
    85.8–86.4 % test accuracy over seeds 0–9 (seed 0: 86.27 %). The old constant rate
    gave 83.3–85.6 %, which is why the default decays the rate at the end.
    """
    require_debian_data()
    data = D.load_dataset("fashion_mnist", seed=0)
    spec = spec_for_dataset("mlp", data.info)
    assert spec["in"] == 784 and spec["hidden"] == [256, 64] and spec["out"] == 10
    torch.manual_seed(0)
    model = build_model(spec)
    cfg = TrainConfig(epochs=1)
    result = train(model, data, cfg)
    _, acc = evaluate(model, data.test)
    assert acc == pytest.approx(result.history[-1].test_acc)
    print(f"\nFashion-MNIST, default MLP, 1 epoch (seed {cfg.seed}, batch {cfg.batch_size}, "
          f"{cfg.optimizer} lr {cfg.lr}, {cfg.lr_schedule}): test accuracy {acc:.2f} %")
    assert acc >= 84.0, f"test accuracy after one epoch was {acc:.2f} %, expected ≥ 84 %"
