"""Retention charts: what they plot, and their offline PNG export."""
from __future__ import annotations

import pytest

from explorer_core.charts import (chart_png_bytes, retention_distribution_chart,
                                  retention_iteration_chart, save_retention_pngs)
from explorer_core.schedule import ScheduleConfig, retention_table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chart_values(spec: dict) -> list[dict]:
    """The inline data rows of a chart spec (Altair puts them in top-level datasets)."""
    datasets = spec["datasets"]
    assert len(datasets) == 1
    return next(iter(datasets.values()))


def scales(spec: dict) -> list[dict]:
    layers = spec.get("layer", [spec])
    return [enc["scale"] for layer in layers for enc in layer.get("encoding", {}).values()
            if isinstance(enc, dict) and "scale" in enc]


@pytest.fixture(scope="module")
def thesis():
    return retention_table(ScheduleConfig((256, 64), 0.8, 31))


def test_iteration_chart_has_one_point_per_layer_and_iteration(thesis):
    spec = retention_iteration_chart(thesis).to_dict()
    rows = chart_values(spec)
    assert len(rows) == 2 * len(thesis)
    kept = {(r["Iteration"], r["Layer"]): r["Neurons kept"] for r in rows}
    assert kept[(7, "h1 (256)")] == 54 and kept[(7, "h2 (64)")] == 13
    assert {r["Layer"] for r in rows} == {"h1 (256)", "h2 (64)"}
    assert spec["encoding"]["x"]["field"] == "Iteration"
    assert spec["encoding"]["y"]["field"] == "Neurons kept"


def test_iteration_chart_log_scale_option(thesis):
    assert all(s.get("type") != "log" for s in scales(retention_iteration_chart(thesis).to_dict()))
    assert any(s.get("type") == "log"
               for s in scales(retention_iteration_chart(thesis, log_scale=True).to_dict()))


def xy_fields(layer_spec: dict) -> tuple[str, str]:
    enc = layer_spec["encoding"]
    return enc["x"]["field"], enc["y"]["field"]


def test_distribution_chart_plots_layer_1_against_layer_2(thesis):
    spec = retention_distribution_chart(thesis).to_dict()
    rows = chart_values(spec)
    assert [(r["h1"], r["h2"]) for r in rows][7:9] == [(54, 13), (43, 11)]
    line, labels = spec["layer"]
    assert xy_fields(line) == ("h1", "h2")
    assert labels["mark"]["type"] == "text"
    assert labels["encoding"]["text"]["field"] == "Iteration"


def test_distribution_chart_uses_first_two_of_three_layers():
    table = retention_table(ScheduleConfig((300, 100, 10), 0.7, 31))
    spec = retention_distribution_chart(table).to_dict()
    assert xy_fields(spec["layer"][0]) == ("h1", "h2")


def test_distribution_chart_for_one_layer_plots_width_vs_percent():
    table = retention_table(ScheduleConfig((100,), 0.8, 31))
    spec = retention_distribution_chart(table).to_dict()
    assert xy_fields(spec["layer"][0]) == ("% of hidden neurons kept", "h1")


def test_chart_png_bytes_is_a_png(thesis):
    assert chart_png_bytes(retention_iteration_chart(thesis))[:8] == PNG_SIGNATURE


def test_save_retention_pngs_writes_both_files_and_nothing_else(tmp_path, thesis):
    paths = save_retention_pngs(thesis, tmp_path / "plots")
    assert [p.name for p in paths] == ["pruneNodesIteration.png", "pruneNodesDistribution.png"]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == \
        ["pruneNodesDistribution.png", "pruneNodesIteration.png"]
    for p in paths:
        assert p.read_bytes()[:8] == PNG_SIGNATURE


def label_positions(spec: dict) -> list[tuple[float, float]]:
    """Where the distribution chart's labelled points sit, each axis scaled to 0-1 as
    drawn (log axes)."""
    import math

    rows = chart_values(spec)
    xs, ys = [math.log(r["h1"]) for r in rows], [math.log(r["h2"]) for r in rows]
    fx = lambda v: (v - min(xs)) / (max(xs) - min(xs))  # noqa: E731
    fy = lambda v: (v - min(ys)) / (max(ys) - min(ys))  # noqa: E731
    assert spec["layer"][1]["transform"] == [{"filter": "datum.Labelled"}]
    return [(fx(x), fy(y)) for x, y, r in zip(xs, ys, rows) if r["Labelled"]]


@pytest.mark.parametrize("widths, q, iterations", [((256, 64), 0.8, 31),
                                                    ((100000, 50000), 0.999, 10000)])
def test_distribution_labels_do_not_pile_up(widths, q, iterations):
    """Every point carried its iteration: the late, small widths piled their labels up
    ("22 2120 19 18 17"), and 5 946 rows drew a black band. Labelled points keep a gap
    of a few percent of the plot; the last iteration is always named."""
    import altair as alt

    table = retention_table(ScheduleConfig(widths, q, iterations))
    with alt.data_transformers.disable_max_rows():  # as the page and the PNG draw it
        spec = retention_distribution_chart(table).to_dict()
    points = label_positions(spec)
    assert chart_values(spec)[-1]["Labelled"]
    gaps = [((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) ** 0.5
            for i, a in enumerate(points) for b in points[:i]]
    assert min(gaps) >= 0.075
    assert 5 <= len(points) < len(table)  # thinned, not emptied


def test_a_short_schedule_labels_every_point():
    table = retention_table(ScheduleConfig((64, 32), 0.5, 4))
    rows = chart_values(retention_distribution_chart(table).to_dict())
    assert [r["Labelled"] for r in rows] == [True] * len(table)


@pytest.mark.parametrize("layers", [2, 6, 12])
def test_the_iteration_chart_grows_with_its_legend_on_a_page(layers):
    """A page fits the whole chart, legend included, into the chart's height: six layers
    left a 60-px plot and twelve a flat line. Past ten layers the colours are twenty (the
    eleventh repeated the first); a PNG keeps the plot's height."""
    table = retention_table(ScheduleConfig(tuple([64] * layers), 0.8, 5))
    page = retention_iteration_chart(table, on_page=True).to_dict()
    png = retention_iteration_chart(table).to_dict()
    rows = -(-layers // 2)  # two legend entries a row
    assert page["height"] - png["height"] == (rows - 1) * 30
    colours = page["encoding"]["color"]["scale"]["scheme"]
    assert colours == ("tableau10" if layers <= 10 else "tableau20")


def test_wide_layers_are_named_with_thousands_separators():
    """'h1 (999999)' and 'Layer 1 neurons kept (of 999999)' beside axis ticks that write
    '999,999'; at 800 px the long title ran past the chart's edge, and a legend of two
    columns cut off the second layer."""
    table = retention_table(ScheduleConfig((999999, 5000), 0.5, 3))
    spec = retention_iteration_chart(table, on_page=True).to_dict()
    assert {r["Layer"] for r in chart_values(spec)} == {"h1 (999,999)", "h2 (5,000)"}
    assert spec["encoding"]["color"]["legend"]["columns"] == 1
    line = retention_distribution_chart(table).to_dict()["layer"][0]
    assert line["encoding"]["x"]["title"] == "Layer 1 (of 999,999)"
    assert line["encoding"]["y"]["title"] == "Layer 2 (of 5,000)"


def test_narrow_layer_names_share_a_legend_row(thesis):
    spec = retention_iteration_chart(thesis, on_page=True).to_dict()
    assert spec["encoding"]["color"]["legend"]["columns"] == 2
