"""Atomic writes and the thesis' table format (compared against numpy.savetxt itself)."""
from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from explorer_core import fileio
from explorer_core.fileio import (atomic_write_bytes, atomic_write_json, atomic_write_text,
                                  read_table, table_text, write_table)


def test_atomic_write_replaces_content_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "status.json"
    atomic_write_text(target, "first\n")
    assert target.read_text() == "first\n"
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    atomic_write_json(target, {"state": "running", "iteration": 3})
    assert fileio.json.loads(target.read_text()) == {"state": "running", "iteration": 3}
    assert sorted(p.name for p in target.parent.iterdir()) == ["status.json"]


def test_failed_write_keeps_the_old_file_and_cleans_up(tmp_path, monkeypatch):
    target = tmp_path / "results.txt"
    atomic_write_text(target, "old\n")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_text(target, "new\n")
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.txt"]


def test_written_files_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        fresh = atomic_write_text(tmp_path / "fresh.txt", "x")
        assert fresh.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
        private = tmp_path / "private.txt"
        private.write_text("secret")
        private.chmod(0o600)
        atomic_write_text(private, "still secret")
        assert private.stat().st_mode & 0o777 == 0o600  # an existing mode is kept
    finally:
        os.umask(old)


def savetxt(columns, rows) -> str:
    buf = io.StringIO()
    np.savetxt(buf, np.asarray(rows, dtype=float), header=" ".join(columns), comments="",
               fmt="%g")
    return buf.getvalue()


TABLES = {
    "validations": (["Train_Loss", "Test_Loss", "Train_Accuracy", "Test_Accuracy",
                     "PercentageRetain"],
                    [[0.2345678912, 0.31, 93.123456, 92.5, 100.0],
                     [0.5, 0.6, 80.0, 79.99999, 20.937500]]),
    "retain": (["Iteration", "h1NodesRetained", "h2NodesRetained", "perNodesRetained"],
               [[0, 256, 64, 100], [1, 205, 51, 80], [30, 1, 1, 0.625]]),
    "awkward": (["a", "b", "c", "d"],
                [[1e-7, -3.5, 1234567.0, 0.0], [float("nan"), float("inf"), -0.0, 1e21],
                 [123456, 0.1 + 0.2, 2 / 3, -1e-300]]),
    "one row": (["x"], [[42]]),
}


@pytest.mark.parametrize("name", list(TABLES))
def test_table_text_equals_numpy_savetxt(name, tmp_path):
    columns, rows = TABLES[name]
    assert table_text(columns, rows) == savetxt(columns, rows)
    path = write_table(tmp_path / f"{name}.txt", columns, rows)
    np.savetxt(tmp_path / "np.txt", np.asarray(rows, dtype=float), header=" ".join(columns),
               comments="", fmt="%g")
    assert path.read_bytes() == (tmp_path / "np.txt").read_bytes()


def test_read_table_reads_savetxt_files(tmp_path):
    columns, rows = TABLES["retain"]
    np.savetxt(tmp_path / "retain.txt", np.asarray(rows, dtype=float),
               header=" ".join(columns), comments="", fmt="%g")
    got_cols, got_rows = read_table(tmp_path / "retain.txt")
    assert got_cols == columns and got_rows == [[float(v) for v in r] for r in rows]
    (tmp_path / "empty.txt").write_text("")
    assert read_table(tmp_path / "empty.txt") == ([], [])


def test_table_of_numpy_rows_and_special_values():
    rows = np.array([[1.5, np.nan], [np.inf, -2.0]])
    text = table_text(["a", "b"], rows)
    assert text == savetxt(["a", "b"], rows)
    lines = text.splitlines()
    assert lines[0] == "a b" and lines[1] == "1.5 nan" and math.isinf(float(lines[2].split()[0]))


def test_ordered_writer_keeps_the_order_and_stops_at_a_failed_write():
    import time

    from explorer_core.fileio import OrderedWriter

    done: list[int] = []
    writer = OrderedWriter(depth=2)  # submits wait for the slow writes: order still kept
    for i in range(20):
        writer.submit(lambda i=i: (time.sleep(0.002), done.append(i)))
    writer.close()
    assert done == list(range(20))

    written: list[str] = []

    def disk_full() -> None:
        raise OSError("No space left on device")

    writer = OrderedWriter()
    writer.submit(lambda: written.append("checkpoint 1"))
    writer.submit(disk_full)
    writer.submit(lambda: written.append("record 2"))  # must not mark a cell whose write failed
    with pytest.raises(OSError, match="No space left"):
        writer.close()
    assert written == ["checkpoint 1"]


def test_latest_writes_run_at_most_once_per_interval_and_the_newest_is_not_lost():
    """A burst of reports: they run at least the interval apart, the ones between are
    replaced, the newest runs when its time comes; ordered writes keep their order."""
    import threading
    import time

    from explorer_core.fileio import OrderedWriter

    ran: list[str] = []
    at: list[float] = []
    newest = threading.Event()

    def report(i: int) -> None:
        ran.append(f"report {i}")
        at.append(time.monotonic())
        if i == 10:
            newest.set()

    writer = OrderedWriter()
    for i in range(10):
        writer.submit_latest(lambda i=i: report(i), every=0.3)
        writer.submit(lambda i=i: ran.append(f"cell {i}"))
    writer.submit_latest(lambda: report(10), every=0.3)
    assert newest.wait(10), ran  # not lost, though no write came after it
    writer.close()
    reports = [r for r in ran if r.startswith("report")]
    assert reports[-1] == "report 10" and len(reports) < 11, reports  # some were replaced
    assert all(b - a >= 0.29 for a, b in zip(at, at[1:])), at
    assert [r for r in ran if r.startswith("cell")] == [f"cell {i}" for i in range(10)]


def test_a_latest_write_not_yet_due_is_dropped_by_close_and_every_0_queues_them_all():
    from explorer_core.fileio import OrderedWriter

    ran: list[int] = []
    writer = OrderedWriter()
    writer.submit_latest(lambda: ran.append(0), every=1e9)
    writer.submit_latest(lambda: ran.append(1), every=1e9)  # due in 1e9 s
    writer.close()  # what follows a close (the final status) supersedes it
    assert ran in ([0], [1])  # one ran at once (the newest when the thread got to it)
    ran.clear()

    writer = OrderedWriter()
    for i in range(5):
        writer.submit_latest(lambda i=i: ran.append(i), every=0)
    writer.close()
    assert ran == [0, 1, 2, 3, 4]


# --- atomic_write_bytes on plain descriptors: modes, fsync, clean failure, concurrency ---

def _open_mode(path, umask: int) -> int:
    """The reference: the mode `open(path, "w")` gives a new file under `umask`."""
    old = os.umask(umask)
    try:
        with open(path, "w"):
            pass
    finally:
        os.umask(old)
    mode = os.stat(path).st_mode & 0o7777
    os.unlink(path)
    return mode


@pytest.mark.parametrize("umask", [0o027, 0o002, 0o077, 0o000], ids=oct)
def test_a_new_file_gets_the_mode_open_would_give_under_the_umask(tmp_path, umask):
    want = _open_mode(tmp_path / "reference", umask)
    old = os.umask(umask)
    try:
        for i, write in enumerate([lambda p: atomic_write_bytes(p, b"x"),
                                   lambda p: atomic_write_bytes(p, b"x", durable=False),
                                   lambda p: atomic_write_json(p, {"a": 1})]):
            path = write(tmp_path / "new" / f"f{i}")  # in a folder that does not exist yet
            assert path.stat().st_mode & 0o7777 == want == 0o666 & ~umask
    finally:
        os.umask(old)


@pytest.mark.parametrize("mode", [0o604, 0o755, 0o400, 0o660], ids=oct)
def test_an_existing_files_mode_is_kept_whatever_the_umask(tmp_path, mode):
    path = tmp_path / "kept.bin"
    path.write_bytes(b"old")
    path.chmod(mode)
    old = os.umask(0o077)
    try:
        atomic_write_bytes(path, b"new")
        assert path.stat().st_mode & 0o7777 == mode and path.read_bytes() == b"new"
        atomic_write_bytes(path, b"newer", durable=False)
        assert path.stat().st_mode & 0o7777 == mode and path.read_bytes() == b"newer"
    finally:
        os.umask(old)


def test_missing_parent_folders_are_created(tmp_path):
    path = atomic_write_text(tmp_path / "a" / "b" / "c" / "x.txt", "deep")
    assert path.read_text() == "deep"
    assert path == tmp_path / "a" / "b" / "c" / "x.txt"
    assert atomic_write_bytes(str(tmp_path / "s" / "y.bin"), b"y").read_bytes() == b"y"


def test_a_path_through_a_file_is_an_error_and_leaves_nothing(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "file" / "x.bin", b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def test_durable_writes_fsync_the_data_before_the_rename(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        synced = _fd_path(fd)  # the file behind the descriptor, and what it holds
        events.append(("fsync", os.path.basename(synced), Path(synced).read_bytes()))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.basename(src), os.path.basename(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    monkeypatch.setattr(fileio.os, "replace", replace)
    target = tmp_path / "ckpt.bin"
    atomic_write_bytes(target, b"payload")
    (kind, synced, content), (kind2, src, dst) = events
    assert (kind, kind2, dst, content) == ("fsync", "replace", "ckpt.bin", b"payload")
    assert synced == src and synced.startswith(".ckpt.bin.") and synced.endswith(".tmp")
    events.clear()
    atomic_write_bytes(target, b"progress", durable=False)
    assert [e[0] for e in events] == ["replace"]  # no fsync when not durable
    assert target.read_bytes() == b"progress"


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("where", ["write", "fsync", "fchmod", "replace"])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file_or_descriptor(
        tmp_path, monkeypatch, where):
    target = tmp_path / "record.json"
    atomic_write_text(target, "old\n")
    target.chmod(0o640)  # an existing file: its mode is copied with fchmod

    def broken(*args, **kwargs):
        raise OSError(f"{where} failed")

    fds = _open_fds()
    monkeypatch.setattr(fileio.os, where, broken)
    with pytest.raises(OSError, match=f"{where} failed"):
        atomic_write_text(target, "new\n")
    monkeypatch.undo()
    assert target.read_text() == "old\n" and target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]
    assert _open_fds() <= fds


def test_an_interrupted_write_leaves_no_temp_file(tmp_path, monkeypatch):
    def interrupted(fd, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.os, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(tmp_path / "x.bin", b"data")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_short_writes_are_continued_until_every_byte_is_written(tmp_path, monkeypatch):
    real_write = os.write
    calls = []

    def short_write(fd, data):  # what a signal or a full pipe of the kernel may do
        calls.append(len(data))
        return real_write(fd, bytes(data)[:1000])

    data = os.urandom(10_500)
    monkeypatch.setattr(fileio.os, "write", short_write)
    path = atomic_write_bytes(tmp_path / "x.bin", data)
    monkeypatch.undo()
    assert path.read_bytes() == data and len(calls) == 11


def test_temp_files_left_by_a_crashed_process_with_our_pid_are_skipped_untouched(
        tmp_path, monkeypatch):
    import itertools

    monkeypatch.setattr(fileio, "_temp_ids", itertools.count())
    leftovers = [tmp_path / f".x.json.{os.getpid()}-{n}.tmp" for n in range(3)]
    for p in leftovers:
        p.write_text("half a file of the crashed run")
    atomic_write_json(tmp_path / "x.json", {"ok": True})
    assert json.loads((tmp_path / "x.json").read_text()) == {"ok": True}
    assert all(p.read_text() == "half a file of the crashed run" for p in leftovers)
    assert len(list(tmp_path.iterdir())) == 4


def test_two_threads_writing_one_path_never_leave_a_mixed_or_partial_file(tmp_path):
    import threading

    target = tmp_path / "shared.bin"
    size, rounds = 256 * 1024, 60
    atomic_write_bytes(target, b"\0" * size, durable=False)
    stop = threading.Event()
    bad: list[str] = []

    def writer(mark: int) -> None:
        try:
            for i in range(rounds):
                atomic_write_bytes(target, bytes([mark]) * size, durable=(i % 10 == 0))
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            bad.append(f"writer {mark}: {exc!r}")

    def reader() -> None:
        while not stop.is_set():
            data = target.read_bytes()
            if len(data) != size or data.count(data[:1]) != size:
                bad.append(f"read {len(data)} bytes of {sorted(set(data))}")

    threads = [threading.Thread(target=writer, args=(m,)) for m in (1, 2)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    assert bad == []
    assert target.read_bytes() in (b"\1" * size, b"\2" * size)
    assert [p.name for p in tmp_path.iterdir()] == ["shared.bin"]


def _strict(text: str):
    """What a reader that knows only JSON makes of the text (no NaN / Infinity words)."""
    def refuse(word):
        raise ValueError(f"not JSON: {word}")
    return json.loads(text, parse_constant=refuse)


def test_json_files_hold_null_where_a_float_is_not_finite(tmp_path):
    """A diverged training wrote `"train_loss": NaN` into events.jsonl and JSON files,
    which strict readers refuse whole."""
    from explorer_core.fileio import json_text
    from explorer_core.rundir import RunPaths, append_event, read_events

    obj = {"loss": float("nan"), "curve": [1.5, float("inf"), (float("-inf"), 2)],
           "nested": {"ok": 0.25, "bad": float("nan")}, "n": 3, "s": "NaN"}
    expected = {"loss": None, "curve": [1.5, None, [None, 2]],
                "nested": {"ok": 0.25, "bad": None}, "n": 3, "s": "NaN"}
    assert _strict(json_text(obj)) == expected
    atomic_write_json(tmp_path / "a.json", obj)
    assert _strict((tmp_path / "a.json").read_text()) == expected
    paths = RunPaths(tmp_path)
    append_event(paths, {"type": "epoch", "train_loss": float("nan"), "val_acc": 0.5})
    [line] = (tmp_path / "events.jsonl").read_text().splitlines()
    assert _strict(line)["train_loss"] is None and _strict(line)["val_acc"] == 0.5
    assert read_events(paths)[0]["train_loss"] is None
    # finite values are written as before, byte for byte
    plain = {"a": [0.1, 2.5e-300, -3.0], "b": None}
    assert json_text(plain, sort_keys=True) == json.dumps(plain, sort_keys=True)


def test_ordered_writer_raises_a_failed_write_until_closed_even_once_caught():
    """The error of a failed write was raised once and then forgotten, while later writes
    were dropped: a caller that took it for something else and went on (a Compare cell's
    fine-tuning report) ended with a clean `close` and nothing written."""
    import threading
    import time

    from explorer_core.fileio import OrderedWriter

    ran = threading.Event()

    def refused() -> None:
        ran.set()
        raise OSError(30, "Read-only file system")

    written: list[str] = []
    writer = OrderedWriter()
    writer.submit(refused)
    assert ran.wait(10)
    time.sleep(0.1)  # the thread has stored the error
    with pytest.raises(OSError, match="Read-only"):
        writer.submit_latest(lambda: written.append("report"), every=0.5)
    with pytest.raises(OSError, match="Read-only"):  # the next write still hears of it
        writer.submit(lambda: written.append("record"))
    with pytest.raises(OSError, match="Read-only"):
        writer.close()
    assert written == []


@pytest.mark.parametrize("errno_, text", [(13, "Permission denied"), (30, "Read-only file system")])
def test_a_refused_temporary_is_reported_by_the_file_it_was_for(tmp_path, monkeypatch, errno_,
                                                                  text):
    """A folder that refuses new files (read-only, another user's) refuses our temporary
    sibling first: the error named '.results.csv.<pid>-<n>.tmp', a file the user never
    made and cannot find. Root ignores a folder's mode, so the refusal is the kernel's
    answer given by hand."""
    real_open = os.open

    def refusing_open(path, flags, mode=0o777, *a, **k):
        if os.path.basename(path).startswith(".results.csv."):
            raise OSError(errno_, text, path)
        return real_open(path, flags, mode, *a, **k)

    monkeypatch.setattr(os, "open", refusing_open)
    target = tmp_path / "results.csv"
    with pytest.raises(OSError) as caught:
        atomic_write_text(target, "a,b\n")
    assert caught.value.errno == errno_
    assert caught.value.filename == str(target)
    assert ".tmp" not in str(caught.value)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name, default_of", [
    ("EXPLORER_RUNS", "explorer_core.rundir:default_runs_root"),
    ("EXPLORER_SWEEPS", "explorer_core.rundir:default_sweeps_root"),
    ("EXPLORER_CACHE", "explorer_core.cache:default_cache_root"),
    ("EXPLORER_DATA", "explorer_core.data:default_data_root")])
def test_an_empty_folder_variable_means_the_default_folder(monkeypatch, tmp_path, name,
                                                           default_of):
    """`EXPLORER_RUNS= python -m explorer_core prune …` wrote the run straight into the
    current folder (Path("")), where the help promises ./runs."""
    import importlib

    module, function = default_of.split(":")
    default_root = getattr(importlib.import_module(module), function)
    monkeypatch.delenv(name, raising=False)
    unset = default_root()
    monkeypatch.setenv(name, "")
    assert default_root() == unset and str(unset) not in ("", ".")
    monkeypatch.setenv(name, str(tmp_path))
    assert default_root() == tmp_path
