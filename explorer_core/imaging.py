"""Images in and out of a model: uploads → model input, test samples, heatmap pictures.

A model only understands inputs shaped and normalised like its training data (Digits is
1×8×8, Fashion-MNIST 1×28×28, CIFAR 3×32×32; each with its own mean / std), so every
picture a person brings goes through one conversion (`convert_image`) whose result is
shown next to the original: what the model really sees is part of the explanation.

Uploads are untrusted bytes. They are decoded only by Pillow's decoders for five
formats, their size is checked from the header before any pixel is decoded (a 40
megapixel cap, so a small "decompression bomb" file cannot eat the machine's memory),
and every failure is a one-line `ExplorerError`.

The second half turns attribution maps into pictures: a diverging colour map, overlays
on the converted input, and a labelled grid for downloads. Pure numpy + Pillow, no
matplotlib.
"""
from __future__ import annotations

import functools
import io
import json
import math
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from .data import DATASETS, DatasetInfo
from .errors import ExplorerError
from .models import FULLY_CONNECTED, input_shape

IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "WEBP", "GIF")
UPLOAD_TYPES = ("png", "jpg", "jpeg", "bmp", "webp", "gif")
MAX_PIXELS = 40_000_000
FITS = ("pad", "stretch", "crop")
FIT_TITLES = {"pad": "keep aspect, pad to square", "stretch": "stretch to the model's size",
              "crop": "keep aspect, crop the centre"}
# Originals are kept only as display thumbnails: a 40 MP photo must not stay in memory.
THUMBNAIL_SIDE = 512


# ------------------------------------------------------------------ what the model expects

@dataclass(frozen=True)
class InputFormat:
    """Shape, normalisation and class names of a model's input/output.

    `dataset` names the training data when known (it supplies test samples and the
    IASA input box); `assumed` says the normalisation was guessed from the input shape
    because the checkpoint did not record it.
    """
    channels: int
    height: int
    width: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    dataset: str | None = None
    assumed: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    @property
    def mode(self) -> str:
        return "L" if self.channels == 1 else "RGB"

    def size(self) -> str:
        """'grayscale 8×8', 'RGB 32×32'."""
        return f"{'grayscale' if self.channels == 1 else 'RGB'} {self.height}×{self.width}"

    def describe(self) -> str:
        mean = ", ".join(f"{m:g}" for m in self.mean)
        std = ", ".join(f"{s:g}" for s in self.std)
        return f"{self.size()}, normalised (x − {mean}) / {std}"


def _square_shape(features: int) -> tuple[int, int, int] | None:
    """(C, S, S) for a flat input width: 1×S×S first, then 3×S×S."""
    for channels in (1, 3):
        if features % channels == 0:
            side = math.isqrt(features // channels)
            if side * side * channels == features:
                return (channels, side, side)
    return None


def _matching_dataset(shape: tuple[int, int, int], classes: int | None) -> DatasetInfo | None:
    found = _matching_datasets(shape, classes)
    return found[0] if found else None


def _matching_datasets(shape: tuple[int, int, int], classes: int | None) -> list[DatasetInfo]:
    return [info for info in DATASETS.values()
            if info.input_shape == shape and (classes is None or info.num_classes == classes)]


def datasets_fitting(spec: Mapping[str, Any]) -> list[str]:
    """The registered datasets whose images and classes fit `spec`'s model: what a
    checkpoint that does not record its dataset may have been trained on (a 28×28, 10-class
    one: MNIST or Fashion-MNIST, of which `input_format` assumes the first)."""
    return [info.name for info in _matching_datasets(_image_shape(spec), _classes(spec))]


def _classes(spec: Mapping[str, Any]) -> int | None:
    """The model's class count, where its spec gives one."""
    return int(spec["out"]) if isinstance(spec.get("out"), int) else None


def _image_shape(spec: Mapping[str, Any]) -> tuple[int, int, int]:
    """(C, H, W) of `spec`'s input; a flat MLP input as a square grayscale or RGB image."""
    shape = input_shape(spec)
    if len(shape) == 1:
        if spec.get("arch") not in FULLY_CONNECTED:
            raise ExplorerError(f"cannot tell the image size of a {spec.get('arch')} input")
        square = _square_shape(shape[0])
        if square is None:
            raise ExplorerError(f"the model takes {shape[0]:,} input values, which is no square "
                                "grayscale or RGB image; add 'input_shape' [C, H, W] to its spec")
        shape = square
    if len(shape) != 3:
        raise ExplorerError(f"the model's input shape {list(shape)} is not [C, H, W]")
    channels, height, width = (int(v) for v in shape)
    return channels, height, width


def input_format(spec: Mapping[str, Any], meta: Mapping[str, Any] | None = None,
                 dataset: str | None = None) -> InputFormat:
    """What `spec`'s model expects, from the checkpoint's metadata where it was recorded.

    Our checkpoints record the dataset, normalisation and class names; an uploaded
    `.pth` with a bare spec may not. Then `dataset` (the user's choice) or the one
    registered dataset with the same input shape and class count supplies them, and
    the result is marked `assumed` so the page can say so.
    """
    meta = dict(meta or {})
    channels, height, width = _image_shape(spec)
    classes = _classes(spec)
    name = dataset or meta.get("dataset")
    info = DATASETS.get(name) if isinstance(name, str) else None
    assumed = False
    if info is None:
        info = _matching_dataset((channels, height, width), classes)
        assumed = info is not None or "normalisation" not in meta
    elif info.input_shape != (channels, height, width):
        raise ExplorerError(f"the model takes {channels}×{height}×{width} inputs, but "
                            f"{info.title} images are {'×'.join(map(str, info.input_shape))}")
    _check_recorded(meta, classes)
    norm = meta.get("normalisation") or {}  # a null one: none recorded
    mean = _channel_values(norm.get("mean", info.mean if info else (0.5,) * channels),
                           channels, "mean")
    std = _channel_values(norm.get("std", info.std if info else (0.5,) * channels),
                          channels, "std")
    if len(mean) != channels or len(std) != channels:
        raise ExplorerError(f"the recorded normalisation (mean {list(mean)}, std {list(std)}) "
                            f"does not fit {channels} input channel(s)")
    _check_normalisation(mean, std)
    names = meta.get("class_names")
    if names is None:
        names = list(info.classes) if info is not None and info.num_classes == classes else \
            [str(i) for i in range(classes or 0)]
    return InputFormat(channels, height, width, mean, std, tuple(str(n) for n in names),
                       info.name if info is not None else None, assumed)


def check_recorded_inputs(spec: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """`input_format`'s checks of a checkpoint's recorded normalisation and class names,
    alone: for a caller that copies them into another checkpoint (`prune-once`) and reads
    no image, so a model whose input is no image is not refused for that."""
    _check_recorded(meta, _classes(spec))
    norm = meta.get("normalisation") or {}
    if "mean" in norm and "std" in norm:
        count = lambda v: len(v) if isinstance(v, (list, tuple)) else 1  # noqa: E731
        channels = max(count(norm["mean"]), count(norm["std"]))
        _check_normalisation(_channel_values(norm["mean"], channels, "mean"),
                             _channel_values(norm["std"], channels, "std"))


def _check_recorded(meta: Mapping[str, Any], classes: int | None) -> None:
    """Refuse a sidecar's normalisation or class names of the wrong form, as a zero std
    is refused: ignored, they were replaced by a guessed dataset's without a word (the
    prediction then named classes '0'…'9' of a model whose .json said otherwise), and
    `prune-once` copied them into the checkpoints it wrote."""
    norm = meta.get("normalisation")
    if norm is not None and not isinstance(norm, Mapping):
        raise ExplorerError(f"the recorded normalisation {norm!r} is not "
                            "{\"mean\": […], \"std\": […]}")
    names = meta.get("class_names")
    if names is not None and not (isinstance(names, list) and len(names) == classes):
        what = f"{len(names):,} names" if isinstance(names, list) else repr(names)
        outputs = f"{classes:,} outputs" if isinstance(classes, int) else "outputs"
        raise ExplorerError(f"the recorded class_names ({what}) are not one name for each "
                            f"of the model's {outputs}")
    odd = next((n for n in names or [] if isinstance(n, bool) or not isinstance(n, (str, int))),
               None)
    if odd is not None:  # [[1], {}, …] was taken, and a prediction named "[1]"
        raise ExplorerError(f"the recorded class_names hold {odd!r}; each must be a name "
                            "(text) or a whole number")


def _channel_values(value: Any, channels: int, what: str) -> tuple[float, ...]:
    """A sidecar's normalisation mean or std: a list with one number per channel, or one
    number for every channel (how a grayscale model's is often written)."""
    values = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else value
    ok = isinstance(values, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        for v in values)
    if not ok:
        raise ExplorerError(f"the checkpoint's normalisation {what} must be a number or a list "
                            f"of numbers, got {json.dumps(value)[:60]}")
    if len(values) == 1:
        values = list(values) * channels
    return tuple(float(v) for v in values)


def _check_normalisation(mean: Sequence[float], std: Sequence[float]) -> None:
    """Every std must be above 0: the input is divided by it, so a 0 (a hand-edited
    sidecar, or one channel's std of a constant dataset) makes every pixel ±inf or NaN,
    and a negative one flips the picture. Named as such: "does not fit the channels"
    sent people looking at the channel count.

    Judged as `normalise` computes, in 32-bit floats: a std of 1e-320 is above 0 as a
    Python float but 0 as a float32, and one of 1e-40 (or a mean of 1e39) leaves the
    normalised pixels ±inf — either way the model answered "8 (nan%)" and the inspect
    command wrote a bare NaN into predictions.json. So the std must stay above 0 after
    the conversion, and black and white pixels (0 and 1) must normalise to finite
    values."""
    std32 = torch.tensor(std, dtype=torch.float32)
    for channel, (s, s32) in enumerate(zip(std, std32.tolist())):
        if s <= 0:
            why = ("dividing by 0 would make the input inf" if s == 0 else
                   "a negative std would flip the input")
            raise ExplorerError(f"the recorded normalisation std {list(std)} is {s:g} for "
                                f"channel {channel}: every std must be above 0 ({why})")
        if not math.isfinite(s32):
            # 1e39 or Infinity: every pixel normalises to 0, a constant input whose
            # prediction means nothing
            raise ExplorerError(f"the recorded normalisation std {list(std)} is {s:g} for "
                                f"channel {channel}, past the 32-bit float the input is "
                                "computed in: every pixel would become 0")
        if s32 == 0:
            raise ExplorerError(f"the recorded normalisation std {list(std)} is 0 for "
                                f"channel {channel} as the 32-bit float the input is "
                                "computed in: every std must be above 0 (dividing by 0 "
                                "would make the input inf)")
    for pixel in (0.0, 1.0):
        x = (pixel - torch.tensor(mean, dtype=torch.float32)) / std32
        bad = (~torch.isfinite(x)).nonzero().flatten().tolist()
        if bad:
            raise ExplorerError(f"the recorded normalisation (mean {list(mean)}, std "
                                f"{list(std)}) makes a pixel of {pixel:g} ±inf for channel "
                                f"{bad[0]} in the 32-bit floats the input is computed in: "
                                "(pixel − mean) / std must be finite for pixels 0 to 1")


def normalise(pixels: np.ndarray, fmt: InputFormat) -> torch.Tensor:
    """uint8 pixels (H, W) or (H, W, 3) → float tensor (1, C, H, W) in the model's space."""
    arr = pixels.astype(np.float32) / 255.0
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    x = torch.from_numpy(np.ascontiguousarray(arr))
    mean = torch.tensor(fmt.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(fmt.std, dtype=torch.float32).view(-1, 1, 1)
    return ((x - mean) / std).unsqueeze(0)


def denormalise(x: torch.Tensor, fmt: InputFormat) -> np.ndarray:
    """Inverse of `normalise` for one input (C, H, W) → uint8 (H, W) or (H, W, 3)."""
    mean = torch.tensor(fmt.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(fmt.std, dtype=torch.float32).view(-1, 1, 1)
    px = (x.detach().cpu().float().reshape(fmt.shape) * std + mean).clamp(0, 1) * 255.0
    arr = px.round().to(torch.uint8).numpy()
    return arr[0] if fmt.channels == 1 else arr.transpose(1, 2, 0)


# ------------------------------------------------------------------ reading uploads

def open_image(data: bytes, name: str = "image",
               draft: tuple[str, int] | None = None) -> Image.Image:
    """Decode an uploaded PNG / JPEG / BMP / WebP / GIF (first frame), safely.

    The pixel count is read from the header before decoding; a file over `MAX_PIXELS`
    is refused without allocating its pixels. Pillow's own bomb guard (which fires at
    other limits) is mapped to the same message. EXIF rotation is applied, so a phone
    photo is the right way up. `draft` (mode, side) lets a JPEG decode at a reduced
    scale no smaller than `side`, which makes big photos load several times faster.
    """
    if not data:
        raise ExplorerError(f"{name} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError:
        raise ExplorerError(f"{name} is too large: over {MAX_PIXELS // 1_000_000} megapixels") \
            from None
    except UnidentifiedImageError:
        signed = _signed_format(data)
        if signed:  # Pillow names no reason when a format's header fails its own check
            raise ExplorerError(f"{name} is a damaged {signed} image: its header does not "
                                "read as one (a changed byte?)") from None
        raise ExplorerError(f"{name} is not an image Pillow can read as PNG, JPEG, BMP, WebP "
                            "or GIF") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ExplorerError(f"{name} is a damaged image: {_decoder_says(exc)}") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ExplorerError(f"{name} is {width:,}×{height:,} = {width * height / 1e6:,.1f} "
                            f"megapixels; the limit is {MAX_PIXELS // 1_000_000}")
    if width < 1 or height < 1:
        raise ExplorerError(f"{name} has no pixels")
    try:
        image.seek(0)  # GIF / WebP animations: the first frame
        file_mode = image.mode
        if draft is not None and image.format == "JPEG":
            image.draft(draft[0], (draft[1], draft[1]))
        image.load()
        turned = image.getexif().get(EXIF_ORIENTATION) in (5, 6, 7, 8)  # a quarter turn
        image = ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ExplorerError(f"{name} is a damaged {image.format} image: {_decoder_says(exc)}") \
            from None
    # what the file holds, upright: a drafted JPEG is decoded smaller and in the draft's
    # mode, and a 4000×3000 RGB photo was captioned "1000×750 L"
    image.info[FILE_SIZE_AND_MODE] = ((height, width) if turned else (width, height), file_mode)
    return image


# the first bytes of each format `open_image` reads
# (a BMP's "BM" is not here: Pillow takes any file beginning so for one, and names its
# damage itself)
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"),
               (b"GIF89a", "GIF"))


def _signed_format(data: bytes) -> str | None:
    """The format whose signature `data` begins with, or None: a PNG with one flipped
    byte in its header (a bad checksum) is one Pillow cannot identify, and was called
    "not an image" where a cut-off PNG was called a damaged one."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((fmt for sig, fmt in _SIGNATURES if data.startswith(sig)), None)


EXIF_ORIENTATION = 0x0112
FILE_SIZE_AND_MODE = "explorer: file size and mode"  # `open_image`'s note in `Image.info`


def _decoder_says(exc: BaseException) -> str:
    """Pillow's reason in words a user can act on: its truncation messages read "image
    file is truncated (0 bytes not processed)" or "Truncated File Read", and the page
    used to show "(OSError)" alone."""
    text = str(exc).strip()
    if "truncated" in text.lower():
        return "the file ends before the image does (cut off while copying or downloading?)"
    return text or exc.__class__.__name__


def file_size_and_mode(image: Image.Image) -> tuple[tuple[int, int], str]:
    """(width, height) and mode of the file an image was opened from (`open_image`),
    else of the image itself."""
    return image.info.get(FILE_SIZE_AND_MODE, (image.size, image.mode))


# A drawing stored in the alpha channel: the colours of its strokes' body (pixels at least
# half as opaque as the most opaque one) stay within this spread (1st to 99th percentile, of
# 255) in every channel, and its alpha spans at least this much. Percentiles, so a lossy
# WebP's noise or a few stray pixels do not hide the drawing.
ALPHA_DRAWING_COLOUR_SPREAD = 24
ALPHA_DRAWING_MIN_ALPHA_RANGE = 32


def _channel_percentiles(values: np.ndarray, qs: Sequence[float]) -> list[int]:
    """Percentiles of uint8 values from their histogram: a 40 megapixel image's sort or
    float copy would cost gigabytes, its histogram 256 counts."""
    cumulative = np.cumsum(np.bincount(values, minlength=256))
    return [int(np.searchsorted(cumulative, q / 100 * (cumulative[-1] - 1), side="right"))
            for q in qs]


def _alpha_drawing_colour(rgba: np.ndarray) -> tuple[int, int, int] | None:
    """The one colour of a drawing that lives in the alpha channel, else None.

    Drawing apps save a pen drawing as one colour whose strokes are the opaque pixels of a
    transparent canvas; the colour under fully transparent pixels is arbitrary (often
    black, or whatever a lossy WebP left there), so only the strokes' body is looked at.
    The alpha channel must vary: a uniformly opaque (or uniformly translucent) picture
    carries nothing in it.
    """
    alpha = rgba[..., 3]
    top = int(alpha.max())
    if top - int(alpha.min()) < ALPHA_DRAWING_MIN_ALPHA_RANGE:
        return None
    body = alpha >= (top + 1) // 2
    colour = []
    for channel in range(3):
        low, median, high = _channel_percentiles(rgba[..., channel][body], (1, 50, 99))
        if high - low > ALPHA_DRAWING_COLOUR_SPREAD:
            return None
        colour.append(median)
    return (colour[0], colour[1], colour[2])


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Transparency becomes an opaque background the way a person would have drawn it.

    A picture with real colour content (a photo, a coloured drawing) is laid on white, as
    if printed on paper. A drawing in the alpha channel alone (one colour, the strokes
    being where it is opaque) is painted in its colour on the opposite background: white
    strokes on black, dark strokes on white. Laid on white, a white drawing on a
    transparent canvas became a blank image the model classified all the same; painted
    so, it reaches the model like any drawing of that colour, and inversion, contrast and
    fitting then apply as usual.
    """
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        colour = _alpha_drawing_colour(np.asarray(rgba))
        if colour is not None:
            luminance = (299 * colour[0] + 587 * colour[1] + 114 * colour[2]) / 1000
            paper = (0, 0, 0) if luminance >= 128 else (255, 255, 255)
            return Image.composite(Image.new("RGB", rgba.size, colour),
                                   Image.new("RGB", rgba.size, paper), rgba.getchannel("A"))
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit PNGs, float TIFF-likes
        arr = np.asarray(image, dtype=np.float64)
        top = arr.max() if arr.size and arr.max() > 0 else 1.0
        return Image.fromarray(np.round(arr / top * 255).astype(np.uint8), "L")
    return image


@dataclass(frozen=True)
class ConvertOptions:
    """How a picture becomes model input.

    `invert`: for dark strokes on light paper (MNIST-style models saw light on dark).
    `fit`: pad (keep aspect ratio, fill with the border colour), stretch, or crop.
    `autocontrast`: stretch the grey levels to the full range (faint pencil drawings).
    """
    invert: bool = False
    fit: str = "pad"
    autocontrast: bool = False

    def validate(self) -> "ConvertOptions":
        if self.fit not in FITS:
            raise ExplorerError(f"unknown fit {self.fit!r}; choose one of {', '.join(FITS)}")
        return self


@dataclass
class ConvertedImage:
    """One picture as shown (thumbnail) and as the model sees it (pixels, tensor)."""
    name: str
    original: Image.Image          # display thumbnail of the upload (≤ THUMBNAIL_SIDE)
    original_size: tuple[int, int]  # (width, height) before conversion
    original_mode: str
    pixels: np.ndarray             # uint8 (H, W) or (H, W, 3): the converted input
    tensor: torch.Tensor           # (1, C, H, W) normalised
    label: int | None = None       # true class, for test-set samples


def _border_colour(image: Image.Image) -> int | tuple[int, ...]:
    """Median colour of the outermost pixels: the natural padding for a drawing."""
    arr = np.asarray(image)
    edge = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]], axis=0)
    med = np.median(edge, axis=0)
    return int(med) if np.ndim(med) == 0 else tuple(int(v) for v in med)


def convert_image(image: Image.Image, fmt: InputFormat, options: ConvertOptions = ConvertOptions(),
                  name: str = "image") -> ConvertedImage:
    """Grayscale / RGB, invert, contrast, fit to the model's size, normalise."""
    options.validate()
    size = (fmt.width, fmt.height)
    original_size, original_mode = file_size_and_mode(image)
    flat = _flatten_alpha(image)  # once: the thumbnail shows the background the model got
    work = flat.convert(fmt.mode)
    if options.invert:
        work = ImageOps.invert(work)
    if options.autocontrast:
        work = ImageOps.autocontrast(work)
    if options.fit == "stretch":
        resized = work.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    elif options.fit == "crop":
        resized = ImageOps.fit(work, size, Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    else:
        resized = ImageOps.pad(work, size, Image.Resampling.LANCZOS, color=_border_colour(work))
    pixels = np.asarray(resized, dtype=np.uint8).copy()
    thumb = flat.copy()
    thumb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    return ConvertedImage(name, thumb.convert("RGB"), original_size,
                          original_mode, pixels, normalise(pixels, fmt))


def flat_input_warning(conv: ConvertedImage) -> str | None:
    """A one-line warning when the model's input is one flat colour, else None.

    A blank input still gets a prediction, which reads as an answer. A drawing kept in the
    alpha channel is no longer flat (`_flatten_alpha` paints it on the opposite
    background), so what is left is a picture with nothing in it: one colour throughout,
    or, with transparency, one colour whose transparency does not vary (or a fully
    transparent canvas). Inverting or stretching a flat image leaves it flat, so the
    advice is another picture.
    """
    if conv.pixels.size == 0 or conv.pixels.min() != conv.pixels.max():
        return None
    transparent = conv.original_mode in ("RGBA", "LA", "PA")
    why = (" Neither its colours nor its transparency show a drawing: use a picture whose "
           "drawing differs from its background." if transparent else
           " Use a picture whose drawing differs from its background.")
    return (f"{conv.name}: the model's input is one flat colour (every pixel "
            f"{int(conv.pixels.flat[0])}), so its prediction means nothing.{why}")


def load_upload(data: bytes, name: str, fmt: InputFormat,
                options: ConvertOptions = ConvertOptions()) -> ConvertedImage:
    """Bytes of an uploaded picture → `ConvertedImage`, or a one-line ExplorerError."""
    image = open_image(data, name, (fmt.mode, max(fmt.width, fmt.height, THUMBNAIL_SIDE)))
    return convert_image(image, fmt, options, name)


def dataset_samples(fmt: InputFormat, indices: Sequence[int]) -> list[ConvertedImage]:
    """Samples of the model's own test split, already in its input space."""
    test, title = _test_split(fmt)
    out = []
    for i in indices:
        if not 0 <= int(i) < len(test):
            raise ExplorerError(f"test sample {int(i):,} does not exist: the {title} test "
                                f"set has {len(test):,} images (0–{len(test) - 1:,})")
        x = test.x[int(i)].detach().cpu().float()
        pixels = denormalise(x, fmt)
        label = int(test.y[int(i)])
        name = f"test #{int(i)} ({fmt.class_names[label] if label < len(fmt.class_names) else label})"
        out.append(ConvertedImage(name, upscale(pixels).convert("RGB"),
                                  (fmt.width, fmt.height), fmt.mode, pixels, x.unsqueeze(0), label))
    return out


def _test_split(fmt: InputFormat):
    """(test split, dataset title) of the model's dataset, checked against its input."""
    from .data import load_dataset

    if fmt.dataset is None:
        raise ExplorerError("the model's dataset is unknown, so it has no test samples; "
                            "upload images instead")
    data = load_dataset(fmt.dataset)
    if tuple(data.test.x.shape[1:]) != fmt.shape:
        raise ExplorerError(f"{data.info.title} inputs are {tuple(data.test.x.shape[1:])}, the "
                            f"model takes {fmt.shape}")
    return data.test, data.info.title


def samples_from(fmt: InputFormat, first: int, count: int
                    ) -> tuple[list[ConvertedImage], str | None]:
    """`count` test samples from `first` on, and a note when the set ends sooner.

    Samples 9998–10001 of a 10 000-image set are 9998 and 9999 with a note saying so:
    refusing the whole request for two missing samples showed nothing at all. A first
    sample past the end is still an error naming the valid range.
    """
    test, title = _test_split(fmt)
    first, count, size = int(first), int(count), len(test)
    if not 0 <= first < size:
        raise ExplorerError(f"test sample {first:,} does not exist: the {title} test set has "
                            f"{size:,} images (0–{size - 1:,})")
    if count < 1:
        raise ExplorerError(f"ask for at least one test sample, not {count:,}")
    stop = min(first + count, size)
    note = None
    if stop < first + count:
        shown = f"sample {first:,}" if stop - first == 1 else f"samples {first:,}–{stop - 1:,}"
        note = (f"Showing test {shown} ({stop - first:,} of the {count:,} asked for): the "
                f"{title} test set has {size:,} images (0–{size - 1:,}).")
    return dataset_samples(fmt, range(first, stop)), note


# ------------------------------------------------------------------ heatmap pictures

def display_scale(height: int, width: int, target: int = 160) -> int:
    """Integer factor that brings a small input near `target` pixels (8×8 → 20×)."""
    return max(1, round(target / max(height, width)))


def upscale(pixels: np.ndarray, target: int = 160) -> Image.Image:
    """Nearest-neighbour enlargement: an 8×8 input stays eight crisp blocks per row."""
    image = Image.fromarray(pixels)
    k = display_scale(pixels.shape[0], pixels.shape[1], target)
    return image.resize((pixels.shape[1] * k, pixels.shape[0] * k), Image.Resampling.NEAREST)


def diverging_rgb(values: np.ndarray, scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Signed values → (RGB uint8, alpha in [0, 1]): red positive, blue negative.

    `scale` is the value mapped to full colour (default: this map's max |value|), so a
    grid can share one scale and its tiles stay comparable. An all-zero map is white
    with zero alpha: nothing to show.
    """
    v = np.asarray(values, dtype=np.float64)
    s = float(scale) if scale is not None else float(np.abs(v).max()) if v.size else 0.0
    t = np.clip(v / s, -1.0, 1.0) if s > 0 else np.zeros_like(v)
    a = np.abs(t)
    red = np.array([178, 24, 43], dtype=np.float64)
    blue = np.array([33, 102, 172], dtype=np.float64)
    white = np.array([255, 255, 255], dtype=np.float64)
    colour = np.where(t[..., None] >= 0, red, blue)
    rgb = white + (colour - white) * a[..., None]
    return np.round(rgb).astype(np.uint8), a


def heatmap_image(values: np.ndarray, scale: float | None = None, target: int = 160) -> Image.Image:
    """A (H, W) attribution map alone, in the diverging colours, enlarged."""
    rgb, _ = diverging_rgb(values, scale)
    return upscale(rgb, target)


def overlay_image(pixels: np.ndarray, values: np.ndarray, scale: float | None = None,
                  target: int = 160, strength: float = 0.85) -> Image.Image:
    """The attribution map over a dimmed grey copy of the input, enlarged.

    Where the map is weak the input shows through, so one sees *which strokes* a
    neuron reacts to. Maps smaller than the input (none here) are not resampled:
    callers pass maps at input resolution.
    """
    grey = np.asarray(Image.fromarray(pixels).convert("L"), dtype=np.float64)
    base = 255.0 - 0.45 * (255.0 - grey)  # dimmed so the colours dominate
    rgb, alpha = diverging_rgb(values, scale)
    a = (strength * alpha ** 0.6)[..., None]  # lift mid values: weak evidence stays visible
    mixed = base[..., None] * (1 - a) + rgb.astype(np.float64) * a
    return upscale(np.round(mixed).astype(np.uint8), target)


def _font_files() -> list[str]:
    """TrueType fonts with the glyphs our captions use (·, —, ×, −, accented names):
    DejaVu Sans from the system's fonts, or the copy matplotlib bundles when installed."""
    import importlib.util
    from pathlib import Path

    found = ["DejaVuSans.ttf"]  # Pillow looks it up in the system font folders
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.origin:
        found.append(str(Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" /
                         "DejaVuSans.ttf"))
    return found


@functools.lru_cache(maxsize=None)
def _font(size: int) -> ImageFont.ImageFont:
    for name in _font_files():
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:  # Pillow's own font has no '—', '×' or '−': `_drawable` replaces them
        return ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


# Replacements for glyphs Pillow's built-in font lacks (drawn as empty boxes).
_PLAIN = str.maketrans({"—": "-", "–": "-", "−": "-", "×": "x"})


def _drawable(text: str, font: ImageFont.ImageFont) -> str:
    """`text` as the font can draw it: unchanged with a full TrueType font."""
    return text if isinstance(getattr(font, "path", None), str) else text.translate(_PLAIN)


def _text_width(text: str, font: ImageFont.ImageFont) -> float:
    return font.getlength(_drawable(text, font))


def _cut(text: str, width: float, font: ImageFont.ImageFont) -> str:
    """`text` shortened with '…' until it fits `width` (a last resort: one word too long).

    The longest prefix that fits is found by bisection (a prefix is never narrower than
    a shorter one): dropping one character a time measured the text once per character,
    and a sidecar's class name of 30 000 characters kept `inspect` busy for 88 s."""
    if _text_width(text, font) <= width:
        return text
    fits, over = 0, len(text)  # prefix lengths: text[:fits] + '…' fits, text[:over] + '…' not
    while over - fits > 1:
        mid = (fits + over) // 2
        if _text_width(text[:mid] + "…", font) <= width:
            fits = mid
        else:
            over = mid
    return text[:fits] + "…"


def wrap_text(text: str, width: float, font: ImageFont.ImageFont,
              separators: tuple[str, ...] = (" · ", " ")) -> list[str]:
    """Lines of `text` no wider than `width` px in `font`, broken at ' · ' where possible,
    then at spaces; a single word wider than `width` is cut with '…'.

    Drawn captions are not clipped by anything: "+9.35neuron 8 · #2" was one tile's
    caption running into the next one's.
    """
    sep = next((s for s in separators if s in text), None)
    if _text_width(text, font) <= width or sep is None:
        return [_cut(text, width, font)]
    parts = text.split(sep)
    lines: list[str] = []
    line = parts[0]
    for part in parts[1:]:
        candidate = f"{line}{sep}{part}"
        if _text_width(candidate, font) <= width:
            line = candidate
        else:
            lines.append(line)
            line = part
    lines.append(line)
    rest = separators[separators.index(sep) + 1:]
    return [piece for ln in lines for piece in (wrap_text(ln, width, font, rest) if rest
                                               else [_cut(ln, width, font)])]


def _fit_captions(captions: Sequence[str], width: float, size: int = 13, smallest: int = 10,
                  max_lines: int = 3) -> tuple[ImageFont.ImageFont, list[list[str]]]:
    """The largest font (from `size` down to `smallest`) whose wrapped captions all fit in
    `max_lines` lines of `width` px; at the smallest size longer ones are wrapped anyway."""
    for points in range(size, smallest - 1, -1):
        font = _font(points)
        wrapped = [wrap_text(c, width, font) for c in captions]
        if all(len(w) <= max_lines for w in wrapped) or points == smallest:
            return font, wrapped
    raise AssertionError("unreachable")


def _line_height(font: ImageFont.ImageFont) -> int:
    box = font.getbbox("Ag·")
    return int(box[3] - min(box[1], 0)) + 3


def _colour_bar(width: int, height: int) -> Image.Image:
    """Blue → white → red, the colours of `diverging_rgb` from −1 to +1."""
    rgb, _ = diverging_rgb(np.linspace(-1.0, 1.0, width)[None, :].repeat(height, 0), 1.0)
    return Image.fromarray(rgb)


# A sheet narrower than this leaves no room for its title and colour legend.
MIN_SHEET_WIDTH = 380


def grid_image(tiles: Sequence[Image.Image], captions: Sequence[str], columns: int = 4,
               title: str | None = None, legend: str | None = None) -> Image.Image:
    """Tiles in rows of `columns`, each caption wrapped (or its font shrunk) to its tile's
    width, the title wrapped to the sheet, and a colour legend at the foot: a blue–white–red
    bar and `legend` (what the colours mean), so the PNG explains itself off the page.
    """
    if not tiles:
        raise ExplorerError("no heatmaps to put in a grid")
    tw = max(t.width for t in tiles)
    th = max(t.height for t in tiles)
    pad = 10
    cols = max(1, min(columns, len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    width = max(cols * (tw + pad) + pad, MIN_SHEET_WIDTH)
    cell = (width - pad) // cols - pad  # tiles are centred in cells this wide
    font, wrapped = _fit_captions(captions, cell)
    cap_line = _line_height(font)
    cap = max((len(w) for w in wrapped), default=1) * cap_line + 6
    title_font, legend_font = _font(16), _font(12)
    title_lines = wrap_text(title, width - 2 * pad, title_font) if title else []
    head = len(title_lines) * _line_height(title_font) + (8 if title_lines else 0)
    legend_lines = wrap_text(legend, width - 2 * pad, legend_font) if legend else []
    bar_h = 12
    foot = (bar_h + 4 + _line_height(legend_font) + len(legend_lines) * _line_height(legend_font)
            + pad) if legend else 0
    sheet = Image.new("RGB", (width, head + rows * (th + cap + pad) + pad + foot), "white")
    draw = ImageDraw.Draw(sheet)
    y = 6
    for line in title_lines:
        draw.text((pad, y), _drawable(line, title_font), fill="black", font=title_font)
        y += _line_height(title_font)
    for i, (tile, lines) in enumerate(zip(tiles, wrapped)):
        r, c = divmod(i, cols)
        x = pad + c * (cell + pad)
        top = head + pad + r * (th + cap + pad)
        sheet.paste(tile.convert("RGB"), (x + (cell - tile.width) // 2, top))
        for k, line in enumerate(lines):
            lx = x + (cell - _text_width(line, font)) / 2
            draw.text((lx, top + th + 4 + k * cap_line), _drawable(line, font), fill="black",
                      font=font)
    if legend:
        y = head + rows * (th + cap + pad) + pad
        bar_w = min(200, width - 2 * pad)
        sheet.paste(_colour_bar(bar_w, bar_h), (pad, y))
        draw.rectangle((pad, y, pad + bar_w - 1, y + bar_h - 1), outline=(160, 160, 160))
        y += bar_h + 2
        draw.text((pad, y), "lowers", fill=(33, 102, 172), font=legend_font)
        draw.text((pad + bar_w - _text_width("raises", legend_font), y), "raises",
                  fill=(178, 24, 43), font=legend_font)
        y += _line_height(legend_font)
        for line in legend_lines:
            draw.text((pad, y), _drawable(line, legend_font), fill="black", font=legend_font)
            y += _line_height(legend_font)
    return sheet


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
