"""Typed settings: a config dataclass built from JSON only from values of its fields' types.

Why: configs come from JSON files (`--config`, and the config.json of every run and
sweep, read back on resume) and went into the dataclasses unchecked: `"retrain": "no"`
retrained (a non-empty string is truthy), `"iterations": 2.5` became 2, and a list
where a name goes ended in a TypeError traceback. The annotations already say what
each value must be, so they are the one place the types are written: `from_json`
checks every value against its field's annotation, `check_fields` does the same for a
config built in code (whose config.json would otherwise not read back as it was
written). JSON has few types, so few annotations are understood (`_PLAIN`, `_GENERIC`);
another one is a programming error, raised as TypeError when its class is first used.

Also the limits the config kinds share (`MAX_SEED`, `MAX_THREADS`, `MAX_EPOCHS`,
`MAX_PARAMETERS`).
"""
from __future__ import annotations

import dataclasses
import functools
import numbers
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Collection, Mapping, TypeVar

from .errors import ExplorerError

T = TypeVar("T")

# Seeds are kept to 31 bits: a 100-digit seed passed every check and failed mid-run in a
# random generator; 2**31 - 1 is the largest seed every library here takes (and the
# pages' seed inputs allow).
MAX_SEED = 2**31 - 1

# CPU threads for torch are kept to a fixed cap, not to this machine's core count: a
# config.json is read back (and validated) on other machines, where a run made on a
# big one must still resume. 1 024 is more cores than the machines this runs on have;
# 100 000 made OpenMP start that many threads and the run died with a traceback
# (an ImportError once memory ran out) and a "failed" folder.
MAX_THREADS = 1024

# Epochs of any one training (dense, fine-tuning, retraining, a train-time run): the
# pages allowed up to 1 000 or 10 000, the CLI anything — `compare --dense-epochs
# 100000000` planned a 15 929-minute sweep. 10 000 is past any run this lab is for.
MAX_EPOCHS = 10_000

# Learning rate and weight decay of any training, the pages' range for every entry point.
# No optimiser here trains at a rate past 10, and past float32's largest number (3.4e38)
# Adam's update overflowed: `--lr 1e39` ended prune, compare and train-time in a
# RuntimeError traceback. Below 1e-6 a run of this lab's length does not move the
# weights. Weight decay past 1 outweighs the gradient itself (and at 1e39 overflowed).
MIN_LR, MAX_LR = 1e-6, 10.0
MAX_WEIGHT_DECAY = 1.0

# Parameters of any one model built from a spec (every model kind: Iterative, Compare,
# train-time, a checkpoint's sidecar). Hidden widths within retention's 999 999 still
# made models that cannot exist: `--hidden 200000 100000` asked for 20 G parameters and
# failed inside torch with an 80 GB allocation traceback (and a "failed" run folder).
# 100 M parameters are 400 MB of float32 weights, ~2 GB to train with Adam (weights,
# gradients, two moments, the kept best epoch) — within the 24 GB build machines with
# a sweep's pruned copies beside it. The largest built-in model, VGG16-BN, has 15.0 M
# on CIFAR-10 (15.5 M even with 1 000 classes); ResNet-18 11.2 M, DenseNet-121 7.0 M,
# MobileNetV2 2.2 M; the thesis' 784-256-64-10 MLP 0.2 M. MLPs up to e.g.
# 3072-8192-8192-100 (92 M) still fit; anything larger would train for hours per epoch
# on the CPUs this lab runs on.
MAX_PARAMETERS = 100_000_000


@dataclass(frozen=True)
class _Type:
    """What one annotation accepts, and how a message names it (alone / in a list)."""
    one: str
    many: str
    accepts: Callable[[Any], bool]
    nested: type | None = None  # a dataclass field: its JSON object is built with from_json


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or float, not a bool (JSON's true is no number of epochs)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_PLAIN: dict[Any, _Type] = {
    bool: _Type("true or false", "true / false values", lambda v: isinstance(v, bool)),
    int: _Type("a whole number", "whole numbers", _is_int),
    float: _Type("a number", "numbers", is_number),
    str: _Type("a string", "strings", lambda v: isinstance(v, str)),
    dict: _Type("an object", "objects", lambda v: isinstance(v, dict)),
    list: _Type("a list", "lists", lambda v: isinstance(v, list)),
    type(None): _Type("null", "nulls", lambda v: v is None),
    Any: _Type("any value", "values", lambda v: True),
}


def _list_of(args: tuple) -> _Type:
    item = _compile(args[0])
    return _Type(f"a list of {item.many}", f"lists of {item.many}",
                 lambda v: isinstance(v, list) and all(item.accepts(x) for x in v))


def _dict_of(args: tuple) -> _Type:
    key, value = _compile(args[0]), _compile(args[1])
    return _Type(f"an object of {value.many}", f"objects of {value.many}",
                 lambda v: isinstance(v, dict) and all(key.accepts(k) and value.accepts(x)
                                                       for k, x in v.items()))


def _union(args: tuple) -> _Type:
    options = [_compile(a) for a in args]
    return _Type(" or ".join(o.one for o in options), " or ".join(o.many for o in options),
                 lambda v: any(o.accepts(v) for o in options))


_GENERIC: dict[Any, Callable[[tuple], _Type]] = {
    list: _list_of,
    dict: _dict_of,
    typing.Union: _union,        # Optional[X], Union[X, Y]
    types.UnionType: _union,     # X | None
}


def _compile(annotation: Any) -> _Type:
    if annotation in _PLAIN:
        return _PLAIN[annotation]
    origin = typing.get_origin(annotation)
    if origin in _GENERIC:
        return _GENERIC[origin](typing.get_args(annotation))
    if dataclasses.is_dataclass(annotation):
        return _Type("an object", "objects", lambda v: isinstance(v, Mapping), annotation)
    raise TypeError(f"settings: no JSON check for the annotation {annotation!r}")


@functools.cache
def field_types(cls: type) -> dict[str, _Type]:
    """`cls`'s init fields and what each accepts, resolved once per class: configs are
    read for every run a page lists, so the annotations are not evaluated each time."""
    hints = typing.get_type_hints(cls)
    return {f.name: _compile(hints[f.name]) for f in dataclasses.fields(cls) if f.init}


def counted(n: int | float, noun: str) -> str:
    """'1 epoch', '3 epochs', '1,200 cells', '1.5 points': a count and its noun agreeing,
    written once here instead of an inline `'' if n == 1 else 's'` in every message."""
    number = f"{n:,}" if isinstance(n, numbers.Integral) else f"{n:g}"
    return f"{number} {noun}{'' if n == 1 else 's'}"


def shown(value: Any, limit: int = 60) -> str:
    """`value` for a one-line message: its repr, cut short (a 100-digit seed, a long list)."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's 4 300-digit str limit
        return "a number of thousands of digits"
    return text if len(text) <= limit else text[:limit - 1] + "…"


def first_edited(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> str | None:
    """The first setting `recorded` (what a result was computed with) holds with another
    value than `now` (config.json's); settings `now` no longer has do not count."""
    return next((k for k, v in recorded.items() if k in now and now[k] != v), None)


def edited_after_start(record: str, setting: str, now: str) -> ExplorerError:
    """The one line a resume gives when config.json was edited since a result recorded
    other settings (`record` says which and what)."""
    return ExplorerError(f"config.json was edited after the run began: {record}, but "
                         f"config.json's {setting} is now {now}; put it back to resume, or "
                         f"start a new run with these settings")


def _wrong(what: str, name: str, kind: _Type, value: Any) -> ExplorerError:
    return ExplorerError(f"{what} setting {name} must be {kind.one}, got {shown(value)}")


def _with_guess(prefix: str, key: str, fields: Collection[str]) -> str:
    """An unknown key, with the setting it most likely meant: "fraction" was refused
    without a word that train-time calls it "prune_fraction"."""
    import difflib

    guesses = " or ".join(prefix + g for g in difflib.get_close_matches(key, list(fields),
                                                                      n=2, cutoff=0.6))
    return f"{prefix}{key}" + (f" (did you mean {guesses}?)" if guesses else "")


def from_json(cls: type[T], mapping: Any, what: str, *, ignore: Collection[str] = (),
              null_is_default: Collection[str] = (), prefix: str = "") -> T:
    """`cls` built from a JSON object whose every value has its field's type.

    `what` names the config in messages ("run" → "run setting seed must be …").
    Keys in `ignore` are bookkeeping written beside the settings (versions, creation
    time) and are dropped; any other key that is not a field is refused. A null for
    a field in `null_is_default` means "not given" (the field's default). `prefix`
    names a nested object's settings ("schedule." → "schedule.q").
    """
    if not isinstance(mapping, Mapping):
        raise ExplorerError(f"a {what} config must be a JSON object" if not prefix else
                            f"{what} setting {prefix.rstrip('.')} must be an object, "
                            f"got {shown(mapping)}")
    fields = field_types(cls)
    unknown = [k for k in mapping if k not in fields and k not in ignore]
    if unknown:
        raise ExplorerError(f"unknown {what} setting(s): " + ", ".join(
            _with_guess(prefix, str(k), fields) for k in sorted(unknown, key=str)))
    values = {}
    for name, value in mapping.items():
        kind = fields.get(name)
        if kind is None or (value is None and name in null_is_default):
            continue
        if not kind.accepts(value):
            raise _wrong(what, prefix + name, kind, value)
        values[name] = (value if kind.nested is None else
                        from_json(kind.nested, value, what, prefix=f"{prefix}{name}."))
    return cls(**values)


def check_fields(config: Any, what: str, prefix: str = "") -> None:
    """Refuse a config built in code whose values are not of their fields' types: its
    config.json would not read back as written (`"seed": 1.0`, a tuple, `name=None`
    written as null and read back as the default)."""
    for name, kind in field_types(type(config)).items():
        value = getattr(config, name)
        if kind.nested is not None and isinstance(value, kind.nested):
            check_fields(value, what, f"{prefix}{name}.")
        elif kind.nested is not None or not kind.accepts(value):
            raise _wrong(what, prefix + name, kind, value)


def check_seed(value: int, what: str) -> int:
    """A seed within 0 … MAX_SEED (the type is checked by the annotations)."""
    if not 0 <= value <= MAX_SEED:
        raise ExplorerError(f"{what} must be within 0 … {MAX_SEED:,}, got {shown(value)}")
    return value


def check_epochs(value: Any, what: str, minimum: int, note: str = "") -> int:
    """An epoch count: a whole number within `minimum` … MAX_EPOCHS (`note` says what the
    minimum means, e.g. " (one-shot)"); the one message names the range."""
    if not _is_int(value) or not minimum <= value <= MAX_EPOCHS:
        raise ExplorerError(f"{what} must be a whole number from {minimum}{note} to "
                            f"{MAX_EPOCHS:,}, got {shown(value)}")
    return value


def memory_text(nbytes: int) -> str:
    """A byte count as a person reads it: '400 MB', '80.1 GB'."""
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if nbytes >= size:
            return f"{nbytes / size:.3g} {unit}"
    return f"{nbytes} bytes"


def check_parameters(count: int, what: str) -> int:
    """A model's parameter count within MAX_PARAMETERS; `what` names the model in the
    one-line message ("the MLP 64-200000-100000-10"), which says what it would need."""
    if count > MAX_PARAMETERS:
        raise ExplorerError(f"{what} would have {count:,} parameters ({memory_text(4 * count)} "
                            f"of float32 weights, several times that to train); at most "
                            f"{MAX_PARAMETERS:,} ({memory_text(4 * MAX_PARAMETERS)}): use "
                            f"narrower layers")
    return count


def check_threads(value: Any, what: str, minimum: int, note: str = "") -> int:
    """A thread count: a whole number within `minimum` … MAX_THREADS (`note` says what
    the minimum means, e.g. " (automatic)"); the one message names the range."""
    if not _is_int(value) or not minimum <= value <= MAX_THREADS:
        raise ExplorerError(f"{what} must be a whole number from {minimum}{note} to "
                            f"{MAX_THREADS:,}, got {shown(value)}")
    return value


def check_lr(value: Any, what: str = "learning rate") -> float:
    """A learning rate: a number within MIN_LR … MAX_LR; the one message names the range."""
    if not is_number(value) or not MIN_LR <= value <= MAX_LR:
        raise ExplorerError(f"{what} must be a number from {MIN_LR:g} to {MAX_LR:g}, got "
                            f"{shown(value)}")
    return float(value)


def check_weight_decay(value: Any, what: str = "weight decay") -> float:
    """A weight decay: a number within 0 … MAX_WEIGHT_DECAY."""
    if not is_number(value) or not 0 <= value <= MAX_WEIGHT_DECAY:
        raise ExplorerError(f"{what} must be a number from 0 to {MAX_WEIGHT_DECAY:g}, got "
                            f"{shown(value)}")
    return float(value)
