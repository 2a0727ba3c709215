"""Cache of trained dense baselines in `models_cache/`.

Training the dense model is the most expensive part of every run and sweep cell, and
it is identical whenever (model spec, dataset, training config, seed) are identical:
the key is a hash of exactly those, so a cached baseline is only reused when it is the
model that would have been trained.
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .checkpoint import Checkpoint, load_checkpoint, refuse_diverged, save_checkpoint
from .data import Dataset
from .errors import CheckpointError, os_reason
from .fileio import folder_from_env
from .models import build_model
from .metrics import PeakMemory
from .training import (EpochMetrics, TrainConfig, TrainResult, evaluate, lower_the_rate,
                       resolve_device, seed_torch, train)


def default_cache_root() -> Path:
    return folder_from_env("EXPLORER_CACHE", "models_cache")


def baseline_key(spec: Mapping[str, Any], data: Dataset, cfg: TrainConfig) -> str:
    return baseline_key_for(spec, data.name, data.seed, data.val_fraction, cfg, data.source)


def baseline_key_for(spec: Mapping[str, Any], dataset: str, split_seed: int,
                     val_fraction: float, cfg: TrainConfig, source: str) -> str:
    """The cache key without loading the data (a page estimating a sweep's time asks).
    `source` is the files' `data.data_identity`: a model trained on other files of the
    same dataset (replaced, repaired, another EXPLORER_DATA) is another baseline."""
    train = {k: v for k, v in cfg.to_dict().items() if k not in ("device", "eval_batch_size")}
    key = {"spec": dict(spec), "dataset": dataset, "split_seed": split_seed,
           "val_fraction": val_fraction, "train": train}
    if source != "bundled":  # data that comes with a library cannot change: its baselines
        key["data"] = source  # keep the keys they were cached under
    blob = json.dumps(key, sort_keys=True)
    return f"{spec['arch']}-{dataset}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def is_cached(key: str, root: Path | None = None) -> bool:
    return _complete(Path(root or default_cache_root()) / f"{key}.safetensors")


def _complete(path: Path) -> bool:
    """Weights and sidecar both on disk: the sidecar, written second, holds what a
    baseline reports (metrics, history, training time); weights alone were cut off."""
    return path.is_file() and path.with_suffix(".json").is_file()


@dataclass
class Baseline:
    model: nn.Module
    metrics: dict[str, float]
    history: list[dict]
    from_cache: bool
    key: str
    path: Path
    train_seconds: float | None = None  # wall time of the training that made it
    peak_mb: float | None = None        # measured peak memory of that training


def _metrics(model: nn.Module, data: Dataset, batch: int) -> dict[str, float]:
    tr_loss, tr_acc = evaluate(model, data.train, batch)
    te_loss, te_acc = evaluate(model, data.test, batch)
    va_loss, va_acc = evaluate(model, data.val, batch)
    return {"train_loss": tr_loss, "train_acc": tr_acc, "test_loss": te_loss,
            "test_acc": te_acc, "val_loss": va_loss, "val_acc": va_acc}


def get_baseline(spec: Mapping[str, Any], data: Dataset, cfg: TrainConfig,
                 root: Path | None = None,
                 on_epoch: Callable[[EpochMetrics], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 save_with: Callable[[Callable[[], None]], None] | None = None) -> Baseline:
    """Load the cached dense model for this exact setting, or train and cache it.

    A training that diverges (weights not finite) raises `TrainingDiverged` and caches
    nothing: a NaN baseline was written to the cache, refused by the loader on the next
    sweep (`_cached`), trained again and written again.
    `save_with`: runs the cache write, e.g. a background writer's `submit` (a Compare
    sweep's), so the next step need not wait for the disk (two files and two fsyncs,
    ~2-5 ms per Digits baseline); by default it is written before this returns. The
    model must then stay unchanged until the write has run.
    """
    root = Path(root or default_cache_root())
    key = baseline_key(spec, data, cfg)
    path = root / f"{key}.safetensors"
    found = _cached(path, key)
    if found is not None:
        return found
    seed_torch(cfg.seed)  # the initial weights are part of what the key promises
    model = build_model(spec)
    with PeakMemory(resolve_device(cfg.device)) as memory:
        result: TrainResult = train(model, data, cfg, on_epoch=on_epoch, should_stop=should_stop)
    refuse_diverged(model, "the dense baseline", lower_the_rate(cfg))
    model.eval()
    metrics = _metrics(model, data, cfg.eval_batch_size)
    history = [m.to_dict() for m in result.history]
    meta = {"metrics": metrics, "history": history, "best_epoch": result.best_epoch,
            "dataset": data.name, "train": cfg.to_dict(), "train_seconds": result.seconds,
            "peak_mb": memory.peak_mb}
    (save_with or _now)(lambda: _save(model, spec, path, meta))
    return Baseline(model, metrics, history, False, key, path, result.seconds, memory.peak_mb)


def _now(write: Callable[[], None]) -> None:
    write()


def _save(model: nn.Module, spec: Mapping[str, Any], path: Path, meta: dict) -> None:
    try:
        save_checkpoint(model, spec, path, meta)
    except OSError as exc:  # the cache only saves time: a read-only or full disk must not
        # throw away the baseline just trained (and fail every resume the same way)
        print(f"warning: could not cache the dense baseline in {path.parent} "
              f"({os_reason(exc)}); going on without the cache", file=sys.stderr)


def _cached(path: Path, key: str) -> Baseline | None:
    """The cached baseline, or None when there is none or it is damaged (retrained then)."""
    if not _complete(path):
        return None
    try:
        ck: Checkpoint = load_checkpoint(path)
    except CheckpointError:
        return None
    if not isinstance(ck.meta.get("metrics"), dict) or not isinstance(ck.meta.get("history"), list):
        return None
    return Baseline(ck.model, ck.meta["metrics"], ck.meta["history"], True, key, path,
                    ck.meta.get("train_seconds"), ck.meta.get("peak_mb"))
