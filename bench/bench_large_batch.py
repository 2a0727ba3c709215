"""Batch 60 000 with DenseNet-121 on 32×32 inputs, in bounded memory: measured peak.

    python3 bench/bench_large_batch.py               # the full step: 60 000 samples (64 min on 2 cores)
    python3 bench/bench_large_batch.py --limit 2000  # the first 2 000 samples of that step

A training set of 60 000 images in CIFAR-10's shape (3×32×32, 10 classes) is held in
memory as one float32 tensor (737 MB), and `training.train` runs one epoch with
batch_size = 60 000 — a single optimiser step whose gradient accumulates over
micro-batches that `training.micro_batch_size` sizes from the model's measured
activation memory (33 samples for this DenseNet-121 with the default 3 GB budget).
The images are random: memory and time do not depend on pixel values, and no dataset
is downloaded. `--limit N` trains on the first N samples only (the 60 000 stay in
memory): every micro-batch has the same memory pattern — its activations are freed
after its backward pass — so the peak of N samples is the peak of the full step
(measured: 330 samples 2.86 GB, all 60 000 3.01 GB).

Prints the micro-batch size, the process's resident memory before training, the
measured peak during it (`metrics.PeakMemory`), seconds per sample, and what a fixed
2 048-sample slice would need for activations alone (the issue's target: peak < 8 GB).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from explorer_core.data import DATASETS, Dataset, Split  # noqa: E402
from explorer_core.metrics import PeakMemory, activation_bytes  # noqa: E402
from explorer_core.models import build_model, default_spec  # noqa: E402
from explorer_core.training import (ACTIVATION_OVERHEAD, TrainConfig, micro_batch_size,  # noqa: E402
                                    train)

SAMPLES = 60_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=SAMPLES,
                        help="train on the first N of the 60 000 samples (default: all)")
    args = parser.parse_args()

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(SAMPLES, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (SAMPLES,), generator=gen)
    n = max(1, min(args.limit, SAMPLES))
    empty = Split(x[:0], y[:0])
    data = Dataset(DATASETS["cifar10"], Split(x[:n], y[:n]), empty, Split(x[:64], y[:64]))
    spec = default_spec("densenet121", 3, 32, 10)
    torch.manual_seed(0)
    model = build_model(spec)
    cfg = TrainConfig(epochs=1, batch_size=SAMPLES, optimizer="sgd", lr=0.01,
                      lr_schedule="constant")
    micro = micro_batch_size(model, (3, 32, 32), cfg)
    per_sample = activation_bytes(model, (3, 32, 32))

    with PeakMemory() as before:
        pass
    t0 = time.perf_counter()
    with PeakMemory() as peak:
        result = train(model, data, cfg)
    seconds = time.perf_counter() - t0
    steps = len(result.history)
    print(f"DenseNet-121, 3×32×32, batch_size {SAMPLES} (one optimiser step), trained on "
          f"{n} of {SAMPLES} samples held in memory; {steps} epoch")
    print(f"micro-batch: {micro} samples (budget {cfg.memory_budget_mb} MB for "
          f"{ACTIVATION_OVERHEAD}× {per_sample / 2**20:.1f} MB of activations per sample)")
    print(f"resident before training: {before.peak_mb:.0f} MB; measured peak during training: "
          f"{peak.peak_mb:.0f} MB ({peak.peak_mb / 1024:.2f} GB; target < 8 GB, scope: {peak.scope})")
    print(f"time: {seconds:.0f} s, {seconds / n:.3f} s per sample "
          f"(the full step ≈ {seconds / n * SAMPLES / 3600:.1f} h at this rate)")
    print(f"a fixed 2048-sample slice would need ≈ {2048 * per_sample / 2**30:.0f} GB for its "
          "module outputs alone")


if __name__ == "__main__":
    main()
