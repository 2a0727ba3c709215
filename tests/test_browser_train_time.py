"""The Train-time pruning page in headless Chromium, as a researcher drives it.

Set up a short comparison on Digits, start it, watch it run, and see the three variants'
accuracy curves on one chart, the widths shrinking on schedule, and the final models.
"""
from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from explorer_core import jobs
from explorer_core.rundir import list_train_time_runs

from browser import (chart_marks, choose_option, clipped_chart_titles, enter_in_field,
                     fill_field, open_app, open_setup_form,
                     rerun_after, wait_for_app, wait_for_charts)

RUN_NAME = f"pw-tt-{int(time.time())}"
VARIANTS = ("contribution-pruned", "random-pruned", "no pruning")


@pytest.fixture
def no_stray_workers():
    """Workers outlive the page by design; the test must not leave one running."""
    yield
    for run in list_train_time_runs():
        jobs.kill(run)


def _chart_index(page, title: str) -> int:
    """Position of the Vega chart whose title text is `title` among the page's charts."""
    charts = page.locator('[data-testid="stVegaLiteChart"]')
    for i in range(charts.count()):
        if charts.nth(i).locator("svg text", has_text=title).count():
            return i
    raise AssertionError(f"no chart titled {title!r}")


def _curve_epochs(marks: list[str]) -> dict[str, set[int]]:
    """{variant: epochs with a point} from a curve chart's mark labels
    ('Variant: random-pruned; Epoch: 7; Test accuracy (%): 95.3; …')."""
    out: dict[str, set[int]] = {}
    for m in marks:
        variant, epoch = re.search(r"Variant: ([^;]+)", m), re.search(r"Epoch: (\d+)", m)
        if variant and epoch:
            out.setdefault(variant.group(1), set()).add(int(epoch.group(1)))
    return out


def _open_the_form(page, server_url: str) -> None:
    """The page through the sidebar, as a newcomer would (a first deep link to
    /train-time on a fresh server meets Streamlit's pages/-folder mode, which knows only
    /train_time), with its set-up form open (folded away once comparisons exist)."""
    open_app(page, server_url, "")
    with rerun_after(page):
        page.get_by_role("link", name="Train-time pruning").click()
    expect(page.get_by_role("heading", name="Train-time pruning")).to_be_visible()
    open_setup_form(page, "New comparison", "Total epochs")


def test_short_comparison_shows_three_curves(app_page, streamlit_server, no_stray_workers):
    page = app_page
    _open_the_form(page, streamlit_server)

    fill_field(page, "Total epochs", "12")
    fill_field(page, "Initial epochs before the first prune", "3")
    fill_field(page, "Prune every k epochs", "3")
    fill_field(page, "Run name", RUN_NAME)
    with rerun_after(page):
        page.get_by_role("button", name="Start comparison").click()

    # the run is picked, goes on in the background and ends by itself
    expect(page.get_by_role("combobox", name="Comparison", exact=True)).to_have_value(
        re.compile(re.escape(RUN_NAME)))
    expect(page.get_by_text("finished").first).to_be_visible(timeout=120_000)
    wait_for_app(page)
    wait_for_charts(page)
    assert clipped_chart_titles(page) == []  # every chart title whole

    # one accuracy chart, three curves: every variant has a point at each of the 12 epochs
    # (polled: the page redraws itself once when the run ends, on a busy machine slowly)
    expected = {v: set(range(1, 13)) for v in VARIANTS}
    deadline, seen = time.time() + 60, None
    while time.time() < deadline and seen != expected:
        try:
            seen = _curve_epochs(chart_marks(page, _chart_index(page, "Test accuracy per epoch")))
        except Exception:  # a chart replaced mid-read
            pass
        time.sleep(0.5)
    assert seen == expected, seen
    # prunes after epochs 3, 6, 9: 50-30 → 45-27 → 40-24 → 36-22 for both pruned variants
    widths = chart_marks(page, _chart_index(page, "Units per hidden layer"))
    for variant in VARIANTS[:2]:
        last = [m for m in widths if f"Variant: {variant}" in m and "Epoch: 12" in m]
        assert sorted(re.search(r"Units: (\d+)", m).group(1) for m in last) == ["22", "36"], last
    unpruned = [m for m in widths if "Variant: no pruning" in m and "Epoch: 12" in m]
    assert sorted(re.search(r"Units: (\d+)", m).group(1) for m in unpruned) == ["30", "50"]

    # the final models, with the hand-over to Inspect for a classifier
    expect(page.get_by_role("heading", name="Final models")).to_be_visible()
    expect(page.get_by_role("button", name="Open on the Inspect page")).to_be_visible()
    expect(page.get_by_role("button", name="accuracy.png")).to_be_visible()


def test_vae_comparison_charts_and_images(app_page, streamlit_server):
    """A finished VAE comparison: loss curves with whole titles, and image grids."""
    from explorer_core.train_time import TrainTimeConfig, create_run, execute

    cfg = TrainTimeConfig(name=f"pw-vae-{int(time.time())}", task="vae", dataset="digits",
                          epochs=6, initial_epochs=2, prune_every=2, seeds=[0]).validate()
    paths = create_run(cfg)
    assert execute(paths)["state"] == "finished"

    page = app_page
    open_app(page, streamlit_server, "train_time")
    combo = page.get_by_role("combobox", name="Comparison", exact=True)
    if cfg.name not in (combo.input_value() or ""):
        with rerun_after(page):
            choose_option(page, "Comparison", cfg.name)
    wait_for_charts(page)
    for title in ("Test reconstruction loss per epoch", "Test KL divergence per epoch",
                  "Test loss (reconstruction + KL)", "Units per hidden layer"):
        _chart_index(page, title)
    # the long y-axis titles once pushed these titles out of their stretched charts
    assert clipped_chart_titles(page) == []
    for variant in VARIANTS:
        expect(page.get_by_text(variant, exact=True).first).to_be_visible()
    # a "PNG" button under each picture ('reconstructions.png' was cut at 800 px)
    pngs = [b for b in page.get_by_role("button").all()
            if b.inner_text().strip().endswith("PNG") and ".png" not in b.inner_text()]
    assert len(pngs) == 2 * len(VARIANTS), [b.inner_text() for b in pngs]


def test_enter_in_a_field_starts_no_comparison(app_page, streamlit_server, no_stray_workers):
    """Enter in any field of the form submitted it: each stray Enter started a background
    comparison of three variants."""
    page = app_page
    _open_the_form(page, streamlit_server)
    before = {r.root for r in list_train_time_runs()}
    fill_field(page, "Run name", f"enter-{int(time.time())}")  # each with an Enter
    fill_field(page, "Total epochs", "4")
    fill_field(page, "Initial epochs before the first prune", "1")
    enter_in_field(page, "Prune every k epochs", "1")
    assert {r.root for r in list_train_time_runs()} == before
    expect(page.get_by_label("Total epochs", exact=True)).to_have_value("4")
