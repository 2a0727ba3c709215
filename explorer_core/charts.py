"""Altair charts shared by the pages and the CLI, and their PNG export.

One function per chart, each taking core results (never Streamlit objects) and
returning an `alt.Chart`, so a page can show it with `st.altair_chart` and the CLI
or a download button can turn the very same chart into a PNG with `chart_png_bytes`.
That keeps what a person sees in the browser and what lands in a run folder identical.
Pages that need new charts add a function here in the same style.
"""
from __future__ import annotations

import io
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import altair as alt
import numpy as np
import pandas as pd

from .errors import ChartRenderError
from .fileio import atomic_write_bytes
from .schedule import RetentionTable

# Thesis file names: the pruning loop and old scripts look for exactly these.
ITERATION_PNG = "pruneNodesIteration.png"
DISTRIBUTION_PNG = "pruneNodesDistribution.png"

WIDTH = 520
HEIGHT = 320

# The page's main column in an 800-px-wide window with the sidebar open is 468 px wide
# (a laptop demo, a half-screen window). Vega-Lite cannot stretch a faceted or
# concatenated chart to its container, so those are sized to fit this width whatever
# the window: at 800 px they were 600–900 px wide and their right panels cut off.
NARROW_WIDTH = 440
# Columns of the criterion legend under a chart: in one row, four criteria made the
# legend (and so the chart) wider than the column. A second legend beside it (pruning
# type, batch size) takes one column: bottom legends are laid out side by side.
LEGEND_COLUMNS = 2


def chart_png_bytes(chart: alt.TopLevelMixin, scale: float = 2.0) -> bytes:
    """Render any Altair chart to PNG bytes offline (vl-convert, no browser, no network).

    Scale 2 keeps text sharp when a PNG is pasted into a thesis or slide.
    """
    buf = io.BytesIO()
    try:
        chart.save(buf, format="png", scale_factor=scale)
    except Exception as exc:  # vl-convert's own errors: ValueError, RuntimeError, …
        raise ChartRenderError(f"could not render the chart as PNG "
                               f"({exc.__class__.__name__}: {exc})") from exc
    return buf.getvalue()


def save_chart_png(chart: alt.TopLevelMixin, path: str | os.PathLike) -> Path:
    """Write a chart as PNG atomically, so a crash never leaves half an image in a run folder.

    If it cannot be rendered, an older file of that name is removed: it would show a run
    as it was before (fewer iterations, other variants) beside tables that are current.
    """
    try:
        return atomic_write_bytes(path, chart_png_bytes(chart))
    except ChartRenderError as exc:
        Path(path).unlink(missing_ok=True)
        raise ChartRenderError(f"{Path(path).name} not written: {exc}") from exc


def save_chart_pngs(charts: list[tuple[alt.TopLevelMixin, Path]],
                    table: Path | None = None) -> list[Path]:
    """Write each chart to its path; one that cannot be rendered does not stop the rest.

    Raises one `ChartRenderError` naming every image left unwritten, after the others
    are on disk — and `table`, the file of numbers the caller wrote before them, as
    written (so the one line says the results are there).
    """
    written, problems = [], []
    for chart, path in charts:
        try:
            written.append(save_chart_png(chart, path))
        except ChartRenderError as exc:
            problems.append(str(exc))
    if problems:
        raise ChartRenderError((f"{table.name} written; " if table is not None else "")
                               + "; ".join(problems))
    return written


# ------------------------------------------------------------------ retention schedule

def _axis_scale(log_scale: bool, reverse: bool = False) -> alt.Scale:
    """Log axes hug the data (no padding out to the next power of ten); linear ones start at 0."""
    if log_scale:
        return alt.Scale(type="log", nice=False, padding=14, reverse=reverse)
    return alt.Scale(zero=True, reverse=reverse)


def layer_label(index: int, width: int) -> str:
    """'h1 (256)': the retain.txt layer name plus its dense width, for legends."""
    return f"h{index + 1} ({width:,})"


def retention_long_frame(table: RetentionTable) -> pd.DataFrame:
    """One row per (iteration, layer): the tidy shape Altair wants for one line per layer."""
    rows = []
    for it, widths in enumerate(table.widths):
        pct = table.percent(widths)
        for i, (kept, dense) in enumerate(zip(widths, table.dense)):
            rows.append({"Iteration": it, "Layer": layer_label(i, dense),
                         "Neurons kept": kept, "% of layer kept": 100.0 * kept / dense,
                         "% of hidden neurons kept": pct})
    return pd.DataFrame(rows)


# Layers the iteration chart's legend lists; more are summarised by Vega-Lite ("… N
# entries"): twelve layers' legend took all but 30 px of the chart's height on the page.
RETENTION_LEGEND_LIMIT = 20
# A row of a legend is 30 px high on a page (measured in Chromium), which fits a whole
# chart, legend and title included, into the chart's height: a chart drawn there grows
# by its legend's rows (`on_page`), or its plot is squeezed.
PAGE_LEGEND_ROW = 30
# Longest layer name ('h1 (9,999)') whose legend still takes two columns: at 800 px the
# chart is 226 px wide, and two columns of 'h1 (999,999)' cut off the second layer.
TWO_COLUMN_LABEL = 10


def _retention_legend_columns(table: RetentionTable) -> int:
    longest = max(len(layer_label(i, w)) for i, w in enumerate(table.dense))
    return LEGEND_COLUMNS if longest <= TWO_COLUMN_LABEL else 1


def _layer_axis_title(index: int, width: int) -> str:
    """'Layer 1 (of 999,999)', as the table heads its column: short enough for a 226-px
    chart (800-px window), where 'Layer 1 neurons kept (of 999,999)' ran past its edge."""
    return f"Layer {index + 1} (of {width:,})"


def retention_iteration_chart(table: RetentionTable, log_scale: bool = False,
                              on_page: bool = False,
                              drawn: Sequence[int] | None = None) -> alt.Chart:
    """Neurons kept per hidden layer vs iteration, one line per layer.

    A log y-axis turns the geometric schedule into straight lines and keeps the small
    late widths readable next to a wide first layer. `on_page`: the height grows with
    the legend's rows, since a page fits the whole chart, legend included, into its
    height (six layers left a 60-px plot, eight 30 px); a PNG draws the legend outside
    the plot's height. `drawn`: the iterations to draw (`schedule.drawn_rows`; all when
    None) — a browser took 5-28 s to draw 10 000 of them.
    """
    data = retention_long_frame(table)
    if drawn is not None:
        data = data[data["Iteration"].isin(set(drawn))]
    layers = len(table.dense)
    columns = _retention_legend_columns(table)
    rows = -(-min(layers, RETENTION_LEGEND_LIMIT) // columns)
    return (
        alt.Chart(data, title="Neurons kept per layer")
        .mark_line(point=True)
        .encode(
            # whole-number ticks: a one-row table otherwise labels its tick "0.000000"
            x=alt.X("Iteration:Q", axis=alt.Axis(tickMinStep=1, format="d"), title="Iteration"),
            y=alt.Y("Neurons kept:Q", scale=_axis_scale(log_scale), title="Neurons kept"),
            # legend below: on the right it took half of a 226-px column (800-px window);
            # twenty colours past ten layers (the eleventh took the first one's)
            color=alt.Color("Layer:N", sort=None, title="Hidden layer",
                            scale=alt.Scale(scheme="tableau10" if layers <= 10 else "tableau20"),
                            legend=alt.Legend(orient="bottom", columns=columns,
                                              symbolLimit=RETENTION_LEGEND_LIMIT)),
            tooltip=["Iteration:Q", "Layer:N", "Neurons kept:Q",
                     alt.Tooltip("% of layer kept:Q", format=".1f"),
                     alt.Tooltip("% of hidden neurons kept:Q", format=".2f")],
        )
        .properties(width=WIDTH, height=HEIGHT + (rows - 1) * PAGE_LEGEND_ROW if on_page
                    else HEIGHT)
    )


def _distribution_frame(table: RetentionTable) -> pd.DataFrame:
    rows = []
    for it, widths in enumerate(table.widths):
        row = {"Iteration": it, "% of hidden neurons kept": table.percent(widths)}
        for i, kept in enumerate(widths):
            row[f"h{i + 1}"] = kept
        rows.append(row)
    return pd.DataFrame(rows)


def retention_distribution_chart(table: RetentionTable, log_scale: bool = True,
                                 drawn: Sequence[int] | None = None) -> alt.LayerChart:
    """How the kept neurons are shared out between layers, each point labelled with its iteration.

    Two or more layers: layer-1 width vs layer-2 width (the thesis' plot; further layers
    are in the iteration chart). One layer: its width vs % kept, the only other axis there is.
    Log axes by default: a geometric schedule then spaces the iterations evenly instead of
    piling the late, small widths (and their labels) into one corner. `drawn`: the
    iterations to draw (all when None), with every labelled one, so no label loses its
    point.
    """
    data = _distribution_frame(table)
    if len(table.dense) >= 2:
        xf, yf = "h1", "h2"
        x = alt.X("h1:Q", title=_layer_axis_title(0, table.dense[0]),
                  scale=_axis_scale(log_scale))
        y = alt.Y("h2:Q", title=_layer_axis_title(1, table.dense[1]),
                  scale=_axis_scale(log_scale))
        title = "Layer 1 vs layer 2 width"
        tooltip = ["Iteration:Q", "h1:Q", "h2:Q"]
    else:
        xf, yf = "% of hidden neurons kept", "h1"
        x = alt.X("% of hidden neurons kept:Q", title="% of hidden neurons kept",
                  scale=_axis_scale(log_scale, reverse=True))
        y = alt.Y("h1:Q", title=_layer_axis_title(0, table.dense[0]),
                  scale=_axis_scale(log_scale))
        title = "Layer 1 width vs % kept"
        tooltip = ["Iteration:Q", "h1:Q"]
    tooltip.append(alt.Tooltip("% of hidden neurons kept:Q", format=".2f"))
    data["Labelled"] = _spread_out(data[xf], data[yf], log_scale)
    if drawn is not None:
        data = data[data["Iteration"].isin(set(drawn)) | data["Labelled"]]
    base = alt.Chart(data, title=title).encode(x=x, y=y)
    line = base.mark_line(point=True, color="#4c78a8").encode(
        order="Iteration:Q", tooltip=tooltip)
    labels = base.mark_text(align="left", dx=6, dy=-6, fontSize=10, color="#444").encode(
        text="Iteration:Q").transform_filter("datum.Labelled")
    return alt.layer(line, labels).properties(width=WIDTH, height=HEIGHT)


# Least distance between two labelled points of the distribution chart, as a share of
# the plot's side: ~30 px in a 1400-px window, ~12 px in an 800-px one (a label is 10 px
# high, 6-25 px wide).
LABEL_GAP = 0.08


def _spread_out(xs: pd.Series, ys: pd.Series, log_scale: bool) -> list[bool]:
    """Which points get their iteration as a label: the last, then each point in order
    that is at least `LABEL_GAP` from every labelled one (positions as drawn: log or
    linear, scaled to the data's range). Every point was labelled: the late iterations
    piled up ("22 2120 19 18 17"), and 5 946 rows drew a black band."""
    def position(v: pd.Series) -> np.ndarray:
        a = v.to_numpy(dtype=float)
        a = np.log(np.maximum(a, 1e-12)) if log_scale else a
        span = a.max() - a.min() if len(a) else 0.0
        return (a - a.min()) / span if span > 0 else np.zeros_like(a)

    pts = np.column_stack([position(xs), position(ys)])
    n = len(pts)
    keep = [False] * n
    chosen: list[np.ndarray] = []
    for i in ([n - 1] + list(range(n - 1))) if n else []:
        if not chosen or np.min(np.hypot(*(np.array(chosen) - pts[i]).T)) >= LABEL_GAP:
            keep[i] = True
            chosen.append(pts[i])
    return keep


def save_retention_pngs(table: RetentionTable, out_dir: str | os.PathLike) -> list[Path]:
    """Write the thesis' two schedule plots into `out_dir`; returns the paths written."""
    out = Path(out_dir)
    return save_chart_pngs([(retention_iteration_chart(table), out / ITERATION_PNG),
                            (retention_distribution_chart(table), out / DISTRIBUTION_PNG)])


# ------------------------------------------------------------------ iterative pruning runs

def _long(records: list[dict], x: str, series: dict[str, str]) -> pd.DataFrame:
    """Tidy frame (x, Series, Value) from records holding one column per series."""
    rows = [{x: r[x], "Series": label, "Value": r[key]}
            for r in records for key, label in series.items() if r.get(key) is not None]
    return pd.DataFrame(rows, columns=[x, "Series", "Value"])


# Vega's default categorical colours, named so a chart can pin them (`_series_scale`).
TABLEAU10 = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2",
             "#ff9da6", "#9d755d", "#bab0ac"]
# A split keeps its colour on every chart: test orange beside train, with or without a
# validation curve between them.
SPLIT_COLOURS = {"train": TABLEAU10[0], "validation": TABLEAU10[4], "test": TABLEAU10[1]}


def _series_scale(series: pd.Series) -> alt.Scale:
    """The colours of `_lines`' series, pinned in the chart itself: left to the theme, the
    page (Streamlit's palette) drew test light blue and its PNG download (Vega's, through
    vl-convert) orange."""
    domain = list(dict.fromkeys(series.tolist()))
    return alt.Scale(domain=domain, range=[SPLIT_COLOURS.get(s, TABLEAU10[i % len(TABLEAU10)])
                                           for i, s in enumerate(domain)])


def _lines(frame: pd.DataFrame, x: alt.X, y_title: str, title: str) -> alt.Chart:
    # legend under the plot, two entries a row: beside it, it eats the width of a narrow
    # column (and was cut off by the page edge at 1100 px); four a row cut the third
    # ('test') off in a 226-px column (800-px window)
    return (alt.Chart(frame, title=title).mark_line(point=True)
            .encode(x=x, y=alt.Y("Value:Q", title=y_title, scale=alt.Scale(zero=False)),
                    color=alt.Color("Series:N", title=None, sort=None,
                                    scale=_series_scale(frame["Series"]),
                                    legend=alt.Legend(orient="bottom", direction="horizontal",
                                                      columns=LEGEND_COLUMNS)),
                    tooltip=[x.shorthand if hasattr(x, "shorthand") else x, "Series:N",
                             alt.Tooltip("Value:Q", format=".4g")])
            .properties(width=WIDTH, height=HEIGHT))


KEPT_NOTE = "kept: lowest validation loss"


def _epoch_x() -> alt.X:
    return alt.X("epoch:Q", title="Epoch", axis=alt.Axis(tickMinStep=1, format="d"))


def _with_kept(chart: alt.Chart, epochs: list[dict], kept: int | None, key: str,
               y_title: str) -> alt.Chart | alt.LayerChart:
    """Mark the epoch whose weights were saved: a dashed rule and a ring on the test curve.

    The table and the metrics report that epoch, not the last one, so the chart shows
    where the reported number comes from.
    """
    row = next((e for e in epochs if e.get("epoch") == kept), None)
    if row is None or row.get(key) is None:
        return chart
    mark = pd.DataFrame([{"epoch": kept, "Value": row[key], "Kept": KEPT_NOTE}])
    tooltip = [alt.Tooltip("Kept:N", title="epoch saved"), alt.Tooltip("epoch:Q", title="Epoch"),
               alt.Tooltip("Value:Q", title=f"test {y_title.lower()}", format=".4g")]
    base = alt.Chart(mark).encode(x=alt.X("epoch:Q"), tooltip=tooltip)
    rule = base.mark_rule(strokeDash=[4, 3], color="#555", strokeWidth=1.5)
    ring = base.mark_point(shape="circle", size=160, filled=False, strokeWidth=2.5,
                           color="#d62728").encode(y="Value:Q")
    return alt.layer(chart, rule, ring)


def epoch_loss_chart(epochs: list[dict], kept: int | None = None) -> alt.Chart | alt.LayerChart:
    """Per-epoch train / validation / test loss of one iteration, the saved (`kept`)
    epoch — lowest validation loss — marked."""
    it = epochs[0].get("iteration", 0) if epochs else 0
    # validation drawn too: it decides the kept epoch, which a reader can then check
    chart = _lines(_long(epochs, "epoch", {"train_loss": "train", "val_loss": "validation",
                                           "test_loss": "test"}),
                   _epoch_x(), "Cross-entropy", f"Loss, iteration {it}")
    return _with_kept(chart.properties(width=WIDTH // 2), epochs, kept, "test_loss", "loss")


def epoch_accuracy_chart(epochs: list[dict], kept: int | None = None
                         ) -> alt.Chart | alt.LayerChart:
    """Per-epoch train / validation / test accuracy of one iteration, the saved (`kept`)
    epoch marked."""
    it = epochs[0].get("iteration", 0) if epochs else 0
    chart = _lines(_long(epochs, "epoch", {"train_acc": "train", "val_acc": "validation",
                                           "test_acc": "test"}),
                   _epoch_x(), "Accuracy (%)", f"Accuracy, iteration {it}")
    return _with_kept(chart.properties(width=WIDTH // 2), epochs, kept, "test_acc", "accuracy")


def epoch_chart(epochs: list[dict], kept: int | None = None) -> alt.HConcatChart:
    """Loss and accuracy side by side (fixed width: for PNGs; pages show the two charts
    in columns so each can stretch to its column)."""
    return alt.hconcat(epoch_loss_chart(epochs, kept), epoch_accuracy_chart(epochs, kept))


def _retained_axis() -> alt.X:
    # reversed: pruning proceeds left to right, from the dense model to the smallest
    return alt.X("percent_retained:Q", title="% neurons kept (log)",
                 scale=alt.Scale(type="log", reverse=True, nice=False, padding=10))


def iteration_accuracy_chart(iterations: list[dict]) -> alt.Chart:
    """Train / test accuracy of each iteration's best model against % of neurons retained."""
    frame = _long(iterations, "percent_retained", {"train_acc": "train", "test_acc": "test"})
    return _lines(frame, _retained_axis(), "Accuracy (%)", "Accuracy vs neurons kept")


def iteration_loss_chart(iterations: list[dict]) -> alt.Chart:
    """Train / test loss of each iteration's best model against % of neurons retained."""
    frame = _long(iterations, "percent_retained", {"train_loss": "train", "test_loss": "test"})
    return _lines(frame, _retained_axis(), "Cross-entropy", "Loss vs neurons kept")


def iteration_widths_chart(iterations: list[dict]) -> alt.Chart:
    """Neurons kept per hidden layer at each completed iteration."""
    rows = [{"iteration": r["iteration"], "Series": f"h{i + 1}", "Value": w}
            for r in iterations for i, w in enumerate(r.get("widths", []))]
    frame = pd.DataFrame(rows, columns=["iteration", "Series", "Value"])
    x = alt.X("iteration:Q", title="Iteration", axis=alt.Axis(tickMinStep=1, format="d"))
    return _lines(frame, x, "Neurons kept", "Neurons per hidden layer")


# ------------------------------------------------------------------ inspect (one image)

# Room right of a plot whose last x label ends at its right edge: Streamlit draws charts
# with no padding, so the "1.0" of a probability axis was cut by its column's edge.
RIGHT_ROOM = {"left": 5, "top": 5, "bottom": 5, "right": 16}


def topk_chart(rows: list[dict], title: str = "Top classes", width: int = WIDTH // 2) -> alt.Chart:
    """Horizontal bars of the top-k classes (`attribution.top_k` rows), most probable on top."""
    frame = pd.DataFrame(rows, columns=["rank", "class_index", "class", "probability"])
    frame["label"] = [f"{c} ({i})" if str(c) != str(i) else str(c)
                      for c, i in zip(frame["class"], frame["class_index"])]
    return (alt.Chart(frame, title=title).mark_bar()
            .encode(x=alt.X("probability:Q", title="Probability", scale=alt.Scale(domain=[0, 1])),
                    y=alt.Y("label:N", title=None, sort=frame["label"].tolist()),
                    color=alt.condition(alt.datum.rank == 1, alt.value("#b2182b"),
                                        alt.value("#8c8c8c")),
                    tooltip=["class:N", "class_index:Q",
                             alt.Tooltip("probability:Q", format=".2%")])
            .properties(width=width, height=alt.Step(24), padding=RIGHT_ROOM))


def neuron_ranking_chart(table: pd.DataFrame, top: int = 24, title: str = "",
                         width: int = WIDTH, short: bool = False) -> alt.VConcatChart:
    """Conductance of the `top` units ranked by |conductance|, IASA score of the same units below.

    `table` is `attribution.neuron_table`. Both panels share the unit order, so a unit
    that matters for this image but scores low on IASA (or the reverse) stands out.
    `short`: titles for half a page (the long ones were cut in a ~300 px column).
    """
    frame = table.head(top).copy()
    frame["unit"] = frame["neuron"].astype(str)
    order = frame["unit"].tolist()
    x = alt.X("unit:N", sort=order, title="Unit (by |conductance|)" if short
              else "Unit (ranked by |conductance| for this image)")
    cond = (alt.Chart(frame, title=title or "Conductance for the target class").mark_bar()
            .encode(x=x, y=alt.Y("conductance:Q", title="Conductance"),
                    color=alt.condition(alt.datum.conductance >= 0, alt.value("#b2182b"),
                                        alt.value("#2166ac")),
                    tooltip=["neuron:Q", "rank:Q", alt.Tooltip("conductance:Q", format=".4g")]
                    + (["iasa_rank:Q"] if "iasa" in frame else []))
            .properties(width=width, height=HEIGHT // 2))
    if "iasa" not in frame:
        return alt.vconcat(cond)
    iasa = (alt.Chart(frame, title="IASA score (whole input domain)" if short
                      else "Interval-adjoint significance (whole input domain)")
            .mark_bar(color="#5e3c99")
            .encode(x=x, y=alt.Y("iasa:Q", title="IASA score"),
                    tooltip=["neuron:Q", "iasa_rank:Q", alt.Tooltip("iasa:Q", format=".4g")])
            .properties(width=width, height=HEIGHT // 2))
    return alt.vconcat(cond, iasa)


# ------------------------------------------------------------------ train-time pruning

# Fixed colours per variant key, so "importance", "random" and "none" look the same on
# every chart, page and PNG whatever the criterion's label says.
TRAIN_TIME_COLOURS = {"importance": "#1f77b4", "random": "#ff7f0e", "none": "#7f7f7f"}


def _variant_colour(labels: dict[str, str]) -> alt.Color:
    keys = [k for k in TRAIN_TIME_COLOURS if k in labels]
    # opaque swatches: a layer's faint seed band would otherwise set the legend's look
    return alt.Color("Variant:N", title="Variant", sort=[labels[k] for k in keys],
                     scale=alt.Scale(domain=[labels[k] for k in keys],
                                     range=[TRAIN_TIME_COLOURS[k] for k in keys]),
                     legend=alt.Legend(symbolOpacity=1, symbolType="circle", orient="bottom"))


def _epoch_means(epochs: list[dict], metric: str, labels: dict[str, str]
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(mean, min and max of `metric` per (variant, epoch) over the seeds that reached the
    variant's last epoch; the epochs of the seeds that did not, one row each).

    Seeds run one after another, so a seed under way (or stopped, to be redone on
    resume) has only the first epochs: averaged in, the line was the mean of two seeds
    up to its epoch and of one after it, a step that was a change of seeds, not of
    training. It is drawn on its own (`train_time_curve_chart`).
    """
    rows = [{"Variant": labels.get(e["variant"], e["variant"]), "Epoch": e["epoch"],
             "Seed": e["seed"], "v": e[metric]} for e in epochs if e.get(metric) is not None]
    frame = pd.DataFrame(rows, columns=["Variant", "Epoch", "Seed", "v"])
    if frame.empty:
        return (pd.DataFrame(columns=["Variant", "Epoch", "Value", "Low", "High", "Seeds"]),
                pd.DataFrame(columns=["Variant", "Epoch", "Seed", "Value"]))
    reached = frame.groupby(["Variant", "Seed"], sort=False)["Epoch"].transform("max")
    whole = reached == frame.groupby("Variant", sort=False)["Epoch"].transform("max")
    g = frame[whole].groupby(["Variant", "Epoch"], sort=False)["v"]
    out = g.agg(Value="mean", Low="min", High="max", Seeds="count").reset_index()
    return out, frame[~whole].rename(columns={"v": "Value"}).reset_index(drop=True)


def _prune_rules(prune_points: list[int] | None) -> alt.Chart | None:
    """Dashed verticals between epoch p and p+1 where the pruned variants lose units."""
    if not prune_points:
        return None
    frame = pd.DataFrame({"Prune after epoch": prune_points,
                          "x": [p + 0.5 for p in prune_points]})
    return (alt.Chart(frame).mark_rule(strokeDash=[3, 3], color="#bbbbbb")
            .encode(x="x:Q", tooltip=["Prune after epoch:Q"]))


def _train_time_epoch_x(last: int | None = None) -> alt.X:
    """Epochs from the first to the last: Vega's rounding to "nice" ticks began 30 epochs
    at 0 (an epoch that does not exist), and 12 at 1. `last`: the run's last epoch, the
    axis's end while the epochs drawn stop short of it (a run under way or stopped
    ended its axis at the last prune line)."""
    scale = alt.Scale(zero=False, nice=False) if last is None else \
        alt.Scale(zero=False, nice=False, domain=[1, last])
    return alt.X("Epoch:Q", title="Epoch", axis=alt.Axis(tickMinStep=1), scale=scale)


def train_time_curve_chart(epochs: list[dict], metric: str, y_title: str, title: str,
                           labels: dict[str, str], prune_points: list[int] | None = None,
                           last_epoch: int | None = None) -> alt.LayerChart:
    """One line per variant (mean over seeds) of a per-epoch metric; prunes as dashed rules.

    With several seeds a band shows their min–max, so a gap between two variants can be
    told apart from seed noise at a glance; a seed not yet at the others' last epoch is
    a thin dashed line of its own (`_epoch_means`). The y-axis spans every value drawn —
    each line from its first epoch and each band — so the whole curve shows: zoomed on the
    epochs after the first prune, the accuracy axis began near 91 % and the first six
    epochs ran off the plot (losses off its top), in the page and in the PNG alike.
    """
    frame, partial = _epoch_means(epochs, metric, labels)
    x = _train_time_epoch_x(last_epoch)
    colour = _variant_colour(labels)
    base = alt.Chart(frame, title=title)
    # no fixed domain: the layers share this scale, whose domain is the union of the
    # lines' means and the bands' min and max
    y_scale = alt.Scale(zero=False)
    line = base.mark_line(point=True).encode(
        x=x, y=alt.Y("Value:Q", title=y_title, scale=y_scale), color=colour,
        tooltip=["Variant:N", "Epoch:Q", alt.Tooltip("Value:Q", title=y_title, format=".4g"),
                 alt.Tooltip("Seeds:Q", title="seeds")])
    layers = []
    rules = _prune_rules(prune_points)
    if rules is not None:
        layers.append(rules)
    if not frame.empty and frame["Seeds"].max() > 1:
        layers.append(base.mark_area(opacity=0.15).encode(
            x=x, y=alt.Y("Low:Q", scale=y_scale), y2="High:Q", color=colour))
    if not partial.empty:
        layers.append(alt.Chart(partial).mark_line(strokeDash=[4, 3], strokeWidth=1.5).encode(
            x=x, y=alt.Y("Value:Q", scale=y_scale), color=colour, detail="Seed:N",
            tooltip=["Variant:N", "Seed:N", "Epoch:Q",
                     alt.Tooltip("Value:Q", title=f"{y_title} (seed not finished)",
                                 format=".4g")]))
    layers.append(line)
    return alt.layer(*layers).properties(width=WIDTH, height=HEIGHT)


LAYER_COLOURS = ["#7b3294", "#1b9e77", "#c51b7d", "#66a61e", "#8c6d31", "#17becf"]


def train_time_widths_chart(epochs: list[dict], labels: dict[str, str],
                            last_epoch: int | None = None) -> alt.FacetChart:
    """Units per prunable layer during each epoch, one panel per variant.

    Panels rather than one plot: importance and random pruning remove the same number
    of units by design, so their lines would lie on top of each other.
    """
    rows = {}
    for e in epochs:
        for layer, w in zip(e.get("layers") or [], e.get("widths") or []):
            rows[(e["variant"], e["epoch"], layer)] = w  # equal for every seed
    frame = pd.DataFrame([{"Variant": labels.get(v, v), "Epoch": ep, "Layer": layer,
                           "Units": w} for (v, ep, layer), w in rows.items()],
                         columns=["Variant", "Epoch", "Layer", "Units"])
    layers = list(dict.fromkeys(frame["Layer"]))
    frame["Depth"] = frame["Layer"].map({n: i for i, n in enumerate(layers)})
    order = [labels[k] for k in TRAIN_TIME_COLOURS if k in labels]
    return (alt.Chart(frame)
            .mark_line(point=True, interpolate="step-after")
            .encode(x=_train_time_epoch_x(last_epoch),
                    y=alt.Y("Units:Q", title="Neurons / channels"),
                    # not the variants' blue / orange / grey: these colours are layers
                    color=alt.Color("Layer:N", title="Layer", sort=layers,
                                    scale=alt.Scale(domain=layers, range=[
                                        LAYER_COLOURS[i % len(LAYER_COLOURS)]
                                        for i in range(len(layers))]),
                                    legend=alt.Legend(orient="bottom")),
                    # layers of equal width (a VAE's encoder and decoder) share one
                    # line: earlier layers drawn wider, so the later one shows inside it
                    # (at 4 and 1.5 px the two read as one dark line in an 800-px window)
                    strokeWidth=alt.StrokeWidth("Depth:O", legend=None,
                                                scale=alt.Scale(range=[7, 2])),
                    tooltip=["Variant:N", "Layer:N", "Epoch:Q", "Units:Q"])
            # all variants in one row, as narrow as an 800-px window needs: three panels
            # of 153 px were 605 px wide there, and the third was cut off
            .properties(width=(NARROW_WIDTH - 90 - 15 * 2) // 3, height=HEIGHT * 2 // 3)
            .facet(column=alt.Column("Variant:N", title=None, sort=order), spacing=15,
                   title="Units per hidden layer"))


def train_time_sizes_chart(rows: list[dict], labels: dict[str, str]) -> alt.LayerChart:
    """Final parameter count per variant (mean over seeds), hidden units written on the bars."""
    frame = pd.DataFrame([{"Variant": labels.get(r["variant"], r["variant"]),
                           "Parameters": r.get("params"),
                           "Hidden units": sum(r.get("widths") or [])} for r in rows],
                         columns=["Variant", "Parameters", "Hidden units"])
    if not frame.empty:
        frame = frame.groupby("Variant", sort=False).mean().reset_index()
        frame["Text"] = [f"{p:,.0f} params · {u:,.0f} units" for p, u
                         in zip(frame["Parameters"], frame["Hidden units"])]
    y = alt.Y("Variant:N", title=None, sort=[labels[k] for k in TRAIN_TIME_COLOURS if k in labels],
              axis=alt.Axis(labelLimit=240))
    base = alt.Chart(frame, title="Final model size")
    # room right of the longest bar for its label; the y-axis names the variants, so the
    # colours need no legend
    top = float(frame["Parameters"].max()) * 1.6 if not frame.empty else 1.0
    colour = _variant_colour(labels)
    colour.legend = None
    bars = base.mark_bar().encode(
        x=alt.X("Parameters:Q", title="Parameters", scale=alt.Scale(domain=[0, top])), y=y,
        color=colour,
        tooltip=["Variant:N", alt.Tooltip("Parameters:Q", format=",.0f"),
                 alt.Tooltip("Hidden units:Q", format=",.0f")])
    text = base.mark_text(align="left", dx=4, color="#333").encode(
        x="Parameters:Q", y=y, text="Text:N")
    # a step per bar, not a fixed height: Streamlit's theme collapsed a fixed-height band axis
    return alt.layer(bars, text).properties(width=WIDTH - 120, height=alt.Step(36))


# Per task: (file / chart name, metric, axis title, chart title) of the curve charts.
TRAIN_TIME_CURVES = {
    "classifier": [("accuracy", "test_acc", "Test accuracy (%)", "Test accuracy per epoch"),
                   ("loss", "test_loss", "Test cross-entropy", "Test loss per epoch")],
    "vae": [("reconstruction", "test_recon", "BCE per image",
             "Test reconstruction loss per epoch"),
            ("kl", "test_kl", "KL per image", "Test KL divergence per epoch"),
            ("elbo", "test_loss", "−ELBO per image", "Test loss (reconstruction + KL)")],
}


def train_time_charts(task: str, epochs: list[dict], rows: list[dict], labels: dict[str, str],
                      prune_points: list[int] | None = None, last_epoch: int | None = None
                      ) -> dict[str, alt.TopLevelMixin]:
    """Every chart of a train-time comparison by name (the PNG file stems of a run);
    `last_epoch`, the run's, ends their epoch axes. Only the variants drawn are in the
    legends (a run of one variant listed all three)."""
    drawn = {e.get("variant") for e in epochs} | {r.get("variant") for r in rows}
    labels = {k: v for k, v in labels.items() if k in drawn}
    out: dict[str, alt.TopLevelMixin] = {
        name: train_time_curve_chart(epochs, metric, y_title, title, labels, prune_points,
                                     last_epoch)
        for name, metric, y_title, title in TRAIN_TIME_CURVES[task]}
    out["widths"] = train_time_widths_chart(epochs, labels, last_epoch)
    if rows:
        out["sizes"] = train_time_sizes_chart(rows, labels)
    return out


# ------------------------------------------------------------------ compare sweeps

# One colour per criterion on every chart (random in grey: the baseline to beat).
CRITERION_COLOURS = {"interval_adjoint": TABLEAU10[0], "l1": TABLEAU10[1], "l2": TABLEAU10[2],
                     "taylor": TABLEAU10[4], "contribution": TABLEAU10[3],
                     "kmeans": TABLEAU10[5], "magnitude": TABLEAU10[6], "random": "#9d9d9d"}


def _criterion_colour(frame: pd.DataFrame, legend: bool = True, **options: Any) -> alt.Color:
    """Coloured by criterion id, labelled by name (`_compare_frame`'s Criterion); the
    domain is every criterion of `frame` (the whole sweep, for panels drawn apart);
    `options` style the legend, drawn unless `legend` is False."""
    names = dict(zip(frame["criterion"], frame["Criterion"]))
    present = [c for c in CRITERION_COLOURS if c in names]
    return alt.Color("Criterion:N", title="Criterion",
                     legend=alt.Legend(**options) if legend else None,
                     scale=alt.Scale(domain=[names[c] for c in present],
                                     range=[CRITERION_COLOURS[c] for c in present]))


def _named_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Model, Dataset, Type, Criterion: the id columns by name, for panels, legends and
    tooltips ('cnn · fashion_mnist' headed a panel). The ids stay for grouping."""
    from .labels import named  # the registries import torch; the other charts do not need it
    shown = named(frame[[c for c in ("model", "dataset", "type", "criterion") if c in frame]])
    return frame.assign(**{c.capitalize(): shown[c] for c in shown})


def _compare_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """Summary rows with display columns: names, percent, panel label, ± band bounds."""
    f = _named_columns(summary)
    f["Ratio (%)"] = f["ratio"].astype(float) * 100
    f["Panel"] = f["Model"] + " · " + f["Dataset"]
    f["Batch"] = f["batch_size"].astype(str)
    std = f["test_acc_std"].fillna(0.0)
    f["Low"], f["High"] = f["test_acc_mean"] - std, f["test_acc_mean"] + std
    return f


def _wrapped(text: str, width: int = 70) -> list[str]:
    """A chart subtitle as lines: Vega-Lite does not wrap a title, and one long line
    widened the whole chart to its length."""
    return textwrap.wrap(text, width, break_on_hyphens=False)


# Width of one panel of a compare chart on the page, axes included. Panels are separate
# views in a row that wraps (`compare_ratio_panels`): two fit the 564-px column of a
# 1024-px window with the sidebar open, three the 940-px one of a 1400-px window, one
# the 468-px column of an 800-px window. (A faceted chart cannot stretch: sized for 800
# px, its panels were 175 px wide at 1400 px, under half the column.)
PANEL_WIDTH = 270
RATIO_HEIGHT, PARETO_HEIGHT = 170, 200
# Room left of a panel's plot for its y-axis labels and title, and under it for its
# x-axis: a page fits the whole chart into its width and height.
Y_AXIS_ROOM, X_AXIS_ROOM = 60, 45
# Height of one legend entry (the legend chart is fitted to its height); a shape's
# entries are taller (at 24 px the third type, "Weight", was cut off at 800 px).
LEGEND_ROW = 24
LEGEND_ROWS = {"shape": 32}
RATIO_TITLE = "Accuracy vs pruning ratio"
PARETO_TITLE = "Accuracy vs compute"
PARETO_SUBTITLE = ["dashed: each dataset's Pareto front over all its models, the same",
                   "line in each of its panels; ringed: this panel's points on it"]
# Dash per batch size and shape per pruning type, in the order of their domains.
BATCH_DASHES = [[1, 0], [6, 3], [2, 2], [8, 3, 2, 3], [1, 3]]
TYPE_SHAPES = ["circle", "square", "triangle-up", "diamond", "cross", "triangle-down"]


@dataclass(frozen=True)
class Panels:
    """A compare chart as separate views, for a page that wraps them to its width: the
    panels (titled, no legends) and one chart holding their legends. Every panel's
    scales have explicit domains from the whole sweep, so a colour, dash or shape means
    the same in each and the legends drawn once hold for all."""
    title: str
    subtitle: list[str]
    panels: list[alt.LayerChart]
    legend: alt.Chart


def _cycled(domain: list, options: list) -> list:
    return [options[i % len(options)] for i in range(len(domain))]


def _batch_dash(f: pd.DataFrame, legend: bool) -> alt.StrokeDash:
    """Dash by batch size; the legend draws dashed strokes (dots would all look alike)."""
    domain = [str(b) for b in sorted(f["batch_size"].unique())]
    return alt.StrokeDash(
        "Batch:N", title="Batch size", sort=None,
        scale=alt.Scale(domain=domain, range=_cycled(domain, BATCH_DASHES)),
        legend=alt.Legend(symbolType="stroke", symbolStrokeColor="#333", symbolOpacity=1,
                          symbolFillColor="#333", symbolStrokeWidth=2, symbolSize=400,
                          orient="bottom", columns=1) if legend else None)


def _type_shape(f: pd.DataFrame, legend: bool) -> alt.Shape:
    """Shape by pruning type (by name, in the order of the type ids)."""
    domain = f.sort_values("type", kind="stable")["Type"].drop_duplicates().tolist()
    return alt.Shape("Type:N", title="Type",
                     scale=alt.Scale(domain=domain, range=_cycled(domain, TYPE_SHAPES)),
                     legend=alt.Legend(orient="bottom", columns=1, symbolOpacity=1)
                     if legend else None)


def _legend_chart(data: pd.DataFrame, **encodings: Any) -> alt.Chart:
    """Only the legends of `encodings` (with their legends on): an invisible mark in a
    flat view, shown once above panels drawn without legends. As tall as its longest
    legend (a page fits a chart into its height: at 1 px the legends were cut off)."""
    height = max(-(-len(e.to_dict()["scale"]["domain"]) // (LEGEND_COLUMNS if name == "color"
                                                            else 1))
                 * LEGEND_ROWS.get(name, LEGEND_ROW) for name, e in encodings.items())
    return (alt.Chart(data).mark_point(filled=True, opacity=0).encode(**encodings)
            .properties(height=height + 40).configure_view(stroke=None))


def _panel(layers: alt.LayerChart, title: str, height: int) -> alt.LayerChart:
    """One page panel, `PANEL_WIDTH` wide with its y-axis and a plot `height` high; its
    heading (`description`) is for the page to write above it (Streamlit's chart theme
    drew a panel title as '–' and took 64 px of the plot for it)."""
    return layers.properties(description=title, width=PANEL_WIDTH - Y_AXIS_ROOM,
                             height=height + X_AXIS_ROOM)


def _ratio_frame(summary: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """`_compare_frame` with each row's panel, 'model · dataset · type', and the panels
    in the grid's order, model · dataset first."""
    f = _compare_frame(summary)
    f["Facet"] = f["Panel"] + " · " + f["Type"]
    order = f.sort_values(["Panel", "Type"], kind="stable")["Facet"].drop_duplicates().tolist()
    return f, order


def _ratio_legends(f: pd.DataFrame, legend: bool) -> dict[str, Any]:
    """The ratio chart's encodings that have legends — colour by criterion, dash by batch
    size when there are several — with scales from the whole sweep `f`: the same for the
    faceted chart, the page's panels (legend off) and their legend chart."""
    # one legend for both layers (they share the scale; `legend=None` on the band would
    # remove it), with opaque swatches although the band is faint
    out = {"color": _criterion_colour(f, legend, symbolOpacity=1, orient="bottom",
                                      columns=LEGEND_COLUMNS)}
    if f["Batch"].nunique() > 1:
        out["strokeDash"] = _batch_dash(f, legend)
    return out


def _ratio_layers(f: pd.DataFrame, data: pd.DataFrame, legend: bool) -> alt.LayerChart:
    """The ±1-std band and mean line of the ratio chart over `data` (a panel's rows or all
    of them), scales and legends from the whole sweep `f`."""
    x = alt.X("Ratio (%):Q", title="Pruned (%)", scale=alt.Scale(domain=[0, 100]))
    legends = _ratio_legends(f, legend)
    line_enc = dict(x=x, y=alt.Y("test_acc_mean:Q", title="Test accuracy (%)",
                                 scale=alt.Scale(domain=[0, 100])),
                    tooltip=["Model:N", "Dataset:N", "Type:N", "Criterion:N", "Batch:N",
                             alt.Tooltip("Ratio (%):Q", format=".0f"),
                             alt.Tooltip("test_acc_mean:Q", title="accuracy", format=".2f"),
                             alt.Tooltip("test_acc_std:Q", title="std", format=".2f"),
                             alt.Tooltip("n:Q", title="repeats")], **legends)
    base = alt.Chart()
    band = base.mark_area(opacity=0.15).encode(x=x, y="Low:Q", y2="High:Q",
                                               color=legends["color"], detail="Batch:N")
    line = base.mark_line(point=True).encode(**line_enc)
    return alt.layer(band, line, data=data)


def compare_ratio_chart(summary: pd.DataFrame, note: str | None = None) -> alt.FacetChart:
    """Test accuracy against the pruning ratio: one line per criterion, a band of ±1 std
    over repeats, one panel per (model · dataset) row and pruning type column. Several
    batch sizes are told apart by the line's dash. `note` is the subtitle (what the 0 %
    point is, `sweep_results.untuned_dense_note`), so a downloaded PNG says it too.
    One image at a fixed width (the PNG); a page shows `compare_ratio_panels`."""
    f, order = _ratio_frame(summary)
    # One panel per (model · dataset, type), wrapped two to a row: a grid with a column
    # per type was 4 × 130 px wide plus axes and overflowed an 800-px window (and its
    # 468-px column) by 235 px.
    columns = 1 if f["Type"].nunique() == 1 and f["Panel"].nunique() == 1 else 2
    return (_ratio_layers(f, f, legend=True)
            .properties(width=_panel_width(columns), height=RATIO_HEIGHT)
            .facet(facet=alt.Facet("Facet:N", title=None, sort=order), columns=columns,
                   title=alt.TitleParams(RATIO_TITLE,
                                         subtitle=_wrapped(note, 60) if note else []))
            .resolve_axis(x="independent"))


def compare_ratio_panels(summary: pd.DataFrame, note: str | None = None) -> Panels:
    """`compare_ratio_chart` as `Panels` for the page: one view per panel in its order,
    so the page can wrap them three a row on a wide screen and one on a narrow one."""
    f, order = _ratio_frame(summary)
    return Panels(RATIO_TITLE, [note] if note else [],
                  [_panel(_ratio_layers(f, f[f["Facet"] == p], legend=False), p, RATIO_HEIGHT)
                   for p in order],
                  _legend_chart(f, **_ratio_legends(f, True)))


def _panel_width(columns: int) -> int:
    """Width of one panel of a wrapped facet of `columns` columns that fits
    `NARROW_WIDTH` with its y-axis (labels and title) on the left."""
    return (NARROW_WIDTH - 70 - 20 * (columns - 1)) // columns


def _pareto_panels(f: pd.DataFrame) -> tuple[pd.Series, list[str]]:
    """Each row's panel label and the panels in order: dataset, then model and batch size
    in grid order. The dataset is always named (accuracies on different datasets are not
    comparable); the batch size only when the sweep has several."""
    many_batches = f["batch_size"].nunique() > 1
    label = f["Model"].astype(str) + (" · batch " + f["Batch"] if many_batches else "") \
        + " · " + f["Dataset"].astype(str)
    order = f.assign(_label=label).drop_duplicates("_label").sort_values(
        "dataset", kind="stable")["_label"].tolist()
    return label, order


PARETO_NOTE = ("Dashed: the Pareto front of each dataset, over every model, type, criterion "
               "and batch size shown for it (no point of that dataset has fewer MACs and "
               "higher accuracy), the same line in each of its panels: in a model's panel "
               "it may run where another model's points are; ringed: the points on it.")


def _pareto_frame(summary: pd.DataFrame, front: pd.Series
                  ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(the points with MACs, the data to draw: those points plus each dataset's front
    repeated under every panel of that dataset, the panels in order)."""
    f = _compare_frame(summary)
    f["On front"] = front.reindex(f.index, fill_value=False).map({True: "yes", False: "no"})
    f = f[pd.to_numeric(f["macs_mean"], errors="coerce") > 0]  # dead models: no MACs
    f["Panel"], panels = _pareto_panels(f)
    f["Layer"] = "point"
    on = f[f["On front"] == "yes"]
    lines = [on[on["dataset"] == d].assign(Panel=p, Layer="front")
             for p, d in f[["Panel", "dataset"]].drop_duplicates().itertuples(index=False)]
    data = pd.concat([f, *lines], ignore_index=True) if lines else f
    return f, data, panels


def _pareto_legends(f: pd.DataFrame, legend: bool) -> dict[str, Any]:
    """The Pareto chart's encodings that have legends (colour by criterion, shape by
    type), scales from all points `f` (see `_ratio_legends`)."""
    return {"color": _criterion_colour(f, legend, orient="bottom", columns=LEGEND_COLUMNS),
            "shape": _type_shape(f, legend)}


def _pareto_layers(f: pd.DataFrame, data: pd.DataFrame, legend: bool) -> alt.LayerChart:
    """The front line, rings and points of the Pareto chart over `data` (a panel's rows or
    all of them); x and y domains, colours and shapes from all points `f`, so separate
    panels share their axes as a facet's do."""
    macs = pd.to_numeric(f["macs_mean"])
    x = alt.X("macs_mean:Q", title="MACs per sample (log)",
              scale=alt.Scale(type="log", nice=False, padding=16,
                              domain=[float(macs.min()), float(macs.max())]))
    # inset at both ends: the best point (and its ring, and the front's last step) sat on
    # the plot's top edge, half cut off
    y = alt.Y("test_acc_mean:Q", title="Test accuracy (%)",
              scale=alt.Scale(domain=[0, float(f["test_acc_mean"].max())], padding=12))
    base = alt.Chart()
    points = base.mark_point(filled=True, size=60, opacity=0.8).encode(
        x=x, y=y, **_pareto_legends(f, legend),
        tooltip=["Model:N", "Dataset:N", "Batch:N", "Type:N", "Criterion:N",
                 alt.Tooltip("Ratio (%):Q", format=".0f"),
                 alt.Tooltip("macs_mean:Q", title="MACs", format=",.0f"),
                 alt.Tooltip("test_acc_mean:Q", title="accuracy", format=".2f"), "On front:N"]
    ).transform_filter(alt.datum.Layer == "point")
    rings = base.mark_point(shape="circle", size=190, filled=False, strokeWidth=1.5,
                            color="#333").encode(x=x, y=y).transform_filter(
        (alt.datum.Layer == "point") & (alt.datum["On front"] == "yes"))
    line = base.mark_line(color="#333", strokeDash=[4, 3], interpolate="step-after").encode(
        x=x, y=y, order="macs_mean:Q").transform_filter(alt.datum.Layer == "front")
    return alt.layer(line, rings, points, data=data)


def compare_pareto_chart(summary: pd.DataFrame, front: pd.Series) -> alt.FacetChart:
    """Accuracy against MACs per sample (log axis) for every grid point, one panel per
    model (· batch size) · dataset, so which model a point belongs to is read off its
    panel, not only on hover (one shared plot mixed MLP and CNN, both batch sizes, under
    one front). `front` marks the Pareto-optimal points, one front per dataset
    (`sweep_results.pareto_by`): each panel draws its dataset's whole front, dashed, so
    a model's points are seen against the best any model reached there; its own points
    on the front are ringed. Colour is the criterion, shape the pruning type; masks sit at
    the dense model's MACs: they buy no compute. One image at a fixed width (the PNG);
    a page shows `compare_pareto_panels`."""
    f, data, panels = _pareto_frame(summary, front)
    # two panels a row at most: three were 894 px wide in the browser, cut off in an
    # 800-px window (one column when each dataset has a single panel)
    per_dataset = max(1, len(panels) // max(1, f["dataset"].nunique()))
    columns = min(per_dataset, 2)
    return (_pareto_layers(f, data, legend=True)
            .properties(width=_panel_width(columns), height=PARETO_HEIGHT)
            .facet(facet=alt.Facet("Panel:N", title=None, sort=panels), columns=columns,
                   title=alt.TitleParams(PARETO_TITLE, subtitle=PARETO_SUBTITLE))
            .resolve_axis(x="independent"))


def compare_pareto_panels(summary: pd.DataFrame, front: pd.Series) -> Panels:
    """`compare_pareto_chart` as `Panels` for the page (see `compare_ratio_panels`)."""
    f, data, panels = _pareto_frame(summary, front)
    return Panels(PARETO_TITLE, PARETO_SUBTITLE,
                  [_panel(_pareto_layers(f, data[data["Panel"] == p], legend=False), p,
                          PARETO_HEIGHT) for p in panels],
                  _legend_chart(f, **_pareto_legends(f, True)))


def compare_batch_charts(results: pd.DataFrame, on_page: bool = False
                         ) -> tuple[alt.Chart, alt.Chart]:
    """Effect of batch size on the dense baselines: (test accuracy, training time), one
    line per model · dataset, mean over seeds. Single views, so a page can stretch each
    to its column (side by side they were 599 px wide, cut off in an 800-px window).
    `on_page`: as tall as the plot, its title, axis and legend (`PAGE_LEGEND_ROW`): at the
    PNG's height the page squeezed the plot to ~40 px and cut the title."""
    cols = ["model", "dataset", "batch_size", "seed", "dense_test_acc", "dense_train_seconds"]
    base = results[cols].drop_duplicates(["model", "dataset", "batch_size", "seed"])
    f = (base.groupby(["model", "dataset", "batch_size"], as_index=False)
         [["dense_test_acc", "dense_train_seconds"]].mean())
    f = _named_columns(f)
    f["Model"] = f["Model"] + " · " + f["Dataset"]
    x = alt.X("batch_size:Q", title="Batch size (log)",
              scale=alt.Scale(type="log", nice=False, padding=16),
              axis=alt.Axis(values=sorted(int(b) for b in f["batch_size"].unique()),
                            format="d"))  # ticks at the batch sizes of the sweep
    # one entry a row: half a narrow page has no room for two. Colours named here: left
    # to the scheme, Streamlit's theme drew the page in blues (an SLP's light blue hard to
    # see on white) and the PNG in Vega's blue and orange
    lines = sorted(f["Model"].unique())
    colour = alt.Color("Model:N", title="Model · dataset",
                       scale=alt.Scale(domain=lines, range=[
                           TABLEAU10[i % len(TABLEAU10)] for i in range(len(lines))]),
                       legend=alt.Legend(orient="bottom", direction="vertical"))
    # seconds to 3 significant digits: ".1f" showed a Digits MLP's 0.045 s as "0.0"
    tooltip = ["Model:N", "batch_size:Q",
               alt.Tooltip("dense_test_acc:Q", title="accuracy", format=".2f"),
               alt.Tooltip("dense_train_seconds:Q", title="training s", format=".3g")]
    acc = alt.Chart(f, title="Dense accuracy by batch size").mark_line(point=True).encode(
        x=x, y=alt.Y("dense_test_acc:Q", title="Test accuracy (%)"), color=colour,
        tooltip=tooltip)
    secs = alt.Chart(f, title="Dense training time by batch size").mark_line(point=True).encode(
        x=x, y=alt.Y("dense_train_seconds:Q", title="Training time (s)"), color=colour,
        tooltip=tooltip)
    plot = HEIGHT - 60
    # title and x axis (~75 px), the legend's title and one row per line
    height = plot + 75 + (1 + f["Model"].nunique()) * PAGE_LEGEND_ROW if on_page else plot
    return (acc.properties(width=WIDTH // 2 - 30, height=height),
            secs.properties(width=WIDTH // 2 - 30, height=height))


def compare_batch_chart(results: pd.DataFrame) -> alt.HConcatChart:
    """Both `compare_batch_charts` side by side, at a fixed width: the PNG download."""
    return alt.hconcat(*compare_batch_charts(results))
