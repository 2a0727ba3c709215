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


# ------------------------------------------------------------------ paths written on resume

def _cli(cwd: Path, *args: str) -> "subprocess.CompletedProcess[str]":
    """`python -m explorer_core …` as typed in `cwd`, its roots the absolute ones a
    fresh run there was given (`roots`)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "EXPLORER_RUNS": str(cwd / "runs"), "EXPLORER_SWEEPS": str(cwd / "sweeps"),
           "EXPLORER_CACHE": str(cwd / "cache")}
    env.pop(jobs.LAUNCHED_AT_ENV, None)
    run = subprocess.run([sys.executable, "-m", "explorer_core", *args, "--quiet"], cwd=cwd,
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return run


def _relative_folder(tmp_path: Path, pattern: str) -> str:
    """The one folder matching `pattern` under tmp_path, as a relative path (typed)."""
    (folder,) = tmp_path.glob(pattern)
    return str(folder.relative_to(tmp_path))


def test_compare_resumed_by_a_relative_path_writes_absolute_checkpoint_paths(tmp_path):
    """QA: cells finished before a `compare --resume sweeps/<date>/ck1` had absolute
    `checkpoint` paths in results.csv, the cells after it relative ones."""
    import pandas as pd

    _cli(tmp_path, "compare", "--name", "ck1", "--types", "neuron", "--criteria", "l1",
         "--ratios", "0", "0.5", "--mlp-hidden", "16", "8", "--dense-epochs", "1",
         "--latency-repeats", "0")
    folder = _relative_folder(tmp_path, "sweeps/*/ck1")
    paths = sweep.SweepPaths(tmp_path / folder)
    last = "mlp-digits-b64-s0-neuron-l1-r50"
    paths.cell(last).unlink()  # as a kill part-way leaves it: the second cell not done
    for f in paths.checkpoints_dir.glob(f"{last}.*"):
        f.unlink()
    _cli(tmp_path, "compare", "--resume", folder)
    rows = pd.read_csv(paths.results_csv)
    assert rows["cell_id"].tolist() == ["mlp-digits-b64-s0-neuron-l1-r0", last]
    for cell_id, written in zip(rows["cell_id"], rows["checkpoint"]):
        assert written == str(tmp_path / folder / "checkpoints" / f"{cell_id}.safetensors")
        assert Path(written).is_file()


def test_train_time_resumed_by_a_relative_path_writes_absolute_checkpoint_paths(tmp_path):
    """`train-time --resume runs/train-time/<date>/tk1` rewrote summary.json with
    relative `checkpoint` values (all of them: the summary is rebuilt on resume)."""
    _cli(tmp_path, "train-time", "--name", "tk1", "--hidden", "8", "4", "--epochs", "2",
         "--initial-epochs", "1", "--prune-every", "1", "--variants", "importance", "none")
    folder = _relative_folder(tmp_path, "runs/train-time/*/tk1")
    for f in (tmp_path / folder / "variants" / "none").rglob("final_model.json"):
        f.unlink()  # that unit is not done
    _cli(tmp_path, "train-time", "--resume", folder)
    summary = read_record(tmp_path / folder / "train_time_results" / "summary.json")
    written = [r["checkpoint"] for r in summary["runs"]]
    assert sorted(written) == [
        str(tmp_path / folder / "variants" / v / "seed0" / "final_model.safetensors")
        for v in ("importance", "none")]


def test_prune_resumed_by_a_relative_path_names_absolute_paths(tmp_path):
    """An iterative run's files hold no paths; what `prune --resume` prints (the folder,
    the checkpoint to deploy) named them relative to wherever it was typed."""
    _cli(tmp_path, "prune", "--name", "pk1", "--hidden", "32", "16", "--iterations", "3",
         "--q", "0.5", "--criterion", "l1", "--dense-epochs", "5", "--retrain-epochs", "1")
    folder = _relative_folder(tmp_path, "runs/*/pk1")
    import shutil
    shutil.rmtree(tmp_path / folder / "2")  # the last iteration not done
    out = _cli(tmp_path, "prune", "--resume", folder).stdout
    assert f"({tmp_path / folder})" in out.splitlines()[0]
    deploy = out.splitlines()[-1]
    assert deploy.startswith("deploy: ") and f"({tmp_path / folder}/" in deploy, deploy


def test_a_run_folder_is_the_same_string_however_it_is_reached(tmp_path, monkeypatch):
    """Pages pick runs by `str(paths.root)`: the folder a start made (under a relative
    root), the one a run list finds and the one a worker is handed must agree."""
    from explorer_core.rundir import SweepPaths, list_sweeps, new_run_dir

    monkeypatch.chdir(tmp_path)
    made = SweepPaths(new_run_dir("s1", Path("sweeps")).root)
    (made.root / "config.json").write_text("{}")
    assert made.root == tmp_path / "sweeps" / made.root.parent.name / "s1"
    assert [str(s.root) for s in list_sweeps(Path("sweeps"))] == [str(made.root)]
    day = made.root.parent.name
    for typed in (tmp_path / "sweeps" / day / "s1", Path("sweeps") / day / "s1",
                  Path("sweeps") / ".." / "sweeps" / day / "s1"):
        assert str(SweepPaths(typed).root) == str(made.root), typed


def test_a_run_in_a_linked_date_folder_keeps_the_links_name(tmp_path):
    """Run folders were resolved: a date folder linked to another place
    (`2026-02-01 → archive/jan`) listed its runs as "(jan)"."""
    from explorer_core.rundir import list_sweeps

    target = tmp_path / "archive" / "jan" / "s2"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "2026-02-01").symlink_to(tmp_path / "archive" / "jan")
    [found] = list_sweeps(tmp_path / "sweeps")
    assert found.root == tmp_path / "sweeps" / "2026-02-01" / "s2"
