"""One training epoch of the default MLP on Fashion-MNIST: our tensor-resident loop vs
the thesis-style torchvision `DataLoader` + per-sample `ToTensor` loop.

    python3 bench/bench_data_loading.py                  # batch 64 and 256, 3 repeats
    python3 bench/bench_data_loading.py --batch 64 --repeats 5 --threads 2
    python3 bench/bench_data_loading.py --peak-memory     # peak RSS at batch 60 000

Both loops train the same freshly seeded 784-256-64-10 MLP with Adam (lr 1e-3) on the
same 60 000 training images, one optimiser step per batch; only the way batches are
produced differs. Ours is `explorer_core.training.train` over a `Split` (decoded and
normalised once, batched by index slicing); the other decodes every sample into a PIL
image, converts it with `ToTensor` + `Normalize` and collates (num_workers=0, as in
the thesis). Each configuration runs `--repeats` times and the fastest run counts, so
other processes on a shared machine distort the ratio less.

The data comes from the Debian package `dataset-fashion-mnist`; torchvision needs the
files un-gzipped in its own layout, so they are decompressed into a temporary folder.
`--peak-memory` runs each training in a fresh subprocess and reports its peak RSS after
the data is loaded (VmHWM reset via /proc/self/clear_refs).
"""
from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from explorer_core import data as D  # noqa: E402
from explorer_core.models import build_model, spec_for_dataset  # noqa: E402
from explorer_core.training import TrainConfig, train  # noqa: E402


def fresh_model(info: D.DatasetInfo) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(spec_for_dataset("mlp", info))


def all_training_images() -> D.Dataset:
    """The 60 000 official training images as one split (val/test empty)."""
    ds = D.load_dataset("fashion_mnist", seed=0)
    full = D.Split(torch.cat([ds.train.x, ds.val.x]), torch.cat([ds.train.y, ds.val.y]))
    empty = D.Split(full.x[:0], full.y[:0])
    return D.Dataset(ds.info, full, empty, empty)


def time_tensor_loop(data: D.Dataset, batch: int, threads: int) -> float:
    model = fresh_model(data.info)
    cfg = TrainConfig(epochs=1, batch_size=batch, lr=1e-3, optimizer="adam",
                      lr_schedule="constant", threads=threads)
    t0 = time.perf_counter()
    train(model, data, cfg)
    return time.perf_counter() - t0


def torchvision_dataset(folder: Path, info: D.DatasetInfo):
    from torchvision import datasets, transforms

    raw = folder / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    source = D.locate("fashion_mnist")
    if source is None:
        sys.exit(D.availability("fashion_mnist")[1])
    for stem in info.files:
        gz = source / f"{stem}.gz"
        if gz.is_file():
            with gzip.open(gz) as src, open(raw / stem, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            shutil.copyfile(source / stem, raw / stem)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(info.mean, info.std)])
    return datasets.FashionMNIST(str(folder), train=True, download=False, transform=tf)


def time_dataloader_loop(tv_data, info: D.DatasetInfo, batch: int, threads: int) -> float:
    from torch.utils.data import DataLoader

    model = fresh_model(info)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(tv_data, batch_size=batch, shuffle=True, num_workers=0,
                        generator=torch.Generator().manual_seed(0))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model.train()
        t0 = time.perf_counter()
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
        return time.perf_counter() - t0
    finally:
        torch.set_num_threads(previous)


def compare(batches: list[int], repeats: int, threads: int) -> None:
    t0 = time.perf_counter()
    data = all_training_images()
    print(f"tensor-resident load (decode + normalise once): {time.perf_counter() - t0:.2f} s, "
          f"{len(data.train)} images")
    with tempfile.TemporaryDirectory(prefix="bench-fmnist-") as tmp:
        tv_data = torchvision_dataset(Path(tmp), data.info)
        print(f"threads: {threads}; repeats: {repeats} (fastest counts); "
              f"load average before: {os.getloadavg()[0]:.2f}")
        print(f"{'batch':>6} {'tensor loop s':>14} {'DataLoader s':>13} {'ratio':>6}")
        for batch in batches:
            ours = [time_tensor_loop(data, batch, threads) for _ in range(repeats)]
            theirs = [time_dataloader_loop(tv_data, data.info, batch, threads)
                      for _ in range(repeats)]
            print(f"{batch:>6} {min(ours):>14.2f} {min(theirs):>13.2f} "
                  f"{min(theirs) / min(ours):>5.1f}x   "
                  f"(all runs: {', '.join(f'{t:.2f}' for t in ours)} | "
                  f"{', '.join(f'{t:.2f}' for t in theirs)})", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


_MEMORY_CHILD = """
import sys, torch
sys.path.insert(0, {root!r})
from explorer_core.data import load_dataset
from explorer_core.models import build_model, spec_for_dataset
from explorer_core.training import TrainConfig, train

def mb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024

data = load_dataset("fashion_mnist")
torch.manual_seed(0)
model = build_model(spec_for_dataset("mlp", data.info))
loaded = mb("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # reset the peak to the current RSS
train(model, data, TrainConfig(epochs=1, batch_size={batch}, max_micro_batch={micro}))
print(f"{{loaded:.0f}} {{mb('VmHWM'):.0f}}")
"""


def peak_memory() -> None:
    print("peak RSS of one training epoch (MB; process incl. torch and the resident data)")
    print(f"{'batch':>6} {'micro-batch':>11} {'after load':>10} {'peak':>6} {'growth':>7}")
    for batch, micro in ((64, 2048), (60000, 2048), (60000, 256), (60000, 60000)):
        code = _MEMORY_CHILD.format(root=str(ROOT), batch=batch, micro=micro)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout.split()
        loaded, peak = float(out[0]), float(out[1])
        note = "  (whole batch in one pass: no micro-batching)" if batch > 2048 and micro >= batch else ""
        print(f"{batch:>6} {micro:>11} {loaded:>10.0f} {peak:>6.0f} {peak - loaded:>+7.0f}{note}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for both loops (default 1, what train() uses for MLPs)")
    parser.add_argument("--peak-memory", action="store_true",
                        help="report peak RSS at batch 64 and 60 000 instead of timing")
    args = parser.parse_args()
    if args.peak_memory:
        peak_memory()
    else:
        compare(args.batch, args.repeats, args.threads)


if __name__ == "__main__":
    main()
