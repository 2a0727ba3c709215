"""The thesis' iterative pruning workflow on Fashion-MNIST: our run vs a thesis-style loop.

    python3 bench/bench_iterative.py                 # iterations 0-8, 1 epoch each, batch 64
    python3 bench/bench_iterative.py --iterations 4  # shorter

Both sides do the same work per iteration with the same model (784-256-64-10 MLP, Adam,
lr 1e-3, batch 64, one epoch per iteration, q = 0.8, interval-adjoint significance):

- ours: `explorer_core.experiment.execute` on a fresh run folder (no baseline cache):
  tensor-resident data, checkpoints, tables, events and status written as it goes.
- reference, in the thesis' style: torchvision `FashionMNIST` with per-sample
  `ToTensor` + `Normalize` through a `DataLoader` (num_workers=0) for training and for
  every evaluation; `torch.save` / `torch.load` of the state dict between iterations.
  Per iteration it makes the same passes as ours: evaluate the pruned model on train and
  test, train one epoch, evaluate on test, evaluate the result on train and test.
  Pruning itself calls the same `prune_to_widths` (IASA scores, then row/column
  removal), so the ratio measures the training and evaluation machinery, not the
  criterion.

Both use one CPU thread (what `train()` picks for fully connected nets). The reference
trains on the same number of images as ours (the 54 000 of our training split).
Prints both times and the ratio ours / reference; the issue's target is ≤ 0.35.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench_data_loading import torchvision_dataset  # noqa: E402
from explorer_core import data as D  # noqa: E402
from explorer_core.experiment import RunConfig, create_run, execute, plan  # noqa: E402
from explorer_core.models import build_model, spec_for_dataset  # noqa: E402
from explorer_core.surgery import prune_to_widths  # noqa: E402


def run_ours(cfg: RunConfig, folder: Path) -> tuple[float, list[float]]:
    t0 = time.perf_counter()
    paths = create_run(cfg, folder / "runs")
    status = execute(paths, cache_root=folder / "cache")
    elapsed = time.perf_counter() - t0
    if status.get("state") != "finished":
        sys.exit(f"our run ended {status.get('state')}: {status.get('message')}")
    from explorer_core.results import iteration_rows
    return elapsed, [r.test_acc for r in iteration_rows(paths)]


def _evaluate(model: torch.nn.Module, loader) -> tuple[float, float]:
    model.eval()
    loss, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            out = model(x)
            loss += F.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
    return loss / n, 100.0 * correct / n


def _train_epoch(model: torch.nn.Module, loader, lr: float) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for x, y in loader:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()


def run_reference(cfg: RunConfig, folder: Path, calibration: D.Split) -> tuple[float, list[float]]:
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    info = D.get_info("fashion_mnist")
    train_tv = torchvision_dataset(folder / "tv", info)
    train_set = Subset(train_tv, range(54000))
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(info.mean, info.std)])
    test_set = datasets.FashionMNIST(str(folder / "tv"), train=False, download=False, transform=tf)
    widths = plan(cfg).widths
    accs = []
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(cfg.seed)
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, generator=gen)
    eval_train = DataLoader(train_set, batch_size=1000)
    eval_test = DataLoader(test_set, batch_size=1000)
    for i, row in enumerate(widths):
        if i == 0:
            torch.manual_seed(cfg.seed)
            model = build_model(spec_for_dataset("mlp", info, list(cfg.hidden)))
        else:
            model = build_model(spec_for_dataset("mlp", info, list(widths[i - 1])))
            model.load_state_dict(torch.load(folder / f"iteration{i - 1}.pth", weights_only=True))
            model = prune_to_widths(model, list(row), cfg.criterion, calibration)
            _evaluate(model, eval_train)
            _evaluate(model, eval_test)
        _train_epoch(model, train_loader, cfg.lr)
        _evaluate(model, eval_test)
        _evaluate(model, eval_train)
        accs.append(_evaluate(model, eval_test)[1])
        torch.save(model.state_dict(), folder / f"iteration{i}.pth")
    return time.perf_counter() - t0, accs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=9,
                        help="schedule rows incl. the dense iteration 0 (default 9: 0-8)")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    if not D.availability("fashion_mnist")[0]:
        sys.exit(D.availability("fashion_mnist")[1])
    cfg = RunConfig(name="bench", dataset="fashion_mnist", hidden=[256, 64],
                    schedule={"q": 0.8, "iterations": args.iterations, "kind": "geometric"},
                    criterion="interval_adjoint", dense_epochs=1, retrain_epochs=1,
                    batch_size=args.batch, seed=0, use_cache=False)
    torch.set_num_threads(1)
    calibration = D.load_dataset("fashion_mnist", seed=cfg.seed).train
    print(f"iterations 0-{args.iterations - 1}, 1 epoch each, batch {args.batch}; "
          f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-iterative-") as tmp:
        ours, ours_acc = run_ours(cfg, Path(tmp))
        print(f"ours:      {ours:7.1f} s  test acc per iteration: "
              f"{' '.join(f'{a:.1f}' for a in ours_acc)}", flush=True)
        ref, ref_acc = run_reference(cfg, Path(tmp), calibration)
        print(f"reference: {ref:7.1f} s  test acc per iteration: "
              f"{' '.join(f'{a:.1f}' for a in ref_acc)}", flush=True)
    print(f"ratio ours / reference: {ours / ref:.3f}  (target ≤ 0.35); "
          f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
