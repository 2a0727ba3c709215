"""Train / evaluate engine over tensor-resident splits.

One effective batch may be larger than what fits in memory: it is split into
micro-batches whose gradients accumulate (loss scaled by their share), so batch 60 000
trains in bounded memory. The best epoch is chosen by validation loss and its weights
are kept; callbacks receive each epoch's metrics (for live charts) and a `should_stop`
predicate is checked between batches so a Stop button never waits a whole epoch.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .data import Dataset, Split
from .errors import Cancelled, ExplorerError

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": lambda params, lr, weight_decay: torch.optim.SGD(
        params, lr=lr, momentum=0.9, weight_decay=weight_decay),
}


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    patience: int = 0  # 0 = no early stopping
    seed: int = 0
    max_micro_batch: int = 2048  # largest slice that goes through the model at once
    eval_batch_size: int = 4096
    device: str = "auto"

    def validate(self) -> "TrainConfig":
        if self.optimizer not in OPTIMIZERS:
            raise ExplorerError(f"unknown optimiser {self.optimizer!r}; choose one of "
                                f"{', '.join(OPTIMIZERS)}")
        for name in ("epochs", "batch_size", "max_micro_batch", "eval_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "epochs" else 1):
                raise ExplorerError(f"{name} must be a whole number ≥ "
                                    f"{0 if name == 'epochs' else 1}, got {v!r}")
        if not isinstance(self.patience, int) or self.patience < 0:
            raise ExplorerError(f"patience must be a whole number ≥ 0, got {self.patience!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ExplorerError(f"learning rate must be a positive number, got {self.lr!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
def evaluate(model: nn.Module, split: Split, batch_size: int = 4096) -> tuple[float, float]:
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


def _train_epoch(model: nn.Module, opt: torch.optim.Optimizer, split: Split, cfg: TrainConfig,
                 gen: torch.Generator, device: torch.device,
                 should_stop: Callable[[], bool] | None,
                 on_batch: Callable[[nn.Module], None] | None) -> tuple[float, float]:
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    for x, y in split.batches(cfg.batch_size, shuffle=True, generator=gen):
        if should_stop is not None and should_stop():
            raise Cancelled()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        n = y.shape[0]
        for i in range(0, n, cfg.max_micro_batch):
            xm, ym = x[i:i + cfg.max_micro_batch], y[i:i + cfg.max_micro_batch]
            logits = model(xm)
            loss = F.cross_entropy(logits, ym)
            (loss * (ym.shape[0] / n)).backward()
            total_loss += loss.item() * ym.shape[0]
            correct += (logits.argmax(1) == ym).sum().item()
        opt.step()
        if on_batch is not None:
            on_batch(model)
        seen += n
    return total_loss / max(seen, 1), 100.0 * correct / max(seen, 1)


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train(model: nn.Module, data: Dataset, cfg: TrainConfig,
          on_epoch: Callable[[EpochMetrics], None] | None = None,
          should_stop: Callable[[], bool] | None = None,
          on_batch: Callable[[nn.Module], None] | None = None) -> TrainResult:
    """Train in place; on return the model holds the best epoch's weights.

    `on_batch` runs after every optimiser step (used to re-apply pruning masks).
    Raises `Cancelled` if `should_stop()` turns true; the model then holds its
    current weights and nothing else is lost.
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model.to(device)
    opt = OPTIMIZERS[cfg.optimizer](model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    result = TrainResult()
    select = data.val if len(data.val) else data.test
    best_loss = math.inf
    bad_epochs = 0
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        tr_loss, tr_acc = _train_epoch(model, opt, data.train, cfg, gen, device, should_stop, on_batch)
        val_loss, val_acc = evaluate(model, data.val, cfg.eval_batch_size)
        te_loss, te_acc = evaluate(model, data.test, cfg.eval_batch_size)
        sel_loss = val_loss if select is data.val else te_loss
        metrics = EpochMetrics(epoch, tr_loss, tr_acc, val_loss, val_acc, te_loss, te_acc,
                               time.perf_counter() - t0)
        result.history.append(metrics)
        if sel_loss < best_loss or result.best_state is None:
            best_loss = sel_loss
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
    result.seconds = time.perf_counter() - start
    return result


def predict_proba(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return F.softmax(model(x), dim=1)


def train_config_from(d: Mapping) -> TrainConfig:
    known = {k: d[k] for k in TrainConfig.__dataclass_fields__ if k in d}
    return TrainConfig(**known).validate()
