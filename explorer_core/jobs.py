"""Background workers for long runs.

Long work never runs inside a Streamlit script run: a page starts a child process
(`python -m explorer_core <command> --resume DIR`) in its own session, so it survives
page switches, reloads and closed tabs; the page only reads the files the worker writes.
A stop is a request file the worker checks between batches, so files are never torn.
"""
from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import ExplorerError, interrupted
from .rundir import (LIVE_STATES, RunLock, RunPaths, is_locked, log_session_line,
                     process_start, read_status, session_start, write_status)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Set for a worker `launch` starts: when it did. A Stop pressed while the worker is still
# starting (4–7 s of imports) is newer than this and must survive the worker's start.
LAUNCHED_AT_ENV = "EXPLORER_LAUNCHED_AT"
LAUNCH_SLACK_S = 1.0  # see `_forget_stale_stop_request`


def launch(paths: RunPaths, command: str = "prune", extra: list[str] | None = None) -> int:
    """Start a worker on `paths`; refuses if another process writes to it. Returns its pid."""
    if is_locked(paths):
        raise ExplorerError(f"{paths.root.name} is already running; stop it before starting it again")
    paths.stop_request.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "explorer_core", command, "--resume", str(paths.root),
            *(extra or [])]
    # Unbuffered, with the fault handler on: the log is a file, so Python buffered 8 KB of
    # it, and a worker that died (SIGKILL, a segfault in native code) lost its last lines
    # and left no trace of where it was; now a crash dumps every thread's Python stack.
    env = {**os.environ, LAUNCHED_AT_ENV: repr(time.time()), "PYTHONUNBUFFERED": "1",
           "PYTHONFAULTHANDLER": "1", "PYTHONPATH": os.pathsep.join(
               [str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    # The earlier sessions' work is summed now: the queued status's heartbeat would
    # otherwise make the time the run sat stopped or dead count as worked. No session
    # runs until the worker starts one, so the worker's start-up is not counted either.
    session = {"elapsed_before": session_start(paths)["elapsed_before"], "started": None}
    with open(paths.log, "ab") as log:
        log.write(log_session_line(command))
        log.flush()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=os.getcwd(), env=env, start_new_session=True)
    # its pid and start time: a worker that dies while starting reads as interrupted at
    # once (`rundir.read_status`), the start time telling it from a later process that
    # reuses the pid
    write_status(paths, "queued", pid=proc.pid, pid_start=process_start(proc.pid),
                 message="starting worker", **session)
    _reap_when_done(proc)
    return proc.pid


def _reap_when_done(proc: subprocess.Popen) -> None:
    """Collect the worker's exit status when it ends, off the page's thread.

    Nothing else waits on a launched worker (liveness is read from status and lock
    files), so each finished or killed worker stayed a `<defunct>` child of the
    Streamlit server until the server exited. A daemon thread blocked in `wait()` costs
    no CPU, never delays the page, and does not keep the server from exiting.
    """
    threading.Thread(target=proc.wait, name=f"reap-worker-{proc.pid}", daemon=True).start()


def request_stop(paths: RunPaths) -> None:
    """Ask the worker to stop at the next batch boundary (it writes 'stopped' itself)."""
    paths.stop_request.touch()


def wait(paths: RunPaths, timeout: float = 60.0, poll: float = 0.2) -> dict:
    """Block until the run leaves queued/running (for tests and scripts)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = read_status(paths)
        if status.get("state") not in LIVE_STATES:
            return status
        time.sleep(poll)
    raise TimeoutError(f"{paths.root} still running after {timeout:.0f} s")


def kill(paths: RunPaths) -> None:
    """Hard-kill a worker (SIGKILL): what a crash looks like; resume recovers from it.

    Only a live worker: the pid in status.json outlives its process, and once the run
    is over it may belong to anyone — a run executed in this very process (as the tests
    and the CLI do) records our own pid, and killing it took the test session down.
    """
    status = read_status(paths)
    pid = status.get("pid")
    if not pid or int(pid) == os.getpid():
        return
    if not is_locked(paths) and status.get("state") != "queued":  # no writer holds the run
        return
    try:
        os.kill(int(pid), signal.SIGKILL)
    except ProcessLookupError:
        pass


@contextmanager
def _start_up_objects_frozen() -> Iterator[None]:
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _forget_stale_stop_request(paths: RunPaths) -> None:
    """Drop a stop request left from an earlier session, keep one made since `launch`.

    A worker started from the command line clears any request (there is no Stop button
    to have pressed for it); a launched worker only one older than its launch.
    """
    try:
        made = paths.stop_request.stat().st_mtime
    except FileNotFoundError:
        return
    launched = os.environ.get(LAUNCHED_AT_ENV)
    try:
        # with a second's slack: a file's time comes from the kernel's coarse clock, a
        # tick (~4 ms) behind `time.time()`, so a Stop pressed a few ms after `launch`
        # looked older than it and was erased (the run went to its end). `launch`
        # deletes any earlier request, so one made within the slack is this launch's.
        stale = launched is None or made < float(launched) - LAUNCH_SLACK_S
    except ValueError:
        stale = True
    if stale:
        paths.stop_request.unlink(missing_ok=True)


CTRL_C_MESSAGE = "stopped with Ctrl-C; resuming continues from what was saved"


def record_ctrl_c(paths: RunPaths, **fields: Any) -> None:
    """Say a Ctrl-C in the run's status, while this process still holds the run: it left
    "running" with a dead pid behind (readers took it for interrupted, a script reading
    status.json for running). The step under way is not saved, as after any crash.
    `fields`: what the run adds (a sweep, the cells on disk)."""
    try:
        write_status(paths, "interrupted", message=CTRL_C_MESSAGE, activity="", **fields)
    except OSError:  # the disk refuses: readers still find the run interrupted (no lock)
        pass


@contextmanager
def worker_session(paths: RunPaths, should_stop: Callable[[], bool] | None = None
                   ) -> Iterator[Callable[[], bool]]:
    """Be the one writer of `paths` for the block; yields the `stop()` predicate to poll.

    `stop()` turns true on a stop-request file (the page's Stop button), on SIGTERM, on a
    Ctrl-C a library swallowed (`errors.interrupted`), or when the caller's own
    `should_stop` does; long loops check it between batches.
    A second writer is refused by the lock with a one-line `ExplorerError`.

    While the block runs, the objects the process already holds are frozen out of the
    garbage collector's full passes: pruning makes many short-lived objects (model
    copies, dependency graphs) that trigger them, and each walked the ~430 000 objects
    importing torch, pandas and scikit-learn leaves — 150 ms a pass (0.17 s of GC in an
    11 s Digits Compare benchmark, 0.01 s frozen). Frozen objects are never collected,
    so they are handed back afterwards.
    """
    with RunLock(paths), _start_up_objects_frozen():
        _forget_stale_stop_request(paths)
        flag = {"stop": False}
        # looked for at every call (training asks once per mini-batch): a request made
        # at any moment is seen at the next check, however short the run. Polling it at
        # most every 20 ms let a 3-cell sweep on a cached baseline finish inside one
        # window after a Stop pressed while it started.
        request = os.fspath(paths.stop_request)

        def stop() -> bool:
            return flag["stop"] or interrupted() or os.path.exists(request) or bool(
                should_stop and should_stop())

        try:
            previous = signal.signal(signal.SIGTERM, lambda *_: flag.__setitem__("stop", True))
        except ValueError:  # not the main thread: the stop-request file still works
            previous = None
        try:
            yield stop
        except KeyboardInterrupt:
            record_ctrl_c(paths)
            raise
        else:
            # a Ctrl-C a library swallowed ends the run through `stop()`, which it records
            # as "stopped by request" (a Ctrl-C in the first seconds of a `prune` did),
            # while the CLI says "interrupted" and exits 130
            if interrupted() and read_status(paths).get("state") == "stopped":
                record_ctrl_c(paths)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
