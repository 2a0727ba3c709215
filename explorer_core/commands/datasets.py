"""`datasets`: which datasets are usable offline, and fetching the missing ones.

Offline machines are the norm here, so the listing says for each dataset either where
its files were found or exactly which folder to put them in; `--download` uses
torchvision's downloader with visible progress and fails within seconds (one line,
exit 2) when there is no network.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import command
from ..data import DATASETS, dataset_state, default_data_root, download_dataset


@command("datasets", "list datasets and whether they are available offline; download one")
def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", type=Path, default=None,
                   help="data root holding torchvision-format folders "
                        "(default: $EXPLORER_DATA or ~/.cache/pruning-explorer/data)")
    p.add_argument("--download", metavar="NAME", choices=sorted(DATASETS),
                   help=f"download NAME into the data root ({', '.join(DATASETS)}); "
                        "needs internet, shows progress")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="give up on a stalled connection after this long "
                        "(default: $EXPLORER_DOWNLOAD_TIMEOUT or 20)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.download:
        if not DATASETS[args.download].files:
            print(f"{args.download}: bundled with scikit-learn, nothing to download")
            return 0
        where = download_dataset(args.download, args.root, timeout=args.timeout)
        print(f"{args.download}: available in {where}")
        return 0
    print(f"data root: {args.root or default_data_root()}")
    width = max(len(n) for n in DATASETS)
    for name in DATASETS:
        state, reason = dataset_state(name, args.root)
        print(f"{name:<{width}}  {state:<9}  {reason}")
    return 0
