"""User-facing errors.

Every problem a user can cause (bad settings, missing data, a refused file) is raised
as an `ExplorerError` with a one-line message, so the pages can show it with `st.error`
and the CLI can exit non-zero with that line instead of a traceback.
"""


class ExplorerError(Exception):
    """A problem the user can fix; its message is shown verbatim, on one line."""


class DatasetUnavailable(ExplorerError):
    """The dataset's files are not on disk and could not be downloaded."""


class CheckpointError(ExplorerError):
    """A checkpoint is corrupt, unsafe to load, or does not fit its model spec."""


class Cancelled(Exception):
    """Raised inside long work when the caller asked it to stop between batches."""
