"""Benchmark of the pruning core on the default MLP (784-256-64-10) and Fashion-MNIST.

Prints
* the time of each significance criterion (`compute_scores` over all hidden neurons)
  relative to one training epoch at batch 64 — target: IASA costs less than an epoch;
* the CPU latency speed-up of the structurally pruned model (25 % of the neurons of each
  hidden layer kept) next to its MAC reduction — target: the speed-up is within 1.5× of
  the MAC reduction (speed-up ≥ MAC reduction / 1.5);
* the same latency ratio for a weight-masked model (75 % of the weights zeroed), which
  keeps its MACs: masks do not make a dense CPU kernel faster.

Latencies are medians of interleaved repeats (dense and pruned alternate), so machine
load drifts hit both sides alike. Everything runs with one torch thread by default: on a
2-core machine shared with other work, a multi-threaded GEMM waits for its descheduled
peer thread and one epoch was measured anywhere between 2 s and 17 s. Usage:

    python bench/bench_pruning_core.py [--batch 1024] [--repeats 50] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from explorer_core.criteria import CRITERIA, CriterionOptions, compute_scores  # noqa: E402
from explorer_core.data import Dataset, load_dataset  # noqa: E402
from explorer_core.masks import apply_masks, permanent_copy, sparsity_report  # noqa: E402
from explorer_core.metrics import (LatencyConfig, macs_per_sample,  # noqa: E402
                                   measure_latencies)
from explorer_core.models import build_model, input_shape, spec_for_dataset  # noqa: E402
from explorer_core.surgery import PruneConfig, prune_structural  # noqa: E402
from explorer_core.training import TrainConfig, train  # noqa: E402


def epoch_seconds(model: torch.nn.Module, data: Dataset, batch_size: int) -> float:
    """Wall time of one training epoch (validation / test cut to one sample each)."""
    tiny = Dataset(data.info, data.train, data.val.subset(1), data.test.subset(1))
    t0 = time.perf_counter()
    train(model, tiny, TrainConfig(epochs=1, batch_size=batch_size, device="cpu"))
    return time.perf_counter() - t0


def criterion_seconds(model: torch.nn.Module, name: str, data, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        compute_scores(model, name, data if CRITERIA[name].needs_data else None,
                       options=CriterionOptions())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--batch", type=int, default=1024, help="latency batch size")
    ap.add_argument("--repeats", type=int, default=50, help="timed latency repeats")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for the whole benchmark (default 1: steadiest on a "
                         "small shared machine; 0 = leave torch's default)")
    ap.add_argument("--criterion-repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = load_dataset(args.dataset)
    spec = spec_for_dataset("mlp", data.info)
    shape = input_shape(spec)
    model = build_model(spec)
    print(f"# {data.info.title}: {len(data.train)} training images, model "
          f"{spec['in']}-{'-'.join(map(str, spec['hidden']))}-{spec['out']}, "
          f"torch threads {torch.get_num_threads()}")

    epoch = epoch_seconds(model, data, 64)  # also gives the criteria a trained model
    model.eval()
    print(f"\none training epoch (batch 64): {epoch:.2f} s\n")
    print(f"{'criterion':<18}{'seconds':>10}{'/ epoch':>10}")
    crit = {}
    for name in CRITERIA:
        s = criterion_seconds(model, name, data.train, args.criterion_repeats)
        crit[name] = {"seconds": s, "epoch_fraction": s / epoch}
        print(f"{name:<18}{s:>10.3f}{s / epoch:>10.3f}")

    widths = [max(1, round(0.25 * h)) for h in spec["hidden"]]
    pruned = prune_structural(model, spec, PruneConfig("l1", keep=widths)).model.eval()
    masked = permanent_copy(apply_masks(permanent_copy(model), 0.75, "weight")).eval()
    lat_cfg = LatencyConfig(batch_size=args.batch, repeats=args.repeats, warmup=10)
    dense_ms, pruned_ms, masked_ms = measure_latencies([model, pruned, masked], shape, lat_cfg)
    dense_macs, pruned_macs = macs_per_sample(model, shape), macs_per_sample(pruned, shape)
    mac_reduction = dense_macs / pruned_macs
    speedup, masked_speedup = dense_ms / pruned_ms, dense_ms / masked_ms
    sparsity = sparsity_report(masked).sparsity

    print(f"\nlatency, batch {args.batch}, median of {args.repeats} interleaved repeats")
    print(f"{'model':<34}{'ms/batch':>10}{'MACs':>12}{'speed-up':>10}{'MAC red.':>10}")
    print(f"{'dense ' + str(spec['hidden']):<34}{dense_ms:>10.3f}{dense_macs:>12,}{1:>10.2f}{1:>10.2f}")
    print(f"{'structural 25 % kept ' + str(widths):<34}{pruned_ms:>10.3f}{pruned_macs:>12,}"
          f"{speedup:>10.2f}{mac_reduction:>10.2f}")
    print(f"{f'masked {100 * sparsity:.0f} % weights zero':<34}{masked_ms:>10.3f}{dense_macs:>12,}"
          f"{masked_speedup:>10.2f}{1:>10.2f}")

    iasa = crit.get("interval_adjoint", {}).get("epoch_fraction")
    iasa_ok = iasa is not None and iasa < 1
    speed_ok = speedup >= mac_reduction / 1.5
    print("\ntargets")
    print(f"  IASA < 1 epoch: {'MET' if iasa_ok else 'NOT MET'} "
          f"({'n/a' if iasa is None else f'{iasa:.3f} epochs'})")
    print(f"  structural speed-up within 1.5x of MAC reduction: {'MET' if speed_ok else 'NOT MET'} "
          f"({speedup:.2f}x vs {mac_reduction:.2f}x; needs >= {mac_reduction / 1.5:.2f}x)")
    print(f"  masked model speed-up (no target; masks keep dense kernels): {masked_speedup:.2f}x")

    if args.json:
        args.json.write_text(json.dumps({
            "epoch_seconds": epoch, "criteria": crit, "latency_batch": args.batch,
            "threads": args.threads,
            "repeats": args.repeats, "dense_ms": dense_ms, "pruned_ms": pruned_ms,
            "masked_ms": masked_ms, "dense_macs": dense_macs, "pruned_macs": pruned_macs,
            "speedup": speedup, "mac_reduction": mac_reduction, "masked_speedup": masked_speedup,
            "masked_sparsity": sparsity, "iasa_target_met": iasa_ok,
            "speedup_target_met": speed_ok}, indent=2))
    return 0 if (iasa_ok and speed_ok) else 1


if __name__ == "__main__":
    raise SystemExit(main())
