"""`compare`: run a Compare sweep headless (the page's background worker runs this too)."""
from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..cli import (command, default_name, read_json_config, refuse_settings_beside_resume,
                   resume_hint, saved_settings, say_ignored_keys, say_outcome)
from ..errors import ExplorerError, raise_pending_interrupt
from ..rundir import COMPARE_SWEEP, SweepPaths
from ..settings import counted

# flag → SweepConfig field (lists and scalars alike: argparse already typed them)
_FLAG_FIELDS = ("name", "models", "datasets", "batch_sizes", "types", "criteria", "ratios",
                "finetune_epochs", "repeats", "seed", "dense_epochs", "lr", "optimizer",
                "mlp_hidden", "calibration_samples", "latency_batch", "latency_repeats")


@command("compare", "run or resume a sweep over models, datasets, batch sizes, pruning "
                    "types, criteria and ratios")
def configure(p: argparse.ArgumentParser) -> None:
    from ..data import DATASETS
    from ..models import ARCHS
    from ..pruning_types import ALL_CRITERIA, PRUNING_TYPES
    from ..sweep import SweepConfig

    p.add_argument("--config", type=Path, help="sweep.json with SweepConfig fields (flags override)")
    p.add_argument("--resume", type=Path, metavar="SWEEP_DIR",
                   help="continue this sweep, skipping its finished cells")
    p.add_argument("--name", help="sweep name (folder sweeps/<date>/<name>)")
    p.add_argument("--sweeps-root", type=Path,
                   help="root folder of sweeps (default: $EXPLORER_SWEEPS, else ./sweeps)")
    p.add_argument("--models", nargs="+", choices=list(ARCHS), metavar="M",
                   help=f"models: {', '.join(ARCHS)} (default mlp)")
    p.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), metavar="D",
                   help="datasets (default digits)")
    p.add_argument("--batch-sizes", type=int, nargs="+", metavar="B", help="default 64")
    p.add_argument("--types", nargs="+", choices=list(PRUNING_TYPES), metavar="T",
                   help=f"pruning types: {', '.join(PRUNING_TYPES)} (default neuron weight)")
    masks = [t for t, kind in PRUNING_TYPES.items() if not kind.structural]
    mask_criteria = sorted({c for t in masks for c in PRUNING_TYPES[t].criteria})
    p.add_argument("--criteria", nargs="+", choices=list(ALL_CRITERIA), metavar="C",
                   help=f"criteria: {', '.join(ALL_CRITERIA)} (default "
                        f"{' '.join(SweepConfig().criteria)}); each type takes those that fit it: "
                        f"{' and '.join(masks)} only {' or '.join(mask_criteria)} "
                        f"(magnitude when neither is given)")
    p.add_argument("--ratios", type=float, nargs="+", metavar="R",
                   help="fractions removed, 0 to 1 (default 0 0.1 … 1)")
    p.add_argument("--finetune-epochs", type=int, help="fine-tuning after pruning, 0 = one-shot")
    p.add_argument("--repeats", type=int, help="seeds per cell (mean and std are reported)")
    p.add_argument("--seed", type=int, help="first seed (default 0)")
    p.add_argument("--dense-epochs", type=int, help="epochs of the dense baselines (default 5)")
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer", choices=["adam", "adamw", "sgd"])
    p.add_argument("--mlp-hidden", type=int, nargs="+", metavar="H", help="default 256 64")
    p.add_argument("--calibration-samples", type=int, help="for data-driven criteria (2048)")
    p.add_argument("--latency-batch", type=int, help="batch of the latency timing (64)")
    p.add_argument("--latency-repeats", type=int, help="timed repeats, 0 = no latency (10)")
    p.add_argument("--no-checkpoints", action="store_true", help="do not save pruned models")
    p.add_argument("--no-cache", action="store_true", help="do not share models_cache/ baselines")
    p.add_argument("--estimate", action="store_true",
                   help="print the grid size and an estimated time, then exit")
    p.add_argument("--no-estimate", action="store_true",
                   help="start without the timing probe the estimate runs first (seconds per "
                        "model); the time left is then paced by the first finished cells")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _config_from(args: argparse.Namespace):
    from ..sweep import SweepConfig

    base = read_json_config(args.config, COMPARE_SWEEP) if args.config else {}
    for name in _FLAG_FIELDS:
        if getattr(args, name) is not None:
            base[name] = getattr(args, name)
    if args.no_checkpoints:
        base["save_checkpoints"] = False
    if args.no_cache:
        base["use_cache"] = False
    if base.get("name") is None:  # absent or null: no name given
        base["name"] = default_name("sweep")
    try:
        cfg = SweepConfig.from_dict(base).validate()
    except TypeError as exc:
        raise ExplorerError(f"bad sweep setting: {exc}") from None
    say_ignored_keys(base, SweepConfig, args.config)
    return cfg


class _Remaining:
    """The sweep's remaining time as its page shows it (`sweep_results.progress`), for the
    redrawn bar on a terminal.

    `progress` reads every cell record, so it is asked at most once a second and for at
    most a fiftieth of the time: on a 10 000-cell sweep a read takes ~0.5 s, which must
    not slow the sweep it reports on. A log (the page's worker writes one) gets none: a
    line per cell there, and the page says the time left."""

    def __init__(self, paths: SweepPaths) -> None:
        self.paths = paths
        self.seconds: float | None = None
        self.due = 0.0

    def __call__(self) -> float | None:
        from ..sweep_results import progress

        now = time.monotonic()
        if now >= self.due:
            self.seconds = progress(self.paths).eta
            self.due = now + max(1.0, 50 * (time.monotonic() - now))
        return self.seconds


def _progress_printer(total: int, dense_epochs: int, remaining: Callable[[], float | None]):
    """One line per finished cell and per epoch of a dense baseline; a redrawn bar on a
    terminal, with the time left (`remaining`), which also follows a cell's fine-tuning
    epochs. Baselines are said too: a sweep trains one before its first cell, and
    Fashion-MNIST's left the screen blank for 12 s (a CNN on CIFAR-10's, for minutes)."""
    from ..labels import dataset_name, format_seconds, model_name

    state = {"start": time.time(), "done": 0}
    terminal = sys.stderr.isatty()
    lock = threading.Lock()  # cells are said from the sweep's writer thread, epochs from its own

    def show(event: dict) -> None:
        with lock:
            _show(event)

    def _show(event: dict) -> None:
        kind = event.get("type")
        if kind == "cell":
            state["done"] = event["index"]
            acc = event.get("test_acc")
            what = (f"{event['cell_id']}  {event['status']}"
                    f"{'' if acc is None else f'  test acc {acc:.2f} %'}")
        elif kind == "finetune_epoch":
            if not terminal:  # a log: a line per cell is enough (300 epochs a cell here)
                return
            what = f"{event['cell_id']}: fine-tuning epoch {event['epoch']}/{event['epochs']}"
        elif kind == "epoch" and isinstance(event.get("group"), list):
            model, dataset, batch, seed = event["group"]
            acc = event.get("val_acc")
            what = (f"dense baseline {model_name(model)} · {dataset_name(dataset)} · batch "
                    f"{batch} · seed {seed}: epoch {event.get('epoch')}/{dense_epochs}"
                    f"{f'  val acc {acc:.2f} %' if isinstance(acc, (int, float)) else ''}")
        else:
            return
        frac = min(state["done"] / max(total, 1), 1.0)
        bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
        line = (f"[{bar}] {state['done']}/{total}  {what}  "
                f"elapsed {format_seconds(time.time() - state['start'])}")
        left = remaining() if terminal and state["done"] < total else None
        if left is not None:  # none at the end (a last read's "1 s") nor unknown
            line += f"  eta {format_seconds(left)}"
        # on a terminal the line is redrawn, and what a longer one left beyond it cleared
        print(f"\r{line}\x1b[K" if terminal else line, end="" if terminal else "\n",
              file=sys.stderr, flush=True)
    return show


def _estimated(cfg, root: Path | None):
    """(the plan, its `estimate.Estimate`), said before the timing probe runs; a start
    `root` would refuse (a bad or taken name, a missing dataset, an empty grid) is
    refused first, not after an estimate of a sweep that cannot run."""
    from ..estimate import estimate
    from ..labels import model_name
    from ..sweep import startable_plan

    the_plan = startable_plan(cfg, root)
    raise_pending_interrupt()  # a Ctrl-C in the imports so far: nothing said, nothing timed
    # the probe builds and times each model: seconds each (DenseNet-121 several), and
    # five models on two datasets were 30 s without a word
    print(f"estimating: timing a few training steps of each model "
          f"({', '.join(dict.fromkeys(model_name(c.model) for c in the_plan.cells))})…",
          file=sys.stderr, flush=True)
    est = estimate(cfg, the_plan)
    raise_pending_interrupt()  # a Ctrl-C in the imports the estimate made: no estimate
    return the_plan, est


def _plan_lines(the_plan, est, cfg) -> list[str]:
    """'24 cells over 4 baselines (4 to train, 0 cached); estimated 8 s' (without an
    estimate: the counts alone), the criteria per type, and what the grid skips."""
    from ..labels import format_seconds

    cells, groups = len(the_plan.cells), len(the_plan.groups)
    line = f"{counted(cells, 'cell')} over {counted(groups, 'baseline')}"
    if est is not None:
        line += (f" ({est.baselines_to_train} to train, {est.baselines_cached} cached); "
                 f"estimated {format_seconds(est.seconds)}")
    return [line, _criteria_line(cfg), *(f"skipped: {kind} pruning of {model}: {why}"
                                         for model, kind, why in the_plan.skipped)]


def _print_plan(cfg, root: Path | None) -> None:
    print("\n".join(_plan_lines(*_estimated(cfg, root), cfg)))


def _criteria_line(cfg) -> str:
    """'criteria per type: neuron: l1, random · weight: random': a mask type ranks by
    magnitude or random only, and by magnitude when neither was picked — `--types weight
    --criteria l1` ran 'weight-magnitude' cells without a word."""
    from ..pruning_types import criteria_for

    return "criteria per type: " + " · ".join(
        f"{t}: {', '.join(criteria_for(t, cfg.criteria)) or 'none'}" for t in cfg.types)


def run(args: argparse.Namespace) -> int:
    from ..sweep import create_sweep, execute, load_config, plan, startable_plan

    if args.resume:
        refuse_settings_beside_resume(args)
        paths = SweepPaths(args.resume)
        if not paths.config.is_file():
            raise ExplorerError(f"{args.resume} is not a sweep folder (no config.json)")
        cfg = saved_settings(paths, load_config)
        the_plan = plan(cfg)
    else:
        cfg = _config_from(args)
        if args.estimate:
            _print_plan(cfg, args.sweeps_root)
            return 0
        # estimated first, as the page does: the running sweep's remaining time is paced
        # by it (`sweep_results.progress`), here and on the page, from the first moment;
        # without it a sweep started here showed "—" until its first cell, after a
        # baseline's minutes of training
        if args.no_estimate:
            the_plan, est = startable_plan(cfg, args.sweeps_root), None
        else:
            the_plan, est = _estimated(cfg, args.sweeps_root)
        paths = create_sweep(cfg, args.sweeps_root, est.groups if est is not None else None)
        print(f"sweep folder: {paths.root}", file=sys.stderr)
        print("\n".join(_plan_lines(the_plan, est, cfg)), file=sys.stderr)
    resume_hint("compare", paths.root)
    total = len(the_plan.cells)  # planned once: near the cell limit a plan takes a while
    status = execute(paths, on_event=None if args.quiet else _progress_printer(
        total, cfg.dense_epochs, _Remaining(paths)))
    if sys.stderr.isatty() and not args.quiet:
        print(file=sys.stderr)
    say_outcome(status, paths.results_csv, "sweep")
    if status["state"] == "finished":
        from ..sweep_results import every_cell_failed, read_cells, unlearned_baselines

        rows = read_cells(paths)
        reason = every_cell_failed(rows)
        if reason:
            raise ExplorerError(reason)
        for line in unlearned_baselines(rows):
            print(f"warning: {line}", file=sys.stderr)
    return 0 if status["state"] == "finished" else 3
