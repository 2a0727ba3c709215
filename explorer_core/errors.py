"""User-facing errors.

Every problem a user can cause (bad settings, missing data, a refused file) is raised
as an `ExplorerError` with a one-line message, so the pages can show it with `st.error`
and the CLI can exit non-zero with that line instead of a traceback. Messages often
embed text from libraries (zlib, safetensors, urllib) that may span lines, so the
constructor folds all whitespace runs into single spaces: the one-line promise holds
no matter where the text came from.
"""
from __future__ import annotations


def one_line(text: object) -> str:
    """`text` as a single line: newlines, tabs and runs of spaces become one space."""
    return " ".join(str(text).split())


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


class Cancelled(Exception):
    """Raised inside long work when the caller asked it to stop between batches."""
