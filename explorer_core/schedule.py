"""Retention schedules: how many neurons each hidden layer keeps at each iteration.

The thesis' rule is geometric, `N_t = max(1, round(h * q**t))`; linear and cubic
(Zhu & Gupta 2017) ramps are offered as alternatives that reach one neuron at the
last iteration. `retain.txt` (DESIGN §3) is the exchange format with the pruning loop.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import ExplorerError, os_reason
from .fileio import atomic_write_text, parse_table, table_text
from .settings import counted

# A keep fraction for iteration t of T (t = 0 keeps everything).
KeepFraction = Callable[[int, int, float], float]


def _geometric(t: int, iterations: int, q: float) -> float:
    return q ** t


def _linear(t: int, iterations: int, q: float) -> float:
    last = max(iterations - 1, 1)
    return 1.0 - min(t, last) / last


def _cubic(t: int, iterations: int, q: float) -> float:
    """Zhu & Gupta (2017): sparsity s_t = s_f * (1 - (1 - t/T)^3) with s_f = 1."""
    last = max(iterations - 1, 1)
    progress = min(t, last) / last
    return (1.0 - progress) ** 3


# retain.txt writes numbers with %g (DESIGN §3): six significant digits, so wider layers
# would be written rounded (1234567 → 1.23457e+06) and read back wrong.
MAX_WIDTH = 999_999
# A geometric schedule with q = 0.999 takes ~5 500 iterations to bring 256 neurons to one.
MAX_ITERATIONS = 10_000

SCHEDULES: dict[str, KeepFraction] = {
    "geometric": _geometric,
    "linear": _linear,
    "cubic": _cubic,
}
# The schedules whose keep fraction depends on q. The ramps ignore it, so their q is not
# checked: q = 5 left over from typing refused a linear schedule that never reads it.
USES_Q = frozenset({"geometric"})


def refuse_unused_q(kind: Any, what: str = "--q") -> None:
    """Refuse a q given (`what` names it) for a schedule that never reads it: `--q 0.5
    --kind linear` wrote the linear table as if q had not been typed. Any other kind (a
    config file's typo, a number) is left to `ScheduleConfig.validate`, which names the
    choices."""
    if isinstance(kind, str) and kind in SCHEDULES and kind not in USES_Q:
        raise ExplorerError(f"{what} sets the geometric schedule's keep factor; the {kind} "
                            f"schedule ramps to 1 neuron without it: drop {what}")


@dataclass(frozen=True)
class ScheduleConfig:
    widths: tuple[int, ...] = (256, 64)
    q: float = 0.8
    iterations: int = 31
    kind: str = "geometric"

    def validate(self) -> "ScheduleConfig":
        if self.kind not in SCHEDULES:
            raise ExplorerError(
                f"unknown schedule kind {self.kind!r}; choose one of {', '.join(SCHEDULES)}")
        if not self.widths:
            raise ExplorerError("give at least one hidden-layer width")
        for w in self.widths:
            if isinstance(w, bool) or not isinstance(w, int) or w < 1:
                raise ExplorerError(f"hidden widths must be whole numbers ≥ 1, got {w!r}")
            if w > MAX_WIDTH:
                raise ExplorerError(f"hidden widths must be at most {MAX_WIDTH:,} (retain.txt "
                                    f"stores six significant digits), got {w:,}")
        q = self.q
        if self.kind in USES_Q and (isinstance(q, bool) or not isinstance(q, (int, float))
                                    or math.isnan(q) or not 0 < q < 1):
            raise ExplorerError(f"q must lie strictly between 0 and 1, got {self.q!r}")
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) \
                or not 1 <= self.iterations <= MAX_ITERATIONS:
            raise ExplorerError(f"iterations must be a whole number from 1 to "
                                f"{MAX_ITERATIONS:,}, got {self.iterations!r}")
        return self

    def describe(self) -> str:
        """The schedule in one line ("geometric, widths 256, 64, q = 0.8, 31 iterations"),
        for saying which schedule is in force where the inputs on screen are not it (a
        refused q left the last valid schedule handed to the Iterative page unsaid). q is
        named only for a schedule that uses it."""
        q = f", q = {self.q:g}" if self.kind in USES_Q else ""
        return (f"{self.kind}, widths {', '.join(map(str, self.widths))}{q}, "
                f"{counted(self.iterations, 'iteration')}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d


@dataclass
class RetentionTable:
    """Rows of retain.txt: `widths[i]` are the neurons kept per layer at iteration i.

    `steps[i]` is the schedule step t the rule was evaluated at for row i (only for a
    table made by `retention_table`; not part of retain.txt). It differs from i once a
    step is skipped because it repeats the previous widths: iteration i is the i-th
    pruning iteration actually run, t counts the rule's steps.
    """
    dense: tuple[int, ...]
    widths: list[tuple[int, ...]] = field(default_factory=list)
    steps: list[int] = field(default_factory=list, compare=False)

    @property
    def columns(self) -> list[str]:
        return (["Iteration"] + [f"h{i + 1}NodesRetained" for i in range(len(self.dense))]
                + ["perNodesRetained"])

    def percent(self, row: tuple[int, ...]) -> float:
        return 100.0 * sum(row) / sum(self.dense)

    def rows(self) -> list[list[float]]:
        return [[i, *w, self.percent(w)] for i, w in enumerate(self.widths)]

    def to_text(self) -> str:
        return table_text(self.columns, self.rows())

    def records(self) -> list[dict]:
        """One dict per row with the retain.txt column names (for tables and charts)."""
        return [dict(zip(self.columns, r)) for r in self.rows()]

    def __len__(self) -> int:
        return len(self.widths)

    def iterations_text(self) -> str:
        """How many iterations the table holds, counted as the thesis does: the dense
        row is iteration 0, so 5 rows are '5 iterations (0–4, 0 = dense model)'.
        The page and the CLI both say it this way."""
        n = len(self)
        if n <= 1:
            return f"{n} iteration (0 = dense model only)"
        return f"{n} iterations (0–{n - 1}, 0 = dense model)"


def retention_table(config: ScheduleConfig) -> RetentionTable:
    """Widths per iteration; duplicates skipped, ending at the first all-ones row.

    Iterations are renumbered consecutively after skipping (DESIGN §3: one row per
    iteration, and a step that prunes nothing is no iteration), because the pruning loop
    uses the row number as the iteration folder (`<i>/prune_w_retrain`). The step t each
    row was computed at is kept in `steps`, so a page can show both.
    """
    config.validate()
    keep = SCHEDULES[config.kind]
    table = RetentionTable(dense=tuple(config.widths))
    for t in range(config.iterations):
        frac = keep(t, config.iterations, config.q)
        row = tuple(max(1, round(h * frac)) for h in config.widths)
        if table.widths and row == table.widths[-1]:
            continue
        table.widths.append(row)
        table.steps.append(t)
        if all(n == 1 for n in row):
            break
    return table


# Rows a chart on a page draws at most: about one per pixel of a chart half a 1400-px
# window wide. Past that a browser spent seconds drawing (10 000 rows of three layers:
# 30 000 points) what it could not show apart, with only Streamlit's running icon.
CHART_ROWS = 500


def drawn_rows(count: int, limit: int = CHART_ROWS) -> list[int]:
    """Which of `count` table rows a page chart draws: all of them up to `limit`, else
    `limit` rows evenly spaced from the first to the last (both always drawn, so the
    dense model and the end of the schedule are on the chart)."""
    if count <= limit:
        return list(range(count))
    if limit < 2:
        raise ValueError(f"a chart of {count:,} rows needs to draw at least 2, not {limit}")
    step = (count - 1) / (limit - 1)
    return sorted({round(i * step) for i in range(limit)})


def write_retain(path: str | Path, table: RetentionTable) -> Path:
    return atomic_write_text(path, table.to_text())


def read_retain(path: str | Path) -> RetentionTable:
    """Read a retain.txt; the dense widths are those of its first row."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ExplorerError(f"cannot read retention table {path}: "
                            f"{os_reason(exc)}") from None
    return parse_retain(text, str(path))


def parse_retain(text: str, source: str = "retain.txt") -> RetentionTable:
    """A retain.txt's rows, checked as a schedule the pruning loop can follow
    (`table_from_rows`); `source` names the file in messages."""
    try:
        columns, rows = parse_table(text)
    except ValueError as exc:
        raise ExplorerError(f"{source} is not a retain.txt table ({exc})") from None
    layer_cols = [i for i, c in enumerate(columns) if c.endswith("NodesRetained")
                  and c.startswith("h")]
    if not rows or not layer_cols:
        raise ExplorerError(f"{source} is not a retain.txt table (its header has no "
                            f"h1NodesRetained … columns, or it has no rows)")
    if any(len(r) != len(columns) for r in rows):
        raise ExplorerError(f"{source}: every row needs {len(columns)} values, one per column "
                            f"of its header")
    # the layers are read by position: a header of h2 before h1 swapped the widths of the
    # two layers, and one without h2 ran its h3 column as the second layer
    names = [columns[i] for i in layer_cols]
    expected = [f"h{k}NodesRetained" for k in range(1, len(names) + 1)]
    if names != expected:
        raise ExplorerError(f"{source}: its layer columns must be {' '.join(expected)}, in "
                            f"that order (the first hidden layer's first), got "
                            f"{' '.join(names)}")
    _refuse_repeated_iterations(columns, rows, source)
    widths = []
    for n, r in enumerate(rows, start=1):
        values = [r[i] for i in layer_cols]
        bad = next((v for v in values if not float(v).is_integer()), None)
        if bad is not None:
            raise ExplorerError(f"{source}, row {n}: {bad:g} is not a whole number of neurons")
        widths.append([int(v) for v in values])
    return table_from_rows(widths, source)


def _refuse_repeated_iterations(columns: list[str], rows: list[list[float]],
                                source: str) -> None:
    """Refuse an Iteration column that numbers two rows alike: the loop runs one
    iteration per row and numbers them itself, so `0, 1, 1, 2` (a row pasted twice, or
    an edit half done) ran four iterations where the table said three. A gap (a row
    deleted by hand) is still accepted: the rows are run in order, as before."""
    if "Iteration" not in columns:
        return
    col = columns.index("Iteration")
    first: dict[float, int] = {}
    for n, row in enumerate(rows, start=1):
        if first.setdefault(row[col], n) != n:
            raise ExplorerError(f"{source}, row {n}: iteration {row[col]:g} repeats row "
                                f"{first[row[col]]}'s; each row is one iteration: renumber "
                                f"or remove it")


def table_from_rows(rows: list, source: str = "the schedule") -> RetentionTable:
    """A hand-made schedule (the widths per iteration, the first row the dense model),
    refused with one line unless the loop can follow it: whole widths from 1 to
    `MAX_WIDTH`, as many per row as the first row has, none growing (a pruned layer
    cannot grow back)."""
    if not isinstance(rows, list) or not rows:
        raise ExplorerError(f"{source} has no rows")
    out: list[tuple[int, ...]] = []
    for n, row in enumerate(rows, start=1):
        if not isinstance(row, (list, tuple)) or len(row) != len(rows[0]) or not row:
            raise ExplorerError(f"{source}, row {n}: give one width per hidden layer "
                                f"({len(rows[0]) if isinstance(rows[0], (list, tuple)) else '?'}"
                                f" like the first row), got {row!r}")
        for w in row:
            if isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= MAX_WIDTH:
                raise ExplorerError(f"{source}, row {n}: widths must be whole numbers from 1 to "
                                    f"{MAX_WIDTH:,}, got {w!r}")
        if out and any(w > prev for w, prev in zip(row, out[-1])):
            raise ExplorerError(f"{source}, row {n}: {' '.join(map(str, row))} grows from "
                                f"{' '.join(map(str, out[-1]))} — a pruned layer cannot grow back")
        _refuse_a_repeated_row(out, row, n, source)
        out.append(tuple(row))
    if len(out) > MAX_ITERATIONS:
        raise ExplorerError(f"{source} has {len(out):,} rows; at most {MAX_ITERATIONS:,}")
    return RetentionTable(dense=out[0], widths=out)


def _refuse_a_repeated_row(out: list[tuple[int, ...]], row: list, n: int, source: str) -> None:
    """Row `n` must follow the rules every retain.txt keeps (DESIGN §3): rows whose widths
    equal the previous row's are skipped — which also ends a table at its first row of
    1 neuron in every layer, as no row after it can shrink. Such a hand-made table was run
    as it stood (a repeated row an iteration that prunes nothing, rows past 1 1 more of
    them) and copied into the run's retain.txt, which then broke the format it claims."""
    if out and tuple(row) == out[-1]:
        ends = " (the table ends at its first row of 1 neuron per layer)" \
            if all(w == 1 for w in row) else ""
        raise ExplorerError(f"{source}, row {n}: {' '.join(map(str, row))} repeats row "
                            f"{n - 1}'s widths, so that iteration would prune nothing; a "
                            f"retain.txt skips such rows{ends}: remove it")


def spec_in(info: Any) -> Mapping[str, Any]:
    """The model spec a spec JSON or a checkpoint's `.json` sidecar (its "spec") holds."""
    spec = info.get("spec", info) if isinstance(info, Mapping) else None
    if not isinstance(spec, Mapping) or "arch" not in spec:
        raise ExplorerError("not a model spec: expected a JSON object with an 'arch' field "
                            "(or a checkpoint sidecar with a 'spec' field)")
    return spec


def widths_from_spec(info: Mapping[str, Any]) -> tuple[int, ...]:
    """Prunable widths recorded in a model spec or a checkpoint's `.json` sidecar.

    Lets a schedule be planned for an existing (possibly already pruned) model from its
    JSON alone — no weights, no unpickling, no torch. Order matches the pruning loop:
    conv channels first, then hidden Linear layers.
    """
    spec = spec_in(info)
    if "enc_hidden" in spec:  # a train-time VAE's spec: it has widths, just not these
        raise ExplorerError(f"the {spec['arch']} spec is a variational autoencoder's (a "
                            "train-time VAE run); a retention schedule plans an iterative "
                            "pruning run of a classifier")
    convs = spec.get("widths", spec.get("channels", [])) if spec["arch"] != "mlp" else []
    if isinstance(convs, Mapping):
        convs = list(convs.values())
    hidden = spec.get("hidden", []) if spec["arch"] in ("mlp", "cnn") else []
    if not isinstance(convs, list) or not isinstance(hidden, list):
        raise ExplorerError("model spec widths must be lists of whole numbers")
    widths = [*convs, *hidden]
    if not widths:
        raise ExplorerError(f"the {spec['arch']} spec lists no prunable layer widths "
                            "(a single-layer model has none; a dense torchvision model's "
                            "widths are in its checkpoint .json)")
    for w in widths:
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise ExplorerError(f"model spec widths must be whole numbers ≥ 1, got {w!r}")
    return tuple(widths)
