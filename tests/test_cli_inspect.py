"""`python -m explorer_core inspect`: prediction, scores and heatmaps from the command line."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from explorer_core.checkpoint import save_checkpoint
from explorer_core.cli import main
from explorer_core.models import build_model, default_spec

from conftest import overflowing_checkpoint


def _checkpoint(tmp_path):
    torch.manual_seed(0)
    spec = default_spec("mlp", 1, 8, 10, [32, 16])
    return save_checkpoint(build_model(spec), spec, tmp_path / "m", {"dataset": "digits"})


def test_inspect_writes_predictions_scores_and_heatmaps(tmp_path, capsys):
    ck = _checkpoint(tmp_path)
    img = tmp_path / "d.png"
    drawing = Image.new("L", (40, 40), 255)
    drawing.paste(0, (16, 4, 24, 36))
    drawing.save(img)
    out = tmp_path / "out"
    assert main(["inspect", "--checkpoint", str(ck), "--image", str(img), "--invert",
                 "--neurons", "6", "--layer", "fc2", "--out", str(out)]) == 0
    pred = json.loads((out / "predictions.json").read_text())
    assert pred["layer"] == "fc2" and len(pred["top_k"]) == 5 and len(pred["neurons"]) == 6
    assert pred["explained_class"] == pred["top_k"][0]["class_index"]
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert len(rows) == 16 and {"neuron", "conductance", "rank", "iasa", "iasa_rank"} <= set(rows[0])
    # which attribution made them, as in the page's download
    assert {(r["method"], r["baseline"], r["steps"]) for r in rows} == {
        ("layer_conductance", "black", "32")}
    # and what it explained, as the page's download says it
    assert {(r["model"], r["picture"], r["layer"], r["class"]) for r in rows} == {
        (str(ck), img.name, "fc2", pred["top_k"][0]["class"])}
    assert [int(r["neuron"]) for r in rows[:6]] == pred["neurons"]
    sheet = Image.open(out / "heatmaps.png")
    assert sheet.format == "PNG"
    # the sheet explains its colours off the page, as the page's download does: a
    # blue-to-red bar (with its lines of text) at its foot, below the tiles and captions
    foot = np.asarray(sheet.convert("RGB"))[-100:].astype(int)
    bar = [np.all(np.abs(foot - colour) < 12, axis=2).sum(axis=1)
           for colour in ((178, 24, 43), (33, 102, 172))]
    assert ((bar[0] >= 2) & (bar[1] >= 2)).sum() >= 5  # rows holding both ends of the bar
    assert "predicted" in capsys.readouterr().out


def test_inspect_bad_inputs_exit_with_one_line(tmp_path):
    ck = _checkpoint(tmp_path)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a picture")
    proc = subprocess.run([sys.executable, "-m", "explorer_core", "inspect", "--checkpoint",
                           str(ck), "--image", str(junk), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": str(__import__("conftest").ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "junk.png is not an image" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_a_method_the_layer_cannot_use_names_the_values_method_accepts(tmp_path, capsys):
    ck = _checkpoint(tmp_path)
    img = tmp_path / "d.png"
    Image.new("L", (8, 8), 0).save(img)
    assert main(["inspect", "--checkpoint", str(ck), "--image", str(img), "--method", "gradcam",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "choose one of neuron_conductance, neuron_integrated_gradients" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("field, value, message", [
    ("normalisation", {"mean": ["x"], "std": [0]}, "normalisation mean must be a number"),
    ("normalisation", "abc", "the recorded normalisation 'abc' is not"),
    ("class_names", 5, "the recorded class_names (5) are not one name for each of the "
                       "model's 10 outputs"),
    ("class_names", ["a", "b"], "the recorded class_names (2 names) are not one name"),
    # ten, but not names: a prediction was called "[1]"
    ("class_names", [[1], {}, *"abcdefgh"], "the recorded class_names hold [1]; each must be"),
    ("class_names", [True, *"abcdefghi"], "the recorded class_names hold True; each must be"),
])
def test_a_sidecar_whose_inputs_or_classes_are_malformed_exits_2(tmp_path, capsys, field,
                                                                 value, message):
    """Each is one line. A normalisation of no {mean, std} form and class names that are
    not one per output were ignored without a word: the prediction named Digits' classes
    '0'…'9' and normalised as Digits does, whatever the .json said."""
    ck = _checkpoint(tmp_path)
    sidecar = ck.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta[field] = value
    sidecar.write_text(json.dumps(meta))
    img = tmp_path / "d.png"
    Image.new("L", (8, 8), 0).save(img)
    assert main(["inspect", "--checkpoint", str(ck), "--image", str(img),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
    assert not (tmp_path / "o").exists()


def _inspect_cli(tmp_path, ck, image) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "explorer_core", "inspect", "--checkpoint",
                           str(ck), "--image", str(image), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": str(__import__("conftest").ROOT),
                               "PATH": "/usr/bin:/bin"})


def test_a_std_that_is_0_as_a_float32_exits_2_with_one_line(tmp_path):
    """QA: `"std": [1e-320]` passed the "above 0" check but is 0 in float32: inspect
    printed "predicted 8 (nan%)", exited 0, and wrote a bare NaN into predictions.json
    (not JSON)."""
    ck = _checkpoint(tmp_path)
    sidecar = ck.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta["normalisation"] = {"mean": [0.3], "std": [1e-320]}
    sidecar.write_text(json.dumps(meta))
    img = tmp_path / "img.png"
    Image.new("L", (8, 8), 0).save(img)
    proc = _inspect_cli(tmp_path, ck, img)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("error: the recorded normalisation std [1e-320] is 0 for channel 0 "
                           "as the 32-bit float the input is computed in: every std must be "
                           "above 0 (dividing by 0 would make the input inf)\n")
    assert not (tmp_path / "o").exists()


def test_weights_that_overflow_on_the_image_exit_2_instead_of_a_nan_prediction(tmp_path):
    """Finite weights of 1e30 pass the NaN check but overflow on a real picture: the
    probabilities were NaN, printed as "(nan%)" and written to predictions.json bare."""
    ck = overflowing_checkpoint(tmp_path)
    img = tmp_path / "img.png"
    drawing = Image.new("L", (8, 8), 0)
    drawing.paste(255, (2, 2, 6, 6))
    drawing.save(img)
    proc = _inspect_cli(tmp_path, ck, img)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("error: huge.safetensors gives no finite output for img.png (its "
                           "class probabilities are NaN): its weights overflow 32-bit floats "
                           "on this input\n")
    assert not (tmp_path / "o").exists()


def test_a_pth_of_sparse_tensors_exits_2_with_one_short_line(tmp_path):
    """QA: a sparse state dict with a correct .json sidecar gave a ~2 500-character line
    blaming the spec, with PyTorch's copy_() error once per parameter."""
    ck = _checkpoint(tmp_path)  # m.safetensors and its sidecar m.json
    model = build_model(default_spec("mlp", 1, 8, 10, [32, 16]))
    torch.save({k: v.to_sparse() for k, v in model.state_dict().items()}, tmp_path / "m.pth")
    img = tmp_path / "img.png"
    Image.new("L", (8, 8), 0).save(img)
    proc = _inspect_cli(tmp_path, ck.with_suffix(".pth"), img)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("error: m.pth: sparse tensors are not supported (fc1.weight, "
                           "fc1.bias, fc2.weight …); save the dense state dict "
                           "(tensor.to_dense())\n")
    assert not (tmp_path / "o").exists()


def test_a_checkpoint_with_nan_weights_exits_2_naming_the_tensor(tmp_path, capsys):
    """It used to load and print "predicted 8 (nan%)" with exit code 0."""
    from conftest import nan_checkpoint

    ck = nan_checkpoint(tmp_path, "fc2")
    img = tmp_path / "d.png"
    Image.new("L", (8, 8), 0).save(img)
    assert main(["inspect", "--checkpoint", str(ck), "--image", str(img),
                 "--out", str(tmp_path / "o")]) == 2
    out = capsys.readouterr()
    err = out.err.strip()
    assert err.count("\n") == 0 and "predicted" not in out.out
    assert "nan.safetensors has weights that are not finite: fc2.weight holds NaN" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag,value,span", [
    ("--top-k", "0", "1 to 20"), ("--top-k", "-3", "1 to 20"), ("--top-k", "50", "1 to 20"),
    ("--neurons", "0", "1 to 32"), ("--neurons", "1000", "1 to 32"),
    ("--steps", "1", "2 to 256"), ("--steps", "257", "2 to 256")])
def test_counts_outside_the_pages_ranges_are_refused_before_anything_is_written(
        tmp_path, capsys, flag, value, span):
    """`--top-k 0` listed the best class and exited 0, as if one had been asked for; and
    --neurons 1000 / --top-k 50 passed where the page stops at 32 / 20."""
    ck = _checkpoint(tmp_path)
    img = tmp_path / "d.png"
    Image.new("L", (8, 8), 0).save(img)
    assert main(["inspect", "--checkpoint", str(ck), "--image", str(img), flag, value,
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {flag} must be a whole number from {span}, got {int(value):,}"
    assert not (tmp_path / "o").exists()


def test_the_largest_counts_are_taken_and_top_k_past_the_classes_lists_them_all(tmp_path):
    ck = _checkpoint(tmp_path)
    img = tmp_path / "d.png"
    drawing = Image.new("L", (8, 8), 0)
    drawing.paste(255, (3, 1, 5, 7))
    drawing.save(img)
    out = tmp_path / "o"
    assert main(["inspect", "--checkpoint", str(ck), "--image", str(img), "--top-k", "20",
                 "--neurons", "32", "--steps", "2", "--out", str(out)]) == 0
    pred = json.loads((out / "predictions.json").read_text())
    assert len(pred["top_k"]) == 10 and len(pred["neurons"]) == 32  # 10 classes, fc1 of 32


def _white_ring_on_transparent(path):
    """A white ring drawn on a fully transparent RGBA canvas (what drawing apps save)."""
    from PIL import ImageDraw

    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((12, 8, 52, 56), outline=(255, 255, 255, 255), width=6)
    image.save(path)
    return path


def test_a_white_drawing_on_transparency_is_seen_and_a_blank_picture_is_warned_about(
        tmp_path, capsys):
    """The ring was laid on white, the model saw a blank image and the run warned; it is
    now painted white on black and reaches the model, so no warning. A fully transparent
    picture has nothing in it: a warning, and still a result."""
    ck = _checkpoint(tmp_path)
    img = _white_ring_on_transparent(tmp_path / "ring.png")
    assert main(["inspect", "--checkpoint", str(ck), "--image", str(img),
                 "--out", str(tmp_path / "o")]) == 0
    assert "warning" not in capsys.readouterr().err
    assert (tmp_path / "o" / "predictions.json").exists()
    Image.new("RGBA", (64, 64), (255, 255, 255, 0)).save(tmp_path / "blank.png")
    assert main(["inspect", "--checkpoint", str(ck), "--image", str(tmp_path / "blank.png"),
                 "--out", str(tmp_path / "o2")]) == 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("warning: blank.png: the model's input is "
                                                   "one flat colour (every pixel 255)")
    assert (tmp_path / "o2" / "predictions.json").exists()


def test_an_earlier_result_in_the_folder_is_refused_unless_overwrite(tmp_path, capsys):
    """A second picture inspected into the same --out replaced the first one's
    predictions, scores and heatmaps without a word."""
    ck = _checkpoint(tmp_path)
    img = tmp_path / "d.png"
    Image.new("L", (8, 8), 0).save(img)
    out = tmp_path / "out"
    args = ["inspect", "--checkpoint", str(ck), "--image", str(img), "--neurons", "2",
            "--steps", "4", "--out", str(out)]
    assert main(args) == 0
    first = (out / "predictions.json").read_bytes()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("predictions.json already exists (an earlier result); add "
                        "--overwrite to replace it, or pick another --out"), err
    assert (out / "predictions.json").read_bytes() == first
    assert main(args + ["--overwrite"]) == 0
