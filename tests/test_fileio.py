"""Atomic writes and the thesis' table format (compared against numpy.savetxt itself)."""
from __future__ import annotations

import io
import math
import os

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
