"""Atomic file writes and the thesis' text-table format.

A run directory must survive a crash at any instant, so every file is written to a
temporary sibling and moved into place with `os.replace` (atomic on POSIX).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def format_number(value: float | int) -> str:
    """Format like numpy's `fmt='%g'`, which the thesis tables use."""
    return "%g" % value


def table_text(columns: Sequence[str], rows: Iterable[Sequence[float | int]]) -> str:
    """Space-separated table with one header line and no comment marks."""
    lines = [" ".join(columns)]
    for row in rows:
        lines.append(" ".join(format_number(v) for v in row))
    return "\n".join(lines) + "\n"


def write_table(path: str | os.PathLike, columns: Sequence[str],
                rows: Iterable[Sequence[float | int]]) -> Path:
    return atomic_write_text(path, table_text(columns, rows))


def read_table(path: str | os.PathLike) -> tuple[list[str], list[list[float]]]:
    """Read a table written by `write_table` (or numpy.savetxt with comments='')."""
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
    if not lines:
        return [], []
    columns = lines[0].lstrip("#").split()
    rows = [[float(v) for v in ln.split()] for ln in lines[1:]]
    return columns, rows
