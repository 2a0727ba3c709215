"""Charts as drawn: rendered offline by vl-convert into Vega's scenegraph (the positions
of every mark, axis label and panel header), so a test sees what a person sees — a
curve leaving its plot, a tick label at the edge, which panel a point is drawn in."""
from __future__ import annotations

import itertools

import pandas as pd
import pytest
import vl_convert as vlc

from explorer_core import charts
from explorer_core.labels import named
from explorer_core.sweep_results import pareto_by, pareto_mask


def drawn(chart, **config) -> tuple[dict, list[dict]]:
    """(the scenegraph, every item of every mark with its absolute x, y and its mark's
    type, role and name). `config` is merged into the chart's config, as a host's theme
    would be (Streamlit draws charts without padding)."""
    spec = chart.to_dict()
    spec["config"] = {**spec.get("config", {}), **config}
    graph = vlc.vegalite_to_scenegraph(spec)
    items: list[dict] = []

    def walk(mark: dict, ox: float, oy: float) -> None:
        for item in mark.get("items", []):
            items.append({**item, "marktype": mark.get("marktype"), "role": mark.get("role"),
                          "name": mark.get("name") or "", "ax": ox + item.get("x", 0),
                          "ay": oy + item.get("y", 0),
                          "ay2": oy + item["y2"] if "y2" in item else None})
            if mark.get("marktype") == "group":
                for child in item.get("items", []):
                    walk(child, ox + item.get("x", 0), oy + item.get("y", 0))

    walk(graph["scenegraph"], 0, 0)
    return graph, items


# ------------------------------------------------------------------ train-time curves

LABELS = {"importance": "contribution-pruned", "random": "random-pruned", "none": "no pruning"}


def _epochs(metric: str, start: float, end: float, seeds=(0, 1, 2), epochs: int = 12) -> list[dict]:
    """A curve that moves fast over the first epochs (as training does) and slowly after
    the prunes, where the variants part; seeds spread the values into a band."""
    rows = []
    for variant, seed, epoch in itertools.product(LABELS, seeds, range(1, epochs + 1)):
        value = end + (start - end) * 0.5 ** (epoch - 1)
        value += (0.02 * (end - start)) * seed + (0.03 * (start - end) * (epoch - 4)
                                                  if variant != "none" and epoch > 4 else 0)
        rows.append({"variant": variant, "seed": seed, "epoch": epoch, metric: value})
    return rows


def _plot_box(items: list[dict]) -> tuple[float, float]:
    """Top and bottom of the plotting area (the layer's cell group)."""
    frame = next(i for i in items if i["marktype"] == "group" and i["role"] == "frame")
    return frame["ay"], frame["ay"] + frame["height"]


@pytest.mark.parametrize("task, metrics", [
    ("classifier", {"test_acc": (20.0, 97.0), "test_loss": (2.3, 0.1)}),
    ("vae", {"test_recon": (60.0, 24.0), "test_kl": (0.5, 1.6), "test_loss": (61.0, 26.0)}),
])
def test_train_time_curves_show_every_epoch_and_band_in_their_plot(task, metrics):
    """The accuracy axis began near 91 %, so epochs 1–6 left the plot (losses and the
    VAE's reconstruction and −ELBO off its top), on the page and in the PNG alike: the
    axis spanned only the epochs after the first prune."""
    per_metric = [_epochs(metric, start, end) for metric, (start, end) in metrics.items()]
    epochs = [{k: v for row in rows for k, v in row.items()} for rows in zip(*per_metric)]
    made = charts.train_time_charts(task, epochs, [], LABELS, prune_points=[4, 6, 8, 10])
    curves = [name for name, *_ in charts.TRAIN_TIME_CURVES[task]]
    assert len(curves) == len(metrics)
    for name in curves:
        _, items = drawn(made[name])
        top, bottom = _plot_box(items)
        marks = [i for i in items if i["role"] == "mark" and i["marktype"] in
                 ("line", "symbol", "area")]
        kinds = {i["marktype"] for i in marks}
        assert kinds == {"line", "symbol", "area"}, (name, kinds)  # points and seed bands
        points = [i for i in marks if i["marktype"] == "symbol"]
        assert len(points) == 3 * 12, name  # a point per variant and epoch, none dropped
        ys = [i["ay"] for i in marks] + [i["ay2"] for i in marks if i["ay2"] is not None]
        assert top - 0.5 <= min(ys) and max(ys) <= bottom + 0.5, (name, min(ys), max(ys),
                                                                   top, bottom)


def _x_axis_range(chart) -> list[str]:
    """What the drawn SVG says each x axis spans ("… with values from 1 to 30")."""
    import re

    svg = vlc.vegalite_to_svg(chart.to_dict())
    return re.findall(r"X-axis titled 'Epoch' for a linear scale with values from (\d+ to \d+)",
                      svg)


@pytest.mark.parametrize("epochs", [12, 30])
def test_train_time_charts_span_the_first_epoch_to_the_last(epochs):
    """A 30-epoch run's charts began at epoch 0, which no run has: Vega rounded the axis
    to "nice" ticks (a 12-epoch run's began at 1)."""
    rows = _epochs("test_acc", 20.0, 97.0, seeds=(0,), epochs=epochs)
    for row in rows:
        row["widths"], row["layers"] = [20, 10], ["fc1", "fc2"]
    made = charts.train_time_charts("classifier", rows, [], LABELS, prune_points=[4, 8])
    assert _x_axis_range(made["accuracy"]) == [f"1 to {epochs}"]
    assert set(_x_axis_range(made["widths"])) == {f"1 to {epochs}"}


def test_a_run_under_way_draws_its_epoch_axes_to_its_last_epoch():
    """A 300-epoch run stopped at epoch 156 ended its axes at the last prune drawn."""
    rows = _epochs("test_acc", 20.0, 97.0, seeds=(0,), epochs=12)
    for row in rows:
        row["widths"], row["layers"] = [20, 10], ["fc1", "fc2"]
    made = charts.train_time_charts("classifier", rows, [], LABELS, prune_points=[4, 8],
                                    last_epoch=30)
    assert _x_axis_range(made["accuracy"]) == ["1 to 30"]
    assert set(_x_axis_range(made["widths"])) == {"1 to 30"}


def test_a_seed_under_way_is_drawn_apart_from_the_mean_of_the_finished_ones():
    """Seed 1 stopped at epoch 3 of 6: the mean line was of seeds 0 and 1 up to epoch 3
    and of seed 0 alone after it, a step that was a change of seeds, not training."""
    done = [r for r in _epochs("test_acc", 20.0, 97.0, seeds=(0,), epochs=6)]
    under_way = [r for r in _epochs("test_acc", 30.0, 90.0, seeds=(1,), epochs=6)
                 if r["epoch"] <= 3]
    mean, partial = charts._epoch_means(done + under_way, "test_acc", LABELS)
    seed0 = {(LABELS[r["variant"]], r["epoch"]): r["test_acc"] for r in done}
    assert len(mean) == 3 * 6 and set(mean["Seeds"]) == {1}
    assert {(v, e): x for v, e, x in zip(mean["Variant"], mean["Epoch"], mean["Value"])} == seed0
    assert sorted(zip(partial["Variant"], partial["Seed"], partial["Epoch"])) == sorted(
        (LABELS[r["variant"]], 1, r["epoch"]) for r in under_way)
    chart = charts.train_time_curve_chart(done + under_way, "test_acc", "Test accuracy (%)",
                                          "t", LABELS)
    _, items = drawn(chart)
    dashed = [i for i in items if i["role"] == "mark" and i["marktype"] == "line"
              and i.get("strokeDash")]
    assert len(dashed) == len(under_way)  # the seed under way: its epochs, dashed


def test_variants_a_step_apart_while_their_first_seed_runs_are_each_a_mean_line():
    """The variants train interleaved, epoch by epoch: one can be at epoch 7 while the
    others are at 6. Each is judged by its own last epoch, so none of them is a seed
    "under way" beside its own mean."""
    rows = [r for r in _epochs("test_acc", 20.0, 97.0, seeds=(0,), epochs=7)
            if r["variant"] == "importance" or r["epoch"] <= 6]
    mean, partial = charts._epoch_means(rows, "test_acc", LABELS)
    assert partial.empty and len(mean) == 7 + 6 + 6


def test_the_legend_lists_only_the_variants_a_run_has():
    """A run of the criterion-pruned variant alone listed random-pruned and no pruning too."""
    rows = [r for r in _epochs("test_acc", 20.0, 97.0, seeds=(0,), epochs=6)
            if r["variant"] == "importance"]
    chart = charts.train_time_charts("classifier", rows, [], LABELS)["accuracy"].to_dict()
    colours = [layer["encoding"]["color"]["scale"]["domain"] for layer in chart["layer"]
               if "color" in layer.get("encoding", {})]
    assert colours and all(domain == ["contribution-pruned"] for domain in colours)


def test_the_batch_size_charts_name_their_colours_so_page_and_png_agree():
    """Left to the colour scheme, the page (Streamlit's theme) drew MLP and SLP in two
    blues and the PNG (Vega's scheme) in blue and orange."""
    rows = pd.DataFrame([{"model": m, "dataset": "digits", "batch_size": b, "seed": 0,
                          "dense_test_acc": 90.0 + b / 100, "dense_train_seconds": 1.0}
                         for m in ("slp", "mlp") for b in (32, 256)])
    scales = [chart.to_dict()["encoding"]["color"].get("scale")
              for chart in (*charts.compare_batch_charts(rows, on_page=True),
                            *charts.compare_batch_charts(rows))]
    # every chart names the same colour for each line, whatever theme draws it
    assert scales[0] is not None and all(s == scales[0] for s in scales), scales
    assert scales[0]["domain"] == ["MLP · Digits", "SLP · Digits"]
    assert len(set(scales[0]["range"])) == 2 and all(c.startswith("#") for c in scales[0]["range"])


# ------------------------------------------------------------------ compare: Pareto chart

def _summary() -> pd.DataFrame:
    """Two models, two batch sizes, two datasets; Fashion-MNIST accuracies lower than
    Digits' at every cost, the CNN more accurate per MAC than the MLP."""
    rows = []
    for model, dataset, batch in itertools.product(["mlp", "cnn"], ["digits", "fashion_mnist"],
                                                   [64, 256]):
        dense = {"mlp": 20000, "cnn": 90000}[model]
        for ratio, kind in itertools.product([0.0, 0.5, 0.9], ["neuron", "weight"]):
            macs = dense if kind == "weight" else dense * (1 - ratio)
            acc = 95 - 40 * ratio ** 2 - (25 if dataset == "fashion_mnist" else 0) \
                + (3 if model == "cnn" else 0) - (1 if batch == 256 else 0) \
                - (5 if kind == "weight" else 0) * ratio
            rows.append({"model": model, "dataset": dataset, "batch_size": batch,
                         "type": kind, "criterion": "l1" if kind == "neuron" else "magnitude",
                         "ratio": ratio, "n": 1, "status": "ok", "test_acc_mean": acc,
                         "test_acc_std": None, "macs_mean": float(macs)})
    return pd.DataFrame(rows)


def test_a_pareto_front_per_dataset_never_lets_one_dataset_dominate_another():
    """Accuracies on different test sets are not comparable: over both, Digits' points hid
    every Fashion-MNIST point from the front."""
    summary = _summary()
    fashion = summary["dataset"] == "fashion_mnist"
    assert not pareto_mask(summary)[fashion].any()  # one front over both: none of them
    front = pareto_by(summary)
    for dataset, rows in summary.groupby("dataset"):
        assert front[rows.index].tolist() == pareto_mask(rows).tolist(), dataset
        assert front[rows.index].any()


def test_accuracy_vs_macs_draws_each_model_in_its_own_panel_with_its_datasets_front():
    """MLP and CNN, both batch sizes, shared one plot and one front; the model showed only
    on hover. Now a panel per model · batch size · dataset, headed so, and each panel
    draws the front of its own dataset."""
    summary = _summary()
    front = pareto_by(summary)
    chart = charts.compare_pareto_chart(summary, front)
    _, items = drawn(chart)
    titles = [i for i in items if i["role"] == "title-text" and i["text"]]
    assert [t["text"] for t in titles if t["text"] == "Accuracy vs compute"]
    cells = [i for i in items if i["marktype"] == "group" and i["name"] == "cell"]
    shown = named(summary)  # panels are headed by name: 'CNN · batch 64 · Fashion-MNIST'
    wanted = {f"{m} · batch {b} · {d}" for m, b, d in
              shown[["model", "batch_size", "dataset"]].drop_duplicates().itertuples(index=False)}
    assert len(cells) == len(wanted)
    seen = set()
    for cell in cells:
        # the panel's header: the title just above it
        above = [t for t in titles if cell["ax"] <= t["ax"] <= cell["ax"] + cell["width"]
                 and t["ay"] < cell["ay"]]
        header = max(above, key=lambda t: t["ay"])["text"]
        seen.add(header)
        model, batch, dataset = header.split(" · ")
        mine = summary[(shown["model"] == model) & (shown["dataset"] == dataset)
                       & (summary["batch_size"] == int(batch.split()[1]))]
        marks = {m.get("name", ""): m.get("items", []) for m in cell["items"]}
        points = next(v for k, v in marks.items() if k.endswith("layer_2_marks"))
        assert len(points) == len(mine), header  # this panel's grid points, and only them
        line = next(v for k, v in marks.items() if k.endswith("layer_0_marks"))
        # the dashed line: its dataset's front, whichever model's points make it
        assert len(line) == int((front & (shown["dataset"] == dataset)).sum()), header
    assert seen == wanted
    # and the chart says what the front is over
    # the line in a model's panel may be another model's front: the subtitle says whose
    assert "each dataset's Pareto front over all its models, the same line in each of its " \
        "panels" in " ".join(chart.title.subtitle)


def test_the_best_point_and_its_ring_lie_inside_the_pareto_plot():
    """The y axis ended at the best accuracy: the ringed best point sat on the top edge,
    half outside the plot, and the front's last step ran off it."""
    import math

    summary = _summary()
    for panel in charts.compare_pareto_panels(summary, pareto_by(summary)).panels:
        _, items = drawn(panel)
        top, bottom = _plot_box(items)
        marks = [i for i in items if i["marktype"] == "symbol" and i["role"] == "mark"]
        assert marks
        for m in marks:  # a symbol's size is its area in px²
            radius = math.sqrt(m.get("size", 0) / math.pi)
            assert top <= m["ay"] - radius and m["ay"] + radius <= bottom, (m["ay"], radius)


def test_compare_charts_name_models_datasets_types_and_criteria_not_their_ids():
    """Panels read 'cnn · fashion_mnist', columns 'neuron' and the legend 'l1' — the
    ids of the files. A supervisor reads names; the ids are left to the CSV."""
    summary = _summary()
    ratio = charts.compare_ratio_chart(summary)
    pareto = charts.compare_pareto_chart(summary, pareto_by(summary))
    batch = charts.compare_batch_chart(summary.assign(
        seed=0, dense_test_acc=summary["test_acc_mean"], dense_train_seconds=1.0))
    for chart in (ratio, pareto, batch):
        _, items = drawn(chart)
        texts = {i["text"] for i in items if i.get("role") in ("title-text", "legend-label")
                 and isinstance(i.get("text"), str)}
        assert not {t for t in texts for raw in ("fashion_mnist", "cnn", "mlp", "digits")
                    if raw in t.split(" · ")}, texts
        assert any("Fashion-MNIST" in t for t in texts), texts
    _, items = drawn(ratio)
    texts = {i["text"] for i in items if isinstance(i.get("text"), str)}
    # a panel per model · dataset and type, headed with all three (wrapped two a row)
    assert {"CNN · Fashion-MNIST · Neuron", "MLP · Digits · Weight"} <= texts
    assert {"L1 norm of weights", "Weight magnitude"} <= texts  # the criterion legend


def _fitted(chart, width: int) -> list[dict]:
    """The items of `chart` drawn as a page draws it: the whole chart, title and legend
    included, fitted into its width and height (Vega-Lite's "fit" autosize)."""
    spec = chart.to_dict()
    spec.update(width=width, autosize={"type": "fit", "contains": "padding"})
    items: list[dict] = []

    def walk(mark: dict, oy: float) -> None:
        for item in mark.get("items", []):
            items.append({**item, "marktype": mark.get("marktype"), "role": mark.get("role"),
                          "ay": oy + item.get("y", 0)})
            if mark.get("marktype") == "group":
                for child in item.get("items", []):
                    walk(child, oy + item.get("y", 0))

    walk(vlc.vegalite_to_scenegraph(spec)["scenegraph"], 0)
    return items


@pytest.mark.parametrize("lines", [1, 2, 5])
def test_the_batch_size_charts_keep_their_plot_on_a_page(lines):
    """Drawn at the PNG's height, a page fitted title, axis and legend into it: the plot
    was ~40 px high, its axis ticks gone, and the title cut off above the chart."""
    models = ["mlp", "cnn", "slp", "resnet18", "vgg16_bn"][:lines]
    results = pd.DataFrame([{"model": m, "dataset": "digits", "batch_size": b, "seed": 0,
                             "dense_test_acc": 90.0 - i - b / 100,
                             "dense_train_seconds": 1.0 + b / 100}
                            for i, m in enumerate(models) for b in (32, 256)])
    for chart in charts.compare_batch_charts(results, on_page=True):
        items = _fitted(chart, 440)
        top, bottom = _plot_box(items)
        assert bottom - top >= charts.HEIGHT - 80, (lines, top, bottom)


# ------------------------------------------------------------------ inspect: top-k

def test_topk_probability_axis_keeps_its_last_label_inside_the_chart():
    """Streamlit draws charts without padding: the "1.0" of the probability axis, flush
    with the plot's right edge, was cut by its column's edge."""
    rows = [{"rank": r, "class_index": c, "class": str(c), "probability": p}
            for r, (c, p) in enumerate([(9, 0.94), (5, 0.03), (7, 0.02), (8, 0.007)], 1)]
    graph, items = drawn(charts.topk_chart(rows, title="Top 4 classes"), padding=0)
    labels = [i for i in items if i["role"] == "axis-label"
              and i.get("align") in ("right", "center", "left") and i["text"] == "1.0"]
    assert len(labels) == 1
    label = labels[0]
    # a right-aligned label ends at its x; a centred one half its width later (~9 px)
    end = graph["origin"][0] + label["ax"] + (0 if label["align"] == "right" else 9)
    assert graph["width"] - end >= 10, (graph["width"], end)


def test_epoch_charts_draw_the_validation_curve_that_decides_the_kept_epoch():
    """The kept epoch is the one of lowest validation loss, but only train and test were
    drawn: a reader could not check the choice the dashed line marks."""
    from explorer_core.training import kept_epoch

    epochs = [{"iteration": 1, "epoch": e, "train_loss": tl, "val_loss": vl, "test_loss": te,
               "train_acc": 90.0 + e, "val_acc": va, "test_acc": 80.0 + e}
              for e, tl, vl, te, va in [(1, 0.9, 0.50, 0.6, 85.0), (2, 0.5, 0.30, 0.4, 88.0),
                                        (3, 0.3, 0.45, 0.35, 87.0)]]
    kept = kept_epoch(epochs)
    assert kept == 2
    for chart, column in ((charts.epoch_loss_chart(epochs, kept), "val_loss"),
                          (charts.epoch_accuracy_chart(epochs, kept), "val_acc")):
        spec = chart.to_dict()
        datasets = list(spec["datasets"].values())
        lines = next(d for d in datasets if any("Series" in row for row in d))
        validation = [(r["epoch"], r["Value"]) for r in lines if r["Series"] == "validation"]
        assert validation == [(e["epoch"], e[column]) for e in epochs]
        assert sorted({r["Series"] for r in lines}) == ["test", "train", "validation"]
        ring = next(d for d in datasets if any("Kept" in row for row in d))
        assert ring[0]["epoch"] == 2


# Streamlit's categorical palette, as its theme hands it to a chart on the page
STREAMLIT_CATEGORY = {"range": {"category": ["#0068c9", "#83c9ff", "#ff2b2b", "#ffabab"]}}


def _split_colours(chart, **config) -> dict[str, str]:
    """{legend label: the colour its lines are drawn in} as rendered."""
    _, items = drawn(chart, **config)
    symbols = [i["stroke"] for i in items if i["role"] == "legend-symbol"]
    labels = [i["text"] for i in items if i["role"] == "legend-label"]
    lines = {i["stroke"] for i in items if i["marktype"] == "line" and i["role"] == "mark"}
    assert set(symbols) == lines  # the legend tells the lines apart
    return dict(zip(labels, symbols))


def test_a_split_has_its_colour_on_the_page_in_the_png_and_on_every_chart():
    """The page drew test light blue (Streamlit's palette) where the downloaded
    accuracies.png (vl-convert, Vega's palette) drew it orange; and test took the third
    colour beside a validation curve but the second without one."""
    iterations = [{"percent_retained": p, "train_acc": a, "test_acc": a - 3, "train_loss": 0.1,
                   "test_loss": 0.2} for p, a in [(100, 95.0), (50, 93.0), (25, 90.0)]]
    epochs = [{"iteration": 1, "epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e,
               "test_loss": 1.2 / e, "train_acc": 90.0 + e, "val_acc": 89.0 + e,
               "test_acc": 88.0 + e} for e in (1, 2, 3)]
    seen = []
    for chart in (charts.iteration_accuracy_chart(iterations),
                  charts.iteration_loss_chart(iterations), charts.epoch_accuracy_chart(epochs)):
        png, page = _split_colours(chart), _split_colours(chart, **STREAMLIT_CATEGORY)
        assert page == png
        seen.append(png)
    assert seen[0] == seen[1] == {k: seen[2][k] for k in ("train", "test")}
    assert len(set(seen[2].values())) == 3


@pytest.mark.parametrize("kind", ["ratio", "pareto", "widths"])
def test_multi_panel_charts_fit_the_main_column_of_an_800_px_window(kind):
    """Faceted charts keep the width they are built with (Vega-Lite cannot stretch them
    to a column): at 800 px (a 468-px main column) the ratio grid with a column per
    type, the Pareto panels three a row and the train-time panels ran past the page's
    edge. Drawn offline they now fit `NARROW_WIDTH`, with four types and four panels a
    dataset (the browser test checks the page itself)."""
    summary = _summary()
    four = pd.concat([summary, summary.assign(type="unstructured"),
                      summary[summary["model"] == "cnn"].assign(type="structured")],
                     ignore_index=True)
    if kind == "ratio":
        chart = charts.compare_ratio_chart(four, "The 0 % points are the dense models as "
                                                 "trained; fine-tuning starts from them.")
    elif kind == "pareto":
        chart = charts.compare_pareto_chart(four, pareto_by(four))
    else:
        epochs = [dict(e, layers=["fc1", "fc2"], widths=[50 - e["epoch"], 30 - e["epoch"]])
                  for e in _epochs("test_acc", 20.0, 97.0)]
        chart = charts.train_time_widths_chart(epochs, LABELS)
    graph, _ = drawn(chart, padding=0)
    assert graph["width"] <= charts.NARROW_WIDTH, graph["width"]


@pytest.mark.parametrize("kind", ["ratio", "pareto"])
def test_compare_panels_are_one_view_each_with_shared_scales_and_one_legend(kind):
    """A faceted chart cannot stretch: sized for an 800-px window, its panels were 175 px
    wide on a 1400-px screen. The page now wraps one view per panel; drawn apart, each
    panel's colours (and dashes, shapes) must still mean the same, so their domains are
    the whole sweep's, and the legends are drawn once, in their own chart."""
    summary = _summary()
    if kind == "ratio":
        panels = charts.compare_ratio_panels(summary, "a note")
        faceted = charts.compare_ratio_chart(summary, "a note")
        wanted = summary.groupby(["model", "dataset", "type"]).ngroups
        assert panels.subtitle == ["a note"] and panels.title == charts.RATIO_TITLE
    else:
        panels = charts.compare_pareto_panels(summary, pareto_by(summary))
        faceted = charts.compare_pareto_chart(summary, pareto_by(summary))
        wanted = summary.groupby(["model", "dataset", "batch_size"]).ngroups
    assert len(panels.panels) == wanted
    encodings = ("color", "strokeDash", "shape")
    domains = []
    for panel in panels.panels:
        spec = panel.to_dict()
        assert spec["width"] + charts.Y_AXIS_ROOM == charts.PANEL_WIDTH
        assert "facet" not in spec and panel.description  # one view, headed by the page
        found = {k: e["scale"]["domain"] for layer in spec["layer"]
                 for k, e in layer["encoding"].items() if k in encodings}
        assert all(e.get("legend", "none") is None for layer in spec["layer"]
                   for k, e in layer["encoding"].items() if k in encodings)
        domains.append(found)
    assert domains[0]["color"] == ["L1 norm of weights", "Weight magnitude"]
    assert all(d == domains[0] for d in domains)  # one meaning of a colour everywhere
    legend = panels.legend.to_dict()["encoding"]
    assert {k: legend[k]["scale"]["domain"] for k in domains[0]} == domains[0]
    # the PNG (one faceted image) uses the same scales
    facet_layers = faceted.to_dict()["spec"]["layer"]
    assert {k: e["scale"]["domain"] for layer in facet_layers
            for k, e in layer["encoding"].items() if k in encodings} == domains[0]
    # titles and texts read by name, as on the faceted chart
    assert any("Fashion-MNIST" in p.description for p in panels.panels)


def test_a_wrapped_facet_draws_every_x_axis_under_its_own_panel():
    """Three panels two a row: the PNG drew the top-right panel without x labels and a
    bare x axis under the empty fourth slot (a wrapped facet's shared footer axes)."""
    summary = _summary()
    three = summary[~((summary["model"] == "cnn") & (summary["dataset"] == "fashion_mnist"))
                    & (summary["batch_size"] == 64)]
    ratio = charts.compare_ratio_chart(three[three["type"] == "neuron"])  # 3 panels
    digits = summary[(summary["dataset"] == "digits") & (summary["batch_size"] == 64)]
    models = pd.concat([digits, digits[digits["model"] == "mlp"].assign(model="slp")],
                       ignore_index=True)
    pareto = charts.compare_pareto_chart(models, pareto_by(models))  # 3 panels, 2 a row
    for chart, title in ((ratio, "Pruned (%)"), (pareto, "MACs per sample (log)")):
        _, items = drawn(chart)
        frames = [i for i in items if i["marktype"] == "group" and i["name"] == "cell"]
        assert len(frames) == 3, len(frames)
        titles = [i for i in items if i.get("role") == "axis-title" and i.get("text") == title]
        assert len(titles) == len(frames), [(t["ax"], t["ay"]) for t in titles]
        for t in titles:  # each under a panel, within 60 px of its bottom edge
            assert any(f["ax"] <= t["ax"] <= f["ax"] + f["width"]
                       and 0 < t["ay"] - (f["ay"] + f["height"]) < 60 for f in frames), t
