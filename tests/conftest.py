"""Shared fixtures: the app under AppTest, and the real app in headless Chromium.

- `app_test()`      factory: a fresh `AppTest` of app.py (optionally switched to a page).
- `streamlit_server` session-wide `streamlit run app.py` on a free localhost port; its URL.
- `browser`         session-wide Playwright Chromium (Debian's /usr/bin/chromium).
- `app_page`        a fresh browser tab (own context, downloads allowed) per test.
- `refused_pngs`    vl-convert failing on every chart (PNG export), for this test.

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

# Runs, sweeps, cached baselines and downloaded datasets of the whole test session (and
# of the app server it starts) are in a scratch folder, never the repository's runs/ or
# models_cache/, nor a developer's own folders named by these variables: their runs were
# written into and their baselines reused. Set, not defaulted. Fashion-MNIST still comes
# from the Debian package, which the data root does not hide (`data._idx_folders`).
_SCRATCH = Path(tempfile.mkdtemp(prefix="explorer-tests-"))
os.environ["EXPLORER_RUNS"] = str(_SCRATCH / "runs")
os.environ["EXPLORER_SWEEPS"] = str(_SCRATCH / "sweeps")
os.environ["EXPLORER_CACHE"] = str(_SCRATCH / "models_cache")
os.environ["EXPLORER_DATA"] = str(_SCRATCH / "data")

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


@pytest.fixture
def refused_pngs(monkeypatch) -> None:
    """vl-convert raising on every chart, as it does on a spec it cannot draw."""
    import vl_convert

    def refuse(*args, **kwargs):
        raise ValueError("cannot render this Vega-Lite spec")

    monkeypatch.setattr(vl_convert, "vegalite_to_png", refuse)


@pytest.fixture
def downloads(monkeypatch) -> dict[str, bytes]:
    """{file name: bytes} of every download whose data a page run handed over (not the
    ones drawn only when clicked): AppTest keeps them in a media store it drops after
    each run, so they are recorded on their way in. Ask for it before the fixture that
    runs the page."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    files: dict[str, bytes] = {}
    store = MemoryMediaFileStorage.load_and_get_id

    def record(self, path_or_data, mimetype, kind, filename=None):
        if filename and isinstance(path_or_data, bytes):
            files[filename] = path_or_data
        return store(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    return files


def bar_at_a_terminal(argv: list[str]) -> tuple[int, list[str]]:
    """`main(argv)` with stderr as a terminal (the CLI then redraws its progress bar with
    \\r): its exit code and the bar's frames, each from its first '['. Swapped here, in
    the test's call: pytest puts its own stderr back between a fixture and the test."""
    import io

    from explorer_core.cli import main

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    err, before = Terminal(), sys.stderr
    sys.stderr = err
    try:
        code = main(argv)
    finally:
        sys.stderr = before
    pieces = err.getvalue().replace("\n", "\r").split("\r")
    return code, [p[p.index("["):] for p in pieces if p.lstrip().startswith("[")]


def widget(items, label: str):
    """The one AppTest widget labelled `label` among `items` (e.g. `at.text_input`)."""
    found = [w for w in items if w.label == label]
    assert len(found) == 1, f"no single widget labelled {label!r}: {[w.label for w in items]}"
    return found[0]


def nan_checkpoint(folder: Path, layer: str = "fc1") -> Path:
    """A Digits MLP checkpoint (8×8 inputs, 32-16 hidden) with one NaN weight in `layer`:
    what a diverged training leaves, for the checks that refuse such a model."""
    import torch

    from explorer_core.checkpoint import save_checkpoint
    from explorer_core.models import build_model, default_spec

    torch.manual_seed(0)
    spec = default_spec("mlp", 1, 8, 10, [32, 16])
    model = build_model(spec)
    with torch.no_grad():
        model.get_submodule(layer).weight[0, 0] = float("nan")
    return save_checkpoint(model, spec, folder / "nan", {"dataset": "digits"})


def overflowing_checkpoint(folder: Path) -> Path:
    """A Digits MLP checkpoint (8×8 inputs, 32-16 hidden) whose weights are all 1e30:
    finite, so loaders take it, but its output overflows to NaN on a real picture."""
    import torch

    from explorer_core.checkpoint import save_checkpoint
    from explorer_core.models import build_model, default_spec

    spec = default_spec("mlp", 1, 8, 10, [32, 16])
    model = build_model(spec)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1e30)
    return save_checkpoint(model, spec, folder / "huge", {"dataset": "digits"})


def stop_through_the_page(page: str, paths, **running) -> "AppTest":
    """Click Stop on `page` while a run counts as live, and check what a person sees.

    The test holds the run's lock itself, as its worker would, and writes status
    `running` (with the `running` fields). After the click the stop request exists and,
    while the status still says running, the one Stop button reads "Stopping…" and is
    disabled — the pages showed an active Stop beside "running" for seconds, with only a
    toast to say the click counted. Once the status says stopped, Resume replaces it.
    Returns the page after that last run.
    """
    from explorer_core.rundir import RunLock, write_status

    with RunLock(paths):
        write_status(paths, "running", **running)
        at = open_page_file(page)
        stop = widget(at.button, "Stop")
        assert not stop.disabled
        stop.click().run()
        assert not at.exception
        assert paths.stop_request.exists()  # the worker's signal
        assert any("running" in h.value for h in at.subheader)  # it has not stopped yet
        assert [(b.label, b.disabled) for b in at.button if "Stop" in b.label] == \
            [("Stopping…", True)]
        at.run()  # the page polling the run folder: still pending, still disabled
        assert widget(at.button, "Stopping…").disabled
        write_status(paths, "stopped", message="stopped by request")
    at.run()
    assert not [b.label for b in at.button if "Stop" in b.label]
    assert "Resume" in [b.label for b in at.button]
    return at


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
