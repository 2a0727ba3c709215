"""`prune` and `concatenate`: the iterative pruning loop, headless."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from ..cli import (EpochBar, LogPace, command, default_name, read_json_config,
                   refuse_settings_beside_resume, resume_hint, saved_settings,
                   say_ignored_keys, say_outcome)
from ..errors import ExplorerError, raise_pending_interrupt
from ..rundir import ITERATIVE_RUN, RunPaths, read_status
from ..schedule import refuse_unused_q


def _progress_printer(bar: EpochBar):
    """A one-line progress bar on stderr, redrawn per epoch and iteration (`bar` counts
    the epochs, from those of the iterations a resume keeps).

    Into a log file or pipe (not a terminal) it writes one plain line per iteration
    instead, so the log stays readable, and an epoch's line when it has been quiet
    (`LogPace`): a log showed nothing but the run folder through a whole dense phase
    (15 s of Fashion-MNIST's MLP, minutes of a CNN's).
    """
    terminal = sys.stderr.isatty()
    redraw = "\r" if terminal else ""
    pace = LogPace("iteration")

    def show(event: dict) -> None:
        bar.count(event)
        kind = event.get("type")
        if not terminal and not pace.due(event):
            return
        acc = event.get("test_acc")
        line = (f"{redraw}{bar.bar()}  it {event.get('iteration')}  "
                f"{'' if acc is None else f'test acc {acc:.2f} %  '}{bar.times()} ")
        print(line, end="", file=sys.stderr, flush=True)
        if kind == "iteration" or not terminal:
            print(file=sys.stderr)
    return show


@command("prune", "run or resume an iterative prune → retrain → validate loop")
def configure_prune(p: argparse.ArgumentParser) -> None:
    from ..criteria import CRITERIA
    from ..data import DATASETS

    p.add_argument("--config", type=Path, help="run.json with RunConfig fields (flags override)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue this run from its last completed iteration")
    p.add_argument("--from-iteration", type=int, metavar="K",
                   help="with --resume: redo from iteration K (like the thesis' begin_itr)")
    p.add_argument("--name", help="run name (folder runs/<date>/<name>)")
    p.add_argument("--runs-root", type=Path,
                   help="root folder of runs (default: $EXPLORER_RUNS, else ./runs)")
    p.add_argument("--dataset", choices=sorted(DATASETS))
    p.add_argument("--hidden", type=int, nargs="+", metavar="H", help="hidden widths (default 256 64)")
    p.add_argument("--q", type=float, help="geometric keep factor per iteration (default 0.8); "
                                          "refused with --kind linear or cubic")
    p.add_argument("--iterations", type=int, help="schedule length (default 31)")
    p.add_argument("--kind", choices=["geometric", "linear", "cubic"], help="schedule kind")
    p.add_argument("--retain", type=Path, metavar="FILE",
                   help="follow this retain.txt (e.g. from the `retention` command, or edited "
                        "by hand) instead of a rule: its first row is the dense model's widths, "
                        "each later row one iteration; not with --hidden, --q, --iterations, "
                        "--kind")
    p.add_argument("--criterion", choices=sorted(CRITERIA), help="default interval_adjoint")
    p.add_argument("--eps", type=float, metavar="E",
                   help="interval_adjoint: per-sample ε-boxes [x − E, x + E] in the normalised "
                        "input space instead of the box around the whole training set")
    p.add_argument("--per-class", action="store_true",
                   help="interval_adjoint: seed one class at a time; a neuron's score is its "
                        "largest over the classes")
    p.add_argument("--no-retrain", action="store_true", help="prune without retraining")
    p.add_argument("--dense-epochs", type=int, help="epochs for the dense model (default 5)")
    p.add_argument("--retrain-epochs", type=int, help="epochs per pruning iteration (default 1)")
    p.add_argument("--patience", type=int, help="early-stopping patience, 0 = off")
    p.add_argument("--optimizer", choices=["adam", "adamw", "sgd"])
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--max-drop", type=float,
                   help="stop when test accuracy falls more than this many points below dense")
    p.add_argument("--min-neurons", type=int, help="do not prune below this many hidden neurons")
    p.add_argument("--no-cache", action="store_true", help="do not reuse a cached dense model")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--tolerance", type=float, metavar="POINTS",
                   help="for the model to deploy printed at the end: the smallest model within "
                        "this many points of the dense model's test accuracy (default 1, as "
                        "on the page)")
    p.set_defaults(run=run_prune)


_FLAG_FIELDS = {"name": "name", "dataset": "dataset", "hidden": "hidden", "criterion": "criterion",
                "dense_epochs": "dense_epochs", "retrain_epochs": "retrain_epochs",
                "patience": "patience", "optimizer": "optimizer", "lr": "lr",
                "batch_size": "batch_size", "seed": "seed", "max_drop": "max_drop",
                "min_neurons": "min_neurons"}


def _config_from(args: argparse.Namespace):
    from ..experiment import TABLE_SCHEDULE, RunConfig
    from ..schedule import read_retain

    base = read_json_config(args.config, ITERATIVE_RUN) if args.config else {}
    for flag, field_name in _FLAG_FIELDS.items():
        if getattr(args, flag) is not None:
            base[field_name] = getattr(args, flag)
    _merge_schedule_flags(base, args, RunConfig().schedule, TABLE_SCHEDULE)
    if args.retain is not None:
        given = [f"--{k}" for k in ("hidden", "q", "iterations", "kind")
                 if getattr(args, k) is not None]
        if given:
            raise ExplorerError(f"--retain gives the widths of every iteration; leave out "
                                f"{', '.join(given)}")
        table = read_retain(args.retain)
        schedule = {"kind": TABLE_SCHEDULE, "rows": [list(w) for w in table.widths]}
        _say_replaced(base, list(table.dense), schedule, args.retain)
        base["hidden"], base["schedule"] = list(table.dense), schedule
    flags = {k: v for k, v in (("eps", args.eps), ("per_class", args.per_class or None))
             if v is not None}
    if flags:  # over the file's options (RunConfig.validate judges them all)
        given = base.get("criterion_options") or {}
        base["criterion_options"] = {**given, **flags} if isinstance(given, dict) else given
    if args.no_retrain:
        if args.retrain_epochs is not None:  # accepted, and ignored without a word
            raise ExplorerError("--no-retrain prunes without retraining; leave out "
                                "--retrain-epochs")
        base["retrain"] = False
    if args.no_cache:
        base["use_cache"] = False
    if base.get("name") is None:  # absent or null: no name given
        base["name"] = default_name("run")
    try:
        cfg = RunConfig.from_dict(base)
    except TypeError as exc:
        raise ExplorerError(f"bad run setting: {exc}") from None
    say_ignored_keys(base, RunConfig, args.config)
    return cfg


def _say_replaced(base: dict, hidden: list[int], schedule: dict, table: Path) -> None:
    """Say which of the config file's settings `--retain` puts aside. Replacing them is
    right (a finished run's config.json reused with another table), but it was silent: a
    config's hidden [256, 64] became the table's [32, 16] without a word."""
    replaced = []
    if base.get("hidden") is not None and base["hidden"] != hidden:
        replaced.append(f"hidden {base['hidden']}")
    given = base.get("schedule")
    if given is not None and given != schedule:
        replaced.append("schedule")
    if replaced:
        print(f"note: {table.name} gives the widths of every iteration, in place of the "
              f"config's {' and '.join(replaced)}", file=sys.stderr)


def _merge_schedule_flags(base: dict, args: argparse.Namespace, defaults: dict,
                          table_kind: str) -> None:
    """Put --q / --iterations / --kind over the config file's schedule, in place.

    A rule schedule (from the file, or none) is completed with the rule's defaults so
    config.json records every value the run follows. A table schedule (`rows`) is left
    as it is: the rule's flags mean nothing for it, and merging them in made a table
    schedule carry q and iterations it ignores — so they are refused beside one, as is
    a schedule that is not an object (`"schedule": 5` was a TypeError traceback).
    """
    flags = {k: getattr(args, k) for k in ("q", "iterations", "kind")
             if getattr(args, k) is not None}
    given = base.pop("schedule", None)  # null, like an absent schedule: the defaults
    if given is None and not flags:
        return
    if given is not None and not isinstance(given, dict):
        raise ExplorerError(f"the config's schedule must be an object such as "
                            f'{{"q": 0.8, "iterations": 31}}, got {given!r:.60}')
    given = given or {}
    if given.get("kind") == table_kind:
        if flags:
            raise ExplorerError(f"the config's schedule is a table of widths (rows); "
                                f"--{next(iter(flags))} applies to a rule schedule")
        base["schedule"] = given
        return
    base["schedule"] = {**defaults, **given, **flags}
    if "q" in flags:  # a file's q is kept (every rule schedule records one); --q was typed
        refuse_unused_q(base["schedule"].get("kind"))


def run_prune(args: argparse.Namespace) -> int:
    from ..experiment import (check_resumable, create_run, execute, load_run_config, plan,
                              total_epochs)

    if args.from_iteration is not None and args.from_iteration < 0:
        raise ExplorerError(f"--from-iteration must be ≥ 0, got {args.from_iteration}")
    if args.tolerance is not None and not args.tolerance >= 0:  # before any training
        raise ExplorerError(f"--tolerance must be ≥ 0 points, got {args.tolerance:g}")
    if args.resume:
        refuse_settings_beside_resume(args)
        paths = RunPaths(args.resume)
        if not paths.config.is_file():
            raise ExplorerError(f"{args.resume} is not a run folder (no config.json)")
    else:
        if args.from_iteration is not None:
            raise ExplorerError("--from-iteration needs --resume RUN_DIR")
        paths = create_run(_config_from(args), args.runs_root)
        print(f"run folder: {paths.root}", file=sys.stderr)
    resume_hint("prune", paths.root, *(  # a Ctrl-C before the rewind must not lose it
        [f"--from-iteration {args.from_iteration}"] if args.from_iteration is not None else []))
    cfg = saved_settings(paths, load_run_config)
    if args.resume:  # refused here, the folder as it was (a worker turned a finished run
        # "failed" over an edited retain.txt, and lost its iterations to a missing dataset)
        saved_settings(paths, lambda p: check_resumable(p, args.from_iteration))
    status = read_status(paths) if args.resume and args.from_iteration is None else {}
    if status.get("state") == "finished":
        # said as what it is: it printed "finished: schedule complete" as if it had run
        print(f"already finished: {status.get('message', '')} ({paths.root}); "
              f"nothing to resume (--from-iteration K redoes it from iteration K)")
        _print_deploy_pick(paths, 1.0 if args.tolerance is None else args.tolerance)
        return 0
    done = _kept_epochs(paths, args.from_iteration) if args.resume else 0
    show = None if args.quiet else _progress_printer(EpochBar(total_epochs(cfg, len(plan(cfg))),
                                                              done))
    status = execute(paths, args.from_iteration, on_event=_rewound(show, paths.root)
                     if args.from_iteration is not None else show)
    say_outcome(status, paths.root, "run")
    _print_deploy_pick(paths, 1.0 if args.tolerance is None else args.tolerance)
    return 0 if status["state"] == "finished" else 3


def _rewound(show: Callable[[dict], None] | None, root: Path) -> Callable[[dict], None]:
    """`show`, after making the resume hint a plain `--resume` at the run's first event:
    by then the iterations from --from-iteration K on are gone, and the hint's K again
    (after a Ctrl-C once iterations K and K+1 were redone) would delete them once more."""
    said = [False]

    def on_event(event: dict) -> None:
        if not said[0]:
            said[0] = True
            resume_hint("prune", root)
        if show is not None:
            show(event)
    return on_event


def _kept_epochs(paths: RunPaths, from_iteration: int | None) -> int:
    """Epoch events of the iterations a resume keeps (those before it restarts): where
    its bar starts, as an uninterrupted run's bar stood there."""
    from ..experiment import resume_point
    from ..rundir import read_events

    start = resume_point(paths, from_iteration)
    return sum(1 for e in read_events(paths) if e.get("type") == "epoch"
               and isinstance(e.get("iteration"), int) and e["iteration"] < start)


def _print_deploy_pick(paths: RunPaths, tolerance: float) -> None:
    """The model the Iterative page would recommend, so a headless run ends with the
    same answer (and the same refusal when the dense model did not learn)."""
    from ..results import iteration_rows, recommend

    rec = recommend(iteration_rows(paths), tolerance)
    if rec is not None:
        where = "" if not rec.dense_learned else f" ({rec.row.checkpoint})"
        print(f"deploy: {rec.summary()}{where}")


@command("concatenate", "rebuild validations.txt, accuracies.png and losses.png of a run "
                        "(ours, or a thesis-layout folder of validation_results.txt files)")
def configure_concatenate(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.set_defaults(run=run_concatenate)


def run_concatenate(args: argparse.Namespace) -> int:
    from .. import charts  # noqa: F401  (`concatenate` imports it between its table and images)
    from ..results import concatenate_held

    raise_pending_interrupt()  # a Ctrl-C in those imports: no table without its images
    for p in concatenate_held(RunPaths(args.run_dir)):
        print(f"wrote {p}")
    return 0
