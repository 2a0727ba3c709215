"""`retention`: write retain.txt and the two schedule plots."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..cli import add_overwrite_flag, cannot_write, command, refuse_existing
from ..errors import ExplorerError, os_reason, raise_pending_interrupt
from ..fileio import JSON_ERRORS
from ..labels import model_name
from ..schedule import (SCHEDULES, RetentionTable, ScheduleConfig, refuse_unused_q,
                        retention_table, spec_in, widths_from_spec, write_retain)
from ..settings import counted

DEFAULT_WIDTHS = (256, 64)


@command("retention", "compute a retention schedule and write retain.txt and its plots")
def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--widths", type=int, nargs="+", metavar="H",
                   help=f"hidden-layer widths of the dense model (default: "
                        f"{' '.join(map(str, DEFAULT_WIDTHS))})")
    p.add_argument("--spec", type=Path, metavar="JSON",
                   help="read the widths from a model spec or a checkpoint's .json sidecar "
                        "instead of --widths (JSON only, weights are never opened)")
    p.add_argument("--q", type=float,
                   help=f"geometric keep factor per iteration, 0 < q < 1 (default: "
                        f"{ScheduleConfig.q}); refused with linear and cubic, which do not use it")
    p.add_argument("--iterations", type=int, default=31,
                   help="rows of the table, the dense row 0 included, as the thesis counts them (default: 31)")
    p.add_argument("--kind", choices=sorted(SCHEDULES), default="geometric",
                   help="schedule: geometric N_t=max(1,round(h*q^t)); linear or cubic "
                        "(Zhu & Gupta 2017) ramps to 1 neuron (default: geometric)")
    p.add_argument("--out", type=Path, default=Path("."),
                   help="folder for retain.txt, pruneNodesIteration.png and "
                        "pruneNodesDistribution.png (default: current folder)")
    p.add_argument("--no-plots", action="store_true",
                   help="write retain.txt only (with --overwrite, an earlier run's plots in "
                        "--out are removed: they drew another table)")
    add_overwrite_flag(p, "retain.txt and the plots")
    p.set_defaults(run=run)


def _spec_widths(path: Path) -> tuple[int, ...]:
    try:
        spec = spec_in(json.loads(path.read_text(encoding="utf-8")))
        widths = widths_from_spec(spec)
    except OSError as exc:
        raise ExplorerError(f"cannot read {path}: {os_reason(exc)}") from None
    except JSON_ERRORS:  # bad JSON or UTF-8, an integer past 4 300 digits, deep nesting
        raise ExplorerError(f"{path} is not a JSON file") from None
    arch = spec["arch"]
    if arch != "mlp":  # as the Retention page says: `prune --retain` read them as an MLP's
        print(f"note: {path.name} is a {model_name(arch)}'s spec: these are its conv "
              f"channels, then its hidden layers; `prune --retain` trains an MLP and would "
              f"take them for its hidden widths", file=sys.stderr)
    return widths


def _widths(args: argparse.Namespace) -> tuple[int, ...]:
    """The dense widths from `--spec` or `--widths`; both at once is refused: `--widths`
    beside `--spec` was silently ignored, so the table was not the one asked for."""
    if args.spec and args.widths:
        raise ExplorerError("give the widths with --spec or with --widths, not both")
    if args.spec:
        return _spec_widths(args.spec)
    return tuple(args.widths or DEFAULT_WIDTHS)


def run(args: argparse.Namespace) -> int:
    widths = _widths(args)
    if args.q is not None:
        refuse_unused_q(args.kind)
    q = ScheduleConfig.q if args.q is None else args.q
    cfg = ScheduleConfig(widths, q, args.iterations, args.kind).validate()
    table = retention_table(cfg)
    # imported before any file is written (altair: 0.3 s), with --no-plots for the names
    from ..charts import DISTRIBUTION_PNG, ITERATION_PNG
    raise_pending_interrupt()  # a Ctrl-C in the imports: no retain.txt without its plots
    pngs = [args.out / ITERATION_PNG, args.out / DISTRIBUTION_PNG]
    stale = _remove_old_plots(refuse_existing([args.out / "retain.txt", *pngs],
                                              args.overwrite), pngs)
    args.out.mkdir(parents=True, exist_ok=True)
    path = write_retain(args.out / "retain.txt", table)
    rows = len(table)
    print(f"wrote {path} ({counted(rows, 'iteration')}, ends at "
          f"{table.percent(table.widths[-1]):.3g} % kept)")
    if args.no_plots:
        for p in stale:
            print(f"removed {p} (it drew the table this retain.txt replaces)")
    else:
        for p in _plots(table, args.out, path):
            print(f"wrote {p}")
    return 0


def _plots(table: RetentionTable, out: Path, retain: Path) -> list[Path]:
    """The plots, or one line saying retain.txt is written and how to get them: a full
    disk said only "cannot write …png", and the rerun was refused over the retain.txt
    written (an earlier result) without a word of --overwrite."""
    from ..charts import save_retention_pngs

    try:
        return save_retention_pngs(table, out)
    except (ExplorerError, OSError) as exc:
        why = str(exc) if isinstance(exc, ExplorerError) else cannot_write(exc)
        raise ExplorerError(f"{retain.name} written, its plots not ({why}); rerun with "
                            "--overwrite to draw them") from None


def _remove_old_plots(replaced: list[Path], pngs: list[Path]) -> list[Path]:
    """Delete the earlier run's plots among the files `--overwrite` replaces: they drew
    its table, and were left beside a new retain.txt by --no-plots (or by a chart that
    failed to render). Returns those removed."""
    stale = [p for p in replaced if p in pngs]
    for p in stale:
        p.unlink()
    return stale
