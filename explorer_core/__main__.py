"""`python -m explorer_core`: the CLI, with Ctrl-C as one line and exit code 130.

A Ctrl-C runs `errors.on_interrupt` until the command's outcome (its exit code, or the
interrupt) is known, and `_on_late_interrupt` from then on, which never raises. A SIGTERM
outside a run is handled alike ("terminated", exit 143); inside one, `jobs.worker_session`
turns it into a stop at the next batch.

The process always leaves with `os._exit` after flushing its streams, and (unless it
was interrupted) after the hooks a normal exit runs first: non-daemon threads, atexit.
Why not a normal exit:
- it tears the interpreter down (0.8 s with torch loaded) with SIGINT reset to its
  default action, so a Ctrl-C then killed the process (exit −2: 20 of 20 Ctrl-Cs sent
  0.1–0.3 s after `retention` printed its last line), and one in an atexit hook (torch's,
  weakref's) printed a KeyboardInterrupt traceback (10 of 10 sent at once);
- a library can set CPython's "unhandled KeyboardInterrupt" flag while it swallows a
  Ctrl-C, and a normal exit then kills the process with SIGINT (exit −2, seen in 2 of 10
  Ctrl-Cs sent 3 s after `prune` started), although the run had been stopped and its
  files written.
An interrupted process skips the exit hooks: a library the Ctrl-C left half-imported can
fail in its own. An error raised after a Ctrl-C is the Ctrl-C's doing (such a
half-imported module), so it too ends as the interrupt, not as a traceback.
"""
from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from typing import NoReturn

from .errors import interrupted, on_interrupt, raise_pending_interrupt, say_interrupted
from .streams import guard_std_streams

_leaving_with: list[int | None] = [None]  # the exit code, once `_leave` has it
_late_ctrl_c = [False]  # a Ctrl-C came after the outcome was known


def _command_code() -> int:
    """Run the command; its exit code."""
    from .cli import main  # the CLI frame only: `main` imports the commands (torch)

    raise_pending_interrupt()  # one in those imports, which `on_interrupt` let finish
    return main()


def _on_late_interrupt(signum: int, frame: object) -> None:
    """SIGINT once the command's outcome is known: leave at once with that outcome.

    The command's code, not 130: the command has finished and its files are written, so
    the Ctrl-C stopped nothing, and 130 would tell a script to distrust or redo finished
    work. Leaving at once rather than ignoring it: an exit hook that hangs (a library
    joining its threads) can still be left with a Ctrl-C, as from a normal exit.
    """
    _late_ctrl_c[0] = True
    if _leaving_with[0] is not None:
        _exit_now(_leaving_with[0])


def _system_exit_code(exc: SystemExit) -> int:
    """The exit code the interpreter gives for `exc` (argparse: 0 for --help, 2 for a
    usage error, its message already printed)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _leave(code: int) -> NoReturn:
    """End the process with `code`; a Ctrl-C meanwhile ends it at once with `code`."""
    _leaving_with[0] = code
    if not (interrupted() or _late_ctrl_c[0]):
        # what a normal exit runs before its teardown, as multiprocessing's children do
        # before their own os._exit
        threading._shutdown()  # type: ignore[attr-defined]  # joins non-daemon threads
        atexit._run_exitfuncs()
    _exit_now(code)


def _exit_now(code: int) -> NoReturn:
    """Flush what was printed (a closed pipe cannot take it: nothing to do), then exit."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


try:
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):  # before the imports one can break
            signal.signal(sig, on_interrupt)
        guard_std_streams()  # `… | head`: a closed pipe is no failed run (streams.py)
        code: int | None = _command_code()
    finally:  # from here no KeyboardInterrupt: one raised before is handled below
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _on_late_interrupt)
except KeyboardInterrupt:
    code = None
except SystemExit as exc:
    code = _system_exit_code(exc)
except Exception:
    if interrupted():
        code = None
    else:
        sys.excepthook(*sys.exc_info())  # a bug: its traceback, exit 1, as Python would
        code = 1
if code is None:
    code = say_interrupted()
_leave(code)
