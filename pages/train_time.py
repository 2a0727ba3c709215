"""Train-time pruning: prune while training by neuron importance, against random and no pruning.

The comparison runs in a background worker (explorer_core.jobs); this page only sets it
up, then redraws from the run folder, so leaving the page or closing the tab loses nothing.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from explorer_core import charts, jobs
from explorer_core.criteria import CRITERIA
from explorer_core.data import list_datasets
from explorer_core.errors import ExplorerError
from explorer_core.labels import criterion_name, dataset_name
from explorer_core.models import ARCH_TITLES
from explorer_core.rundir import (LIVE_STATES, TrainTimePaths, default_train_time_root,
                                  download_name, list_train_time_runs, read_status)
from explorer_core.train_time import (DEFAULT_CHANNELS, DEFAULT_HIDDEN, MAX_PRUNE_FRACTION,
                                      MIN_PRUNE_FRACTION, TrainTimeConfig, create_run,
                                      final_rows, idle_prunes, load_config, progress,
                                      summarise)
from explorer_core.vae import VAE_CRITERIA
from explorer_core.settings import MAX_EPOCHS, counted
from pages._common import (announce_start, bounded_number, elapsed_metric, form_value,
                           format_int_list, format_seconds, keep_widget_state, kept_choice,
                           kept_refusal, learning_rate_input, parse_int_list,
                           png_download_button, refuse_start, require_app_navigation,
                           run_name_input, run_picker, setup_expander, status_header,
                           stop_button, wrapping_columns, wrapping_row)

require_app_navigation()
# The New comparison form as it was left after a visit to another page: it came back
# with every default.
FORM = "tt_form_"
keep_widget_state("tt_kept", lambda key: key.startswith(FORM) or key in ("tt_model", "tt_name"))

st.title("Train-time pruning")
st.caption("Train a network, and every few epochs remove the least important neurons while "
           "training goes on — next to the same training with random pruning and with no "
           "pruning (same seeds, same schedule). Runs continue in the background.")

ROOT = default_train_time_root()
DEFAULTS = TrainTimeConfig()
# What the user picks first; it decides the rest of the form: (task, arch) per choice.
MODELS = {"mlp": ("classifier", "mlp"), "cnn": ("classifier", "cnn"), "vae": ("vae", "mlp")}
MODEL_TITLES = {"mlp": "MLP classifier", "cnn": "CNN classifier", "vae": "VAE (generative)"}
WIDTHS_HELP = {
    "mlp": "Hidden layers (50, 30 as in the original study); every one is pruned.",
    "cnn": "Fully connected layers after the convs; they are pruned with the conv channels.",
    "vae": "Encoder layers; the decoder mirrors them. Both are pruned, the latent never.",
}


# ------------------------------------------------------------------ set-up


def setup_form() -> None:
    datasets = list_datasets()
    available = [info.name for info, ok, _ in datasets if ok]
    titles = {info.name: info.title for info, _, _ in datasets}
    missing = [reason for _, ok, reason in datasets if not ok]
    with setup_expander("New comparison", "tt_form", expanded=not list_train_time_runs(ROOT)):
        model = st.radio("Model", list(MODELS), format_func=MODEL_TITLES.get, horizontal=True,
                         key="tt_model")
        task, arch = MODELS[model]
        criteria = list(CRITERIA) if task == "classifier" else \
            [c for c in VAE_CRITERIA if c != "random"]
        # Live widgets, not an st.form: a form's fields reach the script only when it is
        # submitted, so whatever was set was lost on a visit to another page. The fields
        # every model has are shared; widths, channels, latent size and criterion are the
        # model's own (their defaults and choices differ).
        own = f"{FORM}{model}_"
        # groups that wrap (one a row at 800 px, where three columns cut labels to
        # 'Also run rando…'), as on the Compare page
        c1, c2, c3 = wrapping_columns(3)
        dataset = c1.selectbox("Dataset", available, format_func=titles.get,
                               key=kept_choice(f"{FORM}dataset", available, titles.get),
                               help="Datasets missing offline are listed below the form.")
        widths = c1.text_input("Hidden widths", help=WIDTHS_HELP[model], key=form_value(
            f"{own}widths", format_int_list(DEFAULT_HIDDEN["vae" if task == "vae" else arch])))
        if model == "cnn":
            channels = c1.text_input("Conv channels", key=form_value(
                f"{own}channels", format_int_list(DEFAULT_CHANNELS)))
        if task == "vae":
            latent = bounded_number(c1, "Latent size", 1, 1024, DEFAULTS.latent_size(),
                                    key=f"{own}latent")
        epochs = bounded_number(c2, "Total epochs", 2, MAX_EPOCHS, DEFAULTS.epochs,
                                key=f"{FORM}epochs")
        initial = bounded_number(c2, "Initial epochs before the first prune", 1, MAX_EPOCHS,
                                 DEFAULTS.initial_epochs, key=f"{FORM}initial")
        every = bounded_number(c2, "Prune every k epochs", 1, MAX_EPOCHS, DEFAULTS.prune_every,
                               key=f"{FORM}every")
        fraction = bounded_number(c2, "Removed per prune (% of each hidden layer)",
                                  100 * MIN_PRUNE_FRACTION, 100 * MAX_PRUNE_FRACTION,
                                  100 * DEFAULTS.prune_fraction, step=0.5,
                                  key=f"{FORM}fraction")
        criterion = c2.selectbox(
            "Criterion", criteria, format_func=lambda c: CRITERIA[c].title if c in CRITERIA else c,
            key=kept_choice(f"{own}criterion", criteria, default="contribution"),
            help="Ranks the units of each layer; the lowest go. 'Random pruning' removes "
                 "the same number at random.")
        with_random = c3.checkbox("Also run random pruning", key=form_value(f"{FORM}random",
                                                                            True))
        with_none = c3.checkbox("Also run without pruning", key=form_value(f"{FORM}none", True))
        seeds = c3.text_input("Seeds", key=form_value(f"{FORM}seeds", "0"),
                              help="Each variant runs once per seed; charts show the mean "
                                   "(and the min–max band) over seeds.")
        batch = bounded_number(c3, "Batch size", 1, 100_000, DEFAULTS.batch_size,
                               key=f"{FORM}batch")
        lr = learning_rate_input(c3, DEFAULTS.lr, key=f"{FORM}lr")
        name = run_name_input("tt_name", "tt")
        submitted = st.button("Start comparison", type="primary")
        if missing:
            st.caption(" · ".join(missing))  # each reason names the dataset
    numbers = (latent if task == "vae" else 1, epochs, initial, every, fraction, batch, lr)
    kept_refusal("tt_start", submitted)
    if not submitted or any(n is None for n in numbers):  # out of range: said in the form
        return
    try:
        variants = ["importance"] + ["random"] * with_random + ["none"] * with_none
        cfg = TrainTimeConfig(
            name=name.strip(), task=task, dataset=dataset, arch=arch,
            hidden=list(parse_int_list(widths)),
            channels=list(parse_int_list(channels, "conv channels", "16, 32")) if model == "cnn" else None,
            latent=int(latent) if task == "vae" else None,
            epochs=int(epochs), initial_epochs=int(initial), prune_every=int(every),
            prune_fraction=float(fraction) / 100, criterion=criterion, variants=variants,
            seeds=list(parse_int_list(seeds, "seeds", "0, 1, 2")), batch_size=int(batch), lr=float(lr))
        paths = create_run(cfg)
        jobs.launch(paths, "train-time")
    except ExplorerError as exc:
        refuse_start("tt_start", exc)
        return
    st.session_state["tt_active"] = str(paths.root)
    prunes, seeds = len(cfg.prune_points()), len(cfg.seeds)
    announce_start("tt_name", f"Started {cfg.name}: {counted(prunes, 'prune')}, "
                              f"{counted(len(variants), 'variant')} × {counted(seeds, 'seed')}",
                   "tt_form")


# ------------------------------------------------------------------ choosing a run

def pick_run() -> TrainTimePaths | None:
    runs = list_train_time_runs(ROOT)
    if not runs:
        st.info("No comparisons yet: start one above. The defaults (Digits, MLP 50-30, "
                f"{DEFAULTS.epochs} epochs, {len(DEFAULTS.prune_points())} prunes) finish in "
                "seconds.")
        return None
    rows = []
    for r in runs:
        status = read_status(r)
        cfg = _config(r)
        rows.append({"run": r.root.name, "date": r.root.parent.name,
                     "model": _model_name(cfg) if cfg else "?",
                     "dataset": dataset_name(cfg.dataset) if cfg else "?",
                     "state": status.get("state", "?"),
                     "runs saved": f"{len(r.completed_units())}/{status.get('total_units', '?')}",
                     "message": status.get("message", "")})
    return TrainTimePaths(run_picker(runs, rows, "Comparison", "tt_active", "comparisons"))


def _config(paths: TrainTimePaths) -> TrainTimeConfig | None:
    try:
        return load_config(paths)
    except ExplorerError:
        return None


# ------------------------------------------------------------------ live view

def controls(paths: TrainTimePaths, state: str, complete: bool) -> None:
    c1, _ = st.columns([1, 3])
    if state in LIVE_STATES:
        stop_button(paths, "run", c1)
        return
    if not complete and c1.button("Resume", type="primary",
                                  help="Seeds whose runs are saved are kept; the others are "
                                       "recomputed from their start (same numbers)."):
        try:
            jobs.launch(paths, "train-time")
        except ExplorerError as exc:
            st.error(str(exc))
        else:
            st.rerun()


def _model_name(cfg: TrainTimeConfig) -> str:
    """'MLP', 'CNN' or 'VAE': the runs list said "classifier" for MLPs and CNNs alike."""
    return "VAE" if cfg.task == "vae" else ARCH_TITLES.get(cfg.arch, cfg.arch)


def _describe(cfg: TrainTimeConfig) -> str:
    """The run's settings in one line, by the names the rest of the app uses ("on digits ·
    criterion contribution" read as ids beside the pickers' "Digits (8×8, bundled)")."""
    model = _model_name(cfg)
    points = cfg.prune_points()
    idle, left = idle_prunes(cfg)
    floor = (f"; from the one after epoch {idle[0]} on, none removes a unit: the layers "
             f"stay at {'·'.join(map(str, left))}" if idle else "")
    # a CNN's channels too: they are pruned with its hidden layers ('CNN 128' hid them)
    widths = (f"channels {format_int_list(cfg.conv_channels())}, hidden "
              if cfg.is_cnn else "") + \
        format_int_list(cfg.hidden_widths())
    return (f"{model} {widths} on {dataset_name(cfg.dataset)} · "
            f"{counted(cfg.epochs, 'epoch')} · {counted(len(points), 'prune')} of "
            f"{100 * cfg.prune_fraction:g} % "
            f"(after epoch{'s' if len(points) > 1 else ''} {', '.join(map(str, points))}"
            f"{floor}) · criterion {criterion_name(cfg.criterion)} · "
            f"seeds {format_int_list(cfg.seeds)}")


def chart_grid(cfg: TrainTimeConfig, epochs: list[dict], rows: list[dict], key: str,
               run: Path) -> None:
    """The curves side by side, then widths and sizes; each with its PNG download, named
    by the `run` folder's day and name (`download_name`)."""
    made = charts.train_time_charts(cfg.task, epochs, rows, cfg.labels(), cfg.prune_points(),
                                   cfg.epochs)
    # one curve per row: side by side, a laptop-sized window left each chart ~300 px,
    # too narrow for the three variants' legend and a readable plot
    for name in [n for n in made if n not in ("widths", "sizes")]:
        st.altair_chart(made[name], width="stretch")
        png_download_button(f"{name}.png", made[name], download_name(run, f"{name}.png"),
                            f"{key}-{name}")
    st.altair_chart(made["widths"], width="content")  # panels: a row of their own
    png_download_button("widths.png", made["widths"], download_name(run, "widths.png"),
                        f"{key}-widths")
    if "sizes" in made:  # the whole width: in half of an 800-px page its labels were cut
        st.altair_chart(made["sizes"], width="stretch")
        png_download_button("sizes.png", made["sizes"], download_name(run, "sizes.png"),
                            f"{key}-sizes")


def _where(prog) -> str:
    """'now seed 1, epoch 3' while it runs, 'stopped in seed 1, epoch 3' after a stop."""
    if prog.seed is None:
        return "every seed done"
    epoch = "starting" if prog.seed_epoch is None else f"epoch {prog.seed_epoch}"
    live = prog.state in LIVE_STATES
    return f"{'now' if live else f'{prog.state} in'} seed {prog.seed}, {epoch}"


def redo_note(prog) -> None:
    """Why a resume trains a seed's first epochs again, before and while it does."""
    why = ("a seed's variants are saved together when the seed ends, and recomputing it "
           "from its start gives exactly the numbers of an uninterrupted run")
    if prog.state in LIVE_STATES and prog.redo >= 0.5:
        st.caption(f"Seed {prog.seed} restarted from its first epoch: "
                   f"{counted(round(prog.redo), 'epoch')} trained before the stop "
                   f"{'are' if round(prog.redo) != 1 else 'is'} being recomputed ({why}). "
                   "The count above holds until the recomputation has caught up.")
    elif prog.state not in LIVE_STATES and prog.unsaved >= 0.5 and prog.seed is not None:
        st.caption(f"Seed {prog.seed} is not saved yet: Resume keeps the saved seeds and "
                   f"trains seed {prog.seed} again from its first epoch ({why}).")


def live_view(paths: TrainTimePaths, drawn: str) -> None:
    """`drawn`: the state the page was drawn with, its list of runs included."""
    prog = progress(paths)
    if drawn in LIVE_STATES and prog.state != drawn:
        # ended (redraw the page with its results) or went from queued to
        # running: the list above went on saying "queued · starting worker"
        st.rerun()
    cfg = _config(paths)
    status_header(prog.state, prog.message, paths)
    if cfg is None:
        st.error(f"{paths.root} has no readable config.json")
        return
    st.caption(_describe(cfg))
    st.progress(prog.fraction, text=f"{prog.work_shown:.0f} of {prog.work_total:.0f} epochs "
                f"trained · {_where(prog)} · {prog.units_done}/{prog.total_units} variant "
                f"runs saved")
    redo_note(prog)
    metrics = wrapping_row()
    elapsed_metric(metrics, prog.state, prog.elapsed, "comparison", prog.last_report)
    metrics.metric("Remaining (est.)", format_seconds(prog.eta) if prog.state in LIVE_STATES else "—")
    metrics.metric("Prunes", f"{len(cfg.prune_points())} × {100 * cfg.prune_fraction:g} %")
    controls(paths, prog.state, prog.units_done >= prog.total_units > 0)
    if prog.epochs:
        chart_grid(cfg, prog.epochs, final_rows(paths), "tt-live", paths.root)


# ------------------------------------------------------------------ results

def _fmt(value, digits: int = 2):
    return None if value is None else round(float(value), digits)


def results_section(paths: TrainTimePaths) -> None:
    cfg = _config(paths)
    rows = final_rows(paths)
    if cfg is None or not rows:
        return
    st.subheader("Final models")
    metric = "test_acc" if cfg.task == "classifier" else "test_loss"
    metric_title = "test accuracy (%)" if cfg.task == "classifier" else "test loss (−ELBO)"
    summary = summarise(rows, cfg.task)
    # a CNN's count adds its channels to its neurons: 176 for 16 + 32 + 128
    units = "channels + hidden units" if cfg.is_cnn else "hidden units"
    st.dataframe(pd.DataFrame([
        {"variant": s["label"], f"mean {metric_title}": _fmt(s[f"mean_{metric}"]),
         "per seed": ", ".join(f"{v:.2f}" for v in s[metric] if v is not None),
         units: _fmt(s["mean_hidden_units"], 1), "parameters": _fmt(s["mean_params"], 0)}
        for s in summary.values()]), hide_index=True, width="stretch")
    table = pd.DataFrame([{
        "variant": r["label"], "seed": r["seed"],
        "widths": " ".join(map(str, r["widths"])), "parameters": r.get("params"),
        **({"test acc": _fmt(r.get("test_acc")), "test loss": _fmt(r.get("test_loss"), 4)}
           if cfg.task == "classifier" else
           {"reconstruction": _fmt(r.get("test_recon")), "KL": _fmt(r.get("test_kl")),
            "−ELBO": _fmt(r.get("test_loss"))}),
        "checkpoint": r["checkpoint"]} for r in rows])
    # every row to the same decimals (87.7 stood beside 87.44)
    decimals = {"test acc": "%.2f", "test loss": "%.4f", "reconstruction": "%.2f", "KL": "%.2f",
                "−ELBO": "%.2f"}
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        c: st.column_config.NumberColumn(format=f) for c, f in decimals.items() if c in table})
    options = list(range(len(rows)))
    pick = st.selectbox("Final model", options,
                        format_func=lambda i: f"{rows[i]['label']}, seed {rows[i]['seed']}",
                        key="tt_final_pick")
    chosen = Path(rows[pick]["checkpoint"])
    stem = download_name(paths.root, f"{rows[pick]['variant']}_seed{rows[pick]['seed']}")
    row = wrapping_row()  # a third each cut "Checkpoint (.safe…" at 800 px
    row.download_button("Checkpoint (.safetensors)", chosen.read_bytes(), f"{stem}.safetensors",
                        key="tt_dl_ckpt", on_click="ignore")
    row.download_button("Model spec (.json)", chosen.with_suffix(".json").read_bytes(),
                        f"{stem}.json", key="tt_dl_spec", on_click="ignore")
    if cfg.task == "classifier":
        if row.button("Open on the Inspect page"):
            st.session_state["inspect_checkpoint"] = str(chosen)
            st.switch_page("pages/inspect.py")
    else:
        st.caption("VAE checkpoints are generative models: the Inspect page (classifiers) "
                   "does not open them.")
        vae_grids(paths, rows)


def vae_grids(paths: TrainTimePaths, rows: list[dict]) -> None:
    """Reconstructions and prior samples of every variant, for one seed, side by side."""
    st.subheader("Reconstructions and samples")
    seeds = sorted({r["seed"] for r in rows})
    seed = st.selectbox("Seed", seeds, key="tt_grid_seed") if len(seeds) > 1 else seeds[0]
    chosen = [r for r in rows if r["seed"] == seed]
    st.caption("Reconstructions: originals on odd rows, their reconstructions below them. "
               "Samples: decoded z ~ N(0, I), the same z for every variant.")
    cols = st.columns(len(chosen))
    for col, r in zip(cols, chosen):
        with col:
            st.markdown(f"**{r['label']}**")
            for what, path in (("reconstructions", paths.reconstructions_png(r["variant"], seed)),
                               ("samples", paths.samples_png(r["variant"], seed))):
                if not path.is_file():
                    continue
                data = path.read_bytes()
                st.image(data, caption=what, width="stretch")
                name = download_name(paths.root, f"{r['variant']}_seed{seed}_{what}.png")
                # "PNG" under its captioned picture: in a third of an 800-px window
                # 'reconstructions.png' was cut
                st.download_button("PNG", data, name, help=f"Download the {what} as {name}",
                                   mime="image/png", key=f"tt_dl_{r['variant']}_{what}",
                                   on_click="ignore", icon=":material/image:")


setup_form()
run = pick_run()
if run is not None:
    drawn = read_status(run).get("state", "unknown")
    live = drawn in LIVE_STATES
    st.fragment(live_view, run_every=1.5 if live else None)(run, drawn)
    if not live:
        results_section(run)
