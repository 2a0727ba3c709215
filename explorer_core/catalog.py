"""Where checkpoints come from: past runs, sweeps, the baseline cache, uploads.

One list of `CheckpointEntry` (label, path, accuracy, % retained) for pickers, built from
files only, so any page or the CLI can offer "every model we have". Uploaded checkpoints
arrive as bytes: they are written under fixed names into a private temporary folder
(mode 0700, removed right after loading) and loaded with `load_checkpoint`, which never
unpickles — a `.pth` goes through `torch.load(weights_only=True)` and a file that needs
more than tensors is refused before any of its code could run.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from .checkpoint import (Checkpoint, load_checkpoint, read_state, state_conv_channels,
                         state_hidden_widths)
from .errors import CheckpointError, ExplorerError, MissingSpec
from .fileio import JSON_ERRORS
from .masks import MASK_TYPES
from .models import count_parameters, hidden_widths, input_shape, spec_of
from .results import iteration_rows, join_widths
from .rundir import (RunPaths, TrainTimePaths, default_train_time_root, list_runs,
                     list_train_time_runs, read_json, read_record)

# An uploaded spec / sidecar is a few kB; the weights may be large (the server caps uploads).
MAX_SPEC_BYTES = 1_000_000
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
# What an uploaded .json may hold and still be a *template* for a .pth (the model it was
# pruned from, and its data): anything else — metrics, widths, % kept, an iteration —
# is a record of particular weights, and such a sidecar must match the weights exactly.
TEMPLATE_KEYS = frozenset({"spec", "dataset", "class_names", "normalisation"})
# A model with at least this share of its parameters exactly zero is treated as masked
# when its checkpoint does not say (trained weights are practically never exactly 0).
MASKED_ZERO_SHARE = 0.01


def default_sweeps_root() -> Path:
    """The sweeps folder (`EXPLORER_SWEEPS`); the layout lives in `rundir`."""
    from .rundir import default_sweeps_root as owner

    return owner()


@dataclass
class CheckpointEntry:
    """One checkpoint on disk, described for a picker."""
    source: str                 # "run" | "sweep" | "cache"
    group: str                  # run / sweep name, or "models_cache"
    label: str                  # what a picker shows
    path: Path
    test_acc: float | None = None
    percent_retained: float | None = None
    widths: list[int] = field(default_factory=list)
    iteration: int | None = None
    dataset: str | None = None
    title: str = ""             # short name for a model card; "" = the label before ':'
    masked: bool = False        # weights masked (non-zero share kept), no unit removed
    # the model to set beside it when it is opened from another page (None: the group's
    # first, an iterative run's dense model): a train-time model's is its own seed's
    # unpruned one, not seed 0's
    reference: Path | None = None

    @property
    def key(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        """What a model card calls the checkpoint."""
        return self.title or self.label.split(":")[0]


def _acc(meta: Mapping[str, Any]) -> float | None:
    value = (meta.get("metrics") or {}).get("test_acc") if isinstance(meta, Mapping) else None
    return float(value) if isinstance(value, (int, float)) else None


def widths_text(spec: Mapping[str, Any] | None, widths: Sequence[int] = ()) -> str:
    """The widths a label shows. A CNN names its conv channels and its FC units apart
    ('conv 16-32 · fc 128'): its spec's `hidden` alone ('128') hid the channels, and a
    sweep records only the kind of unit its pruning type removes."""
    spec = spec if isinstance(spec, Mapping) else {}
    channels, hidden = spec.get("channels"), spec.get("hidden")
    if spec.get("arch") == "cnn" and _int_list(channels) and _int_list(hidden) is not None:
        fc = f" · fc {join_widths(hidden)}" if hidden else ""
        return f"conv {join_widths(channels)}{fc}"
    if spec.get("arch") in ("mlp", "slp") and _int_list(hidden) is not None:
        return join_widths(hidden)
    return join_widths(widths) if _int_list(list(widths)) else ""


def _int_list(value: Any) -> list[int] | None:
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                       for v in value):
        return value
    return None


def is_masked_record(meta: Mapping[str, Any]) -> bool | None:
    """Whether a checkpoint's record says its pruning was by masks (True), by removing
    units (False), or does not say (None): a sweep cell records its pruning type."""
    cell = meta.get("cell") if isinstance(meta, Mapping) else None
    kind = cell.get("type") if isinstance(cell, Mapping) else None
    return None if not isinstance(kind, str) else kind in MASK_TYPES


def _describe(acc: float | None, percent: float | None, widths: str,
              masked: bool = False) -> str:
    """'test <acc> · <share> · <widths>': what tells checkpoints apart first, so a picker
    too narrow for the whole label (an 800-px window) cuts the widths, not the accuracy
    (it read '…: conv 16-32 · fc 64 · 63.6 %'). A masked model's widths are its dense
    model's, so its label leaves them out."""
    parts = [f"test {acc:.2f} %"] if acc is not None else []
    if percent is not None:
        # masks zero weights and remove no unit: the share is of non-zero weights
        parts.append(f"{percent:.1f} % weights non-zero" if masked else f"{percent:.1f} % kept")
    if widths and not masked:
        parts.append(widths)
    return " · ".join(parts)


def run_checkpoints(run: RunPaths) -> list[CheckpointEntry]:
    """Every completed iteration of one run, dense (iteration 0) first, and every
    iteration whose record is there but not readable, said so (it went missing from the
    list without a word; picked, its load names what is wrong). An iteration under way has
    no record yet (it is written last), so it is not listed."""
    name = f"{run.root.name} ({run.root.parent.name})"
    out = []
    for row in iteration_rows(run):
        meta = read_record(run.best_model_json(row.iteration))
        widths = widths_text(meta.get("spec"), row.widths)
        out.append(CheckpointEntry(
            "run", name,
            f"iteration {row.iteration}: {_describe(row.test_acc, row.percent_retained, widths)}",
            row.checkpoint, row.test_acc, row.percent_retained, list(row.widths),
            row.iteration, meta.get("dataset")))
    listed = {e.iteration for e in out}
    for i in run.numbered_iterations():
        if i not in listed and run.best_model(i).is_file() and run.best_model_json(i).is_file():
            out.append(CheckpointEntry(
                "run", name, f"iteration {i}: its record ({run.best_model_json(i).name}) is "
                f"damaged — resuming the run redoes it", run.best_model(i), iteration=i))
    return sorted(out, key=lambda e: e.iteration)


def train_time_checkpoints(run: TrainTimePaths) -> list[CheckpointEntry]:
    """The final classifiers of one train-time run, unpruned first (the reference).

    VAE runs give nothing: their checkpoints are generative models, which the pickers'
    users (Inspect: classify, attribute to classes) cannot use.
    """
    name = f"train-time {run.root.name} ({run.root.parent.name})"
    order = {"none": 0, "importance": 1, "random": 2}
    out = []
    units = sorted(run.completed_units(), key=lambda u: (order.get(u[0], 9), u[1]))
    for variant, seed in units:
        meta = read_record(run.final_model_json(variant, seed))
        if meta.get("task") != "classifier":
            continue
        widths = [int(w) for w in meta.get("widths") or []]
        acc = _acc(meta)
        out.append(CheckpointEntry(
            "run", name, f"{meta.get('label', variant)}, seed {seed}: "
            f"{_describe(acc, None, widths_text(meta.get('spec'), widths))}",
            run.final_model(variant, seed), acc, None,
            widths, None, meta.get("dataset"),
            reference=run.final_model("none", seed)
            if variant != "none" and ("none", seed) in units else None))
    return out


def list_run_checkpoints(root: Path | None = None) -> dict[str, list[CheckpointEntry]]:
    """{run label: its checkpoints}, newest run first; runs without a checkpoint are left out.

    Iterative runs list their iterations; train-time runs (under `<root>/train-time`)
    their final classifiers.
    """
    found = [(run.config.stat().st_mtime, run_checkpoints(run)) for run in list_runs(root)]
    found += [(run.config.stat().st_mtime, train_time_checkpoints(run))
              for run in list_train_time_runs(default_train_time_root(root))]
    out: dict[str, list[CheckpointEntry]] = {}
    for _, entries in sorted(found, key=lambda t: t[0], reverse=True):
        if entries:
            out[entries[0].group] = entries
    return out


def _sidecar_entries(folder: Path, source: str, group: str,
                     describe) -> list[CheckpointEntry]:
    """`*.safetensors` with a `.json` sidecar in `folder`, newest first.

    `describe(stem, meta, spec)` gives (label, title) of one checkpoint."""
    if not folder.is_dir():
        return []
    found = []
    for tensor in folder.glob("*.safetensors"):
        sidecar = tensor.with_suffix(".json")
        meta = read_json(sidecar) if sidecar.is_file() else None
        if not isinstance(meta, dict) or "spec" not in meta:
            continue
        spec = meta["spec"] if isinstance(meta["spec"], dict) else {}
        widths = _int_list(meta.get("widths")) or _int_list(spec.get("hidden")) or []
        percent = meta.get("percent_retained")
        percent = float(percent) if isinstance(percent, (int, float)) else None
        label, title = describe(tensor.stem, meta, spec)
        try:
            mtime = tensor.stat().st_mtime
        except OSError:  # deleted while listing
            continue
        found.append((mtime, CheckpointEntry(
            source, group, label, tensor, _acc(meta), percent, list(widths),
            meta.get("iteration") if isinstance(meta.get("iteration"), int) else None,
            meta.get("dataset"), title, bool(is_masked_record(meta)))))
    return [e for _, e in sorted(found, key=lambda t: t[0], reverse=True)]


def _cell_labeller(shared: Sequence[str]) -> Callable[..., tuple[str, str]]:
    """`describe` for a sweep's checkpoints: '<cell>: test <acc> · <% kept or non-zero> ·
    <widths>' (`_describe`), the cell named as the Compare page names it (`_cell_title`),
    in the label without the fields every cell of the sweep shares (`shared`: whole, the
    label was cut off in an 800-px window's picker); the title (headings) names them all."""
    def describe(stem: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
                 ) -> tuple[str, str]:
        widths = _int_list(meta.get("widths")) or []
        percent = meta.get("percent_retained")
        percent = float(percent) if isinstance(percent, (int, float)) else None
        extra = _describe(_acc(meta), percent, widths_text(spec, widths),
                          bool(is_masked_record(meta)))
        short = _cell_title(stem, meta, shared)
        return (f"{short}: {extra}" if extra else short), _cell_title(stem, meta)
    return describe


def _shared_fields(config: Any) -> list[str]:
    """The cell fields (dataset, batch_size, seed) a sweep's config.json gives one value."""
    if not isinstance(config, dict):
        return []
    one = {"dataset": _single(config.get("datasets")),
           "batch_size": _single(config.get("batch_sizes")),
           "seed": type(config.get("repeats")) is int and config["repeats"] == 1}
    return [f for f, shared in one.items() if shared]


def _single(values: Any) -> bool:
    return isinstance(values, list) and len(values) == 1


def _cell_title(stem: str, meta: Mapping[str, Any], omit: Sequence[str] = ()) -> str:
    """The cell by name from the sidecar's `cell` record when it is this file's cell, else
    its id: a cell handed over from Compare by name arrived as
    'mlp-digits-b64-s0-neuron-interval_adjoint-r50' in the picker and headings."""
    from .sweep_results import cell_of

    cell = cell_of(meta.get("cell"))
    return cell.describe(omit) if cell is not None and cell.id == stem else stem


def list_sweep_checkpoints(root: Path | None = None) -> list[CheckpointEntry]:
    """Pruned models saved by Compare sweeps, newest sweep first, grouped by sweep.

    Each is `sweeps/<date>/<sweep>/checkpoints/<cell-id>.safetensors` with its sidecar
    (`rundir.SweepPaths`); the label is the cell id, which says model, dataset, batch,
    seed, type, criterion and ratio — but not the sweep: the same cell id recurs in
    every sweep of the same grid point, so an entry's `group` ('<sweep> (<date>)') must
    be shown with it (`sweep_checkpoints` groups them for a picker).
    """
    from .rundir import list_sweeps

    out: list[CheckpointEntry] = []
    for sweep in list_sweeps(Path(root) if root else default_sweeps_root()):
        name = f"{sweep.root.name} ({sweep.root.parent.name})"
        shared = _shared_fields(read_json(sweep.config))
        out += _sidecar_entries(sweep.checkpoints_dir, "sweep", name, _cell_labeller(shared))
    return out


def sweep_checkpoints(root: Path | None = None) -> dict[str, list[CheckpointEntry]]:
    """{'<sweep> (<date>)': its checkpoints}, newest sweep first: pick the sweep, then
    the cell (a flat list showed four identical cell ids from four sweeps)."""
    out: dict[str, list[CheckpointEntry]] = {}
    for entry in list_sweep_checkpoints(root):
        out.setdefault(entry.group, []).append(entry)
    return out


def _number(value: Any) -> str | None:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def _baseline_label(stem: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
                    ) -> tuple[str, str]:
    """('MLP 256-64 · test 93.59 % · Digits · batch 64 · seed 1 · 3 epochs · adam lr
    0.001', the title without the accuracy): what tells cached baselines apart (the cache
    key is a hash of these settings, and 'mlp-digits-9df9f13f570b43a3: 256-64 · test
    93.59 %' appeared twice). The accuracy comes early: last, an 800-px window's picker
    cut it off with the learning rate."""
    from .labels import dataset_name, model_name

    parts = [f"{model_name(spec.get('arch'))} {widths_text(spec)}".strip()]
    data = meta.get("dataset")
    if isinstance(data, str):
        parts.append(dataset_name(data))
    train = meta.get("train") if isinstance(meta.get("train"), Mapping) else {}
    for key, template in (("batch_size", "batch {}"), ("seed", "seed {}"),
                          ("epochs", "{} epochs")):
        value = _number(train.get(key))
        if value is not None:
            parts.append(template.format(value).replace("1 epochs", "1 epoch")
                         if value == "1" else template.format(value))
    optimizer, lr = train.get("optimizer"), _number(train.get("lr"))
    if isinstance(optimizer, str) or lr is not None:
        parts.append(" ".join(p for p in (optimizer if isinstance(optimizer, str) else None,
                                          f"lr {lr}" if lr else None) if p))
    title = " · ".join(parts)
    acc = _acc(meta)
    label = parts[:1] + ([f"test {acc:.2f} %"] if acc is not None else []) + parts[1:]
    return " · ".join(label), title


def list_cache_checkpoints(root: Path | None = None) -> list[CheckpointEntry]:
    """Cached dense baselines in `models_cache/`, labelled by what they were trained
    with; two whose settings differ only in what a label leaves out (weight decay,
    learning-rate schedule …) get their cache key appended, so no two labels are equal."""
    from .cache import default_cache_root

    root = Path(root or default_cache_root())
    entries = _sidecar_entries(root, "cache", "models_cache", _baseline_label)
    seen: dict[str, int] = {}
    for e in entries:
        seen[e.label] = seen.get(e.label, 0) + 1
    for e in entries:
        if seen[e.label] > 1:
            key = e.path.stem.rsplit("-", 1)[-1][:8]
            e.label, e.title = f"{e.label} · key {key}", f"{e.title} · key {key}"
    return entries


# ------------------------------------------------------------------ uploads

@dataclass
class UploadedFile:
    """Name and bytes of one uploaded file (what `st.file_uploader` hands over)."""
    name: str
    data: bytes


def parse_spec_upload(data: bytes, name: str = "spec.json") -> dict[str, Any]:
    """A model spec from an uploaded JSON: a bare spec or one of our sidecars."""
    if len(data) > MAX_SPEC_BYTES:
        raise ExplorerError(f"{name} is {len(data) // 1024:,} kB; a model spec is a few kB")
    try:
        obj = json.loads(data.decode("utf-8"))
    except JSON_ERRORS:  # bad JSON or UTF-8, an integer past 4 300 digits, deep nesting
        raise ExplorerError(f"{name} is not a JSON file") from None
    if isinstance(obj, dict) and isinstance(obj.get("spec"), dict):
        return obj
    if isinstance(obj, dict) and "arch" in obj:
        return {"spec": obj}
    raise ExplorerError(f"{name} holds no model spec (a JSON object with 'arch', or a "
                        "checkpoint sidecar with a 'spec' field)")


def is_template(info: Mapping[str, Any]) -> bool:
    """Whether an uploaded JSON only describes a model (its spec and data) — a template a
    pruned `.pth` may be narrower than — rather than recording particular weights
    (metrics, widths, % kept …), which must then be exactly the uploaded ones."""
    return set(info) <= TEMPLATE_KEYS


def load_upload(files: Sequence[UploadedFile], spec: Mapping[str, Any] | None = None
                ) -> Checkpoint:
    """A model from uploaded files, never unpickled.

    Accepted: `x.safetensors` (+ its `x.json` sidecar, or the spec in its metadata, or
    `spec`), or a plain `.pth` / `.pt` state dict plus a spec (an uploaded `.json` or
    `spec`). The bytes go to a private temporary folder under fixed names — an uploaded
    name never becomes a path — and the folder is removed as soon as the model is built.

    A `.json` that records anything about particular weights (a sidecar: metrics, widths,
    % kept) must match the weights exactly, as our own pairs do; a sidecar of an 18·9
    model lent its accuracy and "% kept" to 20·10 weights. A bare spec (or `spec`) is a
    template: a pruned `.pth` may be narrower, and then reports the share of hidden units
    it kept (`meta["percent_retained"]`), as our own checkpoints do.
    """
    weights = [f for f in files if Path(f.name).suffix.lower() in WEIGHT_SUFFIXES]
    specs = [f for f in files if Path(f.name).suffix.lower() == ".json"]
    other = [f.name for f in files if f not in weights and f not in specs]
    if other:
        raise ExplorerError(f"{', '.join(other)}: upload .safetensors or .pth weights and a .json "
                            "model spec, nothing else")
    if len(weights) > 1:  # which ones: a second pair added beside the first
        raise ExplorerError(f"upload one weights file, not {len(weights)} "
                            f"({', '.join(f.name for f in weights)}): remove all but one")
    if not weights:
        raise ExplorerError("the upload has no weights file (.safetensors or .pth)")
    if len(specs) > 1:
        raise ExplorerError("upload at most one .json model spec")
    w = weights[0]
    suffix = Path(w.name).suffix.lower()
    info = parse_spec_upload(specs[0].data, specs[0].name) if specs else None
    if info is None and spec is not None:
        info = {"spec": dict(spec)}
    if suffix != ".safetensors" and info is None:
        raise ExplorerError(f"{w.name} is a .pth state dict: it needs a model spec (upload the "
                            ".json or describe the model)")
    with _private_copy(w) as tensor:
        sidecar = tensor.with_suffix(".json")
        try:
            if suffix == ".safetensors" or not is_template(info):
                if info is not None:  # read as our own pair: the spec must fit exactly
                    sidecar.write_text(json.dumps(info))
                ck = load_checkpoint(tensor)
            else:
                ck = load_checkpoint(tensor, spec=info["spec"])
                ck.meta = {**ck.meta, **{k: v for k, v in info.items() if k != "spec"}}
        except MissingSpec:  # said with the user's file names: ours are temporary
            raise MissingSpec(f"{w.name} holds no model spec: upload its .json "
                              f"({Path(w.name).stem}.json) with it") from None
        except CheckpointError as exc:  # name the user's files, not our temporary ones
            message = str(exc).replace(tensor.name, w.name)
            raise CheckpointError(message.replace(sidecar.name, specs[0].name) if specs
                                  else message) from None
    ck.path = None
    return ck


@contextlib.contextmanager
def _private_copy(weights: UploadedFile) -> Iterator[Path]:
    """The uploaded weights as `upload.<suffix>` in a private temporary folder (mode
    0700), removed with everything put beside it on leaving: an uploaded name never
    becomes a path."""
    folder = Path(tempfile.mkdtemp(prefix="explorer-upload-"))
    try:
        tensor = folder / ("upload" + Path(weights.name).suffix.lower())
        tensor.write_bytes(weights.data)
        yield tensor
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def upload_hidden_widths(files: Sequence[UploadedFile], arch: str) -> list[int] | None:
    """The hidden widths of an uploaded `.pth` state dict of `arch`, read from its tensor
    shapes (the file read only as `read_state` does: `torch.load(weights_only=True)`);
    None when there is no single weights file or it cannot be read (loading it says why).
    The page offers them as the dense widths, so an unpruned upload keeps 100 %."""
    return _upload_state_widths(files, arch, state_hidden_widths)


def upload_conv_channels(files: Sequence[UploadedFile], arch: str) -> list[int] | None:
    """The conv channels of an uploaded CNN `.pth` (`upload_hidden_widths`' twin)."""
    return _upload_state_widths(files, arch, state_conv_channels)


def _upload_state_widths(files: Sequence[UploadedFile], arch: str,
                         read: Callable[[Mapping[str, Any], str], list[int] | None]
                         ) -> list[int] | None:
    weights = [f for f in files if Path(f.name).suffix.lower() in WEIGHT_SUFFIXES]
    if len(weights) != 1 or Path(weights[0].name).suffix.lower() == ".safetensors":
        return None
    with _private_copy(weights[0]) as tensor:
        try:
            return read(read_state(tensor)[0], arch)
        except CheckpointError:
            return None


# Recorded and re-measured test accuracy of the same weights on the same split agree to
# rounding; a gap beyond this says the record belongs to other weights.
ACCURACY_TOLERANCE = 0.5


def accuracy_mismatch(recorded: float | None, measured: float | None) -> str | None:
    """A one-line warning when an uploaded .json's recorded test accuracy is not what its
    weights score: a sidecar of other weights of the same widths passes the shape check."""
    if recorded is None or measured is None or abs(recorded - measured) <= ACCURACY_TOLERANCE:
        return None
    return (f"The uploaded .json records a test accuracy of {recorded:.2f} %, but these weights "
            f"score {measured:.2f} %: the .json probably belongs to other weights, so its "
            "records (accuracy, % kept) are not shown.")


# ------------------------------------------------------------------ summary

def summary(ck: Checkpoint) -> dict[str, Any]:
    """Spec, widths, parameters (all and non-zero), MACs, recorded metrics and what the
    model kept of its dense version.

    `kept` names what `percent_kept` counts: "hidden units" for a model whose units were
    removed (the recorded share), "non-zero weights" for a masked one — masks remove no
    unit, so the widths stay dense and "hidden kept 25.7 %" beside widths 256·64 was
    wrong; the share is measured on the weights. A model counts as masked when its record
    says so (a sweep cell's pruning type) or, unrecorded, when at least
    `MASKED_ZERO_SHARE` of its parameters are exactly zero.
    """
    from .metrics import count_nonzero, macs_per_sample

    shape = input_shape(ck.spec)
    if len(shape) == 1:  # a flat MLP input: thop only needs the feature count
        shape = (shape[0],)
    metrics = ck.meta.get("metrics") if isinstance(ck.meta.get("metrics"), dict) else {}
    parameters, nonzero = count_parameters(ck.model), count_nonzero(ck.model)
    recorded = is_masked_record(ck.meta)
    masked = recorded if recorded is not None else \
        parameters > 0 and parameters - nonzero >= MASKED_ZERO_SHARE * parameters
    widths = hidden_widths(ck.model)
    percent = ck.meta.get("percent_retained")
    if masked:
        percent = 100.0 * nonzero / parameters if parameters else None
    elif not isinstance(percent, (int, float)) or isinstance(percent, bool):
        percent = None
    return {
        "arch": ck.spec.get("arch"),
        "widths": widths,
        # as the pickers write them: a CNN's conv channels apart from its FC units; those
        # of the weights (an uploaded .pth may be narrower than the spec it came with)
        "widths_text": widths_text(spec_of(ck.model, ck.spec), widths) or "none",
        "parameters": parameters,
        "nonzero_parameters": nonzero,
        "masked": masked,
        "kept": "non-zero weights" if masked else "hidden units",
        "percent_kept": percent,
        "macs": macs_per_sample(ck.model, shape),
        "test_acc": metrics.get("test_acc"),
        "percent_retained": ck.meta.get("percent_retained"),
        "dataset": ck.meta.get("dataset"),
        "iteration": ck.meta.get("iteration"),
    }
