"""Dataset registry, offline discovery and tensor-resident loading.

Datasets are decoded once into uint8 tensors, normalised once into float tensors and
batched by index slicing: per-sample PIL transforms cost 2.6–3.8× an epoch (DESIGN §5).
Nothing here downloads unless asked (`download_dataset`), so an offline machine gets
an immediate one-line message naming the folder where the files must go.
"""
from __future__ import annotations

import gzip
import os
import pickle
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .errors import DatasetUnavailable, ExplorerError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def default_data_root() -> Path:
    """Where torchvision-format files live; `EXPLORER_DATA` overrides."""
    return Path(os.environ.get("EXPLORER_DATA", Path.home() / ".cache" / "pruning-explorer" / "data"))


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    channels: int
    size: int
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    folder: str  # torchvision sub-folder under the data root ("" for bundled data)
    files: tuple[str, ...]  # what must be present there

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    @property
    def features(self) -> int:
        return self.channels * self.size * self.size


_IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo("digits", "Digits (8×8, bundled)", 1, 8,
                          tuple(str(i) for i in range(10)), (0.3053,), (0.3759,), "", ()),
    "mnist": DatasetInfo("mnist", "MNIST", 1, 28, tuple(str(i) for i in range(10)),
                         (0.1307,), (0.3081,), "MNIST/raw", _IDX),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", "Fashion-MNIST", 1, 28,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
         "Sneaker", "Bag", "Ankle boot"), (0.2860,), (0.3530,), "FashionMNIST/raw", _IDX),
    "cifar10": DatasetInfo(
        "cifar10", "CIFAR-10", 3, 32,
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "truck"), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
        "cifar-10-batches-py",
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
         "test_batch")),
}

_TORCHVISION_CLASS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}


def get_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise ExplorerError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None


# ---------------------------------------------------------------- raw file discovery

def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _idx_folders(info: DatasetInfo, root: Path) -> list[Path]:
    folders = [root / info.folder]
    if info.name == "fashion_mnist":
        folders.append(DEBIAN_FASHION_MNIST)
    return folders


def locate(name: str, root: Path | None = None) -> Path | None:
    """Folder holding the dataset's files, or None if it is not on disk."""
    info = get_info(name)
    if not info.files:
        return Path(".")
    root = Path(root) if root else default_data_root()
    if info.name == "cifar10":
        folder = root / info.folder
        return folder if all((folder / f).is_file() for f in info.files) else None
    for folder in _idx_folders(info, root):
        if all(_find_idx(folder, f) for f in info.files):
            return folder
    return None


def availability(name: str, root: Path | None = None) -> tuple[bool, str]:
    """(available, reason) — the reason names the folder the files must go into."""
    info = get_info(name)
    where = locate(name, root)
    if where is not None:
        return True, f"{info.title}: found in {where}" if info.files else f"{info.title}: bundled"
    root = Path(root) if root else default_data_root()
    hint = f"{info.title} is not available offline: place {', '.join(info.files)} " \
           f"(optionally .gz) in {root / info.folder}"
    if info.name == "fashion_mnist":
        hint += f", or install the Debian package dataset-fashion-mnist ({DEBIAN_FASHION_MNIST})"
    return False, hint


def download_dataset(name: str, root: Path | None = None) -> Path:
    """Fetch a torchvision dataset into the data root (prints torchvision's progress)."""
    info = get_info(name)
    if not info.files:
        return Path(".")
    root = Path(root) if root else default_data_root()
    import torchvision.datasets as tvd

    cls = getattr(tvd, _TORCHVISION_CLASS[name])
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as exc:  # network errors come in many types
        ok, reason = availability(name, root)
        raise DatasetUnavailable(f"download of {info.title} failed ({exc.__class__.__name__}); "
                                 f"{reason}") from None
    where = locate(name, root)
    if where is None:
        raise DatasetUnavailable(availability(name, root)[1])
    return where


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 8:
        raise DatasetUnavailable(f"{path} is truncated")
    zero, dtype, ndim = data[0:2], data[2], data[3]
    if zero != b"\x00\x00" or dtype != 0x08:
        raise DatasetUnavailable(f"{path} is not an unsigned-byte IDX file")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).copy()
    if arr.size != int(np.prod(dims)):
        raise DatasetUnavailable(f"{path} is truncated or corrupt")
    return arr.reshape(dims)


class _CifarUnpickler(pickle.Unpickler):
    """CIFAR's python batches are pickles: allow only numpy array reconstruction."""
    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"),
                ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as fh:
        batch = _CifarUnpickler(fh, encoding="latin1").load()
    x = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    y = np.asarray(batch["labels"], dtype=np.int64)
    return x, y


def _load_raw(name: str, root: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """uint8 images (N, C, H, W) and int64 labels for the official train/test split."""
    info = get_info(name)
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
        labels = d.target.astype(np.int64)
        # Digits has no official test split: a fixed 20 % (seed 0) keeps results comparable.
        order = np.random.default_rng(0).permutation(len(labels))
        n_test = len(labels) // 5
        test, train = order[:n_test], order[n_test:]
        return images[train], labels[train], images[test], labels[test]
    where = locate(name, root)
    if where is None:
        raise DatasetUnavailable(availability(name, root)[1])
    try:
        if name == "cifar10":
            parts = [_read_cifar_batch(where / f) for f in info.files[:5]]
            xt, yt = _read_cifar_batch(where / "test_batch")
            return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                    xt, yt)
        arrays = [_read_idx(_find_idx(where, f)) for f in info.files]
    except (OSError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as exc:
        raise DatasetUnavailable(f"{info.title} files in {where} are unreadable: {exc}") from None
    x_train, y_train, x_test, y_test = arrays
    return (x_train[:, None], y_train.astype(np.int64), x_test[:, None], y_test.astype(np.int64))


# ---------------------------------------------------------------- tensor-resident splits

@dataclass
class Split:
    """Normalised inputs and labels of one split, resident on one device."""
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batches(self, batch_size: int, shuffle: bool = False,
                generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self)
        batch_size = max(1, min(int(batch_size), n))
        if shuffle:
            order = torch.randperm(n, generator=generator, device="cpu").to(self.x.device)
            for i in range(0, n, batch_size):
                idx = order[i:i + batch_size]
                yield self.x[idx], self.y[idx]
        else:
            for i in range(0, n, batch_size):
                yield self.x[i:i + batch_size], self.y[i:i + batch_size]

    def subset(self, n: int, seed: int = 0) -> "Split":
        n = min(n, len(self))
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self), generator=g)[:n].to(self.x.device)
        return Split(self.x[idx], self.y[idx])

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class Dataset:
    info: DatasetInfo
    train: Split
    val: Split
    test: Split
    seed: int = 0
    val_fraction: float = 0.1
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.info.name

    def normalise(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """Map uint8 images (N, C, H, W) into the model's input space."""
        return normalise(self.info, images_uint8)

    def to(self, device: torch.device | str) -> "Dataset":
        return Dataset(self.info, self.train.to(device), self.val.to(device),
                       self.test.to(device), self.seed, self.val_fraction, self.extra)


def normalise(info: DatasetInfo, images_uint8: torch.Tensor) -> torch.Tensor:
    x = images_uint8.to(torch.float32).div_(255.0)
    mean = torch.tensor(info.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(info.std, dtype=torch.float32).view(1, -1, 1, 1)
    return x.sub_(mean).div_(std)


@lru_cache(maxsize=4)
def _load_cached(name: str, root: str, seed: int, val_fraction: float) -> Dataset:
    info = get_info(name)
    x_train, y_train, x_test, y_test = _load_raw(name, Path(root) if root else None)
    n = len(y_train)
    n_val = int(round(n * val_fraction))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:n_val], order[n_val:]
    xt = normalise(info, torch.from_numpy(np.ascontiguousarray(x_train)))
    yt = torch.from_numpy(np.ascontiguousarray(y_train))
    test = Split(normalise(info, torch.from_numpy(np.ascontiguousarray(x_test))),
                 torch.from_numpy(np.ascontiguousarray(y_test)))
    return Dataset(info, Split(xt[train_idx], yt[train_idx]), Split(xt[val_idx], yt[val_idx]),
                   test, seed, val_fraction)


def load_dataset(name: str = "digits", root: Path | str | None = None, seed: int = 0,
                 val_fraction: float = 0.1) -> Dataset:
    """Load (once per process) and split a dataset; raises DatasetUnavailable offline."""
    get_info(name)
    if not 0 <= val_fraction < 1:
        raise ExplorerError(f"validation fraction must be in [0, 1), got {val_fraction}")
    return _load_cached(name, str(root or ""), int(seed), float(val_fraction))


def list_datasets(root: Path | None = None) -> list[tuple[DatasetInfo, bool, str]]:
    """Every registered dataset with (available, reason) — for pickers."""
    return [(info, *availability(name, root)) for name, info in DATASETS.items()]

