"""Where `prune`, `compare` and `train-time` make and find their folders, as a user types
them: `--resume` on the wrong kind of folder, and a root that is a file."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from explorer_core import experiment, jobs, sweep, train_time
from explorer_core.cli import main
from explorer_core.rundir import RunPaths, read_record, write_status


def _iterative(root: Path) -> Path:
    cfg = experiment.RunConfig(name="iterative", dataset="digits", hidden=[16, 8],
                               schedule={"q": 0.5, "iterations": 3}, criterion="l1")
    return experiment.create_run(cfg, root / "runs").root


def _sweep(root: Path) -> Path:
    cfg = sweep.SweepConfig(name="sweep", models=["mlp"], types=["neuron"], criteria=["l1"],
                            ratios=[0.0, 0.5], mlp_hidden=[16, 8], latency_repeats=0)
    return sweep.create_sweep(cfg, root / "sweeps").root


def _train_time(root: Path) -> Path:
    cfg = train_time.TrainTimeConfig(name="train-time", dataset="digits", hidden=[20, 12],
                                     epochs=2, initial_epochs=1, prune_every=1)
    return train_time.create_run(cfg, root / "train_time").root


FOLDERS = {"iterative": _iterative, "sweep": _sweep, "train-time": _train_time}
# (command, a folder of another kind it is pointed at)
WRONG_KIND = [("compare", "iterative"), ("compare", "train-time"), ("prune", "sweep"),
              ("prune", "train-time"), ("train-time", "sweep"), ("train-time", "iterative")]


def _finished(make, root: Path) -> Path:
    """A folder of one kind whose run is over (the work itself does not matter here)."""
    folder = make(root)
    write_status(RunPaths(folder), "finished", message="schedule complete")
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def at_a_terminal(monkeypatch, tmp_path):
    """A command typed by a person: not a worker `jobs.launch` started."""
    monkeypatch.delenv(jobs.LAUNCHED_AT_ENV, raising=False)
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("command, kind", WRONG_KIND)
def test_resume_on_another_kind_of_folder_leaves_it_byte_identical(tmp_path, at_a_terminal,
                                                                   capsys, command, kind):
    """`compare --resume <a finished iterative run>` printed the reason, and also rewrote
    the run's status.json to "failed": the finished run then showed as failed."""
    folder = _finished(FOLDERS[kind], tmp_path)
    before = _snapshot(folder)
    assert main([command, "--resume", str(folder), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert _snapshot(folder) == before
    assert read_record(folder / "status.json")["state"] == "finished"


OWN_KIND = {"prune": "iterative", "compare": "sweep", "train-time": "train-time"}


@pytest.mark.parametrize("command", list(OWN_KIND))
def test_a_page_launched_worker_still_records_why_it_cannot_resume(tmp_path, at_a_terminal,
                                                                   monkeypatch, capsys,
                                                                   command):
    """A worker the page started has no terminal: when its own run's settings cannot be
    read (here a hand-edited config.json), the reason must reach status.json."""
    folder = _finished(FOLDERS[OWN_KIND[command]], tmp_path)
    config = folder / "config.json"
    config.write_text(config.read_text().replace('"name": ', '"name": 7, "_": ', 1))
    monkeypatch.setenv(jobs.LAUNCHED_AT_ENV, repr(time.time()))
    assert main([command, "--resume", str(folder), "--quiet"]) == 2
    printed = capsys.readouterr().err.strip().removeprefix("error: ")
    status = read_record(folder / "status.json")
    assert status["state"] == "failed" and status["message"] == printed


@pytest.mark.parametrize("command, kind", WRONG_KIND)
def test_a_page_launched_worker_leaves_another_kinds_folder_alone(tmp_path, at_a_terminal,
                                                                  monkeypatch, command, kind):
    """The other kind's status is not the worker's to write: a finished run read
    "failed" because a worker of another kind had been pointed at it."""
    folder = _finished(FOLDERS[kind], tmp_path)
    before = _snapshot(folder)
    monkeypatch.setenv(jobs.LAUNCHED_AT_ENV, repr(time.time()))
    assert main([command, "--resume", str(folder), "--quiet"]) == 2
    assert _snapshot(folder) == before


# ------------------------------------------------------------------ a root that is a file

_NEW = {"prune": ["--dataset", "digits", "--hidden", "8", "4", "--iterations", "2"],
        "compare": ["--models", "mlp", "--types", "neuron", "--criteria", "l1",
                    "--ratios", "0"],
        "train-time": ["--dataset", "digits", "--hidden", "8", "4", "--epochs", "2",
                       "--initial-epochs", "1", "--prune-every", "1"]}
_ROOT_FLAG = {"prune": "--runs-root", "compare": "--sweeps-root", "train-time": "--runs-root"}


@pytest.mark.parametrize("command", list(_NEW))
def test_a_root_that_is_a_file_is_named_as_the_file_in_the_way(tmp_path, at_a_terminal,
                                                               capsys, command):
    """The message named `<file>/<date>` — a folder the user never typed — as the file
    in the way; it names the root they gave."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("mine")
    assert main([command, *_NEW[command], _ROOT_FLAG[command], str(blocker), "--name", "x",
                 "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: cannot write into {blocker}: a file of that name is in the way (need a folder)")
    assert blocker.read_text() == "mine"


@pytest.mark.parametrize("command, root, env", [
    ("prune", "not-a-folder/sub", None),
    ("train-time", None, "not-a-folder"),  # the default root: $EXPLORER_RUNS/train-time
])
def test_a_file_above_the_root_is_named_beside_the_root(tmp_path, at_a_terminal, monkeypatch,
                                                        capsys, command, root, env):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("mine")
    args = [command, *_NEW[command], "--name", "x", "--quiet"]
    if root:
        args += [_ROOT_FLAG[command], str(tmp_path / root)]
        given = tmp_path / root
    else:
        monkeypatch.setenv("EXPLORER_RUNS", str(tmp_path / env))
        given = tmp_path / env / "train-time"
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: cannot write into {given}: {blocker} is a file in the way (need a folder)")
