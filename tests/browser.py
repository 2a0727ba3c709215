"""Driving the real app in headless Chromium: start `streamlit run app.py`, open pages, wait.

Used through the fixtures in conftest.py (`streamlit_server`, `browser`, `app_page`);
import the helpers directly in browser tests:

    from browser import chart_marks, open_app, rerun_after, wait_for_charts

    def test_my_page(app_page, streamlit_server):
        open_app(app_page, streamlit_server, "compare")    # st.Page url_path, "" = default
        with rerun_after(app_page):                         # waits for the rerun it causes
            app_page.get_by_role("spinbutton", name="Epochs").fill("3")
            app_page.keyboard.press("Enter")
        wait_for_charts(app_page)
        assert any("Epoch: 3" in m for m in chart_marks(app_page, 0))

Locate inputs by role + name: `get_by_label` also matches the "Help for …" tooltip
button Streamlit adds next to labels with `help=`. Tables drawn by `st.dataframe` are
canvases; their cells are readable as `[data-testid="glide-cell-<col>-<row>"]`.

Only Debian's /usr/bin/chromium is used (never `playwright install`, no downloads), and
a missing Chromium fails the test instead of skipping it: CI installs the package.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic",
                 "--no-first-run"]
# Generous: the first script run imports torch and Altair on a 2-core machine.
STARTUP_TIMEOUT_S = 90
RUN_TIMEOUT_MS = 60_000

# The app has finished a script run and drawn it: connected, script idle, no running-man
# icon, and no skeletons (element code is lazy-loaded; a busy machine shows placeholders
# for seconds after the run has ended).
_IDLE_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return !!app
    && app.getAttribute('data-test-connection-state') === 'CONNECTED'
    && app.getAttribute('data-test-script-state') === 'notRunning'
    && !document.querySelector('[data-testid="stStatusWidgetRunningIcon"]')
    && !document.querySelector('[data-testid="stSkeleton"], [data-testid="stAppSkeleton"]');
}"""

# Counts script runs that start from now on, so a wait cannot pass on the *previous*
# idle state before the rerun triggered by an input has even begun.
_COUNT_RUNS_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  window.__stRunsStarted = 0;
  if (window.__stRunObserver) window.__stRunObserver.disconnect();
  // Judge each mutation record, not the attribute now: a fast run can go
  // notRunning -> running -> notRunning before the observer's callback is called.
  window.__stRunObserver = new MutationObserver((records) => {
    for (const r of records) {
      if (r.oldValue === 'notRunning' || r.target.getAttribute(r.attributeName) !== 'notRunning')
        window.__stRunsStarted++;
    }
  });
  window.__stRunObserver.observe(app, {attributes: true, attributeOldValue: true,
                                       attributeFilter: ['data-test-script-state']});
}"""


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class StreamlitServer:
    """A `streamlit run app.py` child process; `url` is its root, e.g. http://127.0.0.1:8765."""
    process: subprocess.Popen
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop the server and everything it started (its own process group)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)


def start_streamlit(app: Path = ROOT / "app.py", port: int | None = None,
                    timeout_s: float = STARTUP_TIMEOUT_S) -> StreamlitServer:
    """Start the app on 127.0.0.1 and return once its health endpoint answers.

    Raises RuntimeError with the server log if it exits or never answers.
    """
    port = port or free_port()
    log_path = Path(tempfile.mkdtemp(prefix="streamlit-test-")) / "server.log"
    cmd = [sys.executable, "-m", "streamlit", "run", str(app),
           "--server.port", str(port), "--server.address", "127.0.0.1",
           "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", "--server.runOnSave", "false"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, cwd=app.parent, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server = StreamlitServer(process, f"http://127.0.0.1:{port}", log_path)
    try:
        _wait_healthy(server, timeout_s)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_healthy(server: StreamlitServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {server.process.returncode}:\n"
                               f"{server.log()}")
        try:
            with urllib.request.urlopen(server.url + "/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"streamlit did not answer on {server.url} within {timeout_s:.0f} s:\n"
                       f"{server.log()}")


def launch_chromium(playwright):
    """Debian's headless Chromium through Playwright; fails (not skips) when it is missing."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} not found: install the Debian packages 'chromium' "
                           "and 'chromium-driver' (bash .ci/run does)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                      headless=True)


# Idle must hold this long: a script that calls st.rerun() shows "notRunning" for a
# moment between its two runs, and a page would look finished while still blank.
SETTLE_MS = 400
# How long after an input `rerun_after` waits to see the script run start before it
# falls back to waiting for idle alone.
GRACE_MS = 1500

_SETTLED_JS = """([settleMs]) => {
  const idle = (%s)();
  const now = performance.now();
  if (!idle) { window.__stIdleSince = null; return false; }
  if (window.__stIdleSince == null) window.__stIdleSince = now;
  return now - window.__stIdleSince >= settleMs;
}""" % _IDLE_JS


def wait_for_app(page, timeout_ms: int = RUN_TIMEOUT_MS) -> None:
    """Wait until the app is rendered and its script has finished running (and stays so).

    Use after `page.goto` or any time the page should be idle. After an input that
    triggers a rerun, prefer `rerun_after`, which also waits for that rerun to start.
    """
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    page.evaluate("() => { window.__stIdleSince = null; }")
    page.wait_for_function(_SETTLED_JS, arg=[SETTLE_MS], timeout=timeout_ms, polling=100)


@contextmanager
def rerun_after(page, timeout_ms: int = RUN_TIMEOUT_MS) -> Iterator[None]:
    """Run the body (an input that makes Streamlit rerun), then wait for that rerun to finish."""
    page.evaluate(_COUNT_RUNS_JS)
    yield
    # A very short run can start and end inside one React commit, so the state attribute
    # never changes and no run is counted: after a grace period, idle is trusted instead.
    page.evaluate("() => { window.__stInputAt = performance.now(); }")
    page.wait_for_function(
        f"() => window.__stRunsStarted > 0 || performance.now() - window.__stInputAt > {GRACE_MS}",
        timeout=timeout_ms)
    try:
        wait_for_app(page, timeout_ms)
    except Exception as exc:
        raise AssertionError(f"the script run did not finish: {_app_state(page)}") from exc


def _app_state(page) -> str:
    """What the idle check sees, for a failure message."""
    return page.evaluate("""() => {
      const app = document.querySelector('[data-testid="stApp"]');
      return JSON.stringify({
        connection: app && app.getAttribute('data-test-connection-state'),
        script: app && app.getAttribute('data-test-script-state'),
        runningIcon: !!document.querySelector('[data-testid="stStatusWidgetRunningIcon"]'),
        skeletons: document.querySelectorAll('[data-testid="stSkeleton"], [data-testid="stAppSkeleton"]').length,
        exceptions: [...document.querySelectorAll('[data-testid="stException"]')].map(e => e.innerText.slice(0, 300)),
      });
    }""")


def wait_for_charts(page, timeout_ms: int = RUN_TIMEOUT_MS) -> None:
    """Wait until every visible Altair/Vega-Lite chart on the page has drawn its marks.

    vega-embed draws after the script run ends, so `wait_for_app` alone can see empty charts.
    Charts in an inactive tab are skipped: one that stretches to its container has no
    width there and is drawn when its tab is shown.
    """
    page.wait_for_function("""() => [...document.querySelectorAll(
        '[data-testid="stVegaLiteChart"]')].filter(c => c.offsetParent !== null)
        .every(c => c.querySelector('svg .role-frame, canvas'))""", timeout=timeout_ms)


def clipped_chart_titles(page) -> list[str]:
    """Titles of visible charts that are not wholly inside their chart's box.

    A chart that stretches to its column is fitted into a fixed height; anything Vega
    lays out beyond it (a y-axis title longer than the plot is high pushed the chart
    title up) is cut off by the container, which a reader sees as a half-hidden title.
    """
    return page.evaluate("""() => [...document.querySelectorAll(
        '[data-testid="stVegaLiteChart"]')].filter(c => c.offsetParent !== null)
        .flatMap(c => {
          const box = c.getBoundingClientRect();
          // a glyph box pokes a few pixels out of an intact chart; a quarter is a cut
          return [...c.querySelectorAll('svg .role-title text')]
            .filter(t => { const r = t.getBoundingClientRect();
                           const hidden = Math.max(0, box.top - r.top)
                                        + Math.max(0, r.bottom - box.bottom);
                           return hidden > 0.25 * r.height; })
            .map(t => t.textContent); })""")


def overflowing(page) -> list[str]:
    """What a person sees cut off at the right: each visible chart wider than its column
    or the window, each metric whose value or label is cut short ('37.8…'), and each
    multiselect chip squeezed to a few letters ('N…'). Empty on a page that fits.

    Charts: a faceted or concatenated Altair chart keeps the width it was built with,
    so in a narrow window its right panels lay past its column and the page's edge.
    """
    return page.evaluate("""() => {
      const vw = document.documentElement.clientWidth;
      const shown = e => e.offsetParent !== null;
      const cut = e => e && e.scrollWidth > e.clientWidth + 1;
      const found = [];
      document.querySelectorAll('[data-testid="stVegaLiteChart"]').forEach(c => {
        if (!shown(c)) return;
        const column = c.closest('[data-testid="stColumn"], [data-testid="stVerticalBlock"]')
          .getBoundingClientRect();
        const right = Math.max(...[c, ...c.querySelectorAll('svg, canvas')]
          .map(e => e.getBoundingClientRect().right));
        const past = right - Math.min(column.right, vw);
        if (past > 1) {
          const title = c.querySelector('svg .role-title text');
          found.push(`chart '${title ? title.textContent : '?'}' ${Math.round(past)} px ` +
                     `past its column`);
        }
      });
      document.querySelectorAll('[data-testid="stMetric"]').forEach(m => {
        if (!shown(m)) return;
        const value = m.querySelector('[data-testid="stMetricValue"]');
        const label = m.querySelector('[data-testid="stMetricLabel"]');
        const inner = e => e && (e.querySelector('div, p') || e);
        if (cut(inner(value)) || cut(inner(label)) || m.getBoundingClientRect().right > vw + 1)
          found.push(`metric '${label && label.innerText}: ${value && value.innerText}' cut`);
      });
      document.querySelectorAll('[data-testid="stMultiSelect"] [data-tag]').forEach(t => {
        if (!shown(t)) return;
        const text = t.getAttribute('aria-label') || '';
        const span = t.querySelector('span') || t;
        // an ellipsis after a few letters: the chip's own width is under ~10 letters
        if (cut(span) && span.clientWidth < 70)
          found.push(`chip '${text}' squeezed to ${span.clientWidth} px`);
      });
      return found;
    }""")



def fill_field(page, label: str, value: str) -> None:
    """Type `value` into a set-up field and commit it (Enter), waiting for the rerun that
    takes it: the forms are live widgets, and values typed one after another while
    earlier fields' reruns were still drawing were lost on a busy machine (CI: Train-time's
    "Initial epochs" 3 ran as 10)."""
    with rerun_after(page):
        box = page.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Enter")


def enter_in_field(page, label: str, value: str) -> None:
    """Type `value` into a field, press Enter, and give a form submit the time to start
    a run (a page whose form took Enter as a submit started one within a second)."""
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    time.sleep(3)
    wait_for_app(page)

def open_setup_form(page, header: str, field: str) -> None:
    """Unfold a page's set-up expander (`header`) unless its `field` already shows, and
    wait for the rerun its click starts: a field typed into while that rerun was still
    drawing went back to its default (CI saw 'Dense epochs' 2 turn back into 5)."""
    if not page.get_by_label(field, exact=True).is_visible():
        with rerun_after(page):
            page.get_by_text(header, exact=True).click()
    expect(page.get_by_label(field, exact=True)).to_be_visible()


def cut_labels(page) -> list[str]:
    """Texts in the page's main area cut short with an ellipsis ('Retrain after e…'):
    checkbox labels and the like in columns too narrow for them."""
    return page.evaluate("""() => [...document.querySelectorAll('[data-testid="stMain"] *')]
      .filter(e => e.offsetParent !== null && e.textContent.trim()
              && e.scrollWidth > e.clientWidth + 1
              && getComputedStyle(e).textOverflow === 'ellipsis')
      .map(e => e.textContent.trim())""")

def multiselect_chips(page, label: str) -> list[dict]:
    """The chosen options of the multiselect named `label`, each with whether a person
    sees its chip whole: `{"text": …, "visible": bool, "shortened": bool}`.

    A chip counts as hidden when any part of it lies outside its chip area: a single
    row of chips scrolls sideways, so chips past the edge are out of sight. A chip whose
    text is cut with an ellipsis stays inside and counts as seen, but `shortened`.
    """
    widget = page.locator('[data-testid="stMultiSelect"]').filter(
        has=page.get_by_text(label, exact=True))
    return widget.first.evaluate("""el => {
      const area = el.querySelector('[data-testid="stMultiSelectTagsContainer"]')
        .getBoundingClientRect();
      return [...el.querySelectorAll('[data-testid="stMultiSelectTagsContainer"] [data-tag]')]
        .map(t => { const r = t.getBoundingClientRect();
                    const span = t.querySelector('span') || t;
                    return {text: t.getAttribute('aria-label'),
                            visible: r.left >= area.left - 1 && r.right <= area.right + 1
                                     && r.top >= area.top - 1 && r.bottom <= area.bottom + 1,
                            shortened: span.scrollWidth > span.clientWidth + 1}; });
    }""")


def choose_in_multiselect(page, label: str, option: str) -> None:
    """Add `option` (its exact text) to the multiselect named `label` and wait for the rerun."""
    widget = page.locator('[data-testid="stMultiSelect"]').filter(
        has=page.get_by_text(label, exact=True)).first
    with rerun_after(page):
        widget.get_by_role("combobox").click()
        page.get_by_role("option", name=option, exact=True).click()
        page.keyboard.press("Escape")


def chart_marks(page, index: int = 0) -> list[str]:
    """ARIA labels of the marks of the index-th chart, e.g. 'Iteration: 7; Neurons kept: 54; …'.

    Vega writes one per drawn point, so a test can assert what the chart shows in words.
    """
    chart = page.locator('[data-testid="stVegaLiteChart"]').nth(index)
    return chart.locator("svg [aria-label]").evaluate_all(
        "els => els.map(e => e.getAttribute('aria-label'))")


def choose_option(page, label: str, option: str | re.Pattern | int, attempts: int = 4) -> str:
    """Pick `option` (text contained in it, a pattern, or a position in the list) from the
    selectbox named `label`; returns the chosen option's text.

    The list only opens for a select in view, and a redraw of the page (a live fragment
    refreshing, a rerun still settling) can close it, or replace its options, before the
    click lands: so the select is scrolled into view, and opened again if its list did
    not appear or its option could not be clicked within a few seconds. The
    caller wraps this in `rerun_after` when the choice makes the script run again.
    """
    if isinstance(option, int):
        choice = page.get_by_role("option").nth(option)
        wanted = f"option {option}"
    else:
        pattern = option if isinstance(option, re.Pattern) else re.compile(re.escape(option))
        choice = page.get_by_role("option", name=pattern).first
        wanted = repr(pattern.pattern)
    combo = page.get_by_role("combobox", name=label, exact=True).first
    for _ in range(attempts):
        combo.scroll_into_view_if_needed()
        combo.click()
        try:
            choice.wait_for(state="visible", timeout=5_000)
            text = choice.inner_text(timeout=5_000)
            # bounded: a list redrawn under the pointer detaches the option, and an
            # unbounded click kept retrying it for the whole 60 s test timeout (CI run)
            choice.click(timeout=5_000)
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
            continue
        return text
    raise AssertionError(f"the list of {label!r} did not open with {wanted} in {attempts} "
                         "attempts")


def open_app(page, server_url: str, url_path: str = "",
             timeout_ms: int = RUN_TIMEOUT_MS) -> None:
    """Open a page of the app by its `st.Page` url_path ('' = the default page) and wait."""
    page.goto(f"{server_url}/{url_path}", timeout=timeout_ms)
    wait_for_app(page, timeout_ms)


def screenshot(server_url: str, out: Path, url_path: str = "",
               viewport: tuple[int, int] = (1400, 1420)) -> Path:
    """PNG of one page of the running app as a person sees it (charts drawn)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch_chromium(pw)
        try:
            page = chromium.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            open_app(page, server_url, url_path)
            wait_for_charts(page)
            page.screenshot(path=str(out))
        finally:
            chromium.close()
    return out


if __name__ == "__main__":  # refresh the README screenshot: python tests/browser.py [url_path]
    server = start_streamlit()
    try:
        target = ROOT / ".github" / "screenshot.png"
        target.parent.mkdir(exist_ok=True)
        print(screenshot(server.url, target, sys.argv[1] if len(sys.argv) > 1 else ""))
    finally:
        server.stop()
