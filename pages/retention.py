"""Retention curve: plan how many neurons each hidden layer keeps at every iteration.

Thin page over `explorer_core.schedule` (the numbers) and `explorer_core.charts` (the
plots, the same ones the CLI writes). The chosen schedule is left in
`st.session_state["retention_schedule"]` for the Iterative pruning page, with the conv
net its widths were read from, if any, in `"retention_schedule_model"`: that page trains
MLPs and does not take a conv net's widths.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer_core.charts import (DISTRIBUTION_PNG, ITERATION_PNG, retention_distribution_chart,
                                  retention_iteration_chart)
from explorer_core.errors import ExplorerError
from explorer_core.labels import model_name
from explorer_core.schedule import (SCHEDULES, USES_Q, RetentionTable, ScheduleConfig,
                                    drawn_rows, retention_table, spec_in, widths_from_spec)
from pages._common import (format_int_list, keep_widget_state, parse_int_list,
                           png_download_button, read_json_upload, require_app_navigation,
                           wrapping_row)

SESSION_KEY = "retention_schedule"
SESSION_MODEL = "retention_schedule_model"  # the conv net the saved widths are of, if any
# {"arch", "widths"}: the spec the widths box was last filled from, and the text it put there
SPEC_MODEL = "ret_widths_model"

KIND_HELP = {
    "geometric": "N_t = max(1, round(h·q^t)) at schedule step t: every step keeps a "
                 "fraction q of the dense width (the thesis' rule).",
    "linear": "Width falls by the same number of neurons each iteration and reaches 1 at "
              "the last one (q is not used).",
    "cubic": "Zhu & Gupta (2017): prunes fast early and gently near the end, reaching 1 at "
             "the last iteration (q is not used).",
}


def _init_inputs() -> None:
    """Seed the widgets from the schedule chosen earlier in this session (or the defaults).

    Widget state is dropped when the user visits another page; the saved schedule is not,
    so coming back shows the same schedule instead of resetting it.
    """
    saved = st.session_state.get(SESSION_KEY) or ScheduleConfig().to_dict()
    st.session_state.setdefault("ret_widths", format_int_list(saved["widths"]))
    st.session_state.setdefault("ret_q", float(saved["q"]))
    st.session_state.setdefault("ret_iterations", int(saved["iterations"]))
    st.session_state.setdefault("ret_kind", saved["kind"])


def _widths_from_upload() -> None:
    """on_change of the uploader: fill the widths box from the JSON, or remember the error;
    say when the widths are not a dense MLP's (a pruned checkpoint's, a conv net's)."""
    st.session_state.pop("ret_spec_error", None)
    st.session_state.pop("ret_spec_note", None)
    uploaded = st.session_state.get("ret_spec")
    if uploaded is None:
        return
    try:
        info = read_json_upload(uploaded)
        try:
            spec = spec_in(info)
            widths = widths_from_spec(spec)
        except ExplorerError as exc:
            raise ExplorerError(f"{uploaded.name}: {exc}") from None
    except ExplorerError as exc:
        st.session_state["ret_spec_error"] = str(exc)
        return
    st.session_state["ret_widths"] = format_int_list(widths)
    st.session_state[SPEC_MODEL] = {"arch": spec["arch"],
                                    "widths": st.session_state["ret_widths"]}
    notes = []
    if spec["arch"] != "mlp":  # the box read like an MLP's hidden layers
        notes.append(f"{model_name(spec['arch'])}: its conv channels, then its hidden layers.")
    kept = info.get("percent_retained") if isinstance(info, dict) else None
    if isinstance(kept, (int, float)) and not isinstance(kept, bool) and kept < 100:
        notes.append(f"A pruned model (it kept {kept:.3g} % of its units): these are its "
                     "pruned widths, not its dense model's.")
    if notes:
        st.session_state["ret_spec_note"] = " ".join(notes)


def _conv_arch() -> str | None:
    """The conv net whose widths (channels, then hidden layers) the box holds, read from
    its spec; None for an MLP's or typed ones. The Iterative pruning page trains MLPs:
    handed on, a CNN's 16, 32, 128 became a three-layer MLP's widths without a word."""
    read = st.session_state.get(SPEC_MODEL)
    if not read or read["arch"] == "mlp" or read["widths"] != st.session_state.get("ret_widths"):
        return None
    return read["arch"]


def _inputs() -> ScheduleConfig:
    """The four inputs; parsing only — the core's validate() judges the ranges."""
    numbers, kinds_col = st.columns([3, 2], gap="large")
    with numbers:
        widths_text = st.text_input(
            "Hidden widths (dense model)", key="ret_widths",
            help="Neurons per hidden layer, comma separated: 256, 64 is the thesis' "
                 "784-256-64-10 MLP.")
        c_q, c_iter = st.columns(2)
        # The radio below is drawn later but its value is known: a ramp does not use q,
        # so q is disabled there (and not checked: a q left at 5 no longer blocks it).
        # No widget bounds: the core's 0 < q < 1 is strict, which min/max cannot say, and
        # Streamlit refuses a number outside its bounds with only a hover tooltip while
        # the table stays that of the previous number (the core names the range).
        # %g shows the value as typed; "%.3f" showed 0.0001 as 0.000 (accepted) while
        # 0 itself is refused.
        uses_q = st.session_state.get("ret_kind") in USES_Q
        q = c_q.number_input("q (keep factor)", key="ret_q", step=0.05, format="%g",
                             disabled=not uses_q,
                             help="Geometric schedule only: each iteration keeps q of the "
                                  "neurons, 0 < q < 1." if uses_q else
                                  "Not used by this schedule (geometric only).")
        iterations = c_iter.number_input(
            "Iterations", key="ret_iterations", step=1,
            help="How many iterations to tabulate (≥ 1), counting the dense model as "
                 "iteration 0. The table stops early once every layer keeps 1 neuron.")
        with st.expander("Read the widths from a model spec or a checkpoint's .json"):
            st.file_uploader("Model spec or checkpoint sidecar (.json)", type=["json"],
                             key="ret_spec", on_change=_widths_from_upload,
                             help="Only the JSON is read (weights are never opened); its "
                                  "widths replace the ones above.")
            if "ret_spec_error" in st.session_state:
                st.error(st.session_state["ret_spec_error"])
            elif "ret_spec_note" in st.session_state:
                st.info(st.session_state["ret_spec_note"])
    kinds = list(SCHEDULES)
    kind = kinds_col.radio("Schedule", kinds, key="ret_kind",
                           captions=[KIND_HELP.get(k, "") for k in kinds])
    if iterations is None:
        raise ExplorerError("enter the number of iterations")
    if q is None:
        if kind in USES_Q:
            raise ExplorerError("enter q, the keep factor of the geometric schedule")
        q = ScheduleConfig().q  # an empty q the ramp does not use: any number will do
    return ScheduleConfig(parse_int_list(widths_text), float(q), int(iterations), kind)


STEP_COLUMN = "t (schedule step)"


def _skips_steps(table: RetentionTable) -> bool:
    """Whether some schedule step was skipped (it repeated the previous row's widths), so
    that Iteration and t part ways."""
    return table.steps != list(range(len(table.steps)))


def _display_frame(table: RetentionTable) -> pd.DataFrame:
    """retain.txt's columns with names a person reads at a glance, and — when a step was
    skipped — the schedule step t of each row next to its Iteration."""
    frame = pd.DataFrame(table.rows(), columns=table.columns)
    names = {f"h{i + 1}NodesRetained": f"Layer {i + 1} (of {w:,})" for i, w in enumerate(table.dense)}
    names["perNodesRetained"] = "% of hidden neurons kept"
    whole = {"Iteration": int, **{n: int for n in names.values() if n.startswith("Layer")}}
    if _skips_steps(table):
        frame.insert(1, STEP_COLUMN, table.steps)
        whole[STEP_COLUMN] = int
    return frame.rename(columns=names).astype(whole)


def _step_caption(table: RetentionTable) -> str:
    """Why Iteration and t differ: retain.txt's numbering (DESIGN §3) is the format's."""
    row = next(i for i, t in enumerate(table.steps) if t != i)
    return (f"Iteration counts the pruning iterations actually run (retain.txt's numbering: "
            f"a run keeps iteration i in its folder `<i>/prune_w_retrain`); t counts the "
            f"schedule's steps, the t of the formula. A step whose widths equal the previous "
            f"row's prunes nothing, so it is no iteration and retain.txt skips it: from row "
            f"{row} on, Iteration is smaller than t (row {row} is t = {table.steps[row]}).")


def _show(table: RetentionTable, config: ScheduleConfig) -> None:
    last = table.widths[-1]
    metrics = wrapping_row()  # thirds cut 'Iterations in the ta…' at 800 px
    # counted as retain.txt and the CLI count them: the dense row is iteration 0
    metrics.metric("Iterations in the table", f"{len(table):,}",
              help=f"{table.iterations_text()}, one row each in retain.txt. Rows that "
                   "would repeat the previous widths are skipped.")
    metrics.metric("Neurons kept at the end", f"{sum(last):,} of {sum(table.dense):,}")
    metrics.metric("% kept at the end", f"{table.percent(last):.3g} %")
    if len(table) == 1:  # said: the table and "Saved for this session" read as a plan
        why = ("every layer has one neuron, which no step removes" if max(table.dense) == 1
               else "q too close to 1, or too few iterations")
        st.warning(f"This schedule prunes nothing: every step keeps the dense widths ({why}). "
                   "A run on it trains the dense model and stops.")

    rows = drawn_rows(len(table))
    thin = len(rows) < len(table)
    iteration_chart_col, distribution_chart_col = st.columns(2)
    with iteration_chart_col:
        chart_slot = st.empty()  # the toggle sits under the chart but decides its scale
        log = st.toggle("Log scale", key="ret_log",
                        help="Straight lines for the geometric rule; small late widths stay visible.")
        chart_slot.altair_chart(retention_iteration_chart(
            table, log_scale=log, on_page=True, drawn=rows if thin else None), width="stretch")
    with distribution_chart_col:
        st.altair_chart(retention_distribution_chart(table, drawn=rows if thin else None),
                        width="stretch")
    if thin:
        st.caption(f"The charts draw {len(rows):,} of the {len(table):,} iterations, evenly "
                   f"spaced from the first to the last, so that the page stays quick; the "
                   f"table and the downloads hold every iteration.")

    # the downloads in a row under the table: in a quarter column beside it, an 800-px
    # window cut them to 'pruneN…'
    frame = _display_frame(table)
    st.dataframe(frame, hide_index=True, width="stretch",
                 column_config={"% of hidden neurons kept":
                                st.column_config.NumberColumn(format="%.4g")})
    if _skips_steps(table):
        st.caption(_step_caption(table))
    st.markdown("**Downloads**")
    with wrapping_row():
        st.download_button("retain.txt", table.to_text(), file_name="retain.txt",
                           mime="text/plain", key="ret_dl_txt", on_click="ignore",
                           icon=":material/description:")
        # the table as shown, its step t included: the CSV is the table's download,
        # retain.txt the loop's fixed format
        # its heads without thousands separators ('Layer 1 (of 999999)'): the only
        # commas in them, and one more thing for a CSV reader to quote
        csv = frame.rename(columns=lambda c: c.replace(",", "")).to_csv(index=False)
        st.download_button("retain.csv", csv, file_name="retain.csv", mime="text/csv",
                           key="ret_dl_csv", on_click="ignore", icon=":material/table:")
        # the file as the command line writes it: the legend beside, not inside, its height
        png_download_button(ITERATION_PNG, retention_iteration_chart(table, log_scale=log),
                            ITERATION_PNG, key="ret_dl_iter")
        png_download_button(DISTRIBUTION_PNG, retention_distribution_chart(table),
                            DISTRIBUTION_PNG, key="ret_dl_dist")
    conv = _conv_arch()
    if conv:
        st.caption(f"Not handed on: these are a {model_name(conv)}'s widths (conv channels, "
                   f"then hidden layers), and the Iterative pruning page trains MLPs; it "
                   f"starts from its own default schedule.")
    else:
        st.caption(f"Saved for this session: the Iterative pruning page starts from this "
                   f"{config.kind} schedule.")


def _handed_on_text() -> str:
    """What the Iterative pruning page starts from while the inputs are refused: the last
    valid schedule chosen here (kept in the session), or its own default one."""
    saved = st.session_state.get(SESSION_KEY)  # `ScheduleConfig.to_dict`
    if saved:
        last = ScheduleConfig(**{**saved, "widths": tuple(saved["widths"])})
        return ("Nothing new is handed on: the Iterative pruning page still starts from the "
                f"last valid schedule ({last.describe()}).")
    return ("Nothing is handed on: the Iterative pruning page starts from its default "
            f"schedule ({ScheduleConfig().describe()}).")


require_app_navigation()
# the chart's Log scale, drawn only with a table: Streamlit drops it on another page
keep_widget_state("ret_kept", lambda key: key == "ret_log")
st.title("Retention curve")
st.markdown("Plan a structured-pruning run: how many neurons each hidden layer keeps at "
            "every iteration, before any training. Pick the schedule here; the table is the "
            "`retain.txt` the pruning loop follows.")
_init_inputs()
try:
    config = _inputs().validate()
    table = retention_table(config)
except ExplorerError as exc:
    # said in the same box: the schedule saved before stays in force on the Iterative
    # page, which the refused inputs on screen did not show
    st.error(f"{exc}\n\n{_handed_on_text()}", icon=":material/error:")
else:
    # Handed to the Iterative page only when it is a choice: the landing page's defaults,
    # saved on every visit, made that page always say "Schedule taken from the Retention
    # curve page" (its own defaults are the same).
    if config == ScheduleConfig():
        st.session_state.pop(SESSION_KEY, None)
    else:
        st.session_state[SESSION_KEY] = config.to_dict()
    conv = _conv_arch()
    if conv:
        st.session_state[SESSION_MODEL] = conv
    else:
        st.session_state.pop(SESSION_MODEL, None)
    _show(table, config)
