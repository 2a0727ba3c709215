"""`--config` files the commands merge their flags into, read as users write them: a
schedule that is not an object, a table schedule beside the rule's flags, a null name,
an absurdly long number — each one line and exit 2, or the documented default."""
from __future__ import annotations

import json
import re

import pytest

from explorer_core import cli
from explorer_core.experiment import load_run_config
from explorer_core.rundir import RunPaths


def _config(tmp_path, obj) -> str:
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return str(path)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize("schedule", [5, [["q", 0.5]], "geometric"])
def test_a_schedule_that_is_not_an_object_is_one_line(tmp_path, capsys, schedule):
    """`"schedule": 5` or null was a TypeError traceback; a list of pairs became a dict."""
    root = tmp_path / "runs"
    code = cli.main(["prune", "--config", _config(tmp_path, {"schedule": schedule}),
                     "--q", "0.5", "--runs-root", str(root), "--quiet"])
    assert code == 2 and "schedule" in _one_line(capsys)
    assert not root.exists()


def test_the_rules_flags_beside_a_table_schedule_are_refused(tmp_path, capsys):
    """--q over a table schedule from a file was silently ignored."""
    table = {"hidden": [8, 4], "schedule": {"kind": "table", "rows": [[8, 4], [4, 2]]}}
    root = tmp_path / "runs"
    code = cli.main(["prune", "--config", _config(tmp_path, table), "--q", "0.5",
                     "--runs-root", str(root), "--quiet"])
    assert code == 2 and "--q" in _one_line(capsys) and not root.exists()


def test_a_table_schedule_from_a_file_is_saved_as_given(tmp_path, capsys, monkeypatch):
    """The rule's defaults (q, iterations) were merged into any schedule object read."""
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))
    table = {"dataset": "digits", "hidden": [8, 4], "dense_epochs": 1, "retrain_epochs": 1,
             "schedule": {"kind": "table", "rows": [[8, 4], [4, 2]]}}
    root = tmp_path / "runs"
    code = cli.main(["prune", "--config", _config(tmp_path, table), "--runs-root", str(root),
                     "--quiet"])
    assert code == 0, capsys.readouterr().err
    [config] = root.rglob("config.json")
    assert json.loads(config.read_text())["schedule"] == table["schedule"]
    assert load_run_config(RunPaths(config.parent)).schedule == table["schedule"]


@pytest.mark.parametrize("flags", [[], ["--iterations", "4"]])
def test_a_partial_rule_schedule_is_completed_with_the_rules_defaults(tmp_path, flags):
    """config.json records every value the run follows; a null schedule, like a
    missing one, is the default rule."""
    from explorer_core.commands.prune import _config_from
    from explorer_core.experiment import RunConfig

    over = {"iterations": 4} if flags else {}
    for schedule, expected in (({"q": 0.5}, {"q": 0.5}), (None, {})):
        args = cli.build_parser().parse_args(
            ["prune", "--config", _config(tmp_path, {"schedule": schedule}), *flags])
        assert _config_from(args).schedule == {**RunConfig().schedule, **expected, **over}


@pytest.mark.parametrize("command, kind", [("prune", "run"), ("compare", "sweep"),
                                           ("train-time", "train-time")])
def test_a_null_name_means_no_name_given(tmp_path, command, kind):
    """`"name": null` gave the plain default ("run") in prune and crashed or named the
    folder 'None' elsewhere; unnamed runs get the time-stamped default, whose process id
    keeps two commands started in one second apart."""
    from importlib import import_module

    module = import_module(f"explorer_core.commands.{command.replace('-', '_')}")
    args = cli.build_parser().parse_args(
        [command, "--config", _config(tmp_path, {"name": None})])
    cfg = module._config_from(args)
    assert re.fullmatch(rf"{kind}-\d{{6}}-\d+", cfg.name), cfg.name


def test_a_number_too_long_to_read_is_one_line(tmp_path, capsys):
    """Python refuses integers past 4 300 digits with a ValueError the reader let through."""
    root = tmp_path / "runs"
    code = cli.main(["prune", "--config", _config(tmp_path, '{"seed": ' + "9" * 5000 + "}"),
                     "--runs-root", str(root), "--quiet"])
    assert code == 2 and "cannot read" in _one_line(capsys) and not root.exists()


HUGE = '{"spec": {"arch": "mlp", "in": ' + "9" * 5000 + "}}"


def test_an_integer_too_long_to_read_in_a_spec_or_upload_is_one_line(tmp_path, capsys):
    """Python refuses integers past 4 300 digits with a plain ValueError; the spec readers
    caught only JSONDecodeError, so a spec file, an uploaded spec or an uploaded
    checkpoint .json holding one was a traceback instead of 'not a JSON file'."""
    from types import SimpleNamespace

    from explorer_core.catalog import parse_spec_upload
    from explorer_core.errors import ExplorerError
    from pages._common import read_json_upload

    with pytest.raises(ExplorerError, match="not a JSON file"):
        parse_spec_upload(HUGE.encode(), "spec.json")
    upload = SimpleNamespace(name="model.json", getvalue=lambda: HUGE.encode())
    with pytest.raises(ExplorerError, match="not a JSON file"):
        read_json_upload(upload)
    spec = tmp_path / "spec.json"
    spec.write_text(HUGE)
    code = cli.main(["retention", "--spec", str(spec), "--out", str(tmp_path / "out")])
    assert code == 2 and "not a JSON file" in _one_line(capsys)


def test_an_integer_too_long_to_read_in_safetensors_metadata_is_a_checkpoint_error(tmp_path):
    import torch
    from safetensors.torch import save_file

    from explorer_core.checkpoint import read_spec
    from explorer_core.errors import CheckpointError

    path = tmp_path / "model.safetensors"  # no sidecar: the spec comes from the metadata
    save_file({"w": torch.zeros(1)}, str(path), metadata={"spec": HUGE[9:-1]})
    with pytest.raises(CheckpointError, match="not JSON"):
        read_spec(path, {"spec": HUGE[9:-1]})


def test_a_negative_deploy_tolerance_is_refused_before_any_training(tmp_path, capsys):
    root = tmp_path / "runs"
    assert cli.main(["prune", "--dataset", "digits", "--tolerance", "-1", "--runs-root",
                     str(root), "--quiet"]) == 2
    assert "--tolerance" in _one_line(capsys) and not root.exists()


def test_the_epoch_bar_counts_from_the_kept_epochs_and_has_no_eta_before_one_ran():
    """A resumed run's bar started at 0; its eta read "nan s" before an epoch ran."""
    from explorer_core.cli import EpochBar

    bar = EpochBar(total=10, done=4, started=0.0)
    assert bar.bar().endswith(" 40.0 %") and bar.bar().count("#") == 12
    assert bar.times().endswith("eta —")
    bar.count({"type": "iteration"})
    assert bar.done == 4
    bar.count({"type": "epoch"})
    assert bar.done == 5 and not bar.times().endswith("—") and "nan" not in bar.times()
    # in `format_seconds`' words, as compare's bar: hours past the hour, not 1 796 651 s
    assert re.fullmatch(r"elapsed \d+ h \d+ min  eta \d+ h \d+ min", bar.times())


_SMALL_RUNS = {
    "prune": ("--runs-root", ["--hidden", "16", "8", "--q", "0.5", "--iterations", "2",
                              "--dense-epochs", "1", "--no-cache"]),
    "compare": ("--sweeps-root", ["--ratios", "0", "0.5", "--types", "neuron", "--criteria",
                                  "l1", "--dense-epochs", "1", "--latency-repeats", "0",
                                  "--no-cache"]),
    "train-time": ("--runs-root", ["--epochs", "2", "--initial-epochs", "1"]),
}


@pytest.mark.parametrize("command", list(_SMALL_RUNS))
@pytest.mark.parametrize("lr", ["1e39", "50", "0"])
def test_a_learning_rate_out_of_range_is_one_line_and_makes_no_folder(tmp_path, capsys,
                                                                      monkeypatch, command, lr):
    """Past float32's range Adam's update overflowed: `--lr 1e39` made the folder, trained,
    and ended in a 33-line RuntimeError traceback and a failed run."""
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))
    flag, extra = _SMALL_RUNS[command]
    root = tmp_path / "out"
    code = cli.main([command, *extra, "--lr", lr, flag, str(root), "--quiet"])
    line = _one_line(capsys)
    assert code == 2 and "learning rate must be a number from 1e-06 to 10" in line, line
    assert not root.exists()


@pytest.mark.parametrize("command", list(_SMALL_RUNS))
def test_a_config_nested_past_the_parsers_depth_is_one_line(tmp_path, capsys, command):
    """'[' × 100 000 in a --config file: a RecursionError traceback and exit 1."""
    code = cli.main([command, "--config", _config(tmp_path, "[" * 100_000 + "]" * 100_000),
                     "--quiet"])
    line = _one_line(capsys)
    assert code == 2 and "cfg.json" in line, line


def test_an_unforeseen_error_keeps_its_trace_in_the_runs_log_not_on_the_terminal(
        tmp_path, capsys, monkeypatch):
    """An error nobody foresaw printed its traceback above the one-line reason. The trace
    now goes to the run's worker.log, which the reason names."""
    from explorer_core import sweep

    def broken(*args, **kwargs):
        raise RuntimeError("an allocator said no")

    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sweep, "get_baseline", broken)
    flag, extra = _SMALL_RUNS["compare"]
    root = tmp_path / "out"
    code = cli.main(["compare", *extra, flag, str(root), "--quiet"])
    captured = capsys.readouterr()
    assert code != 0 and "Traceback" not in captured.err + captured.out
    [log] = root.rglob("worker.log")
    assert f"RuntimeError: an allocator said no (traceback in {log})" in captured.out \
        + captured.err
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "an allocator said no" in text


@pytest.mark.parametrize("where", ["flag", "file"])
def test_q_beside_a_ramp_schedule_is_refused(tmp_path, capsys, where):
    """`prune --q 0.5 --kind linear` (or --q over a file's linear schedule) ran the
    linear ramp, which never reads q, as if --q had not been typed."""
    root = tmp_path / "runs"
    kind = ["--kind", "linear"] if where == "flag" else []
    config = {"schedule": {"kind": "linear"}} if where == "file" else {}
    code = cli.main(["prune", "--config", _config(tmp_path, config), "--q", "0.5", *kind,
                     "--runs-root", str(root), "--quiet"])
    assert code == 2 and _one_line(capsys) == (
        "error: --q sets the geometric schedule's keep factor; the linear schedule ramps to "
        "1 neuron without it: drop --q")
    assert not root.exists()


def test_a_ramp_schedule_from_a_file_keeps_its_recorded_q(tmp_path):
    """A run folder's config.json records q for every rule schedule (the defaults are
    merged in): a linear one copied as --config is not refused for it."""
    from explorer_core.commands.prune import _config_from

    schedule = {"q": 0.8, "iterations": 5, "kind": "linear"}
    args = cli.build_parser().parse_args(
        ["prune", "--config", _config(tmp_path, {"schedule": schedule}), "--iterations", "4"])
    assert _config_from(args).schedule == {**schedule, "iterations": 4}


def test_a_retain_txt_with_a_repeated_iteration_is_refused(tmp_path, capsys):
    """`prune --retain` ran one iteration per row whatever the Iteration column said:
    `0, 1, 1` (a row pasted twice) ran iterations 0, 1 and 2."""
    table = tmp_path / "retain.txt"
    table.write_text("Iteration h1NodesRetained h2NodesRetained perNodesRetained\n"
                     "0 8 4 100\n1 4 2 50\n1 2 1 25\n")
    root = tmp_path / "runs"
    code = cli.main(["prune", "--retain", str(table), "--dataset", "digits",
                     "--runs-root", str(root), "--quiet"])
    assert code == 2 and _one_line(capsys) == (
        f"error: {table}, row 3: iteration 1 repeats row 2's; each row is one iteration: "
        "renumber or remove it")
    assert not root.exists()


def test_a_run_folders_config_json_as_config_names_what_it_ignores(tmp_path, capsys):
    """A run folder's config.json, reused as --config (a documented use), carries spec,
    versions and created beside its settings: they were dropped without a word, and an
    edited "spec" there looked like it chose the model."""
    from explorer_core.commands.prune import _config_from
    from explorer_core.experiment import RunConfig, create_run

    made = create_run(RunConfig(name="first", hidden=[8, 4]), tmp_path / "runs")
    args = cli.build_parser().parse_args(["prune", "--config", str(made.config)])
    assert _config_from(args).hidden == [8, 4]
    assert _one_line(capsys) == ("note: ignored the keys created, spec, versions of "
                                 "config.json: a run folder records them beside its "
                                 "settings; they set nothing here")


@pytest.mark.parametrize("command, recorded", [("prune", {"spec": {"arch": "mlp"}}),
                                               ("compare", {"versions": {}}),
                                               ("train-time", {"created": 1.0, "spec": {}})])
def test_every_command_names_the_recorded_keys_it_ignores_and_only_those(tmp_path, capsys,
                                                                         command, recorded):
    from importlib import import_module

    module = import_module(f"explorer_core.commands.{command.replace('-', '_')}")
    for extra, said in (({}, ""), (recorded, ", ".join(sorted(recorded)))):
        args = cli.build_parser().parse_args(
            [command, "--config", _config(tmp_path, {"name": "x", "lr": 0.01, **extra})])
        module._config_from(args)
        err = capsys.readouterr().err
        keys = "key" if len(recorded) == 1 else "keys"
        assert err == (f"note: ignored the {keys} {said} of cfg.json: a run folder records "
                       f"them beside its settings; they set nothing here\n" if said else "")


@pytest.mark.parametrize("command", ["prune", "compare", "train-time"])
def test_a_validation_fraction_leaving_almost_no_training_split_is_one_line(tmp_path, capsys,
                                                                            command):
    """`"val_fraction": 0.999` trained on one Digits sample without a warning."""
    root = tmp_path / "runs"
    where = "--sweeps-root" if command == "compare" else "--runs-root"
    code = cli.main([command, "--config", _config(tmp_path, {"val_fraction": 0.999}),
                     where, str(root), "--quiet"])
    assert code == 2 and _one_line(capsys) == (
        "error: validation fraction 0.999 leaves 1 of the 1,438 training samples of digits "
        "to train on; at least 100 (10 per class) are needed: lower the fraction")
    assert not root.exists()


def test_a_config_json_of_another_kind_of_run_names_the_command_that_takes_it(tmp_path, capsys):
    """An iterative run's config.json given to compare was refused as "unknown sweep
    setting(s): activation, batch_size, criterion, …, spec": true, but no help."""
    from explorer_core.experiment import RunConfig, create_run
    from explorer_core.sweep import SweepConfig, create_sweep

    run = create_run(RunConfig(name="iter", hidden=[8, 4]), tmp_path / "runs").config
    sweep = create_sweep(SweepConfig(name="sw"), tmp_path / "sweeps").config
    iterative, compare, train_time = ("an iterative pruning run", "a Compare sweep",
                                      "a train-time pruning run")
    for args, config, found, wanted, takes in (
            (["compare", "--estimate"], run, iterative, compare, "prune"),
            (["prune"], sweep, compare, iterative, "compare"),
            (["train-time"], run, iterative, train_time, "prune")):
        assert cli.main([*args, "--config", str(config)]) == 2
        assert _one_line(capsys) == (f"error: {config} holds the settings of {found}, not of "
                                     f"{wanted}: give it to `{takes} --config`")


def test_a_missing_config_file_is_named_once(tmp_path, capsys):
    """'cannot read /a.json: [Errno 2] No such file or directory: '/a.json'' gave the
    path twice and Python's error number."""
    missing = tmp_path / "nope.json"
    code = cli.main(["compare", "--config", str(missing)])
    line = _one_line(capsys)
    assert code == 2 and line == f"error: cannot read {missing}: No such file or directory"


@pytest.mark.parametrize("extra, message", [
    # accepted, and the epochs ignored without a word (--kind linear --q 0.5 is refused)
    (["--no-retrain", "--retrain-epochs", "5"],
     "error: --no-retrain prunes without retraining; leave out --retrain-epochs"),
    # the only epoch refusal without the value given
    (["--retrain-epochs", "-2"], "error: retraining needs at least 1 epoch per iteration, got -2"),
])
def test_prune_refuses_retraining_settings_it_cannot_follow(tmp_path, capsys, extra, message):
    root = tmp_path / "runs"
    assert cli.main(["prune", "--dataset", "digits", "--runs-root", str(root), "--quiet",
                     *extra]) == 2
    assert _one_line(capsys) == message and not root.exists()


def test_a_binary_config_file_is_said_to_be_no_text(tmp_path, capsys):
    """It printed Python's "'utf-8' codec can't decode byte 0xd0 …"."""
    binary = tmp_path / "cfg.json"
    binary.write_bytes(b'{"name": "\xd0\xff"}')
    assert cli.main(["prune", "--config", str(binary), "--quiet"]) == 2
    assert _one_line(capsys) == f"error: cannot read {binary}: it is not a text file (no " \
                                "UTF-8 text)"
