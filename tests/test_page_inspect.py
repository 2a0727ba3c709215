"""Inspect page under AppTest: hand-over from Iterative pruning, test samples, uploads,
bad files, dense vs pruned, and that switching the neuron is served from the cache."""
from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import overflowing_checkpoint, widget

PAGE = "pages/inspect.py"


@pytest.fixture(scope="module")
def digits_run():
    """A real two-iteration run on Digits (dense 32-16, then pruned to 16-8) in the scratch runs."""
    from explorer_core.experiment import RunConfig, create_run, execute

    cfg = RunConfig(name=f"inspect-{os.getpid()}-{int(time.time())}", dataset="digits",
                    hidden=[32, 16], schedule={"q": 0.5, "iterations": 2, "kind": "geometric"},
                    dense_epochs=15, retrain_epochs=3, use_cache=False)
    paths = create_run(cfg)
    assert execute(paths)["state"] == "finished"
    return paths


def errors(at) -> list[str]:
    return [e.value for e in at.error]


def grid_captions(at) -> list[str]:
    return [c for img in at.image for c in img.captions if " · #" in c]


def charts(at) -> int:
    return len(at.get("vega_lite_chart"))


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def open_page(app_test, checkpoint: Path | None = None):
    from streamlit.testing.v1 import AppTest
    from conftest import APPTEST_TIMEOUT_S, ROOT

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=APPTEST_TIMEOUT_S)
    if checkpoint is not None:
        at.session_state["inspect_checkpoint"] = str(checkpoint)
    at.switch_page(PAGE)
    return at.run()


def focus_box(at, slot: str = "a"):
    """The "One neuron up close" box (keyed by its labels, so it is found by prefix)."""
    boxes = [b for b in at.selectbox if (b.key or "").startswith(f"insp_focus_{slot}_")]
    assert len(boxes) == 1, [b.key for b in at.selectbox]
    return boxes[0]


def test_without_checkpoints_the_page_says_where_they_come_from(tmp_path, monkeypatch, app_test):
    for var in ("EXPLORER_RUNS", "EXPLORER_SWEEPS", "EXPLORER_CACHE"):
        monkeypatch.setenv(var, str(tmp_path / var))
    at = app_test(PAGE)
    assert not at.exception and errors(at) == []
    assert at.title[0].value == "Inspect"
    assert any("Iterative pruning" in i.value for i in at.info)
    at.radio(key="insp_src_a").set_value("Cached baselines").run()
    assert any("models_cache" in i.value for i in at.info) and not at.exception


def test_hand_over_opens_the_checkpoint_and_explains_test_samples(app_test, digits_run):
    pruned = digits_run.best_model(1)
    at = open_page(app_test, pruned)
    assert not at.exception and errors(at) == []
    assert at.radio(key="insp_src_a").value == "Past runs"
    assert at.selectbox(key="insp_it_a").value == str(pruned)
    import json
    meta = json.loads(pruned.with_suffix(".json").read_text())
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Test accuracy"] == f"{meta['metrics']['test_acc']:.2f} %"
    assert metrics["Parameters"] == f"{64 * 16 + 16 + 16 * 8 + 8 + 8 * 10 + 10:,}"
    assert metrics["MACs / image"] == f"{64 * 16 + 16 * 8 + 8 * 10:,}"
    assert metrics["Hidden kept"] == "50.0 %"

    at.radio(key="insp_img_src").set_value("Test-set samples").run()
    assert not at.exception and errors(at) == []
    assert any("predicted" in m.value for m in at.markdown)
    assert charts(at) == 2  # top-k bars, conductance + IASA ranking
    assert len(grid_captions(at)) == 8  # top 8 neurons of fc1 (16 neurons)
    focus = focus_box(at)
    assert len(focus.options) == 16 and "rank 1" in focus.options[0]
    assert all("IASA rank" in o for o in focus.options)
    labels = [b.label for b in at.download_button]
    assert "Scores (CSV)" in labels and "Heatmap grid (PNG)" in labels

    cache = at.session_state["insp_cache"]
    computed = cache.computed
    grid = at.multiselect(key=next(k for k in at.session_state.keys()
                                   if k.startswith("insp_neurons_a"))).value
    focus_box(at).set_value(grid[3]).run()
    assert not at.exception and cache.computed == computed  # switching within the grid: cached
    outside = next(n for n in range(16) if n not in grid)
    focus_box(at).set_value(outside).run()
    assert cache.computed == computed + 1  # a new neuron: exactly one map computed
    assert any(f"neuron {outside}: heatmap" in c for img in at.image for c in img.captions)

    at.selectbox(key="insp_layer").set_value("fc2").run()
    assert not at.exception and len(grid_captions(at)) == 8


def test_uploaded_drawing_is_classified_and_invert_changes_the_input(app_test, digits_run):
    at = open_page(app_test, digits_run.best_model(0))
    drawing = Image.new("L", (64, 64), 255)
    drawing.paste(0, (28, 8, 36, 56))  # a dark "1" on white paper
    at.file_uploader(key="insp_images").set_value(("one.png", png(drawing), "image/png")).run()
    assert not at.exception and errors(at) == []
    assert any("predicted" in m.value for m in at.markdown)
    assert any(c.startswith("original · 64×64") for img in at.image for c in img.captions)
    assert len(grid_captions(at)) == 8
    cache = at.session_state["insp_cache"]
    before = cache.computed
    at.toggle(key="insp_invert").set_value(True).run()
    assert not at.exception and cache.computed >= before + 8  # a different input: new maps

    # removed in the uploader itself: forgotten, not brought back from memory
    at.file_uploader(key="insp_images").set_value([]).run()
    assert not at.exception and not any("predicted" in m.value for m in at.markdown)
    assert any("Upload one or more pictures" in i.value for i in at.info)
    assert "insp_images_memory" not in at.session_state


def test_a_model_whose_output_overflows_on_a_picture_says_so_instead_of_nan(app_test,
                                                                          tmp_path):
    """Finite weights of 1e30 overflow on a real picture: the page printed "predicted 8
    (nan%)" over a chart of NaN probabilities (the CLI was fixed alone)."""
    at = open_page(app_test, overflowing_checkpoint(tmp_path))
    drawing = Image.new("L", (8, 8), 0)
    drawing.paste(255, (2, 2, 6, 6))
    at.file_uploader(key="insp_images").set_value(("img.png", png(drawing), "image/png")).run()
    assert not at.exception
    assert [e for e in errors(at) if "gives no finite output for img.png" in e], errors(at)
    assert not any("nan%" in m.value or "predicted" in m.value for m in at.markdown)


def test_two_pictures_of_one_name_are_told_apart(app_test, digits_run):
    """Two uploads named three.png were two rows and two choices reading "three.png"."""
    at = open_page(app_test, digits_run.best_model(0))
    light, dark = Image.new("L", (8, 8), 255), Image.new("L", (8, 8), 0)
    at.file_uploader(key="insp_images").set_value([
        ("three.png", png(light), "image/png"), ("three.png", png(dark), "image/png"),
        ("a.b.png", png(light), "image/png"), ("a.b.png", png(dark), "image/png")]).run()
    assert not at.exception and errors(at) == []
    table = [df.value for df in at.dataframe if "image" in df.value.columns][0]
    assert table["image"].tolist() == ["three.png", "three (2).png", "a.b.png", "a.b (2).png"]
    assert widget(at.selectbox, "Picture to inspect").options == table["image"].tolist()


def test_a_blank_picture_uploaded_first_is_not_the_one_inspected(app_test, digits_run):
    """A blank picture first in the upload was the default "Picture to inspect": its
    sensitivity charts were all zero and its heatmaps empty, under the flat-input warning."""
    at = open_page(app_test, digits_run.best_model(0))
    blank = Image.new("L", (64, 64), 0)
    drawing = Image.new("L", (64, 64), 255)
    drawing.paste(0, (28, 8, 36, 56))
    at.file_uploader(key="insp_images").set_value([
        ("blank.png", png(blank), "image/png"), ("one.png", png(drawing), "image/png")]).run()
    assert not at.exception and errors(at) == []
    assert any("one flat colour" in w.value for w in at.warning)  # the blank is still said
    box = widget(at.selectbox, "Picture to inspect")
    assert box.options == ["blank.png", "one.png"] and box.value == 1  # the drawing
    assert any(c.startswith("original · 64×64 L") for img in at.image for c in img.captions)
    box.set_value(0).run()  # still there to pick
    assert not at.exception and widget(at.selectbox, "Picture to inspect").value == 0


def test_the_grid_follows_the_ranking_until_units_are_picked(app_test, digits_run):
    """A new baseline re-ranks the neurons, but the grid kept the old top 8 (captioned
    #1, #3, #2, #7, #30 …), and a new grid size was ignored."""
    def ranks(at) -> list[str]:
        return [c.split(" · ")[1] for c in grid_captions(at)]

    at = open_page(app_test, digits_run.best_model(1))
    at.radio(key="insp_img_src").set_value("Test-set samples").run()
    assert ranks(at) == [f"#{i}" for i in range(1, 9)]
    for baseline in ("mean", "blurred"):
        at.selectbox(key="insp_baseline").set_value(baseline).run()
        assert not at.exception and ranks(at) == [f"#{i}" for i in range(1, 9)], baseline
    widget(at.number_input, "Neurons in the grid").set_value(4).run()
    assert ranks(at) == ["#1", "#2", "#3", "#4"]
    grid = [w for w in at.multiselect if "in the grid" in w.label][0]
    assert grid.proto.wrap  # eight chips in one sideways-scrolling row hid most of them
    picked = grid.value[::-1][:2]  # the user's own choice stays through a re-ranking
    grid.set_value(picked).run()
    at.selectbox(key="insp_baseline").set_value("mean").run()
    grid = [w for w in at.multiselect if "in the grid" in w.label][0]
    assert grid.value == picked


def test_the_up_close_box_shows_the_current_rank_and_keeps_a_users_pick(app_test, digits_run):
    """After Invert re-ranked the neurons, the closed box still read "neuron 39 — rank 1,
    conductance +0.246" for a neuron now ranked 46: it kept its old value and labels."""
    at = open_page(app_test, digits_run.best_model(1))
    at.radio(key="insp_img_src").set_value("Test-set samples").run()
    tops = set()
    for target in ("0", "1", "2", "3"):  # another class to explain: another ranking
        at.selectbox(key="insp_target").set_value(target).run()
        box = focus_box(at)
        assert not at.exception and "— rank 1," in box.options[box.index], target
        tops.add(box.value)
    assert len(tops) > 1  # the rankings differ, so the focus had to move
    # the user's pick stays through a re-ranking, labelled with its new rank
    pick = focus_box(at).options[5].split(" ")[1]
    focus_box(at).set_value(int(pick)).run()
    at.selectbox(key="insp_baseline").set_value("mean").run()
    box = focus_box(at)
    assert box.value == int(pick) and box.options[box.index].startswith(f"neuron {pick} — rank ")
    assert any(f"neuron {pick}: heatmap" in c for img in at.image for c in img.captions)


def test_bad_images_and_a_code_running_checkpoint_get_messages(app_test, digits_run, tmp_path):
    at = open_page(app_test, digits_run.best_model(0))
    good = Image.new("L", (16, 16), 0)
    at.file_uploader(key="insp_images").set_value([
        ("notes.png", b"just some text, not a picture", "image/png"),
        ("ok.png", png(good), "image/png"),
    ]).run()
    assert not at.exception
    assert any("notes.png is not an image" in e for e in errors(at))
    assert len(grid_captions(at)) == 8  # the good picture is still explained

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    buf = io.BytesIO()
    torch.save({"fc1.weight": torch.zeros(2, 2), "x": Evil()}, buf)
    at.radio(key="insp_src_a").set_value("Upload").run()
    at.file_uploader(key="insp_upload_a").set_value(
        ("evil.pth", buf.getvalue(), "application/octet-stream")).run()
    assert not at.exception
    assert any("evil.pth was refused" in e for e in errors(at))
    assert not marker.exists()


def test_an_uploaded_sidecar_with_odd_metadata_gets_a_message_not_a_traceback(app_test,
                                                                             digits_run):
    """Sidecars are hand-edited: scalar normalisation (natural for grayscale) works,
    junk in it is named, and metrics that are not a mapping are ignored."""
    import json

    weights = digits_run.best_model(0).read_bytes()
    meta = json.loads(digits_run.best_model(0).with_suffix(".json").read_text())
    at = open_page(app_test)
    at.radio(key="insp_src_a").set_value("Upload").run()
    for norm, metrics, message in (({"mean": 0.3, "std": 0.3}, [1, 2], None),
                                   ({"mean": ["x"], "std": [0]}, {}, "mean must be a number")):
        sidecar = json.dumps({**meta, "normalisation": norm, "metrics": metrics}).encode()
        at.file_uploader(key="insp_upload_a").set_value([
            ("m.safetensors", weights, "application/octet-stream"),
            ("m.json", sidecar, "application/json")]).run()
        assert not at.exception, at.exception
        if message is None:
            assert not errors(at)
        else:
            assert any(message in e for e in errors(at)), errors(at)


def test_dense_and_pruned_side_by_side(app_test, digits_run):
    at = open_page(app_test, digits_run.best_model(1))
    at.radio(key="insp_img_src").set_value("Test-set samples").run()
    at.toggle(key="insp_compare").set_value(True).run()
    assert not at.exception and errors(at) == []
    assert at.selectbox(key="insp_it_b").value == str(digits_run.best_model(0))
    assert charts(at) == 4  # top-k and ranking per model
    assert len(grid_captions(at)) == 16
    table = at.dataframe[0].value
    assert {"predicted (A)", "predicted (B)", "true class"} <= set(table.columns)


def test_uploaded_conv_net_gets_grad_cam_of_its_channels(app_test, tmp_path):
    from explorer_core.checkpoint import save_checkpoint
    from explorer_core.models import build_model, default_spec

    torch.manual_seed(0)
    spec = default_spec("cnn", 1, 8, 10)
    spec["channels"], spec["hidden"] = [6, 8], [16]
    weights = save_checkpoint(build_model(spec), spec, tmp_path / "cnn", {"dataset": "digits"})
    at = app_test(PAGE)
    at.radio(key="insp_src_a").set_value("Upload").run()
    at.file_uploader(key="insp_upload_a").set_value([
        ("cnn.safetensors", weights.read_bytes(), "application/octet-stream"),
        ("cnn.json", weights.with_suffix(".json").read_bytes(), "application/json")]).run()
    at.radio(key="insp_img_src").set_value("Test-set samples").run()
    assert not at.exception and errors(at) == []
    assert at.selectbox(key="insp_layer").value == "features.0"
    assert at.selectbox(key="insp_method").value == "gradcam"
    assert len(grid_captions(at)) == 6 and all(c.startswith("channel") for c in grid_captions(at))
    # the grid counts channels; the conductance ranking beside the Grad-CAM maps still
    # integrates from a baseline, which stays open to change (it was disabled)
    assert at.number_input(key="insp_grid_n").label == "Channels in the grid"
    assert not at.selectbox(key="insp_baseline").disabled
    at.number_input(key="insp_grid_n").set_value(4).run()
    assert not at.exception and len(grid_captions(at)) == 4
    at.selectbox(key="insp_layer").set_value("classifier.0").run()  # a hidden Linear layer
    assert not at.exception and at.selectbox(key="insp_method").value == "neuron_conductance"
    assert at.number_input(key="insp_grid_n").label == "Neurons in the grid"
    assert at.number_input(key="insp_grid_n").value == 4  # the count stays through the relabel
    assert len(grid_captions(at)) == 4


def test_choices_survive_a_visit_to_another_page(app_test, digits_run):
    """Streamlit drops the state of widgets a run does not draw: the page keeps its own copy."""
    dense, pruned = str(digits_run.best_model(0)), str(digits_run.best_model(1))
    at = open_page(app_test, digits_run.best_model(0))
    at.selectbox(key="insp_it_a").set_value(pruned).run()
    at.radio(key="insp_img_src").set_value("Test-set samples").run()
    at.number_input(key="insp_first").set_value(10).run()
    at.number_input(key="insp_k").set_value(3).run()
    assert not at.exception and errors(at) == []

    at.switch_page("pages/retention.py")
    at.run()
    assert not at.exception and at.title[0].value != "Inspect"
    at.switch_page(PAGE)
    at.run()
    assert not at.exception and errors(at) == []
    assert at.selectbox(key="insp_it_a").value == pruned
    assert at.radio(key="insp_img_src").value == "Test-set samples"
    assert at.number_input(key="insp_first").value == 10
    assert at.number_input(key="insp_k").value == 3
    assert len(grid_captions(at)) == 8

    # another page's "Open on Inspect" still wins over what was remembered
    at.switch_page("pages/retention.py")
    at.run()
    at.session_state["inspect_checkpoint"] = dense
    at.switch_page(PAGE)
    at.run()
    assert not at.exception and at.selectbox(key="insp_it_a").value == dense
    assert at.number_input(key="insp_first").value == 10
    # and is what a later visit finds: the copy kept from before the hand-over came back,
    # showing another run's model as if the user had picked it
    at.switch_page("pages/retention.py")
    at.run()
    at.switch_page(PAGE)
    at.run()
    assert not at.exception and at.selectbox(key="insp_it_a").value == dense


def test_a_train_time_model_is_compared_with_its_own_seeds_unpruned_one(app_test, tmp_path,
                                                                         monkeypatch):
    """Opened from the Train-time page, or picked here with "Compare" ticked, "random-pruned,
    seed 1" came with "no pruning, seed 0" beside it: two seeds' models compared as if
    pruning made their difference."""
    from explorer_core.rundir import default_train_time_root
    from explorer_core.train_time import TrainTimeConfig, create_run, execute

    monkeypatch.setenv("EXPLORER_RUNS", str(tmp_path / "runs"))
    paths = create_run(TrainTimeConfig(name="seeds", dataset="digits", hidden=[12, 8], epochs=3,
                                       initial_epochs=1, prune_every=1, prune_fraction=0.25,
                                       seeds=[0, 1]), default_train_time_root())
    assert execute(paths)["state"] == "finished"
    pruned, own = str(paths.final_model("random", 1)), str(paths.final_model("none", 1))
    at = open_page(app_test, paths.final_model("random", 1))  # the hand-over
    assert not at.exception and at.selectbox(key="insp_it_a").value == pruned
    at.toggle(key="insp_compare").set_value(True).run()
    assert not at.exception and at.selectbox(key="insp_it_b").value == own

    at = app_test(PAGE)  # picked here, "Compare" ticked afterwards
    at.selectbox(key="insp_it_a").set_value(pruned).run()
    at.toggle(key="insp_compare").set_value(True).run()
    assert not at.exception and at.selectbox(key="insp_it_b").value == own


def _upload(at, *files: tuple[str, bytes]):
    at.radio(key="insp_src_a").set_value("Upload").run()
    return at.file_uploader(key="insp_upload_a").set_value(
        [(name, data, "application/octet-stream") for name, data in files]).run()


def test_an_uploaded_checkpoint_with_nan_weights_is_refused_with_one_line(app_test, tmp_path):
    """It loaded, and test samples were "predicted 8 (nan%)"."""
    from conftest import nan_checkpoint

    weights = nan_checkpoint(tmp_path, "fc1")
    at = _upload(app_test(PAGE), ("nan.safetensors", weights.read_bytes()),
                 ("nan.json", weights.with_suffix(".json").read_bytes()))
    assert not at.exception, at.exception
    assert errors(at) == ["nan.safetensors has weights that are not finite: fc1.weight holds NaN "
                          "(1 of 2048 values); a model with them predicts nothing meaningful "
                          "(did its training diverge?)"]
    assert not at.metric and not any("predicted" in m.value for m in at.markdown)


def test_a_safetensors_without_a_spec_is_named_with_what_to_upload(app_test):
    """It said "expected upload.json beside it": the temporary name the upload was read
    under, a file the user never had."""
    from safetensors.torch import save

    from explorer_core.models import MLP

    at = _upload(app_test(PAGE), ("nometa.safetensors", save(MLP(64, [8], 10).state_dict())))
    assert errors(at) == ["nometa.safetensors holds no model spec: upload its .json "
                          "(nometa.json) with it"]


@pytest.mark.parametrize("recorded", [{}, {"dataset": "kmnist"}])
def test_an_upload_that_does_not_record_its_dataset_is_read_as_the_one_picked(app_test,
                                                                              tmp_path, recorded):
    """A 28×28 model whose files record no dataset (or one we do not know) was read as
    MNIST's: digit class names and no test accuracy (MNIST is not on disk), though it was
    a Fashion-MNIST model."""
    from explorer_core.checkpoint import save_checkpoint
    from explorer_core.models import build_model, default_spec

    torch.manual_seed(0)
    spec = default_spec("mlp", 1, 28, 10, hidden=[16])
    path = save_checkpoint(build_model(spec), spec, tmp_path / "fmnist", recorded)
    at = _upload(app_test(PAGE), ("fmnist.safetensors", path.read_bytes()),
                 ("fmnist.json", path.with_suffix(".json").read_bytes()))
    assert not at.exception and errors(at) == []
    box = at.selectbox(key="insp_up_data_a")
    assert box.options == ["MNIST", "Fashion-MNIST"] and box.value == "mnist"
    assert {m.label: m.value for m in at.metric}["Test accuracy"] == "—"  # no MNIST here
    box.set_value("fashion_mnist").run()
    assert not at.exception and errors(at) == []
    accuracy = {m.label: m.value for m in at.metric}["Test accuracy"]
    assert accuracy.endswith(" %") and 0 <= float(accuracy[:-2]) <= 100
    assert any("Fashion-MNIST" in c.value for c in at.caption)
    at.switch_page("pages/retention.py").run()  # the choice stays after another page
    at.switch_page(PAGE).run()
    assert at.selectbox(key="insp_up_data_a").value == "fashion_mnist"
    assert {m.label: m.value for m in at.metric}["Test accuracy"] == accuracy
    other = save_checkpoint(build_model(spec), spec, tmp_path / "other")  # other weights:
    _upload(at, ("other.safetensors", other.read_bytes()),  # not their choice
            ("other.json", other.with_suffix(".json").read_bytes()))
    assert at.selectbox(key="insp_up_data_a").value == "mnist"


def test_an_upload_whose_dataset_is_asked_is_built_once_per_choice(app_test, tmp_path,
                                                                   monkeypatch):
    """Built first on the assumed dataset (its test accuracy measured there) and then
    again on the one picked, even when that was the same one: a second pass over a test
    set for nothing."""
    from explorer_core import catalog
    from explorer_core.checkpoint import save_checkpoint
    from explorer_core.models import build_model, default_spec

    torch.manual_seed(0)
    spec = default_spec("mlp", 1, 28, 10, hidden=[16])
    built = []  # the datasets this upload was built on (another source's model may show
    real = catalog.summary  # first, e.g. a baseline cached by an earlier test)
    monkeypatch.setattr(catalog, "summary", lambda ck: (
        built.append(ck.meta.get("dataset")) if ck.spec == spec else None) or real(ck))
    path = save_checkpoint(build_model(spec), spec, tmp_path / "nodata", {})
    at = _upload(app_test(PAGE), ("nodata.safetensors", path.read_bytes()),
                 ("nodata.json", path.with_suffix(".json").read_bytes()))
    assert not at.exception and errors(at) == []
    assert built == ["mnist"]  # the first that fits, as the picker shows it
    at.selectbox(key="insp_up_data_a").set_value("fashion_mnist").run()
    at.selectbox(key="insp_up_data_a").set_value("mnist").run()  # built before: kept
    assert not at.exception and built == ["mnist", "fashion_mnist"]


def test_a_pruned_pth_with_the_dense_widths_shows_how_much_it_kept(app_test):
    """A pruned .pth with the dense spec described on the page showed "Hidden kept —"."""
    from explorer_core.models import MLP

    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(MLP(64, [16, 8], 10).state_dict(), buf)  # pruned from a 32-16 Digits MLP
    at = _upload(app_test(PAGE), ("pruned.pth", buf.getvalue()))
    assert at.selectbox(key="insp_pth_data_a").value == "digits"
    at.text_input(key="insp_pth_hidden_a").set_value("32, 16").run()
    assert not at.exception and errors(at) == []
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Hidden kept"] == "50.0 %"
    assert metrics["Parameters"] == f"{64 * 16 + 16 + 16 * 8 + 8 + 8 * 10 + 10:,}"
    at.text_input(key="insp_pth_hidden_a").set_value("64, 32").run()  # other dense widths
    assert {m.label: m.value for m in at.metric}["Hidden kept"] == "25.0 %"


def _kept(at) -> tuple[str, str]:
    tile = next(m for m in at.metric if m.label == "Hidden kept")
    return tile.value, tile.proto.help


def _widths_field(at, key: str) -> tuple[str, str]:
    """(what the user typed, the weights' own widths shown greyed in it)."""
    field = at.text_input(key=key)
    return field.value, field.proto.placeholder


def test_a_pth_opens_with_its_own_widths_and_its_share_kept_unknown_until_given(app_test):
    """A dense 64-32 Digits MLP read "Hidden widths (dense) 256, 64" and "Hidden kept
    30.0 %"; filled in with the weights' own widths, a pruned .pth then read "Hidden kept
    100.0 %". A .pth records no dense widths: the share is shown once the user gives them
    (its own, for a model never pruned)."""
    from explorer_core.models import MLP

    torch.manual_seed(0)
    at = _upload(app_test(PAGE), ("dense.pth", _pth_bytes(MLP(64, [64, 32], 10))))
    assert not at.exception and errors(at) == []
    assert _widths_field(at, "insp_pth_hidden_a") == ("", "64, 32")
    value, why = _kept(at)
    assert value == "—" and "records no dense widths" in why
    assert {m.label: m.value for m in at.metric}["Parameters"] == \
        f"{64 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10:,}"  # built with its own widths
    at.text_input(key="insp_pth_hidden_a").set_value("64, 32").run()  # said: never pruned
    assert _kept(at)[0] == "100.0 %"
    at.text_input(key="insp_pth_hidden_a").set_value("128, 64").run()  # said: pruned from wider
    assert _kept(at)[0] == "50.0 %"
    at.radio(key="insp_img_src").set_value("Test-set samples").run()  # the user's widths stay
    assert _widths_field(at, "insp_pth_hidden_a") == ("128, 64", "64, 32")
    assert _kept(at)[0] == "50.0 %"
    at.text_input(key="insp_pth_hidden_a").set_value("").run()  # taken back: not known
    assert _kept(at)[0] == "—"
    at.text_input(key="insp_pth_hidden_a").set_value("128, 64").run()
    at.file_uploader(key="insp_upload_a").set_value(  # other weights: their own widths
        [("other.pth", _pth_bytes(MLP(64, [20, 10, 5], 10)), "application/octet-stream")]).run()
    assert _widths_field(at, "insp_pth_hidden_a") == ("", "20, 10, 5")
    assert _kept(at)[0] == "—"


def test_a_pth_is_read_with_the_dataset_picked_for_it(app_test):
    """MNIST and Fashion-MNIST models have one spec: switching "Trained on" from one to
    the other kept the first one's model (its class names, no accuracy without MNIST)."""
    from explorer_core.models import MLP

    torch.manual_seed(0)
    at = _upload(app_test(PAGE), ("f.pth", _pth_bytes(MLP(784, [16], 10))))
    at.selectbox(key="insp_pth_data_a").set_value("mnist").run()
    assert {m.label: m.value for m in at.metric}["Test accuracy"] == "—"  # no MNIST here
    at.selectbox(key="insp_pth_data_a").set_value("fashion_mnist").run()
    assert not at.exception and errors(at) == []
    assert {m.label: m.value for m in at.metric}["Test accuracy"].endswith(" %")
    assert any("Fashion-MNIST" in c.value for c in at.caption)


def test_a_cnn_pth_of_other_conv_channels_opens_with_its_own_channels(app_test):
    """A CNN .pth with conv channels 32·64 could not be opened: the page built the spec
    with the default 16·32 channels and had no field for them ("hidden widths 32·64·128,
    wider than the model spec's 16·32·128"). Its channels are read from the weights, and
    the channels typed stay after a visit to another page."""
    from explorer_core.models import build_model, default_spec

    torch.manual_seed(0)
    spec = {**default_spec("cnn", 1, 8, 10), "channels": [32, 64]}
    at = _upload(app_test(PAGE), ("wide.pth", _pth_bytes(build_model(spec))))
    at.selectbox(key="insp_pth_arch_a").set_value("cnn").run()
    assert not at.exception and errors(at) == []
    assert _widths_field(at, "insp_pth_channels_a") == ("", "32, 64")
    assert _widths_field(at, "insp_pth_hidden_a") == ("", "128")
    assert _kept(at)[0] == "—"  # not said yet
    # said to be pruned from 64·128 channels: half of the conv channels kept
    at.text_input(key="insp_pth_channels_a").set_value("64, 128").run()
    assert errors(at) == []
    kept = (32 + 64 + 128) / (64 + 128 + 128)
    assert _kept(at)[0] == f"{100 * kept:.1f} %"
    at.switch_page("pages/retention.py").run()
    at.switch_page(PAGE).run()
    assert _widths_field(at, "insp_pth_channels_a") == ("64, 128", "32, 64")
    assert _kept(at)[0] == f"{100 * kept:.1f} %"


def test_two_weights_files_are_named_with_what_to_do(app_test):
    """"upload exactly one weights file" did not say which files clash."""
    from explorer_core.models import MLP

    at = _upload(app_test(PAGE), ("a.pth", _pth_bytes(MLP(64, [8], 10))),
                 ("b.pth", _pth_bytes(MLP(64, [8], 10))))
    assert errors(at) == ["upload one weights file, not 2 (a.pth, b.pth): remove all but one"]


def test_a_pth_without_hidden_layers_says_so_instead_of_blaming_a_missing_sidecar(app_test):
    """A .pth given with a spec now always reports its share kept; only a model without
    hidden units has none, and "no sidecar .json" was the wrong reason for that."""
    from explorer_core.models import build_model, default_spec

    buf = io.BytesIO()
    torch.save(build_model(default_spec("slp", 1, 8, 10)).state_dict(), buf)
    at = _upload(app_test(PAGE), ("slp.pth", buf.getvalue()))
    at.selectbox(key="insp_pth_arch_a").set_value("slp").run()
    assert not at.exception and errors(at) == []
    kept = next(m for m in at.metric if m.label == "Hidden kept")
    assert kept.value == "—" and kept.proto.help == "The model has no hidden layer."
    # nor a field for hidden widths, which built nothing
    assert not [t for t in at.text_input if t.label == "Hidden widths (dense)"]


def _pth_bytes(model) -> bytes:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def test_a_pth_with_another_models_sidecar_is_refused_and_shows_no_metrics(app_test, digits_run):
    """wrongshape.pth (20·10) with first5.json (an 18·9 sidecar) showed the sidecar's test
    accuracy and "% kept" for weights that were not its own."""
    from explorer_core.models import MLP

    sidecar = digits_run.best_model(1).with_suffix(".json")  # the run's 16·8 iteration
    torch.manual_seed(3)
    at = _upload(app_test(PAGE), ("wrongshape.pth", _pth_bytes(MLP(64, [20, 10], 10))),
                 ("first5.json", sidecar.read_bytes()))
    assert not at.exception
    assert errors(at) == ["first5.json records hidden widths 16·8 but the weights have 20·10: "
                          "they are not one checkpoint"]
    assert not at.metric


def test_a_measured_accuracy_names_its_test_set_as_the_page_does(app_test):
    """The help read "Measured on these weights with the digits (8×8, bundled) test set":
    capitalising the sentence lowercased the dataset's name."""
    from explorer_core.models import MLP

    torch.manual_seed(0)
    at = _upload(app_test(PAGE), ("dense.pth", _pth_bytes(MLP(64, [16], 10))))
    accuracy = next(m for m in at.metric if m.label == "Test accuracy")
    assert accuracy.proto.help == ("Measured on these weights with the Digits (8×8, bundled) "
                                   "test set")


def test_a_sidecar_of_other_weights_of_the_same_widths_is_caught_by_their_accuracy(app_test,
                                                                                  digits_run):
    """Same widths pass the shape check; the accuracy is measured on the uploaded weights,
    and a record that disagrees is named, its % kept not shown."""
    import json

    from explorer_core.checkpoint import load_checkpoint
    from explorer_core.data import load_dataset
    from explorer_core.models import MLP
    from explorer_core.training import evaluate

    sidecar = digits_run.best_model(1).with_suffix(".json")
    recorded = json.loads(sidecar.read_text())["metrics"]["test_acc"]
    torch.manual_seed(4)
    stranger = MLP(64, [16, 8], 10).eval()  # untrained: far below the record
    measured = evaluate(stranger, load_dataset("digits").test)[1]
    at = _upload(app_test(PAGE), ("other.pth", _pth_bytes(stranger)),
                 ("best_model.json", sidecar.read_bytes()))
    assert not at.exception and errors(at) == []
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Test accuracy"] == f"{measured:.2f} %" != f"{recorded:.2f} %"
    assert metrics["Hidden kept"] == "—"
    assert any(f"records a test accuracy of {recorded:.2f} %" in w.value for w in at.warning)
    # the run's own weights with their sidecar: the record stands, no warning
    own = load_checkpoint(digits_run.best_model(1)).model
    at = _upload(app_test(PAGE), ("own.pth", _pth_bytes(own)),
                 ("best_model.json", sidecar.read_bytes()))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Test accuracy"] == f"{recorded:.2f} %" and metrics["Hidden kept"] == "50.0 %"
    assert not at.warning


def test_a_masked_checkpoint_shows_non_zero_weights_kept_not_hidden_units(app_test, digits_run,
                                                                          tmp_path):
    """A weight-masked Compare cell showed "Hidden kept 25.7 %" beside its dense widths
    and the dense parameter count."""
    from explorer_core.checkpoint import load_checkpoint, save_checkpoint
    from explorer_core.masks import apply_masks, make_permanent

    ck = load_checkpoint(digits_run.best_model(0))
    apply_masks(ck.model, 0.75, "weight")
    make_permanent(ck.model)
    params = sum(p.numel() for p in ck.model.parameters())
    nonzero = sum(int((p != 0).sum()) for p in ck.model.parameters())
    path = save_checkpoint(ck.model, ck.spec, tmp_path / "mlp-digits-b64-s0-weight-magnitude-r75",
                           {**ck.meta, "percent_retained": 100.0 * nonzero / params,
                            "cell": {"type": "weight", "criterion": "magnitude", "ratio": 0.75}})
    at = open_page(app_test, path)
    assert not at.exception and errors(at) == []
    metrics = {m.label: m.value for m in at.metric}
    assert "Hidden kept" not in metrics and "Parameters" not in metrics
    assert metrics["Weights kept"] == f"{100.0 * nonzero / params:.1f} %"
    assert metrics["Non-zero parameters"] == f"{nonzero:,}"
    assert any(f"{nonzero:,} of {params:,} parameters non-zero, no neuron removed" in c.value
               and "hidden widths 32-16" in c.value for c in at.caption)


def test_samples_past_the_end_show_those_that_exist_with_fixed_format_probabilities(app_test,
                                                                                   digits_run):
    """First sample 9998, How many 4 of a 10 000-image set showed only an error; and a
    certain prediction printed as "1" beside "0.9935"."""
    from explorer_core.data import load_dataset

    size = len(load_dataset("digits").test)
    at = open_page(app_test, digits_run.best_model(0))
    at.radio(key="insp_img_src").set_value("Test-set samples").run()
    at.number_input(key="insp_first").set_value(size - 2).run()
    assert not at.exception and errors(at) == []
    assert any(f"samples {size - 2}–{size - 1} (2 of the 4 asked for)" in i.value for i in at.info)
    table = at.dataframe[0]
    assert list(table.value["image"].str.split(" ").str[1]) == [f"#{size - 2}", f"#{size - 1}"]
    import json
    config = json.loads(table.proto.columns)
    assert config["probability"]["type_config"]["format"] == "%.4f"
    assert len(grid_captions(at)) == 8  # the last sample is explained
    at.number_input(key="insp_first").set_value(size).run()  # none of it exists
    assert errors(at) == [f"test sample {size} does not exist: the Digits (8×8, bundled) test "
                          f"set has {size} images (0–{size - 1})"]


def test_the_sweep_is_picked_before_its_cells(app_test, digits_run):
    """Cells of every sweep were listed together, one id four times with no sweep name."""
    import shutil

    from explorer_core.catalog import default_sweeps_root
    from explorer_core.rundir import SweepPaths

    cell = "mlp-digits-b64-s0-neuron-l1-r50"
    names = [f"pick-{os.getpid()}-{i}-{int(time.time())}" for i in range(2)]
    for name in names:
        sweep = SweepPaths(default_sweeps_root() / "2026-11-20" / name)
        sweep.checkpoints_dir.mkdir(parents=True)
        sweep.config.write_text("{}")
        for suffix in (".safetensors", ".json"):
            shutil.copy(digits_run.best_model(1).with_suffix(suffix),
                        sweep.checkpoints_dir / f"{cell}{suffix}")
    at = app_test(PAGE)
    at.radio(key="insp_src_a").set_value("Sweeps").run()
    box = at.selectbox(key="insp_sweep_a")
    assert {f"{n} (2026-11-20) · 1 checkpoint" for n in names} <= set(box.options)
    box.set_value(f"{names[1]} (2026-11-20)").run()
    assert not at.exception and errors(at) == []
    cells = at.selectbox(key="insp_cell_a")
    assert len(cells.options) == 1 and cells.options[0].endswith(" · 50.0 % kept · 16-8")
    assert any(m.value == f"**{names[1]} · {cell}**" for m in at.markdown)


def test_a_cached_baseline_is_dense(app_test, tmp_path, monkeypatch):
    """A dense baseline showed "Hidden kept —", blamed on a missing record of its widths."""
    from explorer_core.checkpoint import save_checkpoint
    from explorer_core.models import build_model, default_spec

    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path))
    spec = default_spec("mlp", 1, 8, 10, [16, 8])
    save_checkpoint(build_model(spec), spec, tmp_path / "mlp-digits-0123456789abcdef",
                    {"dataset": "digits", "metrics": {"test_acc": 50.0},
                     "train": {"batch_size": 32, "seed": 2, "epochs": 4}})
    at = app_test(PAGE)
    at.radio(key="insp_src_a").set_value("Cached baselines").run()
    assert not at.exception and errors(at) == []
    assert at.selectbox(key="insp_cache_a").options == [
        "MLP 16-8 · test 50.00 % · Digits · batch 32 · seed 2 · 4 epochs"]
    assert {m.label: m.value for m in at.metric}["Hidden kept"] == "100.0 %"


def shown(w):
    """What the browser draws for a widget it mounts afresh: the value the script sent
    (`set_value`), else the proto's default — not the server's idea of the value. A
    server-only value was drawn as the default and sent back on the next run."""
    p = w.proto
    value = p.value if p.set_value else p.default
    return list(value) if hasattr(value, "__len__") else value


def test_settings_survive_runs_that_do_not_draw_them(app_test, digits_run, tmp_path):
    """Source → Upload (no file), a refused checkpoint, then Past runs again: two runs in a
    row without the settings' widgets. The browser drew Top-k as 0 ("must be … from 1 to
    20, got 0", nothing drawn), then the grid size as 0, steps 4 and the shared scale off."""
    from explorer_core.checkpoint import save_checkpoint
    from explorer_core.vae import FCVAE, spec_of_vae

    vae = FCVAE(64, [16], 4)
    refused = save_checkpoint(vae, spec_of_vae(vae, [1, 8, 8]), tmp_path / "vae")
    at = open_page(app_test, digits_run.best_model(1))
    at.radio(key="insp_img_src").set_value("Test-set samples").run()
    at.number_input(key="insp_grid_n").set_value(6).run()
    assert not at.exception and errors(at) == []
    settings = lambda: (shown(at.number_input(key="insp_k")),  # noqa: E731
                        shown(at.number_input(key="insp_grid_n")),
                        shown(at.slider(key="insp_steps")), shown(at.toggle(key="insp_shared")))
    for _ in range(2):  # any number of hidden runs
        at.radio(key="insp_src_a").set_value("Upload").run()
        at.file_uploader(key="insp_upload_a").set_value(
            [(p.name, p.read_bytes(), "application/octet-stream")
             for p in (refused, refused.with_suffix(".json"))]).run()
        assert not at.exception and errors(at) and not at.metric  # refused, nothing below
        at.radio(key="insp_src_a").set_value("Past runs").run()
        assert not at.exception and errors(at) == [], errors(at)
        assert settings() == (5, 6, [32], True)
        assert len(grid_captions(at)) == 6


def test_the_pages_ranges_are_the_clis(app_test, digits_run):
    """The page capped the grid at 32 and top-k at 20 and steps at 4–128, the CLI took
    --neurons 1000, --top-k 50 and --steps 2–256: both now use attribution's constants."""
    from explorer_core.attribution import MAX_GRID_UNITS, MAX_STEPS, MAX_TOP_K, MIN_STEPS

    at = open_page(app_test, digits_run.best_model(0))  # dense: fc1 has 32 neurons
    at.radio(key="insp_img_src").set_value("Test-set samples").run()
    steps = at.slider(key="insp_steps")
    assert (steps.min, steps.max) == (MIN_STEPS, MAX_STEPS) == (2, 256)
    for key, label, high in (("insp_k", "Top-k classes", MAX_TOP_K),
                             ("insp_grid_n", "Neurons in the grid", MAX_GRID_UNITS)):
        at.number_input(key=key).set_value(high).run()
        assert not at.exception and errors(at) == []
        at.number_input(key=key).set_value(high + 1).run()
        assert errors(at) == [f"{label} must be a whole number from 1 to {high}, got {high + 1}"]
        at.number_input(key=key).set_value(3).run()


def test_a_white_drawing_on_transparency_is_seen_and_a_blank_picture_is_warned_about(
        app_test, digits_run):
    """Laid on white, the ring vanished and the page warned of a blank input; now it is
    painted white on black, so the model sees it and there is nothing to warn of. A picture
    with nothing in it (a fully transparent canvas) still gets the warning."""
    from PIL import ImageDraw

    ring = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    ImageDraw.Draw(ring).ellipse((12, 8, 52, 56), outline=(255, 255, 255, 255), width=6)
    at = open_page(app_test, digits_run.best_model(1))
    at.file_uploader(key="insp_images").set_value(("ring.png", png(ring), "image/png")).run()
    assert not at.exception and errors(at) == []
    assert [w.value for w in at.warning] == []
    assert any("predicted" in m.value for m in at.markdown)
    blank = Image.new("RGBA", (64, 64), (255, 255, 255, 0))
    at.file_uploader(key="insp_images").set_value(("blank.png", png(blank), "image/png")).run()
    assert not at.exception and errors(at) == []
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and warnings[0].startswith(
        "blank.png: the model's input is one flat colour (every pixel 255)"), warnings
    assert any("predicted" in m.value for m in at.markdown)  # still shown, now explained


def grid_box(at):
    boxes = [w for w in at.multiselect if "in the grid" in w.label]
    assert len(boxes) == 1
    return boxes[0]


def test_the_grid_size_is_bounded_by_the_chosen_layers_units(app_test, digits_run):
    """32 kept from fc1 (32 neurons) read "top 32" over fc2's 16, and the field took up
    to 32 whatever the layer."""
    at = open_page(app_test, digits_run.best_model(0))  # dense 32-16
    at.radio(key="insp_img_src").set_value("Test-set samples").run()
    at.number_input(key="insp_grid_n").set_value(32).run()
    assert not at.exception and errors(at) == []
    assert grid_box(at).label == "Neurons in the grid (default: all 32, by |conductance|)"
    at.selectbox(key="insp_layer").set_value("fc2").run()
    assert not at.exception and errors(at) == []
    field = at.number_input(key="insp_grid_n")
    assert field.value == 16 and "1 to 16, all of fc2's" in field.help
    assert grid_box(at).label == "Neurons in the grid (default: all 16, by |conductance|)"
    assert len(grid_captions(at)) == 16
    field.set_value(17).run()
    assert errors(at) == ["Neurons in the grid must be a whole number from 1 to 16, got 17"]
    at.number_input(key="insp_grid_n").set_value(4).run()
    assert errors(at) == []
    assert grid_box(at).label == "Neurons in the grid (default: top 4 of 16 by |conductance|)"
    at.selectbox(key="insp_layer").set_value("fc1").run()  # a smaller count stays
    assert at.number_input(key="insp_grid_n").value == 4
    assert "1 to 32 of fc1's" not in at.number_input(key="insp_grid_n").help  # all 32 fit
    assert "1 to 32, all of fc1's" in at.number_input(key="insp_grid_n").help


def test_the_scores_csv_names_its_method_and_baseline(downloads, app_test, digits_run):
    """Scores downloaded from three baselines were three files 'scores_a_fc1_class3.csv'
    with the same columns: nothing said which attribution computed which."""
    import pandas as pd

    at = open_page(app_test, digits_run.best_model(1))
    at.radio(key="insp_img_src").set_value("Test-set samples").run()
    assert not at.exception and errors(at) == []
    for baseline in ("black", "blurred", "mean"):
        at.selectbox(key="insp_baseline").set_value(baseline).run()
        names = [n for n in downloads if n.startswith("scores_a_fc1_class")
                 and n.endswith(f"_layer_conductance_{baseline}_32steps.csv")]
        assert len(names) == 1, list(downloads)
        frame = pd.read_csv(io.BytesIO(downloads[names[0]]))
        assert list(frame.columns) == ["neuron", "conductance", "rank", "iasa", "iasa_rank",
                                       "method", "baseline", "steps", "model", "picture",
                                       "layer", "class"]
        # what was explained: a file said none of it, so it could not be matched later
        [model] = set(frame["model"])
        assert model.endswith(f"{digits_run.root.name} · iteration 1"), model
        assert set(frame["layer"]) == {"fc1"}
        assert [p.split(" (")[0] for p in set(frame["picture"])] == ["test #0"]
        assert len(set(frame["class"])) == 1
        assert set(frame["method"]) == {"layer_conductance"}
        assert set(frame["baseline"]) == {baseline} and set(frame["steps"]) == {32}
        assert len(frame) == 16
    scores = [b for b in at.download_button if b.label == "Scores (CSV)"][0]
    assert "from the dataset mean in 32 steps" in scores.help


def test_big_counts_read_alike_in_the_pages_messages(app_test, digits_run):
    """"test sample 100000 does not exist" under a field saying "from 0 to 1,000,000"."""
    from explorer_core.data import load_dataset

    size = len(load_dataset("digits").test)
    at = open_page(app_test, digits_run.best_model(1))
    at.radio(key="insp_img_src").set_value("Test-set samples").run()
    at.number_input(key="insp_first").set_value(100_000).run()
    assert errors(at) == [f"test sample 100,000 does not exist: the Digits (8×8, bundled) test "
                          f"set has {size:,} images (0–{size - 1:,})"]
    at.number_input(key="insp_first").set_value(1_000_001).run()
    assert errors(at) == ["First test sample must be a whole number from 0 to 1,000,000, "
                          "got 1,000,001"]


def test_a_second_model_of_another_input_size_is_left_out_with_one_warning(app_test,
                                                                           digits_run, tmp_path):
    """A 28×28 model beside a Digits one on Digits test samples gave three warnings in three
    places for one cause ("takes (1, 28, 28) inputs; the samples are (1, 8, 8)", "this
    picture could not be converted for it", "no input for this picture")."""
    from explorer_core.checkpoint import save_checkpoint
    from explorer_core.models import build_model, default_spec

    torch.manual_seed(0)
    spec = default_spec("mlp", 1, 28, 10, hidden=[16])
    path = save_checkpoint(build_model(spec), spec, tmp_path / "fash",
                           {"dataset": "fashion_mnist"})
    at = open_page(app_test, digits_run.best_model(1))
    at.radio(key="insp_img_src").set_value("Test-set samples").run()
    at.toggle(key="insp_compare").set_value(True).run()
    at.radio(key="insp_src_b").set_value("Upload").run()
    at.file_uploader(key="insp_upload_b").set_value(
        [(name, data, "application/octet-stream") for name, data in (
            ("fash.safetensors", path.read_bytes()),
            ("fash.json", path.with_suffix(".json").read_bytes()))]).run()
    assert not at.exception and errors(at) == []
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and "takes grayscale 28×28 inputs, and the first model's test " \
        "samples are grayscale 8×8: it is left out below" in warnings[0], warnings
    left_out = [c.value for c in at.caption if "no input for this picture (see above)" in c.value]
    assert len(left_out) == 2, left_out  # its predictions' column and its sensitivity column
