"""Train / evaluate engine over tensor-resident splits.

One effective batch may be larger than what fits in memory: it is split into
micro-batches whose gradients accumulate (loss scaled by their share), so batch 60 000
trains in bounded memory. The best epoch is chosen by validation loss and its weights
are kept; callbacks receive each epoch's metrics (for live charts) and a `should_stop`
predicate is checked between batches so a Stop button never waits a whole epoch.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .data import Dataset, Split
from .errors import Cancelled, ExplorerError
from .settings import check_epochs, check_lr, check_threads, check_weight_decay

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": lambda params, lr, weight_decay: torch.optim.SGD(
        params, lr=lr, momentum=0.9, weight_decay=weight_decay),
}


def _constant(progress: float) -> float:
    return 1.0


def _cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def _linear(progress: float) -> float:
    return 1.0 - min(max(progress, 0.0), 1.0)


def _stable_decay(progress: float, decay_share: float = 0.2) -> float:
    """Constant rate, then a linear decay to zero over the last `decay_share` of steps."""
    return min(1.0, max(0.0, (1.0 - progress) / decay_share))


# Multiplier of the base learning rate as a function of training progress in [0, 1]
# (optimiser steps taken / steps planned for all epochs).
LR_SCHEDULES: dict[str, Callable[[float], float]] = {
    "cosine": _cosine,
    "constant": _constant,
    "linear": _linear,
    "stable_decay": _stable_decay,
}


# Samples per evaluation batch, for every evaluation (a model's numbers on a split do
# not depend on it, up to float rounding, which is why it must be one value: the sweep
# reuses a baseline's test result from the cache's pass instead of making its own).
EVAL_BATCH = 4096


@dataclass
class TrainConfig:
    """Settings of one training run; `validate()` turns bad values into ExplorerError.

    `lr_schedule` defaults to "stable_decay": the base rate for 80 % of the planned
    steps, then a linear decay to zero (the warmup-stable-decay "cooldown", Hägele et
    al. 2024). With a constant rate, where the last noisy Adam steps happen to land
    decides a short run: one Fashion-MNIST epoch of the default MLP gave 82.9–86.5 %
    validation accuracy over ten seeds at a constant 1e-3, 86.7–87.3 % with the
    cooldown. Cosine decay is as stable but halves the average rate, which costs
    accuracy on tiny budgets. "constant" reproduces the thesis' fixed-rate Adam.
    """
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    patience: int = 0  # 0 = no early stopping
    seed: int = 0
    max_micro_batch: int = 2048  # largest slice that goes through the model at once
    memory_budget_mb: int = 3072  # activations of one micro-batch stay below this (see micro_batch_size)
    eval_batch_size: int = EVAL_BATCH
    device: str = "auto"
    lr_schedule: str = "stable_decay"
    threads: int = 0  # CPU threads while training; 0 = auto (see `cpu_threads_for`)

    def validate(self) -> "TrainConfig":
        if self.optimizer not in OPTIMIZERS:
            raise ExplorerError(f"unknown optimiser {self.optimizer!r}; choose one of "
                                f"{', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ExplorerError(f"unknown learning-rate schedule {self.lr_schedule!r}; choose "
                                f"one of {', '.join(LR_SCHEDULES)}")
        check_epochs(self.epochs, "epochs", 0)
        for name, minimum in (("batch_size", 1), ("max_micro_batch", 1),
                              ("memory_budget_mb", 1),
                              ("eval_batch_size", 1), ("patience", 0), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise ExplorerError(f"{name.replace('_', ' ')} must be a whole number ≥ "
                                    f"{minimum}, got {v!r}")  # 'batch_size' read as code
        check_threads(self.threads, "threads", 0, " (automatic)")
        check_lr(self.lr)
        check_weight_decay(self.weight_decay)
        resolve_device(self.device)
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def lower_the_rate(cfg: TrainConfig) -> str:
    """The advice after a diverged training: its rate and optimiser are what to change."""
    return f"lower the learning rate (it was {cfg.lr:g} with {cfg.optimizer})"


def seed_torch(seed: int) -> None:
    """`torch.manual_seed` for the devices this tool computes on: the CPU, and CUDA where
    there is one. torch's own also queues a seeding of each accelerator it was built for
    that is not there, each with a captured stack trace: 0.2-0.7 ms a call, paid by every
    training and every baseline a sweep builds."""
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" → CUDA when present, else CPU; an unusable name is an ExplorerError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ExplorerError(f"unknown device {name!r}; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ExplorerError("device 'cuda' was requested but no CUDA GPU is available")
    if device.type not in ("cpu", "cuda"):
        raise ExplorerError(f"unsupported device {name!r}; use auto, cpu or cuda")
    return device


def cpu_threads_for(model: nn.Module, cfg: TrainConfig) -> int:
    """CPU threads for training `model`: `cfg.threads`, or 1 for nets without convs.

    An MLP's matrices are too small for two threads to gain anything (one epoch of the
    default MLP on Fashion-MNIST: 1.1 s on one thread, 0.8–1.8 s on two), and when the
    machine is busy, OpenMP's spin-waiting threads collapse: the same epoch took 183 s
    on two threads next to three CPU-bound processes on a 2-core box, 5–9 s on one.
    Conv nets use as many threads as cores are idle right now (at most torch's default):
    threads pay off for them on a free machine, but collapse on a shared one — one
    epoch of the CNN on Digits took 0.2 s on one thread, 1.1 s on two, next to another
    CPU-bound process on 2 cores (ResNet-18: 14 s vs 28 s).
    """
    if cfg.threads:
        return cfg.threads
    if any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules()):
        return max(1, min(torch.get_num_threads(), idle_cores()))
    return 1


_IDLE_CACHE: dict[str, float] = {}
IDLE_CACHE_S = 30.0


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all cores from /proc/stat, or None off Linux."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields[:8])


def idle_cores(window_s: float = 0.1) -> int:
    """How many cores no other process is using, sampled over `window_s` (cached for 30 s).

    Called before this process starts computing (see `IdleProbe` to sample while it
    does). Where /proc/stat is missing, every core counts as idle (torch's default).
    """
    if time.monotonic() - _IDLE_CACHE.get("at", -IDLE_CACHE_S) < IDLE_CACHE_S:
        return int(_IDLE_CACHE["cores"])
    return IdleProbe().cores(window_s)


class IdleProbe:
    """Idle cores over a window that starts now and ends at `cores()`.

    What this process itself uses in the window counts as idle — it is ours, not another
    program's: counting the sweep's checkpoint writer made a ResNet-18 sweep train on one
    thread for minutes (9.7 s per fine-tune epoch instead of 5.1 s). So the window can
    overlap the worker's own start-up instead of being slept through.
    """

    def __init__(self) -> None:
        self.first = _cpu_times()
        self.own, self.wall = time.process_time(), time.monotonic()

    def cores(self, window_s: float = 0.1) -> int:
        """The idle cores (after sleeping whatever is left of `window_s`); cached for
        `idle_cores` for 30 s."""
        count = os.cpu_count() or 1
        if self.first is None:
            return count
        left = window_s - (time.monotonic() - self.wall)
        if left > 0:
            time.sleep(left)
        second = _cpu_times()
        if second is None:
            return count
        own = (time.process_time() - self.own) / max(time.monotonic() - self.wall, 1e-9)
        idle = idle_of(self.first, second, own, count)
        _IDLE_CACHE.update(at=time.monotonic(), cores=idle)
        return idle


_STARTED = IdleProbe()  # this process's start-up, sampled: see `start_up_probe`


def start_up_probe() -> IdleProbe:
    """A probe whose window opened when this module was imported, while that was less
    than `IDLE_CACHE_S` ago; otherwise a new one.

    A worker imports torch and reads its data for seconds before it first asks how
    many cores are idle; sampling over that time (its own CPU counts as idle) leaves
    nothing to sleep through, where a new probe sleeps 0.1 s — 4 % of the issue's
    Digits Compare benchmark grid.
    """
    if time.monotonic() - _STARTED.wall < IDLE_CACHE_S:
        return _STARTED
    return IdleProbe()


def idle_of(first: tuple[int, int], second: tuple[int, int], own_cores: float,
            cores: int) -> int:
    """Idle cores between two (idle, total) /proc/stat samples, counting the `own_cores`
    this process used meanwhile as idle."""
    total = max(second[1] - first[1], 1)
    idle = cores * (second[0] - first[0]) / total + own_cores
    return int(min(cores, max(0, round(idle))))


# Training holds more than the module outputs `activation_bytes` counts: autograd's saved
# tensors, gradients flowing back, concatenations inside blocks. Measured peak-RSS growth
# of one forward + backward per sample, as a multiple of those outputs (3×32×32 inputs):
# DenseNet-121 0.9, ResNet-18 1.1, MobileNetV2 1.2, VGG16-BN 1.7.
ACTIVATION_OVERHEAD = 2


def micro_batch_size(model: nn.Module, input_shape: tuple[int, ...], cfg: TrainConfig) -> int:
    """Samples per forward/backward slice: as large as allowed, as small as memory needs.

    `max_micro_batch` caps it; a model whose activations for one sample are large (a
    DenseNet on 32×32 keeps ~48 MB) gets fewer, so that `ACTIVATION_OVERHEAD` × the
    activations of one slice stay within `memory_budget_mb`. The gradient is the same
    whatever the slice size (see `_train_epoch`), so any effective batch — 60 000
    included — trains in bounded memory. Deterministic for a given model and config,
    so cached baselines stay reproducible.
    """
    micro = min(cfg.batch_size, cfg.max_micro_batch)
    if micro <= 1:
        return 1
    from .metrics import activation_bytes

    per_sample = activation_bytes(model, input_shape) * ACTIVATION_OVERHEAD
    fit = (cfg.memory_budget_mb * 2 ** 20) // max(per_sample, 1)
    return int(max(1, min(micro, fit)))


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    test_loss: float
    test_acc: float
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    history: list[EpochMetrics] = field(default_factory=list)
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] | None = None
    seconds: float = 0.0
    stopped_early: bool = False

    @property
    def best(self) -> EpochMetrics | None:
        for m in self.history:
            if m.epoch == self.best_epoch:
                return m
        return None


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = EVAL_BATCH) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in %) of `model` on `split`."""
    if len(split) == 0:
        return float("nan"), float("nan")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total_loss, correct = 0.0, 0
    for x, y in split.batches(batch_size):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    model.train(was_training)
    n = len(split)
    return total_loss / n, 100.0 * correct / n


class _StepSchedule:
    """Sets the optimiser's learning rate before each step from `LR_SCHEDULES`."""

    def __init__(self, opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
        self.opt, self.base, self.fn = opt, cfg.lr, LR_SCHEDULES[cfg.lr_schedule]
        self.total = max(1, cfg.epochs * steps_per_epoch)
        self.step_count = 0

    def before_step(self) -> None:
        lr = self.base * self.fn(self.step_count / self.total)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.step_count += 1


def _train_epoch(model: nn.Module, opt: torch.optim.Optimizer, split: Split, cfg: TrainConfig,
                 gen: torch.Generator, device: torch.device,
                 should_stop: Callable[[], bool] | None,
                 on_batch: Callable[[nn.Module], None] | None,
                 schedule: _StepSchedule | None = None,
                 micro: int | None = None) -> tuple[float, float]:
    """One pass over `split`; one optimiser step per effective batch.

    Each effective batch is gathered one micro-batch at a time (`micro` samples, by
    default `max_micro_batch`; `train` sizes it with `micro_batch_size`): memory stays
    bounded however large `batch_size` is.
    Micro-batch losses are means, so each is weighted by its share of the batch: the
    accumulated gradient is exactly that of the mean loss over the whole batch. (With
    BatchNorm the normalisation statistics are per micro-batch, as in any accumulation.)
    """
    micro = micro or cfg.max_micro_batch
    model.train()
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    for index in split.index_batches(cfg.batch_size, shuffle=True, generator=gen):
        if should_stop is not None and should_stop():
            raise Cancelled()
        n = index.numel() if isinstance(index, torch.Tensor) else index.stop - index.start
        opt.zero_grad(set_to_none=True)
        for i in range(0, n, micro):
            part = index[i:i + micro] if isinstance(index, torch.Tensor) else \
                slice(index.start + i, min(index.start + i + micro, index.stop))
            xm, ym = split.take(part)
            xm, ym = xm.to(device, non_blocking=True), ym.to(device, non_blocking=True)
            logits = model(xm)
            loss = F.cross_entropy(logits, ym)
            (loss * (ym.shape[0] / n)).backward()
            total_loss += loss.detach().double() * ym.shape[0]
            correct += (logits.detach().argmax(1) == ym).sum()
            del xm, ym, logits, loss
        if schedule is not None:
            schedule.before_step()
        opt.step()
        if on_batch is not None:
            on_batch(model)
        seen += n
    return total_loss.item() / max(seen, 1), 100.0 * correct.item() / max(seen, 1)


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train(model: nn.Module, data: Dataset, cfg: TrainConfig,
          on_epoch: Callable[[EpochMetrics], None] | None = None,
          should_stop: Callable[[], bool] | None = None,
          on_batch: Callable[[nn.Module], None] | None = None) -> TrainResult:
    """Train in place; on return the model holds the best epoch's weights.

    The best epoch is the one with the lowest validation loss (test loss only when the
    dataset has no validation split); with `patience`, training stops after that many
    epochs without improvement. `on_epoch` receives each epoch's metrics as soon as
    they exist (live charts). CPU threads are set for the run and restored after.
    `on_batch` runs after every optimiser step (used to re-apply pruning masks).
    Raises `Cancelled` if `should_stop()` turns true; the model then holds its
    current weights and nothing else is lost.
    """
    cfg.validate()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cpu_threads_for(model, cfg))
    try:
        return _train(model, data, cfg, on_epoch, should_stop, on_batch)
    finally:
        torch.set_num_threads(previous_threads)


def kept_epoch(epochs: Sequence[EpochMetrics | Mapping[str, Any]]) -> int | None:
    """The epoch whose weights training keeps: the lowest validation loss, or the lowest
    test loss when there is no validation split (its loss is NaN); the first on a tie.

    The one rule for the trainer (which asks after every epoch whether the newest one is
    it) and for live views that mark the kept epoch from logged epoch records. An epoch
    with no finite loss is kept only until a later one has a finite loss.
    """
    best: int | None = None
    best_loss = math.nan
    for e in epochs:
        d = e.to_dict() if isinstance(e, EpochMetrics) else e
        loss = d.get("val_loss")
        if loss is None or math.isnan(loss):
            loss = d.get("test_loss")
        loss = math.nan if loss is None else float(loss)
        if best is None or loss < best_loss or (math.isnan(best_loss) and not math.isnan(loss)):
            best, best_loss = d.get("epoch"), loss
    return best


def _train(model: nn.Module, data: Dataset, cfg: TrainConfig,
           on_epoch: Callable[[EpochMetrics], None] | None,
           should_stop: Callable[[], bool] | None,
           on_batch: Callable[[nn.Module], None] | None) -> TrainResult:
    device = resolve_device(cfg.device)
    seed_torch(cfg.seed)
    model.to(device)
    opt = OPTIMIZERS[cfg.optimizer](model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = math.ceil(len(data.train) / min(cfg.batch_size, max(len(data.train), 1)))
    schedule = _StepSchedule(opt, cfg, steps_per_epoch)
    micro = micro_batch_size(model, data.info.input_shape, cfg)
    result = TrainResult()
    bad_epochs = 0
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        tr_loss, tr_acc = _train_epoch(model, opt, data.train, cfg, gen, device, should_stop,
                                       on_batch, schedule, micro)
        val_loss, val_acc = evaluate(model, data.val, cfg.eval_batch_size)
        te_loss, te_acc = evaluate(model, data.test, cfg.eval_batch_size)
        metrics = EpochMetrics(epoch, tr_loss, tr_acc, val_loss, val_acc, te_loss, te_acc,
                               time.perf_counter() - t0)
        result.history.append(metrics)
        if kept_epoch(result.history) == epoch:
            result.best_epoch = epoch
            result.best_state = state_copy(model)
            bad_epochs = 0
        else:
            bad_epochs += 1
        if on_epoch is not None:
            on_epoch(metrics)
        if cfg.patience and bad_epochs >= cfg.patience:
            result.stopped_early = True
            break
    if result.best_state is not None:
        model.load_state_dict(result.best_state)
    # the last step's gradients belong to no kept weights and nobody reads them: held,
    # they doubled every later copy's tensors (a sweep copies a baseline ~25 times)
    model.zero_grad(set_to_none=True)
    result.seconds = time.perf_counter() - start
    return result


def predict_proba(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return F.softmax(model(x), dim=1)


def train_config_from(d: Mapping) -> TrainConfig:
    known = {k: d[k] for k in TrainConfig.__dataclass_fields__ if k in d}
    return TrainConfig(**known).validate()
