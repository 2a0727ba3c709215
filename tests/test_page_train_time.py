"""Train-time pruning page under AppTest: defaults, per-model form, bad input, a run, results."""
from __future__ import annotations

import json

import pytest

from explorer_core import jobs
from explorer_core.data import list_datasets
from explorer_core.rundir import default_train_time_root, list_train_time_runs, read_status

from conftest import open_page_file, stop_through_the_page, widget


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_RUNS", str(tmp_path / "runs"))
    root = default_train_time_root()
    yield root
    for run in list_train_time_runs(root):  # workers outlive pages by design; not a test's
        jobs.kill(run)


def open_page(state: dict | None = None):
    return open_page_file("pages/train_time.py", state)


def start(at) -> None:
    widget(at.button, "Start comparison").click().run()
    assert not at.exception, at.exception


def test_the_app_lists_the_page_in_the_compare_section(runs_root):
    from streamlit.testing.v1 import AppTest

    from conftest import APPTEST_TIMEOUT_S, ROOT

    # AppTest finds a page only after a first run of app.py has registered the navigation
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=APPTEST_TIMEOUT_S).run()
    at.switch_page("pages/train_time.py").run()
    assert not at.exception
    assert at.title[0].value == "Train-time pruning"
    source = (ROOT / "app.py").read_text()
    section = source[source.index('"Compare": ['):source.index('"Inspect":')]
    # url_path = file name: a deep link on a fresh server must find the page (see
    # test_browser_retention's deep-link test)
    assert 'url_path="train_time"' in section and 'title="Train-time pruning"' in section


def test_defaults_are_a_quick_digits_mlp_comparison(runs_root):
    at = open_page()
    assert widget(at.radio, "Model").value == "mlp"
    assert widget(at.selectbox, "Dataset").value == "digits"
    assert widget(at.text_input, "Hidden widths").value == "50, 30"
    assert widget(at.selectbox, "Criterion").value == "contribution"
    assert widget(at.number_input, "Removed per prune (% of each hidden layer)").value == 10.0
    assert (widget(at.number_input, "Total epochs").value,
            widget(at.number_input, "Initial epochs before the first prune").value,
            widget(at.number_input, "Prune every k epochs").value) == (30, 10, 3)
    assert widget(at.checkbox, "Also run random pruning").value is True
    assert widget(at.checkbox, "Also run without pruning").value is True
    assert widget(at.text_input, "Seeds").value == "0"
    assert any("No comparisons yet" in i.value for i in at.info)
    # datasets that are not on disk are named with their reason instead of being offered
    offered = widget(at.selectbox, "Dataset").options
    for info, ok, reason in list_datasets():
        assert (info.title in offered) == ok, (info.title, offered)
        assert ok or any(reason in c.value for c in at.caption), reason


def test_the_form_follows_the_model(runs_root):
    at = open_page()
    assert not [w for w in at.text_input if w.label == "Conv channels"]
    widget(at.radio, "Model").set_value("cnn").run()
    assert widget(at.text_input, "Hidden widths").value == "128"
    assert widget(at.text_input, "Conv channels").value == "16, 32"
    widget(at.radio, "Model").set_value("vae").run()
    assert widget(at.text_input, "Hidden widths").value == "256"
    assert widget(at.number_input, "Latent size").value == 20
    assert widget(at.selectbox, "Criterion").options == [
        "Contribution (|a| × outgoing |W|)", "L1 norm of weights", "L2 norm of weights"]


@pytest.mark.parametrize("field, value, message", [
    ("Hidden widths", "50, x", "whole numbers"),
    ("Hidden widths", "50, 0", "≥ 1"),
    ("Hidden widths", "200000, 100000",  # a failed run before
     "the MLP 64-200000-100000-10 would have 20,014,100,010 parameters"),
    ("Seeds", "0, 0", "seeds must be distinct"),
    ("Seeds", "", "enter seeds as whole numbers separated by commas, e.g. 0, 1, 2"),
    ("Run name", "no spaces please", "run name must be"),
])
def test_bad_input_gives_one_clear_error_and_no_run(runs_root, field, value, message):
    at = open_page()
    widget(at.text_input, field).set_value(value)
    start(at)
    assert len(at.error) == 1 and message in at.error[0].value, [e.value for e in at.error]
    assert "\n" not in at.error[0].value
    assert list_train_time_runs(runs_root) == []


@pytest.mark.parametrize("field, value, message", [
    ("Batch size", 0, "Batch size must be a whole number from 1 to 100,000, got 0"),
    ("Total epochs", 1, "Total epochs must be a whole number from 2 to 10,000, got 1"),
    ("Removed per prune (% of each hidden layer)", 100.0,
     "Removed per prune (% of each hidden layer) must be between 0.5 and 99, got 100"),
])
def test_a_number_out_of_range_gets_one_clear_error_and_no_run(runs_root, field, value,
                                                              message):
    """With browser-side bounds, Start did nothing and said nothing: Streamlit kept the
    previous number and only a hover tooltip told why."""
    at = open_page()
    number = widget(at.number_input, field)
    assert number.min is None and number.max is None  # no bound the browser enforces
    number.set_value(value)
    start(at)
    assert [e.value for e in at.error] == [message]
    assert list_train_time_runs(runs_root) == []


def test_initial_epochs_must_leave_training_after_the_first_prune(runs_root):
    at = open_page()
    widget(at.number_input, "Total epochs").set_value(4)
    widget(at.number_input, "Initial epochs before the first prune").set_value(4)
    start(at)
    assert len(at.error) == 1 and "must be fewer than the total epochs" in at.error[0].value


def test_start_runs_in_the_background_and_shows_results(runs_root):
    at = open_page()
    widget(at.text_input, "Hidden widths").set_value("16, 8")
    widget(at.number_input, "Total epochs").set_value(4)
    widget(at.number_input, "Initial epochs before the first prune").set_value(2)
    widget(at.number_input, "Prune every k epochs").set_value(1)
    widget(at.number_input, "Removed per prune (% of each hidden layer)").set_value(25.0)
    widget(at.selectbox, "Criterion").set_value("l1")
    widget(at.text_input, "Seeds").set_value("3, 4")
    at.text_input(key="tt_name").set_value("apptest-tt")
    start(at)
    assert not at.error, [e.value for e in at.error]

    runs = list_train_time_runs(runs_root)
    assert [r.root.name for r in runs] == ["apptest-tt"]
    config = json.loads(runs[0].config.read_text())
    assert (config["hidden"], config["criterion"], config["seeds"], config["epochs"],
            config["prune_fraction"], config["variants"]) == \
        ([16, 8], "l1", [3, 4], 4, 0.25, ["importance", "random", "none"])
    assert config["latent"] is None  # the VAE's setting: a classifier has none
    assert read_status(runs[0])["state"] in ("queued", "running", "finished")
    assert jobs.wait(runs[0], timeout=120)["state"] == "finished"

    at.run()  # the page finds the finished run and shows its results
    assert not at.exception
    assert "apptest-tt" in widget(at.selectbox, "Comparison").value
    # its clock stopped with the worker: how long it ran, not "Elapsed" since the start
    times = [m for m in at.metric if m.label in ("Elapsed", "Ran for")]
    assert [m.label for m in times] == ["Ran for"] and "until it ended" in times[0].help
    # its settings by the names the pickers use, not the ids ("on digits · criterion l1")
    assert "MLP 16, 8 on Digits · 4 epochs · 2 prunes of 25 % (after epochs 2, 3) · " \
           "criterion L1 norm of weights · seeds 3, 4" in [c.value for c in at.caption]
    summary = [df.value for df in at.dataframe if "mean test accuracy (%)" in df.value.columns]
    assert len(summary) == 1
    assert summary[0]["variant"].tolist() == ["l1-pruned", "random-pruned", "no pruning"]
    assert summary[0]["hidden units"].tolist() == [13.0, 13.0, 24.0]  # 16,8 → 12,6 → 9,4 (half to even)
    finals = [df.value for df in at.dataframe if "checkpoint" in df.value.columns]
    assert len(finals) == 1 and finals[0]["widths"].tolist() == ["9 4"] * 4 + ["16 8"] * 2
    labels = [b.label for b in at.get("download_button")]
    for name in ("accuracy.png", "loss.png", "widths.png", "sizes.png",
                 "Checkpoint (.safetensors)", "Model spec (.json)"):
        assert name in labels, labels
    # hand-over to the Inspect page
    widget(at.selectbox, "Final model").set_value(4).run()
    widget(at.button, "Open on the Inspect page").click().run()
    assert at.session_state["inspect_checkpoint"].endswith("variants/none/seed3/"
                                                           "final_model.safetensors")
    # the name field got a fresh default; reusing a name is refused with a message
    assert at.text_input(key="tt_name").value != "apptest-tt"
    at.text_input(key="tt_name").set_value("apptest-tt")
    start(at)
    assert len(at.error) == 1 and "already exists" in at.error[0].value


def test_the_name_typed_for_the_next_run_is_the_name_it_gets(runs_root):
    """As on the Iterative page: 'tt3' typed right after a start became tt-<timestamp>."""
    at = open_page()
    widget(at.number_input, "Total epochs").set_value(3)
    widget(at.number_input, "Initial epochs before the first prune").set_value(1)
    at.text_input(key="tt_name").set_value("tt-first")
    start(at)
    assert not at.error, [e.value for e in at.error]
    at.text_input(key="tt_name").set_value("tt-second")
    start(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert sorted(r.root.name for r in list_train_time_runs(runs_root)) == ["tt-first",
                                                                              "tt-second"]


def test_a_vae_run_shows_reconstructions_and_samples(runs_root):
    at = open_page({"tt_model": "vae"})
    widget(at.text_input, "Hidden widths").set_value("32")
    assert widget(at.number_input, "Latent size").value == 20  # the VAE's default
    widget(at.number_input, "Latent size").set_value(4)
    widget(at.number_input, "Total epochs").set_value(3)
    widget(at.number_input, "Initial epochs before the first prune").set_value(1)
    widget(at.checkbox, "Also run random pruning").set_value(False)
    at.text_input(key="tt_name").set_value("apptest-vae")
    start(at)
    assert not at.error, [e.value for e in at.error]
    run = list_train_time_runs(runs_root)[0]
    assert json.loads(run.config.read_text())["latent"] == 4
    assert jobs.wait(run, timeout=120)["state"] == "finished"
    at.run()
    assert not at.exception
    assert len(at.image) == 4  # reconstructions and samples of two variants
    labels = [b.label for b in at.get("download_button")]
    # "PNG" under each captioned picture ('reconstructions.png' was cut at 800 px)
    helps = sorted(b.proto.help.split(" as ")[0] for b in at.get("download_button")
                   if b.label == "PNG")
    assert helps == ["Download the reconstructions"] * 2 + ["Download the samples"] * 2, helps
    for name in ("reconstruction.png", "kl.png", "elbo.png", "widths.png"):
        assert name in labels, labels
    assert not [b for b in at.button if b.label == "Open on the Inspect page"]
    assert any("Inspect page" in c.value for c in at.caption)


def test_stop_reads_stopping_and_is_disabled_until_the_worker_has_stopped(runs_root):
    """After Stop the page went on showing "running" beside an active Stop button for
    seconds (the worker finishes its batch first), with only a toast to say the click
    counted. The button now reads "Stopping…" and is disabled until the run has stopped."""
    from explorer_core.train_time import TrainTimeConfig, create_run

    paths = create_run(TrainTimeConfig(name="to-stop"))
    stop_through_the_page("pages/train_time.py", paths, message="seed 0")


def test_a_resume_that_redoes_a_seed_says_so_and_its_count_does_not_fall(runs_root):
    """After Resume the bar went from '23 of 40 epochs · now seed 1, epoch 3' to '20 of 40
    · now seed 0, epoch 8' (seed 0 long saved): the resumed run recomputes seed 1 from
    its start. The stopped page now says Resume will, the running one holds the count
    and says which seed it is on and why it starts over."""
    import re

    from explorer_core.rundir import RunLock, read_events, write_status
    from explorer_core.train_time import TrainTimeConfig, create_run, execute

    cfg = TrainTimeConfig(name="redo", dataset="digits", hidden=[20, 12], epochs=5,
                          initial_epochs=2, prune_every=2, prune_fraction=0.25, seeds=[0, 1],
                          variants=["importance", "none"])
    paths = create_run(cfg, runs_root)
    seen = {"epochs": 0}

    def count(event: dict) -> None:
        seen["epochs"] += event["type"] == "epoch"

    assert execute(paths, should_stop=lambda: seen["epochs"] >= 13,
                   on_event=count)["state"] == "stopped"
    epochs = [e for e in read_events(paths) if e["type"] == "epoch"]
    last = max(e["epoch"] for e in epochs if e["seed"] == 1)

    def bar(at) -> str:
        return at.get("progress")[0].proto.text

    at = open_page()
    assert not at.exception
    stopped_text = bar(at)
    assert f"stopped in seed 1, epoch {last}" in stopped_text
    assert any("Resume keeps the saved seeds and trains seed 1 again from its first epoch"
               in c.value for c in at.caption)
    before = re.match(r"(\d+) of (\d+) epochs", stopped_text).groups()

    # what a poll sees just after the resumed worker dropped seed 1's epochs and trained
    # its first one again (the worker's own status fields, its lock held)
    seen["epochs"] = 0
    assert execute(paths, should_stop=lambda: seen["epochs"] >= 2,
                   on_event=count)["state"] == "stopped"
    with RunLock(paths):
        write_status(paths, "running")
        at = open_page()
        assert not at.exception
        text = bar(at)
        assert re.match(r"(\d+) of (\d+) epochs", text).groups() == before
        assert "now seed 1, epoch 1" in text and "seed 0" not in text
        assert any("Seed 1 restarted from its first epoch" in c.value for c in at.caption)
        write_status(paths, "stopped")


def test_prunes_that_remove_nothing_are_said_to(runs_root):
    """99 % per prune read "5 prunes of 99 %", though prunes 2–5 left 1·1 at 1·1."""
    from explorer_core.train_time import TrainTimeConfig, create_run

    create_run(TrainTimeConfig(name="floor", dataset="digits", hidden=[50, 30], epochs=6,
                               initial_epochs=1, prune_every=1, prune_fraction=0.99), runs_root)
    at = open_page()
    assert not at.exception
    assert any("5 prunes of 99 % (after epochs 1, 2, 3, 4, 5; from the one after epoch 2 on, "
               "none removes a unit: the layers stay at 1·1)" in c.value for c in at.caption)
    listed = next(df.value for df in at.dataframe if "run" in df.value.columns)
    assert listed["model"].tolist() == ["MLP"]  # it said "classifier", as for a CNN


def test_the_new_comparison_form_is_kept_after_a_visit_to_another_page(app_test, runs_root):
    """It came back with every default (an st.form's fields reach the script only on
    Start). Fields every model has stay when the model changes; widths are the model's."""
    at = app_test("pages/train_time.py")
    widget(at.text_input, "Hidden widths").set_value("40, 20").run()
    widget(at.number_input, "Total epochs").set_value(9).run()
    widget(at.text_input, "Seeds").set_value("3, 4").run()
    widget(at.checkbox, "Also run random pruning").uncheck().run()
    at.text_input(key="tt_name").set_value("kept-tt").run()
    widget(at.radio, "Model").set_value("cnn").run()
    assert widget(at.text_input, "Hidden widths").value == "128"  # the CNN's default
    assert widget(at.number_input, "Total epochs").value == 9
    at.switch_page("pages/retention.py").run()
    at.switch_page("pages/train_time.py").run()
    assert not at.exception
    assert widget(at.radio, "Model").value == "cnn"
    widget(at.radio, "Model").set_value("mlp").run()
    assert widget(at.text_input, "Hidden widths").value == "40, 20"
    assert widget(at.number_input, "Total epochs").value == 9
    assert widget(at.text_input, "Seeds").value == "3, 4"
    assert widget(at.checkbox, "Also run random pruning").value is False
    assert at.text_input(key="tt_name").value == "kept-tt"


def test_a_cnn_runs_settings_and_sizes_name_its_channels(runs_root):
    """'CNN (LeNet-style) 128 on Digits' left out the conv channels that are pruned too,
    and the final models' 'hidden units' of 176 added 16 + 32 channels to 128 neurons."""
    from explorer_core.train_time import TrainTimeConfig, create_run, execute

    cfg = TrainTimeConfig(name="cnn-tt", arch="cnn", hidden=[12], channels=[4, 6], epochs=3,
                          initial_epochs=1, prune_every=1, prune_fraction=0.5,
                          variants=["importance", "none"], seeds=[0])
    paths = create_run(cfg, runs_root)
    assert execute(paths)["state"] == "finished"
    at = open_page()
    assert not at.exception
    assert any(c.value.startswith("CNN (LeNet-style) channels 4, 6, hidden 12 on Digits · ")
               for c in at.caption), [c.value for c in at.caption]
    [summary] = [df.value for df in at.dataframe if "variant" in df.value.columns
                 and "parameters" in df.value.columns and "seed" not in df.value.columns]
    assert summary["channels + hidden units"].tolist()[-1] == 22.0  # 4 + 6 + 12, unpruned
