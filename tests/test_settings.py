"""Typed config files: RunConfig, SweepConfig and TrainTimeConfig take from JSON only values
of their settings' types, within the limits past which runs failed late or ran out of
memory, and say which setting is wrong in one line (API, `--config`, `--resume`).

Every config here is tiny (Digits, an 8-neuron MLP) and nothing is trained: each bad
value is refused before a run starts, and the valid configs are only created.
"""
from __future__ import annotations

import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from explorer_core import experiment, sweep, train_time
from explorer_core.cli import main
from explorer_core.errors import ExplorerError
from explorer_core.rundir import read_record


@dataclass(frozen=True)
class Kind:
    """One config kind: its class, a small valid config, and how the CLI makes its folders."""
    cls: type
    base: dict
    command: str
    root_flag: str
    create: Callable[[Any, Path], Any]


KINDS = {
    "run": Kind(experiment.RunConfig,
                {"name": "r", "dataset": "digits", "hidden": [8], "criterion": "l1",
                 "schedule": {"q": 0.5, "iterations": 2, "kind": "geometric"},
                 "dense_epochs": 1, "retrain_epochs": 1, "use_cache": False},
                "prune", "--runs-root", experiment.create_run),
    "sweep": Kind(sweep.SweepConfig,
                  {"name": "s", "models": ["mlp"], "datasets": ["digits"], "batch_sizes": [64],
                   "types": ["neuron"], "criteria": ["l1"], "ratios": [0.0], "dense_epochs": 1,
                   "mlp_hidden": [8], "latency_repeats": 0, "save_checkpoints": False,
                   "use_cache": False},
                  "compare", "--sweeps-root", sweep.create_sweep),
    "train-time": Kind(train_time.TrainTimeConfig,
                       {"name": "t", "dataset": "digits", "hidden": [8], "epochs": 2,
                        "initial_epochs": 1, "prune_every": 1, "seeds": [0],
                        "variants": ["importance", "none"]},
                       "train-time", "--runs-root", train_time.create_run),
}

HUGE = 10**100  # the tester's 100-digit seed

# (kind, settings over the kind's base, what the one-line message must say). Each value
# was accepted (or crashed with a traceback) before settings were typed.
BAD = [
    # a non-empty string is truthy: "no" retrained, "false" saved checkpoints
    ("run", {"retrain": "no"}, "run setting retrain must be true or false, got 'no'"),
    ("run", {"use_cache": "false"}, "run setting use_cache must be true or false, got 'false'"),
    ("run", {"retrain": None}, "run setting retrain must be true or false, got None"),
    ("sweep", {"save_checkpoints": "false"},
     "sweep setting save_checkpoints must be true or false, got 'false'"),
    ("sweep", {"use_cache": 1}, "sweep setting use_cache must be true or false, got 1"),
    # strings for numbers, fractions for whole numbers (2.5 became 2)
    ("run", {"schedule": {"q": "0.5", "iterations": 2, "kind": "geometric"}},
     "run setting schedule.q must be a number, got '0.5'"),
    ("run", {"schedule": {"q": 0.5, "iterations": 2.5, "kind": "geometric"}},
     "run setting schedule.iterations must be a whole number, got 2.5"),
    ("run", {"dense_epochs": 1.5}, "run setting dense_epochs must be a whole number, got 1.5"),
    ("run", {"min_neurons": 2.5}, "run setting min_neurons must be a whole number, got 2.5"),
    ("run", {"max_drop": "5"}, "run setting max_drop must be a number or null, got '5'"),
    ("sweep", {"lr": "0.01"}, "sweep setting lr must be a number, got '0.01'"),
    ("train-time", {"weight_decay": "0"},
     "train-time setting weight_decay must be a number, got '0'"),
    # names that are not strings, lists where a name goes, lists of lists
    ("run", {"name": 5}, "run setting name must be a string, got 5"),
    ("sweep", {"name": 5}, "sweep setting name must be a string, got 5"),
    ("train-time", {"name": 5}, "train-time setting name must be a string, got 5"),
    ("run", {"dataset": ["digits"]}, "run setting dataset must be a string, got ['digits']"),
    ("run", {"criterion": ["l1"]}, "run setting criterion must be a string, got ['l1']"),
    ("sweep", {"datasets": [["digits"]]},
     "sweep setting datasets must be a list of strings, got [['digits']]"),
    ("sweep", {"criteria": [["l1"]]}, "sweep setting criteria must be a list of strings"),
    ("sweep", {"optimizer": ["adam"]}, "sweep setting optimizer must be a string"),
    ("train-time", {"optimizer": ["adam"]}, "train-time setting optimizer must be a string"),
    ("train-time", {"lr_schedule": ["constant"]},
     "train-time setting lr_schedule must be a string"),
    # the schedule object: a number instead, or a key it does not have
    ("run", {"schedule": 5}, "run setting schedule must be an object, got 5"),
    ("run", {"schedule": {"q": 0.5, "iterations": 2, "kind": "geometric", "step": 2}},
     "unknown run setting(s): schedule.step"),
    ("run", {"schedule": {"kind": "table", "rows": [[8], [4]], "every": 2}},
     "unknown run setting(s): schedule.every"),
    # a misspelt or half-remembered key: the settings it most likely meant are named
    ("run", {"schedule": {"q": 0.5, "iterations": 2, "kind": "geometric", "iteration": 2}},
     "unknown run setting(s): schedule.iteration (did you mean schedule.iterations?)"),
    # seeds within 0 … 2**31 - 1 (a 100-digit seed failed mid-run)
    ("run", {"seed": HUGE}, "seed must be within 0 … 2,147,483,647"),
    ("run", {"seed": 2**31}, "seed must be within 0 … 2,147,483,647, got 2147483648"),
    ("sweep", {"seed": HUGE},
     "seeds (seed … seed + repeats − 1) must be within 0 … 2,147,483,647"),
    ("sweep", {"seed": 2**31 - 1, "repeats": 2},
     "seeds (seed … seed + repeats − 1) must be within 0 … 2,147,483,647, got seed "
     "2147483647 with 2 repeats"),
    # the page's bound, from the CLI too (1 000 repeats planned 55 000 cells and started)
    ("sweep", {"repeats": 101}, "repeats must be at most 100, got 101"),
    # one wording for an epoch count below and above its range
    ("sweep", {"finetune_epochs": -1}, "fine-tune epochs (finetune_epochs) must be a whole "
                                       "number from 0 (one-shot) to 10,000, got -1"),
    ("train-time", {"seeds": [0, HUGE]}, "seeds must be at most 2,147,483,647"),
    ("train-time", {"seeds": [2**31]}, "seeds must be at most 2,147,483,647, got [2147483648]"),
    # widths the allocator refused with a traceback
    ("sweep", {"mlp_hidden": [1_000_000, 1_000_000]},
     "MLP hidden widths (mlp_hidden) must be at most 999,999"),
    ("train-time", {"hidden": [1_000_000, 1_000_000]}, "hidden widths must be at most 999,999"),
    # the latency input batch
    ("sweep", {"latency_batch": 65_537}, "latency batch (latency_batch) must be at most 65,536"),
]

# Values a run would choke on if they were not refused: checked only where nothing runs,
# so that a regression fails these tests instead of exhausting the shared machine.
# Creating a train-time folder does not build its model...
UNRUNNABLE = [
    ("train-time", {"arch": "cnn", "channels": [1_000_000]},
     "conv channels must be at most 999,999"),
    # models too large to allocate, with widths within 999 999 (`settings.MAX_PARAMETERS`):
    # an 80 GB allocation traceback in a run folder already made
    ("run", {"hidden": [200_000, 100_000]},
     "the MLP 64-200000-100000-10 would have 20,014,100,010 parameters (80.1 GB of float32 "
     "weights, several times that to train); at most 100,000,000 (400 MB)"),
    ("train-time", {"hidden": [200_000, 100_000]},
     "the MLP 64-200000-100000-10 would have 20,014,100,010 parameters"),
    ("train-time", {"arch": "cnn", "channels": [100_000], "hidden": [128]},
     "the CNN (LeNet-style) with channels 100000 and hidden widths 128 would have 205,801,418 "
     "parameters"),
    ("train-time", {"task": "vae", "hidden": [200_000, 100_000]},
     "the VAE 64-200000-100000-20 (decoder 20-100000-200000-64) would have 40,032,200,104 "
     "parameters"),
]
# ...but creating a sweep folder plans it (10**11 repeats ran out of memory there, a
# million cells took hours to count per baseline).
UNPLANNABLE = [
    ("sweep", {"repeats": 10**11}, "the grid has 100,000,000,000 cells (models × datasets × "
                                   "batch sizes × repeats × criteria per type × ratios); at "
                                   "most 1,000,000"),
    ("sweep", {"repeats": 500_001, "ratios": [0.0, 1.0]}, "the grid has 1,000,002 cells"),
    # planning builds every model: one of 20 G parameters failed there with a traceback
    ("sweep", {"mlp_hidden": [200_000, 100_000]},
     "the MLP 64-200000-100000-10 would have 20,014,100,010 parameters"),
    ("sweep", {"models": ["mlp", "resnet18"], "datasets": ["digits", "cifar10"],
               "mlp_hidden": [35_000]},  # fine on Digits (2.6 M), too large on CIFAR-10
     "the MLP 3072-35000-10 would have 107,905,010 parameters"),
]
# `prune --config` merges the file's schedule object into the flags' with dict(), which
# raises TypeError on a number before the config is read (commands/prune.py, not typed here).
VIA_FILE = [c for c in BAD if c[0] != "run" or not isinstance(c[1].get("schedule", {}), int)]
# keys no field has: a config built in code cannot hold them, a file can
UNKNOWN_KEYS = [
    ("train-time", {"fraction": 0.5}, "unknown train-time setting(s): fraction (did you mean "
                                      "val_fraction or prune_fraction?)"),
    ("sweep", {"modles": ["mlp"], "zzz": 1},
     "unknown sweep setting(s): modles (did you mean models?), zzz"),
]
VIA_FILE += UNKNOWN_KEYS


def _ids(cases):
    return [f"{k}-{'-'.join(s)}" for k, s, _ in cases]


def _settings(kind: str, over: dict) -> dict:
    return {**KINDS[kind].base, **over}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def _nothing_under(root: Path) -> bool:
    return not root.exists() or not any(root.rglob("*"))


PARSED = BAD + UNRUNNABLE + UNPLANNABLE + UNKNOWN_KEYS


@pytest.mark.parametrize("kind, over, says", PARSED, ids=_ids(PARSED))
def test_a_bad_value_in_a_config_is_one_line_naming_the_setting(kind, over, says):
    with pytest.raises(ExplorerError) as info:
        KINDS[kind].cls.from_dict(_settings(kind, over)).validate()
    message = str(info.value)
    assert says in message and "\n" not in message
    assert len(message) < 300  # a 100-digit value is cut short


CREATED = BAD + UNRUNNABLE


@pytest.mark.parametrize("kind, over, says", CREATED, ids=_ids(CREATED))
def test_a_config_built_in_code_is_refused_before_its_folder_exists(kind, over, says, tmp_path):
    """What a config.json could not hold as given (a string for a flag, a name that is
    no string) or a run could not survive is refused when the run is created."""
    cfg = KINDS[kind].cls(**_settings(kind, over))
    with pytest.raises(ExplorerError) as info:
        KINDS[kind].create(cfg, tmp_path / "root")
    assert says in str(info.value)
    assert _nothing_under(tmp_path / "root")


@pytest.mark.parametrize("kind, over, says", VIA_FILE, ids=_ids(VIA_FILE))
def test_cli_config_file_with_a_bad_value_exits_2_with_one_line_and_no_folder(
        kind, over, says, tmp_path, capsys):
    k = KINDS[kind]
    config = tmp_path / "config.json"
    config.write_text(json.dumps(_settings(kind, over)))
    root = tmp_path / "root"
    assert main([k.command, "--config", str(config), k.root_flag, str(root), "--quiet"]) == 2
    assert says in _one_line_error(capsys)
    assert _nothing_under(root)


@pytest.mark.parametrize("kind, over, says", BAD, ids=_ids(BAD))
def test_cli_resume_of_a_folder_whose_config_has_a_bad_value_exits_2_and_says_why(
        kind, over, says, tmp_path, capsys):
    """A folder's config.json is a config file too: read back on resume with the same
    checks."""
    paths = _folder_with_saved(kind, over, tmp_path)
    assert main([KINDS[kind].command, "--resume", str(paths.root), "--quiet"]) == 2
    assert says in _one_line_error(capsys)


WORKER_CASES = [c for c in BAD if next(iter(c[1])) in ("retrain", "save_checkpoints",
                                                        "optimizer")]


@pytest.mark.parametrize("kind, over, says", WORKER_CASES, ids=_ids(WORKER_CASES))
def test_a_worker_resuming_a_folder_with_a_bad_value_fails_saying_why(kind, over, says,
                                                                      tmp_path):
    """What a page's background worker runs: it has no terminal, so the reason is in
    status.json, and nothing was trained."""
    paths = _folder_with_saved(kind, over, tmp_path)
    module = {"run": experiment, "sweep": sweep, "train-time": train_time}[kind]
    status = module.execute(paths)
    assert status["state"] == "failed" and says in status["message"]
    assert read_record(paths.status)["state"] == "failed"
    assert not any(p.suffix == ".safetensors" for p in paths.root.rglob("*"))


def _folder_with_saved(kind: str, over: dict, tmp_path: Path):
    """A new folder of the kind's valid base config whose config.json then gets `over`."""
    k = KINDS[kind]
    paths = k.create(k.cls.from_dict(k.base), tmp_path / "root")
    record = json.loads(paths.config.read_text())
    paths.config.write_text(json.dumps({**record, **over}))
    return paths


@pytest.mark.parametrize("kind", KINDS)
def test_a_null_name_means_no_name_given(kind, tmp_path):
    k = KINDS[kind]
    cfg = k.cls.from_dict({**k.base, "name": None})
    assert cfg.name == k.cls().name
    paths = k.create(cfg, tmp_path / "root")
    assert paths.root.name == k.cls().name


VALID = [
    ("run", {}),
    ("run", {"name": "all-set", "max_drop": 2, "lr": 1, "seed": 2**31 - 1, "retrain": False,
             "criterion": "interval_adjoint", "criterion_options": {"eps": 0.1},
             "schedule": {"kind": "linear", "iterations": 3}}),
    ("run", {"schedule": {"kind": "table", "rows": [[8], [4], [1]]}}),
    # `prune --config` merges the rule's defaults into a table schedule: such folders resume
    ("run", {"schedule": {"q": 0.8, "iterations": 31, "kind": "table", "rows": [[8], [2]]}}),
    ("sweep", {}),
    ("sweep", {"ratios": [0, 0.5, 1], "seed": 2**31 - 2, "repeats": 2, "latency_batch": 65_536,
               "mlp_hidden": [8, 4], "save_checkpoints": True}),
    ("train-time", {}),
    ("train-time", {"arch": "cnn", "hidden": [], "channels": [4, 8], "seeds": [0, 2**31 - 1]}),
    ("train-time", {"task": "vae", "hidden": [16], "latent": 4, "prune_fraction": 0.25}),
]


@pytest.mark.parametrize("kind, over", VALID, ids=[f"{k}-{i}" for i, (k, _) in enumerate(VALID)])
def test_valid_configs_and_the_config_json_a_run_writes_read_back_identically(kind, over,
                                                                              tmp_path):
    k = KINDS[kind]
    given = _settings(kind, over)
    cfg = k.cls.from_dict(given)
    assert {name: getattr(cfg, name) for name in given} == given
    paths = k.create(cfg, tmp_path / "root")
    record = json.loads(paths.config.read_text())
    again = k.cls.from_dict(record)
    assert again == cfg and again.to_dict() == cfg.to_dict()
    assert again.validate() == cfg


def test_the_largest_grid_is_accepted_and_counted_without_expanding_it():
    cfg = sweep.SweepConfig.from_dict(_settings("sweep", {
        "repeats": sweep.MAX_REPEATS, "ratios": [0.0, 1.0],
        "batch_sizes": list(range(1, 1_000_000 // (2 * sweep.MAX_REPEATS) + 1))}))
    assert cfg.validate().grid_size() == 1_000_000
    # criteria count per type: a mask type ranks by magnitude when none of them fits
    cfg = sweep.SweepConfig.from_dict(_settings("sweep", {"types": ["neuron", "weight"],
                                                          "criteria": ["l1", "taylor"]}))
    assert cfg.grid_size() == len(sweep.plan(cfg).cells) == 3


def test_a_table_schedule_is_followed_and_a_rule_schedule_keeps_its_defaults():
    cfg = experiment.RunConfig.from_dict(_settings("run", {"schedule": {"kind": "cubic"}}))
    assert (cfg.schedule_config().q, cfg.schedule_config().iterations) == (0.8, 31)
    table = experiment.RunConfig.from_dict(
        _settings("run", {"schedule": {"kind": "table", "rows": [[8], [3]]}}))
    assert table.validate().schedule_table().widths == [(8,), (3,)]


# ------------------------------------------------------------------ the checker itself

@dataclass
class _Inner:
    rate: float = 0.5
    tags: list[str] = field(default_factory=list)


@dataclass
class _Outer:
    count: int = 1
    inner: _Inner = field(default_factory=_Inner)
    limit: int | None = None
    extra: typing.Optional[dict[str, int]] = None


def test_nested_objects_optional_values_and_numbers_are_checked_by_their_annotations():
    from explorer_core.settings import check_fields, from_json

    built = from_json(_Outer, {"count": 2, "inner": {"rate": 1, "tags": ["a"]}, "limit": None,
                               "extra": {"x": 3}}, "demo")
    assert built == _Outer(2, _Inner(1, ["a"]), None, {"x": 3})
    for bad, says in [({"count": True}, "demo setting count must be a whole number, got True"),
                      ({"inner": {"rate": "1"}}, "demo setting inner.rate must be a number"),
                      ({"inner": {"tags": ["a", 2]}}, "inner.tags must be a list of strings"),
                      ({"inner": {"rates": 1}}, "unknown demo setting(s): inner.rates"),
                      ({"inner": 3}, "demo setting inner must be an object, got 3"),
                      ({"limit": 2.0}, "limit must be a whole number or null, got 2.0"),
                      ({"extra": {"x": "3"}}, "extra must be an object of whole numbers or null"),
                      ([1, 2], "a demo config must be a JSON object")]:
        with pytest.raises(ExplorerError) as info:
            from_json(_Outer, bad, "demo")
        assert says in str(info.value)
    with pytest.raises(ExplorerError, match="demo setting inner.tags must be a list of strings"):
        check_fields(_Outer(inner=_Inner(tags=("a",))), "demo")


def test_annotations_are_resolved_once_per_class(monkeypatch):
    """Configs are read for every run a page lists: reading one must not evaluate the
    class's annotations again."""
    from explorer_core import settings

    settings.field_types.cache_clear()
    calls = []
    real = typing.get_type_hints
    monkeypatch.setattr(settings.typing, "get_type_hints",
                        lambda cls, *a, **kw: calls.append(cls) or real(cls, *a, **kw))
    for _ in range(50):
        experiment.RunConfig.from_dict(KINDS["run"].base)
        sweep.SweepConfig.from_dict(KINDS["sweep"].base).validate()
    assert sorted(c.__name__ for c in calls) == ["RunConfig", "SweepConfig"]


@pytest.mark.parametrize("command, flags, says", [
    ("prune", ["--dense-epochs", "0"], "dense epochs must be a whole number from 1 to 10,000, got 0"),
    ("prune", ["--dense-epochs", "100000"], "dense epochs must be a whole number from 1 to 10,000, got 100000"),
    ("prune", ["--retrain-epochs", "20000"], "retrain epochs must be a whole number from 0 to 10,000, got 20000"),
    ("compare", ["--dense-epochs", "100000000", "--estimate"],
     "dense epochs (dense_epochs) must be a whole number from 1 to 10,000, got 100000000"),
    ("compare", ["--finetune-epochs", "10001", "--estimate"],
     "fine-tune epochs (finetune_epochs) must be a whole number from 0 (one-shot) to 10,000, got 10001"),
    ("train-time", ["--epochs", "10001"], "total epochs must be a whole number from 2 to 10,000, got 10001"),
])
def test_every_training_is_capped_at_one_epoch_limit_before_anything_runs(tmp_path, monkeypatch,
                                                                         capsys, command, flags,
                                                                         says):
    """`prune --dense-epochs 0` pruned an untrained model for 22 iterations; `compare
    --dense-epochs 100000000` planned a 15 929-minute sweep; the pages allowed 1 000 or
    10 000. One limit (settings.MAX_EPOCHS), checked before a folder is made."""
    from explorer_core.cli import main

    monkeypatch.setenv("EXPLORER_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("EXPLORER_SWEEPS", str(tmp_path / "sweeps"))
    assert main([command, *flags, "--quiet"] if "--estimate" not in flags else [command, *flags]) == 2
    assert capsys.readouterr().err == f"error: {says}\n"
    assert not list(tmp_path.rglob("config.json"))


def test_a_count_and_its_noun_agree():
    """One place for "1 cell" / "3 cells" (it was written inline in eleven messages)."""
    import numpy as np

    from explorer_core.settings import counted

    assert [counted(n, "cell") for n in (0, 1, 2)] == ["0 cells", "1 cell", "2 cells"]
    assert counted(12_000, "cell") == "12,000 cells"
    assert counted(1.0, "point") == "1 point" and counted(0.5, "point") == "0.5 points"
    assert counted(np.int64(1), "epoch") == "1 epoch"  # a count read from a table
