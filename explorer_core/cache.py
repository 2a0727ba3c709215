"""Cache of trained dense baselines in `models_cache/`.

Training the dense model is the most expensive part of every run and sweep cell, and
it is identical whenever (model spec, dataset, training config, seed) are identical:
the key is a hash of exactly those, so a cached baseline is only reused when it is the
model that would have been trained.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .data import Dataset
from .errors import CheckpointError
from .models import build_model
from .training import EpochMetrics, TrainConfig, TrainResult, evaluate, train


def default_cache_root() -> Path:
    return Path(os.environ.get("EXPLORER_CACHE", "models_cache"))


def baseline_key(spec: Mapping[str, Any], data: Dataset, cfg: TrainConfig) -> str:
    train = {k: v for k, v in cfg.to_dict().items() if k not in ("device", "eval_batch_size")}
    blob = json.dumps({"spec": dict(spec), "dataset": data.name, "split_seed": data.seed,
                       "val_fraction": data.val_fraction, "train": train},
                      sort_keys=True)
    return f"{spec['arch']}-{data.name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


@dataclass
class Baseline:
    model: nn.Module
    metrics: dict[str, float]
    history: list[dict]
    from_cache: bool
    key: str
    path: Path


def _metrics(model: nn.Module, data: Dataset, batch: int) -> dict[str, float]:
    tr_loss, tr_acc = evaluate(model, data.train, batch)
    te_loss, te_acc = evaluate(model, data.test, batch)
    va_loss, va_acc = evaluate(model, data.val, batch)
    return {"train_loss": tr_loss, "train_acc": tr_acc, "test_loss": te_loss,
            "test_acc": te_acc, "val_loss": va_loss, "val_acc": va_acc}


def get_baseline(spec: Mapping[str, Any], data: Dataset, cfg: TrainConfig,
                 root: Path | None = None,
                 on_epoch: Callable[[EpochMetrics], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> Baseline:
    """Load the cached dense model for this exact setting, or train and cache it."""
    root = Path(root or default_cache_root())
    key = baseline_key(spec, data, cfg)
    path = root / f"{key}.safetensors"
    if path.is_file():
        try:
            ck: Checkpoint = load_checkpoint(path)
            return Baseline(ck.model, ck.meta.get("metrics", {}), ck.meta.get("history", []),
                            True, key, path)
        except CheckpointError:
            pass  # a damaged cache entry is simply retrained and overwritten
    torch.manual_seed(cfg.seed)  # the initial weights are part of what the key promises
    model = build_model(spec)
    result: TrainResult = train(model, data, cfg, on_epoch=on_epoch, should_stop=should_stop)
    model.eval()
    metrics = _metrics(model, data, cfg.eval_batch_size)
    history = [m.to_dict() for m in result.history]
    save_checkpoint(model, spec, path, {"metrics": metrics, "history": history,
                                        "best_epoch": result.best_epoch,
                                        "dataset": data.name, "train": cfg.to_dict()})
    return Baseline(model, metrics, history, False, key, path)
