"""Compare sweeps on Digits: the grid, sane numbers, kill → resume without recomputing,
dead and failed cells, repeats, the Pareto front, the CLI and the time estimate."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from explorer_core import jobs, pruning_types
from explorer_core.checkpoint import load_checkpoint
from explorer_core.data import load_dataset
from explorer_core.errors import ExplorerError
from explorer_core.masks import is_masked
from explorer_core.rundir import RunLock, SweepPaths, read_events, read_status, write_status
from explorer_core.sweep import SweepConfig, create_sweep, execute, load_config, plan
from explorer_core.sweep_results import (dense_timing_spread, finished_count, finished_ids,
                                         mask_timing_departures, slower_pruned_models,
                                         pareto_mask, read_cells,
                                         read_results_csv, results_frame, speedups,
                                         summary_frame)
from explorer_core.sweep_results import progress as sweep_progress
from explorer_core.training import evaluate

ROOT = Path(__file__).resolve().parent.parent


def grid(name: str, **over) -> SweepConfig:
    """The acceptance grid: MLP and CNN × 2 criteria × 2 ratios × 2 batch sizes."""
    base = dict(name=name, models=["mlp", "cnn"], datasets=["digits"], batch_sizes=[32, 128],
                types=["neuron", "structured", "weight"], criteria=["l1", "taylor", "magnitude"],
                ratios=[0.0, 0.5], dense_epochs=2, mlp_hidden=[32, 16], latency_repeats=3,
                latency_batch=16)
    base.update(over)
    return SweepConfig(**base)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Sweeps and one baseline cache shared by this module's sweeps (as in real use)."""
    base = tmp_path_factory.mktemp("sweeps")
    old = {k: os.environ.get(k) for k in ("EXPLORER_SWEEPS", "EXPLORER_CACHE")}
    os.environ["EXPLORER_SWEEPS"] = str(base / "sweeps")
    os.environ["EXPLORER_CACHE"] = str(base / "cache")
    yield base / "sweeps", base / "cache"
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def reference(roots):
    """One uninterrupted run of the acceptance grid."""
    paths = create_sweep(grid("reference"))
    status = execute(paths)
    assert status["state"] == "finished", status
    return paths


def test_plan_expands_the_grid_and_names_what_does_not_apply():
    p = plan(grid("p"))
    # per (model, batch): MLP neuron 2×2 + weight (magnitude) 2 = 6; CNN adds structured 2×2
    assert len(p.cells) == 2 * 6 + 2 * 10
    assert [(m, t) for m, t, _ in p.skipped] == [("mlp", "structured")]
    assert "no conv layer" in p.skipped[0][2]
    assert {c.criterion for c in p.cells if c.type == "weight"} == {"magnitude"}
    assert {c.criterion for c in p.cells if c.type != "weight"} == {"l1", "taylor"}
    assert len({c.id for c in p.cells}) == len(p.cells)
    assert p.groups == [("mlp", "digits", 32, 0), ("mlp", "digits", 128, 0),
                        ("cnn", "digits", 32, 0), ("cnn", "digits", 128, 0)]


def test_the_plan_asks_models_without_weights_what_applies(monkeypatch):
    """Which pruning types apply depends on the layer types: the plan's models are built
    on the meta device, and VGG16-BN's 1 s of weight initialisation is not paid each time
    the Compare form works its grid out. The answers are those of real models."""
    from explorer_core import models
    from explorer_core.pruning_types import PRUNING_TYPES

    built: list = []
    real = models.build_model
    monkeypatch.setattr(models, "build_model",
                        lambda spec, *a, **k: built.append(real(spec, *a, **k)) or built[-1])
    cfg = grid("meta", models=["mlp", "vgg16_bn", "resnet18"])
    p = plan(cfg)
    assert len(built) == 3 and all(next(m.parameters()).is_meta for m in built)
    assert [(m, t) for m, t, _ in p.skipped] == [("mlp", "structured"), ("resnet18", "neuron")]
    for arch, on_meta in (("mlp", built[0]), ("resnet18", built[2])):
        dense = real(cfg.spec(arch, "digits"))  # what a model with weights says
        assert {t: PRUNING_TYPES[t].applies(dense) for t in cfg.types} == \
            {t: PRUNING_TYPES[t].applies(on_meta) for t in cfg.types}


def test_the_grid_completes_with_the_expected_rows_and_sane_values(reference):
    df = results_frame(reference)
    assert len(df) == 32 and set(df["status"]) == {"ok"}
    assert sorted(df["cell_id"]) == sorted(c.id for c in plan(grid("reference")).cells)
    # ratio 0 is the baseline itself
    zero = df[df["ratio"] == 0]
    assert (zero["test_acc"] == zero["dense_test_acc"]).all()
    assert (zero["test_loss"] == zero["dense_test_loss"]).all()
    assert (zero["macs"] == zero["dense_macs"]).all()
    # the dense models learned (chance is 10 %)
    assert (df["dense_test_acc"] > 30).all()
    # structural pruning cuts MACs and parameters; masks cut non-zero weights only
    half = df[df["ratio"] == 0.5]
    structural = half[half["type"].isin(["neuron", "structured"])]
    assert (structural["macs"] < structural["dense_macs"]).all()
    assert (structural["params"] < structural["dense_params"]).all()
    assert (structural["nonzero_params"] < structural["dense_params"]).all()
    assert (zero["params"] == zero["dense_params"]).all()
    masked = half[half["type"] == "weight"]
    assert (masked["macs"] == masked["dense_macs"]).all()
    for _, row in masked.iterrows():
        dense_row = zero[(zero["model"] == row["model"]) & (zero["batch_size"] == row["batch_size"])
                         & (zero["type"] == "weight")].iloc[0]
        assert row["nonzero_params"] < 0.6 * dense_row["nonzero_params"]
        assert row["params"] == dense_row["params"]
        assert 0.45 < row["sparsity"] < 0.55
    # conv filters removed through dependency groups cut the CNN's work the most
    cnn = half[half["model"] == "cnn"].groupby("type")["macs"].first()
    assert cnn["structured"] < cnn["neuron"] < cnn["weight"]
    # measured, not copied: latency and peak memory are positive numbers
    assert (df["latency_ms"] > 0).all() and (df["peak_mb"] > 100).all()
    assert (df["dense_train_seconds"] > 0).all()
    # one baseline per (model, batch): trained for the first cell, then reused
    assert df.groupby(["model", "batch_size"])["dense_test_acc"].nunique().eq(1).all()


def test_speedups_pair_each_cell_with_the_dense_model_and_count_removed_units(reference):
    df = results_frame(reference)
    half = df[df["ratio"] == 0.5]
    # every pruned cell carries the dense timing it was interleaved with; the masked
    # models were timed in the neuron chunk's measurement (the first a group times), so
    # they carry its dense timing, not one of their own
    assert (half["dense_latency_ms"] > 0).all()
    for model in ("mlp", "cnn"):
        cells = half[half["model"] == model]
        masked = cells[cells["type"] == "weight"]
        assert masked["dense_latency_ms"].nunique() == 1
        assert masked["dense_latency_ms"].iloc[0] in set(
            cells[cells["type"] == "neuron"]["dense_latency_ms"])
    speed = speedups(df).set_index(["model", "type", "ratio"])
    # removing half the neurons leaves far fewer non-zero parameters than the dense model
    # had (dividing by the pruned model's own count said 100 %); masks leave about half
    for model in ("mlp", "cnn"):
        assert speed.loc[(model, "neuron", 0.5), "nonzero_share"] < 0.8
        assert 0.45 < speed.loc[(model, "weight", 0.5), "nonzero_share"] < 0.6
    # one row per model, its MAC share that of its own cells: the MLP and the CNN (whose
    # convs keep their size under neuron pruning) were pooled into one mean matching neither
    for model in ("mlp", "cnn"):
        cells = half[(half["model"] == model) & (half["type"] == "neuron")]
        assert speed.loc[(model, "neuron", 0.5), "mac_share"] == \
            pytest.approx((cells["macs"] / cells["dense_macs"]).mean())
        assert speed.loc[(model, "neuron", 0.5), "cells"] == len(cells)
    assert speed.loc[("mlp", "neuron", 0.5), "mac_share"] < \
        speed.loc[("cnn", "neuron", 0.5), "mac_share"]


def test_results_csv_is_the_table_and_summary_has_one_row_per_grid_point(reference):
    csv = read_results_csv(reference)
    assert len(csv) == 32 and list(csv.columns)[:8] == ["cell_id", "model", "dataset",
                                                         "batch_size", "seed", "type",
                                                         "criterion", "ratio"]
    summary = pd.read_csv(reference.summary_csv)
    assert len(summary) == 32 and (summary["n"] == 1).all()


def test_checkpoints_reload_with_the_accuracy_in_the_table(reference):
    from explorer_core.catalog import list_sweep_checkpoints

    df = results_frame(reference)
    row = df[(df["model"] == "cnn") & (df["type"] == "structured") & (df["ratio"] == 0.5)].iloc[0]
    ck = load_checkpoint(row["checkpoint"])
    data = load_dataset("digits")
    assert evaluate(ck.model, data.test)[1] == pytest.approx(row["test_acc"])
    assert ck.spec["channels"] == [8, 16]
    masked = df[(df["type"] == "weight") & (df["ratio"] == 0.5)].iloc[0]
    w = load_checkpoint(masked["checkpoint"]).model
    assert not any(k.endswith("_orig") or k.endswith("_mask") for k in w.state_dict())
    entries = [e for e in list_sweep_checkpoints() if e.group.startswith("reference")]
    assert len(entries) == 32 and all(e.test_acc is not None for e in entries)
    # named as the Compare page names the cell, not by its id (Inspect's picker, headings)
    l1 = df[(df["model"] == "cnn") & (df["type"] == "structured") & (df["ratio"] == 0.5)
            & (df["criterion"] == "l1") & (df["batch_size"] == 32)].iloc[0]
    entry = next(e for e in entries if e.path.stem == l1["cell_id"])
    assert entry.title == "CNN · Digits · batch 32 · seed 0 · Structured · L1 norm of weights · 50 %"
    # the picker's label without what every cell of the sweep shares (one dataset and
    # seed): whole, it was cut off in an 800-px window
    assert entry.label.startswith("CNN · batch 32 · Structured · L1 norm of weights · 50 %: ") \
        and l1["cell_id"] not in entry.label, entry.label


def test_a_killed_sweep_resumes_without_recomputing_finished_cells(roots, reference):
    paths = create_sweep(grid("killed"))
    jobs.launch(paths, "compare")
    deadline = time.time() + 120
    while len(finished_ids(paths)) < 4:
        assert time.time() < deadline, read_status(paths)
        assert read_status(paths).get("state") in ("queued", "running"), read_status(paths)
        time.sleep(0.02)
    jobs.kill(paths)
    time.sleep(0.5)
    assert read_status(paths)["state"] == "interrupted"
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in paths.cells_dir.glob("*.json")}
    assert 4 <= len(before) < 32
    cell_events_before = sum(e.get("type") == "cell" for e in read_events(paths))

    status = execute(paths)
    assert status["state"] == "finished", status
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in paths.cells_dir.glob("*.json")}
    assert len(after) == 32
    assert all(after[name] == before[name] for name in before)  # untouched, not recomputed
    new_cell_events = sum(e.get("type") == "cell" for e in read_events(paths)) - cell_events_before
    assert new_cell_events == 32 - len(before)
    # and the results are those of the uninterrupted sweep
    got = results_frame(paths).set_index("cell_id")
    want = results_frame(reference).set_index("cell_id")
    assert (got["test_acc"] == want["test_acc"]).all()
    assert (got["nonzero_params"] == want["nonzero_params"]).all()
    assert (got["macs"] == want["macs"]).all()
    assert len(read_results_csv(paths)) == 32  # the CSV was rebuilt whole


def test_remaining_time_counts_cells_and_baselines_not_the_start_up(roots, reference):
    """Six cells of the first group done at 0.5 s each after a 3 s baseline, while the
    worker took 100 s to start: 26 cells and three baselines remain."""
    paths = create_sweep(grid("eta"))
    first = [f for f in sorted(reference.cells_dir.glob("*.json"))
             if json.loads(f.read_text())["model"] == "mlp"
             and json.loads(f.read_text())["batch_size"] == 32]
    assert len(first) == 6
    paths.cells_dir.mkdir(parents=True, exist_ok=True)
    for f in first:
        row = json.loads(f.read_text())
        row.update(cell_seconds=0.5, dense_train_seconds=3.0, baseline_from_cache=False)
        paths.cell(row["cell_id"]).write_text(json.dumps(row))
    write_status(paths, "running", started=time.time() - 100.0, total_cells=32)
    with RunLock(paths):
        eta = _eta_as_landed(paths)
    assert eta == pytest.approx(26 * 0.5 + 3 * 3.0)


def test_remaining_time_prices_each_groups_cells_by_the_estimate_at_the_measured_pace(
        roots, reference):
    """The finished cells' mean priced the CNN's cells like the MLP cells that came first
    (42 s shown, 118 s left). With the pre-start estimate per group, six MLP cells that
    took twice their estimate leave each remaining group at twice its own estimate."""
    cfg = grid("eta-paced")
    groups = plan(cfg).groups  # mlp b32, mlp b128, cnn b32, cnn b128; 6, 6, 10, 10 cells
    estimated = [[3.0, 0.25], [2.0, 0.25], [8.0, 1.5], [6.0, 1.5]]
    paths = create_sweep(cfg, estimated=estimated)
    assert read_status(paths)["group_cells"] == [6, 6, 10, 10]
    first = [f for f in sorted(reference.cells_dir.glob("*.json"))
             if json.loads(f.read_text())["model"] == "mlp"
             and json.loads(f.read_text())["batch_size"] == 32]
    paths.cells_dir.mkdir(parents=True, exist_ok=True)
    for f in first:  # 0.5 s each against 0.25 s estimated: twice as slow
        row = json.loads(f.read_text())
        row.update(cell_seconds=0.5, dense_train_seconds=3.0, baseline_from_cache=False)
        paths.cell(row["cell_id"]).write_text(json.dumps(row))
    write_status(paths, "running", started=time.time() - 100.0)
    with RunLock(paths):
        eta = _eta_as_landed(paths)
    left = (6 * 0.25 + 2.0) + (10 * 1.5 + 8.0) + (10 * 1.5 + 6.0)
    assert [list(g) for g in groups] == read_status(paths)["groups"]
    assert eta == pytest.approx(2 * left)


def _tester_grid(name: str) -> SweepConfig:
    """The tester's sweep on Digits: MLP, neuron pruning by 3 criteria, 11 ratios, fine-tune
    2 epochs, 2 repeats: 66 cells in two groups of 33, each block in rising ratio."""
    return SweepConfig(name=name, types=["neuron"], criteria=["interval_adjoint", "l1", "random"],
                       ratios=[r / 10 for r in range(11)], finetune_epochs=2, repeats=2,
                       dense_epochs=3, mlp_hidden=[16, 8])


def _record(paths: SweepPaths, cell, seconds: float, dense_seconds: float) -> None:
    """A finished cell's record as the worker writes it (only what the progress reads),
    landing as the worker's does: written aside, then renamed into cells/."""
    from explorer_core.fileio import atomic_write_json

    paths.cells_dir.mkdir(parents=True, exist_ok=True)
    row = {f: getattr(cell, f) for f in ("model", "dataset", "batch_size", "seed", "type",
                                         "criterion", "ratio")}
    row.update(cell_id=cell.id, status="ok", cell_seconds=seconds,
               dense_train_seconds=dense_seconds, baseline_from_cache=False)
    atomic_write_json(paths.cell(cell.id), row)


def _landed(paths: SweepPaths) -> float:
    """When the last cell record landed (cells/' mtime): the moment the remaining time
    is estimated, before any of it is spent on the next step."""
    return paths.cells_dir.stat().st_mtime


def _eta_as_landed(paths: SweepPaths) -> float | None:
    """The remaining time the moment the last record landed (none of the time since is
    credited to the step under way)."""
    return sweep_progress(paths, now=_landed(paths)).eta


def test_remaining_time_after_a_first_ratio_0_cell_is_the_estimate_not_its_milliseconds(roots):
    """Started from the page (estimated ≈ 1 min 33 s), the sweep said "Remaining (est.) 1 s"
    after its first cell and ran over two minutes: that cell was a ratio-0 one (17 ms, an
    evaluation), and its time against the group's mean cell (1.25 s, fine-tuning
    included) made the pace 0.013. Cells that only evaluate are priced apart and are no
    measure of pace; the dense baseline trained just before is one."""
    cfg = _tester_grid("eta-ratio0")
    cells = plan(cfg).cells
    assert len(cells) == 66 and cells[0].ratio == 0 and 0 < cells[1].ratio < 1
    end_s, pruned_s, train_s, baseline_s = 0.04, 1.5, 2.5, 3.0
    # per group: 3 criteria × (0 % and 100 %) evaluate only, 3 × 9 ratios are pruned
    group = {"baseline_s": baseline_s, "train_s": train_s, "end_cell_s": end_s,
             "pruned_cell_s": pruned_s, "cell_s": (6 * end_s + 27 * pruned_s) / 33}
    paths = create_sweep(cfg, estimated=[group, dict(group)])
    write_status(paths, "running", started=time.time() - 20.0)
    left_after_first = (5 * end_s + 27 * pruned_s) + (baseline_s + 6 * end_s + 27 * pruned_s)
    started = read_status(paths)["started"]
    everything = 2 * (baseline_s + 6 * end_s + 27 * pruned_s)
    with RunLock(paths):
        # nothing finished: the estimate as made before the start, counting down through
        # the first baseline and cell (it said "—" for a baseline's minutes of training)
        assert sweep_progress(paths, now=started).eta == pytest.approx(everything)
        assert sweep_progress(paths, now=started + 2.0).eta == pytest.approx(everything - 2.0)
        _record(paths, cells[0], seconds=0.017, dense_seconds=train_s)  # baseline on time
        assert _eta_as_landed(paths) == pytest.approx(left_after_first)
        _record(paths, cells[0], seconds=0.017, dense_seconds=2 * train_s)  # twice as long
        assert _eta_as_landed(paths) == pytest.approx(2 * left_after_first)
        # the first pruned cell: twice its estimate, the baseline on time
        _record(paths, cells[0], seconds=0.017, dense_seconds=train_s)
        _record(paths, cells[1], seconds=2 * pruned_s, dense_seconds=train_s)
        pace = (train_s + 2 * pruned_s) / (train_s + pruned_s)
        assert _eta_as_landed(paths) == pytest.approx((left_after_first - pruned_s) * pace)


def test_remaining_time_without_an_estimate_waits_for_a_pruned_cell(roots):
    """A sweep started from the CLI has no pre-start estimate: the finished cells' mean
    priced 65 cells at a ratio-0 cell's 17 ms. Now "—" until a pruned cell has a time."""
    cfg = _tester_grid("eta-cli")
    cells = plan(cfg).cells
    paths = create_sweep(cfg)
    write_status(paths, "running", started=time.time() - 20.0)
    with RunLock(paths):
        _record(paths, cells[0], seconds=0.017, dense_seconds=2.5)
        assert _eta_as_landed(paths) is None
        _record(paths, cells[1], seconds=1.5, dense_seconds=2.5)
        # 12 of the 66 cells evaluate only (0 and 100 % of 6 blocks); one of each kind is
        # done, and the second group's baseline is still to train
        assert _eta_as_landed(paths) == pytest.approx(11 * 0.017 + 53 * 1.5 + 2.5)


def _tester_estimate(end_s: float, pruned_s: float, train_s: float, baseline_s: float
                     ) -> list[dict[str, float]]:
    """The pre-start estimate of `_tester_grid`'s two groups, as the page stores it."""
    group = {"baseline_s": baseline_s, "train_s": train_s, "end_cell_s": end_s,
             "pruned_cell_s": pruned_s, "cell_s": (6 * end_s + 27 * pruned_s) / 33}
    return [group, dict(group)]


def test_remaining_time_counts_down_while_a_cell_runs(roots):
    """QA: on a long cell the page showed the same "Remaining (est.) 3 min" for minutes,
    then jumped: the estimate changed only when a cell finished. The time since the last
    record landed is spent on the cell under way, up to its estimate; past it, the time
    left stays at the work after that cell and the overrun is reported, not hidden."""
    from explorer_core.sweep_results import OVERDUE_GRACE_S

    cfg = _tester_grid("eta-countdown")
    cells = plan(cfg).cells
    end_s, pruned_s, train_s, baseline_s = 0.04, 120.0, 300.0, 310.0
    paths = create_sweep(cfg, estimated=_tester_estimate(end_s, pruned_s, train_s, baseline_s))
    write_status(paths, "running", started=time.time() - 500.0)
    with RunLock(paths):
        _record(paths, cells[0], seconds=end_s, dense_seconds=train_s)  # all on time: pace 1
        _record(paths, cells[1], seconds=pruned_s, dense_seconds=train_s)
        landed = _landed(paths)

        def at(seconds: float):
            return sweep_progress(paths, now=landed + seconds)

        left = (5 * end_s + 26 * pruned_s) + (baseline_s + 6 * end_s + 27 * pruned_s)
        step = (5 * end_s + 26 * pruned_s) / 31  # the next cell: a mean one of its group
        assert at(0).eta == pytest.approx(left)
        assert at(60).eta == pytest.approx(left - 60)  # a minute into the cell: a minute less
        assert at(60).overdue == 0
        # just past its estimate: the work after the cell, not yet called overdue
        assert at(step + 1).eta == pytest.approx(left - step) and at(step + 1).overdue == 0
        late = at(step + 90)  # a minute and a half past it: said so
        assert late.eta == pytest.approx(left - step)
        assert late.overdue == pytest.approx(90) and 90 > OVERDUE_GRACE_S


def test_remaining_time_counts_down_through_a_baseline_and_the_last_cell(roots):
    """A new group's dense baseline trains for minutes before its first cell: the time
    since the previous group's last record counts down the baseline and that cell. On
    the last cell, an overrun showed "0 s" for as long as it ran: the time left stays at
    least `MIN_REMAINING_S` within the estimate and the grace, then the overrun is
    reported with nothing left after it."""
    from explorer_core.sweep_results import MIN_REMAINING_S, OVERDUE_GRACE_S

    cfg = _tester_grid("eta-countdown-baseline")
    cells = plan(cfg).cells
    end_s, pruned_s, train_s, baseline_s = 0.04, 1.5, 180.0, 190.0
    paths = create_sweep(cfg, estimated=_tester_estimate(end_s, pruned_s, train_s, baseline_s))
    write_status(paths, "running", started=time.time() - 500.0)
    with RunLock(paths):
        for cell in cells[:33]:  # the first group, each cell on time
            _record(paths, cell, seconds=end_s if cell.ratio in (0, 1) else pruned_s,
                    dense_seconds=train_s)
        landed = _landed(paths)
        group_cells = 6 * end_s + 27 * pruned_s
        left = baseline_s + group_cells
        step = baseline_s + group_cells / 33  # the baseline, then a mean cell of the group
        assert sweep_progress(paths, now=landed).eta == pytest.approx(left)
        assert sweep_progress(paths, now=landed + 120).eta == pytest.approx(left - 120)
        over = sweep_progress(paths, now=landed + step + 30)
        assert over.eta == pytest.approx(left - step) and over.overdue == pytest.approx(30)

        for cell in cells[33:-1]:  # all but the last cell of the sweep
            _record(paths, cell, seconds=end_s if cell.ratio in (0, 1) else pruned_s,
                    dense_seconds=train_s)
        landed = _landed(paths)
        last = end_s if cells[-1].ratio in (0, 1) else pruned_s
        assert sweep_progress(paths, now=landed).eta == pytest.approx(max(last, MIN_REMAINING_S))
        within = sweep_progress(paths, now=landed + last + OVERDUE_GRACE_S / 2)
        assert within.eta == MIN_REMAINING_S and within.overdue == 0  # never "0 s" while it runs
        late = sweep_progress(paths, now=landed + last + 60)
        assert late.eta == 0 and late.overdue == pytest.approx(60)  # the page says overdue


def test_remaining_time_without_an_estimate_counts_down_too(roots):
    """The CLI's sweeps (no pre-start estimate) count down the same way; a resumed
    session, whose records are older than its start, counts from its start."""
    cfg = _tester_grid("eta-cli-countdown")
    cells = plan(cfg).cells
    paths = create_sweep(cfg)
    write_status(paths, "running", started=time.time() - 20.0)
    with RunLock(paths):
        _record(paths, cells[0], seconds=0.017, dense_seconds=2.5)
        _record(paths, cells[1], seconds=90.0, dense_seconds=2.5)
        landed = _landed(paths)
        left = 11 * 0.017 + 53 * 90.0 + 2.5
        assert sweep_progress(paths, now=landed).eta == pytest.approx(left)
        assert sweep_progress(paths, now=landed + 30).eta == pytest.approx(left - 30)

        started = landed + 3600.0  # resumed an hour later: the records predate the session
        write_status(paths, "running", started=started)
        assert sweep_progress(paths, now=started).eta == pytest.approx(left)
        assert sweep_progress(paths, now=started + 30).eta == pytest.approx(left - 30)


def test_a_ctrl_c_in_a_sweep_counts_the_cells_on_disk_in_its_status(roots):
    """After a Ctrl-C status.json said "cells_done": 0 beside 8 cell files and 8 rows of
    results.csv (the count of its last report); it now counts them, as after a Stop,
    and the tables hold them."""
    paths = create_sweep(grid("ctrl-c", models=["mlp"], batch_sizes=[32], types=["neuron"],
                              criteria=["l1", "random"], ratios=[0.0, 0.5, 0.75],
                              dense_epochs=1, finetune_epochs=2, latency_repeats=0))

    def ctrl_c_after_two_cells() -> bool:  # asked once a batch while cells fine-tune
        if len(list(paths.cells_dir.glob("*.json"))) >= 2:
            raise KeyboardInterrupt
        return False

    with pytest.raises(KeyboardInterrupt):
        execute(paths, should_stop=ctrl_c_after_two_cells)
    status = read_status(paths)
    done = len(finished_ids(paths))
    assert 2 <= done < 6 and (status["state"], status["cells_done"]) == ("interrupted", done)
    assert status["message"] == jobs.CTRL_C_MESSAGE
    assert len(pd.read_csv(paths.results_csv)) == done
    assert execute(paths)["state"] == "finished"  # and it resumes

def test_a_killed_sweeps_time_ends_at_its_last_report(roots):
    """After a kill -9 the status reads 'interrupted' (no writer holds the lock) and the
    elapsed time stops at the worker's last report: the last moment it is known to have
    worked, and what a resume counts as this session's work (`session_start`). Counting
    on to now would grow for as long as the sweep sits dead. The progress gives that
    report's time, so the page can say where the clock stopped."""
    paths = create_sweep(grid("killed-elapsed"))
    now = time.time()
    status = {**read_status(paths), "state": "running", "pid": 999999, "started": now - 600.0,
              "heartbeat": now - 100.0, "elapsed_before": 0.0}
    paths.status.write_text(json.dumps(status))  # as a killed worker left it
    with RunLock(paths):  # while a worker holds it: to now, no last report yet
        live = sweep_progress(paths, now=now)
        assert live.state == "running" and live.elapsed == pytest.approx(600.0)
        assert live.last_report is None
    for later in (now, now + 3600.0):
        dead = sweep_progress(paths, now=later)
        assert dead.state == "interrupted"
        assert dead.elapsed == pytest.approx(500.0)  # started → last heartbeat
        assert dead.last_report == pytest.approx(now - 100.0)


def test_the_estimate_prices_cells_that_only_evaluate_apart_from_pruned_ones(roots, tmp_path):
    """What the page stores in status.json when it starts a sweep, read back by the
    progress: per group the baseline, its training, and each kind of cell."""
    from explorer_core.estimate import estimate
    from explorer_core.sweep_results import _group_estimates

    cfg = _tester_grid("eta-estimate")
    the_plan = plan(cfg)
    est = estimate(cfg, the_plan, cache_root=tmp_path / "empty-cache")
    assert len(est.groups) == 2
    for g in est.groups:
        assert 0 < g["end_cell_s"] < g["pruned_cell_s"] and g["baseline_s"] >= g["train_s"] > 0
        assert 33 * g["cell_s"] == pytest.approx(6 * g["end_cell_s"] + 27 * g["pruned_cell_s"])
    paths = create_sweep(cfg, estimated=est.groups)
    assert _group_estimates(read_status(paths)) == est.groups


def test_foreign_files_among_the_cell_records_are_skipped(roots, reference):
    """A hand-edited `[1, 2]` among the records crashed the page and `compare --resume`."""
    import shutil

    paths = create_sweep(grid("foreign"))
    shutil.copytree(reference.cells_dir, paths.cells_dir)
    (paths.cells_dir / "notes.json").write_text("[1, 2]")
    (paths.cells_dir / "binary.json").write_bytes(b"\xff\xfe")
    assert len(results_frame(paths)) == 32
    assert execute(paths)["state"] == "finished"
    assert len(read_results_csv(paths)) == 32


def test_only_records_that_name_themselves_count_as_finished_cells(roots, reference):
    """A JSON object that is not a cell record ('notes.json' with a dict in it, a copy of
    a record under another name) counted as a finished cell: the progress read 33 of 32,
    and a record replaced by a note was skipped on resume and missing from the table."""
    import shutil

    paths = create_sweep(grid("foreign-objects"))
    shutil.copytree(reference.cells_dir, paths.cells_dir)
    records = sorted(paths.cells_dir.glob("*.json"))
    replaced = records[5]
    (paths.cells_dir / "notes.json").write_text(json.dumps({"todo": "rerun with 3 seeds"}))
    shutil.copy(records[0], paths.cells_dir / "copy of a cell.json")
    replaced.write_text(json.dumps({"note": "hand-edited"}))

    write_status(paths, "stopped", total_cells=32)
    assert sweep_progress(paths).cells_done == 31
    assert len(results_frame(paths)) == 31
    assert finished_count(paths) == 31  # the sweep list on the Compare page

    assert execute(paths)["state"] == "finished"
    assert sweep_progress(paths).cells_done == 32 and read_status(paths)["cells_done"] == 32
    assert finished_count(paths) == 32  # read again: a record landed in the folder
    assert json.loads(replaced.read_text())["cell_id"] == replaced.stem  # recomputed
    assert sorted(results_frame(paths)["cell_id"]) == sorted(
        p.stem for p in reference.cells_dir.glob("*.json"))


def test_a_dead_workers_last_activity_is_not_shown_as_what_runs_now(roots):
    """After a kill the status read 'interrupted' but the progress line still said
    'pruning neuron · random from 30 % on'."""
    paths = create_sweep(grid("dead-activity"))
    write_status(paths, "running", started=time.time() - 5, total_cells=32,
                 activity="pruning neuron · l1 from 50 % on")
    with RunLock(paths):  # a live worker holds the run: its activity is current
        assert sweep_progress(paths).activity == "pruning neuron · l1 from 50 % on"
    assert sweep_progress(paths).state == "interrupted"  # no writer left: it died
    assert sweep_progress(paths).activity == ""


def test_a_second_writer_is_refused_and_a_stop_request_stops_cleanly(roots, reference):
    paths = create_sweep(grid("locked", ratios=[0.0, 0.5, 0.75]))
    with RunLock(paths):
        with pytest.raises(ExplorerError, match="already being written"):
            execute(paths)
        with pytest.raises(ExplorerError, match="already running"):
            jobs.launch(paths, "compare")
    calls = {"n": 0}

    def stop_after_some() -> bool:
        calls["n"] += 1
        return len(finished_ids(paths)) >= 5

    status = execute(paths, should_stop=stop_after_some)
    assert status["state"] == "stopped" and "resume" in status["message"]
    done = len(finished_ids(paths))
    assert 5 <= done < 48
    assert len(read_results_csv(paths)) == done
    assert read_status(paths)["cells_done"] == done  # not the last throttled report's count
    first_session = sweep_progress(paths).elapsed
    assert first_session > 0
    time.sleep(0.5)  # idle between Stop and Resume: not work, not counted
    resumed = time.time()
    assert execute(paths)["state"] == "finished" and len(finished_ids(paths)) == 48
    final = read_status(paths)
    second_session = final["heartbeat"] - final["started"]
    assert resumed <= final["started"] and second_session <= time.time() - resumed
    # the elapsed time covers both sessions (it restarted from zero on Resume)
    assert sweep_progress(paths).elapsed == pytest.approx(first_session + second_session,
                                                          abs=1e-3)


def test_a_failed_checkpoint_write_fails_the_sweep_without_marking_the_cell_done(roots, reference):
    """Checkpoints and records are written off the main thread: a write that fails (here a
    file where the checkpoints folder should be) still stops the sweep with the reason,
    no cell is recorded without its checkpoint, and a resume after the fix completes."""
    paths = create_sweep(grid("unwritable", models=["mlp"], batch_sizes=[32]))
    paths.checkpoints_dir.write_text("in the way")
    status = execute(paths)
    assert status["state"] == "failed" and "could not write" in status["message"]
    assert str(paths.checkpoints_dir) in status["message"]
    recorded = [json.loads(f.read_text()) for f in paths.cells_dir.glob("*.json")]
    assert all(r["status"] != "ok" for r in recorded)  # every ok cell has a checkpoint
    assert len(read_results_csv(paths)) == len(recorded)
    paths.checkpoints_dir.unlink()
    assert execute(paths)["state"] == "finished"
    rows = results_frame(paths)
    assert len(rows) == len(plan(grid("unwritable", models=["mlp"], batch_sizes=[32])).cells)
    assert all(Path(c).is_file() for c in rows.loc[rows["status"] == "ok", "checkpoint"])


def test_tables_that_cannot_be_rewritten_at_the_start_fail_the_sweep_with_the_reason(roots):
    """A start or resume rewrites results.csv before it says "running": a refusal there
    (a full disk) escaped as an OSError, and killed a page's worker — its sweep showed
    as "interrupted", the reason only in worker.log."""
    from explorer_core.rundir import read_status

    cfg = grid("blocked-start", models=["mlp"], batch_sizes=[32])
    paths = create_sweep(cfg)
    paths.results_csv.mkdir()  # a folder where the table goes: replacing it is refused
    status = execute(paths)
    assert status["state"] == "failed", status
    assert status["message"].startswith("could not write the sweep's files (")
    assert str(paths.results_csv) in status["message"]
    assert read_status(paths)["state"] == "failed"
    paths.results_csv.rmdir()
    assert execute(paths)["state"] == "finished"
    assert len(results_frame(paths)) == len(plan(cfg).cells)


def test_a_folder_without_settings_is_not_offered_for_resuming(tmp_path):
    """A start killed between making its folder and writing config.json can leave the
    folder with a temporary file in it: the name was refused with "or resume it", and a
    resume then refused the folder ("no config.json")."""
    import datetime

    from explorer_core.errors import ExplorerError
    from explorer_core.rundir import check_new_run_dir

    root = tmp_path / "sweeps"
    folder = root / datetime.date.today().isoformat() / "half-made"
    folder.mkdir(parents=True)
    (folder / ".config.json.123-0.tmp").write_text("{")
    with pytest.raises(ExplorerError) as refused:
        check_new_run_dir("half-made", root, kind="sweep")
    assert str(refused.value) == (
        f"a sweep named 'half-made' already exists at {folder}; pick another name (that "
        "folder has no config.json, so nothing to resume: delete it to reuse the name)")
    (folder / "config.json").write_text("{}")
    with pytest.raises(ExplorerError, match="pick another name or resume it$"):
        check_new_run_dir("half-made", root, kind="sweep")


def sparsity_of(model) -> float:
    """Share of zeros among the Linear / Conv weights (what masks zero)."""
    weights = [m.weight for m in model.modules() if isinstance(m, (torch.nn.Linear,
                                                                   torch.nn.Conv2d))]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def test_a_blocks_models_are_timed_together_with_the_dense_model(roots, monkeypatch):
    """A block's new architectures are timed in one interleaved measurement with the
    dense model instead of a dense + pruned pair per cell; widths timed once are not
    timed again; masked models, which keep the dense shapes, are timed once — the
    sparsest, masks folded in — and their cells share it; a memory budget too small for
    two models falls back to pairs."""
    from explorer_core import sweep

    sizes: list[int] = []
    real = sweep.measure_latencies

    timed_models: list[list] = []
    measured: list[list[float]] = []

    def counting(models, *args, **kwargs):
        sizes.append(len(models))
        timed_models.append(list(models))
        measured.append(real(models, *args, **kwargs))
        return measured[-1]

    monkeypatch.setattr(sweep, "measure_latencies", counting)
    over = dict(models=["mlp"], batch_sizes=[32], types=["weight", "neuron"],
                criteria=["magnitude", "l1", "taylor"], ratios=[0.0, 0.25, 0.5, 0.75, 1.0],
                save_checkpoints=False)
    paths = create_sweep(grid("together", **over))
    assert execute(paths)["state"] == "finished"
    # weight · magnitude: dense + the 75 % masked model; neuron · l1: dense + 3
    # architectures; neuron · taylor: the same widths as l1's, already timed
    assert sizes == [2, 4]
    assert [len(m) for m in timed_models] == [2, 4]
    masked = timed_models[0][1]
    assert not is_masked(masked) and abs(sparsity_of(masked) - 0.75) < 0.01
    df = results_frame(paths)
    pruned = df[(df["ratio"] > 0) & (df["ratio"] < 1)]
    assert (pruned["latency_ms"] > 0).all()
    # each block's cells carry the one dense timing they were measured with
    assert pruned.groupby("type")["dense_latency_ms"].nunique().eq(1).all()
    assert pruned[pruned["type"] == "weight"]["latency_ms"].nunique() == 1
    neuron = pruned[pruned["type"] == "neuron"].pivot(index="ratio", columns="criterion",
                                                      values="latency_ms")
    # each ratio carries its own architecture's timing from the block's one measurement
    # (counting distinct values failed when two tiny models timed alike, 0.025238 ms)
    assert (neuron["l1"] == neuron["taylor"]).all()
    assert neuron["l1"].tolist() == pytest.approx(measured[1][1:])
    # the baseline is not timed once more on its own: its ratio-0 cells carry the dense
    # timing of the first chunk, measured before them
    dense_ms = df[df["ratio"] == 0]["latency_ms"]
    first_chunk = pruned[pruned["type"] == "weight"]["dense_latency_ms"].iloc[0]
    assert (dense_ms == first_chunk).all() and (df["dense_latency_ms"] == first_chunk).sum() > 2

    sizes.clear()
    monkeypatch.setattr(sweep, "CHUNK_BYTES", 1)
    paths = create_sweep(grid("pairs", **over))
    assert execute(paths)["state"] == "finished"
    assert sizes == [2] * 4  # one masked model (the first chunk's), 3 architectures
    again = results_frame(paths).set_index("cell_id")
    assert (again["test_acc"] == df.set_index("cell_id")["test_acc"]).all()


def test_a_groups_first_timed_chunk_times_its_mask_types_too(roots, monkeypatch):
    """With structural blocks first, the masked model (the sparsest of its block, masks
    folded in) joins the first chunk's measurement instead of timing the dense model
    once more with it alone; where the chunk's memory budget has no room, its block
    times it as before."""
    from explorer_core import sweep

    timed: list[list] = []
    real = sweep.measure_latencies

    def recording(models, *args, **kwargs):
        timed.append(list(models))
        return real(models, *args, **kwargs)

    monkeypatch.setattr(sweep, "measure_latencies", recording)
    maskings: list[list[float]] = []  # the ratios of every masking
    real_series = pruning_types.masked_series
    monkeypatch.setattr(pruning_types, "masked_series", lambda m, ratios, *a: maskings.append(
        list(ratios)) or real_series(m, ratios, *a))
    over = dict(models=["mlp"], batch_sizes=[32], types=["neuron", "weight"],
                criteria=["l1", "magnitude"], ratios=[0.0, 0.25, 0.5, 0.75, 1.0],
                save_checkpoints=False, finetune_epochs=1)
    paths = create_sweep(grid("standin", **over))
    assert execute(paths)["state"] == "finished"
    assert [len(m) for m in timed] == [5]  # dense, three neuron widths, the masked model
    # the stand-in is its block's 75 % cell's model: not masked a second time
    assert maskings == [[0.75], [0.25, 0.5]]
    masked = timed[0][-1]
    assert not is_masked(masked) and abs(sparsity_of(masked) - 0.75) < 0.01
    df = results_frame(paths)
    pruned = df[(df["ratio"] > 0) & (df["ratio"] < 1)]
    assert pruned["dense_latency_ms"].nunique() == 1  # one measurement for both types
    weight = pruned[pruned["type"] == "weight"]
    assert len(weight) == 3 and weight["latency_ms"].nunique() == 1
    assert (weight["latency_ms"] > 0).all()

    timed.clear()
    maskings.clear()
    monkeypatch.setattr(sweep, "CHUNK_BYTES", 1)  # one model per chunk: no room
    paths = create_sweep(grid("standin-pairs", **over))
    assert execute(paths)["state"] == "finished"
    assert [len(m) for m in timed] == [2, 2, 2, 2]
    assert maskings == [[0.25, 0.5, 0.75]]  # no stand-in: the block masks every ratio
    alone = results_frame(paths)
    # the same fine-tuned models, whichever masking made them
    assert alone["test_acc"].tolist() == df["test_acc"].tolist()
    assert alone["nonzero_params"].tolist() == df["nonzero_params"].tolist()


@pytest.mark.parametrize("cached", [False, True])
def test_the_baseline_and_the_dead_model_are_evaluated_once_per_group(roots, monkeypatch,
                                                                      tmp_path, cached):
    """Every block's ratio-0 cell evaluated the dense model anew, and every block's 100 %
    cell its own copy of the dead model: with three blocks, four passes over the test set
    more than the group needs. And a baseline just trained was tested by the cache and
    then by the sweep, with the same batch size: one pass per group too many."""
    from explorer_core import cache, sweep

    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))  # no baseline cached yet
    models: list = []
    for module in (sweep, cache):
        real = module.evaluate
        monkeypatch.setattr(module, "evaluate", lambda m, split, *a, _real=real, **k:
                            models.append((m, split)) or _real(m, split, *a, **k))
    cfg = grid(f"eval-once-{cached}", models=["mlp"], batch_sizes=[32], types=["neuron", "weight"],
               criteria=["l1", "taylor", "magnitude"], ratios=[0.0, 0.5, 1.0],
               save_checkpoints=False, latency_repeats=0)
    if cached:  # trained and cached by a first sweep
        assert execute(create_sweep(replace(cfg, name="eval-once-first")))["state"] == "finished"
        models.clear()
    paths = create_sweep(cfg)
    assert execute(paths)["state"] == "finished"
    df = results_frame(paths)
    assert (df["baseline_from_cache"] == cached).all()
    dense = models[0][0]
    test = [m for m, split in models if len(split) == len(models[-1][1])]  # the test passes
    assert len({len(split) for _, split in models}) == (1 if cached else 3)  # train, val, test
    # the baseline once (by the sweep when cached, by the cache when trained), the three
    # pruned models, the dead model once
    assert len(test) == 5 and len({id(m) for m in test}) == 5
    assert sum(m is dense for m in test) == 1
    zero = df[df["ratio"] == 0]
    assert len(zero) == 3 and (zero["test_acc"] == zero["dense_test_acc"]).all()
    assert (zero["test_loss"] == zero["dense_test_loss"]).all()
    dead = df[df["ratio"] == 1]
    assert len(dead) == 3 and (dead["status"] == "dead").all()
    assert dead["test_acc"].nunique() == 1 and dead["nonzero_params"].nunique() == 1
    assert (dead["test_acc"] < zero["test_acc"].iloc[0]).all()


def test_speed_ups_are_pooled_over_distinct_timings_not_cells():
    """Cells sharing one timing (same widths from two criteria, or one mask type) carry
    the same (dense, pruned) pair; a mean over cells counted it once per cell and showed
    "1.52–1.52×" as a range of twelve measurements."""
    def cell(i, criterion, dense_ms, ms, ratio=0.5, kind="neuron"):
        return {"cell_id": f"c{i}", "model": "cnn", "dataset": "digits", "batch_size": 32,
                "seed": 0, "type": kind, "criterion": criterion, "ratio": ratio,
                "status": "ok", "latency_ms": ms, "dense_latency_ms": dense_ms, "macs": 50,
                "dense_macs": 100, "nonzero_params": 5, "dense_params": 10}

    rows = [cell(0, "l1", 3.0, 1.0), cell(1, "taylor", 3.0, 1.0),  # one timing, 3×
            cell(2, "random", 2.0, 2.0),                              # another, 1×
            cell(3, "l1", 3.0, 1.5, ratio=0.25),                      # a row of one timing
            cell(4, "magnitude", 2.0, 2.0, kind="weight"),            # an untimed cell and
            cell(5, "magnitude", None, None, kind="weight")]          # a timed one
    speed = speedups(pd.DataFrame(rows)).set_index(["type", "ratio"])
    half = speed.loc[("neuron", 0.5)]
    assert half["timings"] == 2 and half["cells"] == 3
    assert half["speedup"] == pytest.approx(2.0)  # (3 + 1) / 2, not (3 + 3 + 1) / 3
    assert (half["speedup_min"], half["speedup_max"]) == (1.0, 3.0)
    assert speed.loc[("neuron", 0.25), "timings"] == 1
    masks = speed.loc[("weight", 0.5)]
    assert masks["timings"] == 1 and masks["cells"] == 2 and masks["speedup"] == 1.0


def test_ratio_one_is_a_dead_model_with_the_accuracy_of_its_constant_prediction(roots):
    cfg = grid("dead", models=["mlp"], batch_sizes=[32], types=["neuron", "weight"],
               criteria=["l1", "magnitude"], ratios=[0.0, 1.0], save_checkpoints=False)
    paths = create_sweep(cfg)
    status = execute(paths)
    assert status["state"] == "finished" and "2 dead" in status["message"]
    df = results_frame(paths)
    dead = df[df["ratio"] == 1.0]
    assert set(dead["status"]) == {"dead"} and (dead["macs"] == 0).all()
    assert dead["note"].str.contains("constant").all()
    labels = load_dataset("digits").test.y
    shares = {100.0 * (labels == k).float().mean().item() for k in range(10)}
    assert all(any(abs(a - s) < 1e-6 for s in shares) for a in dead["test_acc"])


def test_a_failing_criterion_is_recorded_and_the_sweep_goes_on(roots, monkeypatch):
    from explorer_core import criteria

    def broken(model, layers, data, options):
        raise ExplorerError("criterion 'l2' does not support this model (test)")

    monkeypatch.setitem(criteria.CRITERIA, "l2",
                        criteria.Criterion("l2", "L2", False, broken, True))
    paths = create_sweep(grid("failing", models=["mlp"], batch_sizes=[32], types=["neuron"],
                              criteria=["l2", "l1"]))
    status = execute(paths)
    assert status["state"] == "finished" and "1 failed" in status["message"]
    df = results_frame(paths).set_index("cell_id")
    assert df.loc["mlp-digits-b32-s0-neuron-l2-r50", "status"] == "failed"
    assert "does not support" in df.loc["mlp-digits-b32-s0-neuron-l2-r50", "note"]
    assert df.loc["mlp-digits-b32-s0-neuron-l1-r50", "status"] == "ok"


def test_a_ratio_torch_rejects_fails_only_its_own_cell(roots, monkeypatch):
    """Cells of a block share one pruning series; a step that raises fails that cell and
    the later ratios are pruned by a new series."""
    from explorer_core import surgery

    real = surgery.prune_mlp

    def rejecting_half(model, keep):
        if len(keep["fc1"]) == 16:  # 50 % of 32
            raise RuntimeError("simulated kernel failure")
        return real(model, keep)

    monkeypatch.setattr(surgery, "prune_mlp", rejecting_half)
    paths = create_sweep(grid("one-bad-ratio", models=["mlp"], batch_sizes=[32],
                              types=["neuron"], criteria=["l1"], ratios=[0.25, 0.5, 0.75],
                              save_checkpoints=False))
    assert execute(paths)["state"] == "finished"
    df = results_frame(paths).set_index("ratio")
    assert df.loc[0.5, "status"] == "failed" and "simulated kernel" in df.loc[0.5, "note"]
    assert df.loc[0.25, "status"] == "ok" and df.loc[0.75, "status"] == "ok"
    assert df.loc[0.75, "widths"] == "8 4"


@pytest.mark.parametrize("ctrl_c", [False, True])
def test_an_error_after_a_ctrl_c_is_the_interrupt_not_a_failed_cell(roots, monkeypatch, ctrl_c):
    """A Ctrl-C swallowed by a library mid-import left numpy half-imported; the next
    import raised RecursionError, recorded as a failure with a traceback. After a Ctrl-C
    (`errors.on_interrupt` ran) such an error is the interrupt; without one it stays
    the cell's failure."""
    from explorer_core import errors, surgery

    def broken(model, keep):
        if ctrl_c:  # the Ctrl-C lands while the cell is being pruned
            errors._INTERRUPTED[0] = True
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(surgery, "prune_mlp", broken)
    monkeypatch.setattr(errors, "_INTERRUPTED", [False])
    paths = create_sweep(grid(f"swallowed-ctrl-c-{ctrl_c}", models=["mlp"], batch_sizes=[32],
                              types=["neuron"], criteria=["l1"], ratios=[0.5],
                              save_checkpoints=False))
    if ctrl_c:
        with pytest.raises(KeyboardInterrupt):
            execute(paths)
        assert not finished_ids(paths)
    else:
        assert execute(paths)["state"] == "finished"
        assert results_frame(paths)["status"].tolist() == ["failed"]


def test_repeats_give_mean_and_std_over_seeds(roots):
    paths = create_sweep(grid("repeats", models=["mlp"], batch_sizes=[32], types=["neuron"],
                              criteria=["random"], ratios=[0.5], repeats=3))
    execute(paths)
    df = results_frame(paths)
    assert sorted(df["seed"]) == [0, 1, 2]
    s = summary_frame(df)
    assert len(s) == 1 and s.loc[0, "n"] == 3
    assert s.loc[0, "test_acc_mean"] == pytest.approx(df["test_acc"].mean())
    assert s.loc[0, "test_acc_std"] == pytest.approx(df["test_acc"].std())
    assert s.loc[0, "test_acc_std"] > 0  # different seeds, different models


def test_the_csv_tables_keep_counts_of_millions_exact(roots):
    """summary.csv wrote a 2 241 546-parameter model as 2.24155e+06 (six digits)."""
    paths = create_sweep(grid("millions", models=["mlp"], batch_sizes=[64], types=["neuron",
                              "weight"], criteria=["l1", "magnitude"], ratios=[0.0, 0.3],
                              mlp_hidden=[2048, 1024], dense_epochs=1, latency_repeats=0,
                              save_checkpoints=False))
    assert execute(paths)["state"] == "finished"
    cells = results_frame(paths)
    assert cells["params"].max() > 2_000_000
    written = read_results_csv(paths).set_index("cell_id")
    for row in cells.itertuples():
        for column in ("params", "nonzero_params", "macs", "train_flops"):
            assert written.loc[row.cell_id, column] == str(int(getattr(row, column)))
    summary = pd.read_csv(paths.summary_csv, dtype=str)
    expected = summary_frame(cells)
    for column in ("params_mean", "nonzero_params_mean", "macs_mean", "train_flops_mean"):
        assert summary[column].tolist() == [str(int(v)) for v in expected[column]]
    assert float(summary["test_acc_mean"][0]) == pytest.approx(expected["test_acc_mean"][0],
                                                               abs=1e-8)


def test_pareto_front_keeps_only_undominated_points():
    frame = pd.DataFrame({"macs_mean": [100, 50, 50, 20, 80, 10, None],
                          "test_acc_mean": [95, 90, 85, 70, 89, 60, 99]})
    assert pareto_mask(frame).tolist() == [True, True, False, True, False, True, False]
    # a dead model (0 MACs, the constant class's accuracy) is no trade-off: the cheapest
    # live point beside it is on the front even though the dead one "weakly dominates" it
    dead = pd.DataFrame({"macs_mean": [0, 140, 1232], "test_acc_mean": [11.23, 11.23, 60.0]})
    assert pareto_mask(dead).tolist() == [False, True, True]
    # a grid point with a failed repeat: its mean is over the repeats that worked
    partly = pd.DataFrame({"macs_mean": [50, 60, 100], "test_acc_mean": [95, 90, 96],
                           "status": ["failed", "ok", "ok"]})
    assert pareto_mask(partly).tolist() == [False, True, True]


@pytest.mark.parametrize("over, message", [
    ({"ratios": [0.5, 1.5]}, "between 0 and 1"),
    ({"ratios": []}, "at least one ratio"),
    # two ratios that name one cell: one result overwrote the other, the sweep never ended
    ({"ratios": [0.333333, 0.3333334]}, "33.3333 % is given twice"),
    ({"batch_sizes": [0]}, "batch sizes"),
    ({"models": ["alexnet"]}, "unknown models"),
    # an empty choice is said as one, not as a Python list ("… (got [])")
    ({"criteria": []}, "^pick at least one of the criteria$"),
    ({"models": []}, "^pick at least one of the models$"),
    ({"batch_sizes": []}, "^pick at least one batch size$"),
    ({"types": ["neuron"], "models": ["slp"]}, "no cell to run"),
    # a split of about one sample to train on, whoever starts the sweep (page or CLI)
    ({"val_fraction": 0.999}, "leaves 1 of the 1,438 training samples of digits"),
    ({"types": ["neuron"], "criteria": ["magnitude"]},
     # said by name, as the page's pickers name them and in their order, the chosen too
     r"no cell to run \(none of the chosen criteria \(Weight magnitude\) ranks the chosen "
     r"pruning types; Neuron takes Interval adjoint, L1 norm of weights, L2 norm of weights, "
     r"First-order Taylor, Contribution, k-means clusters, Random\)$"),
    ({"types": ["neuron"], "models": ["slp"]}, r"\(Neuron on SLP: "),
])
def test_bad_settings_are_refused_before_a_folder_exists(roots, over, message):
    sweeps, _ = roots
    before = set(sweeps.rglob("config.json"))
    with pytest.raises(ExplorerError, match=message):
        create_sweep(grid("bad", **over))
    assert set(sweeps.rglob("config.json")) == before


def test_a_dataset_missing_offline_is_refused_with_the_folder_to_fill(roots, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setenv("EXPLORER_DATA", str(tmp_path / "empty"))
    with pytest.raises(ExplorerError, match="not available offline.*MNIST/raw"):
        create_sweep(grid("offline", datasets=["mnist"]))
    # the estimate says so too, instead of a time for a sweep that could not start
    from explorer_core.cli import main

    assert main(["compare", "--datasets", "mnist", "--estimate"]) == 2


def test_the_command_line_says_each_baseline_epoch_and_what_the_estimate_times(roots,
                                                                              capsys):
    """Progress came only with a finished cell: a sweep training its first dense baseline
    (Fashion-MNIST: 12 s, a CIFAR-10 CNN: minutes) and the estimate's timing probe (30 s
    for five models on two datasets) left the screen blank."""
    from explorer_core.cli import main

    args = ["--models", "mlp", "--batch-sizes", "32", "--types", "neuron", "--criteria", "l1",
            "--ratios", "0.5", "--dense-epochs", "2", "--mlp-hidden", "16", "8",
            "--latency-repeats", "0", "--no-cache"]
    assert main(["compare", *args, "--estimate"]) == 0
    err = capsys.readouterr().err
    assert err == "estimating: timing a few training steps of each model (MLP)…\n"
    assert main(["compare", *args, "--name", "cli-epochs"]) == 0
    said = capsys.readouterr()
    lines = said.err.splitlines()
    assert lines[0] == "estimating: timing a few training steps of each model (MLP)…"
    assert lines[1].startswith("sweep folder: ")
    assert re.fullmatch(r"1 cell over 1 baseline \(1 to train, 0 cached\); estimated \d+ s",
                        lines[2]), lines[2]
    assert lines[3] == "criteria per type: neuron: l1"
    for epoch, line in zip((1, 2), lines[4:6]):
        assert line.startswith(f"[{'-' * 30}] 0/1  dense baseline MLP · Digits · batch 32 · "
                               f"seed 0: epoch {epoch}/2  val acc "), line
    assert lines[6].startswith(f"[{'#' * 30}] 1/1  mlp-digits-b32-s0-neuron-l1-r50  ok")
    assert len(lines) == 7
    assert said.out.startswith("finished: 1 cell (")  # it said "1 cells"


def test_the_command_line_says_which_criteria_each_type_ranks_by(roots, capsys):
    """A mask type ranks by magnitude or at random only: `--types neuron weight --criteria
    l1 random` left out weight × l1, and `--types weight --criteria l1` ran magnitude
    cells, both without a word."""
    from explorer_core.cli import main

    assert main(["compare", "--types", "neuron", "weight", "--criteria", "l1", "random",
                 "--ratios", "0", "0.5", "--estimate"]) == 0
    assert "criteria per type: neuron: l1, random · weight: random\n" in capsys.readouterr().out
    assert main(["compare", "--types", "weight", "--criteria", "l1", "--ratios", "0.5",
                 "--estimate"]) == 0
    assert "criteria per type: weight: magnitude\n" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["a/b", "", "../../evil"])
def test_the_estimate_refuses_a_name_a_start_would_refuse(roots, capsys, name):
    """`compare --estimate --name a/b` printed an estimate and exited 0; the same
    command without --estimate refused the name."""
    from explorer_core.cli import main

    sweeps, _ = roots
    before = sorted(sweeps.rglob("*"))
    assert main(["compare", "--name", name, "--estimate"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"error: sweep name must be 1–80 letters, digits, '.', '_' or '-', "
                   f"starting with a letter or digit; got {name!r}\n")
    assert main(["compare", "--name", name]) == 2  # a start says the same
    assert capsys.readouterr().err == err
    assert sorted(sweeps.rglob("*")) == before


@pytest.mark.parametrize("where", ["env", "flag"])
def test_the_estimate_refuses_the_name_of_a_sweep_already_there(tmp_path, where):
    """QA: `compare --name ck1 --ratios 0 --estimate` printed an estimate and exited 0
    beside a sweep ck1 of today; the same command without --estimate exited 2 "a run
    named 'ck1' already exists". Judged under the root a start would use: the
    --sweeps-root flag, else $EXPLORER_SWEEPS."""
    root = tmp_path / "mine"
    taken = create_sweep(grid("ck1", models=["mlp"], types=["neuron"], criteria=["l1"]), root)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EXPLORER_CACHE": str(tmp_path / "cache"),
           "EXPLORER_SWEEPS": str(root if where == "env" else tmp_path / "elsewhere")}
    flag = ["--sweeps-root", str(root)] if where == "flag" else []
    before = sorted(tmp_path.rglob("*"))

    def compare(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "explorer_core", "compare", "--name", "ck1",
                               "--ratios", "0", *flag, *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=300)

    estimated = compare("--estimate")
    assert (estimated.returncode, estimated.stdout) == (2, "")
    assert estimated.stderr == (f"error: a sweep named 'ck1' already exists at {taken.root}; "
                                "pick another name or resume it\n")
    started = compare("--quiet")  # a start says the same
    assert (started.returncode, started.stderr) == (2, estimated.stderr)
    assert sorted(tmp_path.rglob("*")) == before
    # another root has no ck1: the estimate is given
    other = subprocess.run([sys.executable, "-m", "explorer_core", "compare", "--name", "ck1",
                            "--ratios", "0", "--types", "neuron", "--criteria", "l1",
                            "--estimate", "--sweeps-root", str(tmp_path / "other")],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert other.returncode == 0 and re.search(r"^1 cell over 1 baseline \(1 to train, 0 "
                                               r"cached\); estimated \d+ s$", other.stdout, re.M), \
        other.stdout + other.stderr
    assert not (tmp_path / "other").exists()


def test_estimate_counts_cached_baselines(roots, reference):
    from explorer_core.estimate import estimate

    cfg = grid("estimate")
    cached = estimate(cfg, plan(cfg))
    assert cached.cells == 32 and cached.baselines_cached == 4 and cached.baselines_to_train == 0
    fresh = estimate(grid("estimate", dense_epochs=3), plan(cfg))
    assert fresh.baselines_to_train == 4 and fresh.seconds > cached.seconds > 0
    # per group: baseline and mean cell; a cached baseline costs only its one test pass
    # (the result of the group's ratio-0 cells), and the groups' parts add up to the
    # total but for the fixed start-up and per-group costs
    from explorer_core.estimate import PER_GROUP_S, START_S

    assert all(0 < g["baseline_s"] < f["baseline_s"] / 10
               for g, f in zip(cached.groups, fresh.groups))
    assert [g["train_s"] for g in cached.groups] == [0.0] * 4
    assert all(g["baseline_s"] >= g["train_s"] > 0 for g in fresh.groups)
    counts = [sum(c.group == g for c in plan(cfg).cells) for g in plan(cfg).groups]
    assert sum(g["baseline_s"] + n * g["cell_s"] for g, n in zip(fresh.groups, counts)) == \
        pytest.approx(fresh.seconds - START_S - 4 * PER_GROUP_S)


def test_the_estimate_walks_the_cells_once_however_many_groups(roots, tmp_path):
    """Each group scanned every cell of the plan: `compare --estimate --repeats 10000`
    (10 000 groups, 550 000 cells) took 11 minutes to print its estimate."""
    from dataclasses import replace

    from explorer_core.estimate import estimate

    class Counted(list):
        walks = 0

        def __iter__(self):
            Counted.walks += 1
            return super().__iter__()

    cfg = replace(_tester_grid("walks"), repeats=12)
    the_plan = plan(cfg)
    counted = replace(the_plan, cells=Counted(the_plan.cells))
    before = Counted.walks
    est = estimate(cfg, counted, cache_root=tmp_path / "empty-cache")
    assert est.cells == len(the_plan.cells) and len(est.groups) == 12
    # once for `groups`, once to sort the cells by group (not once per group)
    assert Counted.walks - before == 2
    assert est.seconds == pytest.approx(
        estimate(cfg, the_plan, cache_root=tmp_path / "empty-cache").seconds)


def test_cli_runs_a_config_file_and_refuses_bad_input_with_one_line(roots, tmp_path):
    sweeps, cache = roots
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps({"name": "cli", "models": ["mlp"], "batch_sizes": [32],
                                  "types": ["neuron"], "criteria": ["l1"], "ratios": [0, 0.5],
                                  "dense_epochs": 2, "mlp_hidden": [32, 16]}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "explorer_core", "compare", "--config",
                          str(config), "--latency-repeats", "0"], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "finished: 2 cells" in run.stdout
    csv = pd.read_csv(next(sweeps.rglob("cli/results.csv")))
    assert csv["cell_id"].tolist() == ["mlp-digits-b32-s0-neuron-l1-r0",
                                       "mlp-digits-b32-s0-neuron-l1-r50"]
    assert csv["latency_ms"].isna().all()  # --latency-repeats 0 skips timing
    for args, message in [(["--ratios", "2"], "between 0 and 1"),
                          (["--config", str(tmp_path / "missing.json")], "cannot read"),
                          (["--resume", str(tmp_path)], "not a sweep folder")]:
        bad = subprocess.run([sys.executable, "-m", "explorer_core", "compare", *args],
                             capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert bad.returncode == 2 and message in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


def test_status_reports_what_runs_and_ends_on_the_final_state(roots, monkeypatch):
    """The activity line names each step as it comes (written off the main thread, in
    order with the cells), and no late report overwrites the final state."""
    from explorer_core import sweep

    written: list[dict] = []
    real = sweep.write_status

    def recording(paths, state, **fields):
        status = real(paths, state, **fields)
        written.append(dict(status))
        return status

    monkeypatch.setattr(sweep, "ACTIVITY_EVERY_S", 0.0)  # every per-cell report too
    monkeypatch.setattr(sweep, "write_status", recording)
    cfg = grid("activity", models=["mlp"], batch_sizes=[32], types=["neuron", "weight"],
               criteria=["l1", "magnitude"])
    paths = create_sweep(cfg)
    assert execute(paths)["state"] == "finished"
    running = [s for s in written if s["state"] == "running"]
    texts = [s.get("activity", "") for s in running]
    assert any(t.startswith("pruning Neuron · L1 norm of weights from 50 %") for t in texts), \
        texts
    # the 50 % neuron model and, timed with it, the 50 % masked one
    assert any(t.startswith("timing 2 pruned models") for t in texts), texts
    # each cell by its name (no count beside the page's: the bar counts)
    assert [t for t in texts if t in {c.describe() for c in plan(cfg).cells}] == \
        [c.describe() for c in plan(cfg).cells]
    done = [s["cells_done"] for s in running]
    assert done == sorted(done)  # never goes back
    assert written[-1]["state"] == "finished" and written[-1]["activity"] == ""
    assert read_status(paths)["state"] == "finished"
    assert read_status(paths)["cells_done"] == len(plan(cfg).cells)


def test_the_activity_line_follows_a_cells_fine_tuning_epoch_by_epoch(roots, monkeypatch):
    """A cell's status said only "cell 3/4: …" for the whole of its fine-tuning (minutes
    for a CNN), with no heartbeat: the page could not tell a slow cell from a stuck one."""
    from explorer_core import sweep

    texts: list[str] = []
    real = sweep.write_status

    def recording(paths, state, **fields):
        texts.append(fields.get("activity", ""))
        return real(paths, state, **fields)

    monkeypatch.setattr(sweep, "ACTIVITY_EVERY_S", 0.0)
    monkeypatch.setattr(sweep, "write_status", recording)
    cfg = grid("finetune-activity", models=["mlp"], batch_sizes=[32], types=["neuron"],
               criteria=["l1"], ratios=[0.0, 0.5], finetune_epochs=3,
               use_cache=False)  # trained here, whichever test cached it before
    paths = create_sweep(cfg)
    assert execute(paths)["state"] == "finished"
    tuned = [t for t in texts if "fine-tuned" in t]
    assert tuned == [f"MLP · Digits · batch 32 · seed 0 · Neuron · L1 norm of "
                     f"weights · 50 % · fine-tuned {e}/3 epochs" for e in (1, 2, 3)], texts
    # no count of its own beside the bar's (a throttled report lagged it by 15 cells),
    # and named as the page names things (it said 'pruning neuron · l1')
    assert not [t for t in texts if re.search(r"\bcells? \d+/\d+", t)], texts
    assert "pruning Neuron · L1 norm of weights from 50 % on" in texts, texts
    # and the baseline by name too ('training dense baseline mlp · digits …')
    assert "training dense baseline MLP · Digits · batch 32 · seed 0: epoch 1/2" in texts


def test_a_stopped_sweep_counts_the_cells_on_disk_as_done(roots, monkeypatch):
    """Per-cell reports are throttled, so the stopped status must count the finished
    cells itself (it kept the count of the block's last report)."""
    from explorer_core import sweep

    monkeypatch.setattr(sweep, "ACTIVITY_EVERY_S", 1e9)  # no per-cell report after the first
    cfg = grid("stop-count", models=["mlp"], batch_sizes=[32], types=["weight"],
               criteria=["magnitude"], ratios=[0.0, 0.2, 0.4, 0.6, 0.8])
    paths = create_sweep(cfg)
    recorded: list[str] = []  # cells handed to the writer (heard only once written)
    real_record = sweep._Runner._record

    def record(self, cell, *args):
        recorded.append(cell.id)
        return real_record(self, cell, *args)

    monkeypatch.setattr(sweep._Runner, "_record", record)
    status = execute(paths, should_stop=lambda: len(recorded) >= 3)
    assert status["state"] == "stopped"
    assert len(finished_ids(paths)) == 3
    assert read_status(paths)["cells_done"] == 3


def test_a_cells_checkpoint_records_the_share_of_every_hidden_unit_kept(roots, reference):
    """A structured CNN cell at 50 % recorded "50.0 % kept" — its conv channels' share —
    while Inspect's "Hidden kept" counts every hidden unit (channels and neurons): halved
    channels beside a whole 128-neuron layer keep far more than half."""
    def units(model) -> int:  # conv channels and every Linear's neurons but the logits'
        convs = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        linears = [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)]
        return sum(convs) + sum(linears[:-1])

    rows = results_frame(reference)
    structural = rows[(rows["ratio"] == 0.5) & rows["type"].isin(["structured", "neuron"])]
    assert set(structural["model"]) == {"mlp", "cnn"}
    for _, row in structural.iterrows():
        ck = load_checkpoint(row["checkpoint"])
        dense = rows[(rows["ratio"] == 0) & (rows["model"] == row["model"])
                     & (rows["batch_size"] == row["batch_size"])].iloc[0]
        share = 100.0 * units(ck.model) / units(load_checkpoint(dense["checkpoint"]).model)
        assert ck.meta["percent_retained"] == pytest.approx(share), row["cell_id"]
        if row["model"] == "cnn" and row["type"] == "structured":
            assert share > 60  # the fully connected layer is whole


def test_the_ratio_0_cells_of_a_baseline_share_one_tensor_file(roots, reference):
    """Every ratio-0 cell saved another copy of its dense baseline: 16 of VGG16-BN's took
    916 MB of a 2.8 GB sweep folder."""
    rows = results_frame(reference)
    zero = rows[rows["ratio"] == 0]
    for (model, batch), group in zero.groupby(["model", "batch_size"]):
        files = [Path(c) for c in group["checkpoint"]]
        assert len(files) > 1
        assert len({f.stat().st_ino for f in files}) == 1, (model, batch)  # one file, linked
        for f, cell_id in zip(files, group["cell_id"]):
            ck = load_checkpoint(f)
            assert ck.meta["cell"]["type"] == cell_id.split("-")[4]  # each its own sidecar
            assert ck.meta["metrics"]["test_acc"] == pytest.approx(
                float(group.loc[group["cell_id"] == cell_id, "test_acc"].iloc[0]))
    ratio_half = rows[(rows["ratio"] == 0.5) & (rows["status"] == "ok")]
    assert len({Path(c).stat().st_ino for c in ratio_half["checkpoint"]}) == len(ratio_half)


def test_timing_spread_reads_only_the_timings_speed_ups_are_paired_with():
    """Ratio-0 cells carry the baseline's own one-off timing, which no speed-up uses; a
    cold 9 ms one beside steady 2.4–2.6 ms pairs flagged every speed-up as rough."""
    rows = [{"cell_id": f"c{i}", "model": "cnn", "dataset": "digits", "status": "ok",
             "ratio": ratio, "dense_latency_ms": ms}
            for i, (ratio, ms) in enumerate([(0.0, 9.0), (0.5, 2.4), (0.5, 2.6), (1.0, None)])]
    spread = dense_timing_spread(pd.DataFrame(rows)).iloc[0]
    assert (spread["dense_ms_min"], spread["dense_ms_max"]) == (2.4, 2.6)
    assert spread["spread"] == pytest.approx(2.6 / 2.4)


def test_a_table_latency_far_from_the_paired_dense_timings_is_named():
    """A reviewer read 0.434 ms (0 %) and 0.376 ms (50 %) off the table, 1.16×, beside a
    speed-up of 1.38× paired with a dense timing of 0.517 ms taken after a resume."""
    from explorer_core.sweep_results import dense_latency_gaps

    def rows(model, table_ms, paired):
        out = [{"cell_id": f"{model}0", "model": model, "dataset": "digits", "status": "ok",
                "ratio": 0.0, "latency_ms": table_ms, "dense_latency_ms": table_ms}]
        out += [{"cell_id": f"{model}{i + 1}", "model": model, "dataset": "digits",
                 "status": "ok", "ratio": 0.5, "latency_ms": ms / 1.4, "dense_latency_ms": ms}
                for i, ms in enumerate(paired)]
        return out

    frame = pd.DataFrame(rows("cnn", 0.434, [0.517, 0.50]) + rows("mlp", 0.10, [0.104, 0.097]))
    gaps = dense_latency_gaps(frame)
    assert gaps["model"].tolist() == ["cnn"]  # the MLP's timings agree within 10 %
    assert (gaps.loc[0, "table_ms"], gaps.loc[0, "paired_ms_min"],
            gaps.loc[0, "paired_ms_max"]) == (0.434, 0.50, 0.517)
    assert dense_latency_gaps(frame[frame["ratio"] > 0]).empty  # no 0 % row to disagree

def test_a_masked_model_timed_far_from_the_dense_speed_is_flagged():
    """A masked model computes the dense shapes: a busy CPU timed a 50 %-masked MLP at
    2.82× with one dense timing (no spread to flag) right under "masks are no speed-up"."""
    def row(i, kind, ratio, dense_ms, ms):
        return {"cell_id": f"c{i}", "model": "mlp", "dataset": "digits", "status": "ok",
                "type": kind, "ratio": ratio, "dense_latency_ms": dense_ms, "latency_ms": ms,
                "macs": 100, "dense_macs": 100, "nonzero_params": 50, "dense_params": 100}

    rows = pd.DataFrame([row(0, "weight", 0.5, 0.496, 0.176),       # 2.82×: busy CPU
                         row(1, "unstructured", 0.5, 0.40, 0.38),   # 1.05×: as it should
                         row(2, "unstructured", 0.9, 0.40, 0.60),   # 0.67×: too slow
                         row(3, "neuron", 0.5, 0.40, 0.10),         # a real speed-up
                         # 1.21×: one architecture timed a fifth faster than itself
                         row(4, "weight", 0.9, 0.484, 0.40)])
    off = mask_timing_departures(rows)
    assert [(r.type, r.ratio) for r in off.itertuples()] == [("unstructured", 0.9),
                                                             ("weight", 0.5), ("weight", 0.9)]
    assert off["speedup"].round(2).tolist() == [0.67, 2.82, 1.21]


def test_a_model_with_units_removed_timed_slower_than_dense_is_flagged():
    """On a loaded machine a CNN with neurons removed timed 0.85-0.94× its dense model at
    every ratio, under "removing units makes a model faster", with no warning."""
    def row(i, kind, ratio, ms, macs):
        return {"cell_id": f"c{i}", "model": "cnn", "dataset": "digits", "status": "ok",
                "type": kind, "ratio": ratio, "dense_latency_ms": 0.50, "latency_ms": ms,
                "macs": macs, "dense_macs": 100, "nonzero_params": 50, "dense_params": 100}

    rows = pd.DataFrame([row(0, "neuron", 0.1, 0.588, 99),       # 0.85×: busy CPU
                         row(1, "neuron", 0.5, 0.53, 95),         # 0.94×: within the noise
                         row(2, "structured", 0.5, 0.25, 30),     # 2×: a real speed-up
                         row(3, "structured", 0.9, 0.65, 5),      # 0.77×: busy CPU
                         row(4, "weight", 0.5, 0.60, 100)])       # a mask's: the other check
    slower = slower_pruned_models(rows)
    assert [(r.type, r.ratio) for r in slower.itertuples()] == [("neuron", 0.1),
                                                                ("structured", 0.9)]
    assert slower["speedup"].round(2).tolist() == [0.85, 0.77]


# ------------------------------------------------------------------ hand-edited sweeps

@pytest.fixture(scope="module")
def six_points(roots):
    """A finished six-point grid (2 criteria × 3 ratios) with two repeats: 12 cells."""
    paths = create_sweep(grid("six-points", models=["mlp"], batch_sizes=[32], types=["neuron"],
                              criteria=["l1", "random"], ratios=[0.0, 0.5, 0.75], repeats=2,
                              dense_epochs=1, latency_repeats=0))
    assert execute(paths)["state"] == "finished"
    return paths


def copy_of(paths: SweepPaths, name: str) -> SweepPaths:
    import shutil

    return SweepPaths(shutil.copytree(paths.root, paths.root.parent / name))


EDITED = "mlp-digits-b32-s1-neuron-l1-r50"


@pytest.mark.parametrize("field, value", [("ratio", None), ("test_acc", "abc"),
                                          ("batch_size", "32"), ("seed", 0)])
def test_a_hand_edited_cell_record_is_not_a_finished_cell(six_points, field, value):
    """`"ratio": null` made a seventh summary row of a six-point grid and `"test_acc":
    "abc"` went into results.csv; a record counts only if its grid fields, typed as a
    Cell's, rebuild its name and its metrics are numbers or empty."""
    paths = copy_of(six_points, f"edited-{field}")
    want = json.loads(paths.cell(EDITED).read_text())
    paths.cell(EDITED).write_text(json.dumps({**want, field: value}))

    assert finished_count(paths) == 11 and EDITED not in finished_ids(paths)
    summary = summary_frame(results_frame(paths))
    assert len(summary) == 6 and summary["ratio"].notna().all()

    assert execute(paths)["state"] == "finished"
    redone = json.loads(paths.cell(EDITED).read_text())
    assert redone[field] == want[field] and redone["test_acc"] == want["test_acc"]
    csv_rows = read_results_csv(paths)
    assert len(csv_rows) == 12 and csv_rows["test_acc"].astype(float).notna().all()
    assert len(pd.read_csv(paths.summary_csv)) == 6
    assert finished_count(paths) == 12


def test_metrics_may_be_empty_and_any_number_but_not_text_or_flags(six_points):
    """What a record may hold beside its grid fields: None for what a cell did not
    measure (a failed cell has no accuracy), ints or floats; a true/false or a status no
    cell ends with is a hand edit."""
    from explorer_core.sweep_results import is_cell_record

    row = json.loads(six_points.cell(EDITED).read_text())
    assert is_cell_record(row, EDITED)
    assert is_cell_record({**row, "latency_ms": None, "params": 10, "ratio": 0.5}, EDITED)
    assert not is_cell_record({**row, "params": True}, EDITED)
    assert not is_cell_record({**row, "status": "great"}, EDITED)
    assert not is_cell_record({**row, "ratio": 0.25}, EDITED)
    assert not is_cell_record({**row, "seed": True}, EDITED)  # True == 1, but not a seed
    assert not is_cell_record(row, EDITED.replace("s1", "s0"))


@pytest.mark.parametrize("setting, value", [("mlp_hidden", [24, 12]), ("lr", 0.01),
                                            ("dense_epochs", 2), ("latency_repeats", 2)])
def test_a_setting_that_changes_what_finished_cells_mean_is_refused_on_resume(
        six_points, setting, value):
    """mlp_hidden edited in config.json: a resume kept the old cells (another model) as
    done beside new ones. Now a one-line refusal naming the setting; nothing is run."""
    paths = copy_of(six_points, f"changed-{setting}")
    config = json.loads(paths.config.read_text())
    old = config[setting]
    paths.config.write_text(json.dumps({**config, setting: value}))
    records = {p.name: p.read_bytes() for p in paths.cells_dir.iterdir()}

    with pytest.raises(ExplorerError) as caught:
        load_config(paths)
    message = str(caught.value)
    assert f"{setting} {old!r} then, {value!r} now" in message and "\n" not in message
    status = execute(paths)
    assert status["state"] == "failed" and status["message"] == message
    assert {p.name: p.read_bytes() for p in paths.cells_dir.iterdir()} == records

    paths.config.write_text(json.dumps(config))  # put back: the sweep resumes
    assert execute(paths)["state"] == "finished" and finished_count(paths) == 12


@pytest.mark.parametrize("ratio, reads", [(0.9999999, "100"), (1e-12, "0")])
def test_a_ratio_whose_cells_would_read_as_0_or_100_percent_is_refused(ratio, reads):
    """--ratios 0.9999999 made a cell named '…-r100' that was 'ok' (a unit in each layer),
    where r100 names a dead model; 1e-12 one named '…-r0', the baseline's name."""
    from explorer_core.errors import ExplorerError

    with pytest.raises(ExplorerError, match=rf"ratio {ratio!r} reads as {reads} % in the "):
        SweepConfig(ratios=[0.5, ratio]).validate()
    SweepConfig(ratios=[0.0, 0.999999, 1e-6, 1.0]).validate()  # read as 99.9999 and 0.0001


def test_a_copied_sweep_lists_its_own_checkpoints(six_points, tmp_path):
    """A record keeps the path its model was saved under: a sweep moved or copied, then
    resumed, wrote a results.csv naming the old folder's files (gone, or another
    sweep's), and the copy's own models nowhere."""
    import shutil

    from explorer_core.sweep_results import write_tables

    copy = SweepPaths(tmp_path / "moved sweep ü")
    shutil.copytree(six_points.root, copy.root)
    write_tables(copy)
    table = read_results_csv(copy)
    assert len(table) == 12 and (table["checkpoint"] != "").all()
    assert table["checkpoint"].tolist() == [str(copy.checkpoint(c)) for c in table["cell_id"]]
    assert all(Path(p).is_file() for p in table["checkpoint"])
    # the original's table is unchanged: its own files
    assert read_results_csv(six_points)["checkpoint"].str.startswith(str(six_points.root)).all()


def test_settings_that_only_add_or_remove_cells_may_change_on_resume(six_points):
    """More repeats and another ratio add cells; the finished ones stay, untouched."""
    paths = copy_of(six_points, "grown")
    config = json.loads(paths.config.read_text())
    paths.config.write_text(json.dumps({**config, "repeats": 3, "ratios": [0.0, 0.25, 0.5,
                                                                          0.75]}))
    records = {p.name: p.read_bytes() for p in paths.cells_dir.iterdir()}
    assert execute(paths)["state"] == "finished"
    assert finished_count(paths) == 3 * 2 * 4
    assert all(paths.cells_dir.joinpath(n).read_bytes() == b for n, b in records.items())


def test_a_width_change_redoes_no_cell_but_the_cells_of_the_other_widths_run(six_points):
    """Cells record what they were computed with, per model: with the MLP's cells gone,
    new widths are no mix; cells from before cells recorded it are trusted."""
    paths = copy_of(six_points, "new-widths")
    for record in paths.cells_dir.glob("*-s1-*.json"):
        record.unlink()
    config = json.loads(paths.config.read_text())
    paths.config.write_text(json.dumps({**config, "mlp_hidden": [24, 12]}))
    with pytest.raises(ExplorerError, match="mlp_hidden"):
        load_config(paths)  # the seed-0 cells are the old MLP

    for record in paths.cells_dir.glob("*.json"):  # as an older version wrote them
        row = json.loads(record.read_text())
        del row["computed_with"]
        record.write_text(json.dumps(row))
    assert execute(paths)["state"] == "finished"
    widths = {r["seed"]: r["computed_with"]["mlp_hidden"] if "computed_with" in r else None
              for r in read_cells(paths)}
    assert widths == {0: None, 1: [24, 12]}


@pytest.mark.parametrize("damage", ["zero bytes", "truncated", "bad header", "no sidecar"])
def test_a_damaged_checkpoint_of_a_finished_cell_is_redone_on_resume(six_points, damage):
    """A zero-byte checkpoints/<cell>.safetensors was not noticed: the cell counted as
    done. Checked on resume (header and size only), not on every page rerun."""
    paths = copy_of(six_points, f"damaged-{damage.replace(' ', '-')}")
    target = paths.checkpoint(EDITED)
    data = target.read_bytes()
    if damage == "zero bytes":
        target.write_bytes(b"")
    elif damage == "truncated":
        target.write_bytes(data[:len(data) // 2])
    elif damage == "bad header":
        target.write_bytes(b"\xff" * 8 + data[8:])
    else:
        target.with_suffix(".json").unlink()
    records = {p.name: p.read_bytes() for p in paths.cells_dir.iterdir()}
    assert finished_count(paths) == 12  # the page does not open checkpoints

    assert execute(paths)["state"] == "finished"
    changed = {p.name for p in paths.cells_dir.iterdir() if p.read_bytes() != records[p.name]}
    assert changed == {f"{EDITED}.json"}  # only that cell was redone
    assert target.read_bytes() == data
    assert load_checkpoint(target).meta["metrics"]["test_acc"] == pytest.approx(
        json.loads(paths.cell(EDITED).read_text())["test_acc"])


def test_a_damaged_baseline_file_redoes_every_ratio_0_cell_that_shares_it(six_points):
    """The ratio-0 cells of a baseline share one tensor file (hard links): emptied in
    place, it is damaged for all of them, and all are redone."""
    config = json.loads(six_points.config.read_text())
    paths = create_sweep(SweepConfig.from_dict({**config, "name": "damaged-baseline"}))
    assert execute(paths)["state"] == "finished"  # (a copy would not keep the links)
    zero = "mlp-digits-b32-s0-neuron-l1-r0"
    with open(paths.checkpoint(zero), "r+b") as fh:
        fh.truncate(0)
    records = {p.name: p.read_bytes() for p in paths.cells_dir.iterdir()}
    assert execute(paths)["state"] == "finished"
    changed = {p.name for p in paths.cells_dir.iterdir() if p.read_bytes() != records[p.name]}
    assert changed == {f"{zero}.json", "mlp-digits-b32-s0-neuron-random-r0.json"}
    assert all(load_checkpoint(paths.checkpoint(n[:-5])) for n in changed)


def test_creating_a_sweep_counts_each_groups_cells_in_one_pass(roots, monkeypatch):
    """group_cells was counted as groups × cells (minutes near the 1 000 000-cell limit)."""
    from explorer_core.sweep import Cell

    calls = {"n": 0}
    real = Cell.group

    def counted(self):
        calls["n"] += 1
        return real.fget(self)

    cfg = grid("many-groups", models=["mlp"], batch_sizes=[32, 64], types=["neuron"],
               criteria=["l1"], ratios=[0.0, 0.5], repeats=50, latency_repeats=0)
    monkeypatch.setattr(Cell, "group", property(counted))
    paths = create_sweep(cfg)
    cells = 2 * 50 * 2
    assert calls["n"] <= 3 * cells  # linear: was 100 groups × 200 cells
    assert read_status(paths)["group_cells"] == [2] * 100


def test_cells_an_edited_grid_drops_are_set_aside_not_counted(roots):
    """Fewer repeats or ratios in config.json, then a resume: the dropped cells' records
    stayed in cells/ and counted in the tables and the progress (more done than the
    total); they are kept in cells-outside-grid/, out of both."""
    paths = create_sweep(grid("shrunk", models=["mlp"], batch_sizes=[32], types=["neuron"],
                              criteria=["l1"], ratios=[0.0, 0.5], repeats=2,
                              save_checkpoints=False))
    assert execute(paths)["state"] == "finished"
    config = json.loads(paths.config.read_text())
    config.update(repeats=1, ratios=[0.5])
    paths.config.write_text(json.dumps(config))
    status = execute(paths)
    assert status["state"] == "finished" and "3 finished cell(s) outside" in status["message"]
    df = results_frame(paths)
    assert df["cell_id"].tolist() == ["mlp-digits-b32-s0-neuron-l1-r50"]
    assert finished_count(paths) == status["total_cells"] == status["cells_done"] == 1
    assert len(read_results_csv(paths)) == 1
    assert sorted(p.stem for p in paths.outside_grid_dir.glob("*.json")) == [
        "mlp-digits-b32-s0-neuron-l1-r0", "mlp-digits-b32-s1-neuron-l1-r0",
        "mlp-digits-b32-s1-neuron-l1-r50"]


def test_a_cell_failing_in_a_way_nobody_foresaw_names_the_log_with_its_trace(roots,
                                                                            monkeypatch):
    """The trace of a cell's unforeseen error went to the log, but its note did not say
    where; the sweep goes on with the other cells."""
    from explorer_core import sweep

    real = sweep.pruned_widths

    def broken(model, kind):
        if kind == "weight":
            raise RuntimeError("torch said no")
        return real(model, kind)

    monkeypatch.setattr(sweep, "pruned_widths", broken)
    cfg = grid("unforeseen", models=["mlp"], batch_sizes=[32], types=["neuron", "weight"],
               criteria=["l1", "magnitude"], ratios=[0.5])
    paths = create_sweep(cfg)
    assert execute(paths)["state"] == "finished"
    df = results_frame(paths).set_index("type")
    assert df.loc["neuron", "status"] == "ok"
    assert df.loc["weight", "note"] == f"RuntimeError: torch said no (traceback in {paths.log})"
    log = paths.log.read_text()
    assert "Traceback (most recent call last)" in log and "torch said no" in log


def test_a_cell_is_said_only_once_its_record_is_on_disk(roots):
    """`compare` printed a cell's "ok" line when the cell was queued for writing; when
    the write was then refused, the terminal showed the cell done just before the sweep
    failed over it. Each cell heard must already have its record; none whose record
    could not be written may be heard at all."""
    cfg = grid("said-when-written", models=["mlp"], batch_sizes=[64], types=["neuron"],
               criteria=["l1"], ratios=[0.0, 0.5], latency_repeats=0)
    paths = create_sweep(cfg)
    heard: list[tuple[str, bool]] = []

    def on_event(event: dict) -> None:
        if event["type"] == "cell":
            heard.append((event["cell_id"], paths.cell(event["cell_id"]).is_file()))

    assert execute(paths, on_event=on_event)["state"] == "finished"
    assert sorted(heard) == sorted((c.id, True) for c in plan(cfg).cells)

    refused = create_sweep(grid("said-when-refused", models=["mlp"], batch_sizes=[64],
                                types=["neuron"], criteria=["l1"], ratios=[0.0, 0.5],
                                latency_repeats=0))
    refused.cells_dir.write_text("in the way")  # the cells' records cannot be written
    heard.clear()
    assert execute(refused, on_event=on_event)["state"] == "failed"
    assert heard == []


def test_a_refused_cell_write_seen_during_a_fine_tuning_still_fails_the_sweep(roots, monkeypatch):
    """Cells are written off the main thread; a refused write surfaces at the main
    thread's next report to the writer. When that report came from a fine-tuning's epoch,
    the error was taken for the cell's own failure and then forgotten, while the writer
    dropped every later write: with a read-only cells/ folder the sweep said "finished:
    7 cells" (of 24) and exited 0. It must fail naming the folder, and resume after."""
    import threading

    from explorer_core import sweep as sweep_module

    cfg = grid("refused", models=["mlp"], batch_sizes=[64], types=["neuron"], criteria=["l1"],
               ratios=[0.0, 0.3, 0.6], finetune_epochs=2, latency_repeats=0)
    paths = create_sweep(cfg)
    paths.cells_dir.write_text("in the way")  # as a read-only folder: the write is refused
    tried = threading.Event()
    real_write, real_train = sweep_module._Runner._write_cell, sweep_module.train

    def write_cell(self, *args):
        try:
            return real_write(self, *args)
        finally:
            tried.set()

    def train_once_the_write_failed(*args, **kwargs):  # the race, made certain
        if tried.wait(30):
            time.sleep(0.2)  # the writer thread has stored the error
        return real_train(*args, **kwargs)

    monkeypatch.setattr(sweep_module._Runner, "_write_cell", write_cell)
    monkeypatch.setattr(sweep_module, "train", train_once_the_write_failed)
    status = execute(paths)
    assert status["state"] == "failed", status
    assert "could not write" in status["message"] and str(paths.cells_dir) in status["message"]
    monkeypatch.undo()
    paths.cells_dir.unlink()
    assert execute(paths)["state"] == "finished"
    assert sorted(finished_ids(paths)) == sorted(c.id for c in plan(cfg).cells)


def test_a_criterion_scores_only_the_layers_the_grid_prunes(roots, monkeypatch):
    """A grid pruning a CNN by neuron (and masks) scored Taylor on its conv layers too,
    a backward pass through them for scores no cell ranked; with structured pruning in
    the grid the conv layers are scored as before."""
    from explorer_core import sweep

    scored: list[tuple[str, list[str]]] = []
    real = sweep.compute_scores

    def recording(model, criterion, data=None, layers=None, options=None):
        scored.append((criterion, list(layers)))
        return real(model, criterion, data, layers, options)

    monkeypatch.setattr(sweep, "compute_scores", recording)
    over = dict(models=["cnn"], batch_sizes=[32], criteria=["taylor", "magnitude"],
                save_checkpoints=False, dense_epochs=1)
    paths = create_sweep(grid("scored-neuron", types=["neuron", "weight"], **over))
    assert execute(paths)["state"] == "finished"
    assert scored == [("taylor", ["classifier.0"])]
    assert results_frame(paths)["status"].eq("ok").all()
    scored.clear()
    paths = create_sweep(grid("scored-both", types=["neuron", "structured"], **over))
    assert execute(paths)["state"] == "finished"
    assert scored == [("taylor", ["features.0", "features.3", "classifier.0"])]


def test_a_sweep_started_from_the_cli_is_estimated_and_its_bar_says_the_time_left(roots):
    """Started from the command line, a sweep kept no pre-start estimate: its page showed
    "—" remaining until the first cell landed (after a baseline's minutes of training),
    and the bar said the time elapsed alone, where `prune`'s says the time left too."""
    from conftest import bar_at_a_terminal

    from explorer_core.rundir import read_status

    sweeps, _ = roots
    code, frames = bar_at_a_terminal([
        "compare", "--name", "cli-eta", "--models", "mlp", "--mlp-hidden", "32", "16",
        "--batch-sizes", "32", "--types", "neuron", "--criteria", "l1", "--ratios", "0",
        "0.5", "--dense-epochs", "2", "--latency-repeats", "0", "--no-cache"])
    assert code == 0
    status = read_status(SweepPaths(next(sweeps.rglob("cli-eta"))))
    assert len(status["group_estimates"]) == len(status["groups"]) == 1
    assert status["group_estimates"][0]["train_s"] > 0  # estimated as trained here
    # the first frame is the baseline's first epoch: paced by the estimate already
    frames = [f.removesuffix("\x1b[K") for f in frames]
    # `format_seconds`' words: '8 s', '1 min 5 s' on a slow machine; never '—' here
    assert re.search(r"elapsed \d[\d a-z]*  eta \d[\d a-z]*$", frames[0]), frames
    assert all("  eta " in f for f in frames[:-1]), frames
    assert frames[-1].startswith("[###") and frames[-1].endswith(" s") and "eta" not in frames[-1]

    # --no-estimate: no timing probe first; the bar says no time left until it knows one
    code, frames = bar_at_a_terminal([
        "compare", "--name", "cli-no-eta", "--models", "mlp", "--mlp-hidden", "32", "16",
        "--batch-sizes", "32", "--types", "neuron", "--criteria", "l1", "--ratios", "0",
        "0.5", "--dense-epochs", "2", "--latency-repeats", "0", "--no-cache", "--no-estimate"])
    assert code == 0
    status = read_status(SweepPaths(next(sweeps.rglob("cli-no-eta"))))
    assert "group_estimates" not in status
    assert "  eta " not in frames[0] and "—" not in frames[0], frames


def test_the_bars_time_left_reads_the_cell_records_at_most_once_a_second(monkeypatch):
    """`progress` reads every cell record: asked for each epoch and cell of a big sweep,
    the bar would slow the sweep it reports on."""
    from types import SimpleNamespace

    from explorer_core import sweep_results
    from explorer_core.commands import compare

    clock, reads = [100.0], []

    def progress(paths):
        reads.append(clock[0])
        clock[0] += 0.1  # a 0.1 s read: next one no sooner than 50× that
        return SimpleNamespace(eta=42.0)

    monkeypatch.setattr(sweep_results, "progress", progress)
    monkeypatch.setattr(compare.time, "monotonic", lambda: clock[0])
    remaining = compare._Remaining(SweepPaths(Path("unused")))
    for _ in range(60):  # asked every 0.25 s for 15 s
        assert remaining() == 42.0
        clock[0] += 0.25
    assert reads == pytest.approx([100.0, 105.1, 110.2])


def test_a_cells_fine_tuning_epochs_are_heard_before_the_cell(roots):
    """The CLI's bar stood still through a cell's fine-tuning (300 epochs: seconds a cell
    on Digits, minutes for a CNN on CIFAR-10): each epoch is heard, before its cell."""
    cfg = grid("finetune-heard", models=["mlp"], batch_sizes=[64], types=["neuron"],
               criteria=["l1"], ratios=[0.0, 0.5], latency_repeats=0, finetune_epochs=2)
    paths = create_sweep(cfg)
    heard: list[tuple] = []

    def on_event(event: dict) -> None:
        if event["type"] == "finetune_epoch":
            heard.append((event["cell_id"], event["epoch"], event["epochs"]))
        elif event["type"] == "cell":
            heard.append((event["cell_id"], "done"))

    assert execute(paths, on_event=on_event)["state"] == "finished"
    zero, half = (c.id for c in plan(cfg).cells)
    # per cell: a cell is heard from the writer thread once its record is written, which
    # may be after the next cell's fine-tuning has begun on the main thread
    assert [h for h in heard if h[0] == zero] == [(zero, "done")]
    assert [h for h in heard if h[0] == half] == [(half, 1, 2), (half, 2, 2), (half, "done")]
    assert len(heard) == 4
    # not in the sweep's event log: a line per epoch of every cell
    assert "finetune_epoch" not in paths.events.read_text()


def test_the_cli_bar_follows_a_cells_fine_tuning_and_a_log_gets_no_line_per_epoch(roots,
                                                                                  capsys):
    from conftest import bar_at_a_terminal

    from explorer_core.cli import main

    argv = ["--models", "mlp", "--mlp-hidden", "16", "--batch-sizes", "32", "--types",
            "neuron", "--criteria", "l1", "--ratios", "0.5", "--dense-epochs", "1",
            "--finetune-epochs", "2", "--latency-repeats", "0", "--no-cache", "--no-estimate"]
    code, frames = bar_at_a_terminal(["compare", "--name", "tuned-bar", *argv])
    assert code == 0
    tuned = [f for f in frames if "fine-tuning epoch" in f]
    assert [re.search(r"fine-tuning epoch \d/2", f).group() for f in tuned] == [
        "fine-tuning epoch 1/2", "fine-tuning epoch 2/2"], frames
    assert main(["compare", "--name", "tuned-log", *argv]) == 0  # stderr not a terminal
    assert "fine-tuning epoch" not in capsys.readouterr().err
