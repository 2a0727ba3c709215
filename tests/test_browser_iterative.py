"""The Iterative pruning page in headless Chromium, as a user drives it.

Start a short run on Digits, watch the live charts update, leave for another page and
come back, stop it, resume it, and download validations.txt.
"""
from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import expect

from explorer_core import jobs
from explorer_core.rundir import list_runs

from browser import (choose_option, clipped_chart_titles, cut_labels, enter_in_field,
                     fill_field, open_app, open_setup_form,
                     rerun_after, wait_for_app, wait_for_charts)

RUN_NAME = f"pw-{int(time.time())}"


def _progress_text(page) -> str:
    return page.locator('[data-testid="stProgress"]').inner_text()


def _epochs_done(page) -> int:
    m = re.search(r"epoch (\d+)/(\d+)", _progress_text(page))
    return int(m.group(1)) if m else -1


def _wait_until(predicate, timeout_s: float = 90.0, what: str = "condition") -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            if predicate():
                return
        except Exception:  # the fragment may be mid-redraw
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


# Per visible chart: how wide it is against its container and the page's content column,
# how wide its plot area is, and whether its legends lie inside the container.
_CHART_FIT_JS = """() => {
  const main = document.querySelector('[data-testid="stMainBlockContainer"]');
  const mb = main.getBoundingClientRect();
  const right = mb.right - parseFloat(getComputedStyle(main).paddingRight);
  return [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
    .filter(c => c.offsetParent !== null).map(c => {
      const box = c.getBoundingClientRect();
      const svg = c.querySelector('svg').getBoundingClientRect();
      const plot = c.querySelector('svg .role-frame path.background');
      return {title: (c.querySelector('svg .role-title text') || {}).textContent || '?',
              svg: svg.width, container: box.width, overflow: svg.right - Math.min(box.right, right),
              plot: plot ? plot.getBoundingClientRect().width : 0,
              legends_out: [...c.querySelectorAll('svg .role-legend')].map(l => l.getBoundingClientRect())
                .filter(r => r.left < box.left - 1 || r.right > Math.min(box.right, right) + 1).length};
    });
}"""


def chart_fit_problems(page, min_plot: float = 150) -> list[str]:
    """Charts wider than their column or the page, legends cut off, plots squeezed thin."""
    problems = []
    for c in page.evaluate(_CHART_FIT_JS):
        if c["svg"] > c["container"] + 1 or c["overflow"] > 1:
            problems.append(f"{c['title']}: {c['svg']:.0f} px in {c['container']:.0f} px")
        if c["legends_out"]:
            problems.append(f"{c['title']}: legend outside the chart")
        if c["plot"] < min_plot:
            problems.append(f"{c['title']}: plot only {c['plot']:.0f} px wide")
    return problems


@pytest.fixture
def no_stray_workers():
    """Workers outlive the page by design; the test must not leave one running."""
    yield
    for run in list_runs():
        jobs.kill(run)


def test_run_watch_leave_stop_resume_download(app_page, streamlit_server, tmp_path,
                                              no_stray_workers):
    page = app_page
    open_app(page, streamlit_server, "iterative")
    expect(page.get_by_role("heading", name="Iterative pruning")).to_be_visible()
    # the set-up form is folded away once runs exist (other tests may have made some)
    open_setup_form(page, "New run", "Hidden widths (MLP)")

    fill_field(page, "Hidden widths (MLP)", "32, 16")
    fill_field(page, "q (keep factor per iteration)", "0.6")
    fill_field(page, "Schedule iterations", "6")
    fill_field(page, "Dense epochs", "3")
    fill_field(page, "Retrain epochs per iteration", "40")
    fill_field(page, "Batch size", "4")  # slow enough that the Stop lands mid-run
    # the criterion sits above the form so that interval-adjoint's options follow it:
    # choosing it reruns the page, and the values typed into the form stay
    eps = page.get_by_label("Interval-adjoint ε (0 = box around the training set)", exact=True)
    expect(eps).to_be_enabled()
    with rerun_after(page):
        choose_option(page, "Criterion", "L2")
    expect(eps).to_be_disabled()
    expect(page.get_by_role("checkbox", name="Interval-adjoint per-class seeds")).to_be_disabled()
    expect(page.get_by_label("Hidden widths (MLP)", exact=True)).to_have_value("32, 16")
    expect(page.get_by_label("Batch size", exact=True)).to_have_value("4")
    fill_field(page, "Run name", RUN_NAME)
    with rerun_after(page):
        page.get_by_role("button", name="Start run").click()

    # live view: progress advances and the epoch chart is drawn and redrawn
    _wait_until(lambda: _epochs_done(page) >= 1, what="first epoch")
    expect(page.locator(".vega-embed").first).to_be_visible()
    first = _epochs_done(page)
    _wait_until(lambda: _epochs_done(page) > first + 3, what="progress to advance")
    _wait_until(lambda: page.locator(".vega-embed").count() >= 4, what="per-iteration charts")

    # leave and come back: the run kept going in the background
    before_leaving = _epochs_done(page)
    page.get_by_role("link", name="Retention curve").click()
    expect(page.get_by_role("heading", name="Retention curve")).to_be_visible()
    wait_for_app(page)
    time.sleep(2)
    page.get_by_role("link", name="Iterative pruning").click()
    expect(page.get_by_role("heading", name="Iterative pruning")).to_be_visible()
    wait_for_app(page)
    expect(page.get_by_role("combobox", name="Run", exact=True)).to_have_value(
        re.compile(re.escape(RUN_NAME)))
    _wait_until(lambda: _epochs_done(page) > before_leaving, what="progress after returning")

    # stop it cleanly; the toast is drawn by the fragment's rerun, not by the callback
    page.get_by_role("button", name="Stop").click()
    expect(page.locator('[data-testid="stToast"]')).to_contain_text("Stop requested")
    # exact: the field beside it is "Resume from iteration"
    resume = page.get_by_role("button", name="Resume", exact=True)
    _wait_until(lambda: resume.is_visible(), what="stopped")
    expect(page.get_by_text("stopped").first).to_be_visible()
    stopped_at = _epochs_done(page)

    # resume to the end
    wait_for_app(page)  # the page redraws itself once when the run ends
    with rerun_after(page):
        resume.click()
    # the run's own status heading: "finished" anywhere on the page (another run's) let
    # the test go on while this one was still queued
    _wait_until(lambda: page.get_by_role("heading", name="Status: finished").is_visible(),
                timeout_s=180, what="finished")
    wait_for_app(page)
    assert _epochs_done(page) > stopped_at
    wait_for_charts(page)
    assert clipped_chart_titles(page) == []  # every chart title whole
    assert chart_fit_problems(page) == []  # 1400 px wide

    # a 1100 px laptop window: every chart still fits its column, legends and all
    page.set_viewport_size({"width": 1100, "height": 800})
    try:
        _wait_until(lambda: chart_fit_problems(page) == [], timeout_s=15, what="charts to fit")
    except AssertionError:
        pass
    assert chart_fit_problems(page) == []
    assert len(page.evaluate(_CHART_FIT_JS)) == 5
    page.set_viewport_size({"width": 1400, "height": 1000})

    with page.expect_download() as info:
        page.get_by_role("button", name="Download validations.txt").click()
    # named by the run's day and name: a plain "validations.txt" of two runs collided
    assert re.fullmatch(rf"\d{{4}}-\d\d-\d\d_{re.escape(RUN_NAME)}_validations\.txt",
                        info.value.suggested_filename), info.value.suggested_filename
    target = tmp_path / "validations.txt"
    info.value.save_as(target)
    lines = target.read_text().splitlines()
    assert lines[0] == "Train_Loss Test_Loss Train_Accuracy Test_Accuracy PercentageRetain"
    # 32/16 at q=0.6: (32,16) (19,10) (12,6) (7,3) (4,2) (2,1): six iterations incl. dense
    assert len(lines) == 1 + 6
    assert float(lines[1].split()[4]) == 100


def test_a_file_that_is_no_table_and_an_enter_in_a_field_start_no_run(app_page, streamlit_server,
                                                                       tmp_path,
                                                                       no_stray_workers):
    """Two ways a run started that the user did not ask for. The retain.txt uploader only
    took .txt files: the browser refused a .png with its own note, and Start run then
    started a 31-iteration run on the form's schedule. And Enter in any number field
    submitted the form, so each stray Enter started a background training run."""
    page = app_page
    open_app(page, streamlit_server, "iterative")
    open_setup_form(page, "New run", "Hidden widths (MLP)")
    before = {r.root for r in list_runs()}

    fill_field(page, "Run name", f"enter-{int(time.time())}")
    enter_in_field(page, "Dense epochs", "2")
    assert {r.root for r in list_runs()} == before
    expect(page.get_by_label("Dense epochs", exact=True)).to_have_value("2")

    picture = tmp_path / "wrong.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    page.locator('[data-testid="stFileUploader"]').filter(
        has_text="follow a retain.txt").locator('input[type="file"]').set_input_files(picture)
    with rerun_after(page):
        page.get_by_role("button", name="Start run").click()
    expect(page.locator('[data-testid="stAlertContentError"]')).to_contain_text(
        "wrong.png is not a text file")
    assert {r.root for r in list_runs()} == before



def test_the_form_and_its_retain_txt_are_kept_after_a_visit_to_another_page(
        app_page, streamlit_server, tmp_path, no_stray_workers):
    """Set, then left for another page, the form came back with every default and no
    upload: Start would have run the defaults. Now the run follows what was set."""
    page = app_page
    open_app(page, streamlit_server, "iterative")
    open_setup_form(page, "New run", "Hidden widths (MLP)")
    table = tmp_path / "mine.txt"
    table.write_text("Iteration h1NodesRetained h2NodesRetained perNodesRetained\n"
                     "0 16 8 100\n1 12 8 83.3333\n")
    with rerun_after(page):
        page.locator('[data-testid="stFileUploader"]').filter(
            has_text="follow a retain.txt").locator('input[type="file"]').set_input_files(table)
    name = f"kept-{int(time.time())}"
    for label, value in (("Dense epochs", "2"), ("Seed", "5"), ("Run name", name)):
        with rerun_after(page):
            page.get_by_label(label, exact=True).fill(value)
            page.get_by_label(label, exact=True).press("Enter")
    with rerun_after(page):
        page.get_by_role("link", name="Compare").click()
    with rerun_after(page):
        page.get_by_role("link", name="Iterative pruning").click()
    open_setup_form(page, "New run", "Hidden widths (MLP)")
    expect(page.get_by_label("Dense epochs", exact=True)).to_have_value("2")
    expect(page.get_by_label("Run name", exact=True)).to_have_value(name)
    expect(page.get_by_text("Using the file uploaded before: mine.txt")).to_be_visible()
    with rerun_after(page):
        page.get_by_role("button", name="Start run").click()
    _wait_until(lambda: any(r.root.name == name for r in list_runs()), what="the run")
    [run] = [r for r in list_runs() if r.root.name == name]
    config = json.loads(run.config.read_text())
    assert (config["dense_epochs"], config["seed"], config["hidden"]) == (2, 5, [16, 8])
    assert config["schedule"] == {"kind": "table", "rows": [[16, 8], [12, 8]]}
    jobs.wait(run, timeout=120)


def test_the_set_up_forms_cut_no_label_in_an_800_px_window(app_page, streamlit_server):
    """Three columns of fields in an 800-px window cut labels to 'Retrain after e…',
    'Interval-adj…' (Iterative) and 'Also run rando…' (Train-time): which setting a box
    is could not be read."""
    page = app_page
    page.set_viewport_size({"width": 800, "height": 1300})
    open_app(page, streamlit_server, "iterative")
    open_setup_form(page, "New run", "Hidden widths (MLP)")
    expect(page.get_by_role("checkbox", name="Retrain after each pruning step")).to_be_visible()
    assert cut_labels(page) == []
    with rerun_after(page):
        page.get_by_role("link", name="Train-time pruning").click()
    open_setup_form(page, "New comparison", "Total epochs")
    expect(page.get_by_role("checkbox", name="Also run random pruning")).to_be_visible()
    assert cut_labels(page) == []
