"""Compare page under AppTest: defaults, grid size before start, bad input, a sweep run in
the background and its results, a refused duplicate name."""
from __future__ import annotations

import json
import re

import pytest

from explorer_core import jobs
from explorer_core.rundir import list_sweeps, read_status

from conftest import open_page_file, stop_through_the_page, widget


@pytest.fixture
def sweeps_root(tmp_path, monkeypatch):
    root = tmp_path / "sweeps"
    monkeypatch.setenv("EXPLORER_SWEEPS", str(root))
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))
    yield root
    for sweep in list_sweeps(root):  # workers outlive pages by design; not a test's
        jobs.kill(sweep)


def open_page():
    return open_page_file("pages/compare.py")


def infos(at) -> str:
    return " | ".join(i.value for i in at.info)


def test_the_app_lists_the_page(app_test, sweeps_root):
    at = app_test("pages/compare.py")
    assert not at.exception
    assert at.title[0].value == "Compare"


def test_defaults_and_the_grid_size_before_starting(sweeps_root):
    at = open_page()
    assert widget(at.multiselect, "Models").value == ["mlp"]
    assert widget(at.multiselect, "Datasets").value == ["digits"]
    assert widget(at.multiselect, "Batch sizes").value == ["64"]
    assert widget(at.multiselect, "Pruning types").value == ["neuron", "weight"]
    assert widget(at.text_input, "Ratios (% removed)").value == \
        "0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100"
    # neuron: interval_adjoint, l1, random × 11 ratios; weight: magnitude, random × 11
    assert "55 cells" in infos(at) and "1 dense baseline (1 to train)" in infos(at)
    assert "estimated" in infos(at)
    assert any("No sweeps yet" in i.value for i in at.info)

    widget(at.multiselect, "Models").set_value(["mlp", "cnn"]).run()
    widget(at.multiselect, "Pruning types").set_value(["structured"]).run()
    assert "33 cells" in infos(at)  # only the CNN has filters to remove
    assert any("no conv layer" in c.value for c in at.caption)
    # the ratios as the cells will be named: fractions typed by mistake show as tiny percents
    widget(at.text_input, "Ratios (% removed)").set_value("0.5, 0.25").run()
    assert any("Removed per cell — 0.5 %, 0.25 %" in c.value for c in at.caption)
    # typed with per cent signs, as the label reads: '50%' was refused as no number
    widget(at.text_input, "Ratios (% removed)").set_value("0%, 50 %, 90%").run()
    assert not at.error and any("Removed per cell — 0 %, 50 %, 90 %" in c.value
                                for c in at.caption)


@pytest.mark.parametrize("label, value, message", [
    ("Ratios (% removed)", "0, 50, abc", "numbers in percent"),
    ("Ratios (% removed)", "0, 150", "Ratios must lie between 0 and 100 %, got 150"),
    ("Ratios (% removed)", "10, 10", "Ratios must be distinct: 10 % is given twice"),
    ("Ratios (% removed)", "33.33333, 33.333334", "33.3333 % is given twice"),
    # kept to four decimals of a percent: it became a 100 % (dead) cell without a word
    ("Ratios (% removed)", "50, 99.99999", "Ratio 99.99999 % rounds to 100 % (ratios are "
                                           "kept to four decimals of a percent)"),
    ("Ratios (% removed)", "0.000001", "Ratio 1e-06 % rounds to 0 %"),
    ("Ratios (% removed)", " , ", "Enter at least one ratio in percent"),
    ("MLP hidden widths", "64, 0", "≥ 1"),
    # too large to build: a traceback from the grid's sizing (an 80 GB allocation)
    ("MLP hidden widths", "200000, 100000",
     "The MLP 64-200000-100000-10 would have 20,014,100,010 parameters"),
])
def test_bad_settings_give_one_clear_error_and_no_start(sweeps_root, label, value, message):
    at = open_page()
    widget(at.text_input, label).set_value(value).run()
    assert not at.exception
    assert len(at.error) == 1 and message in at.error[0].value, [e.value for e in at.error]
    # said as a sentence, beside a Start that cannot be pressed (greyed, as for an empty
    # grid: it used to vanish)
    assert at.error[0].value[:1].isupper() or not at.error[0].value[:1].isalpha()
    assert [b.disabled for b in at.button if b.label == "Start sweep"] == [True]
    assert list_sweeps(sweeps_root) == []


@pytest.mark.parametrize("chosen, message", [
    (["64", "abc", "4000", "60000"], "Batch sizes must be whole numbers ≥ 1, got abc"),
    (["0", "64", "-5"], "Batch sizes must be whole numbers ≥ 1, got 0, -5"),
    (["64", "064"], "Batch size 64 is given twice"),
])
def test_a_bad_batch_size_is_named_alone(sweeps_root, chosen, message):
    """The error listed every chip ('got 64, abc, 4000, 60000') for one typo."""
    at = open_page()
    widget(at.multiselect, "Batch sizes").set_value(chosen).run()
    assert not at.exception
    assert [e.value for e in at.error] == [message]
    assert [b.disabled for b in at.button if b.label == "Start sweep"] == [True]


def test_typed_batch_sizes_match_presets_by_prefix_and_enter_selects_no_matches(sweeps_root):
    """'0' + Enter added 4000 and 60000: the fuzzy filter matched both presets and Enter
    took the first row, "Select 2 matches". (Typing itself is driven in
    test_browser_compare; here the widget's settings that cause it.)"""
    box = widget(open_page().multiselect, "Batch sizes")
    from streamlit.proto.MultiSelect_pb2 import MultiSelect

    modes = MultiSelect.DESCRIPTOR.fields_by_name["filter_mode"].enum_type.values_by_number
    assert box.proto.accept_new_options and modes[box.proto.filter_mode].name.endswith("PREFIX")
    assert box.proto.select_all == 0  # never offered, so never the row Enter takes


def test_an_empty_grid_says_so_instead_of_zero_cells_in_five_seconds(sweeps_root):
    """Structured pruning on the single-layer model: the page said "0 cells over 0 dense
    baselines … estimated ≈ 5 s" beside a disabled Start."""
    at = open_page()
    widget(at.multiselect, "Models").set_value(["slp"]).run()
    widget(at.multiselect, "Pruning types").set_value(["structured"]).run()
    assert not at.exception and not at.error
    assert "cells" not in infos(at) and "estimated" not in infos(at)
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and "Empty grid" in warnings[0] and "no conv layer" in warnings[0]
    assert widget(at.button, "Start sweep").disabled


def test_a_bad_sweep_name_is_said_before_start_and_start_is_disabled(sweeps_root):
    """The grid and its estimate showed beside an enabled Start for a name no sweep can
    have; only pressing Start said so."""
    at = open_page()
    at.text_input(key="new_sweep_name").set_value("my sweep/1").run()
    assert "cells" in infos(at)  # the grid is still sized
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "Sweep name" in errors[0] and "'my sweep/1'" in errors[0]
    assert widget(at.button, "Start sweep").disabled
    at.text_input(key="new_sweep_name").set_value("my-sweep-1").run()
    assert not at.error and not widget(at.button, "Start sweep").disabled
    assert list_sweeps(sweeps_root) == []


def test_the_name_of_a_sweep_already_there_is_said_before_start(sweeps_root):
    """The page judged only the name's form before Start: the name of a sweep already
    there today showed beside an enabled Start, which then refused it. Said now by the
    check a start makes (`rundir.check_new_run_dir`), under the page's sweeps folder."""
    from explorer_core.sweep import SweepConfig, create_sweep

    taken = create_sweep(SweepConfig(name="taken", types=["neuron"], criteria=["l1"],
                                     ratios=[0.0], mlp_hidden=[8]), sweeps_root)
    at = open_page()
    at.text_input(key="new_sweep_name").set_value("taken").run()
    assert "cells" in infos(at)  # the grid is still sized
    errors = [e.value for e in at.error]
    assert errors == [f"Sweep name: a sweep named 'taken' already exists at {taken.root}; "
                      "pick another name or resume it"]
    assert widget(at.button, "Start sweep").disabled
    at.text_input(key="new_sweep_name").set_value("not-taken").run()
    assert not at.error and not widget(at.button, "Start sweep").disabled
    assert [s.root for s in list_sweeps(sweeps_root)] == [taken.root]


def test_a_taken_name_is_said_even_when_the_grid_cannot_be_estimated(sweeps_root,
                                                                     monkeypatch):
    """The name was checked only after the estimate (a timing probe of seconds): an
    estimate that failed returned before it, and the taken name went unsaid."""
    from explorer_core import estimate
    from explorer_core.errors import ExplorerError
    from explorer_core.sweep import SweepConfig, create_sweep

    create_sweep(SweepConfig(name="taken2", types=["neuron"], criteria=["l1"], ratios=[0.0],
                             mlp_hidden=[8]), sweeps_root)

    def refuse(cfg, the_plan):
        raise ExplorerError("the timing probe failed")

    monkeypatch.setattr(estimate, "estimate", refuse)
    at = open_page()
    widget(at.text_input, "Ratios (% removed)").set_value("0, 30")  # not an estimate cached
    at.text_input(key="new_sweep_name").set_value("taken2").run()
    errors = [e.value for e in at.error]
    assert "the timing probe failed" in errors
    assert any(e.startswith("Sweep name: a sweep named 'taken2' already exists") for e in errors)


def test_start_runs_in_the_background_and_shows_results(sweeps_root):
    at = open_page()
    widget(at.text_input, "Ratios (% removed)").set_value("0, 50")
    widget(at.number_input, "Dense epochs").set_value(2)
    widget(at.button_group, "Criteria").set_value(["l1", "magnitude"])
    at.text_input(key="new_sweep_name").set_value("apptest-sweep").run()
    assert "4 cells" in infos(at)
    widget(at.button, "Start sweep").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]

    sweeps = list_sweeps(sweeps_root)
    assert [s.root.name for s in sweeps] == ["apptest-sweep"]
    config = json.loads(sweeps[0].config.read_text())
    assert (config["ratios"], config["criteria"], config["dense_epochs"]) == \
        ([0.0, 0.5], ["l1", "magnitude"], 2)
    assert jobs.wait(sweeps[0], timeout=180)["state"] == "finished"

    at.run()
    assert not at.exception
    assert "apptest-sweep" in widget(at.selectbox, "Sweep").value
    assert "finished" in at.subheader[0].value
    tables = [df.value for df in at.dataframe if "accuracy" in df.value.columns]
    assert len(tables) == 1 and len(tables[0]) == 4
    assert sorted(tables[0]["ratio"].tolist()) == [0, 0, 50, 50]
    speed = [df.value for df in at.dataframe if "speed-up" in df.value.columns]
    assert len(speed) == 1 and len(speed[0]) == 2  # neuron and weight at 50 %
    labels = [b.label for b in at.get("download_button")]
    assert "Download results.csv" in labels and "Download summary.csv" in labels
    assert any("not speed-ups" in i.value for i in at.info)

    # the name field got a fresh default; reusing a name is refused before Start (which
    # is disabled), the sweep untouched
    assert at.text_input(key="new_sweep_name").value != "apptest-sweep"
    before = sweeps[0].results_csv.read_bytes()
    at.text_input(key="new_sweep_name").set_value("apptest-sweep").run()
    assert not at.exception
    assert len(at.error) == 1 and "already exists" in at.error[0].value
    assert widget(at.button, "Start sweep").disabled
    assert len(list_sweeps(sweeps_root)) == 1 and sweeps[0].results_csv.read_bytes() == before
    assert read_status(sweeps[0])["state"] == "finished"


def test_results_filters_belong_to_their_sweep_and_an_empty_one_says_so(sweeps_root):
    """Clearing a filter drew a traceback (IndexError); and the filters were shared by
    every sweep, so a second sweep opened showing only the values the first had left."""
    from explorer_core.sweep import MAX_LATENCY_BATCH, SweepConfig, create_sweep, execute

    made = {}
    for name, batches in (("alpha", [32, 64]), ("beta", [64, 128])):
        cfg = SweepConfig(name=name, batch_sizes=batches, types=["neuron"], criteria=["l1"],
                          ratios=[0.0, 0.5], dense_epochs=1, mlp_hidden=[16, 8],
                          latency_repeats=0, save_checkpoints=False)
        made[name] = create_sweep(cfg, sweeps_root)
        assert execute(made[name])["state"] == "finished"

    def shown_batches(at) -> list[int]:
        # headed as a person reads it, as the columns beside it are ("batch_size" was not)
        table = [df.value for df in at.dataframe if "accuracy" in df.value.columns][0]
        return sorted(set(table["batch size"].tolist()))

    at = open_page()
    widget(at.selectbox, "Sweep").set_value(str(made["alpha"].root)).run()
    assert widget(at.multiselect, "Show batch sizes").value == [32, 64]
    # every multiselect, form and filters, wraps its chips (see test_browser_compare)
    assert {m.label: m.proto.wrap for m in at.multiselect} == dict.fromkeys(
        ["Models", "Datasets", "Batch sizes", "Pruning types", "Show batch sizes"], True)
    # the form starts no latency batch the core refuses (it allowed 100 000 > 65 536), and
    # says so: with widget bounds the browser only kept the previous number, silently
    widget(at.number_input, "Latency batch").set_value(MAX_LATENCY_BATCH + 1).run()
    assert [e.value for e in at.error] == [
        f"Latency batch must be a whole number from 1 to {MAX_LATENCY_BATCH:,}, got "
        f"{MAX_LATENCY_BATCH + 1:,}"]
    # Start greyed, as for any refused setting (it vanished here, greyed for bad ratios)
    assert [b.disabled for b in at.button if b.label == "Start sweep"] == [True]
    widget(at.number_input, "Latency batch").set_value(MAX_LATENCY_BATCH).run()
    assert not at.error
    assert [b.disabled for b in at.button if b.label == "Start sweep"] == [False]
    widget(at.multiselect, "Show batch sizes").set_value([64]).run()
    assert shown_batches(at) == [64]
    widget(at.multiselect, "Show batch sizes").set_value([]).run()
    assert not at.exception
    assert "Nothing selected" in infos(at)

    widget(at.selectbox, "Sweep").set_value(str(made["beta"].root)).run()
    assert not at.exception
    assert widget(at.multiselect, "Show batch sizes").value == [64, 128]
    assert shown_batches(at) == [64, 128]


def _finished_sweep(root, name: str, **over):
    from explorer_core.sweep import SweepConfig, create_sweep, execute

    cfg = SweepConfig(**{"name": name, "types": ["neuron", "weight"],
                         "criteria": ["l1", "magnitude"], "ratios": [0.0, 0.5],
                         "dense_epochs": 1, "mlp_hidden": [16, 8], "latency_repeats": 3,
                         "save_checkpoints": False, **over})
    paths = create_sweep(cfg, root)
    assert execute(paths)["state"] == "finished"
    return paths


def test_speed_ups_from_unsteady_timings_are_flagged_as_rough(sweeps_root):
    """On a CPU shared with other jobs the dense CNN timed 2.43 ms in one block and
    9.81 ms in another, and the page showed "6.58× faster" as a plain fact."""
    paths = _finished_sweep(sweeps_root, "shared-cpu", repeats=2)
    cells = [f for f in sorted(paths.cells_dir.glob("*.json"))  # the pruned models' pairs
             if json.loads(f.read_text())["ratio"] > 0]

    def dense_timings(timings: list[float]) -> None:
        """The dense model's paired timings, one per seed (the machine running the tests
        is as busy as it happens to be: its own timings may be steady or not). The two
        seeds' models have one architecture, so the sweep timed them once; distinct
        dense timings make them two measurements. Masked models time at the dense speed
        (`mask_timing_departures` flags them otherwise)."""
        for f in cells:
            row = json.loads(f.read_text())
            row["dense_latency_ms"] = timings[row["seed"]]
            if row["type"] in ("weight", "unstructured"):
                row["latency_ms"] = timings[row["seed"]]
            f.write_text(json.dumps(row))

    dense_timings([2.43, 2.61])  # steady: no warning
    at = open_page()
    widget(at.selectbox, "Sweep").set_value(str(paths.root)).run()
    assert not at.exception and not [w for w in at.warning if "rough" in w.value]
    speed = [df.value for df in at.dataframe if "speed-up" in df.value.columns][0]
    # two timings per row, counted beside their range (one column: at 800 px two scrolled)
    ranges = dict(zip(speed["type"], speed["range (timings)"]))
    assert re.fullmatch(r"\d+\.\d\d–\d+\.\d\d× \(2\)", ranges["Neuron"]), ranges
    assert ranges["Weight"] == "1.00× (2)"  # both at the dense speed: not '1.00–1.00×'
    assert (speed["cells"] == 2).all() and "timings" not in speed.columns

    dense_timings([2.43, 9.81])  # as if timed on a busy machine
    at.run()
    warning = [w.value for w in at.warning if "rough" in w.value]
    assert len(warning) == 1 and "2.43–9.81 ms (4.0×)" in warning[0]
    assert "timed them slower" not in warning[0]

    # steady dense timings, but the neuron-pruned models timed slower than the dense one
    dense_timings([2.43, 2.43])
    for f in cells:
        row = json.loads(f.read_text())
        if row["type"] == "neuron":
            row["latency_ms"] = 3.0
            f.write_text(json.dumps(row))
    at.run()
    warning = [w.value for w in at.warning if "rough" in w.value]
    assert len(warning) == 1 and "Models with units removed compute less than the dense " \
        "model, yet this sweep timed them slower — Neuron" in warning[0], warning
    assert "on MLP · Digits at 50 %: 0.81×" in warning[0] and "varied" not in warning[0]


def test_a_sweep_of_dead_models_says_it_has_nothing_to_plot_against_macs(sweeps_root):
    """Ratios of 100 % only: the MACs tab drew an empty frame and its PNG download was a
    title above nothing."""
    paths = _finished_sweep(sweeps_root, "all-dead", ratios=[1.0], latency_repeats=0)
    at = open_page()
    widget(at.selectbox, "Sweep").set_value(str(paths.root)).run()
    assert not at.exception
    assert [i.value for i in at.info if i.value.startswith("Nothing to plot against MACs")]
    pngs = [b for b in at.get("download_button") if b.label == "Download PNG"]
    assert len(pngs) == 2  # accuracy vs ratio and batch size; none for the empty chart
    # nor any model to inspect, and the page says why (a dead cell typed in the box gave
    # "No results")
    inspect = "No model of this sweep to open on the Inspect page: "
    assert f"{inspect}dead (100 %) and failed cells save no model." in [
        c.value for c in at.caption]
    # a sweep with live models keeps its chart and download
    alive = _finished_sweep(sweeps_root, "some-alive", ratios=[0.5, 1.0], latency_repeats=0)
    at.run()  # the list of sweeps now has it
    widget(at.selectbox, "Sweep").set_value(str(alive.root)).run()
    assert not [i for i in at.info if i.value.startswith("Nothing to plot against MACs")]
    assert len([b for b in at.get("download_button") if b.label == "Download PNG"]) == 3
    assert f"{inspect}it ran without saving checkpoints." in [c.value for c in at.caption]
    # saved, but the files are gone (a copy without its checkpoints/ folder)
    saved = _finished_sweep(sweeps_root, "saved", ratios=[0.5], latency_repeats=0,
                            save_checkpoints=True)
    import shutil
    shutil.rmtree(saved.checkpoints_dir)
    at.run()
    widget(at.selectbox, "Sweep").set_value(str(saved.root)).run()
    assert f"{inspect}its checkpoints/ folder holds none of its cells' models." in [
        c.value for c in at.caption]


def test_the_tables_cost_columns_say_what_they_count(sweeps_root):
    """"latency ms" and "train FLOPs" read as per image and per training run: the help
    says per batch of the sweep's latency batch, and per sample of one training step."""
    paths = _finished_sweep(sweeps_root, "help-texts", latency_batch=16)
    at = open_page()
    widget(at.selectbox, "Sweep").set_value(str(paths.root)).run()
    table = [d for d in at.dataframe if "accuracy" in d.value.columns][0]
    config = json.loads(table.proto.columns)
    assert config["latency ms"]["help"].startswith(
        "milliseconds of one forward pass over a batch of 16 images")
    assert "per sample" in config["train FLOPs"]["help"] and \
        "not of the whole training run" in config["train FLOPs"]["help"]


def test_tables_leave_out_columns_a_sweep_has_no_numbers_for(sweeps_root):
    """One seed: the '± std' column held only 'None'; latency off: so did 'speed vs dense'."""
    paths = _finished_sweep(sweeps_root, "untimed", latency_repeats=0)
    at = open_page()
    widget(at.selectbox, "Sweep").set_value(str(paths.root)).run()
    assert not at.exception
    table = [df.value for df in at.dataframe if "accuracy" in df.value.columns][0]
    assert "± std" not in table.columns and "latency ms" not in table.columns
    speed = [df.value for df in at.dataframe if "MACs" in df.value.columns][0]
    assert "speed-up" not in speed.columns and "range (timings)" not in speed.columns
    assert any("Latency was not timed" in c.value for c in at.caption)
    # timed once per row: no column of "—" ranges and one of 1s (in an 800-px window
    # the speed-up table scrolled sideways to show them)
    paths = _finished_sweep(sweeps_root, "timed-once")
    at.run()  # the picker lists it
    widget(at.selectbox, "Sweep").set_value(str(paths.root)).run()
    speed = [df.value for df in at.dataframe if "MACs" in df.value.columns][0]
    assert "speed-up" in speed.columns
    assert "range (timings)" not in speed.columns


def test_table_downloads_come_from_the_cell_records_not_files_a_kill_left_behind(sweeps_root):
    """A sweep killed mid-way had no summary.csv (or one of the cells done when a worker
    last started): the page offered no download, or a summary that disagreed with it."""
    from explorer_core.sweep_results import read_cells, results_frame, tables_text

    paths = _finished_sweep(sweeps_root, "killed-tables")
    written = {f.name: f.read_text() for f in (paths.results_csv, paths.summary_csv)}
    assert tables_text(results_frame(paths, read_cells(paths))) == written
    paths.summary_csv.unlink()
    paths.results_csv.write_text(written["results.csv"].splitlines()[0] + "\n")  # stale
    at = open_page()
    widget(at.selectbox, "Sweep").set_value(str(paths.root)).run()
    assert not at.exception
    labels = [b.label for b in at.get("download_button")]
    assert "Download results.csv" in labels and "Download summary.csv" in labels


def test_stop_reads_stopping_and_is_disabled_until_the_worker_has_stopped(sweeps_root):
    """After Stop the page went on showing "running" beside an active Stop button for
    seconds (the worker finishes its batch first), with only a toast to say the click
    counted. The button now reads "Stopping…" and is disabled until the sweep has stopped."""
    from explorer_core.sweep import SweepConfig, create_sweep

    paths = create_sweep(SweepConfig(name="to-stop", types=["neuron"], criteria=["l1"],
                                     ratios=[0.0, 0.5], mlp_hidden=[16, 8]), sweeps_root)
    stop_through_the_page("pages/compare.py", paths, message="training the dense baseline")


def test_the_live_times_count_down_say_an_overrun_and_a_killed_sweep_ran_until_its_report(
        sweeps_root):
    """QA: "Remaining (est.)" stood still for the whole of a long cell, then jumped; an
    overrun would have read "0 s" for as long as it lasted; and after a kill -9 the
    "Elapsed" of the interrupted sweep stopped at the worker's last report, unexplained.
    A real sweep's folder with its last cell under way (its record removed, the pruned
    cell before it taking a minute): the time left counts down from the last record's
    landing, an overrun is named, and a dead worker's time reads "Ran for" up to its
    last report."""
    import os
    import time

    from explorer_core.rundir import RunLock

    paths = _finished_sweep(sweeps_root, "live-times", types=["neuron"], criteria=["l1"],
                            ratios=[0.0, 0.5, 0.75], latency_repeats=0)
    records = {json.loads(f.read_text())["ratio"]: f for f in paths.cells_dir.glob("*.json")}
    records[0.75].unlink()  # the cell under way
    row = json.loads(records[0.5].read_text())
    records[0.5].write_text(json.dumps({**row, "cell_seconds": 60.0}))  # so is the next

    def as_left(landed_ago: float, heartbeat_ago: float = 0.0) -> None:
        """status.json as a worker on the last cell writes it, that cell's work begun
        `landed_ago` seconds ago (the last record's landing)."""
        now = time.time()
        status = {**json.loads(paths.status.read_text()), "state": "running",
                  "started": now - 1000.0,
                  "heartbeat": now - heartbeat_ago, "elapsed_before": 0.0, "activity": ""}
        paths.status.write_text(json.dumps(status))
        os.utime(paths.cells_dir, (now - landed_ago, now - landed_ago))

    def metrics() -> dict:
        at = open_page()
        widget(at.selectbox, "Sweep").set_value(str(paths.root)).run()
        assert not at.exception
        return {m.label: m for m in at.metric}

    with RunLock(paths):  # the worker, alive
        as_left(landed_ago=20.0)
        left = metrics()["Remaining (est.)"]
        assert left.value.endswith(" s") and 30 <= int(left.value.split()[0]) <= 40  # 60 − 20
        assert not left.delta

        as_left(landed_ago=400.0)  # the cell estimated at a minute has run 6 min 40 s
        left = metrics()["Remaining (est.)"]
        assert left.value == "the step under way"  # nothing after it, and not "0 s"
        assert left.delta.startswith("step under way: 5 min") and \
            left.delta.endswith("past its estimate")

    as_left(landed_ago=400.0, heartbeat_ago=400.0)  # killed 400 s ago: the lock is free
    shown = metrics()
    assert "Elapsed" not in shown
    ran = shown["Ran for"]
    assert ran.value == "10 min 0 s"  # started 1000 s ago, last report 400 s ago
    last = read_status(paths)["heartbeat"]
    assert f"last report ({time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(last))})" in ran.help
    assert shown["Remaining (est.)"].value == "—"


def test_a_cell_to_inspect_is_named_as_the_grid_names_it_and_opens_there(sweeps_root):
    """The cells were listed by raw id, cut off before the ratio in the box."""
    from explorer_core.sweep import SweepConfig, create_sweep, execute

    cfg = SweepConfig(name="handover", types=["neuron"], criteria=["l1"], ratios=[0.0, 0.5],
                      dense_epochs=1, mlp_hidden=[16, 8], latency_repeats=0)
    paths = create_sweep(cfg, sweeps_root)
    assert execute(paths)["state"] == "finished"
    at = open_page()
    widget(at.selectbox, "Sweep").set_value(str(paths.root)).run()
    box = widget(at.selectbox, "Cell to inspect")
    labels = box.options
    assert len(labels) == 2 and all(" — " in label and "% accuracy" in label
                                    for label in labels), labels
    half = next(label for label in labels if " · L1 norm of weights · 50 % — " in label)
    # what every cell shares (dataset, batch size, seed) is left out: whole, the name
    # with its accuracy was cut off in an 800-px window's box
    assert half.startswith("MLP · Neuron · L1 norm of weights · 50 % — "), half
    box.set_value("mlp-digits-b64-s0-neuron-l1-r50").run()
    widget(at.button, "Open on the Inspect page").click().run()
    assert at.session_state["inspect_checkpoint"] == str(
        paths.checkpoint("mlp-digits-b64-s0-neuron-l1-r50"))


def test_filters_and_table_name_models_and_datasets_the_csv_keeps_the_ids(sweeps_root):
    """The filters offered 'cnn' and 'mlp', the table's rows read 'digits', 'neuron',
    'l1': the files' ids. The page names them; the downloaded CSV keeps the ids."""
    from explorer_core.sweep import SweepConfig, create_sweep, execute

    cfg = SweepConfig(name="names", models=["mlp", "cnn"], types=["neuron"], criteria=["l1"],
                      ratios=[0.5], dense_epochs=1, mlp_hidden=[16, 8], latency_repeats=0,
                      save_checkpoints=False)
    paths = create_sweep(cfg, sweeps_root)
    assert execute(paths)["state"] == "finished"
    at = open_page()
    widget(at.selectbox, "Sweep").set_value(str(paths.root)).run()
    models = widget(at.multiselect, "Show models")
    assert sorted(models.options) == ["CNN", "MLP"]
    assert sorted(models.value) == ["cnn", "mlp"]  # what is filtered on: the ids
    table = next(d.value for d in at.dataframe if "accuracy" in d.value.columns)
    assert sorted(table["model"]) == ["CNN", "MLP"]
    assert set(table["dataset"]) == {"Digits"} and set(table["type"]) == {"Neuron"}
    assert set(table["criterion"]) == {"L1 norm of weights"}
    assert any("results.csv" in b.proto.label for b in at.get("download_button"))
    from explorer_core.sweep_results import tables_text, results_frame
    written = tables_text(results_frame(paths))["results.csv"]
    assert "mlp,digits" in written and "MLP" not in written.split("\n", 1)[1]


def test_a_masked_model_timed_off_the_dense_speed_makes_the_speed_ups_rough(sweeps_root):
    """A mask type is timed once per model, so its ratios share one speed-up: said once
    for them all (nine ratios were listed one by one, "0.75×" nine times)."""
    from explorer_core.sweep import SweepConfig, create_sweep, execute

    cfg = SweepConfig(name="busy", types=["weight"], criteria=["magnitude"],
                      ratios=[0.0, 0.25, 0.5, 0.75], dense_epochs=1, mlp_hidden=[16, 8],
                      latency_repeats=3, save_checkpoints=False)
    paths = create_sweep(cfg, sweeps_root)
    assert execute(paths)["state"] == "finished"
    cells = [paths.cell(f"mlp-digits-b64-s0-weight-magnitude-r{r}") for r in (25, 50, 75)]
    records = [json.loads(cell.read_text()) for cell in cells]

    def rough_warnings(speedup: float, ratios: int = 3) -> list[str]:
        """The page's warnings with the first `ratios` masked cells timed at `speedup` ×
        the dense speed (set here: the test machine's own timings may be the busy ones)."""
        for i, (cell, record) in enumerate(zip(cells, records)):
            latency = record["dense_latency_ms"] / (speedup if i < ratios else 1.0)
            cell.write_text(json.dumps({**record, "latency_ms": latency}))
        at = open_page()
        widget(at.selectbox, "Sweep").set_value(str(paths.root)).run()
        return [w.value for w in at.warning if "These speed-ups are rough" in w.value]

    assert rough_warnings(1.1) == []
    rough = rough_warnings(2.82)
    assert len(rough) == 1 and "Weight (layer-wise masks) on MLP · Digits at 25–75 % " \
        "(3 ratios): 2.82×" in rough[0] and rough[0].count("2.82") == 1, rough
    rough = rough_warnings(2.82, ratios=1)
    assert len(rough) == 1 and "Weight (layer-wise masks) on MLP · Digits at 25 %: 2.82×" \
        in rough[0], rough


def test_the_grid_summary_counts_the_baselines_cached_since_it_was_shown(sweeps_root):
    """After a sweep the form kept saying "1 to train" of the baseline it had just cached:
    the summary was remembered per settings alone."""
    from explorer_core.sweep import SweepConfig, create_sweep, execute

    at = open_page()
    widget(at.number_input, "Dense epochs").set_value(1).run()
    widget(at.text_input, "Ratios (% removed)").set_value("0, 50").run()
    assert "over 1 dense baseline (1 to train)" in infos(at)
    cfg = SweepConfig(name="warm", dense_epochs=1, ratios=[0.0, 0.5], latency_repeats=0,
                      save_checkpoints=False)
    assert execute(create_sweep(cfg, sweeps_root))["state"] == "finished"
    at.run()
    assert "over 1 dense baseline (0 to train, 1 cached)" in infos(at)


def test_downloads_say_they_hold_the_whole_sweep_when_a_filter_hides_cells(sweeps_root):
    """With "Show batch sizes" narrowed to one, results.csv and summary.csv still held
    every cell, and nothing on the page said so."""
    paths = _finished_sweep(sweeps_root, "filtered", types=["neuron"], criteria=["l1"],
                            batch_sizes=[32, 64], latency_repeats=0)
    at = open_page()
    widget(at.selectbox, "Sweep").set_value(str(paths.root)).run()
    labels = [b.label for b in at.get("download_button") if ".csv" in b.label]
    assert labels == ["Download results.csv", "Download summary.csv"]  # nothing hidden
    assert not any("view only" in c.value for c in at.caption)

    widget(at.multiselect, "Show batch sizes").set_value([64]).run()
    assert not at.exception
    labels = [b.label for b in at.get("download_button") if ".csv" in b.label]
    assert labels == ["Download results.csv (all 4 cells)", "Download summary.csv (all 4 cells)"]
    assert any("filters above apply to the view only" in c.value for c in at.caption)


@pytest.mark.parametrize("page, submit", [("pages/compare.py", None),
                                          ("pages/iterative.py", "Start run"),
                                          ("pages/train_time.py", "Start comparison")])
def test_the_learning_rate_field_shows_small_rates(sweeps_root, page, submit):
    """With format "%.5f" the allowed minimum 1e-6 showed as 0.00000, and so did the
    refused 5e-7. (Python's % stands in for sprintf.js, which writes %g as JavaScript
    writes the number.)"""
    at = open_page_file(page)
    shown = widget(at.number_input, "Learning rate").proto.format
    for rate in (1e-6, 5e-7, 1e-3, 0.00025):
        assert float(shown % rate) == pytest.approx(rate, rel=1e-5), (page, shown)
    widget(at.number_input, "Learning rate").set_value(5e-7)
    if submit:  # a form: checked when submitted
        widget(at.button, submit).click()
    at.run()
    assert not at.exception
    assert [e.value for e in at.error if "Learning rate" in e.value] == [
        "Learning rate must be between 1e-06 and 10, got 5e-07"]


def test_damaged_cell_records_are_named_beside_the_resume_button(sweeps_root):
    """A truncated or unreadable cells/*.json: the page showed "Status: finished" and
    "2 of 4 cells" with a Resume button, and nothing said why."""
    from explorer_core.sweep_results import scan_cells

    paths = _finished_sweep(sweeps_root, "damaged", types=["neuron"], criteria=["l1"],
                            batch_sizes=[32, 64], latency_repeats=0)
    cells = sorted(paths.cells_dir.glob("*.json"))
    assert len(cells) == 4
    cells[0].write_text(cells[0].read_text()[:40])  # truncated
    cells[1].write_bytes(b"\xff\xfe not json")  # unreadable
    # files of the user's, named as no cell is: none of the sweep's business
    (paths.cells_dir / "notes.json").write_text('{"todo": "rerun with 3 seeds"}')
    for copy in (f"{cells[2].stem} (1)", f"{cells[2].stem}.bak", f"{cells[2].stem}-copy",
                 f"{cells[2].stem}_old"):
        (paths.cells_dir / f"{copy}.json").write_text(cells[2].read_text())
    rows, unreadable = scan_cells(paths)
    assert len(rows) == 2 and unreadable == [cells[0].name, cells[1].name]

    at = open_page()
    widget(at.selectbox, "Sweep").set_value(str(paths.root)).run()
    assert not at.exception
    notes = [w.value for w in at.warning if "could not be read" in w.value]
    assert notes == [f"2 cell records could not be read ({cells[0].name}, {cells[1].name}); "
                     "Resume redoes those cells."]
    assert "Resume" in [b.label for b in at.button]


@pytest.mark.parametrize("page", ["pages/compare.py", "pages/iterative.py",
                                  "pages/train_time.py"])
def test_the_learning_rate_steps_by_a_tenth_of_its_default(sweeps_root, page):
    """+ took the default 0.001 to 0.011 (Streamlit's float step, 0.01): eleven times the
    rate for one click."""
    at = open_page_file(page)
    field = widget(at.number_input, "Learning rate")
    assert field.value == pytest.approx(1e-3)
    assert field.proto.step == pytest.approx(1e-4)  # what the browser's + and − add
    if page == "pages/compare.py":  # no form: the click counts at once
        field.increment().run()
        assert widget(at.number_input, "Learning rate").value == pytest.approx(1.1e-3)


def test_a_baseline_that_did_not_learn_is_said_on_the_page_and_the_command_line(sweeps_root,
                                                                                capsys):
    """At a learning rate far too small (lr 10 with SGD did the same) the dense MLP stays
    at chance: its cells came out "ok", compared against a guess, without a word. The
    page and the command line say which baseline did not learn; one that did is not
    named."""
    from explorer_core.cli import main

    slow = _finished_sweep(sweeps_root, "no-learning", lr=1e-6, latency_repeats=0)
    at = open_page()
    widget(at.selectbox, "Sweep").set_value(str(slow.root)).run()
    said = [w.value for w in at.warning if "did not learn" in w.value]
    assert len(said) == 1 and said[0].startswith(
        "The dense baseline MLP · Digits · batch 64 · seed 0 did not learn (test accuracy ")
    assert "10 % by guessing" in said[0]

    fine = _finished_sweep(sweeps_root, "learning", dense_epochs=10, latency_repeats=0)
    at.run()  # the new sweep in the list
    widget(at.selectbox, "Sweep").set_value(str(fine.root)).run()
    assert not at.exception and not [w for w in at.warning if "did not learn" in w.value]

    assert main(["compare", "--resume", str(slow.root), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning: the dense baseline MLP · Digits · batch 64 · seed 0 did not learn" in err
    assert main(["compare", "--resume", str(fine.root), "--quiet"]) == 0
    assert "did not learn" not in capsys.readouterr().err


def test_times_past_an_hour_read_in_hours():
    """A 176-cell grid's estimate read "≈ 373 min 42 s": minutes to count, not a time."""
    from pages._common import format_seconds

    assert [format_seconds(s) for s in (None, 42, 185, 3600, 22422)] == [
        "—", "42 s", "3 min 5 s", "1 h 0 min", "6 h 13 min"]


def test_batch_sizes_past_the_training_split_are_said_to_be_full_batch(sweeps_root):
    """4 000, 60 000 and 1 000 000 on Digits were three points of the batch-size chart and
    three rows of the table, trained alike (23.398 % each), without a word."""
    at = open_page()
    widget(at.multiselect, "Batch sizes").set_value(["64", "4000", "60000"]).run()
    notes = [c.value for c in at.caption if c.value.startswith("Full batch")]
    assert notes == ["Full batch: Digits has 1,294 training samples, so batch "
                     "sizes 4,000 and 60,000 take the whole split at once and train alike."]
    widget(at.multiselect, "Batch sizes").set_value(["64", "256"]).run()
    assert not [c for c in at.caption if c.value.startswith("Full batch")]


def test_a_refused_setting_is_said_as_a_sentence_beside_a_greyed_start(sweeps_root):
    """No criterion chosen read "pick at least one of the criteria" and the Start button
    vanished (an empty grid greys it); an empty grid named criteria by id."""
    at = open_page()
    widget(at.button_group, "Criteria").set_value([]).run()
    assert [e.value for e in at.error] == ["Pick at least one of the criteria"]
    assert widget(at.button, "Start sweep").disabled
    widget(at.button_group, "Criteria").set_value(["magnitude"])
    widget(at.multiselect, "Pruning types").set_value(["neuron"]).run()
    warning = [w.value for w in at.warning if "Empty grid" in w.value]
    assert len(warning) == 1 and "(Weight magnitude)" in warning[0] \
        and "k-means clusters, Random)" in warning[0] and "(kmeans)" not in warning[0], warning
    assert widget(at.button, "Start sweep").disabled


def test_the_new_sweep_form_is_kept_after_a_visit_to_another_page(app_test, sweeps_root):
    """It came back with every default: models, ratios, repeats, batch sizes, the hidden
    widths and the name typed were gone."""
    at = app_test("pages/compare.py")
    widget(at.multiselect, "Models").set_value(["slp", "mlp"]).run()
    widget(at.multiselect, "Batch sizes").set_value(["64", "123"]).run()
    widget(at.text_input, "Ratios (% removed)").set_value("0, 25, 75").run()
    widget(at.number_input, "Repeats (seeds; mean ± std)").set_value(3).run()
    widget(at.text_input, "MLP hidden widths").set_value("48, 24").run()
    widget(at.selectbox, "Optimiser").set_value("sgd").run()
    widget(at.checkbox, "Save every pruned model (for Inspect)").uncheck().run()
    at.text_input(key="new_sweep_name").set_value("kept-sweep").run()
    assert not at.exception
    at.switch_page("pages/retention.py").run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    assert widget(at.multiselect, "Models").value == ["slp", "mlp"]
    assert widget(at.multiselect, "Batch sizes").value == ["64", "123"]
    assert widget(at.text_input, "Ratios (% removed)").value == "0, 25, 75"
    assert widget(at.number_input, "Repeats (seeds; mean ± std)").value == 3
    assert widget(at.text_input, "MLP hidden widths").value == "48, 24"
    assert widget(at.selectbox, "Optimiser").value == "sgd"
    assert widget(at.checkbox, "Save every pruned model (for Inspect)").value is False
    assert at.text_input(key="new_sweep_name").value == "kept-sweep"
    # the grid the kept form describes: 2 models × 2 batches × 3 seeds × 3 ratios × types
    assert "cells** over 12 dense baselines" in infos(at), infos(at)
