"""results.csv and summary.csv, rewritten at the end of every Compare sweep, are the
bytes pandas wrote before the writers were made cheaper (csv module from plain lists, one
grouping for the summary, rows sorted before the frame is built). The pandas
implementation they replaced is kept below as the reference, and the frames the Compare
page reads (`results_frame`, `summary_frame`) must equal its frames exactly."""
from __future__ import annotations

import copy
import csv
import io
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from explorer_core.rundir import SweepPaths
from explorer_core.sweep import SweepConfig, create_sweep, execute
from explorer_core.sweep_results import (FLOAT_FORMAT, GROUP_COLUMNS, KEY_COLUMNS,
                                         RESULT_COLUMNS, SUMMARY_METRICS, read_cells,
                                         results_frame, summary_frame, tables_text,
                                         write_tables)


# --- the reference: sweep_results' pandas implementation before it was made cheaper ----

def ref_results_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    if not frame.empty:
        frame = frame.sort_values(["model", "dataset", "batch_size", "seed", "type",
                                  "criterion", "ratio"], kind="stable").reset_index(drop=True)
    return frame


def ref_summary_frame(results: pd.DataFrame) -> pd.DataFrame:
    cols = [*GROUP_COLUMNS, "n", "status", *[f"{m}_{s}" for m in SUMMARY_METRICS
                                              for s in ("mean", "std")]]
    if results.empty:
        return pd.DataFrame(columns=cols)
    numeric = results[GROUP_COLUMNS + SUMMARY_METRICS].copy()
    for m in SUMMARY_METRICS:
        numeric[m] = pd.to_numeric(numeric[m], errors="coerce")
    grouped = numeric.groupby(GROUP_COLUMNS, sort=False, dropna=False)
    stats = grouped[SUMMARY_METRICS].agg(["mean", "std"])
    stats.columns = [f"{m}_{s}" for m, s in stats.columns]
    stats["n"] = grouped["test_acc"].count()
    rank = {"ok": 0, "dead": 1, "failed": 2}
    worst = results.groupby(GROUP_COLUMNS, sort=False, dropna=False)["status"].agg(
        lambda s: max(s, key=lambda v: rank.get(v, 3)))
    stats["status"] = worst
    return stats.reset_index()[cols]


def ref_csv_text(frame: pd.DataFrame) -> str:
    buf = io.StringIO()
    frame = frame.copy()
    for column in frame.columns:
        values = frame[column]
        if values.dtype.kind == "f" and values.notna().any() and \
                (values.dropna() % 1 == 0).all():
            frame[column] = values.astype("Int64")
    frame.to_csv(buf, index=False, float_format=FLOAT_FORMAT)
    return buf.getvalue()


def ref_tables(rows: list[dict]) -> dict[str, str]:
    results = ref_results_frame(rows)
    return {"results.csv": ref_csv_text(results),
            "summary.csv": ref_csv_text(ref_summary_frame(results))}


# --- cell rows -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_rows(tmp_path_factory) -> list[dict]:
    """A tiny real sweep on Digits: two seeds, a dead model (100 % of neurons), latency
    timed, so the records are what a worker writes."""
    base = tmp_path_factory.mktemp("tables")
    cfg = SweepConfig(name="tables", models=["mlp"], datasets=["digits"], batch_sizes=[32],
                      types=["neuron", "weight"], criteria=["l1", "magnitude"],
                      ratios=[0.0, 0.5, 1.0], repeats=2, dense_epochs=1, mlp_hidden=[32, 16],
                      latency_repeats=2, latency_batch=16, save_checkpoints=False)
    paths = create_sweep(cfg, base / "sweeps")
    assert execute(paths, cache_root=base / "cache")["state"] == "finished"
    rows = read_cells(paths)
    assert {r["status"] for r in rows} == {"ok", "dead"} and len(rows) == 12
    return rows


HUGE_PARAMS = 2_241_546          # written as 2.24155e+06 with six digits
HUGE_FLOPS = 3_328_997_376       # ten digits: the most "%.10g" writes without an exponent
HUGER_FLOPS = 33_289_973_760     # eleven: an exponent unless written as an integer


def synthetic_rows(real: list[dict], seed: int = 0) -> list[dict]:
    """Many grid points of three repeats from the real records: failed cells (no
    numbers), counts in the millions and billions with gaps, NaN and missing latencies,
    a metric no cell measured, metrics without gaps beside ones with, notes the CSV
    must quote, ties on every key, shuffled."""
    rnd = random.Random(seed)
    rng = np.random.default_rng(seed)
    rows = []
    for point in range(60):
        template = real[point % len(real)]
        for s in range(3):
            r = copy.deepcopy(template)
            r.update(seed=s, ratio=round(point / 60, 4), criterion=f"c{point % 7}",
                     cell_id=f"p{point}-s{s}", test_loss=float(rng.random() * 3),
                     test_acc=float(rng.random() * 100), peak_mb=None,
                     # timings every repeat has (no gaps), each seed its own
                     dense_train_seconds=float(rng.random()),
                     finetune_seconds=float(rng.random() / 7),
                     latency_ms=[float("nan"), None, float(rng.random())][(point + s) % 3],
                     params=HUGE_PARAMS + point, nonzero_params=HUGE_PARAMS,
                     train_flops=HUGER_FLOPS if point % 2 else HUGE_FLOPS)
            if point % 11 == 3 and s == 1:  # a failed repeat: no numbers, a quoted note
                r.update(status="failed", note='RuntimeError: shape "a, b"\nmismatch',
                         **{m: None for m in ("test_acc", "test_loss", "params", "macs",
                                              "nonzero_params", "train_flops",
                                              "sparsity", "latency_ms")})
            rows.append(r)
    rows.append(dict(copy.deepcopy(rows[0]), cell_id="tie"))  # every key equal to another
    rnd.shuffle(rows)
    return rows


def sweep_paths(tmp_path: Path) -> SweepPaths:
    paths = SweepPaths(tmp_path / "sweep")
    paths.root.mkdir()
    return paths


# --- tests ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["real", "synthetic", "first cells", "none"])
def test_written_tables_are_the_bytes_the_pandas_writer_gave(real_rows, tmp_path, kind):
    rows = {"real": real_rows, "synthetic": synthetic_rows(real_rows),
            "first cells": real_rows[:1], "none": []}[kind]
    paths = sweep_paths(tmp_path)
    assert write_tables(paths, rows) is rows
    want = ref_tables(rows)
    assert paths.results_csv.read_bytes() == want["results.csv"].encode("utf-8")
    assert paths.summary_csv.read_bytes() == want["summary.csv"].encode("utf-8")
    assert tables_text(results_frame(paths, rows)) == want


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_frames_the_page_reads_equal_the_reference_exactly(real_rows, seed):
    rows = synthetic_rows(real_rows, seed) + real_rows
    got, want = results_frame(None, rows), ref_results_frame(rows)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    pd.testing.assert_frame_equal(summary_frame(got), ref_summary_frame(want),
                                  check_exact=True)
    # the repeats of each grid point side by side: pandas 3 sums such groups of a
    # NaN-free column with np.add.reduceat and of a column with gaps with a compensated
    # sum, so every metric in one `mean()` put some means an ulp off their own
    by_point = want.sort_values(GROUP_COLUMNS, kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(summary_frame(by_point), ref_summary_frame(by_point),
                                  check_exact=True)


def test_counts_are_integers_missing_values_empty_and_the_rest_ten_digits(real_rows, tmp_path):
    rows = synthetic_rows(real_rows)
    paths = sweep_paths(tmp_path)
    write_tables(paths, rows)
    with open(paths.results_csv, newline="", encoding="utf-8") as fh:
        written = {r["cell_id"]: r for r in csv.DictReader(fh)}
    assert len(written) == len(rows)
    assert not any(c == "nan" or c.endswith(".0") for r in written.values() for c in r.values())
    for row in rows:
        line = written[row["cell_id"]]
        for column in ("params", "nonzero_params", "train_flops", "dense_params"):
            value = row[column]
            assert line[column] == ("" if value is None else str(int(value)))
        latency = row["latency_ms"]
        assert line["latency_ms"] == ("" if latency is None or math.isnan(latency)
                                      else FLOAT_FORMAT % latency)
        assert line["peak_mb"] == "" and line["note"] == row["note"]
        assert line["test_acc"] == ("" if row["test_acc"] is None
                                    else FLOAT_FORMAT % row["test_acc"])
    with open(paths.summary_csv, newline="", encoding="utf-8") as fh:
        summary = list(csv.DictReader(fh))
    cells = [c for line in summary for c in line.values()]
    assert "nan" not in cells and not any(c.endswith(".0") for c in cells)
    flops = {line["train_flops_mean"] for line in summary}
    assert {str(HUGE_FLOPS), str(HUGER_FLOPS)} <= flops
    assert {line["nonzero_params_mean"] for line in summary} == {str(HUGE_PARAMS)}
    assert {line["status"] for line in summary} == {"ok", "dead", "failed"}


def test_rows_sort_by_their_keys_stably_whatever_their_order(real_rows):
    rows = synthetic_rows(real_rows, seed=3)
    frame = results_frame(None, rows)
    keys = list(frame[KEY_COLUMNS].itertuples(index=False, name=None))
    assert keys == sorted(keys)
    tied = ("tie", "p0-s0")  # equal keys: they keep the order they came in
    assert [c for c in frame["cell_id"] if c in tied] == [
        r["cell_id"] for r in rows if r["cell_id"] in tied]


@pytest.mark.parametrize("edit", [
    {"criterion": None}, {"ratio": float("nan")}, {"seed": True}, {"ratio": 0},
    {"model": "MLP-é"}, {"status": "unheard-of"}, {"status": None}])
def test_keys_and_statuses_no_cell_record_has_give_the_reference_too(real_rows, edit):
    """Hand-made rows (what `is_cell_record` refuses, or a frame built elsewhere) take
    pandas' own sort and the per-group Python `max` of the statuses."""
    rows = synthetic_rows(real_rows, seed=4)
    for row in rows[::5]:
        row.update(edit)
    got, want = results_frame(None, rows), ref_results_frame(rows)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    pd.testing.assert_frame_equal(summary_frame(got), ref_summary_frame(want),
                                  check_exact=True)
    assert tables_text(got) == {"results.csv": ref_csv_text(want),
                                "summary.csv": ref_csv_text(ref_summary_frame(want))}


def test_frames_of_other_kinds_are_written_as_pandas_wrote_them(real_rows):
    frame = results_frame(None, synthetic_rows(real_rows, seed=5))
    variants = {
        "object": frame.astype(object),
        "nullable": frame.astype({"params": "Int64", "test_acc": "Float64"}),
        "dates": frame.assign(when=pd.Timestamp("2026-01-02 03:04:05")),
        "float32": frame.astype({"latency_ms": "float32", "macs": "float32"}),
        "a number label": pd.concat([frame, pd.DataFrame({7: 0.5}, index=frame.index)],
                                    axis=1),
        "no rows": frame.iloc[:0],
    }
    for name, variant in variants.items():
        want = ref_summary_frame(variant)
        pd.testing.assert_frame_equal(summary_frame(variant), want, check_exact=True)
        assert tables_text(variant) == {"results.csv": ref_csv_text(variant),
                                        "summary.csv": ref_csv_text(want)}, name


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_a_whole_number_past_int64_fails_as_it_did(real_rows):
    frame = results_frame(None, real_rows).assign(dense_macs=1e20)
    with pytest.raises(TypeError):
        ref_csv_text(frame)
    with pytest.raises(TypeError):
        tables_text(frame)


def test_lines_appended_while_a_sweep_runs_end_as_the_rewritten_tables_do(real_rows, tmp_path):
    """results.csv grows a line per cell and is rewritten when the worker stops: both
    must end lines alike (appended lines ended in \\r\\n, rewritten ones in \\n)."""
    from explorer_core.sweep_results import append_result, write_tables

    paths = sweep_paths(tmp_path)
    rows = sorted(real_rows, key=lambda r: r["cell_id"])[:3]
    for row in rows:
        append_result(paths, row)
    appended = paths.results_csv.read_bytes()
    write_tables(paths, rows)
    rewritten = paths.results_csv.read_bytes()
    assert appended.count(b"\r\n") == rewritten.count(b"\r\n")
    assert appended.count(b"\n") == rewritten.count(b"\n") == len(rows) + 1


# --- the allocator pandas' text columns get ---------------------------------------------

def _arrow_pool(env: dict[str, str]) -> str:
    code = ("import explorer_core, pandas, pyarrow; pandas.Series(['a']); "
            "print(pyarrow.default_memory_pool().backend_name)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parents[1], check=True)
    return out.stdout.strip()


def test_a_process_that_imports_the_core_gives_arrow_the_system_allocator():
    """mimalloc's start-up cost a worker 25-35 ms at its first text column; a user's own
    choice of allocator is kept."""
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    assert _arrow_pool(env) == "system"
    assert _arrow_pool({**env, "ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}) == "mimalloc"


@pytest.mark.parametrize("epochs, says", [(0, None), (1, "1 more epoch,"), (2, "2 more epochs,")])
def test_the_ratio_chart_says_what_the_0_percent_point_is_when_cells_were_fine_tuned(
        real_rows, tmp_path, epochs, says):
    """With 2 fine-tuning epochs, removing one neuron of a 3-epoch MLP scored 1.7 points
    above the 0 % point, drawn as a pruning gain: the dense model is not fine-tuned (its
    accuracy is the baseline's), which the chart and its PNG now say."""
    from explorer_core.charts import compare_ratio_chart
    from explorer_core.sweep_results import untuned_dense_note

    paths = create_sweep(SweepConfig(name="note", finetune_epochs=epochs), tmp_path)
    note = untuned_dense_note(paths)
    title = compare_ratio_chart(summary_frame(results_frame(paths, real_rows)), note
                                ).to_dict()["title"]
    subtitle = " ".join(title["subtitle"]) if isinstance(title, dict) else ""
    if says is None:
        assert note is None and subtitle == ""
        return
    # the default grid reaches 100 %: a dead model, which is not fine-tuned
    assert note.startswith("0 % is the dense model as trained; every pruned point below "
                           f"100 % was then fine-tuned {says}")
    assert subtitle == note and all(len(line) <= 70 for line in title["subtitle"])
    short = untuned_dense_note(create_sweep(SweepConfig(
        name="to-half", finetune_epochs=epochs, ratios=[0, 0.25, 0.5]), tmp_path))
    assert short.startswith(f"0 % is the dense model as trained; every pruned point was "
                            f"then fine-tuned {says}")
    # a grid without a 0 % ratio has no such point to explain
    assert untuned_dense_note(create_sweep(SweepConfig(
        name="no-zero", finetune_epochs=epochs, ratios=[0.25, 0.5]), tmp_path)) is None


def test_every_cell_failed_speaks_only_when_no_cell_answered():
    """The command line exits non-zero on this line: a sweep with some failed cells is
    still a result (a criterion that cannot handle a model), one with only failures
    answered nothing."""
    from explorer_core.sweep_results import every_cell_failed

    failed = [{"cell_id": f"c{i}", "status": "failed", "note": f"reason {i}"} for i in range(3)]
    assert every_cell_failed(failed) == "every cell failed (3 of 3); the first: reason 0"
    assert every_cell_failed(failed + [{"cell_id": "c9", "status": "ok"}]) is None
    assert every_cell_failed(failed[:1] + [{"cell_id": "d", "status": "dead"}]) is None
    assert every_cell_failed([]) is None
    assert every_cell_failed([{"cell_id": "x", "status": "failed"}]).endswith(
        "the first: no reason recorded")


def test_the_speed_note_speaks_of_the_types_and_models_the_sweep_has():
    """One text for every sweep named unstructured pruning in sweeps without it, and
    called neuron pruning "smaller and faster" beside a CNN it made 1.02× faster (it
    removes the CNN's fully connected neurons only)."""
    from explorer_core.sweep_results import speed_note

    note = speed_note(["neuron", "weight", "neuron"], ["mlp", "cnn"])
    assert note.startswith("**Masks are not speed-ups.** Weight pruning zeroes weights but "
                           "keeps every multiplication")
    assert "unstructured" not in note and "Neuron pruning removes neurons" in note
    assert "On a conv net, neuron pruning removes fully connected neurons only" in note
    assert "conv net" not in speed_note(["neuron", "weight"], ["mlp", "slp"])
    both = speed_note(["unstructured", "weight", "structured"], ["cnn"])
    assert "Weight and unstructured pruning zero weights but keep" in both
    assert "Structured pruning removes conv filters" in both and "conv net" not in both
    # no masks: they are still named as what buys no speed; no structural type: said too
    units = speed_note(["structured"], ["cnn"])
    assert "Masks are not" not in units and "pruning (masks) zero weights" in units
    masks = speed_note(["weight"], ["mlp"])
    assert "Only neuron and structured pruning, which remove units, make a model faster" in masks
    # said of the results shown, which need not be all of the sweep's types: a running
    # sweep said "(masks, not in this sweep)" before its first weight cell had finished
    assert "not in this sweep" not in units + masks
