"""Weight (unstructured) pruning: magnitude masks through `torch.nn.utils.prune`.

Two kinds, one registry (`MASK_TYPES`):

* `"weight"` — layer-wise: every Linear / Conv2d weight loses the `ratio` of its own
  entries with the smallest |w| (what `prune.l1_unstructured` does per layer), so every
  layer ends with the same sparsity.
* `"unstructured"` — global: the `ratio` of all those weights together with the smallest
  |w| (`prune.global_unstructured`); layers with small weights lose more.

Which weights go is chosen by a method (`MASK_METHODS`): `"magnitude"` (smallest |w|,
the usual rule) or `"random"` (seeded; the control a magnitude mask must beat) — torch
pruning methods that select by k-th value rather than torch's slower top-k.

The output layer is masked too (Han et al. 2015 prune every layer); biases and
BatchNorm parameters are not. Masks zero weights but do not make a model faster — dense
kernels still multiply the zeros; only structural pruning (`surgery`) shrinks work.

Fine-tuning with masks: we keep torch's reparametrisation during training. A masked
layer holds `weight_orig` (the trained parameter) and `weight_mask` (a buffer) and
computes `weight = weight_orig * weight_mask` before every forward, so masked weights
are zero in every forward pass and receive zero gradient; nothing has to be re-applied
after optimiser steps, and the training engine's best-epoch state copies include the
mask. Before saving, `make_permanent` (in place) or `save_masked` (into the file) folds the
mask into a plain `weight`, so checkpoints have ordinary keys and rebuild with
`build_model`.
"""
from __future__ import annotations

import copy
import functools
import os
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn
from torch.nn.utils import prune

from .checkpoint import save_checkpoint
from .errors import ExplorerError
from .ranking import check_ratio
from .training import seed_torch

MASKABLE = (nn.Linear, nn.Conv2d)


def maskable_layers(model: nn.Module) -> list[str]:
    """Names of the layers whose weights get masks (every Linear and Conv2d)."""
    return [n for n, m in model.named_modules() if isinstance(m, MASKABLE)]


Targets = list[tuple[nn.Module, str]]
Method = type[prune.BasePruningMethod]


def _layerwise(targets: Targets, ratio: float, method: Method) -> None:
    for module, name in targets:
        method.apply(module, name, amount=ratio)


def _global(targets: Targets, ratio: float, method: Method) -> None:
    prune.global_unstructured(targets, pruning_method=method, amount=ratio)


MASK_TYPES: dict[str, Callable[[Targets, float, Method], None]] = {
    "weight": _layerwise,
    "unstructured": _global,
}

class LowestScores(prune.BasePruningMethod):
    """Mask the `amount` of entries with the lowest scores; magnitude: scores = |w|.

    What `prune.L1Unstructured` does, found by one k-th value selection instead of a
    top-k (0.05 s instead of 0.18 s for a 2.4 M-weight layer; masking ResNet-18 took
    0.8 s, 1.2 s globally, and a sweep masks a baseline at every ratio). Entries tied at
    the threshold go lowest index first, where torch's top-k leaves the choice open.
    """
    PRUNING_TYPE = "unstructured"

    def __init__(self, amount: int | float) -> None:
        prune._validate_pruning_amount_init(amount)
        self.amount = amount

    @classmethod
    def apply(cls, module: nn.Module, name: str, amount: int | float,
              importance_scores: torch.Tensor | None = None):
        return super().apply(module, name, amount=amount, importance_scores=importance_scores)

    def scores(self, t: torch.Tensor) -> torch.Tensor:
        return t.abs()

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        size = t.nelement()
        k = prune._compute_nparams_toprune(self.amount, size)
        prune._validate_pruning_amount(k, size)
        mask = default_mask.clone(memory_format=torch.contiguous_format)
        if k:
            s = self.scores(t).reshape(-1)
            kth = torch.kthvalue(s, k).values
            drop = s < kth
            tied = torch.nonzero(s == kth).flatten()
            drop[tied[: k - int(drop.sum())]] = True
            mask.view(-1)[drop] = 0
        return mask


class RandomScores(LowestScores):
    """`prune.RandomUnstructured` by k-th value: it masks the `amount` of entries with
    the largest `torch.rand_like` draws, drawn only when something is masked — the same
    draws here, so seeded random masks are the ones torch's method gives."""

    def scores(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.rand_like(t)


MASK_METHODS: dict[str, Method] = {
    "magnitude": LowestScores,
    "random": RandomScores,
}
# The methods that draw from torch's global generator, which `apply_masks` seeds for them
# and restores after. Only for them: seeding there cost 27 ms of magnitude masking on the
# Digits Compare benchmark while it went through torch.manual_seed (~0.75 ms a call: it
# queued a CUDA seeding with a captured stack trace, which `seed_torch` does not).
RANDOM_METHODS = frozenset({"random"})


def apply_masks(model: nn.Module, ratio: float, kind: str = "weight",
                layers: list[str] | None = None, method: str = "magnitude",
                seed: int = 0) -> nn.Module:
    """Mask the `ratio` of weights `method` ranks lowest, in place; returns the model.

    Masking an already masked model removes `ratio` of the *remaining* weights (torch's
    semantics for repeated pruning), which is what iterative magnitude pruning wants.
    `seed` fixes the random method's choice without touching the global RNG.
    """
    _check_kind_and_method(kind, method)
    ratio = check_ratio(ratio)
    targets = _mask_targets(model, layers)
    if method not in RANDOM_METHODS:  # nothing drawn: no generator to seed and restore
        MASK_TYPES[kind](targets, ratio, MASK_METHODS[method])
        return model
    with torch.random.fork_rng(devices=[]):  # torch's random method draws from the global RNG
        seed_torch(seed)
        MASK_TYPES[kind](targets, ratio, MASK_METHODS[method])
    return model


def _check_kind_and_method(kind: str, method: str) -> None:
    if kind not in MASK_TYPES:
        raise ExplorerError(f"unknown mask type {kind!r}; choose one of {', '.join(MASK_TYPES)}")
    if method not in MASK_METHODS:
        raise ExplorerError(f"unknown mask method {method!r}; choose one of "
                            f"{', '.join(MASK_METHODS)}")


def _mask_targets(model: nn.Module, layers: list[str] | None) -> Targets:
    names = maskable_layers(model) if layers is None else list(layers)
    targets = []
    for name in names:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ExplorerError(f"the model has no layer {name!r}") from None
        if not isinstance(module, MASKABLE):
            raise ExplorerError(f"weight masks support Linear and Conv2d layers; {name!r} is a "
                                f"{type(module).__name__}")
        targets.append((module, "weight"))
    if not targets:
        raise ExplorerError("the model has no Linear or Conv2d layer to mask")
    return targets


def masked_series(model: nn.Module, ratios: list[float], kind: str = "weight",
                  method: str = "magnitude", seed: int = 0) -> Iterator[nn.Module]:
    """`apply_masks(copy_model(model), ratio, kind, method=method, seed=seed)` for each
    ratio in turn — the same masks — ranking the weights once for all ratios.

    A Compare sweep masks a baseline at ten ratios; selecting each ratio's weights
    anew (a k-th value, ties, per layer) was two thirds of masking a Digits MLP
    (0.9 ms a model). Magnitude ranks by |w| alone, so one stable sort per layer (per
    model for global masks) orders the weights for every ratio: a ratio's mask drops
    the first k, ties lowest index first, as `LowestScores` does. The random method
    draws per call, and a masked model's ratio applies to the weights it has left:
    both (and any mask type other than these two) go through `apply_masks` per ratio.
    So does a single ratio: its k-th values cost less than sorting every weight (ResNet-18
    at 90 %: 0.20 s against 1.3 s; the Digits CNN 1.3 ms against 2.3 ms).
    """
    _check_kind_and_method(kind, method)
    if method != "magnitude" or kind not in ("weight", "unstructured") or is_masked(model) \
            or len(ratios) < 2:
        for ratio in ratios:
            yield apply_masks(copy_model(model), ratio, kind, method=method, seed=seed)
        return
    names = maskable_layers(model)
    weights = [m.weight.detach() for m, _ in _mask_targets(model, names)]
    sizes = [w.numel() for w in weights]
    if kind == "weight":
        orders = [_stable_order(w.reshape(-1)) for w in weights]
    else:  # global: one order over all masked weights
        orders = [_stable_order(torch.cat([w.reshape(-1) for w in weights]))]
    for ratio in ratios:
        ratio = check_ratio(ratio)
        copy = copy_model(model)
        if kind == "weight":
            flat = [_drop_first(order, ratio, w) for order, w in zip(orders, weights)]
        else:
            whole = _drop_first(orders[0], ratio, weights[0], sum(sizes))
            flat = list(torch.split(whole, sizes))
        for name, w, mask in zip(names, weights, flat):
            prune.custom_from_mask(copy.get_submodule(name), "weight", mask.view_as(w))
        yield copy


def _stable_order(scores: torch.Tensor) -> torch.Tensor:
    """Positions by rising |score|, equal values in index order."""
    return torch.sort(scores.abs(), stable=True).indices


def _drop_first(order: torch.Tensor, ratio: float, like: torch.Tensor,
                size: int | None = None) -> torch.Tensor:
    """A flat mask of ones (`like`'s dtype and device, `size` or `like`'s entries) with
    the first `ratio` of `order` (torch's count) zeroed."""
    size = like.numel() if size is None else size
    k = prune._compute_nparams_toprune(ratio, size)
    prune._validate_pruning_amount(k, size)
    mask = torch.ones(size, dtype=like.dtype, device=like.device)
    mask[order[:k]] = 0
    return mask


def is_masked(model: nn.Module) -> bool:
    """True while any layer still carries a mask reparametrisation."""
    return prune.is_pruned(model)


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every mask into its weight (`prune.remove`), in place; returns the model."""
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)
    return model


def copy_model(model: nn.Module) -> nn.Module:
    """An independent copy of a model, masked or not: `copy.deepcopy`'s result, faster.

    A sweep copies models all the time (each ratio of a series, every cost probe, the
    dead model): ~155 copies on the Digits Compare benchmark, where `deepcopy` took
    0.24 ms per MLP and 0.53 ms per CNN, walking every attribute generically. Modules
    whose attributes are all plain values (ints, strings, dtypes, hook dictionaries
    holding only mask hooks and the first conv's layout hook — every model `models`
    builds, pruned or not) are copied by cloning their tensors (`_clone_module`, 0.07
    and 0.15 ms); anything else goes through `deepcopy` (`_deep_copy`).
    """
    if all(_plain_module(m) for m in model.modules()):
        with torch.no_grad():
            return _clone_module(model)
    return _deep_copy(model)


# Values a module may hold outside its parameters, buffers and children for the fast
# copy: immutable, so sharing them between copies is what deepcopy's result amounts to.
# (classes and functions are what deepcopy itself shares: `copy._deepcopy_atomic`)
_PLAIN = (int, float, bool, str, bytes, type(None), torch.dtype, torch.device, torch.Size,
          type, types.FunctionType, types.BuiltinFunctionType)
_HOOK_DICT_PREFIX = "_"
# a class defining any of these copies itself its own way: deepcopy must ask it
_COPY_PROTOCOL = {"__deepcopy__", "__copy__", "__reduce_ex__", "__reduce__", "__getstate__",
                  "__setstate__"}
# …except these, whose protocol copies the attribute dictionary as is (conv layers'
# `__setstate__` only fills in a `padding_mode` missing from old pickles)
_OWN_COPY_SAFE = (nn.Module, object, nn.modules.conv._ConvNd)


# what `_plain_module` lets pass at once: values of these exact types, and torch's own
# hook dictionaries (`_HOOKS_EMPTY`) when they hold nothing
_PLAIN_EXACT = frozenset({int, float, bool, str, type(None), torch.dtype, torch.device})
_OWN_STATE = frozenset({"_parameters", "_buffers", "_modules", "_non_persistent_buffers_set"})
_HOOKS_EMPTY = frozenset(k for k, v in nn.Linear(1, 1).__dict__.items()
                         if isinstance(v, dict) and k not in _OWN_STATE
                         and k != "_forward_pre_hooks")


def _plain_value(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    return isinstance(value, tuple) and all(_plain_value(v) for v in value)


def _plain_module(module: nn.Module) -> bool:
    """Whether `_clone_module` copies `module` exactly as `deepcopy` would: no custom
    copy protocol, no attribute that could be a shared mutable object, and no hook
    other than a mask's or a `_shareable` forward hook (hooks may close over the
    original)."""
    if not _plain_class(type(module)):
        return False
    for key, value in module.__dict__.items():
        if key in _OWN_STATE or type(value) in _PLAIN_EXACT:  # the common cases first
            continue
        if key in _HOOKS_EMPTY:
            if value and not (key == "_forward_hooks" and all(map(_shareable, value.values()))):
                return False
            continue
        if isinstance(value, dict):
            if key == "_forward_pre_hooks":
                if not all(isinstance(h, prune.BasePruningMethod) for h in value.values()):
                    return False
            elif not key.startswith(_HOOK_DICT_PREFIX) or value:
                return False
            continue
        if isinstance(value, torch.Tensor):
            if key in _mask_outputs(module):
                continue  # a mask's computed weight: recomputed on the copy
            return False
        if not _plain_value(value):
            return False
    return all(p is None or (type(p) is nn.Parameter and not vars(p))
               for p in module._parameters.values()) and \
        all(b is None or (type(b) is torch.Tensor and not vars(b))
            for b in module._buffers.values())


def _shareable(hook: Any) -> bool:
    """A hook `deepcopy` would share and that cannot refer to the original module: a
    plain function closing over nothing (the first conv's layout hook, `models`)."""
    return type(hook) is types.FunctionType and hook.__closure__ is None


@functools.lru_cache(maxsize=None)
def _plain_class(cls: type) -> bool:
    return not any(c not in _OWN_COPY_SAFE and _COPY_PROTOCOL.intersection(vars(c))
                   for c in cls.__mro__)


def _mask_outputs(module: nn.Module) -> set[str]:
    return {h._tensor_name for h in module._forward_pre_hooks.values()
            if isinstance(h, prune.BasePruningMethod)}


def _clone_module(module: nn.Module) -> nn.Module:
    """A copy of a `_plain_module` tree: the same class and attributes, its own tensors
    (called under `torch.no_grad`)."""
    new = module.__class__.__new__(module.__class__)
    state = dict(module.__dict__)
    for key, value in state.items():
        if isinstance(value, dict) and key not in ("_parameters", "_buffers", "_modules"):
            state[key] = type(value)(value)  # its own (empty, or mask) hook dictionary
    # its own mask hooks too: masking again adds to a hook's container (`prune`)
    hooks = state["_forward_pre_hooks"]
    for key, hook in hooks.items():
        hooks[key] = copy.copy(hook)
    state["_non_persistent_buffers_set"] = set(module._non_persistent_buffers_set)
    state["_parameters"] = {k: _clone_parameter(p) for k, p in module._parameters.items()}
    state["_buffers"] = {k: None if b is None else b.clone() for k, b in module._buffers.items()}
    state["_modules"] = {k: None if m is None else _clone_module(m)
                         for k, m in module._modules.items()}
    for hook in module._forward_pre_hooks.values():  # a mask's weight = orig × mask, anew
        if isinstance(hook, prune.BasePruningMethod):
            name = hook._tensor_name
            state[name] = state["_parameters"][name + "_orig"] * state["_buffers"][name + "_mask"]
    vars(new).update(state)  # not `new.__dict__ = …`: that goes through Module.__setattr__
    return new


def _clone_parameter(p: nn.Parameter | None) -> nn.Parameter | None:
    if p is None:
        return None
    new = nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad)
    if p.grad is not None:
        new.grad = p.grad.detach().clone()
    return new


def _deep_copy(model: nn.Module) -> nn.Module:
    """`copy.deepcopy` that also works on masked models.

    A masked layer's `weight` is a computed (non-leaf) tensor, which `deepcopy` refuses;
    seeding the memo with detached clones copies it without touching the original.
    """
    memo: dict[int, Any] = {}
    for module in model.modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                t = getattr(module, hook._tensor_name)
                memo[id(t)] = t.detach().clone()
    return copy.deepcopy(model, memo)


def permanent_copy(model: nn.Module) -> nn.Module:
    """A deep copy with masks folded in; the original keeps training with its masks."""
    return make_permanent(copy_model(model))


def save_masked(model: nn.Module, spec: Mapping[str, Any], path: str | os.PathLike,
                meta: Mapping[str, Any] | None = None) -> Path:
    """Save a masked model as an ordinary checkpoint (masks folded in; the model keeps them)."""
    return save_checkpoint(model, spec, path, meta)  # which folds the masks in itself


# ------------------------------------------------------------------ sparsity

@dataclass
class LayerSparsity:
    zeros: int
    total: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.total if self.total else 0.0


@dataclass
class SparsityReport:
    layers: dict[str, LayerSparsity] = field(default_factory=dict)

    @property
    def zeros(self) -> int:
        return sum(s.zeros for s in self.layers.values())

    @property
    def total(self) -> int:
        return sum(s.total for s in self.layers.values())

    @property
    def sparsity(self) -> float:
        return self.zeros / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"layers": {n: {"zeros": s.zeros, "total": s.total, "sparsity": s.sparsity}
                           for n, s in self.layers.items()},
                "zeros": self.zeros, "total": self.total, "sparsity": self.sparsity}


@torch.no_grad()
def sparsity_report(model: nn.Module) -> SparsityReport:
    """Zero weights per Linear / Conv2d layer and in total (masked or permanent alike)."""
    report = SparsityReport()
    for name in maskable_layers(model):
        w = model.get_submodule(name).weight  # the masked tensor while masks are applied
        report.layers[name] = LayerSparsity(int(w.numel() - torch.count_nonzero(w)), int(w.numel()))
    return report
