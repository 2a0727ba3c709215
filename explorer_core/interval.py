"""Interval arithmetic and the interval-adjoint significance analysis (IASA).

IASA (the thesis' method, DESIGN.md §4) asks how much each neuron *can* move the network's
output over the whole input domain, not at a few sample points: an input box is pushed
through the network as intervals, an interval adjoint (a bound on ∂Σlogits/∂z for every
input in the box) is pushed back, and a neuron's score is

    width of its pre-activation interval × max(|adjoint lower|, |adjoint upper|),

a first-order bound on how much the logits can change through that neuron.

Conventions
- An `Interval` holds `lo`/`hi` tensors. Affine maps are evaluated in centre/radius form
  (`zc = W c + b`, `zr = |W| r`), which gives the exact interval hull of an affine image of
  a box; monotone activations are applied to the bounds.
- Boxes carry a leading batch dimension B (1 for the whole-domain box, N for per-sample
  ε-boxes). Adjoints carry one more leading dimension S, one per seed on the logits
  (1 for "seed 1 on every logit", K for per-class seeds).
- Conv channels: a channel's score is the SUM over spatial positions of width × |adjoint|.
  The sum (not the mean) is the channel's share of the first-order bound on Σ logits, which
  is additive over positions, and it reduces to the neuron score for Linear layers.
- The score is the same whether taken at a conv's output or after a following BatchNorm:
  BN scales the width by |s| and the adjoint by 1/|s|.

Two implementations: `interval_forward` / `interval_adjoint` for our `MLP` (a few matmuls),
and a graph pass over a torch.fx trace for conv nets (Conv, Linear, BatchNorm in eval mode,
ReLU/ReLU6/Hardtanh/Sigmoid/Tanh/LeakyReLU, max/avg/adaptive-avg pooling, flatten/reshape,
residual add, concatenation, dropout as identity). Anything else raises an ExplorerError
naming the layer instead of returning numbers.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .errors import ExplorerError
from .models import MLP

Tensor = torch.Tensor


# ================================================================== interval arithmetic

@dataclass(frozen=True)
class Interval:
    """Elementwise interval [lo, hi] of two same-shaped (or broadcastable) tensors."""
    lo: Tensor
    hi: Tensor

    @staticmethod
    def point(x: Tensor) -> "Interval":
        return Interval(x, x)

    @staticmethod
    def from_centre_radius(c: Tensor, r: Tensor) -> "Interval":
        return Interval(c - r, c + r)

    @property
    def centre(self) -> Tensor:
        return (self.lo + self.hi) * 0.5

    @property
    def radius(self) -> Tensor:
        return (self.hi - self.lo) * 0.5

    @property
    def width(self) -> Tensor:
        return self.hi - self.lo

    def magnitude(self) -> Tensor:
        """max(|lo|, |hi|): the largest absolute value the interval admits."""
        return torch.maximum(self.lo.abs(), self.hi.abs())

    def __add__(self, other: "Interval") -> "Interval":
        return Interval(self.lo + other.lo, self.hi + other.hi)

    def map_monotone(self, fn: Callable[[Tensor], Tensor]) -> "Interval":
        """Image under a non-decreasing elementwise function: apply it to the bounds."""
        return Interval(fn(self.lo), fn(self.hi))

    def contains(self, x: Tensor, tol: float = 0.0) -> Tensor:
        return (x >= self.lo - tol) & (x <= self.hi + tol)


def _param(t: Tensor | None, like: Tensor) -> Tensor | None:
    """A parameter / buffer detached and cast to the dtype and device of the intervals, so
    the caller picks the precision by the box it passes in."""
    return None if t is None else t.detach().to(device=like.device, dtype=like.dtype)


def interval_mul(a: Interval, b: Interval) -> Interval:
    """Interval product: [min, max] of the four bound products (broadcasting)."""
    p1, p2, p3, p4 = a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi
    return Interval(torch.minimum(torch.minimum(p1, p2), torch.minimum(p3, p4)),
                    torch.maximum(torch.maximum(p1, p2), torch.maximum(p3, p4)))


def interval_linear(x: Interval, weight: Tensor, bias: Tensor | None = None) -> Interval:
    """y = x Wᵀ + b for every x in the box: centre through W, radius through |W|."""
    return Interval.from_centre_radius(F.linear(x.centre, weight, bias),
                                       F.linear(x.radius, weight.abs()))


def interval_linear_transpose(adj: Interval, weight: Tensor) -> Interval:
    """Adjoint of a Linear layer's input, a = Wᵀ ā, for every ā in the adjoint interval."""
    return Interval.from_centre_radius(adj.centre @ weight, adj.radius @ weight.abs())


def interval_conv(x: Interval, conv: nn.modules.conv._ConvNd) -> Interval:
    """Conv of a box: centre through W (with bias), radius through |W| (no bias)."""
    w = _param(conv.weight, x.lo)
    b = _param(conv.bias, x.lo)
    return Interval.from_centre_radius(conv._conv_forward(x.centre, w, b),
                                       conv._conv_forward(x.radius, w.abs(), None))


# ================================================================== activations

@dataclass(frozen=True)
class Activation:
    """A non-decreasing elementwise activation and bounds of its derivative on an interval.

    `deriv(pre)` must enclose the derivative autograd uses at every point of `pre`
    (including its convention at kinks, e.g. ReLU'(0) = 0).
    """
    name: str
    fn: Callable[[Tensor], Tensor]
    deriv: Callable[[Interval], Interval]


def _window_deriv(low: float, high: float) -> Callable[[Interval], Interval]:
    """Derivative of a clamp to [low, high]: 1 on the open interval, 0 outside.

    Over [l, u] the derivative is surely 1 if low < l and u < high, possibly 1 if the
    interval meets (low, high). ReLU is the case [0, ∞): ReLU' ∈ [1[l>0], 1[u>0]].
    """
    def deriv(pre: Interval) -> Interval:
        sure = (pre.lo > low) & (pre.hi < high)
        maybe = (pre.hi > low) & (pre.lo < high)
        return Interval(sure.to(pre.lo.dtype), maybe.to(pre.lo.dtype))
    return deriv


def _bump_deriv(fprime: Callable[[Tensor], Tensor], peak: float) -> Callable[[Interval], Interval]:
    """Derivative bounds of a function whose derivative peaks at 0 and decreases with |z|
    (sigmoid, tanh): the minimum is at an end point, the maximum is `peak` if 0 ∈ [l, u]
    and otherwise at the end point nearer 0."""
    def deriv(pre: Interval) -> Interval:
        dl, du = fprime(pre.lo), fprime(pre.hi)
        straddles = (pre.lo <= 0) & (pre.hi >= 0)
        hi = torch.where(straddles, torch.full_like(dl, peak), torch.maximum(dl, du))
        return Interval(torch.minimum(dl, du), hi)
    return deriv


def _sigmoid_prime(z: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1 - s)


def _tanh_prime(z: Tensor) -> Tensor:
    t = torch.tanh(z)
    return 1 - t * t


def _leaky_deriv(slope: float) -> Callable[[Interval], Interval]:
    """LeakyReLU' is 1 for z > 0 and `slope` for z ≤ 0 (autograd's convention at 0)."""
    def deriv(pre: Interval) -> Interval:
        one = torch.ones_like(pre.lo)
        s = torch.full_like(pre.lo, slope)
        a = torch.where(pre.lo > 0, one, s)   # derivative at the lower end
        b = torch.where(pre.hi > 0, one, s)   # derivative at the upper end
        return Interval(torch.minimum(a, b), torch.maximum(a, b))
    return deriv


RELU = Activation("ReLU", torch.relu, _window_deriv(0.0, math.inf))
RELU6 = Activation("ReLU6", lambda z: F.hardtanh(z, 0.0, 6.0), _window_deriv(0.0, 6.0))
SIGMOID = Activation("Sigmoid", torch.sigmoid, _bump_deriv(_sigmoid_prime, 0.25))
TANH = Activation("Tanh", torch.tanh, _bump_deriv(_tanh_prime, 1.0))
IDENTITY = Activation("Identity", lambda z: z, lambda pre: Interval(torch.ones_like(pre.lo),
                                                                    torch.ones_like(pre.lo)))

MODULE_ACTIVATIONS: dict[type, Callable[[nn.Module], Activation | None]] = {
    nn.ReLU: lambda m: RELU,
    nn.ReLU6: lambda m: RELU6,
    nn.Sigmoid: lambda m: SIGMOID,
    nn.Tanh: lambda m: TANH,
    nn.Hardtanh: lambda m: Activation(
        "Hardtanh", lambda z: F.hardtanh(z, m.min_val, m.max_val),
        _window_deriv(m.min_val, m.max_val)),
    # a negative slope makes LeakyReLU non-monotone: bounds would not map to bounds
    nn.LeakyReLU: lambda m: Activation(
        "LeakyReLU", lambda z: F.leaky_relu(z, m.negative_slope),
        _leaky_deriv(m.negative_slope)) if m.negative_slope >= 0 else None,
}

FUNCTION_ACTIVATIONS: dict[Any, Activation] = {
    F.relu: RELU, torch.relu: RELU, F.relu6: RELU6,
    torch.sigmoid: SIGMOID, F.sigmoid: SIGMOID, torch.tanh: TANH, F.tanh: TANH,
}
METHOD_ACTIVATIONS: dict[str, Activation] = {"relu": RELU, "sigmoid": SIGMOID, "tanh": TANH}


def module_activation(module: nn.Module) -> Activation | None:
    make = MODULE_ACTIVATIONS.get(type(module))
    return make(module) if make else None


# ================================================================== boxes and seeds

def input_box(x: Tensor, eps: float | None = None) -> Interval:
    """The input box in the model's (normalised) input space.

    Without `eps`: the whole-domain box, per-feature min and max over `x`, shape (1, …).
    With `eps`: one box [x − ε, x + ε] per sample, shape (N, …).
    """
    x = x.detach()
    if not x.is_floating_point():
        x = x.float()
    if eps is None:
        return Interval(x.amin(0, keepdim=True), x.amax(0, keepdim=True))
    if eps < 0:
        raise ExplorerError(f"ε must be ≥ 0, got {eps}")
    return Interval(x - eps, x + eps)


def logit_seeds(num_outputs: int, per_class: bool = False, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32) -> Tensor:
    """(S, num_outputs) seeds on the logits: one row of ones, or one one-hot row per class."""
    if per_class:
        return torch.eye(num_outputs, device=device, dtype=dtype)
    return torch.ones(1, num_outputs, device=device, dtype=dtype)


def _seed_interval(seed: Tensor | None, out: Tensor, per_class: bool = False) -> Interval:
    """Point interval (S, B, n_out) from seeds (S, n_out) and the output shape (B, n_out);
    without explicit seeds, `logit_seeds(n_out, per_class)`."""
    if seed is None:
        seed = logit_seeds(out.shape[-1], per_class, device=out.device, dtype=out.dtype)
    seed = seed.to(device=out.device, dtype=out.dtype)
    if seed.dim() == 1:
        seed = seed[None]
    s = seed[:, None, :].expand(seed.shape[0], *out.shape)
    return Interval.point(s)


def unit_scores(pre: Interval, adj: Interval) -> Tensor:
    """(B, units): width × max|adjoint| summed over positions, then max over seeds.

    `pre` is (B, units, *positions), `adj` is (S, B, units, *positions).
    """
    s = pre.width.unsqueeze(0) * adj.magnitude()
    if s.dim() > 3:
        s = s.flatten(3).sum(3)
    return s.amax(0)


# ================================================================== MLPs

def _mlp_parts(model: MLP) -> tuple[list[nn.Linear], Activation]:
    act = module_activation(model.act)
    if act is None:
        raise ExplorerError(f"interval_adjoint does not support {type(model.act).__name__} "
                            f"(layer 'act')")
    return model.linears(), act


def interval_forward(model: MLP, box: Interval) -> list[Interval]:
    """Pre-activation interval of every Linear layer of an MLP (the last one = logits).

    `box` is (B, …) and is flattened to (B, in_features), as the MLP flattens its input.
    """
    layers, act = _mlp_parts(model)
    x = Interval(box.lo.reshape(box.lo.shape[0], -1), box.hi.reshape(box.hi.shape[0], -1))
    pres: list[Interval] = []
    with torch.no_grad():
        for i, lin in enumerate(layers):
            z = interval_linear(x, _param(lin.weight, x.lo), _param(lin.bias, x.lo))
            pres.append(z)
            if i < len(layers) - 1:
                x = z.map_monotone(act.fn)
    return pres


def interval_adjoint(model: MLP, pre: list[Interval], seed: Tensor | None = None,
                     per_class: bool = False) -> list[Interval]:
    """Interval adjoint of Σ seed·logits w.r.t. every layer's pre-activation, (S, B, units).

    Backward from the seed on the logits: through a Linear layer the adjoint of its input
    is Wᵀā (centre/radius form), through the activation it is multiplied (interval product)
    by the activation's derivative bounds over that layer's pre-activation interval.
    """
    layers, act = _mlp_parts(model)
    with torch.no_grad():
        adj = _seed_interval(seed, pre[-1].lo, per_class)
        adjs = [adj]
        for i in range(len(layers) - 1, 0, -1):
            post = interval_linear_transpose(adj, _param(layers[i].weight, adj.lo))
            adj = interval_mul(post, act.deriv(pre[i - 1]))
            adjs.append(adj)
    return adjs[::-1]


def mlp_scores(model: MLP, box: Interval, seed: Tensor | None = None,
               per_class: bool = False) -> dict[str, Tensor]:
    """IASA scores (B, units) of every hidden layer `fc1 … fc(K-1)` of an MLP."""
    pre = interval_forward(model, box)
    adj = interval_adjoint(model, pre, seed, per_class)
    return {f"fc{i + 1}": unit_scores(pre[i], adj[i]) for i in range(len(pre) - 1)}


# ================================================================== graph pass (conv nets)

def trace(model: nn.Module) -> fx.GraphModule:
    """torch.fx trace of `model` (in eval mode), with a one-line message when it fails."""
    was = model.training
    model.eval()
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types for untraceable Python control flow
        raise ExplorerError(f"interval_adjoint cannot trace {type(model).__name__} with "
                            f"torch.fx ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    finally:
        model.train(was)


@dataclass
class _Slot:
    """Placeholder for the i-th interval-valued argument of an fx node."""
    i: int


@dataclass
class _Step:
    """How to push the adjoint of a node's output back to its interval-valued inputs."""
    inputs: list[fx.Node]
    backward: Callable[[Interval], list[Interval]]


@dataclass
class GraphForward:
    """Result of the interval forward pass over a traced model."""
    gm: fx.GraphModule
    values: dict[str, Interval]            # node name → interval of the node's output
    steps: dict[str, _Step] = field(repr=False, default_factory=dict)
    output: str = ""                        # name of the node holding the logits
    elements: int = 0                       # interval elements computed (memory estimate)

    def module_nodes(self, target: str) -> list[str]:
        """Names of the call_module nodes that run the submodule `target`."""
        return _module_nodes(self.gm, target)


def _module_nodes(gm: fx.GraphModule, target: str) -> list[str]:
    return [n.name for n in gm.graph.nodes if n.op == "call_module" and n.target == target]


def _unsupported(what: str, node: fx.Node) -> ExplorerError:
    where = f"layer '{node.target}'" if node.op == "call_module" else f"operation '{node.name}'"
    return ExplorerError(f"interval_adjoint does not support {what} ({where})")


def _fn_name(target: Any) -> str:
    return getattr(target, "__name__", str(target))


Transpose = Callable[[Tensor], list[Tensor]]  # (S, B, out…) cotangent → (S, B, in…) per input


def _affine_backward(tc: Transpose, tr: Transpose) -> Callable[[Interval], list[Interval]]:
    """Backward of an affine node y = L(x₁, …) + b.

    The adjoint of each input is Lᵀā for every ā in the output's adjoint interval: its
    centre is Lᵀ(centre) (`tc`), its radius |L|ᵀ(radius) (`tr`).
    """
    def backward(adj: Interval) -> list[Interval]:
        return [Interval.from_centre_radius(c, r)
                for c, r in zip(tc(adj.centre), tr(adj.radius))]
    return backward


def _vjp_transpose(fn: Callable[..., Tensor], primals: list[Tensor]) -> Transpose:
    """Lᵀ of a linear map given as a function, by autograd (the generic fallback).

    VJPs of a linear map do not depend on the point, so any primal of the right shape
    serves; `vmap` runs all seeds S at once.
    """
    def t(cot: Tensor) -> list[Tensor]:
        _, vjp_fn = torch.func.vjp(fn, *primals)
        if cot.shape[0] == 1:
            return [g.unsqueeze(0) for g in vjp_fn(cot[0])]
        return list(torch.func.vmap(vjp_fn)(cot))
    return t


def _fold_seeds(t: Callable[[Tensor], Tensor]) -> Transpose:
    """Lift a batch-polymorphic single-input transpose to (S, B, …) cotangents."""
    def lifted(cot: Tensor) -> list[Tensor]:
        S, B = cot.shape[:2]
        g = t(cot.reshape(S * B, *cot.shape[2:]))
        return [g.reshape(S, B, *g.shape[1:])]
    return lifted


def _conv_transpose(m: nn.modules.conv._ConvNd, weight: Tensor, in_shape: torch.Size) -> Transpose:
    """Conv input-gradient (a transposed conv) for all seeds and boxes in one call."""
    def t(g: Tensor) -> Tensor:
        dummy = g.new_empty(1).expand(g.shape[0], *in_shape[1:])
        return torch.ops.aten.convolution_backward(
            g, dummy, weight, None, list(m.stride), list(m.padding), list(m.dilation), False,
            [0] * len(m.stride), m.groups, (True, False, False))[0]
    return _fold_seeds(t)


def _identity_transpose(n: int) -> Transpose:
    return lambda cot: [cot] * n


def _reshape_transpose(in_shape: torch.Size) -> Transpose:
    return lambda cot: [cot.reshape(cot.shape[0], *in_shape)]


def _maxpool_backward(pre: Interval, kernel, stride, padding, dilation
                      ) -> Callable[[Interval], list[Interval]]:
    """Adjoint of 2-D max pooling over a box.

    Autograd sends each window's adjoint to its arg max. Over the box an input is surely
    the arg max if its lower bound beats every other upper bound in the window, possibly
    if its upper bound reaches the largest lower bound: indicator ∈ [1,1], [0,1] or [0,0].
    The input adjoint is the sum over windows of indicator × window adjoint (interval
    product), done for all windows at once with unfold / fold.
    """
    k, s, p, d = (nn.modules.utils._pair(v) for v in (kernel, stride, padding, dilation))
    B, C, H, W = pre.lo.shape
    Hp, Wp = H + 2 * p[0], W + 2 * p[1]

    def patches(t: Tensor) -> Tensor:  # (B*C, k*k, L), padding never wins the max
        t = F.pad(t, (p[1], p[1], p[0], p[0]), value=-math.inf).reshape(B * C, 1, Hp, Wp)
        return F.unfold(t, k, dilation=d, stride=s)

    lo, hi = patches(pre.lo), patches(pre.hi)
    can = hi >= lo.amax(1, keepdim=True)
    if lo.shape[1] >= 2:
        top2 = hi.topk(2, dim=1).values
        others = torch.where(hi >= top2[:, :1], top2[:, 1:2], top2[:, :1])
        sure = lo > others
    else:
        sure = torch.ones_like(can)
    ind = Interval(sure.to(pre.lo.dtype), can.to(pre.lo.dtype))

    def backward(adj: Interval) -> list[Interval]:
        S = adj.lo.shape[0]
        a = Interval(adj.lo.reshape(S, B * C, 1, -1), adj.hi.reshape(S, B * C, 1, -1))
        prod = interval_mul(a, ind)  # (S, B*C, k*k, L)

        def fold(t: Tensor) -> Tensor:
            t = F.fold(t.reshape(S * B * C, t.shape[2], t.shape[3]), (Hp, Wp), k,
                       dilation=d, stride=s)
            return t[..., p[0]:p[0] + H, p[1]:p[1] + W].reshape(S, B, C, H, W)
        return [Interval(fold(prod.lo), fold(prod.hi))]
    return backward


def _batchnorm_affine(m: nn.modules.batchnorm._BatchNorm, node: fx.Node, like: Tensor
                      ) -> tuple[Tensor, Tensor]:
    """BatchNorm in eval mode is the affine map x·scale + shift per channel."""
    if m.running_mean is None or m.running_var is None:
        raise _unsupported(f"{type(m).__name__} without running statistics", node)
    scale = torch.rsqrt(_param(m.running_var, like) + m.eps)
    if m.weight is not None:
        scale = scale * _param(m.weight, like)
    shift = -_param(m.running_mean, like) * scale
    if m.bias is not None:
        shift = shift + _param(m.bias, like)
    return scale, shift


_POSITIVE_LINEAR_MODULES = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                            nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
_DROPOUT_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)

# functions / methods that are linear with non-negative coefficients and no bias
# (reshapes, selections, concatenation, sums, averages): |L| = L, so the radius takes
# the same path as the centre
_POSITIVE_LINEAR_FUNCTIONS = {
    torch.squeeze, torch.unsqueeze, torch.permute, torch.transpose, torch.mean, torch.sum,
    operator.getitem, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
}
_POSITIVE_LINEAR_METHODS = {"permute", "transpose", "squeeze", "unsqueeze", "mean", "sum",
                            "expand_as"}
_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape}
_RESHAPE_METHODS = {"view", "reshape", "flatten", "contiguous", "view_as"}
_CAT = {torch.cat, torch.concat}
_IDENTITY_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout}
_SHAPE_METHODS = {"size", "dim", "numel"}
_ADD = {operator.add, operator.iadd, torch.add}
_SUB = {operator.sub, operator.isub, torch.sub}
_MUL = {operator.mul, operator.imul, torch.mul}
_DIV = {operator.truediv, operator.itruediv, torch.div}


class _Overflow(Exception):
    """Interval bounds left the float range: retry in float64, or give up."""


class _Evaluator:
    """Interval interpreter: walks the fx graph once, stores each node's interval and the
    backward step for the adjoint pass."""

    def __init__(self, gm: fx.GraphModule, stop_on_overflow: bool = False):
        self.gm = gm
        self.stop_on_overflow = stop_on_overflow
        self.env: dict[fx.Node, Any] = {}
        self.steps: dict[str, _Step] = {}
        self.elements = 0

    # ---------------------------------------------------------------- argument binding
    def bind(self, node: fx.Node) -> tuple[list[fx.Node], list[Interval], Callable[..., Any]]:
        """Interval-valued argument nodes, their intervals, and `call(fn, *tensors)` that
        calls `fn` with those arguments replaced by tensors (others by their values)."""
        nodes: list[fx.Node] = []
        ivs: list[Interval] = []

        def sub(a: fx.Node) -> Any:
            v = self.env[a]
            if isinstance(v, Interval):
                nodes.append(a)
                ivs.append(v)
                return _Slot(len(ivs) - 1)
            return v
        args = fx.node.map_arg(node.args, sub)
        kwargs = fx.node.map_arg(node.kwargs, sub)

        def call(fn: Callable[..., Any], *tensors: Tensor) -> Any:
            fill = lambda a: tensors[a.i] if isinstance(a, _Slot) else a  # noqa: E731
            return fn(*fx.node.map_aggregate(args, fill), **fx.node.map_aggregate(kwargs, fill))
        return nodes, ivs, call

    # ---------------------------------------------------------------- node kinds
    def affine(self, node: fx.Node, nodes: list[fx.Node], ivs: list[Interval],
               fn_c: Callable[..., Tensor], fn_r: Callable[..., Tensor],
               tc: Transpose | None = None, tr: Transpose | None = None) -> Interval:
        """An affine node: centre through `fn_c` (L + b), radius through `fn_r` (|L|).

        `tc` / `tr` are Lᵀ and |L|ᵀ when known in closed form; otherwise autograd
        transposes `fn_c` / `fn_r`.
        """
        cs = [iv.centre for iv in ivs]
        rs = [iv.radius for iv in ivs]
        out = Interval.from_centre_radius(fn_c(*cs), fn_r(*rs))
        tc = tc or _vjp_transpose(fn_c, cs)
        tr = tr or _vjp_transpose(fn_r, rs)
        self.steps[node.name] = _Step(nodes, _affine_backward(tc, tr))
        return out

    def reshape(self, node: fx.Node, nodes: list[fx.Node], ivs: list[Interval],
                fn: Callable[..., Tensor]) -> Interval:
        """A pure reshape (view, flatten, …): the transpose reshapes back."""
        t = _reshape_transpose(ivs[0].lo.shape)
        return self.affine(node, nodes, ivs, fn, fn, t, t)

    def monotone(self, node: fx.Node, nodes: list[fx.Node], ivs: list[Interval],
                 act: Activation) -> Interval:
        if len(ivs) != 1:
            raise _unsupported(f"{act.name} with {len(ivs)} interval inputs", node)
        pre = ivs[0]
        d = act.deriv(pre)
        self.steps[node.name] = _Step(nodes, lambda adj: [interval_mul(adj, d)])
        return pre.map_monotone(act.fn)

    def maxpool(self, node: fx.Node, nodes: list[fx.Node], ivs: list[Interval], kernel, stride,
                padding, dilation, ceil_mode: bool, return_indices: bool) -> Interval:
        if ceil_mode or return_indices or ivs[0].lo.dim() != 4:
            raise _unsupported("MaxPool2d with ceil_mode / return_indices / non-4-D input", node)
        stride = stride if stride not in (None, ()) else kernel
        pool = lambda t: F.max_pool2d(t, kernel, stride, padding, dilation)  # noqa: E731
        self.steps[node.name] = _Step(nodes, _maxpool_backward(ivs[0], kernel, stride,
                                                               padding, dilation))
        return ivs[0].map_monotone(pool)

    # ---------------------------------------------------------------- dispatch
    def call_module(self, node: fx.Node) -> Any:
        m = self.gm.get_submodule(node.target)
        nodes, ivs, call = self.bind(node)
        if not ivs:
            return call(m)
        if isinstance(m, nn.Linear):
            w, b = _param(m.weight, ivs[0].lo), _param(m.bias, ivs[0].lo)
            wa = w.abs()
            return self.affine(node, nodes, ivs, lambda x: F.linear(x, w, b),
                               lambda x: F.linear(x, wa),
                               lambda g: [g @ w], lambda g: [g @ wa])
        if isinstance(m, nn.modules.conv._ConvNd) and not isinstance(m, nn.modules.conv._ConvTransposeNd):
            w, b = _param(m.weight, ivs[0].lo), _param(m.bias, ivs[0].lo)
            wa = w.abs()
            tc = tr = None
            if m.padding_mode == "zeros" and not isinstance(m.padding, str):
                tc = _conv_transpose(m, w, ivs[0].lo.shape)
                tr = _conv_transpose(m, wa, ivs[0].lo.shape)
            return self.affine(node, nodes, ivs, lambda x: m._conv_forward(x, w, b),
                               lambda x: m._conv_forward(x, wa, None), tc, tr)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            scale, shift = _batchnorm_affine(m, node, ivs[0].lo)
            shape = (-1, *([1] * (ivs[0].lo.dim() - 2)))
            sc, sa, sh = scale.reshape(shape), scale.abs().reshape(shape), shift.reshape(shape)
            return self.affine(node, nodes, ivs, lambda x: x * sc + sh, lambda x: x * sa,
                               lambda g: [g * sc], lambda g: [g * sa])
        if isinstance(m, (nn.Flatten, nn.Unflatten)):
            return self.reshape(node, nodes, ivs, lambda x: call(m, x))
        if isinstance(m, (nn.Identity, *_DROPOUT_MODULES)):
            # dropout is the identity at inference, the network IASA scores
            ident = _identity_transpose(1)
            return self.affine(node, nodes, ivs, lambda x: x, lambda x: x, ident, ident)
        if isinstance(m, _POSITIVE_LINEAR_MODULES):
            fn = lambda *xs: call(m, *xs)  # noqa: E731
            return self.affine(node, nodes, ivs, fn, fn)
        if isinstance(m, nn.MaxPool2d):
            return self.maxpool(node, nodes, ivs, m.kernel_size, m.stride, m.padding, m.dilation,
                                m.ceil_mode, m.return_indices)
        act = module_activation(m)
        if act is not None:
            return self.monotone(node, nodes, ivs, act)
        raise _unsupported(type(m).__name__, node)

    def call_function(self, node: fx.Node) -> Any:
        target = node.target
        nodes, ivs, call = self.bind(node)
        if not ivs:  # constant folding (shapes, python arithmetic)
            return call(target)
        fn = lambda *xs: call(target, *xs)  # noqa: E731
        if target in _ADD or target in _SUB:
            if node.kwargs:
                raise _unsupported(f"{_fn_name(target)} with keyword arguments", node)
            return self._add_sub(node, nodes, ivs, call, target in _SUB)
        if target in _MUL or target in _DIV:
            return self._scale(node, nodes, ivs, call, target)
        if target in FUNCTION_ACTIVATIONS:
            return self.monotone(node, nodes, ivs, FUNCTION_ACTIVATIONS[target])
        if target in _RESHAPE_FUNCTIONS and len(ivs) == 1:
            return self.reshape(node, nodes, ivs, fn)
        if target in _CAT:
            return self._cat(node, nodes, ivs, fn)
        if target in _POSITIVE_LINEAR_FUNCTIONS:
            return self.affine(node, nodes, ivs, fn, fn)
        if target in _IDENTITY_FUNCTIONS and len(ivs) == 1:
            ident = _identity_transpose(1)
            return self.affine(node, nodes, ivs, lambda x: x, lambda x: x, ident, ident)
        if target is F.max_pool2d:
            a = call(lambda x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                     return_indices=False: (kernel_size, stride, padding, dilation, ceil_mode,
                                            return_indices), ivs[0].centre)
            return self.maxpool(node, nodes, ivs, *a)
        raise _unsupported(_fn_name(target), node)

    def call_method(self, node: fx.Node) -> Any:
        name = node.target
        nodes, ivs, call = self.bind(node)
        method = lambda self_, *a, **k: getattr(self_, name)(*a, **k)  # noqa: E731
        if not ivs:
            return call(method)
        if name in _SHAPE_METHODS:
            return call(method, *[iv.centre for iv in ivs])
        if name in METHOD_ACTIVATIONS and len(node.args) == 1:
            return self.monotone(node, nodes, ivs, METHOD_ACTIVATIONS[name])
        fn = lambda *xs: call(method, *xs)  # noqa: E731
        if name in _RESHAPE_METHODS and len(ivs) == 1 and node.args[0] is nodes[0]:
            return self.reshape(node, nodes, ivs, fn)
        if name in _POSITIVE_LINEAR_METHODS and node.args[0] is nodes[0]:
            return self.affine(node, nodes, ivs, fn, fn)
        raise _unsupported(f"Tensor.{name}", node)

    def _add_sub(self, node, nodes, ivs, call, subtract: bool) -> Interval:
        op = operator.sub if subtract else operator.add
        fn_c = lambda *xs: call(op, *xs)  # noqa: E731
        if len(ivs) == 2:  # |L| of a ± b is a + b
            tc = tr = None
            if ivs[0].lo.shape == ivs[1].lo.shape:  # no broadcasting: closed-form transpose
                tc = (lambda g: [g, -g]) if subtract else _identity_transpose(2)
                tr = _identity_transpose(2)
            return self.affine(node, nodes, ivs, fn_c, lambda a, b: a + b, tc, tr)
        return self.affine(node, nodes, ivs, fn_c, lambda x: x)  # ± a constant: shift only

    def _cat(self, node, nodes, ivs, fn) -> Interval:
        """Concatenation (DenseNet): the transpose splits the adjoint back into its parts."""
        parts = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if not isinstance(parts, (list, tuple)) or len(parts) != len(nodes) or \
                any(p is not n for p, n in zip(parts, nodes)):
            return self.affine(node, nodes, ivs, fn, fn)  # constants mixed in: autograd
        dim = dim if dim < 0 else dim + 1  # the adjoint has an extra leading seed axis
        sizes = [iv.lo.shape[dim - 1] if dim > 0 else iv.lo.shape[dim] for iv in ivs]
        t = lambda g: list(torch.split(g, sizes, dim))  # noqa: E731
        return self.affine(node, nodes, ivs, fn, fn, t, t)

    def _scale(self, node, nodes, ivs, call, target) -> Interval:
        """Multiplication or division by a constant: |L| multiplies by |constant|."""
        if len(ivs) != 1 or len(node.args) != 2 or node.kwargs:
            raise _unsupported(f"{_fn_name(target)} of two intervals", node)
        pos = 0 if node.args[0] is nodes[0] else 1
        if target in _DIV and pos == 1:
            raise _unsupported(f"{_fn_name(target)} by an interval", node)
        other = node.args[1 - pos]
        const = self.env[other] if isinstance(other, fx.Node) else other
        k = const.abs() if isinstance(const, Tensor) else abs(const)
        op = operator.mul if target in _MUL else operator.truediv
        return self.affine(node, nodes, ivs, lambda x: op(x, const), lambda x: op(x, k))

    # ---------------------------------------------------------------- the pass
    def run(self, box: Interval, keep: Iterable[str] | None = None) -> GraphForward:
        """Evaluate every node; free intervals after their last use unless in `keep`
        (None keeps all), so big nets with many boxes fit in memory."""
        keep_set = None if keep is None else set(keep)
        nodes = list(self.gm.graph.nodes)
        last_user: dict[fx.Node, fx.Node] = {}
        for node in nodes:
            for src in node.all_input_nodes:
                last_user[src] = node
        output = ""
        placeholders = 0
        with torch.no_grad():
            for node in nodes:
                if node.op == "placeholder":
                    if placeholders == 0:
                        self.env[node] = box
                    elif node.args:  # an optional input with a default value
                        self.env[node] = node.args[0]
                    else:
                        raise ExplorerError("interval_adjoint needs a model with a single input")
                    placeholders += 1
                elif node.op == "get_attr":
                    self.env[node] = operator.attrgetter(node.target)(self.gm)
                elif node.op == "output":
                    out = node.args[0]
                    if not isinstance(out, fx.Node) or not isinstance(self.env.get(out), Interval):
                        raise ExplorerError("interval_adjoint needs a model that returns one "
                                            "logits tensor")
                    output = out.name
                    continue
                else:
                    self.env[node] = getattr(self, node.op)(node)
                v = self.env[node]
                if isinstance(v, Interval):
                    self.elements += v.lo.numel()
                    if self.stop_on_overflow and not bool(torch.isfinite(v.width).all()):
                        raise _Overflow(node.name)
                for src in node.all_input_nodes:
                    if keep_set is not None and last_user[src] is node and src.name not in keep_set \
                            and not any(u.op == "output" for u in src.users):
                        del self.env[src]
        values = {n.name: v for n, v in self.env.items() if isinstance(v, Interval)}
        return GraphForward(self.gm, values, self.steps, output, self.elements)


def graph_interval_forward(model: nn.Module | fx.GraphModule, box: Interval,
                           keep: Iterable[str] | None = None) -> GraphForward:
    """Interval of every node of the traced model for inputs in `box` (B, C, H, W).

    `keep`: names of the nodes whose intervals are returned (default all); the others are
    freed as soon as their users have been evaluated.
    """
    gm = model if isinstance(model, fx.GraphModule) else trace(model)
    return _Evaluator(gm).run(box, keep)


def graph_interval_adjoint(fwd: GraphForward, seed: Tensor | None = None,
                           keep: Iterable[str] | None = None,
                           per_class: bool = False) -> dict[str, Interval]:
    """Interval adjoint of Σ seed·logits w.r.t. every node's output, (S, B, …).

    Nodes are visited in reverse graph order; a node used several times (residual
    branches, DenseNet features reused by later concatenations) sums its users'
    adjoints. `keep` limits which adjoints are returned (the others are freed as soon as
    they have been propagated), default all.
    """
    keep_set = None if keep is None else set(keep)
    adj: dict[str, Interval] = {
        fwd.output: _seed_interval(seed, fwd.values[fwd.output].lo, per_class)}
    result: dict[str, Interval] = {}
    for node in reversed(list(fwd.gm.graph.nodes)):
        a = adj.pop(node.name, None)
        if a is None:
            continue
        if keep_set is None or node.name in keep_set:
            result[node.name] = a
        step = fwd.steps.get(node.name)
        if step is None:
            continue
        for src, g in zip(step.inputs, step.backward(a)):
            if src.op == "placeholder" and (keep_set is None or src.name not in keep_set):
                continue
            adj[src.name] = adj[src.name] + g if src.name in adj else g
    return result


def _check_finite(t: Tensor) -> None:
    if not bool(torch.isfinite(t).all()):
        raise _Overflow


def graph_scores(model: nn.Module | fx.GraphModule, box: Interval, layers: list[str],
                 seed: Tensor | None = None, per_class: bool = False) -> dict[str, Tensor]:
    """IASA scores (B, units) of the Conv / Linear layers `layers` via the graph pass."""
    return _graph_scores(model if isinstance(model, fx.GraphModule) else trace(model),
                         box, layers, seed, per_class)[0]


def _graph_scores(gm: fx.GraphModule, box: Interval, layers: list[str], seed: Tensor | None,
                  per_class: bool) -> tuple[dict[str, Tensor], int]:
    """Scores and the number of interval elements one pass stored (for chunk sizing)."""
    nodes = {layer: _module_nodes(gm, layer) for layer in layers}
    for layer, names in nodes.items():
        if not names:
            raise ExplorerError(f"interval_adjoint: layer {layer!r} is not used in the "
                                f"model's forward pass")
    keep = {n for ns in nodes.values() for n in ns}
    fwd = _Evaluator(gm, stop_on_overflow=True).run(box, keep)
    adjoints = graph_interval_adjoint(fwd, seed, keep, per_class)
    out: dict[str, Tensor] = {}
    for layer, names in nodes.items():
        total = None
        for n in names:  # a module called several times: its calls add up
            if n not in adjoints:  # does not reach the logits
                s = torch.zeros(fwd.values[n].lo.shape[:2], dtype=fwd.values[n].lo.dtype,
                                device=fwd.values[n].lo.device)
            else:
                s = unit_scores(fwd.values[n], adjoints[n])
            total = s if total is None else total + s
        _check_finite(total)
        out[layer] = total
    seeds = next(iter(adjoints.values())).lo.shape[0] if adjoints else 1
    return out, fwd.elements * (2 + 2 * seeds)


def _mlp_layers_only(model: nn.Module, layers: list[str]) -> bool:
    return isinstance(model, MLP) and \
        set(layers) <= {f"fc{i + 1}" for i in range(model.num_layers - 1)}


# elements of stored intervals per pass allowed when batching ε-boxes through a conv net
_ELEMENT_BUDGET = 150_000_000


def iasa(model: nn.Module, x: Tensor, layers: list[str], eps: float | None = None,
         per_class: bool = False, batch_size: int = 256) -> dict[str, Tensor]:
    """IASA scores (units,) per layer, float64, for inputs `x` in the model's input space.

    Without `eps` one whole-domain box (per-feature min/max of `x`); with `eps` one box
    [x − ε, x + ε] per sample, scores averaged over the samples. `per_class` seeds each
    logit separately and keeps the max over classes.

    Conv nets are bounded in float32 first; interval widths grow exponentially with depth
    (the wrapping effect), so when they leave the float32 range (DenseNet-121) the pass is
    repeated in float64. MLPs always use float64 (a few matmuls).
    """
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = x.device
    x = x.detach()
    if not x.is_floating_point():
        x = x.float()
    if x.device != device:
        x = x.to(device)
    if _mlp_layers_only(model, layers):
        run = lambda box: (mlp_scores(model, box, None, per_class), 0)  # noqa: E731
        dtypes = (torch.float64,)
    else:
        gm = trace(model)
        run = lambda box: _graph_scores(gm, box, layers, None, per_class)  # noqa: E731
        dtypes = (torch.float32, torch.float64)
    for dtype in dtypes:
        try:
            return _iasa_pass(run, x, dtype, eps, batch_size)
        except _Overflow:
            continue
    raise ExplorerError(f"interval_adjoint: interval bounds of {type(model).__name__} overflow "
                        f"even in float64 (the network is too deep for interval bounds)")


def _cast(box: Interval, dtype: torch.dtype) -> Interval:
    return Interval(box.lo.to(dtype), box.hi.to(dtype))


def _iasa_pass(run: Callable[[Interval], tuple[dict[str, Tensor], int]], x: Tensor,
               dtype: torch.dtype, eps: float | None, batch_size: int) -> dict[str, Tensor]:
    """One IASA pass in `dtype`; `run(box)` returns (scores (B, units), memory cost).
    Boxes are cut from `x` in its own dtype and cast, so the data is never copied whole."""
    if eps is None:
        scores, _ = run(_cast(input_box(x), dtype))
        return {n: s[0].to(torch.float64) for n, s in scores.items()}
    total: dict[str, Tensor] = {}
    i, chunk = 0, 1  # the first pass measures one box's memory and sizes the chunks
    while i < len(x):
        scores, cost = run(_cast(input_box(x[i:i + chunk].to(dtype), eps), dtype))
        for n, s in scores.items():
            s = s.sum(0).to(torch.float64)
            total[n] = total[n] + s if n in total else s
        i += chunk
        per_box = max(1, cost // chunk)
        chunk = max(1, min(int(batch_size), _ELEMENT_BUDGET // per_box))
    return {n: s / len(x) for n, s in total.items()}
