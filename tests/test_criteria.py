"""Significance criteria: shapes, rankings with known answers, seeds, and clear errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from explorer_core.criteria import CRITERIA, CriterionOptions, compute_scores
from explorer_core.data import Split, load_dataset
from explorer_core.errors import ExplorerError
from explorer_core.models import MLP, build_model, default_spec, prunable_layers

OPTS = CriterionOptions(max_samples=128, batch_size=64)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def units(model: nn.Module, name: str) -> int:
    return model.get_submodule(name).weight.shape[0]


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("criterion", sorted(CRITERIA))
def test_every_criterion_gives_one_finite_score_per_unit(arch, criterion, digits):
    torch.manual_seed(0)
    model = build_model(default_spec(arch, 1, 8, 10, hidden=[24, 12]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    scores = compute_scores(model, criterion, digits.train, options=OPTS)
    assert list(scores) == prunable_layers(model)
    for name, s in scores.items():
        assert s.shape == (units(model, name),), name
        assert s.is_floating_point() and bool(torch.isfinite(s).all()), name
    # scoring leaves the model as it was: same weights and BN statistics, same mode
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def mlp_with_dead_units(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    model = MLP(64, [16, 8], 10)
    with torch.no_grad():
        model.fc1.weight[[3, 11]] = 0.0
        model.fc2.weight[5] = 0.0
    return model


@pytest.mark.parametrize("criterion", ["l1", "l2"])
def test_zero_weight_units_rank_last_by_norm(criterion):
    model = mlp_with_dead_units()
    scores = compute_scores(model, criterion)
    assert set(scores["fc1"].argsort()[:2].tolist()) == {3, 11}
    assert scores["fc1"][[3, 11]].tolist() == [0.0, 0.0]
    assert scores["fc2"].argmin().item() == 5
    assert (scores["fc1"][[i for i in range(16) if i not in (3, 11)]] > 0).all()

    torch.manual_seed(1)
    cnn = build_model(default_spec("cnn", 1, 8, 10))
    with torch.no_grad():
        cnn.features[3].weight[7] = 0.0  # one filter of the second conv
    conv_scores = compute_scores(cnn, criterion, layers=["features.3"])
    assert conv_scores["features.3"].argmin().item() == 7
    assert conv_scores["features.3"][7].item() == 0.0


def test_l1_and_l2_are_the_row_norms():
    model = MLP(3, [2], 2)
    with torch.no_grad():
        model.fc1.weight.copy_(torch.tensor([[3.0, -4.0, 0.0], [1.0, 1.0, -1.0]]))
    assert compute_scores(model, "l1")["fc1"].tolist() == [7.0, 3.0]
    assert torch.allclose(compute_scores(model, "l2")["fc1"], torch.tensor([5.0, 3.0 ** 0.5]))


def test_iasa_gives_a_dead_unit_zero(digits):
    """A unit with zero weights and bias has a zero-width interval, so score 0."""
    model = mlp_with_dead_units()
    with torch.no_grad():
        model.fc1.bias[[3, 11]] = 0.0
    scores = compute_scores(model, "interval_adjoint", digits.train)
    assert scores["fc1"][[3, 11]].tolist() == [0.0, 0.0]
    assert (scores["fc1"][[i for i in range(16) if i not in (3, 11)]] > 0).all()


def test_random_is_seeded(digits):
    model = build_model(default_spec("mlp", 1, 8, 10))
    a = compute_scores(model, "random", options=CriterionOptions(seed=3))
    b = compute_scores(model, "random", options=CriterionOptions(seed=3))
    c = compute_scores(model, "random", options=CriterionOptions(seed=4))
    for name in a:
        assert torch.equal(a[name], b[name])
        assert not torch.equal(a[name], c[name])
    # a layer's scores do not depend on which other layers were asked for
    only = compute_scores(model, "random", layers=["fc2"], options=CriterionOptions(seed=3))
    assert torch.equal(only["fc2"], a["fc2"])
    assert not torch.equal(a["fc1"][:64], a["fc2"])  # layers get different draws


def clustered_layer() -> tuple[MLP, dict[str, list[int]]]:
    """fc1 has 14 units: two far-apart singletons, a cluster of 4 and a cluster of 8.

    Clusters lie along different axes (10 apart); inside a cluster the members differ only
    in length, growing with their position in the group lists (10.0, 10.1, …), so the
    ranking inside each cluster is known. The groups are interleaved in the layer.
    """
    groups = {"eight": [0, 1, 3, 4, 5, 6, 7, 8], "single": [2, 13], "four": [9, 10, 11, 12]}
    axis = {"eight": 1, "four": 0}
    e = torch.eye(6) * 10.0
    rows = torch.zeros(14, 6)
    for name in ("eight", "four"):
        for i, unit in enumerate(groups[name]):
            rows[unit] = e[axis[name]] * (1 + 0.01 * i)
    rows[2], rows[13] = e[2], -e[4]
    model = MLP(6, [14], 2)
    with torch.no_grad():
        model.fc1.weight.copy_(rows)
    return model, groups


def test_kmeans_keeps_singletons_and_prunes_clusters_in_proportion():
    model, groups = clustered_layer()
    scores = compute_scores(model, "kmeans", options=CriterionOptions(kmeans_k=4))["fc1"]
    order = scores.argsort(descending=True).tolist()
    # keep 8 of 14: both singletons, half of the 4-cluster, half of the 8-cluster
    top = set(order[:8])
    assert set(groups["single"]) <= top
    assert top & set(groups["four"]) == {groups["four"][3], groups["four"][2]}   # largest norms
    assert top & set(groups["eight"]) == set(groups["eight"][4:])
    # keep 5: the singletons and a quarter of each cluster
    top = set(order[:5])
    assert set(groups["single"]) <= top
    assert len(top & set(groups["four"])) == 1 and len(top & set(groups["eight"])) == 2
    # singletons outrank everything
    assert scores[groups["single"]].min() > scores[groups["four"] + groups["eight"]].max()


def test_taylor_is_l2_normalised_and_zero_for_units_that_cannot_reach_the_loss(digits):
    torch.manual_seed(0)
    model = MLP(64, [20, 10], 10)
    with torch.no_grad():
        model.fc2.weight[:, 4] = 0.0   # unit 4 of fc1 feeds nothing: ∂L/∂a₄ = 0
    scores = compute_scores(model, "taylor", digits.train, options=OPTS)
    for s in scores.values():
        assert abs(s.norm().item() - 1.0) < 1e-5
    assert scores["fc1"][4].item() == 0.0
    assert (scores["fc1"][[i for i in range(20) if i != 4]] > 0).all()

    cnn = build_model(default_spec("cnn", 1, 8, 10))
    conv = compute_scores(cnn, "taylor", digits.train, options=OPTS)
    assert all(abs(s.norm().item() - 1.0) < 1e-5 for s in conv.values())


class _ConvBN(nn.Module):
    """conv → BN → ReLU → pool → linear, with BN statistics far from the identity."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 10)
        with torch.no_grad():
            self.bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
            self.bn.running_var.copy_(torch.tensor([0.2, 3.0, 1.0, 0.5]))
            self.bn.weight.copy_(torch.tensor([1.5, 0.3, -0.8, 1.0]))
            self.bn.bias.copy_(torch.tensor([0.7, -0.4, 1.2, 0.1]))

    def forward(self, x):
        z = torch.relu(self.bn(self.conv(x)))
        return self.fc(nn.functional.adaptive_avg_pool2d(z, 1).flatten(1))


def test_taylor_scores_a_conv_channel_by_its_batchnorm_output(digits):
    """Removing a conv channel removes its BN channel too, so a is the BN output: the conv
    output alone (what was scored) ranked channels by a value BN's shift replaces."""
    torch.manual_seed(4)
    model = _ConvBN().eval()
    calib = digits.train.subset(30, seed=0)
    ordered = calib.subset(30, seed=0)  # the criterion's draw order
    ref = torch.zeros(4, dtype=torch.float64)
    pre_bn = torch.zeros(4, dtype=torch.float64)
    for start in (0, 10, 20):
        xb, yb = ordered.x[start:start + 10], ordered.y[start:start + 10]
        c = model.conv(xb)
        c.retain_grad()
        b = model.bn(c)
        b.retain_grad()
        z = torch.relu(b)
        out = model.fc(nn.functional.adaptive_avg_pool2d(z, 1).flatten(1))
        nn.functional.cross_entropy(out, yb, reduction="sum").backward()
        ref += (b * b.grad).double().flatten(2).mean(2).sum(0).abs().detach()
        pre_bn += (c * c.grad).double().flatten(2).mean(2).sum(0).abs().detach()
    ref, pre_bn = ref / ref.norm(), pre_bn / pre_bn.norm()
    got = compute_scores(model, "taylor", calib, ["conv"],
                         CriterionOptions(max_samples=30, batch_size=10))["conv"].double()
    assert torch.allclose(got, ref, rtol=1e-4)
    assert not torch.allclose(got, pre_bn, rtol=1e-2)  # the two readings differ here


def test_taylor_matches_a_per_mini_batch_reference(digits):
    """Per mini-batch |mean over its samples of a · ∂L/∂a| (L = sum of the samples'
    cross-entropies, a sample's own term), averaged over the mini-batches weighted by
    size, then L2-normalised. 20 samples in batches of 7, 7 and 6, one sample at a time."""
    torch.manual_seed(2)
    model = MLP(64, [6], 10, "tanh")
    calib = digits.train.subset(20, seed=0)
    ordered = calib.subset(20, seed=0)  # the criterion draws its samples in this order
    ref = torch.zeros(6, dtype=torch.float64)
    for start in (0, 7, 14):
        batch = torch.zeros(6, dtype=torch.float64)
        for i in range(start, min(start + 7, 20)):
            z = model.fc1(ordered.x[i:i + 1].flatten(1))
            z.retain_grad()
            loss = nn.functional.cross_entropy(model.fc2(torch.tanh(z)), ordered.y[i:i + 1])
            loss.backward()
            batch += (z * z.grad)[0].double().detach()
        ref += batch.abs()
    ref = ref / ref.norm()
    got = compute_scores(model, "taylor", calib, options=CriterionOptions(max_samples=20,
                                                                           batch_size=7))
    assert torch.allclose(got["fc1"].double(), ref, rtol=1e-4)
    # the per-sample |·| the criterion does not use gives a different ranking here
    per_sample = torch.zeros(6, dtype=torch.float64)
    for i in range(20):
        z = model.fc1(calib.x[i:i + 1].flatten(1))
        z.retain_grad()
        nn.functional.cross_entropy(model.fc2(torch.tanh(z)), calib.y[i:i + 1]).backward()
        per_sample += (z * z.grad).abs()[0].double().detach()
    assert not torch.allclose(ref, per_sample / per_sample.norm(), rtol=1e-2)


def test_contribution_matches_its_definition(digits):
    torch.manual_seed(4)
    model = MLP(64, [7, 5], 10)
    calib = digits.train.subset(30, seed=1)
    with torch.no_grad():
        a1 = torch.relu(model.fc1(calib.x.flatten(1)))
        a2 = torch.relu(model.fc2(a1))
        w2, w3 = model.fc2.weight.abs(), model.fc3.weight.abs()
        # one unit j at a time: mean over samples of |a_j| × Σ_k |W_kj|
        ref1 = torch.stack([(a1[:, j] * w2[:, j].sum()).mean() for j in range(7)])
        ref2 = torch.stack([(a2[:, j] * w3[:, j].sum()).mean() for j in range(5)])
        # normalised: Σ_k |a_j W_kj| / Σ_j' |a_j' W_kj'|
        tot = a1 @ w2.T
        norm1 = torch.stack([(a1[:, j:j + 1] * w2[:, j] / tot).sum(1).mean() for j in range(7)])
    opts = CriterionOptions(max_samples=30, batch_size=8, seed=1)
    got = compute_scores(model, "contribution", calib, options=opts)
    assert torch.allclose(got["fc1"], ref1, rtol=1e-5) and torch.allclose(got["fc2"], ref2, rtol=1e-5)
    opts.contribution_normalise = True
    got = compute_scores(model, "contribution", calib, options=opts)
    assert torch.allclose(got["fc1"], norm1, rtol=1e-5, atol=1e-7)


def test_contribution_of_a_conv_channel_counts_every_weight_it_reaches(digits):
    """CNN: the last conv feeds a Linear through ReLU, max-pool and flatten; channel j's
    share is Σ over its positions of |a| × that position's column sum of |W|."""
    torch.manual_seed(5)
    model = build_model(default_spec("cnn", 1, 8, 10, hidden=[16]))
    calib = digits.train.subset(10, seed=0)
    with torch.no_grad():
        a = model.flatten(model.features(calib.x))          # what classifier.0 receives
        cols = model.classifier[0].weight.abs().sum(0)       # Σ_k |W_k,(j,p)|
        ref = (a.abs() * cols).reshape(10, 32, -1).sum(2).mean(0)
    got = compute_scores(model, "contribution", calib, layers=["features.3"],
                         options=CriterionOptions(max_samples=10))
    assert torch.allclose(got["features.3"], ref, rtol=1e-5)


def test_contribution_refuses_layers_feeding_residual_adds(digits):
    model = build_model(default_spec("resnet18", 1, 8, 10))
    with pytest.raises(ExplorerError, match="contribution does not support layer 'conv1'"):
        compute_scores(model, "contribution", digits.train, options=OPTS)


@pytest.mark.parametrize("criterion", ["interval_adjoint", "taylor", "contribution"])
def test_data_driven_criteria_need_data(criterion):
    model = build_model(default_spec("mlp", 1, 8, 10))
    assert CRITERIA[criterion].needs_data
    with pytest.raises(ExplorerError, match=f"{criterion}.*needs calibration data"):
        compute_scores(model, criterion)


def test_unknown_criterion():
    model = build_model(default_spec("mlp", 1, 8, 10))
    with pytest.raises(ExplorerError, match="unknown criterion 'magic'"):
        compute_scores(model, "magic")


def test_unsupported_layer_type_is_named(digits):
    model = build_model(default_spec("resnet18", 1, 8, 10))
    with pytest.raises(ExplorerError, match=r"layer 'bn1' \(BatchNorm2d\)"):
        compute_scores(model, "l1", layers=["bn1"])
    with pytest.raises(ExplorerError, match="no layer 'nope'"):
        compute_scores(model, "l2", layers=["nope"])
    gelu = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.GELU(), nn.Linear(8, 10))
    with pytest.raises(ExplorerError, match=r"interval_adjoint does not support GELU \(layer '2'\)"):
        compute_scores(gelu, "interval_adjoint", digits.train)


@pytest.mark.parametrize("arch", ["resnet18", "densenet121", "vgg16_bn", "mobilenet_v2"])
def test_iasa_scores_every_conv_channel_of_the_torchvision_models(arch, digits):
    torch.manual_seed(0)
    model = build_model(default_spec(arch, 1, 8, 10))
    layers = prunable_layers(model)
    scores = compute_scores(model, "interval_adjoint", digits.train.subset(200), options=OPTS)
    assert list(scores) == layers
    convs = 0
    for name, s in scores.items():
        m = model.get_submodule(name)
        assert s.shape == (m.weight.shape[0],), name
        assert bool(torch.isfinite(s).all()), name
        assert (s >= 0).all(), name
        convs += isinstance(m, nn.Conv2d)
    assert convs == sum(isinstance(m, nn.Conv2d) for m in model.modules())


def test_iasa_options_per_class_and_eps(digits):
    torch.manual_seed(0)
    model = build_model(default_spec("cnn", 1, 8, 10))
    base = compute_scores(model, "interval_adjoint", digits.train)
    per_class = compute_scores(model, "interval_adjoint", digits.train,
                               options=CriterionOptions(per_class=True))
    eps = 0.05
    calib = digits.train.subset(64, seed=0)
    boxes = compute_scores(model, "interval_adjoint", calib,
                           options=CriterionOptions(eps=eps, max_samples=64, seed=0))
    # the whole-domain box of the ε-boxes' corners contains every ε-box, and interval
    # arithmetic is inclusion-monotone: no ε-box can score above it
    hull = Split(torch.cat([calib.x - eps, calib.x + eps]), torch.cat([calib.y, calib.y]))
    whole = compute_scores(model, "interval_adjoint", hull)
    for name in base:
        assert per_class[name].shape == base[name].shape == boxes[name].shape
        assert bool(torch.isfinite(per_class[name]).all()) and not torch.equal(per_class[name],
                                                                              base[name])
        assert (boxes[name] <= whole[name] * (1 + 1e-4)).all(), name
        assert boxes[name].sum() < whole[name].sum()


def test_taylor_traces_an_architecture_once_and_scores_each_model_its_own_way(digits,
                                                                              monkeypatch):
    """Which module's output a unit is (the BN after a conv) depends on the wiring alone:
    two models of one architecture share a trace, models of another get their own."""
    from explorer_core import criteria

    monkeypatch.setattr(criteria, "_UNIT_OUTPUTS", {})  # traces of earlier tests set aside
    traced = []
    real = criteria._unit_outputs
    monkeypatch.setattr(criteria, "_unit_outputs",
                        lambda m, layers: traced.append(type(m)) or real(m, layers))
    calib = digits.train.subset(30, seed=0)
    options = CriterionOptions(max_samples=30, batch_size=10)
    torch.manual_seed(4)
    first, second = _ConvBN().eval(), _ConvBN().eval()
    a = compute_scores(first, "taylor", calib, ["conv"], options)["conv"]
    b = compute_scores(second, "taylor", calib, ["conv"], options)["conv"]
    assert traced == [_ConvBN] and not torch.allclose(a, b)
    # the second model's scores are what a fresh trace gives it (its BN output, too)
    criteria._UNIT_OUTPUTS.clear()
    assert torch.equal(compute_scores(second, "taylor", calib, ["conv"], options)["conv"], b)
    # a model without BatchNorm is not traced: each layer is its own unit output, as a
    # trace finds
    mlp = build_model(default_spec("mlp", 1, 8, 10, hidden=[12]))
    layers = prunable_layers(mlp)
    compute_scores(mlp, "taylor", calib, layers, options)
    assert traced == [_ConvBN, _ConvBN]
    assert real(mlp, layers) == {n: n for n in layers}


class _TwoBranches(nn.Module):
    """Two convs on the same input, added: the second's input comes from before the
    first unit output, so it does not hang off the first one's graph."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 3, 3, padding=1)
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        z = torch.relu(self.a(x)) + torch.tanh(self.b(x))
        return self.fc(nn.functional.adaptive_avg_pool2d(z, 1).flatten(1))


def _taylor_on_the_whole_graph(model: nn.Module, calib: Split, layers: list[str],
                               batch: int) -> dict[str, torch.Tensor]:
    """Taylor as defined, with autograd recording every layer from the input on."""
    sums = {n: torch.zeros(units(model, n), dtype=torch.float64) for n in layers}
    out: dict[str, torch.Tensor] = {}
    handles = [model.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: out.__setitem__(n, o) or o.clone()) for n in layers]
    for start in range(0, len(calib), batch):
        x = calib.x[start:start + batch].clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(model(x), calib.y[start:start + batch],
                                           reduction="sum")
        grads = torch.autograd.grad(loss, [out[n] for n in layers])
        for n, g in zip(layers, grads):
            a = out[n].detach()
            prod = a * g if a.dim() == 2 else (a * g).flatten(2).sum(2) / a[0, 0].numel()
            sums[n] += prod.double().sum(0).abs()
    for h in handles:
        h.remove()
    return {n: (s / len(calib) / (s / len(calib)).norm()).float() for n, s in sums.items()}


@pytest.mark.parametrize("frozen", [False, True])
def test_taylor_records_autograd_only_from_the_first_unit_output_on(digits, frozen):
    """∂L/∂a needs only what follows a: the layers before the first scored unit (a CNN's
    conv features when its classifier is scored) run without autograd, and the scores
    are those of the whole graph, bit for bit — also for a unit on a branch that leaves
    before the first one, and for a model whose weights do not require gradients."""
    calib = digits.train.subset(90, seed=0)
    options = CriterionOptions(max_samples=90, batch_size=32)
    cases = [(build_model(default_spec("cnn", 1, 8, 10)), ["classifier.0"], "features.0"),
             (_TwoBranches(), ["a", "b"], "stem")]
    for model, layers, before in cases:
        torch.manual_seed(5)
        model.eval()
        if frozen:
            model.requires_grad_(False)
        recording = []
        handle = model.get_submodule(before).register_forward_pre_hook(
            lambda m, i: recording.append(torch.is_grad_enabled()))
        got = compute_scores(model, "taylor", calib, layers, options)
        handle.remove()
        assert recording and not any(recording)
        want = _taylor_on_the_whole_graph(model, calib.subset(90, seed=0), layers, 32)
        for n in layers:
            assert torch.equal(got[n], want[n]), n
            assert bool((got[n] > 0).any()), n
