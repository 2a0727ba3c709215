"""`train-time`: prune while training (importance vs random vs none), headless."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import (EpochBar, LogPace, command, default_name, read_json_config,
                   refuse_settings_beside_resume, resume_hint, saved_settings,
                   say_ignored_keys, say_outcome)
from ..errors import ExplorerError
from ..rundir import TRAIN_TIME_RUN


def _progress_printer(bar: EpochBar, labels: dict[str, str]):
    """A one-line progress bar on stderr, redrawn per epoch (`bar` counts the epochs,
    from those a resume keeps).

    Into a log file or pipe (the background worker's worker.log) it writes one plain
    line per finished (variant, seed) instead, so the log stays readable, and an epoch's
    line when it has been quiet (`LogPace`): a seed of the default 30 epochs × 3 variants
    went by without a line.
    """
    terminal = sys.stderr.isatty()
    pace = LogPace("unit")

    def show(event: dict) -> None:
        bar.count(event)
        if not (event.get("type") == "epoch" if terminal else pace.due(event)):
            return
        metric = (f"test acc {event['test_acc']:.2f} %" if "test_acc" in event else
                  f"test loss {event.get('test_loss', float('nan')):.3f}")
        line = (f"{bar.bar()}  {labels.get(event.get('variant'), '?')} "
                f"seed {event.get('seed')} epoch {event.get('epoch')}  {metric}  "
                f"{bar.times()} ")
        print(("\r" + line) if terminal else line, end="" if terminal else "\n",
              file=sys.stderr, flush=True)
    return show


@command("train-time", "prune during training by neuron importance, against random and no "
                       "pruning (classifiers and a VAE)")
def configure(p: argparse.ArgumentParser) -> None:
    from ..criteria import CRITERIA
    from ..data import DATASETS
    from ..train_time import CLASSIFIER_ARCHS, TASKS, VARIANTS

    p.add_argument("--config", type=Path, help="JSON with TrainTimeConfig fields (flags override)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue this run: finished (variant, seed) runs are kept")
    p.add_argument("--name", help="run name (folder runs/train-time/<date>/<name>)")
    p.add_argument("--runs-root", type=Path,
                   help="root folder of train-time runs (default: $EXPLORER_RUNS/train-time, "
                        "else ./runs/train-time)")
    p.add_argument("--task", choices=TASKS, help="classifier (default) or vae")
    p.add_argument("--dataset", choices=sorted(DATASETS), help="default digits")
    p.add_argument("--arch", choices=CLASSIFIER_ARCHS, help="classifier model (default mlp)")
    p.add_argument("--hidden", type=int, nargs="+", metavar="H",
                   help="hidden widths: MLP (default 50 30), CNN fully connected (128), "
                        "VAE encoder (256)")
    p.add_argument("--channels", type=int, nargs="+", metavar="C",
                   help="CNN conv channels (default 16 32)")
    p.add_argument("--latent", type=int, help="VAE latent size (default 20)")
    p.add_argument("--epochs", type=int, help="total epochs (default 30)")
    p.add_argument("--initial-epochs", type=int, help="epochs before the first prune (default 10)")
    p.add_argument("--prune-every", type=int, metavar="K", help="prune every K epochs (default 3)")
    p.add_argument("--fraction", type=float,
                   help="fraction of each hidden layer removed per prune (default 0.1)")
    p.add_argument("--criterion", choices=sorted(CRITERIA),
                   help="importance criterion (default contribution; the VAE takes "
                        "contribution, l1 or l2)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS,
                   help="which of the three to run (default all)")
    p.add_argument("--seeds", type=int, nargs="+", metavar="S", help="seeds (default 0)")
    p.add_argument("--optimizer", choices=["adam", "adamw", "sgd"])
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


_FLAG_FIELDS = ("name", "task", "dataset", "arch", "hidden", "channels", "latent", "epochs",
                "initial_epochs", "prune_every", "criterion", "variants", "seeds", "optimizer",
                "lr", "batch_size")


def _config_from(args: argparse.Namespace):
    from ..train_time import TrainTimeConfig

    base = read_json_config(args.config, TRAIN_TIME_RUN) if args.config else {}
    for name in _FLAG_FIELDS:
        if getattr(args, name) is not None:
            base[name] = getattr(args, name)
    if args.fraction is not None:
        base["prune_fraction"] = args.fraction
    if base.get("name") is None:  # absent or null: no name given
        base["name"] = default_name("train-time")
    if args.latent is not None and base.get("task", "classifier") != "vae":
        # the config's own check says it too; this one names the flag the user typed
        raise ExplorerError("--latent sets the VAE's latent size; a classifier has none "
                            "(drop it, or add --task vae)")
    try:
        cfg = TrainTimeConfig.from_dict(base)
    except TypeError as exc:
        raise ExplorerError(f"bad train-time setting: {exc}") from None
    say_ignored_keys(base, TrainTimeConfig, args.config)
    return cfg


def _say_redone(paths) -> None:
    """Name each saved run whose checkpoint is damaged: the resume computes it again
    (`train_time.damaged_units` says why), which would otherwise go unmentioned."""
    from ..train_time import damaged_units

    for variant, seed in damaged_units(paths):
        print(f"{paths.final_model(variant, seed)} is damaged: computing {variant} seed "
              f"{seed} again", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from ..rundir import TrainTimePaths
    from ..train_time import (check_recorded_settings, create_run, execute, kept_epochs,
                              load_config, total_epochs)

    if args.resume:
        refuse_settings_beside_resume(args)
        paths = TrainTimePaths(args.resume)
        if not paths.config.is_file():
            raise ExplorerError(f"{args.resume} is not a run folder (no config.json)")
    else:
        paths = create_run(_config_from(args), args.runs_root)
        print(f"run folder: {paths.root}", file=sys.stderr)
    resume_hint("train-time", paths.root)
    cfg = saved_settings(paths, load_config)
    if args.resume:  # refused here, the folder as it was (the worker wrote "failed")
        saved_settings(paths, lambda p: check_recorded_settings(p, cfg))
        _say_redone(paths)
    done = kept_epochs(paths) if args.resume else 0
    show = None if args.quiet else _progress_printer(EpochBar(total_epochs(cfg), done),
                                                     cfg.labels())
    status = execute(paths, on_event=show)
    if show is not None and sys.stderr.isatty():
        print(file=sys.stderr)
    say_outcome(status, paths.root, "run")
    return 0 if status["state"] == "finished" else 3
