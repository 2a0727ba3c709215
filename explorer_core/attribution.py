"""Which neurons matter for one image, and what each of them looks at (captum).

* Prediction: softmax probabilities and the top-k classes.
* Layer view: `LayerConductance` gives every unit of a hidden layer (neuron of a Linear,
  channel of a Conv, spatially summed) its share of the target logit for this image;
  beside it the layer's interval-adjoint (IASA) significance, which is about the whole
  input domain rather than one image.
* Neuron view: input-pixel maps of how a chosen unit responds — `NeuronConductance`
  (the unit's share of the target logit, spread over the pixels) or
  `NeuronIntegratedGradients` (the unit's own activation, spread over the pixels); for
  conv layers also Grad-CAM of a channel, upsampled to the image.

Speed: the maps of all requested neurons come from ONE captum call. The input is
repeated once per neuron and a selector picks neuron k for copy k, so the n_steps × n
interpolated inputs go through the model as one batch (captum orders them step-major:
copy k of every step sits at rows ≡ k mod n). Results are cached per neuron
(`AttributionCache`), so switching the neuron a person looks at costs nothing and
adding one neuron computes only that one.
"""
from __future__ import annotations

import hashlib
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ExplorerError
from .imaging import InputFormat
from .models import prunable_layers

BASELINES: dict[str, str] = {
    "black": "black image",
    "blurred": "blurred image",
    "mean": "dataset mean",
}
# The ranges of the Inspect settings, in one place: the page's fields and `inspect`'s
# flags both check against these (the page capped the grid at 32 units and top-k at 20
# while the CLI took --neurons 1000 and --top-k 50; steps were 4–128 against 2–256).
MIN_STEPS, MAX_STEPS = 2, 256
MAX_TOP_K = 20         # classes listed; past the model's classes, all of them
MAX_GRID_UNITS = 32    # neurons / channels in the heatmap grid


def check_range(what: str, value: int, low: int, high: int) -> int:
    """`value` if a whole number in low–high, else a one-line ExplorerError naming `what`.

    Counts are written with thousands separators, as the pages' own range messages
    write them ("from 0 to 1,000,000, got 1,000,001")."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        got = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) \
            else repr(value)
        raise ExplorerError(f"{what} must be a whole number from {low:,} to {high:,}, got {got}")
    return value


def grid_limit(units: int) -> int:
    """Most units a layer's heatmap grid can show: `MAX_GRID_UNITS`, or all the layer has
    when it has fewer (a 16-neuron layer offered a grid of 'top 32')."""
    return max(1, min(MAX_GRID_UNITS, int(units)))


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    kinds: tuple[str, ...]      # layer kinds it applies to: "linear", "conv"
    uses_baseline: bool
    description: str


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("neuron_conductance", "NeuronConductance", ("linear", "conv"), True,
           "How much each pixel's change from the baseline flows through this unit into the "
           "target class (pixels sum to the unit's layer conductance). Conv channels: the "
           "channel's most active position."),
    Method("neuron_integrated_gradients", "NeuronIntegratedGradients", ("linear", "conv"), True,
           "How much each pixel moves this unit's own output from the baseline (pixels sum "
           "to that change). Conv channels: the whole channel's summed output."),
    Method("gradcam", "Grad-CAM (channel)", ("conv",), False,
           "ReLU(mean gradient of the target over the channel × the channel's activation), "
           "upsampled to the image: where the channel supports the target class."),
)}


@dataclass(frozen=True)
class AttributionSettings:
    """Method, baseline and integration steps of the neuron maps."""
    method: str = "neuron_conductance"
    baseline: str = "black"
    steps: int = 32

    def validate(self, kind: str | None = None) -> "AttributionSettings":
        if self.method not in METHODS:
            raise ExplorerError(f"unknown attribution method {self.method!r}; choose one of "
                                f"{', '.join(METHODS)}")
        if self.baseline not in BASELINES:
            raise ExplorerError(f"unknown baseline {self.baseline!r}; choose one of "
                                f"{', '.join(BASELINES)}")
        check_range("attribution steps", self.steps, MIN_STEPS, MAX_STEPS)
        if kind is not None and kind not in METHODS[self.method].kinds:
            # names, not titles: they are what `inspect --method` accepts
            raise ExplorerError(f"{self.method} ({METHODS[self.method].title}) does not apply "
                                f"to {kind} layers; choose one of "
                                f"{', '.join(m.name for m in methods_for(kind))}")
        return self


def colour_meaning(method: str, unit: str, class_name: str, scale: float | None = None) -> str:
    """What red and blue mean in a method's maps, for a legend beside them (a downloaded
    PNG has no page around it to say so). NeuronIntegratedGradients explains the unit's
    own output; the other methods its part in the class score. `scale` is the shared
    value of full colour, None when each map uses its own."""
    what = (f"the {unit}'s output" if method == "neuron_integrated_gradients"
            else f"the score of class {class_name}")
    title = METHODS[method].title if method in METHODS else method
    shared = (f"; full colour = ±{scale:.3g} on every tile" if scale is not None
              else "; each tile is scaled to its own largest value")
    if method == "gradcam":  # a ReLU of gradient × activation: never negative
        shared = shared.replace("±", "")
        return (f"{title}: red where the {unit} supports class {class_name} (it has no "
                f"negative, blue part){shared}.")
    return f"{title}: red pixels raise {what}, blue pixels lower it, white: no effect{shared}."


def methods_for(kind: str) -> list[Method]:
    return [m for m in METHODS.values() if kind in m.kinds]


# ------------------------------------------------------------------ layers and predictions

@dataclass(frozen=True)
class LayerInfo:
    name: str
    kind: str   # "linear" | "conv"
    units: int

    def label(self) -> str:
        what = "neurons" if self.kind == "linear" else "channels"
        return f"{self.name} ({self.units} {what})"


def hidden_layers(model: nn.Module) -> list[LayerInfo]:
    """The layers whose units can be inspected: every Conv2d and every hidden Linear."""
    out = []
    for name in prunable_layers(model):
        m = model.get_submodule(name)
        if isinstance(m, nn.Conv2d):
            out.append(LayerInfo(name, "conv", m.out_channels))
        elif isinstance(m, nn.Linear):
            out.append(LayerInfo(name, "linear", m.out_features))
    return out


def layer_info(model: nn.Module, layer: str) -> LayerInfo:
    for info in hidden_layers(model):
        if info.name == layer:
            return info
    raise ExplorerError(f"the model has no hidden layer {layer!r}; it has "
                        f"{', '.join(i.name for i in hidden_layers(model)) or 'none'}")


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def predict(model: nn.Module, x: torch.Tensor, what: str = "the model",
            on: str = "this picture") -> torch.Tensor:
    """Class probabilities (N, classes) for inputs (N, C, H, W), on the CPU.

    Refused (an ExplorerError naming `what` and `on`) when they are not finite: finite
    weights of 1e30 overflow on a real picture, and the CLI and the page printed
    "predicted 8 (nan%)" (the CLI a bare NaN into predictions.json)."""
    model.eval()
    with torch.inference_mode():
        logits = model(x.to(_device(model)))
    probs = torch.softmax(logits.float(), dim=1).cpu()
    if not bool(torch.isfinite(probs).all()):
        raise ExplorerError(f"{what} gives no finite output for {on} (its class "
                            "probabilities are NaN): its weights overflow 32-bit floats on "
                            "this input")
    return probs


def top_k(probs: torch.Tensor, k: int, class_names: Sequence[str]) -> list[dict]:
    """The k most probable classes of one probability vector, best first."""
    probs = probs.reshape(-1)
    k = max(1, min(int(k), probs.numel()))
    values, indices = torch.topk(probs, k)
    names = list(class_names)
    return [{"rank": r + 1, "class_index": int(i),
             "class": names[int(i)] if int(i) < len(names) else str(int(i)),
             "probability": float(v)} for r, (v, i) in enumerate(zip(values, indices))]


# ------------------------------------------------------------------ baselines

def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with edge replication, for any image size (8×8 too)."""
    radius = max(1, int(round(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    kx = kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    ky = kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    y = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kx, groups=c)
    return F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), ky, groups=c)


def baseline_for(x: torch.Tensor, kind: str, fmt: InputFormat) -> torch.Tensor:
    """The reference input the integration starts from, in the model's input space.

    black: pixel value 0 → (0 − mean) / std per channel (not the tensor 0, which is the
    mean colour). blurred: a Gaussian blur (σ = 1/10 of the image side, at least 1 px)
    keeps the colours but removes the shapes. mean: the dataset's mean colour, 0.
    """
    if kind not in BASELINES:
        raise ExplorerError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")
    if kind == "mean":
        return torch.zeros_like(x)
    if kind == "black":
        mean = torch.tensor(fmt.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(fmt.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return ((0.0 - mean) / std).expand_as(x).contiguous()
    sigma = max(1.0, max(x.shape[-2:]) / 10.0)
    return _gaussian_blur(x, sigma)


# ------------------------------------------------------------------ attributions

def _target_module(model: nn.Module, layer: str) -> tuple[nn.Module, LayerInfo]:
    info = layer_info(model, layer)
    return model.get_submodule(layer), info


def layer_conductance(model: nn.Module, layer: str, x: torch.Tensor, target: int,
                      baseline: torch.Tensor, steps: int = 32) -> torch.Tensor:
    """Conductance of every unit of `layer` for class `target` (units,), CPU float32.

    Conv channels sum their positions. By completeness the units' values add up to the
    target logit's change from the baseline to the image (up to the integration error).
    """
    from captum.attr import LayerConductance

    module, info = _target_module(model, layer)
    model.eval()
    dev = _device(model)
    attr = LayerConductance(model, module).attribute(
        x.to(dev), baselines=baseline.to(dev), target=int(target), n_steps=int(steps))
    attr = attr.detach().float()
    if attr.dim() > 2:
        attr = attr.flatten(2).sum(-1)
    return attr[0].cpu()


def _check_neurons(neurons: Sequence[int], info: LayerInfo) -> torch.Tensor:
    idx = torch.as_tensor([int(n) for n in neurons], dtype=torch.long)
    if idx.numel() == 0:
        raise ExplorerError("choose at least one neuron")
    bad = idx[(idx < 0) | (idx >= info.units)]
    if bad.numel():
        raise ExplorerError(f"{info.name} has units 0–{info.units - 1:,}; {int(bad[0]):,} does "
                            f"not exist")
    return idx


def _peak_positions(model: nn.Module, module: nn.Module, x: torch.Tensor,
                    channels: torch.Tensor) -> torch.Tensor:
    """Flat index (c·h·w) of each channel's most active position for this image."""
    seen: dict[str, torch.Tensor] = {}
    handle = module.register_forward_hook(lambda _m, _i, out: seen.__setitem__("out", out.detach()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    act = seen["out"][0]                      # (C, h, w)
    per_channel = act.flatten(1)[channels]    # (n, h·w)
    positions = per_channel.argmax(1)
    return channels.to(act.device) * act[0].numel() + positions


def _row_selector(flat_index: torch.Tensor, reduce_channel: torch.Tensor | None = None
                  ) -> Callable[[torch.Tensor], torch.Tensor]:
    """captum neuron selector for a batch of n input copies: row r picks unit r mod n.

    With `reduce_channel` (channel per copy), the whole channel's output is summed
    instead of one position (NeuronIntegratedGradients on conv channels).
    """
    n = flat_index.numel()

    def select(out: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(out.shape[0], device=out.device)
        if reduce_channel is not None:
            ch = reduce_channel.to(out.device).repeat(out.shape[0] // n)
            return out[rows, ch].flatten(1).sum(1)
        idx = flat_index.to(out.device).repeat(out.shape[0] // n)
        return out.flatten(1)[rows, idx]

    return select


def neuron_maps(model: nn.Module, layer: str, neurons: Sequence[int], x: torch.Tensor,
                target: int, settings: AttributionSettings, fmt: InputFormat) -> torch.Tensor:
    """Input-pixel maps (n, H, W) of the given units, one batched captum call, CPU float32.

    Channels of RGB inputs are summed, so every map has the image's size.
    """
    from captum.attr import (LayerAttribution, LayerGradCam, NeuronConductance,
                             NeuronIntegratedGradients)

    module, info = _target_module(model, layer)
    settings.validate(info.kind)
    idx = _check_neurons(neurons, info)
    model.eval()
    dev = _device(model)
    x = x.to(dev)
    n = idx.numel()
    if settings.method == "gradcam":
        cam = LayerGradCam(model, module).attribute(x, target=int(target),
                                                    relu_attributions=True,
                                                    attr_dim_summation=False)
        cam = cam.detach()[0, idx.to(dev)].unsqueeze(1)               # (n, 1, h, w)
        up = LayerAttribution.interpolate(cam, (fmt.height, fmt.width), "bilinear")
        return up[:, 0].float().cpu()
    baseline = baseline_for(x, settings.baseline, fmt)
    xs = x.expand(n, *x.shape[1:]).contiguous()
    bs = baseline.expand(n, *baseline.shape[1:]).contiguous()
    if info.kind == "linear":
        selector = _row_selector(idx)
    elif settings.method == "neuron_conductance":
        selector = _row_selector(_peak_positions(model, module, x, idx.to(dev)))
    else:
        selector = _row_selector(idx, reduce_channel=idx)
    with warnings.catch_warnings():  # captum warns that callables must not aggregate: ours do not
        warnings.simplefilter("ignore", UserWarning)
        if settings.method == "neuron_conductance":
            attr = NeuronConductance(model, module).attribute(
                xs, selector, baselines=bs, target=int(target), n_steps=settings.steps,
                method="gausslegendre")
        else:
            attr = NeuronIntegratedGradients(model, module).attribute(
                xs, selector, baselines=bs, n_steps=settings.steps,
                method="gausslegendre")
    return attr.detach().float().sum(1).cpu()


# ------------------------------------------------------------------ significance and tables

def iasa_scores(model: nn.Module, dataset: str) -> dict[str, torch.Tensor]:
    """Interval-adjoint significance of every hidden unit, over the dataset's training box."""
    from .criteria import compute_scores
    from .data import load_dataset

    data = load_dataset(dataset)
    return compute_scores(model, "interval_adjoint", data.train,
                          layers=[i.name for i in hidden_layers(model)])


def rank_units(conductance: torch.Tensor) -> list[int]:
    """Units by |conductance|, largest first; ties by index (stable)."""
    order = torch.argsort(conductance.abs(), descending=True, stable=True)
    return [int(i) for i in order]


def neuron_table(conductance: torch.Tensor, iasa: torch.Tensor | None = None) -> pd.DataFrame:
    """One row per unit, ranked by |conductance|, with the IASA score and its rank."""
    c = conductance.detach().cpu().double().numpy()
    n = c.shape[0]
    frame = pd.DataFrame({"neuron": np.arange(n), "conductance": c})
    frame["rank"] = 0
    frame.loc[rank_units(conductance), "rank"] = np.arange(1, n + 1)
    if iasa is not None:
        s = iasa.detach().cpu().double().numpy()
        if s.shape[0] != n:
            raise ExplorerError(f"{s.shape[0]:,} IASA scores for {n:,} units")
        frame["iasa"] = s
        order = np.argsort(-s, kind="stable")
        iasa_rank = np.empty(n, dtype=np.int64)
        iasa_rank[order] = np.arange(1, n + 1)
        frame["iasa_rank"] = iasa_rank
    return frame.sort_values("rank").reset_index(drop=True)


# The scores table's conductance and rank come from LayerConductance, whichever method
# draws the neuron maps; its baseline and steps are the settings'.
SCORES_METHOD = "layer_conductance"


def scores_frame(table: pd.DataFrame, settings: AttributionSettings,
                 source: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """`neuron_table` with the method, baseline and integration steps its conductance
    was computed with, one column each: downloads made from three baselines held
    different numbers under the same columns (and names). `source`: what was explained
    (model, picture, layer, class), a column each: a file downloaded from the page said
    none of it, so it could not be matched with its picture later."""
    out = table.copy()
    out["method"] = SCORES_METHOD
    out["baseline"] = settings.baseline
    out["steps"] = settings.steps
    for name, value in (source or {}).items():
        out[name] = value
    return out


def scores_file_name(prefix: str, layer: str, target: int, settings: AttributionSettings) -> str:
    """`<prefix>_<layer>_class<target>_<method>_<baseline>_<steps>steps.csv`: the name says
    which attribution the scores come from, so two downloads are told apart on disk."""
    return f"{_attribution_stem(prefix, layer, target, SCORES_METHOD, settings)}.csv"


def heatmaps_file_name(prefix: str, layer: str, target: int, settings: AttributionSettings) -> str:
    """The heatmap grid's PNG, named as the scores are (`scores_file_name`) by the maps'
    own method: 'heatmaps_a_fc1.png' said neither the class, the method nor the baseline
    of the maps, and the next grid of that layer was saved over it. Grad-CAM integrates
    nothing, so its name has no baseline or steps."""
    return f"{_attribution_stem(prefix, layer, target, settings.method, settings)}.png"


def unit_heatmap_file_name(prefix: str, layer: str, target: int, settings: AttributionSettings,
                           unit: str, index: int) -> str:
    """One unit's heatmap PNG, named as the grid's (`heatmaps_file_name`) with the unit:
    'heatmap_a_fc2_neuron6.png' said neither the class nor the method of its map."""
    stem = _attribution_stem(prefix, layer, target, settings.method, settings)
    return f"{stem}_{unit}{index}.png"


def _attribution_stem(prefix: str, layer: str, target: int, method: str,
                      settings: AttributionSettings) -> str:
    found = METHODS.get(method)
    how = "" if found is not None and not found.uses_baseline else \
        f"_{settings.baseline}_{settings.steps}steps"
    return f"{prefix}_{layer}_class{target}_{method}{how}"


def tensor_key(x: torch.Tensor) -> str:
    """A short content hash of an input: the same picture gives the same cache entries."""
    t = x.detach().cpu().contiguous()
    return hashlib.sha1(t.numpy().tobytes() + str(tuple(t.shape)).encode()).hexdigest()[:16]


# ------------------------------------------------------------------ cache

class AttributionCache:
    """Bounded LRU of attribution results, one entry per neuron map.

    Keys carry everything a result depends on (model version, image content, layer,
    target class, method, baseline, steps), so a hit is always the map that would be
    computed. `computed` counts the neuron maps actually computed (tests and the page
    use it to show that a switch came from the cache). Thread-safe: Streamlit reruns
    of one session may overlap.
    """

    def __init__(self, max_entries: int = 4096):
        self.max_entries = int(max_entries)
        self._store: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.RLock()
        self.computed = 0

    def __len__(self) -> int:
        return len(self._store)

    def _get(self, key: Hashable) -> Any:
        value = self._store.get(key)
        if value is not None:
            self._store.move_to_end(key)
        return value

    def _put(self, key: Hashable, value: Any) -> None:
        self._store[key] = value
        self._store.move_to_end(key)
        while len(self._store) > self.max_entries:
            self._store.popitem(last=False)

    def memo(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The cached value of `key`, computing (and storing) it on a miss."""
        with self._lock:
            value = self._get(key)
            if value is None:
                value = compute()
                self._put(key, value)
            return value

    def neuron_maps(self, model: nn.Module, model_key: str, x: torch.Tensor, layer: str,
                    neurons: Sequence[int], target: int, settings: AttributionSettings,
                    fmt: InputFormat) -> dict[int, np.ndarray]:
        """Maps {neuron: (H, W)} of `neurons`; only the missing ones are computed, batched."""
        base = ("map", model_key, tensor_key(x), layer, int(target), settings)
        wanted = list(dict.fromkeys(int(n) for n in neurons))
        with self._lock:
            out = {n: self._get(base + (n,)) for n in wanted}
            missing = [n for n, v in out.items() if v is None]
            if missing:
                maps = neuron_maps(model, layer, missing, x, target, settings, fmt).numpy()
                self.computed += len(missing)
                for n, m in zip(missing, maps):
                    out[n] = m
                    self._put(base + (n,), m)
            return out

    def layer_conductance(self, model: nn.Module, model_key: str, x: torch.Tensor, layer: str,
                          target: int, settings: AttributionSettings,
                          fmt: InputFormat) -> torch.Tensor:
        key = ("layer", model_key, tensor_key(x), layer, int(target), settings.baseline,
               settings.steps)
        return self.memo(key, lambda: layer_conductance(
            model, layer, x, target, baseline_for(x.to(_device(model)), settings.baseline, fmt),
            settings.steps))

    def iasa(self, model: nn.Module, model_key: str, dataset: str) -> Mapping[str, torch.Tensor]:
        return self.memo(("iasa", model_key, dataset), lambda: iasa_scores(model, dataset))
