"""Benchmark of the Inspect page's work on the default MLP (784-256-64-10), CPU.

Prints, for uploaded pictures of several sizes, the wall time of
* upload → prediction: decode the bytes, convert to the model's input (grayscale 28×28,
  normalised), forward pass, top-5 — target < 1 s;
* upload → grid of 8 heatmaps: the above plus LayerConductance of the first hidden layer
  (256 neurons), NeuronConductance maps of its top 8 neurons (one batched captum call,
  32 steps, black baseline) and the 8 overlay pictures — target < 5 s;
* switching the neuron looked at once the grid is there (a cache hit);
and, once, the IASA scores of every hidden neuron over the training box (shown beside
the conductances; computed once per model and cached).

Each number is the median of `--repeats` runs after one untimed warm-up (which pays for
importing captum); the first, cold run is printed too. The attribution cache is fresh
for every timed run, so the grid is really computed. Usage:

    python bench/bench_inspect.py [--repeats 5] [--threads N] [--json out.json]
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from explorer_core.attribution import (AttributionCache, AttributionSettings,  # noqa: E402
                                       neuron_table, predict, top_k)
from explorer_core.data import availability, load_dataset  # noqa: E402
from explorer_core.imaging import (ConvertOptions, input_format, load_upload,  # noqa: E402
                                   overlay_image)
from explorer_core.models import build_model, default_spec  # noqa: E402

DATASET = "fashion_mnist"
PICTURES = {"280×280 PNG drawing": ((280, 280), "PNG"),
            "1024×768 JPEG photo": ((1024, 768), "JPEG"),
            "4000×3000 JPEG photo (12 MP)": ((4000, 3000), "JPEG"),
            "4000×3000 PNG (12 MP)": ((4000, 3000), "PNG")}


def picture(size: tuple[int, int], fmt: str) -> bytes:
    """A dark-on-light drawing with some texture, encoded like an upload."""
    rng = np.random.default_rng(0)
    w, h = size
    arr = np.full((h, w, 3), 235, dtype=np.uint8)
    arr += rng.integers(0, 20, size=arr.shape, dtype=np.uint8)
    arr[h // 5: 4 * h // 5, w // 2 - w // 12: w // 2 + w // 12] = 20
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, quality=90)
    return buf.getvalue()


def upload_to_prediction(model, fmt, data: bytes) -> tuple[torch.Tensor, list[dict], object]:
    conv = load_upload(data, "upload", fmt, ConvertOptions(invert=True))
    probs = predict(model, conv.tensor)[0]
    return conv.tensor, top_k(probs, 5, fmt.class_names), conv


def upload_to_grid(model, fmt, data: bytes, cache: AttributionCache) -> list[int]:
    x, rows, conv = upload_to_prediction(model, fmt, data)
    target = rows[0]["class_index"]
    settings = AttributionSettings("neuron_conductance", "black", 32)
    cond = cache.layer_conductance(model, "m", x, "fc1", target, settings, fmt)
    top8 = neuron_table(cond)["neuron"].head(8).tolist()
    maps = cache.neuron_maps(model, "m", x, "fc1", top8, target, settings, fmt)
    scale = max(float(np.abs(maps[n]).max()) for n in top8)
    for n in top8:
        overlay_image(conv.pixels, maps[n], scale, target=120)
    return top8


def timed(fn, repeats: int) -> tuple[float, float]:
    """(cold first run, median of `repeats` warm runs) in seconds."""
    t0 = time.perf_counter()
    fn()
    cold = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return cold, statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's own choice, as in the app)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = default_spec("mlp", 1, 28, 10, [256, 64])
    model = build_model(spec).eval()
    fmt = input_format(spec, {"dataset": DATASET})
    print(f"model 784-256-64-10, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    results: dict[str, dict] = {}
    for name, (size, kind) in PICTURES.items():
        data = picture(size, kind)
        cold_p, warm_p = timed(lambda: upload_to_prediction(model, fmt, data), args.repeats)
        cold_g, warm_g = timed(lambda: upload_to_grid(model, fmt, data, AttributionCache()),
                               args.repeats)
        cache = AttributionCache()
        top8 = upload_to_grid(model, fmt, data, cache)
        x = upload_to_prediction(model, fmt, data)[0]
        target = int(predict(model, x)[0].argmax())
        settings = AttributionSettings("neuron_conductance", "black", 32)
        t0 = time.perf_counter()
        for n in top8:  # the person clicks through the grid's neurons
            cache.neuron_maps(model, "m", x, "fc1", [n], target, settings, fmt)
        switch = (time.perf_counter() - t0) / len(top8)
        ok_p, ok_g = warm_p < 1.0, warm_g < 5.0
        print(f"{name:30s} upload→prediction {warm_p * 1000:7.1f} ms (cold {cold_p * 1000:7.1f})"
              f" [{'ok' if ok_p else 'SLOW'} < 1 s] · upload→8 heatmaps {warm_g * 1000:7.1f} ms "
              f"(cold {cold_g * 1000:7.1f}) [{'ok' if ok_g else 'SLOW'} < 5 s] · "
              f"switch neuron {switch * 1e6:.0f} µs")
        results[name] = {"prediction_s": warm_p, "prediction_cold_s": cold_p, "grid_s": warm_g,
                         "grid_cold_s": cold_g, "switch_s": switch}
    if availability(DATASET)[0]:
        from explorer_core.attribution import iasa_scores

        load_dataset(DATASET)
        t0 = time.perf_counter()
        iasa_scores(model, DATASET)
        iasa = time.perf_counter() - t0
        print(f"IASA scores of all 320 hidden neurons over the Fashion-MNIST training box: "
              f"{iasa * 1000:.0f} ms (once per model, cached)")
        results["iasa_s"] = {"seconds": iasa}
    else:
        print(f"IASA timing skipped: {availability(DATASET)[1]}")
    results["page_s"] = page_timing(model, spec, picture((280, 280), "PNG"))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def page_timing(model, spec, png: bytes) -> dict:
    """The whole Inspect page script (AppTest): one rerun after a picture is uploaded.

    That rerun converts and classifies the picture, computes conductances, IASA scores
    (first time for the model), the 8-neuron grid and the close-up, and builds every
    chart and picture the browser then draws.
    """
    import os
    import tempfile

    from streamlit.testing.v1 import AppTest

    from explorer_core.checkpoint import save_checkpoint

    root = Path(__file__).resolve().parents[1]
    scratch = Path(tempfile.mkdtemp(prefix="bench-inspect-"))
    for var in ("EXPLORER_RUNS", "EXPLORER_SWEEPS", "EXPLORER_CACHE"):
        os.environ[var] = str(scratch / var)
    ck = save_checkpoint(model, spec, scratch / "dense", {"dataset": DATASET})
    os.chdir(root)
    at = AppTest.from_file(str(root / "app.py"), default_timeout=120)
    at.session_state["inspect_checkpoint"] = str(ck)
    at.switch_page("pages/inspect.py")
    t0 = time.perf_counter()
    at.run()
    opened = time.perf_counter() - t0
    at.file_uploader(key="insp_images").set_value(("drawing.png", png, "image/png"))
    t0 = time.perf_counter()
    at.run()
    grid = time.perf_counter() - t0
    shown = sum(1 for img in at.image for c in img.captions if " · #" in c)
    assert not at.exception and shown == 8, (at.exception, shown)
    t0 = time.perf_counter()
    at.run()
    rerun = time.perf_counter() - t0
    print(f"page (AppTest): open the checkpoint {opened * 1000:.0f} ms · upload → prediction and "
          f"8 heatmaps drawn {grid * 1000:.0f} ms [{'ok' if grid < 5 else 'SLOW'} < 5 s] · "
          f"a rerun with everything cached {rerun * 1000:.0f} ms")
    return {"open_s": opened, "upload_to_grid_s": grid, "cached_rerun_s": rerun}


if __name__ == "__main__":
    raise SystemExit(main())
