"""Retention curve page under AppTest: defaults, edits, bad input, hand-over to pruning."""
from __future__ import annotations

import json

import pytest

KEPT = "% of hidden neurons kept"
STEP = "t (schedule step)"


def table(at):
    assert len(at.dataframe) == 1
    return at.dataframe[0].value


def errors(at) -> list[str]:
    return [e.value for e in at.error]


@pytest.fixture
def page(app_test):
    at = app_test()  # the app opens on the Retention curve page
    assert not at.exception
    return at


def test_app_opens_on_the_retention_page_with_the_thesis_table(page):
    assert page.title[0].value == "Retention curve"
    assert errors(page) == []
    df = table(page)
    # the thesis' schedule skips steps near its end, so the step t is shown beside Iteration
    assert list(df.columns) == ["Iteration", STEP, "Layer 1 (of 256)", "Layer 2 (of 64)", KEPT]
    assert df.iloc[0].tolist() == [0, 0, 256, 64, 100]
    assert df.iloc[7].tolist() == [7, 7, 54, 13, 20.9375]
    assert df.iloc[8].tolist() == [8, 8, 43, 11, 16.875]
    assert df.iloc[-1][["Layer 1 (of 256)", "Layer 2 (of 64)"]].tolist() == [1, 1]
    assert df["Iteration"].tolist() == list(range(len(df)))


def test_a_chosen_schedule_is_handed_to_the_pruning_page_the_defaults_are_not(page):
    """The landing page saved its defaults on every visit, so the Iterative page always
    said "Schedule taken from the Retention curve page", chosen or not."""
    assert "retention_schedule" not in page.session_state
    page.number_input(key="ret_q").set_value(0.7).run()
    assert page.session_state["retention_schedule"] == {
        "widths": [256, 64], "q": 0.7, "iterations": 31, "kind": "geometric"}
    assert any("Iterative pruning" in c.value for c in page.caption)
    page.number_input(key="ret_q").set_value(0.8).run()  # back to the defaults
    assert "retention_schedule" not in page.session_state


def test_offers_the_four_downloads(page):
    labels = [b.label for b in page.download_button]
    assert labels == ["retain.txt", "retain.csv", "pruneNodesIteration.png",
                      "pruneNodesDistribution.png"]


def test_changing_q_changes_the_table_and_the_saved_schedule(page):
    page.number_input(key="ret_q").set_value(0.5).run()
    assert not page.exception
    df = table(page)
    # 256 and 64 halved: 128/32, 64/16 … then 2/1 and 1/1 (64 * 0.5**7 = 0.5 → at least 1)
    assert df["Layer 1 (of 256)"].tolist() == [256, 128, 64, 32, 16, 8, 4, 2, 1]
    assert df["Layer 2 (of 64)"].tolist() == [64, 32, 16, 8, 4, 2, 1, 1, 1]
    assert df[KEPT].tolist()[:3] == [100, 50, 25]
    assert page.session_state["retention_schedule"]["q"] == 0.5


def test_linear_kind_and_fewer_iterations(page):
    page.radio(key="ret_kind").set_value("linear")
    page.number_input(key="ret_iterations").set_value(5).run()
    df = table(page)
    assert df["Layer 1 (of 256)"].tolist() == [256, 192, 128, 64, 1]
    assert page.session_state["retention_schedule"]["kind"] == "linear"
    assert page.session_state["retention_schedule"]["iterations"] == 5


def test_three_layers_typed_with_spaces(page):
    page.text_input(key="ret_widths").set_value("300 100   10").run()
    df = table(page)
    assert [c for c in df.columns if c.startswith("Layer")] == \
        ["Layer 1 (of 300)", "Layer 2 (of 100)", "Layer 3 (of 10)"]
    assert page.session_state["retention_schedule"]["widths"] == [300, 100, 10]


def test_wide_layers_are_headed_with_thousands_separators(downloads, page):
    """'Layer 1 (of 999999)' beside cells and tiles that write '999,999'. The CSV's
    header keeps the plain number: a comma there is one more thing to quote."""
    page.text_input(key="ret_widths").set_value("999999, 5000").run()
    assert [c for c in table(page).columns if c.startswith("Layer")] == \
        ["Layer 1 (of 999,999)", "Layer 2 (of 5,000)"]
    header = downloads["retain.csv"].decode().splitlines()[0].split(",")
    assert header[1:3] == ["Layer 1 (of 999999)", "Layer 2 (of 5000)"]


@pytest.mark.parametrize("widget,key,value,message", [
    ("number_input", "ret_q", 1.5, "q must lie strictly between 0 and 1"),
    ("number_input", "ret_q", 0.0, "q must lie strictly between 0 and 1"),
    ("number_input", "ret_iterations", 0, "iterations must be a whole number from 1 to"),
    # above the range too: a browser-side max_value kept the old table, saying nothing
    ("number_input", "ret_iterations", 100_000, "iterations must be a whole number from 1 to"),
    ("text_input", "ret_widths", "256, 0", "hidden widths must be whole numbers ≥ 1"),
    ("text_input", "ret_widths", "256, abc", "'abc' is not one"),
    ("text_input", "ret_widths", "", "e.g. 256, 64"),
])
def test_bad_input_shows_one_error_and_keeps_the_last_good_schedule(page, widget, key, value,
                                                                    message):
    page.text_input(key="ret_widths").set_value("200, 50").run()
    page.number_input(key="ret_q").set_value(0.7).run()
    getattr(page, widget)(key=key).set_value(value).run()
    assert not page.exception
    assert len(errors(page)) == 1 and message in errors(page)[0]
    assert len(page.dataframe) == 0
    assert page.session_state["retention_schedule"]["widths"] == [200, 50]
    assert page.session_state["retention_schedule"]["q"] == 0.7
    # said, not only kept: the inputs on screen are not what the Iterative page uses
    assert ("Nothing new is handed on: the Iterative pruning page still starts from the last "
            "valid schedule (geometric, widths 200, 50, q = 0.7, 31 iterations).") in errors(page)[0]


def test_a_refused_input_before_any_choice_names_the_default_schedule(page):
    """With nothing chosen yet, the Iterative page keeps its own defaults: said so."""
    page.number_input(key="ret_q").set_value(1.5).run()
    assert len(errors(page)) == 1
    assert errors(page)[0].endswith(
        "Nothing is handed on: the Iterative pruning page starts from its default schedule "
        "(geometric, widths 256, 64, q = 0.8, 31 iterations).")
    assert "retention_schedule" not in page.session_state


def test_a_ramp_s_saved_schedule_is_named_without_q(page):
    page.radio(key="ret_kind").set_value("linear")
    page.number_input(key="ret_iterations").set_value(5).run()
    page.number_input(key="ret_iterations").set_value(0).run()
    assert "still starts from the last valid schedule (linear, widths 256, 64, 5 iterations)." \
        in errors(page)[0]


def test_the_csv_download_holds_the_table_s_columns_with_the_step_t(downloads, page):
    """retain.csv lacked the table's t column: its rows could not be matched to the
    formula's step. It is now the table as shown; retain.txt keeps its fixed format."""
    import io

    import pandas as pd

    csv = pd.read_csv(io.BytesIO(downloads["retain.csv"]))
    df = table(page)
    assert list(csv.columns) == list(df.columns)
    assert STEP in csv.columns
    assert csv[STEP].tolist() == df[STEP].tolist()
    assert csv.iloc[22][["Iteration", STEP, "Layer 1 (of 256)"]].tolist() == [22, 24, 1]
    assert downloads["retain.txt"].decode().splitlines()[0] == \
        "Iteration h1NodesRetained h2NodesRetained perNodesRetained"


def test_no_number_field_has_a_bound_the_browser_would_enforce(page):
    """Past a widget's max_value the browser kept the previous number (and its table),
    with only a hover tooltip; the core judges the numbers and names the range."""
    assert [(n.key, n.min, n.max) for n in page.number_input] == [
        ("ret_q", None, None), ("ret_iterations", None, None)]


def test_page_recovers_after_bad_input(page):
    page.number_input(key="ret_q").set_value(2.0).run()
    assert errors(page)
    page.number_input(key="ret_q").set_value(0.8).run()
    assert errors(page) == []
    assert table(page).iloc[7].tolist() == [7, 7, 54, 13, 20.9375]


def test_widths_read_from_an_uploaded_checkpoint_sidecar(page):
    sidecar = {"spec": {"arch": "mlp", "in": 64, "hidden": [54, 13], "out": 10},
               "metrics": {"test_acc": 97.26}}
    page.file_uploader(key="ret_spec").set_value(
        ("best_model.json", json.dumps(sidecar).encode(), "application/json")).run()
    assert not page.exception and errors(page) == []
    assert page.text_input(key="ret_widths").value == "54, 13"
    assert table(page).iloc[0].tolist()[:2] == [0, 0]
    assert table(page).iloc[0][["Layer 1 (of 54)", "Layer 2 (of 13)", KEPT]].tolist() == \
        [54, 13, 100]
    assert page.session_state["retention_schedule"]["widths"] == [54, 13]


def test_a_conv_nets_widths_are_tabulated_but_not_handed_to_the_mlp_pruning_page(page):
    """A CNN's spec gives its conv channels, then its hidden layer: a schedule to read and
    download, but no MLP's widths. Handed on, the Iterative page prefilled "Hidden widths
    (MLP)" with 16, 32, 128 and would have trained and pruned a three-layer MLP."""
    sidecar = {"spec": {"arch": "cnn", "in_channels": 1, "image_size": 8, "out": 10,
                        "channels": [16, 32], "hidden": [128]}}
    page.file_uploader(key="ret_spec").set_value(
        ("cnn.json", json.dumps(sidecar).encode(), "application/json")).run()
    assert not page.exception and errors(page) == []
    assert page.text_input(key="ret_widths").value == "16, 32, 128"
    assert table(page).iloc[0][["Layer 1 (of 16)", "Layer 3 (of 128)"]].tolist() == [16, 128]
    assert page.session_state["retention_schedule_model"] == "cnn"
    assert any("Not handed on" in c.value and "CNN" in c.value for c in page.caption)
    page.switch_page("pages/iterative.py").run()
    assert not page.exception
    form = {w.label: w.value for w in page.text_input}
    assert form["Hidden widths (MLP)"] == "256, 64"
    assert any("this page trains MLPs" in i.value for i in page.info)
    assert not any("Schedule taken from" in i.value for i in page.info)
    # back, widths typed in: an MLP's again, handed on
    page.switch_page("pages/retention.py").run()
    assert page.text_input(key="ret_widths").value == "16, 32, 128"  # kept for this page
    page.text_input(key="ret_widths").set_value("40, 20").run()
    assert "retention_schedule_model" not in page.session_state
    assert any("Saved for this session" in c.value for c in page.caption)
    page.switch_page("pages/iterative.py").run()
    assert {w.label: w.value for w in page.text_input}["Hidden widths (MLP)"] == "40, 20"


def test_a_pruned_checkpoints_widths_are_said_to_be_pruned(page):
    """A pruned iteration's sidecar filled the box with its pruned widths (22, 11) under
    the label "Hidden widths (dense model)", without a word."""
    sidecar = {"spec": {"arch": "mlp", "in": 64, "hidden": [22, 11], "out": 10},
               "percent_retained": 34.375, "widths": [22, 11]}
    page.file_uploader(key="ret_spec").set_value(
        ("best_model.json", json.dumps(sidecar).encode(), "application/json")).run()
    assert not page.exception and errors(page) == []
    assert page.text_input(key="ret_widths").value == "22, 11"
    assert [i.value for i in page.info] == [
        "A pruned model (it kept 34.4 % of its units): these are its pruned widths, not its "
        "dense model's."]


@pytest.mark.parametrize("content,message", [
    (b"\x80\x04\x95 not json", "best_model.json is not a JSON file"),
    (json.dumps({"arch": "slp", "in": 64, "out": 10}).encode(), "no prunable layer widths"),
])
def test_unusable_upload_shows_an_error_and_keeps_the_widths(page, content, message):
    page.file_uploader(key="ret_spec").set_value(
        ("best_model.json", content, "application/json")).run()
    assert not page.exception
    assert any(message in e for e in errors(page))
    assert page.text_input(key="ret_widths").value == "256, 64"
    assert table(page).iloc[0][["Iteration", "Layer 1 (of 256)", "Layer 2 (of 64)", KEPT]
                               ].tolist() == [0, 256, 64, 100]


def test_schedule_survives_a_visit_to_the_pruning_page(page):
    page.text_input(key="ret_widths").set_value("100, 50").run()
    page.number_input(key="ret_q").set_value(0.6).run()
    page.toggle(key="ret_log").set_value(True).run()  # it came back off
    page.switch_page("pages/iterative.py").run()
    assert not page.exception
    page.switch_page("pages/retention.py").run()
    assert page.text_input(key="ret_widths").value == "100, 50"
    assert page.number_input(key="ret_q").value == 0.6
    assert page.toggle(key="ret_log").value is True
    assert table(page).iloc[1][["Iteration", "Layer 1 (of 100)", "Layer 2 (of 50)"]
                               ].tolist() == [1, 60, 30]


@pytest.mark.parametrize("iterations, shown, span", [(5, "5", "0–4"), (1, "1", "dense model only")])
def test_iteration_count_matches_retain_txt_rows_and_the_cli(page, iterations, shown, span):
    """The dense row is iteration 0 (thesis, retain.txt): 5 rows are 5 iterations, as
    `retention` on the command line prints ('wrote retain.txt (5 iterations, …')."""
    page.number_input(key="ret_iterations").set_value(iterations).run()
    assert not page.exception and errors(page) == []
    assert len(table(page)) == iterations
    metric = [m for m in page.metric if m.label == "Iterations in the table"][0]
    assert metric.value == shown
    assert span in metric.proto.help
    # whole-number ticks on the iteration axis, also when there is a single row ("0.000000")
    spec = json.loads(page.get("vega_lite_chart")[0].proto.spec)
    assert spec["encoding"]["x"]["axis"]["format"] == "d"


def test_each_row_shows_the_step_t_its_widths_come_from_and_the_caption_says_why(page):
    """With 256, 64 and q = 0.8, row 22 showed 1 neuron in layer 1 while the formula gives
    round(256 · 0.8^22) = 2: retain.txt numbers the iterations run, and two steps repeated
    the previous widths. The page now shows each row's t and says why they differ."""
    df = table(page)
    q = page.number_input(key="ret_q").value
    for _, row in df.iterrows():
        t = row[STEP]
        assert [row["Layer 1 (of 256)"], row["Layer 2 (of 64)"]] == \
            [max(1, round(256 * q ** t)), max(1, round(64 * q ** t))]
    assert df["Iteration"].tolist() == list(range(len(df)))
    first = next(i for i, t in enumerate(df[STEP]) if t != i)
    assert max(1, round(256 * q ** first)) != df.iloc[first]["Layer 1 (of 256)"]  # the report
    caption = [c.value for c in page.caption if "schedule's steps" in c.value]
    assert len(caption) == 1
    assert f"row {first} is t = {df[STEP].iloc[first]}" in caption[0]
    assert "pruning iterations actually run" in caption[0]


def test_without_skipped_steps_there_is_no_step_column(page):
    page.number_input(key="ret_iterations").set_value(5).run()
    assert STEP not in table(page).columns
    assert not [c.value for c in page.caption if "schedule's steps" in c.value]


@pytest.mark.parametrize("kind", ["linear", "cubic"])
def test_a_q_the_schedule_does_not_use_does_not_block_it(page, kind):
    """q = 5 refused the linear schedule, whose description says q is not used."""
    page.number_input(key="ret_iterations").set_value(5).run()
    page.radio(key="ret_kind").set_value(kind).run()
    expected = table(page)
    page.radio(key="ret_kind").set_value("geometric").run()
    page.number_input(key="ret_q").set_value(5.0).run()
    assert len(errors(page)) == 1 and "q must lie strictly between 0 and 1" in errors(page)[0]
    assert not page.number_input(key="ret_q").disabled
    page.radio(key="ret_kind").set_value(kind).run()  # a ramp: q is not used
    assert not page.exception and errors(page) == []
    assert table(page).equals(expected)
    assert page.number_input(key="ret_q").disabled
    assert page.session_state["retention_schedule"]["kind"] == kind


@pytest.mark.parametrize("q, iterations", [(0.999999, 31), (0.8, 1)])
def test_a_schedule_that_prunes_nothing_says_so(page, q, iterations):
    """q = 0.999999 (or one iteration) left the dense row alone in the table, and the page
    said it saved the schedule for the pruning page as for any other."""
    page.number_input(key="ret_q").set_value(q)
    page.number_input(key="ret_iterations").set_value(iterations).run()
    assert len(table(page)) == 1
    assert [w.value for w in page.warning if "prunes nothing" in w.value]
    page.number_input(key="ret_q").set_value(0.5)  # one that prunes: no warning
    page.number_input(key="ret_iterations").set_value(5).run()
    assert len(table(page)) > 1 and not [w for w in page.warning if "prunes nothing" in w.value]


def test_layers_of_one_neuron_are_named_as_why_nothing_is_pruned(page):
    """Widths 1, 1 were said to prune nothing for 'q too close to 1, or too few
    iterations', neither of which was so."""
    page.text_input(key="ret_widths").set_value("1, 1").run()
    [warning] = [w.value for w in page.warning if "prunes nothing" in w.value]
    assert "every layer has one neuron" in warning and "q too close" not in warning


def _chart_iterations(at) -> list[set[int]]:
    """The iterations each chart on the page holds in its data."""
    import pyarrow as pa

    return [{int(i) for d in chart.proto.datasets
             for i in pa.ipc.open_stream(d.data.data).read_all().column("Iteration").to_pylist()}
            for chart in at.get("vega_lite_chart")]


def test_a_very_long_schedule_draws_evenly_spaced_iterations_and_says_so(page):
    """10 000 iterations of three 999 999-neuron layers: the browser drew 30 000 points
    for 5-28 s under Streamlit's running icon. The charts now hold 500 iterations, the
    first and the last among them; the table keeps every row."""
    page.radio(key="ret_kind").set_value("linear")
    page.text_input(key="ret_widths").set_value("999999, 999999, 999999")
    page.number_input(key="ret_iterations").set_value(10_000).run()
    assert not page.exception and errors(page) == []
    assert len(table(page)) == 10_000
    iteration_chart, distribution_chart = _chart_iterations(page)
    assert len(iteration_chart) == 500 and {0, 9_999} <= iteration_chart
    assert iteration_chart <= distribution_chart and len(distribution_chart) < 600
    assert ("The charts draw 500 of the 10,000 iterations, evenly spaced from the first to the "
            "last, so that the page stays quick; the table and the downloads hold every "
            "iteration.") in [c.value for c in page.caption]


def test_a_short_schedule_draws_every_iteration(page):
    assert _chart_iterations(page)[0] == set(range(len(table(page))))
    assert not [c for c in page.caption if "The charts draw" in c.value]


def test_a_long_tables_row_count_reads_with_thousands_separators(page):
    """The tile read "7860" beside a caption that wrote the same count "7,860"."""
    page.text_input(key="ret_widths").set_value("100000")
    page.number_input(key="ret_q").set_value(0.999)
    page.number_input(key="ret_iterations").set_value(2000).run()
    assert not page.exception and errors(page) == []
    assert len(table(page)) == 2000
    metric = [m for m in page.metric if m.label == "Iterations in the table"][0]
    assert metric.value == "2,000"
