"""Compare: criteria × pruning types × batch sizes × ratios × models × datasets.

The sweep runs in a background worker (explorer_core.jobs → `compare --resume`); this
page sets it up, shows the grid's size and an estimated time first, then redraws from
the sweep folder while cells arrive. Nothing here computes: it calls explorer_core.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from explorer_core import charts, jobs
from explorer_core.cache import default_cache_root
from explorer_core.data import data_identity, list_datasets, training_samples
from explorer_core.errors import ExplorerError
from explorer_core.estimate import estimate
from explorer_core.labels import (NAMERS, criterion_name, dataset_name, model_name, named,
                                  type_name)
from explorer_core.models import ARCH_TITLES, ARCHS
from explorer_core.pruning_types import (ALL_CRITERIA, PRUNING_TYPES, criteria_for,
                                         criterion_title)
from explorer_core.rundir import (LIVE_STATES, SweepPaths, check_new_run_dir,
                                  default_sweeps_root, download_name, list_sweeps, read_record,
                                  read_status)
from explorer_core.sweep import (BATCH_PRESETS, DEFAULT_RATIOS, MAX_LATENCY_BATCH, MAX_REPEATS,
                                 OMITTABLE, Cell, SweepConfig, create_sweep, plan, ratio_label,
                                 runnable_plan)
from explorer_core.sweep_results import (UNSTEADY_TIMING, SweepProgress, dense_latency_gaps,
                                         dense_timing_spread, finished_count,
                                         mask_timing_departures, pareto_by, progress,
                                         results_frame, slower_pruned_models, speed_note,
                                         speedups, summary_frame, tables_text,
                                         unlearned_baselines, untuned_dense_note)
from explorer_core.settings import MAX_EPOCHS, counted
from explorer_core.training import OPTIMIZERS
from pages._common import (announce_start, bounded_number, chart_panels, elapsed_metric,
                           form_value, keep_widget_state, kept_choice, kept_refusal,
                           refuse_start, sentence,
                           format_seconds, learning_rate_input, parse_int_list,
                           png_download_button, require_app_navigation, run_name_input,
                           run_picker, setup_expander, status_header, stop_button,
                           wrapping_columns, wrapping_row)

require_app_navigation()
# the New sweep form as it was left, after a visit to another page (it came back with
# every default: models, ratios, repeats, the name typed)
keep_widget_state("cmp_kept", lambda key: key.startswith("cmp_form_") or key == "new_sweep_name")

st.title("Compare")
st.caption("Which pruning, at which ratio, on which model, costs how much accuracy and buys "
           "how much compute? Pick a grid; every cell prunes a cached dense baseline, "
           "optionally fine-tunes it, and is measured. Sweeps run in the background.")

SWEEPS_ROOT = default_sweeps_root()
# Each batch-size chart's box: two side by side in a 1400-px window's ~940-px column
BATCH_CHART_WIDTH = 440


def _percent_list(text: str) -> list[float]:
    """'0, 10, 50' (percent) → [0.0, 0.1, 0.5]; a one-line ExplorerError otherwise.
    Per cent signs are allowed ('50%', '50 %'): the field is labelled in per cent, and
    '50%' was refused as not a number."""
    try:
        values = [float(v) for v in text.replace("%", "").replace(";", ",").split(",")
                  if v.strip()]
    except ValueError:
        raise ExplorerError(f"ratios must be numbers in percent separated by commas, got "
                            f"{text!r}") from None
    if not values:
        raise ExplorerError("enter at least one ratio in percent, e.g. 0, 50, 90")
    bad = [v for v in values if not 0 <= v <= 100]
    if bad:  # said in percent, as typed (the core would quote fractions)
        raise ExplorerError("ratios must lie between 0 and 100 %, got "
                            + ", ".join(f"{v:g}" for v in bad))
    fractions = [round(v / 100, 6) for v in values]
    # kept to four decimals of a percent: 99.99999 became 100 %, a dead model's cell
    near = next((v for v, f in zip(values, fractions) if 0 < v < 100 and f in (0, 1)), None)
    if near is not None:
        raise ExplorerError(f"ratio {near} % rounds to {'0' if near < 50 else '100'} % "
                            "(ratios are kept to four decimals of a percent): give one that "
                            "stays apart from 0 % and 100 %")
    return fractions


def _whole(text: str) -> int | None:
    """'4 000' or '4_000' → 4000; None for anything that is not a whole number."""
    try:
        return int(str(text).replace(" ", "").replace("_", ""))
    except ValueError:
        return None


def _batch_list(chosen: list) -> list[int]:
    """The chosen batch sizes as numbers; a one-line ExplorerError naming only the entries
    that are wrong (it listed every chip, 'got 64, abc, 4000, 60000', for one typo)."""
    values = [_whole(b) for b in chosen]
    bad = [str(b) for b, v in zip(chosen, values) if v is None or v < 1]
    if bad:
        raise ExplorerError(f"batch sizes must be whole numbers ≥ 1, got {', '.join(bad)}")
    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:  # '064' typed beside the preset 64
        raise ExplorerError(f"batch size {', '.join(map(str, twice))} is given twice")
    return values


def _cache_stamp(datasets: list[str]) -> tuple:
    """When models_cache/ last changed (0 if it does not exist yet), and which data files
    the datasets are: a sweep that trains baselines adds files there, and baselines are
    keyed by the files they were trained on — the grid's "to train / cached" counts
    depend on both."""
    try:
        changed = default_cache_root().stat().st_mtime_ns
    except OSError:
        changed = 0
    return changed, tuple(data_identity(d) for d in datasets)


@st.cache_data(show_spinner=False, max_entries=16)
def _grid_facts(config: dict, cache_stamp: tuple) -> dict:
    """Cells, baselines, what does not apply, and the estimated time of a config;
    worked out again when models_cache/ changes (`_cache_stamp`): after a sweep the form
    kept saying "4 to train" of the baselines it had just cached."""
    cfg = SweepConfig.from_dict(config).validate()
    the_plan = plan(cfg)
    if not the_plan.cells:  # nothing to estimate: say why instead of "0 cells … ≈ 5 s"
        try:
            runnable_plan(cfg)
        except ExplorerError as exc:
            return {"cells": 0, "empty": str(exc)}
    est = estimate(cfg, the_plan)
    return {"cells": len(the_plan.cells), "groups": len(the_plan.groups),
            "skipped": the_plan.skipped, "seconds": est.seconds, "per_group": est.groups,
            "to_train": est.baselines_to_train, "cached": est.baselines_cached,
            "criteria": {t: criteria_for(t, cfg.criteria) for t in cfg.types},
            "ratios": [ratio_label(r) for r in cfg.ratios],
            "full_batch": _full_batches(cfg)}


def _full_batches(cfg: SweepConfig) -> list[tuple[str, int, list[int]]]:
    """(dataset, its training samples, the grid's batch sizes at least that many): each of
    those trains on the whole split at once."""
    out = []
    for dataset in cfg.datasets:
        n = training_samples(dataset, cfg.val_fraction)
        big = [b for b in sorted(cfg.batch_sizes) if b >= n]
        if big:
            out.append((dataset, n, big))
    return out


def setup_form() -> None:
    datasets = list_datasets()
    available = [info.name for info, ok, _ in datasets if ok]
    titles = {info.name: info.title for info, _, _ in datasets}
    with setup_expander("New sweep", "new_sweep_form", expanded=not list_sweeps(SWEEPS_ROOT)):
        # groups that wrap: one a row in an 800-px window, where three columns cut the
        # chips to one letter
        c1, c2, c3 = wrapping_columns(3)
        # wrap=True on every multiselect: placed straight in a column, Streamlit keeps the
        # chips on one scrolling row, so of four pruning types chosen one seemed chosen
        models = c1.multiselect("Models", list(ARCHS), wrap=True,
                                key=form_value("cmp_form_models", ["mlp"], list(ARCHS)),
                                format_func=lambda a: ARCH_TITLES.get(a, a))
        chosen_data = c1.multiselect("Datasets", available, wrap=True, format_func=titles.get,
                                     key=form_value("cmp_form_datasets", ["digits"], available))
        # Typed numbers match presets by prefix only, and Enter never bulk-selects: with
        # the fuzzy filter and "Select all matches", "0" + Enter added 4000 and 60000.
        batches = c1.multiselect(
            "Batch sizes", [str(b) for b in sorted({64, *BATCH_PRESETS})],
            key=form_value("cmp_form_batches", ["64"]), accept_new_options=True,
            filter_mode="prefix", select_all=False, wrap=True,
            help="Presets, or type any whole number and press Enter. A number that begins "
                 "a preset (6 of 60000) picks the preset on Enter: choose *Add: 6* instead. "
                 "Batches larger than memory allows are split into micro-batches with "
                 "gradient accumulation.")
        # short names on the chips, the long titles in the help: in a 240-px group
        # 'Neuron (remove FC neurons)' and 'Weight magnitude (masks)' were cut to '…'
        types = c2.multiselect(
            "Pruning types", list(PRUNING_TYPES), wrap=True, format_func=type_name,
            key=form_value("cmp_form_types", ["neuron", "weight"], list(PRUNING_TYPES)),
            help="  \n".join(f"**{k.title}**: {k.description}" for k in PRUNING_TYPES.values()))
        # every criterion in sight, chosen or not: in a multiselect, eight chosen chips
        # scrolled inside a box of four rows, and the first four were out of sight
        crits = c2.pills(
            "Criteria", list(ALL_CRITERIA), selection_mode="multi", format_func=criterion_name,
            key=form_value("cmp_form_criteria", ["interval_adjoint", "l1", "random", "magnitude"],
                           list(ALL_CRITERIA)),
            help="Mask types rank weights by magnitude or at random; neuron and structured "
                 "pruning rank units by any criterion.  \n"
                 + ", ".join(criterion_title(c) for c in ALL_CRITERIA) + ".")
        default_ratios = ", ".join(f"{r * 100:g}" for r in DEFAULT_RATIOS)
        ratios = c2.text_input("Ratios (% removed)",
                               key=form_value("cmp_form_ratios", default_ratios),
                               help="100 % removes everything: reported as a dead model.")
        # a label of one line: 'Fine-tune epochs after pruning (0 = one-shot)' took two
        # and set this group's fields lower than its neighbours'
        finetune = bounded_number(c3, "Fine-tune epochs (0 = one-shot)", 0, MAX_EPOCHS, 0,
                                  key="cmp_form_finetune",
                                  help="Epochs of training after pruning, with the dense "
                                       "model's settings; 0 tests each pruned model as it is.")
        repeats = bounded_number(c3, "Repeats (seeds; mean ± std)", 1, MAX_REPEATS, 1,
                                 key="cmp_form_repeats")
        dense_epochs = bounded_number(c3, "Dense epochs", 1, MAX_EPOCHS, 5,
                                      key="cmp_form_dense_epochs")
        missing = [reason for _, ok, reason in datasets if not ok]
        if missing:  # each reason names the dataset; the whole width (in the datasets'
            # group, a 240-px column of fourteen lines pushed Batch sizes far down)
            st.caption(" · ".join(missing))
        with st.expander("More settings"):
            m1, m2, m3 = wrapping_columns(3, width=230)
            optimizer = m1.selectbox("Optimiser", list(OPTIMIZERS), key=kept_choice(
                "cmp_form_optimizer", list(OPTIMIZERS), default="adam"))
            lr = learning_rate_input(m1, key="cmp_form_lr")
            hidden = m1.text_input("MLP hidden widths",
                                   key=form_value("cmp_form_hidden", "256, 64"))
            seed = bounded_number(m2, "First seed", 0, 2 ** 31 - 1, 0, key="cmp_form_seed")
            calibration = bounded_number(m2, "Calibration samples (data-driven criteria)", 1,
                                         100000, 2048, key="cmp_form_calibration")
            latency_batch = bounded_number(m3, "Latency batch", 1, MAX_LATENCY_BATCH, 64,
                                           key="cmp_form_latency_batch")
            latency_repeats = bounded_number(m3, "Latency repeats (0 = no timing)", 0, 1000, 10,
                                             key="cmp_form_latency_repeats")
            save = m3.checkbox("Save every pruned model (for Inspect)",
                               key=form_value("cmp_form_save", True))
            use_cache = m3.checkbox("Share dense baselines via models_cache/",
                                    key=form_value("cmp_form_use_cache", True))
        name = run_name_input("new_sweep_name", "sweep", "Sweep name")
        numbers = (finetune, repeats, dense_epochs, lr, seed, calibration, latency_batch,
                   latency_repeats)
        if any(n is None for n in numbers):  # out of range: said under the field; Start
            # greyed, as for any refused setting (it vanished, with the estimate)
            st.button("Start sweep", type="primary", disabled=True)
            return
        try:
            cfg = SweepConfig(
                name=name.strip(), models=models, datasets=chosen_data,
                batch_sizes=_batch_list(batches), types=types, criteria=crits,
                ratios=_percent_list(ratios), finetune_epochs=int(finetune),
                repeats=int(repeats), seed=int(seed), dense_epochs=int(dense_epochs),
                lr=float(lr), optimizer=optimizer, mlp_hidden=list(parse_int_list(hidden)),
                calibration_samples=int(calibration), latency_batch=int(latency_batch),
                latency_repeats=int(latency_repeats), save_checkpoints=save,
                use_cache=use_cache).validate()
        except ExplorerError as exc:  # as a sentence, and no Start (greyed, as for an
            st.error(sentence(str(exc)))  # empty grid: it vanished)
            st.button("Start sweep", type="primary", disabled=True)
            return
        # The name is said at once, under the estimate's place: it was said after the
        # timing probe (seconds; ~9 s for a first ResNet-18 estimate), and before that
        # the grid looked ready to run.
        summary = st.container()
        bad_name = _name_problem(cfg.name)
        if bad_name:
            st.error(f"Sweep name: {bad_name}")
        with summary:
            try:
                with st.spinner("Sizing the grid and timing one training step per model…"):
                    facts = _grid_facts(cfg.to_dict(), _cache_stamp(cfg.datasets))
            except ExplorerError as exc:
                st.error(str(exc))
                return
            _grid_summary(facts)
        started = st.button("Start sweep", type="primary",
                            disabled=not facts["cells"] or bool(bad_name))
        kept_refusal("new_sweep", started)
        if started:
            try:
                paths = create_sweep(cfg, SWEEPS_ROOT, facts["per_group"])
                jobs.launch(paths, "compare")
            except ExplorerError as exc:
                refuse_start("new_sweep", exc)
                return
            st.session_state["active_sweep"] = str(paths.root)
            announce_start("new_sweep_name", f"Started {cfg.name}: {facts['cells']} cells",
                           "new_sweep_form")


def _name_problem(name: str) -> str | None:
    """Why a sweep of this name cannot start here, or None: the check a start makes
    (`rundir.check_new_run_dir` — the name's form, a sweep of that name already there
    today, a file in the way of the sweeps folder)."""
    try:
        check_new_run_dir(name, SWEEPS_ROOT, kind="sweep")
    except ExplorerError as exc:
        return str(exc)
    return None


def _grid_summary(facts: dict) -> None:
    if not facts["cells"]:
        reason = facts["empty"]
        st.warning(f"**Empty grid: nothing to start.** {reason[:1].upper()}{reason[1:]}.")
        return
    cached = f", {facts['cached']} cached" if facts["cached"] else ""
    baselines = counted(facts["groups"], "dense baseline")
    st.info(f"**{counted(facts['cells'], 'cell')}** over {baselines} "
            f"({facts['to_train']} to train{cached}) · estimated **≈ "
            f"{format_seconds(facts['seconds'])}** on this machine (from a timing probe; "
            "a busy CPU takes longer).")
    per_type = " · ".join(f"{PRUNING_TYPES[t].title}: {', '.join(map(criterion_name, c)) or '—'}"
                          for t, c in facts["criteria"].items())
    st.caption(f"Criteria per type — {per_type}")
    # as the cells are named: "0.5" typed for half shows up here as 0.5 %
    st.caption("Removed per cell — " + ", ".join(f"{r} %" for r in facts["ratios"]))
    for model, kind, why in facts["skipped"]:
        st.caption(f"Not in the grid: {PRUNING_TYPES[kind].title} on "
                   f"{ARCH_TITLES.get(model, model)} — {why}.")
    # three such batch sizes were three points of the batch-size chart, trained alike
    for dataset, n, batches in facts["full_batch"]:
        sizes, many = " and ".join(f"{b:,}" for b in batches), len(batches) > 1
        st.caption(f"Full batch: {dataset_name(dataset)} has {n:,} training samples, so "
                   + (f"batch sizes {sizes} take the whole split at once and train alike."
                      if many else f"batch size {sizes} takes the whole split at once."))


# ------------------------------------------------------------------ picking and watching

def pick_sweep() -> SweepPaths | None:
    sweeps = list_sweeps(SWEEPS_ROOT)
    if not sweeps:
        st.info("No sweeps yet: set one up above. A first grid on Digits (MLP, neuron and "
                "weight pruning, 11 ratios) takes well under a minute.")
        return None
    rows = []
    for s in sweeps:
        status = read_status(s)
        rows.append({"sweep": s.root.name, "date": s.root.parent.name,
                     "state": status.get("state", "?"),
                     "cells done": finished_count(s), "of": status.get("total_cells"),
                     "message": status.get("message", "")})
    return SweepPaths(run_picker(sweeps, rows, "Sweep", "active_sweep", "sweeps"))


def controls(paths: SweepPaths, state: str, done: int, total: int) -> None:
    if state in LIVE_STATES:
        stop_button(paths, "sweep", resumes="Resume skips the finished cells; the cell or "
                    "dense baseline under way is computed again.")
    elif done < total and st.button("Resume", type="primary",
                                    help="Continues with the unfinished cells."):
        try:
            jobs.launch(paths, "compare")
        except ExplorerError as exc:
            st.error(str(exc))
        else:
            st.rerun()


def live_view(paths: SweepPaths, drawn: str) -> None:
    """`drawn`: the state the page was drawn with, its list of runs included."""
    prog = progress(paths)
    if drawn in LIVE_STATES and prog.state != drawn:
        # ended (redraw the page with its results) or went from queued to
        # running: the list above went on saying "queued · starting worker"
        st.rerun()
    status_header(prog.state, prog.message, paths)
    st.progress(prog.fraction, text=f"{prog.cells_done} of {prog.total_cells} cells"
                + (f" · {prog.activity}" if prog.activity else ""))
    _unreadable_note(prog.unreadable)
    metrics = wrapping_row()
    elapsed_metric(metrics, prog.state, prog.elapsed, "sweep", prog.last_report)
    if prog.state in LIVE_STATES:
        _remaining_metric(metrics, prog)
    else:
        metrics.metric("Remaining (est.)", "—")
    metrics.metric("Cells done", f"{prog.cells_done} / {prog.total_cells}")
    controls(paths, prog.state, prog.cells_done, prog.total_cells)
    results_section(paths, live=prog.state in LIVE_STATES)


def _remaining_metric(col: DeltaGenerator, prog: SweepProgress) -> None:
    """The time left, counting down while a cell or baseline runs. A step past its
    estimate is said to be (`SweepProgress.overdue`): the time left is then the work
    after it, a lower bound, where a plain number read as stuck or as "0 s" done."""
    if not prog.overdue:
        col.metric("Remaining (est.)", format_seconds(prog.eta))
        return
    value = f"over {format_seconds(prog.eta)}" if prog.eta is not None and prog.eta >= 1 \
        else "the step under way"
    col.metric("Remaining (est.)", value,
               delta=f"step under way: {format_seconds(prog.overdue)} past its estimate",
               delta_color="orange", delta_arrow="off",
               help="The cell or baseline being computed has run longer than estimated; "
                    "the time shown is the work after it.")


def _unreadable_note(names: list[str]) -> None:
    """Why a sweep counts fewer cells than it ran: records truncated or unreadable in
    cells/ are not finished cells (a finished sweep showed "38 of 40 cells" and a
    Resume button, and nothing said why)."""
    if not names:
        return
    listed = ", ".join(names[:3]) + (" …" if len(names) > 3 else "")
    records = "cell record" if len(names) == 1 else "cell records"
    st.warning(f"{len(names)} {records} could not be read ({listed}); Resume redoes "
               f"{'that cell' if len(names) == 1 else 'those cells'}.")


# ------------------------------------------------------------------ results

def _filter(frame: pd.DataFrame, picks: dict[str, list]) -> pd.DataFrame:
    for column, values in picks.items():
        frame = frame[frame[column].isin(values)]
    return frame


def results_section(paths: SweepPaths, live: bool) -> None:
    results = everything = results_frame(paths)
    if results.empty:
        st.caption("No finished cell yet: the first rows appear once the first dense "
                   "baseline is trained.")
        return
    picks = {}
    options = {"model": "Show models", "dataset": "Show datasets", "batch_size": "Show batch sizes"}
    shown = [c for c in options if results[c].nunique() > 1]
    if shown and not live:
        cols = st.columns(len(shown))
        for col, column in zip(cols, shown):
            values = sorted(results[column].unique().tolist())
            # Keyed by sweep and values: each sweep opens with all of its rows shown
            # (one shared key showed a sweep only the values another sweep had left).
            picks[column] = col.multiselect(options[column], values, default=values, wrap=True,
                                            format_func=NAMERS.get(column, str),
                                            key=f"filter-{paths.root}-{column}-{values}")
    results = _filter(results, picks)
    if results.empty:
        st.info("Nothing selected: pick at least one value in each filter above.")
        return
    summary = summary_frame(results)
    for line in unlearned_baselines(results.to_dict("records")):
        st.warning(line[:1].upper() + line[1:] + ".")
    failed = results[results["status"] == "failed"]
    if not failed.empty:
        st.warning(f"{len(failed)} cell(s) failed: " + "; ".join(
            f"{r.cell_id}: {r.note}" for r in failed.head(3).itertuples())
            + (" …" if len(failed) > 3 else ""))
    _speed_note(results)
    tabs = st.tabs(["Accuracy vs ratio", "Accuracy vs MACs", "Batch size", "Table"])
    key = "live" if live else "done"
    with tabs[0]:
        # what the 0 % points are, in the chart's subtitle so its PNG says it too
        note = untuned_dense_note(paths)
        chart_panels(charts.compare_ratio_panels(summary, note))
        chart = charts.compare_ratio_chart(summary, note)  # one image, for the PNG
        if not live:
            png_download_button("Download PNG", chart,
                                download_name(paths.root, "accuracy_vs_ratio.png"),
                                f"png-ratio-{key}")
    with tabs[1]:
        _pareto_tab(summary, key, live, paths)
    with tabs[2]:
        if results["batch_size"].nunique() < 2:
            st.caption("This sweep has one batch size: pick two or more to see their effect.")
        chart = charts.compare_batch_chart(results)
        row = wrapping_row()  # side by side at 1400 px, one a row at 800 (two columns
        # there drew each chart 226 px wide)
        for single in charts.compare_batch_charts(results, on_page=True):
            row.container(width=BATCH_CHART_WIDTH).altair_chart(single, width="stretch")
        if not live:
            png_download_button("Download PNG", chart, download_name(paths.root, "batch_size.png"),
                                f"png-batch-{key}")
    with tabs[3]:
        _table(summary, paths, live, everything, hidden=len(results) < len(everything))


def _pareto_tab(summary: pd.DataFrame, key: str, live: bool, paths: SweepPaths) -> None:
    """Accuracy against MACs, with each dataset's Pareto front; a line instead when no
    grid point has MACs (a sweep of 100 % ratios drew an empty frame, and its PNG was a
    title above nothing)."""
    if not (pd.to_numeric(summary["macs_mean"], errors="coerce") > 0).any():
        st.info("Nothing to plot against MACs: every grid point shown is a dead model "
                "(100 % pruned), which computes nothing, or a failed cell. Ratios below "
                "100 % give points here.")
        return
    front = pareto_by(summary)
    chart_panels(charts.compare_pareto_panels(summary, front))
    chart = charts.compare_pareto_chart(summary, front)  # one image, for the PNG
    st.caption("Every grid point (mean over repeats), one panel per model"
               + (" and batch size" if summary["batch_size"].nunique() > 1 else "")
               + " on each dataset; dead models (100 %) have no MACs and are left out. "
               + charts.PARETO_NOTE + " Accuracies on different datasets are not "
               "comparable, so no front spans two. Hover a point for its ratio.")
    if not live:
        png_download_button("Download PNG", chart,
                            download_name(paths.root, "accuracy_vs_macs.png"),
                            f"png-pareto-{key}")


# short heads, each explained in its help, and the per cent signs on the numbers: with
# 'speed vs dense', 'MACs vs dense', 'removed %' and 'non-zero %' the table scrolled
# sideways in an 800-px window
SPEED, RANGE, MACS = "speed-up", "range (timings)", "MACs"


def _speed_note(results: pd.DataFrame) -> None:
    """The mask caveat, with this sweep's own measurements beside it."""
    speed = speedups(results)
    st.info(speed_note(results["type"], results["model"]))
    if speed.empty:
        return
    timed = speed["speedup"].notna().any()
    view = pd.DataFrame({
        "model": speed["model"].map(model_name),
        "dataset": speed["dataset"].map(dataset_name),
        "type": speed["type"].map(type_name),
        "removed": speed["ratio"] * 100, SPEED: speed["speedup"],
        # one column, not a range and a count beside it: at 800 px the table scrolled
        RANGE: [_timing_range(lo, hi, n) for lo, hi, n in
                zip(speed["speedup_min"], speed["speedup_max"], speed["timings"])],
        MACS: speed["mac_share"],
        "non-zero": 100 * speed["nonzero_share"],
        "cells": speed["cells"]})
    if speed["dataset"].nunique() < 2:
        view = view.drop(columns="dataset")
    if timed and (speed["timings"] <= 1).all():  # a column of "— (1)"
        view = view.drop(columns=RANGE)
    if not timed:  # latency timing was off: no column of blanks
        view = view.drop(columns=[SPEED, RANGE])
        st.caption("Latency was not timed in this sweep: MACs and non-zero parameters only.")
    _unsteady_timing_warning(results)
    _dense_gap_caption(results)
    st.dataframe(view, hide_index=True, column_config={
        "removed": st.column_config.NumberColumn(format="%g %%"),
        SPEED: st.column_config.NumberColumn(
            format="%.2f×", help="how many times faster than the dense model: dense latency "
                                 "/ latency (CPU, one thread; the two timed interleaved), "
                                 "mean over the row's distinct timings"),
        RANGE: st.column_config.TextColumn(
            help="slowest–fastest of the row's distinct timings (— for a single one), and "
                 "how many distinct latency measurements are behind the row: cells with "
                 "the same architecture (criteria giving the same widths, batch sizes, "
                 "seeds) share one, and a mask type is timed once per sweep — masked "
                 "models keep the dense shapes"),
        MACS: st.column_config.NumberColumn(
            format="%.2f×", help="multiply-accumulates per sample, as a multiple of the "
                                 "dense model's"),
        "non-zero": st.column_config.NumberColumn(
            format="%.0f %%", help="non-zero parameters / the dense model's parameters")})


def _dense_gap_caption(results: pd.DataFrame) -> None:
    """Why the table's latencies give other ratios than the speed-ups, when they do."""
    gaps = dense_latency_gaps(results)
    if gaps.empty:
        return
    which = "; ".join(
        f"{model_name(r.model)} · {dataset_name(r.dataset)}: {r.table_ms:.3g} ms in the "
        f"table, {_ms_range(r.paired_ms_min, r.paired_ms_max)} beside the pruned models"
        for r in gaps.itertuples())
    st.caption(f"Each speed-up divides the dense model's latency, timed beside the pruned "
               f"model, by the pruned model's. The table's 0 % rows show another timing of "
               f"the dense model, taken at another moment ({which}), so latencies read off "
               f"the table give other ratios.")


def _span(lo: float, hi: float, fmt: str) -> str:
    """'1.02–1.31'; one value when the two round alike ('1.57', not '1.57–1.57')."""
    a, b = format(lo, fmt), format(hi, fmt)
    return a if a == b else f"{a}–{b}"


def _ms_range(lo: float, hi: float) -> str:
    return f"{_span(lo, hi, '.3g')} ms"


def _timing_range(slowest: float, fastest: float, timings: int) -> str:
    """'1.02–1.31× (3)', '1.57× (2)' (`_span`); '— (1)' for a single timing."""
    if timings <= 1:
        return "— (1)"
    return f"{_span(slowest, fastest, '.2f')}× ({timings:g})"


def _departure(kind: str, model: str, dataset: str, rows: pd.DataFrame) -> str:
    """One type's off-speed timings on one model: "Weight on MLP · Digits at 10–90 %
    (9 ratios): 0.75×". A mask type is timed once per model, so its ratios share a
    speed-up: listed one by one, nine ratios repeated "0.75×" nine times."""
    lo, hi = float(rows["ratio"].min()) * 100, float(rows["ratio"].max()) * 100
    where = f"{lo:g} %" if len(rows) == 1 else f"{lo:g}–{hi:g} % ({len(rows)} ratios)"
    speed = _span(rows["speedup"].min(), rows["speedup"].max(), ".2f")
    return (f"{PRUNING_TYPES[kind].title} on {model_name(model)} · {dataset_name(dataset)} at "
            f"{where}: {speed}×")


def _departures(rows: pd.DataFrame) -> str:
    """`_departure` of each type on each model among `rows`, "; "-joined."""
    return "; ".join(_departure(kind, model, dataset, group) for (kind, model, dataset), group
                     in rows.groupby(["type", "model", "dataset"], sort=False))


def _unsteady_timing_warning(results: pd.DataFrame) -> None:
    """Say when this sweep's own timings show a busy CPU: the dense model's latency
    varied, a masked model (the dense shapes) did not time at the dense speed, or a model
    with units removed timed slower than its dense model."""
    spread = dense_timing_spread(results)
    shaky = spread[spread["spread"] > UNSTEADY_TIMING]
    masks = mask_timing_departures(results)
    slower = slower_pruned_models(results)
    if shaky.empty and masks.empty and slower.empty:
        return
    why = []
    if not shaky.empty:
        which = "; ".join(f"{model_name(r.model)} on {dataset_name(r.dataset)}: "
                          f"{r.dense_ms_min:.3g}–{r.dense_ms_max:.3g} ms ({r.spread:.1f}×)"
                          for r in shaky.itertuples())
        why.append(f"The dense model's own latency varied across this sweep's timings — "
                   f"{which}.")
    if not masks.empty:
        why.append(f"Masked models compute the dense shapes, so they run at the dense speed, "
                   f"yet this sweep timed them otherwise — {_departures(masks)}.")
    if not slower.empty:
        why.append(f"Models with units removed compute less than the dense model, yet this "
                   f"sweep timed them slower — {_departures(slower)}.")
    st.warning(f"**These speed-ups are rough.** {' '.join(why)} Most likely the CPU was "
               f"busy with other work while timing. Accuracy, MACs and parameters are "
               f"unaffected; for firm speed-ups run the sweep again with the machine otherwise "
               f"idle.")


def _table(summary: pd.DataFrame, paths: SweepPaths, live: bool,
           everything: pd.DataFrame, hidden: bool) -> None:
    view = named(summary).rename(columns={"test_acc_mean": "accuracy", "test_acc_std": "± std",
                                   "test_loss_mean": "cross-entropy", "macs_mean": "MACs",
                                   "nonzero_params_mean": "non-zero params",
                                   "params_mean": "params", "latency_ms_mean": "latency ms",
                                   "train_flops_mean": "train FLOPs",
                                   "dense_train_seconds_mean": "dense train s",
                                   "finetune_seconds_mean": "fine-tune s",
                                   "peak_mb_mean": "peak MB", "batch_size": "batch size"})
    view["ratio"] = view["ratio"] * 100
    keep = ["model", "dataset", "batch size", "type", "criterion", "ratio", "n", "status",
            "accuracy", "± std", "cross-entropy", "params", "non-zero params", "MACs",
            "train FLOPs", "latency ms", "dense train s", "fine-tune s", "peak MB"]
    repeats = pd.to_numeric(view["n"], errors="coerce").max() > 1
    if not repeats:  # one seed per point: a std column would hold nothing but blanks
        keep.remove("± std")
    if view["latency ms"].isna().all():
        keep.remove("latency ms")
    two = st.column_config.NumberColumn(format="%.2f")
    big = st.column_config.NumberColumn(format="localized")
    # a dead row's dense "params" beside "non-zero 186" and no MACs read as no compression
    params = st.column_config.NumberColumn(format="localized", help=(
        "every parameter of the model's shapes; a 100 % (dead) row keeps the dense shapes "
        "with every weight zero: its non-zero params are what is left (biases)"))
    macs = st.column_config.NumberColumn(format="localized", help=(
        "multiply-accumulates per sample; 0 for a 100 % (dead) row, whose output is a "
        "constant: nothing is left to compute"))
    # what the two cost columns count: per batch or per image, per sample or per run
    batches = sorted({int(b) for b in pd.to_numeric(everything["latency_batch"],
                                                    errors="coerce").dropna()})
    batch = f"{', '.join(map(str, batches))} images" if batches else "images"
    latency = st.column_config.NumberColumn(format="%.3f", help=(
        f"milliseconds of one forward pass over a batch of {batch} (CPU, one thread; "
        "the median of the timed repeats)"))
    flops = st.column_config.NumberColumn(format="localized", help=(
        "floating-point operations of one training step per sample: forward and "
        "backward pass (cross-entropy), not of the whole training run"))
    # ~850 MB for a 2 778-parameter MLP read as the model's own footprint
    peak = st.column_config.NumberColumn(format="%.0f", help=(
        "the worker process's peak resident memory while the cell ran (pruning, "
        "fine-tuning, evaluation), in MB: it includes what the process already holds — "
        "torch itself (~0.8 GB), the dataset, the dense baseline — so it tells cells apart "
        "only where a model's training needs much more than that"))
    st.dataframe(view[keep], hide_index=True, width="stretch", column_config={
        "ratio": st.column_config.NumberColumn("ratio %", format="%g"),
        "accuracy": two, "± std": two,
        "cross-entropy": st.column_config.NumberColumn(format="%.4f"),
        "latency ms": latency, "dense train s": two,
        "fine-tune s": two, "peak MB": peak,
        "params": params, "non-zero params": big, "MACs": macs, "train FLOPs": flops})
    st.caption("Sort by clicking a column. One row per grid point"
               + (": mean and std over repeats." if repeats else " (one seed each)."))
    if live:
        return
    _table_downloads(paths, everything, hidden)
    _inspect_handover(paths, everything)


def _table_downloads(paths: SweepPaths, everything: pd.DataFrame, hidden: bool) -> None:
    """results.csv and summary.csv of every finished cell, as the CLI writes them.

    The filters narrow the view, not the files: when they hide rows the buttons and a
    caption say so (a page showing one batch size gave files of all of them, unsaid).
    """
    whole = f" (all {len(everything)} cells)" if hidden else ""
    c1, c2 = st.columns(2)  # a third each cut "Download summary.csv (all 100 cells)"
    for col, name in ((c1, "results.csv"), (c2, "summary.csv")):
        col.download_button(f"Download {name}{whole}", lambda n=name: tables_text(everything)[n],
                            download_name(paths.root, name), mime="text/csv",
                            key=f"dl-{name}", on_click="ignore",
                            icon=":material/download:")
    if hidden:
        st.caption("The filters above apply to the view only: the downloads hold every "
                   "finished cell of the sweep.")


def _inspect_handover(paths: SweepPaths, results: pd.DataFrame) -> None:
    """Open one cell's saved model on the Inspect page, the cells named as the grid
    names them (a raw cell id was cut off before its ratio in the box)."""
    saved = {p.stem for p in paths.checkpoints_dir.glob("*.safetensors")} \
        if paths.checkpoints_dir.is_dir() else set()
    shared = [c for c in OMITTABLE if results[c].nunique() == 1]
    labels = {row.cell_id: _cell_label(row, shared) for row in results.itertuples()
              if row.cell_id in saved}
    # why a cell of the table is not in the box: a dead model was typed in and not found
    none = "dead (100 %) and failed cells save no model"
    if not labels:
        working = (results["status"] == "ok").any()
        off = read_record(paths.config).get("save_checkpoints") is False
        st.caption("No model of this sweep to open on the Inspect page: "
                   + (f"{none}." if not working else "it ran without saving checkpoints."
                      if off else f"its {paths.checkpoints_dir.name}/ folder holds none of "
                                  f"its cells' models."))
        return
    # the button under the box: beside it, a quarter of an 800-px page cut it to
    # "Open on the Insp…", and the box needs the width for the cell's whole name.
    # `kept_choice`: after a switch of sweeps the box kept showing the last sweep's cell
    # while Open took the new list's first cell
    cells = list(labels)
    cell = st.selectbox("Cell to inspect", cells, format_func=labels.get,
                        key=kept_choice("inspect-cell", cells, labels.get),
                        help=f"The cells whose model was saved: {none}.")
    if st.button("Open on the Inspect page"):
        st.session_state["inspect_checkpoint"] = str(paths.checkpoint(cell))
        st.switch_page("pages/inspect.py")


def _cell_label(row, shared: list[str]) -> str:
    """'MLP · batch 64 · Neuron · L1 norm of weights · 50 % — 91.23 % accuracy', without
    the parts every cell of the sweep shares (`shared`)."""
    cell = Cell(row.model, row.dataset, int(row.batch_size), int(row.seed), row.type,
                row.criterion, float(row.ratio))
    acc = pd.to_numeric(row.test_acc, errors="coerce")
    return cell.describe(shared) + (f" — {acc:.2f} % accuracy" if pd.notna(acc) else "")


setup_form()
sweep = pick_sweep()
if sweep is not None:
    drawn = read_status(sweep).get("state", "unknown")
    if drawn in LIVE_STATES:
        st.fragment(live_view, run_every=2.0)(sweep, drawn)
    else:
        live_view(sweep, drawn)
