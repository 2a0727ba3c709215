"""Reading a sweep back: its cells as a table, the mean ± std over repeats, the Pareto
front of accuracy against MACs, and live progress.

The cell files (`cells/<id>.json`) are the source of truth. `results.csv` is the same
rows for other tools: the worker appends one line per finished cell (cheap, so the
table grows as cells arrive) and rewrites it atomically from the cell files when it
starts and stops, which also repairs a line torn by a kill. Everything here reads
files only, so it works for a running, stopped, crashed or finished sweep alike.
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
import typing
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .fileio import JSON_ERRORS, atomic_write_text, name_the_file
from .estimate import is_end_ratio
from .rundir import (LIVE_STATES, SweepPaths, elapsed_seconds, last_report, read_events,
                     read_json, read_record, read_status)
from .models import FULLY_CONNECTED
from .pruning_types import PRUNING_TYPES
from .settings import counted, is_number
from .sweep import Cell

KEY_COLUMNS = ["model", "dataset", "batch_size", "seed", "type", "criterion", "ratio"]
RESULT_COLUMNS = [
    "cell_id", *KEY_COLUMNS, "status", "test_acc", "test_loss", "dense_test_acc",
    "dense_test_loss", "params", "dense_params", "nonzero_params", "sparsity", "macs",
    "dense_macs",
    "train_flops", "latency_ms", "latency_batch", "dense_latency_ms", "widths",
    "dense_train_seconds", "finetune_seconds", "prune_seconds", "eval_seconds", "cost_seconds",
    "cell_seconds", "peak_mb", "dense_peak_mb", "baseline_from_cache", "checkpoint", "note"]
# Averaged over repeats (seeds) in the summary.
SUMMARY_METRICS = ["test_acc", "test_loss", "dense_test_acc", "params", "nonzero_params",
                   "sparsity", "macs", "train_flops", "latency_ms", "dense_train_seconds",
                   "finetune_seconds", "peak_mb"]
GROUP_COLUMNS = [c for c in KEY_COLUMNS if c != "seed"]


def read_cells(paths: SweepPaths) -> list[dict]:
    """Every finished cell's row, in a stable order (grid order is restored by sorting).

    A record names itself (`cell_id` = its file's name) and is one (`is_cell_record`);
    anything else in the folder — a hand-made note, a copy, a hand-edited record,
    something truncated or unreadable — is not a finished cell, so it counts neither in
    the tables nor in the progress, and resume redoes the cell (`scan_cells` names them).
    """
    return scan_cells(paths)[0]


def scan_cells(paths: SweepPaths) -> tuple[list[dict], list[str]]:
    """(`read_cells`' rows, the names of the cells/*.json files named as cells that are
    no record).

    The names let a page say why a finished sweep counts fewer cells than it ran
    ("38 of 40 cells" beside a Resume button, otherwise unexplained); one pass reads both.
    """
    rows, unreadable = [], []
    for f in sorted(paths.cells_dir.glob("*.json")) if paths.cells_dir.is_dir() else []:
        try:
            row = json.loads(f.read_text())
        except (OSError, *JSON_ERRORS):  # truncated (a full disk, a copy), or not JSON
            row = None
        if is_cell_record(row, f.stem):
            rows.append(row)
        elif Cell.looks_like_id(f.stem):  # a foreign file is none of ours to warn about
            unreadable.append(f.name)
    return rows, unreadable


# A record's grid fields: those of a `sweep.Cell`, of its fields' types (exact types:
# a JSON true is no seed, though True == 1).
_CELL_TYPES: dict[str, tuple[type, ...]] = {
    name: (int, float) if kind is float else (kind,)
    for name, kind in typing.get_type_hints(Cell).items()}
# What the tables compute with: numbers, or empty for what a cell did not measure.
NUMBER_COLUMNS = (
    "test_acc", "test_loss", "dense_test_acc", "dense_test_loss", "params", "dense_params",
    "nonzero_params", "sparsity", "macs", "dense_macs", "train_flops", "latency_ms",
    "latency_batch", "dense_latency_ms", "dense_train_seconds", "finetune_seconds",
    "prune_seconds", "eval_seconds", "cost_seconds", "cell_seconds", "peak_mb",
    "dense_peak_mb")
_NUMBER_OR_EMPTY = (int, float, type(None))
STATUSES = ("ok", "dead", "failed")


def is_cell_record(row: Any, cell_id: str) -> bool:
    """Whether `row` is the finished record of cell `cell_id`: its grid fields, typed as a
    `Cell`'s, rebuild that id, its status is one a cell ends with, and its metrics are
    numbers or empty.

    Type checks only, ~4 µs a record beside ~25 µs to read and parse it (the page reads
    every record on each rerun): a hand-edited `"ratio": null` made a seventh summary
    row of a six-point grid, and `"test_acc": "abc"` went into results.csv.
    """
    if type(row) is not dict or row.get("cell_id") != cell_id or \
            row.get("status") not in STATUSES:
        return False
    for name in NUMBER_COLUMNS:
        if type(row.get(name)) not in _NUMBER_OR_EMPTY:
            return False
    cell = cell_of(row)
    return cell is not None and cell.id == cell_id


def cell_of(record: Any) -> Cell | None:
    """The `Cell` whose grid fields `record` holds, typed as a Cell's, else None (also
    for a ratio past float's range: a 400-digit JSON number raised OverflowError)."""
    if not isinstance(record, dict):
        return None
    for name, kinds in _CELL_TYPES.items():
        if type(record.get(name)) not in kinds:
            return None
    try:
        cell = Cell(**{name: record[name] for name in _CELL_TYPES})
        cell.id  # noqa: B018 — formats the ratio: the overflow shows here
    except ArithmeticError:
        return None
    return cell


def finished_ids(paths: SweepPaths) -> set[str]:
    """The ids of the finished cells (`read_cells`)."""
    return {r["cell_id"] for r in read_cells(paths)}


def every_cell_failed(rows: list[dict]) -> str | None:
    """One line when a sweep's finished cells are all failures, else None.

    Some failed cells are a result (a criterion that cannot handle a model); a sweep
    whose every cell failed answered nothing, and the command line exited 0 on it as
    if it had. The first cell's note says why (a diverged baseline fails a whole group
    with one reason)."""
    if not rows or any(r.get("status") != "failed" for r in rows):
        return None
    return (f"every cell failed ({len(rows)} of {len(rows)}); the first: "
            f"{rows[0].get('note') or 'no reason recorded'}")


def unlearned_baselines(rows: list[dict]) -> list[str]:
    """One line per dense baseline of these cells that did not learn (`has_learned`):
    every cell of its group compares pruned models against a guess, which a sweep with
    lr 10 reported as four "ok" cells at 11.42 % without a word (the pruning command
    says so, and recommends nothing)."""
    from .data import get_info
    from .labels import dataset_name, model_name
    from .results import chance_accuracy, has_learned

    seen: dict[tuple, str] = {}
    for r in rows:
        group = tuple(r.get(k) for k in ("model", "dataset", "batch_size", "seed"))
        acc, loss = r.get("dense_test_acc"), r.get("dense_test_loss")
        if group in seen or not is_number(acc) or acc != acc:
            # no baseline (its group failed): said by the cells' notes
            continue
        classes = get_info(r["dataset"]).num_classes
        loss = None if isinstance(loss, float) and loss != loss else loss  # a frame's gap
        seen[group] = "" if has_learned(acc, classes, loss) else (
            f"the dense baseline {model_name(group[0])} · {dataset_name(group[1])} · batch "
            f"{group[2]} · seed {group[3]} did not learn (test accuracy {acc:.2f} %, "
            f"{chance_accuracy(classes):.3g} % by guessing): its cells compare pruned models "
            f"against a guess; check the learning rate and the dense epochs")
    return [line for line in seen.values() if line]


_COUNTS: dict[str, tuple[int, int]] = {}  # cells folder → (its mtime_ns, finished cells)


def finished_count(paths: SweepPaths) -> int:
    """How many cells are finished, as `read_cells` counts them, read again only when
    the cells folder changed.

    Why cached: the Compare page lists every sweep on each rerun, and parsing every
    record of every sweep there cost ~0.1 ms a cell; counting file names instead
    counted notes and copies in the folder as cells (34 of 32). A record lands by a
    rename into the folder, which changes the folder's mtime.
    """
    folder = paths.cells_dir
    try:
        stamp = folder.stat().st_mtime_ns
    except OSError:
        return 0
    key = str(folder.resolve())
    cached = _COUNTS.get(key)
    if cached is None or cached[0] != stamp:
        cached = _COUNTS[key] = (stamp, len(read_cells(paths)))
    return cached[1]


def results_frame(paths: SweepPaths, rows: list[dict] | None = None) -> pd.DataFrame:
    """One row per finished cell with the fixed `RESULT_COLUMNS` (missing values empty),
    sorted by `KEY_COLUMNS` (stable); a saved model named where it is now
    (`_checkpoints_here`)."""
    rows = read_cells(paths) if rows is None else rows
    order = _key_order(rows)
    if order is not None:  # sorted before the frame is built: the same rows, ~1 ms less
        return _checkpoints_here(paths, pd.DataFrame([rows[i] for i in order],
                                                     columns=RESULT_COLUMNS))
    frame = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    if not frame.empty:
        frame = frame.sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)
    return _checkpoints_here(paths, frame)


def _checkpoints_here(paths: SweepPaths, frame: pd.DataFrame) -> pd.DataFrame:
    """The `checkpoint` column as the files in this sweep's folder: a record keeps the
    path it was saved under, so a sweep moved or copied elsewhere (and resumed there)
    listed every model at its old place — gone, or another sweep's files."""
    saved = frame["checkpoint"]
    if saved.notna().any():
        frame["checkpoint"] = [str(paths.checkpoint(cell)) if isinstance(ck, str) and ck
                               else ck for cell, ck in zip(frame["cell_id"], saved)]
    return frame


# The key types Python sorts as pandas sorts their columns (text by code point, numbers
# by value); a row with anything else (a missing key, NaN, a flag) is sorted by pandas.
_KEY_TYPES = {"model": (str,), "dataset": (str,), "batch_size": (int,), "seed": (int,),
              "type": (str,), "criterion": (str,), "ratio": (int, float)}


def _key_order(rows: list[dict]) -> list[int] | None:
    """The rows' positions in `KEY_COLUMNS` order (stable, like pandas' sort), or None
    when a key is not of `_KEY_TYPES`. Sorting the frame with `sort_values` took ~1 ms
    of the ~2.5 ms `results_frame` spent on the 176-cell benchmark grid; this ~0.15 ms."""
    keys = []
    for row in rows:
        key = tuple(row.get(c) for c in KEY_COLUMNS) if type(row) is dict else ()
        if len(key) != len(KEY_COLUMNS) or not all(
                type(v) in _KEY_TYPES[c] for c, v in zip(KEY_COLUMNS, key)) or \
                key[-1] != key[-1]:  # NaN ratio
            return None
        keys.append(key)
    return sorted(range(len(keys)), key=keys.__getitem__)


def summary_frame(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over repeats of every metric, per grid point.

    `n` counts the repeats that produced numbers (failed cells have none); `status` is
    the worst status among the repeats (failed > dead > ok).

    One grouping serves every statistic: the counts, means and standard deviations are
    pandas' own, column by column on that grouping, and the worst status is the largest
    rank in each group (numpy, over the groups' numbers). `agg(["mean", "std"])`, a
    Python `max` per group and the copies around them cost ~12 ms of CPU (~24 ms wall
    on the shared machine) on the 176-cell benchmark grid, every time a sweep's tables
    were written and on every rerun of the Compare page; this ~4 ms. Not `mean()` over
    all metrics at once: when each grid point's rows are side by side, pandas 3 sums a
    group with `np.add.reduceat` if the block it sums has no NaN and with a compensated
    sum otherwise, so a metric beside a column with gaps came out an ulp off its own.
    """
    cols = [*GROUP_COLUMNS, "n", "status", *[f"{m}_{s}" for m in SUMMARY_METRICS
                                              for s in ("mean", "std")]]
    if results.empty:
        return pd.DataFrame(columns=cols)
    numeric = _numeric_metrics(results)
    grouped = numeric.groupby(GROUP_COLUMNS, sort=False, dropna=False)
    stats = {}
    for m in SUMMARY_METRICS:  # column by column: see the docstring
        column = grouped[m]
        stats[f"{m}_mean"], stats[f"{m}_std"] = column.mean(), column.std()
    keys = stats[cols[-1]].index  # the grid points, in the groups' order
    ids = grouped.ngroup().to_numpy()  # each row's grid point, numbered in that order
    table: dict[str, Any] = {c: keys.get_level_values(c) for c in GROUP_COLUMNS}
    table["n"] = grouped["test_acc"].count().array
    table["status"] = _worst_status(results, ids, len(keys))
    table.update((name, values.array) for name, values in stats.items())
    return pd.DataFrame(table)  # in the order of `cols`


def _numeric_metrics(results: pd.DataFrame) -> pd.DataFrame:
    """The grid columns and `SUMMARY_METRICS`, the metrics as numbers (text → missing).
    Columns already numeric are kept as they are (converting them changes nothing)."""
    frame = results[GROUP_COLUMNS + SUMMARY_METRICS]
    other = {m: pd.to_numeric(frame[m], errors="coerce") for m in SUMMARY_METRICS
             if frame[m].dtype.kind not in "iuf"}
    return frame.assign(**other) if other else frame


_STATUS_RANK = {"ok": 0, "dead": 1, "failed": 2}


def _worst_status(results: pd.DataFrame, ids: np.ndarray, groups: int) -> Any:
    """Each group's worst status (`summary_frame`; `ids` numbers each row's group): the
    value of the largest rank, taken from the column itself so it keeps its dtype. A
    status outside the ranks (only in a hand-made frame) takes the per-group Python
    `max`, which ranks it worst of all and keeps the first such value."""
    status = results["status"]
    codes = status.map(_STATUS_RANK)
    if codes.isna().any():
        return results.groupby(GROUP_COLUMNS, sort=False, dropna=False)["status"].agg(
            lambda s: max(s, key=lambda v: _STATUS_RANK.get(v, 3))).array
    codes = codes.to_numpy(dtype=np.int64)
    worst = np.zeros(groups, dtype=np.int64)
    np.maximum.at(worst, ids, codes)
    first = {c: i for i, c in reversed(list(enumerate(codes.tolist())))}  # a row per rank
    return status.array.take([first[c] for c in worst.tolist()])


def pareto_mask(frame: pd.DataFrame, cost: str = "macs_mean",
                value: str = "test_acc_mean") -> pd.Series:
    """True for points no other point beats: fewer or equal `cost` and higher `value`.

    Ties on both count as one point (the first stays on the front). Rows without
    numbers (failed cells) and dead models (no cost: 100 % pruned, nothing computed) are
    never on the front: they are no trade-off, and a hidden dead model at 0 MACs kept
    the cheapest drawn points off it. Nor is a grid point some of whose repeats failed
    (`status` failed in the summary): its mean rests on the repeats that happened to
    work, so it would promise what the setting does not reliably deliver.
    """
    ok = frame[[cost, value]].notna().all(axis=1) & (pd.to_numeric(frame[cost],
                                                                  errors="coerce") > 0)
    if "status" in frame.columns:
        ok &= frame["status"] != "failed"
    pts = frame.loc[ok, [cost, value]].astype(float)
    order = pts.sort_values([cost, value], ascending=[True, False], kind="stable").index
    best = float("-inf")
    front = pd.Series(False, index=frame.index)
    for i in order:  # one pass over points sorted by cost: a running maximum of value
        if pts.at[i, value] > best:
            front.at[i] = True
            best = pts.at[i, value]
    return front


# What a Pareto front is drawn over: accuracies on different test sets are not
# comparable, so each dataset has its own front, over every model, pruning type,
# criterion and batch size run on it (all are choices for the same task).
PARETO_OVER = ("dataset",)


def pareto_by(frame: pd.DataFrame, by: tuple[str, ...] = PARETO_OVER, cost: str = "macs_mean",
              value: str = "test_acc_mean") -> pd.Series:
    """`pareto_mask` within each group of rows with equal `by` values (one front per
    dataset by default): a point of one dataset never dominates a point of another."""
    front = pd.Series(False, index=frame.index)
    if frame.empty:
        return front
    for _, rows in frame.groupby(list(by), sort=False, dropna=False):
        front.loc[rows.index] = pareto_mask(rows, cost, value)
    return front


# Ten significant digits: counts (parameters, MACs, FLOPs run to billions) stay exact
# even as means over repeats; six wrote a 2 241 546-parameter model as 2.24155e+06.
FLOAT_FORMAT = "%.10g"


def _csv_text(frame: pd.DataFrame, header: bool = True) -> str:
    """`frame` as CSV: floats as `FLOAT_FORMAT`, missing values empty, and float columns
    that hold only whole numbers (counts with a gap) as integers.

    Written with the csv module from plain lists, as pandas' `to_csv` writes them (same
    writer, same cells): on the 176-cell benchmark grid the per-column `astype("Int64")`
    copy and `to_csv` cost ~20 ms of each `write_tables`. Columns of kinds the fast path
    does not know (dates, pandas' nullable numbers, …) and whole numbers past int64 go
    through `_pandas_csv_text`, the way it was done before.
    """
    names = frame.columns.tolist()
    if not names or not all(type(name) is str for name in names):
        return _pandas_csv_text(frame, header)
    cells = [_column_cells(column) for _, column in frame.items()]
    if any(c is None for c in cells):
        return _pandas_csv_text(frame, header)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=os.linesep)  # to_csv's defaults
    if header:
        writer.writerow(names)
    writer.writerows(zip(*cells))
    return buf.getvalue()


def _pandas_csv_text(frame: pd.DataFrame, header: bool = True) -> str:
    """`_csv_text` by pandas alone: what any frame the fast path does not take gets."""
    buf = io.StringIO()
    frame = frame.copy()
    for column in frame.columns:  # whole-number floats (counts with a gap) as integers
        values = frame[column]
        if values.dtype.kind == "f" and values.notna().any() and \
                (values.dropna() % 1 == 0).all():
            frame[column] = values.astype("Int64")
    frame.to_csv(buf, index=False, header=header, float_format=FLOAT_FORMAT)
    return buf.getvalue()


_INT64_END = 2.0 ** 63  # whole floats from here on do not fit the integers they are written as


def _column_cells(column: pd.Series) -> list | None:
    """One column's CSV cells as `to_csv` gets them (the csv writer turns what is no
    string into one with `str`); None for a column left to `_pandas_csv_text`."""
    dtype = column.dtype
    if isinstance(dtype, pd.StringDtype):
        return column.to_numpy(dtype=object, na_value="").tolist()
    if not isinstance(dtype, np.dtype):
        return None
    values = column.to_numpy()
    if dtype in (np.float64, np.float32):
        return _float_cells(values)
    if dtype.kind in "iub":
        return values.tolist()
    if dtype.kind == "O":
        cells = values.tolist()
        for i in np.flatnonzero(pd.isna(values)).tolist():
            cells[i] = ""
        return cells
    return None


def _float_cells(values: np.ndarray) -> list | None:
    """Float cells: integers when every number of the column is whole, else
    `FLOAT_FORMAT`; empty for NaN. None when a whole number is past int64."""
    missing = np.isnan(values)
    present = values[~missing]
    if present.size and np.isfinite(present).all() and (present == np.floor(present)).all():
        if (present >= _INT64_END).any() or (present < -_INT64_END).any():
            return None
        cells = np.where(missing, 0, values).astype(np.int64).tolist()
    else:
        cells = [FLOAT_FORMAT % v for v in values.tolist()]
    for i in np.flatnonzero(missing).tolist():
        cells[i] = ""
    return cells


def tables_text(results: pd.DataFrame) -> dict[str, str]:
    """{"results.csv": …, "summary.csv": …} of these rows, as the sweep folder holds them.

    The page's downloads are built with this from the cell records: served from the
    folder, a sweep killed mid-way gave a summary.csv of the cells done when a worker
    last started or stopped (10 of 26).
    """
    return {"results.csv": _csv_text(results), "summary.csv": _csv_text(summary_frame(results))}


def write_tables(paths: SweepPaths, rows: list[dict] | None = None) -> list[dict]:
    """Rewrite results.csv and summary.csv atomically from the cell files; returns the rows."""
    rows = read_cells(paths) if rows is None else rows
    texts = tables_text(results_frame(paths, rows))
    atomic_write_text(paths.results_csv, texts["results.csv"])
    atomic_write_text(paths.summary_csv, texts["summary.csv"])
    return rows


def _csv_value(value: Any) -> Any:
    """What `_csv_text` writes for one value (floats as `FLOAT_FORMAT`, missing as empty)."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return FLOAT_FORMAT % value if isinstance(value, float) else value


def append_result(paths: SweepPaths, row: dict[str, Any]) -> None:
    """Add one finished cell to results.csv (header first if the file is new).

    Not fsynced and without pandas (a one-row DataFrame cost ~10 ms per cell): the cell
    file is the durable record, and the CSV is rebuilt from those files whenever a
    worker starts or stops.
    """
    new = not paths.results_csv.is_file()
    try:
        with open(paths.results_csv, "a", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator=os.linesep)  # the line ends of `_csv_text`
            if new:
                writer.writerow(RESULT_COLUMNS)
            writer.writerow([_csv_value(row.get(c)) for c in RESULT_COLUMNS])
    except OSError as exc:  # a full disk refuses the flush, which names no file
        raise name_the_file(exc, paths.results_csv)


def read_results_csv(paths: SweepPaths) -> pd.DataFrame:
    """results.csv as written (what a download gives): for tests and other tools."""
    with open(paths.results_csv, newline="", encoding="utf-8") as fh:
        return pd.DataFrame(list(csv.DictReader(fh)))


@dataclass
class SweepProgress:
    """What a live view needs, from status.json and the cell files only."""
    state: str
    message: str
    activity: str
    cells_done: int
    total_cells: int
    elapsed: float
    eta: float | None
    baseline_epochs: list[dict]
    unreadable: list[str] = field(default_factory=list)  # cells/*.json that are no record
    # seconds the step under way (a cell, or a baseline and its first cell) has run past
    # its estimate, once past `OVERDUE_GRACE_S`; `eta` then leaves that step out
    overdue: float = 0.0
    last_report: float | None = None  # `rundir.last_report`: where `elapsed` ends

    @property
    def fraction(self) -> float:
        return min(self.cells_done / self.total_cells, 1.0) if self.total_cells else 0.0


def _end_share(paths: SweepPaths) -> float | None:
    """The share of a sweep's cells that only evaluate (ratio 0 or 100 %, `is_end_ratio`),
    from config.json's ratios: every block of cells runs every ratio, so it is exact.
    None when the config cannot be read."""
    cfg = read_json(paths.config)
    ratios = cfg.get("ratios") if isinstance(cfg, dict) else None
    if not isinstance(ratios, list) or not ratios or not all(
            isinstance(r, (int, float)) and not isinstance(r, bool) for r in ratios):
        return None
    return sum(is_end_ratio(r) for r in ratios) / len(ratios)


def _split(cells: int, share: float | None) -> tuple[int, int]:
    """(cells that only evaluate, pruned cells) of `cells` at an end-ratio share."""
    end = round(cells * share) if share is not None else 0
    return end, cells - end


def _is_end_row(row: dict) -> bool:
    return is_end_ratio(float(row["ratio"]))


def _eta(rows: list[dict], total: int, groups: list[list], counts: Any,
         share: float | None) -> tuple[float, float] | None:
    """(seconds left, seconds of the step under way) without a pre-start estimate (a
    sweep started from the CLI): the cells still to run at the mean time of a finished
    cell of their kind (pruned, or ratio 0 / 100 %), plus a dense baseline for every
    group not begun, at the training time measured for its model. None until a pruned
    cell has finished: a ratio-0 cell (a few ms) says nothing of what fine-tuning costs.

    The step under way is the next cell at the mean price of the cells left, after its
    group's baseline when the group is not begun (`_current_group`, from the status'
    `group_cells`; without them, a cell alone).

    Dividing the time elapsed by the cells done instead counted the worker's start-up
    and the first baseline as the price of one cell: 74 minutes at cell 1 of 440 for a
    sweep that took 2.5.
    """
    timed = [r for r in rows if r.get("cell_seconds") is not None]
    if share is None:  # no config to tell the kinds apart: one price for every cell
        is_end = lambda r: False  # noqa: E731
    else:
        is_end = _is_end_row
    end = [float(r["cell_seconds"]) for r in timed if is_end(r)]
    pruned = [float(r["cell_seconds"]) for r in timed if not is_end(r)]
    left_end, left_pruned = _split(total, share)
    left_end = max(0, left_end - sum(map(is_end, rows)))
    left_pruned = max(0, left_pruned - sum(not is_end(r) for r in rows))
    if not timed or (left_pruned and not pruned):
        return None
    cells = left_pruned * (sum(pruned) / len(pruned) if pruned else 0.0)
    cells += left_end * (sum(end) / len(end) if end else 0.0)
    remaining = cells
    trained: dict[str, list[float]] = {}
    for r in rows:
        if not r.get("baseline_from_cache") and r.get("dense_train_seconds") is not None:
            trained.setdefault(r["model"], []).append(float(r["dense_train_seconds"]))
    begun = {_group_of(r) for r in rows}
    everything = [t for ts in trained.values() for t in ts]
    baselines = {}  # group → its baseline's price, for the groups not begun
    for g in groups:
        if tuple(g) not in begun:
            known = trained.get(g[0]) or everything
            baselines[tuple(g)] = sum(known) / len(known) if known else 0.0
    remaining += sum(baselines.values())
    step = cells / (left_end + left_pruned) if left_end + left_pruned else 0.0
    current = _current_group(rows, groups, counts)
    if current is not None:
        step += baselines.get(current, 0.0)
    return remaining, step


def _current_group(rows: list[dict], groups: list[list], counts: Any) -> tuple | None:
    """The group the worker is on: the first, in run order, with cells left (a worker
    runs the cells it has not finished in grid order, group by group). None when the
    status has no cell counts that fit its groups (older sweeps)."""
    if not (isinstance(counts, list) and len(counts) == len(groups)):
        return None
    done = Counter(_group_of(r) for r in rows)
    for g, n in zip(groups, counts):
        if isinstance(n, int) and done[tuple(g)] < n:
            return tuple(g)
    return None


def _group_of(row: dict) -> tuple:
    return (row.get("model"), row.get("dataset"), row.get("batch_size"), row.get("seed"))


def _dense_epochs(paths: SweepPaths) -> int | None:
    """config.json's dense epochs, or None when it has no such number."""
    epochs = read_record(paths.config).get("dense_epochs")
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0 \
        else None


def _baseline_epochs_now(epochs: list[dict], status: dict, dense_epochs: int | None
                         ) -> tuple[tuple, float, float] | None:
    """(group, seconds its finished epochs took, share of its dense training they are)
    of the baseline being trained in this session, from the epoch events; None when no
    epoch of this session is the last event's group's or the count is unknown."""
    started = status.get("started")
    if not dense_epochs or not _number(started) or not epochs:
        return None
    last = epochs[-1]
    group = last.get("group")
    if not (isinstance(group, list) and all(isinstance(g, (str, int, float)) for g in group)) \
            or not _number(last.get("time")) or last["time"] < started:
        return None  # a hand-edited line ([["mlp"], …] cannot key a group)
    mine = [e for e in epochs if e.get("group") == group and _number(e.get("time"))
            and e["time"] >= started and _number(e.get("seconds"))]
    return tuple(group), sum(float(e["seconds"]) for e in mine), min(len(mine) / dense_epochs, 1.0)


def _paced_eta(rows: list[dict], groups: list[list], counts: list[int],
               estimated: list[dict[str, float]], share: float | None,
               training: tuple[tuple, float, float] | None = None
               ) -> tuple[float, float]:
    """(seconds left, seconds of the step under way) from the pre-start estimate of each
    group's baseline and cells (`estimate.Estimate.groups`), scaled by how fast the work
    done so far ran against its estimate: the pruned cells and the dense baselines
    trained. Cells that only evaluate (ratio 0, 100 %) take milliseconds and are no
    measure of pace.

    The step under way is the next cell of the first group with cells left (the worker
    runs them in grid order, group by group), priced at the mean of that group's cells
    left, after the group's baseline when none of its cells is done.

    A mean over the finished cells priced a CNN's cells like the MLP cells that came
    first: 42 s left where 118 s were (reviewer, 286 cells of MLP then CNN). And a pace
    taken from a first, ratio-0 cell (17 ms against a group mean of 1.25 s, fine-tuning
    included) said "1 s" left of a sweep that then ran two minutes.

    A finished pruned cell is weighed against its own type's estimate (`type_cell_s`),
    not the group's mean: the neuron-pruned cells a group runs first fine-tune faster
    than its masked ones, so against the mean they read as a fast pace, which the
    masked cells then took back (Remaining 23 s → 28 s → 25 s, held for 10 s, at an
    honest start of 34 s).

    `training` (`_baseline_epochs_now`): the epochs of the baseline being trained, as far
    as they go, weigh in too. A baseline trained three times slower than estimated (in
    a browser on a busy machine) counted down to "1 s" and stood there for its last 30
    epochs, the progress line beside it saying "epoch 30/60".
    """
    index = {tuple(g): i for i, g in enumerate(groups)}
    done_end, done_pruned = Counter(), Counter()
    done_price: Counter = Counter()  # group → estimated seconds of its finished pruned cells
    real = expected = 0.0
    for r in rows:
        i = index.get(_group_of(r))
        if i is None:  # a cell of a group the status does not list (an edited grid)
            continue
        if _is_end_row(r):
            done_end[i] += 1
            continue
        done_pruned[i] += 1
        price = _pruned_price(estimated[i], r)
        done_price[i] += price
        if r.get("cell_seconds") is not None:
            real += float(r["cell_seconds"])
            expected += price
    # group → (the dense training time its cells record, once per group; the share of
    # its estimated training that time is: all of it, or the epochs so far of the one
    # training now)
    trained: dict[int, tuple[float, float]] = {}
    for r in rows:
        i = index.get(_group_of(r))
        if i is not None and not r.get("baseline_from_cache") and \
                r.get("dense_train_seconds") is not None:
            trained[i] = float(r["dense_train_seconds"]), 1.0
    if training is not None:
        group, seconds, part = training
        i = index.get(group)
        if i is not None and i not in trained and not done_end[i] and not done_pruned[i]:
            trained[i] = seconds, part
    for i, (seconds, part) in trained.items():
        if estimated[i]["train_s"] > 0:  # estimated as trained, not taken from the cache
            real += seconds
            expected += estimated[i]["train_s"] * part
    pace = real / expected if real > 0 and expected > 0 else 1.0
    remaining = 0.0
    step = None
    for i, (n, e) in enumerate(zip(counts, estimated)):
        if share is None or e["end_cell_s"] == e["pruned_cell_s"]:  # one price per cell
            left = max(0, n - done_end[i] - done_pruned[i])
            cells = left * e["cell_s"]
        else:
            n_end, n_pruned = _split(n, share)
            left_end, left_pruned = max(0, n_end - done_end[i]), max(0, n_pruned - done_pruned[i])
            left = left_end + left_pruned
            # the group's pruned cells as estimated, less those done at their own type's
            # price: the cells left are of the types still to run
            pruned = max(0.0, n_pruned * e["pruned_cell_s"] - done_price[i]) \
                if left_pruned else 0.0
            cells = left_end * e["end_cell_s"] + pruned
        baseline = e["baseline_s"] if not done_end[i] and not done_pruned[i] else 0.0
        remaining += cells + baseline
        if step is None and left:
            step = baseline + cells / left
    return remaining * pace, (step or 0.0) * pace


def _pruned_price(estimate: dict, row: dict) -> float:
    """A finished pruned cell's estimated seconds: its type's mean in the group, or the
    group's mean when the estimate has none for its type."""
    return float(estimate.get("type_cell_s", {}).get(row.get("type"),
                                                      estimate["pruned_cell_s"]))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _group_estimates(status: dict) -> list[dict] | None:
    """status.json's pre-start estimate per group, or None when it has none that fits its
    groups. Sweeps of older versions kept `[baseline s, mean cell s]` per group: read as
    every cell at the mean and the baseline no measure of pace (not known as trained)."""
    groups, counts, est = (status.get(k) for k in ("groups", "group_cells", "group_estimates"))
    if not (isinstance(groups, list) and isinstance(counts, list) and isinstance(est, list)
            and len(groups) == len(counts) == len(est)
            and all(isinstance(n, int) for n in counts)):
        return None
    out = []
    for e in est:
        if isinstance(e, list) and len(e) == 2 and all(map(_number, e)):
            out.append({"baseline_s": e[0], "train_s": 0.0, "cell_s": e[1],
                        "end_cell_s": e[1], "pruned_cell_s": e[1]})
        elif isinstance(e, dict) and all(_number(e.get(k)) for k in GROUP_TIME_KEYS):
            out.append({k: float(e[k]) for k in GROUP_TIME_KEYS})
            by_type = e.get("type_cell_s")  # optional: older sweeps have none
            if isinstance(by_type, dict) and all(
                    isinstance(t, str) and _number(v) for t, v in by_type.items()):
                out[-1]["type_cell_s"] = {t: float(v) for t, v in by_type.items()}
        else:
            return None
    return out


GROUP_TIME_KEYS = ("baseline_s", "train_s", "cell_s", "end_cell_s", "pruned_cell_s")


# A step past its estimate by less than this is not called overdue: estimates are
# rough, and the page polls every 2 s, so a note for a second or two would flicker on
# and off between ordinary cells.
OVERDUE_GRACE_S = 5.0
# The least remaining time shown while cells are left: "0 s" read as done.
MIN_REMAINING_S = 1.0


def progress(paths: SweepPaths, now: float | None = None) -> SweepProgress:
    """The sweep's state, counts and times as of `now` (default: the clock).

    The remaining time counts down between finished cells (`count_down`): the estimate
    is made when a cell record lands, and the time since then is spent on the step
    under way.
    """
    now = time.time() if now is None else now
    status = read_status(paths)
    state = status.get("state", "unknown")
    rows, unreadable = scan_cells(paths)
    done = len(rows)
    total = int(status.get("total_cells") or 0)
    elapsed = elapsed_seconds(status, now)
    eta, overdue = None, 0.0
    epochs = [e for e in read_events(paths) if e.get("type") == "epoch"]
    if state == "running" and total:
        estimated = _group_estimates(status)
        share = _end_share(paths)
        groups = status.get("groups") or []
        # with the pre-start estimate, from the first moment (at its own pace until work
        # is done): "—" stood through a first baseline's minutes of training
        found = _paced_eta(rows, groups, status["group_cells"], estimated, share,
                           _baseline_epochs_now(epochs, status, _dense_epochs(paths))) \
            if estimated is not None else \
            _eta(rows, total, groups, status.get("group_cells"), share) if done else None
        if found is not None:
            eta, overdue = count_down(*found, now - _last_progress(paths, status),
                                      work_left=done < total)
    # what runs now: nothing once the worker is gone (a killed one left its last report)
    activity = status.get("activity", "") if state in LIVE_STATES else ""
    return SweepProgress(state, status.get("message", ""), activity, done, total, elapsed, eta,
                         epochs, unreadable, overdue, last_report(status))


def _last_progress(paths: SweepPaths, status: dict) -> float:
    """When the work under way began: the last cell record's landing (a record lands by
    a rename into cells/, which sets the folder's mtime: one stat, not one per record),
    or this session's start when no record landed since (a resumed sweep's records are
    older). A foreign file dropped into cells/ also sets the mtime: the step under way
    then counts from it, which at worst shows more time left than there is."""
    started = status.get("started")
    begun = float(started) if _number(started) else 0.0
    try:
        landed = paths.cells_dir.stat().st_mtime
    except OSError:
        landed = 0.0
    return max(begun, landed)


def count_down(left: float, step: float, since: float, work_left: bool = True
               ) -> tuple[float, float]:
    """(seconds left, seconds overdue) `since` seconds after an estimate of `left`
    seconds, `step` of them for the step then begun (a cell, or a baseline and its cell).

    The estimate changes only when a cell finishes, so on a long cell or a baseline's
    training (minutes) the page showed the same "3 min" for minutes and then jumped.
    The time since is spent on the step under way, at most its estimate: a step that
    runs longer does not count down into the work after it. Past its estimate by more
    than `OVERDUE_GRACE_S`, the overrun is reported (`overdue`) and the time left is the
    work after the step — how long the step itself still takes is then unknown, which
    the page says instead of showing "0 s" for as long as the step runs. While cells
    are left (`work_left`) and none is overdue, never less than `MIN_REMAINING_S`.
    """
    spent = max(0.0, since)
    after = max(0.0, left - step)
    eta = after + max(0.0, step - spent)
    if not work_left:  # every cell is done: the worker is writing the tables
        return eta, 0.0
    if spent - step > OVERDUE_GRACE_S:
        return eta, spent - step
    return max(eta, MIN_REMAINING_S), 0.0


def untuned_dense_note(paths: SweepPaths) -> str | None:
    """What the 0 % points are when the pruned cells were fine-tuned, or None.

    A ratio-0 cell is the dense baseline as trained (the issue's check: its accuracy
    equals the baseline's); a pruned cell trains `finetune_epochs` more. With 2 of them,
    removing one neuron of a 3-epoch MLP "gained" 1.7 points on the chart — training,
    not pruning."""
    config = read_record(paths.config)
    epochs = config.get("finetune_epochs")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        return None
    ratios = config.get("ratios")
    if not isinstance(ratios, list) or 0 not in ratios:  # no 0 % point to explain
        return None
    # a 100 % cell is a dead model, never fine-tuned (the note said every pruned point was)
    pruned = "every pruned point below 100 %" if any(
        isinstance(r, (int, float)) and r >= 1 for r in ratios) else "every pruned point"
    return (f"0 % is the dense model as trained; {pruned} was then fine-tuned "
            f"{counted(epochs, 'more epoch')}, so a lightly pruned model "
            f"can score above it from the extra training alone.")


def speedups(results: pd.DataFrame) -> pd.DataFrame:
    """Per model, dataset, pruning type and ratio: measured speed-up, MAC share and
    non-zero share.

    Over the finished cells (dead models excluded; batch sizes and seeds pooled, as they
    change neither the architecture nor the latency batch): `mac_share` = MACs / dense
    MACs and `nonzero_share` = non-zero parameters / the dense model's parameters (so
    removed neurons count as removed, as masked weights do) are means over the cells.
    `speedup` = dense latency / latency is a mean over the row's distinct timings, with
    its min and max: cells that share an architecture (criteria giving the same widths,
    other batch sizes and seeds) or a mask type share one timing (`sweep._latency_key`),
    and a mean over cells counted that one measurement once per cell — twelve cells
    showed "1.52–1.52×" as if they were twelve measurements. `timings` counts the
    distinct timings, `cells` every cell of the row (timed or not). Models are never
    pooled: a half-width MLP and a CNN whose convs keep their size share no meaningful
    mean. This is what the page quotes next to the charts, so the point that masks buy
    sparsity but no speed is made with this sweep's own measurements.
    """
    ok = results[(results["status"] == "ok") & (results["ratio"] > 0)].copy()
    keys = ["model", "dataset", "type", "ratio"]
    cols = [*keys, "speedup", "speedup_min", "speedup_max", "timings", "mac_share",
            "nonzero_share", "cells"]
    if ok.empty:
        return pd.DataFrame(columns=cols)
    for c in ("latency_ms", "dense_latency_ms", "macs", "dense_macs", "nonzero_params",
              "dense_params"):
        ok[c] = pd.to_numeric(ok[c], errors="coerce")
    ok["mac_share"] = ok["macs"] / ok["dense_macs"]
    ok["nonzero_share"] = ok["nonzero_params"] / ok["dense_params"]
    out = ok.groupby(keys, as_index=False).agg(
        mac_share=("mac_share", "mean"), nonzero_share=("nonzero_share", "mean"),
        cells=("cell_id", "count"))
    # one row per measurement: a timing is its (dense, pruned) pair, which every cell
    # sharing it carries unchanged
    timed = ok.dropna(subset=["latency_ms", "dense_latency_ms"]).drop_duplicates(
        [*keys, "dense_latency_ms", "latency_ms"])
    timed = timed.assign(speedup=timed["dense_latency_ms"] / timed["latency_ms"])
    speed = timed.groupby(keys, as_index=False).agg(
        speedup=("speedup", "mean"), speedup_min=("speedup", "min"),
        speedup_max=("speedup", "max"), timings=("speedup", "count"))
    out = out.merge(speed, on=keys, how="left")
    out["timings"] = out["timings"].fillna(0).astype(int)
    return out[cols]


def speed_note(types: typing.Iterable[str], models: typing.Iterable[str]) -> str:
    """The page's note beside the speed-up table: masks buy sparsity, removing units
    buys speed — said of the types and models this sweep has.

    One text for every sweep named unstructured pruning in sweeps without it, and said
    neuron pruning makes a model "smaller and faster" beside a CNN it made 1.02× faster:
    on a conv net it removes fully connected neurons only, and the convolutions stay.
    `types` and `models` are those of the results shown: the types left out are named
    without saying they are not in the sweep — a running sweep said weight pruning was
    "not in this sweep" before its first weight cell had finished.
    """
    types, models = set(types), set(models)
    masks = [t for t in PRUNING_TYPES if t in types and not PRUNING_TYPES[t].structural]
    units = [t for t in PRUNING_TYPES if t in types and PRUNING_TYPES[t].structural]
    if masks:
        one = len(masks) == 1
        text = (f"**Masks are not speed-ups.** {_joined(masks)} pruning "
                f"{'zeroes' if one else 'zero'} weights but {'keeps' if one else 'keep'} every "
                "multiplication: non-zero parameters fall, MACs and latency do not.")
    else:
        text = ("**Removing units is what buys speed.** Weight and unstructured pruning "
                "(masks) zero weights but keep every multiplication.")
    if units:
        removed = " and ".join(_REMOVES.get(u, "units") for u in units)
        text += (f" {_joined(units)} pruning remove{'s' if len(units) == 1 else ''} "
                 f"{removed}: the model gets smaller and faster.")
        if "neuron" in units and models - FULLY_CONNECTED:
            text += (" On a conv net, neuron pruning removes fully connected neurons only: "
                     "the convolutions, most of its compute, stay (see MACs).")
    else:
        text += " Only neuron and structured pruning, which remove units, make a model faster."
    return text


_REMOVES = {"neuron": "neurons", "structured": "conv filters"}


def _joined(types: list[str]) -> str:
    """["weight", "unstructured"] → "Weight and unstructured"."""
    return " and ".join(t.capitalize() if i == 0 else t for i, t in enumerate(types))


# A dense model's own timings in one sweep further apart than this: the CPU was shared.
UNSTEADY_TIMING = 1.5

# A masked model computes the dense model's shapes, so it runs at the dense speed: timed
# further from 1× than this (either way), the CPU was busy while timing. At 1.25 a masked
# CNN's 1.21× stood unflagged under the note that masks are no speed-up. Measured on a
# lightly shared 2-core machine (Digits MLP and CNN, five sweeps): 0.98-1.11×.
MASK_SPEEDUP_TOLERANCE = 1.15


# The table's dense latency (0 % rows) and the dense timings the speed-ups are paired
# with further apart than this: the page says why the table's latencies give other ratios.
DENSE_TIMING_GAP = 1.1


def dense_latency_gaps(results: pd.DataFrame) -> pd.DataFrame:
    """Per model and dataset: the dense latency the table's 0 % rows show (their mean)
    beside the range of dense timings the speed-ups were paired with, where the two are
    further apart than `DENSE_TIMING_GAP`.

    A speed-up divides the dense timing taken beside the pruned model by the pruned
    one's; the 0 % row carries the group's first dense timing, taken at another moment
    (after a resume, in another process). A reviewer read 0.434 and 0.376 ms off the
    table (1.16×) beside a speed-up of 1.38×, paired with 0.517 ms, and nothing said why.
    """
    cols = ["model", "dataset", "table_ms", "paired_ms_min", "paired_ms_max"]
    ok = results[results["status"] == "ok"]
    base = ok[ok["ratio"] == 0].assign(
        table_ms=lambda f: pd.to_numeric(f["latency_ms"], errors="coerce")
    ).dropna(subset=["table_ms"])
    paired = dense_timing_spread(results)
    if base.empty or paired.empty:
        return pd.DataFrame(columns=cols)
    table = base.groupby(["model", "dataset"], as_index=False).agg(table_ms=("table_ms", "mean"))
    both = table.merge(paired, on=["model", "dataset"])
    both = both.rename(columns={"dense_ms_min": "paired_ms_min", "dense_ms_max": "paired_ms_max"})
    far = (both["paired_ms_max"] > both["table_ms"] * DENSE_TIMING_GAP) | (
        both["paired_ms_min"] < both["table_ms"] / DENSE_TIMING_GAP)
    return both[far][cols].reset_index(drop=True)


def mask_timing_departures(results: pd.DataFrame) -> pd.DataFrame:
    """The `speedups` rows of masked models (weight, unstructured) further from 1× than
    `MASK_SPEEDUP_TOLERANCE`: the sweep's own control for its timings.

    A dense model timed once per sweep shows no spread (`dense_timing_spread`), yet a
    busy CPU timed a 50 %-masked MLP at 2.82× its dense model, printed right under the
    note that masks are no speed-up.
    """
    rows = speedups(results)
    masked = rows["type"].map(lambda t: t in PRUNING_TYPES and not PRUNING_TYPES[t].structural)
    off = rows[masked.astype(bool) & ((rows["speedup"] > MASK_SPEEDUP_TOLERANCE)
                                      | (rows["speedup"] < 1 / MASK_SPEEDUP_TOLERANCE))]
    return off.reset_index(drop=True)


def slower_pruned_models(results: pd.DataFrame) -> pd.DataFrame:
    """The `speedups` rows of models pruned by removing units (neuron, structured) that
    compute less than their dense model (fewer MACs) yet were timed slower than it by
    more than `MASK_SPEEDUP_TOLERANCE`: the sweep's other control for its timings.

    Removing units does not slow a model down (a Digits CNN with 10 % of its neurons or
    filters removed: 0.97-1.03× the dense time, timed alone), yet on a loaded machine the
    page showed a CNN's neuron pruning at 0.85-0.94× across 10-90 %, under the note that
    removing units makes a model faster, with nothing to say the timings were rough.
    """
    rows = speedups(results)
    units = rows["type"].map(lambda t: t in PRUNING_TYPES and PRUNING_TYPES[t].structural)
    slower = units.astype(bool) & (rows["mac_share"] < 1) & (
        rows["speedup"] < 1 / MASK_SPEEDUP_TOLERANCE)
    return rows[slower].reset_index(drop=True)


def dense_timing_spread(results: pd.DataFrame) -> pd.DataFrame:
    """Per model and dataset: the fastest and slowest timing of the dense model beside
    the pruned models of this sweep (each is timed with a fresh dense timing) and their
    ratio.

    The dense model does not change, so its timings differ only by what else the CPU was
    doing. A spread past `UNSTEADY_TIMING` (a CNN's 2.43 and 9.81 ms on a machine shared
    with other jobs) made a 10 %-smaller CNN "6.58× faster": the page says so instead of
    letting such speed-ups pass as measurements.
    """
    cols = ["model", "dataset", "dense_ms_min", "dense_ms_max", "spread"]
    # the paired timings only: a ratio-0 cell carries the baseline's own one-off timing,
    # which no speed-up is computed from
    timed = results[(results["status"] == "ok") & (results["ratio"] > 0)].copy()
    timed["dense_latency_ms"] = pd.to_numeric(timed["dense_latency_ms"], errors="coerce")
    timed = timed.dropna(subset=["dense_latency_ms"])
    if timed.empty:
        return pd.DataFrame(columns=cols)
    out = timed.groupby(["model", "dataset"], as_index=False).agg(
        dense_ms_min=("dense_latency_ms", "min"), dense_ms_max=("dense_latency_ms", "max"))
    out["spread"] = out["dense_ms_max"] / out["dense_ms_min"]
    return out[cols]
