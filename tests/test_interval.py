"""Interval arithmetic and IASA: enclosure properties and a worked example by hand.

The property tests sample many inputs inside a box and check, with autograd as the
reference, that every pre-activation lies in its interval and that the gradient of the
sum of logits with respect to it lies in the interval adjoint.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from explorer_core.criteria import CriterionOptions, compute_scores
from explorer_core.data import Split
from explorer_core.errors import ExplorerError
from explorer_core.interval import (Interval, graph_interval_adjoint, graph_interval_forward,
                                    graph_scores, iasa, input_box, interval_adjoint,
                                    interval_conv, interval_forward, interval_linear,
                                    interval_mul, mlp_scores, module_activation, trace)
from explorer_core.models import MLP

TOL = 1e-9  # float64 throughout: room for rounding only


def samples_in_box(box: Interval, n: int, corners: int, gen: torch.Generator) -> torch.Tensor:
    """n uniform points inside the (1, …) box plus `corners` random corners of it."""
    lo, hi = box.lo[0], box.hi[0]
    u = torch.rand(n, *lo.shape, generator=gen, dtype=lo.dtype)
    pick = torch.randint(0, 2, (corners, *lo.shape), generator=gen).to(lo.dtype)
    return torch.cat([lo + u * (hi - lo), lo + pick * (hi - lo)])


def assert_inside(iv: Interval, values: torch.Tensor, what: str) -> None:
    scale = 1.0 + values.abs().max().item()
    inside = iv.contains(values, TOL * scale)
    assert bool(inside.all()), f"{what}: {int((~inside).sum())} of {inside.numel()} outside"


# ------------------------------------------------------------------ interval product

def test_interval_product_encloses_all_products():
    g = torch.Generator().manual_seed(0)
    a_lo, b_lo = torch.randn(500, generator=g), torch.randn(500, generator=g)
    a = Interval(a_lo, a_lo + torch.rand(500, generator=g) * 3)
    b = Interval(b_lo, b_lo + torch.rand(500, generator=g) * 3)
    p = interval_mul(a, b)
    t = torch.rand(2, 200, 500, generator=g)
    x = a.lo + t[0] * a.width
    y = b.lo + t[1] * b.width
    assert bool(p.contains(x * y, 1e-6).all())
    # and it is tight: the bounds are attained at corners
    corners = torch.stack([a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi])
    assert torch.allclose(p.lo, corners.min(0).values) and torch.allclose(p.hi, corners.max(0).values)


@pytest.mark.parametrize("module", [nn.ReLU(), nn.ReLU6(), nn.Sigmoid(), nn.Tanh(),
                                    nn.Hardtanh(-1.0, 2.0), nn.LeakyReLU(0.1)],
                         ids=lambda m: type(m).__name__)
def test_activation_values_and_derivatives_stay_in_their_bounds(module):
    """Intervals around the kinks (0, 6, -1, 2) and far from them; autograd's derivative
    (including its convention exactly at a kink) must lie in the derivative bounds."""
    act = module_activation(module)
    g = torch.Generator().manual_seed(0)
    lo = torch.cat([torch.tensor([0.0, -1.0, 6.0, 2.0, -3.0, 5.0, 0.0]),
                    torch.randn(300, generator=g, dtype=torch.float64).float() * 4]).double()
    hi = lo + torch.cat([torch.tensor([0.0, 1.0, 0.0, 1.0, 2.0, 2.0, 0.5]),
                         torch.rand(300, generator=g).float() * 3]).double()
    iv = Interval(lo, hi)
    t = torch.cat([torch.zeros(1, len(lo)), torch.ones(1, len(lo)),
                   torch.rand(500, len(lo), generator=g)]).double()
    z = (lo + t * (hi - lo)).requires_grad_(True)
    y = module(z)
    (dy,) = torch.autograd.grad(y.sum(), z)
    assert bool(iv.map_monotone(act.fn).contains(y.detach(), 1e-12).all())
    assert bool(act.deriv(iv).contains(dy, 1e-12).all())


def test_affine_helpers_enclose_linear_and_conv_images():
    g = torch.Generator().manual_seed(1)
    lin, conv = nn.Linear(5, 4).double(), nn.Conv2d(2, 3, 3, stride=2, padding=1).double()
    for layer, shape, helper in ((lin, (5,), lambda b: interval_linear(b, lin.weight, lin.bias)),
                                 (conv, (2, 7, 7), lambda b: interval_conv(b, conv))):
        lo = torch.randn(1, *shape, generator=g, dtype=torch.float64)
        box = Interval(lo, lo + torch.rand(1, *shape, generator=g, dtype=torch.float64))
        out = helper(box)
        x = samples_in_box(box, 1000, 200, g)
        with torch.no_grad():
            assert_inside(Interval(out.lo[0], out.hi[0]), layer(x), type(layer).__name__)


# ------------------------------------------------------------------ MLP enclosure

def mlp_reference(model: MLP, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Pre-activations (autograd leaves of the graph, gradients retained) and logits."""
    pres = []
    h = x.flatten(1)
    layers = model.linears()
    for i, lin in enumerate(layers):
        z = lin(h)
        z.retain_grad()
        pres.append(z)
        if i < len(layers) - 1:
            h = model.act(z)
    return pres, pres[-1]


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), activation=st.sampled_from(["relu", "sigmoid", "tanh"]))
def test_mlp_intervals_enclose_sampled_activations_and_gradients(seed, activation):
    torch.manual_seed(seed)
    model = MLP(6, [9, 7], 4, activation).double()
    data = torch.randn(40, 6, dtype=torch.float64) * 1.5
    box = input_box(data)
    pre = interval_forward(model, box)
    adj = interval_adjoint(model, pre)

    x = samples_in_box(box, 3000, 64, torch.Generator().manual_seed(seed))
    zs, logits = mlp_reference(model, x)
    logits.sum().backward()  # samples are independent: z.grad is each sample's ∂Σlogits/∂z
    for i, (z, iv, a) in enumerate(zip(zs, pre, adj)):
        assert_inside(iv, z.detach(), f"layer {i + 1} pre-activation")
        assert a.lo.shape == (1, 1, z.shape[1])
        assert_inside(Interval(a.lo[0], a.hi[0]), z.grad, f"layer {i + 1} adjoint")


def test_mlp_per_class_adjoint_encloses_each_logit_gradient():
    torch.manual_seed(3)
    model = MLP(5, [8], 3, "sigmoid").double()
    box = input_box(torch.randn(30, 5, dtype=torch.float64))
    pre = interval_forward(model, box)
    adj = interval_adjoint(model, pre, per_class=True)
    assert adj[0].lo.shape == (3, 1, 8)
    x = samples_in_box(box, 2000, 32, torch.Generator().manual_seed(1))
    for k in range(3):
        zs, logits = mlp_reference(model, x)
        logits[:, k].sum().backward()
        assert_inside(Interval(adj[0].lo[k], adj[0].hi[k]), zs[0].grad, f"class {k}")


# ------------------------------------------------------------------ conv graph enclosure

class TinyResNet(nn.Module):
    """Conv + BN + ReLU, a residual add, an overlapping max pool, a concatenation,
    ReLU6, average pooling and a Linear head: every op kind the graph pass handles."""

    def __init__(self, smooth: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.Tanh() if smooth else nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(8, 5, 3, padding=1, groups=1)
        self.act3 = nn.Tanh() if smooth else nn.ReLU6()
        self.pool2 = nn.MaxPool2d(2)
        self.avg = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(5, 6)
        self.sig = nn.Sigmoid()
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x):
        h = self.relu(self.bn1(self.conv1(x)))
        r = self.relu(self.bn2(self.conv2(h)) + h)     # residual add
        p = self.pool(r)                               # 3×3 windows, stride 2: overlapping
        c = torch.cat([p, self.pool(h)], 1)            # DenseNet-style concatenation
        y = self.pool2(self.act3(self.conv3(c)))
        return self.fc2(self.sig(self.fc1(self.flatten(self.avg(y)))))


def tiny_resnet(seed: int, smooth: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    m = TinyResNet(smooth)
    for bn in (m.bn1, m.bn2):  # non-trivial eval-mode statistics and affine parameters
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.normal_()
        bn.bias.data.normal_()
    return m.double().eval()


def run_nodes(gm: torch.fx.GraphModule, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Every node's output for a batch, gradients retained (autograd reference)."""
    values: dict[str, torch.Tensor] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if n.op != "output" and isinstance(out, torch.Tensor) and out.requires_grad:
                out.retain_grad()
                values[n.name] = out
            return out

    x = x.clone().requires_grad_(True)
    return values, Recorder(gm).run(x)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conv_graph_intervals_enclose_sampled_activations_and_gradients(seed):
    model = tiny_resnet(seed)
    gm = trace(model)
    box = input_box(torch.randn(25, 2, 6, 6, dtype=torch.float64,
                                generator=torch.Generator().manual_seed(seed)))
    fwd = graph_interval_forward(gm, box)
    adj = graph_interval_adjoint(fwd)

    x = samples_in_box(box, 2000, 500, torch.Generator().manual_seed(100 + seed))
    values, logits = run_nodes(gm, x)
    logits.sum().backward()
    checked = 0
    for name, v in values.items():
        if name == "x":
            continue
        assert_inside(fwd.values[name], v.detach(), f"{name} value")
        a = adj[name]
        assert a.lo.shape[:2] == (1, 1)
        assert_inside(Interval(a.lo[0], a.hi[0]), v.grad, f"{name} adjoint")
        checked += 1
    # every op kind was exercised: conv, bn, relu, add, maxpool, cat, relu6, avg, fc, sigmoid
    assert checked >= 17


def test_point_box_reproduces_values_and_gradients_exactly():
    """A box of zero width is one input: intervals collapse onto the forward values and
    the adjoint onto autograd's gradient (smooth activations, so no kinks or max ties).
    This catches bounds that are wrong but still loose enough to enclose samples."""
    model = tiny_resnet(7, smooth=True)
    gm = trace(model)
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    fwd = graph_interval_forward(gm, Interval.point(x))
    adj = graph_interval_adjoint(fwd)
    values, logits = run_nodes(gm, x)
    logits.sum().backward()
    for name, v in values.items():
        if name == "x":
            continue
        for bound in (fwd.values[name].lo, fwd.values[name].hi):
            assert torch.allclose(bound, v.detach(), rtol=1e-10, atol=1e-12), name
        for bound in (adj[name].lo[0], adj[name].hi[0]):
            assert torch.allclose(bound, v.grad, rtol=1e-10, atol=1e-12), name


def test_graph_pass_matches_the_mlp_path():
    torch.manual_seed(5)
    model = MLP(12, [10, 7], 4, "relu").double()
    box = input_box(torch.randn(50, 12, dtype=torch.float64))
    direct = mlp_scores(model, box)
    via_graph = graph_scores(model, box, ["fc1", "fc2"])
    for name in ("fc1", "fc2"):
        assert torch.allclose(direct[name], via_graph[name], rtol=1e-12, atol=1e-12)


def test_unsupported_module_is_named():
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.GELU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 2))
    with pytest.raises(ExplorerError, match=r"does not support GELU \(layer '1'\)"):
        iasa(model, torch.randn(10, 1, 8, 8), ["0"])


def test_unsupported_function_is_named():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.out = nn.Linear(3, 2)

        def forward(self, x):
            return self.out(torch.nn.functional.gelu(self.fc(x)))

    with pytest.raises(ExplorerError, match="does not support gelu"):
        iasa(Net(), torch.randn(10, 4), ["fc"])


# ------------------------------------------------------------------ worked example

def worked_example() -> MLP:
    """A 2-4-3-2 ReLU network with hand-set weights (see the arithmetic below)."""
    m = MLP(2, [4, 3], 2, "relu").double()
    with torch.no_grad():
        m.fc1.weight.copy_(torch.tensor([[1.0, 1.0], [2.0, -1.0], [-1.0, 0.5], [0.5, -1.0]]))
        m.fc1.bias.copy_(torch.tensor([0.0, 3.0, -2.0, 0.5]))
        m.fc2.weight.copy_(torch.tensor([[1.0, 0.5, 2.0, -1.0],
                                         [-1.0, 1.0, 1.0, 0.5],
                                         [0.5, -1.0, 1.0, 0.0]]))
        m.fc2.bias.copy_(torch.tensor([-1.0, 1.0, 0.0]))
        m.fc3.weight.copy_(torch.tensor([[1.0, -1.0, 2.0], [0.5, 2.0, -1.0]]))
        m.fc3.bias.zero_()
    return m


# Input box: x1 ∈ [0, 1], x2 ∈ [-1, 1]  →  centre c = (0.5, 0), radius r = (0.5, 1).
#
# Layer 1, zc = W1 c + b1, zr = |W1| r:
#   n1 = ( 1,  1)·x + 0    : zc = 0.5        , zr = 0.5 + 1   = 1.5  → [-1  , 2  ]
#   n2 = ( 2, -1)·x + 3    : zc = 1 + 3 = 4  , zr = 1 + 1     = 2    → [ 2  , 6  ]
#   n3 = (-1, .5)·x - 2    : zc = -0.5 - 2   , zr = 0.5 + 0.5 = 1    → [-3.5, -1.5]
#   n4 = (.5, -1)·x + 0.5  : zc = 0.25 + 0.5 , zr = 0.25 + 1  = 1.25 → [-0.5, 2  ]
# ReLU on the bounds: a1 ∈ [0,2], a2 ∈ [2,6], a3 ∈ [0,0], a4 ∈ [0,2]
#   → centre (1, 4, 0, 1), radius (1, 2, 0, 1).
#
# Layer 2:
#   m1 = (1, .5, 2, -1)·a - 1 : zc = 1 + 2 + 0 - 1 - 1 = 1    , zr = 1 + 1 + 0 + 1   = 3   → [-2, 4]
#   m2 = (-1, 1, 1, .5)·a + 1 : zc = -1 + 4 + 0 + .5 + 1 = 4.5, zr = 1 + 2 + 0 + 0.5 = 3.5 → [ 1, 8]
#   m3 = (.5, -1, 1, 0)·a + 0 : zc = 0.5 - 4 = -3.5         , zr = 0.5 + 2         = 2.5 → [-6, -1]
#
# Adjoint, seed 1 on both logits: ∂/∂(layer-2 output) = W3ᵀ(1, 1)
#   = (1 + 0.5, -1 + 2, 2 - 1) = (1.5, 1, 1).
# ReLU' over layer 2: m1 [-2,4] → [0,1]; m2 [1,8] → [1,1]; m3 [-6,-1] → [0,0].
# Adjoint w.r.t. layer-2 pre-activations: m1 [0, 1.5], m2 [1, 1], m3 [0, 0].
# Scores layer 2 (width × max|adjoint|): m1 6·1.5 = 9, m2 7·1 = 7, m3 5·0 = 0.
#
# Back through W2 (interval sums of weight × interval):
#   n1:  1·[0,1.5] - 1·1 + 0.5·0 = [-1  , 0.5 ]
#   n2: .5·[0,1.5] + 1·1 - 1·0   = [ 1  , 1.75]
#   n3:  2·[0,1.5] + 1·1 + 1·0   = [ 1  , 4   ]
#   n4: -1·[0,1.5] + .5·1 + 0    = [-1  , 0.5 ]
# ReLU' over layer 1: n1 [0,1], n2 [1,1], n3 [0,0], n4 [0,1]; interval products:
#   n1 [-1,0.5]·[0,1] = [-1, 0.5]; n2 [1, 1.75]; n3 [0, 0]; n4 [-1, 0.5].
# Scores layer 1: n1 3·1 = 3, n2 4·1.75 = 7, n3 2·0 = 0, n4 2.5·1 = 2.5.
HAND_PRE = {"fc1": ([-1, 2, -3.5, -0.5], [2, 6, -1.5, 2]), "fc2": ([-2, 1, -6], [4, 8, -1])}
HAND_SCORES = {"fc1": [3.0, 7.0, 0.0, 2.5], "fc2": [9.0, 7.0, 0.0]}

# Per-class seeds (score = max over classes).
# Class 1, seed (1, 0): W3ᵀ → (1, -1, 2); layer-2 adjoints m1 [0,1], m2 -1, m3 0
#   → fc2 scores 6·1 = 6, 7·1 = 7, 0.
#   Through W2: n1 1·[0,1] + 1 = [1,2]; n2 .5·[0,1] - 1 = [-1,-.5]; n3 2·[0,1] - 1 = [-1,1];
#   n4 -1·[0,1] - .5 = [-1.5,-.5]; × ReLU': [0,2], [-1,-.5], 0, [-1.5,0]
#   → fc1 scores 3·2 = 6, 4·1 = 4, 0, 2.5·1.5 = 3.75.
# Class 2, seed (0, 1): W3ᵀ → (0.5, 2, -1); layer-2 adjoints m1 [0,.5], m2 2, m3 0
#   → fc2 scores 6·.5 = 3, 7·2 = 14, 0.
#   Through W2: n1 [0,.5] - 2 = [-2,-1.5]; n2 .5·[0,.5] + 2 = [2,2.25]; n3 2·[0,.5] + 2 = [2,3];
#   n4 -[0,.5] + 1 = [.5,1]; × ReLU': [-2,0], [2,2.25], 0, [0,1]
#   → fc1 scores 3·2 = 6, 4·2.25 = 9, 0, 2.5·1 = 2.5.
# Max over classes: fc1 (6, 9, 0, 3.75), fc2 (6, 14, 0).
HAND_PER_CLASS = {"fc1": [6.0, 9.0, 0.0, 3.75], "fc2": [6.0, 14.0, 0.0]}


def test_worked_example_intervals_and_scores_by_hand():
    model = worked_example()
    box = Interval(torch.tensor([[0.0, -1.0]], dtype=torch.float64),
                   torch.tensor([[1.0, 1.0]], dtype=torch.float64))
    pre = interval_forward(model, box)
    for i, name in enumerate(("fc1", "fc2")):
        lo, hi = HAND_PRE[name]
        assert pre[i].lo[0].tolist() == lo and pre[i].hi[0].tolist() == hi
    scores = mlp_scores(model, box)
    for name, expected in HAND_SCORES.items():
        assert scores[name][0].tolist() == expected
    per_class = mlp_scores(model, box, per_class=True)
    for name, expected in HAND_PER_CLASS.items():
        assert per_class[name][0].tolist() == expected


def test_worked_example_through_the_criterion_registry():
    """The same numbers via compute_scores: the box is the data's per-feature min / max."""
    model = worked_example().float()
    data = Split(torch.tensor([[0.0, 0.0], [1.0, -1.0], [0.5, 1.0]]), torch.tensor([0, 1, 0]))
    scores = compute_scores(model, "interval_adjoint", data)
    assert {k: v.tolist() for k, v in scores.items()} == HAND_SCORES
    per_class = compute_scores(model, "interval_adjoint", data,
                               options=CriterionOptions(per_class=True))
    assert {k: v.tolist() for k, v in per_class.items()} == HAND_PER_CLASS
    # the graph pass (used for conv nets) agrees on the same network
    graph = graph_scores(model.double(), input_box(data.x.double()), ["fc1", "fc2"])
    assert {k: v[0].tolist() for k, v in graph.items()} == HAND_SCORES


def test_zero_width_boxes_give_zero_scores_and_eps_boxes_average():
    model = worked_example()
    x = torch.tensor([[0.5, 0.0], [0.2, -0.5]], dtype=torch.float64)
    zero = iasa(model, x, ["fc1", "fc2"], eps=0.0)
    assert all(bool((s == 0).all()) for s in zero.values())
    # ε-box scores are the mean of the per-sample box scores
    each = [mlp_scores(model, input_box(x[i:i + 1], 0.25)) for i in range(2)]
    both = iasa(model, x, ["fc1", "fc2"], eps=0.25, batch_size=1)
    for name in ("fc1", "fc2"):
        assert torch.allclose(both[name], (each[0][name][0] + each[1][name][0]) / 2)
