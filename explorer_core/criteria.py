"""Significance criteria: one score per unit (neuron / output channel), higher = keep.

Every criterion is one small function with the same signature, registered in `CRITERIA`,
so pages, the CLI and Torch-Pruning's importance hook all call `compute_scores` and never
branch on the criterion's name. DESIGN.md §4 says what each criterion computes.

A "unit" is a row of a Linear weight (one neuron) or one output filter of a Conv
(one channel). All scores come from batched tensor ops over whole layers; the only Python
loops are over layers (or calibration batches).
"""
from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .data import Split
from .errors import ExplorerError
from .interval import iasa, module_activation, trace
from .models import architecture_key, prunable_layers

Scores = dict[str, torch.Tensor]

UNIT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class CriterionOptions:
    """Knobs shared by the criteria; each criterion reads only the ones it needs."""
    seed: int = 0
    max_samples: int = 2048         # calibration samples used by data-driven criteria
    batch_size: int = 256
    eps: float | None = None        # IASA: per-sample ε-boxes [x-ε, x+ε] instead of the whole-domain box
    per_class: bool = False         # IASA: seed one class at a time, score = max over classes
    kmeans_k: int | None = None     # clusters per layer (default max(2, n_units // 4))
    contribution_normalise: bool = False  # contribution: share of each receiving neuron's input

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], criterion: str | None = None
                  ) -> "CriterionOptions":
        """Options from a config's `criterion_options`, checked when the run is created: a
        misspelt key or a wrong value used to surface only at the first pruning, after
        the dense model had trained, as a `TypeError` traceback. With `criterion`, an
        option another criterion reads (`OPTION_OWNERS`) is refused: it would do nothing."""
        if not isinstance(values, Mapping):
            raise ExplorerError(f"criterion options must be an object of named values, got "
                                f"{values!r}")
        known = [f.name for f in fields(cls)]
        unknown = [k for k in values if k not in known]
        if unknown:
            raise ExplorerError(f"unknown criterion option {unknown[0]!r}; known: "
                                f"{', '.join(known)}")
        options = cls(**values).validate()
        if criterion is not None:
            for name, owner in OPTION_OWNERS.items():
                if owner != criterion and getattr(options, name) != getattr(cls, name):
                    raise ExplorerError(f"criterion option {name} applies to {owner} only, "
                                        f"not to {criterion}")
        return options

    def validate(self) -> "CriterionOptions":
        def whole(name: str, minimum: int, optional: bool = False) -> None:
            v = getattr(self, name)
            if (v is None and optional) or (isinstance(v, int) and not isinstance(v, bool)
                                            and v >= minimum):
                return
            raise ExplorerError(f"criterion option {name} must be a whole number ≥ {minimum}"
                                f"{' or null' if optional else ''}, got {v!r}")

        whole("seed", 0)
        whole("max_samples", 1)
        whole("batch_size", 1)
        whole("kmeans_k", 1, optional=True)
        for name in ("per_class", "contribution_normalise"):
            if not isinstance(getattr(self, name), bool):
                raise ExplorerError(f"criterion option {name} must be true or false, got "
                                    f"{getattr(self, name)!r}")
        eps = self.eps
        if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float))
                                or not 0 < eps < float("inf")):
            raise ExplorerError(f"criterion option eps (the half-width of IASA's per-sample "
                                f"boxes) must be a number > 0 or null, got {eps!r}")
        return self


# The options only one criterion reads.
OPTION_OWNERS = {"eps": "interval_adjoint", "per_class": "interval_adjoint",
                 "kmeans_k": "kmeans", "contribution_normalise": "contribution"}

ScoreFn = Callable[[nn.Module, list[str], "Split | None", CriterionOptions], Scores]


@dataclass(frozen=True)
class Criterion:
    """A registered criterion.

    `fn(model, layers, data, options)` returns `{layer: scores}` for all requested layers
    at once, because data-driven criteria (IASA, Taylor) score every layer from one pass.
    `structural_only`: the scores rank whole units, not single weights, so the criterion
    cannot drive unstructured weight masks (those use weight magnitude). True for every
    criterion registered here.
    """
    name: str
    title: str
    needs_data: bool
    fn: ScoreFn
    structural_only: bool = False
    description: str = ""


# ------------------------------------------------------------------ helpers

def unit_module(model: nn.Module, name: str, criterion: str) -> nn.Module:
    """The layer `name`, checked to be a layer whose output units can be scored."""
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise ExplorerError(f"criterion {criterion!r}: the model has no layer {name!r}") from None
    if not isinstance(module, UNIT_LAYERS):
        raise ExplorerError(f"criterion {criterion!r} does not support layer {name!r} "
                            f"({type(module).__name__}): only Linear and Conv layers have "
                            f"prunable units")
    return module


def unit_weights(module: nn.Module) -> torch.Tensor:
    """(n_units, fan_in) matrix: one row per neuron (Linear row) or channel (Conv filter)."""
    w = module.weight.detach()
    return w.reshape(w.shape[0], -1)


def _layer_seed(seed: int, layer: str) -> int:
    """A per-layer seed that does not depend on which other layers were asked for."""
    return (int(seed) * 1_000_003 + zlib.crc32(layer.encode())) % (2 ** 63)


# ------------------------------------------------------------------ weight-only criteria

def l1_scores(model: nn.Module, layers: list[str], data: Split | None,
              options: CriterionOptions) -> Scores:
    """L1 norm of each unit's incoming weights (Li et al. 2017 filter pruning)."""
    return {n: unit_weights(model.get_submodule(n)).abs().sum(1).float() for n in layers}


def l2_scores(model: nn.Module, layers: list[str], data: Split | None,
              options: CriterionOptions) -> Scores:
    """L2 norm of each unit's incoming weights."""
    return {n: torch.linalg.vector_norm(unit_weights(model.get_submodule(n)).float(), dim=1)
            for n in layers}


def random_scores(model: nn.Module, layers: list[str], data: Split | None,
                  options: CriterionOptions) -> Scores:
    """Seeded uniform scores: the baseline every criterion must beat."""
    out: Scores = {}
    for n in layers:
        units = model.get_submodule(n).weight.shape[0]
        g = torch.Generator().manual_seed(_layer_seed(options.seed, n))
        out[n] = torch.rand(units, generator=g)
    return out


def kmeans_scores(model: nn.Module, layers: list[str], data: Split | None,
                  options: CriterionOptions) -> Scores:
    """Cluster each layer's weight vectors; prune every cluster in proportion to its size.

    Expressed as scores so that keeping the top N of a layer implements the rule: inside
    a cluster of size s the member of norm rank r (0 = largest L2 norm) scores 1 − r/s, so
    a threshold t keeps about s·(1 − t) members of every cluster; singleton clusters score
    2 and are always kept. A tie-break below the smallest gap between distinct 1 − r/s
    values (1/n²) prefers the larger norm across clusters.
    """
    from sklearn.cluster import KMeans

    out: Scores = {}
    for name in layers:
        w = unit_weights(model.get_submodule(name)).float().cpu().numpy().astype(np.float64)
        n = w.shape[0]
        norms = np.linalg.norm(w, axis=1)
        k = options.kmeans_k if options.kmeans_k is not None else max(2, n // 4)
        k = int(min(max(1, k), n))
        if k >= n:  # every unit its own cluster
            labels = np.arange(n)
        else:
            with warnings.catch_warnings():  # duplicate vectors: fewer distinct clusters
                warnings.simplefilter("ignore")
                labels = KMeans(n_clusters=k, n_init=1, random_state=options.seed).fit_predict(w)
        sizes = np.bincount(labels)
        starts = np.cumsum(sizes) - sizes
        order = np.lexsort((-norms, labels))  # by cluster, then by descending norm
        rank = np.empty(n)
        rank[order] = np.arange(n) - starts[labels[order]]
        size = sizes[labels]
        score = np.where(size == 1, 2.0, 1.0 - rank / size)
        score += 0.5 / n ** 2 * norms / max(float(norms.max()), 1e-30)
        out[name] = torch.from_numpy(score).float()
    return out


def taylor_scores(model: nn.Module, layers: list[str], data: Split | None,
                  options: CriterionOptions) -> Scores:
    """First-order Taylor importance (Molchanov et al. 2017).

    Per calibration mini-batch (`options.batch_size` samples) and unit, |mean over the
    batch's samples and positions of a · ∂L/∂a| with a the units' activation (below) and
    L the cross-entropy; averaged over the mini-batches (weighted by their size) and
    L2-normalised per layer (so layers of different depth are comparable). As in the
    paper the absolute value is taken per mini-batch: taken per sample, opposite-signed
    contributions of different samples add up instead of cancelling, and the score
    measures noise — measured on Fashion-MNIST (MLP 784-256-64-10, 2 dense epochs, three
    seeds), removing 50 % of neurons kept 73.4 % test accuracy with per-sample |·|
    (random: 74.1 %) but 80.0 % with mini-batches of 256. The model runs in eval mode
    (BatchNorm statistics and dropout untouched) and no parameter gradients are stored.

    a is what removing the unit takes away: a layer followed directly by BatchNorm loses
    its BN channel with it, so a is the BN output (`_unit_outputs`) — with BN's shift, the
    conv output alone misranked channels (VGG16-BN, ResNet-18, MobileNetV2, DenseNet).
    A ReLU after that changes nothing: a · ∂L/∂a is the same on both sides of it.

    ∂L/∂a needs the graph from a to the loss alone, so each pass runs without autograd
    until the first unit output, whose hook starts the graph there, from a leaf:
    recording the layers before it, a CNN's conv features when its classifier is scored,
    cost ~3 of the Digits CNN's 8 ms a scoring, for gradients nobody reads.
    """
    calib = data.subset(options.max_samples, options.seed)
    device = _device(model, calib.x)
    units = _unit_outputs_of(model, layers, calib.x.shape[1:])
    modules = {n: model.get_submodule(n) for n in set(units.values())}
    captured: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def fn(module, inputs, output):
            if not output.requires_grad:  # the first unit output, or one no earlier one
                # reaches: the graph starts here (each ∂L/∂a needs only what follows a)
                torch.set_grad_enabled(True)
                output = output.detach().requires_grad_(True)
            captured[name] = output
            return output.clone()  # an in-place op downstream must not overwrite `a`
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in modules.items()]
    was = model.training
    model.eval()
    sums = {n: torch.zeros(model.get_submodule(n).weight.shape[0], dtype=torch.float64,
                           device=device) for n in layers}
    try:
        for xb, yb in calib.batches(options.batch_size):
            captured.clear()
            with torch.no_grad():  # until a unit output's hook turns autograd on
                loss = F.cross_entropy(model(xb.to(device)), yb.to(device), reduction="sum")
            acts = [captured[units[n]] for n in layers]
            grads = torch.autograd.grad(loss, acts, allow_unused=True) if loss.requires_grad \
                else [None] * len(acts)  # no unit reaches the loss
            for n, a, g in zip(layers, acts, grads):
                if g is None:  # the layer does not reach the loss
                    continue
                sums[n] += _per_sample_products(a.detach(), g).sum(0).abs()
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    out: Scores = {}
    for n, s in sums.items():
        s = s / len(calib)
        out[n] = (s / s.norm().clamp_min(1e-30)).float()
    return out


def _per_sample_products(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """(samples, units) float64: each sample's a · ∂L/∂a per unit, averaged over a conv
    unit's positions; summed over the batch and made absolute by the caller (|batch
    mean| × batch size: the size-weighted average over batches).

    The positions are summed in float32 and only the (samples, units) sums are made
    float64: the product used to be made float64 whole first, which for a ResNet-18
    layer on 32×32 inputs (256 × 64 × 32 × 32 values a batch) took 220-370 ms instead
    of 53-116 ms, for a sum that is as exact to ~2e-6 relative, below the float32 the
    scores are returned in.
    """
    if a.dim() == 2:  # fully connected units: one value per sample, as before
        return (a * g).double()
    return (a * g).flatten(2).sum(2).double() / a[0, 0].numel()


_UNIT_OUTPUTS: dict[str, dict[str, str]] = {}


def _unit_outputs_of(model: nn.Module, layers: list[str], input_shape) -> dict[str, str]:
    """`_unit_outputs`, traced once per architecture (`models.architecture_key`): the
    answer depends on the layers' wiring alone, and a Compare sweep scores the same
    architecture with Taylor in every batch-size group (a trace: 1.3 ms for the Digits
    MLP, 1.8 ms for the CNN). A model without BatchNorm needs no trace: every layer is its
    own unit output (the first trace of a process cost ~10 ms, torch.fx's code generation)."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return {n: n for n in layers}
    key = f"{architecture_key(model, input_shape)} {layers}"
    if key not in _UNIT_OUTPUTS:
        if len(_UNIT_OUTPUTS) > 256:
            _UNIT_OUTPUTS.clear()
        _UNIT_OUTPUTS[key] = _unit_outputs(model, layers)
    return dict(_UNIT_OUTPUTS[key])


def _unit_outputs(model: nn.Module, layers: list[str]) -> dict[str, str]:
    """{layer: the module whose output is the layer's units' activation}: its BatchNorm
    when the layer's output feeds exactly that BatchNorm, else the layer itself (also
    for every layer of a model torch.fx cannot trace)."""
    out = {n: n for n in layers}
    try:
        gm = trace(model)
    except ExplorerError:
        return out
    for node in gm.graph.nodes:
        if node.op == "call_module" and node.target in out and len(node.users) == 1:
            user = next(iter(node.users))
            if user.op == "call_module" and isinstance(
                    gm.get_submodule(user.target), nn.modules.batchnorm._BatchNorm):
                out[node.target] = user.target
    return out


# ops a unit's value may pass through, per channel, on its way to the next layer
_CHANNELWISE_MODULES = (nn.modules.batchnorm._BatchNorm, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
                        nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
                        nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool2d,
                        nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity, nn.Flatten)
_CHANNELWISE_FUNCTIONS = {F.relu, torch.relu, F.relu6, torch.sigmoid, torch.tanh, torch.flatten,
                          F.adaptive_avg_pool2d, F.avg_pool2d, F.max_pool2d, F.dropout}
_CHANNELWISE_METHODS = {"relu", "sigmoid", "tanh", "flatten", "view", "reshape", "contiguous"}


def _next_layer(gm: fx.GraphModule, layer: str) -> str:
    """The one Linear / Conv that receives `layer`'s units through channel-wise ops only."""
    calls = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == layer]
    if len(calls) != 1:
        raise ExplorerError(f"contribution does not support layer {layer!r}: it is called "
                            f"{len(calls)} times")
    node = calls[0]
    while True:
        users = list(node.users)
        if len(users) != 1:
            what = f"{len(users)} consumers (e.g. a residual add or concatenation)" if users \
                else "no consumer (it does not reach the output)"
            break
        node = users[0]
        if node.op == "call_module":
            m = gm.get_submodule(node.target)
            if isinstance(m, UNIT_LAYERS):
                return node.target
            if isinstance(m, _CHANNELWISE_MODULES) or module_activation(m) is not None:
                continue
            what = f"{type(m).__name__} ('{node.target}')"
        elif node.op == "call_function" and node.target in _CHANNELWISE_FUNCTIONS:
            continue
        elif node.op == "call_method" and node.target in _CHANNELWISE_METHODS:
            continue
        else:
            what = f"{getattr(node.target, '__name__', node.target)} ('{node.name}')"
        break
    raise ExplorerError(f"contribution does not support layer {layer!r}: its output reaches "
                        f"{what}; it is defined where a layer feeds exactly one next layer "
                        f"(MLP, CNN, VGG), not across residual adds or concatenations")


def _abs_map(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x through the next layer with |W| and no bias."""
    w = module.weight.detach().abs().to(x.dtype)
    return F.linear(x, w) if isinstance(module, nn.Linear) else module._conv_forward(x, w, None)


def _abs_transpose(module: nn.Module, in_shape: torch.Size, cot: torch.Tensor) -> torch.Tensor:
    """|W|ᵀ cot: what each input element of the next layer sends on, weighted by |W|."""
    with torch.enable_grad():
        x = torch.zeros(in_shape, dtype=cot.dtype, device=cot.device, requires_grad=True)
        return torch.autograd.grad(_abs_map(module, x), x, cot)[0]


def contribution_scores(model: nn.Module, layers: list[str], data: Split | None,
                        options: CriterionOptions) -> Scores:
    """Mean over samples of |a_j| × Σ_k |W_kj| (train-time pruning's contribution).

    a_j is unit j's value as the next layer receives it (after its activation, BN,
    pooling); W is the next layer's weight. For conv nets Σ_k |W_kj| runs over every
    output (channel, position) the input element reaches, and the positions of channel j
    add up. With `contribution_normalise` each term is divided by the total input
    Σ_j |a_j||W_kj| of the receiving unit k, i.e. the share unit j has in what k receives.
    Only for layers that feed exactly one next layer (see `_next_layer`).
    """
    gm = trace(model)
    consumers = {n: _next_layer(gm, n) for n in layers}
    calib = data.subset(options.max_samples, options.seed)
    device = _device(model, calib.x)
    received: dict[str, torch.Tensor] = {}

    def pre_hook(name: str):
        def fn(module, inputs):
            received[name] = inputs[0].detach()
        return fn

    targets = set(consumers.values())
    handles = [model.get_submodule(t).register_forward_pre_hook(pre_hook(t)) for t in targets]
    was = model.training
    model.eval()
    sums = {n: torch.zeros(model.get_submodule(n).weight.shape[0], dtype=torch.float64,
                           device=device) for n in layers}
    try:
        with torch.no_grad():
            for xb, _ in calib.batches(options.batch_size):
                received.clear()
                model(xb.to(device))
                for n in layers:
                    nxt = model.get_submodule(consumers[n])
                    a = received[consumers[n]].double().abs()
                    units = sums[n].shape[0]
                    if (a.shape[1] % units if a.dim() == 2 else a.shape[1] != units):
                        raise ExplorerError(f"contribution: layer {n!r} has {units} units but "
                                            f"{consumers[n]!r} receives {tuple(a.shape[1:])}")
                    if options.contribution_normalise:  # share of each receiver's input
                        cot = 1.0 / _abs_map(nxt, a).clamp_min(1e-12)
                    else:  # the same weight sums for every sample
                        cot = torch.ones_like(_abs_map(nxt, a[:1]))
                    sent = _abs_transpose(nxt, cot.shape[:1] + a.shape[1:], cot)
                    per = a * sent  # (B, …): |a| × Σ_k |W_k·| (/ total input of k)
                    sums[n] += per.reshape(per.shape[0], units, -1).sum(2).sum(0)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return {n: (s / len(calib)).float() for n, s in sums.items()}


def interval_adjoint_scores(model: nn.Module, layers: list[str], data: Split | None,
                            options: CriterionOptions) -> Scores:
    """IASA (see `interval.py`): width of the pre-activation interval × max |adjoint|.

    The whole-domain box uses every sample of `data` (min / max is cheap, and a subset
    would shrink the box); ε-boxes use `max_samples` of them. Scores are float64: on deep
    conv nets interval bounds outgrow float32.
    """
    if options.eps is None:
        x = data.x
    else:
        x = data.subset(options.max_samples, options.seed).x
    return iasa(model, x, layers, options.eps, options.per_class, options.batch_size)


def _device(model: nn.Module, fallback: torch.Tensor) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return fallback.device


# ------------------------------------------------------------------ registry

CRITERIA: dict[str, Criterion] = {c.name: c for c in (
    Criterion("interval_adjoint", "Interval adjoint (IASA)", True, interval_adjoint_scores, True,
              "Width of each unit's pre-activation interval over the input domain × max "
              "|interval adjoint| of Σ logits (the thesis' method)."),
    Criterion("l1", "L1 norm of weights", False, l1_scores, True,
              "Sum of |w| over each unit's incoming weights."),
    Criterion("l2", "L2 norm of weights", False, l2_scores, True,
              "Euclidean norm of each unit's incoming weights."),
    Criterion("taylor", "First-order Taylor", True, taylor_scores, True,
              "|mean of activation × loss gradient|, L2-normalised per layer "
              "(Molchanov et al. 2017)."),
    Criterion("contribution", "Contribution (|a| × outgoing |W|)", True, contribution_scores,
              True, "Mean |activation| × Σ |outgoing weights|; MLP, CNN and VGG layers "
                    "(not across residual adds / concatenations)."),
    Criterion("kmeans", "k-means clusters", False, kmeans_scores, True,
              "Cluster weight vectors; keep singletons, prune each cluster in proportion to "
              "its size."),
    Criterion("random", "Random (seeded)", False, random_scores, True,
              "Uniform random scores; same seed, same scores."),
)}


def get_criterion(name: str) -> Criterion:
    try:
        return CRITERIA[name]
    except KeyError:
        raise ExplorerError(f"unknown criterion {name!r}; choose one of "
                            f"{', '.join(CRITERIA)}") from None


def compute_scores(model: nn.Module, criterion: str, data: Split | None = None,
                   layers: list[str] | None = None,
                   options: CriterionOptions | None = None) -> dict[str, torch.Tensor]:
    """One 1-D float tensor per layer (default: `prunable_layers(model)`), higher = keep.

    The length of each tensor is the layer's out_features / out_channels. Scores live on
    the CPU so callers can rank and save them without caring where the model runs; they
    are float32, except interval_adjoint's float64 (deep nets' bounds outgrow float32).
    Raises ExplorerError for an unknown criterion, a data-driven criterion called without
    data, and layers whose units cannot be scored (naming the layer).
    """
    crit = get_criterion(criterion)
    options = options or CriterionOptions()
    if crit.needs_data and (data is None or len(data) == 0):
        raise ExplorerError(f"criterion {criterion!r} needs calibration data; none was given")
    layers = list(prunable_layers(model) if layers is None else layers)
    for name in layers:
        unit_module(model, name, criterion)
    scores = crit.fn(model, layers, data, options)
    out = {}
    for n in layers:
        s = scores[n].detach().cpu()
        out[n] = s if s.dtype == torch.float64 else s.float()
    return out
