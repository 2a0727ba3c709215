"""User-facing errors.

Every problem a user can cause (bad settings, missing data, a refused file) is raised
as an `ExplorerError` with a one-line message, so the pages can show it with `st.error`
and the CLI can exit non-zero with that line instead of a traceback. Messages often
embed text from libraries (zlib, safetensors, urllib) that may span lines, so the
constructor folds all whitespace runs into single spaces: the one-line promise holds
no matter where the text came from.
"""
from __future__ import annotations

import signal
import sys


def one_line(text: object) -> str:
    """`text` as a single line: newlines, tabs and runs of spaces become one space."""
    return " ".join(str(text).split())


def os_reason(exc: BaseException) -> str:
    """The system's own words for a failed file operation ("No such file or directory",
    "Permission denied"): an `OSError`'s text repeats the path the message already
    names ("[Errno 2] No such file or directory: '/x/y'"). A file that is no text is
    said so (Python's "'utf-8' codec can't decode byte 0xd0 in position 24: invalid
    continuation byte" reached the CLI for a binary --retain or --config). Other errors
    give their text."""
    if isinstance(exc, UnicodeDecodeError):
        return "it is not a text file (no UTF-8 text)"
    return getattr(exc, "strerror", None) or str(exc)


class ExplorerError(Exception):
    """A problem the user can fix; its message is shown verbatim, on one line."""

    def __init__(self, *args: object) -> None:
        if args:
            args = (one_line(args[0]), *args[1:])
        super().__init__(*args)


class DatasetUnavailable(ExplorerError):
    """The dataset's files are not on disk (or unreadable) and could not be downloaded."""


class CheckpointError(ExplorerError):
    """A checkpoint is corrupt, unsafe to load, or does not fit its model spec."""


class MissingSpec(CheckpointError):
    """A weights file with no model spec beside it or inside it: an upload says so in
    the uploader's words, not with the temporary file names it was read under."""


class TrainingDiverged(ExplorerError):
    """A training ended with weights that are not finite (NaN / ±inf): a model that
    predicts nothing meaningful, never to be saved, cached or reported as a result
    (`checkpoint.refuse_diverged`)."""


class ChartRenderError(ExplorerError):
    """A chart could not be rendered as PNG (vl-convert refused it or failed).

    A derived file only: the numbers it draws are in the tables beside it, so a run
    that ends with this still finished (its status says which image is missing).
    """


class Cancelled(Exception):
    """Raised inside long work when the caller asked it to stop between batches."""


_INTERRUPTED = [False]  # set by `on_interrupt`: this process was sent a Ctrl-C
_SIGNAL = [int(signal.SIGINT)]  # the signal that did it, or SIGTERM outside a run


def on_interrupt(signum: int, frame: object) -> None:
    """The CLI's SIGINT handler (and SIGTERM's, outside a run's `jobs.worker_session`,
    which stops the run at its next batch instead): remember the Ctrl-C, then raise it
    as Python would — unless an import is running, which is left to finish: the run
    stops at its next check of `interrupted()` and the CLI exits 130 (`python -m
    explorer_core` checks once its own imports are done).

    Why remember: a Ctrl-C that lands while a library imports can be swallowed there,
    leaving a module half-imported; the next import that needs it then fails with
    something else (numpy: a RecursionError in 1 of 40 Ctrl-Cs sent 0.5–1.3 s after
    `prune` started), which the run's catch-all reported as a crash with a traceback.
    Why not raise inside an import: raised in Python code that a native module's
    initialisation calls (triton's, imported by the first optimiser), the interrupt
    became a C++ exception and the process aborted with a traceback
    ("terminate called after throwing an instance of 'nanobind::python_error'").
    """
    _INTERRUPTED[0] = True
    _SIGNAL[0] = int(signum)
    if not _importing(frame):
        raise KeyboardInterrupt


_RESUME = [None]  # the command that resumes this process's run, once its folder exists


def resume_command() -> str | None:
    """The command `resumable_with` named, if any."""
    return _RESUME[0]


def resumable_with(command: str | None) -> None:
    """Name the command that resumes the run this command works on (None: there is
    none), for the line an interruption ends with (`say_interrupted`): after a Ctrl-C,
    "interrupted" alone left the user to find the folder and the flag, where a stop
    said "resume …"."""
    _RESUME[0] = command


def say_interrupted() -> int:
    """Print the one line an interrupted command ends with; its exit code, 128 + the
    signal: "interrupted" (130) for a Ctrl-C, "terminated" (143) for a SIGTERM — which
    outside a run ended the CLI silently with 143, where a Ctrl-C said "interrupted".
    A run's line also says how to resume it (`resumable_with`)."""
    word = "terminated" if _SIGNAL[0] == signal.SIGTERM else "interrupted"
    print(word + (f"; resume with: {_RESUME[0]}" if _RESUME[0] else ""), file=sys.stderr)
    return 128 + _SIGNAL[0]


def raise_pending_interrupt() -> None:
    """Raise the Ctrl-C that `on_interrupt` let an import finish first, where a command
    is about to begin (its imports done, its run folder not yet made), and where a
    one-shot command (retention, inspect, prune-once, concatenate, compare --estimate)
    is about to write its results: a Ctrl-C in a command's first seconds, or in an
    import its work makes (its charts, captum, parts of torch), leaves nothing behind.
    Long runs are not stopped here: they poll `interrupted()` and save what they did."""
    if _INTERRUPTED[0]:
        raise KeyboardInterrupt


def _importing(frame: object) -> bool:
    """Whether `frame` (the interrupted code) runs inside an import."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib._bootstrap"):
            return True
        frame = frame.f_back
    return False


def interrupted() -> bool:
    """Whether this process was sent a Ctrl-C, even one a library swallowed: a run polls
    it with its stop request (a swallowed Ctrl-C once let a run train on to the end and
    exit 0), and the CLI exits 130 after it whatever the run returned."""
    return _INTERRUPTED[0]


def raise_if_interrupted(exc: BaseException) -> None:
    """For catch-all handlers: an error after a Ctrl-C is the Ctrl-C's doing, so the
    interrupt goes on (one line from the CLI) instead of a failure with a traceback."""
    if _INTERRUPTED[0]:
        raise KeyboardInterrupt from exc
