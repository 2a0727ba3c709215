"""Inspect: load a checkpoint, classify images, see which neurons matter and what they see.

The page a researcher shows a supervisor: here is the (pruned) model, here is what it
predicts for this picture, here are the neurons that carry the decision and the pixels
each of them responds to — optionally next to a second model (dense vs pruned). All
maths lives in explorer_core (imaging, attribution, catalog); results are cached per
session so changing the neuron one looks at is instant.
"""
from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from explorer_core import charts
from explorer_core.attribution import (BASELINES, MAX_GRID_UNITS, MAX_STEPS, MAX_TOP_K, METHODS,
                                       MIN_STEPS, AttributionCache, AttributionSettings,
                                       colour_meaning, grid_limit, heatmaps_file_name,
                                       hidden_layers, methods_for, neuron_table, predict,
                                       scores_file_name, scores_frame, top_k,
                                       unit_heatmap_file_name)
from explorer_core.catalog import (CheckpointEntry, UploadedFile, accuracy_mismatch,
                                   list_cache_checkpoints, list_run_checkpoints, load_upload,
                                   summary, sweep_checkpoints, upload_conv_channels,
                                   upload_hidden_widths)
from explorer_core.checkpoint import Checkpoint, load_checkpoint
from explorer_core.data import DATASETS, availability
from explorer_core.errors import ExplorerError
from explorer_core.imaging import (FIT_TITLES, FITS, MAX_PIXELS, UPLOAD_TYPES, ConvertedImage,
                                   ConvertOptions, InputFormat, datasets_fitting,
                                   flat_input_warning, grid_image,
                                   heatmap_image, input_format, normalise, open_image, convert_image,
                                   overlay_image, png_bytes, samples_from, upscale)
from explorer_core.models import ARCH_TITLES, default_spec
from explorer_core.settings import counted
from pages._common import (bounded_number, format_int_list, keep_widget_state, kept_choice,
                           kept_uploads, parse_int_list, require_app_navigation, sentence,
                           wrapping_columns, wrapping_row)

require_app_navigation()

st.title("Inspect")
st.caption("Load a checkpoint, classify images, and see which neurons carry the decision and "
           "which pixels each of them responds to. Pick a second checkpoint to compare "
           "(e.g. dense vs pruned) — every view then shows both.")

SOURCES = ("Past runs", "Sweeps", "Cached baselines", "Upload")
OPENED = "Opened checkpoint"
MAX_LOADED = 4
GRID_COLUMNS = 4


@dataclass
class Loaded:
    """A model ready to inspect: weights, input format, summary, and a stable cache key."""
    key: str
    label: str
    ck: Checkpoint
    fmt: InputFormat
    info: dict[str, Any]


@dataclass
class _Parsed:
    """An upload read into a checkpoint, not yet built (`_build` measures its test
    accuracy): which dataset it was trained on may still have to be asked."""
    key: str
    label: str
    ck: Checkpoint
    kept_why: str | None = None  # why "Hidden kept" is not known (a .pth's dense widths)


def _state(name: str, factory):
    if name not in st.session_state:
        st.session_state[name] = factory()
    return st.session_state[name]


# Streamlit forgets a widget's value when a run does not draw it (another source picked,
# another page open): `keep_widget_state` keeps these keys as they were left.
# (Buttons and file uploaders cannot be set from session state; `kept_uploads` keeps the
# uploaded files themselves instead.)
KEPT = "insp_kept"
KEPT_KEYS = {f"insp_{what}_{slot}" for slot in "ab" for what in (
    "src", "run", "it", "sweep", "cell", "cache", "pth_data", "pth_arch", "pth_hidden",
    "pth_channels", "up_data")} | {
    "insp_compare", "insp_img_src", "insp_first", "insp_count", "insp_invert",
    "insp_autocontrast", "insp_fit", "insp_k", "insp_pick", "insp_layer", "insp_target",
    "insp_method", "insp_baseline", "insp_steps", "insp_grid_n", "insp_shared"}
KEPT_PREFIXES = ("insp_neurons_",)


def _kept(key: str) -> bool:
    return key in KEPT_KEYS or key.startswith(KEPT_PREFIXES)


def _default(key: str, value: Any) -> str:
    """A widget's first value, set through session state (not the widget's own default,
    which Streamlit would flag next to a restored value); returns the key."""
    if key not in st.session_state:
        st.session_state[key] = value
    return key


def _cache() -> AttributionCache:
    return _state("insp_cache", AttributionCache)


def _loaded(key: str) -> Loaded | None:
    """The model built under `key` this session, if it is still kept (`MAX_LOADED`)."""
    return _state("insp_models", dict).get(key)


def _kept_newest(store: str, key: str, value: Any) -> Any:
    """Keep `value` under `key` in the session dict `store`, with at most `MAX_LOADED`
    of the newest (a model each: uploads and checkpoints may be large)."""
    kept: dict[str, Any] = _state(store, dict)
    kept[key] = value
    while len(kept) > MAX_LOADED:
        kept.pop(next(iter(kept)))
    return value


def _remember(loaded: Loaded) -> Loaded:
    return _kept_newest("insp_models", loaded.key, loaded)


def _measured_accuracy(ck: Checkpoint, fmt: InputFormat) -> float | None:
    """Test accuracy of these weights on their dataset's test split, when it is on disk."""
    if fmt.dataset is None or not availability(fmt.dataset)[0]:
        return None
    from explorer_core.data import load_dataset
    from explorer_core.training import evaluate

    return evaluate(ck.model, load_dataset(fmt.dataset).test)[1]


def _test_accuracy(ck: Checkpoint, fmt: InputFormat, uploaded: bool
                   ) -> tuple[float | None, str | None, str | None]:
    """(accuracy, where it comes from, a warning): the recorded one for our own files; for
    an upload the measured one, since its .json may belong to other weights of the same
    shape (a warning says so when the two disagree)."""
    metrics = ck.meta.get("metrics")  # an uploaded sidecar may hold anything here
    recorded = metrics.get("test_acc") if isinstance(metrics, dict) else None
    recorded = float(recorded) if isinstance(recorded, (int, float)) else None
    if recorded is not None and not uploaded:
        return recorded, "recorded in the checkpoint's .json", None
    measured = _measured_accuracy(ck, fmt)
    if measured is None:
        return recorded, None if recorded is None else \
            "recorded in the uploaded .json (not measured: its test data is not here)", None
    where = f"measured on these weights with the {DATASETS[fmt.dataset].title} test set"
    return measured, where, accuracy_mismatch(recorded, measured)


def _build(key: str, label: str, ck: Checkpoint, uploaded: bool = False,
           dense: bool = False) -> Loaded:
    """`dense`: a model nothing was pruned from (a cached baseline), which keeps 100 %."""
    fmt = input_format(ck.spec, ck.meta)
    info = summary(ck)
    if dense and info["percent_kept"] is None and not info["masked"]:
        info["percent_kept"] = 100.0
    info["test_acc"], info["acc_source"], info["warning"] = _test_accuracy(ck, fmt, uploaded)
    if info["warning"] and not info["masked"]:
        info["percent_kept"] = None  # recorded by a .json that is not these weights'
    return _remember(Loaded(key, label, ck, fmt, info))


def load_path(path: str, label: str, dense: bool = False) -> Loaded:
    p = Path(path)
    try:
        stamp = p.stat().st_mtime_ns
    except OSError:
        raise ExplorerError(f"checkpoint not found: {p}") from None
    key = f"{p.resolve()}@{stamp}"
    if (found := _loaded(key)) is not None:
        return found
    return _build(key, label, load_checkpoint(p), dense=dense)


# ------------------------------------------------------------------ choosing models

def _catalog() -> dict[str, Any]:
    return {"runs": list_run_checkpoints(), "sweeps": sweep_checkpoints(),
            "cache": list_cache_checkpoints()}


def apply_handoff(catalog: dict[str, Any]) -> None:
    """Open the checkpoint another page asked for (Iterative pruning's "Open on Inspect"),
    and keep it as the page's remembered choice (`keep_widget_state`): the copy taken
    before the hand-over came back after a visit to another page, showing the model
    chosen before as if the user had picked it again."""
    path = st.session_state.pop("inspect_checkpoint", None)
    if not path:
        return
    _hand_over(catalog, str(Path(path)))
    keep_widget_state(KEPT, _kept)


def _hand_over(catalog: dict[str, Any], target: str) -> None:
    """Pick `target` in the first model's boxes (a run's, with its dense model as the
    second; a sweep cell's; a cached baseline's; any other file as opened)."""
    for run, entries in catalog["runs"].items():
        for entry in entries:
            if str(entry.path) == target:
                st.session_state.update(insp_src_a=SOURCES[0], insp_run_a=run,
                                        insp_it_a=target)
                # the model to compare it with is ready (tick "Compare")
                second = _second_of(entry, entries)
                if second is not None:
                    st.session_state.update(insp_src_b=SOURCES[0], insp_run_b=run,
                                            insp_it_b=second)
                return
    for sweep, entries in catalog["sweeps"].items():
        if any(str(entry.path) == target for entry in entries):
            st.session_state.update(insp_src_a=SOURCES[1], insp_sweep_a=sweep,
                                    insp_cell_a=target)
            return
    for entry in catalog["cache"]:
        if str(entry.path) == target:
            st.session_state.update(insp_src_a=SOURCES[2], insp_cache_a=target)
            return
    st.session_state["insp_opened_a"] = target
    st.session_state["insp_src_a"] = OPENED


def _entry_picker(entries, slot: str, what: str, empty: str):
    """The "Checkpoint" box over `entries`; returns the chosen entry (None: there is none)."""
    if not entries:
        st.info(empty)
        return None
    by_path = {str(e.path): e for e in entries}
    paths = list(by_path)
    label = lambda p: by_path[p].label  # noqa: E731
    chosen = st.selectbox("Checkpoint", paths, format_func=label,
                          key=kept_choice(f"insp_{what}_{slot}", paths, label))
    return by_path[chosen]


def _files_digest(uploaded: list[UploadedFile], extra: str = "") -> str:
    """A hash of the uploaded files (names and bytes) and `extra`: what a cached model
    or a field's filled-in value belongs to."""
    digest = hashlib.sha1(extra.encode())
    for f in uploaded:
        digest.update(f.name.encode() + b"\0" + f.data)
    return digest.hexdigest()


def _dense_widths(where: DeltaGenerator, label: str, key: str, uploaded: list[UploadedFile],
                  arch: str, help_text: str,
                  read: Callable[[list[UploadedFile], str], list[int] | None] = upload_hidden_widths,
                  fallback: str = "256, 64") -> tuple[str, bool]:
    """A dense-widths field of an uploaded .pth: (the widths to build its model with,
    whether the user gave them).

    A .pth records no dense widths, so the field starts empty, showing the weights' own
    as its placeholder; the model is built with those, and its share kept is not known
    until the user types the widths it had before pruning (its own for a model never
    pruned). Filled in with its own, a pruned .pth read "Hidden kept 100.0 %"; a fixed
    "256, 64" made a dense 64-32 upload read 30.0 %. What the user types stays until the
    upload or the architecture changes.
    """
    digest = _files_digest(uploaded, arch)
    memo, own = f"{key}__for", f"{key}__own"
    if st.session_state.get(memo) != digest or key not in st.session_state:
        widths = read(uploaded, arch)
        st.session_state[own] = format_int_list(widths) if widths else fallback
        st.session_state[key] = ""
        st.session_state[memo] = digest
    typed = where.text_input(label, key=key, placeholder=st.session_state[own], help=help_text)
    return typed.strip() or st.session_state[own], bool(typed.strip())


def _upload_picker(slot: str) -> _Parsed | None:
    files = kept_uploads(
        "Checkpoint: .safetensors (+ its .json), or a .pth state dict (+ a .json spec)",
        f"insp_upload_{slot}", type=["safetensors", "json", "pth", "pt"],
        help="Nothing uploaded is unpickled: .pth files are read as plain tensors only.")
    if not files:
        st.caption("Upload the weights and, unless the spec is inside them, the model spec.")
        return None
    uploaded = [UploadedFile(name, data) for name, data in files]
    needs_spec = not any(f.name.lower().endswith((".json", ".safetensors")) for f in uploaded)
    spec = None
    dataset = None
    described = False  # the dense widths given by the user (a .pth's)
    if needs_spec:
        st.caption("A .pth holds only tensors: describe the model it belongs to.")
        c1, c2, c3 = st.columns(3)
        names = [n for n in DATASETS]
        dataset = c1.selectbox("Trained on", names, format_func=lambda n: DATASETS[n].title,
                               key=f"insp_pth_data_{slot}")
        arch = c2.selectbox("Architecture", ["mlp", "slp", "cnn"], format_func=ARCH_TITLES.get,
                            key=f"insp_pth_arch_{slot}")
        hidden = None  # an SLP has no hidden layer: a widths field built nothing
        if arch != "slp":
            hidden, described = _dense_widths(
                c3, "Hidden widths (dense)", f"insp_pth_hidden_{slot}", uploaded, arch,
                help_text="The widths the model had before pruning, which a .pth does not "
                          "record: until they are given, the weights' own (shown) build it, "
                          "and Hidden kept is not known.")
        channels = None  # a CNN of other channels than 16·32 could not be described
        if arch == "cnn":
            channels, given = _dense_widths(
                c3, "Conv channels (dense)", f"insp_pth_channels_{slot}", uploaded, arch,
                help_text="The CNN's conv channels before pruning: until they are given, the "
                     "weights' own (shown).", read=upload_conv_channels, fallback="16, 32")
            described = described or given
        info = DATASETS[dataset]
        spec = default_spec(arch, info.channels, info.size, info.num_classes,
                            list(parse_int_list(hidden)) if hidden is not None else None)
        if channels is not None:
            spec["channels"] = list(parse_int_list(channels, "conv channels", "16, 32"))
    # the dataset too: MNIST's spec is Fashion-MNIST's
    key = f"upload:{_files_digest(uploaded, repr((spec, dataset, described)))[:16]}"
    parsed: dict[str, _Parsed] = _state("insp_parsed", dict)
    if key in parsed:  # read once: a rerun (another unit's heatmap) parses nothing again
        return parsed[key]
    ck = load_upload(uploaded, spec)
    if dataset and "dataset" not in ck.meta:
        ck.meta["dataset"] = dataset
    unknown = needs_spec and not described
    if unknown:
        ck.meta.pop("percent_retained", None)
    weights = next(f.name for f in uploaded if not f.name.lower().endswith(".json"))
    return _kept_newest("insp_parsed", key, _Parsed(key, f"upload {weights}", ck, kept_why=(
        "Not known: a .pth records no dense widths. Type the widths it had before pruning "
        "under Hidden widths (dense).") if unknown else None))


def _trained_on(parsed: _Parsed, slot: str) -> str | None:
    """The dataset the user picks for an upload whose files do not record it, among those
    its input fits (None: recorded, or only one fits): a Fashion-MNIST model saved
    without it was read as MNIST's (digit class names, no accuracy where MNIST is not on
    disk). Asked before the model is built, which measures its test accuracy: built
    first on the assumed dataset and then on the one picked, it was measured twice."""
    if parsed.ck.meta.get("dataset") in DATASETS:
        return None
    fitting = datasets_fitting(parsed.ck.spec)
    if len(fitting) < 2:
        return None
    box = f"insp_up_data_{slot}"
    if st.session_state.get(f"{box}__for") != parsed.key:  # another upload: not its choice
        st.session_state.pop(box, None)
        st.session_state[f"{box}__for"] = parsed.key
    return st.selectbox("Trained on", fitting, format_func=lambda n: DATASETS[n].title,
                        key=kept_choice(box, fitting),
                        help="The uploaded files do not say which dataset the model was "
                             "trained on; these fit its input and classes. It sets the class "
                             "names, the normalisation and the test set.")


def _built_upload(parsed: _Parsed, slot: str) -> Loaded:
    """The upload built once, on the dataset its files record or the user picks."""
    choice = _trained_on(parsed, slot)
    key = parsed.key if choice is None else f"{parsed.key}:{choice}"
    if (found := _loaded(key)) is not None:
        return found
    ck = parsed.ck if choice is None else Checkpoint(parsed.ck.model, parsed.ck.spec,
                                                      {**parsed.ck.meta, "dataset": choice})
    loaded = _build(key, parsed.label, ck, uploaded=True)
    if parsed.kept_why:
        loaded.info["kept_why"] = parsed.kept_why
    return loaded


def pick_model(slot: str, catalog: dict[str, Any]) -> Loaded | None:
    """Source → run → iteration (or sweep / cache entry, or upload); errors shown, not raised."""
    sources = list(SOURCES) + ([OPENED] if st.session_state.get(f"insp_opened_{slot}") else [])
    source = st.radio("Source", sources, horizontal=True,
                      key=kept_choice(f"insp_src_{slot}", sources))
    try:
        if source == SOURCES[0]:
            runs = catalog["runs"]
            if not runs:
                st.info("No completed iterations yet: run the Iterative pruning page, or pick "
                        "another source.")
                return None
            run = st.selectbox("Run", list(runs), key=kept_choice(f"insp_run_{slot}", list(runs)))
            picked = _entry_picker(runs[run], slot, "it", "This run has no checkpoint yet.")
            if not picked:
                return None
            return load_path(str(picked.path), f"{run.split(' (')[0]} · {picked.name}")
        if source == SOURCES[1]:
            sweeps = catalog["sweeps"]
            if not sweeps:
                st.info("No sweep checkpoints yet (Compare page).")
                return None
            # the sweep first: a cell id recurs in every sweep over the same grid point
            label = lambda s: f"{s} · {counted(len(sweeps[s]), 'checkpoint')}"  # noqa: E731
            sweep = st.selectbox("Sweep", list(sweeps), format_func=label,
                                 key=kept_choice(f"insp_sweep_{slot}", list(sweeps), label))
            picked = _entry_picker(sweeps[sweep], slot, "cell", "This sweep saved no checkpoint.")
            if not picked:
                return None
            return load_path(str(picked.path), f"{sweep.split(' (')[0]} · {picked.name}")
        if source == SOURCES[2]:
            picked = _entry_picker(catalog["cache"], slot, "cache",
                                   "No cached dense baselines in models_cache/ yet.")
            return load_path(str(picked.path), f"baseline {picked.name}", dense=True) \
                if picked else None
        if source == OPENED:
            path = st.session_state[f"insp_opened_{slot}"]
            st.caption(path)
            return load_path(path, Path(path).name)
        parsed = _upload_picker(slot)
        return _built_upload(parsed, slot) if parsed is not None else None
    except ExplorerError as exc:
        st.error(str(exc))
        return None


def _count(n: int) -> tuple[str, str | None]:
    """A count short enough for a metric tile ('1.23 M'), and its exact value as help."""
    if n >= 1_000_000:
        return f"{n / 1e6:.3g} M", f"{n:,}"
    return f"{n:,}", None


def _kept_tile(info: dict[str, Any]) -> tuple[str, str, str | None]:
    """(label, value, help) of the "kept" tile: hidden units for a model whose units were
    removed, non-zero weights for a masked one (its widths are the dense ones)."""
    kept = info.get("percent_kept")
    if info["masked"]:
        return ("Weights kept", f"{kept:.1f} %" if kept is not None else "—",
                "Share of the parameters that are not zero. Masks zero weights but remove "
                "no neuron: the widths stay dense, and the model is no faster.")
    if kept is not None:
        return "Hidden kept", f"{kept:.1f} %", "Hidden units (neurons, conv channels) kept " \
            "of the dense model's."
    why = ("The model has no hidden layer." if not info["widths"] else
           info["kept_why"] if info.get("kept_why") else
           "Not known: its .json was refused as not belonging to these weights."
           if info.get("warning") else
           "The checkpoint does not record the dense widths it was pruned from (no sidecar "
           ".json with them).")
    return "Hidden kept", "—", why


# Width of one model's column in compare mode: the two side by side in a 1400-px window
# (a 940-px main column), one under the other in narrower ones. Halves of an 800-px
# window's column (226 px) cut the metrics ("57.6…"), broke the heatmap captions
# mid-word ("neuro / n 18") and clipped chart titles.
MODEL_COLUMN_WIDTH = 440
# Width of the original picture and of the model's input beside the predictions: two
# fit an 800-px window's column with room for their captions' longest words.
PICTURE_WIDTH = 160


def _model_columns(count: int) -> list[Any]:
    return wrapping_columns(count, width=MODEL_COLUMN_WIDTH)


# Width of one metric tile: four a row for one model at 1400 px, two a row in a compare
# column or an 800-px window. Tiles as wide as their numbers lined up differently in
# the two compare columns ('94.15 %' three a row beside '72.98 %' four a row).
METRIC_WIDTH = 200


def model_card(m: Loaded) -> None:
    """Headline numbers as metric tiles of one width, in a row that wraps: four columns
    cut '92.20 %' to '92.2…' in an 800-px window, and two a row of a compare column cut
    '57.66 %'."""
    info = m.info
    st.markdown(f"**{m.label}**")
    if info.get("warning"):
        st.warning(info["warning"])
    row = wrapping_row()
    cols = [row.container(width=METRIC_WIDTH) for _ in range(4)]
    params, params_help = _count(info["parameters"])
    macs, macs_help = _count(info["macs"])
    cols[0].metric("Test accuracy",
                   f"{info['test_acc']:.2f} %" if info["test_acc"] is not None else "—",
                   help=sentence(info.get("acc_source")))
    if info["masked"]:  # the dense count says nothing about what the masks kept
        nonzero, _ = _count(info["nonzero_parameters"])
        cols[1].metric("Non-zero parameters", nonzero,
                       help=f"{info['nonzero_parameters']:,} of {info['parameters']:,} "
                            "parameters; the masks zero the rest.")
    else:
        cols[1].metric("Parameters", params, help=params_help)
    cols[2].metric("MACs / image", macs, help=macs_help)
    label, value, why = _kept_tile(info)
    cols[3].metric(label, value, help=why)
    data = DATASETS[m.fmt.dataset].title if m.fmt.dataset else "unknown dataset"
    masked = (f" · masked: {info['nonzero_parameters']:,} of {info['parameters']:,} parameters "
              "non-zero, no neuron removed" if info["masked"] else "")
    st.caption(f"{ARCH_TITLES.get(info['arch'], info['arch'])} · hidden widths "
               f"{info['widths_text']}"
               f"{masked} · {data} · input {m.fmt.describe()}"
               + (" (assumed: the checkpoint does not record it)" if m.fmt.assumed else ""))
    with st.expander("Model spec"):
        st.json(m.ck.spec, expanded=False)


def _second_of(entry: CheckpointEntry, entries: list[CheckpointEntry]) -> str | None:
    """The run's model to set beside `entry`: a train-time model's own seed's unpruned one
    (`CheckpointEntry.reference`; seed 0's stood beside seed 1's, as if pruning made their
    difference), or none when that is not saved; for an iterative run's iteration the
    dense model, and for the dense model its last iteration."""
    if entry.reference is not None:
        return str(entry.reference)
    if entry.iteration is None or len(entries) < 2:  # a train-time model without one
        return None
    first = str(entries[0].path)
    return str(entries[-1].path) if str(entry.path) == first else first


def _default_second(catalog: dict[str, Any]) -> None:
    """First time "Compare" is on: the model to compare the first one with (`_second_of`)."""
    if "insp_src_b" in st.session_state or st.session_state.get("insp_src_a") != SOURCES[0]:
        return
    entries = catalog["runs"].get(st.session_state.get("insp_run_a"), [])
    chosen = next((e for e in entries if str(e.path) == st.session_state.get("insp_it_a")),
                  None)
    second = _second_of(chosen, entries) if chosen is not None else None
    if second is not None:
        st.session_state.update(insp_src_b=SOURCES[0],
                                insp_run_b=st.session_state["insp_run_a"], insp_it_b=second)


def models_section() -> list[Loaded]:
    catalog = _catalog()
    apply_handoff(catalog)
    compare = st.toggle("Compare with a second checkpoint", key="insp_compare",
                        help="E.g. the dense model (iteration 0) next to a pruned iteration.")
    cols = _model_columns(2) if compare else [st.container()]
    out = []
    for slot, col, title in zip("ab", cols, ("Model", "Second model")):
        with col:
            if slot == "b":
                _default_second(catalog)
            st.subheader(title)
            m = pick_model(slot, catalog)
            if m is not None:
                model_card(m)
                out.append(m)
    return out


# ------------------------------------------------------------------ images

def _convert_for(m: Loaded, images: list[tuple[str, bytes]], options: ConvertOptions,
                 errors: list[str]) -> list[ConvertedImage | None]:
    out: list[ConvertedImage | None] = []
    for name, data in images:
        try:
            image = open_image(data, name, (m.fmt.mode, max(m.fmt.height, m.fmt.width, 512)))
            out.append(convert_image(image, m.fmt, options, name))
        except ExplorerError as exc:
            if str(exc) not in errors:
                errors.append(str(exc))
            out.append(None)
    return out


def images_section(models: list[Loaded]) -> list[list[ConvertedImage | None]] | None:
    """One list of converted inputs per model (same pictures, each model's own format)."""
    st.header("Classify")
    source = st.radio("Images", ["Upload images", "Test-set samples"], horizontal=True,
                      key="insp_img_src")
    primary = models[0]
    if source == "Test-set samples":
        if primary.fmt.dataset is None or not availability(primary.fmt.dataset)[0]:
            st.warning(availability(primary.fmt.dataset)[1] if primary.fmt.dataset
                       else "The model's dataset is unknown: upload images instead.")
            return None
        c1, c2 = st.columns(2)
        start = bounded_number(c1, "First test sample", 0, 1_000_000,
                               key=_default("insp_first", 0))
        count = bounded_number(c2, "How many", 1, 32, key=_default("insp_count", 4))
        if start is None or count is None:  # out of range: said under the field
            return None
        try:
            samples, note = samples_from(primary.fmt, int(start), int(count))
        except ExplorerError as exc:
            st.error(str(exc))
            return None
        if note:
            st.info(note)
        per_model: list[list[ConvertedImage | None]] = [samples]
        for m in models[1:]:
            if m.fmt.shape != primary.fmt.shape:
                st.warning(f"{m.label} takes {m.fmt.size()} inputs, and the first model's "
                           f"test samples are {primary.fmt.size()}: it is left out below. "
                           "Upload pictures to classify them with both.")
                per_model.append([None] * len(samples))
                continue
            per_model.append([ConvertedImage(s.name, s.original, s.original_size, s.original_mode,
                                             s.pixels, normalise(s.pixels, m.fmt), s.label)
                              for s in samples])
        return per_model
    images = kept_uploads("Images: PNG, JPEG, BMP, WebP or GIF (first frame), up to "
                      f"{MAX_PIXELS // 1_000_000} megapixels", "insp_images",
                      type=list(UPLOAD_TYPES))
    # wrapping groups: in thirds of an 800-px window the fit's choice read "keep aspect, pac"
    c1, c2, c3 = wrapping_columns(3, width=SETTING_WIDTH)
    invert = c1.toggle("Invert colours", key="insp_invert",  # a longer label was cut
                       help="For a dark drawing on light paper: MNIST-style models saw light "
                            "digits on a dark background.")
    autocontrast = c2.toggle("Stretch contrast", key="insp_autocontrast")
    fit = c3.selectbox("Fit to the model's size", FITS, format_func=FIT_TITLES.get, key="insp_fit")
    if not images:
        st.info("Upload one or more pictures, or switch to test-set samples.")
        return None
    options = ConvertOptions(invert=invert, fit=fit, autocontrast=autocontrast)
    errors: list[str] = []
    per_model = [_convert_for(m, images, options, errors) for m in models]
    for e in errors:
        st.error(e)
    flat = [flat_input_warning(c) for c in per_model[0] if c is not None]
    for warning in dict.fromkeys(w for w in flat if w):  # the blank input, said, not hidden
        st.warning(warning)
    if all(c is None for c in per_model[0]):
        return None
    return per_model


def predictions_view(models: list[Loaded], per_model, k: int) -> int | None:
    """Top-k charts for the chosen picture; a summary table when there are several."""
    names = [c.name for c in per_model[0] if c is not None]
    valid = [i for i, c in enumerate(per_model[0]) if c is not None]
    if len(valid) > 1:
        rows = []
        for i in valid:
            row: dict[str, Any] = {"image": per_model[0][i].name}
            for j, (m, conv) in enumerate(zip(models, per_model)):
                tag = "" if len(models) == 1 else f" ({'AB'[j]})"
                if conv[i] is None:
                    continue
                best = top_k(predict(m.ck.model, conv[i].tensor, m.label, conv[i].name)[0],
                             1, m.fmt.class_names)[0]
                row[f"predicted{tag}"] = best["class"]
                row[f"probability{tag}"] = best["probability"]
            if per_model[0][i].label is not None:
                row["true class"] = models[0].fmt.class_names[per_model[0][i].label]
            rows.append(row)
        table = pd.DataFrame(rows)
        # one fixed format: a certain prediction printed as "1" beside "0.9935"
        st.dataframe(table, hide_index=True, width="stretch", column_config={
            c: st.column_config.NumberColumn(c, format="%.4f")
            for c in table.columns if c.startswith("probability")})
        # the first picture with something in it: a blank one first in the upload
        # (flat_input_warning) drew all-zero sensitivity charts and empty heatmaps
        drawn = next((n for n, i in enumerate(valid)
                      if flat_input_warning(per_model[0][i]) is None), 0)
        pick = st.selectbox("Picture to inspect", range(len(valid)),
                            format_func=names.__getitem__,
                            key=kept_choice("insp_pick", list(range(len(valid))), names.__getitem__,
                                        default=drawn))
        index = valid[int(pick)] if int(pick) < len(valid) else valid[0]
    else:
        index = valid[0]
    # the pictures in boxes of their own width, the charts in the models' columns: in
    # sixths of an 800-px window the two models' pictures were 66 px wide and their
    # captions broke mid-word ("normalise / d")
    second_input = len(models) > 1 and per_model[1][index] is not None and \
        models[1].fmt.shape != models[0].fmt.shape
    row = wrapping_row()
    pictures = [row.container(width=PICTURE_WIDTH) for _ in range(3 if second_input else 2)]
    cols = [row.container(width=MODEL_COLUMN_WIDTH)] if len(models) == 1 else \
        _model_columns(len(models))
    first = per_model[0][index]
    pictures[0].image(first.original, caption=f"original · {first.original_size[0]}×"
                      f"{first.original_size[1]} {first.original_mode}", width="stretch")
    pictures[1].image(upscale(first.pixels), caption=f"model input · {models[0].fmt.describe()}",
                      width="stretch")
    if second_input:
        pictures[2].image(upscale(per_model[1][index].pixels), caption="second model's input",
                          width="stretch")
    for col, m, conv in zip(cols, models, per_model):
        if conv[index] is None:
            # why is said once above the pictures (three warnings told one cause)
            col.caption(f"{m.label}: no input for this picture (see above).")
            continue
        rows = top_k(predict(m.ck.model, conv[index].tensor, m.label, conv[index].name)[0],
                     k, m.fmt.class_names)
        col.markdown(f"{m.label}: predicted **{rows[0]['class']}** "
                     f"({rows[0]['probability']:.1%})")
        title = "Top class" if len(rows) == 1 else f"Top {len(rows)} classes"
        col.altair_chart(charts.topk_chart(rows, title=title),
                         width="stretch")  # fits its column at any window width
    return index


# ------------------------------------------------------------------ sensitivity

# Width of one sensitivity setting: two a row in an 800-px window, four at 1400 px.
SETTING_WIDTH = 210


def _settings_row(models: list[Loaded]) -> tuple[str, str, AttributionSettings, int, bool] | None:
    layers = hidden_layers(models[0].ck.model)
    if not layers:
        st.info("This model has no hidden layer to inspect (a single linear layer).")
        return None
    # groups that wrap: in thirds and quarters of an 800-px page the choices read
    # "the predicted cla", "NeuronConducta", "black ima" and the toggle "Shar…"
    c1, c2, c3 = wrapping_columns(3, width=SETTING_WIDTH)
    names = [l.name for l in layers]
    label = lambda n: next(l.label() for l in layers if l.name == n)  # noqa: E731
    layer = c1.selectbox("Hidden layer", names, key=kept_choice("insp_layer", names, label),
                         format_func=label)
    info = next(l for l in layers if l.name == layer)
    kind = info.kind
    classes = ["predicted"] + [str(i) for i in range(len(models[0].fmt.class_names))]
    label = lambda c: "the predicted class" if c == "predicted" \
        else f"{c}: {models[0].fmt.class_names[int(c)]}"  # noqa: E731
    target = c2.selectbox("Explain class", classes, key=kept_choice("insp_target", classes, label),
                          format_func=label)
    methods = sorted(methods_for(kind), key=lambda m: m.name != "gradcam")  # conv: Grad-CAM first
    method_names = [m.name for m in methods]
    method = c3.selectbox("Neuron heatmaps", method_names,
                          key=kept_choice("insp_method", method_names),
                          format_func=lambda n: METHODS[n].title, help=" · ".join(
                              f"{m.title}: {m.description}" for m in methods))
    c4, c5, c6, c7 = wrapping_columns(4, width=SETTING_WIDTH)
    # Baseline and steps stay open for Grad-CAM, which needs neither: the conductance
    # ranking beside its maps integrates from that baseline in those steps (a disabled
    # baseline still set the ranking, and could not be changed)
    uses = "the conductance ranking" + (
        "" if METHODS[method].uses_baseline else f" ({METHODS[method].title} needs none)")
    baseline = c4.selectbox("Baseline", list(BASELINES), format_func=BASELINES.get,
                            key="insp_baseline",
                            help=f"What the attribution starts from, for {uses} and the "
                                 "integrated maps. Black image: every pixel 0. Blurred "
                                 "image: the colours without the shapes. Dataset mean: the "
                                 "mean colour, 0 after normalisation.")
    steps = c5.slider("Integration steps", MIN_STEPS, MAX_STEPS, key=_default("insp_steps", 32),
                      help=f"Of {uses} and the integrated maps. More steps: closer to the "
                           "exact integral, slower.")
    unit = "channel" if kind == "conv" else "neuron"
    limit = grid_limit(info.units)
    count = bounded_number(c6, f"{unit.capitalize()}s in the grid", 1, limit,
                           key=_grid_count_key(layer, info.units),
                           help=f"How many {unit}s the grid starts with, the top ones by "
                                f"|conductance|: 1 to {limit}" + (
                                    f", all of {layer}'s." if limit == info.units else
                                    f" of {layer}'s {info.units:,} (at most {MAX_GRID_UNITS})."))
    shared = c7.toggle("Shared colour scale", key=_default("insp_shared", True),
                       help="On: tiles are comparable. Off: each tile uses its own range.")
    if count is None:  # out of range: said under the field
        return None
    return layer, target, AttributionSettings(method, baseline, int(steps)), int(count), shared


def _grid_count_key(layer: str, units: int) -> str:
    """The grid-size field's key, its value brought within the chosen layer's units when
    another layer is picked: 32 kept from a wide layer read "top 32" over a 16-neuron
    one. A number typed for this layer stays as typed (an out-of-range one is said)."""
    key = _default("insp_grid_n", min(8, grid_limit(units)))
    if st.session_state.get("insp_grid_for") != (layer, units):
        st.session_state["insp_grid_for"] = (layer, units)
        count = st.session_state.get(key)
        if isinstance(count, (int, float)) and count > grid_limit(units):
            st.session_state[key] = grid_limit(units)
    return key


def _iasa(m: Loaded, layer: str):
    if m.fmt.dataset is None:
        return None, "IASA scores need the model's training data, which is unknown."
    ok, reason = availability(m.fmt.dataset)
    if not ok:
        return None, reason
    try:
        scores = _cache().iasa(m.ck.model, m.key, m.fmt.dataset)
    except ExplorerError as exc:
        return None, str(exc)
    return scores.get(layer), None


def _ranking_chart(table: pd.DataFrame, cname: str, units: int, narrow: bool):
    """Conductance + IASA ranking; `narrow` (half a page): fewer bars and titles short
    enough for the column (the class is named in the line above the chart)."""
    top = 16 if narrow else 24
    shown = f"top {min(top, len(table))} of {units}"
    return charts.neuron_ranking_chart(
        table, top=top, short=narrow, title=f"Conductance, {shown}" if narrow
        else f"Conductance for class {cname} ({shown})")


def _sheet_png(tiles: list, captions: list[str], columns: int, title: str, legend: str) -> bytes:
    """A labelled heatmap sheet as PNG bytes; drawn when its download is clicked."""
    return png_bytes(grid_image(tiles, captions, columns, title=title, legend=legend))


def model_sensitivity(m: Loaded, slot: str, conv: ConvertedImage, layer: str, target_choice: str,
                      settings: AttributionSettings, count: int, shared: bool) -> None:
    cache = _cache()
    model = m.ck.model
    names = {l.name: l for l in hidden_layers(model)}
    if layer not in names:
        st.warning(f"{m.label} has no layer {layer}.")
        return
    info = names[layer]
    x = conv.tensor
    probs = predict(model, x, m.label, conv.name)[0]
    target = int(probs.argmax()) if target_choice == "predicted" else int(target_choice)
    if target >= probs.numel():
        st.warning(f"{m.label} has only {probs.numel():,} classes.")
        return
    cname = m.fmt.class_names[target] if target < len(m.fmt.class_names) else str(target)
    conductance = cache.layer_conductance(model, m.key, x, layer, target, settings, m.fmt)
    iasa, why = _iasa(m, layer)
    table = neuron_table(conductance, iasa)
    unit = "neuron" if info.kind == "linear" else "channel"
    st.markdown(f"**{m.label}** — {info.label()}, explaining class **{cname}**")
    compare = st.session_state.get("insp_compare", False)
    st.altair_chart(_ranking_chart(table, cname, info.units, narrow=compare), width="stretch")
    if why:
        st.caption(f"No IASA scores: {why}")
    # named and columned by what computed them: three baselines gave three files alike
    source = {"model": m.label, "picture": conv.name, "layer": layer, "class": cname}
    st.download_button("Scores (CSV)",
                       scores_frame(table, settings, source).to_csv(index=False).encode(),
                       scores_file_name(f"scores_{slot}", layer, target, settings),
                       mime="text/csv", key=f"insp_csv_{slot}", on_click="ignore",
                       icon=":material/table:",
                       help=f"Every {unit}'s layer conductance for class {cname} (from the "
                            f"{BASELINES[settings.baseline]} in {settings.steps} steps) and "
                            f"rank" + (", with its IASA score and rank." if iasa is not None
                                       else "."))
    ranked = table["neuron"].tolist()
    grid_key = f"insp_neurons_{slot}_{m.key}_{layer}_{target}_{conv.name}"
    if [n for n in st.session_state.get(grid_key, []) if n not in ranked]:
        st.session_state.pop(grid_key)  # a kept choice this model lacks: start afresh
    # Until the user picks units, the grid follows the ranking: a new baseline, step count
    # or grid size re-ranks, and the grid once kept the old top 8 (captioned #30 …).
    auto_key, top = f"insp_top_{grid_key}", ranked[:count]
    if st.session_state.get(grid_key, top) == st.session_state.get(auto_key, top):
        st.session_state[grid_key] = top
    st.session_state[auto_key] = top
    first = min(count, len(ranked))  # a second model may have fewer units in this layer
    chosen = st.multiselect(f"{unit.capitalize()}s in the grid (default: "
                            + (f"all {first}, by |conductance|)" if first == len(ranked) else
                               f"top {first} of {len(ranked):,} by |conductance|)"),
                            ranked, key=grid_key, wrap=True,
                            format_func=lambda n: f"{unit} {n}")
    if not chosen:
        st.info(f"Pick at least one {unit}.")
        return
    before = cache.computed
    with st.spinner(f"Computing {METHODS[settings.method].title} heatmaps…"):
        maps = cache.neuron_maps(model, m.key, x, layer, chosen, target, settings, m.fmt)
    scale = max(float(abs(maps[n]).max()) for n in chosen) if shared else None
    rank_of = dict(zip(table["neuron"], table["rank"]))
    cond_of = dict(zip(table["neuron"], table["conductance"]))
    iasa_rank = dict(zip(table["neuron"], table["iasa_rank"])) if "iasa_rank" in table else {}
    tiles, captions = [], []
    for n in chosen:
        tiles.append(overlay_image(conv.pixels, maps[n], scale, target=120))
        captions.append(f"{unit} {n} · #{rank_of[n]} · {cond_of[n]:+.3g}")
    meaning = colour_meaning(settings.method, unit, cname, scale)
    st.caption(f"{meaning} Rank = by |conductance| for class {cname}"
               + (f"; computed {cache.computed - before} new map(s)" if cache.computed > before
                  else "; all from the cache"))
    for start in range(0, len(tiles), GRID_COLUMNS):
        cols = st.columns(GRID_COLUMNS)
        for col, tile, cap in zip(cols, tiles[start:start + GRID_COLUMNS],
                                  captions[start:start + GRID_COLUMNS]):
            col.image(tile, caption=cap, width="stretch")
    st.download_button("Heatmap grid (PNG)",  # drawn only when clicked
                       partial(_sheet_png, tiles, captions, GRID_COLUMNS,
                               f"{m.label} · {info.label()} · class {cname} · {conv.name}",
                               meaning),
                       heatmaps_file_name(f"heatmaps_{slot}", layer, target, settings),
                       mime="image/png", key=f"insp_grid_png_{slot}", on_click="ignore",
                       icon=":material/image:")

    st.markdown(f"**One {unit} up close**")
    labels = {n: f"{unit} {n} — rank {rank_of[n]}, conductance {cond_of[n]:+.3g}"
                 + (f", IASA rank {iasa_rank[n]}" if iasa_rank else "") for n in ranked}
    # Keyed by its labels: under one key the closed box went on showing the rank and
    # conductance of the picture before (a neuron "rank 1, +0.246" now ranked 46). The
    # user's pick carries over to the new box; until there is one, the focus is rank 1.
    pick_key = f"insp_focus_pick_{slot}"
    box_key = f"insp_focus_{slot}_{zlib.crc32(repr(labels).encode()):08x}"
    picked = st.session_state.get(pick_key)

    def remember_pick() -> None:
        st.session_state[pick_key] = st.session_state[box_key]

    focus = st.selectbox(unit.capitalize(), ranked, key=box_key, format_func=labels.__getitem__,
                         index=ranked.index(picked) if picked in ranked else 0,
                         on_change=remember_pick)
    one = cache.neuron_maps(model, m.key, x, layer, [focus], target, settings, m.fmt)[focus]
    c1, c2, c3 = st.columns(3)
    c1.image(upscale(conv.pixels), caption="model input", width="stretch")
    c2.image(heatmap_image(one), caption=f"{unit} {focus}: heatmap", width="stretch")
    big = overlay_image(conv.pixels, one)
    c3.image(big, caption=f"{unit} {focus}: overlay", width="stretch")
    # the download says what it shows: a bare 168×168 overlay named nothing
    st.download_button(f"{unit.capitalize()} {focus} heatmap (PNG)", partial(
        _sheet_png, [upscale(conv.pixels), heatmap_image(one), big],
        ["model input", f"{unit} {focus}: heatmap", f"{unit} {focus}: overlay"], 3,
        f"{m.label} · {info.label()} · {labels[focus]} · class {cname} · {conv.name}",
        colour_meaning(settings.method, unit, cname, float(abs(one).max()))),
                       unit_heatmap_file_name(f"heatmap_{slot}", layer, target, settings,
                                              unit, focus), mime="image/png",
                       key=f"insp_focus_png_{slot}", on_click="ignore", icon=":material/image:")


def sensitivity_section(models: list[Loaded], per_model, index: int) -> None:
    st.header("Sensitivity")
    row = _settings_row(models)
    if row is None:
        return
    layer, target, settings, count, shared = row
    cols = _model_columns(len(models)) if len(models) > 1 else [st.container()]
    for slot, col, m, conv in zip("ab", cols, models, per_model):
        with col:
            if conv[index] is None:
                st.caption(f"{m.label}: no input for this picture (see above).")
                continue
            try:
                model_sensitivity(m, slot, conv[index], layer, target, settings, count, shared)
            except ExplorerError as exc:
                st.error(str(exc))


# ------------------------------------------------------------------ page

def main() -> None:
    keep_widget_state(KEPT, _kept)  # before the hand-over, which overrides what is kept
    models = models_section()
    if not models:
        return
    per_model = images_section(models)
    if per_model is None:
        return
    k = bounded_number(st, "Top-k classes", 1, MAX_TOP_K, key=_default("insp_k", 5))
    if k is None:  # out of range: said under the field
        return
    try:
        index = predictions_view(models, per_model, int(k))
    except ExplorerError as exc:  # a model whose output is not finite on a picture
        st.error(str(exc))
        return
    if index is None:
        return
    sensitivity_section(models, per_model, index)


main()
