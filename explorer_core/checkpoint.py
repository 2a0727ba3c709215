"""Safe checkpoints: `*.safetensors` for tensors plus a sibling `*.json` for the spec.

Nothing here unpickles objects. `.pth` files are read only with
`torch.load(weights_only=True)`, which refuses any pickle that would build objects
or call functions; their shapes must then fit a spec or the given model.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import struct
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from .errors import CheckpointError, ExplorerError, MissingSpec, TrainingDiverged, os_reason
from .fileio import JSON_ERRORS, atomic_write_bytes, atomic_write_json
from .models import (Spec, build_model, check_interface, hidden_widths, load_state_strict,
                     resize_to_state, spec_of)
from .rundir import in_run_iteration

SUFFIX = ".safetensors"


@dataclass
class Checkpoint:
    model: nn.Module
    spec: Spec
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


_KNOWN_SUFFIXES = (SUFFIX, ".json", ".pth", ".pt", ".bin")


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(tensor file, JSON sidecar) for a checkpoint path given with or without suffix.

    Only our own suffixes are replaced: "model.v2" becomes "model.v2.safetensors",
    not "model.safetensors".
    """
    p = Path(path)
    if p.suffix in _KNOWN_SUFFIXES:
        p = p.with_suffix("")
    return p.parent / (p.name + SUFFIX), p.parent / (p.name + ".json")


# dtypes whose safetensors name is torch's own and whose bytes are the tensor's memory
# as is (little-endian hosts): the ones `safetensors_bytes` serialises itself.
_PLAIN_DTYPES = frozenset({torch.float64, torch.float32, torch.float16, torch.bfloat16,
                           torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8,
                           torch.bool})


def checkpoint_label(path: str | os.PathLike) -> str:
    """A checkpoint file as messages name it: its name, but from the run folder on for
    an iteration's (`rundir.in_run_iteration`): "best_model.safetensors is not a valid
    safetensors file" did not say which run or iteration to redo."""
    return in_run_iteration(path) or Path(path).name


def safetensors_bytes(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """The bytes `safetensors.torch.save(state, metadata)` returns, cheaper for plain state.

    Why: `save` (safetensors 0.8) wraps every tensor in a numpy array through ctypes and
    groups storages in Python before its Rust serialiser runs: 93-122 us for a Digits MLP
    (6 tensors), 116-137 us for the CNN (8), on the Compare sweep's writer thread with the
    GIL held. Handing the tensors' own pointers to the same serialiser took 22-25 us.
    Anything unusual (shared or empty storage, another device or dtype, a non-tensor, a
    big-endian host, a safetensors without `TensorSpec`) goes through `save` itself,
    which then also raises its own errors. With one metadata key (ours) the bytes are
    deterministic; safetensors orders several keys differently from call to call.
    """
    from safetensors.torch import save

    specs = _tensor_specs(state)
    if specs is None:
        return save(dict(state), metadata=dict(metadata))
    from safetensors import serialize

    return serialize(specs, metadata=dict(metadata))  # `state` keeps the memory alive


def _tensor_specs(state: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """safetensors' `TensorSpec` of every tensor, None unless each is a plain one
    (`safetensors_bytes`): CPU, strided, contiguous, non-empty, its own storage."""
    try:
        from safetensors import TensorSpec
    except ImportError:  # safetensors < 0.8 has no pointer-based serialiser
        return None
    if sys.byteorder != "little":
        return None
    specs: dict[str, Any] = {}
    storages: set[int] = set()
    for name, t in state.items():
        if not (isinstance(t, torch.Tensor) and t.dtype in _PLAIN_DTYPES
                and t.device.type == "cpu" and t.layout == torch.strided
                and t.is_contiguous() and t.numel() > 0):
            return None
        storages.add(t.untyped_storage().data_ptr())
        specs[name] = TensorSpec(dtype=str(t.dtype)[len("torch."):], shape=t.shape,
                                 data_ptr=t.data_ptr(), data_len=t.numel() * t.element_size())
    return specs if len(storages) == len(specs) else None


def _folded_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state with weight masks folded in: `X_orig` × `X_mask` saved as `X`.

    What saving a copy made permanent (`masks.permanent_copy`) gives, key for key,
    without copying the model: a Compare sweep saves every masked cell, and the copy
    cost ~0.7 ms each on the writer thread, holding the GIL the sweep needs.
    """
    state = model.state_dict()
    masked = {k[:-len("_orig")] for k in state
              if k.endswith("_orig") and k[:-len("_orig")] + "_mask" in state}
    if not masked:
        return state
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith("_mask") and key[:-len("_mask")] in masked:
            continue
        if key.endswith("_orig") and key[:-len("_orig")] in masked:
            base = key[:-len("_orig")]
            out[base] = value * state[base + "_mask"]
        else:
            out[key] = value
    return out


def save_checkpoint(model: nn.Module, spec: Mapping[str, Any], path: str | os.PathLike,
                    meta: Mapping[str, Any] | None = None) -> Path:
    """Write `<path>.safetensors` and `<path>.json` atomically; returns the tensor file.
    A masked model is saved with its masks folded in (`_folded_state`): an ordinary
    checkpoint, which `build_model` rebuilds."""
    tensor_path, json_path = checkpoint_paths(path)
    full_spec = spec_of(model, spec)
    state = {k: v.detach().to("cpu").contiguous() for k, v in _folded_state(model).items()}
    info = {**dict(meta or {}), "spec": full_spec}
    blob = safetensors_bytes(state, {"spec": json.dumps(full_spec)})
    atomic_write_bytes(tensor_path, blob)
    atomic_write_json(json_path, info)
    return tensor_path


def link_checkpoint(source: str | os.PathLike, path: str | os.PathLike,
                    meta: Mapping[str, Any] | None = None) -> Path:
    """A checkpoint under another name that shares `source`'s tensors, with its own sidecar.

    The tensor file is a hard link (no second copy on disk; a copy where the file system
    has no links), made atomically like every other file: the ratio-0 cells of a sweep
    are the same dense model, and saving each took VGG16-BN's 16 copies to 916 MB.
    """
    src_tensor, src_json = checkpoint_paths(source)
    tensor_path, json_path = checkpoint_paths(path)
    spec = json.loads(src_json.read_text())["spec"]
    tmp = tensor_path.with_name(f".{tensor_path.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src_tensor, tmp)
    except OSError:
        atomic_write_bytes(tensor_path, src_tensor.read_bytes())
    else:
        os.replace(tmp, tensor_path)
    atomic_write_json(json_path, {**dict(meta or {}), "spec": spec})
    return tensor_path


# A safetensors header this large is no header of ours (the format's own limit is 100 MB).
_MAX_HEADER = 100_000_000


def checkpoint_problem(path: str | os.PathLike) -> str | None:
    """Why a checkpoint's files do not look whole, read cheaply; None when they do: the
    tensor file's header parses and the data it lists ends exactly at the end of the
    file (a zero-byte or truncated file fails), and the sidecar is a JSON object with a
    spec. Reads headers only, never the tensors.

    For choosing among many checkpoints: a resumed sweep's or train-time run's finished
    cells (a file emptied or cut short counted as done), and the Iterative page's model
    to deploy (it offered a truncated best_model.safetensors, and its download).
    """
    tensor_path, json_path = checkpoint_paths(path)
    cut = f"{tensor_path.name} is cut short or not a safetensors file"
    try:
        size = tensor_path.stat().st_size
        with open(tensor_path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return cut
            (length,) = struct.unpack("<Q", head)
            if length > min(size - 8, _MAX_HEADER):
                return cut
            header = json.loads(fh.read(length))
    except FileNotFoundError:
        return f"{tensor_path.name} is missing"
    except OSError as exc:
        return f"cannot read {tensor_path.name}: {os_reason(exc)}"
    except (UnicodeDecodeError, ValueError, RecursionError):
        return cut
    end = _data_end(header)
    if end is None or 8 + length + end != size:
        return cut
    try:
        info = json.loads(json_path.read_text())
    except FileNotFoundError:
        return f"{json_path.name} (its model spec) is missing"
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return f"{json_path.name} (its model spec) is not readable JSON"
    if not isinstance(info, dict) or not isinstance(info.get("spec"), dict):
        return f"{json_path.name} has no model spec"
    return None


def checkpoint_intact(path: str | os.PathLike) -> bool:
    """`checkpoint_problem` finds nothing."""
    return checkpoint_problem(path) is None


def _data_end(header: Any) -> int | None:
    """Where the last tensor's bytes end (`data_offsets`), None for a header not of this
    format."""
    if not isinstance(header, dict):
        return None
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            return None
        end = max(end, offsets[1])
    return end


def read_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file or a weights-only `.pth` state dict."""
    p = Path(path)
    if not p.is_file():  # a folder given was "not found", sending people to look for it
        raise CheckpointError(f"{p} is a folder, not a checkpoint file" if p.is_dir()
                              else f"checkpoint not found: {p}")
    if p.suffix == SUFFIX:
        return _read_safetensors(p)
    if p.suffix in (".pth", ".pt", ".bin"):
        return _read_pth(p), {}
    raise CheckpointError(f"{checkpoint_label(p)}: unsupported checkpoint type (use "
                          ".safetensors or a .pth state dict)")


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors blob whose header has already been validated."""
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    meta = header.get("__metadata__") or {}
    return {str(k): str(v) for k, v in meta.items()}


def _read_safetensors(p: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Parse one in-memory copy of the file (no second open: the file may be replaced)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        data = p.read_bytes()
        state = load(data)
        meta = _safetensors_metadata(data)
    except (SafetensorError, ValueError, RuntimeError, OSError, struct.error) as exc:
        raise CheckpointError(f"{checkpoint_label(p)} is not a valid safetensors file "
                              f"({exc})") from None
    return state, meta


_GLOBAL = re.compile(r"GLOBAL\s+([\w.]+)")


def _read_pth(p: Path) -> dict[str, torch.Tensor]:
    """A `.pth` read with `weights_only=True`: tensors and containers, never objects.

    PyTorch's restricted unpickler refuses any global it does not know (os.system,
    builtins.open, a model class) *before* calling it, so a malicious file is rejected
    without running anything. The refused name is quoted in the message.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL.search(str(exc))
        if found is None and not _looks_like_torch_save(p):  # random bytes, not a refusal
            raise CheckpointError(f"{checkpoint_label(p)} is corrupt or not a PyTorch file "
                                  "(neither a zip archive nor a pickle)") from None
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(f"{checkpoint_label(p)} was refused: it needs unpickling of "
                              f"Python objects{what}, which could run code; save a plain "
                              "state dict (torch.save(model.state_dict(), f)) or use "
                              ".safetensors") from None
    except Exception as exc:  # zip / EOF / storage errors from a corrupt file
        raise CheckpointError(f"{checkpoint_label(p)} is corrupt or not a PyTorch file "
                              f"({exc.__class__.__name__})") from None
    return _as_state_dict(obj, checkpoint_label(p))


def _looks_like_torch_save(p: Path) -> bool:
    """Whether the file begins as `torch.save` writes: a zip archive, or (the legacy
    format) a pickle's protocol opcode. The restricted unpickler fails on any other
    bytes too, and its error then read as a refusal of Python objects."""
    try:
        with open(p, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head == b"PK\x03\x04" or head[:1] == b"\x80"


def _as_state_dict(obj: Any, name: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors and len(tensors) == len(obj):
            return {k.removeprefix("module."): v for k, v in tensors.items()}
    raise CheckpointError(f"{name} does not hold a state dict of tensors")


# The weight names of the fully connected layers whose outputs are hidden units, per
# architecture (MLP: fc1 … fcK; CNN: its classifier's Linear layers).
_DENSE_WEIGHTS = {"mlp": re.compile(r"fc(\d+)\.weight"),
                  "cnn": re.compile(r"classifier\.(\d+)\.weight")}


def state_hidden_widths(state: Mapping[str, torch.Tensor], arch: str) -> list[int] | None:
    """The hidden widths of the fully connected layers in a state dict of `arch`, read
    from the tensor shapes alone (no model built); None when they cannot be read.

    A `.pth` records no spec: offering a fixed "256, 64" as the widths it came from made
    a dense 64-32 model read "Hidden kept 30.0 %". Its own widths mean "nothing pruned"
    until the user names wider ones.
    """
    pattern = _DENSE_WEIGHTS.get(arch)
    if pattern is None:
        return None
    layers = sorted((int(m.group(1)), t) for k, t in state.items()
                    if (m := pattern.fullmatch(k)) and isinstance(t, torch.Tensor) and t.dim() == 2)
    return [int(t.shape[0]) for _, t in layers[:-1]] if len(layers) > 1 else None


_CONV_WEIGHTS = {"cnn": re.compile(r"features\.(\d+)\.weight")}


def state_conv_channels(state: Mapping[str, torch.Tensor], arch: str) -> list[int] | None:
    """The conv channels of a CNN state dict, read from its 4-d weights as
    `state_hidden_widths` reads the fully connected ones; None for other architectures
    or when there are none. A CNN .pth of other channels than the default 16·32 could
    not be described on the Inspect page: its weights did not fit the spec."""
    pattern = _CONV_WEIGHTS.get(arch)
    if pattern is None:
        return None
    layers = sorted((int(m.group(1)), t) for k, t in state.items()
                    if (m := pattern.fullmatch(k)) and isinstance(t, torch.Tensor) and t.dim() == 4)
    return [int(t.shape[0]) for _, t in layers] or None


def read_spec(path: str | os.PathLike, meta: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The JSON sidecar (spec + metadata), falling back to the safetensors metadata."""
    _, json_path = checkpoint_paths(path)
    if json_path.is_file():
        try:
            info = json.loads(json_path.read_text())
        except JSON_ERRORS as exc:
            raise CheckpointError(f"{checkpoint_label(json_path)} is not valid JSON "
                                  f"({exc.msg if hasattr(exc, 'msg') else exc})") from None
        if not isinstance(info, dict) or "spec" not in info:
            raise CheckpointError(f"{checkpoint_label(json_path)} has no 'spec' field")
        return info
    if meta and "spec" in meta:
        try:
            return {"spec": json.loads(meta["spec"])}
        except JSON_ERRORS:
            raise CheckpointError("the spec stored in the safetensors metadata is not JSON") from None
    raise MissingSpec(f"no model spec found for {checkpoint_label(path)}: expected "
                      f"{json_path.name} beside it")


_WIDTH_NAMES = {"hidden": "hidden widths", "channels": "conv channels", "widths": "conv widths"}


def _dotted(value: Any) -> str:
    """Widths as a person reads them: [18, 9] → '18·9' ({layer: n} → its values)."""
    values = list(value.values()) if isinstance(value, Mapping) else value
    if isinstance(values, list):
        return "·".join(str(v) for v in values)
    return str(value)


def _width_mismatch(model: nn.Module, spec: Mapping[str, Any]) -> str | None:
    """Which recorded width of `spec` the loaded weights contradict, if any:
    'hidden widths 18·9 but the weights have 20·10'."""
    actual = spec_of(model, spec)
    for key in ("hidden", "channels", "widths"):
        if key in spec and spec[key] != actual.get(key):
            return (f"{_WIDTH_NAMES[key]} {_dotted(spec[key])} but the weights have "
                    f"{_dotted(actual.get(key))}")
    return None


def _wider_than_template(dense: list[int], model: nn.Module) -> str | None:
    """A template spec gives the widths a pruned model came from: weights with a layer
    wider than that are not pruned from it (their "% kept" would pass 100)."""
    have = hidden_widths(model)
    if len(have) == len(dense) and any(h > d for h, d in zip(have, dense)):
        return f"hidden widths {_dotted(have)}, wider than the model spec's {_dotted(dense)}"
    return None


def first_non_finite(state: Mapping[str, torch.Tensor], order: Iterable[str] = ()) -> str | None:
    """'<tensor> holds NaN (k of n values)' for the first floating tensor with NaN or ±inf.

    `order` (the model's own `state_dict()` keys) decides which is "first": a safetensors
    file lists its tensors in no useful order, and a person looks for the earliest layer.
    One sum per tensor is the fast path (a finite sum has no NaN and no inf; 5 ms for
    VGG16-BN's 15 M values where `isfinite().all()` took 50 ms), so loaders can always
    check; only a non-finite sum, which large finite values could also overflow to, is
    checked value by value.
    """
    keys = list(dict.fromkeys([k for k in order if k in state] + list(state)))
    for key in keys:
        t = state[key]
        if not t.is_floating_point() or bool(torch.isfinite(t.sum())):
            continue
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            kind = "NaN" if bool(torch.isnan(t).any()) else "±inf"
            return f"{key} holds {kind} ({bad} of {t.numel()} values)"
    return None


def _refuse_non_finite(state: Mapping[str, torch.Tensor], order: Iterable[str], name: str) -> None:
    """Weights with NaN / inf load without complaint and then predict "8 (nan%)": refused
    by every loader with the first bad tensor named (a diverged training writes such files)."""
    problem = first_non_finite(state, order)
    if problem:
        raise CheckpointError(f"{name} has weights that are not finite: {problem}; a model "
                              "with them predicts nothing meaningful (did its training diverge?)")


def refuse_diverged(model: nn.Module, what: str, advice: str) -> None:
    """Raise `TrainingDiverged` ("<what> diverged: fc1.weight holds NaN (…); <advice>")
    when `model`'s weights, as a checkpoint of it would hold them (masks folded in), are
    not finite: the check every loader makes (`first_non_finite`), made where a training
    ends, so such weights are neither saved nor cached nor reported. A Compare sweep
    reported the cells of a diverged baseline "ok" (7.80 %, its constant guess) and saved
    their checkpoints, which Inspect then refused."""
    problem = first_non_finite(_folded_state(model))
    if problem:
        raise TrainingDiverged(f"{what} diverged: {problem}; {advice}")


def _percent_kept(dense: list[int], model: nn.Module) -> float | None:
    """Hidden units kept, in % of `dense` (what iterative, Compare and train-time
    checkpoints record as `percent_retained`); None for a model without hidden units."""
    return 100.0 * sum(hidden_widths(model)) / sum(dense) if sum(dense) else None


def _refuse_autoencoder(spec: Any, name: str) -> None:
    """A train-time VAE run's model is our checkpoint too, but not a classifier: Inspect
    and `prune-once` said "unknown model 'fc_vae'; choose one of slp, mlp, …", as if the
    file were damaged or from another program."""
    from .vae import ARCH

    if isinstance(spec, Mapping) and spec.get("arch") == ARCH:
        raise CheckpointError(f"{name} is a variational autoencoder (a train-time VAE run's "
                              "model), not a classifier; pick a classifier's checkpoint")


def load_checkpoint(path: str | os.PathLike, spec: Mapping[str, Any] | None = None,
                    device: str | torch.device = "cpu") -> Checkpoint:
    """A ready model (eval mode) from our checkpoint, or from a `.pth` plus a spec.

    A spec read from the checkpoint's own sidecar must match the weights exactly
    (we write the pruned widths into it, so a difference means the two files do not
    belong together, and the sidecar's metrics are not those of these weights). A spec
    passed by the caller is a template: layers may be narrower in the weights (a pruned
    `.pth` with the dense spec) but not wider, and inputs and classes must agree; the
    share of the template's hidden units the weights keep is then
    `meta["percent_retained"]`, as our own pruned checkpoints record it. Weights
    holding NaN or ±inf are refused.
    """
    tensor_path = Path(path)
    if tensor_path.suffix == ".json":
        tensor_path = checkpoint_paths(path)[0]
    state, meta = read_state(tensor_path)
    from_file = spec is None
    info = read_spec(tensor_path, meta) if from_file else {"spec": dict(spec)}
    _refuse_autoencoder(info["spec"], checkpoint_label(tensor_path))
    try:
        model = build_model(info["spec"])
        dense = hidden_widths(model)
        check_interface(model, state)
        resize_to_state(model, state)
        load_state_strict(model, state)
    except CheckpointError:
        raise
    except ExplorerError as exc:
        raise CheckpointError(f"{checkpoint_label(tensor_path)}: {exc}") from None
    except Exception as exc:  # a spec that passes validation but cannot be built
        raise CheckpointError(f"{checkpoint_label(tensor_path)}: cannot build the model of "
                              f"its spec ({exc.__class__.__name__}: {exc})") from None
    _refuse_non_finite(state, model.state_dict().keys(), checkpoint_label(tensor_path))
    if from_file:
        problem = _width_mismatch(model, info["spec"])
        if problem:
            json_path = checkpoint_paths(tensor_path)[1]
            where = checkpoint_label(json_path) if json_path.is_file() else \
                f"the spec in {checkpoint_label(tensor_path)}'s metadata"
            raise CheckpointError(f"{where} records {problem}: they are not one checkpoint")
    else:
        problem = _wider_than_template(dense, model)
        if problem:
            raise CheckpointError(f"{checkpoint_label(tensor_path)} has {problem}: give the "
                                  "widths it was pruned from (or its own)")
    extra = {k: v for k, v in info.items() if k != "spec"}
    kept = None if from_file else _percent_kept(dense, model)
    if kept is not None:
        extra["percent_retained"] = kept
    model.to(device).eval()
    return Checkpoint(model, dict(info["spec"]), extra, tensor_path)


def load_pruned_model(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Resize `model`'s layers to a (pruned) checkpoint and load it, in place.

    Keeps the thesis' deployment recipe: `model = SimpleNN(); load_pruned_model(model, f);
    model(x)` — for our safetensors files and for plain `.pth` state dicts. Weights
    for other inputs or classes, or holding NaN / ±inf, are refused before `model` is
    touched.
    """
    state, _ = read_state(path)
    _refuse_non_finite(state, model.state_dict().keys(), checkpoint_label(path))
    try:
        check_interface(model, state)
        resize_to_state(model, state)
        load_state_strict(model, state)
    except ExplorerError as exc:
        raise CheckpointError(f"{checkpoint_label(path)}: {exc}") from None
    model.eval()
    return model
