"""The Retention curve page in real headless Chromium: what a person sees and downloads."""
from __future__ import annotations

from pathlib import Path

import pytest

from playwright.sync_api import expect

from browser import chart_marks, clipped_chart_titles, open_app, rerun_after, wait_for_charts

# 256/64 halved each iteration (q = 0.5), floored at 1 neuron, computed by hand.
RETAIN_Q_HALF = """Iteration h1NodesRetained h2NodesRetained perNodesRetained
0 256 64 100
1 128 32 50
2 64 16 25
3 32 8 12.5
4 16 4 6.25
5 8 2 3.125
6 4 1 1.5625
7 2 1 0.9375
8 1 1 0.625
"""


def cell(page, col: int, row: int):
    return page.locator(f'[data-testid="stDataFrame"] [data-testid="glide-cell-{col}-{row}"]')


def iteration_chart_point(page, iteration: int, kept: int):
    return page.locator('[data-testid="stVegaLiteChart"]').first.locator(
        f'svg [aria-label^="Iteration: {iteration}; Neurons kept: {kept};"]')


def dialogs(page) -> list[str]:
    """Texts of the modal dialogs over the page once its script run has ended (Streamlit's
    "Page not found" arrives during the run, so by then it would be showing)."""
    return page.get_by_role("dialog").all_inner_texts() + \
        page.get_by_text("Page not found").all_inner_texts()


def set_q(page, value: str) -> None:
    with rerun_after(page):
        box = page.get_by_role("spinbutton", name="q (keep factor)")
        box.fill(value)
        box.press("Enter")


def test_change_q_see_table_and_chart_change_and_download_retain(app_page, streamlit_server,
                                                                 tmp_path):
    page = app_page
    open_app(page, streamlit_server)
    expect(page.get_by_role("heading", name="Retention curve")).to_be_visible()
    wait_for_charts(page)
    assert clipped_chart_titles(page) == []  # every chart title whole

    # the thesis schedule: iteration 7 keeps 54 and 13 neurons (columns: Iteration, the
    # schedule step t — shown as this schedule skips steps —, layer 1, layer 2, %)
    expect(cell(page, 2, 7)).to_have_text("54")
    expect(cell(page, 3, 7)).to_have_text("13")
    expect(iteration_chart_point(page, 7, 54)).to_have_count(1)
    before = chart_marks(page, 0)

    set_q(page, "0.5")

    # q = 0.5 skips no step: no t column
    expect(page.locator('[data-testid="stDataFrame"]')).not_to_contain_text("t (schedule step)")
    expect(cell(page, 1, 1)).to_have_text("128")
    expect(cell(page, 2, 1)).to_have_text("32")
    expect(iteration_chart_point(page, 1, 128)).to_have_count(1)
    expect(iteration_chart_point(page, 7, 54)).to_have_count(0)
    after = chart_marks(page, 0)
    assert after != before
    assert not any(m.startswith("Iteration: 9;") for m in after)  # 9 rows: iterations 0–8
    assert page.locator('[data-testid="stException"]').count() == 0

    with page.expect_download() as download:
        page.get_by_role("button", name="retain.txt").click()
    assert download.value.suggested_filename == "retain.txt"
    saved = tmp_path / "retain.txt"
    download.value.save_as(saved)
    assert saved.read_text() == RETAIN_Q_HALF


def test_out_of_range_q_shows_an_error_and_the_page_recovers(app_page, streamlit_server):
    page = app_page
    open_app(page, streamlit_server)
    set_q(page, "1.5")
    alert = page.locator('[data-testid="stAlert"]')
    expect(alert).to_contain_text("q must lie strictly between 0 and 1")
    assert page.locator('[data-testid="stException"]').count() == 0
    expect(page.locator('[data-testid="stDataFrame"]')).to_have_count(0)

    set_q(page, "0.8")
    expect(alert).to_have_count(0)
    expect(cell(page, 2, 8)).to_have_text("43")


def test_q_shows_as_typed_and_a_ramp_ignores_it(app_page, streamlit_server):
    """q = 0.0001 showed as "0.000" (and was accepted, while 0 is refused); q = 5 blocked
    the linear schedule, whose description says q is not used."""
    page = app_page
    open_app(page, streamlit_server)
    box = page.get_by_role("spinbutton", name="q (keep factor)")
    alert = page.locator('[data-testid="stAlert"]')
    set_q(page, "0.0001")
    expect(box).to_have_value("0.0001")
    expect(alert).to_have_count(0)
    set_q(page, "5")
    expect(alert).to_contain_text("q must lie strictly between 0 and 1")
    with rerun_after(page):
        page.get_by_text("linear", exact=True).click()
    expect(alert).to_have_count(0)
    expect(box).to_be_disabled()
    expect(page.locator('[data-testid="stDataFrame"]')).to_have_count(1)


def test_the_step_t_and_why_it_differs_from_the_iteration(app_page, streamlit_server):
    """Row 22 of 256, 64 at q = 0.8 shows 1 neuron, while the caption's formula gives
    round(256 · 0.8^22) = 2: two steps repeated the row before and were skipped."""
    page = app_page
    open_app(page, streamlit_server)
    frame = page.locator('[data-testid="stDataFrame"]')
    expect(frame).to_contain_text("t (schedule step)")
    expect(page.get_by_text("Iteration counts the pruning iterations actually run")).to_contain_text(
        "row 22 is t = 24")


def test_png_download_is_a_png(app_page, streamlit_server, tmp_path):
    page = app_page
    open_app(page, streamlit_server)
    with page.expect_download() as download:
        page.get_by_role("button", name="pruneNodesDistribution.png").click()
    saved = Path(tmp_path / download.value.suggested_filename)
    download.value.save_as(saved)
    assert saved.name == "pruneNodesDistribution.png"
    assert saved.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_deep_link_on_a_fresh_server_opens_the_page_inside_the_app(browser):
    """First visit straight to /retention: Streamlit must not fall back to its legacy
    pages/ folder mode (which would list every file in pages/ as a page)."""
    from browser import start_streamlit

    server = start_streamlit()  # its own server: the first request decides the mode
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        open_app(page, server.url, "retention")
        expect(page.get_by_role("heading", name="Retention curve")).to_be_visible()
        expect(cell(page, 2, 7)).to_have_text("54")
        nav = page.locator('[data-testid="stSidebarNav"]')
        expect(nav).to_contain_text("Retention curve")
        expect(nav).not_to_contain_text("_common")
        expect(nav).not_to_contain_text("common")
        assert dialogs(page) == []
    finally:
        context.close()
        server.stop()


def test_root_and_retention_addresses_open_without_a_dialog(browser, streamlit_server):
    """Streamlit serves its default page at / and did not know the default's url_path: on a
    server past its first visit, /retention (a bookmark, the address bar after a reload)
    showed the "Page not found" dialog over the page. / now goes on to /retention."""
    seen = {}
    for visit, url_path in enumerate(("", "retention", "retention")):  # warm after the first
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            page = context.new_page()
            open_app(page, streamlit_server, url_path)
            expect(page.get_by_role("heading", name="Retention curve")).to_be_visible()
            seen[visit, f"/{url_path}"] = (dialogs(page), page.url)
            expect(cell(page, 2, 7)).to_have_text("54")
            nav = page.locator('[data-testid="stSidebarNav"]')
            expect(nav.get_by_role("link")).to_have_count(5)  # the start page stays hidden
        finally:
            context.close()
    assert {k: d for k, (d, _) in seen.items() if d} == {}
    # the address names the page shown, so a reload or a bookmark comes back to it
    assert all(url.endswith("/retention") for _, url in seen.values()), seen


@pytest.mark.parametrize("url_path, heading", [("iterative", "Iterative pruning"),
                                               ("compare", "Compare"),
                                               ("train_time", "Train-time pruning"),
                                               ("inspect", "Inspect")])
def test_every_page_opens_from_a_deep_link_on_a_fresh_server(browser, url_path, heading):
    """A bookmark to any page works as the first request: no 'Page not found' dialog
    (Streamlit's pages/ mode names pages by file, so url_path must match the file)."""
    from browser import start_streamlit

    server = start_streamlit()
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        open_app(page, server.url, url_path)
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        assert dialogs(page) == []
        expect(page.locator('[data-testid="stException"]')).to_have_count(0)
    finally:
        context.close()
        server.stop()
