"""Compare sweeps: models × datasets × batch sizes × seeds × pruning types × criteria × ratios.

A sweep answers "which pruning, at which ratio, on which model, costs how much accuracy
and buys how much compute?" on one harness. Its grid expands into cells; the cells of
one (model, dataset, batch size, seed) share one dense baseline, trained once and cached
in `models_cache/` (keyed by spec, dataset, training config and seed), so every pruned
cell — and every later sweep with the same settings — reuses it.

Each cell prunes a copy of its baseline (`pruning_types`), optionally fine-tunes it,
evaluates it on the test split and measures its costs; the result is one JSON file in
the sweep folder, written last, so a sweep killed anywhere resumes by skipping the cells
whose file exists. The cells of one pruning type and criterion (a "block", in rising
ratio) get their pruned models from one series — one scoring, one traced dependency
graph — a chunk at a time, and a chunk's models are timed in one interleaved
measurement with the dense model. Costs that depend only on the architecture (MACs,
FLOPs, latency of structural models) are measured once per distinct set of widths and
shared by the cells that have it — different criteria at one ratio give the same widths;
masked models keep the dense shapes, so their latency is timed once per mask type.

Ratio 0 cells are the baseline itself (no fine-tuning: nothing was pruned); ratio 1
cells are dead models (`pruning_types.dead_model`), reported with the accuracy of their
constant prediction. A cell whose criterion cannot handle the model (e.g. contribution
across residual adds) is recorded as failed with the reason and the sweep goes on; so
is every cell of a group whose baseline diverged (weights not finite), and a cell whose
fine-tuning did — neither saves a checkpoint.
"""
from __future__ import annotations

import itertools
import os
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Iterator, Mapping

import torch
from torch import nn

from . import __version__
from .cache import Baseline, get_baseline
from .checkpoint import checkpoint_intact, link_checkpoint, refuse_diverged, save_checkpoint
from .criteria import CRITERIA, CriterionOptions, compute_scores
from .data import Dataset, availability, check_val_fraction, get_info, load_dataset
from .errors import Cancelled, ExplorerError, TrainingDiverged, raise_if_interrupted
from .fileio import OrderedWriter, atomic_write_json
from .jobs import record_ctrl_c, worker_session
from .labels import criterion_name, dataset_name, model_name, type_name
from .masks import is_masked, permanent_copy
from .metrics import (MAX_LATENCY_BATCH, CostReport, LatencyConfig, PeakMemory, cost_report,
                      count_nonzero, measure_latencies)
from .models import (ARCHS, Spec, architecture_key, hidden_widths, spec_for_dataset,
                     validate_spec)
from .pruning_types import (ALL_CRITERIA, PRUNING_TYPES, criteria_for, dead_model,
                            pruned_widths, scored_layers)
from .rundir import (COMPARE_SWEEP, SweepPaths, WrongKindError, append_event, check_kind,
                     check_new_run_dir, default_sweeps_root, failed_run, failed_write,
                     log_traceback, new_run_dir, read_json, session_start, write_status)
from .schedule import MAX_WIDTH
from .settings import MAX_SEED, check_epochs, check_fields, counted, from_json, shown
from .training import (OPTIMIZERS, TrainConfig, evaluate, lower_the_rate, resolve_device,
                       start_up_probe, train)

DEFAULT_RATIOS = [round(i / 10, 1) for i in range(11)]
BATCH_PRESETS = (32, 256, 4000, 60000)
ACTIVITY_EVERY_S = 0.5
CHUNK_BYTES = 1 << 30  # pruned models of a block held (and timed) together
# Untimed runs before a latency measurement: only a model's first run is cold (MLP 0.87 ms
# then 0.22, 0.16, 0.14 …; CNN on Digits 3.1 then 1.2, 1.1 …; ResNet-18 113 then 94, 93 …),
# and the median of the interleaved repeats sets a slow second run aside: the speed-ups
# of nine pruned Digits CNNs and MLPs after one warm-up run were those after two, within
# the spread of repeated measurements (±0.1), for 9 % less timing.
LATENCY_WARMUP = 1
SPLIT_SEED = 0  # one train / validation split for every seed: repeats vary init and order
# Cells a sweep may have: the plan holds every cell in memory (10**11 repeats ran out of
# memory while it was built), and a million cells is weeks of work on a CPU.
MAX_GRID_CELLS = 1_000_000
# seeds per grid point: the page allowed 100 and the CLI any number (1 000 repeats of
# 55 cells planned 55 000 cells over 1 000 baselines and started)
MAX_REPEATS = 100


@dataclass
class SweepConfig:
    """Everything that defines a sweep (saved as config.json, read back on resume).

    `ratios` are fractions in [0, 1] of units (structural types) or weights (masks)
    removed. `criteria` are filtered per type (`pruning_types.criteria_for`): mask
    types use `magnitude` / `random`, structural types any core criterion.
    `repeats` runs every cell with seeds `seed … seed + repeats - 1`.
    `latency_repeats` = 0 skips latency timing.
    """
    name: str = "sweep"
    models: list[str] = field(default_factory=lambda: ["mlp"])
    datasets: list[str] = field(default_factory=lambda: ["digits"])
    batch_sizes: list[int] = field(default_factory=lambda: [64])
    types: list[str] = field(default_factory=lambda: ["neuron", "weight"])
    criteria: list[str] = field(default_factory=lambda: ["interval_adjoint", "l1", "random",
                                                         "magnitude"])
    ratios: list[float] = field(default_factory=lambda: list(DEFAULT_RATIOS))
    finetune_epochs: int = 0
    repeats: int = 1
    seed: int = 0
    dense_epochs: int = 5
    lr: float = 1e-3
    optimizer: str = "adam"
    mlp_hidden: list[int] = field(default_factory=lambda: [256, 64])
    calibration_samples: int = 2048
    latency_batch: int = 64
    latency_repeats: int = 10
    save_checkpoints: bool = True
    use_cache: bool = True
    val_fraction: float = 0.1

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.repeats))

    def train_config(self, batch_size: int, seed: int, epochs: int) -> TrainConfig:
        return TrainConfig(epochs=epochs, batch_size=batch_size, lr=self.lr,
                           optimizer=self.optimizer, seed=seed)

    def spec(self, arch: str, dataset: str) -> Spec:
        hidden = list(self.mlp_hidden) if arch == "mlp" else None
        return spec_for_dataset(arch, get_info(dataset), hidden)

    def latency(self) -> LatencyConfig | None:
        """On one thread (`LatencyConfig`'s default): on a shared CPU, two threads'
        spin-waits made timings erratic (a 64-256-64 MLP measured 10 ms per batch, its
        half-size copy 22 ms)."""
        if not self.latency_repeats:
            return None
        return LatencyConfig(batch_size=self.latency_batch, repeats=self.latency_repeats,
                             warmup=LATENCY_WARMUP).validate()

    def grid_size(self) -> int:
        """How many cells the grid has at most (types that do not apply to a model are
        dropped later, by `plan`), counted without expanding it."""
        per_seed = sum(len(criteria_for(t, self.criteria)) for t in self.types)
        return (len(self.models) * len(self.datasets) * len(self.batch_sizes) * self.repeats
                * per_seed * len(self.ratios))

    def validate(self) -> "SweepConfig":
        """One-line ExplorerError for any bad setting. Types first: the value checks
        below assume them (a list of lists of criteria failed in `set`)."""
        check_fields(self, "sweep")
        _names(self.models, "models", ARCHS)
        for d in _names(self.datasets, "datasets", None):
            get_info(d)
        _names(self.types, "pruning types", PRUNING_TYPES)
        _names(self.criteria, "criteria", ALL_CRITERIA)
        _check_grid(self)
        if self.batch_sizes == []:
            raise ExplorerError("pick at least one batch size")
        if not isinstance(self.batch_sizes, list) or not self.batch_sizes or any(
                _bad_whole(b, 1) for b in self.batch_sizes) or \
                len(set(self.batch_sizes)) != len(self.batch_sizes):
            raise ExplorerError(f"batch sizes must be distinct whole numbers ≥ 1, got "
                                f"{self.batch_sizes!r}")
        if not isinstance(self.ratios, list) or not self.ratios:
            raise ExplorerError("give at least one ratio (a fraction removed, 0 to 1)")
        if any(isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r <= 1
               for r in self.ratios):
            raise ExplorerError(f"ratios must be fractions between 0 and 1 (0 % to 100 %), "
                                f"got {self.ratios!r}")
        # cells are named by their percent (`ratio_label`): one read as 0 or 100 there is
        # the baseline or the dead model to every reader (0.9999999 made an "…-r100" cell
        # that was "ok", with a unit in each layer)
        near = next((r for r in self.ratios if 0 < r < 1 and ratio_label(r) in ("0", "100")),
                    None)
        if near is not None:
            raise ExplorerError(f"ratio {near!r} reads as {ratio_label(near)} % in the cells' "
                                "names (6 significant digits of the percent): give one that "
                                "reads apart from 0 % and 100 %")
        twice = _first_repeat(ratio_label(r) for r in self.ratios)
        if twice is not None:  # one cell id, one result: the other would be overwritten
            raise ExplorerError(f"ratios must be distinct: {twice} % is given twice (ratios are "
                                "told apart to 6 significant digits of their percent)")
        # epochs are checked with their range by `_check_limits` (one wording: "-1" and
        # "99999999" fine-tune epochs were refused in two)
        for name, minimum in (("repeats", 1), ("seed", 0), ("calibration_samples", 1),
                              ("latency_batch", 1), ("latency_repeats", 0)):
            if _bad_whole(getattr(self, name), minimum):
                raise ExplorerError(f"{name.replace('_', ' ')} must be a whole number ≥ "
                                    f"{minimum}, got {getattr(self, name)!r}")
        if "mlp" in self.models and (not isinstance(self.mlp_hidden, list) or not self.mlp_hidden
                                     or any(_bad_whole(h, 1) for h in self.mlp_hidden)):
            raise ExplorerError(f"MLP hidden widths must be whole numbers ≥ 1, got "
                                f"{self.mlp_hidden!r}")
        _check_limits(self)
        for arch, dataset in itertools.product(self.models, self.datasets):
            # each model's size (`settings.MAX_PARAMETERS`), counted without building it:
            # `applicability` builds every model, and one too large to allocate failed
            # there with a traceback (`compare --mlp-hidden 200000 100000`)
            validate_spec(self.spec(arch, dataset))
        for dataset in self.datasets:  # range and training split left, before a folder is made
            check_val_fraction(self.val_fraction, dataset)
        if self.optimizer not in OPTIMIZERS:
            raise ExplorerError(f"unknown optimiser {self.optimizer!r}; choose one of "
                                f"{', '.join(OPTIMIZERS)}")
        self.train_config(self.batch_sizes[0], self.seed, self.dense_epochs).validate()
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SweepConfig":
        """A sweep.json or a sweep folder's config.json, every value of its setting's
        type (`settings.from_json`); `"name": null` means no name given."""
        return from_json(cls, d, "sweep", ignore=("versions", "created"),
                         null_is_default=("name",))


def _check_limits(cfg: SweepConfig) -> None:
    """Bounds past which a sweep failed late or exhausted memory instead of starting."""
    if any(h > MAX_WIDTH for h in cfg.mlp_hidden):
        raise ExplorerError(f"MLP hidden widths (mlp_hidden) must be at most {MAX_WIDTH:,}, "
                            f"got {shown(cfg.mlp_hidden)}")
    check_epochs(cfg.dense_epochs, "dense epochs (dense_epochs)", 1)
    check_epochs(cfg.finetune_epochs, "fine-tune epochs (finetune_epochs)", 0, " (one-shot)")
    if cfg.latency_batch > MAX_LATENCY_BATCH:
        raise ExplorerError(f"latency batch (latency_batch) must be at most "
                            f"{MAX_LATENCY_BATCH:,}, got {shown(cfg.latency_batch)}")
    if cfg.repeats > MAX_REPEATS:
        raise ExplorerError(f"repeats must be at most {MAX_REPEATS}, got {shown(cfg.repeats)}")
    if cfg.seed + cfg.repeats - 1 > MAX_SEED:
        raise ExplorerError(f"seeds (seed … seed + repeats − 1) must be within 0 … "
                            f"{MAX_SEED:,}, got seed {shown(cfg.seed)} with {shown(cfg.repeats)} "
                            f"repeats")


def _check_grid(cfg: SweepConfig) -> None:
    """Refuse a grid too large to plan, from its dimensions (before it is expanded)."""
    cells = cfg.grid_size()
    if cells > MAX_GRID_CELLS:
        raise ExplorerError(f"the grid has {cells:,} cells (models × datasets × batch sizes "
                            f"× repeats × criteria per type × ratios); at most "
                            f"{MAX_GRID_CELLS:,}")


def ratio_label(ratio: float) -> str:
    """A ratio's percent as it names cells (6 significant digits): 0.5 → '50'."""
    return format(round(ratio * 100, 6), "g")


def _first_repeat(values: Iterable[str]) -> str | None:
    """The first value seen twice (in linear time: a grid may have many ratios)."""
    seen: set[str] = set()
    for v in values:
        if v in seen:
            return v
        seen.add(v)
    return None


def _bad_whole(value: Any, minimum: int) -> bool:
    return isinstance(value, bool) or not isinstance(value, int) or value < minimum


def _names(values: Any, what: str, known: Iterable[str] | None) -> list[str]:
    if isinstance(values, list) and not values:
        raise ExplorerError(f"pick at least one of the {what}")
    if not isinstance(values, list) or len(set(values)) != len(values):
        raise ExplorerError(f"{what}: pick at least one, each once (got {values!r})")
    if known is not None:
        unknown = [v for v in values if v not in known]
        if unknown:
            raise ExplorerError(f"unknown {what} {unknown[0]!r}; choose from {', '.join(known)}")
    return values


# ------------------------------------------------------------------ the grid

# `Cell.id`'s form: model-dataset-b<batch>-s<seed>-type-criterion-r<ratio>
CELL_ID_FORM = re.compile(r"[\w.]+-[\w.]+-b\d+-s\d+-[\w.]+-[\w.]+-"
                          r"r\d+(?:\.\d+)?(?:e[+-]\d+)?", re.ASCII)


@dataclass(frozen=True)
class Cell:
    model: str
    dataset: str
    batch_size: int
    seed: int
    type: str
    criterion: str
    ratio: float

    @property
    def group(self) -> tuple[str, str, int, int]:
        """The baseline this cell prunes: (model, dataset, batch size, seed)."""
        return (self.model, self.dataset, self.batch_size, self.seed)

    @staticmethod
    def looks_like_id(name: str) -> bool:
        """Whether `name` has the form of an `id`: a file in cells/ named otherwise (notes
        of the user's, a copy's "…(1).json") is no cell of ours, read or not."""
        return CELL_ID_FORM.fullmatch(name) is not None

    @property
    def id(self) -> str:
        """Stable, file-name-safe identity (fields never contain '-'; `CELL_ID_FORM`)."""
        return (f"{self.model}-{self.dataset}-b{self.batch_size}-s{self.seed}-{self.type}-"
                f"{self.criterion}-r{ratio_label(self.ratio)}")

    def describe(self, omit: Collection[str] = ()) -> str:
        """'CNN · Fashion-MNIST · batch 64 · seed 0 · Neuron · Random · 50 %' (the cell id
        says it in ids, for files). `omit`: fields of `OMITTABLE` left out
        where every cell in sight shares them — whole, a name with its accuracy was cut
        off in an 800-px window's picker."""
        parts = [model_name(self.model),
                 None if "dataset" in omit else dataset_name(self.dataset),
                 None if "batch_size" in omit else f"batch {self.batch_size}",
                 None if "seed" in omit else f"seed {self.seed}",
                 type_name(self.type), criterion_name(self.criterion),
                 f"{self.ratio * 100:g} %"]
        return " · ".join(p for p in parts if p is not None)


# The fields `Cell.describe` can leave out: those a whole sweep often shares.
OMITTABLE = ("dataset", "batch_size", "seed")


@dataclass
class Plan:
    cells: list[Cell]
    skipped: list[tuple[str, str, str]]   # (model, pruning type, why it does not apply)

    @property
    def groups(self) -> list[tuple[str, str, int, int]]:
        return list(dict.fromkeys(c.group for c in self.cells))


def applicability(cfg: SweepConfig) -> dict[tuple[str, str], dict[str, str | None]]:
    """{(model, dataset): {type: reason it does not apply, or None}} from built models.

    Built on the meta device: their layer types decide, not their weights, and
    initialising VGG16-BN's weights took 1.07 s (13 ms on meta) — the Compare form
    worked out its grid again after every change, 1.5 s with all seven models picked."""
    from .models import build_model

    out: dict[tuple[str, str], dict[str, str | None]] = {}
    for arch, dataset in itertools.product(cfg.models, cfg.datasets):
        with torch.device("meta"):
            model = build_model(cfg.spec(arch, dataset))
        out[(arch, dataset)] = {t: PRUNING_TYPES[t].applies(model) for t in cfg.types}
    return out


def plan(cfg: SweepConfig) -> Plan:
    """Expand the grid in run order: baseline by baseline, then type, criterion, ratio."""
    cfg.validate()
    fits = applicability(cfg)
    cells: list[Cell] = []
    skipped: dict[tuple[str, str], str] = {}
    for arch, dataset in itertools.product(cfg.models, cfg.datasets):
        for batch, seed in itertools.product(cfg.batch_sizes, cfg.seeds):
            for t in cfg.types:
                reason = fits[(arch, dataset)][t]
                if reason:
                    skipped[(arch, t)] = reason
                    continue
                for criterion in criteria_for(t, cfg.criteria):
                    cells += [Cell(arch, dataset, batch, seed, t, criterion, float(r))
                              for r in sorted(cfg.ratios)]
    return Plan(cells, [(m, t, why) for (m, t), why in skipped.items()])


# ------------------------------------------------------------------ creating and running

def runnable_plan(cfg: SweepConfig) -> Plan:
    """The plan, or a one-line reason why nothing could run (a dataset missing offline,
    every chosen type inapplicable to every model, no chosen criterion fitting a type)."""
    cfg.validate()
    for dataset in cfg.datasets:
        ok, reason = availability(dataset)
        if not ok:
            raise ExplorerError(reason)
    the_plan = plan(cfg)
    if not the_plan.cells:
        if the_plan.skipped:
            reasons = "; ".join(f"{type_name(t)} on {model_name(m)}: {why}"
                                for m, t, why in the_plan.skipped)
        else:  # by name, in the pickers' order (the ids read '… (kmeans), (l1)')
            chosen = ", ".join(map(criterion_name, cfg.criteria))
            reasons = f"none of the chosen criteria ({chosen}) ranks the chosen pruning " \
                "types; " + "; ".join(
                    f"{type_name(t)} takes " + ", ".join(
                        criterion_name(c) for c in ALL_CRITERIA if c in PRUNING_TYPES[t].criteria)
                    for t in cfg.types)
        raise ExplorerError(f"the grid has no cell to run ({reasons})")
    return the_plan


def startable_plan(cfg: SweepConfig, root: Path | None = None) -> Plan:
    """The plan `create_sweep` would start under `root` (default
    `default_sweeps_root()`), after every check it makes of the settings and of the
    folder it would make (`rundir.check_new_run_dir`: the name's form, a sweep of that
    name already there today, a file in the way) — so `compare --estimate` refuses what
    a start would refuse, instead of estimating a sweep named "a/b", or one named like
    an existing sweep, that can never start."""
    # the settings' types first: a name that is no string failed inside the name check
    # with a TypeError
    the_plan = runnable_plan(cfg)
    check_new_run_dir(cfg.name, root or default_sweeps_root(), kind="sweep")
    return the_plan


def create_sweep(cfg: SweepConfig, root: Path | None = None,
                 estimated: list[dict[str, Any]] | None = None) -> SweepPaths:
    """Make the sweep folder with config.json and a queued status.

    Refused before any folder exists when a dataset is missing offline or the grid has
    no cell (every chosen type is inapplicable to every chosen model). `estimated`: the
    pre-start estimate's times per group (`estimate.Estimate.groups`), kept for the
    remaining-time estimate of the running sweep.
    """
    the_plan = startable_plan(cfg, root)
    paths = SweepPaths(new_run_dir(cfg.name, root or default_sweeps_root(), kind="sweep").root)
    atomic_write_json(paths.config, {**cfg.to_dict(), "created": time.time(),
                                     "versions": {"explorer": __version__,
                                                  "torch": torch.__version__}})
    # the baselines in run order, with their cell counts, for the remaining-time
    # estimate (no model built to poll)
    groups = the_plan.groups
    per_group = Counter(c.group for c in the_plan.cells)  # one pass: near the cell limit,
    # counting each group's cells over all cells took minutes
    write_status(paths, "queued", total_cells=len(the_plan.cells), cells_done=0,
                 groups=[list(g) for g in groups], group_cells=[per_group[g] for g in groups],
                 **({"group_estimates": estimated}
                    if estimated and len(estimated) == len(groups) else {}))
    return paths


def load_config(paths: SweepPaths) -> SweepConfig:
    """The sweep's settings, refused (one line) for another kind of folder and when
    config.json was edited in a way the finished cells contradict (`check_finished`)."""
    from .sweep_results import read_cells

    cfg = _read_config(paths)
    check_finished(cfg, read_cells(paths))
    return cfg


def _read_config(paths: SweepPaths) -> SweepConfig:
    record = read_json(paths.config)
    if not isinstance(record, dict):
        raise ExplorerError(f"{paths.root} is not a sweep folder (no readable config.json)")
    check_kind(paths, record, COMPARE_SWEEP)
    return SweepConfig.from_dict(record).validate()


# Settings that change what a finished cell's numbers mean: the baseline's training, the
# pruning's calibration, the fine-tuning, the latency timing (and, for MLP cells, the
# widths). The grid's settings (models, datasets, batch sizes, seed and repeats, types,
# criteria, ratios) only add or remove cells, whose ids name them.
CELL_SETTINGS = ("dense_epochs", "lr", "optimizer", "val_fraction", "finetune_epochs",
                 "calibration_samples", "latency_batch", "latency_repeats")


def cell_settings(cfg: SweepConfig, model: str) -> dict[str, Any]:
    """What a cell of `model` is computed with: recorded in its file (`computed_with`)."""
    out = {k: getattr(cfg, k) for k in CELL_SETTINGS}
    if model == "mlp":
        out["mlp_hidden"] = list(cfg.mlp_hidden)
    return out


def check_finished(cfg: SweepConfig, rows: list[dict]) -> None:
    """Refuse a resume that would mix cells computed under different settings.

    A cell records what it was computed with; config.json edited since (mlp_hidden: the
    finished MLP cells were another model) made a resume keep the old cells beside new
    ones as if they were one sweep. Refused rather than redone: the finished cells are
    results, and redoing them would replace them without being asked. Records from
    before cells recorded this are trusted (nothing to compare). `rows`: the finished
    cells' records (`sweep_results.read_cells`).
    """
    changed: dict[str, tuple[Any, Any]] = {}
    for row in rows:
        recorded = row.get("computed_with")
        if not isinstance(recorded, dict):
            continue
        now = cell_settings(cfg, row["model"])
        changed.update({k: (v, now[k]) for k, v in recorded.items()
                        if k in now and v != now[k] and k not in changed})
    if changed:
        what = "; ".join(f"{k} {shown(old)} then, {shown(new)} now"
                         for k, (old, new) in sorted(changed.items()))
        raise ExplorerError(f"config.json was edited after cells finished ({what}): a resume "
                            f"would mix cells computed under both; put "
                            f"{', '.join(sorted(changed))} back, or start a new sweep with the "
                            f"new settings (only models, datasets, batch sizes, seed, repeats, "
                            f"types, criteria and ratios may change on resume)")


def execute(paths: SweepPaths, should_stop: Callable[[], bool] | None = None,
            on_event: Callable[[dict], None] | None = None,
            cache_root: Path | None = None) -> dict:
    """Run (or resume) the sweep in this process; returns the final status.

    `on_event` hears a dense baseline's epochs and a cell's fine-tuning epochs
    ("finetune_epoch") on this thread, and a cell once its record is on disk, on the
    writer thread (`OrderedWriter`): it must be safe to call from
    both, and whatever it raises fails the sweep as a failed write would."""
    paths = SweepPaths(Path(paths.root))
    with worker_session(paths, should_stop) as stop:
        return _execute_locked(paths, stop, on_event or (lambda e: None), cache_root)


def _set_aside_outside_grid(paths: SweepPaths, rows: list[dict], the_plan: Plan
                            ) -> tuple[list[dict], str]:
    """(the records of cells in the grid, a note on the others) — records of finished
    cells the edited grid no longer has (fewer repeats, ratios or models) are moved to
    `cells-outside-grid/`: left in `cells/`, they still counted in the tables and the
    progress (12 of 8 cells done). Moved, not deleted: they are results."""
    planned = {c.id for c in the_plan.cells}
    outside = [r for r in rows if r["cell_id"] not in planned]
    if not outside:
        return rows, ""
    paths.outside_grid_dir.mkdir(exist_ok=True)
    for r in outside:
        os.replace(paths.cell(r["cell_id"]), paths.outside_grid_dir / f"{r['cell_id']}.json")
    return [r for r in rows if r["cell_id"] in planned], (
        f"; {len(outside)} finished cell(s) outside the edited grid kept in "
        f"{paths.outside_grid_dir.name}/")


def _execute_locked(paths: SweepPaths, stop: Callable[[], bool],
                    on_event: Callable[[dict], None], cache_root: Path | None) -> dict:
    from .sweep_results import read_cells, write_tables

    probe = start_up_probe()  # sampled over the worker's start-up
    rows = read_cells(paths)
    try:
        cfg = _read_config(paths)
        check_finished(cfg, rows)
        the_plan = plan(cfg)
    except WrongKindError:  # not this kind's status to overwrite
        raise
    except ExplorerError as exc:
        return write_status(paths, "failed", message=str(exc))
    try:  # a refusal here (a full disk) is said in the status, as it is later on:
        # raised, it killed a page's worker, whose sweep then showed as "interrupted"
        rows, aside = _set_aside_outside_grid(paths, rows, the_plan)
        done = finished_cells(paths, rows, the_plan)
        if rows or paths.results_csv.exists():
            # the CSV matches the finished cells before lines are appended
            write_tables(paths, rows)
        write_status(paths, "running", pid=os.getpid(), message="", **session_start(paths),
                     total_cells=len(the_plan.cells), cells_done=len(done),
                     cells_at_start=len(done), activity="starting")
    except OSError as exc:
        return failed_write(paths, exc, "the sweep's files", cells_done=len(rows))
    # As many torch threads as cores are idle now: two threads on a shared 2-core box
    # collapse (see training.cpu_threads_for); scoring and evaluation run on these.
    torch.set_num_threads(max(1, min(torch.get_num_threads(), probe.cores())))
    todo = [c for c in the_plan.cells if c.id not in done]
    runner = _Runner(paths, cfg, stop, on_event, cache_root, len(the_plan.cells), len(done))
    try:
        try:
            for group, cells in itertools.groupby(todo, key=lambda c: c.group):
                runner.run_group(group, list(cells))
        finally:
            runner.writer.close()  # every finished cell on disk before the tables are built
        rows = write_tables(paths)
        failed = sum(r.get("status") == "failed" for r in rows)
        dead = sum(r.get("status") == "dead" for r in rows)
        message = (counted(len(rows), "cell")
                   + (f", {failed} failed" if failed else "")
                   + (f", {dead} dead (100 % pruned)" if dead else "") + aside)
        return write_status(paths, "finished", message=message, finished=time.time(),
                            activity="", cells_done=len(rows))
    except Cancelled:
        return write_status(paths, "stopped", activity="", cells_done=len(write_tables(paths)),
                            message="stopped by request; resume skips the finished cells")
    except KeyboardInterrupt:
        # the cells written are counted, and in the tables, as after a Stop: the status
        # kept the count of its last report (0 of the 8 cells on disk)
        record_ctrl_c(paths, cells_done=_tables_at_the_end(paths))
        raise
    except Exception as exc:  # one line to the page; a trace nobody foresaw to the log
        return failed_run(paths, exc, "the sweep's files", activity="",
                          cells_done=_tables_at_the_end(paths))


def _tables_at_the_end(paths: SweepPaths) -> int:
    """Rewrite the tables of a sweep that failed; how many cells are done. A full disk
    takes the tables too: the cells are then counted, and a resume rebuilds them."""
    from .sweep_results import finished_ids, write_tables

    try:
        return len(write_tables(paths))
    except OSError:
        return len(finished_ids(paths))


_CELL_FIELDS = tuple(f.name for f in fields(Cell))


def finished_cells(paths: SweepPaths, rows: list[dict], the_plan: Plan) -> set[str]:
    """The planned cells a resume skips: a record of exactly that cell whose checkpoint,
    if it recorded one, is whole (a zero-byte or truncated file counted as done)."""
    planned = {c.id: c for c in the_plan.cells}
    return {r["cell_id"] for r in rows if r["cell_id"] in planned
            and all(r.get(k) == getattr(planned[r["cell_id"]], k) for k in _CELL_FIELDS)
            and (not r.get("checkpoint") or checkpoint_intact(paths.checkpoint(r["cell_id"])))}


@dataclass
class _Dense:
    """The baseline of one group and what every cell of the group reads from it."""
    baseline: Baseline
    spec: Spec
    data: Dataset
    costs: CostReport
    test_loss: float
    test_acc: float
    scores: dict = field(default_factory=dict)  # criterion → unit scores (or its error)
    saved: Path | None = None  # the first ratio-0 cell's checkpoint (the baseline's file)
    # the 100 % cells' (test loss, accuracy): their model is alike for every type and criterion
    dead_result: tuple[float, float] | None = None

    @property
    def arch(self) -> str:
        """The baseline's `_arch_key`, worked out once."""
        if self._arch is None:
            self._arch = _arch_key(self.baseline.model, self.spec)
        return self._arch

    _arch: str | None = None


@dataclass
class _Prepared:
    """A cell's pruned model before fine-tuning, or why it could not be made."""
    model: nn.Module | None
    spec: Spec | None
    seconds: float                   # scoring (first cell of a block) and surgery
    error: Exception | None = None
    latency: tuple[float, float] | None = None   # (dense, pruned) ms, timed together
    timing_seconds: float = 0.0      # this cell's share of its chunk's timing
    arch: str | None = None          # its `_arch_key` once asked (a repr walk: ~50 µs)


def _arch_key(model: nn.Module, spec: Spec) -> str:
    """The cost caches' key (`models.architecture_key`)."""
    return architecture_key(model, spec["input_shape"])


def _latency_key(cell: Cell, prepared: _Prepared, dense_key: str) -> tuple[str, str]:
    """What a pruned model's latency is shared by: (dense architecture, its own
    architecture) for structural models, (dense architecture, mask type) for masked ones,
    whose shapes are the dense model's."""
    if PRUNING_TYPES[cell.type].structural:
        if prepared.arch is None:
            prepared.arch = _arch_key(prepared.model, prepared.spec)
        return dense_key, prepared.arch
    return _mask_latency_key(dense_key, cell.type)


def _mask_latency_key(dense_key: str, kind: str) -> tuple[str, str]:
    """`_latency_key` of a mask type's models: one timing per dense architecture."""
    return dense_key, f"masks: {kind}"


def _baseline_test(baseline: Baseline, data: Dataset) -> tuple[float, float]:
    """The baseline's (test loss, accuracy). One just trained was evaluated on this very
    test split by `get_baseline`, with the same batch size (`training.EVAL_BATCH`), so
    its numbers are the ones another pass would give (the sweep made that pass: one per
    group, seconds for a CIFAR-10 ResNet); a cached one is evaluated again, on the data
    as loaded now (its stored metrics are from the day it was trained)."""
    if not baseline.from_cache:
        return baseline.metrics["test_loss"], baseline.metrics["test_acc"]
    return evaluate(baseline.model, data.test)


def _tested(model: nn.Module, cell: Cell, dense: _Dense) -> tuple[float, float]:
    """The cell's (test loss, accuracy). The baseline (ratio 0) and the dead model
    (100 %) are one model each per group whatever the type and criterion, so they are
    evaluated once per group: every block's end cells made another pass over the test
    set (on the benchmark grid five of each per group)."""
    if cell.ratio == 0:
        return dense.test_loss, dense.test_acc
    if cell.ratio >= 1:
        if dense.dead_result is None:
            dense.dead_result = evaluate(model, dense.data.test)
        return dense.dead_result
    return evaluate(model, dense.data.test)


def _mask_standins(cells: list[Cell]) -> dict[str, Cell]:
    """Per mask type among `cells` (one group's, in run order), the cell whose model a
    chunk timed before that type's block times for it (`_Runner._add_standins`): the
    sparsest below 100 % of the type's first block, the model that block's own chunk
    would time."""
    found: dict[str, Cell] = {}
    for c in cells:
        if PRUNING_TYPES[c.type].structural or not 0 < c.ratio < 1:
            continue
        first = found.get(c.type)
        if first is None or (first.criterion == c.criterion and c.ratio > first.ratio):
            found[c.type] = c
    return found


class _Runner:
    """Runs the cells of a sweep group by group, keeping one baseline in memory."""

    def __init__(self, paths: SweepPaths, cfg: SweepConfig, stop: Callable[[], bool],
                 on_event: Callable[[dict], None], cache_root: Path | None, total: int,
                 done: int):
        self.paths, self.cfg, self.stop, self.on_event = paths, cfg, stop, on_event
        self.cache_root = cache_root if cfg.use_cache else paths.baselines_dir
        self.total, self.done = total, done
        self.costs: dict[str, CostReport] = {}  # sizes by architecture (spec with widths)
        self.dense_ms: dict[str, float] = {}  # a baseline architecture's first dense timing
        # (dense, pruned) latencies timed together, by `_latency_key`
        self.latencies: dict[tuple[str, str], tuple[float, float]] = {}
        self.latency = cfg.latency()
        # per mask type, the cell whose masked model stands in for the type's timing in the
        # group's first timed chunk (`_mask_standins`)
        self.standins: dict[str, Cell] = {}
        # a stand-in's model (and the seconds it took) until its block takes it for its cell
        self.spares: dict[Cell, tuple[nn.Module, float]] = {}
        self.writer = OrderedWriter()  # checkpoints and cell records, off the main thread

    def emit(self, event: dict) -> None:
        append_event(self.paths, event)
        self.on_event(event)

    def activity(self, text: str) -> None:
        """Report what runs now, at most every 0.5 s, the newest report at most that late
        (`OrderedWriter.submit_latest`): a Digits cell takes ~50 ms and a baseline's
        epoch ~75 ms, while the page polls about once a second. The writer thread writes
        them; the main thread writes status only before and after.

        The text says what runs, never a cell count: the page's bar counts the records
        on disk, and a report up to 0.5 s old read "53 of 208 cells · cell 38/208" in a
        sweep of one-shot cells."""
        done = self.done
        self.writer.submit_latest(lambda: write_status(self.paths, "running", activity=text,
                                                       cells_done=done), ACTIVITY_EVERY_S)

    # -- a group: one baseline, many cells
    def run_group(self, group: tuple[str, str, int, int], cells: list[Cell]) -> None:
        # One group's baseline at a time: reference counting frees it when the next
        # group starts (a full gc.collect() cost 0.26 s per group and freed nothing more).
        try:
            dense = self._dense(group)
        except TrainingDiverged as exc:  # the group's cells fail, the sweep goes on
            self._fail_group(cells, str(exc))
            return
        self.standins = _mask_standins(cells)
        self.spares = {}  # the previous group's, if a block never took one
        for _, block in itertools.groupby(cells, key=lambda c: (c.type, c.criterion)):
            self._run_block(list(block), dense)

    def _fail_group(self, cells: list[Cell], reason: str) -> None:
        """Record every cell of a group whose baseline could not be made as failed, with
        `reason` (a diverged baseline: its cells were "ok" at its constant guess, with
        NaN checkpoints saved). No model, so no checkpoint; a resume skips them like any
        failed cell."""
        for cell in cells:
            if self.stop():
                raise Cancelled()
            # no times: none of this ran, and a "0 s" cell made the remaining-time
            # estimate's pace (`sweep_results._paced_eta`) far too fast
            self._record(cell, None, None, None, {
                "status": "failed", "note": reason, "prune_seconds": None,
                "finetune_seconds": None, "cell_seconds": None})

    def _run_block(self, cells: list[Cell], dense: _Dense) -> None:
        """The cells of one pruning type and criterion, in rising ratio.

        Their pruned models come from one series (one scoring, one traced graph) and are
        made a chunk at a time before any is fine-tuned, so a chunk's models are timed in
        one interleaved measurement with the dense model (`_time_chunk`).
        """
        pruned = self._series([c for c in cells if 0 < c.ratio < 1], dense)
        size = self._chunk_size(dense)
        ready: dict[Cell, _Prepared] = {}
        first = next((c for c in cells if 0 < c.ratio < 1), None)
        if first is not None:  # its chunk's timing gives the dense latency too
            ready = self._prepare(pruned, size, dense, first)
        self._dense_latency(dense)
        for cell in cells:
            if self.stop():
                raise Cancelled()
            if 0 < cell.ratio < 1 and cell not in ready:
                ready = self._prepare(pruned, size, dense, cell)
            self.activity(cell.describe())
            model, spec, row = self._run_cell(cell, dense, ready.pop(cell, None))
            self._record(cell, model, spec, dense, row)

    def _dense(self, group: tuple[str, str, int, int]) -> _Dense:
        arch, dataset, batch, seed = group
        cfg = self.cfg
        data = load_dataset(dataset, seed=SPLIT_SEED, val_fraction=cfg.val_fraction)
        spec = cfg.spec(arch, dataset)
        label = f"{model_name(arch)} · {dataset_name(dataset)} · batch {batch} · seed {seed}"
        self.activity(f"dense baseline {label}")

        def on_epoch(m) -> None:
            self.emit({"type": "epoch", "group": list(group), **m.to_dict()})
            self.activity(f"training dense baseline {label}: epoch {m.epoch}/{cfg.dense_epochs}")

        baseline = get_baseline(spec, data, cfg.train_config(batch, seed, cfg.dense_epochs),
                                self.cache_root, on_epoch=on_epoch, should_stop=self.stop,
                                save_with=self.writer.submit)
        baseline.model.eval()
        test_loss, test_acc = _baseline_test(baseline, data)
        costs = self._measure(baseline.model, spec)  # latency: `_dense_latency`
        self.emit({"type": "baseline", "group": list(group), "from_cache": baseline.from_cache,
                   "test_acc": test_acc, "test_loss": test_loss, "key": baseline.key})
        return _Dense(baseline, spec, data, costs, test_loss, test_acc)

    def _measure(self, model: nn.Module, spec: Spec, key: str | None = None) -> CostReport:
        """Sizes of an architecture (no latency: every model is timed against the dense
        one, `_time_chunk`), measured once per distinct set of widths (`key`, the
        model's `_arch_key` when the caller has it)."""
        key = key or _arch_key(model, spec)
        if key not in self.costs:
            self.costs[key] = cost_report(model, spec["input_shape"])
        return self.costs[key]

    def _dense_latency(self, dense: _Dense) -> None:
        """Give the baseline's costs its latency: the dense timing of the first chunk
        timed with its architecture (`_time_chunk`), taken alone only when no pruned
        model of it is timed first (a block of ratios 0 and 100 %, a resumed block).

        The baseline used to be timed alone before its first block, a second timing of
        the model every chunk times anyway (12 ms of the Digits benchmark's 0.96 s
        outside training and evaluation)."""
        if self.latency is None or dense.costs.latency_ms is not None:
            return
        key = dense.arch
        if key not in self.dense_ms:
            self.dense_ms[key] = measure_latencies([dense.baseline.model],
                                                   dense.spec["input_shape"], self.latency,
                                                   should_stop=self.stop)[0]
        dense.costs = replace(dense.costs, latency_ms=self.dense_ms[key],
                              latency_batch=self.latency.batch_size)

    # -- pruned models, a chunk at a time
    def _series(self, cells: list[Cell], dense: _Dense) -> Iterator[tuple[Cell, _Prepared]]:
        """Each cell with its pruned, not yet fine-tuned model, in the cells' order: the
        last one's may be the stand-in `_add_standins` made and a chunk timed, taken here
        instead of being masked again (the mask types of the benchmark grid: one masking
        of four per group saved)."""
        spare = self.spares.pop(cells[-1], None) if cells else None
        yield from self._made(cells[:-1] if spare is not None else cells, dense)
        if spare is not None:
            model, seconds = spare
            yield cells[-1], _Prepared(model, dict(dense.spec), seconds)

    def _made(self, cells: list[Cell], dense: _Dense) -> Iterator[tuple[Cell, _Prepared]]:
        """Each cell with its pruned, not yet fine-tuned model, in the cells' order.

        A cell whose pruning fails (the criterion cannot handle the model, e.g.
        contribution across residual adds, or torch rejects it) carries the error, and
        the cells after it start a new series: each cell fails only for itself (a
        criterion's own failure is kept with its scores, so it repeats at once).
        """
        while cells:
            first = cells[0]
            kind = PRUNING_TYPES[first.type]
            options = CriterionOptions(seed=first.seed, max_samples=self.cfg.calibration_samples)
            needs_data = first.criterion in CRITERIA and CRITERIA[first.criterion].needs_data
            data = dense.data.train if needs_data else None
            done = 0
            t0 = time.perf_counter()
            try:
                scores = self._scores(first, dense, data, options) if kind.structural else None
                models = kind.series(dense.baseline.model, dense.spec,
                                     [c.ratio for c in cells], first.criterion, data, options,
                                     scores)
                for cell in cells:
                    model, spec = next(models)
                    seconds = time.perf_counter() - t0
                    done += 1
                    yield cell, _Prepared(model, spec, seconds)
                    t0 = time.perf_counter()
                return
            except Cancelled:
                raise
            except Exception as exc:  # a criterion / model combination torch rejects
                raise_if_interrupted(exc)
                if not isinstance(exc, ExplorerError):  # its trace to the log, named in
                    exc = ExplorerError(f"{exc.__class__.__name__}: {exc}"  # the cell's note
                                        f"{log_traceback(self.paths)}")
                yield cells[done], _Prepared(None, None, 0.0, error=exc)
                cells = cells[done + 1:]

    def _chunk_size(self, dense: _Dense) -> int:
        """Pruned models held at once: a masked model holds its weights twice (original
        and mask) and is copied once more for timing, so ~3× the dense parameter bytes;
        stand-ins kept for their blocks (`spares`) count against it."""
        return max(1, int(CHUNK_BYTES // max(3 * dense.costs.param_bytes, 1)) - len(self.spares))

    def _prepare(self, pruned: Iterator[tuple[Cell, _Prepared]], size: int, dense: _Dense,
                 cell: Cell) -> dict[Cell, _Prepared]:
        self.activity(f"pruning {type_name(cell.type)} · {criterion_name(cell.criterion)} "
                      f"from {cell.ratio * 100:g} % on")
        chunk: dict[Cell, _Prepared] = {}
        for c, prepared in itertools.islice(pruned, size):
            if self.stop():
                raise Cancelled()
            chunk[c] = prepared
        self._time_chunk(chunk, dense)
        return chunk

    def _time_chunk(self, chunk: dict[Cell, _Prepared], dense: _Dense) -> None:
        """Time the chunk's models together with the dense model, repeats interleaved.

        A speed-up is a ratio of two timings, so both are taken in the same moments: the
        baseline's own timing, taken once and cold (and, from the page, while the server
        was busy) made a 9 %-smaller CNN look 2.25× faster and masks 1.5× faster. Timing
        a chunk in one measurement times the dense model once per chunk instead of once
        per cell. Latency depends on the shapes a model computes with, not on the values
        of its weights, so a structural model is timed before fine-tuning, and an
        architecture once per sweep, whatever criterion made it (`_latency_key`).

        A masked model computes with the dense shapes: deployed (masks folded in), it is
        the dense architecture with zeros in it. It is timed once per sweep and mask type,
        on the sparsest model of the first chunk that has one — if zeros were ever
        skipped, that model would show it most — and its cells share that timing. Timing
        every ratio's copy timed the dense architecture again for each (on the Digits
        benchmark, half of all latency timing, 0.23 of 0.44 s). When a structural chunk
        is timed first, the sparsest model of the type's first block is made early and
        joins that chunk's measurement (`_add_standins`).
        """
        if self.latency is None:
            return
        dense_key = dense.arch
        # what to time → (the model timed, its ratio, the cells it stands for)
        todo: dict[tuple[str, str], tuple[nn.Module, float, list[_Prepared]]] = {}
        for cell, p in chunk.items():
            if p.error is not None:
                continue
            key = _latency_key(cell, p, dense_key)
            if key in self.latencies:
                p.latency = self.latencies[key]
                continue
            model, ratio, prepared = todo.get(key, (p.model, cell.ratio, []))
            if cell.ratio > ratio:  # masks: the sparsest stands for the others
                model, ratio = p.model, cell.ratio
            todo[key] = (model, ratio, prepared + [p])
        if not todo:
            return
        self._add_standins(todo, dense, room=self._chunk_size(dense) - len(chunk))
        self.activity(f"timing {counted(len(todo), 'pruned model')} "
                      "against the dense one")
        t0 = time.perf_counter()
        timed = [permanent_copy(m) if is_masked(m) else m for m, _, _ in todo.values()]
        dense_ms, *times = measure_latencies([dense.baseline.model] + timed,
                                             dense.spec["input_shape"], self.latency,
                                             should_stop=self.stop)
        # an equal share per model timed, split among the cells it stands for (a stand-in
        # stands for none of this chunk's: its block's cells find it timed)
        per_model = (time.perf_counter() - t0) / len(todo)
        self.dense_ms.setdefault(dense_key, dense_ms)
        for (key, (_, _, prepared)), ms in zip(todo.items(), times):
            self.latencies[key] = (dense_ms, ms)
            for p in prepared:
                p.latency, p.timing_seconds = (dense_ms, ms), per_model / len(prepared)

    def _add_standins(self, todo: dict, dense: _Dense, room: int) -> None:
        """Time the group's mask types with this chunk, not with a dense timing of their own.

        A masked model is timed once per mask type on the sparsest model of its first
        block; made here from the baseline (a masking, ~1-3 ms on Digits), it joins the
        group's first timed chunk, so the dense model is timed once for both (the Digits
        CNN's dense timing, ~20 ms, was a fifteenth of the test grid's time outside
        training and evaluation). Only where the chunk's memory budget (`_chunk_size`)
        has room for one more model. One that cannot be made is left to its block,
        which times it as before; one made is kept for its block's cell (`_series`).
        """
        for kind, cell in list(self.standins.items()):
            key = _mask_latency_key(dense.arch, kind)
            if key in self.latencies or key in todo:
                del self.standins[kind]
                continue
            if room < 1:
                return
            del self.standins[kind]  # tried once: a failure is its block's to record
            options = CriterionOptions(seed=cell.seed, max_samples=self.cfg.calibration_samples)
            t0 = time.perf_counter()
            try:
                model, _ = next(PRUNING_TYPES[kind].series(dense.baseline.model, dense.spec,
                                                           [cell.ratio], cell.criterion, None,
                                                           options, None))
            except Exception as exc:
                raise_if_interrupted(exc)
                continue
            self.spares[cell] = (model, time.perf_counter() - t0)  # its block's cell's model
            todo[key] = (model, cell.ratio, [])
            room -= 1

    # -- one cell
    def _run_cell(self, cell: Cell, dense: _Dense, prepared: _Prepared | None
                  ) -> tuple[nn.Module | None, Spec | None, dict]:
        """Fine-tune, evaluate and measure one cell: (model, spec, its table row)."""
        b = dense.baseline
        row: dict[str, Any] = {
            "status": "ok", "note": "", "prune_seconds": 0.0, "finetune_seconds": 0.0,
            "dense_test_acc": dense.test_acc, "dense_test_loss": dense.test_loss,
            "dense_macs": dense.costs.macs, "dense_params": dense.costs.params,
            "dense_latency_ms": dense.costs.latency_ms,
            "dense_train_seconds": b.train_seconds if b.train_seconds is not None else
            sum(h.get("seconds", 0.0) for h in b.history),
            "dense_peak_mb": b.peak_mb, "baseline_from_cache": b.from_cache}
        model: nn.Module | None = None
        spec: Spec | None = None
        start = time.perf_counter()
        device = resolve_device("auto")
        with PeakMemory(device) as memory:
            try:
                model, spec = self._pruned(cell, dense, row, prepared)
                t0 = time.perf_counter()
                row["test_loss"], row["test_acc"] = _tested(model, cell, dense)
                row["eval_seconds"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                row.update(self._cell_costs(model, spec, cell, dense, row["status"], prepared))
                row["cost_seconds"] = time.perf_counter() - t0 + (
                    prepared.timing_seconds if prepared is not None else 0.0)
                row["widths"] = " ".join(map(str, pruned_widths(model, cell.type)))
            except Cancelled:
                raise
            except ExplorerError as exc:
                row.update(status="failed", note=str(exc))
            except Exception as exc:  # a criterion / model combination torch rejects
                raise_if_interrupted(exc)
                row.update(status="failed", note=f"{exc.__class__.__name__}: {exc}"
                                                  f"{log_traceback(self.paths)}")
        row["peak_mb"] = memory.peak_mb
        row["cell_seconds"] = time.perf_counter() - start + row["prune_seconds"] + (
            prepared.timing_seconds if prepared is not None else 0.0)
        return model, spec, row

    def _pruned(self, cell: Cell, dense: _Dense, row: dict, prepared: _Prepared | None
                ) -> tuple[nn.Module, Spec]:
        """The cell's model: the baseline (ratio 0), a dead copy (ratio 1) or its prepared
        pruned model, fine-tuned."""
        base = dense.baseline.model
        if cell.ratio >= 1:
            row.update(status="dead", note="100 % pruned: no weight carries the input, the "
                       "model predicts one constant class")
            return dead_model(base), dense.spec  # a copy per cell, not held for the group
        if cell.ratio == 0:  # nothing to prune, nothing to fine-tune (its test: `_tested`)
            return base, dense.spec
        if prepared.error is not None:
            exc = prepared.error
            if isinstance(exc, ExplorerError):
                raise exc
            raise ExplorerError(f"{exc.__class__.__name__}: {exc}")
        model, spec = prepared.model, prepared.spec
        prepared.model = None  # the chunk no longer holds it once the cell is done
        row["prune_seconds"] = prepared.seconds
        if self.cfg.finetune_epochs:
            t0 = time.perf_counter()
            epochs = self.cfg.finetune_epochs
            tcfg = self.cfg.train_config(cell.batch_size, cell.seed, epochs)
            label = cell.describe()

            def on_epoch(m) -> None:  # a CNN's fine-tuning takes minutes: say how far
                self.activity(f"{label} · fine-tuned {m.epoch}/{epochs} epochs")
                # to the caller only, not events.jsonl (a line per epoch of every cell):
                # the CLI's bar stood still through a cell's 300 epochs
                self.on_event({"type": "finetune_epoch", "cell_id": cell.id,
                               "epoch": m.epoch, "epochs": epochs})

            train(model, dense.data, tcfg, on_epoch=on_epoch, should_stop=self.stop)
            row["finetune_seconds"] = time.perf_counter() - t0
            # a fine-tuning that diverged fails the cell (no NaN checkpoint, not "ok")
            refuse_diverged(model, "fine-tuning", lower_the_rate(tcfg))
        model.eval()
        return model, spec

    def _scores(self, cell: Cell, dense: _Dense, data, options: CriterionOptions):
        """A criterion's unit scores on the group's baseline, computed once for all ratios.

        Scores depend on the dense model and the calibration data, not on the ratio, so
        the ten ratios of a default grid share one computation (a failure is kept too).
        """
        if cell.criterion not in dense.scores:
            try:
                layers = scored_layers(dense.baseline.model, dense.spec, self.cfg.types)
                dense.scores[cell.criterion] = compute_scores(
                    dense.baseline.model, cell.criterion, data, layers, options)
            except ExplorerError as exc:
                dense.scores[cell.criterion] = exc
        found = dense.scores[cell.criterion]
        if isinstance(found, ExplorerError):
            raise found
        return found

    def _cell_costs(self, model: nn.Module, spec: Spec, cell: Cell, dense: _Dense,
                    status: str, prepared: _Prepared | None) -> dict:
        dense_ms: float | None = None
        if status == "dead":  # nothing left to compute: no MACs, no latency to speak of
            report = CostReport(dense.costs.params, count_nonzero(model), 0, 0,
                                dense.costs.param_bytes, 0)
        elif cell.ratio == 0:
            report = dense.costs
        else:
            dense_ms, latency = prepared.latency or (None, None)
            if PRUNING_TYPES[cell.type].structural:
                sizes = asdict(self._measure(model, spec, prepared.arch))
            else:  # masks keep the architecture: the dense MACs and FLOPs
                sizes = asdict(dense.costs)
            report = CostReport(**{**sizes, "nonzero_params": count_nonzero(model),
                                   "latency_ms": latency,
                                   "latency_batch": dense.costs.latency_batch})
        out = {k: v for k, v in report.to_dict().items()
               if k in ("params", "nonzero_params", "sparsity", "macs", "train_flops",
                        "latency_ms", "latency_batch")}
        if dense_ms is not None:
            out["dense_latency_ms"] = dense_ms  # the dense timing this cell's was paired with
        return out

    def _save(self, cell: Cell, model: nn.Module, spec: Spec, dense: _Dense, row: dict) -> Path:
        info = dense.data.info
        # every hidden unit (conv channels and neurons), as the Inspect page's "Hidden
        # kept" and iterative runs count them: the share of the pruned kind alone read
        # 50 % for a CNN whose channels were halved and 128 neurons kept (86 % of its units)
        widths = hidden_widths(model)
        dense_units = sum(hidden_widths(dense.baseline.model)) or 1
        percent = 100.0 * (1 - row["sparsity"]) if not PRUNING_TYPES[cell.type].structural \
            else 100.0 * sum(widths) / dense_units
        meta = {"metrics": {"test_acc": row["test_acc"], "test_loss": row["test_loss"]},
                "dataset": info.name, "class_names": list(info.classes),
                "normalisation": {"mean": list(info.mean), "std": list(info.std)},
                "widths": widths, "percent_retained": percent, "cell": asdict(cell),
                "sweep": self.paths.root.name}
        target = self.paths.checkpoint(cell.id)
        if cell.ratio == 0:  # the baseline itself: one file per group, linked for the rest
            if dense.saved is None:
                dense.saved = save_checkpoint(model, spec, target, meta)
                return dense.saved
            return link_checkpoint(dense.saved, target, meta)
        return save_checkpoint(model, spec, target, meta)  # masks folded in

    def _record(self, cell: Cell, model: nn.Module | None, spec: Spec | None,
                dense: _Dense | None, row: dict) -> None:
        """Queue the cell's checkpoint, then its record (which marks it done), for the writer."""
        save = self.cfg.save_checkpoints and row["status"] == "ok" and model is not None
        if save:
            row["checkpoint"] = str(self.paths.checkpoint(cell.id))
        full = {"cell_id": cell.id, **asdict(cell), **row,
                "computed_with": cell_settings(self.cfg, cell.model)}
        self.done += 1
        event = {"type": "cell", "cell_id": cell.id, "status": full["status"],
                 "test_acc": full.get("test_acc"), "index": self.done}
        kept = model if save else None
        self.writer.submit(lambda: self._write_cell(full, event, cell, kept, spec, dense))

    def _write_cell(self, full: dict, event: dict, cell: Cell, model: nn.Module | None,
                    spec: Spec | None, dense: _Dense | None) -> None:
        """On the writer thread: checkpoint first, then the record, CSV line and event."""
        from .sweep_results import append_result

        if model is not None:
            self._save(cell, model, spec, dense, full)
        atomic_write_json(self.paths.cell(cell.id), full)  # marks the cell done
        append_result(self.paths, full)
        append_event(self.paths, event)
        # said once it is on disk: said when queued, a cell whose write then failed was
        # printed "ok" just before the sweep failed over it
        self.on_event(event)
