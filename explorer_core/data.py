"""Dataset registry, offline discovery and tensor-resident loading.

Datasets are decoded once into uint8 tensors, normalised once into float tensors and
batched by index slicing: per-sample PIL transforms cost 2.6–3.8× an epoch (DESIGN §5).
Nothing here downloads unless asked (`download_dataset`), so an offline machine gets
an immediate one-line message naming the folder where the files must go.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Union

import numpy as np
import torch

from .errors import DatasetUnavailable, ExplorerError, os_reason
from .fileio import folder_from_env

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def default_data_root() -> Path:
    """Where torchvision-format files live; `EXPLORER_DATA` overrides."""
    return folder_from_env("EXPLORER_DATA", Path.home() / ".cache" / "pruning-explorer" / "data")


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
    # (official training, test) sample counts: lets a page estimate run times without
    # loading the data
    samples: tuple[int, int] = (0, 0)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    @property
    def features(self) -> int:
        return self.channels * self.size * self.size


_CIFAR100_CLASSES = """
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab
crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard
lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom
oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine
possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake
spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor
train trout tulip turtle wardrobe whale willow_tree wolf woman worm
"""

_IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo("digits", "Digits (8×8, bundled)", 1, 8,
                          tuple(str(i) for i in range(10)), (0.3053,), (0.3759,), "", (), (1438, 359)),
    "mnist": DatasetInfo("mnist", "MNIST", 1, 28, tuple(str(i) for i in range(10)),
                         (0.1307,), (0.3081,), "MNIST/raw", _IDX, (60000, 10000)),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", "Fashion-MNIST", 1, 28,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
         "Sneaker", "Bag", "Ankle boot"), (0.2860,), (0.3530,), "FashionMNIST/raw", _IDX,
        (60000, 10000)),
    "cifar10": DatasetInfo(
        "cifar10", "CIFAR-10", 3, 32,
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "truck"), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
        "cifar-10-batches-py",
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
         "test_batch"), (50000, 10000)),
    # CIFAR-100's python version: `train` and `test` pickles with fine (100-class) labels;
    # class names in the order of torchvision's `meta` file (alphabetical).
    "cifar100": DatasetInfo(
        "cifar100", "CIFAR-100", 3, 32, tuple(_CIFAR100_CLASSES.split()),
        (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "cifar-100-python",
        ("train", "test"), (50000, 10000)),
}

_TORCHVISION_CLASS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10",
                      "cifar100": "CIFAR100"}
# Datasets stored as python pickles (read with the restricted `_CifarUnpickler`), not IDX.
_PICKLED = ("cifar10", "cifar100")


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


def locate(name: str, root: Path | str | None = None) -> Path | None:
    """Folder holding the dataset's files, or None if it is not on disk."""
    info = get_info(name)
    if not info.files:
        return Path(".")
    root = Path(root) if root else default_data_root()
    if info.name in _PICKLED:
        folder = root / info.folder
        return folder if all((folder / f).is_file() for f in info.files) else None
    for folder in _idx_folders(info, root):
        if all(_find_idx(folder, f) for f in info.files):
            return folder
    return None


def availability(name: str, root: Path | str | None = None) -> tuple[bool, str]:
    """(available, reason) — the reason names the folder the files must go into."""
    state, reason = dataset_state(name, root)
    return state == "available", reason


def dataset_state(name: str, root: Path | str | None = None) -> tuple[str, str]:
    """("available" | "missing" | "damaged", reason): `availability`, telling files that
    are not there from files that are there but not usable (the `datasets` listing
    called a batch cut short "missing", beside the reason saying it was found)."""
    info = get_info(name)
    where = locate(name, root)
    root = Path(root) if root else default_data_root()
    if where is not None:
        damaged = _damage(info, where)
        if damaged:  # a run on it failed after making its folder; `datasets` said available
            return "damaged", (f"{info.title} is not usable: {damaged}; "
                               f"{_placement_hint(info, root)}")
        return "available", (f"{info.title}: found in {where}" if info.files
                             else f"{info.title}: bundled")
    return "missing", f"{info.title} is not available offline: {_placement_hint(info, root)}"


def _damage(info: DatasetInfo, folder: Path) -> str | None:
    """What is wrong with the dataset's files in `folder`, read cheaply; None if nothing."""
    return (_damaged_pickle if info.name in _PICKLED else _damaged_idx)(info, folder)


def _damaged_pickle(info: DatasetInfo, folder: Path) -> str | None:
    """A CIFAR file that is no pickle at all, told by its first two bytes (a pickle of
    protocol 2-5 begins with 0x80 and the protocol; the python version's batches are
    protocol 2), or one cut short, told by its last (every pickle ends with the STOP
    opcode, "."); None when each could be one. Files of another format (a torch.save
    archive) were listed as available and failed the run started on them, after it made
    its folder, with "no persistent_load function was specified"; a batch cut short by
    an interrupted copy was listed as available too."""
    for name in info.files:
        path = folder / name
        try:
            with open(path, "rb") as fh:
                head = fh.read(2)
                if len(head) == 2:
                    fh.seek(-1, os.SEEK_END)
                last = fh.read(1)
        except OSError as exc:
            return f"{path} is unreadable ({os_reason(exc)})"
        if len(head) < 2 or head[0] != 0x80 or not 2 <= head[1] <= 5:
            return (f"{path} is not a pickled {info.title} batch (of the python version: it "
                    f"begins with {head!r})")
        if last != _PICKLE_STOP:
            return (f"{path} is cut short (a pickle ends with {_PICKLE_STOP!r}, this one "
                    f"with {last!r})")
    return None


_PICKLE_STOP = b"."


# (path, size, mtime) → (the header's dimensions, or what is wrong with the file)
_IDX_CHECKED: dict[tuple[str, int, int], tuple[int, ...] | str] = {}


def _damaged_idx(info: DatasetInfo, folder: Path) -> str | None:
    """What is wrong with an IDX dataset's files, read from their headers and sizes only
    (a whole read takes seconds); None when each holds the bytes its header announces
    and each images file fits its labels file and the dataset (`_pair_problem`,
    `_label_problem`; the files come in pairs: train images, train labels, test images,
    test labels). Checked once per file version. Counts that disagree were listed as
    available, and the run started on them failed after making its folder."""
    headers = []
    for stem in info.files:  # none for bundled data; CIFAR's are `_damaged_pickle`'s
        path = _find_idx(folder, stem)
        try:
            stat = path.stat()
        except OSError as exc:
            return f"{path} is unreadable ({os_reason(exc)})"
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in _IDX_CHECKED:
            _IDX_CHECKED[key] = _idx_header(path, stat.st_size)
        found = _IDX_CHECKED[key]
        if isinstance(found, str):
            return found
        headers.append((path, found, key))
    for (images, dims, _), (labels, label_dims, label_key) in zip(headers[::2], headers[1::2]):
        problem = _pair_problem(info, images, dims, labels, label_dims)
        if problem is None:
            if label_key not in _LABELS_CHECKED:
                _LABELS_CHECKED[label_key] = _label_problem(info, labels)
            problem = _LABELS_CHECKED[label_key]
        if problem:
            return problem
    return None


# (path, size, mtime) of a labels file → what is wrong with its values, or None
_LABELS_CHECKED: dict[tuple[str, int, int], str | None] = {}


def _pair_problem(info: DatasetInfo, images: Path, dims: tuple[int, ...], labels: Path,
                  label_dims: tuple[int, ...]) -> str | None:
    """An images file and its labels file against each other and the dataset, from their
    headers: shapes, counts, and at least one sample. Each of these was listed as
    available, and the run started on them failed after making its folder (0 images:
    with "criterion 'interval_adjoint' needs calibration data")."""
    size = info.size
    if len(dims) != 3 or dims[1:] != (size, size):
        return (f"{images.name} holds images of shape {dims[1:]}, not the {size}×{size} of "
                f"{info.title}")
    if len(label_dims) != 1:
        return f"{labels.name} holds labels of shape {label_dims}, not one label per image"
    if dims[0] != label_dims[0]:
        return f"{images.name} holds {dims[0]:,} images but {labels.name} {label_dims[0]:,} labels"
    if dims[0] == 0:
        return f"{images.name} holds no images"
    return None


def _label_problem(info: DatasetInfo, labels: Path) -> str | None:
    """Labels outside the dataset's classes, read whole (a labels file is small: 60 kB for
    MNIST's training set)."""
    try:
        values = _read_idx(labels)
    except DatasetUnavailable as exc:
        return str(exc)
    top = int(values.max()) if values.size else 0
    if top >= info.num_classes:
        return (f"{labels.name} has labels up to {top}; {info.title} has {info.num_classes} "
                f"classes (0–{info.num_classes - 1})")
    return None


def _idx_header(path: Path, size: int) -> tuple[int, ...] | str:
    """An IDX file's dimensions, or what is wrong with it: its header against its length,
    the file's own for raw files, gzip's recorded length (modulo 2³²) for .gz ones."""
    gz = path.suffix == ".gz"
    try:
        with (gzip.open if gz else open)(path, "rb") as fh:
            dims = _idx_dims(fh, path)
        expected = 4 + 4 * len(dims) + int(np.prod(dims, dtype=np.int64))
        if gz:
            with open(path, "rb") as fh:
                fh.seek(-4, os.SEEK_END)
                recorded = struct.unpack("<I", fh.read(4))[0]
            if recorded != expected % 2 ** 32:
                return f"{path} is cut short or damaged (it unpacks to other than the " \
                       f"{expected:,} bytes its header announces)"
        elif size != expected:
            return f"{path} holds {size:,} bytes where its header announces {expected:,}"
    except DatasetUnavailable as exc:
        return str(exc)
    except (OSError, EOFError, zlib.error) as exc:
        return f"{path} is unreadable ({exc.__class__.__name__})"
    return dims


def _placement_hint(info: DatasetInfo, root: Path) -> str:
    hint = f"place {', '.join(info.files)}"
    if info.name not in _PICKLED:
        hint += " (optionally .gz)"
    hint += f" in {root / info.folder}"
    if info.name == "fashion_mnist":
        hint += f", or install the Debian package dataset-fashion-mnist ({DEBIAN_FASHION_MNIST})"
    return hint


def _short_reason(exc: BaseException) -> str:
    """The most specific line of a (possibly multi-line) network error, kept short."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[-1] if lines else exc.__class__.__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _files_under(*folders: Path) -> set[Path]:
    return {p for f in folders if f.is_dir() for p in f.iterdir() if p.is_file()}


def download_timeout() -> float:
    """Seconds a silent connection may stall a download (`EXPLORER_DOWNLOAD_TIMEOUT`,
    default 20). A value that is no such number is refused: it was silently replaced by
    20, so a timeout set to "90s" for a slow link never took effect."""
    text = os.environ.get("EXPLORER_DOWNLOAD_TIMEOUT", "").strip()
    if not text:
        return 20.0
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not _good_timeout(value):
        raise ExplorerError(f"EXPLORER_DOWNLOAD_TIMEOUT must be {_TIMEOUT_RANGE}, got {text!r}")
    return value


# A day: a longer socket timeout overflowed the platform's time_t (1e10 s: a traceback).
MAX_DOWNLOAD_TIMEOUT = 86_400
_TIMEOUT_RANGE = f"a positive number of seconds, at most {MAX_DOWNLOAD_TIMEOUT:,}"


def _good_timeout(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and \
        0 < value <= MAX_DOWNLOAD_TIMEOUT


def download_dataset(name: str, root: Path | str | None = None,
                     timeout: float | None = None) -> Path:
    """Fetch a torchvision dataset into the data root; returns the folder holding it.

    torchvision prints a progress bar per file. Its downloads use urllib without a
    timeout, so a firewall that drops packets would hang them for minutes: the socket
    default timeout is lowered for the duration of the call, making an offline attempt
    fail within seconds with a one-line `DatasetUnavailable` naming the folder to fill
    by hand. Partial files of a failed attempt are removed so they are not later
    mistaken for the dataset. Data already on disk (e.g. the Debian package) is used
    as is, without downloading.
    """
    info = get_info(name)
    if timeout is not None and not _good_timeout(timeout):
        raise ExplorerError(f"download timeout must be {_TIMEOUT_RANGE}, got {timeout!r}")
    if not info.files:
        return Path(".")
    where = locate(name, root)
    if where is not None:
        _refuse_damaged(info, where)
        return where
    root = Path(root) if root else default_data_root()
    import socket

    import torchvision.datasets as tvd

    cls = getattr(tvd, _TORCHVISION_CLASS[name])
    target = root / info.folder
    before = _files_under(root, target)
    # the folders this attempt makes (torchvision makes MNIST/raw): an offline attempt
    # left them empty behind it
    made = [d for d in (target, *target.parents) if not d.exists() and root in (d, *d.parents)]
    timeout = timeout if timeout is not None else download_timeout()  # before any folder
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    print(f"downloading {info.title} into {target}", flush=True)
    try:
        root.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except BaseException as exc:
        for leftover in _files_under(root, target) - before:
            leftover.unlink(missing_ok=True)
        for folder in made:  # deepest first; one holding anything else stays
            try:
                folder.rmdir()
            except OSError:
                pass
        if not isinstance(exc, Exception):
            raise
        raise DatasetUnavailable(f"download of {info.title} failed ({_short_reason(exc)}); "
                                 f"to use it offline, {_placement_hint(info, root)}") from None
    finally:
        socket.setdefaulttimeout(previous)
    where = locate(name, root)
    if where is None:
        raise DatasetUnavailable(availability(name, root)[1])
    _refuse_damaged(info, where)
    return where


def _refuse_damaged(info: DatasetInfo, where: Path) -> None:
    """Files on disk that are damaged are not "available": a download finds them there
    and fetches nothing (it said "available in …" over a batch cut short), so the way
    out is named instead."""
    damaged = _damage(info, where)
    if damaged:
        raise DatasetUnavailable(f"{info.title} is not usable: {damaged}; a download keeps "
                                 f"the files in {where}: remove the damaged one (or put a "
                                 "whole copy in its place) and download again")


def _read_exact(fh, out: np.ndarray) -> int:
    """Fill `out` from `fh` (gzip reads may return short); returns the bytes read."""
    view = memoryview(out).cast("B")
    got = 0
    while got < len(view):
        n = fh.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _idx_dims(fh: Any, path: Path) -> tuple[int, ...]:
    """The dimensions an unsigned-byte IDX file's header announces, read from `fh` (at
    its start); a `DatasetUnavailable` naming `path` for a header that is not one."""
    head = fh.read(4)
    if len(head) < 4:
        raise DatasetUnavailable(f"{path} is truncated: no IDX header")
    if head[:2] != b"\x00\x00" or head[2] != 0x08 or not 1 <= head[3] <= 4:
        raise DatasetUnavailable(f"{path} is not an unsigned-byte IDX file "
                                 f"(header {head.hex()})")
    ndim = head[3]
    raw_dims = fh.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DatasetUnavailable(f"{path} is truncated inside its IDX header")
    return struct.unpack(f">{ndim}I", raw_dims)


def _read_idx(path: Path) -> np.ndarray:
    """Decode an unsigned-byte IDX file (raw or .gz) straight into one numpy array.

    The pixels are read into a preallocated array rather than via `read()` + copy, so
    a 47 MB image file costs 47 MB, not 94. Any damage (bad magic, a header promising
    more bytes than the file holds, trailing bytes, a broken gzip stream) becomes a
    `DatasetUnavailable` naming the file.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            dims = _idx_dims(fh, path)
            expected = int(np.prod(dims, dtype=np.int64))
            if expected > 2 ** 34:
                raise DatasetUnavailable(f"{path} is corrupt: header claims {dims}")
            arr = np.empty(expected, dtype=np.uint8)
            got = _read_exact(fh, arr)
            if got < expected:
                raise DatasetUnavailable(f"{path} is truncated: {got} of {expected} data bytes")
            if fh.read(1):
                raise DatasetUnavailable(f"{path} is corrupt: bytes after the {expected} "
                                         "the header announces")
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetUnavailable(f"{path} is unreadable ({exc.__class__.__name__}: "
                                 f"{_short_reason(exc)})") from None
    return arr.reshape(dims)


class _CifarUnpickler(pickle.Unpickler):
    """CIFAR's python batches are pickles: allow only what rebuilds numpy arrays.

    Anything else (os.system, builtins.open, eval, …) is refused *before* it could be
    called: `find_class` is where a pickle obtains every callable it would invoke.
    """
    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"),
                ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
                ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}, which could run code")


def _read_cifar_batch(path: Path, num_classes: int = 10,
                      label_key: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR pickle: CIFAR-10 batches label with 'labels', CIFAR-100 with 'fine_labels'."""
    with open(path, "rb") as fh:
        try:
            batch = _CifarUnpickler(fh, encoding="latin1").load()
        except pickle.UnpicklingError:
            raise
        except Exception as exc:  # flipped bytes fail the unpickler in any way at all
            # (an encoding name 'lbtin1', a huge length): 16 of 3 000 fuzzed batches
            # escaped as LookupError, MemoryError or SystemError tracebacks
            raise pickle.UnpicklingError(f"{path.name}: {exc.__class__.__name__}: "
                                         f"{_short_reason(exc)}") from None
    if not isinstance(batch, dict) or "data" not in batch or label_key not in batch:
        raise DatasetUnavailable(f"{path} is not a CIFAR batch (no 'data' and '{label_key}')")
    x = np.asarray(batch["data"])
    y = np.asarray(batch[label_key])
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or y.shape != (x.shape[0],):
        raise DatasetUnavailable(f"{path} has data of shape {x.shape} ({x.dtype}) and "
                                 f"{y.shape[0] if y.ndim else 0} labels; expected (N, 3072) "
                                 "uint8 and N labels")
    y = y.astype(np.int64)
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DatasetUnavailable(f"{path} has labels outside 0..{num_classes - 1}")
    return x.reshape(-1, 3, 32, 32), y


def _check_idx_pair(info: DatasetInfo, where: Path, images: np.ndarray,
                    labels: np.ndarray, which: str) -> None:
    size = info.size
    if images.ndim != 3 or images.shape[1:] != (size, size):
        raise DatasetUnavailable(f"{info.title} {which} images in {where} have shape "
                                 f"{images.shape}, expected (N, {size}, {size})")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DatasetUnavailable(f"{info.title} {which} files in {where} disagree: "
                                 f"{images.shape[0]} images but {labels.shape} labels")
    if labels.size and labels.max() >= info.num_classes:
        raise DatasetUnavailable(f"{info.title} {which} labels in {where} go up to "
                                 f"{labels.max()}, expected < {info.num_classes}")


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
    # not there, or a CIFAR file that is no pickle (an IDX file's damage is named by
    # `_read_idx`, more closely than `availability` can)
    if where is None or (name in _PICKLED and _damaged_pickle(info, where)):
        raise DatasetUnavailable(availability(name, root)[1])
    try:
        if name == "cifar10":
            parts = [_read_cifar_batch(where / f, info.num_classes) for f in info.files[:5]]
            xt, yt = _read_cifar_batch(where / "test_batch", info.num_classes)
            x_train = np.concatenate([p[0] for p in parts])
            y_train = np.concatenate([p[1] for p in parts])
            del parts
            return x_train, y_train, xt, yt
        if name == "cifar100":
            x_train, y_train = _read_cifar_batch(where / "train", info.num_classes, "fine_labels")
            xt, yt = _read_cifar_batch(where / "test", info.num_classes, "fine_labels")
            return x_train, y_train, xt, yt
        x_train, y_train, x_test, y_test = (_read_idx(_find_idx(where, f)) for f in info.files)
    except (OSError, EOFError, KeyError, ValueError, TypeError, AttributeError,
            pickle.UnpicklingError) as exc:
        raise DatasetUnavailable(f"{info.title} files in {where} are unreadable: "
                                 f"{_short_reason(exc)}") from None
    _check_idx_pair(info, where, x_train, y_train, "training")
    _check_idx_pair(info, where, x_test, y_test, "test")
    return (x_train[:, None], y_train.astype(np.int64), x_test[:, None], y_test.astype(np.int64))


# ---------------------------------------------------------------- tensor-resident splits

Index = Union[slice, torch.Tensor]


@dataclass
class Split:
    """Normalised inputs and labels of one split, resident on one device."""
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def index_batches(self, batch_size: int, shuffle: bool = False,
                      generator: torch.Generator | None = None) -> Iterator[Index]:
        """Which samples form each batch, without gathering them.

        Every sample appears exactly once per pass; the last batch may be smaller.
        Yielding indices lets the training loop gather one micro-batch at a time, so
        an effective batch of 60 000 never materialises as one 188 MB copy.
        """
        n = len(self)
        batch_size = max(1, min(int(batch_size), n)) if n else 1
        if shuffle:
            order = torch.randperm(n, generator=generator, device="cpu").to(self.x.device)
            for i in range(0, n, batch_size):
                yield order[i:i + batch_size]
        else:
            for i in range(0, n, batch_size):
                yield slice(i, min(i + batch_size, n))

    def take(self, index: Index) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and labels of `index` (a view for slices, a gathered copy otherwise)."""
        return self.x[index], self.y[index]

    def batches(self, batch_size: int, shuffle: bool = False,
                generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(x, y) batches by index slicing; shuffled order comes from `generator`."""
        for index in self.index_batches(batch_size, shuffle, generator):
            yield self.take(index)

    def subset(self, n: int, seed: int = 0) -> "Split":
        n = min(n, len(self))
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self), generator=g)[:n].to(self.x.device)
        return Split(self.x[idx], self.y[idx])

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class Dataset:
    """A dataset's three splits; instances are shared by `load_dataset`'s cache.

    Treat the tensors as read-only: an in-place edit would leak into every other
    caller that loaded the same dataset in this process.
    """
    info: DatasetInfo
    train: Split
    val: Split
    test: Split
    seed: int = 0
    val_fraction: float = 0.1
    extra: dict = field(default_factory=dict)
    source: str = ""  # `data_identity` of the files it was read from

    @property
    def name(self) -> str:
        return self.info.name

    def normalise(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """Map uint8 images (N, C, H, W) into the model's input space."""
        return normalise(self.info, images_uint8)

    def to(self, device: torch.device | str) -> "Dataset":
        return Dataset(self.info, self.train.to(device), self.val.to(device),
                       self.test.to(device), self.seed, self.val_fraction, self.extra,
                       self.source)


def normalise(info: DatasetInfo, images_uint8: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 images (N, C, H, W) → float32 `(x / 255 - mean) / std`, per channel.

    The float tensor is the only new allocation (all arithmetic is in place), which
    matters at 60 000 × 784 floats.
    """
    if isinstance(images_uint8, np.ndarray):
        x = torch.from_numpy(images_uint8.astype(np.float32))
    else:
        x = images_uint8.to(torch.float32, copy=True)
    x.div_(255.0)
    mean = torch.tensor(info.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(info.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return x.sub_(mean).div_(std)


def training_samples(name: str, val_fraction: float = 0.1) -> int:
    """How many samples the training split of `name` holds (the official training set
    less the validation split), known without loading the data."""
    n = get_info(name).samples[0]
    return n - _val_count(n, val_fraction)


def _val_count(n: int, val_fraction: float) -> int:
    return int(round(n * val_fraction))


def _split_indices(n: int, seed: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices of a seeded permutation; val takes round(n * fraction)."""
    n_val = _val_count(n, val_fraction)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    return order[n_val:], order[:n_val]


@lru_cache(maxsize=3)
def _load_cached(name: str, root: str, seed: int, val_fraction: float, source: str) -> Dataset:
    """Decode once, split the uint8 arrays, then normalise each split on its own
    (`source`, the files' `data_identity`, keys the cache: files replaced are read anew).

    Splitting before normalising keeps the peak at one float copy of the data (plus
    the uint8 arrays, 1/4 of that), instead of a float copy of the whole training set
    and a second float copy of its train/val parts. The uint8 arrays are dropped on
    return; only the three float splits stay cached.
    """
    info = get_info(name)
    x_train, y_train, x_test, y_test = _load_raw(name, Path(root) if root else None)
    train_idx, val_idx = _split_indices(len(y_train), seed, val_fraction)
    splits = []
    for idx in (train_idx, val_idx):
        splits.append(Split(normalise(info, x_train[idx]),
                            torch.from_numpy(y_train[idx].astype(np.int64))))
    del x_train
    test = Split(normalise(info, x_test), torch.from_numpy(y_test.astype(np.int64)))
    return Dataset(info, splits[0], splits[1], test, seed, val_fraction, source=source)


# The fewest training samples per class a validation fraction may leave (of the official
# training set): 0.999 of Digits left 1 sample to train on, and the run went ahead
# without a word, its "dense model" a guess.
MIN_TRAIN_PER_CLASS = 10


def check_val_fraction(value: Any, dataset: str | None = None) -> float:
    """The share of the training set held out for validation, checked where a run is
    created (every kind of run saves it) as well as where the data is split: an
    iterative run with 5 made its folder and then failed. With `dataset`, the training
    split left must hold `MIN_TRAIN_PER_CLASS` samples per class of it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ExplorerError(f"validation fraction must be in [0, 1), got {value!r}")
    if dataset is not None:
        info = get_info(dataset)
        left, need = training_samples(dataset, value), MIN_TRAIN_PER_CLASS * info.num_classes
        if left < need:
            raise ExplorerError(f"validation fraction {value:g} leaves {left:,} of the "
                                f"{info.samples[0]:,} training samples of {dataset} to train "
                                f"on; at least {need:,} ({MIN_TRAIN_PER_CLASS} per class) "
                                f"are needed: lower the fraction")
    return float(value)


def load_dataset(name: str = "digits", root: Path | str | None = None, seed: int = 0,
                 val_fraction: float = 0.1) -> Dataset:
    """Load (once per process, cached) and split a dataset; DatasetUnavailable offline.

    The validation split is a seeded random `val_fraction` of the official training
    set; the test split is the official one (a fixed 20 % for Digits).
    """
    info = get_info(name)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ExplorerError(f"seed must be a whole number, got {seed!r}")
    check_val_fraction(val_fraction, name)
    resolved = "" if not info.files else str(Path(root) if root else default_data_root())
    return _load_cached(name, resolved, int(seed), float(val_fraction),
                        data_identity(name, resolved or None))


def data_identity(name: str, root: Path | str | None = None) -> str:
    """Which files a dataset would be read from now: a hash of each file's resolved
    path, size and modification time ("bundled" for data that comes with a library,
    "missing" when the files are not there). Cheap (a stat per file), for keys: the
    baseline cache keyed a trained model by the dataset's name alone, and handed a model
    trained on one set of MNIST files, with its metrics, to a run on other files."""
    info = get_info(name)
    if not info.files:
        return "bundled"
    where = locate(name, root)
    if where is None:
        return "missing"
    parts = []
    for stem in info.files:
        path = where / stem if info.name in _PICKLED else _find_idx(where, stem)
        try:
            st = path.stat()
        except (OSError, AttributeError):  # gone since `locate` found it (None)
            return "missing"
        parts.append(f"{path.resolve()} {st.st_size} {st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def clear_cache() -> None:
    """Forget loaded datasets (frees their memory once no caller holds them)."""
    _load_cached.cache_clear()


def list_datasets(root: Path | str | None = None) -> list[tuple[DatasetInfo, bool, str]]:
    """Every registered dataset with (available, reason) — for pickers."""
    return [(info, *availability(name, root)) for name, info in DATASETS.items()]
