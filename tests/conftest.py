"""Shared fixtures: the app under AppTest, and the real app in headless Chromium.

- `app_test()`      factory: a fresh `AppTest` of app.py (optionally switched to a page).
- `streamlit_server` session-wide `streamlit run app.py` on a free localhost port; its URL.
- `browser`         session-wide Playwright Chromium (Debian's /usr/bin/chromium).
- `app_page`        a fresh browser tab (own context, downloads allowed) per test.

Browser helpers (`open_app`, `wait_for_app`, `rerun_after`) live in tests/browser.py.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
for path in (ROOT, TESTS):  # `import explorer_core`, `from pages._common …`, `from browser …`
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from browser import RUN_TIMEOUT_MS, launch_chromium, start_streamlit  # noqa: E402

# Runs, sweeps and cached baselines of the whole test session (and of the app server it
# starts) go to a scratch folder, never into the repository's runs/ or models_cache/.
_SCRATCH = Path(tempfile.mkdtemp(prefix="explorer-tests-"))
os.environ.setdefault("EXPLORER_RUNS", str(_SCRATCH / "runs"))
os.environ.setdefault("EXPLORER_SWEEPS", str(_SCRATCH / "sweeps"))
os.environ.setdefault("EXPLORER_CACHE", str(_SCRATCH / "models_cache"))

# The first run of a page imports torch and Altair; AppTest's 3 s default is too tight.
APPTEST_TIMEOUT_S = 60


@pytest.fixture
def app_test() -> Callable[..., "AppTest"]:
    """`app_test()` → AppTest of app.py already run; `app_test("pages/x.py")` opens that page."""
    from streamlit.testing.v1 import AppTest

    def make(page: str | None = None) -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=APPTEST_TIMEOUT_S)
        if page:
            at.switch_page(page)
        return at.run()

    return make


def widget(items, label: str):
    """The one AppTest widget labelled `label` among `items` (e.g. `at.text_input`)."""
    found = [w for w in items if w.label == label]
    assert len(found) == 1, f"no single widget labelled {label!r}: {[w.label for w in items]}"
    return found[0]


def open_page_file(page: str, state: dict | None = None) -> "AppTest":
    """AppTest of one page file itself (e.g. "pages/iterative.py"), run once.

    Forms are driven on the page file because, under app.py's navigation, AppTest (1.67)
    drops form submissions made after `switch_page`. `state` is put into Session State
    before the first run.
    """
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / page), default_timeout=APPTEST_TIMEOUT_S)
    for k, v in (state or {}).items():
        at.session_state[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture(scope="session")
def streamlit_server() -> Iterator[str]:
    """The running app's root URL; the server is stopped when the session ends."""
    server = start_streamlit(ROOT / "app.py")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import expect, sync_playwright

    # `expect` polls until the page shows what it should; its 5 s default is too short
    # for a rerun plus chart drawing on a busy 2-core machine.
    expect.set_options(timeout=RUN_TIMEOUT_MS)
    with sync_playwright() as pw:
        try:
            chromium = launch_chromium(pw)
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield chromium
        chromium.close()


@pytest.fixture
def app_page(browser):
    """A new tab in its own context (fresh Streamlit session), 1400×1000, downloads allowed."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                  accept_downloads=True)
    context.set_default_timeout(RUN_TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
