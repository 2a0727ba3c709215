"""Inspect core: image conversion, bad images, top-k, attributions, cache, catalog, uploads."""
from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from explorer_core.attribution import (AttributionCache, AttributionSettings, baseline_for,
                                       hidden_layers, layer_conductance, neuron_maps,
                                       neuron_table, predict, rank_units, top_k)
from explorer_core.catalog import (UploadedFile, list_cache_checkpoints, list_sweep_checkpoints,
                                   load_upload, summary, sweep_checkpoints)
from explorer_core.checkpoint import load_checkpoint, save_checkpoint
from explorer_core.errors import CheckpointError, ExplorerError
from explorer_core.imaging import (MAX_PIXELS, ConvertOptions, convert_image, dataset_samples,
                                   denormalise, flat_input_warning, grid_image, input_format,
                                   load_upload as load_image, normalise, open_image,
                                   overlay_image, png_bytes, samples_from)
from explorer_core.models import build_model, default_spec

DIGITS = {"dataset": "digits"}


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def stroke_picture(size=(60, 40), mode="RGB") -> Image.Image:
    """Dark vertical bar on white paper, like a pen drawing."""
    img = Image.new(mode, size, "white")
    img.paste("black", (size[0] // 2 - 8, 5, size[0] // 2 + 8, size[1] - 5))
    return img


@pytest.fixture(scope="module")
def digits_fmt():
    return input_format(default_spec("mlp", 1, 8, 10, [32, 16]), DIGITS)


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    return build_model(default_spec("mlp", 1, 8, 10, [32, 16])).eval()


# ------------------------------------------------------------------ input format

def test_input_format_from_meta_and_guessed():
    fmt = input_format(default_spec("mlp", 1, 28, 10), {"dataset": "fashion_mnist"})
    assert fmt.shape == (1, 28, 28) and fmt.class_names[0] == "T-shirt/top" and not fmt.assumed
    flat = input_format({"arch": "mlp", "in": 3072, "hidden": [64], "out": 10})
    assert flat.shape == (3, 32, 32) and flat.dataset == "cifar10" and flat.assumed
    odd = input_format({"arch": "mlp", "in": 100, "hidden": [8], "out": 3})
    assert odd.shape == (1, 10, 10) and odd.dataset is None and odd.class_names == ("0", "1", "2")
    meta = {"normalisation": {"mean": [0.5], "std": [0.25]}, "class_names": list("abcdefghij")}
    own = input_format(default_spec("mlp", 1, 8, 10), meta)
    assert own.mean == (0.5,) and own.std == (0.25,) and own.class_names[1] == "b"
    with pytest.raises(ExplorerError, match="no square"):
        input_format({"arch": "mlp", "in": 10, "out": 2})
    with pytest.raises(ExplorerError, match="Digits"):
        input_format(default_spec("mlp", 1, 28, 10), {"dataset": "digits"})


def test_a_scalar_normalisation_applies_to_every_channel():
    gray = input_format(default_spec("mlp", 1, 8, 10), {"normalisation": {"mean": 0.3, "std": 0.2}})
    assert gray.mean == (0.3,) and gray.std == (0.2,)
    rgb = input_format(default_spec("mlp", 3, 32, 10), {"normalisation": {"mean": 0.5, "std": [0.2]}})
    assert rgb.mean == (0.5,) * 3 and rgb.std == (0.2,) * 3


@pytest.mark.parametrize("norm, match", [({"mean": ["x"], "std": [0.3]}, "mean must be a number"),
                                         ({"mean": [0.1], "std": "wide"}, "std must be a number"),
                                         ({"mean": [0.1], "std": [True]}, "std must be a number"),
                                         ({"mean": [0.1, 0.2], "std": [0.3]}, "does not fit 1")])
def test_a_malformed_normalisation_is_one_clear_error(norm, match):
    with pytest.raises(ExplorerError, match=match) as info:
        input_format(default_spec("mlp", 1, 8, 10), {"normalisation": norm})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("channels, std, words", [
    (1, [0], "std [0.0] is 0 for channel 0: every std must be above 0 (dividing by 0 would "
             "make the input inf)"),
    (3, 0.0, "std [0.0, 0.0, 0.0] is 0 for channel 0"),  # one number for every channel
    (3, [0.2, -0.1, 0.3], "is -0.1 for channel 1: every std must be above 0 (a negative")])
def test_a_zero_or_negative_std_is_named_as_the_problem(channels, std, words):
    """{"mean": [0.5], "std": [0]} was reported as not fitting the channels."""
    with pytest.raises(ExplorerError) as info:
        input_format(default_spec("mlp", channels, 8, 10),
                     {"normalisation": {"mean": [0.5], "std": std}})
    assert words in str(info.value) and "does not fit" not in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("mean, std, words", [
    ([0.3], [1e-320], "std [1e-320] is 0 for channel 0 as the 32-bit float the input is "
                      "computed in: every std must be above 0"),
    ([0.3], [1e-40], "(mean [0.3], std [1e-40]) makes a pixel of 0 ±inf for channel 0"),
    ([1e39], [0.5], "(mean [1e+39], std [0.5]) makes a pixel of 0 ±inf for channel 0"),
    ([0.2, 0.3, 5e38], [0.5, 0.5, 1.0], "makes a pixel of 0 ±inf for channel 2"),
    # past float32 the other way: every pixel would be 0, a constant input
    ([0.3], [1e39], "std [1e+39] is 1e+39 for channel 0, past the 32-bit float"),
    ([0.3], [float("inf")], "std must be a number or a list of numbers, got [Infinity]")])
def test_a_normalisation_that_is_not_finite_in_float32_is_refused(mean, std, words):
    """QA: a std of 1e-320 passed "above 0" but is 0 as a float32: every normalised pixel
    was inf, the model answered "8 (nan%)" and predictions.json held a bare NaN."""
    spec = default_spec("mlp", len(mean), 8, 10)
    with pytest.raises(ExplorerError) as info:
        input_format(spec, {"normalisation": {"mean": mean, "std": std}})
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_tiny_std_that_stays_finite_in_float32_is_kept():
    """The check refuses what overflows, not small numbers: 1e-30 normalises finitely."""
    fmt = input_format(default_spec("mlp", 1, 8, 10),
                       {"normalisation": {"mean": [0.3], "std": [1e-30]}})
    x = normalise(np.full((8, 8), 255, dtype=np.uint8), fmt)
    assert torch.isfinite(x).all() and float(x.max()) > 1e29


def test_normalise_denormalise_round_trip(digits_fmt):
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    x = normalise(pixels, digits_fmt)
    assert x.shape == (1, 1, 8, 8)
    assert torch.allclose(x[0, 0, 0, 1], torch.tensor((4 / 255 - 0.3053) / 0.3759))
    assert np.array_equal(denormalise(x[0], digits_fmt), pixels)


# ------------------------------------------------------------------ conversion

@pytest.mark.parametrize("fmt_name", ["PNG", "JPEG", "BMP", "WEBP", "GIF"])
def test_every_upload_format_converts_to_the_model_size(fmt_name, digits_fmt):
    data = encode(stroke_picture(), fmt_name)
    conv = load_image(data, f"pic.{fmt_name.lower()}", digits_fmt)
    assert conv.pixels.shape == (8, 8) and conv.pixels.dtype == np.uint8
    assert conv.tensor.shape == (1, 1, 8, 8)
    assert conv.original_size == (60, 40)
    # the dark bar is in the middle columns, the paper is white around it
    assert conv.pixels[4, 3:5].mean() < 100 and conv.pixels[4, 0] > 200


def test_rgb_model_gets_rgb_at_its_size():
    fmt = input_format(default_spec("cnn", 3, 32, 10), {"dataset": "cifar10"})
    img = Image.new("RGB", (50, 50), (255, 0, 0))
    conv = convert_image(img, fmt)
    assert conv.pixels.shape == (32, 32, 3) and conv.tensor.shape == (1, 3, 32, 32)
    assert tuple(conv.pixels[16, 16]) == (255, 0, 0)
    assert torch.allclose(conv.tensor[0, :, 0, 0],
                          torch.tensor([(1 - 0.4914) / 0.2470, (0 - 0.4822) / 0.2435,
                                        (0 - 0.4465) / 0.2616]), atol=1e-5)


def test_invert_turns_dark_on_light_into_light_on_dark(digits_fmt):
    img = stroke_picture((40, 40))
    plain = convert_image(img, digits_fmt)
    inverted = convert_image(img, digits_fmt, ConvertOptions(invert=True))
    assert np.array_equal(inverted.pixels.astype(int), 255 - plain.pixels.astype(int))
    assert inverted.pixels[0, 0] < 10 and inverted.pixels[4, 3:5].mean() > 150


@pytest.mark.parametrize("fit", ["pad", "stretch", "crop"])
def test_fits_keep_the_model_size_and_pad_with_the_paper_colour(fit, digits_fmt):
    wide = Image.new("L", (80, 20), 255)   # white paper, dark dot in the middle
    wide.paste(0, (36, 6, 44, 14))
    conv = convert_image(wide, digits_fmt, ConvertOptions(fit=fit))
    assert conv.pixels.shape == (8, 8)
    if fit == "pad":  # padded rows are paper white, not black bars
        assert conv.pixels[0].min() == 255 and conv.pixels[-1].min() == 255
    if fit == "crop":  # the centre 20×20 crop: the dot fills much of it
        assert conv.pixels.min() < 60


def test_transparent_background_becomes_white(digits_fmt):
    img = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    img.paste((0, 0, 0, 255), (6, 0, 10, 16))
    conv = load_image(encode(img, "PNG"), "t.png", digits_fmt)
    assert conv.pixels[4, 0] >= 250 and conv.pixels[4, 4] < 80


def digit_mask(side: int = 56) -> Image.Image:
    """A "7" as grey levels (0 paper, 255 ink), drawn at 4× and reduced, so its edges are
    partly covered: the alpha of a drawing app's antialiased strokes."""
    from PIL import ImageDraw

    big = Image.new("L", (side * 4, side * 4), 0)
    draw = ImageDraw.Draw(big)
    draw.line([(side * 0.8, side * 0.8), (side * 3.2, side * 0.8), (side * 1.6, side * 3.3)],
              fill=255, width=side // 3, joint="curve")
    return big.resize((side, side), Image.Resampling.LANCZOS)


@pytest.fixture(scope="module")
def mnist_fmt():
    return input_format(default_spec("mlp", 1, 28, 10), {"dataset": "mnist"})


@pytest.fixture(scope="module")
def cifar_fmt():
    return input_format(default_spec("cnn", 3, 32, 10), {"dataset": "cifar10"})


def in_alpha(mask: Image.Image, colour: tuple[int, ...], mode: str = "RGBA",
             hidden: tuple[int, ...] | None = None) -> Image.Image:
    """`mask` drawn in `colour` on a transparent canvas: the colour channels hold `colour`
    where the drawing is (and `hidden` under the fully transparent pixels, as apps that
    store black there do), the alpha channel holds the strokes."""
    bands = len(colour)
    arr = np.empty((mask.height, mask.width, bands + 1), dtype=np.uint8)
    arr[..., :bands] = colour
    alpha = np.asarray(mask)
    if hidden is not None:
        arr[alpha == 0, :bands] = hidden
    arr[..., bands] = alpha
    return Image.fromarray(arr, mode)


@pytest.mark.parametrize("mode, colour, hidden", [
    ("RGBA", (255, 255, 255), None),        # colour channels all white, only alpha varies
    ("RGBA", (255, 255, 255), (0, 0, 0)),   # black under the transparency (PIL, many apps)
    ("LA", (255,), None),                   # grey + alpha PNG
], ids=["rgba-white", "rgba-black-under", "la-white"])
def test_a_white_drawing_in_the_alpha_channel_reaches_the_model_as_white_on_black(
        mode, colour, hidden, mnist_fmt):
    """Laid on white it was a blank image: now the same input as the opaque white-on-black
    drawing of the same digit, which is what an MNIST-style model saw in training."""
    mask = digit_mask()
    drawn = load_image(encode(in_alpha(mask, colour, mode, hidden), "PNG"), "seven.png",
                       mnist_fmt)
    opaque = load_image(encode(mask.convert("RGB"), "PNG"), "seven-opaque.png", mnist_fmt)
    assert np.abs(drawn.pixels.astype(int) - opaque.pixels.astype(int)).max() <= 1
    assert torch.allclose(drawn.tensor, opaque.tensor, atol=1.01 / 255 / mnist_fmt.std[0])
    assert drawn.pixels.max() == 255 and drawn.pixels[0, 0] == 0  # white ink, black paper
    assert flat_input_warning(drawn) is None
    # the picture shown as the original is the one the model got, not a white square
    thumb = np.asarray(drawn.original)
    assert thumb[0, 0].tolist() == [0, 0, 0] and thumb.max() == 255


@pytest.mark.parametrize("invert", [False, True])
def test_a_black_drawing_in_the_alpha_channel_is_black_on_white(invert, mnist_fmt):
    """Dark ink keeps its paper white, so invert gives the MNIST-style input as for any
    pen drawing."""
    mask = digit_mask()
    options = ConvertOptions(invert=invert)
    drawn = load_image(encode(in_alpha(mask, (0, 0, 0), hidden=(255, 255, 255)), "PNG"),
                       "seven.png", mnist_fmt, options)
    paper = load_image(encode(Image.eval(mask, lambda v: 255 - v), "PNG"), "seven-paper.png",
                       mnist_fmt, options)
    assert np.abs(drawn.pixels.astype(int) - paper.pixels.astype(int)).max() <= 1
    assert drawn.pixels[0, 0] == (0 if invert else 255)


def test_a_light_colour_drawn_in_alpha_is_painted_on_black(cifar_fmt):
    """The opposite background of a light ink is black, in colour as in grey."""
    mask = Image.new("L", (40, 40), 0)
    mask.paste(255, (16, 4, 24, 36))
    conv = load_image(encode(in_alpha(mask, (255, 230, 0), hidden=(0, 0, 0)), "PNG"),
                      "bar.png", cifar_fmt)
    assert conv.pixels[16, 16].tolist() == [255, 230, 0]
    assert conv.pixels[16, 2].tolist() == [0, 0, 0] and conv.pixels[1, 1].tolist() == [0, 0, 0]


def test_a_colourful_transparent_image_is_still_laid_on_white(cifar_fmt):
    """Real colour content is a picture, not ink: transparency is white paper, as before.
    Light colours, so a wrong "alpha drawing" reading would show as a black background."""
    img = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    img.paste((255, 255, 0, 255), (8, 8, 20, 32))    # yellow
    img.paste((0, 255, 255, 255), (20, 8, 32, 32))   # cyan
    img.paste((255, 0, 255, 128), (8, 32, 32, 36))   # half-transparent magenta
    conv = load_image(encode(img, "PNG"), "blocks.png", cifar_fmt)
    assert conv.pixels[2, 2].tolist() == [255, 255, 255]
    assert conv.pixels[16, 12].tolist() == [255, 255, 0]
    assert conv.pixels[16, 20].tolist() == [0, 255, 255]
    assert np.asarray(conv.original)[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize("picture, mode", [
    (Image.new("RGBA", (30, 30), (255, 255, 255, 0)), "RGBA"),     # fully transparent
    (Image.new("RGBA", (30, 30), (255, 255, 255, 128)), "RGBA"),   # translucent, uniform
    (Image.new("RGB", (30, 30), (255, 255, 255)), "RGB"),          # white paper, nothing on it
], ids=["transparent", "translucent", "opaque"])
def test_a_picture_with_nothing_in_it_is_still_warned_about(picture, mode, mnist_fmt):
    conv = load_image(encode(picture, "PNG"), "blank.png", mnist_fmt)
    assert conv.original_mode == mode
    warning = flat_input_warning(conv)
    assert warning is not None and warning.startswith(
        "blank.png: the model's input is one flat colour (every pixel ")
    assert "\n" not in warning


def test_gif_uses_the_first_frame(digits_fmt):
    frames = [Image.new("L", (16, 16), 255), Image.new("L", (16, 16), 0)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    conv = load_image(buf.getvalue(), "anim.gif", digits_fmt)
    assert conv.pixels.min() == 255


@pytest.mark.parametrize("orientation, size", [(1, (4000, 3000)), (6, (3000, 4000))])
def test_a_big_jpeg_is_described_by_the_file_not_by_its_reduced_decode(orientation, size,
                                                                      digits_fmt):
    """A JPEG is decoded at a reduced scale in the model's mode (`draft`): a 4000×3000
    RGB photo was captioned "original · 1000×750 L". A phone photo turned a quarter by
    its EXIF tag is described upright, as it is shown."""
    photo = Image.new("RGB", (4000, 3000), (200, 30, 30))
    exif = photo.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", exif=exif)
    conv = load_image(buf.getvalue(), "photo.jpg", digits_fmt)
    assert (conv.original_size, conv.original_mode) == (size, "RGB")
    assert conv.pixels.shape == (8, 8)  # still drafted: the model's size and mode
    small = load_image(encode(Image.new("RGB", (64, 64), (9, 9, 9)), "JPEG"), "s.jpg", digits_fmt)
    assert (small.original_size, small.original_mode) == ((64, 64), "RGB")


def test_sixteen_bit_png_is_scaled_to_eight_bits(digits_fmt):
    arr = np.full((10, 10), 65535, dtype=np.uint16)
    arr[:, :5] = 0
    conv = load_image(encode(Image.fromarray(arr), "PNG"), "deep.png", digits_fmt,
                      ConvertOptions(fit="stretch"))
    assert conv.pixels[:, 0].max() == 0 and conv.pixels[:, -1].min() == 255


def test_test_samples_come_from_the_models_test_split(digits_fmt):
    samples = dataset_samples(digits_fmt, [0, 5])
    assert [s.tensor.shape for s in samples] == [(1, 1, 8, 8)] * 2
    assert samples[0].label is not None and samples[0].pixels.shape == (8, 8)
    with pytest.raises(ExplorerError, match="does not exist"):
        dataset_samples(digits_fmt, [10_000])


# ------------------------------------------------------------------ bad images

def test_samples_past_the_end_of_the_test_set_show_what_exists_and_say_so(digits_fmt):
    """First sample 9998, four asked for, of a 10 000-image set showed nothing but
    "test sample 10000 does not exist"."""
    from explorer_core.data import load_dataset

    size = len(load_dataset("digits").test)
    samples, note = samples_from(digits_fmt, size - 2, 4)
    assert [s.name.split(" ")[1] for s in samples] == [f"#{size - 2}", f"#{size - 1}"]
    assert note is not None and f"samples {size - 2}–{size - 1}" in note \
        and "2 of the 4" in note and f"0–{size - 1}" in note
    samples, note = samples_from(digits_fmt, 0, 4)  # inside the set: all of them, no note
    assert len(samples) == 4 and note is None
    with pytest.raises(ExplorerError, match=f"test sample {size} does not exist.*0–{size - 1}"):
        samples_from(digits_fmt, size, 4)  # nothing of it exists: still an error


def png_header(width: int, height: int) -> bytes:
    """A PNG with a valid IHDR claiming width×height and no pixel data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("data, words", [
    (b"", "empty"),
    (b"hello, this is a text file\n" * 10, "not an image"),
    (b"%PDF-1.4 fake", "not an image"),
    (encode(stroke_picture(), "PNG")[:120], "damaged"),
    # a file cut short is said so, not as Pillow's "(OSError)" or "(0 bytes not processed)"
    (encode(stroke_picture(), "PNG")[:-20], "damaged PNG image: the file ends before"),
    (encode(stroke_picture(), "JPEG")[:-20], "damaged JPEG image: the file ends before"),
    # one byte changed in the header (its checksum fails): Pillow cannot identify it, yet
    # it is a damaged PNG, not "not an image"
    (png_header(8, 8)[:20] + b"\x01" + png_header(8, 8)[21:], "damaged PNG image: its header"),
    (b"\xff\xd8\xff\xe0" + b"\0" * 40, "damaged JPEG image"),
    (png_header(8000, 6000), "megapixels"),        # 48 MP: refused from the header alone
    (png_header(100_000, 100_000), "megapixels"),  # 10 GP: Pillow's own bomb guard
])
def test_bad_images_are_refused_with_a_clear_message(data, words):
    with pytest.raises(ExplorerError) as exc:
        open_image(data, "upload.png")
    assert words in str(exc.value) and "upload.png" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_forty_megapixels_pass_the_size_check():
    assert MAX_PIXELS == 40_000_000
    with pytest.raises(ExplorerError) as exc:  # 4000×2500 = 10 MP is allowed: fails on its data
        open_image(png_header(4000, 2500), "ten.png")
    assert "damaged" in str(exc.value) and "megapixels" not in str(exc.value)


# ------------------------------------------------------------------ predictions

def test_top_k_is_sorted_named_and_clipped(mlp, digits_fmt):
    probs = predict(mlp, torch.randn(3, 1, 8, 8))
    assert probs.shape == (3, 10)
    assert torch.allclose(probs.sum(1), torch.ones(3))
    rows = top_k(probs[0], 3, digits_fmt.class_names)
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert rows[0]["probability"] >= rows[1]["probability"] >= rows[2]["probability"]
    assert rows[0]["class_index"] == int(probs[0].argmax())
    assert rows[0]["class"] == digits_fmt.class_names[rows[0]["class_index"]]
    assert len(top_k(probs[0], 50, digits_fmt.class_names)) == 10
    named = top_k(torch.tensor([0.1, 0.7, 0.2]), 2, ["cat", "dog", "emu"])
    assert [(r["class"], r["probability"]) for r in named] == [("dog", pytest.approx(0.7)),
                                                                ("emu", pytest.approx(0.2))]


# ------------------------------------------------------------------ attributions

@pytest.mark.parametrize("method", ["neuron_conductance", "neuron_integrated_gradients"])
def test_mlp_neuron_maps_have_the_image_shape(mlp, digits_fmt, method):
    x = torch.randn(1, 1, 8, 8)
    for layer, units in (("fc1", 32), ("fc2", 16)):
        maps = neuron_maps(mlp, layer, [0, 3, units - 1], x, 2,
                           AttributionSettings(method, "blurred", 8), digits_fmt)
        assert maps.shape == (3, 8, 8) and torch.isfinite(maps).all()
        cond = layer_conductance(mlp, layer, x, 2, baseline_for(x, "black", digits_fmt), 8)
        assert cond.shape == (units,)


def test_batched_maps_equal_one_captum_call_per_neuron(mlp, digits_fmt):
    from captum.attr import NeuronConductance

    x = torch.randn(1, 1, 8, 8)
    neurons = [5, 0, 17]
    maps = neuron_maps(mlp, "fc1", neurons, x, 4,
                       AttributionSettings("neuron_conductance", "black", 12), digits_fmt)
    base = baseline_for(x, "black", digits_fmt)
    for k, n in enumerate(neurons):
        ref = NeuronConductance(mlp, mlp.fc1).attribute(x, n, baselines=base, target=4,
                                                        n_steps=12, method="gausslegendre")
        assert torch.allclose(maps[k], ref.sum(1)[0], atol=1e-6)


def test_neuron_conductance_sums_to_the_layer_conductance(mlp, digits_fmt):
    x = torch.randn(1, 1, 8, 8)
    base = baseline_for(x, "black", digits_fmt)
    layer = layer_conductance(mlp, "fc1", x, 1, base, 200)
    maps = neuron_maps(mlp, "fc1", list(range(32)), x, 1,
                       AttributionSettings("neuron_conductance", "black", 200), digits_fmt)
    assert torch.allclose(maps.sum((1, 2)), layer, atol=0.02 * float(layer.abs().max()))
    logit_change = (mlp(x) - mlp(base))[0, 1].item()
    assert layer.sum().item() == pytest.approx(logit_change, rel=0.05, abs=1e-3)


def test_a_disconnected_neuron_has_an_all_zero_heatmap(digits_fmt):
    torch.manual_seed(1)
    model = build_model(default_spec("mlp", 1, 8, 10, [32, 16])).eval()
    with torch.no_grad():
        model.fc1.weight[7] = 0      # no incoming weights (its bias stays)
        model.fc2.weight[:, 7] = 0   # no outgoing weights
    x = torch.randn(1, 1, 8, 8)
    for method in ("neuron_conductance", "neuron_integrated_gradients"):
        maps = neuron_maps(model, "fc1", [7, 8], x, 3, AttributionSettings(method, "black", 16),
                           digits_fmt)
        assert torch.count_nonzero(maps[0]) == 0
        assert torch.count_nonzero(maps[1]) > 0
    cond = layer_conductance(model, "fc1", x, 3, baseline_for(x, "black", digits_fmt), 16)
    assert cond[7] == 0
    rgb, alpha = __import__("explorer_core.imaging", fromlist=["x"]).diverging_rgb(
        maps[0].numpy())
    assert alpha.max() == 0  # drawn as nothing at all


@pytest.mark.parametrize("method", ["gradcam", "neuron_conductance",
                                    "neuron_integrated_gradients"])
def test_conv_channels_get_maps_upsampled_to_the_image(method):
    torch.manual_seed(0)
    spec = default_spec("cnn", 3, 16, 10)
    spec["channels"], spec["hidden"] = [4, 6], [12]
    model = build_model(spec).eval()
    fmt = input_format(spec)
    x = torch.randn(1, 3, 16, 16)
    assert [l.kind for l in hidden_layers(model)] == ["conv", "conv", "linear"]
    maps = neuron_maps(model, "features.3", [0, 5], x, 2, AttributionSettings(method, "mean", 6),
                       fmt)
    assert maps.shape == (2, 16, 16) and torch.isfinite(maps).all()
    if method == "gradcam":
        assert (maps >= 0).all()
    cond = layer_conductance(model, "features.0", x, 2, baseline_for(x, "mean", fmt), 6)
    assert cond.shape == (4,)


def test_bad_settings_and_neurons_are_refused(mlp, digits_fmt):
    x = torch.randn(1, 1, 8, 8)
    with pytest.raises(ExplorerError, match="does not apply"):
        neuron_maps(mlp, "fc1", [0], x, 0, AttributionSettings("gradcam"), digits_fmt)
    with pytest.raises(ExplorerError, match="steps"):
        AttributionSettings(steps=1).validate()
    with pytest.raises(ExplorerError, match="does not exist"):
        neuron_maps(mlp, "fc1", [32], x, 0, AttributionSettings(), digits_fmt)
    with pytest.raises(ExplorerError, match="no hidden layer"):
        neuron_maps(mlp, "fc3", [0], x, 0, AttributionSettings(), digits_fmt)


def test_baselines(digits_fmt):
    x = torch.randn(1, 1, 8, 8)
    black = baseline_for(x, "black", digits_fmt)
    assert np.all(denormalise(black[0], digits_fmt) == 0)
    assert torch.count_nonzero(baseline_for(x, "mean", digits_fmt)) == 0
    blurred = baseline_for(x, "blurred", digits_fmt)
    assert blurred.shape == x.shape and blurred.std() < x.std()
    assert blurred.mean().item() == pytest.approx(x.mean().item(), abs=0.3)


def test_neuron_table_ranks_by_magnitude_with_iasa_beside():
    cond = torch.tensor([0.1, -0.5, 0.3, 0.0])
    iasa = torch.tensor([4.0, 1.0, 3.0, 2.0], dtype=torch.float64)
    table = neuron_table(cond, iasa)
    assert table["neuron"].tolist() == [1, 2, 0, 3] == rank_units(cond)
    assert table["rank"].tolist() == [1, 2, 3, 4]
    assert table.set_index("neuron")["iasa_rank"].to_dict() == {0: 1, 2: 2, 3: 3, 1: 4}


def test_cache_computes_each_neuron_map_once(mlp, digits_fmt):
    cache = AttributionCache()
    x = torch.randn(1, 1, 8, 8)
    s = AttributionSettings("neuron_integrated_gradients", "black", 8)
    first = cache.neuron_maps(mlp, "m", x, "fc1", [0, 1, 2], 3, s, digits_fmt)
    assert cache.computed == 3
    again = cache.neuron_maps(mlp, "m", x, "fc1", [2, 0], 3, s, digits_fmt)
    assert cache.computed == 3 and np.array_equal(again[0], first[0])
    cache.neuron_maps(mlp, "m", x, "fc1", [0, 1, 2, 9], 3, s, digits_fmt)
    assert cache.computed == 4  # only neuron 9 was new
    cache.neuron_maps(mlp, "m", x, "fc1", [0], 3, AttributionSettings(
        "neuron_integrated_gradients", "black", 9), digits_fmt)
    cache.neuron_maps(mlp, "m", x + 1, "fc1", [0], 3, s, digits_fmt)
    assert cache.computed == 6  # other steps, other image: recomputed
    small = AttributionCache(max_entries=2)
    small.neuron_maps(mlp, "m", x, "fc1", [0, 1, 2], 3, s, digits_fmt)
    assert len(small) == 2


def test_heatmap_pictures(digits_fmt):
    pixels = np.zeros((8, 8), dtype=np.uint8)
    values = np.zeros((8, 8))
    values[0, 0], values[7, 7] = 1.0, -1.0
    tile = overlay_image(pixels, values, target=80)
    assert tile.size == (80, 80)
    r, g, b = tile.getpixel((2, 2))
    assert r > b  # positive is red
    r, g, b = tile.getpixel((77, 77))
    assert b > r  # negative is blue
    sheet = grid_image([tile] * 5, [f"n{i}" for i in range(5)], columns=4, title="t")
    assert sheet.width > 4 * 80 and sheet.height > 2 * 80
    assert Image.open(io.BytesIO(png_bytes(sheet))).format == "PNG"


def _dark_columns(sheet: Image.Image, left: int, right: int, top: int, bottom: int) -> int:
    """How many pixels darker than mid-grey lie in the box (text drawn there)."""
    box = np.asarray(sheet.convert("L").crop((left, top, right, bottom)))
    return int((box < 128).sum())


def test_grid_captions_stay_inside_their_tiles_and_a_legend_explains_the_colours():
    """The downloaded sheet had "+9.35neuron 8 · #2…": captions wider than 112 px tiles ran
    into the next one and past the sheet's edge, and nothing said what the colours mean."""
    from explorer_core.attribution import colour_meaning

    tile = Image.new("RGB", (112, 112), (128, 128, 128))  # a Fashion-MNIST tile: 28 × 4
    captions = [f"neuron {n} · #{n + 1} · {(-1) ** n * 9.35 / (n + 1):+.3g}" for n in range(8)]
    captions[5] = "channel 1234567890123456789 · #6 · +1.0"  # one word wider than a tile
    legend = colour_meaning("neuron_conductance", "neuron", "Ankle boot", 0.228)
    sheet = grid_image([tile] * 8, captions, columns=4, title="fashion-run · iteration 8 · fc1 "
                       "(21 neurons) · class Ankle boot · test #0 (Ankle boot)", legend=legend)
    tiles = np.asarray(sheet)
    grey = np.all(tiles == 128, axis=2)  # tile pixels (text may hold a few such greys)
    cols = np.flatnonzero(grey.sum(axis=0) >= 112)
    starts = [c for c in cols if c - 1 not in cols]
    ends = [c for c in cols if c + 1 not in cols]
    assert len(starts) == 4  # four tile columns
    rows = np.flatnonzero(grey.sum(axis=1) >= 112)
    band = (int(rows.min()), int(rows.max()) + 60)  # both rows of tiles and their captions
    # nothing is drawn in the gaps between the tile columns, nor beyond the sheet's edge
    for end, start in zip(ends, starts[1:]):
        gap_left, gap_right = int(end) + 2, int(start) - 1
        assert _dark_columns(sheet, gap_left, gap_right, *band) == 0, (end, start)
    assert _dark_columns(sheet, sheet.width - 4, sheet.width, 0, sheet.height) == 0
    # the legend: a blue-to-red bar below the tiles
    foot = tiles[rows.max() + 1:]
    reds = np.all(np.abs(foot.astype(int) - (178, 24, 43)) < 12, axis=2).sum()
    blues = np.all(np.abs(foot.astype(int) - (33, 102, 172)) < 12, axis=2).sum()
    assert reds > 20 and blues > 20
    assert "red pixels raise the score of class Ankle boot" in legend and "±0.228" in legend


def test_the_legend_says_what_each_method_explains():
    from explorer_core.attribution import colour_meaning

    assert "the neuron's output" in colour_meaning("neuron_integrated_gradients", "neuron", "3")
    assert "class 3" in colour_meaning("neuron_conductance", "neuron", "3")
    assert "no" in colour_meaning("gradcam", "channel", "3") and "blue" in \
        colour_meaning("gradcam", "channel", "3")
    assert "own largest value" in colour_meaning("neuron_conductance", "neuron", "3", None)


# ------------------------------------------------------------------ catalog and uploads

@pytest.fixture
def saved(tmp_path, mlp):
    meta = {"dataset": "digits", "metrics": {"test_acc": 91.5}, "percent_retained": 100.0}
    return save_checkpoint(mlp, default_spec("mlp", 1, 8, 10, [32, 16]), tmp_path / "m", meta)


def test_sweep_and_cache_folders_are_listed(tmp_path, saved):
    from explorer_core.rundir import SweepPaths

    sweep = SweepPaths(tmp_path / "sweeps" / "2026-11-20" / "grid-1")
    sweep.checkpoints_dir.mkdir(parents=True)
    sweep.config.write_text("{}")
    for suffix in (".safetensors", ".json"):
        (sweep.checkpoints_dir / f"mlp-digits-b32-s0-neuron-l1-r50{suffix}").write_bytes(
            saved.with_suffix(suffix).read_bytes())
    (sweep.checkpoints_dir / "orphan.safetensors").write_bytes(b"no sidecar")
    entries = list_sweep_checkpoints(tmp_path / "sweeps")
    assert [e.group for e in entries] == ["grid-1 (2026-11-20)"]
    assert entries[0].test_acc == 91.5 and "91.50" in entries[0].label
    assert entries[0].label.startswith("mlp-digits-b32-s0-neuron-l1-r50")
    assert [e.path.name for e in list_cache_checkpoints(tmp_path)] == ["m.safetensors"]
    assert list_sweep_checkpoints(tmp_path / "missing") == []


def test_upload_of_our_checkpoint_pair(saved, mlp):
    files = [UploadedFile("best.safetensors", saved.read_bytes()),
             UploadedFile("best.json", saved.with_suffix(".json").read_bytes())]
    ck = load_upload(files)
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(ck.model(x), mlp(x))
    assert ck.meta["dataset"] == "digits" and ck.path is None
    info = summary(ck)
    assert info["widths"] == [32, 16] and info["parameters"] == 64 * 32 + 32 + 32 * 16 + 16 + 170
    assert info["macs"] == 64 * 32 + 32 * 16 + 16 * 10 and info["test_acc"] == 91.5


def test_upload_of_a_plain_state_dict_with_a_spec(tmp_path, mlp):
    buf = io.BytesIO()
    torch.save(mlp.state_dict(), buf)
    spec = default_spec("mlp", 1, 8, 10, [64, 64])  # dense template; weights are narrower
    ck = load_upload([UploadedFile("weights.pth", buf.getvalue())], spec)
    assert ck.model.hidden == [32, 16]
    # the caption names the widths of these weights, not the template's (it said "64-64"
    # beside the parameter count of a 32-16 model)
    assert summary(ck)["widths_text"] == "32-16"
    with pytest.raises(ExplorerError, match="needs a model spec"):
        load_upload([UploadedFile("weights.pth", buf.getvalue())])


def test_a_pruned_pth_with_the_dense_spec_reports_the_share_kept(tmp_path, mlp):
    """The page showed "Hidden kept —" for a pruned .pth given with its dense spec."""
    buf = io.BytesIO()
    torch.save(mlp.state_dict(), buf)  # 32-16
    pth = UploadedFile("weights.pth", buf.getvalue())
    ck = load_upload([pth], default_spec("mlp", 1, 8, 10, [64, 32]))
    assert summary(ck)["percent_retained"] == pytest.approx(50.0)
    dense = UploadedFile("dense.json", json.dumps(default_spec("mlp", 1, 8, 10, [64, 64])).encode())
    assert summary(load_upload([pth, dense]))["percent_retained"] == pytest.approx(100 * 48 / 128)
    sidecar = UploadedFile("m.json", json.dumps({  # a sidecar's own record wins
        "spec": default_spec("mlp", 1, 8, 10, [32, 16]), "percent_retained": 12.5}).encode())
    assert summary(load_upload([pth, sidecar]))["percent_retained"] == 12.5


def test_an_upload_with_nan_weights_is_refused_under_its_own_name(saved, mlp):
    with torch.no_grad():
        broken = {k: v.clone() for k, v in mlp.state_dict().items()}
        broken["fc2.weight"][3, 3] = float("nan")
    buf = io.BytesIO()
    torch.save(broken, buf)
    for files, spec in (([UploadedFile("mine.pth", buf.getvalue())],
                         default_spec("mlp", 1, 8, 10, [64, 64])),
                        ([UploadedFile("mine.pth", buf.getvalue()),
                          UploadedFile("mine.json", saved.with_suffix(".json").read_bytes())], None)):
        with pytest.raises(CheckpointError) as exc:
            load_upload(files, spec)
        assert str(exc.value).startswith("mine.pth has weights that are not finite: fc2.weight "
                                         "holds NaN (1 of 512 values)"), str(exc.value)


class _TouchesFile:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_upload_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({"fc1.weight": torch.zeros(2, 2), "x": _TouchesFile(marker)}, buf)
    raw = pickle.dumps(_TouchesFile(marker), protocol=2)
    spec = default_spec("mlp", 1, 8, 10)
    for name, data in (("evil.pth", buf.getvalue()), ("evil.pt", raw)):
        with pytest.raises(CheckpointError) as exc:
            load_upload([UploadedFile(name, data)], spec)
        assert "refused" in str(exc.value) and name in str(exc.value)
        assert "upload" + Path(name).suffix not in str(exc.value)  # the user's name, not ours
    assert not marker.exists(), "loading the upload ran its code"


def test_bad_checkpoint_uploads_get_clear_messages(saved):
    pair = saved.read_bytes(), saved.with_suffix(".json").read_bytes()
    wrong = b'{"spec": {"arch": "mlp", "in": 64, "hidden": [99, 16], "out": 10}}'
    cases = [
        ([UploadedFile("a.safetensors", b"garbage")], "not a valid safetensors"),
        ([UploadedFile("a.safetensors", pair[0]), UploadedFile("a.json", wrong)], "99"),
        ([UploadedFile("a.json", pair[1])], "no weights file"),
        ([UploadedFile("a.safetensors", pair[0]), UploadedFile("notes.txt", b"x")], "notes.txt"),
        ([UploadedFile("a.safetensors", pair[0]), UploadedFile("a.json", b"{nope")], "not a JSON"),
    ]
    for files, words in cases:
        with pytest.raises(ExplorerError) as exc:
            load_upload(files)
        assert words in str(exc.value)


def _pth(model: torch.nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def test_a_sidecar_of_other_widths_is_refused_for_a_pth_but_a_dense_template_is_not(saved, mlp):
    """wrongshape.pth (20·10) with first5.json (the sidecar of an 18·9 model) loaded as
    20·10 and showed the sidecar's 82.17 % and 28.1 % kept."""
    torch.manual_seed(1)
    other = build_model(default_spec("mlp", 1, 8, 10, [20, 10]))
    sidecar = UploadedFile("first5.json", saved.with_suffix(".json").read_bytes())  # 32·16
    with pytest.raises(CheckpointError) as exc:
        load_upload([UploadedFile("wrongshape.pth", _pth(other)), sidecar])
    assert str(exc.value) == ("first5.json records hidden widths 32·16 but the weights have "
                              "20·10: they are not one checkpoint")
    # the same .pth with its own sidecar keeps the sidecar's records
    ck = load_upload([UploadedFile("m.pth", _pth(mlp)), sidecar])
    assert summary(ck)["test_acc"] == 91.5 and summary(ck)["percent_kept"] == 100.0
    # a bare spec is a template: narrower weights are fine and report what they kept …
    dense = default_spec("mlp", 1, 8, 10, [40, 20])
    template = UploadedFile("dense.json", json.dumps(dense).encode())
    kept = summary(load_upload([UploadedFile("wrongshape.pth", _pth(other)), template]))
    assert kept["widths"] == [20, 10] and kept["percent_kept"] == pytest.approx(50.0)
    assert kept["test_acc"] is None  # a template records no metrics
    # … but weights wider than it were not pruned from it
    with pytest.raises(CheckpointError, match=r"wrongshape.pth has hidden widths 32·16, wider "
                                              r"than the model spec's 20·10"):
        load_upload([UploadedFile("wrongshape.pth", _pth(mlp))],
                    default_spec("mlp", 1, 8, 10, [20, 10]))


def test_a_masked_model_reports_non_zero_weights_not_hidden_units(tmp_path, mlp):
    """A weight-masked sweep cell showed "Hidden kept 25.7 %" beside dense widths 256·64
    and the dense parameter count."""
    from explorer_core.masks import apply_masks, make_permanent

    masked = build_model(default_spec("mlp", 1, 8, 10, [32, 16]))
    masked.load_state_dict(mlp.state_dict())
    apply_masks(masked, 0.75, "weight")
    make_permanent(masked)
    params = sum(p.numel() for p in masked.parameters())
    nonzero = sum(int((p != 0).sum()) for p in masked.parameters())
    cell = {"type": "weight", "criterion": "magnitude", "ratio": 0.75}
    path = save_checkpoint(masked, default_spec("mlp", 1, 8, 10, [32, 16]), tmp_path / "w",
                           {"dataset": "digits", "percent_retained": 100.0 * nonzero / params,
                            "cell": cell, "widths": [32, 16]})
    from explorer_core.checkpoint import load_checkpoint

    info = summary(load_checkpoint(path))
    assert info["masked"] and info["kept"] == "non-zero weights"
    assert info["widths"] == [32, 16] and info["parameters"] == params
    assert info["nonzero_parameters"] == nonzero < params / 2
    assert info["percent_kept"] == pytest.approx(100.0 * nonzero / params)
    # without a record of the pruning type the zeros themselves tell
    bare = load_upload([UploadedFile("w.pth", _pth(masked))], default_spec("mlp", 1, 8, 10,
                                                                         [32, 16]))
    assert summary(bare)["masked"] and summary(bare)["kept"] == "non-zero weights"
    # a model whose units were removed keeps its recorded share of hidden units
    plain = summary(load_upload([UploadedFile("p.pth", _pth(mlp))],
                                default_spec("mlp", 1, 8, 10, [64, 32])))
    assert not plain["masked"] and plain["kept"] == "hidden units" \
        and plain["percent_kept"] == pytest.approx(50.0)
    assert plain["nonzero_parameters"] == plain["parameters"]


def _sweep_with(root: Path, name: str, saved: Path, cells: dict[str, dict]) -> None:
    from explorer_core.rundir import SweepPaths

    sweep = SweepPaths(root / "2026-11-20" / name)
    sweep.checkpoints_dir.mkdir(parents=True)
    sweep.config.write_text("{}")
    for cell_id, meta in cells.items():
        (sweep.checkpoints_dir / f"{cell_id}.safetensors").write_bytes(saved.read_bytes())
        info = {**json.loads(saved.with_suffix(".json").read_text()), **meta}
        (sweep.checkpoints_dir / f"{cell_id}.json").write_text(json.dumps(info))


def test_sweep_checkpoints_are_grouped_by_sweep_and_masked_cells_say_non_zero(tmp_path, saved):
    """The Sweeps source listed the same cell id once per sweep, with nothing to tell
    which sweep each came from."""
    cell = "mlp-digits-b64-s0-weight-magnitude-r75"
    masked = {"cell": {"type": "weight"}, "percent_retained": 25.7}
    _sweep_with(tmp_path / "sweeps", "grid-a", saved, {cell: masked})
    _sweep_with(tmp_path / "sweeps", "grid-b", saved,
                {cell: masked, "mlp-digits-b64-s0-neuron-l1-r50": {"cell": {"type": "neuron"},
                                                                   "percent_retained": 50.0}})
    groups = sweep_checkpoints(tmp_path / "sweeps")
    assert set(groups) == {"grid-a (2026-11-20)", "grid-b (2026-11-20)"}
    assert [e.name for e in groups["grid-a (2026-11-20)"]] == [cell]
    labels = {e.name: e.label for e in groups["grid-b (2026-11-20)"]}
    assert "25.7 % weights non-zero" in labels[cell] and "kept" not in labels[cell]
    assert "50.0 % kept" in labels["mlp-digits-b64-s0-neuron-l1-r50"]
    # a masked model keeps its dense widths: said, they cut its label at 800 px
    # the accuracy first, the widths last: a narrow picker cuts the tail
    neuron = labels["mlp-digits-b64-s0-neuron-l1-r50"].split(": ")[1].split(" · ")
    assert neuron[0].startswith("test ") and neuron[1] == "50.0 % kept"
    assert neuron[2][0].isdigit() and neuron[2] not in labels[cell]
    assert labels[cell].split(": ")[1].split(" · ")[0].startswith("test ")


def test_a_sidecars_cell_record_of_any_shape_leaves_the_id_as_the_name(tmp_path, saved):
    """A cell record whose ratio is a 400-digit number raised OverflowError out of the
    Sweeps list; a record of the wrong shape names the checkpoint by its id."""
    cell = "mlp-digits-b64-s0-neuron-l1-r50"
    good = {"model": "mlp", "dataset": "digits", "batch_size": 64, "seed": 0,
            "type": "neuron", "criterion": "l1", "ratio": 0.5}
    for i, record in enumerate([{**good, "ratio": 10 ** 400}, {**good, "seed": "0"},
                                {"type": "neuron"}, "mlp", {**good, "ratio": 0.25}]):
        root = tmp_path / f"sweeps{i}"
        _sweep_with(root, "grid", saved, {cell: {"cell": record}})
        [entry] = list_sweep_checkpoints(root)
        assert entry.title == cell, record  # the ratio 0.25 is another cell's
    root = tmp_path / "sweeps-good"
    _sweep_with(root, "grid", saved, {cell: {"cell": good}})
    assert list_sweep_checkpoints(root)[0].title == \
        "MLP · Digits · batch 64 · seed 0 · Neuron · L1 norm of weights · 50 %"


def test_cached_baselines_are_labelled_by_what_they_were_trained_with(tmp_path):
    """Two baselines read "mlp-digits-…: 256-64 · test 93.59 %" (seed 0 and seed 1), and a
    CNN showed only "128" (its conv channels missing)."""
    torch.manual_seed(0)
    mlp_spec = default_spec("mlp", 1, 8, 10, [16, 8])
    cnn_spec = default_spec("cnn", 1, 8, 10)
    cnn_spec["channels"], cnn_spec["hidden"] = [6, 12], [24]
    base = {"dataset": "digits", "metrics": {"test_acc": 93.59}}
    train = {"batch_size": 64, "epochs": 3, "optimizer": "adam", "lr": 0.001}
    for key, spec, extra in (("mlp-digits-aaaa", mlp_spec, {"seed": 0}),
                             ("mlp-digits-bbbb", mlp_spec, {"seed": 1}),
                             ("mlp-digits-cccc", mlp_spec, {"seed": 1, "weight_decay": 0.1}),
                             ("cnn-digits-dddd", cnn_spec, {"seed": 0, "batch_size": 256})):
        save_checkpoint(build_model(spec), spec, tmp_path / key,
                        {**base, "train": {**train, **extra}})
    labels = {e.path.stem: e.label for e in list_cache_checkpoints(tmp_path)}
    assert len(set(labels.values())) == 4  # no two alike
    # the accuracy early: last, an 800-px window's picker cut it off
    assert labels["mlp-digits-aaaa"] == ("MLP 16-8 · test 93.59 % · Digits · batch 64 · seed 0 · "
                                         "3 epochs · adam lr 0.001")
    assert "seed 1" in labels["mlp-digits-bbbb"]
    # what the label leaves out (weight decay) is told apart by the cache key
    assert labels["mlp-digits-bbbb"].endswith("key bbbb")
    assert labels["mlp-digits-cccc"].endswith("key cccc")
    assert labels["cnn-digits-dddd"].startswith("CNN conv 6-12 · fc 24 · test 93.59 % · Digits · "
                                                "batch 256")


def test_hidden_widths_are_read_from_a_state_dicts_shapes():
    from explorer_core.checkpoint import state_hidden_widths
    from explorer_core.models import MLP, build_model, default_spec

    assert state_hidden_widths(MLP(64, [64, 32], 10).state_dict(), "mlp") == [64, 32]
    assert state_hidden_widths(MLP(64, [3], 10).state_dict(), "mlp") == [3]
    cnn = build_model(default_spec("cnn", 1, 8, 10, [40, 20]))
    assert state_hidden_widths(cnn.state_dict(), "cnn") == [40, 20]
    assert state_hidden_widths(MLP(64, [64], 10).state_dict(), "slp") is None


def test_a_run_iteration_with_a_damaged_record_is_listed_as_such(tmp_path, monkeypatch):
    """A best_model.json cut short (or edited by hand) made its iteration vanish from
    Inspect's list without a word. It is listed as damaged; an iteration under way, whose
    record is written last, is not listed at all."""
    from explorer_core.catalog import run_checkpoints
    from explorer_core.experiment import RunConfig, create_run, execute

    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))
    cfg = RunConfig(name="damaged", dataset="digits", hidden=[8, 4],
                    schedule={"q": 0.5, "iterations": 3, "kind": "geometric"},
                    dense_epochs=1, retrain_epochs=1, use_cache=False)
    run = create_run(cfg, tmp_path / "runs")
    assert execute(run)["state"] == "finished"
    whole = run.best_model_json(1).read_text()
    run.best_model_json(1).write_text(whole[: len(whole) // 2])
    run.best_model(3).parent.mkdir(parents=True)  # under way: weights, no record yet
    run.best_model(3).write_bytes(run.best_model(2).read_bytes())
    labels = [e.label for e in run_checkpoints(run)]
    assert [e.iteration for e in run_checkpoints(run)] == [0, 1, 2]
    assert labels[1] == ("iteration 1: its record (best_model.json) is damaged — resuming "
                         "the run redoes it")
    assert labels[0].startswith("iteration 0: test ") and labels[0].endswith(" · 8-4") and labels[2].startswith("iteration 2: ")
    with pytest.raises(CheckpointError):
        load_checkpoint(run.best_model(1))


# ------------------------------------------------------------------ counts in messages

def test_messages_write_counts_with_thousands_separators(mlp, digits_fmt):
    """One page said "test sample 100000 does not exist" under a field refusing
    "1,000,001": the core's messages now write counts as the pages' range checks do."""
    from explorer_core.attribution import check_range
    from explorer_core.catalog import parse_spec_upload
    from explorer_core.data import load_dataset

    size = len(load_dataset("digits").test)
    with pytest.raises(ExplorerError) as err:
        samples_from(digits_fmt, 100_000, 4)
    assert str(err.value) == (f"test sample 100,000 does not exist: the Digits (8×8, bundled) "
                              f"test set has {size:,} images (0–{size - 1:,})")
    with pytest.raises(ExplorerError, match="^test sample 12,345 does not exist"):
        dataset_samples(digits_fmt, [12_345])
    with pytest.raises(ExplorerError) as err:
        check_range("--neurons", 1_000_000, 1, 1_000)
    assert str(err.value) == "--neurons must be a whole number from 1 to 1,000, got 1,000,000"
    with pytest.raises(ExplorerError, match=r"got 2\.5$"):  # not a whole number: as given
        check_range("--neurons", 2.5, 1, 32)
    with pytest.raises(ExplorerError, match="fc1 has units 0–31; 10,000 does not exist"):
        neuron_maps(mlp, "fc1", [10_000], torch.zeros(1, 1, 8, 8), 0, AttributionSettings(),
                    digits_fmt)
    with pytest.raises(ExplorerError, match=r"^spec\.json is 1,953 kB"):
        parse_spec_upload(b" " * 2_000_000, "spec.json")
    with pytest.raises(ExplorerError, match="the model takes 150,529 input values"):
        input_format({"arch": "mlp", "in": 150_529, "hidden": [4], "out": 10}, {})
    with pytest.raises(ExplorerError, match="^big.png is 8,000×6,000 = 48.0 megapixels; "
                                            "the limit is 40$"):
        open_image(png_header(8000, 6000), "big.png")
    with pytest.raises(ExplorerError, match=r"of the model's 1,000 outputs"):
        input_format({"arch": "mlp", "in": 64, "hidden": [4], "out": 1_000},
                     {"class_names": ["a", "b"]})


def test_scores_say_which_attribution_computed_them():
    """Scores downloaded with three baselines were three files alike in name and columns."""
    from explorer_core.attribution import scores_file_name, scores_frame

    table = neuron_table(torch.tensor([0.5, -2.0, 1.0]))
    settings = AttributionSettings("gradcam", "blurred", 64)
    frame = scores_frame(table, settings)
    assert list(frame.columns) == ["neuron", "conductance", "rank", "method", "baseline", "steps"]
    assert set(frame["method"]) == {"layer_conductance"}  # the ranking's, not the maps'
    assert set(frame["baseline"]) == {"blurred"} and set(frame["steps"]) == {64}
    assert frame["neuron"].tolist() == [1, 2, 0]
    assert list(table.columns) == ["neuron", "conductance", "rank"]  # the table is not changed
    assert scores_file_name("scores_a", "fc1", 3, settings) == \
        "scores_a_fc1_class3_layer_conductance_blurred_64steps.csv"
    names = {scores_file_name("scores_a", "fc1", 3, AttributionSettings(baseline=b))
             for b in ("black", "blurred", "mean")}
    assert len(names) == 3


def test_a_heatmap_grid_is_named_by_its_class_and_method():
    """Every grid of a layer downloaded as 'heatmaps_a_fc1.png': which class, method and
    baseline it showed was lost, and the next one saved over it."""
    from explorer_core.attribution import heatmaps_file_name

    assert heatmaps_file_name("heatmaps_a", "fc1", 3, AttributionSettings(
        "neuron_integrated_gradients", "mean", 16)) == \
        "heatmaps_a_fc1_class3_neuron_integrated_gradients_mean_16steps.png"
    # Grad-CAM has neither a baseline nor steps to name
    assert heatmaps_file_name("heatmaps_b", "features.0", 7, AttributionSettings(
        "gradcam", "blurred", 64)) == "heatmaps_b_features.0_class7_gradcam.png"


def test_one_unit_s_heatmap_is_named_by_its_class_method_and_unit():
    """It downloaded as 'heatmap_a_fc2_neuron6.png', without the class or the method."""
    from explorer_core.attribution import unit_heatmap_file_name

    assert unit_heatmap_file_name("heatmap_a", "fc2", 4, AttributionSettings(
        "neuron_conductance", "black", 32), "neuron", 6) == \
        "heatmap_a_fc2_class4_neuron_conductance_black_32steps_neuron6.png"
    assert unit_heatmap_file_name("heatmap_b", "features.3", 2, AttributionSettings(
        "gradcam", "black", 32), "channel", 0) == "heatmap_b_features.3_class2_gradcam_channel0.png"


@pytest.mark.parametrize("units, limit", [(16, 16), (32, 32), (1_024, 32), (1, 1)])
def test_the_grid_holds_at_most_the_layers_units(units, limit):
    from explorer_core.attribution import grid_limit

    assert grid_limit(units) == limit


def test_a_word_too_long_for_its_tile_is_cut_to_the_longest_prefix_that_fits(monkeypatch):
    """A sidecar's 30 000-character class name kept `inspect` busy 88 s: the cut dropped one
    character a time and measured the text after each. It is cut to the same text, found
    with a few dozen measurements."""
    from explorer_core import imaging

    font = imaging._font(12)
    measured = []
    real = imaging._text_width

    def counting(text, f):
        measured.append(len(text))
        return real(text, f)

    monkeypatch.setattr(imaging, "_text_width", counting)
    for word in ("channel1234567890123456789", "W" * 40, "ii" * 30, "x" * 100_000):
        measured.clear()
        cut = imaging._cut(word, 90, font)
        assert cut.endswith("…") and real(cut, font) <= 90
        prefix = cut[:-1]
        assert word.startswith(prefix)
        assert real(word[:len(prefix) + 1] + "…", font) > 90  # one character more is too wide
        assert len(measured) <= 2 + len(word).bit_length()
    assert imaging._cut("fits", 90, font) == "fits"
    assert imaging._cut("WWWW", 1, font) == "…"  # not even one character fits


def test_a_cnn_summary_writes_its_conv_channels_apart_from_its_fc_units(tmp_path):
    """The model caption read 'hidden widths 16 · 32 · 128': channels and neurons as one
    list, where the pickers wrote 'conv 16-32 · fc 128'."""
    spec = default_spec("cnn", 1, 8, 10)
    spec["channels"], spec["hidden"] = [6, 12], [24]
    path = save_checkpoint(build_model(spec), spec, tmp_path / "cnn", {"dataset": "digits"})
    info = summary(load_checkpoint(path))
    assert info["widths"] == [6, 12, 24] and info["widths_text"] == "conv 6-12 · fc 24"
    mlp = default_spec("mlp", 1, 8, 10, [16, 8])
    path = save_checkpoint(build_model(mlp), mlp, tmp_path / "mlp", {"dataset": "digits"})
    assert summary(load_checkpoint(path))["widths_text"] == "16-8"
