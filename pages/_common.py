"""Small helpers every page shares: parsing typed input, JSON uploads, PNG downloads, Stop.

They exist so each page reports bad input the same way (one `st.error` line from an
`ExplorerError`, never a traceback), offers chart PNGs identical to the CLI's files, and
stops a background job the same way.
The leading underscore keeps Streamlit from treating this module as a page.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import altair as alt
import pandas as pd
import streamlit as st

from explorer_core import charts, jobs
from explorer_core.charts import chart_png_bytes
from explorer_core.errors import ExplorerError
from explorer_core.fileio import JSON_ERRORS
from explorer_core.labels import format_seconds
from explorer_core.rundir import LIVE_STATES, RunPaths, log_tail, read_status
from explorer_core.settings import MAX_LR, MIN_LR

# Uploaded JSON specs and sidecars are a few kB; anything bigger is the wrong file.
MAX_JSON_BYTES = 1_000_000


def parse_int_list(text: str, what: str = "hidden widths", example: str = "256, 64"
                   ) -> tuple[int, ...]:
    """'256, 64' or '256 64' → (256, 64); anything else → an ExplorerError naming the culprit.

    Range checks stay in the core (`ScheduleConfig.validate`) so page and CLI agree.
    """
    parts = [p for p in re.split(r"[,\s;]+", text.strip()) if p]
    if not parts:
        raise ExplorerError(f"enter {what} as whole numbers separated by commas, e.g. {example}")
    values = []
    for part in parts:
        try:
            values.append(int(part))
        except ValueError:
            raise ExplorerError(f"{what} must be whole numbers separated by commas; "
                                f"{part!r} is not one") from None
    return tuple(values)


def resend(key: str) -> None:
    """Hand the value session state holds for widget `key` back to the widget as a value
    set through session state, so the browser draws it.

    A value Streamlit merely remembers (the widget was not drawn last run, or a value set
    in a run that did not draw it) is returned by the script but not sent: the browser
    mounts the widget with its built-in default (0, the slider's minimum, off) and sends
    that back on the next run. Must run before the widget is drawn in this run.
    """
    st.session_state[key] = st.session_state[key]


def keep_widget_state(store: str, kept: Callable[[str], bool]) -> None:
    """Keep the widgets whose keys `kept` accepts as they were left, however many runs
    did not draw them (another source picked, another page open); call it first thing
    in every run of the page. `store` names the session-state dict holding the copies.

    Streamlit deletes an undrawn widget's state when a run ends. The copy in `store`
    brings it back, and every kept value is handed back to its widget as one set through
    session state (`resend`): a value merely restored was lost again at the end of the
    next run without the widget, or, once the widget was back, drawn as its default.
    """
    copies: dict[str, Any] = st.session_state.setdefault(store, {})
    for key in [k for k in st.session_state if isinstance(k, str) and kept(k)]:
        copies[key] = st.session_state[key]
    for key, value in copies.items():
        st.session_state[key] = value


def form_value(key: str, default: Any, options: Sequence[Any] | None = None) -> str:
    """Give the form widget `key` its `default` the first time it is drawn; of a list
    it kept (`keep_widget_state`, a multiselect's), drop the items no longer among
    `options`. Returns the key. (A selectbox: `kept_choice`.)

    A widget kept across pages is drawn without a default: created with one while session
    state also held its value, Streamlit warned on the page.
    """
    if key not in st.session_state:
        st.session_state[key] = default
    elif options is not None and isinstance(st.session_state[key], list):
        st.session_state[key] = [v for v in st.session_state[key] if v in options]
    return key


def distinct_names(names: list[str]) -> list[str]:
    """Names told apart: a second 'three.png' becomes 'three (2).png' (the extension
    kept last). Two pictures of one name were two rows and two choices reading the same."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            stem, dot, ext = name.rpartition(".")
            name = f"{stem} ({seen[name]}).{ext}" if dot and stem else f"{name} ({seen[name]})"
        out.append(name)
    return out


def kept_uploads(label: str, key: str, where: Any = st, multiple: bool = True,
                 **kwargs: Any) -> list[tuple[str, bytes]]:
    """(name, bytes) of the uploader's files (at most one unless `multiple`) — or, once
    the uploader comes back empty after a visit to another page (or to another source),
    the files uploaded before.

    Streamlit empties a file uploader that a run did not draw and cannot refill it, so
    the files are kept in session state and named under the empty uploader, with a
    button to forget them; removing files in the uploader itself forgets them too.
    """
    memory, restored = f"{key}_memory", f"{key}_restored"
    returning = key not in st.session_state  # the last run did not draw this uploader
    files = where.file_uploader(label, key=key, accept_multiple_files=multiple, **kwargs)
    files = files if multiple else [files] if files is not None else []
    if files:
        names = distinct_names([f.name for f in files])
        st.session_state[memory] = [(n, f.getvalue()) for n, f in zip(names, files)]
        st.session_state.pop(restored, None)
        return st.session_state[memory]
    kept = st.session_state.get(memory)
    if kept and (returning or st.session_state.get(restored)):
        st.session_state[restored] = True
        c1, c2 = where.columns([4, 1], vertical_alignment="center")
        c1.caption(f"Using the {'files' if multiple else 'file'} uploaded before: "
                   + ", ".join(n for n, _ in kept)
                   + f". Upload {'others' if multiple else 'another'} to replace "
                   + ("them." if multiple else "it."))
        if c2.button("Forget them" if multiple else "Forget it", key=f"{key}_forget"):
            st.session_state.pop(memory, None)
            st.session_state.pop(restored, None)
            st.rerun()
        return kept
    st.session_state.pop(memory, None)  # removed in the uploader
    st.session_state.pop(restored, None)
    return []


def bounded_number(where: Any, label: str, min_value: float, max_value: float | None = None,
                   value: Any = "min", **kwargs: Any) -> Any:
    """`st.number_input` (in `where`: st, a column, a form) whose range is checked here,
    not in the browser. Returns the number, or None when it is out of range.

    Given min/max, Streamlit refuses a number outside them with only a hover tooltip and
    keeps the previous one in force: a sweep started after typing 0 dense epochs ran with
    the 5 before it, and the Retention page kept showing the old table. Here any number
    is taken, and one outside the range gets a visible one-line error under its field and
    None, which the page treats as "cannot start". Whole-number bounds make a
    whole-number field (step 1).
    """
    whole = isinstance(min_value, int) and (max_value is None or isinstance(max_value, int))
    if whole:
        kwargs.setdefault("step", 1)
    if value == "min":
        value = min_value
    if "key" in kwargs and kwargs["key"] in st.session_state:
        resend(kwargs["key"])
        number = where.number_input(label, **kwargs)  # the state holds its value
    else:
        number = where.number_input(label, value=value, **kwargs)
    if number is None or (min_value <= number and (max_value is None or number <= max_value)):
        return number
    if kwargs.get("disabled"):  # greyed, it is not used: nothing to say about its range
        return None
    if whole:
        span = f"from {min_value:,} to {max_value:,}" if max_value is not None else \
            f"≥ {min_value:,}"
        where.error(f"{label} must be a whole number {span}, got {number:,}")
    else:
        span = f"between {min_value:g} and {max_value:g}" if max_value is not None else \
            f"≥ {min_value:g}"
        where.error(f"{label} must be {span}, got {number:g}")
    return None


# The learning-rate field's range on every page, and its display format. "%g": with
# "%.5f" the allowed minimum 1e-6 (and 5e-7, refused) showed as 0.00000. Streamlit
# formats with sprintf.js, whose %g writes the number as JavaScript does (0.000001, 5e-7).
LR_MIN, LR_MAX = MIN_LR, MAX_LR  # the core's range (`settings.check_lr`)
LR_FORMAT = "%g"
# What + and − add: Streamlit's default for a float, 0.01, took the default 0.001 to 0.011.
LR_STEP = 1e-4


def learning_rate_input(where: Any, value: float = 1e-3, **kwargs: Any) -> float | None:
    """The "Learning rate" field of the run set-up forms (`bounded_number`), one place
    for its range and format so the pages cannot drift apart."""
    return bounded_number(where, "Learning rate", LR_MIN, LR_MAX, value, format=LR_FORMAT,
                          step=LR_STEP, **kwargs)


def format_int_list(values: Any) -> str:
    """The inverse of `parse_int_list`, for pre-filling a text input."""
    return ", ".join(str(int(v)) for v in values)


def elapsed_metric(where: Any, state: str, elapsed: float | None, what: str,
                   last_report: float | None = None) -> None:
    """"Elapsed" while a worker runs; "Ran for" once it has ended, with what that time
    counts. A stopped clock labelled "Elapsed" read as time since the start, and a
    killed worker's time ends at its last report (`rundir.elapsed_seconds`), which
    only the help can say."""
    if state in LIVE_STATES:
        where.metric("Elapsed", format_seconds(elapsed),
                     help=f"Time worked on this {what}, over all its sessions.")
        return
    worked = f"Time the worker spent on this {what}, over all its sessions"
    if state == "interrupted" and isinstance(last_report, (int, float)):
        when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(last_report))
        note = (f"{worked}, up to its last report ({when}). Its process ended before the "
                "run did (Ctrl-C, killed or crashed), so the step it was on then is not "
                "counted; a resume redoes that step.")
    else:
        note = f"{worked}, until it ended; idle time between sessions is not counted."
    where.metric("Ran for", format_seconds(elapsed), help=note)


STATE_COLOURS = {"running": "blue", "queued": "blue", "finished": "green", "stopped": "orange",
                 "interrupted": "orange", "failed": "red"}


def run_label(paths: Any) -> str:
    """'<name> (<YYYY-MM-DD>)': how run pickers name a run folder (paths or a folder)."""
    root = Path(getattr(paths, "root", paths))
    return f"{root.name} ({root.parent.name})"


def kept_choice(key: str, options: Sequence[Any], label: Callable[[Any], str] = str,
                default: Any = None) -> str:
    """Keep the widget `key` on one of `options`, and the browser showing its current
    label; returns the key.

    Streamlit's browser side keeps showing the label it drew last for a widget whose
    key stays the same, even when the script has moved on: dropping a value that is no
    longer an option let the script fall back to the first one while the closed box still
    read "iteration 5: 18-9 …" over another run's iteration 0, and a value that is still
    an option kept its old label ("test #0 (Ankle boot)" for the first of samples 9998
    and 9999). Setting the value through session state tells the browser, so it is set
    whenever the options or their labels (`label(option)`) differ from the last run's.
    A value that is no option becomes `default` (when it is one), else the first.
    """
    shown = repr([(o, label(o)) for o in options])
    memo = f"{key}__shown"
    if st.session_state.get(key) not in options:
        st.session_state[key] = default if default in options else options[0]
    elif st.session_state.get(memo) != shown:
        st.session_state[key] = st.session_state[key]
    st.session_state[memo] = shown
    return key


def run_picker(runs: Sequence[Any], rows: list[dict], label: str, state_key: str,
               what: str) -> Path:
    """Past runs as a table (so a crashed or stopped one is easy to spot) and a picker
    that remembers the choice across reruns; returns the chosen run's folder.

    `rows` are the table's rows, one per run; `what` names them ("runs", "sweeps").
    """
    with st.expander(f"All {what} ({len(runs)})"):
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    keys = [str(r.root) for r in runs]
    box, last = f"{state_key}__box", f"{state_key}__last"
    active = st.session_state.get(state_key)
    if active in keys and active != st.session_state.get(last):
        st.session_state[box] = active  # chosen elsewhere: a run just started
    # a keyed box (`kept_choice`): given the choice as its `index`, the box was another
    # widget whenever that changed, so a second pick went back to the first one
    chosen = st.selectbox(label, keys, format_func=run_label,
                          key=kept_choice(box, keys, run_label, default=active))
    st.session_state[state_key] = st.session_state[last] = chosen
    _watch_listed({r: row.get("state") for r, row in zip(runs, rows) if str(r.root) != chosen})
    return Path(chosen)


# How often a page looks at the other runs its list shows as queued or running.
LIST_POLL_SECONDS = 3.0


def _watch_listed(states: Mapping[Any, Any]) -> None:
    """Redraw the page when a run the list shows as queued or running changes state.

    The list is drawn once per script run, and a page showing a finished run has nothing
    else that reruns it: a sweep started beside it went on reading "running" in "All
    sweeps" long after it had finished. The shown run is watched by its own live view."""
    live = {paths: state for paths, state in states.items() if state in LIVE_STATES}
    if live:
        st.fragment(_rerun_on_change, run_every=LIST_POLL_SECONDS)(live)


def _rerun_on_change(live: Mapping[Any, str]) -> None:
    if states_changed(live):
        st.rerun()


def states_changed(drawn: Mapping[Any, str]) -> bool:
    """Whether any run's state (`read_status`, as the lists read it) differs from the
    one it was drawn with."""
    return any(read_status(paths).get("state", "?") != state for paths, state in drawn.items())


def status_header(state: str, message: str, paths: RunPaths) -> None:
    """A background run's state in its colour, and its message (as an error if it failed).

    An interrupted run's worker died without a word, so the last lines it printed (in
    the run folder `paths`) are offered in a closed expander: the only clue to where it
    was and why, without opening a terminal.

    Also shows a Stop click's toast (`stop_button`): the header is drawn whether or not
    the job has already stopped by the rerun that follows the click."""
    show_pending_toasts()
    st.subheader(f"Status: :{STATE_COLOURS.get(state, 'gray')}[{state}]")
    if message:
        (st.error if state == "failed" else st.caption)(message)
    tail = log_tail(paths) if state == "interrupted" else ""
    if tail:
        with st.expander("Worker log (its last lines)"):
            st.code(tail, language=None)


# How long after a click its toast may still be shown (the rerun follows at once).
TOAST_SECONDS = 10.0
_PENDING_TOASTS = "_pending_toasts"


def queue_toast(message: str) -> None:
    """Leave a toast for the script run a callback causes (`show_pending_toasts`).

    A callback must not draw: the job buttons live in fragments, and an element drawn
    in a fragment's callback is unsupported (Streamlit logs "A fragment rerun was
    triggered with a callback that displays one or more elements" for each click and
    may draw it at the top of the app).
    """
    st.session_state.setdefault(_PENDING_TOASTS, []).append((message, time.time()))


def show_pending_toasts() -> None:
    """Show the toasts callbacks queued, once. Stamped with their time: a message no
    run picked up soon after its click (the page went elsewhere) is dropped, not
    shown out of the blue later."""
    for message, queued in st.session_state.pop(_PENDING_TOASTS, []):
        if time.time() - queued < TOAST_SECONDS:
            st.toast(message)


def stop_button(paths: Any, what: str = "run", where: Any = None,
                resumes: str = "Resume continues it later.") -> None:
    """Stop for a live background job; "Stopping…", disabled, from the click until it stops.

    A stop is a request file the worker checks between batches, and its status says
    "running" until it has finished the batch and written its files — seconds, during
    which an unchanged Stop looked as if the click was lost. The request file is the
    page's record that a stop is pending (a launch deletes any old one), so every visitor
    of the run sees the same. The click makes the request in the button's callback,
    before the rerun draws the button, so the label changes at once. `where` is the
    column to draw in (default: the page).

    The toast is queued by the callback and drawn by the rerun that follows
    (`status_header`, or here): drawn in the callback, inside the live view's fragment,
    it made Streamlit log a warning for every click. The worker may have stopped by that
    rerun, so the page redraws without a Stop: the header still shows it. `resumes` says
    what a resume keeps, before the click: an iterative run stopped in epoch 85 of its
    dense training said only afterwards that a resume trains it again from epoch 1.
    """
    show_pending_toasts()
    pending = paths.stop_request.exists()
    (where or st).button(
        "Stopping…" if pending else "Stop", type="primary", disabled=pending,
        key=f"stop-{paths.root}", on_click=_request_stop, args=(paths, what),
        help=f"Stop requested: the {what} stops at the next batch." if pending else
        f"Stops the {what} at the next batch. {resumes}")


def _request_stop(paths: Any, what: str) -> None:
    """The Stop button's callback: the request file, and a toast for the rerun to show."""
    jobs.request_stop(paths)
    queue_toast(f"Stop requested: the {what} stops at the next batch.")


def run_name_input(key: str, prefix: str, label: str = "Run name") -> str:
    """The run name field: a timestamped default, kept while the user edits it.

    A new default on every script run would wipe what the user typed; after a start,
    `announce_start(key, …)` gives the field a fresh one so a name is not reused.
    """
    if key not in st.session_state or st.session_state.pop(f"{key}_renew", False):
        st.session_state[key] = time.strftime(f"{prefix}-%Y%m%d-%H%M%S")
    return st.text_input(label, key=key)


def setup_expander(label: str, key: str, expanded: bool) -> Any:
    """The expander holding a page's set-up form; closed on the run after a start
    (`announce_start`), so the new run's live status moves up into view: left open, the
    form filled the screen and the status sat ~1 100 px below it."""
    if st.session_state.pop(f"{key}_close", False):
        st.session_state[key] = False
    # `expanded` is always the state (the user's last click once there is one): created
    # without it, AppTest sent the expander back as closed on the next run
    return st.expander(label, expanded=st.session_state.get(key, expanded), key=key,
                       on_change="rerun")


def sentence(text: str | None) -> str | None:
    """`text` with a capital first letter, for a core message shown as a sentence (the
    CLI prints it after "error: "): `str.capitalize` lowercased the rest ("the digits
    (8×8, bundled) test set"). None when there is none."""
    return text[:1].upper() + text[1:] if text else None


def refuse_start(key: str, exc: ExplorerError) -> None:
    """Say why a Start was refused, and keep it said (`kept_refusal`) until the next Start.

    Said once, it vanished at the next rerun of the page — a live view whose run ends
    reruns it, so a refusal drawn at that moment was gone before it could be read.
    """
    st.session_state[f"{key}_refused"] = str(exc)
    st.error(str(exc))


def kept_refusal(key: str, started: bool) -> None:
    """The last refused Start's message (`refuse_start`) again, until Start is pressed anew
    (`started`), which says its own."""
    if started:
        st.session_state.pop(f"{key}_refused", None)
    elif st.session_state.get(f"{key}_refused"):
        st.error(st.session_state[f"{key}_refused"])


def announce_start(name_key: str, message: str, form_key: str | None = None) -> None:
    """After a run starts: a fresh default in the name field, a toast, the set-up form
    closed (`setup_expander` of key `form_key`), and a rerun.

    The rerun makes the field show the fresh name at once. Left for the next script run
    — which, in a form, is the next Start — the renewal overwrote the name the user had
    typed for that next run with a timestamp.
    """
    st.session_state[f"{name_key}_renew"] = True
    if form_key is not None:
        st.session_state[f"{form_key}_close"] = True
    st.toast(message)
    st.rerun()


def read_json_upload(uploaded: Any) -> Any:
    """Parse an `st.file_uploader` file as JSON. Only JSON: nothing uploaded is ever unpickled."""
    data = uploaded.getvalue()
    if len(data) > MAX_JSON_BYTES:
        raise ExplorerError(f"{uploaded.name} is {len(data) // 1024} kB; a model spec or "
                            "checkpoint .json is a few kB — pick the .json next to the weights")
    try:
        return json.loads(data.decode("utf-8"))
    except JSON_ERRORS:  # bad JSON or UTF-8, an integer past 4 300 digits, deep nesting
        raise ExplorerError(f"{uploaded.name} is not a JSON file") from None


def png_download_button(label: str, chart: alt.TopLevelMixin, file_name: str, key: str) -> None:
    """Download button for a chart as PNG, rendered only when clicked.

    Deferred rendering keeps the page run fast; `on_click="ignore"` avoids a rerun,
    so downloading never resets what the user is looking at.
    """
    st.download_button(label, data=lambda: chart_png_bytes(chart), file_name=file_name,
                       mime="image/png", key=key, on_click="ignore",
                       icon=":material/image:")


# Width of one group of form fields in `wrapping_columns`: three fit a 1400-px window,
# two a 1024-px one (in an expander there: ~530 px), and an 800-px window (a 468-px
# main column) takes one a row.
FIELD_GROUP_WIDTH = 240


def wrapping_columns(count: int, width: int = FIELD_GROUP_WIDTH,
                     vertical_alignment: str = "top") -> list[Any]:
    """`count` column-like containers of `width` px that wrap onto new rows when the page
    is too narrow for them side by side (`st.columns` only stacks below a 640-px
    window: in an 800-px one with the sidebar, three columns of multiselects were
    145 px wide and their chips cut to one letter)."""
    row = wrapping_row(vertical_alignment)
    return [row.container(width=width) for _ in range(count)]


def wrapping_row(vertical_alignment: str = "top") -> Any:
    """A row whose elements wrap onto new rows when they do not fit: metrics, buttons,
    fixed-width groups (in equal columns, an 800-px window cut '37.88 %' to '37.8…'
    and 'Download validations.txt' to 'Download validati…')."""
    return st.container(horizontal=True, gap="small", vertical_alignment=vertical_alignment)


def chart_panels(panels: Any) -> None:
    """A compare chart's `charts.Panels`: its title and subtitle once, its legends once,
    then its panels in a wrapping row (three a row at 1400 px, one at 800 px): a faceted
    chart cannot stretch, and sized for 800 px it used under half a wide screen."""
    st.markdown(f"**{panels.title}**")
    if panels.subtitle:
        st.caption(" ".join(panels.subtitle))
    st.altair_chart(panels.legend, width="stretch")
    row = wrapping_row()
    for panel in panels.panels:
        # a box of the panel's width, the chart stretched into it: drawn at its own
        # width ("content"), Streamlit fitted axes and title into the plot's width
        box = row.container(width=panel.width + charts.Y_AXIS_ROOM, gap=None)
        box.caption(panel.description)
        box.altair_chart(panel, width="stretch")


def require_app_navigation() -> None:
    """Make a deep link on a freshly started server run through app.py's `st.navigation`.

    Streamlit decides on its first script run whether the app uses the legacy
    `pages/` folder mode (it does whenever a `pages/` folder exists, until some run
    calls `st.navigation`). A first visit straight to /<page> therefore runs the page
    file alone with an auto-generated sidebar; switching the flag and rerunning sends
    the same URL through app.py instead.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
