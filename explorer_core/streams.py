"""stdout and stderr that outlive their reader.

`compare … | head -3` closed the pipe after three lines; the next progress line raised
BrokenPipeError, an OSError, which the sweep took for a failed write of its own files:
it ended "failed" after 3 of 20 cells, telling the user to "free or fix the folder".
The reader going away is no reason to stop work whose results go to files: once the
pipe is closed, what would have been printed is dropped and the command runs on, with
its own exit code (a Ctrl-C still stops it, resumable, as at any time).
"""
from __future__ import annotations

import sys
from typing import Any, TextIO


class PipeSafeStream:
    """A text stream whose writes stop, silently, once its reader has gone."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self.reader_gone = True
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self.reader_gone = True

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, …
        return getattr(self._stream, name)


def guard_std_streams() -> None:
    """Make this process's stdout and stderr `PipeSafeStream`s (once)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, PipeSafeStream):
            setattr(sys, name, PipeSafeStream(stream))
