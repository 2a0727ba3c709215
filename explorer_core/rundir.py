"""The run-directory layout (DESIGN §3) — the one place that knows where files go.

```
runs/<YYYY-MM-DD>/<run-name>/
  config.json status.json events.jsonl retain.txt run.lock
  <i>/prune_w_retrain/{best_model.safetensors,best_model.json,train_results.txt,validation_results.txt}
  prune_w_retrain_results/{validations.txt,accuracies.png,losses.png}
```
Status and events are what pages poll; the lock makes one process the only writer.
"""
from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
import re
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISDIR
from typing import Any

from .errors import ExplorerError, os_reason, raise_if_interrupted, raise_pending_interrupt
from .fileio import (JSON_ERRORS, atomic_write_json, atomic_write_text, folder_from_env,
                     json_text, name_the_file)
from .settings import is_number

STATES = ("queued", "running", "finished", "failed", "stopped", "interrupted")
LIVE_STATES = ("queued", "running")  # a worker is starting or working on the run
TRAIN_COLUMNS = ["TrainLoss", "TrainAccuracy", "TestLoss", "TestAccuracy"]
VALIDATION_COLUMNS = ["Train_Loss", "Test_Loss", "Train_Accuracy", "Test_Accuracy",
                      "PercentageRetain"]
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


def default_runs_root() -> Path:
    return folder_from_env("EXPLORER_RUNS", "runs")


ITERATION_SUBDIR = "prune_w_retrain"  # what each <i>/ of a run holds (the thesis layout)


def in_run_iteration(path: str | os.PathLike) -> str | None:
    """`<run>/<i>/prune_w_retrain/<file>` for a file of a run's iteration, else None:
    every iteration's files have the same names, so a file's name alone does not say
    which run or iteration it belongs to."""
    p = Path(path)
    if p.parent.name == ITERATION_SUBDIR and is_iteration_name(p.parent.parent.name):
        return str(Path(*p.parts[-4:]))
    return None


@dataclass(frozen=True)
class RunPaths:
    """Where a run's files are. `root` is made absolute here, the one
    place these path objects are made: the paths written into result files (a cell's
    `checkpoint` in results.csv, a unit's in summary.json) and the folder pages compare
    by string must not depend on how the folder was named. A `--resume` with a relative
    path wrote relative checkpoint paths beside the absolute ones of the cells a fresh
    run (under an absolute root) had finished. (`absolute_folder`: no symlink followed.)
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", absolute_folder(self.root))

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def retain(self) -> Path:
        return self.root / "retain.txt"

    @property
    def lock(self) -> Path:
        return self.root / "run.lock"

    @property
    def stop_request(self) -> Path:
        return self.root / "stop.request"

    @property
    def log(self) -> Path:
        return self.root / "worker.log"

    def iteration_dir(self, i: int) -> Path:
        return self.root / str(i) / ITERATION_SUBDIR

    def best_model(self, i: int) -> Path:
        return self.iteration_dir(i) / "best_model.safetensors"

    def best_model_json(self, i: int) -> Path:
        return self.iteration_dir(i) / "best_model.json"

    def train_results(self, i: int) -> Path:
        return self.iteration_dir(i) / "train_results.txt"

    def validation_results(self, i: int) -> Path:
        return self.iteration_dir(i) / "validation_results.txt"

    @property
    def results_dir(self) -> Path:
        return self.root / "prune_w_retrain_results"

    @property
    def validations(self) -> Path:
        return self.results_dir / "validations.txt"

    @property
    def accuracies_png(self) -> Path:
        return self.results_dir / "accuracies.png"

    @property
    def losses_png(self) -> Path:
        return self.results_dir / "losses.png"

    def completed_iterations(self) -> list[int]:
        """Iterations whose best model and metrics are fully written (the resume points).

        The sidecar is written last and marks the iteration done, so it must hold the
        metrics the results are built from: a truncated or hand-edited one counted as
        done, and its iteration then broke every resume or vanished from validations.txt.
        """
        return [i for i in self.numbered_iterations() if self.best_model(i).is_file()
                and _has_metrics(self.best_model_json(i), ITERATION_METRICS)]

    def numbered_iterations(self) -> list[int]:
        """The numbers of the run's `<i>/` entries, in order, whatever they hold: named as
        `iteration_dir` names them (`is_iteration_name`). Any name of digits was taken:
        "007" beside "7" read iteration 7 twice, and "²" (a digit to `str.isdigit`) was
        no number to `int`."""
        return sorted(int(child.name) for child in self.root.iterdir()
                      if is_iteration_name(child.name)) if self.root.is_dir() else []

    def odd_iteration_names(self) -> list[str]:
        """Folders named with digits that `numbered_iterations` does not take ("007", "٧")."""
        return sorted(child.name for child in self.root.iterdir() if child.name.isdigit()
                      and not is_iteration_name(child.name) and child.is_dir()) \
            if self.root.is_dir() else []


def is_iteration_name(name: str) -> bool:
    """'0', '7', '12': the names `RunPaths.iteration_dir` gives an iteration (and
    `TrainTimePaths.unit_dir` a seed, after 'seed'): ASCII digits, no leading 0."""
    return name.isascii() and name.isdigit() and name == str(int(name))


# What an iteration's best_model.json must report (the validation rows are made of them).
ITERATION_METRICS = ("train_loss", "test_loss", "train_acc", "test_acc")


def _has_metrics(sidecar: Path, keys: tuple[str, ...]) -> bool:
    """Whether the record holds every metric of `keys` as a number (and a number, if
    any, as its `percent_retained`): a hand-edited "abc" counted as done and crashed
    `concatenate` with a traceback."""
    record = read_record(sidecar)
    metrics = record.get("metrics")
    return isinstance(metrics, dict) and all(is_number(metrics.get(k)) for k in keys) and \
        ("percent_retained" not in record or is_number(record["percent_retained"]))


def absolute_folder(folder: Path | str) -> Path:
    """`folder` as an absolute path with `.` and `..` taken out by its text alone.

    No syscall and no symlink followed: resolving cost every run list a stat per path
    part (541 sweeps: 9.5 → 29 ms a page poll), and named a run in a linked date folder
    (`2026-02-01 → jan`) by the link's target. `jobs.launch` hands its worker this same
    form, so a page and its worker name one run alike."""
    return Path(os.path.abspath(folder))


def validate_run_name(name: str, kind: str = "run") -> str:
    """`name`, if it makes one folder name; `kind` is what the folder holds ("sweep
    name must be …" on the Compare page, which said "run name")."""
    if not _NAME_OK.match(name or ""):
        raise ExplorerError(f"{kind} name must be 1–80 letters, digits, '.', '_' or '-', "
                            f"starting with a letter or digit; got {name!r}")
    return name


def _file_in_the_way(folder: Path) -> Path | None:
    """The nearest of `folder` and its parents that exists and is not a folder, if any.

    One stat a path: asked "a folder?" and then "there?", a folder another process made
    in between (two runs started at once) was taken for a file in the way."""
    for p in (folder, *folder.parents):
        try:
            mode = p.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):  # not there (or under a file)
            if p.is_symlink():  # a dangling link
                return p
            continue
        except OSError:  # a symlink loop
            return p
        return None if S_ISDIR(mode) else p
    return None


def blocked_message(root: Path, folder: Path | None = None) -> str:
    """One line naming the folder the user gave (`root`) and the file that blocks it or
    `folder` below it: the OSError named `<root>/<date>`, a folder the user never typed,
    as "the file in the way" (and `concatenate` its validations.txt, not the file
    standing where prune_w_retrain_results belongs)."""
    blocker = _file_in_the_way(root if folder is None else folder)
    if blocker is None or blocker == root:
        return (f"cannot write into {root}: a file of that name is in the way "
                "(need a folder)")
    return f"cannot write into {root}: {blocker} is a file in the way (need a folder)"


def check_new_run_dir(name: str, root: Path | None = None,
                      day: _dt.date | None = None, kind: str = "run") -> Path:
    """The folder `new_run_dir` would make for `name` (`<root>/<YYYY-MM-DD>/<name>`),
    refused with the one line a start would give — a malformed name, a file in the way
    of the root, a run of that name already there — and nothing created.

    The one check behind a start and what is said before one (`compare --estimate`,
    the Compare page's name field): the estimate of a sweep named like an existing one
    printed as if it could start, and the start then refused the name. `kind` names what
    the folder holds in that line ("a sweep named …" on the Compare page).
    """
    validate_run_name(name, kind)
    root = Path(root or default_runs_root())
    path = root / (day or _dt.date.today()).isoformat() / name
    if _file_in_the_way(path.parent) is not None:
        raise ExplorerError(blocked_message(root, path.parent))
    if path.exists() or path.is_symlink():
        raise ExplorerError(_exists_message(name, path, kind))
    return path


def _exists_message(name: str, path: Path, kind: str = "run") -> str:
    """Why a run (`kind`: or a sweep) of `name` cannot be made at `path`, which exists.

    A folder without config.json is no run to resume (a start killed between making the
    folder and writing its settings can leave one, with a temporary file in it): it was
    offered for resuming, which then refused it as "no config.json"."""
    try:
        empty = path.is_dir() and not any(path.iterdir())
        resumable = RunPaths(path).config.is_file()
    except OSError:
        empty = resumable = False
    if empty:
        why = " (that folder is empty: delete it to reuse the name)"
    elif resumable:
        why = " or resume it"
    else:
        why = (" (that folder has no config.json, so nothing to resume: delete it to reuse "
               "the name)" if path.is_dir() else "")
    return f"a {kind} named {name!r} already exists at {path}; pick another name{why}"


def new_run_dir(name: str, root: Path | None = None, day: _dt.date | None = None,
                kind: str = "run") -> RunPaths:
    """`<root>/<YYYY-MM-DD>/<name>`; refuses to reuse an existing run's folder
    (`check_new_run_dir`, then the atomic make)."""
    raise_pending_interrupt()  # a Ctrl-C during the command's imports: no folder
    day = day or _dt.date.today()
    root = Path(root or default_runs_root())
    path = check_new_run_dir(name, root, day, kind)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ExplorerError(blocked_message(root, path.parent)) from None
    try:
        # Atomic: of two processes starting runs of one name, exactly one gets the folder
        # (checking first and creating after let both in, the second's config.json over
        # the first's, and the first then ran the second's grid).
        path.mkdir()
    except FileExistsError:
        raise ExplorerError(_exists_message(name, path, kind)) from None
    return RunPaths(path)


def download_name(folder: Path, file_name: str) -> str:
    """`file_name` as a download of the run or sweep in `folder`: "<day>_<name>_<file>"
    for a folder of the `<root>/<YYYY-MM-DD>/<name>` layout, "<name>_<file>" for one
    elsewhere. A page's plain "results.csv" or "accuracies.png" of two runs landed in one
    Downloads folder as "results (1).csv", saying neither which run it was nor when, and
    two runs of one name on two days still shared "<name>_…"."""
    folder = Path(folder)
    try:
        day = _dt.date.fromisoformat(folder.parent.name).isoformat() == folder.parent.name
    except ValueError:
        day = False
    stem = f"{folder.parent.name}_{folder.name}" if day else folder.name
    return f"{stem}_{file_name}"


def list_runs(root: Path | None = None) -> list[RunPaths]:
    """All run folders under the root, newest first."""
    root = Path(root or default_runs_root())
    found = [RunPaths(p.parent) for p in root.glob("*/*/config.json")]
    return sorted(found, key=lambda r: r.config.stat().st_mtime, reverse=True)


# ------------------------------------------------------------------ status and events


def read_json(path: Path, default: Any = None) -> Any:
    """The JSON in `path`, or `default` for a missing, torn or hand-edited file."""
    try:
        return json.loads(path.read_text())
    except (OSError, *JSON_ERRORS):
        return default


def read_record(path: Path) -> dict:
    """A JSON object from one of the folder's own files, or {} for anything else (a
    missing, torn or hand-edited file: `[1, 2]` in status.json crashed the CLI, and the
    run list of the Iterative page — for every run)."""
    found = read_json(path, {})
    return found if isinstance(found, dict) else {}


def write_status(paths: RunPaths, state: str, **fields: Any) -> dict:
    if state not in STATES:
        raise ValueError(f"unknown state {state}")
    status = read_record(paths.status)
    status.update(fields)
    status.update(state=state, heartbeat=time.time())
    atomic_write_json(paths.status, status, durable=False)  # a progress report: see fileio
    return status


def failed_write(paths: RunPaths, exc: OSError, what: str, **fields: Any) -> dict:
    """The run failed because the disk refused one of its files (full, read-only, gone):
    one line that says which file and that a resume continues once it is fixed — for the
    page in status.json, or, when even that cannot be written, as an `ExplorerError`
    (the command line's one-line error) instead of a traceback."""
    where = "" if exc.filename is None else f": {exc.filename}"
    message = (f"could not write {what} ({os_reason(exc)}{where}); free or "
               "fix the folder and resume")
    try:
        return write_status(paths, "failed", message=message, **fields)
    except OSError:
        raise ExplorerError(message) from None


def failed_run(paths: RunPaths, exc: Exception, what: str, **fields: Any) -> dict:
    """The status a run's worker ends with on an error that is not a stop: an
    `ExplorerError`'s one line, the refused file of an `OSError` (`failed_write`, with
    `what` naming the run's files), or for an error nobody foresaw its class and text
    with the log that holds its trace (`log_traceback`); `fields` go into the status
    too. Call it inside the `except`: the trace logged is the exception being handled."""
    if isinstance(exc, ExplorerError):
        return write_status(paths, "failed", message=str(exc), **fields)
    if isinstance(exc, OSError):  # the disk refused a checkpoint or table: resume once fixed
        return failed_write(paths, exc, what, **fields)
    raise_if_interrupted(exc)
    return write_status(paths, "failed",
                        message=f"{exc.__class__.__name__}: {exc}{log_traceback(paths)}",
                        **fields)


def log_traceback(paths: RunPaths) -> str:
    """Append the exception being handled, with its traceback, to the run's log
    (worker.log), and return a note naming the log for the one-line message.

    An error nobody foresaw (torch's overflow on an absurd learning rate, an allocator's
    refusal) still needs its trace for a bug report, but not on the terminal: run from
    the command line, the trace was printed above the one-line reason, 33 lines of it.
    A page's worker writes its stderr to the same file, so the trace is where it was.
    """
    try:
        with open(paths.log, "a", encoding="utf-8") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} unexpected error\n")
            traceback.print_exc(file=log)
    except OSError:  # a full or read-only disk: the one line must still go out
        return ""
    return f" (traceback in {paths.log})"


def session_start(paths: RunPaths, anew: bool = False) -> dict[str, float]:
    """Status fields for a worker (re)starting on a run: `started` = now, and
    `elapsed_before` = the time earlier sessions worked (each from its start to its last
    heartbeat), so a resumed run's elapsed time counts all of its work, not just the
    time since the last Resume. `started` alone still paces remaining-time estimates.
    `anew`: the run starts over from nothing (an iterative run restarted at iteration 0),
    so no earlier session's time counts: "Ran for" added the discarded run's time."""
    old = read_record(paths.status)
    before = 0.0 if anew else float(old.get("elapsed_before") or 0.0)
    if old.get("started") and old.get("heartbeat") and not anew:
        before += max(0.0, float(old["heartbeat"]) - float(old["started"]))
    return {"started": time.time(), "elapsed_before": before}


def elapsed_seconds(status: dict, now: float | None = None) -> float:
    """Time worked on a run over all its sessions: to now while it runs, else to its
    last heartbeat (see `session_start`).

    A run that is no longer live stopped working at its last heartbeat as far as its
    files can tell: a finished, stopped or failed one wrote its last status as it ended,
    and a killed one (kill -9, a crash: `read_status` then says interrupted) wrote
    nothing after it, so a step cut short is not counted (nor is it kept: a resume
    redoes it). Counting on to now would grow for as long as the run sits dead, and a
    resume counts each earlier session the same way, so its elapsed time goes on from
    this figure. Pages call it the time the run ran for."""
    before = float(status.get("elapsed_before") or 0.0)
    started = status.get("started")
    if not started:
        return before
    live = status.get("state") in LIVE_STATES
    end = (None if live else status.get("heartbeat")) or now or time.time()
    return before + max(0.0, end - started)


def last_report(status: dict) -> float | None:
    """When a run's worker last reported (status.json's heartbeat), once it is no longer
    live: where `elapsed_seconds` ends, which a page says of a killed worker's time;
    None while it works, or when the status holds no time."""
    beat = status.get("heartbeat")
    if status.get("state") in LIVE_STATES or isinstance(beat, bool) \
            or not isinstance(beat, (int, float)):
        return None
    return float(beat)


# How long a queued run whose worker cannot be checked (no pid and start time recorded,
# or no /proc) may go without its worker taking the lock before it reads as interrupted.
QUEUED_GRACE_S = 30.0


def process_start(pid: int) -> int | None:
    """When process `pid` started (clock ticks after boot, /proc/<pid>/stat's 22nd
    field), or None where that cannot be read (no such process, no /proc)."""
    stat = _proc_stat(pid)
    return stat[1] if stat is not None else None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time) of `pid` from /proc, or None where it cannot be read.
    The command name (field 2) may hold spaces and parentheses: fields are counted
    from its closing one."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
        fields = text[text.rindex(")") + 2:].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError, OverflowError):
        return None


def worker_alive(pid: Any, started: Any) -> bool | None:
    """Whether the worker `jobs.launch` recorded (its pid and `process_start`) still
    runs: False when it is gone — no such process, a zombie its parent has not reaped
    yet (the page's reaper thread, `jobs._reap_when_done`, waits on it), or the pid
    now names a process started at another time (reused); True when that very process
    runs; None when it cannot be told (nothing recorded, no /proc)."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user: a pid reused, or not ours
        pass
    except (OSError, OverflowError, ValueError):
        return None
    stat = _proc_stat(pid)
    if stat is None:
        return None if _proc_stat(os.getpid()) is None else False  # no /proc, or gone since
    state, begun = stat
    if state in ("Z", "X", "x"):
        return False
    if isinstance(started, bool) or not isinstance(started, int):
        return None  # alive, but the pid may have been reused since it was recorded
    return begun == started


def read_status(paths: RunPaths) -> dict:
    """The status, with a dead writer's 'running' reported as 'interrupted'.

    Read again once the lock is found free: a writer writes its last status before it
    lets go of the lock, so a run that ended between the first read and the lock test
    shows that last status. Judged on the first read alone, such a run was reported
    dead — `jobs.wait` returned "interrupted" for a run that had finished, a page
    flashed "interrupted" for a poll.

    A queued run has no writer yet: its worker is starting (imports take seconds) and
    will take the lock. When the status names that worker (`jobs.launch` records its
    pid and start time), whether it still runs settles it at once: a worker killed
    while starting read "queued — starting worker", with a Stop button, for 30 s
    before it read "interrupted". Where the worker cannot be checked, the queued status
    stands for `QUEUED_GRACE_S` after it was written.
    """
    status = read_record(paths.status)
    if status.get("state") in LIVE_STATES and not is_locked(paths):
        status = read_record(paths.status)
    if status.get("state") in LIVE_STATES and not is_locked(paths):
        started = status.get("heartbeat", 0)
        alive = worker_alive(status.get("pid"), status.get("pid_start")) \
            if status.get("state") == "queued" else None
        # a just-launched worker may not hold the lock yet
        if status.get("state") == "running" or alive is False or (
                alive is None and time.time() - started > QUEUED_GRACE_S):
            status = {**status, "state": "interrupted", "message": INTERRUPTED_MESSAGE}
    if status.get("state") not in STATES and not is_locked(paths):
        # a deleted or hand-damaged status.json: the run showed state "?" and "unknown";
        # what it saved is still there for a resume to continue from
        status = {**status, "state": "interrupted",
                  "message": f"its {paths.status.name} is missing or damaged; resuming "
                             "continues from what was saved"}
    return status


# What an interrupted run's status says: its process is gone without a word ("starting
# worker", a queued run's message, was no longer true).
INTERRUPTED_MESSAGE = ("its process ended without finishing (stopped with Ctrl-C, killed, "
                       "or crashed); resuming continues from what was saved")

# The line `jobs.launch` writes to worker.log before each worker it starts: the log is
# appended to, and an earlier session's last lines must not pass for this one's.
LOG_SESSION_MARK = "--- worker started"


def log_session_line(command: str) -> bytes:
    """The line that opens a worker's part of the log (`LOG_SESSION_MARK`, when, what)."""
    stamp = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    return f"{LOG_SESSION_MARK} {stamp} ({command}) ---\n".encode()

_LOG_LINE_CHARS = 300  # the fault handler's list of extension modules is one ~6 kB line


def log_tail(paths: RunPaths, max_lines: int = 80, max_bytes: int = 64_000) -> str:
    """The last lines the latest worker wrote to the log ("" when there are none, as for
    a run started at a terminal): what a worker that died printed last, its fault
    handler's stack included.

    Only the end of the file is read, so a long log costs nothing. A progress bar's
    redraws (`\r`) show as their last state, `\r\n` ends a line like `\n`, an
    overlong line is cut, undecodable bytes are replaced.
    """
    try:
        with open(paths.log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", errors="replace").replace("\r\n", "\n").split("\n")
    if size > max_bytes and len(lines) > 1:
        lines = lines[1:]  # the first line read is cut, unless it is all there is
    shown: list[str] = []
    for line in lines:
        if line.startswith(LOG_SESSION_MARK):
            shown = []  # an earlier worker's output
            continue
        redraws = [part for part in line.split("\r") if part.strip()]
        if redraws:
            last = redraws[-1]
            shown.append(last if len(last) <= _LOG_LINE_CHARS else
                         f"{last[:_LOG_LINE_CHARS]} … ({len(last)} characters)")
    return "\n".join(shown[-max_lines:])


def append_event(paths: RunPaths, event: dict) -> None:
    """One JSON object per line; a torn last line is ignored by `read_events`.

    Not fsynced: events drive live charts, and what a resume needs is in the durable
    files (checkpoints, tables, cell files); a killed process loses no written line.
    """
    line = json_text({**event, "time": time.time()}, sort_keys=True) + "\n"
    try:
        with open(paths.events, "a", encoding="utf-8") as fh:
            fh.write(line)
    except OSError as exc:  # a full disk refuses the flush, which names no file
        raise name_the_file(exc, paths.events)


def read_events(paths: RunPaths) -> list[dict]:
    """The event objects; a torn last line (a killed writer) and anything else that is
    not a JSON object (a hand-edited line, a stray byte) are skipped."""
    try:
        lines = paths.events.read_bytes().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            event = json.loads(line)
        except JSON_ERRORS:
            continue
        if isinstance(event, dict):
            out.append(event)
    return out


def truncate_events(paths: RunPaths, from_iteration: int) -> None:
    """Drop events of iterations ≥ `from_iteration` (before they are redone on resume)."""
    filter_events(paths, lambda e: e.get("iteration", -1) < from_iteration)


# ------------------------------------------------------------------ kinds of folder

ITERATIVE_RUN = "an iterative pruning run"
COMPARE_SWEEP = "a Compare sweep"
TRAIN_TIME_RUN = "a train-time pruning run"
# Settings only one kind's config.json holds (tests keep these in step with the config
# classes): how a folder's kind is told when it is resumed as another kind.
KIND_KEYS: dict[str, frozenset[str]] = {
    ITERATIVE_RUN: frozenset({"schedule", "retrain", "retrain_epochs", "max_drop",
                              "min_neurons", "criterion_options", "patience", "spec"}),
    COMPARE_SWEEP: frozenset({"models", "datasets", "batch_sizes", "types", "criteria",
                              "ratios", "repeats", "finetune_epochs", "mlp_hidden",
                              "latency_batch", "latency_repeats", "save_checkpoints"}),
    TRAIN_TIME_RUN: frozenset({"task", "arch", "channels", "latent", "epochs",
                               "initial_epochs", "prune_every", "prune_fraction", "variants",
                               "seeds", "weight_decay", "lr_schedule", "threads", "device"}),
}


class WrongKindError(ExplorerError):
    """The folder is another kind of run than the one asked for (nothing was changed)."""


def folder_kind(record: Any) -> str | None:
    """Which kind of folder a config.json belongs to: the kind most of whose own
    settings it holds; None when that is not clear (none, or a tie)."""
    if not isinstance(record, dict):
        return None
    hits = sorted(((len(keys & record.keys()), kind) for kind, keys in KIND_KEYS.items()),
                  reverse=True)
    (best, kind), (second, _) = hits[0], hits[1]
    return kind if best > second else None


def check_kind(paths: RunPaths, record: Any, expected: str) -> None:
    """Refuse a folder of another kind with what it is: loading it as this kind said
    `unknown sweep setting(s): activation, batch_size, …` or `has no model spec`."""
    kind = folder_kind(record)
    if kind is not None and kind != expected:
        raise WrongKindError(f"{paths.root} is {kind}, not {expected}")


# ------------------------------------------------------------------ the one-writer lock

class RunLock:
    """An exclusive `flock` on the run folder itself: released by the kernel if the
    writer dies.

    Why the folder and not run.lock: a flock belongs to one file, and deleting run.lock
    by hand (a "stale lock file" to a person) let the next process create a new file
    and lock that one — two writers in one folder. The folder cannot be replaced while
    it holds the run. run.lock still names the writer's pid, for people to read.
    """

    def __init__(self, paths: RunPaths):
        self.paths = paths
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        fd = _open_folder(self.paths.root)
        if fd is None:
            raise ExplorerError(f"{self.paths.root} is not a run folder (no such folder)")
        if not _flock_exclusive(fd):
            os.close(fd)
            raise ExplorerError(f"run {self.paths.root} is already being written by another "
                                "process; stop it first or wait for it to finish")
        self._fd = fd
        _note_writer(self.paths.lock)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _open_folder(root: Path) -> int | None:
    """A read-only descriptor of the folder (what the lock is taken on), None if absent."""
    try:
        return os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None


def _flock_exclusive(fd: int, tries: int = 5, pause_s: float = 0.01) -> bool:
    """Take the exclusive lock without waiting for a writer; False if one holds it.

    A few quick tries: `is_locked` probes with a shared lock for microseconds (the pages
    poll it), and a worker starting in that instant must not take the probe for a writer.
    """
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if attempt < tries - 1:
            time.sleep(pause_s)
    return False


def _note_writer(lock_file: Path) -> None:
    """Write our pid into run.lock for people; only a note, so a failure is ignored (a
    folder where run.lock was replaced by a folder still has its real lock)."""
    try:
        atomic_write_text(lock_file, str(os.getpid()), durable=False)
    except OSError:
        pass


def is_locked(paths: RunPaths) -> bool:
    """Whether a writer holds the run (its folder's lock; run.lock itself may be gone)."""
    fd = _open_folder(paths.root)
    if fd is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def filter_events(paths: RunPaths, keep) -> None:
    """Rewrite events.jsonl with only the events for which `keep(event)` is true (atomic)."""
    kept = [e for e in read_events(paths) if keep(e)]
    atomic_write_text(paths.events, "".join(json_text(e, sort_keys=True) + "\n" for e in kept))


# ------------------------------------------------------------------ compare sweeps

def default_sweeps_root() -> Path:
    """Where Compare sweeps live (`EXPLORER_SWEEPS`, default ./sweeps)."""
    return folder_from_env("EXPLORER_SWEEPS", "sweeps")


@dataclass(frozen=True)
class SweepPaths(RunPaths):
    """A Compare sweep: one JSON per finished cell, tables rebuilt from them.

    ```
    sweeps/<YYYY-MM-DD>/<sweep-name>/
      config.json status.json events.jsonl run.lock stop.request worker.log
      cells/<cell-id>.json                 one finished cell (written last: marks it done)
      cells-outside-grid/<cell-id>.json    finished cells an edited grid dropped on resume
      checkpoints/<cell-id>.safetensors    the cell's pruned model (+ .json spec)
      results.csv                          one row per finished cell, rebuilt after each
      summary.csv                          mean and std over repeats
    ```
    Per-cell files make resume exact (a cell is done iff its JSON exists) and keep the
    CSV whole on a crash: it is rewritten atomically from the cell files.
    """

    @property
    def cells_dir(self) -> Path:
        return self.root / "cells"

    def cell(self, cell_id: str) -> Path:
        return self.cells_dir / f"{cell_id}.json"

    @property
    def outside_grid_dir(self) -> Path:
        """Records of finished cells a resumed, edited grid no longer has (kept, not
        counted)."""
        return self.root / "cells-outside-grid"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, cell_id: str) -> Path:
        return self.checkpoints_dir / f"{cell_id}.safetensors"

    @property
    def baselines_dir(self) -> Path:
        """Dense baselines of a sweep that does not use the shared models_cache/."""
        return self.root / "baselines"

    @property
    def results_csv(self) -> Path:
        return self.root / "results.csv"

    @property
    def summary_csv(self) -> Path:
        return self.root / "summary.csv"

    def chart_png(self, name: str) -> Path:
        return self.root / f"{name}.png"


def list_sweeps(root: Path | None = None) -> list[SweepPaths]:
    """All sweeps under `root` (default `default_sweeps_root()`), newest first."""
    return [SweepPaths(r.root) for r in list_runs(root or default_sweeps_root())]


# ------------------------------------------------------------------ train-time pruning runs

def default_train_time_root(runs_root: Path | None = None) -> Path:
    """Train-time runs live in their own sub-root so run lists of other kinds never mix.

    `runs/train-time/<YYYY-MM-DD>/<name>/` is three levels below `runs/`, out of reach of
    `list_runs`' `*/*/config.json` pattern for iterative runs.
    """
    return Path(runs_root or default_runs_root()) / "train-time"


@dataclass(frozen=True)
class TrainTimePaths(RunPaths):
    """A train-time pruning run: one sub-folder per (variant, seed) plus shared results.

    ```
    runs/train-time/<YYYY-MM-DD>/<run-name>/
      config.json status.json events.jsonl run.lock stop.request worker.log
      variants/<variant>/seed<s>/
          final_model.safetensors  final_model.json   (JSON last: marks the unit complete)
          history.txt              per epoch: Epoch <widths…> Params <metrics…>
          reconstructions.png samples.png            (VAE only)
      train_time_results/summary.json  <chart>.png
    ```
    """

    def unit_dir(self, variant: str, seed: int) -> Path:
        return self.root / "variants" / variant / f"seed{int(seed)}"

    def final_model(self, variant: str, seed: int) -> Path:
        return self.unit_dir(variant, seed) / "final_model.safetensors"

    def final_model_json(self, variant: str, seed: int) -> Path:
        return self.unit_dir(variant, seed) / "final_model.json"

    def history(self, variant: str, seed: int) -> Path:
        return self.unit_dir(variant, seed) / "history.txt"

    def reconstructions_png(self, variant: str, seed: int) -> Path:
        return self.unit_dir(variant, seed) / "reconstructions.png"

    def samples_png(self, variant: str, seed: int) -> Path:
        return self.unit_dir(variant, seed) / "samples.png"

    @property
    def results_dir(self) -> Path:
        return self.root / "train_time_results"

    @property
    def summary(self) -> Path:
        return self.results_dir / "summary.json"

    def chart_png(self, name: str) -> Path:
        return self.results_dir / f"{name}.png"

    def completed_units(self) -> list[tuple[str, int]]:
        """(variant, seed) pairs whose final model is fully written, its sidecar (written
        last) with its metrics: a truncated one counted as done, and the summary then
        averaged one seed as if it were two."""
        done = []
        for j in sorted(self.root.glob("variants/*/seed*/final_model.json")):
            seed = j.parent.name.removeprefix("seed")  # as `unit_dir` names it: "seed²"
            # was no number to int(), and "seed007" beside "seed7" one seed counted twice
            if is_iteration_name(seed) and \
                    self.final_model(j.parent.parent.name, int(seed)).is_file() \
                    and _has_metrics(j, ()):
                done.append((j.parent.parent.name, int(seed)))
        return done


def list_train_time_runs(root: Path | None = None) -> list[TrainTimePaths]:
    """All train-time runs under `root` (default `default_train_time_root()`), newest first."""
    return [TrainTimePaths(r.root) for r in list_runs(root or default_train_time_root())]
