"""The Compare page in headless Chromium, as a user drives it: build a small grid, see its
size and estimate, run it in the background, see the charts, download the CSV."""
from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Iterator

import pytest
from playwright.sync_api import expect

from explorer_core import jobs
from explorer_core.labels import criterion_name
from explorer_core.pruning_types import ALL_CRITERIA
from explorer_core.rundir import list_sweeps

from browser import (ROOT, RUN_TIMEOUT_MS, chart_marks, choose_in_multiselect, choose_option,
                     clipped_chart_titles, fill_field, multiselect_chips, open_app,
                     open_setup_form, overflowing, rerun_after, wait_for_app, wait_for_charts)

SWEEP_NAME = f"pw-sweep-{int(time.time())}"


@pytest.fixture
def no_stray_workers():
    yield
    for sweep in list_sweeps():
        jobs.kill(sweep)


def _open_form(page) -> None:
    open_setup_form(page, "New sweep", "Ratios (% removed)")


def test_every_chosen_option_of_the_form_stays_in_sight(app_page, streamlit_server):
    """With four pruning types chosen only one chip showed: the chips of a multiselect in
    a column stayed on one row that scrolled sideways. Now they wrap onto new rows."""
    page = app_page
    open_app(page, streamlit_server, "compare")
    _open_form(page)
    for option in ("Unstructured", "Structured"):
        choose_in_multiselect(page, "Pruning types", option)
    chips = {label: multiselect_chips(page, label)
             for label in ("Models", "Datasets", "Batch sizes", "Pruning types")}
    assert len(chips["Pruning types"]) == 4, chips
    hidden = {label: [c["text"] for c in found if not c["visible"]]
              for label, found in chips.items()}
    assert hidden == {label: [] for label in chips}
    # and each reads whole: 'Neuron (remove FC neurons)' and 'Weight magnitude (masks)'
    # were cut with an ellipsis in their 240-px group, at 1400 px as at 800
    shortened = {label: [c["text"] for c in found if c["shortened"]]
                 for label, found in chips.items()}
    assert shortened == {label: [] for label in chips}
    # every criterion, chosen or not, in sight: as chips of a multiselect, eight chosen
    # scrolled inside a box of four rows and the first four were out of sight
    for name in ("Contribution", "k-means clusters", "First-order Taylor", "L2 norm of weights"):
        with rerun_after(page):
            page.get_by_role("button", name=name, exact=True).click()
    pills = page.locator('[data-testid="stButtonGroup"]').filter(
        has=page.get_by_role("button", name="First-order Taylor", exact=True)).first
    shown = [b for b in pills.get_by_role("button").all()
             if b.is_visible() and b.get_attribute("aria-label") != "Help for Criteria"]
    assert sorted(b.inner_text() for b in shown) == sorted(
        criterion_name(c) for c in ALL_CRITERIA)
    box = pills.bounding_box()
    for b in shown:  # none clipped by a scrolling box
        r = b.bounding_box()
        assert box["y"] <= r["y"] and r["y"] + r["height"] <= box["y"] + box["height"] + 1


def test_enter_on_a_typed_batch_size_adds_that_number_not_the_presets_it_is_in(
        app_page, streamlit_server):
    """'0' + Enter in Batch sizes added 4000 and 60000: the filter matched every preset
    holding a 0 and Enter took the first row, "Select 2 matches". Now '0' is added as
    typed and refused by name alone."""
    page = app_page
    open_app(page, streamlit_server, "compare")
    _open_form(page)
    box = page.locator('[data-testid="stMultiSelect"]').filter(
        has=page.get_by_text("Batch sizes", exact=True)).first
    box.get_by_role("combobox").click()
    page.keyboard.type("0")
    expect(page.get_by_role("option", name="Add: 0")).to_be_visible()
    with rerun_after(page):
        page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    assert [c["text"] for c in multiselect_chips(page, "Batch sizes")] == ["64", "0"]
    errors = page.locator('[data-testid="stAlert"]').filter(has_text="batch size")
    expect(errors).to_have_count(1)
    assert errors.first.inner_text().strip() == "Batch sizes must be whole numbers ≥ 1, got 0"


def test_a_number_out_of_range_is_said_under_its_field_and_nothing_starts(app_page,
                                                                         streamlit_server):
    """0 typed in Dense epochs showed a red box with a hover tooltip, and Start ran the
    sweep with the 5 before it; now the page says why and Start is greyed."""
    page = app_page
    open_app(page, streamlit_server, "compare")
    _open_form(page)
    fill_field(page, "Dense epochs", "0")
    expect(page.get_by_text("Dense epochs must be a whole number from 1 to 10,000, got 0",
                            exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Start sweep")).to_be_disabled()
    fill_field(page, "Dense epochs", "2")
    expect(page.get_by_role("button", name="Start sweep")).to_be_enabled()


def test_build_run_see_charts_download_csv(app_page, streamlit_server, tmp_path,
                                           no_stray_workers):
    page = app_page
    open_app(page, streamlit_server, "compare")
    expect(page.get_by_role("heading", name="Compare", exact=True)).to_be_visible()
    _open_form(page)

    fill_field(page, "Ratios (% removed)", "0, 50")
    fill_field(page, "Dense epochs", "2")
    fill_field(page, "Sweep name", SWEEP_NAME)
    # default grid: MLP on Digits, neuron pruning by IASA / L1 / random, weight masks by
    # magnitude / random: (3 + 2) criteria × 2 ratios
    expect(page.get_by_text(re.compile(r"10 cells over 1 dense baseline "))).to_be_visible()
    expect(page.get_by_text(re.compile(r"estimated ≈"))).to_be_visible()

    with rerun_after(page):
        page.get_by_role("button", name="Start sweep").click()
    # the form closes, so the sweep's live status is in view
    expect(page.get_by_label("Ratios (% removed)", exact=True)).to_be_hidden()
    expect(page.get_by_text("finished", exact=True)).to_be_visible(timeout=180_000)
    wait_for_app(page)
    expect(page.get_by_text("10 of 10 cells")).to_be_visible()

    # the accuracy-vs-ratio chart has a line per criterion, with points at 0 and 50 %
    wait_for_charts(page)
    # one chart per panel (and one of legends): the marks of all of them
    marks = " ".join(m for i in range(page.locator('[data-testid="stVegaLiteChart"]').count())
                     for m in chart_marks(page, i))
    for criterion in ("Interval adjoint", "L1 norm of weights", "Random", "Weight magnitude"):
        assert f"Criterion: {criterion}" in marks, marks[:500]
    assert re.search(r"Pruned \(%\): 50", marks)
    expect(page.get_by_text("Masks are not speed-ups.", exact=False)).to_be_visible()

    page.get_by_role("tab", name="Accuracy vs MACs").click()
    wait_for_charts(page)
    assert clipped_chart_titles(page) == []  # every chart title whole
    expect(page.get_by_text("Pareto front", exact=False).first).to_be_visible()

    page.get_by_role("tab", name="Table").click()
    with page.expect_download() as info:
        page.get_by_role("button", name="Download results.csv").click()
    # named by the sweep's day and name: a plain "results.csv" of two sweeps collided
    assert re.fullmatch(rf"\d{{4}}-\d\d-\d\d_{re.escape(SWEEP_NAME)}_results\.csv",
                        info.value.suggested_filename), info.value.suggested_filename
    target = tmp_path / "results.csv"
    info.value.save_as(target)
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert len(rows) == 10
    assert {r["criterion"] for r in rows} == {"interval_adjoint", "l1", "random", "magnitude"}
    zero = [r for r in rows if float(r["ratio"]) == 0]
    assert all(r["test_acc"] == r["dense_test_acc"] for r in zero)
    assert all(r["status"] == "ok" for r in rows)


@pytest.fixture(scope="module")
def faceted_sweep() -> str:
    """A finished sweep whose charts have many panels: MLP on Digits, two batch sizes,
    three pruning types (made by the CLI into the session's sweeps folder, ~10 s)."""
    name = f"pw-narrow-{int(time.time())}"
    subprocess.run([sys.executable, "-m", "explorer_core", "compare", "--quiet", "--name", name,
                    "--models", "mlp", "--batch-sizes", "64", "128",
                    "--types", "neuron", "weight", "unstructured",
                    "--criteria", "l1", "random", "magnitude", "--ratios", "0", "0.5",
                    "--dense-epochs", "1", "--mlp-hidden", "32", "16",
                    "--latency-repeats", "2", "--calibration-samples", "256"],
                   cwd=ROOT, env=os.environ.copy(), check=True, timeout=300)
    return name


@contextmanager
def _sweep_in_window(browser, server: str, sweep: str, width: int) -> Iterator:
    """A page of its own context, `width` px wide, showing `sweep` on the Compare page."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.set_default_timeout(RUN_TIMEOUT_MS)
    page = context.new_page()
    try:
        open_app(page, server, "compare")
        with rerun_after(page):
            choose_option(page, "Sweep", sweep)
        yield page
    finally:
        context.close()


@pytest.fixture(scope="module")
def cnn_and_mlp_sweep() -> str:
    """A finished sweep sharing cell ids with `faceted_sweep` (its MLP cells), listing a
    CNN's cells first."""
    name = f"pw-two-{int(time.time())}"
    subprocess.run([sys.executable, "-m", "explorer_core", "compare", "--quiet", "--name", name,
                    "--models", "cnn", "mlp", "--batch-sizes", "64", "--types", "neuron",
                    "--criteria", "l1", "--ratios", "0", "0.5", "--dense-epochs", "1",
                    "--mlp-hidden", "32", "16", "--latency-repeats", "2",
                    "--calibration-samples", "256"],
                   cwd=ROOT, env=os.environ.copy(), check=True, timeout=300)
    return name


def test_the_list_of_sweeps_follows_a_sweep_that_ends_beside_the_one_shown(
        browser, streamlit_server, faceted_sweep):
    """A sweep started beside the one shown went on reading "running" in "All sweeps"
    long after it had finished: a page showing a finished sweep never reran by itself.
    The test holds the other sweep's lock and writes its status, as its worker would."""
    import shutil

    from explorer_core.rundir import RunLock, write_status
    from explorer_core.sweep import SweepConfig, create_sweep

    beside = create_sweep(SweepConfig(name=f"pw-beside-{int(time.time())}", ratios=[0.0]))
    try:
        with RunLock(beside):
            write_status(beside, "running", message="training the dense baseline")
            with _sweep_in_window(browser, streamlit_server, faceted_sweep, 1400) as page:
                page.get_by_text(re.compile(r"^All sweeps")).click()
                listed = page.locator('[data-testid="stExpander"]').filter(
                    has_text="All sweeps").locator('[data-testid="stDataFrame"]')
                expect(listed).to_contain_text("training the dense baseline")
                write_status(beside, "finished", message="the sweep beside it ended")
                expect(listed).to_contain_text("the sweep beside it ended", timeout=20_000)
                expect(listed).not_to_contain_text("running")
                expect(page.get_by_text(re.compile(r"^Status:"))).to_contain_text("finished")
    finally:
        shutil.rmtree(beside.root, ignore_errors=True)


def _cell_to_inspect(page) -> tuple[str, list[str]]:
    """(the cell the "Cell to inspect" box shows, the cells its list offers)."""
    box = page.locator('[data-testid="stSelectbox"]').filter(
        has=page.get_by_text("Cell to inspect", exact=True))
    expect(box).to_be_visible()
    combo = box.get_by_role("combobox")
    shown = combo.input_value().strip()  # the chosen cell's name
    combo.scroll_into_view_if_needed()  # the list opens only for a box in view
    combo.click()
    expect(page.get_by_role("option").first).to_be_visible()
    options = [o.inner_text().strip() for o in page.get_by_role("option").all()]
    page.keyboard.press("Escape")
    return shown, options


def test_the_cell_to_inspect_is_one_of_the_sweep_shown(browser, streamlit_server, faceted_sweep,
                                                       cnn_and_mlp_sweep):
    """After a switch to another sweep the box kept naming the first sweep's cell, with
    that sweep's accuracy, while Open on the Inspect page took the new list's first
    cell: another model than the one named. (And the second pick of a sweep went back to
    the first: the picker was another widget whenever its choice changed.)"""
    with _sweep_in_window(browser, streamlit_server, faceted_sweep, 1400) as page:
        page.get_by_role("tab", name="Table").click()
        first, offered = _cell_to_inspect(page)
        assert first in offered and first.startswith("MLP")
        with rerun_after(page):
            choose_option(page, "Sweep", cnn_and_mlp_sweep)
        expect(page.get_by_role("combobox", name="Sweep", exact=True)).to_have_value(
            re.compile(re.escape(cnn_and_mlp_sweep)))
        wait_for_app(page)
        expect(page.get_by_text("4 of 4 cells")).to_be_visible()  # this sweep's page
        page.get_by_role("tab", name="Table").click()
        shown, offered = _cell_to_inspect(page)
        # the same cell, read from this sweep (its own accuracy; this sweep has one batch
        # size, so its names leave the batch out)
        assert shown in offered and shown.split(" — ")[0] == \
            first.split(" — ")[0].replace(" · batch 64", ""), (shown, offered)
        with rerun_after(page):
            page.get_by_role("button", name="Open on the Inspect page").click()
        expect(page.get_by_text(re.compile(re.escape(cnn_and_mlp_sweep) + r" · MLP")).first
               ).to_be_visible()


def test_an_800_px_window_shows_the_whole_page_with_nothing_cut_off(browser, streamlit_server,
                                                                    faceted_sweep):
    """In an 800-px window (a laptop demo, half a screen) with the sidebar open, the
    form's chips read one letter, the faceted charts ran 130–430 px past the page's edge
    and metrics were cut. Every chart, metric and chip of the page now fits."""
    with _sweep_in_window(browser, streamlit_server, faceted_sweep, 800) as page:
        _open_form(page)
        expect(page.get_by_text("Cells done", exact=True)).to_be_visible()
        found = {}
        for tab in ("Accuracy vs ratio", "Accuracy vs MACs", "Batch size", "Table"):
            page.get_by_role("tab", name=tab).click()
            wait_for_charts(page)
            # a chart title cut off: the batch-size charts', squeezed into their height
            found[tab] = overflowing(page) + clipped_chart_titles(page)
        assert found == {tab: [] for tab in found}


# Boxes of the visible charts and the width of the main column's content.
_CHART_BOXES_JS = """() => {
  const main = document.querySelector('[data-testid="stMainBlockContainer"]');
  const style = getComputedStyle(main);
  const box = main.getBoundingClientRect();
  const column = box.width - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const charts = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
    .filter(c => c.offsetParent !== null).map(c => c.getBoundingClientRect())
    .map(r => ({left: r.left - box.left - parseFloat(style.paddingLeft), top: r.top,
                width: r.width, height: r.height}));
  return {column, charts};
}"""


def test_a_1400_px_window_shows_the_panels_three_a_row_across_the_column(
        browser, streamlit_server, faceted_sweep):
    """Faceted charts sized for an 800-px window drew their panels 175 px wide, two a row,
    on a 1400-px screen: under half of the 940-px column. Each panel is now its own chart
    in a wrapping row: three a row here, using most of the column."""
    with _sweep_in_window(browser, streamlit_server, faceted_sweep, 1400) as page:
        page.get_by_role("tab", name="Accuracy vs ratio").click()
        wait_for_charts(page)
        found = page.evaluate(_CHART_BOXES_JS)
        panels = [c for c in found["charts"] if c["width"] < 0.5 * found["column"]]
        first_row = [c for c in panels if abs(c["top"] - panels[0]["top"]) < 2] if panels else []
        assert len(first_row) >= 3, found  # three types: three panels side by side
        used = max(c["left"] + c["width"] for c in first_row) - min(c["left"] for c in first_row)
        assert used >= 0.8 * found["column"], (used, found)
        assert overflowing(page) == []
