"""`python -m explorer_core …`: the same core as the pages, without a browser.

Each command registers itself in `COMMANDS` (name → (configure parser, run)). Every
user error surfaces as one line on stderr and exit code 2; results are files on disk.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

from .errors import (ExplorerError, interrupted, os_reason, raise_pending_interrupt,
                     resumable_with, resume_command, say_interrupted)
from .fileio import JSON_ERRORS
from .rundir import (COMPARE_SWEEP, ITERATIVE_RUN, KIND_KEYS, TRAIN_TIME_RUN, blocked_message,
                     folder_kind)

T = TypeVar("T")
Configure = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[str, Configure, Run]] = {}


def command(name: str, help: str) -> Callable[[Configure], Configure]:
    """Register `configure(parser)`; the parser's `run` default does the work."""
    def wrap(configure: Configure) -> Configure:
        COMMANDS[name] = (help, configure, None)  # type: ignore[assignment]
        return configure
    return wrap


def default_name(prefix: str) -> str:
    """A run name nobody gave: the time and this process's id, so two commands started
    in the same second (a batch script) do not both claim `run-090355`."""
    return f"{prefix}-{time.strftime('%H%M%S')}-{os.getpid()}"


# Into a log, an epoch's line at most this often between the lines of finished work.
LOG_EPOCH_EVERY_S = 30.0


class LogPace:
    """When a progress printer writing into a log or pipe (not a terminal) writes a line:
    for each piece of finished work (`finished`: an iteration, a variant's seed), and for
    an epoch when nothing was written for `LOG_EPOCH_EVERY_S`. Finished work alone left a
    log silent through a whole dense phase or seed — minutes of a CNN's."""

    def __init__(self, finished: str) -> None:
        self.finished = finished
        self.last = time.monotonic()

    def due(self, event: dict) -> bool:
        kind = event.get("type")
        if kind == self.finished or (
                kind == "epoch" and time.monotonic() - self.last >= LOG_EPOCH_EVERY_S):
            self.last = time.monotonic()
            return True
        return False


@dataclass
class EpochBar:
    """The epoch count behind the progress bars of `prune` and `train-time`.

    `done` starts at the epochs the run kept from before a resume: a resumed run's bar
    began at 0 of N (and a run stopped halfway ended at 50 %). The remaining time is
    paced by this session's epochs only; those kept cost no time now.
    """
    total: int
    done: int = 0
    started: float = field(default_factory=time.time)
    first: int = field(init=False)

    def __post_init__(self) -> None:
        self.first = self.done

    def count(self, event: dict) -> None:
        """One more epoch for each epoch event."""
        self.done += event.get("type") == "epoch"

    @property
    def fraction(self) -> float:
        return min(self.done / max(self.total, 1), 1.0)

    def bar(self) -> str:
        """`[#####-----]  50.0 %`, 30 characters wide."""
        filled = int(30 * self.fraction)
        return f"[{'#' * filled}{'-' * (30 - filled)}] {100 * self.fraction:5.1f} %"

    def times(self) -> str:
        """`elapsed 12 s  eta 1 min 30 s` (`eta —` until this session has trained an epoch),
        in `labels.format_seconds`' words, as `compare`'s bar says them."""
        from .labels import format_seconds

        elapsed = time.time() - self.started
        ran = self.done - self.first
        eta = elapsed / ran * max(self.total - self.done, 0) if ran > 0 else None
        return f"elapsed {format_seconds(elapsed)}  eta {format_seconds(eta)}"


# the command that makes (and takes the config.json of) each kind of run folder
KIND_COMMANDS = {ITERATIVE_RUN: "prune", COMPARE_SWEEP: "compare", TRAIN_TIME_RUN: "train-time"}


def read_json_config(path: Path, kind: str | None = None) -> dict:
    """The JSON object in a `--config` file; anything else is a one-line ExplorerError.

    `kind` (`rundir.ITERATIVE_RUN`, …): the kind of run the command makes. A config.json
    of another kind is named for what it is, with the command that takes it: an
    iterative run's given to `compare` was refused as "unknown sweep setting(s):
    activation, batch_size, … spec"."""
    try:
        base = json.loads(Path(path).read_text())
    except (OSError, *JSON_ERRORS) as exc:  # bad JSON or UTF-8; a 4 300-digit integer;
        # nested past the stack; an OSError by its reason alone: with its whole text the
        # line read "cannot read /a.json: [Errno 2] No such file or directory: '/a.json'"
        raise ExplorerError(f"cannot read {path}: {os_reason(exc)}"
                            ) from None
    if not isinstance(base, dict):
        raise ExplorerError(f"{path} must hold a JSON object")
    found = folder_kind(base)
    # three of that kind's own settings: a lone "spec" beside a train-time run's
    # settings is the key its own config.json records, not another kind's file
    if kind is not None and found is not None and found != kind \
            and len(KIND_KEYS[found] & base.keys()) >= 3:
        raise ExplorerError(f"{path} holds the settings of {found}, not of {kind}: give it "
                            f"to `{KIND_COMMANDS[found]} --config`")
    return base


def say_ignored_keys(base: Mapping[str, Any], cls: type, config: Path | None) -> None:
    """Name on stderr the keys of a `--config` file that `cls.from_dict(base)` accepted
    without them setting anything: what a run folder's config.json records beside its
    settings (spec, versions, created). Such a file is meant to be reusable as a config,
    so they are not refused; but they were dropped silently, and an edited "spec" there
    looked like it chose the model. Call it once `from_dict` has accepted `base` (any
    other unknown key was refused there)."""
    from .settings import field_types

    ignored = sorted(str(k) for k in base if k not in field_types(cls))
    if config is not None and ignored:
        keys = "key" if len(ignored) == 1 else "keys"
        print(f"note: ignored the {keys} {', '.join(ignored)} of {config.name}: a run folder "
              f"records them beside its settings; they set nothing here", file=sys.stderr)


def interpreter() -> str:
    """How to call the Python running this process, as a command to paste: its name
    where that name on PATH is this very interpreter (an activated venv's `python3`),
    else its full path. A hint saying `python3` sent a user of a venv they had not
    activated (or of `python3.11`) to an interpreter without our packages."""
    if not sys.executable:
        return "python3"
    for name in ("python3", "python"):
        found = shutil.which(name)
        # the same file in the same folder: a venv's python3 is a link to the base
        # interpreter, and only started from the venv's folder does it find its packages
        if found and all(os.path.realpath(a) == os.path.realpath(b) for a, b in (
                (found, sys.executable),
                (os.path.dirname(found), os.path.dirname(sys.executable)))):
            return name
    return shlex.quote(sys.executable)


def resume_hint(command: str, folder: Path, *more: str) -> None:
    """Say how to resume `folder` (the run `command` works on, `more` its other resume
    flags) if this process is interrupted or stopped (`errors.resumable_with`)."""
    resumable_with(" ".join([interpreter(), "-m explorer_core", command, "--resume",
                             shlex.quote(str(folder)), *more]))


def say_outcome(status: Mapping[str, Any], where: Path, what: str = "run") -> None:
    """A run's last line: "finished: … (<where>)" on stdout (or stopped). A failure is
    the one error line instead (its folder was said as the run started, or given to
    --resume): it was said twice, "failed: …" on stdout and "error: …" on stderr.
    After a Ctrl-C that a library swallowed (the run stopped through `interrupted()`)
    the interruption's own line is the last: a resumed `prune` said "stopped: stopped by
    request", the model to deploy, then "interrupted"."""
    raise_pending_interrupt()
    if status["state"] == "failed":
        raise ExplorerError(status.get("message") or f"{what} failed")
    again = resume_command() if status["state"] in ("stopped", "interrupted") else None
    print(f"{status['state']}: {status.get('message', '')} ({where})"
          + (f"; resume with: {again}" if again else ""))


def launched_by_page() -> bool:
    """True in a worker `jobs.launch` started (it sets `jobs.LAUNCHED_AT_ENV`): a process
    with no terminal, whose only way to tell the page anything is the run's files."""
    from .jobs import LAUNCHED_AT_ENV

    return os.environ.get(LAUNCHED_AT_ENV) is not None


def saved_settings(paths: Any, load: Callable[[Any], T]) -> T:
    """A run's saved settings (`load(paths)`).

    When they cannot be read, a worker a page launched also says why in status.json: it
    has no terminal, and its run sat "queued", then "interrupted", with the reason only
    in worker.log. A command typed at a terminal only prints the reason and leaves the
    folder as it was: `compare --resume` pointed at a finished iterative run (another
    kind of folder) rewrote that run's status to "failed".
    """
    from .rundir import WrongKindError, write_status

    try:
        return load(paths)
    except WrongKindError:  # another kind's folder: its status is not ours to write
        raise
    except ExplorerError as exc:
        if launched_by_page():
            write_status(paths, "failed", message=str(exc))
        raise


# What still means something beside --resume: the rest are settings saved in the folder.
_RESUME_OPTIONS = frozenset({"command", "run", "resume", "quiet", "from_iteration",
                             "tolerance"})


def refuse_settings_beside_resume(args: argparse.Namespace) -> None:
    """--resume continues a run with the settings saved in its folder; a setting given
    beside it would be silently ignored (a resumed sweep ran its old ratios, `--estimate`
    ran the sweep), so it is refused instead."""
    given = [name for name, value in vars(args).items()
             if name not in _RESUME_OPTIONS and value is not None and value is not False]
    if given:
        raise ExplorerError(f"--resume continues a run with its saved settings; drop "
                            f"--{given[0].replace('_', '-')}")


def add_overwrite_flag(p: argparse.ArgumentParser, files: str) -> None:
    """`--overwrite` for a one-shot command whose results (`files`) keep fixed names in
    the folder it is given (`refuse_existing` reads it)."""
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace {files} of an earlier run with the same --out (without it, "
                        f"existing files are refused)")


def refuse_existing(paths: Iterable[Path], overwrite: bool) -> list[Path]:
    """The `paths` that already exist, for a command allowed to replace them; without
    `--overwrite` the first of them is refused. A one-shot command silently replaced an
    earlier result of the same name (a pruned checkpoint made at another ratio), or left
    files of it beside its own that no longer matched them."""
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise ExplorerError(f"{existing[0]} already exists (an earlier result); add "
                            f"--overwrite to replace it, or pick another --out")
    return existing


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like our own errors
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from . import commands  # noqa: F401  (registers the commands)

    parser = _Parser(prog="python -m explorer_core",
                     description="Pruning Explorer: headless access to the pruning lab.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (help_text, configure, _) in COMMANDS.items():
        configure(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    resumable_with(None)  # not an earlier command's run (tests call `main` in one process)
    parser = build_parser()  # imports every command, and torch with them: seconds
    if interrupted():
        # A Ctrl-C in those imports, which `errors.on_interrupt` let finish. Checked
        # here, not only by `python -m explorer_core` before calling `main`: its check
        # ran before these imports, so one-shot commands (retention, inspect, prune-once,
        # concatenate, compare --estimate) did all their work and wrote every file,
        # then exited 130 (Ctrl-C 0.3–2.5 s after start, every time).
        return say_interrupted()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        code = int(args.run(args) or 0)
    except ExplorerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return say_interrupted()
    except OSError as exc:  # an output folder that cannot be made or written, a full disk
        print(f"error: {cannot_write(exc)}", file=sys.stderr)
        return 2
    if interrupted():  # a Ctrl-C a library swallowed: the run stopped for it, say so
        return say_interrupted()
    return code


def cannot_write(exc: OSError) -> str:
    """One line for a failed file operation, naming the path the user gave."""
    where = exc.filename if exc.filename is not None else "a file"
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        if exc.filename is None:
            return "cannot write into a folder: a file of that name is in the way (need a folder)"
        return blocked_message(Path(where))  # the file in the way may be a folder above it
    return f"cannot write {where}: {os_reason(exc)}"
