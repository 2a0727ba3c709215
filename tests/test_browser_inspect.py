"""The Inspect page in headless Chromium, as a person uses it.

Upload a small Digits MLP checkpoint (our safetensors + JSON pair, trained here for a few
epochs), upload a PNG through the browser's file chooser, see the predicted class and the
grid of neuron heatmaps, then switch the neuron looked at up close.
"""
from __future__ import annotations

import re
import time

import torch
from PIL import Image
from playwright.sync_api import expect

from explorer_core.attribution import predict, top_k
from explorer_core.checkpoint import save_checkpoint
from explorer_core.data import load_dataset
from explorer_core.experiment import RunConfig, create_run, execute
from explorer_core.imaging import denormalise, input_format, load_upload
from explorer_core.models import build_model, default_spec
from explorer_core.training import TrainConfig, evaluate, train

from browser import (choose_option, clipped_chart_titles, open_app, overflowing, rerun_after,
                     wait_for_app, wait_for_charts)


def _uploader(page, text: str):
    return page.locator('[data-testid="stFileUploader"]').filter(has_text=text)


def _away_and_back(page) -> None:
    """To the Retention page and back to Inspect through the sidebar, as a person would
    (one session: a reload would start a new one)."""
    page.get_by_role("link", name="Retention curve").click()
    expect(page.get_by_role("heading", name="Retention curve")).to_be_visible()
    wait_for_app(page)
    page.get_by_role("link", name="Inspect").click()
    expect(page.get_by_role("heading", name="Inspect", exact=True)).to_be_visible()
    wait_for_app(page)


def _grid_captions(page) -> list[str]:
    return [t for t in page.locator('[data-testid="stImageCaption"]').all_inner_texts()
            if " · #" in t]


def test_upload_checkpoint_and_png_see_prediction_and_heatmaps(app_page, streamlit_server,
                                                               tmp_path):
    # a real checkpoint: MLP 64-32-16-10 trained briefly on Digits
    torch.manual_seed(0)
    data = load_dataset("digits")
    spec = default_spec("mlp", 1, 8, 10, [32, 16])
    model = build_model(spec)
    train(model, data, TrainConfig(epochs=15, batch_size=32, seed=0))
    acc = evaluate(model, data.test)[1]
    assert acc > 85
    stem = tmp_path / "digits_mlp"
    weights = save_checkpoint(model, spec, stem, {
        "dataset": "digits", "metrics": {"test_acc": acc},
        "normalisation": {"mean": list(data.info.mean), "std": list(data.info.std)},
        "class_names": list(data.info.classes)})
    # a PNG the test draws: a Digits test image enlarged to 64×64
    fmt = input_format(spec, {"dataset": "digits"})
    sample = denormalise(data.test.x[3], fmt)
    picture = tmp_path / "digit.png"
    Image.fromarray(sample).resize((64, 64), Image.Resampling.NEAREST).save(picture)
    expected = top_k(predict(model.eval(), load_upload(picture.read_bytes(), "digit.png",
                                                       fmt).tensor)[0], 1, fmt.class_names)[0]

    page = app_page
    open_app(page, streamlit_server, "inspect")
    expect(page.get_by_role("heading", name="Inspect", exact=True)).to_be_visible()
    with rerun_after(page):
        page.locator('[data-testid="stRadio"]').filter(has_text="Source") \
            .get_by_text("Upload", exact=True).click()
    with rerun_after(page):
        _uploader(page, "Checkpoint").locator('input[type="file"]').set_input_files(
            [str(weights), str(weights.with_suffix(".json"))])
    wait_for_app(page)
    expect(page.get_by_text(f"{acc:.2f} %")).to_be_visible()
    expect(page.get_by_text("hidden widths 32-16")).to_be_visible()

    with page.expect_file_chooser() as chooser:
        _uploader(page, "Images").get_by_role("button", name=re.compile("Upload")).click()
    with rerun_after(page):
        chooser.value.set_files(str(picture))
    wait_for_app(page)
    wait_for_charts(page)
    assert clipped_chart_titles(page) == []  # every chart title whole
    expect(page.get_by_text(re.compile(rf"predicted {re.escape(expected['class'])} \("))) \
        .to_be_visible()
    expect(page.locator('[data-testid="stVegaLiteChart"]').first).to_be_visible()
    assert len(_grid_captions(page)) == 8
    assert not page.locator('[data-testid="stException"]').count()

    # switch the neuron looked at up close: another heatmap, drawn from the cache
    with rerun_after(page):
        chosen = choose_option(page, "Neuron", 3)
    neuron = re.match(r"neuron (\d+)", chosen).group(1)
    expect(page.get_by_text(f"neuron {neuron}: heatmap", exact=True)).to_be_visible()
    expect(page.get_by_text("all from the cache")).to_be_visible()
    assert len(_grid_captions(page)) == 8

    # another page and back: the uploaders come back empty, the uploaded files do not
    _away_and_back(page)
    expect(page.get_by_text(f"{acc:.2f} %")).to_be_visible()
    expect(page.get_by_text(re.compile(rf"predicted {re.escape(expected['class'])} \("))) \
        .to_be_visible()
    expect(page.get_by_text("Using the files uploaded before: digits_mlp.safetensors, "
                            "digits_mlp.json")).to_be_visible()
    expect(page.get_by_text("Using the files uploaded before: digit.png")).to_be_visible()
    with rerun_after(page):
        page.get_by_role("button", name="Forget them").nth(1).click()
    expect(page.get_by_text("Upload one or more pictures, or switch to test-set samples.")) \
        .to_be_visible()
    expect(page.get_by_text(f"{acc:.2f} %")).to_be_visible()  # the checkpoint stays
    assert not page.locator('[data-testid="stException"]').count()


# Metric values whose text is wider than their tile (Streamlit then shows "98.0…" / "9…").
_CUT_METRICS_JS = """() => [...document.querySelectorAll('[data-testid="stMetricValue"]')]
  .filter(e => e.offsetParent !== null).filter(e => {
    const box = e.querySelector('.stMarkdownEllipsis') || e;
    const text = document.createRange(); text.selectNodeContents(box);
    return text.getBoundingClientRect().width > box.clientWidth + 1; })
  .map(e => e.innerText)"""

# Charts drawn wider than the column that holds them (they spill into the neighbour).
_SPILLED_CHARTS_JS = """() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
  .filter(c => c.offsetParent !== null).filter(c => {
    const col = (c.closest('[data-testid="stColumn"]') || c.parentElement).getBoundingClientRect();
    const drawn = (c.querySelector('svg, canvas') || c).getBoundingClientRect();
    return drawn.left < col.left - 1 || drawn.right > col.right + 1; })
  .map(c => c.querySelector('svg .role-title text')?.textContent || '?')"""


# Words of a picture caption split over two lines ("normalise" / "d"): a range over the
# word has one box per line it spans.
_BROKEN_WORDS_JS = """() => [...document.querySelectorAll('[data-testid="stImageCaption"]')]
  .filter(e => e.offsetParent !== null).flatMap(cap => {
    const broken = [], walk = document.createTreeWalker(cap, NodeFilter.SHOW_TEXT);
    for (let node = walk.nextNode(); node; node = walk.nextNode())
      for (const m of node.data.matchAll(/\\S+/g)) {
        const r = document.createRange();
        r.setStart(node, m.index); r.setEnd(node, m.index + m[0].length);
        if (r.getClientRects().length > 1) broken.push(m[0]);
      }
    return broken; })"""

# Where each model's metric tiles sit, relative to its first tile: [[x, y, width] …] per
# model (four tiles each).
_METRIC_LAYOUT_JS = """() => {
  const boxes = [...document.querySelectorAll('[data-testid="stMetric"]')]
    .filter(e => e.offsetParent !== null).map(e => e.getBoundingClientRect());
  const models = [];
  for (let i = 0; i < boxes.length; i += 4) {
    const first = boxes[i];
    models.push(boxes.slice(i, i + 4).map(b => [Math.round(b.left - first.left),
      Math.round(b.top - first.top), Math.round(b.width)]));
  }
  return models; }"""


def _picture_widths(page) -> list[int]:
    """Widths of the original picture and the model input beside the predictions."""
    return [round(page.locator('[data-testid="stImage"]').filter(has_text=name).first
                  .bounding_box()["width"]) for name in ("original ·", "model input ·")]


def _select(page, label: str, option: str) -> None:
    combo = page.get_by_role("combobox", name=label, exact=True).first
    if option in (combo.input_value() or ""):
        return
    with rerun_after(page):
        choose_option(page, label, option)


def test_compare_fits_at_1100px_and_choices_survive_a_page_switch(app_page, streamlit_server):
    cfg = RunConfig(name=f"pw-inspect-{int(time.time())}", dataset="digits", hidden=[32, 16],
                    schedule={"q": 0.5, "iterations": 2, "kind": "geometric"},
                    dense_epochs=2, retrain_epochs=1, use_cache=False)
    assert execute(create_run(cfg))["state"] == "finished"

    page = app_page
    page.set_viewport_size({"width": 1100, "height": 800})
    open_app(page, streamlit_server, "inspect")
    _select(page, "Run", cfg.name)
    _select(page, "Checkpoint", "iteration 1")
    with rerun_after(page):
        page.get_by_text("Test-set samples", exact=True).click()
    with rerun_after(page):
        box = page.get_by_role("spinbutton", name="First test sample")
        box.fill("10")
        box.press("Enter")
    with rerun_after(page):
        page.get_by_text("Compare with a second checkpoint").click()
    wait_for_charts(page)
    assert page.locator('[data-testid="stMetricValue"]').count() == 8
    # 800 px: halves of the column cut the metrics ("57.6…"), so the models stack there
    for width, height in ((800, 900), (1100, 800), (1400, 1000)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(500)  # let the columns and charts re-lay out
        wait_for_charts(page)
        assert page.evaluate(_CUT_METRICS_JS) == [], width  # every number whole
        assert page.evaluate(_SPILLED_CHARTS_JS) == [], width  # every chart in its column
        assert clipped_chart_titles(page) == [], width
        assert overflowing(page) == [], width
        # at 800 px the pictures were 66 px wide and "normalised" broke mid-word
        assert min(_picture_widths(page)) >= 150, width
        assert page.evaluate(_BROKEN_WORDS_JS) == [], width
        # the two models' tiles line up (at 1400 px: three a row beside four a row)
        layout = page.evaluate(_METRIC_LAYOUT_JS)
        assert len(layout) == 2 and layout[0] == layout[1], (width, layout)
        first, second = (page.get_by_role("heading", name=n, exact=True).bounding_box()
                         for n in ("Model", "Second model"))
        side_by_side = abs(first["y"] - second["y"]) < 5 and second["x"] > first["x"] + 300
        assert side_by_side == (width == 1400), (width, first, second)
    assert not page.locator('[data-testid="stException"]').count()

    # another page and back through the sidebar: the page is as it was left
    _away_and_back(page)
    expect(page.get_by_role("combobox", name="Checkpoint", exact=True).first).to_have_value(
        re.compile("^iteration 1"))
    expect(page.get_by_role("radio", name="Test-set samples")).to_be_checked()
    expect(page.get_by_role("spinbutton", name="First test sample")).to_have_value("10")
    expect(page.get_by_role("switch", name="Compare with a second checkpoint")).to_be_checked()
    assert page.locator('[data-testid="stMetricValue"]').count() == 8


def _box(page, label: str, nth: int = 0):
    return page.get_by_role("combobox", name=label, exact=True).nth(nth)


def test_closed_boxes_show_the_checkpoint_and_picture_actually_loaded(app_page, streamlit_server):
    """After Run first-run → "iteration 5…" → Run fashion-run, the closed Checkpoint box
    still read "iteration 5: 18-9 · 28.1 % kept · test 82.17 %" over fashion-run's
    iteration 0 (in both model slots); the picture box kept "test #0" likewise."""
    stamp = int(time.time())
    names = []
    for hidden in ([32, 16], [24, 12]):
        cfg = RunConfig(name=f"pw-boxes-{hidden[0]}-{stamp}", dataset="digits", hidden=hidden,
                        schedule={"q": 0.5, "iterations": 2, "kind": "geometric"},
                        dense_epochs=1, retrain_epochs=1, use_cache=False)
        assert execute(create_run(cfg))["state"] == "finished"
        names.append(cfg.name)
    first, second = names
    size = len(load_dataset("digits").test)

    page = app_page
    open_app(page, streamlit_server, "inspect")
    _select(page, "Run", first)
    _select(page, "Checkpoint", "iteration 1")
    expect(_box(page, "Checkpoint")).to_have_value(re.compile(r"^iteration 1: test .* · 16-8$"))
    with rerun_after(page):
        choose_option(page, "Run", second)
    expect(_box(page, "Checkpoint")).to_have_value(re.compile(r"^iteration 0: test .* · 24-12$"))
    expect(page.get_by_text(f"{second} · iteration 0", exact=True)).to_be_visible()

    with rerun_after(page):
        page.get_by_text("Compare with a second checkpoint").click()
    for label, option in (("Run", first), ("Checkpoint", "iteration 1"), ("Run", second)):
        with rerun_after(page):
            _box(page, label, 1).click()
            page.get_by_role("option", name=re.compile(re.escape(option))).first.click()
    expect(_box(page, "Checkpoint", 1)).to_have_value(re.compile(r"^iteration 0: test .* · 24-12$"))

    with rerun_after(page):
        page.get_by_text("Test-set samples", exact=True).click()
    expect(_box(page, "Picture to inspect")).to_have_value(re.compile(r"^test #0 "))
    with rerun_after(page):
        field = page.get_by_role("spinbutton", name="First test sample")
        field.fill(str(size - 2))
        field.press("Enter")
    expect(_box(page, "Picture to inspect")).to_have_value(re.compile(rf"^test #{size - 2} "))
    expect(page.get_by_text(f"(2 of the 4 asked for)", exact=False)).to_be_visible()
    assert not page.locator('[data-testid="stException"]').count()
