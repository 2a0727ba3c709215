"""Iterative pruning runs on Digits: layout, resume after SIGKILL, one writer, stop."""
from __future__ import annotations

import json
import os
import signal
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from explorer_core import jobs
from explorer_core.errors import ExplorerError
from explorer_core.experiment import RunConfig, create_run, execute, load_run_config, plan
from explorer_core.fileio import read_table
from explorer_core.results import concatenate, iteration_rows, recommend, run_progress
from explorer_core.rundir import RunLock, RunPaths, read_events, read_status, write_status
from explorer_core.schedule import read_retain

ROOT = Path(__file__).resolve().parent.parent


def small_config(name: str, **over) -> RunConfig:
    base = dict(name=name, dataset="digits", hidden=[32, 16],
                schedule={"q": 0.6, "iterations": 5, "kind": "geometric"},
                criterion="l1", dense_epochs=3, retrain_epochs=1, batch_size=32, seed=3)
    base.update(over)
    return RunConfig(**base)


@pytest.fixture
def roots(tmp_path, monkeypatch):
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    monkeypatch.setenv("EXPLORER_RUNS", str(runs))
    monkeypatch.setenv("EXPLORER_CACHE", str(cache))
    return runs, cache


def test_full_run_writes_the_thesis_layout(roots):
    runs, cache = roots
    cfg = small_config("full")
    paths = create_run(cfg, runs)
    status = execute(paths, cache_root=cache)
    assert status["state"] == "finished", status
    table = plan(cfg)
    # schedule for 32/16 at q=0.6: 32·0.6^t → 32, 19, 12, 7, 4; 16·0.6^t → 16, 10, 6, 3, 2
    assert table.widths == [(32, 16), (19, 10), (12, 6), (7, 3), (4, 2)]
    assert read_retain(paths.retain).widths == table.widths
    for i in range(len(table)):
        d = paths.iteration_dir(i)
        assert (d / "best_model.safetensors").is_file() and (d / "best_model.json").is_file()
        cols, rows = read_table(d / "train_results.txt")
        assert cols == ["TrainLoss", "TrainAccuracy", "TestLoss", "TestAccuracy"]
        assert len(rows) == (3 if i == 0 else 1)
        if i >= 1:
            cols, rows = read_table(d / "validation_results.txt")
            assert cols == ["Train_Loss", "Test_Loss", "Train_Accuracy", "Test_Accuracy",
                            "PercentageRetain"]
            assert rows[0][4] == pytest.approx(100 * sum(table.widths[i]) / 48, rel=1e-5)  # %g: 6 digits
        meta = json.loads((d / "best_model.json").read_text())
        assert meta["spec"]["hidden"] == list(table.widths[i])
    cols, rows = read_table(paths.validations)
    assert len(rows) == len(table) and rows[0][4] == 100
    assert paths.accuracies_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths.losses_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the dense model on digits is far above chance (10 %)
    assert rows[0][3] > 50
    config = json.loads(paths.config.read_text())
    assert config["criterion"] == "l1" and config["spec"]["arch"] == "mlp"
    kinds = {e["type"] for e in read_events(paths)}
    assert {"epoch", "pruned", "iteration"} <= kinds


def test_cached_baseline_is_reused_and_identical(roots):
    runs, cache = roots
    a = create_run(small_config("a", schedule={"q": 0.5, "iterations": 2}), runs)
    b = create_run(small_config("b", schedule={"q": 0.5, "iterations": 2}), runs)
    execute(a, cache_root=cache)
    execute(b, cache_root=cache)
    meta_a = json.loads(a.best_model_json(0).read_text())
    meta_b = json.loads(b.best_model_json(0).read_text())
    assert meta_a["from_cache"] is False and meta_b["from_cache"] is True
    assert meta_a["metrics"] == meta_b["metrics"]
    assert read_table(a.validations) == read_table(b.validations)


def test_second_writer_is_refused(roots):
    runs, cache = roots
    paths = create_run(small_config("locked"), runs)
    with RunLock(paths):
        with pytest.raises(ExplorerError, match="already being written"):
            execute(paths, cache_root=cache)
        with pytest.raises(ExplorerError, match="already running"):
            jobs.launch(paths)


def test_stop_request_then_resume(roots):
    runs, cache = roots
    paths = create_run(small_config("stop"), runs)
    calls = {"n": 0}

    def stop_after_some_batches() -> bool:
        calls["n"] += 1
        return calls["n"] > 150  # dense training takes 3 epochs × 41 batches = 123 checks

    status = execute(paths, should_stop=stop_after_some_batches, cache_root=cache)
    assert status["state"] == "stopped"
    done = paths.completed_iterations()
    assert 0 in done and len(done) < len(plan(small_config("x")))
    assert status["message"] == (f"stopped by request; resume continues after iteration "
                                 f"{max(done)}, the last completed")
    status = execute(paths, cache_root=cache)
    assert status["state"] == "finished"
    assert paths.completed_iterations() == list(range(len(plan(small_config("x")))))


def test_a_stopped_runs_bar_counts_only_the_epochs_a_resume_keeps(roots):
    """Stopped after the first of iteration 1's three epochs: the bar said 4 epochs done
    (3 dense + 1) until Resume, which trains iteration 1 again from its start and said 3."""
    runs, cache = roots
    paths = create_run(small_config("bar-stop", retrain_epochs=3), runs)

    def after_an_epoch_of_iteration_1() -> bool:
        return any(e.get("type") == "epoch" and e.get("iteration") == 1
                   for e in read_events(paths))

    status = execute(paths, should_stop=after_an_epoch_of_iteration_1, cache_root=cache)
    assert status["state"] == "stopped" and paths.completed_iterations() == [0]
    epochs = [e for e in read_events(paths) if e.get("type") == "epoch"]
    assert sorted({e["iteration"] for e in epochs}) == [0, 1]  # iteration 1 cut short
    assert run_progress(paths).epochs_done == 3  # the dense model's, which a resume keeps
    # just after Resume, queued, the worker has not yet dropped iteration 1's epoch: the
    # bar went 3 → 4 (queued) → 3 (running)
    write_status(paths, "queued", pid=os.getpid(), message="starting worker")
    assert run_progress(paths).epochs_done == 3
    status = execute(paths, cache_root=cache)
    assert status["state"] == "finished"
    prog = run_progress(paths)
    assert prog.epochs_done == prog.total_epochs == sum(
        1 for e in read_events(paths) if e.get("type") == "epoch")


def test_a_run_stopped_before_its_dense_model_does_not_promise_a_completed_iteration(roots):
    """It said "resume continues from the last completed iteration" with none done."""
    runs, cache = roots
    paths = create_run(small_config("early"), runs)
    status = execute(paths, should_stop=lambda: True, cache_root=cache)
    assert status["state"] == "stopped" and paths.completed_iterations() == []
    assert status["message"] == ("stopped by request before the dense model was done; "
                                 "resume starts it again")


def test_a_resumed_prune_bar_starts_at_the_epochs_it_kept(roots):
    """Iterations 0 and 1 kept (3 + 1 of 5 epochs): the resumed command's bar restarted
    at 0 % and ended at 20 %. It goes on from 80 % and ends at 100 %."""
    from explorer_core.experiment import total_epochs

    from conftest import bar_at_a_terminal

    runs, cache = roots
    cfg = small_config("bar", schedule={"q": 0.6, "iterations": 3, "kind": "geometric"})
    assert (len(plan(cfg)), total_epochs(cfg, len(plan(cfg)))) == (3, 5)
    paths = create_run(cfg, runs)
    seen = {"iterations": 0}

    def count(event: dict) -> None:
        seen["iterations"] += event["type"] == "iteration"

    assert execute(paths, should_stop=lambda: seen["iterations"] >= 2, on_event=count,
                   cache_root=cache)["state"] == "stopped"
    assert paths.completed_iterations() == [0, 1]
    code, frames = bar_at_a_terminal(["prune", "--resume", str(paths.root)])
    assert code == 0
    assert frames[0].startswith("[" + "#" * 24 + "-" * 6 + "]  80.0 %  it 2")  # pruned
    assert frames[-1].startswith("[" + "#" * 30 + "] 100.0 %  it 2  test acc")


def test_restart_from_iteration_redoes_later_iterations(roots):
    runs, cache = roots
    paths = create_run(small_config("redo"), runs)
    execute(paths, cache_root=cache)
    first = read_table(paths.validations)
    status = execute(paths, from_iteration=2, cache_root=cache)
    assert status["state"] == "finished"
    assert read_table(paths.validations) == first  # same seeds → same numbers
    with pytest.raises(ExplorerError, match="cannot restart"):
        execute(paths, from_iteration=9, cache_root=cache)


def test_a_restart_reads_the_checkpoint_it_goes_on_from_once(roots, monkeypatch):
    """The worker checks that the checkpoint it prunes from loads before it removes
    anything, then read it again to prune it (a ResNet-18's 45 MB, twice): the model the
    check read is the one pruned, and the numbers are those of an uninterrupted run."""
    from explorer_core import experiment

    runs, cache = roots
    paths = create_run(small_config("read-once"), runs)
    execute(paths, cache_root=cache)
    first = read_table(paths.validations)
    reads: list[str] = []
    real = experiment.load_checkpoint

    def counted(path, *a, **k):
        reads.append(Path(path))
        return real(path, *a, **k)

    monkeypatch.setattr(experiment, "load_checkpoint", counted)
    assert execute(paths, from_iteration=2, cache_root=cache)["state"] == "finished"
    assert reads == [paths.best_model(i) for i in (1, 2, 3)], reads  # each read once
    assert read_table(paths.validations) == first


def test_negative_restart_iteration_says_it_must_be_0_or_more(roots, capsys):
    from explorer_core.cli import main
    from explorer_core.experiment import resume_point

    runs, _ = roots
    paths = create_run(small_config("neg"), runs)
    with pytest.raises(ExplorerError, match="0 or more") as info:
        resume_point(paths, -1)
    assert "earlier" not in str(info.value)
    code = main(["prune", "--resume", str(paths.root), "--from-iteration", "-1", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.strip() == "error: --from-iteration must be ≥ 0, got -1"


def test_max_drop_stops_the_run(roots):
    runs, cache = roots
    paths = create_run(small_config("drop", max_drop=0.0, retrain=False,
                                    schedule={"q": 0.3, "iterations": 6}), runs)
    status = execute(paths, cache_root=cache)
    assert status["state"] == "finished" and "points below the dense" in status["message"]
    assert len(paths.completed_iterations()) < len(plan(small_config("x", schedule={"q": 0.3, "iterations": 6})))


def test_a_minimum_neuron_rule_that_cuts_every_step_is_refused_before_any_folder(roots):
    """1 000 typed for the minimum of a 32-16 MLP trained the dense model alone and said
    "schedule complete"."""
    runs, _ = roots
    with pytest.raises(ExplorerError) as info:
        create_run(small_config("floor", min_neurons=1000), runs)
    assert str(info.value) == ("stopping at 1,000 hidden neurons leaves nothing to prune: the "
                               "dense model has 48 and the first pruning step keeps 29; set "
                               "the minimum to 29 or fewer")
    assert not runs.exists() or not any(runs.rglob("config.json"))


def test_a_run_cut_short_by_its_minimum_neuron_rule_says_so(roots):
    runs, cache = roots
    # 32-16 at q = 0.6 keeps 48, 29, 18, 10, 6 hidden neurons: 10 < 15 ends it after 2
    paths = create_run(small_config("cut", min_neurons=15), runs)
    status = execute(paths, cache_root=cache)
    assert status["state"] == "finished"
    assert status["message"] == ("stopped after iteration 2: the next step would keep 10 "
                                 "hidden neurons, fewer than the minimum of 15")
    assert paths.completed_iterations() == [0, 1, 2]


def test_resuming_a_run_ended_by_its_stopping_rule_does_not_go_past_the_rule(roots):
    """Each resume trained one more iteration past the max-drop rule (and the page
    offered Resume beside "finished"); redoing from an earlier iteration still works."""
    runs, cache = roots
    cfg = small_config("drop-resume", max_drop=0.0, retrain=False,
                       schedule={"q": 0.3, "iterations": 6})
    paths = create_run(cfg, runs)
    first = execute(paths, cache_root=cache)
    assert first["state"] == "finished" and "points below the dense" in first["message"]
    done = paths.completed_iterations()
    assert 1 < len(done) + 1 <= len(plan(cfg))
    rows = read_table(paths.validations)
    again = execute(paths, cache_root=cache)
    assert again["state"] == "finished" and again["message"] == first["message"]
    assert paths.completed_iterations() == done and read_table(paths.validations) == rows
    redo = execute(paths, from_iteration=1, cache_root=cache)  # seeded: the same numbers
    assert redo["message"] == first["message"] and paths.completed_iterations() == done


def test_a_restart_removes_the_concatenated_results_of_the_iterations_it_redoes(roots):
    """Killed during a restart, the run kept validations.txt and the PNGs of all the
    old iterations beside the fewer iteration folders left, and offered them for download."""
    runs, cache = roots
    paths = create_run(small_config("stale"), runs)
    assert execute(paths, cache_root=cache)["state"] == "finished"
    assert paths.validations.is_file() and paths.accuracies_png.is_file()
    calls = {"n": 0}

    def stop_at_once() -> bool:
        calls["n"] += 1
        return calls["n"] > 1

    status = execute(paths, from_iteration=2, should_stop=stop_at_once, cache_root=cache)
    assert status["state"] == "stopped" and paths.completed_iterations() == [0, 1]
    assert not paths.validations.exists()
    assert not paths.accuracies_png.exists() and not paths.losses_png.exists()


def test_a_run_folder_whose_config_has_no_spec_is_one_clear_error(tmp_path, capsys):
    from explorer_core.cli import main

    folder = tmp_path / "hand-made"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"dataset": "digits", "hidden": [32]}))
    assert main(["prune", "--resume", str(folder), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no model spec" in err


@pytest.mark.parametrize("options, says", [
    ({"per_clas": True}, "unknown criterion option 'per_clas'"),
    ({"eps": -0.1}, "eps"),
    ({"eps": "small"}, "eps"),
    ({"per_class": "yes"}, "per_class must be true or false"),
    ({"max_samples": 0}, "max_samples must be a whole number ≥ 1"),
    ({"kmeans_k": 2.5}, "kmeans_k"),
])
def test_bad_criterion_options_are_refused_before_any_training(roots, tmp_path, capsys, options,
                                                               says):
    """A misspelt key trained the dense model, then failed at iteration 1 with a
    TypeError traceback and a failed run."""
    from explorer_core.cli import main

    runs, _ = roots
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"name": "opts", "dataset": "digits", "hidden": [16],
                                  "criterion": "interval_adjoint",
                                  "criterion_options": options}))
    assert main(["prune", "--config", str(config), "--runs-root", str(runs), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err and "Traceback" not in err
    assert not list(runs.glob("*/*"))  # refused before a run folder existed


@pytest.mark.parametrize("setting, says", [
    ({"val_fraction": 5}, "validation fraction must be in [0, 1), got 5"),
    ({"val_fraction": True}, "run setting val_fraction must be a number, got True"),
    ({"activation": "banana"}, "unknown activation 'banana'; choose one of relu, sigmoid, tanh"),
])
def test_a_bad_split_or_activation_is_refused_before_a_run_folder_exists(roots, tmp_path, capsys,
                                                                        setting, says):
    """Both were found only once the worker loaded the data or built the model: the
    folder was made, and left "failed"."""
    from explorer_core.cli import main

    runs, _ = roots
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"name": "bad", "dataset": "digits", "hidden": [16], **setting}))
    assert main(["prune", "--config", str(config), "--runs-root", str(runs), "--quiet"]) == 2
    assert capsys.readouterr().err == f"error: {says}\n"
    assert not runs.exists() or not list(runs.rglob("config.json"))


def test_valid_criterion_options_are_accepted_and_kept(roots):
    paths = create_run(small_config("eps-boxes", criterion="interval_adjoint",
                                    schedule={"q": 0.5, "iterations": 2, "kind": "geometric"},
                                    criterion_options={"eps": 0.05, "per_class": True}))
    assert execute(paths)["state"] == "finished"
    assert json.loads(paths.config.read_text())["criterion_options"] == {"eps": 0.05,
                                                                        "per_class": True}


@pytest.mark.parametrize("damage", ["truncated", "no train_loss", "a list"])
def test_a_damaged_best_model_json_is_redone_not_counted_as_done(roots, tmp_path, damage):
    """A torn best_model.json of the last iteration made every resume fail; of a middle
    one, validations.txt lost its row without a word; a `metrics` without train_loss
    ended resume and concatenate in a KeyError traceback."""
    import shutil

    paths = create_run(small_config("sidecars", schedule={"q": 0.5, "iterations": 4}))
    assert execute(paths)["state"] == "finished"
    want = paths.validations.read_text()
    copy = RunPaths(shutil.copytree(paths.root, tmp_path / "copy"))
    sidecar = copy.best_model_json(2)
    meta = json.loads(sidecar.read_text())
    if damage == "truncated":
        sidecar.write_text(sidecar.read_text()[:50])
    elif damage == "no train_loss":
        del meta["metrics"]["train_loss"]
        sidecar.write_text(json.dumps(meta))
    else:
        sidecar.write_text("[1, 2]")
    assert copy.completed_iterations() == [0, 1, 3]
    assert execute(copy)["state"] == "finished"  # redone from iteration 2
    assert copy.completed_iterations() == [0, 1, 2, 3]
    assert copy.validations.read_text() == want


def _stopped_after_iteration(paths: RunPaths, last: int, cache) -> None:
    status = execute(paths, cache_root=cache,
                     should_stop=lambda: len(paths.completed_iterations()) > last)
    assert status["state"] == "stopped" and paths.completed_iterations() == list(range(last + 1))


@pytest.mark.parametrize("edit", ["dataset", "dataset and its spec"])
def test_a_dataset_edited_after_the_run_began_is_refused_before_anything_runs(roots, edit):
    """digits → fashion_mnist in config.json after iteration 2: the resume trained on and
    failed deep inside with 'mat1 and mat2 shapes cannot be multiplied'. Edited together
    with the spec in config.json, the completed iterations' best_model.json still say
    what the run was."""
    runs, cache = roots
    paths = create_run(small_config("edited"), runs)
    _stopped_after_iteration(paths, 2, cache)
    original = paths.config.read_text()
    config = json.loads(original)
    config["dataset"] = "fashion_mnist"
    if edit == "dataset and its spec":
        config["spec"].update({"in": 784, "input_shape": [1, 28, 28]})
    paths.config.write_text(json.dumps(config))
    def files() -> dict:  # all but status.json (which says why) and run.lock (the pid)
        return {p: p.read_bytes() for p in paths.root.rglob("*")
                if p.is_file() and p not in (paths.status, paths.lock)}

    before = files()

    with pytest.raises(ExplorerError) as caught:
        load_run_config(paths)
    message = str(caught.value)
    assert "\n" not in message and "dataset" in message and "fashion_mnist" in message
    assert ("config.json's model spec records in 64" if edit == "dataset" else
            "iteration 0's best_model.json records in 64") in message
    status = execute(paths, cache_root=cache)
    assert status["state"] == "failed" and status["message"] == message
    assert "shapes cannot be multiplied" not in status["message"]
    # nothing ran: no iteration redone or added, no event logged
    assert files() == before
    assert paths.completed_iterations() == [0, 1, 2]

    paths.config.write_text(original)  # put back: the run goes on
    assert execute(paths, cache_root=cache)["state"] == "finished"


def test_specs_from_an_older_version_without_input_shape_still_resume(roots):
    """Only a recorded key that disagrees counts: a spec that lacks one (an older
    version's sidecar had no input_shape) is no reason to refuse."""
    runs, cache = roots
    paths = create_run(small_config("older"), runs)
    _stopped_after_iteration(paths, 2, cache)
    for sidecar in [paths.config] + [paths.best_model_json(i) for i in range(3)]:
        record = json.loads(sidecar.read_text())
        del record["spec"]["input_shape"], record["spec"]["activation"]
        sidecar.write_text(json.dumps(record))
    assert load_run_config(paths).dataset == "digits"
    assert execute(paths, cache_root=cache)["state"] == "finished"
    assert paths.completed_iterations() == list(range(len(plan(small_config("older")))))


def test_an_iteration_event_a_kill_lost_is_logged_again_on_resume(roots):
    """Killed between saving iteration 2 and logging it: after the resume all iterations
    were on disk, but the page's per-iteration charts never showed iteration 2."""
    from explorer_core.rundir import append_event

    paths = create_run(small_config("lost-event", schedule={"q": 0.5, "iterations": 4}))
    assert execute(paths)["state"] == "finished"
    want = [e for e in read_events(paths) if e["type"] == "iteration"]
    kept = [e for e in read_events(paths) if not (e["type"] == "iteration"
                                                  and e["iteration"] in (1, 2))]
    paths.events.write_text("")
    for e in kept:
        append_event(paths, {k: v for k, v in e.items() if k != "time"})
    assert execute(paths)["state"] == "finished"  # nothing left to run: a resume
    got = run_progress(paths).iterations
    strip = lambda es: [{k: v for k, v in e.items() if k != "time"} for e in es]  # noqa: E731
    assert strip(got) == strip(want)


def test_cli_interval_adjoint_options(roots, capsys):
    from explorer_core.cli import main

    runs, _ = roots
    assert main(["prune", "--criterion", "l1", "--eps", "0.1", "--runs-root", str(runs)]) == 2
    assert "eps applies to interval_adjoint only, not to l1" in capsys.readouterr().err
    assert main(["prune", "--per-class", "--eps", "0.05", "--hidden", "16", "--q", "0.5",
                 "--iterations", "2", "--dense-epochs", "1", "--name", "iasa-options",
                 "--runs-root", str(runs), "--quiet"]) == 0
    config = json.loads(next(runs.glob("*/iasa-options/config.json")).read_text())
    assert config["criterion"] == "interval_adjoint"
    assert config["criterion_options"] == {"eps": 0.05, "per_class": True}


def test_prune_follows_a_retain_txt_and_refuses_an_edited_one_on_resume(roots, tmp_path,
                                                                         capsys):
    """The loop rebuilt its schedule from config.json and never read retain.txt: a table
    made with `retention` or by hand could not be followed, and an edited retain.txt in a
    run folder was silently ignored (its checkpoints then contradicted it)."""
    from explorer_core.cli import main

    runs, _ = roots
    table = tmp_path / "mine.txt"
    table.write_text("Iteration h1NodesRetained h2NodesRetained perNodesRetained\n"
                     "0 32 16 100\n1 20 10 62.5\n2 10 5 31.25\n")
    assert main(["prune", "--retain", str(table), "--q", "0.5", "--runs-root", str(runs)]) == 2
    assert "leave out --q" in capsys.readouterr().err
    assert main(["prune", "--retain", str(table), "--name", "table", "--dense-epochs", "2",
                 "--criterion", "l1", "--runs-root", str(runs), "--quiet"]) == 0
    paths = RunPaths(next(runs.glob("*/table")))
    assert [json.loads(paths.best_model_json(i).read_text())["widths"] for i in range(3)] == \
        [[32, 16], [20, 10], [10, 5]]
    assert read_retain(paths.retain).widths == read_retain(table).widths
    capsys.readouterr()

    edited = paths.retain.read_text().replace("1 20 10", "1 20 12")
    paths.retain.write_text(edited)
    assert main(["prune", "--resume", str(paths.root), "--from-iteration", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no longer matches the schedule in config.json" in err
    assert paths.retain.read_text() == edited  # the user's edit is not overwritten
    assert paths.best_model_json(2).is_file()  # nor any result

    paths.retain.unlink()  # as the message says: deleted, it is written again
    assert main(["prune", "--resume", str(paths.root), "--from-iteration", "2", "--quiet"]) == 0
    assert read_retain(paths.retain).widths == [(32, 16), (20, 10), (10, 5)]


def test_a_retain_table_says_which_settings_of_the_config_file_it_replaces(tmp_path, capsys):
    """`prune --config run.json --retain t.txt`: the table's widths win (a finished run's
    config.json reused with another table), but the config's hidden widths and schedule
    were put aside without a word."""
    from explorer_core.cli import build_parser
    from explorer_core.commands.prune import _config_from

    table = tmp_path / "mine.txt"
    table.write_text("Iteration h1NodesRetained h2NodesRetained perNodesRetained\n"
                     "0 32 16 100\n1 20 10 62.5\n")
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"hidden": [256, 64], "schedule": {"q": 0.5}}))
    parse = build_parser().parse_args
    cfg = _config_from(parse(["prune", "--config", str(config), "--retain", str(table)]))
    assert cfg.hidden == [32, 16] and cfg.schedule["rows"] == [[32, 16], [20, 10]]
    assert capsys.readouterr().err == ("note: mine.txt gives the widths of every iteration, "
                                       "in place of the config's hidden [256, 64] and "
                                       "schedule\n")
    config.write_text(json.dumps({"hidden": [32, 16], "lr": 0.01}))  # nothing to put aside
    _config_from(parse(["prune", "--config", str(config), "--retain", str(table)]))
    assert capsys.readouterr().err == ""


def _wait_for(predicate, timeout=120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_sigkill_mid_iteration_resumes_to_identical_results(roots, tmp_path):
    runs, _ = roots
    # small batches make each epoch long enough that a kill lands inside iteration 2
    over = dict(retrain_epochs=6, batch_size=8, schedule={"q": 0.6, "iterations": 5})
    reference = create_run(small_config("reference", **over), runs)
    assert execute(reference, cache_root=tmp_path / "cache-ref")["state"] == "finished"

    paths = create_run(small_config("killed", **over), runs)
    os.environ["EXPLORER_CACHE"] = str(tmp_path / "cache-killed")
    pid = jobs.launch(paths)

    def mid_iteration_two() -> bool:
        return any(e.get("type") == "epoch" and e.get("iteration") == 2 and e.get("epoch") == 1
                   for e in read_events(paths))
    _wait_for(mid_iteration_two)
    os.kill(pid, signal.SIGSTOP)  # freeze it first, then die like a crash: no clean-up runs
    os.kill(pid, signal.SIGKILL)
    _wait_for(lambda: read_status(paths)["state"] == "interrupted", timeout=10)
    assert paths.completed_iterations() == [0, 1]

    jobs.launch(paths)
    assert jobs.wait(paths, timeout=120)["state"] == "finished"
    assert read_table(paths.validations) == read_table(reference.validations)
    for i in range(len(plan(small_config("x", **over)))):
        assert read_table(paths.train_results(i)) == read_table(reference.train_results(i))
    # events of the killed attempt at iteration 2 were replaced, not duplicated
    epochs_it2 = [e for e in read_events(paths) if e.get("type") == "epoch" and e["iteration"] == 2]
    assert [e["epoch"] for e in epochs_it2] == [1, 2, 3, 4, 5, 6]


def test_results_helpers(roots):
    runs, cache = roots
    paths = create_run(small_config("res"), runs)
    execute(paths, cache_root=cache)
    rows = iteration_rows(paths)
    assert [r.iteration for r in rows] == list(range(len(rows)))
    rec = recommend(rows, tolerance=100.0)
    assert rec.row.iteration == rows[-1].iteration  # everything fits: the smallest wins
    strict = recommend(rows, tolerance=0.0)
    assert strict.row.test_acc >= rows[0].test_acc
    prog = run_progress(paths)
    assert prog.state == "finished" and prog.fraction == 1.0
    assert prog.epochs_done == 3 + (len(rows) - 1)
    paths.validations.unlink()
    written = concatenate(paths)
    assert paths.validations in written and paths.validations.is_file()


def test_a_run_whose_charts_cannot_be_rendered_finishes_with_its_table(roots, refused_pngs):
    """The last step of a run, concatenate, also renders two PNGs: vl-convert failing there
    marked a run with every iteration on disk as failed, sending the user to resume."""
    runs, cache = roots
    paths = create_run(small_config("no-pngs"), runs)
    status = execute(paths, cache_root=cache)
    assert status["state"] == "finished", status
    assert "accuracies.png not written" in status["message"]
    assert "losses.png not written" in status["message"]
    assert "cannot render this Vega-Lite spec" in status["message"]
    assert len(read_table(paths.validations)[1]) == len(plan(small_config("no-pngs")))
    assert not paths.accuracies_png.exists() and not paths.losses_png.exists()


def test_concatenate_that_cannot_render_a_chart_removes_its_old_image(roots, monkeypatch,
                                                                        capsys, request):
    """An old PNG beside a rebuilt validations.txt would show the run as it was before."""
    from explorer_core.cli import main

    runs, cache = roots
    paths = create_run(small_config("stale-pngs"), runs)
    assert execute(paths, cache_root=cache)["state"] == "finished"
    assert paths.accuracies_png.is_file() and paths.losses_png.is_file()
    paths.validations.unlink()
    request.getfixturevalue("refused_pngs")
    assert main(["concatenate", str(paths.root)]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert "validations.txt written" in err and "accuracies.png not written" in err, err
    assert paths.validations.is_file()
    assert not paths.accuracies_png.exists() and not paths.losses_png.exists()
    monkeypatch.undo()
    assert concatenate(paths)[1:] == [paths.accuracies_png, paths.losses_png]
    assert paths.losses_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_restart_whose_checkpoint_cannot_be_read_removes_nothing(roots, capsys):
    """--from-iteration deleted the iterations from the restart point on before it read
    the checkpoint it restarts from (or the dataset): a finished run lost them and was
    left "failed"."""
    from explorer_core.cli import main

    runs, cache = roots
    paths = create_run(small_config("keep-iterations", schedule={"q": 0.6, "iterations": 4,
                                                                  "kind": "geometric"}), runs)
    assert execute(paths, cache_root=cache)["state"] == "finished"
    finished = read_status(paths)
    paths.best_model(1).write_bytes(b"not a checkpoint")
    kept = sorted(p.relative_to(paths.root) for p in paths.root.rglob("*") if p.is_file())

    # at a terminal: one line naming the iteration, the folder as it was
    assert main(["prune", "--resume", str(paths.root), "--from-iteration", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "iteration 1's checkpoint cannot be read" in err, err
    assert read_status(paths) == finished
    assert sorted(p.relative_to(paths.root) for p in paths.root.rglob("*")
                  if p.is_file()) == kept
    # a worker (no terminal) says why in status.json, and removes nothing either
    status = execute(paths, 2, cache_root=cache)
    assert status["state"] == "failed" and "iteration 1's checkpoint" in status["message"]
    assert paths.completed_iterations() == [0, 1, 2, 3]


def test_a_restart_whose_data_cannot_be_loaded_removes_nothing(roots, monkeypatch):
    from explorer_core import experiment
    from explorer_core.errors import DatasetUnavailable

    runs, cache = roots
    paths = create_run(small_config("data-gone", schedule={"q": 0.6, "iterations": 4,
                                                            "kind": "geometric"}), runs)
    assert execute(paths, cache_root=cache)["state"] == "finished"

    def gone(*args, **kwargs):
        raise DatasetUnavailable("Digits is not available offline (as if its files went)")

    monkeypatch.setattr(experiment, "load_dataset", gone)
    status = execute(paths, 2, cache_root=cache)
    assert status["state"] == "failed" and "not available offline" in status["message"]
    assert paths.completed_iterations() == [0, 1, 2, 3]
    assert paths.validations.is_file() and paths.losses_png.is_file()


def test_a_resume_refused_at_a_terminal_leaves_the_status_as_it_was(roots, capsys):
    """An edited retain.txt was refused by the worker after the command's own checks:
    the finished run's status turned "failed"."""
    from explorer_core.cli import main

    runs, cache = roots
    paths = create_run(small_config("edited-retain"), runs)
    assert execute(paths, cache_root=cache)["state"] == "finished"
    finished = read_status(paths)
    lines = paths.retain.read_text().splitlines()
    paths.retain.write_text("\n".join(lines[:-1]) + "\n")  # one row fewer
    assert main(["prune", "--resume", str(paths.root), "--from-iteration", "1"]) == 2
    assert "retain.txt no longer matches" in capsys.readouterr().err
    assert read_status(paths) == finished


def test_cli_prune_and_concatenate(roots, tmp_path):
    runs, _ = roots
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "explorer_core", "prune", "--name", "cli", "--runs-root", str(runs),
         "--dataset", "digits", "--hidden", "16", "8", "--q", "0.5", "--iterations", "3",
         "--criterion", "l2", "--dense-epochs", "2", "--batch-size", "64"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "finished" in proc.stdout
    run_dir = next(runs.glob("*/cli"))
    # a headless run ends with the page's answer: the model to deploy, and where it is
    pick = recommend(iteration_rows(RunPaths(run_dir)), 1.0)
    assert f"deploy: {pick.summary()} ({pick.row.checkpoint})" in proc.stdout
    assert (run_dir / "prune_w_retrain_results" / "validations.txt").is_file()
    again = subprocess.run([sys.executable, "-m", "explorer_core", "concatenate", str(run_dir)],
                           capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0 and "validations.txt" in again.stdout
    bad = subprocess.run([sys.executable, "-m", "explorer_core", "prune", "--q", "1.5",
                          "--runs-root", str(runs)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "q must lie" in bad.stderr
    assert "Traceback" not in bad.stderr
    # a dataset missing offline: one line naming the folder, and no run folder left behind
    before = sorted(p.name for p in runs.glob("*/*"))
    offline = subprocess.run([sys.executable, "-m", "explorer_core", "prune", "--dataset", "cifar10",
                              "--runs-root", str(runs), "--name", "nodata"],
                             capture_output=True, text=True, timeout=120,
                             env={**env, "EXPLORER_DATA": str(tmp_path / "empty-data-root")})
    assert offline.returncode == 2 and offline.stderr.strip().count("\n") == 0
    assert "not available offline" in offline.stderr and "cifar" in offline.stderr.lower()
    assert sorted(p.name for p in runs.glob("*/*")) == before


@pytest.mark.parametrize("tolerance, picked", [(0.0, 0), (0.99, 0), (1.0, 1), (2.0, 2)])
def test_a_model_exactly_the_tolerance_below_the_dense_one_is_within_it(tolerance, picked):
    """"Within 1 point" takes a model 1 point below; a tolerance of 0 keeps the dense model
    when every pruned one is worse."""
    from explorer_core.results import IterationRow

    rows = [IterationRow(i, [w], pct, 0.1, 0.2, 95.0, acc, Path(f"it{i}.safetensors"))
            for i, (w, pct, acc) in enumerate([(64, 100.0, 90.0), (32, 50.0, 89.0),
                                                (16, 25.0, 88.0)])]
    rec = recommend(rows, tolerance, classes=10, problem=lambda path: None)
    assert rec.row.iteration == picked


def test_deployment_costs_compare_dense_and_recommended(roots):
    from explorer_core.results import deployment_costs

    runs, cache = roots
    paths = create_run(small_config("costs"), runs)
    execute(paths, cache_root=cache)
    rows = iteration_rows(paths)
    table = {r["metric"]: r for r in deployment_costs(rows[0].checkpoint, rows[-1].checkpoint)}
    # 64-32-16-10 dense vs 64-4-2-10: parameters and MACs by hand
    dense_params = 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    small_params = 64 * 4 + 4 + 4 * 2 + 2 + 2 * 10 + 10
    assert table["parameters"]["dense"] == f"{dense_params:,}"
    assert table["parameters"]["recommended"] == f"{small_params:,}"
    assert table["parameters"]["recommended / dense"] == round(small_params / dense_params, 4)
    assert table["MACs per sample"]["recommended / dense"] < 0.2
    latency = [r for m, r in table.items() if m.startswith("CPU latency")]
    assert len(latency) == 1 and latency[0]["recommended / dense"] > 0


def test_recommending_the_dense_model_says_so_and_kept_epoch_is_lowest_val_loss():
    from explorer_core.results import IterationRow
    from explorer_core.training import kept_epoch

    def row(i, acc):
        return IterationRow(i, [8 >> i], 100 / 2 ** i, 0.1, 0.2, acc, acc, Path(f"{i}.st"))

    def loads(path):  # the rows name no files: every checkpoint counts as loading
        return None

    rows = [row(0, 61.28), row(1, 50.0), row(2, 40.0)]
    rec = recommend(rows, 1.0, problem=loads)
    assert rec.is_dense and rec.row.iteration == 0
    assert rec.summary().startswith("Deploy the dense model itself")
    assert "points above" not in rec.summary() and "2 pruned iterations" in rec.summary()
    assert "no pruned iteration is complete" in recommend(rows[:1], 1.0, problem=loads).summary()
    # one pruned iteration: it read "none of the 1 pruned iterations stays within …"
    assert "the pruned iteration does not stay within 1 point of it" in \
        recommend(rows[:2], 1.0, problem=loads).summary()
    assert not recommend(rows, 15.0, problem=loads).is_dense
    # the saved epoch is the lowest validation loss, not the best test accuracy or the last
    epochs = [{"epoch": 1, "val_loss": 0.5, "test_acc": 90.0},
              {"epoch": 2, "val_loss": 0.3, "test_acc": 98.05},
              {"epoch": 3, "val_loss": 0.4, "test_acc": 98.89}]
    assert kept_epoch(epochs) == 2
    assert kept_epoch([{"epoch": 1, "test_loss": 0.9}, {"epoch": 2, "test_loss": 0.2}]) == 2


def test_remaining_time_is_paced_by_epochs_not_by_the_workers_start_up(tmp_path):
    """100 s to start the worker, then an epoch a second: 3 of 10 epochs done, 7 s left."""
    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    now = time.time()
    write_status(paths, "running", started=now - 100.0, total_epochs=10)
    paths.events.write_text("".join(
        json.dumps({"type": "epoch", "iteration": 0, "epoch": ep, "time": now - 3 + ep}) + "\n"
        for ep in (1, 2, 3)))
    with RunLock(paths):
        eta = run_progress(paths, now=now).eta
    assert eta == pytest.approx(7.0)


def test_a_cached_dense_models_replayed_epochs_set_no_pace(roots):
    """With the dense model from the cache, its epochs are replayed in one instant: the
    page read "Remaining 0 s" at iteration 1 of 11, the run's whole schedule ahead."""
    runs, cache = roots
    first = create_run(small_config("first"), runs)
    execute(first, cache_root=cache)
    again = create_run(small_config("again"), runs)
    execute(again, cache_root=cache)
    events = read_events(again)
    replayed = [e for e in events if e.get("type") == "epoch" and e["iteration"] == 0]
    assert len(replayed) == 3 and all(e.get("replayed") for e in replayed)
    # the run as the page saw it: the replayed epochs and the first retraining epoch
    upto = next(i for i, e in enumerate(events) if e.get("type") == "epoch"
                and e["iteration"] == 1)
    started = replayed[0]["time"] - 1.0
    write_status(again, "running", started=started,
                 total_epochs=read_status(again)["total_epochs"])
    again.events.write_text("".join(json.dumps(e) + "\n" for e in events[:upto + 1]))
    with RunLock(again):
        # one epoch trained here: no pace yet, so no number (it said 0 s)
        assert run_progress(again, now=events[upto]["time"] + 0.5).eta is None
        # a second one gives a pace from trained epochs alone
        second = {**events[upto], "epoch": events[upto]["epoch"] + 1,
                  "time": events[upto]["time"] + 2.0}
        with open(again.events, "a") as fh:
            fh.write(json.dumps(second) + "\n")
        left = read_status(again)["total_epochs"] - 5  # 3 dense + 2 retraining epochs
        assert run_progress(again, now=second["time"]).eta == pytest.approx(2.0 * left)


def test_remaining_time_credits_the_epoch_under_way(tmp_path):
    """Epochs end at 0, 10 and 20 s; at 25 s, 7 of 10 epochs remain, the first half run:
    65 s left (pacing by the clock read 87.5 s). A stalled epoch counts down no further
    than the six epochs after it."""
    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    t0 = time.time() - 100.0
    write_status(paths, "running", started=t0 - 5.0, total_epochs=10)
    paths.events.write_text("".join(
        json.dumps({"type": "epoch", "iteration": 0, "epoch": ep, "time": t0 + 10.0 * ep}) + "\n"
        for ep in (0, 1, 2)))
    with RunLock(paths):
        assert run_progress(paths, now=t0 + 25.0).eta == pytest.approx(65.0)
        assert run_progress(paths, now=t0 + 80.0).eta == pytest.approx(60.0)


@pytest.mark.parametrize("ctrl_c", [False, True])
def test_a_run_that_fails_after_a_ctrl_c_is_interrupted_not_crashed(roots, monkeypatch, ctrl_c):
    """In 1 of 40 Ctrl-Cs in `prune`'s first second, a library swallowed the interrupt
    mid-import; loading Digits then raised RecursionError, printed as a crash."""
    from explorer_core import errors, experiment

    def half_imported(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    runs, cache = roots
    monkeypatch.setattr(experiment, "load_dataset", half_imported)
    paths = create_run(small_config(f"swallowed-{ctrl_c}"), runs)
    monkeypatch.setattr(errors, "_INTERRUPTED", [ctrl_c])  # swallowed once the run began
    if ctrl_c:
        with pytest.raises(KeyboardInterrupt):
            execute(paths, cache_root=cache)
        assert read_status(paths)["state"] != "failed"
    else:
        status = execute(paths, cache_root=cache)
        assert status["state"] == "failed" and "RecursionError" in status["message"]


def test_kill_spares_a_finished_runs_pid_and_its_own_process(tmp_path):
    """status.json keeps the writer's pid after the run: killing by it hit whatever process
    had that pid by then — in the test suite, pytest itself (runs executed in-process)."""
    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_status(paths, "finished", pid=bystander.pid)
        jobs.kill(paths)
        time.sleep(0.2)
        assert bystander.poll() is None  # not a worker of this run any more: left alone
    finally:
        bystander.kill()
        bystander.wait()
    script = ("import os, sys; from pathlib import Path; from explorer_core import jobs; "
              "from explorer_core.rundir import RunLock, RunPaths, write_status; "
              "p = RunPaths(Path(sys.argv[1])); write_status(p, 'running', pid=os.getpid()); "
              "lock = RunLock(p).__enter__(); jobs.kill(p); print('alive')")
    done = subprocess.run([sys.executable, "-c", script, str(paths.root)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and done.stdout.strip() == "alive", done


def test_concatenate_refuses_a_run_a_worker_is_writing(roots, capsys):
    """Beside `prune --resume … --from-iteration 6` redoing iterations, `concatenate`
    rewrote validations.txt from old and new rows (exit 0)."""
    from explorer_core.cli import main

    runs, cache = roots
    paths = create_run(small_config("held", retrain=False, schedule={"q": 0.5, "iterations": 2}),
                       runs)
    assert execute(paths, cache_root=cache)["state"] == "finished"
    paths.validations.unlink()
    with RunLock(paths):
        assert main(["concatenate", str(paths.root)]) == 2
    assert capsys.readouterr().err == (f"error: run {paths.root} is already being written by "
                                       "another process; stop it first or wait for it to "
                                       "finish\n")
    assert not paths.validations.exists()
    assert main(["concatenate", str(paths.root)]) == 0
    assert paths.validations.is_file()


def test_concatenate_names_the_file_standing_where_its_results_folder_belongs(roots, capsys):
    """It named validations.txt as "a file of that name in the way"; the file in the way
    was prune_w_retrain_results, where the folder for validations.txt belongs."""
    from explorer_core.cli import main

    runs, cache = roots
    paths = create_run(small_config("blocked", retrain=False, schedule={"q": 0.5, "iterations": 2}),
                       runs)
    assert execute(paths, cache_root=cache)["state"] == "finished"
    shutil.rmtree(paths.results_dir)
    paths.results_dir.write_text("not a folder")
    assert main(["concatenate", str(paths.root)]) == 2
    assert capsys.readouterr().err == (f"error: cannot write into {paths.validations}: "
                                       f"{paths.results_dir} is a file in the way (need a "
                                       f"folder)\n")
    assert paths.results_dir.read_text() == "not a folder"


@pytest.mark.parametrize("kind", ["sweep", "train-time"])
def test_concatenate_on_another_kind_of_folder_says_what_it_is(tmp_path, capsys, kind):
    """A Compare sweep or a train-time run was said to have "no completed iteration to
    concatenate yet", as if waiting would help."""
    from explorer_core.cli import main
    from explorer_core.sweep import SweepConfig, create_sweep
    from explorer_core.train_time import TrainTimeConfig, create_run as create_train_time

    folder = (create_sweep(SweepConfig(name="s"), tmp_path) if kind == "sweep"
              else create_train_time(TrainTimeConfig(name="t"), tmp_path)).root
    before = sorted(p.name for p in folder.iterdir())
    assert main(["concatenate", str(folder)]) == 2
    what = "a Compare sweep" if kind == "sweep" else "a train-time pruning run"
    assert capsys.readouterr().err.strip() == \
        f"error: {folder} is {what}, not an iterative pruning run"
    assert sorted(p.name for p in folder.iterdir()) == before


def test_concatenate_reads_a_folder_the_thesis_scripts_wrote(tmp_path, capsys):
    """A thesis run has our layout but none of our sidecars: only each pruning iteration's
    validation_results.txt. `concatenate` refused it ("no config.json"); it now rebuilds
    validations.txt — the rows numpy.savetxt would write from those files, in iteration
    order — and the two charts."""
    import numpy as np

    from explorer_core.cli import main
    from explorer_core.rundir import VALIDATION_COLUMNS

    run = tmp_path / "thesis-run"
    rows = {i: [0.2 + i / 10, 0.25 + i / 10, 95.0 - i, 93.0 - i, 80.0 * 0.8 ** (i - 1)]
            for i in range(1, 11)}  # 10 sorts after 9, not after 1
    rows[10] = [2.3, 2.3, 11.2, 11.35, 8.4]
    for i, row in rows.items():
        folder = run / str(i) / "prune_w_retrain"
        folder.mkdir(parents=True)
        np.savetxt(folder / "validation_results.txt", [row],
                   header=" ".join(VALIDATION_COLUMNS), comments="", fmt="%g")
    assert main(["concatenate", str(run)]) == 0
    out = run / "prune_w_retrain_results"
    expected = tmp_path / "expected.txt"
    np.savetxt(expected, [rows[i] for i in range(1, 11)], header=" ".join(VALIDATION_COLUMNS),
               comments="", fmt="%g")
    assert (out / "validations.txt").read_bytes() == expected.read_bytes()
    assert (out / "accuracies.png").stat().st_size > 0 and (out / "losses.png").stat().st_size
    capsys.readouterr()
    # the thesis scripts' own config.json beside them: refused as "a train-time pruning
    # run" (it names `epochs`), it is no config of ours
    (run / "config.json").write_text('{"learning_rate": 0.01, "epochs": 10, "hidden": [256, 64]}')
    (out / "validations.txt").unlink()
    assert main(["concatenate", str(run)]) == 0, capsys.readouterr().err
    assert (out / "validations.txt").read_bytes() == expected.read_bytes()
    capsys.readouterr()

    header = " ".join(VALIDATION_COLUMNS)
    for text in ("loss acc\n1 2\n", f"{header}\n1 2 3\n", f"{header}\n1 2 3 4 5 6\n"):
        # a row of 3 or 6 numbers under the right header ended in a ValueError's trace
        (run / "2" / "prune_w_retrain" / "validation_results.txt").write_text(text)
        assert main(["concatenate", str(run)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "2/prune_w_retrain/validation_results.txt" in err
    assert main(["concatenate", str(tmp_path / "empty")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def _thesis_run(root, rows: dict) -> None:
    import numpy as np

    from explorer_core.rundir import VALIDATION_COLUMNS

    for name, row in rows.items():
        folder = root / str(name) / "prune_w_retrain"
        folder.mkdir(parents=True)
        np.savetxt(folder / "validation_results.txt", [row],
                   header=" ".join(VALIDATION_COLUMNS), comments="", fmt="%g")


@pytest.mark.parametrize("rows, message", [
    # "007" and "7" both read as iteration 7: its row written twice, the other lost
    ({1: [0.2, 0.3, 95, 94, 80], "007": [0.3, 0.4, 94, 93, 64], 7: [0.4, 0.5, 90, 89, 50]},
     "007: iteration folders are named 1, 2, 3 … (the thesis layout)"),
    ({1: [0.2, 0.3, 95, 94, 80], "٢": [0.3, 0.4, 94, 93, 64]}, "٢: iteration folders"),
    # 1 and 5 became rows 1 and 2 of a table without an iteration column
    ({1: [0.2, 0.3, 95, 94, 80], 5: [0.3, 0.4, 94, 93, 64]},
     "iteration 2 has no "),
    ({1: [0.2, 0.3, 500, 94, 80]}, "Train_Accuracy is 500: a percentage from 0 to 100"),
    ({1: [0.2, 0.3, 95, -3, 80]}, "Test_Accuracy is -3: a percentage"),
    ({1: [0.2, 0.3, 95, 94, 120]}, "PercentageRetain is 120: a percentage"),
    ({1: [0.2, 0.3, float("nan"), 94, 80]}, "Train_Accuracy is nan: a percentage"),
    ({1: [-0.2, 0.3, 95, 94, 80]}, "Train_Loss is -0.2: a cross-entropy is never negative"),
])
def test_concatenate_refuses_a_thesis_folder_it_would_misread(tmp_path, capsys, rows, message):
    """Written with exit 0: a row lost and another doubled, an accuracy of 500 plotted, a
    gap closed up without a word."""
    from explorer_core.cli import main

    run = tmp_path / "thesis-run"
    _thesis_run(run, rows)
    assert main(["concatenate", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
    assert not (run / "prune_w_retrain_results").exists()


def test_concatenate_keeps_a_diverged_loss_and_a_run_continued_in_a_folder_of_its_own(
        tmp_path, capsys):
    """A loss of nan or inf is a result (the training diverged); a run continued with the
    thesis' begin_itr into a folder of its own starts past iteration 1: both are read."""
    from explorer_core.cli import main

    run = tmp_path / "continued"
    _thesis_run(run, {5: [0.2, 0.3, 95, 94, 32], 6: [float("nan"), float("inf"), 11, 10, 26]})
    assert main(["concatenate", str(run)]) == 0, capsys.readouterr().err
    lines = (run / "prune_w_retrain_results" / "validations.txt").read_text().splitlines()
    assert len(lines) == 3 and lines[2].split()[:2] == ["nan", "inf"]


@pytest.mark.parametrize("damage", ["cut short", "percent_retained", "test_acc", "removed"])
def test_concatenate_refuses_to_skip_an_iteration_whose_record_is_damaged(roots, capsys,
                                                                          damage):
    """A best_model.json cut short, or with a number edited into text, either crashed
    `concatenate` with a trace ('could not convert string to float') or left that
    iteration out of validations.txt without a word (7 rows of 8: the table has no
    iteration column). It is named in one line; a resume redoes it."""
    from explorer_core.cli import main

    runs, cache = roots
    paths = create_run(small_config(f"damaged-{damage.replace(' ', '-')}", retrain=False,
                                    schedule={"q": 0.6, "iterations": 4}), runs)
    assert execute(paths, cache_root=cache)["state"] == "finished"
    before = paths.validations.read_bytes()
    sidecar = paths.best_model_json(2)
    record = json.loads(sidecar.read_text())
    if damage == "cut short":
        sidecar.write_text(sidecar.read_text()[:7])
    elif damage == "removed":
        sidecar.unlink()
    elif damage == "percent_retained":
        sidecar.write_text(json.dumps({**record, "percent_retained": "abc"}))
    else:
        sidecar.write_text(json.dumps({**record, "metrics": {**record["metrics"],
                                                             "test_acc": "abc"}}))
    assert main(["concatenate", str(paths.root)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: iteration 2 has no complete record ({sidecar} is missing, cut "
                   f"short or not numbers), so the table would skip it: resume the run to "
                   f"redo it (prune --resume {paths.root} --from-iteration 2)\n")
    assert paths.validations.read_bytes() == before  # left as it was
    assert execute(paths, cache_root=cache)["state"] == "finished"  # the resume redoes it
    assert main(["concatenate", str(paths.root)]) == 0
    assert len(read_table(paths.validations)[1]) == len(plan(small_config("x", schedule={
        "q": 0.6, "iterations": 4})))  # every iteration, the dense one first


def test_a_pick_whose_checkpoint_does_not_load_is_passed_over_and_named(roots, capsys):
    """A truncated best_model.safetensors was recommended, with its download; the next
    best pick whose checkpoint loads is made instead, and the summary says which
    iteration to redo. With no checkpoint left, nothing is offered."""
    from explorer_core.checkpoint import load_checkpoint
    from explorer_core.cli import main

    runs, cache = roots
    paths = create_run(small_config("damaged", retrain=False, schedule={"q": 0.3, "iterations": 3}),
                       runs)
    assert execute(paths, cache_root=cache)["state"] == "finished"
    rows = iteration_rows(paths)
    best = recommend(rows, 100.0)
    assert best.row.iteration == 2 and not best.damaged  # the smallest, at any tolerance
    data = rows[2].checkpoint.read_bytes()
    rows[2].checkpoint.write_bytes(data[:len(data) // 2])
    with pytest.raises(ExplorerError):
        load_checkpoint(rows[2].checkpoint)
    rec = recommend(rows, 100.0)
    assert rec.row.iteration == 1 and rec.deployable
    assert [r.iteration for r, _ in rec.damaged] == [2]
    text = rec.summary()
    assert text.startswith("Iteration 1: ")
    # widths as every label writes them: '(34 9)' stood beside pickers' '34-9'
    widths = "-".join(map(str, rec.row.widths))
    assert f"of hidden neurons ({widths}), test accuracy" in text and "-" in widths
    assert ("Passed over for a checkpoint that does not load — iteration 2: "
            "best_model.safetensors is cut short or not a safetensors file") in text
    assert text.endswith("Restart the run from iteration 2 to write it again.")
    load_checkpoint(rec.row.checkpoint)  # what is offered loads

    rows[1].checkpoint.unlink()
    rows[0].checkpoint.write_bytes(b"")
    none = recommend(rows, 100.0)
    assert not none.deployable
    assert [r.iteration for r, _ in none.damaged] == [2, 1, 0]
    assert none.summary().startswith("No checkpoint to deploy: Passed over")
    assert "iteration 1: best_model.safetensors is missing" in none.summary()
    assert none.summary().endswith("Restart the run from iteration 0 to write them again.")
    capsys.readouterr()


def test_no_model_is_recommended_when_the_dense_model_did_not_learn(tmp_path):
    """SGD at learning rate 10 left the dense model at 11.14 % on Digits (10 classes) and
    a pruned one at 11.70 % was recommended as '0.56 points above the dense model'.
    Every pick is judged against the dense model, so when it guesses there is no pick."""
    import json as _json

    from explorer_core.results import IterationRow, has_learned, learned_threshold

    def row(i, acc, loss=2.3, classes=10):
        ckpt = tmp_path / f"{i}" / "best_model.safetensors"
        ckpt.parent.mkdir(exist_ok=True)
        ckpt.with_suffix(".json").write_text(_json.dumps(
            {"class_names": [str(c) for c in range(classes)],
             "spec": {"arch": "mlp", "in": 64, "hidden": [8], "out": classes}}))
        return IterationRow(i, [64 >> i, 32 >> i], 100 / 2 ** i, loss, loss, acc, acc, ckpt)

    rows = [row(0, 11.14), row(1, 9.89), row(2, 11.70)]
    rec = recommend(rows, 1.0)  # the classes come from the dense checkpoint's sidecar
    assert not rec.dense_learned and rec.row.iteration == 0
    text = rec.summary()
    assert "did not learn" in text and "11.14 %" in text and "10 classes" in text
    assert "learning rate" in text
    assert "Iteration 2" not in text and "above" not in text
    # a pick is made as before once the dense model learned
    learned = [row(0, 90.0), row(1, 89.5), row(2, 60.0)]
    good = recommend(learned, 1.0)
    assert good.dense_learned and good.row.iteration == 1
    loads = recommend(learned, 1.0, problem=lambda _: None)  # no weights written here
    assert "(0.50 points below the dense model's 90.00 %)" in loads.summary()
    # a pruned model as accurate as the dense one: "0.00 points above" it read before
    same = recommend([row(0, 90.0), row(1, 90.0), row(2, 60.0)], 1.0, problem=lambda _: None)
    assert "(the same as the dense model's 90.00 %)" in same.summary()
    assert "points" not in same.summary()
    # apart as printed, however close: the gap is that of the two numbers shown
    close = recommend([row(0, 89.994), row(1, 89.998), row(2, 60.0)], 1.0,
                      problem=lambda _: None)
    assert "test accuracy 90.00 % (0.01 points above the dense model's 89.99 %)" in \
        close.summary()
    # the threshold lies between chance and perfect, and depends on the number of classes
    for classes in (2, 10, 100):
        assert 100 / classes < learned_threshold(classes) < 100
    assert not has_learned(52.0, 2) and has_learned(52.0, 10)
    assert not has_learned(11.35, 10)  # MNIST's collapse to its largest class (DESIGN §7)
    # a diverged loss is no learning, whatever the accuracy
    assert not recommend([row(0, 60.0, loss=float("nan")), row(1, 60.0)], 1.0).dense_learned
    # an explicit class count wins over the sidecar
    assert not recommend([row(0, 40.0, classes=2), row(1, 40.0, classes=2)], 1.0).dense_learned
    assert recommend([row(0, 40.0, classes=2), row(1, 40.0, classes=2)], 1.0,
                     classes=10).dense_learned


@pytest.mark.parametrize("setting, value, first", [
    ("lr", 0.01, "iteration 0"), ("dense_epochs", 4, "iteration 0"),
    ("criterion", "random", "iteration 1"), ("retrain_epochs", 2, "iteration 1"),
    ("criterion_options", {"seed": 5}, "iteration 1")])
def test_training_and_pruning_settings_edited_after_the_run_began_are_refused(
        roots, setting, value, first):
    """A learning rate, epochs or criterion edited in config.json after iteration 2 were
    followed by the resume without a word: iterations 3 … came from other settings than
    0 … 2, in one run. Each iteration records the settings it depends on."""
    runs, cache = roots
    paths = create_run(small_config("edited"), runs)
    _stopped_after_iteration(paths, 2, cache)
    config = json.loads(paths.config.read_text())
    recorded = config[setting]
    config[setting] = value
    paths.config.write_text(json.dumps(config))
    with pytest.raises(ExplorerError) as caught:
        load_run_config(paths)
    message = str(caught.value)
    assert "\n" not in message and f"{first}'s best_model.json records {setting}" in message
    assert f"config.json's {setting} is now" in message
    status = execute(paths, cache_root=cache)
    assert status["state"] == "failed" and paths.completed_iterations() == [0, 1, 2]
    # put back, the run resumes and finishes
    config[setting] = recorded
    paths.config.write_text(json.dumps(config))
    assert execute(paths, cache_root=cache)["state"] == "finished"


def test_a_run_recorded_before_settings_were_recorded_still_checks_its_criterion(roots):
    """Iterations of older versions record no settings: they resume as before, except
    that their recorded criterion (always written) must still be config.json's."""
    runs, cache = roots
    paths = create_run(small_config("older"), runs)
    _stopped_after_iteration(paths, 1, cache)
    for i in paths.completed_iterations():
        meta = json.loads(paths.best_model_json(i).read_text())
        del meta["settings"]
        paths.best_model_json(i).write_text(json.dumps(meta))
    config = json.loads(paths.config.read_text())
    config["lr"] = 0.002  # not recorded by an older version: not checked
    paths.config.write_text(json.dumps(config))
    load_run_config(paths)
    config["criterion"] = "random"
    paths.config.write_text(json.dumps(config))
    with pytest.raises(ExplorerError, match="iteration 1's best_model.json records criterion"):
        load_run_config(paths)


@pytest.mark.parametrize("every, epoch_lines", [(1e9, 0), (0.0, 3)])
def test_a_prune_into_a_log_says_an_epoch_when_it_has_been_quiet(roots, capsys, monkeypatch,
                                                                  every, epoch_lines):
    """Into a log the bar writes a line per iteration: a whole dense phase (minutes for a
    CNN) wrote nothing after the run folder. An epoch gets a line when nothing was
    written for `LOG_EPOCH_EVERY_S`; otherwise the log is as before."""
    from explorer_core import cli
    from explorer_core.cli import main

    runs, _ = roots
    monkeypatch.setattr(cli, "LOG_EPOCH_EVERY_S", every)
    assert main(["prune", "--dataset", "digits", "--hidden", "8", "4", "--iterations", "2",
                 "--q", "0.5", "--dense-epochs", "2", "--retrain-epochs", "1", "--no-cache",
                 "--name", f"log-{epoch_lines}", "--runs-root", str(runs)]) == 0
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("[")]
    iterations = [l for l in lines if "test acc" in l and " it " in l]
    assert len(lines) == 2 + epoch_lines, lines  # 2 dense epochs, 1 retraining epoch
    assert [l.split("  it ")[1].split()[0] for l in lines[-1:]] == ["1"]
    assert "\r" not in "".join(lines) and len(iterations) >= 2


def test_a_ctrl_c_a_library_swallowed_is_recorded_as_a_ctrl_c(roots, monkeypatch):
    """A Ctrl-C in a prune's first seconds (swallowed by a library, then seen by the stop
    check) left status "stopped by request before the dense model was done", while the
    CLI said "interrupted" and exited 130."""
    from explorer_core import errors, jobs

    runs, cache = roots
    paths = create_run(small_config("swallowed"), runs)
    monkeypatch.setattr(errors, "_INTERRUPTED", [True])  # as the signal handler leaves it
    execute(paths, cache_root=cache)
    status = read_status(paths)
    assert (status["state"], status["message"]) == ("interrupted", jobs.CTRL_C_MESSAGE)
    # a stop that was requested stays one
    monkeypatch.setattr(errors, "_INTERRUPTED", [False])
    asked = create_run(small_config("asked"), runs)
    assert execute(asked, should_stop=lambda: True, cache_root=cache)["state"] == "stopped"
    assert read_status(asked)["message"].startswith("stopped by request")


def test_downloads_are_named_by_the_folders_day_and_name(tmp_path):
    """A page's plain "results.csv" of two runs collided in the Downloads folder, and
    "<name>_…" of two runs of one name made on two days too."""
    import datetime as _dt

    from explorer_core.rundir import download_name, new_run_dir

    one = new_run_dir("same", tmp_path, day=_dt.date(2026, 12, 6)).root
    two = new_run_dir("same", tmp_path, day=_dt.date(2026, 12, 7)).root
    assert download_name(one, "results.csv") == "2026-12-06_same_results.csv"
    assert download_name(one, "a.png") != download_name(two, "a.png")
    # a folder resumed from elsewhere (a thesis script's, a copy) has no day above it
    assert download_name(tmp_path / "old-thesis-run", "a.png") == "old-thesis-run_a.png"
    assert download_name(tmp_path / "20261207" / "run", "a.png") == "run_a.png"


def test_a_restart_from_iteration_0_does_not_count_the_discarded_runs_time(tmp_path):
    """"Ran for" after a Restart from 0 added the earlier run's time to the new one's
    (23 s + 15 s for a run that took 15 s); a resume from a later iteration still counts
    the sessions whose iterations it keeps."""
    paths = create_run(small_config("anew"), tmp_path / "runs")
    assert execute(paths)["state"] == "finished"
    status = read_status(paths)
    write_status(paths, "finished", started=status["started"] - 1000.0)  # a long first run
    assert execute(paths, from_iteration=1)["state"] == "finished"
    assert read_status(paths)["elapsed_before"] >= 1000.0  # iteration 0 kept: its time too
    assert execute(paths, from_iteration=0)["state"] == "finished"
    assert read_status(paths)["elapsed_before"] == 0.0
