"""The four pruning types a sweep compares, one registry: what each removes and how.

* `weight`       — layer-wise masks: every Linear / Conv2d loses the same share of its
                   weights (`masks.apply_masks(kind="weight")`).
* `unstructured` — global masks: one share of all weights together (`kind="unstructured"`).
* `neuron`       — physically removes neurons of the fully connected hidden layers
                   (an MLP's hidden layers, the classifier of the CNN / VGG).
* `structured`   — physically removes conv filters together with everything that depends
                   on them (BatchNorm, consumers, concatenations, residual adds) through
                   Torch-Pruning's dependency groups.

Masks zero weights but leave every multiplication in place, so they shrink the count of
non-zero parameters and nothing else; neuron and structured pruning shrink MACs, memory
and latency. Mask types rank weights by magnitude (or at random, the control); the
structural types rank units by any criterion of `criteria.CRITERIA`.

A ratio of 1 removes everything a type can remove: no weight is left to carry the input,
so the model's output is constant (`dead_model`) — reported as such, not as an error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from .criteria import CRITERIA, CriterionOptions
from .data import Split
from .masks import MASK_METHODS, copy_model, masked_series
from .models import MLP, Spec
from .ranking import keep_for_ratio
from .surgery import PruneConfig, conv_groups, mlp_layers, prune_structural_series, score_layers

# (model, spec, ratios in [0, 1), criterion, calibration data, options, precomputed unit
# scores or None) -> one (pruned model, spec) per ratio, lazily, in order
SeriesFn = Callable[[nn.Module, Spec, Sequence[float], str, "Split | None", CriterionOptions,
                     "Mapping[str, torch.Tensor] | None"], Iterator[tuple[nn.Module, Spec]]]


@dataclass(frozen=True)
class PruningType:
    """A registered pruning type.

    `criteria`: the criteria it can rank with, in display order; `applies(model)` says
    why it cannot be used on a model (None when it can); `series` yields a pruned copy
    per ratio (the input model is never changed) — structural types share one scoring
    and one traced graph across the ratios of a criterion, which is why a sweep asks
    for all of them at once; `prune` is the one-ratio case. `unit`: the layer type a
    structural type removes units of (in a conv net, the groups rooted at one).
    """
    name: str
    title: str
    structural: bool
    criteria: tuple[str, ...]
    applies: Callable[[nn.Module], str | None]
    series: SeriesFn
    description: str = ""
    unit: type[nn.Module] | None = None

    def prune(self, model: nn.Module, spec: Spec, ratio: float, criterion: str,
              data: Split | None, options: CriterionOptions,
              scores: Mapping[str, torch.Tensor] | None = None) -> tuple[nn.Module, Spec]:
        return next(self.series(model, spec, [ratio], criterion, data, options, scores))


def hidden_linear_layers(model: nn.Module) -> list[str]:
    """Fully connected layers whose outputs are neurons (every Linear but the logits)."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return linears[:-1]


def conv_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def _needs_hidden_linear(model: nn.Module) -> str | None:
    return None if hidden_linear_layers(model) else \
        "it has no fully connected hidden layer (no neurons to remove)"


def _needs_conv(model: nn.Module) -> str | None:
    return None if conv_layers(model) else "it has no conv layer (no filters to remove)"


def _always(model: nn.Module) -> str | None:
    return None


def _masked(kind: str) -> SeriesFn:
    def series(model: nn.Module, spec: Spec, ratios: Sequence[float], criterion: str,
               data: Split | None, options: CriterionOptions,
               scores=None) -> Iterator[tuple[nn.Module, Spec]]:
        for masked in masked_series(model, list(ratios), kind, criterion, options.seed):
            yield masked, dict(spec)
    return series


def _structural(target: type[nn.Module]) -> SeriesFn:
    """Remove `ratio` of the units of every group whose root is a `target` layer.

    MLPs go through our own neuron surgery (all hidden layers); conv nets through
    Torch-Pruning groups, where groups rooted at other layer types keep all units.
    """
    def keep(model: nn.Module, spec: Spec, ratio: float) -> list[int]:
        if isinstance(model, MLP):
            return [keep_for_ratio(model.get_submodule(n).out_features, ratio)
                    for n in mlp_layers(model)]
        return [keep_for_ratio(units, ratio)
                if isinstance(model.get_submodule(root), target) else units
                for root, units in conv_groups(model, spec)]

    def series(model: nn.Module, spec: Spec, ratios: Sequence[float], criterion: str,
               data: Split | None, options: CriterionOptions,
               scores=None) -> Iterator[tuple[nn.Module, Spec]]:
        configs = [PruneConfig(criterion, keep=keep(model, spec, r), options=options,
                               scores=scores) for r in ratios]
        for result in prune_structural_series(model, spec, configs, data):
            yield result.model, result.spec
    return series


_MASK_CRITERIA = tuple(MASK_METHODS)          # magnitude, random
_UNIT_CRITERIA = tuple(CRITERIA)              # interval_adjoint, l1, …, random


def _unit_type(name: str, title: str, applies: Callable[[nn.Module], str | None],
               unit: type[nn.Module], description: str) -> PruningType:
    """A structural type removing units of `unit` layers: its series and the layers a
    sweep scores for it (`scored_layers`) follow the one layer type."""
    return PruningType(name, title, True, _UNIT_CRITERIA, applies, _structural(unit),
                       description, unit)

PRUNING_TYPES: dict[str, PruningType] = {t.name: t for t in (
    PruningType("weight", "Weight (layer-wise masks)", False, _MASK_CRITERIA, _always,
                _masked("weight"),
                "Each layer loses the same share of its smallest weights; masks, no speed-up."),
    PruningType("unstructured", "Unstructured (global masks)", False, _MASK_CRITERIA, _always,
                _masked("unstructured"),
                "The smallest weights of the whole network go; masks, no speed-up."),
    _unit_type("neuron", "Neuron (remove FC neurons)", _needs_hidden_linear, nn.Linear,
               "Neurons of the fully connected hidden layers are removed; the model shrinks."),
    _unit_type("structured", "Structured (remove conv filters)", _needs_conv, nn.Conv2d,
               "Conv filters go with their dependency groups (BN, concatenations, residual "
               "adds); the model shrinks."),
)}

# Every criterion name any type understands, in a stable display order.
ALL_CRITERIA: tuple[str, ...] = tuple(dict.fromkeys(_UNIT_CRITERIA + _MASK_CRITERIA))


def criterion_title(name: str) -> str:
    if name in CRITERIA:
        return CRITERIA[name].title
    return {"magnitude": "Weight magnitude (masks)"}.get(name, name)


def criteria_for(type_name: str, picked: list[str]) -> list[str]:
    """The picked criteria this type can rank with (magnitude for masks when none fit)."""
    kind = PRUNING_TYPES[type_name]
    fit = [c for c in picked if c in kind.criteria]
    if not fit and not kind.structural:
        fit = ["magnitude"]
    return fit


@torch.no_grad()
def dead_model(model: nn.Module) -> nn.Module:
    """What 100 % pruning leaves: a copy whose Linear / Conv weights are all zero.

    No weight carries the input any more, so the output no longer depends on it (the
    remaining biases and normalisation shifts give one constant prediction).
    """
    dead = copy_model(model)
    for m in dead.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            m.weight.zero_()
    return dead


def pruned_widths(model: nn.Module, type_name: str) -> list[int]:
    """Units per layer the type prunes (neurons or conv channels): what a picker shows."""
    layers = conv_layers(model) if type_name == "structured" else hidden_linear_layers(model)
    out = []
    for name in layers:
        m = model.get_submodule(name)
        out.append(m.out_features if isinstance(m, nn.Linear) else m.out_channels)
    return out


def scored_layers(model: nn.Module, spec: Spec, type_names: Sequence[str]) -> list[str]:
    """The layers whose unit scores the structural types among `type_names` rank on.

    A sweep scores a criterion once per baseline for all its structural types, and only
    on these: a CNN pruned by neuron only keeps its conv groups whole, and Taylor over
    its conv layers cost a backward pass through them for scores no cell used.
    """
    if isinstance(model, MLP):
        return mlp_layers(model)
    units = tuple(PRUNING_TYPES[t].unit for t in type_names if PRUNING_TYPES[t].structural)
    roots = [root for root, _ in conv_groups(model, spec)
             if isinstance(model.get_submodule(root), units)]
    return score_layers(model, spec, roots)
