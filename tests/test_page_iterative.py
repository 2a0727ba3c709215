"""Iterative pruning page under AppTest: the set-up form, bad input, a started run, results."""
from __future__ import annotations

import json

import pytest

from explorer_core import jobs
from explorer_core.rundir import list_runs, read_status

from conftest import open_page_file, stop_through_the_page, widget


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("EXPLORER_RUNS", str(root))
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))
    yield root
    for run in list_runs(root):  # workers outlive pages by design; not a test's
        jobs.kill(run)


def open_page(app_test, state: dict | None = None):
    return open_page_file("pages/iterative.py", state)


def fill_small_run(at, name: str, criterion: str = "l1") -> None:
    widget(at.selectbox, "Criterion").set_value(criterion).run()
    widget(at.text_input, "Hidden widths (MLP)").set_value("16, 8")
    widget(at.number_input, "q (keep factor per iteration)").set_value(0.5)
    widget(at.number_input, "Schedule iterations").set_value(3)
    widget(at.number_input, "Dense epochs").set_value(10)  # 2 left it at chance (14 %)
    widget(at.number_input, "Seed").set_value(7)
    at.text_input(key="new_run_name").set_value(name)


def test_the_app_lists_the_page(app_test, runs_root):
    at = app_test("pages/iterative.py")
    assert not at.exception
    assert at.title[0].value == "Iterative pruning"


def test_defaults_are_the_thesis_settings(app_test, runs_root):
    at = open_page(app_test)
    assert at.title[0].value == "Iterative pruning"
    assert widget(at.selectbox, "Dataset").value == "digits"
    assert widget(at.selectbox, "Criterion").value == "interval_adjoint"
    assert widget(at.text_input, "Hidden widths (MLP)").value == "256, 64"
    assert widget(at.number_input, "q (keep factor per iteration)").value == 0.8
    assert widget(at.number_input, "Schedule iterations").value == 31
    assert widget(at.checkbox, "Retrain after each pruning step").value is True
    assert any("No runs yet" in i.value for i in at.info)


def test_schedule_comes_from_the_retention_page(app_test, runs_root):
    at = open_page(app_test, {"retention_schedule": {"widths": [32, 16], "q": 0.6,
                                                     "iterations": 7, "kind": "cubic"}})
    assert widget(at.text_input, "Hidden widths (MLP)").value == "32, 16"
    assert widget(at.number_input, "q (keep factor per iteration)").value == 0.6
    assert widget(at.number_input, "Schedule iterations").value == 7
    assert widget(at.selectbox, "Schedule").value == "cubic"
    assert any("Retention curve" in i.value for i in at.info)


@pytest.mark.parametrize("q, iterations", [(0.995, 31), (0.005, 31), (0.8, 600),
                                           (0.9995, 10_000)])
def test_any_schedule_the_retention_page_accepts_opens_here(app_test, runs_root, q, iterations):
    """The form once had tighter bounds (q 0.01–0.99, ≤ 500 iterations) than the Retention
    page: handing over q = 0.995 or 600 iterations replaced the whole page by a traceback."""
    at = open_page(app_test, {"retention_schedule": {"widths": [32, 16], "q": q,
                                                     "iterations": iterations,
                                                     "kind": "geometric"}})
    assert not at.exception
    assert widget(at.number_input, "q (keep factor per iteration)").value == q
    assert widget(at.number_input, "Schedule iterations").value == iterations
    assert any("No runs yet" in i.value for i in at.info)  # the page below the form is drawn


@pytest.mark.parametrize("q", [0.0, 1.0, 1.5])
def test_q_outside_zero_one_gives_one_clear_error_and_no_run(app_test, runs_root, q):
    at = open_page(app_test)
    widget(at.number_input, "q (keep factor per iteration)").set_value(q)
    widget(at.button, "Start run").click().run()
    assert not at.exception
    assert len(at.error) == 1 and "q must lie strictly between 0 and 1" in at.error[0].value
    assert list_runs(runs_root) == []


TOO_LARGE = "the MLP 64-200000-100000-10 would have 20,014,100,010 parameters"


@pytest.mark.parametrize("widths, message", [("abc", "whole numbers"),
                                             ("64, 0", "≥ 1"),
                                             # too large to build (a failed run before)
                                             ("200000, 100000", TOO_LARGE)])
def test_bad_widths_give_one_clear_error_and_no_run(app_test, runs_root, widths, message):
    at = open_page(app_test)
    widget(at.text_input, "Hidden widths (MLP)").set_value(widths)
    widget(at.button, "Start run").click().run()
    assert not at.exception
    assert len(at.error) == 1 and message in at.error[0].value, [e.value for e in at.error]
    assert list_runs(runs_root) == []


def test_a_refused_start_stays_said_through_the_reruns_after_it(app_test, runs_root):
    """Said once, the refusal vanished at the next rerun — the one a live run's end makes
    (its view reruns the page) — before it could be read. It stays until the next Start."""
    at = open_page(app_test)
    widget(at.text_input, "Hidden widths (MLP)").set_value("64, 0")
    widget(at.button, "Start run").click().run()
    assert [e.value for e in at.error if "≥ 1" in e.value] and len(at.error) == 1
    at.run()  # a rerun no Start caused
    assert len(at.error) == 1 and "≥ 1" in at.error[0].value
    fill_small_run(at, "after-refusal")
    widget(at.button, "Start run").click().run()
    assert not at.error and [r.root.name for r in list_runs(runs_root)] == ["after-refusal"]


def test_start_runs_in_the_background_and_shows_results(app_test, runs_root):
    at = open_page(app_test)
    fill_small_run(at, "apptest-run")
    assert at.session_state["new_run_form"] is True  # the first run: the form open
    widget(at.button, "Start run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    # the form closes, so the run's live status is in view
    assert at.session_state["new_run_form"] is False

    runs = list_runs(runs_root)
    assert [r.root.name for r in runs] == ["apptest-run"]
    config = json.loads(runs[0].config.read_text())
    assert (config["hidden"], config["criterion"], config["seed"], config["dense_epochs"]) == \
        ([16, 8], "l1", 7, 10)
    assert config["schedule"] == {"q": 0.5, "iterations": 3, "kind": "geometric"}
    assert read_status(runs[0])["state"] in ("queued", "running", "finished")
    assert jobs.wait(runs[0], timeout=120)["state"] == "finished"

    at.run()  # the page finds the finished run and shows its results
    assert not at.exception
    assert "apptest-run" in widget(at.selectbox, "Run").value
    # its clock stopped with the worker: how long it ran, not "Elapsed" since the start
    times = [m for m in at.metric if m.label in ("Elapsed", "Ran for")]
    assert [m.label for m in times] == ["Ran for"] and "until it ended" in times[0].help
    results = [df.value for df in at.dataframe if "test acc" in df.value.columns]
    assert len(results) == 1 and results[0]["iteration"].tolist() == [0, 1, 2]
    # the epoch chart's train accuracy (during the epoch) is not the table's (after it)
    assert any("Train is measured during each epoch" in c.value for c in at.caption)
    assert results[0]["widths"].tolist() == ["16 8", "8 4", "4 2"]
    labels = [b.label for b in at.get("download_button")]
    assert "Download validations.txt" in labels
    assert "Download checkpoint (.safetensors)" in labels
    # the recommended model is measured next to the dense one (a tolerance any pruned
    # model meets: the pick is then the smallest, never the dense model)
    widget(at.number_input, "Accuracy tolerance (points below dense)").set_value(100.0).run()
    costs = [df.value for df in at.dataframe if "metric" in df.value.columns]
    assert len(costs) == 1
    assert costs[0]["metric"].tolist()[:3] == ["parameters", "size (MB, float32)", "MACs per sample"]
    assert any("Iteration" in s.value for s in at.success)

    # the name field got a fresh default for the next run
    assert at.text_input(key="new_run_name").value != "apptest-run"
    # reusing a name is refused with a message; the finished run is untouched
    before = runs[0].validations.read_bytes()
    fill_small_run(at, "apptest-run")
    widget(at.button, "Start run").click().run()
    assert not at.exception
    assert len(at.error) == 1 and "already exists" in at.error[0].value
    assert len(list_runs(runs_root)) == 1 and runs[0].validations.read_bytes() == before


def test_the_name_typed_for_the_next_run_is_the_name_it_gets(app_test, runs_root):
    """Typing a name and pressing Start right after starting a run gave the new run a
    timestamp name instead: the fresh default waited for the next script run — the Start
    itself — and overwrote what had been typed."""
    at = open_page(app_test)
    fill_small_run(at, "name-first")
    widget(at.button, "Start run").click().run()
    assert not at.error, [e.value for e in at.error]
    fresh = at.text_input(key="new_run_name").value
    assert fresh != "name-first"  # the field shows a fresh default at once
    at.text_input(key="new_run_name").set_value("name-second")
    widget(at.button, "Start run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert sorted(r.root.name for r in list_runs(runs_root)) == ["name-first", "name-second"]


RETAIN = ("Iteration h1NodesRetained h2NodesRetained perNodesRetained\n"
          "0 16 8 100\n1 12 8 83.3333\n2 6 3 37.5\n")


def test_a_run_follows_an_uploaded_retain_txt(app_test, runs_root):
    """A hand-made table (here 16 8 → 12 8 → 6 3, no rule makes it) sets the widths of
    every iteration; the widths and schedule fields are replaced by it."""
    at = open_page(app_test)
    fill_small_run(at, "follows-table")
    at.file_uploader(key="new_run_retain").set_value(("mine.txt", RETAIN.encode(), "text/plain"))
    widget(at.button, "Start run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    run = list_runs(runs_root)[0]
    config = json.loads(run.config.read_text())
    assert config["hidden"] == [16, 8]
    assert config["schedule"] == {"kind": "table", "rows": [[16, 8], [12, 8], [6, 3]]}
    assert jobs.wait(run, timeout=120)["state"] == "finished"
    widths = [json.loads(run.best_model_json(i).read_text())["widths"] for i in range(3)]
    assert widths == [[16, 8], [12, 8], [6, 3]]


def test_the_new_run_form_is_kept_after_a_visit_to_another_page(app_test, runs_root):
    """Everything set came back as its default (an st.form's fields reach the script only
    when it is submitted), the retain.txt upload and the deploy tolerance too."""
    at = app_test("pages/iterative.py")
    widget(at.selectbox, "Criterion").set_value("l1").run()
    widget(at.text_input, "Hidden widths (MLP)").set_value("99, 9").run()
    widget(at.number_input, "q (keep factor per iteration)").set_value(0.6).run()
    widget(at.number_input, "Dense epochs").set_value(7).run()
    widget(at.selectbox, "Optimiser").set_value("sgd").run()
    at.text_input(key="new_run_name").set_value("keepme").run()
    at.file_uploader(key="new_run_retain").set_value(("mine.txt", RETAIN.encode(),
                                                      "text/plain")).run()
    assert not at.exception
    at.switch_page("pages/compare.py").run()
    at.switch_page("pages/iterative.py").run()
    assert not at.exception
    assert widget(at.selectbox, "Criterion").value == "l1"
    assert widget(at.text_input, "Hidden widths (MLP)").value == "99, 9"
    assert widget(at.number_input, "q (keep factor per iteration)").value == 0.6
    assert widget(at.number_input, "Dense epochs").value == 7
    assert widget(at.selectbox, "Optimiser").value == "sgd"
    assert at.text_input(key="new_run_name").value == "keepme"
    assert any("uploaded before: mine.txt" in c.value for c in at.caption), \
        [c.value for c in at.caption]
    # that Start then follows the kept table: test_browser_iterative (AppTest drops a
    # click made after switch_page)


def test_only_the_fields_a_run_uses_reach_it(app_test, runs_root):
    """Greyed fields still went into the run: a cubic run recorded the q typed (0.5), a
    run without retraining its retrain epochs (3); and with a retain.txt uploaded, a
    widths field it replaces blocked the start ('abc' is not a whole number)."""
    at = open_page(app_test)
    widget(at.number_input, "q (keep factor per iteration)").set_value(0.5).run()
    widget(at.number_input, "Retrain epochs per iteration").set_value(3).run()
    widget(at.selectbox, "Schedule").set_value("cubic").run()
    widget(at.checkbox, "Retrain after each pruning step").uncheck().run()
    widget(at.text_input, "Hidden widths (MLP)").set_value("16, 8").run()
    widget(at.number_input, "Schedule iterations").set_value(3).run()
    widget(at.number_input, "Dense epochs").set_value(2).run()
    at.text_input(key="new_run_name").set_value("cubic-run").run()
    widget(at.button, "Start run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    config = json.loads(list_runs(runs_root)[0].config.read_text())
    assert config["schedule"] == {"q": 0.8, "iterations": 3, "kind": "cubic"}  # the default
    assert (config["retrain"], config["retrain_epochs"]) == (False, 1)

    at = open_page(app_test)
    widget(at.text_input, "Hidden widths (MLP)").set_value("abc").run()
    widget(at.number_input, "Schedule iterations").set_value(0).run()  # out of range
    at.file_uploader(key="new_run_retain").set_value(("mine.txt", RETAIN.encode(),
                                                      "text/plain")).run()
    for greyed in (widget(at.text_input, "Hidden widths (MLP)"),
                   widget(at.selectbox, "Schedule"),
                   widget(at.number_input, "q (keep factor per iteration)"),
                   widget(at.number_input, "Schedule iterations")):
        assert greyed.disabled, greyed.label
    assert any(c.value.startswith("Following mine.txt") for c in at.caption)
    at.text_input(key="new_run_name").set_value("from-table").run()
    widget(at.button, "Start run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    [run] = [r for r in list_runs(runs_root) if r.root.name == "from-table"]
    assert json.loads(run.config.read_text())["hidden"] == [16, 8]


def test_a_schedule_made_later_on_the_retention_page_replaces_the_kept_one(app_test, runs_root):
    """Kept fields must not hide a schedule the user went on to make on the Retention page."""
    at = open_page(app_test)
    widget(at.text_input, "Hidden widths (MLP)").set_value("99, 9").run()
    widget(at.number_input, "Dense epochs").set_value(7).run()
    at.session_state["retention_schedule"] = {"widths": [32, 16], "q": 0.6, "iterations": 7,
                                              "kind": "cubic"}
    at.run()
    assert widget(at.text_input, "Hidden widths (MLP)").value == "32, 16"
    assert widget(at.selectbox, "Schedule").value == "cubic"
    assert widget(at.number_input, "Schedule iterations").value == 7
    assert widget(at.number_input, "Dense epochs").value == 7  # not part of the schedule


def test_fields_a_choice_makes_void_are_greyed(app_test, runs_root):
    """q stayed editable for a cubic schedule, which ignores it (the run recorded q 0.5
    beside a cubic table), and so did the retrain epochs with retraining off."""
    at = open_page(app_test)
    q = "q (keep factor per iteration)"
    retrain_epochs = "Retrain epochs per iteration"
    assert not widget(at.number_input, q).disabled
    assert not widget(at.number_input, retrain_epochs).disabled
    widget(at.selectbox, "Schedule").set_value("cubic").run()
    widget(at.checkbox, "Retrain after each pruning step").uncheck().run()
    assert widget(at.number_input, q).disabled
    assert widget(at.number_input, retrain_epochs).disabled
    widget(at.selectbox, "Schedule").set_value("geometric").run()
    assert not widget(at.number_input, q).disabled


@pytest.mark.parametrize("content, message", [
    (b"Iteration h1NodesRetained perNodesRetained\n0 16 100\n1 20 125\n", "cannot grow back"),
    (b"Iteration h1NodesRetained perNodesRetained\n0 16 100\n1 12.5 78\n", "not a whole number"),
    (b"a b c\n1 2 3\n", "is not a retain.txt table"),
    (b"\x80\x81PK\x03\x04", "is not a text file"),
])
def test_a_bad_retain_txt_gets_one_message_and_no_run(app_test, runs_root, content, message):
    at = open_page(app_test)
    at.file_uploader(key="new_run_retain").set_value(("bad.txt", content, "text/plain"))
    widget(at.button, "Start run").click().run()
    assert not at.exception
    assert len(at.error) == 1 and message in at.error[0].value, [e.value for e in at.error]
    assert "bad.txt" in at.error[0].value
    assert list_runs(runs_root) == []


EPS = "Interval-adjoint ε (0 = box around the training set)"
PER_CLASS = "Interval-adjoint per-class seeds"


def test_interval_adjoint_options_reach_the_run_and_are_left_out_for_other_criteria(
        app_test, runs_root):
    """DESIGN §4's IASA options (ε-boxes, per-class seeds) reach an interval-adjoint run.
    For any other criterion they were sent too, and refused ("criterion option eps
    applies to interval_adjoint only, not to l1"): an ε kept from an earlier run blocked
    every L1 run until reset by hand. Now they are disabled, with a hint, and not sent."""
    at = open_page(app_test)
    fill_small_run(at, "eps-iasa", "interval_adjoint")
    assert not widget(at.number_input, EPS).disabled and not widget(at.checkbox, PER_CLASS).disabled
    widget(at.number_input, EPS).set_value(0.05)
    widget(at.checkbox, PER_CLASS).check()
    widget(at.button, "Start run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    run = list_runs(runs_root)[0]
    assert json.loads(run.config.read_text())["criterion_options"] == {"eps": 0.05,
                                                                      "per_class": True}

    # the next run, with L1: ε and per-class keep their values but are off, and say why
    fill_small_run(at, "eps-l1")  # criterion l1
    assert widget(at.number_input, EPS).value == 0.05 and widget(at.checkbox, PER_CLASS).value
    assert widget(at.number_input, EPS).disabled and widget(at.checkbox, PER_CLASS).disabled
    assert any("options of the interval-adjoint criterion" in c.value for c in at.caption)
    widget(at.button, "Start run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    l1 = next(r for r in list_runs(runs_root) if r.root.name == "eps-l1")
    config = json.loads(l1.config.read_text())
    assert config["criterion"] == "l1" and config["criterion_options"] == {}
    for r in list_runs(runs_root):
        assert jobs.wait(r, timeout=120)["state"] == "finished"


def test_a_dense_model_that_did_not_learn_gets_no_recommendation(app_test, runs_root):
    """SGD at learning rate 10 diverges: the dense model guesses (11.14 % on Digits), yet a
    pruned one 0.56 points "above" it was recommended in a green success box. Now the
    page says the dense model did not learn, why nothing can be recommended, and the
    run's settings to check; no success box, no cost table, no checkpoint download."""
    from explorer_core.experiment import RunConfig, create_run
    from explorer_core.results import iteration_rows, learned_threshold

    cfg = RunConfig(name="diverged", dataset="digits", hidden=[64, 32], criterion="l1",
                    schedule={"q": 0.6, "iterations": 3, "kind": "geometric"},
                    optimizer="sgd", lr=10.0, dense_epochs=2, batch_size=64, seed=0)
    paths = create_run(cfg, runs_root)
    jobs.launch(paths)
    assert jobs.wait(paths, timeout=120)["state"] == "finished"
    rows = iteration_rows(paths)
    assert rows[0].test_acc < learned_threshold(10)  # the setting really diverges

    at = open_page(app_test)
    assert not at.exception
    assert not at.success, [s.value for s in at.success]
    warnings = [w.value for w in at.warning if "did not learn" in w.value]
    assert len(warnings) == 1
    assert f"{rows[0].test_acc:.2f} %" in warnings[0]
    assert "optimiser sgd, learning rate 10" in warnings[0]
    assert not [df for df in at.dataframe if "metric" in df.value.columns]
    labels = [b.label for b in at.get("download_button")]
    assert "Download checkpoint (.safetensors)" not in labels
    assert "Download validations.txt" in labels  # the results themselves are still there


def test_a_truncated_checkpoint_is_not_offered_to_deploy(app_test, runs_root, monkeypatch,
                                                         tmp_path):
    """The deploy pick offered a cut-off best_model.safetensors and its download; now the
    next pick that loads is offered, with a warning naming the iteration to redo, and
    with no file left that loads nothing is offered. The app runs from another folder
    here: its "Open on the Inspect page" looked for pages/inspect.py in the working
    folder and was missing."""
    monkeypatch.chdir(tmp_path)
    from explorer_core.experiment import RunConfig, create_run
    from explorer_core.results import iteration_rows

    cfg = RunConfig(name="cut", dataset="digits", hidden=[16, 8], criterion="l1", retrain=False,
                    schedule={"q": 0.5, "iterations": 3, "kind": "geometric"}, dense_epochs=3,
                    batch_size=64, seed=0)
    paths = create_run(cfg, runs_root)
    jobs.launch(paths)
    assert jobs.wait(paths, timeout=120)["state"] == "finished"
    rows = iteration_rows(paths)
    data = rows[2].checkpoint.read_bytes()
    rows[2].checkpoint.write_bytes(data[:100])

    at = open_page(app_test)
    widget(at.number_input, "Accuracy tolerance (points below dense)").set_value(100.0).run()
    assert not at.exception
    assert any(s.value.startswith("Iteration 1: ") for s in at.success), \
        [s.value for s in at.success]
    warned = [w.value for w in at.warning if "does not load" in w.value]
    assert len(warned) == 1 and "iteration 2: best_model.safetensors" in warned[0]
    assert "Restart the run from iteration 2" in warned[0]
    downloads = {b.label: b for b in at.get("download_button")}
    assert "Download checkpoint (.safetensors)" in downloads
    assert [b for b in at.button if b.label == "Open on the Inspect page"]

    for row in rows[:2]:
        row.checkpoint.write_bytes(b"")
    at.run()
    assert not at.exception
    assert any(e.value.startswith("No checkpoint to deploy") for e in at.error)
    assert "Download checkpoint (.safetensors)" not in [b.label for b in at.get("download_button")]


def _vega_specs(at) -> list[str]:
    return [el.proto.spec for el in at.get("vega_lite_chart")]


def test_dense_only_run_kept_epoch_and_concatenate_feedback(app_test, runs_root):
    """A run whose only model is the dense one: the deploy pick says so plainly (no
    dense-vs-dense timing), the epoch charts mark the kept epoch, and writing the
    concatenated results names the files written."""
    from explorer_core.experiment import RunConfig, create_run

    cfg = RunConfig(name="dense-only", dataset="digits", hidden=[16, 8],
                    schedule={"q": 0.5, "iterations": 1, "kind": "geometric"}, criterion="l1",
                    dense_epochs=3, batch_size=64, seed=1)
    paths = create_run(cfg, runs_root)
    jobs.launch(paths)  # a worker process, as the page starts it (its pid is killed after)
    assert jobs.wait(paths, timeout=120)["state"] == "finished"

    at = open_page(app_test)
    assert not at.exception
    # 3. the kept epoch is marked on the epoch charts and explained in a caption
    specs = _vega_specs(at)
    assert sum("epoch saved" in s and "strokeDash" in s for s in specs) == 2
    assert any("the one kept (lowest validation loss)" in c.value for c in at.caption)
    # 2. the dense model is the pick: said plainly, no ratio of two timings of it
    assert any("Deploy the dense model itself" in i.value for i in at.info), \
        [i.value for i in at.info]
    assert not [s.value for s in at.success if "points above" in s.value]
    assert not [df for df in at.dataframe if "metric" in df.value.columns]
    # 4. writing the concatenated results says what was written
    widget(at.button, "Write concatenated results").click().run()
    assert not at.exception
    assert any("validations.txt, accuracies.png, losses.png" in s.value for s in at.success), \
        [s.value for s in at.success]
    assert paths.validations.is_file()


def test_an_iteration_cut_short_is_not_said_to_have_kept_an_epoch(app_test, runs_root):
    """After a Stop in iteration 6 the chart ringed epoch 32 as "the one kept … the
    results table and the deploy pick report the kept epoch" — none of which had it."""
    import shutil

    from explorer_core.experiment import RunConfig, create_run, execute
    from explorer_core.rundir import write_status

    cfg = RunConfig(name="cut-short", dataset="digits", hidden=[16, 8], criterion="l1",
                    schedule={"q": 0.5, "iterations": 3, "kind": "geometric"},
                    dense_epochs=2, retrain_epochs=3, batch_size=64, seed=1)
    paths = create_run(cfg, runs_root)
    assert execute(paths)["state"] == "finished"
    shutil.rmtree(paths.root / "2")  # as if stopped during iteration 2's retraining
    for written_at_the_end in (paths.validations, paths.accuracies_png, paths.losses_png):
        written_at_the_end.unlink()
    lines = paths.events.read_text().splitlines()
    paths.events.write_text("".join(f"{line}\n" for line in lines if not (
        json.loads(line).get("type") == "iteration" and json.loads(line)["iteration"] == 2)))
    write_status(paths, "stopped", iteration=2, message="stopped by request")

    at = open_page(app_test)
    assert not at.exception
    assert not any("the one kept" in c.value for c in at.caption)
    assert any("Iteration 2 did not finish, so no model of it was kept" in c.value
               for c in at.caption)
    assert not any("epoch saved" in s for s in _vega_specs(at))
    # the bar counts the epochs kept, and says the cut-short ones are trained again
    bar = at.get("progress")[0].proto.text
    assert "epoch 5/8 · 3 epochs of the unfinished iteration, shown below, are trained " \
           "again on resume" in bar, bar
    # no concatenated results until asked for: said, where the downloads were just missing
    assert any("This stopped run has no validations.txt, accuracies.png or losses.png yet"
               in c.value for c in at.caption), [c.value for c in at.caption]
    # a resume goes on without a tick; one from an earlier iteration redoes finished ones,
    # and is a Restart (it stayed "Resume" while discarding them)
    labels = [b.label for b in at.button]
    assert "Resume" in labels and not [c for c in at.checkbox if c.label.startswith("Discard")]
    widget(at.number_input, "Resume from iteration").set_value(1).run()
    assert "Restart" in [b.label for b in at.button] and "Resume" not in \
        [b.label for b in at.button]
    assert widget(at.checkbox, "Discard iteration 1 (checkpoints and results) to redo it")


def test_a_finished_run_offers_a_restart_from_an_earlier_iteration_not_a_resume(app_test,
                                                                                 runs_root):
    """A run ended by its stopping rule showed "finished" beside Resume, which went on
    past the rule; now only a redo from an earlier iteration is offered."""
    from explorer_core.experiment import RunConfig, create_run, execute

    cfg = RunConfig(name="ended", dataset="digits", hidden=[16, 8], criterion="l1",
                    schedule={"q": 0.3, "iterations": 6, "kind": "geometric"}, retrain=False,
                    max_drop=0.0, dense_epochs=3, batch_size=64, seed=1)
    paths = create_run(cfg, runs_root)
    status = execute(paths)
    assert status["state"] == "finished" and "points below" in status["message"]
    done = len(paths.completed_iterations())

    at = open_page(app_test)
    assert not at.exception
    labels = [b.label for b in at.button]
    assert "Restart" in labels and "Resume" not in labels
    restart = widget(at.number_input, "Restart from iteration")
    assert restart.value == done - 1
    # what a restart deletes is said and ticked off first: one click on Restart from 0
    # discarded a finished run's every iteration
    discard = widget(at.checkbox, f"Discard iteration {done - 1} (checkpoints and results) "
                                  f"to redo it")
    assert next(b for b in at.button if b.label == "Restart").disabled
    discard.check().run()
    assert not next(b for b in at.button if b.label == "Restart").disabled
    widget(at.number_input, "Restart from iteration").set_value(0).run()
    assert widget(at.checkbox, f"Discard iterations 0–{done - 1} (checkpoints and results) "
                               f"to redo them").value is False
    assert next(b for b in at.button if b.label == "Restart").disabled
    restart = widget(at.number_input, "Restart from iteration")
    restart.set_value(done).run()  # continuing past the rule: refused, visibly
    assert [e.value for e in at.error] == [
        f"Restart from iteration must be a whole number from 0 to {done - 1:,}, got {done:,}"]
    assert next(b for b in at.button if b.label == "Restart").disabled


def test_a_restart_refused_for_an_edited_config_says_so_and_leaves_the_run_finished(
        app_test, runs_root):
    """Restart launched a worker that refused the edited config.json: the finished run
    turned "failed", its Restart became a Resume past the schedule's end. The page now
    refuses before launching anything."""
    from explorer_core.experiment import RunConfig, create_run, execute

    cfg = RunConfig(name="edited", dataset="digits", hidden=[16, 8], criterion="l1",
                    schedule={"q": 0.5, "iterations": 3, "kind": "geometric"}, retrain=False,
                    dense_epochs=1, batch_size=64, seed=1)
    paths = create_run(cfg, runs_root)
    assert execute(paths)["state"] == "finished"
    before = read_status(paths)
    config = json.loads(paths.config.read_text())
    config["lr"] = 0.01
    paths.config.write_text(json.dumps(config))

    at = open_page(app_test)
    next(c for c in at.checkbox if c.label.startswith("Discard iteration")).check().run()
    next(b for b in at.button if b.label == "Restart").click().run()
    assert not at.exception
    assert any("config.json was edited" in e.value and "lr" in e.value for e in at.error), \
        [e.value for e in at.error]
    after = read_status(paths)
    assert after["state"] == "finished" and after == before
    assert not paths.log.exists()  # no worker was launched


def test_a_hand_edited_status_file_does_not_take_the_run_list_down(app_test, runs_root):
    """`[1, 2]` in one run's status.json put an exception on the page for every run."""
    from explorer_core.experiment import RunConfig, create_run

    healthy = create_run(RunConfig(name="healthy", hidden=[16]), runs_root)
    edited = create_run(RunConfig(name="edited", hidden=[16]), runs_root)
    edited.status.write_text("[1, 2]")
    edited.events.write_bytes(b"42\n\xff\n")
    at = open_page(app_test)
    assert not at.exception
    for run in (healthy, edited):
        widget(at.selectbox, "Run").set_value(str(run.root)).run()
        assert not at.exception


def test_the_stop_toast_is_drawn_by_the_fragment_not_by_its_callback(runs_root):
    """Each Stop logged "A fragment rerun was triggered with a callback that displays one
    or more elements … not officially supported": the toast was drawn in the button's
    on_click callback, inside the live view's fragment. The toast still appears."""
    import logging

    from explorer_core.experiment import RunConfig, create_run
    from explorer_core.rundir import RunLock, write_status

    class Recorder(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages: list[str] = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    paths = create_run(RunConfig(name="toast", hidden=[16, 8], criterion="l1"), runs_root)
    recorder = Recorder()
    log = logging.getLogger("streamlit")
    log.addHandler(recorder)
    try:
        with RunLock(paths):
            write_status(paths, "running", iteration=0, message="training the dense model")
            at = open_page_file("pages/iterative.py")
            # what a resume keeps is said before the click, not after it
            assert "the one under way (the dense training, at first) is trained again" in \
                widget(at.button, "Stop").help
            widget(at.button, "Stop").click().run()
            assert not at.exception
            toasts = [t.value for t in at.toast]
            assert any("Stop requested: the run stops at the next batch" in t for t in toasts)
            assert widget(at.button, "Stopping…").disabled
            at.run()  # the next poll: the toast is not shown again
            assert not [t.value for t in at.toast if "Stop requested" in t.value]
            write_status(paths, "stopped", message="stopped by request")

        # a worker that stops before the click's rerun: that rerun draws no Stop button
        # (the run has ended), and the toast still shows
        request_stop = jobs.request_stop

        def stop_at_once(run):
            request_stop(run)
            write_status(run, "stopped", message="stopped by request")

        paths.stop_request.unlink()  # as a launch does
        with RunLock(paths):
            write_status(paths, "running", iteration=0, message="training the dense model")
            at = open_page_file("pages/iterative.py")
            try:
                jobs.request_stop = stop_at_once
                widget(at.button, "Stop").click().run()
            finally:
                jobs.request_stop = request_stop
            assert not at.exception
            assert "Resume" in [b.label for b in at.button]
            assert widget(at.number_input, "Resume from iteration").value == 0
            assert any("Stop requested" in t.value for t in at.toast)
    finally:
        log.removeHandler(recorder)
    assert not [m for m in recorder.messages if "fragment rerun" in m], recorder.messages


def test_stop_reads_stopping_and_is_disabled_until_the_worker_has_stopped(runs_root):
    """After Stop the page went on showing "running" beside an active Stop button for
    seconds (the worker finishes its batch first), with only a toast to say the click
    counted. The button now reads "Stopping…" and is disabled until the run has stopped."""
    from explorer_core.experiment import RunConfig, create_run

    paths = create_run(RunConfig(name="to-stop", hidden=[16, 8], criterion="l1"), runs_root)
    stop_through_the_page("pages/iterative.py", paths, iteration=0,
                          message="training the dense model")


def test_a_run_whose_worker_died_says_so_and_shows_its_last_output(app_test, runs_root):
    """A run whose worker died read "interrupted" and nothing more: the reason, if any,
    was in worker.log, which the page never showed."""
    from explorer_core.experiment import RunConfig, create_run
    from explorer_core.rundir import INTERRUPTED_MESSAGE, write_status

    cfg = RunConfig(name="died", dataset="digits", hidden=[16, 8], criterion="l1",
                    schedule={"q": 0.5, "iterations": 3}, dense_epochs=2, seed=1)
    paths = create_run(cfg, runs_root)
    write_status(paths, "running", iteration=0, message="")  # and no worker holds the run
    paths.log.write_text("run folder: x\n\rdense 1/2\rdense 2/2\n"
                         "Fatal Python error: Segmentation fault\n")

    at = open_page(app_test)
    assert not at.exception
    assert any("interrupted" in s.value for s in at.subheader)
    assert any(c.value == INTERRUPTED_MESSAGE for c in at.caption)
    assert [e.label for e in at.expander if "Worker log" in e.label]
    shown = [c.value for c in at.code if "Fatal Python error" in c.value]
    assert shown == ["run folder: x\ndense 2/2\nFatal Python error: Segmentation fault"], shown
