"""How long a sweep will take, said before it starts.

A timing probe runs real training steps — the training loop itself (`training._train_epoch`),
with the sweep's optimiser — of each model on random inputs of the dataset's shape, at
the slice sizes the sweep will train with (its batch sizes, capped by micro-batching),
climbing to them by doubling from a few samples. A model too slow for that (a step past
`PROBE_STEP_S`) stops early and is extrapolated along the cost per sample of its two
largest steps. Between the sizes measured, a step's time is interpolated.

A pruned cell fine-tunes its pruned model, not the baseline: a neuron-pruned MLP steps
in ~70 % of the dense time and a masked model in ~130 % (the masks are multiplied into
the weights on every forward pass), so each pruned architecture is probed itself — made
from an untrained model, since the units a type keeps per layer depend only on the
ratio — at most `PROBED_RATIOS` per model, type and batch size, the ratios between them
interpolated.

Epochs, evaluations and each cell's extra work are then counted from the grid and the
dataset sizes in the registry; baselines already in `models_cache/` cost nothing.
It is an estimate from this machine, now: a busy CPU makes the real run slower.
"""
from __future__ import annotations

import bisect
import json
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import torch
from torch import nn

from .cache import baseline_key_for, default_cache_root, is_cached
from .criteria import CRITERIA, CriterionOptions
from .data import Split, data_identity, get_info
from .errors import raise_if_interrupted
from .models import architecture_key, build_model
from .pruning_types import PRUNING_TYPES
from .training import (OPTIMIZERS, TrainConfig, _StepSchedule, _train_epoch,
                       micro_batch_size, seed_torch)


if TYPE_CHECKING:
    from .sweep import Plan, SweepConfig

PROBE_STEP_S = 0.1
PROBE_MIN_BATCH = 4
# Pruned architectures probed per model, type and batch size; the ratios between them
# are interpolated (a CIFAR ResNet's probe takes a second or two).
PROBED_RATIOS = 3
# Work outside epochs, measured on 2 cores: a worker's start — imports, the dataset, the
# first optimiser (which imports torch._dynamo, ~2 s) — 5.2 s (a one-cell Digits sweep
# from the CLI took 5.7–6.1 s in all); per baseline (evaluating it, its costs, the
# dependency graph) ~0.5 s; per cell (costs, files) ~0.02 s.
START_S, PER_GROUP_S, PER_CELL_S = 5.2, 0.5, 0.02


@dataclass(frozen=True)
class StepTiming:
    """Seconds of one training step (forward, backward, optimiser step and the loop's
    own work) at the slice sizes measured, and the largest slice training uses."""
    points: tuple[tuple[int, float], ...]   # (samples, seconds of one step), rising samples
    micro_batch: int

    def step(self, samples: int) -> float:
        """One step of `samples`: interpolated between the sizes measured, beyond them
        along the line through the nearest two."""
        sizes = [n for n, _ in self.points]
        if len(self.points) == 1:
            (n0, t0), = self.points
            return t0 * max(samples, 1) / n0 if samples > n0 else t0
        i = bisect.bisect_left(sizes, samples)
        i = min(max(i, 1), len(sizes) - 1)
        (n0, t0), (n1, t1) = self.points[i - 1], self.points[i]
        t = t0 + (samples - n0) * (t1 - t0) / (n1 - n0)
        if samples < n0:  # below the smallest size: never more than it, never below 0
            t = min(t, t0)
        return max(t, 0.0)

    @property
    def per_sample_s(self) -> float:
        """Forward + backward per sample, from the two largest sizes measured."""
        if len(self.points) < 2:
            n, t = self.points[-1]
            return t / n
        (n0, t0), (n1, t1) = self.points[-2:]
        return max((t1 - t0) / (n1 - n0), 1e-7)

    def batch(self, samples: int) -> float:
        """One optimiser step of `samples`, in micro-batch slices."""
        full, rest = divmod(samples, max(1, self.micro_batch))
        return full * self.step(self.micro_batch) + (self.step(rest) if rest else 0.0)

    def train_epoch(self, samples: int, batch: int) -> float:
        batch = max(1, min(batch, samples)) if samples else 1
        full, rest = divmod(samples, batch)
        return full * self.batch(batch) + (self.batch(rest) if rest else 0.0)

    def evaluate(self, samples: int) -> float:
        """Forward only: about a third of a training step's work."""
        return samples * self.per_sample_s / 3


def _time_steps(model: nn.Module, shape: tuple[int, ...], n: int, optimizer: str,
                repeats: int = 3) -> float:
    """The fastest of a few real training steps of `n` samples (the sweep's own loop and
    optimiser: Adam's step alone doubled a Digits MLP's SGD step). Other work on a
    shared CPU only ever adds time; the first step warms up allocators and kernels."""
    steps = repeats + 1
    split = Split(torch.randn(n * steps, *shape), torch.zeros(n * steps, dtype=torch.long))
    cfg = TrainConfig(epochs=1, batch_size=n, optimizer=optimizer)
    opt = OPTIMIZERS[optimizer](model.parameters(), lr=cfg.lr, weight_decay=0.0)
    stamps: list[float] = []
    _train_epoch(model, opt, split, cfg, torch.Generator().manual_seed(0), torch.device("cpu"),
                 None, lambda m: stamps.append(time.perf_counter()),
                 _StepSchedule(opt, cfg, steps), n)
    return min(b - a for a, b in zip(stamps, stamps[1:]))


@dataclass
class _Measured:
    """One architecture's measured steps ({samples: seconds}), the largest slice training
    would use for it, and whether the probe stopped at `PROBE_STEP_S` (larger sizes are
    then extrapolated, never measured)."""
    micro: int
    points: dict[int, float] = field(default_factory=dict)
    capped: bool = False

    def covers(self, largest: int) -> bool:
        return self.capped or min(largest, self.micro) in self.points

    def timing(self) -> StepTiming:
        return StepTiming(tuple(sorted(self.points.items())), self.micro)


# by (architecture or spec, masks, optimiser): measured once per process
_MEASURED: dict[str, _Measured] = {}


def _sizes(largest: int) -> list[int]:
    """4, 8, 16, … below `largest`, then `largest`."""
    out, n = [], PROBE_MIN_BATCH
    while n < largest:
        out.append(n)
        n *= 2
    return out + [largest]


def probe(model: nn.Module, shape: tuple[int, ...], optimizer: str, largest: int,
          key: str | None = None) -> StepTiming:
    """`model`'s `StepTiming` up to slices of `largest` samples (measured once per
    process and architecture; `key` names it, by default `models.architecture_key`).
    The model's weights are trained on random data: pass a throwaway copy."""
    key = f"{key or architecture_key(model, shape)} {optimizer}"
    found = _MEASURED.get(key)
    if found is None:
        found = _MEASURED[key] = _Measured(
            micro_batch_size(model, shape, TrainConfig(batch_size=10 ** 9)))
    if found.covers(largest):
        return found.timing()
    threads = torch.get_num_threads()
    # One thread: two threads' spin-waits collapse when another process shares the two
    # cores (a CNN probe read 10× the per-sample time its real training then took).
    torch.set_num_threads(1)
    model.train()
    try:
        for n in _sizes(max(1, min(largest, found.micro))):
            if n not in found.points:
                found.points[n] = _time_steps(model, shape, n, optimizer)
            # stop once a step is slow, with two sizes to extrapolate from
            if found.points[n] >= PROBE_STEP_S and len(found.points) >= 2:
                found.capped = True
                break
    finally:
        torch.set_num_threads(threads)
    return found.timing()


def step_timing(spec: dict, optimizer: str = "adam", largest: int = 64) -> StepTiming:
    """The dense model of `spec` (built only when not yet measured: a DenseNet probe
    takes seconds)."""
    key = json.dumps(spec, sort_keys=True)
    found = _MEASURED.get(f"{key} {optimizer}")
    if found is not None and found.covers(largest):
        return found.timing()
    seed_torch(0)
    return probe(build_model(spec), tuple(spec["input_shape"]), optimizer, largest, key)


@lru_cache(maxsize=256)
def _pruned_timings(spec_json: str, type_name: str, ratios: tuple[float, ...], optimizer: str,
                    largest: int) -> tuple[StepTiming, ...]:
    """The `StepTiming` of the model `type_name` makes of `spec` at each ratio (0 < r < 1).

    Made from an untrained model: what a step costs depends on the shapes (and, for
    masks, on the mask hooks), not on the weights, and the units a structural type keeps
    per layer depend only on the ratio (`pruning_types`). A masked model keeps the dense
    shapes: one probe serves every ratio."""
    spec = json.loads(spec_json)
    shape = tuple(spec["input_shape"])
    seed_torch(0)
    dense = build_model(spec)
    kind = PRUNING_TYPES[type_name]
    if not kind.structural:
        model, _ = kind.prune(dense, spec, 0.5, "magnitude", None, CriterionOptions())
        timing = probe(model, shape, optimizer, largest,
                       f"{architecture_key(dense, shape)} masks: {type_name}")
        return (timing,) * len(ratios)
    models = kind.series(dense, spec, list(ratios), "l1", None, CriterionOptions(), None)
    return tuple(probe(model, shape, optimizer, largest) for model, _ in models)


def _probed(ratios: list[float]) -> list[float]:
    """At most `PROBED_RATIOS` of the pruned ratios, spread over them, the largest included."""
    if len(ratios) <= PROBED_RATIOS:
        return ratios
    last = len(ratios) - 1
    return [ratios[round(last * (i + 1) / PROBED_RATIOS)] for i in range(PROBED_RATIOS)]


def _interpolate(ratio: float, known: dict[float, float]) -> float:
    """Linear in the ratio between the nearest ratios in `known` (0: the dense model)."""
    xs = sorted(known)
    i = min(max(bisect.bisect_left(xs, ratio), 1), len(xs) - 1)
    x0, x1 = xs[i - 1], xs[i]
    if ratio >= x1 or x1 == x0:
        return known[x1]
    return known[x0] + (ratio - x0) * (known[x1] - known[x0]) / (x1 - x0)


@dataclass
class Estimate:
    seconds: float
    cells: int
    baselines_to_train: int
    baselines_cached: int
    # per baseline group, in run order, seconds of (`group_times`): its baseline
    # ("baseline_s", of which "train_s" is dense training, 0 when cached), the mean of
    # its cells ("cell_s"), of its ratio-0 / 100 % cells ("end_cell_s", an evaluation)
    # and of its pruned cells ("pruned_cell_s", scoring, surgery, fine-tuning), and that
    # mean per pruning type ("type_cell_s": a masked Digits MLP fine-tuned 1.5× as long
    # as a neuron-pruned one, and blocks run type by type). A running sweep's remaining
    # time is paced by these (`sweep_results.progress`).
    groups: list[dict] = field(default_factory=list)


def is_end_ratio(ratio: float) -> bool:
    """Ratio 0 (the baseline itself) or 100 % (a dead model): a cell that at most evaluates.

    Such a cell takes a few ms where a pruned cell fine-tunes for seconds, so the two
    are priced apart: paced by a ratio-0 cell against the mean of all cells, a 66-cell
    Fashion-MNIST sweep said "1 s" left at its first cell and took two minutes.
    """
    return not 0 < ratio < 1


def group_times(baseline_s: float, train_s: float, end: list[float], pruned: list[float],
                by_type: dict[str, list[float]] | None = None) -> dict:
    """One group's entry of `Estimate.groups` from its cells' estimated seconds
    (`by_type`: the pruned cells' seconds per pruning type)."""
    cells = end + pruned
    out: dict = {"baseline_s": baseline_s, "train_s": train_s,
                 "cell_s": sum(cells) / max(len(cells), 1),
                 "end_cell_s": sum(end) / len(end) if end else 0.0,
                 "pruned_cell_s": sum(pruned) / len(pruned) if pruned else 0.0}
    if by_type:
        out["type_cell_s"] = {t: sum(s) / len(s) for t, s in by_type.items() if s}
    return out


def finetune_epochs_s(cfg: SweepConfig, spec: dict, batch: int, type_name: str,
                      ratios: list[float], n_train: int, n_eval: int) -> dict[float, float]:
    """Seconds of one fine-tuning epoch (training, then the validation and test passes)
    of the model `type_name` makes of `spec` at each pruned ratio, at batch size `batch`."""
    ratios = sorted({r for r in ratios if 0 < r < 1})
    if not ratios:
        return {}
    dense = step_timing(spec, cfg.optimizer, batch)
    known = {0.0: dense.train_epoch(n_train, batch) + dense.evaluate(n_eval)}
    probed = _probed(ratios)
    try:
        timings = _pruned_timings(json.dumps(spec, sort_keys=True), type_name, tuple(probed),
                                  cfg.optimizer, batch)
    except Exception as exc:  # a model the type cannot prune: its cells fail fast, but
        raise_if_interrupted(exc)  # the estimate stays the dense model's, not an error
        return {r: known[0.0] for r in ratios}
    known.update({r: t.train_epoch(n_train, batch) + t.evaluate(n_eval)
                  for r, t in zip(probed, timings)})
    return {r: _interpolate(r, known) for r in ratios}


def estimate(cfg: SweepConfig, the_plan: Plan, cache_root=None) -> Estimate:
    """Seconds a sweep (`sweep.SweepConfig`, `sweep.Plan`) should take on this machine."""
    from .sweep import LATENCY_WARMUP, SPLIT_SEED

    cache_root = cache_root or default_cache_root()
    total, trained, cached = START_S, 0, 0
    per_group: list[dict[str, float]] = []
    cells_of: dict[tuple, list] = {}  # one pass: a scan of every cell per group was
    for cell in the_plan.cells:       # quadratic (10 000 repeats: 11 min to estimate)
        cells_of.setdefault(cell.group, []).append(cell)
    ratios = sorted(set(cfg.ratios))
    timed: set[tuple] = set()  # latencies the sweep measures once (`sweep._latency_key`)
    sources: dict[str, str] = {}  # dataset → its files' identity, once per dataset
    for group in the_plan.groups:
        total += PER_GROUP_S
        at_start = total
        arch, dataset, batch, seed = group
        info = get_info(dataset)
        n_all, n_test = info.samples
        n_val = int(round(n_all * cfg.val_fraction))
        n_train = n_all - n_val
        spec = cfg.spec(arch, dataset)
        spec_key = json.dumps(spec, sort_keys=True)  # once a group, not once a cell
        timing = step_timing(spec, cfg.optimizer, batch)
        per_epoch = timing.train_epoch(n_train, batch) + timing.evaluate(n_val + n_test)
        if dataset not in sources:
            sources[dataset] = data_identity(dataset)
        key = baseline_key_for(spec, dataset, SPLIT_SEED, cfg.val_fraction,
                               cfg.train_config(batch, seed, cfg.dense_epochs), sources[dataset])
        train_s = 0.0
        if cfg.use_cache and is_cached(key, cache_root):
            cached += 1
            total += timing.evaluate(n_test)  # the sweep tests a cached baseline again
        else:  # its test result comes from `get_baseline`'s own passes
            trained += 1
            train_s = cfg.dense_epochs * per_epoch
            total += train_s + timing.evaluate(n_all + n_test)
        baseline_s = total - at_start
        end: list[float] = []
        pruned: list[float] = []
        by_type: dict[str, list[float]] = {}
        dead_tested = False
        scored: set[str] = set()
        tuned: dict[str, dict[float, float]] = {}  # type → ratio → seconds of an epoch
        latency_s = (cfg.latency_repeats + LATENCY_WARMUP) * 2 * timing.evaluate(
            cfg.latency_batch) if cfg.latency_repeats else 0.0  # a model and the dense one
        for cell in cells_of.get(group, []):
            # the baseline's test result is the group's (above); the dead model, alike for
            # every type and criterion, is evaluated by the group's first 100 % cell
            if cell.ratio == 0 or (cell.ratio >= 1 and dead_tested):
                end.append(PER_CELL_S)
                continue
            seconds = PER_CELL_S
            if is_end_ratio(cell.ratio):
                dead_tested = True
                end.append(seconds + timing.evaluate(n_test))
                continue
            kind = PRUNING_TYPES[cell.type]
            if kind.structural and cell.criterion not in scored:  # once per group
                scored.add(cell.criterion)
                if cell.criterion in CRITERIA and CRITERIA[cell.criterion].needs_data:
                    seconds += 3 * timing.evaluate(min(cfg.calibration_samples, n_train))
            if cell.type not in tuned:
                tuned[cell.type] = finetune_epochs_s(cfg, spec, batch, cell.type, ratios,
                                                     n_train, n_val + n_test) \
                    if cfg.finetune_epochs else {}
            epoch = tuned[cell.type].get(cell.ratio)
            seconds += cfg.finetune_epochs * epoch if epoch is not None else 0.0
            seconds += timing.evaluate(n_test)  # its test pass
            # its latency, timed once per sweep and architecture (masks: per type)
            what = (spec_key, cell.type, cell.ratio if kind.structural else None)
            if what not in timed:
                timed.add(what)
                seconds += latency_s
            pruned.append(seconds)
            by_type.setdefault(cell.type, []).append(seconds)
        total += sum(end) + sum(pruned)
        per_group.append(group_times(baseline_s, train_s, end, pruned, by_type))
    return Estimate(total, len(the_plan.cells), trained, cached, per_group)
