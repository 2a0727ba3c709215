"""Where checkpoints come from: past runs, sweeps, the baseline cache, uploads.

One list of `CheckpointEntry` (label, path, accuracy, % retained) for pickers, built from
files only, so any page or the CLI can offer "every model we have". Uploaded checkpoints
arrive as bytes: they are written under fixed names into a private temporary folder
(mode 0700, removed right after loading) and loaded with `load_checkpoint`, which never
unpickles — a `.pth` goes through `torch.load(weights_only=True)` and a file that needs
more than tensors is refused before any of its code could run.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .checkpoint import Checkpoint, load_checkpoint
from .errors import CheckpointError, ExplorerError
from .fileio import JSON_ERRORS
from .models import count_parameters, hidden_widths, input_shape
from .results import iteration_rows
from .rundir import (RunPaths, TrainTimePaths, default_train_time_root, list_runs,
                     list_train_time_runs, read_json, read_record)

# An uploaded spec / sidecar is a few kB; the weights may be large (the server caps uploads).
MAX_SPEC_BYTES = 1_000_000
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


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

    @property
    def key(self) -> str:
        return str(self.path)


def _acc(meta: Mapping[str, Any]) -> float | None:
    value = (meta.get("metrics") or {}).get("test_acc") if isinstance(meta, Mapping) else None
    return float(value) if isinstance(value, (int, float)) else None


def _describe(acc: float | None, percent: float | None, widths: Sequence[int]) -> str:
    parts = []
    if widths:
        parts.append("-".join(str(w) for w in widths))
    if percent is not None:
        parts.append(f"{percent:.1f} % kept")
    if acc is not None:
        parts.append(f"test {acc:.2f} %")
    return " · ".join(parts)


def run_checkpoints(run: RunPaths) -> list[CheckpointEntry]:
    """Every completed iteration of one run, dense (iteration 0) first."""
    name = f"{run.root.name} ({run.root.parent.name})"
    out = []
    for row in iteration_rows(run):
        meta = read_record(run.best_model_json(row.iteration))
        out.append(CheckpointEntry(
            "run", name, f"iteration {row.iteration}: "
            f"{_describe(row.test_acc, row.percent_retained, row.widths)}",
            row.checkpoint, row.test_acc, row.percent_retained, list(row.widths),
            row.iteration, meta.get("dataset")))
    return out


def train_time_checkpoints(run: TrainTimePaths) -> list[CheckpointEntry]:
    """The final classifiers of one train-time run, unpruned first (the reference).

    VAE runs give nothing: their checkpoints are generative models, which the pickers'
    users (Inspect: classify, attribute to classes) cannot use.
    """
    name = f"train-time {run.root.name} ({run.root.parent.name})"
    order = {"none": 0, "importance": 1, "random": 2}
    out = []
    for variant, seed in sorted(run.completed_units(), key=lambda u: (order.get(u[0], 9), u[1])):
        meta = read_record(run.final_model_json(variant, seed))
        if meta.get("task") != "classifier":
            continue
        widths = [int(w) for w in meta.get("widths") or []]
        acc = _acc(meta)
        out.append(CheckpointEntry(
            "run", name, f"{meta.get('label', variant)}, seed {seed}: "
            f"{_describe(acc, None, widths)}", run.final_model(variant, seed), acc, None,
            widths, None, meta.get("dataset")))
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


def _sidecar_entries(folder: Path, source: str, group_of,
                     recursive: bool = True) -> list[CheckpointEntry]:
    """`*.safetensors` with a `.json` sidecar in (or under) `folder`, newest first."""
    if not folder.is_dir():
        return []
    found = []
    for tensor in (folder.rglob if recursive else folder.glob)("*.safetensors"):
        sidecar = tensor.with_suffix(".json")
        meta = read_json(sidecar) if sidecar.is_file() else None
        if not isinstance(meta, dict) or "spec" not in meta:
            continue
        spec = meta["spec"] if isinstance(meta["spec"], dict) else {}
        widths = meta.get("widths") or spec.get("hidden") or []
        widths = [int(w) for w in widths] if isinstance(widths, list) else []
        percent = meta.get("percent_retained")
        percent = float(percent) if isinstance(percent, (int, float)) else None
        acc = _acc(meta)
        rel = tensor.relative_to(folder)
        label = f"{rel.with_suffix('')}"
        extra = _describe(acc, percent, widths)
        found.append((tensor.stat().st_mtime, CheckpointEntry(
            source, group_of(rel), f"{label}: {extra}" if extra else label, tensor, acc,
            percent, widths, meta.get("iteration") if isinstance(meta.get("iteration"), int)
            else None, meta.get("dataset"))))
    return [e for _, e in sorted(found, key=lambda t: t[0], reverse=True)]


def list_sweep_checkpoints(root: Path | None = None) -> list[CheckpointEntry]:
    """Pruned models saved by Compare sweeps, newest sweep first, grouped by sweep.

    Each is `sweeps/<date>/<sweep>/checkpoints/<cell-id>.safetensors` with its sidecar
    (`rundir.SweepPaths`); the label is the cell id, which says model, dataset, batch,
    seed, type, criterion and ratio.
    """
    from .rundir import list_sweeps

    out: list[CheckpointEntry] = []
    for sweep in list_sweeps(Path(root) if root else default_sweeps_root()):
        name = f"{sweep.root.name} ({sweep.root.parent.name})"
        out += _sidecar_entries(sweep.checkpoints_dir, "sweep", lambda rel, n=name: n,
                                recursive=False)
    return out


def list_cache_checkpoints(root: Path | None = None) -> list[CheckpointEntry]:
    """Cached dense baselines in `models_cache/`."""
    from .cache import default_cache_root

    root = Path(root or default_cache_root())
    return _sidecar_entries(root, "cache", lambda rel: "models_cache", recursive=False)


# ------------------------------------------------------------------ uploads

@dataclass
class UploadedFile:
    """Name and bytes of one uploaded file (what `st.file_uploader` hands over)."""
    name: str
    data: bytes


def parse_spec_upload(data: bytes, name: str = "spec.json") -> dict[str, Any]:
    """A model spec from an uploaded JSON: a bare spec or one of our sidecars."""
    if len(data) > MAX_SPEC_BYTES:
        raise ExplorerError(f"{name} is {len(data) // 1024} kB; a model spec is a few kB")
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


def load_upload(files: Sequence[UploadedFile], spec: Mapping[str, Any] | None = None
                ) -> Checkpoint:
    """A model from uploaded files, never unpickled.

    Accepted: `x.safetensors` (+ its `x.json` sidecar, or the spec in its metadata, or
    `spec`), or a plain `.pth` / `.pt` state dict plus a spec (an uploaded `.json` or
    `spec`). The bytes go to a private temporary folder under fixed names — an uploaded
    name never becomes a path — and the folder is removed as soon as the model is built.
    A `.pth` of a pruned model with the dense spec reports the share of hidden units it
    kept (`meta["percent_retained"]`), as our own checkpoints do.
    """
    weights = [f for f in files if Path(f.name).suffix.lower() in WEIGHT_SUFFIXES]
    specs = [f for f in files if Path(f.name).suffix.lower() == ".json"]
    other = [f.name for f in files if f not in weights and f not in specs]
    if other:
        raise ExplorerError(f"{', '.join(other)}: upload .safetensors or .pth weights and a .json "
                            "model spec, nothing else")
    if len(weights) != 1:
        raise ExplorerError("upload exactly one weights file (.safetensors or .pth)"
                            if weights else "the upload has no weights file (.safetensors or .pth)")
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
    folder = Path(tempfile.mkdtemp(prefix="explorer-upload-"))  # mode 0700
    try:
        tensor = folder / ("upload" + suffix)
        tensor.write_bytes(w.data)
        if suffix == ".safetensors":
            if info is not None:
                (folder / "upload.json").write_text(json.dumps(info))
            ck = load_checkpoint(tensor)
        else:
            ck = load_checkpoint(tensor, spec=info["spec"])
            # the share kept of the given spec's widths, unless the uploaded sidecar records it
            ck.meta = {**ck.meta, **{k: v for k, v in info.items() if k != "spec"}}
    except CheckpointError as exc:  # name the user's file, not our temporary one
        raise CheckpointError(str(exc).replace(tensor.name, w.name)) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ck.path = None
    return ck


# ------------------------------------------------------------------ summary

def summary(ck: Checkpoint) -> dict[str, Any]:
    """Spec, widths, parameters, MACs and recorded metrics of a loaded checkpoint."""
    from .metrics import macs_per_sample

    shape = input_shape(ck.spec)
    if len(shape) == 1:  # a flat MLP input: thop only needs the feature count
        shape = (shape[0],)
    metrics = ck.meta.get("metrics") if isinstance(ck.meta.get("metrics"), dict) else {}
    return {
        "arch": ck.spec.get("arch"),
        "widths": hidden_widths(ck.model),
        "parameters": count_parameters(ck.model),
        "macs": macs_per_sample(ck.model, shape),
        "test_acc": metrics.get("test_acc"),
        "percent_retained": ck.meta.get("percent_retained"),
        "dataset": ck.meta.get("dataset"),
        "iteration": ck.meta.get("iteration"),
    }
