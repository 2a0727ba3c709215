"""`inspect`: classify a picture with a checkpoint and write its neuron heatmaps.

The Inspect page without a browser: the same conversion, top-k, layer conductance,
IASA scores and neuron maps, written as `<out>/predictions.json`, `<out>/scores.csv`
(every unit of the layer, ranked) and `<out>/heatmaps.png` (the grid of overlays).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..attribution import (BASELINES, MAX_GRID_UNITS, MAX_STEPS, MAX_TOP_K, METHODS, MIN_STEPS,
                           AttributionCache, AttributionSettings, check_range, colour_meaning,
                           hidden_layers, neuron_table, predict, scores_frame, top_k)
from ..checkpoint import load_checkpoint
from ..cli import add_overwrite_flag, command, refuse_existing
from ..data import availability
from ..errors import ExplorerError, os_reason, raise_pending_interrupt
from ..fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from ..imaging import (FITS, ConvertOptions, flat_input_warning, grid_image, input_format,
                       load_upload, overlay_image, png_bytes)


@command("inspect", "classify an image with a checkpoint; write top-k, neuron scores and heatmaps")
def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, required=True, metavar="F",
                   help="model (.safetensors with its .json spec; never unpickled)")
    p.add_argument("--image", type=Path, required=True, metavar="P",
                   help="PNG, JPEG, BMP, WebP or GIF (first frame), up to 40 megapixels")
    p.add_argument("--invert", action="store_true", help="dark drawing on light paper")
    p.add_argument("--autocontrast", action="store_true", help="stretch the grey levels")
    p.add_argument("--fit", choices=FITS, default="pad", help="how to reach the model's size")
    p.add_argument("--layer", help="hidden layer (default: the first)")
    p.add_argument("--target", type=int, help="class to explain (default: the predicted one)")
    p.add_argument("--method", choices=sorted(METHODS), help="neuron maps (default: "
                   "neuron_conductance; gradcam for conv layers)")
    p.add_argument("--baseline", choices=sorted(BASELINES), default="black")
    p.add_argument("--steps", type=int, default=32,
                   help=f"integration steps, {MIN_STEPS}–{MAX_STEPS} (default 32)")
    p.add_argument("--neurons", type=int, default=8,
                   help=f"top units in the grid, 1–{MAX_GRID_UNITS} (default 8; a layer with "
                        "fewer units shows them all)")
    p.add_argument("--top-k", type=int, default=5,
                   help=f"classes listed, 1–{MAX_TOP_K} (default 5; more than the model has "
                        "lists them all)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    add_overwrite_flag(p, "predictions.json, scores.csv and heatmaps.png")
    p.set_defaults(run=run)


def _check_counts(args: argparse.Namespace) -> None:
    """Before any work, against the page's ranges (attribution's constants): `--top-k 0`
    listed one class as if asked to, a count below 1 was found only after the
    checkpoint, the image and the prediction, and --neurons 1000 passed where the page
    stops at 32."""
    check_range("--top-k", args.top_k, 1, MAX_TOP_K)
    check_range("--neurons", args.neurons, 1, MAX_GRID_UNITS)
    check_range("--steps", args.steps, MIN_STEPS, MAX_STEPS)


OUTPUTS = ("predictions.json", "scores.csv", "heatmaps.png")


def run(args: argparse.Namespace) -> int:
    _check_counts(args)
    # before the work: another picture's results were replaced without a word
    refuse_existing([args.out / name for name in OUTPUTS], args.overwrite)
    ck = load_checkpoint(args.checkpoint)
    fmt = input_format(ck.spec, ck.meta)
    try:
        data = args.image.read_bytes()
    except OSError as exc:
        raise ExplorerError(f"cannot read {args.image}: {os_reason(exc)}") from None
    conv = load_upload(data, args.image.name, fmt,
                       ConvertOptions(args.invert, args.fit, args.autocontrast))
    probs = predict(ck.model, conv.tensor, args.checkpoint.name, args.image.name)[0]
    rows = top_k(probs, args.top_k, fmt.class_names)
    layers = hidden_layers(ck.model)
    if not layers:
        raise ExplorerError(f"{args.checkpoint.name} has no hidden layer to inspect")
    layer = next((l for l in layers if l.name == args.layer), None) if args.layer else layers[0]
    if layer is None:
        raise ExplorerError(f"no hidden layer {args.layer!r}; choose one of "
                            f"{', '.join(l.name for l in layers)}")
    target = rows[0]["class_index"] if args.target is None else args.target
    if not 0 <= target < probs.numel():
        raise ExplorerError(f"--target must be a class in 0–{probs.numel() - 1}")
    method = args.method or ("gradcam" if layer.kind == "conv" else "neuron_conductance")
    settings = AttributionSettings(method, args.baseline, args.steps).validate(layer.kind)
    cache = AttributionCache()
    cond = cache.layer_conductance(ck.model, "cli", conv.tensor, layer.name, target, settings, fmt)
    iasa = None
    if fmt.dataset and availability(fmt.dataset)[0]:
        iasa = cache.iasa(ck.model, "cli", fmt.dataset)[layer.name]
    table = neuron_table(cond, iasa)
    chosen = table["neuron"].head(args.neurons).tolist()
    maps = cache.neuron_maps(ck.model, "cli", conv.tensor, layer.name, chosen, target, settings,
                             fmt)
    scale = max(float(np.abs(maps[n]).max()) for n in chosen)
    unit = "neuron" if layer.kind == "linear" else "channel"
    tiles = [overlay_image(conv.pixels, maps[n], scale, target=120) for n in chosen]
    captions = [f"{unit} {n} · #{r}" for n, r in zip(chosen, table["rank"].head(args.neurons))]
    sheet = grid_image(tiles, captions, 4, title=f"{args.checkpoint.name} · {layer.name} · "
                       f"class {fmt.class_names[target]} · {METHODS[method].title}",
                       legend=colour_meaning(method, unit, fmt.class_names[target], scale))
    raise_pending_interrupt()  # a Ctrl-C in an import of the work (captum, scikit-learn)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "predictions.json", {
        "image": args.image.name, "top_k": rows, "explained_class": target,
        "layer": layer.name, "method": method, "baseline": args.baseline, "steps": args.steps,
        "input": fmt.describe(), "neurons": chosen})
    # the columns the page's download has: the scores' method, baseline and steps
    source = {"model": str(args.checkpoint), "picture": args.image.name, "layer": layer.name,
              "class": fmt.class_names[target]}
    atomic_write_text(args.out / "scores.csv",
                      scores_frame(table, settings, source).to_csv(index=False))
    atomic_write_bytes(args.out / "heatmaps.png", png_bytes(sheet))
    warning = flat_input_warning(conv)
    if warning:  # with the result, which stands; a failed run stays one line
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{args.image.name}: predicted {rows[0]['class']} ({rows[0]['probability']:.1%}); "
          f"wrote predictions.json, scores.csv, heatmaps.png to {args.out}")
    return 0
