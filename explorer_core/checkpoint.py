"""Safe checkpoints: `*.safetensors` for tensors plus a sibling `*.json` for the spec.

Nothing here unpickles objects. `.pth` files are read only with
`torch.load(weights_only=True)`, which refuses any pickle that would build objects
or call functions; their shapes must then fit a spec or the given model.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .errors import CheckpointError, ExplorerError
from .fileio import atomic_write_bytes, atomic_write_json
from .models import Spec, build_model, load_state_strict, resize_to_state, spec_of

SUFFIX = ".safetensors"


@dataclass
class Checkpoint:
    model: nn.Module
    spec: Spec
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (SUFFIX, ".json"):
        p = p.with_suffix("")
    return p.with_suffix(SUFFIX), p.with_suffix(".json")


def save_checkpoint(model: nn.Module, spec: Mapping[str, Any], path: str | os.PathLike,
                    meta: Mapping[str, Any] | None = None) -> Path:
    """Write `<path>.safetensors` and `<path>.json` atomically; returns the tensor file."""
    from safetensors.torch import save

    tensor_path, json_path = _paths(path)
    full_spec = spec_of(model, spec)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    info = {"spec": full_spec, **dict(meta or {})}
    blob = save(state, metadata={"spec": json.dumps(full_spec)})
    atomic_write_bytes(tensor_path, blob)
    atomic_write_json(json_path, info)
    return tensor_path


def read_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file or a weights-only `.pth` state dict."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.suffix == SUFFIX:
        return _read_safetensors(p)
    if p.suffix in (".pth", ".pt", ".bin"):
        return _read_pth(p), {}
    raise CheckpointError(f"{p.name}: unsupported checkpoint type (use .safetensors or a .pth "
                          "state dict)")


def _read_safetensors(p: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    data = p.read_bytes()
    try:
        state = load(data)
        import safetensors

        with safetensors.safe_open(str(p), framework="pt") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, ValueError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"{p.name} is not a valid safetensors file ({exc})") from None
    return state, meta


def _read_pth(p: Path) -> dict[str, torch.Tensor]:
    import pickle

    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{p.name} was refused: it needs unpickling of Python objects, "
                              "which could run code; save a plain state dict instead") from None
    except Exception as exc:  # zip / EOF / storage errors from a corrupt file
        raise CheckpointError(f"{p.name} is corrupt or not a PyTorch file "
                              f"({exc.__class__.__name__})") from None
    return _as_state_dict(obj, p.name)


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


def read_spec(path: str | os.PathLike, meta: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The JSON sidecar (spec + metadata), falling back to the safetensors metadata."""
    _, json_path = _paths(path)
    if json_path.is_file():
        try:
            info = json.loads(json_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{json_path.name} is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from None
        if not isinstance(info, dict) or "spec" not in info:
            raise CheckpointError(f"{json_path.name} has no 'spec' field")
        return info
    if meta and "spec" in meta:
        try:
            return {"spec": json.loads(meta["spec"])}
        except json.JSONDecodeError:
            raise CheckpointError("the spec stored in the safetensors metadata is not JSON") from None
    raise CheckpointError(f"no model spec found for {Path(path).name}: expected {json_path.name} "
                          "beside it")


def load_checkpoint(path: str | os.PathLike, spec: Mapping[str, Any] | None = None,
                    device: str | torch.device = "cpu") -> Checkpoint:
    """A ready model (eval mode) from our checkpoint, or from a `.pth` plus a spec."""
    tensor_path = Path(path)
    if tensor_path.suffix == ".json":
        tensor_path = _paths(path)[0]
    state, meta = read_state(tensor_path)
    info = {"spec": dict(spec)} if spec is not None else read_spec(tensor_path, meta)
    try:
        model = build_model(info["spec"], state)
    except CheckpointError:
        raise
    except ExplorerError as exc:
        raise CheckpointError(f"{tensor_path.name}: {exc}") from None
    model.to(device).eval()
    return Checkpoint(model, dict(info["spec"]), {k: v for k, v in info.items() if k != "spec"},
                      tensor_path)


def load_pruned_model(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Resize `model`'s layers to a (pruned) checkpoint and load it, in place.

    Keeps the thesis' deployment recipe: `model = SimpleNN(); load_pruned_model(model, f);
    model(x)` — for our safetensors files and for plain `.pth` state dicts.
    """
    state, _ = read_state(path)
    try:
        resize_to_state(model, state)
        load_state_strict(model, state)
    except ExplorerError as exc:
        raise CheckpointError(f"{Path(path).name}: {exc}") from None
    model.eval()
    return model
