"""Model registry built from JSON-able specs.

A spec (`{"arch": "mlp", "in": 784, "hidden": [256, 64], "out": 10}`) plus a state dict
rebuilds any model, pruned or not, without pickled module objects. MLP specs carry their
pruned widths directly; conv nets pruned through dependency groups are rebuilt dense from
the spec and then every layer is resized to the shapes in the state dict
(`resize_to_state`), which is also how `load_pruned_model` adapts a dense `SimpleNN`.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import math
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from .errors import ExplorerError
from .settings import check_parameters, memory_text

Spec = dict[str, Any]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}


class MLP(nn.Module):
    """Fully connected net with layers `fc1 … fcK`, the thesis' SimpleNN naming.

    Keeping `fcN` attribute names means the thesis' `.pth` state dicts load unchanged.
    """

    def __init__(self, in_features: int = 784, hidden: list[int] | tuple[int, ...] = (256, 64),
                 out_features: int = 10, activation: str = "relu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ExplorerError(f"unknown activation {activation!r}; choose one of "
                                f"{', '.join(ACTIVATIONS)}")
        widths = [int(in_features), *[int(h) for h in hidden], int(out_features)]
        self.activation_name = activation
        self.flatten = nn.Flatten()
        self.num_layers = len(widths) - 1
        for i in range(self.num_layers):
            setattr(self, f"fc{i + 1}", nn.Linear(widths[i], widths[i + 1]))
        self.act = ACTIVATIONS[activation]()

    def linears(self) -> list[nn.Linear]:
        return [getattr(self, f"fc{i + 1}") for i in range(self.num_layers)]

    @property
    def hidden(self) -> list[int]:
        return [lin.out_features for lin in self.linears()[:-1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        layers = self.linears()
        for lin in layers[:-1]:
            x = self.act(lin(x))
        return layers[-1](x)


class SimpleNN(MLP):
    """The thesis' default network, 784-256-64-10 with ReLU."""

    def __init__(self) -> None:
        super().__init__(784, (256, 64), 10, "relu")


class CNN(nn.Module):
    """Small LeNet-style net: [conv3×3 → ReLU → maxpool2] × len(channels) → FC layers."""

    def __init__(self, in_ch: int = 1, size: int = 28, channels: list[int] | tuple[int, ...] = (16, 32),
                 hidden: list[int] | tuple[int, ...] = (128,), out_features: int = 10):
        super().__init__()
        blocks: list[nn.Module] = []
        c = in_ch
        s = size
        for i, ch in enumerate(channels):
            blocks += [nn.Conv2d(c, ch, 3, padding=1), nn.ReLU()]
            if s >= 2:
                blocks.append(nn.MaxPool2d(2))
                s //= 2
            c = ch
        self.features = nn.Sequential(*blocks)
        self.flatten = nn.Flatten()
        widths = [c * s * s, *hidden, out_features]
        layers: list[nn.Module] = []
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1]))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


# ------------------------------------------------------------------ torchvision models

def _small_input(spec: Spec) -> bool:
    return int(spec.get("size", 32)) < 64


def _densenet121(spec: Spec) -> nn.Module:
    from torchvision.models import densenet121

    m = densenet121(weights=None, num_classes=spec["out"])
    if _small_input(spec):
        m.features.conv0 = nn.Conv2d(spec["in_ch"], 64, 3, 1, 1, bias=False)
        m.features.pool0 = nn.Identity()
    elif spec["in_ch"] != 3:
        m.features.conv0 = nn.Conv2d(spec["in_ch"], 64, 7, 2, 3, bias=False)
    return m


def _resnet18(spec: Spec) -> nn.Module:
    from torchvision.models import resnet18

    m = resnet18(weights=None, num_classes=spec["out"])
    if _small_input(spec):
        m.conv1 = nn.Conv2d(spec["in_ch"], 64, 3, 1, 1, bias=False)
        m.maxpool = nn.Identity()
    elif spec["in_ch"] != 3:
        m.conv1 = nn.Conv2d(spec["in_ch"], 64, 7, 2, 3, bias=False)
    return m


def _vgg16_bn(spec: Spec) -> nn.Module:
    """CIFAR-style VGG-16-BN (Li et al. 2017): 512→512→classes head, pools capped by size."""
    from torchvision.models import vgg16_bn

    m = vgg16_bn(weights=None, num_classes=spec["out"])
    if spec["in_ch"] != 3:
        m.features[0] = nn.Conv2d(spec["in_ch"], 64, 3, padding=1)
    pools_allowed = int(math.log2(max(int(spec.get("size", 32)), 1)))
    seen = 0
    for i, layer in enumerate(m.features):
        if isinstance(layer, nn.MaxPool2d):
            seen += 1
            if seen > pools_allowed:
                m.features[i] = nn.Identity()
    m.avgpool = nn.AdaptiveAvgPool2d(1)
    m.classifier = nn.Sequential(nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(0.5),
                                 nn.Linear(512, spec["out"]))
    return m


def _mobilenet_v2(spec: Spec) -> nn.Module:
    from torchvision.models import mobilenet_v2

    m = mobilenet_v2(weights=None, num_classes=spec["out"])
    stride = 1 if _small_input(spec) else 2
    m.features[0][0] = nn.Conv2d(spec["in_ch"], 32, 3, stride, 1, bias=False)
    return m


def _mlp(spec: Spec) -> nn.Module:
    return MLP(spec["in"], spec.get("hidden", [256, 64]), spec["out"], spec.get("activation", "relu"))


def _slp(spec: Spec) -> nn.Module:
    return MLP(spec["in"], [], spec["out"])


def _cnn(spec: Spec) -> nn.Module:
    return CNN(spec["in_ch"], spec.get("size", 28), spec.get("channels", [16, 32]),
               spec.get("hidden", [128]), spec["out"])


ARCHS: dict[str, Callable[[Spec], nn.Module]] = {
    "slp": _slp,
    "mlp": _mlp,
    "cnn": _cnn,
    "densenet121": _densenet121,
    "vgg16_bn": _vgg16_bn,
    "resnet18": _resnet18,
    "mobilenet_v2": _mobilenet_v2,
}

ARCH_TITLES = {
    "slp": "SLP (single linear layer)", "mlp": "MLP", "cnn": "CNN (LeNet-style)",
    "densenet121": "DenseNet-121", "vgg16_bn": "VGG16-BN", "resnet18": "ResNet-18",
    "mobilenet_v2": "MobileNetV2",
}

FULLY_CONNECTED = {"slp", "mlp"}


def default_spec(arch: str, in_ch: int = 1, size: int = 28, classes: int = 10,
                 hidden: list[int] | None = None) -> Spec:
    """A spec for `arch` fitted to a dataset's channels, image size and classes."""
    if arch not in ARCHS:
        raise ExplorerError(f"unknown model {arch!r}; choose one of {', '.join(ARCHS)}")
    if arch in FULLY_CONNECTED:
        spec: Spec = {"arch": arch, "in": in_ch * size * size, "out": classes,
                      "input_shape": [in_ch, size, size]}
        if arch == "mlp":
            spec["hidden"] = list(hidden) if hidden is not None else [256, 64]
            spec["activation"] = "relu"
        return spec
    spec = {"arch": arch, "in_ch": in_ch, "size": size, "out": classes,
            "input_shape": [in_ch, size, size]}
    if arch == "cnn":
        spec["channels"] = [16, 32]
        spec["hidden"] = list(hidden) if hidden is not None else [128]
    return spec


def spec_for_dataset(arch: str, info, hidden: list[int] | None = None) -> Spec:
    return default_spec(arch, info.channels, info.size, info.num_classes, hidden)


def _whole(value: Any, field: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ExplorerError(f"model spec field {field!r} must be a whole number ≥ {minimum}, "
                            f"got {value!r}")
    return value


def _widths(value: Any, field: str) -> list[int]:
    if not isinstance(value, (list, tuple)):
        raise ExplorerError(f"model spec field {field!r} must be a list of widths, got {value!r}")
    for h in value:
        if isinstance(h, bool) or not isinstance(h, int) or h < 1:
            raise ExplorerError(f"{field} widths must be whole numbers ≥ 1, got {h!r}")
    return list(value)


def validate_spec(spec: Mapping[str, Any]) -> Spec:
    """Check a spec before building; every problem is a one-line `ExplorerError`.

    Specs arrive from JSON files and from pages, so types are checked, not assumed:
    a width of "64" or 0 must be refused here rather than deep inside torch.
    """
    if not isinstance(spec, Mapping) or "arch" not in spec:
        raise ExplorerError("model spec must be a JSON object with an 'arch' field")
    arch = spec["arch"]
    if not isinstance(arch, str) or arch not in ARCHS:
        raise ExplorerError(f"unknown model {arch!r}; choose one of {', '.join(ARCHS)}")
    if arch in FULLY_CONNECTED:
        _whole(spec.get("in"), "in")
    else:
        _whole(spec.get("in_ch"), "in_ch")
        if "size" in spec:
            _whole(spec["size"], "size")
    _whole(spec.get("out"), "out")
    if "hidden" in spec and spec["hidden"] is not None:
        if arch == "slp" and spec["hidden"]:
            raise ExplorerError("an 'slp' has no hidden layers; use 'mlp' for hidden widths")
        _widths(spec["hidden"], "hidden")
    if "channels" in spec:
        if not _widths(spec["channels"], "channels") and arch == "cnn":
            raise ExplorerError("a 'cnn' needs at least one conv layer in 'channels'")
    act = spec.get("activation", "relu")
    if act not in ACTIVATIONS:
        raise ExplorerError(f"unknown activation {act!r}; choose one of {', '.join(ACTIVATIONS)}")
    if "input_shape" in spec:
        shape = _widths(spec["input_shape"], "input_shape")
        feats = math.prod(shape)
        if arch in FULLY_CONNECTED and feats != spec["in"]:
            raise ExplorerError(f"input_shape {shape} has {feats} values but 'in' is {spec['in']}")
        if arch not in FULLY_CONNECTED and (len(shape) != 3 or shape[0] != spec["in_ch"]):
            raise ExplorerError(f"input_shape {shape} does not match in_ch {spec['in_ch']}")
    check_parameters(parameter_count(spec), describe(spec))
    return dict(spec)


def linear_parameters(widths: Sequence[int]) -> int:
    """Weights and biases of Linear layers chaining `widths` (in → … → out)."""
    return sum((a + 1) * b for a, b in zip(widths, widths[1:]))


def parameter_count(spec: Mapping[str, Any]) -> int:
    """The parameters the model of a (type-checked) spec has, without building it.

    Worked out from the widths for the MLP, SLP and CNN (in Python integers: a width of
    any size gives a count, never an overflow); the torchvision nets are counted on
    torch's "meta" device, which allocates nothing (`_torchvision_counts`).
    """
    arch = spec["arch"]
    if arch in FULLY_CONNECTED:
        hidden = (spec.get("hidden", [256, 64]) or []) if arch == "mlp" else []
        return linear_parameters([spec["in"], *hidden, spec["out"]])
    if arch == "cnn":
        c, s, total = spec["in_ch"], spec.get("size", 28), 0
        for ch in spec.get("channels", [16, 32]):
            total += (c * 9 + 1) * ch  # 3×3 conv with bias
            s = s // 2 if s >= 2 else s
            c = ch
        return total + linear_parameters([c * s * s, *(spec.get("hidden", [128]) or []),
                                           spec["out"]])
    base, per_channel, per_class = _torchvision_counts(arch, _small_input(spec))
    return base + per_channel * (spec["in_ch"] - 1) + per_class * (spec["out"] - 1)


@functools.cache
def _torchvision_counts(arch: str, small_input: bool) -> tuple[int, int, int]:
    """(parameters with 1 input channel and 1 class, per extra input channel, per extra
    class) of a torchvision net: its count is affine in both (only the first conv reads
    the channels, only the last Linear writes the classes), so three builds on the meta
    device give it for any size, exactly, once per process (~0.2 s for DenseNet-121)."""
    size = 32 if small_input else 224

    def count(in_ch: int, out: int) -> int:
        with torch.device("meta"):
            return count_parameters(ARCHS[arch]({"arch": arch, "in_ch": in_ch, "out": out,
                                                 "size": size}))

    base = count(1, 1)
    return base, count(2, 1) - base, count(1, 2) - base


def describe(spec: Mapping[str, Any]) -> str:
    """A spec's model for a message: 'the MLP 64-200000-100000-10', 'the CNN (LeNet-style)
    with channels 16·32 and hidden widths 128', 'the ResNet-18 for 3 channels, 10 classes'."""
    arch = spec["arch"]
    title = ARCH_TITLES.get(arch, arch)
    if arch in FULLY_CONNECTED:
        hidden = (spec.get("hidden", [256, 64]) or []) if arch == "mlp" else []
        return f"the {title} " + "-".join(str(w) for w in [spec["in"], *hidden, spec["out"]])
    if arch == "cnn":
        return (f"the {title} with channels "
                f"{'·'.join(map(str, spec.get('channels', [16, 32])))} and hidden widths "
                f"{'·'.join(map(str, spec.get('hidden', [128]) or [])) or 'none'}")
    return f"the {title} for {spec['in_ch']:,} input channels, {spec['out']:,} classes"


def out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is an allocation that failed: MemoryError, torch's OutOfMemoryError
    (a RuntimeError), or the CPU allocator's RuntimeError "can't allocate memory"."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text
                                              or "out of memory" in text)


@contextlib.contextmanager
def memory_guard(what: str, parameters: int | None = None):
    """Turn a failed allocation inside the block into a one-line ExplorerError naming
    `what` and what it needs: the backstop behind `check_parameters`, for a model within
    the limit on a machine with less memory free than that."""
    try:
        yield
    except Exception as exc:
        if not out_of_memory(exc):
            raise
        need = "" if parameters is None else \
            f" ({parameters:,} parameters, {memory_text(4 * parameters)} of float32 weights)"
        raise ExplorerError(f"not enough memory to build {what}{need}: use narrower layers "
                            f"or free memory") from None


def build_model(spec: Mapping[str, Any], state: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """Build a model from its spec; with a state dict, resize layers to it and load it.

    Resizing lets a dense spec carry a pruned state (how Torch-Pruning'd conv nets
    come back), but the model's interface — input features / channels and number of
    classes — must agree with the spec, or the model would fail later on real inputs.
    """
    spec = validate_spec(spec)
    with memory_guard(describe(spec), parameter_count(spec)):
        model = ARCHS[spec["arch"]](spec)
    if state is not None:
        check_interface(model, state)
        resize_to_state(model, state)
        load_state_strict(model, state)
    if spec["arch"] not in FULLY_CONNECTED:  # after resizing, which may replace that conv
        _channels_last_from_first_conv(model)
    return model


def _channels_last_from_first_conv(model: nn.Module) -> None:
    """Have the first conv hand on channels-last activations, which every later layer
    keeps: on the CPU, max-pooling a contiguous (N, C, H, W) map took 4.4 ms where
    channels-last took 0.43 (64×16×28×28, one thread), more than the conv before it.
    Outputs stay the same. Before → after, our CNN: inference at batch 64 on one thread
    2.1× faster on Digits (0.96 → 0.46 ms) and 2.6× on 28×28, a Fashion-MNIST training
    epoch 10.3-11.5 s instead of 12.6-13.2. A Fashion-MNIST epoch of 3 000 samples at
    batch 64 (two threads): MobileNetV2 21.7 → 12.7 s, DenseNet-121 181.9 → 141.4 s,
    ResNet-18 65.3 → 54.5 s; evaluating 1 000 test images 2.9 → 1.4, 35.7 → 21.7 and
    8.0 → 6.0 s (VGG16-BN: a training step 1.14× faster). The activations, not the
    weights: surgery and checkpoints make plain weight tensors, which would quietly fall
    back to the slow layout. A forward hook, as torchvision's forward is not ours;
    torch.fx does not trace hooks, so the interval criterion's graph is unchanged."""
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is not None:
        first.register_forward_hook(_to_channels_last)


def _to_channels_last(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
    return output.contiguous(memory_format=torch.channels_last)


def _interface_layers(model: nn.Module) -> tuple[str | None, nn.Module | None, str | None, nn.Module | None]:
    """(name, module) of the first Linear/Conv2d and of the last Linear."""
    first = last = None
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)) and first is None:
            first = (name, m)
        if isinstance(m, nn.Linear):
            last = (name, m)
    return (*(first or (None, None)), *(last or (None, None)))


def check_interface(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Refuse a state whose input width or class count differs from `model`'s.

    Pruning never touches a model's inputs or logits, so a difference there means the
    weights belong to another dataset or task. Checked on the state before any layer
    is resized, so a refused load leaves `model` untouched. Layer names come first:
    weights of a deeper or shallower net are reported as missing / unexpected layers.
    """
    problems = _key_problems(model.state_dict(), state)
    if problems:
        raise ExplorerError("weights do not fit the model: " + "; ".join(problems))
    first_name, first, last_name, last = _interface_layers(model)
    if first is not None:
        w = state.get(f"{first_name}.weight" if first_name else "weight")
        if isinstance(w, torch.Tensor) and w.dim() >= 2:
            if isinstance(first, nn.Conv2d):
                groups = first.groups if first.groups == first.in_channels else 1
                have, want, what = w.shape[1] * groups, first.in_channels, "input channels"
            else:
                have, want, what = w.shape[1], first.in_features, "input features"
            if have != want:
                raise ExplorerError(f"weights do not fit the model: {have} {what} in "
                                    f"{first_name}, the model expects {want}")
    if last is not None:
        w = state.get(f"{last_name}.weight" if last_name else "weight")
        if isinstance(w, torch.Tensor) and w.dim() == 2 and w.shape[0] != last.out_features:
            raise ExplorerError(f"weights do not fit the model: {w.shape[0]} classes in "
                                f"{last_name}, the model expects {last.out_features}")


def input_shape(spec: Mapping[str, Any]) -> tuple[int, ...]:
    if "input_shape" in spec:
        return tuple(int(v) for v in spec["input_shape"])
    if spec["arch"] in FULLY_CONNECTED:
        return (int(spec["in"]),)
    s = int(spec.get("size", 32))
    return (int(spec["in_ch"]), s, s)


def hidden_widths(model: nn.Module) -> list[int]:
    """Neurons per hidden Linear layer (MLP); for conv nets the output channels of every
    conv, then the neurons of every Linear layer but the last (the logits) — the CNN's
    128-unit layer is pruned like its channels, so a card without it hid that pruning."""
    if isinstance(model, MLP):
        return model.hidden
    linears = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)] + linears[:-1]


def spec_of(model: nn.Module, base: Mapping[str, Any]) -> Spec:
    """The spec of a (possibly pruned) model: the widths it has now, not its dense ones.

    MLPs record their hidden widths (enough to rebuild them exactly); the CNN also
    records its conv channels and FC widths; every conv net records `widths` per conv
    layer for display (rebuilding those goes through `resize_to_state`).
    """
    spec = dict(base)
    if isinstance(model, MLP):
        if spec.get("arch") == "mlp":
            spec["hidden"] = model.hidden
        return spec
    spec["widths"] = {name: m.out_channels for name, m in model.named_modules()
                      if isinstance(m, nn.Conv2d)}
    if isinstance(model, CNN) and spec.get("arch") == "cnn":
        spec["channels"] = [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)]
        spec["hidden"] = [m.out_features for m in model.classifier
                          if isinstance(m, nn.Linear)][:-1]
    return spec


def architecture_key(model: nn.Module, input_shape: Sequence[int]) -> str:
    """One string per architecture and input shape: the key of every cache of what
    depends on shapes alone (costs, activation sizes, dependency groups). A model's
    repr names each layer's type and widths, its activation included."""
    return f"{tuple(int(s) for s in input_shape)} {model!r}"


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------ resizing to a state

def _resized(module: nn.Module, prefix: str, state: Mapping[str, torch.Tensor]) -> nn.Module | None:
    """A fresh module of the same kind with the shapes of `state`, or None if they fit."""
    w = state.get(prefix + "weight")
    if isinstance(module, nn.Linear) and w is not None and w.dim() == 2:
        if tuple(w.shape) == tuple(module.weight.shape):
            return None
        return nn.Linear(w.shape[1], w.shape[0], bias=module.bias is not None)
    if isinstance(module, nn.Conv2d) and w is not None and w.dim() == 4:
        if tuple(w.shape) == tuple(module.weight.shape):
            return None
        out_ch = w.shape[0]
        depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
        groups = out_ch if depthwise else module.groups
        in_ch = w.shape[1] * groups
        return nn.Conv2d(in_ch, out_ch, module.kernel_size, module.stride, module.padding,
                         module.dilation, groups, module.bias is not None, module.padding_mode)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        ref = state.get(prefix + "running_mean", state.get(prefix + "weight"))
        if ref is None or ref.shape[0] == module.num_features:
            return None
        return type(module)(ref.shape[0], module.eps, module.momentum, module.affine,
                            module.track_running_stats)
    return None


def resize_to_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Replace Linear / Conv2d / BatchNorm layers whose shapes differ from `state`, in
    place; a replaced layer keeps its forward hooks (`_channels_last_from_first_conv`)."""
    for name, module in list(model.named_modules()):
        prefix = f"{name}." if name else ""
        new = _resized(module, prefix, state)
        if new is None:
            continue
        if not name:
            raise ExplorerError("cannot resize a bare layer; wrap it in a model")
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        new._forward_hooks.update(module._forward_hooks)  # the first conv's layout hook
        setattr(parent, child, new)
    return model


def _key_problems(own: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> list[str]:
    """What keeps `state` from loading into a model whose state dict is `own`, one short
    phrase each (missing and unexpected tensors, non-float weights), each naming at
    most three tensors. Sparse tensors are refused outright (`ExplorerError`): that is
    the file's format, not a misfit of the weights, whatever else is wrong.
    """
    # load_state_dict cannot copy a sparse tensor (COO, CSR, …) into a dense parameter: it
    # raised once per parameter, a ~2 500-character line that blamed the spec
    sparse = [k for k in own if isinstance(state.get(k), torch.Tensor)
              and state[k].layout != torch.strided]
    if sparse:
        raise ExplorerError(f"sparse tensors are not supported ({', '.join(sparse[:3])}"
                            + (" …" if len(sparse) > 3 else "")
                            + "); save the dense state dict (tensor.to_dense())")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:3])}" + (" …" if len(missing) > 3 else ""))
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:3])}" + (" …" if len(unexpected) > 3 else ""))
    # load_state_dict casts silently: 0/1 or whole-number weights (a mask or a label
    # tensor saved under a weight's name) loaded and predicted nonsense
    not_float = [f"{k} holds {str(state[k].dtype).removeprefix('torch.')}" for k, v in own.items()
                 if k in state and isinstance(v, torch.Tensor) and v.is_floating_point()
                 and isinstance(state[k], torch.Tensor) and not state[k].is_floating_point()]
    if not_float:
        problems.append(f"{', '.join(not_float[:3])}" + (" …" if len(not_float) > 3 else "")
                        + ", not floating-point weights")
    return problems


def load_state_strict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """load_state_dict with a one-line message naming what does not fit."""
    own = model.state_dict()
    problems = _key_problems(own, state)
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        problems.append(f"shape mismatch {', '.join(wrong[:3])}" + (" …" if len(wrong) > 3 else ""))
    if problems:
        raise ExplorerError("weights do not fit the model: " + "; ".join(problems))
    model.load_state_dict({k: v for k, v in state.items()}, strict=True)


def clone(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


def prunable_layers(model: nn.Module) -> list[str]:
    """Names of the layers whose output units (neurons / channels) may be pruned.

    Every Conv2d and every Linear except the last one (the logits are never pruned),
    in module order — for an MLP that is `fc1 … fc(K-1)`, the hidden layers.
    """
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    last = linears[-1] if linears else None
    return [n for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d) or (isinstance(m, nn.Linear) and n != last)]
