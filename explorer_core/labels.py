"""Short display names of the ids a sweep records (model, dataset, pruning type, criterion).

Files keep the ids (`cnn`, `fashion_mnist`, `interval_adjoint`): scripts and pandas read
them. People read the names: the registries' titles carry a parenthesised gloss that fits
a picker ("CNN (LeNet-style)") but not a chart panel, so a short name is the title
before its gloss. Unknown ids (a sweep written by a later version) are shown as they are.
"""
from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from .criteria import CRITERIA
from .data import DATASETS
from .models import ARCH_TITLES
from .pruning_types import PRUNING_TYPES, criterion_title


def _short(title: str) -> str:
    return title.split(" (")[0]


def model_name(arch: str) -> str:
    """'cnn' → 'CNN'."""
    return _short(ARCH_TITLES.get(arch, str(arch)))


def dataset_name(name: str) -> str:
    """'fashion_mnist' → 'Fashion-MNIST', 'digits' → 'Digits'."""
    return _short(DATASETS[name].title) if name in DATASETS else str(name)


def type_name(kind: str) -> str:
    """'neuron' → 'Neuron'."""
    return _short(PRUNING_TYPES[kind].title) if kind in PRUNING_TYPES else str(kind)


def criterion_name(criterion: str) -> str:
    """'interval_adjoint' → 'Interval adjoint', 'magnitude' → 'Weight magnitude'."""
    if criterion in CRITERIA or criterion == "magnitude":
        return _short(criterion_title(criterion))
    return str(criterion)


# column of a results or summary frame -> its display name
NAMERS: dict[str, Callable[[str], str]] = {
    "model": model_name, "dataset": dataset_name, "type": type_name,
    "criterion": criterion_name}


def named(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` with the id columns it has (`NAMERS`) shown by name."""
    out = frame.copy()
    for column, namer in NAMERS.items():
        if column in out:
            out[column] = out[column].map(lambda v: namer(v) if isinstance(v, str) else v)
    return out


def format_seconds(s: float | None) -> str:
    """'42 s', '3 min 5 s', '6 h 14 min', or '—' when unknown (elapsed / remaining time of
    a run, a sweep's estimate: "≈ 373 min 42 s" was read as minutes to count)."""
    if s is None:
        return "—"
    if s >= 3600:
        return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"
    return f"{int(s // 60)} min {int(s % 60)} s" if s >= 60 else f"{s:.0f} s"
