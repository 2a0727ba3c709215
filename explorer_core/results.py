"""Reading a run back: per-iteration rows, the thesis' concatenate step, deployment pick.

Everything here reads files only, so it works the same for a finished, a partial, a
crashed or a still-running run, and from the page, the CLI or a notebook.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from .errors import ChartRenderError, ExplorerError
from .fileio import read_table, write_table
from .rundir import (ITERATIVE_RUN, VALIDATION_COLUMNS, RunLock, RunPaths, check_kind,
                     read_record)
from .settings import counted

if TYPE_CHECKING:
    from .metrics import LatencyConfig


# Long width lists (ResNet-18 has 20 conv layers) are cut to this many in a label.
MAX_LABEL_WIDTHS = 6


def join_widths(widths: Sequence[int]) -> str:
    """'256-64', as labels and messages write widths; a long list keeps its ends:
    '64-64-128-…-512 (20 layers)'."""
    text = [str(int(w)) for w in widths]
    if len(text) > MAX_LABEL_WIDTHS:
        return "-".join(text[:3]) + f"-…-{text[-1]} ({len(text)} layers)"
    return "-".join(text)


@dataclass
class IterationRow:
    iteration: int
    widths: list[int]
    percent_retained: float
    train_loss: float
    test_loss: float
    train_acc: float
    test_acc: float
    checkpoint: Path

    def to_dict(self) -> dict:
        return {"iteration": self.iteration, "widths": self.widths,
                "percent_retained": self.percent_retained, "train_loss": self.train_loss,
                "test_loss": self.test_loss, "train_acc": self.train_acc,
                "test_acc": self.test_acc, "checkpoint": str(self.checkpoint)}


def iteration_rows(paths: RunPaths) -> list[IterationRow]:
    """One row per completed iteration, iteration 0 (dense) first."""
    rows = []
    for i in paths.completed_iterations():
        meta = read_record(paths.best_model_json(i))
        m = meta.get("metrics", {})
        if not m:
            continue
        rows.append(IterationRow(i, list(meta.get("widths", [])),
                                 float(meta.get("percent_retained", 100.0)),
                                 m["train_loss"], m["test_loss"], m["train_acc"], m["test_acc"],
                                 paths.best_model(i)))
    return rows


def thesis_iteration_rows(paths: RunPaths) -> list[IterationRow]:
    """One row per pruning iteration of a folder the thesis' own scripts wrote.

    Such a folder has the layout we write (DESIGN §3) but not our `config.json` or
    `best_model.json` sidecars: what each iteration left is its
    `<i>/prune_w_retrain/validation_results.txt` (i ≥ 1, one row of
    `VALIDATION_COLUMNS`). Reading it lets `concatenate` rebuild a thesis run's
    validations.txt and charts, as the thesis' concatenate step did; the dense
    iteration 0 has no such file, so it is not among the rows. A file that is not such a
    table is named in the error rather than skipped.
    """
    odd = paths.odd_iteration_names()
    if odd:  # "007" beside "7": one of the two rows was lost, the other written twice
        raise ExplorerError(f"{paths.root / odd[0]}: iteration folders are named 1, 2, 3 … "
                            f"(the thesis layout); rename or move it")
    rows = []
    for i in paths.numbered_iterations():
        table = paths.validation_results(i)
        if not table.is_file():
            continue
        try:
            columns, values = read_table(table)
        except (OSError, ValueError, UnicodeDecodeError):
            values, columns = [], []
        if columns != VALIDATION_COLUMNS or len(values) != 1 or \
                len(values[0]) != len(VALIDATION_COLUMNS):
            raise ExplorerError(f"{table} is not a validation_results.txt of the thesis layout "
                                f"(a header {' '.join(VALIDATION_COLUMNS)} and one row)")
        problem = _validation_problem(values[0])
        if problem:
            raise ExplorerError(f"{table}: {problem}")
        train_loss, test_loss, train_acc, test_acc, kept = values[0]
        rows.append(IterationRow(i, [], kept, train_loss, test_loss, train_acc, test_acc,
                                 paths.best_model(i)))
    _refuse_thesis_gaps(paths, [r.iteration for r in rows])
    return rows


def _validation_problem(row: list[float]) -> str:
    """What makes a thesis row no validation result ('' if nothing): an accuracy of 500,
    a retained share of 800 % or a negative loss were written and plotted. A loss of nan
    or inf is a result (a training that diverged) and is kept."""
    for name, value in zip(VALIDATION_COLUMNS, row):
        if name.endswith("Loss"):
            if value < 0:
                return f"{name} is {value:g}: a cross-entropy is never negative"
        elif not (math.isfinite(value) and 0 <= value <= 100):
            return f"{name} is {value:g}: a percentage from 0 to 100"
    return ""


def _refuse_thesis_gaps(paths: RunPaths, found: list[int]) -> None:
    """The thesis' table has no iteration column either (`_refuse_gaps`): iterations 1 and
    5 became its rows 1 and 2 without a word. The iterations may start anywhere (a run
    continued with `begin_itr` in a folder of its own) but not skip one."""
    expected = _first_missing(found, found[0] if found else 0)
    if expected is not None:
        raise ExplorerError(
            f"iteration {expected} has no {paths.validation_results(expected)}, so the "
            f"table, which has no iteration column, would skip it")


def _first_missing(found: list[int], start: int) -> int | None:
    """The first number from `start` on that the sorted `found` skips (None: none):
    found by walking the list, as a set of range(max) of a folder named
    99999999999999999999 would not fit in memory."""
    return next((k for k, i in enumerate(sorted(found), start=start) if i != k), None)


def concatenate(paths: RunPaths) -> list[Path]:
    """Write validations.txt, accuracies.png and losses.png from the completed iterations
    — of one of our runs, or of a thesis-layout folder without our config.json
    (`thesis_iteration_rows`). An image that cannot be rendered raises `ChartRenderError`
    once the table and the other image are written."""
    ours = _ours(paths)
    if ours:  # a sweep or a train-time folder was said to have "no completed iteration yet"
        check_kind(paths, read_record(paths.config), ITERATIVE_RUN)
    rows = iteration_rows(paths) if ours else thesis_iteration_rows(paths)
    if ours:
        _refuse_gaps(paths, [r.iteration for r in rows])
    if not rows:
        if not ours:
            raise ExplorerError(f"{paths.root} is not a run folder: no config.json, and no "
                                f"<i>/prune_w_retrain/validation_results.txt of the thesis "
                                f"layout")
        raise ExplorerError(f"{paths.root} has no completed iteration to concatenate yet")
    write_table(paths.validations, VALIDATION_COLUMNS,
                [[r.train_loss, r.test_loss, r.train_acc, r.test_acc, r.percent_retained]
                 for r in rows])
    from .charts import iteration_accuracy_chart, iteration_loss_chart, save_chart_pngs

    records = [r.to_dict() for r in rows]
    return [paths.validations, *save_chart_pngs(
        [(iteration_accuracy_chart(records), paths.accuracies_png),
         (iteration_loss_chart(records), paths.losses_png)], table=paths.validations)]


def _ours(paths: RunPaths) -> bool:
    """Whether the folder is one of our runs (read by its config.json) rather than a thesis
    run. Ours has the status.json `create_run` writes beside its config.json; a thesis
    folder may hold a config.json of the thesis scripts' own, which was read as ours and
    refused as "a train-time pruning run" (it named `epochs`)."""
    if not paths.config.is_file():
        return False
    return paths.status.is_file() or not any(
        paths.validation_results(i).is_file() for i in paths.numbered_iterations())


def _refuse_gaps(paths: RunPaths, done: list[int]) -> None:
    """A table of our run's iterations must not skip one: it has no iteration column,
    so an iteration whose record was cut short or edited by hand went missing from
    validations.txt without a word (7 rows of 8, exit 0)."""
    i = _first_missing(done, 0)
    if i is not None:
        raise ExplorerError(
            f"iteration {i} has no complete record ({paths.best_model_json(i)} is missing, "
            f"cut short or not numbers), so the table would skip it: resume the run to redo "
            f"it (prune --resume {paths.root} --from-iteration {i})")


def concatenate_held(paths: RunPaths) -> list[Path]:
    """`concatenate` for a caller that is not the run's writer (the CLI, the page): our
    run is held (`RunLock`) while its tables are rewritten, so one a worker is writing
    is refused — beside a worker redoing iterations it wrote a validations.txt of old
    and new rows. A thesis folder has no writer; another kind's folder is named as such
    before anything is held."""
    if not _ours(paths):
        return concatenate(paths)
    check_kind(paths, read_record(paths.config), ITERATIVE_RUN)
    with RunLock(paths):
        return concatenate(paths)


def images_note(write: Callable[[], object]) -> str:
    """Run `write` (a run's closing tables and chart images): '' when all were written,
    else '; <which image is missing and why>' for the finished status. An image that
    cannot be rendered must not fail a run whose every number is on disk: its status
    would send the user to resume, which only repeats this step."""
    try:
        write()
    except ChartRenderError as exc:
        print(f"warning: {exc}", file=sys.stderr)  # worker.log
        return f"; {exc}"
    return ""


def read_validations(paths: RunPaths) -> list[dict]:
    columns, values = read_table(paths.validations)
    return [dict(zip(columns, v)) for v in values]


# How far above chance a dense model must be before pruned models can be judged against it,
# as a share of the distance from chance to 100 %: a model "learned" when its test
# accuracy is at least chance + LEARNED_SHARE · (100 − chance), i.e. Cohen's kappa
# against uniform guessing (chance = 1/classes) of at least 0.1. Why a margin and not
# chance itself: a diverged model that predicts one class scores that class's share of
# the test set, which is above 1/classes on real splits (MNIST's "1" is 11.35 % of its
# test set, the collapse DESIGN §7 quotes; 11.14 % on our Digits split), and small test
# sets add noise (one standard deviation is 1.6 points at 10 % on Digits' 359 test
# images). Anything that learned is far above the margin (19 % for 10 classes, 55 % for
# 2, 10.9 % for 100): the thesis' dense MLP is at 97.6 %, a Digits MLP above 90 %.
LEARNED_SHARE = 0.1


def chance_accuracy(classes: int) -> float:
    """Test accuracy (%) of guessing among `classes` equally likely classes."""
    return 100.0 / classes


def learned_threshold(classes: int) -> float:
    """The test accuracy (%) at and above which a model counts as having learned
    (`LEARNED_SHARE` of the way from chance to 100 %)."""
    chance = chance_accuracy(classes)
    return chance + LEARNED_SHARE * (100.0 - chance)


def has_learned(test_acc: float, classes: int, test_loss: float | None = None) -> bool:
    """Whether a classifier's test accuracy is clear of chance level (see `LEARNED_SHARE`);
    a non-finite loss (NaN, inf: training diverged) never counts as learned."""
    if test_loss is not None and not math.isfinite(test_loss):
        return False
    return math.isfinite(test_acc) and test_acc >= learned_threshold(classes)


def checkpoint_classes(checkpoint: Path) -> int | None:
    """How many classes a checkpoint's model tells apart, from its `.json` sidecar
    (class names, else the spec's output width); None when the sidecar does not say."""
    meta = read_record(Path(checkpoint).with_suffix(".json"))
    names = meta.get("class_names")
    if isinstance(names, list) and len(names) >= 2:
        return len(names)
    spec = meta.get("spec") if isinstance(meta.get("spec"), dict) else {}
    for key in ("out", "classes"):
        n = spec.get(key)
        if isinstance(n, int) and not isinstance(n, bool) and n >= 2:
            return n
    return None


@dataclass
class Recommendation:
    row: IterationRow
    dense: IterationRow
    tolerance: float
    pruned: int = 0  # completed pruned iterations the pick was chosen from
    classes: int | None = None  # of the dataset; None: unknown, the dense model is trusted
    # better picks whose checkpoint would not load, best first, with the reason
    damaged: list[tuple[IterationRow, str]] = field(default_factory=list)

    @property
    def deployable(self) -> bool:
        """Whether the pick's checkpoint loads (False only when no candidate's does)."""
        return all(r is not self.row for r, _ in self.damaged)

    @property
    def drop(self) -> float:
        return self.dense.test_acc - self.row.test_acc

    @property
    def is_dense(self) -> bool:
        """No pruned iteration is within the tolerance: the dense model itself is the pick."""
        return self.row.iteration == self.dense.iteration

    @property
    def dense_learned(self) -> bool:
        """False when the dense model is at chance level (`has_learned`). Every pick is
        measured against the dense model's accuracy, so then there is nothing to
        recommend: a pruned model "within 1 point" of a model that guesses also guesses."""
        if self.classes is None:
            return True
        return has_learned(self.dense.test_acc, self.classes, self.dense.test_loss)

    def summary(self, damaged: bool = True) -> str:
        """One sentence for a person; never presents the dense model as a pruned one, nor
        any model as a pick when the dense model did not learn. `damaged=False` leaves
        out `damaged_note()`, for a page that shows it as a warning of its own."""
        r, dense = self.row, self.dense
        if not self.dense_learned:
            n = self.classes
            return (f"No model to recommend: the dense model did not learn. Its test "
                    f"accuracy, {dense.test_acc:.2f} %, is near chance for {n} classes "
                    f"({chance_accuracy(n):.3g} % by guessing; a model counts as having "
                    f"learned from {learned_threshold(n):.3g} %, {100 * LEARNED_SHARE:g} % "
                    f"of the way from chance to 100 %). Every pruned model is judged by how "
                    f"far it falls below the dense one, so against a model that guesses "
                    f"the comparison means nothing. Check the training settings — a "
                    f"learning rate too high for the optimiser makes training diverge; too "
                    f"few dense epochs leave the model untrained — and start a new run.")
        if not self.deployable:
            return f"No checkpoint to deploy: {self.damaged_note()}"
        if self.is_dense:
            within = counted(float(self.tolerance), "point")
            why = (f"the pruned iterations within {within} of it have checkpoints that do "
                   f"not load" if self.damaged else
                   ("the pruned iteration does not stay" if self.pruned == 1 else
                    f"none of the {self.pruned} pruned iterations stays") + f" within {within} "
                   "of it" if self.pruned else "no pruned iteration is complete yet")
            pick = (f"Deploy the dense model itself (iteration 0, test accuracy "
                    f"{dense.test_acc:.2f} %): {why}.")
        else:
            # the gap between the two accuracies as printed: "0.00 points above" said
            # equal ones apart, and 89.994 and 89.998 read "90.00 % (the same as 89.99 %)"
            shown, dense_shown = f"{r.test_acc:.2f}", f"{dense.test_acc:.2f}"
            gap = float(dense_shown) - float(shown)
            than = "the same as" if shown == dense_shown else \
                f"{abs(gap):.2f} points {'below' if gap > 0 else 'above'}"
            pick = (f"Iteration {r.iteration}: {r.percent_retained:.1f} % of hidden neurons "
                    f"({join_widths(r.widths)}), test accuracy {r.test_acc:.2f} % "
                    f"({than} the dense model's {dense.test_acc:.2f} %).")
        return f"{pick} {self.damaged_note()}" if self.damaged and damaged else pick

    def damaged_note(self) -> str:
        """Which better picks were passed over and how to get them back: a restart from
        the earliest redoes it and every later iteration."""
        which = "; ".join(f"iteration {r.iteration}: {why}" for r, why in self.damaged)
        first = min(r.iteration for r, _ in self.damaged)
        return (f"Passed over for a checkpoint that does not load — {which}. Restart the "
                f"run from iteration {first} to write {'it' if len(self.damaged) == 1 else 'them'} "
                f"again.")


def recommend(rows: list[IterationRow], tolerance: float, classes: int | None = None,
              problem: Callable[[Path], str | None] | None = None
              ) -> Recommendation | None:
    """The smallest model whose test accuracy is within `tolerance` points of the dense one
    and whose checkpoint loads (`problem`, by default `checkpoint.checkpoint_problem`, says
    why one would not; imported here, as it imports torch; better picks passed
    over for it are `Recommendation.damaged`, so the page and the CLI can say which
    iteration to redo rather than offer a broken file).

    `classes` (default: read from the dense checkpoint's sidecar) lets the pick say when
    the dense model did not learn (`Recommendation.dense_learned`): then the pick is the
    dense row and `summary()` says why nothing is recommended, for the page and the CLI alike.
    """
    if not rows or rows[0].iteration != 0:
        return None
    dense = rows[0]
    if classes is None:
        classes = checkpoint_classes(dense.checkpoint)
    rec = Recommendation(dense, dense, tolerance, pruned=len(rows) - 1, classes=classes)
    if not rec.dense_learned:
        return rec
    if problem is None:
        from .checkpoint import checkpoint_problem as problem
    fit = sorted((r for r in rows if dense.test_acc - r.test_acc <= tolerance),
                 key=lambda r: (r.percent_retained, -r.test_acc))
    for r in fit:  # the dense row is always within the tolerance
        found = problem(r.checkpoint)
        if found is None:
            rec.row = r
            break
        rec.damaged.append((r, found))
    else:  # nothing loads: the pick stands, and `deployable` says it cannot be had
        rec.row = fit[0]
    return rec


@dataclass
class RunProgress:
    """What a live view needs, derived from status.json and events.jsonl only."""
    state: str
    message: str
    iteration: int | None
    total_iterations: int
    epochs_done: int
    total_epochs: int
    elapsed: float
    eta: float | None
    epochs: list[dict]       # per-epoch events (all iterations)
    iterations: list[dict]   # per-iteration events
    last_report: float | None = None  # `rundir.last_report`: where `elapsed` ends

    @property
    def fraction(self) -> float:
        return min(self.epochs_done / self.total_epochs, 1.0) if self.total_epochs else 0.0


def run_progress(paths: RunPaths, now: float | None = None) -> RunProgress:
    import time

    from .rundir import elapsed_seconds, last_report, read_events, read_status

    status = read_status(paths)
    events = read_events(paths)
    epochs = [e for e in events if e.get("type") == "epoch"]
    iterations = sorted((e for e in events if e.get("type") == "iteration"),
                        key=lambda e: e.get("iteration", 0))  # restored ones come late
    total = int(status.get("total_epochs") or 0)
    started = status.get("started")
    state = status.get("state", "unknown")
    elapsed = elapsed_seconds(status, now)
    # epochs trained in this process run (not replayed or from before a resume) set the pace
    # paced from the first such epoch on: the worker's start-up (imports, data) before
    # it is no part of the remaining work, and counting it inflated the first estimates.
    # A cached dense model's epochs, replayed in one instant, made the pace 0 s an epoch:
    # "Remaining 0 s" with the whole pruning schedule ahead.
    recent = [e for e in epochs if started and e.get("time", 0) >= started
              and not e.get("replayed")]
    eta = None
    if state == "running" and len(recent) > 1 and total:
        eta = paced_remaining(recent[-1]["time"] - recent[0]["time"], len(recent) - 1,
                              total - len(epochs), (now or time.time()) - recent[-1]["time"])
    return RunProgress(state, status.get("message", ""), status.get("iteration"),
                       int(status.get("total_iterations") or 0),
                       _epochs_done(epochs, iterations, state), total, elapsed, eta,
                       epochs, iterations, last_report(status))


def _epochs_done(epochs: list[dict], iterations: list[dict], state: str) -> int:
    """Epochs of the work a run has: while it runs, every epoch so far; otherwise —
    queued included — only the epochs of completed iterations, since a resume trains a
    cut-short iteration again from its start. A stopped run's bar counted that
    iteration's epochs until the resume took them back ("epoch 9/12", then "epoch 7/12"
    running); queued, until the worker dropped them ("epoch 314/400" just after Resume,
    then "283/400"). Epochs of no iteration (a train-time run's, whose progress counts
    its own way) all count."""
    if state == "running":  # the worker has dropped the cut-short iteration's epochs
        return len(epochs)
    completed = {e.get("iteration") for e in iterations}
    return sum("iteration" not in e or e["iteration"] in completed for e in epochs)


def paced_remaining(span: float, work_in_span: float, work_left: float,
                    since_last: float) -> float:
    """Seconds for `work_left` epochs' work at the pace of the last `span` seconds, which
    did `work_in_span`, with `since_last` seconds already spent on the epoch under way.

    The pace is taken between finished epochs only: pacing by the clock counted the
    epoch under way as time spent without a finished epoch (epochs ending at 0, 10 and
    20 s, at 25 s: 87.5 s shown, 65 s left). The epoch under way is credited with the
    time it has run, at most one epoch's worth, so a slow epoch does not count down
    below the epochs still to come.
    """
    per_epoch = span / work_in_span
    return max(0.0, work_left * per_epoch - min(max(since_last, 0.0), per_epoch))


def deployment_costs(dense_checkpoint: Path, pruned_checkpoint: Path,
                     latency: LatencyConfig | None = None) -> list[dict]:
    """Size, MACs and CPU latency of the dense and the recommended model, as table rows.

    Latencies are timed interleaved on one thread (see `metrics.LatencyConfig`) so the
    ratio is steady on a shared machine; a handful of repeats keeps the page responsive.
    """
    from .checkpoint import load_checkpoint
    from .metrics import LatencyConfig, compare_costs
    from .models import input_shape

    dense = load_checkpoint(dense_checkpoint)
    pruned = load_checkpoint(pruned_checkpoint)
    shape = input_shape(dense.spec)
    if input_shape(pruned.spec) != shape:
        raise ExplorerError(f"{Path(pruned_checkpoint).name} takes inputs of shape "
                            f"{input_shape(pruned.spec)}, the dense model {shape}")
    config = latency or LatencyConfig(batch_size=256, repeats=15, warmup=3)
    cmp = compare_costs(dense.model, pruned.model, shape, config)
    ratios = cmp.ratios()

    def row(name: str, attr: str, fmt, ratio: float | None) -> dict:
        d, p = getattr(cmp.dense, attr), getattr(cmp.pruned, attr)
        return {"metric": name, "dense": fmt(d), "recommended": fmt(p),
                "recommended / dense": None if ratio is None else round(ratio, 4)}

    whole = "{:,}".format
    return [
        row("parameters", "params", whole, ratios["params"]),
        row("size (MB, float32)", "param_bytes", lambda b: f"{b / 2**20:.3f}",
            cmp.pruned.param_bytes / cmp.dense.param_bytes if cmp.dense.param_bytes else None),
        row("MACs per sample", "macs", whole, ratios["macs"]),
        row(f"CPU latency (ms per batch of {config.batch_size})", "latency_ms",
            lambda v: f"{v:.3f}", None if ratios["speedup"] is None else 1 / ratios["speedup"]),
    ]
