"""Iterative pruning runs: prune → retrain → validate, one iteration per retain.txt row.

Iteration 0 is the dense model (reused from `models_cache/` when identical); iteration
i ≥ 1 loads iteration i-1's best model, prunes it to row i's widths, retrains and
validates. Every iteration's seed is `seed + i` and every input to it is on disk, so a
run killed anywhere resumes from its last completed iteration and ends with exactly the
results an uninterrupted run would have written.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from . import __version__
from .cache import get_baseline
from .checkpoint import load_checkpoint, refuse_diverged, save_checkpoint
from .criteria import CRITERIA, CriterionOptions
from .data import Dataset, availability, check_val_fraction, get_info, load_dataset
from .errors import Cancelled, ExplorerError
from .fileio import atomic_write_json, write_table
from .jobs import worker_session
from .models import MLP, default_spec, validate_spec
from .rundir import (ITERATIVE_RUN, TRAIN_COLUMNS, VALIDATION_COLUMNS, RunPaths, WrongKindError,
                     append_event, check_kind, failed_run, new_run_dir, read_events,
                     read_json, read_record, session_start, truncate_events, write_status)
from .schedule import (RetentionTable, ScheduleConfig, read_retain, retention_table,
                       table_from_rows, write_retain)
from .settings import (check_epochs, check_fields, check_seed, edited_after_start, first_edited,
                       from_json, shown)
from .surgery import prune_to_widths
from .training import EpochMetrics, TrainConfig, evaluate, lower_the_rate, train

# `RunConfig.schedule["kind"]` of a run that follows a given table (`prune --retain`)
TABLE_SCHEDULE = "table"
# Written beside the settings in config.json; not settings themselves.
_RECORD_KEYS = frozenset({"versions", "spec", "created"})


@dataclass(frozen=True)
class RuleSchedule:
    """`RunConfig.schedule` of a run that follows a rule: `ScheduleConfig` without the
    widths (those are the run's `hidden`). A dataclass so that `settings.from_json`
    checks its keys and types like the run's own: `"q": "0.5"` was accepted and
    `"iterations": 2.5` became 2."""
    q: float = 0.8
    iterations: int = 31
    kind: str = "geometric"


@dataclass(frozen=True)
class TableSchedule:
    """`RunConfig.schedule` of a run that follows a given table (`prune --retain`).

    `rows` are checked row by row by `schedule.table_from_rows`, whose messages name
    the row. `q` and `iterations` mean nothing here, but `prune --config` merges the
    rule's defaults into any schedule object it reads, so run folders made that way
    hold them: they are accepted (typed) and ignored, so those runs still resume."""
    kind: str = TABLE_SCHEDULE
    rows: list = field(default_factory=list)
    q: float | None = None
    iterations: int | None = None


@dataclass
class RunConfig:
    """Everything that defines a run; saved as config.json and read back on resume."""
    name: str = "run"
    dataset: str = "digits"
    hidden: list[int] = field(default_factory=lambda: [256, 64])
    activation: str = "relu"
    schedule: dict = field(default_factory=lambda: {"q": 0.8, "iterations": 31,
                                                    "kind": "geometric"})
    criterion: str = "interval_adjoint"
    criterion_options: dict = field(default_factory=dict)
    retrain: bool = True
    dense_epochs: int = 5
    retrain_epochs: int = 1
    patience: int = 0
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0
    val_fraction: float = 0.1
    max_drop: float | None = None  # stop when test accuracy falls > this many points below dense
    min_neurons: int = 1  # do not prune below this many hidden neurons in total
    use_cache: bool = True

    def validate(self) -> "RunConfig":
        """One-line ExplorerError for any bad setting. Types first: the value checks
        below assume them (a list as the dataset name failed a dict lookup)."""
        check_fields(self, "run")
        validate_spec(model_spec(self, get_info(self.dataset)))  # its activation, widths
        check_val_fraction(self.val_fraction, self.dataset)
        if self.criterion not in CRITERIA:
            raise ExplorerError(f"unknown criterion {self.criterion!r}; choose one of "
                                f"{', '.join(CRITERIA)}")
        if not self.hidden:
            raise ExplorerError("an iterative pruning run needs at least one hidden layer")
        self.schedule_table()
        CriterionOptions.from_dict(self.criterion_options, self.criterion)
        check_epochs(self.dense_epochs, "dense epochs", 1)  # 0 pruned an untrained model
        self.train_config(0).validate()
        if self.retrain_epochs < 0 or (self.retrain and self.retrain_epochs < 1):
            raise ExplorerError(f"retraining needs at least 1 epoch per iteration, got "
                                f"{self.retrain_epochs}")
        check_epochs(self.retrain_epochs, "retrain epochs", 0)
        if self.max_drop is not None and not self.max_drop >= 0:
            raise ExplorerError(f"max accuracy drop must be ≥ 0 points, got {self.max_drop}")
        if self.min_neurons < 1:
            raise ExplorerError(f"minimum neurons must be ≥ 1, got {self.min_neurons}")
        check_seed(self.seed, "seed")
        return self

    def schedule_settings(self) -> RuleSchedule | TableSchedule:
        """The schedule object, its keys and types checked (by the form its kind picks)."""
        if not isinstance(self.schedule, Mapping):
            raise ExplorerError(f"the schedule must be an object, got {self.schedule!r}")
        form = TableSchedule if self.schedule.get("kind") == TABLE_SCHEDULE else RuleSchedule
        return from_json(form, self.schedule, "run", prefix="schedule.")

    def schedule_config(self) -> ScheduleConfig:
        """The rule of a run that follows one (not of a table: that has no rule)."""
        s = self.schedule_settings()
        if not isinstance(s, RuleSchedule):
            raise ExplorerError("this run follows a given table, not a schedule rule")
        return ScheduleConfig(tuple(self.hidden), s.q, s.iterations, s.kind)

    def schedule_table(self) -> RetentionTable:
        """The widths per iteration: from a rule (`ScheduleConfig`), or — kind "table" —
        the rows of a retain.txt the run follows as given (`prune --retain`), whose
        first row must be the dense widths."""
        s = self.schedule_settings()
        if isinstance(s, RuleSchedule):
            return retention_table(self.schedule_config())
        table = table_from_rows(s.rows, "the schedule's table")
        if list(table.dense) != list(self.hidden):
            raise ExplorerError(f"the schedule's table starts at widths "
                                f"{' '.join(map(str, table.dense))} but the model's hidden "
                                f"widths are {' '.join(map(str, self.hidden))}")
        return table

    def train_config(self, iteration: int) -> TrainConfig:
        return TrainConfig(epochs=self.dense_epochs if iteration == 0 else self.retrain_epochs,
                           batch_size=self.batch_size, lr=self.lr, optimizer=self.optimizer,
                           patience=self.patience, seed=self.seed + iteration)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunConfig":
        """A run.json or a run folder's config.json, every value of its setting's type
        (`settings.from_json`); `"name": null` means no name given."""
        return from_json(cls, d, "run", ignore=_RECORD_KEYS, null_is_default=("name",))


def plan(cfg: RunConfig) -> RetentionTable:
    """The schedule rows this run will visit, cut at the minimum-neuron rule."""
    table = cfg.schedule_table()
    rows = [w for w in table.widths if sum(w) >= cfg.min_neurons] or table.widths[:1]
    return RetentionTable(table.dense, rows)


def _check_something_to_prune(cfg: RunConfig) -> None:
    """Refuse a minimum-neuron rule that cuts every pruning step: the run trained the
    dense model only and reported "schedule complete" (1 000 typed for an 8-4 MLP)."""
    table = cfg.schedule_table()
    if len(table) > 1 and len(plan(cfg)) == 1:
        first = sum(table.widths[1])
        raise ExplorerError(f"stopping at {cfg.min_neurons:,} hidden neurons leaves nothing to "
                            f"prune: the dense model has {sum(table.dense):,} and the first "
                            f"pruning step keeps {first:,}; set the minimum to {first:,} or "
                            f"fewer")


def _end_reason(cfg: RunConfig, table: RetentionTable) -> str:
    """Why a run that went through its plan ended: the schedule's end, or the
    minimum-neuron rule that cut it short (`plan`)."""
    full = cfg.schedule_table()
    if len(table) < len(full):
        return (f"stopped after iteration {len(table) - 1}: the next step would keep "
                f"{sum(full.widths[len(table)]):,} hidden neurons, fewer than the minimum of "
                f"{cfg.min_neurons:,}")
    return "schedule complete"


def model_spec(cfg: RunConfig, data_info) -> dict:
    spec = default_spec("mlp", data_info.channels, data_info.size, data_info.num_classes,
                        list(cfg.hidden))
    spec["activation"] = cfg.activation
    return spec


def create_run(cfg: RunConfig, root: Path | None = None) -> RunPaths:
    """Make the run folder with config.json, retain.txt and a queued status.

    A dataset missing offline is refused here, before any folder exists, so a typo
    does not leave a failed run behind.
    """
    cfg.validate()
    _check_something_to_prune(cfg)
    ok, reason = availability(cfg.dataset)
    if not ok:
        raise ExplorerError(reason)
    paths = new_run_dir(cfg.name, root)
    info = get_info(cfg.dataset)
    record = {**cfg.to_dict(), "spec": model_spec(cfg, info), "created": time.time(),
              "versions": {"explorer": __version__, "torch": torch.__version__}}
    atomic_write_json(paths.config, record)
    table = plan(cfg)
    write_retain(paths.retain, table)
    write_status(paths, "queued", iteration=None, total_iterations=len(table),
                 total_epochs=total_epochs(cfg, len(table)))
    return paths


def _stopped_message(paths: RunPaths) -> str:
    """Where a resume of a stopped run starts: "from the last completed iteration" was
    said of runs stopped before their dense model was done, which had none."""
    done = paths.completed_iterations()
    if not done:
        return "stopped by request before the dense model was done; resume starts it again"
    return (f"stopped by request; resume continues after iteration {max(done)}, the last "
            "completed")


def total_epochs(cfg: RunConfig, iterations: int) -> int:
    return cfg.dense_epochs + (iterations - 1) * (cfg.retrain_epochs if cfg.retrain else 0)


def load_run_config(paths: RunPaths) -> RunConfig:
    """The run's settings, refused (one line) when they no longer fit what the run has
    recorded: resuming then mixed models or failed deep inside training."""
    record = read_json(paths.config)
    if not isinstance(record, dict):
        raise ExplorerError(f"{paths.root} is not a run folder (no readable config.json)")
    check_kind(paths, record, ITERATIVE_RUN)
    if not isinstance(record.get("spec"), dict):  # create_run writes the model it prunes there
        raise ExplorerError(f"{paths.config} has no model spec: it was not made by this "
                            "tool; start a new run instead")
    cfg = RunConfig.from_dict(record).validate()
    check_recorded_models(paths, cfg, record["spec"])
    return cfg


# Which settings of config.json decide each key of the model spec (for the message).
_SPEC_SETTINGS = {"in": "dataset", "out": "dataset", "input_shape": "dataset",
                  "hidden": "hidden", "activation": "activation", "arch": "model"}


def check_recorded_models(paths: RunPaths, cfg: RunConfig, spec: Mapping[str, Any]) -> None:
    """Refuse settings edited after the run began (e.g. its dataset, digits →
    fashion_mnist, or its learning rate): the spec recorded in config.json and each
    completed iteration's best_model.json must agree with the model the settings imply,
    and the settings each iteration recorded (`recorded_settings`) with config.json's,
    or a resume fails deep in training ("mat1 and mat2 shapes cannot be multiplied") or
    mixes two runs in one.

    Only keys that are recorded and differ count: an older version's sidecar without
    `input_shape` still resumes.
    """
    implied = model_spec(cfg, get_info(cfg.dataset))
    table = plan(cfg)
    _check_spec(spec, implied, f"{paths.config.name}'s model spec", cfg)
    for i in paths.completed_iterations():
        meta = read_record(paths.best_model_json(i))
        where = f"iteration {i}'s {paths.best_model_json(i).name}"
        recorded = meta.get("spec")
        if isinstance(recorded, dict):
            # an iteration's widths are its schedule row (the dense widths at 0)
            widths = {"hidden": list(table.widths[i])} if i < len(table) else {}
            _check_spec(recorded, {**implied, **widths}, where, cfg,
                        {"hidden": "hidden" if i == 0 else "schedule"})
        if isinstance(meta.get("dataset"), str) and meta["dataset"] != cfg.dataset:
            raise _edited(where, f"dataset {meta['dataset']}", "dataset", cfg.dataset)
        _check_settings(meta, cfg, i, where)


# The settings of config.json an iteration's result depends on, recorded with it so a
# resume can tell they were edited since: the dense model (iteration 0) depends on its
# training, every later one on the pruning and retraining too. (Dataset, widths and
# schedule are checked through the model spec; `max_drop` and `use_cache` change no result.)
_DENSE_SETTINGS = ("dense_epochs", "optimizer", "lr", "batch_size", "seed", "val_fraction")
_PRUNED_SETTINGS = _DENSE_SETTINGS + ("criterion", "criterion_options", "retrain",
                                      "retrain_epochs", "patience")


def recorded_settings(cfg: RunConfig, iteration: int) -> dict[str, Any]:
    """What iteration `iteration`'s best_model.json records of `cfg` (`check_recorded_models`)."""
    names = _DENSE_SETTINGS if iteration == 0 else _PRUNED_SETTINGS
    return {name: getattr(cfg, name) for name in names}


def _check_settings(meta: Mapping[str, Any], cfg: RunConfig, i: int, where: str) -> None:
    """Raise `_edited` for the first setting iteration `i` recorded with another value
    than config.json now has. Records of older versions hold no `settings`: their
    criterion (recorded since the first version) is still checked."""
    recorded = meta.get("settings")
    if not isinstance(recorded, dict):
        recorded = {"criterion": meta["criterion"]} if i > 0 and "criterion" in meta else {}
    now = recorded_settings(cfg, i)
    name = first_edited(recorded, now)
    if name is not None:
        raise _edited(where, f"{name} {shown(recorded[name])}", name, shown(now[name]))


def _check_spec(recorded: Mapping[str, Any], implied: Mapping[str, Any], where: str,
                cfg: RunConfig, settings: Mapping[str, str] | None = None) -> None:
    """Raise `_edited` for the first key `recorded` holds with another value than
    `implied`, naming the setting of config.json that decides it."""
    for key, value in implied.items():
        if key in recorded and recorded[key] != value:
            setting = {**_SPEC_SETTINGS, **(settings or {})}.get(key, key)
            now = getattr(cfg, setting, value)
            needs = "" if (setting, now) == (key, value) else f" (which needs {key} {shown(value)})"
            raise _edited(where, f"{key} {shown(recorded[key])}", setting, f"{shown(now)}{needs}")


def _edited(where: str, recorded: str, setting: str, now: str) -> ExplorerError:
    return edited_after_start(f"{where} records {recorded}", setting, now)


# ------------------------------------------------------------------ one iteration

@dataclass
class _Context:
    paths: RunPaths
    cfg: RunConfig
    data: Dataset
    table: RetentionTable
    should_stop: Callable[[], bool]
    on_event: Callable[[dict], None]
    cache_root: Path | None
    # the checkpoint a resume goes on from, as its check read it: (iteration, model),
    # taken by the first iteration run (a ResNet-18 checkpoint was read twice more)
    restart: tuple[int, torch.nn.Module] | None = None


def _emit(ctx: _Context, event: dict) -> None:
    append_event(ctx.paths, event)
    ctx.on_event(event)


def _epoch_logger(ctx: _Context, iteration: int) -> Callable[[EpochMetrics], None]:
    def log(m: EpochMetrics) -> None:
        _emit(ctx, {"type": "epoch", "iteration": iteration, **m.to_dict()})
        write_status(ctx.paths, "running", iteration=iteration, epoch=m.epoch)
    return log


def _evaluate_all(model: torch.nn.Module, data: Dataset) -> dict[str, float]:
    tr_loss, tr_acc = evaluate(model, data.train)
    te_loss, te_acc = evaluate(model, data.test)
    return {"train_loss": tr_loss, "train_acc": tr_acc, "test_loss": te_loss, "test_acc": te_acc}


def _save_iteration(ctx: _Context, i: int, model: MLP, history: list[dict], metrics: dict,
                    extra: dict) -> None:
    widths = ctx.table.widths[i]
    percent = ctx.table.percent(widths)
    base_spec = read_json(ctx.paths.config)["spec"]
    meta = {"iteration": i, "metrics": metrics, "widths": list(widths), "percent_retained": percent,
            "dataset": ctx.cfg.dataset, "normalisation": {"mean": list(ctx.data.info.mean),
                                                          "std": list(ctx.data.info.std)},
            "class_names": list(ctx.data.info.classes), "criterion": ctx.cfg.criterion,
            "settings": recorded_settings(ctx.cfg, i), **extra}
    out = ctx.paths.iteration_dir(i)
    write_table(ctx.paths.train_results(i), TRAIN_COLUMNS,
                [[h["train_loss"], h["train_acc"], h["test_loss"], h["test_acc"]] for h in history])
    if i >= 1:
        write_table(ctx.paths.validation_results(i), VALIDATION_COLUMNS,
                    [[metrics["train_loss"], metrics["test_loss"], metrics["train_acc"],
                      metrics["test_acc"], percent]])
    # the checkpoint's JSON is written last: its presence marks the iteration complete
    save_checkpoint(model, base_spec, out / "best_model", meta)


def _dense_iteration(ctx: _Context) -> dict:
    cfg = ctx.cfg
    spec = read_json(ctx.paths.config)["spec"]
    tcfg = cfg.train_config(0)
    baseline = get_baseline(spec, ctx.data, tcfg, ctx.cache_root if cfg.use_cache else
                            ctx.paths.root / ".baseline", on_epoch=_epoch_logger(ctx, 0),
                            should_stop=ctx.should_stop)
    if baseline.from_cache:  # replay the cached history so the live charts show it;
        for h in baseline.history:  # marked, so it sets no pace (`results.run_progress`)
            _emit(ctx, {"type": "epoch", "iteration": 0, **h, "replayed": True})
    metrics = _evaluate_all(baseline.model, ctx.data)
    _save_iteration(ctx, 0, baseline.model, baseline.history, metrics,
                    {"baseline_cache": baseline.key, "from_cache": baseline.from_cache})
    return metrics


def _prune_iteration(ctx: _Context, i: int) -> dict:
    cfg = ctx.cfg
    if ctx.restart is not None and ctx.restart[0] == i - 1:
        previous, ctx.restart = ctx.restart[1], None
    else:
        previous = load_checkpoint(ctx.paths.best_model(i - 1)).model
    options = CriterionOptions.from_dict({**cfg.criterion_options, "seed": cfg.seed + i})
    calibration = ctx.data.train if CRITERIA[cfg.criterion].needs_data else None
    model = prune_to_widths(previous, list(ctx.table.widths[i]), cfg.criterion, calibration,
                            options)
    before = _evaluate_all(model, ctx.data)
    _emit(ctx, {"type": "pruned", "iteration": i, "widths": list(ctx.table.widths[i]),
                **{f"pre_{k}": v for k, v in before.items()}})
    history: list[dict] = []
    if cfg.retrain:
        result = train(model, ctx.data, cfg.train_config(i), on_epoch=_epoch_logger(ctx, i),
                       should_stop=ctx.should_stop)
        history = [m.to_dict() for m in result.history]
        # not saved as the iteration's best model: the next iteration failed to load it,
        # and a last iteration's "finished" the run with it
        refuse_diverged(model, f"iteration {i}'s retraining", lower_the_rate(cfg.train_config(i)))
    metrics = _evaluate_all(model, ctx.data)
    _save_iteration(ctx, i, model, history, metrics,
                    {f"pre_retrain_{k}": v for k, v in before.items()})
    return metrics


# ------------------------------------------------------------------ the loop

def execute(paths: RunPaths, from_iteration: int | None = None,
            should_stop: Callable[[], bool] | None = None,
            on_event: Callable[[dict], None] | None = None,
            cache_root: Path | None = None) -> dict:
    """Run (or resume) the loop in this process; returns the final status.

    Holds the run's lock for the whole time, so a second writer is refused.
    """
    with worker_session(paths, should_stop) as stop:
        return _execute_locked(paths, from_iteration, stop, on_event or (lambda e: None),
                               cache_root)


def resume_point(paths: RunPaths, from_iteration: int | None,
                 iterations: int | None = None) -> int:
    """The first iteration a (re)start runs. `iterations`, the schedule's length: a
    restart must redo one of them (restarting a complete run at its end, which the
    message offered, did nothing)."""
    done = paths.completed_iterations()
    contiguous = 0
    while contiguous in done:
        contiguous += 1
    if from_iteration is None:
        return contiguous
    if from_iteration < 0:
        raise ExplorerError(f"cannot restart at iteration {from_iteration}: "
                            "the iteration must be 0 or more")
    last = contiguous if iterations is None else min(contiguous, iterations - 1)
    if from_iteration > last:
        raise ExplorerError(f"cannot restart at iteration {from_iteration}: iterations 0–"
                            f"{contiguous - 1} are complete, so restart at {last} or earlier"
                            if contiguous else
                            f"cannot restart at iteration {from_iteration}: nothing is complete yet")
    return from_iteration


def _check_retain(paths: RunPaths, table: RetentionTable) -> None:
    """The run folder's retain.txt is the schedule the loop follows (written from
    config.json); an edited one used to be ignored silently, leaving a folder whose
    retain.txt and checkpoints disagree. A missing one is written again."""
    if not paths.retain.exists():
        write_retain(paths.retain, table)
        return
    try:
        found = read_retain(paths.retain).widths
    except ExplorerError:
        found = None
    if found != table.widths:
        raise ExplorerError(f"{paths.retain} no longer matches the schedule in config.json "
                            f"(edited?); the run follows config.json. Delete retain.txt to have "
                            f"it written again, or follow the edited table in a new run: "
                            f"prune --retain <file>")


def _iteration_event(table: RetentionTable, i: int, metrics: dict) -> dict:
    return {"type": "iteration", "iteration": i, "widths": list(table.widths[i]),
            "percent_retained": table.percent(table.widths[i]), **metrics}


def _restore_iteration_events(paths: RunPaths, table: RetentionTable, start: int) -> None:
    """Log again, from its checkpoint, a kept iteration whose event a kill (between the
    checkpoint and the event) or a full disk lost: the page's per-iteration charts and
    metrics are drawn from the events, and missed that iteration for good."""
    logged = {e.get("iteration") for e in read_events(paths) if e.get("type") == "iteration"}
    for i in range(min(start, len(table))):
        if i not in logged:
            metrics = read_record(paths.best_model_json(i)).get("metrics")
            if isinstance(metrics, dict):
                append_event(paths, _iteration_event(table, i, metrics))


def _recorded_accuracy(paths: RunPaths, i: int) -> float | None:
    """Test accuracy of a completed iteration, from its checkpoint's metadata."""
    return (read_record(paths.best_model_json(i)).get("metrics") or {}).get("test_acc")


def _stopping_reason(cfg: RunConfig, dense_acc: float | None, acc: float | None,
                     i: int) -> str | None:
    """Why the run ends after iteration `i` at test accuracy `acc` (the max-drop rule);
    None to go on."""
    if cfg.max_drop is None or i == 0 or dense_acc is None or acc is None:
        return None
    if dense_acc - acc <= cfg.max_drop:
        return None
    return (f"stopped at iteration {i}: test accuracy {acc:.2f} % is more than "
            f"{cfg.max_drop:g} points below the dense {dense_acc:.2f} %")


def check_resumable(paths: RunPaths, from_iteration: int | None = None) -> int:
    """What a worker refuses before it touches the run (settings edited since it began,
    an edited retain.txt, a restart past the completed iterations, its dataset missing,
    the checkpoint it would go on from unreadable); returns the first iteration it would
    run, or raises `ExplorerError` with the reason.

    The Iterative page asks this before it launches a worker: launched, the refusal
    only reached the page as a "failed" status, written over a finished run's."""
    cfg, table = _checked_plan(paths)
    start = resume_point(paths, from_iteration, len(table))
    ok, reason = availability(cfg.dataset)
    if not ok:
        raise ExplorerError(reason)
    if start > 0:
        _check_restart_checkpoint(paths, start - 1)
    return start


def _checked_plan(paths: RunPaths) -> tuple[RunConfig, RetentionTable]:
    """The run's settings and schedule, refused when edited since the run began."""
    cfg = load_run_config(paths)
    table = plan(cfg)
    _check_retain(paths, table)
    return cfg, table


def _clear_from(paths: RunPaths, table: RetentionTable, start: int) -> None:
    """Remove what a (re)start at iteration `start` redoes: its iterations and the
    concatenated results that held them (rebuilt at the end), and their events."""
    redone = [paths.root / str(i) for i in paths.numbered_iterations() if i >= start]
    for child in redone:
        shutil.rmtree(child)
    if redone:
        for stale in (paths.validations, paths.accuracies_png, paths.losses_png):
            stale.unlink(missing_ok=True)
    truncate_events(paths, start)
    _restore_iteration_events(paths, table, start)


def _check_restart_checkpoint(paths: RunPaths, i: int) -> torch.nn.Module:
    """The checkpoint a resume prunes from (iteration `i`'s) must load, named if not;
    returns its model."""
    try:
        return load_checkpoint(paths.best_model(i)).model
    except ExplorerError as exc:
        raise ExplorerError(f"iteration {i}'s checkpoint cannot be read, so the run cannot "
                            f"go on from it: {exc}; restart from an earlier iteration "
                            f"(--from-iteration {i} or less)") from None


def _execute_locked(paths: RunPaths, from_iteration: int | None, stop: Callable[[], bool],
                    on_event: Callable[[dict], None], cache_root: Path | None) -> dict:
    # Everything a resume needs is read before anything is removed: the data and the
    # checkpoint it restarts from were read only after the iterations from the restart
    # point on had been deleted, so a dataset gone missing cost a finished run its
    # iterations and left it "failed".
    try:
        cfg, table = _checked_plan(paths)
    except WrongKindError:  # not this kind's status to overwrite
        raise
    except ExplorerError as exc:  # a launched worker has no terminal: the page reads this
        return write_status(paths, "failed", message=str(exc))
    start = resume_point(paths, from_iteration, len(table))
    restart = None
    if start > 0:
        try:
            restart = (start - 1, _check_restart_checkpoint(paths, start - 1))
        except ExplorerError as exc:
            return write_status(paths, "failed", message=str(exc))
    if start > 1 and start < len(table):
        reason = _stopping_reason(cfg, _recorded_accuracy(paths, 0),
                                  _recorded_accuracy(paths, start - 1), start - 1)
        if reason:  # continuing would go past the rule that ended the run
            return write_status(paths, "finished", message=reason, iteration=start - 1)
    try:
        data = load_dataset(cfg.dataset, seed=cfg.seed, val_fraction=cfg.val_fraction)
        _clear_from(paths, table, start)
        write_status(paths, "running", pid=os.getpid(), iteration=start, epoch=0, message="",
                     total_iterations=len(table), total_epochs=total_epochs(cfg, len(table)),
                     **session_start(paths, anew=start == 0))
        ctx = _Context(paths, cfg, data, table, stop, on_event, cache_root, restart)
        dense = read_record(paths.best_model_json(0)).get("metrics") if start > 0 else None
        reason = _end_reason(cfg, table)
        for i in range(start, len(table)):
            write_status(paths, "running", iteration=i, epoch=0)
            metrics = _dense_iteration(ctx) if i == 0 else _prune_iteration(ctx, i)
            dense = dense or metrics
            _emit(ctx, _iteration_event(table, i, metrics))
            stopped = _stopping_reason(cfg, dense["test_acc"], metrics["test_acc"], i)
            if stopped:
                reason = stopped
                break
            if stop():
                raise Cancelled()
        from .results import concatenate, images_note

        reason += images_note(lambda: concatenate(paths))
        return write_status(paths, "finished", message=reason, finished=time.time())
    except Cancelled:
        return write_status(paths, "stopped", message=_stopped_message(paths))
    except Exception as exc:  # one line to the page; a trace nobody foresaw to the log
        return failed_run(paths, exc, "the run's files")
