"""Atomic file writes and the thesis' text-table format.

A run directory must survive a crash at any instant, so every file is written to a
temporary sibling and moved into place with `os.replace` (atomic on POSIX).
"""
from __future__ import annotations

import itertools
import json
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence


# What `json.loads` raises for text it cannot turn into values: bad JSON
# (JSONDecodeError is a ValueError), a number past Python's 4 300-digit int limit (a plain
# ValueError, which escaped as a traceback), nesting deeper than the recursion limit —
# and bad UTF-8 from the read before it. Every reader of files or uploads catches these.
JSON_ERRORS = (UnicodeDecodeError, ValueError, RecursionError)


# Flags of a temporary sibling: a new file of ours only (O_EXCL, no symlink followed),
# not inherited by child processes.
_TEMP_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
               | getattr(os, "O_NOFOLLOW", 0))
_TEMP_TRIES = 10_000  # tempfile's TMP_MAX
_temp_ids = itertools.count()  # next() is atomic under the GIL: unique per thread too


def _open_temp_sibling(target: str) -> tuple[int, str]:
    """Create and open `.<name>.<pid>-<n>.tmp` beside `target`: (fd, its path).

    Why not `tempfile.mkstemp`: with its random name it took 12 us where this `os.open`
    takes 3.5 us (tmpfs), and its 0600 file then needed a chmod and, for a new file, a
    /proc/self/status read for the umask (9 us) — Python work that holds the GIL on the
    Compare sweep's writer thread, three files per cell. A pid + counter name is unique
    within the process (threads included) and across processes; a name left by a crashed
    process with our pid is skipped. `os.open(..., 0o666)` applies the umask itself, as
    `open(path, "w")` does. The parent directory is created only when missing (a
    `mkdir(parents=True)` before every write cost 2.4 us).
    """
    head, tail = os.path.split(target)
    for _ in range(_TEMP_TRIES):
        tmp = os.path.join(head, f".{tail}.{os.getpid()}-{next(_temp_ids)}.tmp")
        try:
            return os.open(tmp, _TEMP_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
        except FileNotFoundError:
            if not head or os.path.isdir(head):
                raise
            Path(head).mkdir(parents=True, exist_ok=True)
    raise FileExistsError(f"no free temporary name beside {target}")


def _write_all(fd: int, data: bytes) -> None:
    """`os.write` until every byte is written (one call may write less)."""
    view = memoryview(data).cast("B")
    done = os.write(fd, view)
    while done < len(view):
        done += os.write(fd, view[done:])


def name_the_file(exc: OSError, path: str | os.PathLike) -> OSError:
    """`exc`, given `path` as its file when it names none; for `raise name_the_file(…)`.

    A disk that fills up refuses the write of a file's bytes (`os.write`, `fsync`, the
    flush of an appended line), not its opening: those calls work on a descriptor, and
    the kernel's ENOSPC came out naming no file — a run failed with "(No space left on
    device: None)", not saying which of its files the disk refused.
    """
    if exc.filename is None and exc.errno is not None:  # an OSError("text") has no errno:
        exc.filename = os.fspath(path)                 # named, it read "[Errno None] None"
    return exc


def folder_from_env(name: str, default: str | os.PathLike) -> Path:
    """The folder environment variable `name` names, or `default` when it is unset or
    empty: `EXPLORER_RUNS=` put runs straight into the current folder, where the help
    promises ./runs."""
    return Path(os.environ.get(name) or default)


def _named_by(exc: OSError, target: str) -> OSError:
    """`exc` naming the file refused, not our hidden temporary ('.results.csv.777-3.tmp',
    which the user never made and cannot find); see `name_the_file`."""
    if exc.errno is not None:
        exc.filename, exc.filename2 = target, None
    return exc


def atomic_write_bytes(path: str | os.PathLike, data: bytes, durable: bool = True) -> Path:
    """Write `data` to `path` so readers see either the old or the new file, never half.

    The new file keeps the old file's mode, or gets the mode a plain `open(path, "w")`
    would give (0666 minus the umask), so results stay readable by the user's other
    tools. `durable=False` skips the fsync: still atomic for every reader and after a
    crash of the process, only a power cut could lose it — right for progress reports
    rewritten every few seconds (an fsync cost ~5 ms here, several per sweep cell).
    Plain `os` calls on a descriptor, no file object: user CPU per 100 kB file on tmpfs
    fell from 19 us (existing file) / 30 us (new file) to 8 us; the Compare sweep's
    writer thread holds the GIL the training thread needs for that time.
    """
    path = path if isinstance(path, Path) else Path(path)  # Path(a Path) parses again: 2 us
    target = os.fspath(path)
    try:
        mode: int | None = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        mode = None  # os.open's 0o666 less the umask
    try:
        fd, tmp = _open_temp_sibling(target)
    except OSError as exc:  # a read-only folder: named by the file, as the rename is
        raise _named_by(exc, target)
    try:
        try:
            _write_all(fd, data)
            if mode is not None:
                os.fchmod(fd, mode)
            if durable:
                os.fsync(fd)
        except OSError as exc:  # a full disk: named, as the failed open or rename is
            raise name_the_file(exc, target)
        finally:
            os.close(fd)
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise _named_by(exc, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, durable: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), durable)


def json_text(obj: Any, **kwargs: Any) -> str:
    """`json.dumps` with non-finite floats written as null.

    Python writes NaN and Infinity, which are not JSON: a training that diverged left
    `"train_loss": NaN` in events.jsonl, which a strict reader (JavaScript's JSON.parse,
    most languages' parsers) refuses whole. null says "no number" to every reader, and
    ours read it as a missing value. A file without such floats costs one dump, as before.
    """
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError as exc:
        if "Out of range float" not in str(exc):
            raise
        return json.dumps(_finite(obj), allow_nan=False, **kwargs)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if obj - obj == 0 else None  # NaN - NaN and inf - inf are NaN
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any, durable: bool = True) -> Path:
    return atomic_write_text(path, json_text(obj, indent=2, sort_keys=True) + "\n", durable)


class OrderedWriter:
    """Runs writes on one background thread, in the order they were submitted.

    Why: a Compare cell on Digits trains for ~50 ms and its checkpoint and record (three
    fsyncs) took ~5 ms of that on the main thread; disk waits release the GIL, so on this
    thread they overlap with the next cell's work. Order is kept, so a record submitted
    after its checkpoint still marks a complete cell. After a failed write nothing more
    is written, and the error is raised by every later `submit` and by `close`: raised
    once, it was forgotten — a Compare sweep took it, raised by a fine-tuning epoch's
    progress report, for that cell's own failure, went on while every later record was
    dropped, and said "finished" over a read-only cells folder. A process killed with
    writes queued loses only those (at most `depth`), which a resume redoes.
    """

    def __init__(self, depth: int = 8):
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._latest: tuple[Callable[[], None], float] | None = None  # (write, when due)
        self._latest_ran = float("-inf")  # when the last `submit_latest` write ran
        self._thread = threading.Thread(target=self._run, name="ordered-writer", daemon=True)
        self._thread.start()

    def submit(self, write: Callable[[], None]) -> None:
        self._raise()
        self._queue.put(write)  # waits while `depth` writes are pending

    def submit_latest(self, write: Callable[[], None], every: float) -> None:
        """Run `write` at most once every `every` seconds: a later call replaces a write
        still waiting, which runs once its time comes, so the newest runs at most `every`
        late and none is lost for good; `every` ≤ 0 queues it like `submit`.

        For reports of which only the newest counts (what a sweep does now): a Digits
        sweep wrote 43 status reports in 2.5 s, and on two cores the writes' CPU came
        out of training (the sweep without them: 3 % faster, six runs each). Throttled
        without a deferred write, a dropped label stayed up through the long step after it.
        """
        if every <= 0:
            self.submit(write)
            return
        self._raise()
        with self._lock:
            wake = self._latest is None
            due = self._latest[1] if self._latest else max(self._latest_ran + every,
                                                            time.monotonic())
            self._latest = (write, due)
        if wake:  # the thread may wait on an empty queue: have it look at the due time
            try:
                self._queue.put_nowait(_WAKE)
            except queue.Full:  # it has writes to run, and looks at the slot after each
                pass

    def close(self) -> None:
        """Wait for every queued write, stop the thread, raise a write's error. A
        `submit_latest` write still waiting is dropped: what follows a close (a run's
        final status) supersedes it."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:  # kept: nothing more is written, so it stays true
            raise self._error

    def _run(self) -> None:
        failed = False
        while True:
            try:
                item = self._queue.get(timeout=self._until_latest())
            except queue.Empty:
                item = _WAKE
            if item is None:
                return
            for write in ([] if item is _WAKE else [item]) + self._due_latest():
                if failed:
                    continue
                try:
                    write()
                except BaseException as exc:  # handed to the submitting thread
                    self._error, failed = exc, True

    def _until_latest(self) -> float | None:
        """Seconds until the waiting `submit_latest` write is due (None: none waits)."""
        with self._lock:
            return None if self._latest is None else max(0.0, self._latest[1] - time.monotonic())

    def _due_latest(self) -> list[Callable[[], None]]:
        """The waiting `submit_latest` write if it is due now, taken out of its slot."""
        with self._lock:
            if self._latest is None or self._latest[1] > time.monotonic():
                return []
            write, self._latest = self._latest[0], None
            self._latest_ran = time.monotonic()
            return [write]


_WAKE = object()  # queued by `submit_latest`: not a write, a reason to look at the clock


def format_number(value: float | int) -> str:
    """Format like numpy's `fmt='%g'`, which the thesis tables use."""
    return "%g" % value


def table_text(columns: Sequence[str], rows: Iterable[Sequence[float | int]]) -> str:
    """Space-separated table with one header line and no comment marks.

    Byte-for-byte what `numpy.savetxt(f, rows, header=' '.join(columns), comments='',
    fmt='%g')` writes, so the thesis' plotting scripts read our files unchanged.
    """
    lines = [" ".join(columns)]
    for row in rows:
        lines.append(" ".join(format_number(v) for v in row))
    return "\n".join(lines) + "\n"


def write_table(path: str | os.PathLike, columns: Sequence[str],
                rows: Iterable[Sequence[float | int]]) -> Path:
    """Atomically write a thesis-format table (see `table_text`)."""
    return atomic_write_text(path, table_text(columns, rows))


def read_table(path: str | os.PathLike) -> tuple[list[str], list[list[float]]]:
    """Read a table written by `write_table` (or numpy.savetxt with comments='')."""
    return parse_table(Path(path).read_text())


def parse_table(text: str) -> tuple[list[str], list[list[float]]]:
    """`read_table` of a table's text (an upload has no path)."""
    lines = [(n, ln) for n, ln in enumerate(text.splitlines(), start=1) if ln.strip()]
    # comment lines above the header ('#' lines followed by a line of words, not numbers)
    # are skipped: "# my table" then the header read "line 2 holds 'Iteration', not a number"
    while len(lines) > 1 and lines[0][1].lstrip().startswith("#") \
            and not _starts_with_a_number(lines[1][1]):
        lines = lines[1:]
    if not lines:
        return [], []
    columns = lines[0][1].lstrip().lstrip("#").split()
    return columns, [_numbers(n, ln) for n, ln in lines[1:]]


def _starts_with_a_number(line: str) -> bool:
    try:
        float(line.split()[0])
    except ValueError:
        return False
    return True


def _numbers(n: int, line: str) -> list[float]:
    """One row's numbers; a ValueError naming the line and the value that is none
    (Python's "could not convert string to float: 'foo'" reached the pages)."""
    row = []
    for value in line.split():
        try:
            row.append(float(value))
        except ValueError:
            raise ValueError(f"line {n} holds {value!r}, not a number") from None
    return row
