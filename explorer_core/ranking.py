"""Which units to keep, given one score per unit (higher = keep).

Ranking is separate from scoring (criteria) and from surgery so every criterion and
every model family share one set of rules:

* per-layer top-N (the thesis' default; N comes from a retention schedule),
* ratio-based: each layer keeps `max(1, round((1 - ratio) * n))` units (Python's
  `round`, half to even, as in retain.txt),
* global: scores are normalised per layer, all units are ranked together and one
  budget is shared — with a floor per layer so no layer is ever emptied.

Why normalise for global ranking: raw scores of different layers live on different
scales (an l1 norm over 784 inputs vs over 64), so an unnormalised global ranking
would simply empty the layer with the smallest fan-in. The default `"max"` divides a
layer's scores by their largest absolute value, so every layer's best unit scores 1
and the ranking compares units *relative to their own layer*; `"l2"` divides by the
layer's L2 norm, which additionally favours layers whose importance is concentrated
in few units (wide layers with many similar units get smaller normalised scores).

Ties are broken deterministically: within a layer the lower index wins; across
layers (global) the earlier layer wins, then the lower index. Kept indices are
returned sorted ascending so surgery preserves the units' original order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

from .errors import ExplorerError

Scores = Mapping[str, torch.Tensor]
KeepIndices = dict[str, torch.Tensor]


def _max_abs(s: torch.Tensor) -> torch.Tensor:
    m = s.abs().max()
    return s / m if m > 0 else s


def _l2(s: torch.Tensor) -> torch.Tensor:
    n = s.norm(p=2)
    return s / n if n > 0 else s


NORMALISERS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "max": _max_abs,
    "l2": _l2,
    "none": lambda s: s,
}


# ------------------------------------------------------------------ validation

def check_ratio(ratio: float) -> float:
    """A pruning ratio is the fraction removed: 0 keeps all, 1 would empty the layer."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or math.isnan(ratio) \
            or not 0 <= ratio < 1:
        raise ExplorerError(f"pruning ratio must be in [0, 1) (the fraction of units removed), "
                            f"got {ratio!r}")
    return float(ratio)


def check_keep(name: str, n: int, keep: int) -> int:
    if isinstance(keep, bool) or not isinstance(keep, int):
        raise ExplorerError(f"layer {name}: keep count must be a whole number, got {keep!r}")
    if keep < 1:
        raise ExplorerError(f"layer {name}: keep count must be ≥ 1 (a layer cannot be emptied), "
                            f"got {keep}")
    if keep > n:
        raise ExplorerError(f"layer {name} has {n} units; cannot keep {keep}")
    return keep


def _check_scores(scores: Scores) -> dict[str, torch.Tensor]:
    if not scores:
        raise ExplorerError("no layers to rank: the score dictionary is empty")
    out = {}
    for name, s in scores.items():
        s = torch.as_tensor(s).detach().to("cpu", torch.float64).flatten()
        if s.numel() == 0:
            raise ExplorerError(f"layer {name} has no units to rank")
        if torch.isnan(s).any():
            raise ExplorerError(f"scores of layer {name} contain NaN; the criterion failed "
                                "on this model or data")
        out[name] = s
    return out


def keep_for_ratio(n: int, ratio: float) -> int:
    """Units a layer of width n keeps at `ratio`: round((1 - ratio)·n), at least 1."""
    return max(1, min(n, round((1.0 - check_ratio(ratio)) * n)))


def keep_counts(widths: Mapping[str, int], keep: Sequence[int] | Mapping[str, int] | None = None,
                ratio: float | None = None) -> dict[str, int]:
    """Per-layer keep counts from explicit counts (list in layer order, or by name) or a ratio."""
    if (keep is None) == (ratio is None):
        raise ExplorerError("give either keep counts or a pruning ratio (exactly one)")
    names = list(widths)
    if ratio is not None:
        return {name: keep_for_ratio(widths[name], ratio) for name in names}
    if isinstance(keep, Mapping):
        unknown = [k for k in keep if k not in widths]
        if unknown:
            raise ExplorerError(f"unknown layer {unknown[0]!r}; layers: {', '.join(names)}")
        counts = {name: int(widths[name]) for name in names}
        counts.update({k: check_keep(k, widths[k], v) for k, v in keep.items()})
        return counts
    keep = list(keep)
    if len(keep) != len(names):
        raise ExplorerError(f"got {len(keep)} keep count(s) for {len(names)} prunable layer(s) "
                            f"({', '.join(names)})")
    return {name: check_keep(name, widths[name], k) for name, k in zip(names, keep)}


# ------------------------------------------------------------------ selection

def top_n(scores: torch.Tensor, n: int, name: str = "layer") -> torch.Tensor:
    """Indices (ascending) of the n highest scores; ties keep the lower index."""
    s = _check_scores({name: scores})[name]
    check_keep(name, s.numel(), n)
    order = torch.sort(s, descending=True, stable=True).indices[:n]
    return torch.sort(order).values


def select_per_layer(scores: Scores, keep: Mapping[str, int]) -> KeepIndices:
    """Top-`keep[name]` units of each layer; layers missing from `keep` keep everything."""
    checked = _check_scores(scores)
    unknown = [k for k in keep if k not in checked]
    if unknown:
        raise ExplorerError(f"unknown layer {unknown[0]!r}; layers with scores: "
                            f"{', '.join(checked)}")
    return {name: top_n(s, keep.get(name, s.numel()), name) for name, s in checked.items()}


def select_by_ratio(scores: Scores, ratio: float) -> KeepIndices:
    """Each layer keeps round((1 - ratio)·n) of its best units, at least 1."""
    checked = _check_scores(scores)
    return {name: top_n(s, keep_for_ratio(s.numel(), ratio), name) for name, s in checked.items()}


def select_global(scores: Scores, total: int, normaliser: str = "max",
                  min_fraction: float = 0.0) -> KeepIndices:
    """Keep the `total` best units over all layers, ranked on per-layer-normalised scores.

    Every layer first reserves its own best `max(1, ceil(min_fraction·n))` units (the
    cap that stops a layer from being emptied); the rest of the budget goes to the
    highest normalised scores anywhere. If the floors alone exceed `total`, the floors
    win (the result then keeps slightly more than asked).
    """
    if normaliser not in NORMALISERS:
        raise ExplorerError(f"unknown normaliser {normaliser!r}; choose one of "
                            f"{', '.join(NORMALISERS)}")
    if not (isinstance(min_fraction, (int, float)) and 0 <= min_fraction <= 1):
        raise ExplorerError(f"minimum kept fraction must be in [0, 1], got {min_fraction!r}")
    checked = _check_scores(scores)
    names = list(checked)
    widths = [checked[n].numel() for n in names]
    n_total = sum(widths)
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise ExplorerError(f"global keep budget must be a whole number ≥ 1, got {total!r}")
    if total > n_total:
        raise ExplorerError(f"the layers have {n_total} units together; cannot keep {total}")

    normed = torch.cat([NORMALISERS[normaliser](checked[n]) for n in names])
    reserved = torch.zeros(n_total, dtype=torch.bool)
    offsets = [0]
    for name, w in zip(names, widths):
        floor = min(w, max(1, math.ceil(min_fraction * w)))
        best = torch.sort(checked[name], descending=True, stable=True).indices[:floor]
        reserved[offsets[-1] + best] = True
        offsets.append(offsets[-1] + w)
    remaining = max(0, total - int(reserved.sum()))
    # Stable descending sort of the concatenation: ties resolve by layer order, then index.
    order = torch.sort(normed, descending=True, stable=True).indices
    candidates = order[~reserved[order]][:remaining]
    chosen = reserved.clone()
    chosen[candidates] = True
    return {name: torch.nonzero(chosen[offsets[i]:offsets[i + 1]]).flatten()
            for i, name in enumerate(names)}


def global_budget(widths: Mapping[str, int], keep: Sequence[int] | Mapping[str, int] | None = None,
                  ratio: float | None = None) -> int:
    """Total units kept by global ranking: the sum of the per-layer counts it replaces."""
    if ratio is not None and keep is None:
        return max(1, round((1.0 - check_ratio(ratio)) * sum(widths.values())))
    return sum(keep_counts(widths, keep, ratio).values())


@dataclass(frozen=True)
class RankingConfig:
    """How to turn scores into kept indices.

    `keep` (per-layer counts, a list in layer order or a dict by name) or `ratio`
    (fraction removed), exactly one. With `global_ranking` the same total budget is
    shared across layers (see `select_global`).
    """
    keep: Sequence[int] | Mapping[str, int] | None = None
    ratio: float | None = None
    global_ranking: bool = False
    normaliser: str = "max"
    min_fraction: float = 0.0


def choose(scores: Scores, config: RankingConfig) -> KeepIndices:
    """Kept indices per layer (sorted ascending) for `scores` under `config`."""
    checked = _check_scores(scores)
    widths = {name: s.numel() for name, s in checked.items()}
    if config.global_ranking:
        total = global_budget(widths, config.keep, config.ratio)
        return select_global(checked, total, config.normaliser, config.min_fraction)
    counts = keep_counts(widths, config.keep, config.ratio)
    return select_per_layer(checked, counts)
