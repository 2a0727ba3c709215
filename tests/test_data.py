"""Datasets: Digits offline, splits, normalisation, batching, the real on-disk formats
(IDX, CIFAR pickles) written by the tests themselves, refusal of malicious pickles,
and the `datasets` CLI (offline download fails fast with one line).

Nothing here touches the network: download tests route urllib through a local proxy
that refuses or stalls, so even an online machine downloads nothing.
"""
from __future__ import annotations

import gzip
import http.server
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer_core import data as D
from explorer_core.errors import DatasetUnavailable, ExplorerError

ROOT = Path(__file__).resolve().parents[1]


def rows_counter(x: torch.Tensor) -> Counter:
    """Multiset of samples (each flattened to a tuple of rounded floats)."""
    flat = x.reshape(x.shape[0], -1).numpy().round(4)
    return Counter(map(tuple, flat.tolist()))


def pixels(x: torch.Tensor, info: D.DatasetInfo) -> np.ndarray:
    """Undo (x/255 - mean)/std: the uint8 pixels a normalised tensor came from."""
    mean = np.array(info.mean).reshape(1, -1, 1, 1)
    std = np.array(info.std).reshape(1, -1, 1, 1)
    return np.round((x.double().numpy() * std + mean) * 255).astype(np.int64)


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg, f"message must be one line: {msg!r}"
    return msg


# ----------------------------------------------------------------------------- Digits

def test_digits_loads_offline_with_shapes_and_classes():
    from sklearn.datasets import load_digits

    ds = D.load_dataset("digits")
    total = len(load_digits().target)
    assert ds.info.num_classes == 10 and ds.info.input_shape == (1, 8, 8)
    for split in (ds.train, ds.val, ds.test):
        assert split.x.dtype == torch.float32 and split.x.shape[1:] == (1, 8, 8)
        assert split.y.dtype == torch.int64 and split.y.shape == (len(split),)
        assert set(split.y.unique().tolist()) <= set(range(10))
    assert len(ds.train) + len(ds.val) + len(ds.test) == total
    assert len(ds.test) == total // 5
    assert len(ds.val) == round((total - total // 5) * 0.1)
    assert set(ds.train.y.unique().tolist()) == set(range(10))


def test_digits_split_is_a_disjoint_cover_of_the_dataset():
    """Train ∪ val ∪ test is exactly the dataset: every image once, none twice."""
    from sklearn.datasets import load_digits

    d = load_digits()
    u8 = np.round(d.images * (255.0 / 16.0)).astype(np.int64)
    ds = D.load_dataset("digits", seed=5)
    together = torch.cat([ds.train.x, ds.val.x, ds.test.x])
    labels = torch.cat([ds.train.y, ds.val.y, ds.test.y]).tolist()
    got = Counter((tuple(p.flatten().tolist()), y)
                  for p, y in zip(pixels(together, ds.info), labels))
    want = Counter((tuple(p.flatten().tolist()), int(y)) for p, y in zip(u8, d.target))
    assert got == want


def test_split_is_seeded_and_repeatable():
    a = D.load_dataset("digits", seed=1)
    D.clear_cache()  # a fresh decode must give the same split, not just the cached object
    b = D.load_dataset("digits", seed=1)
    assert a is not b
    for sa, sb in ((a.train, b.train), (a.val, b.val), (a.test, b.test)):
        assert torch.equal(sa.x, sb.x) and torch.equal(sa.y, sb.y)
    c = D.load_dataset("digits", seed=2)
    assert not torch.equal(a.val.x, c.val.x)  # another seed, another validation set
    assert torch.equal(a.test.x, c.test.x)    # the test split never depends on the seed
    assert rows_counter(torch.cat([a.train.x, a.val.x])) == \
        rows_counter(torch.cat([c.train.x, c.val.x]))


def test_val_fraction_zero_and_bad_values():
    ds = D.load_dataset("digits", val_fraction=0)
    assert len(ds.val) == 0 and len(ds.train) > 0
    for bad in (1.0, -0.1, "0.1", True):
        with pytest.raises(ExplorerError) as exc:
            D.load_dataset("digits", val_fraction=bad)
        one_line(exc)
    with pytest.raises(ExplorerError) as exc:
        D.load_dataset("imagenet")
    assert "digits" in one_line(exc)


def test_registry_statistics_match_the_digits_pixels():
    """The per-dataset mean/std constants are the real statistics of the data."""
    from sklearn.datasets import load_digits

    u8 = np.round(load_digits().images * (255.0 / 16.0)).astype(np.uint8) / 255.0
    info = D.DATASETS["digits"]
    assert info.mean[0] == pytest.approx(u8.mean(), abs=1e-3)
    assert info.std[0] == pytest.approx(u8.std(), abs=1e-3)


# ----------------------------------------------------------------------- normalisation

def test_normalise_maps_uint8_per_channel():
    info = D.DatasetInfo("t", "T", 3, 2, ("a", "b"), (0.5, 0.25, 0.1), (0.2, 0.5, 1.0), "", ())
    u8 = torch.tensor([0, 51, 128, 255], dtype=torch.uint8).repeat(1, 3, 1).reshape(1, 3, 2, 2)
    out = D.normalise(info, u8)
    assert out.dtype == torch.float32 and out.shape == (1, 3, 2, 2)
    for c, (m, s) in enumerate(zip(info.mean, info.std)):
        want = [(v / 255.0 - m) / s for v in (0, 51, 128, 255)]
        assert out[0, c].flatten().tolist() == pytest.approx(want, abs=1e-6)
    assert u8.dtype == torch.uint8 and u8.max() == 255  # input untouched
    same = D.normalise(info, u8.numpy())  # numpy input gives the same result
    assert torch.equal(same, out)


# ---------------------------------------------------------------------------- batching

def make_split(n: int) -> D.Split:
    return D.Split(torch.arange(n, dtype=torch.float32).view(n, 1), torch.arange(n))


@pytest.mark.parametrize("n,bs", [(10, 3), (10, 10), (10, 1), (10, 25), (1, 4)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_batches_cover_every_sample_once(n, bs, shuffle):
    split = make_split(n)
    g = torch.Generator().manual_seed(0)
    got = list(split.batches(bs, shuffle=shuffle, generator=g))
    sizes = [len(y) for _, y in got]
    assert sizes == [min(bs, n - i) for i in range(0, n, min(bs, n))]
    ys = torch.cat([y for _, y in got])
    assert sorted(ys.tolist()) == list(range(n))
    for x, y in got:  # inputs stay paired with their labels
        assert torch.equal(x.view(-1).long(), y)
    if not shuffle:
        assert ys.tolist() == list(range(n))


def test_shuffle_with_a_generator_is_repeatable():
    split = make_split(100)

    def order(seed: int) -> list[int]:
        g = torch.Generator().manual_seed(seed)
        return torch.cat([y for _, y in split.batches(16, True, g)]).tolist()

    assert order(7) == order(7)
    assert order(7) != order(8)
    assert order(7) != list(range(100))
    g = torch.Generator().manual_seed(3)  # two epochs from one generator differ
    first = torch.cat([y for _, y in split.batches(16, True, g)]).tolist()
    second = torch.cat([y for _, y in split.batches(16, True, g)]).tolist()
    assert first != second and sorted(first) == sorted(second)


def test_empty_split_yields_nothing():
    assert list(make_split(0).batches(8, shuffle=True)) == []


# ------------------------------------------------------------------ IDX (MNIST format)

def idx_bytes(arr: np.ndarray) -> bytes:
    """The IDX format: 0x0000, type 0x08 (ubyte), ndim, big-endian dims, raw bytes."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    head = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.tobytes()


def write_mnist(folder: Path, n_train: int = 30, n_test: int = 12, gz: bool = True,
                seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr in arrays.items():
        blob = idx_bytes(arr)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(blob))
        else:
            (folder / stem).write_bytes(blob)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_in_the_real_format_load(tmp_path, gz):
    arrays = write_mnist(tmp_path / "MNIST" / "raw", gz=gz)
    info = D.DATASETS["mnist"]
    ds = D.load_dataset("mnist", root=tmp_path, seed=0, val_fraction=0.2)
    assert ds.test.x.shape == (12, 1, 28, 28) and len(ds.train) == 24 and len(ds.val) == 6
    want_test = D.normalise(info, torch.from_numpy(arrays["t10k-images-idx3-ubyte"][:, None]))
    assert torch.equal(ds.test.x, want_test)
    assert ds.test.y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    # train + val hold every training image once, each with its own label
    got = torch.cat([ds.train.x, ds.val.x])
    want = D.normalise(info, torch.from_numpy(arrays["train-images-idx3-ubyte"][:, None]))
    assert rows_counter(got) == rows_counter(want)
    pairs = {tuple(x.flatten()[:20].round(decimals=4).tolist()): int(y)
             for x, y in zip(torch.cat([ds.train.x, ds.val.x]), torch.cat([ds.train.y, ds.val.y]))}
    for x, y in zip(want, arrays["train-labels-idx1-ubyte"]):
        assert pairs[tuple(x.flatten()[:20].round(decimals=4).tolist())] == int(y)


def corrupt_cases() -> dict[str, tuple[str, bytes, str]]:
    """name → (file stem to overwrite, its bytes, a word the message must contain)."""
    imgs = np.zeros((30, 28, 28), np.uint8)
    good = idx_bytes(imgs)
    return {
        "truncated pixels": ("train-images-idx3-ubyte", good[:-100], "truncated"),
        "truncated header": ("train-images-idx3-ubyte", good[:6], "truncated"),
        "empty file": ("train-images-idx3-ubyte", b"", "truncated"),
        "bad magic": ("train-images-idx3-ubyte", b"\x01\x02" + good[2:], "IDX"),
        "float type": ("train-images-idx3-ubyte", good[:2] + b"\x0d" + good[3:], "IDX"),
        "trailing bytes": ("train-images-idx3-ubyte", good + b"\x00" * 7, "corrupt"),
        "label count": ("train-labels-idx1-ubyte", idx_bytes(np.zeros(29, np.uint8)), "disagree"),
        "label range": ("train-labels-idx1-ubyte", idx_bytes(np.full(30, 12, np.uint8)), "labels"),
        "image shape": ("train-images-idx3-ubyte", idx_bytes(np.zeros((30, 27, 28), np.uint8)),
                        "shape"),
    }


@pytest.mark.parametrize("case", list(corrupt_cases()))
@pytest.mark.parametrize("gz", [True, False])
def test_damaged_idx_files_are_refused_with_a_clear_message(tmp_path, case, gz):
    folder = tmp_path / "MNIST" / "raw"
    write_mnist(folder, gz=gz)
    stem, blob, word = corrupt_cases()[case]
    (folder / (f"{stem}.gz" if gz else stem)).write_bytes(gzip.compress(blob) if gz else blob)
    with pytest.raises(DatasetUnavailable) as exc:
        D.load_dataset("mnist", root=tmp_path)
    msg = one_line(exc)
    assert word in msg and str(folder) in msg


@pytest.mark.parametrize("damage", ["garbage", "cut"])
def test_broken_gzip_streams_are_refused(tmp_path, damage):
    folder = tmp_path / "MNIST" / "raw"
    write_mnist(folder)
    target = folder / "t10k-images-idx3-ubyte.gz"
    blob = target.read_bytes()
    if damage == "garbage":  # valid gzip magic, then noise: a zlib error inside gzip
        blob = blob[:10] + bytes(range(256)) * 4
    else:
        blob = blob[: len(blob) // 2]
    target.write_bytes(blob)
    with pytest.raises(DatasetUnavailable) as exc:
        D.load_dataset("mnist", root=tmp_path)
    assert "t10k-images-idx3-ubyte.gz" in one_line(exc)


# ------------------------------------------------------------------------- unavailable

def test_missing_dataset_names_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_DATA", str(tmp_path))
    ok, reason = D.availability("mnist")
    assert not ok and str(tmp_path / "MNIST" / "raw") in reason
    with pytest.raises(DatasetUnavailable) as exc:
        D.load_dataset("mnist")
    msg = one_line(exc)
    assert str(tmp_path / "MNIST" / "raw") in msg and "train-images-idx3-ubyte" in msg
    other = tmp_path / "elsewhere"
    with pytest.raises(DatasetUnavailable) as exc:  # an explicit root wins over the env
        D.load_dataset("cifar10", root=other)
    assert str(other / "cifar-10-batches-py") in one_line(exc)


def test_missing_fashion_mentions_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    with pytest.raises(DatasetUnavailable) as exc:
        D.load_dataset("fashion_mnist", root=tmp_path)
    msg = one_line(exc)
    assert str(tmp_path / "FashionMNIST" / "raw") in msg and "dataset-fashion-mnist" in msg


def test_files_placed_later_are_found(tmp_path):
    assert D.locate("mnist", tmp_path) is None
    write_mnist(tmp_path / "MNIST" / "raw", gz=False)
    assert D.locate("mnist", tmp_path) == tmp_path / "MNIST" / "raw"
    assert D.availability("mnist", tmp_path)[0]
    assert len(D.load_dataset("mnist", root=tmp_path).test) == 12


# ---------------------------------------------------------------- CIFAR-10 (pickles)

CIFAR_FILES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
               "data_batch_5", "test_batch"]


def write_cifar(folder: Path, n: int = 4, protocol: int = 2) -> dict[str, dict]:
    """Batches as the real files hold them: dict with uint8 (N, 3072) rows, R|G|B planes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    batches = {}
    for i, name in enumerate(CIFAR_FILES):
        batch = {"batch_label": f"batch {i}",
                 "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 "labels": [int(v) for v in rng.integers(0, 10, n)],
                 "filenames": [f"img{i}_{j}.png" for j in range(n)]}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=protocol)
        batches[name] = batch
    return batches


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batches_in_the_real_format_load(tmp_path, protocol):
    batches = write_cifar(tmp_path / "cifar-10-batches-py", protocol=protocol)
    info = D.DATASETS["cifar10"]
    ds = D.load_dataset("cifar10", root=tmp_path, val_fraction=0.25)
    assert ds.test.x.shape == (4, 3, 32, 32) and len(ds.train) + len(ds.val) == 20
    row = batches["test_batch"]["data"][2]
    x = ds.test.x[2]
    # row layout: 1024 red, 1024 green, 1024 blue values, each plane row-major 32×32
    for c in range(3):
        for (r, col) in ((0, 0), (5, 17), (31, 31)):
            raw = row[c * 1024 + r * 32 + col]
            assert x[c, r, col].item() == pytest.approx((raw / 255 - info.mean[c]) / info.std[c],
                                                        abs=1e-5)
    assert ds.test.y.tolist() == batches["test_batch"]["labels"]


class _RunsShell:
    """Unpickling this would run a shell command that creates `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _OpensFile:
    """Unpickling this would create `marker` through builtins.open."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("payload", [_RunsShell, _OpensFile])
def test_malicious_cifar_batch_is_refused_without_running(tmp_path, payload):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    marker = tmp_path / "pwned"
    evil = {"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 3],
            "x": payload(marker)}
    (folder / "test_batch").write_bytes(pickle.dumps(evil, protocol=2))
    assert not marker.exists()
    with pytest.raises(DatasetUnavailable) as exc:
        D.load_dataset("cifar10", root=tmp_path)
    msg = one_line(exc)
    assert "refused" in msg and str(folder) in msg
    assert not marker.exists(), "the pickle's payload ran"


def test_cifar_batch_with_wrong_content_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    with open(folder / "data_batch_3", "wb") as fh:
        pickle.dump({"data": np.zeros((4, 100), np.uint8), "labels": [0] * 4}, fh)
    with pytest.raises(DatasetUnavailable) as exc:
        D.load_dataset("cifar10", root=tmp_path)
    assert "data_batch_3" in one_line(exc)
    (folder / "data_batch_3").write_bytes(b"not a pickle at all")
    with pytest.raises(DatasetUnavailable) as exc:
        D.load_dataset("cifar10", root=tmp_path)
    one_line(exc)


@pytest.mark.parametrize("head", [b"PK\x03\x04", b"", b"(dp0"])
def test_cifar_files_that_are_no_pickles_are_not_listed_as_available(tmp_path, head):
    """A torch.save archive (a zip, 'PK') in the CIFAR folder was listed as available; the
    run started on it made its folder and failed with "no persistent_load function was
    specified". It is named as not usable, as a damaged MNIST file is."""
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    assert D.availability("cifar10", tmp_path)[0]
    (folder / "data_batch_2").write_bytes(head + b"\x00" * 64 if head else b"")
    ok, reason = D.availability("cifar10", tmp_path)
    assert not ok and "data_batch_2 is not a pickled CIFAR-10 batch" in reason, reason
    assert "\n" not in reason and str(tmp_path) in reason
    with pytest.raises(DatasetUnavailable, match="data_batch_2 is not a pickled"):
        D.load_dataset("cifar10", root=tmp_path)



def test_a_cifar_batch_cut_short_is_not_listed_as_available(tmp_path):
    """A batch cut short by an interrupted copy begins like a whole one and was listed
    as available; the run started on it failed after making its folder. A pickle ends
    with its STOP byte, which a cut file has lost."""
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    blob = (folder / "data_batch_4").read_bytes()
    (folder / "data_batch_4").write_bytes(blob[: len(blob) // 2])
    ok, reason = D.availability("cifar10", tmp_path)
    assert not ok and reason.startswith("CIFAR-10 is not usable: "), reason
    assert f"{folder / 'data_batch_4'} is cut short" in reason and "\n" not in reason
    with pytest.raises(DatasetUnavailable, match="data_batch_4 is cut short"):
        D.load_dataset("cifar10", root=tmp_path)
    (folder / "data_batch_4").write_bytes(blob)
    assert D.availability("cifar10", tmp_path)[0]

@pytest.mark.parametrize("corrupt", [
    lambda b: b.replace(b"latin1", b"lbtin1"),  # an encoding that is none: LookupError
    lambda b: b[:2] + b"\x8c" + b[3:],  # an opcode read where another stood
    lambda b: b[:40] + bytes(range(256)) * 4 + b[40:],  # garbage spliced in
])
def test_a_cifar_batch_with_flipped_bytes_is_unreadable_not_a_traceback(tmp_path, corrupt):
    """QA flipped random bytes of a valid batch 3 000 times: 16 times a LookupError,
    MemoryError or SystemError escaped as a traceback instead of "unreadable"."""
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    good = (folder / "test_batch").read_bytes()
    bad = corrupt(good)
    assert bad != good
    (folder / "test_batch").write_bytes(bad)
    with pytest.raises(DatasetUnavailable) as exc:
        D.load_dataset("cifar10", root=tmp_path)
    assert "unreadable" in one_line(exc) or "test_batch" in one_line(exc)


def test_fuzzed_cifar_batches_only_ever_fail_as_unavailable(tmp_path):
    """200 batches with random bytes flipped: each loads or is one DatasetUnavailable."""
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    good = (folder / "test_batch").read_bytes()
    rng = np.random.default_rng(7)
    refused = 0
    for _ in range(200):
        bad = bytearray(good)
        for i in rng.integers(0, len(bad), 3):
            bad[i] = int(rng.integers(0, 256))
        (folder / "test_batch").write_bytes(bytes(bad))
        D.clear_cache()  # read the file again, not the last success
        try:
            D.load_dataset("cifar10", root=tmp_path)
        except DatasetUnavailable as exc:
            assert "\n" not in str(exc)
            refused += 1
    assert refused > 20  # the flips did reach the unpickler


# ----------------------------------------------------------------------------- the CLI

def run_cli(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "explorer_core", *args], cwd=ROOT,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


def test_cli_lists_datasets_with_availability(tmp_path):
    write_mnist(tmp_path / "MNIST" / "raw")
    res = run_cli("datasets", env={"EXPLORER_DATA": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    lines = {ln.split()[0]: ln for ln in res.stdout.splitlines() if ln.strip()}
    assert set(D.DATASETS) <= set(lines)
    assert "available" in lines["digits"] and "bundled" in lines["digits"]
    assert "available" in lines["mnist"] and str(tmp_path / "MNIST" / "raw") in lines["mnist"]
    assert "missing" in lines["cifar10"]
    assert str(tmp_path / "cifar-10-batches-py") in lines["cifar10"]
    write_cifar(tmp_path / "cifar-10-batches-py")
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(batch.read_bytes()[:-9])
    res = run_cli("datasets", env={"EXPLORER_DATA": str(tmp_path)})
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("cifar10 "))
    # found but not usable: said as such, not "missing" beside a reason naming the file
    assert line.split()[1] == "damaged" and f"{batch} is cut short" in line, line


def offline_env(proxy_port: int, data: Path) -> dict:
    """Send every urllib request to a local proxy port: nothing can reach the internet."""
    proxy = f"http://127.0.0.1:{proxy_port}"
    return {"EXPLORER_DATA": str(data), "http_proxy": proxy, "https_proxy": proxy,
            "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "no_proxy": "", "NO_PROXY": ""}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_download_offline_fails_with_one_line(tmp_path):
    res = run_cli("datasets", "--download", "mnist", env=offline_env(free_port(), tmp_path))
    assert res.returncode != 0
    err = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(err) == 1, res.stderr
    assert "MNIST" in err[0] and str(tmp_path / "MNIST" / "raw") in err[0]
    assert not any(p.is_file() for p in tmp_path.rglob("*")), "partial files left behind"
    assert list(tmp_path.iterdir()) == [], "the attempt's empty MNIST/raw was left behind"


def test_cli_download_gives_up_on_a_stalled_connection(tmp_path):
    """A proxy that accepts but never answers: the socket timeout ends the attempt."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes connections; nobody ever replies
        env = offline_env(silent.getsockname()[1], tmp_path)
        res = run_cli("datasets", "--download", "cifar10", "--timeout", "1", env=env)
    assert res.returncode != 0
    err = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and "CIFAR-10" in err[0] and "timed out" in err[0], res.stderr


@pytest.mark.parametrize("value", ["abc", "90s", "0", "-5", "nan", "1e10", "inf"])
def test_a_download_timeout_in_the_environment_that_is_no_number_is_refused(tmp_path, value):
    """EXPLORER_DOWNLOAD_TIMEOUT=abc was silently replaced by 20 s; 1e10 overflowed the
    socket's time_t in a traceback."""
    env = {**offline_env(free_port(), tmp_path), "EXPLORER_DOWNLOAD_TIMEOUT": value}
    res = run_cli("datasets", "--download", "mnist", env=env)
    assert res.returncode == 2
    assert res.stderr == (f"error: EXPLORER_DOWNLOAD_TIMEOUT must be a positive number of "
                          f"seconds, at most 86,400, got {value!r}\n")
    assert list(tmp_path.iterdir()) == []


def test_a_download_timeout_past_a_day_is_refused_in_one_line(tmp_path):
    """--timeout 1e10 ended in a traceback (OverflowError: timestamp out of range)."""
    res = run_cli("datasets", "--download", "mnist", "--timeout", "1e10",
                  env=offline_env(free_port(), tmp_path))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr == ("error: download timeout must be a positive number of seconds, at "
                          "most 86,400, got 10000000000.0\n")


class _JunkProxy(http.server.BaseHTTPRequestHandler):
    """A proxy that refuses HTTPS tunnels and answers every plain HTTP request with
    junk bytes: torchvision writes a file, finds the wrong checksum and gives up."""

    def do_CONNECT(self):
        self.send_error(403, "no tunnels here")

    def _junk(self, body: bool):
        blob = b"this is not MNIST" * 64
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(blob)))
        self.end_headers()
        if body:
            self.wfile.write(blob)

    def do_GET(self):
        self._junk(True)

    def do_HEAD(self):
        self._junk(False)

    def log_message(self, *args):
        pass


def test_failed_download_removes_its_partial_files(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _JunkProxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        res = run_cli("datasets", "--download", "mnist", "--timeout", "5",
                      env=offline_env(server.server_address[1], tmp_path))
    finally:
        server.shutdown()
        server.server_close()
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2, res.stderr
    assert "100%" in res.stderr  # torchvision's progress bar was shown while downloading
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert errors == lines[-1:], res.stderr  # one error line, and it comes last
    assert "corrupted" in errors[0] and str(tmp_path / "MNIST" / "raw") in errors[0]
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], "partial download left behind"
    assert D.locate("mnist", tmp_path) is None


def test_cli_download_of_bundled_or_present_data_needs_no_network(tmp_path):
    res = run_cli("datasets", "--download", "digits", env=offline_env(free_port(), tmp_path))
    assert res.returncode == 0 and "bundled" in res.stdout
    write_mnist(tmp_path / "MNIST" / "raw")
    res = run_cli("datasets", "--download", "mnist", env=offline_env(free_port(), tmp_path))
    assert res.returncode == 0 and str(tmp_path / "MNIST" / "raw") in res.stdout


def test_cli_download_over_damaged_files_names_them_instead_of_saying_available(tmp_path):
    """The download found the files there and fetched nothing, saying "available in …"
    over a batch cut short; it now says what is wrong and how to get a whole copy."""
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    blob = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(blob[:-1])
    res = run_cli("datasets", "--download", "cifar10", env=offline_env(free_port(), tmp_path))
    err = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode != 0 and len(err) == 1 and "Traceback" not in res.stderr, res.stderr
    assert f"{folder / 'test_batch'} is cut short" in err[0]
    assert "remove the damaged one" in err[0] and "available" not in res.stdout
    assert (folder / "test_batch").read_bytes() == blob[:-1]  # the user's file is left alone


def test_cli_rejects_unknown_dataset_names_and_bad_timeouts(tmp_path):
    res = run_cli("datasets", "--download", "imagenet")
    assert res.returncode == 2
    assert len([ln for ln in res.stderr.splitlines() if ln.strip()]) == 1
    res = run_cli("datasets", "--download", "mnist", "--timeout", "0",
                  env=offline_env(free_port(), tmp_path))
    err = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(err) == 1 and "timeout" in err[0], res.stderr


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("damage", ["cut short", "header cut", "bytes added"])
def test_damaged_idx_files_are_not_listed_as_available(tmp_path, gz, damage):
    """Truncated MNIST files were listed "available", and a run on them made its folder
    before it failed reading them. Header and length are checked (never the whole file):
    the dataset is then unavailable, with the file named."""
    folder = tmp_path / "MNIST" / "raw"
    write_mnist(folder, gz=gz)
    assert D.availability("mnist", tmp_path)[0]
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    blob = idx_bytes(D._read_idx(folder / name))
    blob = {"cut short": blob[:-100], "header cut": blob[:10],
            "bytes added": blob + b"\0" * 7}[damage]
    (folder / name).write_bytes(gzip.compress(blob) if gz else blob)
    ok, reason = D.availability("mnist", tmp_path)
    assert not ok and str(folder / name) in reason and reason.startswith("MNIST is not usable: ")


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("pair", ["train", "t10k"])
def test_images_and_labels_that_disagree_in_number_are_not_listed_as_available(tmp_path, gz,
                                                                               pair):
    """Each file whole, but 12 test images beside 11 labels: listed as available, and
    the run started on them failed after making its folder."""
    folder = tmp_path / "MNIST" / "raw"
    arrays = write_mnist(folder, gz=gz)
    labels = f"{pair}-labels-idx1-ubyte"
    blob = idx_bytes(arrays[labels][:-1])
    (folder / (labels + (".gz" if gz else ""))).write_bytes(gzip.compress(blob) if gz else blob)
    ok, reason = D.availability("mnist", tmp_path)
    n = len(arrays[labels])
    assert not ok and reason.startswith("MNIST is not usable: "), reason
    assert (f"{pair}-images-idx3-ubyte{'.gz' if gz else ''} holds {n} images but "
            f"{labels}{'.gz' if gz else ''} {n - 1} labels") in reason
    with pytest.raises(DatasetUnavailable, match="disagree"):
        D.load_dataset("mnist", root=tmp_path)


@pytest.mark.parametrize("damage, says", [
    ("small images", "t10k-images-idx3-ubyte holds images of shape (27, 27), not the 28×28"),
    ("labels as a column", "t10k-labels-idx1-ubyte holds labels of shape (12, 1), not one"),
    ("label 177", "t10k-labels-idx1-ubyte has labels up to 177; MNIST has 10 classes (0–9)"),
    ("no samples", "t10k-images-idx3-ubyte holds no images"),
])
def test_files_whose_headers_or_labels_do_not_fit_the_dataset_are_not_available(
        tmp_path, damage, says):
    """Each of these was listed as available, and the run started on it made its folder
    before failing (no samples: with "criterion 'interval_adjoint' needs calibration
    data"). Headers are read, and the labels file, which is small; never the images."""
    folder = tmp_path / "MNIST" / "raw"
    arrays = write_mnist(folder, gz=False)
    images, labels = arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]
    new = {"small images": {"t10k-images-idx3-ubyte": images[:, :27, :27]},
           "labels as a column": {"t10k-labels-idx1-ubyte": labels[:, None]},
           "label 177": {"t10k-labels-idx1-ubyte": np.where(np.arange(len(labels)) == 3, 177,
                                                           labels)},
           "no samples": {"t10k-images-idx3-ubyte": images[:0],
                          "t10k-labels-idx1-ubyte": labels[:0]}}[damage]
    for stem, arr in new.items():
        (folder / stem).write_bytes(idx_bytes(arr))
    ok, reason = D.availability("mnist", tmp_path)
    assert not ok and reason.startswith("MNIST is not usable: ") and says in reason, reason
    runs = tmp_path / "runs"
    res = run_cli("prune", "--dataset", "mnist", "--hidden", "8", "--iterations", "2",
                  "--runs-root", str(runs), "--quiet", env={"EXPLORER_DATA": str(tmp_path)})
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and says in res.stderr
    assert not runs.exists() or not any(runs.rglob("config.json"))


def test_a_run_on_damaged_files_is_refused_before_its_folder_is_made(tmp_path):
    folder = tmp_path / "data" / "MNIST" / "raw"
    write_mnist(folder, gz=False)
    blob = (folder / "t10k-images-idx3-ubyte").read_bytes()
    (folder / "t10k-images-idx3-ubyte").write_bytes(blob[:-1])
    runs = tmp_path / "runs"
    res = run_cli("prune", "--dataset", "mnist", "--hidden", "8", "--iterations", "2",
                  "--runs-root", str(runs), "--quiet", env={"EXPLORER_DATA": str(tmp_path / "data")})
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "MNIST is not usable" in res.stderr and "t10k-images-idx3-ubyte" in res.stderr
    assert not runs.exists() or not any(runs.rglob("config.json"))


def test_a_validation_fraction_that_leaves_too_little_to_train_on_is_refused():
    """0.999 of Digits left one training sample, and runs trained on it without a word;
    the split left must hold 10 samples per class (100 of Digits' 1 438)."""
    message = ("validation fraction 0.999 leaves 1 of the 1,438 training samples of digits "
               "to train on; at least 100 (10 per class) are needed: lower the fraction")
    with pytest.raises(ExplorerError) as exc:
        D.check_val_fraction(0.999, "digits")
    assert one_line(exc) == message
    with pytest.raises(ExplorerError, match="leaves 1 of"):
        D.load_dataset("digits", val_fraction=0.999)
    assert D.training_samples("digits", 0.93) >= 100
    assert D.check_val_fraction(0.93, "digits") == 0.93
    assert D.check_val_fraction(0.999) == 0.999  # no dataset: the range alone
