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
