"""Iterative pruning: set up, run, watch, stop, resume and read back prune → retrain loops.

The loop runs in a background worker (explorer_core.jobs); this page only starts it and
redraws from the run folder, so switching pages or closing the tab loses nothing.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from explorer_core import charts, jobs
from explorer_core.criteria import CRITERIA
from explorer_core.data import list_datasets
from explorer_core.errors import ExplorerError
from explorer_core.experiment import (TABLE_SCHEDULE, RunConfig, check_resumable, create_run,
                                      plan)
from explorer_core.labels import model_name
from explorer_core.results import (concatenate_held, deployment_costs, iteration_rows, recommend,
                                   run_progress)
from explorer_core.rundir import (LIVE_STATES, RunPaths, default_runs_root, download_name,
                                  list_runs, read_json, read_status)
from explorer_core.schedule import MAX_ITERATIONS, SCHEDULES, USES_Q, parse_retain
from explorer_core.settings import MAX_EPOCHS, counted
from explorer_core.training import OPTIMIZERS, kept_epoch
from pages._common import (announce_start, bounded_number, elapsed_metric, form_value,
                           format_seconds, keep_widget_state, kept_choice, kept_refusal,
                           kept_uploads, learning_rate_input, parse_int_list, refuse_start,
                           require_app_navigation, run_name_input, run_picker, setup_expander,
                           status_header, stop_button, wrapping_columns, wrapping_row)

require_app_navigation()
# The New run form and the deploy tolerance as they were left after a visit to another
# page: they all came back as defaults (a retain.txt upload: `kept_uploads`).
FORM = "it_form_"
keep_widget_state("it_kept", lambda key: key.startswith(FORM) or key in (
    "new_run_name", "new_run_criterion", "new_run_eps", "new_run_per_class", "it_tolerance"))

st.title("Iterative pruning")
st.caption("Prune → retrain → validate, one iteration per row of the retention schedule. "
           "Runs continue in the background; come back any time.")

RUNS_ROOT = default_runs_root()
INSPECT_PAGE = Path(__file__).resolve().parent / "inspect.py"


def _defaults() -> dict:
    """Start from the Retention curve page's schedule when the user made one there, unless
    its widths are a conv net's (`from_conv`): this page trains MLPs."""
    conv = st.session_state.get("retention_schedule_model")
    chosen = {} if conv else st.session_state.get("retention_schedule") or {}
    return {"widths": ", ".join(str(w) for w in chosen.get("widths", [256, 64])),
            "q": float(chosen.get("q", 0.8)), "iterations": int(chosen.get("iterations", 31)),
            "kind": chosen.get("kind", "geometric"), "from_page": bool(chosen),
            "from_conv": conv}


def _follow_retention_page(d: dict) -> None:
    """Put a schedule newly made on the Retention curve page into the form's schedule
    fields; otherwise they keep what was typed (`keep_widget_state`)."""
    handed = (d["widths"], d["q"], d["iterations"], d["kind"])
    if st.session_state.get("it_schedule_handed") != handed:
        st.session_state["it_schedule_handed"] = handed
        st.session_state.update({f"{FORM}widths": d["widths"], f"{FORM}q": d["q"],
                                 f"{FORM}iterations": d["iterations"], f"{FORM}kind": d["kind"]})


def setup_form() -> None:
    d = _defaults()
    _follow_retention_page(d)
    datasets = list_datasets()
    available = [info.name for info, ok, _ in datasets if ok]
    titles = {info.name: info.title for info, _, _ in datasets}
    with setup_expander("New run", "new_run_form", expanded=not list_runs(RUNS_ROOT)):
        if d["from_page"]:
            st.info("Schedule taken from the Retention curve page.")
        elif d["from_conv"]:
            st.info(f"The Retention curve page's schedule is a {model_name(d['from_conv'])}'s "
                    "(conv channels, then hidden layers); this page trains MLPs, so it starts "
                    "from its default schedule.")
        missing = [reason for _, ok, reason in datasets if not ok]
        criterion, options = criterion_inputs()
        # Live widgets, not an st.form: a form's fields reach the script only when it is
        # submitted, so whatever was set was lost on a visit to another page, and q could
        # not be greyed for the schedules that ignore it (a cubic run recorded q 0.5).
        # groups that wrap (one a row at 800 px, where three columns cut labels to
        # 'Retrain after e…'), as on the Compare page
        c1, c2, c3 = wrapping_columns(3)
        dataset = c1.selectbox("Dataset", available, format_func=titles.get,
                               key=kept_choice(f"{FORM}dataset", available, titles.get),
                               help="Datasets missing offline are listed below the form.")
        # the widths and schedule fields are drawn once the uploader below has said
        # whether a retain.txt replaces them: then they are greyed, and not read
        widths_slot, schedule_slot = c1.container(), c2.container()
        # no `type=`: Streamlit refused a .png in the browser, and the run then started
        # on the form's 31-iteration schedule; here any file is read, and refused if it
        # is no table
        retain_file = kept_uploads(
            "…or follow a retain.txt", "new_run_retain", where=c2, multiple=False,
            help="A retention table (the Retention page's download, the `retention` "
                 "command's file, or one edited by hand): its first row is the dense "
                 "model's widths, each later row one iteration. It replaces the hidden "
                 "widths and the schedule set here.")
        following = bool(retain_file)
        widths = widths_slot.text_input("Hidden widths (MLP)", disabled=following,
                                        key=form_value(f"{FORM}widths", d["widths"]))
        kinds = list(SCHEDULES)
        kind = schedule_slot.selectbox("Schedule", kinds, disabled=following, key=kept_choice(
            f"{FORM}kind", kinds, default=d["kind"]))
        # No bounds tighter than the core's: any schedule the Retention page accepted
        # must fit here (RunConfig.validate judges q).
        # %g shows the value as typed: "%.3f" showed q = 0.0001 as 0.000
        q = schedule_slot.number_input("q (keep factor per iteration)", step=0.01, format="%g",
                                       key=form_value(f"{FORM}q", d["q"]),
                                       disabled=following or kind not in USES_Q,
                                       help="Geometric schedule only: 0 < q < 1. Linear and "
                                            "cubic schedules ignore it.")
        iterations = bounded_number(schedule_slot, "Schedule iterations", 1, MAX_ITERATIONS,
                                    d["iterations"], key=f"{FORM}iterations",
                                    disabled=following)
        if following:
            c2.caption(f"Following {retain_file[0][0]}: its first row is the dense model's "
                       "widths and each later row one iteration, so the hidden widths and "
                       "schedule fields are not used.")
        max_drop = bounded_number(c2, "Stop when accuracy drops more than (points, 0 = never)",
                                  0.0, 100.0, 0.0, step=0.5, key=f"{FORM}max_drop")
        min_neurons = bounded_number(c2, "Stop at this many hidden neurons", 1, 100000, 1,
                                     key=f"{FORM}min_neurons")
        retrain = c3.checkbox("Retrain after each pruning step",
                              key=form_value(f"{FORM}retrain", True))
        dense_epochs = bounded_number(c3, "Dense epochs", 1, MAX_EPOCHS, 5,
                                      key=f"{FORM}dense_epochs")
        retrain_epochs = bounded_number(c3, "Retrain epochs per iteration", 1, MAX_EPOCHS, 1,
                                        key=f"{FORM}retrain_epochs", disabled=not retrain)
        patience = bounded_number(c3, "Early-stopping patience (0 = off)", 0, 1000, 0,
                                  key=f"{FORM}patience")
        optimizer = c3.selectbox("Optimiser", list(OPTIMIZERS), key=kept_choice(
            f"{FORM}optimizer", list(OPTIMIZERS), default="adam"))
        lr = learning_rate_input(c3, key=f"{FORM}lr")
        batch = bounded_number(c3, "Batch size", 1, 100000, 64, key=f"{FORM}batch")
        seed = bounded_number(c3, "Seed", 0, 2**31 - 1, 0, key=f"{FORM}seed")
        name = run_name_input("new_run_name", "run")
        submitted = st.button("Start run", type="primary")
        if missing:
            st.caption(" · ".join(missing))  # each reason names the dataset
    # greyed fields count for nothing, not even when out of range
    numbers = (options, max_drop, min_neurons, dense_epochs, patience, lr, batch, seed) + \
        (() if following else (iterations,)) + ((retrain_epochs,) if retrain else ())
    kept_refusal("new_run", submitted)
    if not submitted or any(n is None for n in numbers):  # out of range: said in the form
        return
    defaults = RunConfig()
    try:
        if following:
            hidden, schedule = _followed_table(*retain_file[0])
        else:  # a ramp records the default q, as the CLI's does: the q typed is not used
            hidden = list(parse_int_list(widths))
            schedule = {"q": float(q) if kind in USES_Q else defaults.schedule["q"],
                        "iterations": int(iterations), "kind": kind}
        cfg = RunConfig(name=name.strip(), dataset=dataset, hidden=hidden, schedule=schedule,
                        criterion=criterion, criterion_options=options, retrain=retrain,
                        dense_epochs=int(dense_epochs),
                        retrain_epochs=int(retrain_epochs) if retrain else
                        defaults.retrain_epochs, patience=int(patience),
                        optimizer=optimizer, lr=float(lr), batch_size=int(batch), seed=int(seed),
                        max_drop=float(max_drop) or None, min_neurons=int(min_neurons))
        paths = create_run(cfg, RUNS_ROOT)
        jobs.launch(paths)
    except ExplorerError as exc:
        refuse_start("new_run", exc)
        return
    st.session_state["active_run"] = str(paths.root)
    announce_start("new_run_name", f"Started {cfg.name}: {len(plan(cfg))} iterations",
                   "new_run_form")


def criterion_inputs() -> tuple[str, dict | None]:
    """The criterion and the options only interval-adjoint has (ε-boxes, per-class seeds).

    Outside the form so the options can follow the criterion: they are disabled, and not
    sent, for any other criterion. Inside it, an ε kept from an earlier interval-adjoint
    run went with the next L1 run, which the core refuses ("criterion option eps applies
    to interval_adjoint only"), until the field was reset by hand. Options None: ε is
    out of range (said under its field).
    """
    names = list(CRITERIA)
    c1, c2, c3 = wrapping_columns(3, vertical_alignment="bottom")  # 800 px: 'Interval adjoin'
    criterion = c1.selectbox("Criterion", names,
                             index=names.index("interval_adjoint")
                             if "interval_adjoint" in names else 0,
                             format_func=lambda c: CRITERIA[c].title, key="new_run_criterion",
                             help="Scores every hidden neuron before each pruning step; the "
                                  "lowest-scoring ones of each layer are removed.")
    iasa = criterion == "interval_adjoint"
    eps = bounded_number(
        c2, "Interval-adjoint ε (0 = box around the training set)", 0.0, 1000.0, 0.0,
        step=0.01, format="%g", key="new_run_eps", disabled=not iasa,
        help="Interval-adjoint only: one input box [x − ε, x + ε] per training sample "
             "(normalised input space) instead of one box around the whole training set.")
    per_class = c3.checkbox(
        "Interval-adjoint per-class seeds", key="new_run_per_class", disabled=not iasa,
        help="Interval-adjoint only: seed one class at a time; a neuron scores its largest "
             "value over the classes.")
    if not iasa:
        st.caption(f"ε and per-class seeds are options of the interval-adjoint criterion: "
                   f"{CRITERIA[criterion].title} does not use them, so they are left out "
                   f"of the run.")
        return criterion, {}
    if eps is None:  # out of range: said under the field
        return criterion, None
    options = {k: v for k, v in (("eps", float(eps) or None), ("per_class", per_class or None))
               if v is not None}
    return criterion, options


def _followed_table(name: str, data: bytes) -> tuple[list[int], dict]:
    """Hidden widths and a table schedule from an uploaded retain.txt (read as text)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ExplorerError(f"{name} is not a text file; upload a retain.txt") from None
    table = parse_retain(text, name)
    return list(table.dense), {"kind": TABLE_SCHEDULE, "rows": [list(w) for w in table.widths]}


def pick_run() -> RunPaths | None:
    runs = list_runs(RUNS_ROOT)
    if not runs:
        st.info("No runs yet: set one up above. Iteration 0 trains the dense model, then each "
                "iteration prunes to the next row of the schedule.")
        return None
    rows = []
    for r in runs:
        status = read_status(r)
        rows.append({"run": r.root.name, "date": r.root.parent.name,
                     "state": status.get("state", "?"),
                     "iterations done": len(r.completed_iterations()),
                     "of": status.get("total_iterations"), "message": status.get("message", "")})
    return RunPaths(run_picker(runs, rows, "Run", "active_run", "runs"))


def controls(paths: RunPaths, state: str) -> None:
    c1, c2, c3 = st.columns([1, 1, 2])
    if state in LIVE_STATES:
        stop_button(paths, "run", c1, resumes="Resume continues from the last finished "
                    "iteration: the one under way (the dense training, at first) is trained "
                    "again from its start.")
        return
    below = st.container()  # under the buttons, the whole width: a third of an 800-px
    # window cut the discard box's label
    done = len(paths.completed_iterations())
    # A finished run (its schedule done, or ended by its stopping rule) can only be redone
    # from an earlier iteration: continuing it would go past the rule.
    finished = state == "finished"
    last = done - 1 if finished else done
    if not finished or done > 1:
        # named for the button beside it: "Restart from iteration" read oddly by Resume
        restart = bounded_number(c3, f"{'Restart' if finished else 'Resume'} from iteration",
                                 0, last, last, help=(
                                     "Like the thesis' begin_itr: iterations from here on "
                                     "are redone."))
        # Iterations the restart deletes before it redoes them: said, and ticked off
        # first (one click on Restart from 0 discarded a finished run's every iteration)
        discards = restart is not None and int(restart) < done
        confirmed = not discards or below.checkbox(
            f"Discard {_iterations(int(restart), done - 1)} (checkpoints and results) to "
            f"redo {'it' if int(restart) == done - 1 else 'them'}",
            key=f"it_discard_{paths.root}_{int(restart)}")
        # "Restart" whenever it redoes finished iterations, as the box below says
        if c1.button("Restart" if finished or discards else "Resume", type="primary",
                     disabled=restart is None or not confirmed):
            try:
                check_resumable(paths, int(restart))  # refused here, not as a "failed" run
                jobs.launch(paths, extra=["--from-iteration", str(int(restart))])
            except ExplorerError as exc:
                st.error(str(exc))
            else:
                st.rerun()


def _iterations(first: int, last: int) -> str:
    return f"iteration {first}" if first == last else f"iterations {first}–{last}"


def live_view(paths: RunPaths, drawn: str) -> None:
    """`drawn`: the state the page was drawn with, its list of runs included."""
    prog = run_progress(paths)
    if drawn in LIVE_STATES and prog.state != drawn:
        # ended (redraw the page with its results) or went from queued to
        # running: the list above went on saying "queued · starting worker"
        st.rerun()
    status_header(prog.state, prog.message, paths)
    redone = len(prog.epochs) - prog.epochs_done  # of an iteration a stop or crash cut short
    st.progress(prog.fraction, text=f"iteration {prog.iteration if prog.iteration is not None else '—'}"
                f" of {max(prog.total_iterations - 1, 0)} · epoch {prog.epochs_done}/{prog.total_epochs}"
                + (f" · {counted(redone, 'epoch')} of the unfinished iteration, shown below, "
                   f"{'is' if redone == 1 else 'are'} trained again on resume"
                   if redone > 0 else ""))
    metrics = wrapping_row()  # four equal columns cut '37.88 %' to '37.8…' at 800 px
    elapsed_metric(metrics, prog.state, prog.elapsed, "run", prog.last_report)
    metrics.metric("Remaining (est.)", format_seconds(prog.eta) if prog.state in LIVE_STATES else "—")
    last = prog.iterations[-1] if prog.iterations else None
    metrics.metric("Hidden neurons kept", f"{last['percent_retained']:.1f} %" if last else "—")
    metrics.metric("Test accuracy", f"{last['test_acc']:.2f} %" if last else "—")
    controls(paths, prog.state)
    if prog.epochs:
        current = prog.iteration if prog.iteration is not None else prog.epochs[-1]["iteration"]
        current_epochs = [e for e in prog.epochs if e["iteration"] == current] or \
            [e for e in prog.epochs if e["iteration"] == prog.epochs[-1]["iteration"]]
        shown = current_epochs[0]["iteration"]
        live = prog.state in LIVE_STATES
        complete = shown in paths.completed_iterations()
        # an iteration a stop or crash cut short kept nothing: no ring for it
        kept = kept_epoch(current_epochs) if complete or live else None
        # two charts a row, each stretched to its column: three in a row (or a fixed-width
        # pair) ran off the page or squeezed the plots to a sliver at 1100 px
        c1, c2 = st.columns(2)
        c1.altair_chart(charts.epoch_accuracy_chart(current_epochs, kept), width="stretch")
        c2.altair_chart(charts.epoch_loss_chart(current_epochs, kept), width="stretch")
        if kept is not None and complete:
            st.caption(f"Ringed, on the dashed line: epoch {kept}, the one kept (lowest "
                       "validation loss). The metrics, the results table and the deploy "
                       "pick report the kept epoch, not the last one.")
        elif kept is not None:
            st.caption(f"Ringed, on the dashed line: epoch {kept}, the best so far (lowest "
                       "validation loss): the one kept if the iteration ended now.")
        else:
            st.caption(f"Iteration {shown} did not finish, so no model of it was kept; "
                       "resuming redoes it.")
        # the two "train accuracy" figures of one epoch differed (21.10 % here, 23.65 % in
        # the table) without a word on why
        st.caption("Train is measured during each epoch, as the weights change (the mean "
                   "over its batches); the results table evaluates the kept model on the "
                   "whole training set afterwards, so the two differ a little.")
        if prog.iterations:
            c1, c2 = st.columns(2)
            c1.altair_chart(charts.iteration_accuracy_chart(prog.iterations), width="stretch")
            c2.altair_chart(charts.iteration_loss_chart(prog.iterations), width="stretch")
            st.altair_chart(charts.iteration_widths_chart(prog.iterations), width="stretch")


def results_section(paths: RunPaths, state: str) -> None:
    rows = iteration_rows(paths)
    if not rows:
        return
    st.subheader("Results")
    table = pd.DataFrame([{"iteration": r.iteration, "widths": " ".join(map(str, r.widths)),
                           "% kept": r.percent_retained, "train acc": r.train_acc,
                           "test acc": r.test_acc, "train loss": r.train_loss,
                           "test loss": r.test_loss} for r in rows])
    # percentages to two decimals; losses to four significant digits: a well-fitted
    # model's train loss of 0.0024 read "0.00"
    two = st.column_config.NumberColumn(format="%.2f")
    loss = st.column_config.NumberColumn(format="%.4g")
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={c: loss if "loss" in c else two
                                for c in table.columns if c not in ("iteration", "widths")})
    if state not in LIVE_STATES and st.button("Write concatenated results",
                                              help="validations.txt, accuracies.png, losses.png"):
        try:
            written = concatenate_held(paths)
        except ExplorerError as exc:
            st.error(str(exc))
        else:
            names = ", ".join(f.name for f in written)
            st.success(f"Wrote {names} to {paths.validations.parent}")
            st.toast(f"Wrote {names}")
    files = [paths.validations, paths.accuracies_png, paths.losses_png]
    if state not in LIVE_STATES and not any(f.is_file() for f in files):
        # a run writes them when it finishes: stopped or cut short, the downloads were
        # missing without a word
        st.caption(f"This {state or 'unfinished'} run has no validations.txt, accuracies.png "
                   "or losses.png yet (a run writes them when it finishes): *Write "
                   "concatenated results* makes them from the iterations above.")
    row = wrapping_row()  # a third each cut 'Download validati…' at 800 px
    for f in files:
        if f.is_file():
            row.download_button(f"Download {f.name}", f.read_bytes(),
                                download_name(paths.root, f.name),
                                mime="image/png" if f.suffix == ".png" else "text/plain",
                                key=f"dl-{f.name}", on_click="ignore")
    deploy_section(paths, rows)


@st.cache_data(show_spinner=False, max_entries=32)
def _costs(dense: str, pruned: str, mtime: int) -> list[dict]:
    """Timing takes a second or two: measured once per checkpoint file version."""
    return deployment_costs(Path(dense), Path(pruned))


def _cost_table(dense, r) -> None:
    try:
        with st.spinner("Measuring size, MACs and latency…"):
            costs = _costs(str(dense.checkpoint), str(r.checkpoint),
                           r.checkpoint.stat().st_mtime_ns)
        # a short head for the ratio: "recommended / dense" pushed the column out of an
        # 800-px window's view, its right-aligned numbers with it
        st.dataframe(pd.DataFrame(costs), hide_index=True, column_config={
            "recommended / dense": st.column_config.NumberColumn(
                "÷ dense", format="%.3g", help="recommended ÷ dense")})
    except ExplorerError as exc:
        st.warning(str(exc))


def _training_settings(paths: RunPaths) -> str:
    """' This run: optimiser sgd, learning rate 10, 3 dense epochs.' (or '' if unreadable):
    the settings to check when the dense model did not learn."""
    cfg = read_json(paths.config, {})
    try:
        epochs = int(cfg["dense_epochs"])
        return (f" This run: optimiser {cfg['optimizer']}, learning rate {float(cfg['lr']):g}, "
                f"{counted(epochs, 'dense epoch')}.")
    except (TypeError, ValueError, KeyError):  # a hand-edited config.json: say nothing
        return ""


def deploy_section(paths: RunPaths, rows) -> None:
    st.subheader("Model to deploy")
    tol = bounded_number(st, "Accuracy tolerance (points below dense)", 0.0, 100.0, 1.0,
                         step=0.25, key="it_tolerance",
                         help="The smallest iteration whose test accuracy is at most this "
                              "many points below the dense model's, as the thesis picks it. "
                              "Each iteration's kept epoch is chosen on the validation split; "
                              "this pick is made on the test set.")
    if tol is None:  # out of range: said under the field
        return
    rec = recommend(rows, tol)
    if rec is None:
        st.caption("The dense model (iteration 0) is not complete yet.")
        return
    if not rec.dense_learned:
        # nothing to deploy or to measure: the judgement and its reason are the core's
        st.warning(rec.summary() + _training_settings(paths), icon=":material/warning:")
        return
    if not rec.deployable:  # no download of a file that does not load
        st.error(rec.summary(), icon=":material/error:")
        return
    r = rec.row
    if rec.is_dense:
        # no cost table: timing the dense model against itself measures noise, not a speed-up
        st.info(rec.summary(damaged=False) + " Raise the tolerance to consider pruned ones.")
    else:
        st.success(rec.summary(damaged=False))
    if rec.damaged:
        st.warning(rec.damaged_note(), icon=":material/warning:")
    if not rec.is_dense:
        _cost_table(rec.dense, r)
    row = wrapping_row()  # half each cut '(.safeten…' at 800 px
    # on_click="ignore": a download reran the page (its cost table too), and a second
    # download clicked meanwhile was cancelled
    row.download_button("Download checkpoint (.safetensors)", r.checkpoint.read_bytes(),
                        download_name(paths.root,
                                      f"iteration{r.iteration}_best_model.safetensors"),
                        key="dl-ckpt", on_click="ignore")
    row.download_button("Download model spec (.json)",
                        r.checkpoint.with_suffix(".json").read_bytes(),
                        download_name(paths.root, f"iteration{r.iteration}_best_model.json"),
                        key="dl-spec", on_click="ignore")
    st.caption("Keep the two files together: the weights file holds the model spec, the "
               ".json also its dataset, input normalisation and class names, which "
               "`load_checkpoint` reads from beside it.")
    # beside this file, not the working folder: `streamlit run /path/app.py` from
    # elsewhere lost the button
    if INSPECT_PAGE.is_file() and st.button("Open on the Inspect page"):
        st.session_state["inspect_checkpoint"] = str(r.checkpoint)
        st.switch_page("pages/inspect.py")


setup_form()
run = pick_run()
if run is not None:
    drawn = read_status(run).get("state", "unknown")
    live = drawn in LIVE_STATES
    st.fragment(live_view, run_every=1.5 if live else None)(run, drawn)
    if not live:
        results_section(run, read_status(run).get("state", ""))
