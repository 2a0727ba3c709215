"""How long a sweep will take, said before it starts.

A timing probe runs a few real training steps of each model on random inputs of the
dataset's shape, at growing batch sizes, and fits on the two largest `seconds = overhead + n × per_sample`
(a step has a fixed cost — optimiser, Python, kernel launches — plus a cost per sample).
Epochs, evaluations and each cell's extra work are then counted from the grid and the
dataset sizes in the registry; baselines already in `models_cache/` cost nothing.
It is an estimate from this machine, now: a busy CPU makes the real run slower.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache

import torch
import torch.nn.functional as F

from .cache import baseline_key_for, default_cache_root, is_cached
from .criteria import CRITERIA
from .data import get_info
from .models import build_model
from .pruning_types import PRUNING_TYPES
from .training import micro_batch_size


PROBE_STEP_S = 0.1
PROBE_MAX_BATCH = 512
# Work outside epochs, measured on 2 cores: a worker's start — imports, the dataset, the
# first optimiser (which imports torch._dynamo, ~2 s) — 5.2 s (a one-cell Digits sweep
# from the CLI took 5.7–6.1 s in all); per baseline (evaluating it, its costs, the
# dependency graph) ~0.5 s; per cell (costs, files) ~0.02 s.
START_S, PER_GROUP_S, PER_CELL_S = 5.2, 0.5, 0.02


@dataclass(frozen=True)
class StepTiming:
    overhead_s: float     # per optimiser step (or micro-batch)
    per_sample_s: float   # forward + backward per sample
    micro_batch: int      # largest slice training will use for a large batch

    def train_epoch(self, samples: int, batch: int) -> float:
        slices = math.ceil(samples / max(1, min(batch, self.micro_batch)))
        return slices * self.overhead_s + samples * self.per_sample_s

    def evaluate(self, samples: int) -> float:
        """Forward only: about a third of a training step's work."""
        return samples * self.per_sample_s / 3


def _time_steps(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int = 5
                ) -> float:
    """The fastest of a few steps: other work on a shared CPU only ever adds time."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    times = []
    for i in range(repeats + 1):  # the first run warms up allocators and kernels
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    return min(times)


@lru_cache(maxsize=64)
def _probe(spec_json: str) -> StepTiming:
    from .training import TrainConfig

    spec = json.loads(spec_json)
    torch.manual_seed(0)
    model = build_model(spec).train()
    shape = tuple(spec["input_shape"])
    threads = torch.get_num_threads()
    # One thread: two threads' spin-waits collapse when another process shares the two
    # cores (a CNN probe read 10× the per-sample time its real training then took).
    torch.set_num_threads(1)
    try:
        # Double the batch until a step takes PROBE_STEP_S: cheap models are timed near
        # real batch sizes (where they vectorise well), expensive ones stay small.
        t: dict[int, float] = {}
        n = 4
        while True:
            x = torch.randn(n, *shape)
            t[n] = _time_steps(model, x, torch.zeros(n, dtype=torch.long))
            if len(t) >= 2 and (t[n] >= PROBE_STEP_S or n >= PROBE_MAX_BATCH):
                break
            n *= 2
    finally:
        torch.set_num_threads(threads)
    small, large = n // 2, n
    per_sample = max((t[large] - t[small]) / (large - small), 1e-7)
    overhead = max(t[small] - small * per_sample, 0.0)
    micro = micro_batch_size(model, shape, TrainConfig(batch_size=10 ** 9))
    return StepTiming(overhead, per_sample, micro)


def step_timing(spec: dict) -> StepTiming:
    """Measured once per model spec and process (a DenseNet probe takes seconds)."""
    return _probe(json.dumps(spec, sort_keys=True))


@dataclass
class Estimate:
    seconds: float
    cells: int
    baselines_to_train: int
    baselines_cached: int
    # per baseline group, in run order, seconds of (`group_times`): its baseline
    # ("baseline_s", of which "train_s" is dense training, 0 when cached), the mean of
    # its cells ("cell_s"), of its ratio-0 / 100 % cells ("end_cell_s", an evaluation)
    # and of its pruned cells ("pruned_cell_s", scoring, surgery, fine-tuning). A running
    # sweep's remaining time is paced by these (`sweep_results.progress`).
    groups: list[dict[str, float]] = field(default_factory=list)


def is_end_ratio(ratio: float) -> bool:
    """Ratio 0 (the baseline itself) or 100 % (a dead model): a cell that at most evaluates.

    Such a cell takes a few ms where a pruned cell fine-tunes for seconds, so the two
    are priced apart: paced by a ratio-0 cell against the mean of all cells, a 66-cell
    Fashion-MNIST sweep said "1 s" left at its first cell and took two minutes.
    """
    return not 0 < ratio < 1


def group_times(baseline_s: float, train_s: float, end: list[float], pruned: list[float]
                ) -> dict[str, float]:
    """One group's entry of `Estimate.groups` from its cells' estimated seconds."""
    cells = end + pruned
    return {"baseline_s": baseline_s, "train_s": train_s,
            "cell_s": sum(cells) / max(len(cells), 1),
            "end_cell_s": sum(end) / len(end) if end else 0.0,
            "pruned_cell_s": sum(pruned) / len(pruned) if pruned else 0.0}


def estimate(cfg, the_plan, cache_root=None) -> Estimate:
    """Seconds a sweep (`sweep.SweepConfig`, `sweep.Plan`) should take on this machine."""
    from .sweep import LATENCY_WARMUP, SPLIT_SEED

    cache_root = cache_root or default_cache_root()
    total, trained, cached = START_S, 0, 0
    per_group: list[dict[str, float]] = []
    cells_of: dict[tuple, list] = {}  # one pass: a scan of every cell per group was
    for cell in the_plan.cells:       # quadratic (10 000 repeats: 11 min to estimate)
        cells_of.setdefault(cell.group, []).append(cell)
    for group in the_plan.groups:
        total += PER_GROUP_S
        at_start = total
        arch, dataset, batch, seed = group
        info = get_info(dataset)
        n_all, n_test = info.samples
        n_val = int(round(n_all * cfg.val_fraction))
        n_train = n_all - n_val
        spec = cfg.spec(arch, dataset)
        timing = step_timing(spec)
        per_epoch = timing.train_epoch(n_train, batch) + timing.evaluate(n_val + n_test)
        key = baseline_key_for(spec, dataset, SPLIT_SEED, cfg.val_fraction,
                               cfg.train_config(batch, seed, cfg.dense_epochs))
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
        dead_tested = False
        for cell in cells_of.get(group, []):
            # the baseline's test result is the group's (above); the dead model, alike for
            # every type and criterion, is evaluated by the group's first 100 % cell
            if cell.ratio == 0 or (cell.ratio >= 1 and dead_tested):
                end.append(PER_CELL_S)
                continue
            seconds = PER_CELL_S + timing.evaluate(n_test)
            if is_end_ratio(cell.ratio):
                dead_tested = True
                end.append(seconds)
                continue
            if cell.criterion in CRITERIA and CRITERIA[cell.criterion].needs_data:
                seconds += 3 * timing.evaluate(min(cfg.calibration_samples, n_train))
            seconds += cfg.finetune_epochs * per_epoch
            if cfg.latency_repeats and not PRUNING_TYPES[cell.type].structural:
                seconds += (cfg.latency_repeats + LATENCY_WARMUP) * timing.evaluate(
                    cfg.latency_batch)
            pruned.append(seconds)
        total += sum(end) + sum(pruned)
        per_group.append(group_times(baseline_s, train_s, end, pruned))
    return Estimate(total, len(the_plan.cells), trained, cached, per_group)
