"""Background workers as the pages start them: Stop while a worker is still starting,
stale stop requests, and the elapsed time of a resumed run.

Each kind of run (iterative pruning, Compare sweep, train-time pruning) goes through
the same `jobs.launch` → `worker_session`, so each is checked with a real worker process.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
from pathlib import Path

import pytest

from explorer_core import experiment, jobs, sweep, train_time
from explorer_core.rundir import (INTERRUPTED_MESSAGE, RunPaths, elapsed_seconds, log_tail,
                                  read_events, read_status)


def _iterative(root):
    cfg = experiment.RunConfig(name="iterative", dataset="digits", hidden=[16, 8],
                               schedule={"q": 0.5, "iterations": 3}, criterion="l1",
                               dense_epochs=2, retrain_epochs=1, seed=0)
    return experiment.create_run(cfg, root / "runs"), "prune", experiment.execute


def _sweep(root):
    cfg = sweep.SweepConfig(name="sweep", models=["mlp"], batch_sizes=[32], types=["neuron"],
                            criteria=["l1"], ratios=[0.0, 0.3, 0.6], dense_epochs=2,
                            mlp_hidden=[16, 8], latency_repeats=0)
    return sweep.create_sweep(cfg, root / "sweeps"), "compare", sweep.execute


def _train_time(root):
    cfg = train_time.TrainTimeConfig(name="train-time", dataset="digits", hidden=[20, 12],
                                     epochs=4, initial_epochs=1, prune_every=1,
                                     prune_fraction=0.25, seeds=[0])
    return train_time.create_run(cfg, root / "train_time"), "train-time", train_time.execute


KINDS = {"iterative": _iterative, "compare": _sweep, "train-time": _train_time}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(jobs.LAUNCHED_AT_ENV, raising=False)


@pytest.mark.parametrize("kind", list(KINDS))
def test_stop_pressed_while_the_worker_starts_stops_the_run(tmp_path, cache, kind):
    """The worker spends seconds importing before it takes the run; a Stop pressed in
    that window (the page shows "queued" and a Stop button) was erased when it did,
    and the run went to its end."""
    paths, command, _ = KINDS[kind](tmp_path)
    jobs.launch(paths, command)
    try:
        assert read_status(paths)["state"] == "queued"
        jobs.request_stop(paths)
        status = jobs.wait(paths, timeout=120)
    finally:
        jobs.kill(paths)
    assert status["state"] == "stopped", (status, paths.log.read_text()[-2000:])


def test_a_launched_worker_keeps_a_stop_pressed_just_after_launch(tmp_path, monkeypatch):
    """A file's time comes from the kernel's coarse clock, a tick behind `time.time()`:
    a Stop pressed a few ms after launch looked older than the launch and was erased
    (a CI run saw a train-time run go to its end). One from an earlier session goes."""
    paths = RunPaths(tmp_path)
    launched = time.time()
    monkeypatch.setenv(jobs.LAUNCHED_AT_ENV, repr(launched))
    jobs.request_stop(paths)
    os.utime(paths.stop_request, (launched - 0.004, launched - 0.004))  # a tick behind
    jobs._forget_stale_stop_request(paths)
    assert paths.stop_request.exists()
    os.utime(paths.stop_request, (launched - 60, launched - 60))  # an earlier session's
    jobs._forget_stale_stop_request(paths)
    assert not paths.stop_request.exists()


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_stop_request_left_from_before_does_not_stop_a_command_line_start(tmp_path, cache,
                                                                           kind):
    paths, _, execute = KINDS[kind](tmp_path)
    jobs.request_stop(paths)  # e.g. a stop honoured by a worker killed before it cleaned up
    assert execute(paths)["state"] == "finished"


def test_a_resume_counts_the_time_worked_not_the_time_the_run_sat_stopped(tmp_path, cache):
    paths, command, execute = _sweep(tmp_path)
    calls = {"n": 0}

    def stop_soon() -> bool:
        calls["n"] += 1
        return calls["n"] > 20

    assert execute(paths, should_stop=stop_soon)["state"] == "stopped"
    worked = elapsed_seconds(read_status(paths))
    assert worked > 0
    # the run then sat stopped for five minutes before Resume was pressed
    status = read_status(paths)
    status["started"] -= 300.0
    status["heartbeat"] -= 300.0
    paths.status.write_text(json.dumps(status))
    assert elapsed_seconds(read_status(paths)) == pytest.approx(worked)

    pressed = time.time()
    jobs.launch(paths, command)
    try:
        queued = read_status(paths)
        assert queued["elapsed_before"] == pytest.approx(worked, abs=1e-3)
        assert elapsed_seconds(queued) == pytest.approx(worked, abs=1e-3)  # still starting
        final = jobs.wait(paths, timeout=120)
    finally:
        jobs.kill(paths)
    assert final["state"] == "finished", paths.log.read_text()[-2000:]
    assert elapsed_seconds(final) < worked + (time.time() - pressed)
    # the first session's time and the second's own: a run that forgot the first passed
    # the bound above
    assert final["elapsed_before"] == pytest.approx(worked, abs=1e-3)
    assert elapsed_seconds(final) == pytest.approx(
        worked + final["heartbeat"] - final["started"], abs=1e-3)


@pytest.mark.parametrize("kind, flags", [
    ("iterative", ["--lr", "0.01"]),
    ("iterative", ["--no-retrain"]),
    ("compare", ["--ratios", "0.5", "0.9"]),
    ("compare", ["--estimate"]),
    ("compare", ["--config", "/nonexistent.json"]),
    ("train-time", ["--runs-root", "elsewhere"]),
])
def test_resume_from_the_command_line_refuses_settings_it_would_ignore(tmp_path, cache, capsys,
                                                                      kind, flags):
    """A resumed sweep ran its saved ratios and `--estimate` ran the whole sweep, with
    exit 0 and no word that the flags were ignored."""
    from explorer_core.cli import main

    paths, command, _ = KINDS[kind](tmp_path)
    before = sorted(p.name for p in paths.root.iterdir())
    assert main([command, "--resume", str(paths.root), *flags]) == 2
    err = capsys.readouterr().err
    assert err == ("error: --resume continues a run with its saved settings; drop "
                   f"{flags[0]}\n")
    assert sorted(p.name for p in paths.root.iterdir()) == before  # nothing ran


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_reader_that_closes_the_pipe_does_not_fail_the_run(tmp_path, cache, kind):
    """`compare … | head -3`: the next progress line raised BrokenPipeError, taken for a
    failed write of the sweep's own files — "failed" after 3 of 20 cells, "free or fix
    the folder". The run now goes on to its end and exits with its own code."""
    import subprocess
    import sys

    paths, command, _ = KINDS[kind](tmp_path)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "explorer_core", command, "--resume",
                             str(paths.root)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(root)})
    proc.stdout.readline()  # `head -1`
    proc.stdout.close()
    assert proc.wait(timeout=300) == 0
    status = read_status(paths)
    assert status["state"] == "finished", status


@pytest.mark.parametrize("kind", list(KINDS))
def test_hand_edited_status_and_events_do_not_crash_a_resume(tmp_path, cache, capsys, kind):
    """`[1, 2]` in status.json, and a non-object line or a stray non-UTF-8 byte in
    events.jsonl, ended every resume with an AttributeError / UnicodeDecodeError
    traceback (rc 1)."""
    from explorer_core.cli import main

    paths, command, _ = KINDS[kind](tmp_path)
    paths.status.write_text("[1, 2]")
    paths.events.write_bytes(b'42\n{"type": "note"}\n\xff\xfe garbage\n')
    # a damaged status reads as a run to resume (it read {}: state "?" on the pages)
    status = read_status(paths)
    assert status["state"] == "interrupted"
    assert status["message"].startswith("its status.json is missing or damaged")
    assert main([command, "--resume", str(paths.root), "--quiet"]) == 0
    assert read_status(paths)["state"] == "finished"
    assert "Traceback" not in capsys.readouterr().err


def test_a_missing_status_reads_as_interrupted_unless_a_worker_holds_the_run(tmp_path):
    """A run whose status.json was deleted listed as state "?" with nothing to say."""
    from explorer_core.rundir import RunLock

    paths, _, _ = _iterative(tmp_path)
    paths.status.unlink()
    status = read_status(paths)
    assert status["state"] == "interrupted"
    assert status["message"] == ("its status.json is missing or damaged; resuming continues "
                                 "from what was saved")
    with RunLock(paths):  # a worker at work writes its status any moment: no guess
        assert read_status(paths) == {}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("status_writable", [True, False])
def test_a_full_disk_is_one_line_naming_the_file_and_the_run_resumes(tmp_path, cache, capsys,
                                                                     monkeypatch, kind,
                                                                     status_writable):
    """Prune and train-time printed tracebacks and 'OSError: [Errno 28] No space left on
    device' with no file named; when status.json could not be written either, it stayed
    'running'. (Compare already said it in one line.)"""
    import errno

    from explorer_core import checkpoint, rundir
    from explorer_core.cli import main

    paths, command, _ = KINDS[kind](tmp_path)
    real_save = checkpoint.save_checkpoint

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(paths.root / "x.safetensors"))

    for module in (experiment, train_time, sweep):
        monkeypatch.setattr(module, "save_checkpoint", full, raising=False)
    if not status_writable:
        real_write = rundir.write_status

        def status_too(p, state, **fields):
            if state == "failed":
                raise OSError(errno.ENOSPC, "No space left on device", str(p.status))
            return real_write(p, state, **fields)

        for module in (rundir, experiment, train_time, sweep):
            monkeypatch.setattr(module, "write_status", status_too, raising=False)
    assert main([command, "--resume", str(paths.root), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert "No space left on device" in err and "x.safetensors" in err and "resume" in err

    monkeypatch.undo()
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))
    assert checkpoint.save_checkpoint is real_save
    assert main([command, "--resume", str(paths.root), "--quiet"]) == 0
    assert read_status(paths)["state"] == "finished"


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_launched_worker_that_cannot_read_its_settings_says_why(tmp_path, cache, kind):
    """With an unreadable config.json the page showed "queued — starting worker", then
    "interrupted", on every Resume; the reason was only in worker.log."""
    paths, _, _ = KINDS[kind](tmp_path)
    paths.config.write_text('{"name": ')  # torn by hand
    jobs.launch(paths, {"iterative": "prune"}.get(kind, kind))
    status = jobs.wait(paths, timeout=120)
    assert status["state"] == "failed", status
    assert str(paths.root) in status["message"] and "config.json" in status["message"]


def test_two_processes_starting_one_run_name_get_one_folder_between_them(tmp_path):
    """The folder was checked, then created: two processes both got it, the second's
    config.json overwrote the first's, and the first ran the second's grid."""
    import subprocess
    import sys

    script = ("import sys, time\n"
              "from explorer_core.errors import ExplorerError\n"
              "from explorer_core.rundir import new_run_dir\n"
              "while time.time() < float(sys.argv[1]): pass\n"
              "try:\n"
              "    new_run_dir('same', sys.argv[2]); print('got it')\n"
              "except ExplorerError as exc:\n"
              "    print('refused:', exc)\n")
    for attempt in range(5):
        root = tmp_path / f"try{attempt}"
        go = time.time() + 3.0  # both past their imports, then both at once
        procs = [subprocess.Popen([sys.executable, "-c", script, repr(go), str(root)],
                                  stdout=subprocess.PIPE, text=True) for _ in range(2)]
        outs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
        assert outs[0] == "got it" and outs[1].startswith("refused: a run named 'same'"), outs


def test_default_run_names_differ_between_processes_in_the_same_second():
    """`run-HHMMSS`: two headless commands started in one second, the second refused."""
    import subprocess
    import sys

    same_second = ("import time; time.strftime = lambda fmt, *a: '090355'\n"
                   "from explorer_core.cli import default_name; print(default_name('run'))")
    names = {subprocess.run([sys.executable, "-c", same_second], capture_output=True,
                            text=True, check=True).stdout.strip() for _ in range(2)}
    assert len(names) == 2 and all(n.startswith("run-090355") for n in names), names


@pytest.mark.parametrize("delay_s", [0.3, 0.8, 1.5, 3.0])
def test_ctrl_c_at_any_moment_of_a_command_is_one_line(tmp_path, delay_s):
    """Interrupted in its first seconds (importing torch, before the CLI's own handling),
    `python -m explorer_core` printed a KeyboardInterrupt traceback."""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "explorer_core", "prune", "--dataset", "digits", "--hidden", "8",
         "--q", "0.5", "--iterations", "2", "--dense-epochs", "200", "--quiet",
         "--runs-root", str(tmp_path / "runs")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**__import__("os").environ, "EXPLORER_CACHE": str(tmp_path / "cache")})
    time.sleep(delay_s)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err
    assert proc.returncode in (130, 3), (proc.returncode, out, err)


@pytest.mark.parametrize("delay_s", [0.3, 2.0])
def test_a_sigterm_outside_a_run_is_one_line_too(tmp_path, delay_s):
    """`kill` of a one-shot command (here an estimate, which times training steps) or of
    a run still starting ended it silently, exit 143 (-15 to the parent: killed by the
    signal), where a Ctrl-C said "interrupted". Inside a run it stops at the next batch."""
    import signal
    import subprocess
    import sys

    env = {**__import__("os").environ, "EXPLORER_CACHE": str(tmp_path / "cache"),
           "EXPLORER_SWEEPS": str(tmp_path / "sweeps")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "explorer_core", "compare", "--models", "resnet18", "vgg16_bn",
         "--datasets", "digits", "--estimate"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(delay_s)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err
    assert (proc.returncode, err.splitlines()[-1:]) == (143, ["terminated"]), (out, err)
    assert out == ""  # no estimate half-said


# A library that swallows a Ctrl-C inside `exec` of a string (dataclasses, typing and
# namedtuple build functions that way while torch imports) sets CPython's "unhandled
# KeyboardInterrupt" flag; the command's own code then decides how it ends.
_SWALLOWING_MAIN = '''
import sys
sys.path.insert(0, {root!r})
import explorer_core.cli as cli
from explorer_core.errors import on_interrupt

real_main = cli.main

def main(argv=None):
    try:
        exec("on_interrupt(2, None)", {{"on_interrupt": on_interrupt}})
    except KeyboardInterrupt:
        pass  # swallowed, as a library importing itself does
    {after}

cli.main = main
import runpy
sys.argv = ["explorer_core"]
runpy.run_module("explorer_core", run_name="__main__", alter_sys=True)
'''


@pytest.mark.parametrize("after, code", [
    ("return real_main(['datasets'])", 130),  # the command went on: still the interrupt
    ("raise ImportError('numpy half-imported')", 130),  # a later error: the interrupt's doing
])
def test_a_ctrl_c_a_library_swallowed_ends_the_command_as_the_interrupt(tmp_path, after, code):
    """Before: the swallowed Ctrl-C's flag killed a finished command with SIGINT (exit −2),
    and an error after it printed a traceback."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "swallow.py"
    script.write_text(_SWALLOWING_MAIN.format(root=str(Path(__file__).resolve().parents[1]),
                                              after=after))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert proc.stderr.strip().splitlines() == ["interrupted"], proc.stderr


def test_a_run_stops_for_a_ctrl_c_a_library_swallowed(tmp_path, monkeypatch, capsys):
    """A swallowed Ctrl-C with no later error let `prune` train to the end and exit 0.
    Its last line says how to resume the run ("interrupted" alone left the user to find
    the folder and the flag)."""
    from explorer_core import cli, errors
    monkeypatch.setattr(cli, "interpreter", lambda: "PY")  # its own test below

    monkeypatch.setattr(errors, "_INTERRUPTED", [False])
    real_create = experiment.create_run

    def create_then_swallow(*args, **kwargs):  # swallowed once the run exists
        paths = real_create(*args, **kwargs)
        errors._INTERRUPTED[0] = True
        return paths

    monkeypatch.setattr(experiment, "create_run", create_then_swallow)
    root = tmp_path / "runs"
    code = cli.main(["prune", "--dataset", "digits", "--hidden", "8", "--q", "0.5",
                     "--iterations", "2", "--dense-epochs", "50", "--quiet",
                     "--runs-root", str(root)])
    assert code == 130
    [status] = [json.loads(p.read_text()) for p in root.rglob("status.json")]
    # said as the Ctrl-C it was: it read "stopped by request", which nobody made
    assert (status["state"], status["message"]) == ("interrupted", jobs.CTRL_C_MESSAGE), status
    [folder] = [p.parent for p in root.rglob("status.json")]
    assert capsys.readouterr().err.splitlines()[-1] == \
        f"interrupted; resume with: PY -m explorer_core prune --resume {folder}"
    monkeypatch.setattr(errors, "_INTERRUPTED", [True])  # another command in this process:
    assert cli.main(["datasets"]) == 130  # not that run's hint
    assert capsys.readouterr().err.splitlines() == ["interrupted"]


@pytest.mark.parametrize("kind, module, make, argv", [
    ("compare", "explorer_core.sweep", "create_sweep",
     ["compare", "--ratios", "0", "0.5", "--types", "neuron", "--criteria", "l1",
      "--mlp-hidden", "8", "--dense-epochs", "50", "--no-estimate", "--quiet"]),
    ("train-time", "explorer_core.train_time", "create_run",
     ["train-time", "--epochs", "40", "--quiet"]),
])
def test_an_interrupted_sweep_or_comparison_says_how_to_resume_it(tmp_path, monkeypatch,
                                                                   capsys, kind, module, make,
                                                                   argv):
    """As `prune` does: "interrupted" alone left the user to find the folder and the flag."""
    import importlib

    from explorer_core import cli, errors
    monkeypatch.setattr(cli, "interpreter", lambda: "PY")  # its own test below

    monkeypatch.setattr(errors, "_INTERRUPTED", [False])
    target = importlib.import_module(module)
    real = getattr(target, make)
    made = []

    def make_then_swallow(*args, **kwargs):
        made.append(real(*args, **kwargs))
        errors._INTERRUPTED[0] = True
        return made[-1]

    monkeypatch.setattr(target, make, make_then_swallow)
    root = tmp_path / "my runs"  # a space: the command must paste back as one argument
    flag = "--sweeps-root" if kind == "compare" else "--runs-root"
    assert cli.main([*argv, flag, str(root)]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"interrupted; resume with: PY -m explorer_core {kind} --resume "
        f"'{made[0].root}'")


def test_a_stopped_run_says_how_to_resume_it(tmp_path, capsys, monkeypatch):
    """Stopped (by its page or a SIGTERM: exit 3), its last line named the folder but not
    the command."""
    from explorer_core import cli
    monkeypatch.setattr(cli, "interpreter", lambda: "PY")  # its own test below

    root = tmp_path / "runs"
    real = experiment.execute
    checks = {"n": 0}

    def stopped_soon(paths, *args, **kwargs):
        def stop() -> bool:
            checks["n"] += 1
            return checks["n"] > 5
        return real(paths, *args, should_stop=stop, **kwargs)

    monkeypatch.setattr(experiment, "execute", stopped_soon)
    code = cli.main(["prune", "--dataset", "digits", "--hidden", "8", "--q", "0.5",
                     "--iterations", "2", "--dense-epochs", "50", "--quiet",
                     "--runs-root", str(root)])
    assert code == 3
    [folder] = [p.parent for p in root.rglob("status.json")]
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("stopped: ") and last.endswith(
        f"({folder}); resume with: PY -m explorer_core prune --resume {folder}"), last


def _finished_run(root) -> Path:
    """A finished three-iteration `prune` run on Digits, made through the CLI."""
    from explorer_core import cli

    assert cli.main(["prune", "--dataset", "digits", "--hidden", "8", "--q", "0.5",
                     "--iterations", "3", "--dense-epochs", "2", "--retrain-epochs", "2",
                     "--quiet", "--runs-root", str(root)]) == 0
    [folder] = [p.parent for p in root.rglob("status.json")]
    return folder


def test_a_rewound_run_is_resumed_without_its_from_iteration(tmp_path, capsys, monkeypatch):
    """Restarted from iteration 1 and stopped after redoing some of it, the hint said
    `--from-iteration 1` again: followed, it deletes what the restart redid and redoes it."""
    from explorer_core import cli
    monkeypatch.setattr(cli, "interpreter", lambda: "PY")  # its own test below

    folder = _finished_run(tmp_path / "runs")
    capsys.readouterr()
    real = experiment.execute
    events = []

    def stopped_after_an_epoch(paths, *args, on_event=None, **kwargs):
        def heard(event):
            events.append(event["type"])
            on_event(event)
        return real(paths, *args, on_event=heard, should_stop=lambda: "epoch" in events,
                    **kwargs)

    monkeypatch.setattr(experiment, "execute", stopped_after_an_epoch)
    assert cli.main(["prune", "--resume", str(folder), "--from-iteration", "1",
                     "--quiet"]) == 3
    assert not (folder / "2").exists()  # rewound: iteration 2 is gone
    [said] = [line for line in capsys.readouterr().out.splitlines()
              if line.startswith("stopped: ")]
    assert said.endswith(f"; resume with: PY -m explorer_core prune --resume {folder}"), said


def test_a_resumed_run_stopped_by_a_swallowed_ctrl_c_says_only_interrupted(tmp_path, capsys,
                                                                           monkeypatch):
    """A resumed `prune` whose Ctrl-C a library swallowed printed "stopped: stopped by
    request", the model to deploy, then "interrupted" (its status: interrupted)."""
    from explorer_core import cli, errors
    monkeypatch.setattr(cli, "interpreter", lambda: "PY")  # its own test below

    folder = _finished_run(tmp_path / "runs")
    capsys.readouterr()
    monkeypatch.setattr(errors, "_INTERRUPTED", [False])
    real = experiment.execute

    def swallowed_ctrl_c(paths, *args, **kwargs):
        errors._INTERRUPTED[0] = True
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(experiment, "execute", swallowed_ctrl_c)
    assert cli.main(["prune", "--resume", str(folder), "--from-iteration", "2",
                     "--quiet"]) == 130
    said = capsys.readouterr()
    assert said.out == ""
    [line] = said.err.splitlines()
    assert line.startswith(f"interrupted; resume with: PY -m explorer_core prune --resume "
                           f"{folder}"), line
    assert json.loads((folder / "status.json").read_text())["state"] == "interrupted"


def test_a_ctrl_c_inside_an_import_lets_it_finish_and_is_remembered(tmp_path, monkeypatch):
    """Raised inside a native module's initialisation (triton's, which the first
    optimiser imports), the interrupt aborted the process with a C++ traceback; outside
    imports it is raised at once, as before."""
    import importlib
    import sys

    from explorer_core import errors

    monkeypatch.setattr(errors, "_INTERRUPTED", [False])
    (tmp_path / "slow_library.py").write_text(
        "import sys\n"
        "from explorer_core.errors import on_interrupt\n"
        "on_interrupt(2, sys._getframe())  # the Ctrl-C lands here\n"
        "FINISHED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("slow_library")
    assert module.FINISHED and errors.interrupted()
    sys.modules.pop("slow_library", None)

    monkeypatch.setattr(errors, "_INTERRUPTED", [False])
    with pytest.raises(KeyboardInterrupt):
        errors.on_interrupt(2, sys._getframe())
    assert errors.interrupted()


def test_a_ctrl_c_before_a_command_began_leaves_no_run_folder(tmp_path, monkeypatch):
    """A Ctrl-C that `on_interrupt` let an import finish is raised before the run's
    folder is made: the command ends as the interrupt, with nothing left behind."""
    from explorer_core import cli, errors

    monkeypatch.setattr(errors, "_INTERRUPTED", [True])
    root = tmp_path / "runs"
    code = cli.main(["prune", "--dataset", "digits", "--hidden", "8", "--q", "0.5",
                     "--iterations", "2", "--dense-epochs", "50", "--quiet",
                     "--runs-root", str(root)])
    assert code == 130 and not list(root.rglob("config.json"))


# Runs `python -m explorer_core ARGS` as a shell does, with one finder put in front of the
# import system: it sends this process a real SIGINT while MODULE is being imported. The
# Ctrl-C lands in that import, at a known moment, with no sleep to tune to the machine.
_CTRL_C_WHILE_IMPORTING = '''
import runpy, signal, sys
sys.path.insert(0, {root!r})


class CtrlCWhileImporting:
    sent = False

    def find_spec(self, name, path=None, target=None):
        if name == {module!r} and not self.sent:
            self.sent = True
            signal.raise_signal(signal.SIGINT)  # handled before this returns: in the import
        return None


sys.meta_path.insert(0, CtrlCWhileImporting())
sys.argv = ["explorer_core", *sys.argv[1:]]
runpy.run_module("explorer_core", run_name="__main__", alter_sys=True)
'''


def _explorer_core_interrupted_while_importing(tmp_path, module: str, args: list[str]):
    """`python -m explorer_core ARGS`, sent a Ctrl-C while it imports `module`."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "ctrl_c_while_importing.py"
    script.write_text(_CTRL_C_WHILE_IMPORTING.format(
        root=str(Path(__file__).resolve().parents[1]), module=module))
    return subprocess.run([sys.executable, str(script), *args], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path, check=False,
                          env={**os.environ, "EXPLORER_CACHE": str(tmp_path / "cache")})


def _one_shot_inputs(tmp_path):
    """A checkpoint, a picture and a thesis-layout run folder for the one-shot commands."""
    import torch
    from PIL import Image

    from explorer_core.checkpoint import save_checkpoint
    from explorer_core.fileio import write_table
    from explorer_core.models import build_model, default_spec
    from explorer_core.rundir import VALIDATION_COLUMNS

    torch.manual_seed(0)
    spec = default_spec("mlp", 1, 8, 10, [32, 16])
    save_checkpoint(build_model(spec), spec, tmp_path / "m", {"dataset": "digits"})
    drawing = Image.new("L", (40, 40), 255)
    drawing.paste(0, (16, 4, 24, 36))
    drawing.save(tmp_path / "d.png")
    run = RunPaths(tmp_path / "out" / "thesis_run")
    write_table(run.validation_results(1), VALIDATION_COLUMNS, [[0.3, 0.4, 91.0, 90.0, 50.0]])


# command → its arguments (OUT: the folder its results go to), and the module it imports
# lazily while it works, which `python -m explorer_core`'s own check came too early for.
_ONE_SHOT = {
    "retention": (["retention", "--out", "OUT"], "explorer_core.charts"),
    "prune-once": (["prune-once", "--checkpoint", "m.safetensors", "--criterion", "l1",
                    "--ratio", "0.5", "--latency-repeats", "2", "--out", "OUT/small"],
                   "torch._dynamo"),  # torch imports it lazily to count or time the models
    "inspect": (["inspect", "--checkpoint", "m.safetensors", "--image", "d.png", "--out", "OUT"],
                "captum.attr"),
    "concatenate": (["concatenate", "OUT/thesis_run"], "explorer_core.charts"),
    "compare --estimate": (["compare", "--estimate", "--sweeps-root", "OUT/sweeps"],
                           "explorer_core.estimate"),
}


@pytest.mark.parametrize("during", ["start-up", "work"])
@pytest.mark.parametrize("command", list(_ONE_SHOT))
def test_a_ctrl_c_while_a_one_shot_command_imports_stops_it_before_it_writes(tmp_path,
                                                                             command, during):
    """A Ctrl-C while the commands imported torch (start-up) was let finish that import
    and checked too early: the command did all its work, wrote every file, printed its
    report, then exited 130. The same held for a Ctrl-C in an import the command makes
    while it works (its charts, captum): both now end it before it writes anything."""
    _one_shot_inputs(tmp_path)
    out = tmp_path / "out"
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    args, lazy_module = _ONE_SHOT[command]
    module = "explorer_core.commands" if during == "start-up" else lazy_module
    proc = _explorer_core_interrupted_while_importing(
        tmp_path, module, [a.replace("OUT", str(out)) for a in args])
    assert (proc.returncode, proc.stderr.splitlines()) == (130, ["interrupted"]), proc.stderr
    assert proc.stdout == ""  # no report of files written, nor the sweep's estimate
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


# Runs `python -m explorer_core ARGS` with a slow step at its exit, as a library adds one:
# an atexit hook, or an object whose teardown takes time. The step says "exiting" on
# stdout and sleeps; the test sends SIGINT when it reads that line, so the Ctrl-C lands
# in the step, with no sleep to tune to the machine.
_SLOW_EXIT = '''
import atexit, os, runpy, sys, time
sys.path.insert(0, {root!r})


def slow_exit_step():
    os.write(1, b"exiting\\n")
    time.sleep(60)


class TornDownSlowly:
    def __del__(self):
        slow_exit_step()


if {moment!r} == "atexit hook":
    atexit.register(slow_exit_step)
else:
    torn_down_slowly = TornDownSlowly()  # at the interpreter's teardown, with __main__
sys.argv = ["explorer_core", *sys.argv[1:]]
runpy.run_module("explorer_core", run_name="__main__", alter_sys=True)
'''


@pytest.mark.parametrize("moment", ["atexit hook", "teardown"])
def test_a_ctrl_c_while_a_finished_command_exits_keeps_its_code_and_prints_nothing(tmp_path,
                                                                                  moment):
    """A Ctrl-C in an atexit hook (torch's, weakref's) printed a KeyboardInterrupt
    traceback; during the interpreter's teardown (0.8 s with torch loaded, SIGINT back at
    its default action) it killed the process: exit −2. The command had finished and
    written its files, so it now ends as it would have: its code, its output, nothing
    more (no teardown runs at all, see `explorer_core.__main__`)."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "slow_exit.py"
    script.write_text(_SLOW_EXIT.format(root=str(Path(__file__).resolve().parents[1]),
                                        moment=moment))
    proc = subprocess.Popen([sys.executable, str(script), "retention", "--no-plots",
                             "--out", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line == "exiting\n":
            proc.send_signal(signal.SIGINT)
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, (proc.returncode, err)
    assert err == "" and lines[0].startswith("wrote ") and (tmp_path / "retain.txt").is_file()


# ------------------------------------------------------------------ the one-writer lock

_HOLD_LOCK = ("import sys, time; from pathlib import Path; "
              "from explorer_core.rundir import RunLock, RunPaths; "
              "lock = RunLock(RunPaths(Path(sys.argv[1]))).__enter__(); "
              "print('locked', flush=True); time.sleep(120)")
_TRY_LOCK = """
import sys
from pathlib import Path
from explorer_core.errors import ExplorerError
from explorer_core.rundir import RunLock, RunPaths
try:
    RunLock(RunPaths(Path(sys.argv[1]))).__enter__()
except ExplorerError as exc:
    print(exc)
    sys.exit(3)
print("got the lock")
"""


def _python(code: str, *args: str, **kwargs):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=root, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def test_deleting_run_lock_by_hand_lets_no_second_writer_in(tmp_path, cache):
    """The lock was a flock on run.lock: deleted by hand, the next process created a new
    run.lock, locked it and wrote into the folder beside the running writer."""
    from explorer_core.rundir import RunLock, is_locked, write_status

    paths, command, _ = _iterative(tmp_path)
    holder = _python(_HOLD_LOCK, str(paths.root))
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert paths.lock.read_text() == str(holder.pid)  # run.lock names the writer
        write_status(paths, "running", pid=holder.pid)
        paths.lock.unlink()  # "a stale lock file"

        contender = _python(_TRY_LOCK, str(paths.root))
        out, _ = contender.communicate(timeout=120)
        assert contender.returncode == 3, out
        assert "already being written by another process" in out
        assert not paths.lock.exists()  # the refused process wrote nothing
        assert is_locked(paths)
        assert read_status(paths)["state"] == "running"  # alive, not 'interrupted'
        with pytest.raises(jobs.ExplorerError, match="already running"):
            jobs.launch(paths, command)
        with pytest.raises(jobs.ExplorerError, match="already being written"):
            RunLock(paths).__enter__()
    finally:
        holder.kill()
        holder.wait()
    assert not is_locked(paths)  # the kernel released the dead writer's lock
    assert read_status(paths)["state"] == "interrupted"
    with RunLock(paths):
        assert is_locked(paths)


def test_a_run_lock_replaced_by_a_folder_still_locks_and_is_one_line_elsewhere(tmp_path):
    """run.lock only names the writer now; the lock needs nothing but the run folder."""
    from explorer_core.rundir import RunLock, RunPaths, is_locked

    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    paths.lock.mkdir()
    with RunLock(paths):
        assert is_locked(paths)
    assert not is_locked(paths)
    with pytest.raises(jobs.ExplorerError, match="no such folder"):
        RunLock(RunPaths(tmp_path / "gone")).__enter__()
    assert not is_locked(RunPaths(tmp_path / "gone"))


# ------------------------------------------------------------------ the wrong kind of folder

_LOADERS = {"iterative": (experiment.load_run_config, experiment.execute,
                          "an iterative pruning run"),
            "compare": (sweep.load_config, sweep.execute, "a Compare sweep"),
            "train-time": (train_time.load_config, train_time.execute,
                           "a train-time pruning run")}


@pytest.mark.parametrize("kind, other", [(k, o) for k in KINDS for o in KINDS if k != o])
def test_resuming_another_kind_of_folder_says_what_it_is(tmp_path, cache, kind, other):
    """`compare --resume` on an iterative run said `unknown sweep setting(s): activation,
    batch_size, …`; `prune --resume` on a sweep said its config.json `has no model spec`."""
    from explorer_core.rundir import RunPaths, SweepPaths, TrainTimePaths

    made, _, _ = KINDS[other](tmp_path)
    before = made.status.read_bytes()
    as_kind = {"iterative": RunPaths, "compare": SweepPaths,
               "train-time": TrainTimePaths}[kind](made.root)
    load, execute, expected = _LOADERS[kind]
    what = _LOADERS[other][2]
    with pytest.raises(jobs.ExplorerError) as caught:
        load(as_kind)
    assert str(caught.value) == f"{made.root} is {what}, not {expected}"
    with pytest.raises(jobs.ExplorerError, match=f"is {what}, not {expected}"):
        execute(as_kind)
    assert made.status.read_bytes() == before  # the other kind's status left as it was


def test_each_kinds_own_settings_are_its_config_fields_and_no_other_kinds():
    """`rundir.KIND_KEYS` tells the kinds apart; a renamed setting must not blur them."""
    import dataclasses

    from explorer_core.rundir import KIND_KEYS

    fields = {"an iterative pruning run": {f.name for f in dataclasses.fields(
                  experiment.RunConfig)} | {"spec"},
              "a Compare sweep": {f.name for f in dataclasses.fields(sweep.SweepConfig)},
              "a train-time pruning run": {f.name for f in dataclasses.fields(
                  train_time.TrainTimeConfig)}}
    assert set(KIND_KEYS) == set(fields)
    for kind, keys in KIND_KEYS.items():
        assert keys <= fields[kind], kind
        others = set().union(*(f for k, f in fields.items() if k != kind))
        assert not keys & others, (kind, keys & others)


# ------------------------------------------------------------------ unreadable JSON

HUGE = "1" * 5000  # past Python's 4 300-digit int conversion limit


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_number_of_thousands_of_digits_is_unreadable_json_not_a_traceback(tmp_path, cache,
                                                                          kind):
    """json.loads raises a plain ValueError for it, which read_json did not catch."""
    from explorer_core.rundir import read_events, read_json, read_record

    paths, _, execute = KINDS[kind](tmp_path)
    load = _LOADERS[kind][0]
    paths.status.write_text('{"state": "running", "pid": ' + HUGE + "}")
    paths.events.write_text('{"type": "note", "n": ' + HUGE + '}\n{"type": "kept"}\n')
    assert read_json(paths.status, "default") == "default"
    assert read_record(paths.status) == {}
    assert read_status(paths)["state"] == "interrupted"  # unreadable: a run to resume
    assert [e["type"] for e in read_events(paths)] == ["kept"]
    assert execute(paths)["state"] == "finished"  # a resume goes on

    config = json.loads(paths.config.read_text())
    paths.config.write_text(json.dumps(config)[:-1] + ', "seed": ' + HUGE + "}")
    with pytest.raises(jobs.ExplorerError, match="no readable config.json"):
        load(paths)
    status = execute(paths)
    assert status["state"] == "failed" and "no readable config.json" in status["message"]


def test_a_checkpoint_sidecar_with_a_number_of_thousands_of_digits_is_one_line(tmp_path):
    """read_spec caught only JSONDecodeError: the int-limit ValueError was a traceback on
    Inspect and in the inspect command."""
    from explorer_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from explorer_core.models import build_model, default_spec

    spec = default_spec("mlp", 1, 8, 10, [8])
    saved = save_checkpoint(build_model(spec), spec, tmp_path / "model")
    sidecar = saved.with_suffix(".json")
    sidecar.write_text(sidecar.read_text().rstrip()[:-1] + ', "n": ' + HUGE + "}")
    with pytest.raises(CheckpointError, match="model.json is not valid JSON") as caught:
        load_checkpoint(saved)
    assert "\n" not in str(caught.value)



def test_a_stop_request_is_seen_at_the_very_next_check(tmp_path):
    """Polling the request file at most every 20 ms let a sweep of three cells on a
    cached baseline run to its end after a Stop pressed while its worker started: the
    whole run fit in one polling window. Every check looks."""
    from explorer_core.rundir import RunPaths

    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    with jobs.worker_session(paths) as stop:
        assert not stop()
        paths.stop_request.write_text("stop")
        assert stop()
        paths.stop_request.unlink()
        assert not stop()


def test_a_ctrl_c_in_a_run_is_said_in_its_status(tmp_path):
    """A Ctrl-C left status.json saying "running" with a dead pid (readers took it for
    interrupted; a script reading the file, for running). The worker now says it, with
    the time it stopped, before it lets go of the run."""
    from explorer_core.rundir import RunPaths, read_record, write_status

    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    with pytest.raises(KeyboardInterrupt):
        with jobs.worker_session(paths):
            write_status(paths, "running", iteration=2, activity="training", pid=os.getpid())
            before = time.time()
            raise KeyboardInterrupt
    status = read_record(paths.status)
    assert (status["state"], status["message"], status["activity"], status["iteration"]) == \
        ("interrupted", jobs.CTRL_C_MESSAGE, "", 2)
    assert status["heartbeat"] >= before
    assert read_status(paths)["state"] == "interrupted"


def test_a_worker_that_crashes_in_native_code_leaves_its_stack_in_the_log(tmp_path, cache):
    """A page-launched worker once died after its last epoch with no trace: its log was
    a file, so Python had buffered the last output, no fault handler was on, and the
    page showed "interrupted" and nothing else. A segfault now writes every thread's
    Python stack to worker.log, and the status says what happened."""
    cfg = experiment.RunConfig(name="crash", dataset="digits", hidden=[16, 8],
                               schedule={"q": 0.5, "iterations": 3}, criterion="l1",
                               dense_epochs=500, retrain_epochs=1, seed=0)
    paths = experiment.create_run(cfg, tmp_path / "runs")
    paths.log.write_text("an earlier session's last words\n")
    cores = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, cores[1]))  # no core file of torch's size
    try:
        pid = jobs.launch(paths, "prune")
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, cores)
    try:
        deadline = time.time() + 120
        while not any(e.get("type") == "epoch" for e in read_events(paths)):
            assert time.time() < deadline, log_tail(paths)
            time.sleep(0.05)
        os.kill(pid, signal.SIGSEGV)
        while read_status(paths)["state"] != "interrupted":
            assert time.time() < deadline, read_status(paths)
            time.sleep(0.05)
    finally:
        jobs.kill(paths)
    assert read_status(paths)["message"] == INTERRUPTED_MESSAGE
    tail = log_tail(paths)
    assert "Fatal Python error: Segmentation fault" in tail, tail
    assert 'File "' in tail and "explorer_core" in tail, tail  # where it was
    assert "earlier session" not in tail and "worker started" not in tail, tail


def test_log_tail_shows_what_a_terminal_would_of_a_long_log(tmp_path):
    """The end of the file only, a progress bar's redraws (\\r) as their last state, a
    line cut by the read left out, bytes that are not UTF-8 replaced."""
    paths = RunPaths(tmp_path)
    assert log_tail(paths) == ""  # no log yet
    bar = "".join(f"\r{i} %" for i in range(101))
    body = "".join(f"line {i}\n" for i in range(50_000)) + bar + "\n\xff-byte\nlast\n"
    paths.log.write_bytes(body.encode("latin-1"))
    lines = log_tail(paths, max_lines=4).splitlines()
    assert lines == ["line 49999", "100 %", "\ufffd-byte", "last"], lines
    short = RunPaths(tmp_path / "short")
    short.root.mkdir()
    short.log.write_bytes(b"only line")
    assert log_tail(short) == "only line"
    cut = log_tail(paths, max_lines=10_000, max_bytes=len(bar) + 60).splitlines()
    assert cut[-1] == "last" and all(line.startswith(("line ", "100", "\ufffd", "last"))
                                     for line in cut)
    assert cut[0] == f"line {int(cut[1].split()[1]) - 1}"  # whole lines only

    def tail_of(data: bytes, **kw) -> str:
        short.log.write_bytes(data)
        return log_tail(short, **kw)

    assert tail_of(b"epoch 3/5\r\nKilled\r\n") == "epoch 3/5\nKilled"  # Windows line ends
    redraws = "".join(f"\rdownloading {i} %" for i in range(10_000)).encode()
    assert tail_of(redraws, max_bytes=1_000) == "downloading 9999 %"  # no \n in the window
    long = tail_of(b"ok\n" + b"x" * 6_000 + b"\n")  # the fault handler's module list
    assert long.startswith("ok\nxxx") and long.endswith("… (6000 characters)") and len(long) < 400
    assert tail_of(b"old run\n--- worker started 2026-12-06T01:00:00+00:00 (prune) ---\n"
                   b"new run\n") == "new run"  # an earlier worker's output is not this one's
    assert tail_of(b"old run\n--- worker started 2026-12-06T01:00:00+00:00 (prune) ---\n") == ""


def test_a_run_that_ends_while_its_status_is_read_is_seen_as_it_ended(tmp_path, monkeypatch):
    """read_status read "running", then found the lock free because the writer had just
    written "finished" and exited: it reported the run interrupted (a flaky "interrupted"
    from jobs.wait in CI, a page flashing it for a poll). The writer's last status is
    written before it lets go of the lock, so it is read again."""
    from explorer_core import rundir

    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    rundir.write_status(paths, "running", pid=os.getpid(), message="")

    def writer_ends_now(_paths) -> bool:  # the moment between the read and the lock test
        rundir.write_status(paths, "finished", message="schedule complete")
        return False

    monkeypatch.setattr(rundir, "is_locked", writer_ends_now)
    status = read_status(paths)
    assert status["state"] == "finished" and status["message"] == "schedule complete"

    rundir.write_status(paths, "running", message="")  # a writer that died mid-run
    monkeypatch.setattr(rundir, "is_locked", lambda _paths: False)
    assert read_status(paths)["state"] == "interrupted"


def _is_zombie(pid: int) -> bool:
    """True while `pid` has ended but no one collected its exit status (state Z)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:  # reaped: gone from the process table
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_a_finished_worker_is_reaped_not_left_defunct(tmp_path, cache):
    """`launch` never waited on its Popen: each finished or killed worker stayed a
    `<defunct>` child of the Streamlit server until the server exited."""
    paths, command, _ = _sweep(tmp_path)
    pid = jobs.launch(paths, command)
    try:
        assert jobs.wait(paths, timeout=120)["state"] == "finished", log_tail(paths)
    finally:
        jobs.kill(paths)
    deadline = time.time() + 30
    while Path(f"/proc/{pid}").exists() and not _is_zombie(pid):  # still exiting
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # the reaper's wait() returns as soon as the child ends
    assert not _is_zombie(pid)
    assert not Path(f"/proc/{pid}").exists()


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_worker_killed_while_starting_reads_as_interrupted_at_once(tmp_path, cache, kind):
    """QA: a Compare worker killed while its run was still "queued" showed "queued —
    starting worker" and a Stop button for ~30 s before "interrupted" and Resume. The
    queued status names the worker `launch` started; once that process is gone, the run
    reads as interrupted at the next look."""
    paths, command, _ = KINDS[kind](tmp_path)
    pid = jobs.launch(paths, command)
    os.kill(pid, signal.SIGKILL)  # seconds before it would take the run (its imports)
    deadline = time.time() + 10  # well inside the 30 s the queued status stood for
    while read_status(paths)["state"] == "queued":
        assert time.time() < deadline, "a dead worker's run still reads as queued"
        time.sleep(0.05)
    status = read_status(paths)
    assert status["state"] == "interrupted" and status["message"] == INTERRUPTED_MESSAGE


PAST_GRACE_S = 35.0  # past the 30 s a queued status stands for without a worker to check


def _queued_for(paths: RunPaths, pid: int, pid_start, written_ago: float = 0.0) -> None:
    """A queued status as `jobs.launch` writes it, `written_ago` seconds ago."""
    status = json.loads(paths.status.read_text())
    status.update(state="queued", message="starting worker", pid=pid, pid_start=pid_start,
                  heartbeat=time.time() - written_ago)
    paths.status.write_text(json.dumps(status))


def test_a_queued_status_is_settled_by_whether_its_worker_runs(tmp_path):
    """Dead (gone, or a zombie its parent has not reaped) reads interrupted at once; alive
    stays queued however long it takes to start; a pid now naming another process (its
    start time differs) is no sign of life. Without a recorded worker, the grace (30 s)
    stands."""
    import subprocess
    import sys

    paths, _, _ = _iterative(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # its start time, as `launch` records it (/proc/<pid>/stat, field 22)
        started = int(Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        _queued_for(paths, child.pid, started, written_ago=PAST_GRACE_S)
        assert read_status(paths)["state"] == "queued"  # alive: still starting
        _queued_for(paths, child.pid, started + 1)  # the pid reused by a later process
        assert read_status(paths)["state"] == "interrupted"
        child.kill()
        deadline = time.time() + 10
        while not _is_zombie(child.pid):  # dead, not yet reaped
            assert time.time() < deadline
            time.sleep(0.02)
        _queued_for(paths, child.pid, started)
        assert read_status(paths)["state"] == "interrupted"
    finally:
        child.kill()
        child.wait()
    _queued_for(paths, child.pid, started)  # reaped: no such process
    assert read_status(paths)["state"] == "interrupted"
    # no worker recorded (a run just created, an older version's launch): the grace
    _queued_for(paths, None, None)
    assert read_status(paths)["state"] == "queued"
    _queued_for(paths, None, None, written_ago=PAST_GRACE_S)
    assert read_status(paths)["state"] == "interrupted"


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_real_full_disk_names_the_file_it_refused(tmp_path, cache, capsys, monkeypatch, kind):
    """A disk that fills up refuses the write of a file's bytes, not its opening: the
    kernel's ENOSPC comes from `os.write` on a descriptor and names no file, so the run
    failed with "(No space left on device: None)" (a 3 MB tmpfs, every kind). The
    temporary sibling of each checkpoint is /dev/full here: a real ENOSPC on write."""
    from explorer_core import fileio
    from explorer_core.cli import main

    paths, command, _ = KINDS[kind](tmp_path)
    real_open = fileio._open_temp_sibling

    def full_for_checkpoints(target):
        if not target.endswith(".safetensors"):
            return real_open(target)
        return os.open("/dev/full", os.O_WRONLY), target + ".never-made.tmp"

    monkeypatch.setattr(fileio, "_open_temp_sibling", full_for_checkpoints)
    assert main([command, "--resume", str(paths.root), "--quiet"]) == 2
    err = capsys.readouterr().err  # (and a warning that the cache took no baseline)
    [line] = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "Traceback" not in err and "No space left on device" in line, err
    assert "None" not in line and ".safetensors" in line, err
    status = read_status(paths)
    assert status["state"] == "failed" and ".safetensors" in status["message"]

    monkeypatch.undo()
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))
    assert main([command, "--resume", str(paths.root), "--quiet"]) == 0
    assert read_status(paths)["state"] == "finished"


def test_a_line_refused_by_a_full_disk_names_the_file_appended_to(tmp_path):
    """events.jsonl and a sweep's results.csv are appended to: the ENOSPC of a full disk
    comes on the flush, and named no file."""
    from explorer_core.rundir import SweepPaths, append_event
    from explorer_core.sweep_results import append_result

    paths = SweepPaths(tmp_path)
    for appended in (paths.events, paths.results_csv):
        appended.symlink_to("/dev/full")
    with pytest.raises(OSError) as caught:
        append_event(paths, {"type": "epoch"})
    assert caught.value.filename == str(paths.events)
    with pytest.raises(OSError) as caught:
        append_result(paths, {"cell_id": "c"})
    assert caught.value.filename == str(paths.results_csv)


def test_the_resume_hint_names_the_interpreter_that_ran_the_command(tmp_path, monkeypatch):
    """It said `python3` whatever ran it: a user of a venv not activated (or of
    `python3.11`) pasted it into an interpreter without our packages."""
    from explorer_core import cli

    real = Path(sys.executable).resolve()
    venv = tmp_path / "venv bin"
    venv.mkdir()
    (venv / "python3").symlink_to(real)
    monkeypatch.setattr(sys, "executable", str(venv / "python3"))
    monkeypatch.setenv("PATH", str(venv))  # activated: its python3 is this interpreter
    assert cli.interpreter() == "python3"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # not activated: the whole path
    assert cli.interpreter() == f"'{venv / 'python3'}'"
    other = tmp_path / "other"
    other.mkdir()
    (other / "python3").symlink_to("/bin/sh")  # another program of that name on PATH
    monkeypatch.setenv("PATH", str(other))
    assert cli.interpreter() == f"'{venv / 'python3'}'"
    base = tmp_path / "base"  # the base interpreter the venv links to: without the
    base.mkdir()  # venv's packages, though it is the same file
    (base / "python3").symlink_to(real)
    monkeypatch.setenv("PATH", str(base))
    assert cli.interpreter() == f"'{venv / 'python3'}'"


def test_a_finished_run_resumed_says_there_is_nothing_to_resume(tmp_path, capsys):
    """It printed "finished: schedule complete" again, as if it had run; and a restart
    past the schedule's last iteration was offered ("restart at 3 or earlier"), which did
    nothing."""
    from explorer_core import cli

    folder = _finished_run(tmp_path / "runs")
    capsys.readouterr()
    before = (folder / "status.json").read_text()
    assert cli.main(["prune", "--resume", str(folder), "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"already finished: schedule complete ({folder}); nothing to resume "
                      "(--from-iteration K redoes it from iteration K)"), out
    assert out[1].startswith("deploy: ")
    assert (folder / "status.json").read_text() == before  # not run again
    assert cli.main(["prune", "--resume", str(folder), "--from-iteration", "3", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: cannot restart at iteration 3: iterations 0–2 are complete, so restart at 2 "
        "or earlier")
