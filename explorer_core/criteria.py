"""Significance criteria: one score per unit (neuron / output channel), higher = keep.

Every criterion is one small function with the same signature, registered in `CRITERIA`,
so pages, the CLI and Torch-Pruning's importance hook all call `compute_scores` and never
branch on the criterion's name. DESIGN.md §4 says what each criterion computes.

A "unit" is a row of a Linear weight (one neuron) or one output filter of a Conv
(one channel). All scores come from batched tensor ops over whole layers; the only Python
loops are over layers (or calibration batches).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .data import Split
from .errors import ExplorerError
from .models import prunable_layers

Scores = dict[str, torch.Tensor]

UNIT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class CriterionOptions:
    """Knobs shared by the criteria; each criterion reads only the ones it needs."""
    seed: int = 0
    max_samples: int = 2048         # calibration samples used by data-driven criteria
    batch_size: int = 256
    eps: float | None = None        # IASA: per-sample ε-boxes [x-ε, x+ε] instead of the whole-domain box
    per_class: bool = False         # IASA: seed one class at a time, score = max over classes
    kmeans_k: int | None = None     # clusters per layer (default max(2, n_units // 4))
    contribution_normalise: bool = False  # contribution: share of each receiving neuron's input


ScoreFn = Callable[[nn.Module, list[str], "Split | None", CriterionOptions], Scores]


@dataclass(frozen=True)
class Criterion:
    """A registered criterion.

    `fn(model, layers, data, options)` returns `{layer: scores}` for all requested layers
    at once, because data-driven criteria (IASA, Taylor) score every layer from one pass.
    `structural_only`: the scores rank whole units, not single weights, so the criterion
    cannot drive unstructured weight masks (those use weight magnitude).
    """
    name: str
    title: str
    needs_data: bool
    fn: ScoreFn
    structural_only: bool = True
    description: str = ""


# ------------------------------------------------------------------ helpers

def unit_module(model: nn.Module, name: str, criterion: str) -> nn.Module:
    """The layer `name`, checked to be a layer whose output units can be scored."""
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise ExplorerError(f"criterion {criterion!r}: the model has no layer {name!r}") from None
    if not isinstance(module, UNIT_LAYERS):
        raise ExplorerError(f"criterion {criterion!r} does not support layer {name!r} "
                            f"({type(module).__name__}): only Linear and Conv layers have "
                            f"prunable units")
    return module


def unit_weights(module: nn.Module) -> torch.Tensor:
    """(n_units, fan_in) matrix: one row per neuron (Linear row) or channel (Conv filter)."""
    w = module.weight.detach()
    return w.reshape(w.shape[0], -1)


def _layer_seed(seed: int, layer: str) -> int:
    """A per-layer seed that does not depend on which other layers were asked for."""
    return (int(seed) * 1_000_003 + zlib.crc32(layer.encode())) % (2 ** 63)


# ------------------------------------------------------------------ weight-only criteria

def l1_scores(model: nn.Module, layers: list[str], data: Split | None,
              options: CriterionOptions) -> Scores:
    """L1 norm of each unit's incoming weights (Li et al. 2017 filter pruning)."""
    return {n: unit_weights(model.get_submodule(n)).abs().sum(1).float() for n in layers}


def l2_scores(model: nn.Module, layers: list[str], data: Split | None,
              options: CriterionOptions) -> Scores:
    """L2 norm of each unit's incoming weights."""
    return {n: torch.linalg.vector_norm(unit_weights(model.get_submodule(n)).float(), dim=1)
            for n in layers}


def random_scores(model: nn.Module, layers: list[str], data: Split | None,
                  options: CriterionOptions) -> Scores:
    """Seeded uniform scores: the baseline every criterion must beat."""
    out: Scores = {}
    for n in layers:
        units = model.get_submodule(n).weight.shape[0]
        g = torch.Generator().manual_seed(_layer_seed(options.seed, n))
        out[n] = torch.rand(units, generator=g)
    return out


# ------------------------------------------------------------------ registry

CRITERIA: dict[str, Criterion] = {
    "l1": Criterion("l1", "L1 norm of weights", False, l1_scores,
                    description="Sum of |w| over each unit's incoming weights."),
    "l2": Criterion("l2", "L2 norm of weights", False, l2_scores,
                    description="Euclidean norm of each unit's incoming weights."),
    "random": Criterion("random", "Random (seeded)", False, random_scores,
                        description="Uniform random scores; same seed, same scores."),
}


def get_criterion(name: str) -> Criterion:
    try:
        return CRITERIA[name]
    except KeyError:
        raise ExplorerError(f"unknown criterion {name!r}; choose one of "
                            f"{', '.join(CRITERIA)}") from None


def compute_scores(model: nn.Module, criterion: str, data: Split | None = None,
                   layers: list[str] | None = None,
                   options: CriterionOptions | None = None) -> dict[str, torch.Tensor]:
    """One 1-D float tensor per layer (default: `prunable_layers(model)`), higher = keep.

    The length of each tensor is the layer's out_features / out_channels. Scores live on
    the CPU so callers can rank and save them without caring where the model runs.
    Raises ExplorerError for an unknown criterion, a data-driven criterion called without
    data, and layers whose units cannot be scored (naming the layer).
    """
    crit = get_criterion(criterion)
    options = options or CriterionOptions()
    if crit.needs_data and (data is None or len(data) == 0):
        raise ExplorerError(f"criterion {criterion!r} needs calibration data; none was given")
    layers = list(prunable_layers(model) if layers is None else layers)
    for name in layers:
        unit_module(model, name, criterion)
    scores = crit.fn(model, layers, data, options)
    return {n: scores[n].detach().float().cpu() for n in layers}
