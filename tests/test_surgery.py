"""Physical removal of neurons / channels: smaller models that compute the same thing."""
import copy

import pytest
import torch
import torch_pruning as tp
from torch import nn

from explorer_core.checkpoint import load_checkpoint, save_checkpoint
from explorer_core.criteria import CriterionOptions
from explorer_core.errors import ExplorerError
from explorer_core.metrics import macs_per_sample
from explorer_core.models import MLP, build_model, count_parameters, default_spec, input_shape
from explorer_core.surgery import (PruneConfig, conv_groups, prune_mlp, prune_structural,
                                   prune_structural_series, prune_to_widths)

CONV_ARCHS = ["cnn", "resnet18", "vgg16_bn", "mobilenet_v2", "densenet121"]


def _mlp(hidden=(256, 64), seed=0):
    torch.manual_seed(seed)
    return MLP(784, list(hidden), 10).eval()


# ------------------------------------------------------------------ MLPs

def test_removing_zero_weight_neurons_leaves_outputs_unchanged():
    m = _mlp()
    dead1, dead2 = [3, 17, 100, 255], [0, 9, 63]
    with torch.no_grad():  # zero incoming row and bias -> ReLU output is constantly 0
        m.fc1.weight[dead1] = 0
        m.fc1.bias[dead1] = 0
        m.fc2.weight[dead2] = 0
        m.fc2.bias[dead2] = 0
    spec = {"arch": "mlp", "in": 784, "hidden": [256, 64], "out": 10}
    res = prune_structural(m, spec, PruneConfig("l1", keep=[256 - 4, 64 - 3]))
    # l1 ranks the all-zero neurons last, so exactly those are removed
    assert sorted(set(range(256)) - set(res.kept["fc1"])) == dead1
    assert sorted(set(range(64)) - set(res.kept["fc2"])) == dead2
    x = torch.randn(32, 784)
    assert res.model.hidden == [252, 61]
    torch.testing.assert_close(res.model(x), m(x), rtol=1e-5, atol=1e-6)


def test_pruned_mlp_equals_dense_mlp_with_removed_neurons_silenced():
    m = _mlp((32, 16))
    keep = {"fc1": torch.tensor([1, 4, 5, 20, 31]), "fc2": torch.tensor([0, 2, 15])}
    small = prune_mlp(m, keep)
    silenced = copy.deepcopy(m)
    with torch.no_grad():
        for name, n in (("fc1", 32), ("fc2", 16)):
            drop = torch.ones(n, dtype=torch.bool)
            drop[keep[name]] = False
            getattr(silenced, name).weight[drop] = 0
            getattr(silenced, name).bias[drop] = 0
    x = torch.randn(16, 784)
    torch.testing.assert_close(small(x), silenced(x), rtol=1e-5, atol=1e-6)


def test_mlp_really_shrinks_by_the_hand_counted_parameters():
    m = _mlp()
    res = prune_structural(m, {"arch": "mlp", "in": 784, "hidden": [256, 64], "out": 10},
                           PruneConfig("l2", keep=[128, 32]))
    # dense:  784*256+256 + 256*64+64 + 64*10+10 = 218 058
    # pruned: 784*128+128 + 128*32+32 + 32*10+10 = 104 938
    assert count_parameters(m) == 218_058
    assert count_parameters(res.model) == 104_938
    assert res.spec["hidden"] == [128, 32]
    assert res.widths == {"fc1": 128, "fc2": 32}
    assert m.hidden == [256, 64]  # the input model is untouched


def test_ratio_and_global_ranking_on_mlp():
    m = _mlp()
    spec = {"arch": "mlp", "in": 784, "hidden": [256, 64], "out": 10}
    assert prune_structural(m, spec, PruneConfig("l1", ratio=0.75)).model.hidden == [64, 16]
    glob = prune_structural(m, spec, PruneConfig("l1", ratio=0.75, global_ranking=True))
    assert sum(glob.model.hidden) == round(0.25 * 320)
    assert min(glob.model.hidden) >= 1


def test_global_ranking_shares_the_budget_by_each_layer_s_normalised_scores():
    """Every fc1 unit is as important as fc1's best, and one fc2 unit outweighs the rest
    of fc2 a thousandfold: ranked together, the 80 units kept (a quarter of 320) are
    fc2's floor of one and 79 of fc1, where per-layer ranking keeps 64 and 16."""
    m = _mlp()
    spec = {"arch": "mlp", "in": 784, "hidden": [256, 64], "out": 10}
    with torch.no_grad():
        m.fc1.weight.fill_(0.01)
        m.fc2.weight.fill_(0.001)
        m.fc2.weight[0] = 1.0
    glob = prune_structural(m, spec, PruneConfig("l1", ratio=0.75, global_ranking=True))
    assert glob.model.hidden == [79, 1]
    assert prune_structural(m, spec, PruneConfig("l1", ratio=0.75)).model.hidden == [64, 16]


def test_pruned_mlp_saves_and_reloads_with_identical_outputs(tmp_path):
    spec = default_spec("mlp", 1, 8, 10, hidden=[32, 16])
    m = build_model(spec).eval()
    res = prune_structural(m, spec, PruneConfig("l1", keep=[10, 5]))
    save_checkpoint(res.model, res.spec, tmp_path / "small")
    ck = load_checkpoint(tmp_path / "small.safetensors")
    assert ck.spec["hidden"] == [10, 5]
    x = torch.randn(8, 1, 8, 8)
    assert torch.equal(ck.model(x), res.model.eval()(x))


def test_prune_to_widths_random_is_reproducible_per_seed():
    m = _mlp((32, 16))
    a = prune_to_widths(m, [8, 4], "random", options=CriterionOptions(seed=3))
    b = prune_to_widths(m, [8, 4], "random", options=CriterionOptions(seed=3))
    c = prune_to_widths(m, [8, 4], "random", options=CriterionOptions(seed=4))
    assert torch.equal(a.fc1.weight, b.fc1.weight) and torch.equal(a.fc2.weight, b.fc2.weight)
    assert not torch.equal(a.fc1.weight, c.fc1.weight)


@pytest.mark.parametrize("keep, message", [
    ([300, 32], "fc1 has 256 units; cannot keep 300"),
    ([128], "1 keep count.*2 prunable"),
    ([0, 32], "must be ≥ 1"),
])
def test_bad_keep_counts(keep, message):
    with pytest.raises(ExplorerError, match=message):
        prune_to_widths(_mlp(), keep, "l1")


def test_bad_config_and_unsupported_models():
    m = _mlp((8,))
    spec = {"arch": "mlp", "in": 784, "hidden": [8], "out": 10}
    with pytest.raises(ExplorerError, match=r"\[0, 1\)"):
        prune_structural(m, spec, PruneConfig("l1", ratio=1.0))
    with pytest.raises(ExplorerError, match="exactly one"):
        prune_structural(m, spec, PruneConfig("l1"))
    with pytest.raises(ExplorerError, match="unknown criterion"):
        prune_structural(m, spec, PruneConfig("nope", ratio=0.5))
    with pytest.raises(ExplorerError, match="no hidden layer"):
        prune_structural(MLP(784, [], 10), {"arch": "slp", "in": 784, "out": 10},
                         PruneConfig("l1", ratio=0.5))
    with pytest.raises(ExplorerError, match="does not support model"):
        prune_structural(m, {"arch": "transformer"}, PruneConfig("l1", ratio=0.5))
    with pytest.raises(ExplorerError, match="kept index 9 is out of range"):
        prune_mlp(m, {"fc1": [0, 9]})


# ------------------------------------------------------------------ conv nets

@pytest.fixture(scope="module")
def dense_models():
    """Dense 1×8×8 models, built once (torchvision initialisation is slow).

    BatchNorm statistics and affine parameters are randomised so that BN(0) != 0: a
    freshly initialised BN maps 0 to 0 and would hide channels removed from the wrong
    consumer.
    """
    torch.manual_seed(0)
    out = {}
    for arch in CONV_ARCHS:
        spec = default_spec(arch, 1, 8, 10)
        model = build_model(spec).eval()
        with torch.no_grad():
            for bn in model.modules():
                if isinstance(bn, nn.BatchNorm2d):
                    bn.running_mean.uniform_(-0.5, 0.5)
                    bn.running_var.uniform_(0.5, 1.5)
                    bn.weight.uniform_(0.5, 1.5)
                    bn.bias.uniform_(-0.2, 0.2)
        out[arch] = (spec, model)
    return out


@pytest.mark.parametrize("arch", CONV_ARCHS)
def test_half_the_channels_runs_with_fewer_macs_and_rebuilds_exactly(arch, dense_models, tmp_path):
    spec, dense = dense_models[arch]
    before = {k: tuple(v.shape) for k, v in dense.state_dict().items()}
    res = prune_structural(dense, spec, PruneConfig("l1", ratio=0.5))
    assert {k: tuple(v.shape) for k, v in dense.state_dict().items()} == before  # untouched
    # every group keeps round(n/2) of its channels (all widths here are even)
    assert all(res.widths[name] == n // 2 for name, n in res.dense_widths.items())
    x = torch.randn(3, *input_shape(spec))
    y = res.model.eval()(x)
    assert y.shape == (3, 10)
    # Each conv / linear loses half its inputs and/or half its outputs, so MACs fall to at
    # most one half (a quarter where both halve).
    assert macs_per_sample(res.model, input_shape(spec)) < 0.5 * macs_per_sample(dense, input_shape(spec))
    assert count_parameters(res.model) < count_parameters(dense)
    save_checkpoint(res.model, res.spec, tmp_path / "pruned")
    ck = load_checkpoint(tmp_path / "pruned.safetensors")
    assert torch.equal(ck.model(x), y)
    rebuilt = build_model(res.spec, res.model.state_dict()).eval()
    assert torch.equal(rebuilt(x), y)


def _kill_channels(model: nn.Module, spec, chosen: dict[str, list[int]]) -> None:
    """Make the chosen channels of each group exactly zero wherever they are produced.

    Zero filters (and biases) of every coupled producer and zero BatchNorm shift and
    running mean: BN(0) = 0, ReLU(0) = 0, so each consumer receives 0 on those channels.
    """
    graph = tp.DependencyGraph().build_dependency(
        model, example_inputs=torch.zeros(1, *input_shape(spec)))
    fn = tp.pruner.function
    producers = (fn.prune_conv_out_channels, fn.prune_depthwise_conv_out_channels,
                 fn.prune_linear_out_channels)
    for root_name, channels in chosen.items():
        root = model.get_submodule(root_name)
        group = graph.get_pruning_group(root, graph.get_pruner_of_module(root).prune_out_channels,
                                        channels)
        with torch.no_grad():
            for dep, idxs in group:
                layer, idx = dep.target.module, torch.tensor(idxs, dtype=torch.long)
                if dep.handler in producers:  # bound methods: compare with ==, not `is`
                    layer.weight[idx] = 0
                    if layer.bias is not None:
                        layer.bias[idx] = 0
                elif dep.handler == fn.prune_batchnorm_out_channels:
                    layer.running_mean[idx] = 0
                    layer.bias[idx] = 0


@pytest.mark.parametrize("arch", CONV_ARCHS)
def test_removing_dead_channels_leaves_outputs_unchanged(arch, dense_models):
    """Checks that every consumer (concat, residual add, depthwise conv) loses the right
    input channels: removing channels that are exactly zero must not change the output."""
    spec, dense = dense_models[arch]
    model = copy.deepcopy(dense)
    groups = conv_groups(model, spec)
    chosen = {groups[0][0]: [0, 3], groups[len(groups) // 2][0]: [1, 2, 5],
              groups[-1][0]: [4]}
    _kill_channels(model, spec, chosen)
    keep = [n - len(chosen.get(name, [])) for name, n in groups]
    res = prune_structural(model, spec, PruneConfig("l1", keep=keep))
    for name, chans in chosen.items():
        assert sorted(set(range(res.dense_widths[name])) - set(res.kept[name])) == chans
    x = torch.randn(4, *input_shape(spec))
    torch.testing.assert_close(res.model.eval()(x), model(x), rtol=1e-4, atol=1e-5)


def test_graph_facts_are_traced_once_per_architecture(dense_models, monkeypatch):
    """Groups and scored layers come from one trace per architecture; another set of
    widths is another architecture and is traced anew, with its own answers."""
    from explorer_core import surgery

    spec, dense = dense_models["cnn"]
    traced = []
    build = surgery._build_graph
    monkeypatch.setattr(surgery, "_FACTS", {})
    monkeypatch.setattr(surgery, "_build_graph", lambda m, s: traced.append(1) or build(m, s))
    first = conv_groups(copy.deepcopy(dense), spec)
    layers = surgery.score_layers(copy.deepcopy(dense), spec)
    assert conv_groups(dense, spec) == first and len(traced) == 1
    assert layers == ["features.0", "features.3", "classifier.0"]
    small = prune_structural(dense, spec, PruneConfig("l1", keep=[4, 8, 10]))
    assert len(traced) == 2  # pruning traces its own working copy, not via the facts
    assert conv_groups(small.model, small.spec) == [("features.0", 4), ("features.3", 8),
                                                    ("classifier.0", 10)]
    assert len(traced) == 3


def test_conv_keep_counts_follow_group_order_and_are_checked(dense_models):
    spec, dense = dense_models["cnn"]
    groups = conv_groups(dense, spec)
    assert groups == [("features.0", 16), ("features.3", 32), ("classifier.0", 128)]
    res = prune_structural(dense, spec, PruneConfig("l2", keep=[4, 8, 10]))
    assert res.spec["channels"] == [4, 8] and res.spec["hidden"] == [10]
    x = torch.randn(2, 1, 8, 8)
    # the CNN spec alone builds the right shapes
    assert torch.equal(build_model(res.spec, res.model.state_dict()).eval()(x), res.model.eval()(x))
    with pytest.raises(ExplorerError, match="2 keep count.*3 prunable"):
        prune_structural(dense, spec, PruneConfig("l2", keep=[4, 8]))
    with pytest.raises(ExplorerError, match="features.0 has 16 units; cannot keep 17"):
        prune_structural(dense, spec, PruneConfig("l2", keep=[17, 8, 10]))


def test_global_ranking_on_a_conv_net_never_empties_a_group(dense_models):
    spec, dense = dense_models["resnet18"]
    res = prune_structural(dense, spec, PruneConfig("l1", ratio=0.9, global_ranking=True))
    total = sum(res.dense_widths.values())
    assert sum(res.widths.values()) == round(0.1 * total)
    assert min(res.widths.values()) >= 1
    assert res.model.eval()(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_conv_pruning_works_when_called_under_no_grad(dense_models):
    spec, dense = dense_models["cnn"]
    with torch.no_grad():  # tracing needs autograd; surgery re-enables it locally
        res = prune_structural(dense, spec, PruneConfig("l1", ratio=0.5))
    assert res.spec["channels"] == [8, 16]


def test_masked_conv_net_must_be_made_permanent_first(dense_models):
    from explorer_core.masks import apply_masks, copy_model, make_permanent

    spec, dense = dense_models["cnn"]
    masked = apply_masks(copy_model(dense), 0.5)
    with pytest.raises(ExplorerError, match="make them permanent"):
        prune_structural(masked, spec, PruneConfig("l1", ratio=0.5))
    res = prune_structural(make_permanent(masked), spec, PruneConfig("l1", ratio=0.5))
    assert res.spec["channels"] == [8, 16]


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("arch", CONV_ARCHS)
def test_a_series_along_one_graph_equals_pruning_each_ratio_alone(arch, dense_models):
    """Successive removals on one traced copy give exactly the models (weights, specs,
    kept units) that pruning the dense model at each ratio alone gives, and earlier
    results stay as they were while later steps prune on."""
    spec, dense = dense_models[arch]
    configs = [PruneConfig("l1", ratio=r) for r in (0.25, 0.5, 0.75)]
    series = list(prune_structural_series(dense, spec, configs))
    for config, got in zip(configs, series):
        alone = prune_structural(dense, spec, config)
        assert got.kept == alone.kept and got.spec == alone.spec
        assert _same_state(got.model, alone.model)
    assert len({sum(r.widths.values()) for r in series}) == 3  # three different models


def test_a_series_of_an_mlp_and_a_non_nested_step_match_single_pruning(dense_models):
    m = _mlp()
    spec = {"arch": "mlp", "in": 784, "hidden": [256, 64], "out": 10}
    configs = [PruneConfig("l2", keep=[200, 50]), PruneConfig("l2", keep=[100, 20])]
    for config, got in zip(configs, prune_structural_series(m, spec, configs)):
        assert _same_state(got.model, prune_structural(m, spec, config).model)
    # growing keep counts are not nested in the previous step: a fresh copy is pruned
    spec, dense = dense_models["cnn"]
    configs = [PruneConfig("l1", keep=[4, 8, 10]), PruneConfig("l1", keep=[12, 30, 100])]
    got = list(prune_structural_series(dense, spec, configs))
    assert got[1].spec["channels"] == [12, 30]
    assert _same_state(got[1].model, prune_structural(dense, spec, configs[1]).model)
    with pytest.raises(ExplorerError, match="one criterion"):
        prune_structural_series(dense, spec, [PruneConfig("l1", ratio=0.5),
                                              PruneConfig("l2", ratio=0.6)])


def test_precomputed_scores_may_leave_out_the_groups_no_config_prunes(dense_models):
    """A sweep's neuron pruning of a CNN keeps every conv group whole; its precomputed
    scores now cover the classifier alone (Taylor over the conv layers cost a backward
    pass through them for nothing). The pruned models are those full scores give, and
    a config that does prune a left-out group is refused by name."""
    from explorer_core.criteria import compute_scores
    from explorer_core.surgery import score_layers

    spec, dense = dense_models["cnn"]
    assert score_layers(dense, spec, ["classifier.0"]) == ["classifier.0"]
    assert score_layers(dense, spec, ["features.3"]) == ["features.3"]
    full = compute_scores(dense, "l2", None, score_layers(dense, spec))
    part = {"classifier.0": full["classifier.0"]}
    keeps = [[16, 32, 100], [16, 32, 60]]
    with_full = list(prune_structural_series(
        dense, spec, [PruneConfig("l2", keep=k, scores=full) for k in keeps]))
    with_part = list(prune_structural_series(
        dense, spec, [PruneConfig("l2", keep=k, scores=part) for k in keeps]))
    x = torch.randn(3, 1, 8, 8)
    for a, b in zip(with_full, with_part):
        assert a.kept == b.kept and a.spec == b.spec
        torch.testing.assert_close(a.model.eval()(x), b.model.eval()(x))
    with pytest.raises(ExplorerError, match="precomputed scores lack layer.*features.0"):
        list(prune_structural_series(dense, spec, [PruneConfig("l2", keep=[8, 32, 60],
                                                               scores=part)]))
    # scores made for other widths: refused, not ranked into indices the layer lacks
    longer = {"classifier.0": torch.cat([part["classifier.0"], torch.full((4,), 9.0)])}
    with pytest.raises(ExplorerError, match="classifier.0 have 132 values for its 128 units"):
        list(prune_structural_series(dense, spec, [PruneConfig("l2", keep=[16, 32, 6],
                                                               scores=longer)]))


@pytest.mark.parametrize("arch", ["cnn", "vgg16_bn"])
def test_pruning_only_classifier_neurons_needs_no_trace_and_gives_the_graphs_models(
        arch, dense_models, monkeypatch):
    """A series that keeps every conv group whole and prunes hidden classifier neurons
    (a sweep's neuron pruning, scores precomputed) removes them without tracing the
    model, and gives exactly the models, kept units and scores the traced graph gives:
    nested and non-nested steps, and a random criterion whose scores are far apart."""
    from explorer_core import surgery
    from explorer_core.criteria import compute_scores

    spec, dense = dense_models[arch]
    groups = conv_groups(dense, spec)
    (root, units), = [(r, n) for r, n in groups if r.startswith("classifier")]
    whole = [n for r, n in groups if r != root]
    scored = surgery.score_layers(dense, spec, [root])
    for criterion in ("l1", "random"):
        scores = compute_scores(dense, criterion, None, scored)
        configs = [PruneConfig(criterion, keep=[*whole, k], scores=scores)
                   for k in (units * 3 // 4, units // 4, units // 2, units)]
        traced = []
        build = surgery._build_graph
        monkeypatch.setattr(surgery, "_build_graph",
                            lambda m, s: traced.append(1) or build(m, s))
        fast = list(prune_structural_series(dense, spec, configs))
        assert not traced  # the architecture's facts were traced by `conv_groups` above
        monkeypatch.setattr(surgery, "_linear_pairs", lambda g: {})
        monkeypatch.setattr(surgery, "_FACTS", {})
        slow = list(prune_structural_series(dense, spec, configs))
        assert traced  # the graph made these
        monkeypatch.undo()
        x = torch.randn(2, *input_shape(spec))
        for a, b in zip(fast, slow):
            assert a.kept == b.kept and a.spec == b.spec and a.dense_widths == b.dense_widths
            assert a.scores.keys() == b.scores.keys()
            if a.widths[root] < units:  # a group a step keeps whole is never ranked: the
                # graph, restarting for the non-nested last step, reports ones for it
                assert all(torch.equal(a.scores[k], b.scores[k]) for k in a.scores)
            assert _same_state(a.model, b.model)
            assert [type(m) for m in a.model.modules()] == [type(m) for m in b.model.modules()]
            torch.testing.assert_close(a.model.eval()(x), b.model.eval()(x), rtol=0, atol=0)
        assert [r.widths[root] for r in fast] == [units * 3 // 4, units // 4, units // 2, units]
    assert _same_state(dense, dense_models[arch][1])  # the dense model is untouched


class _Gated(nn.Module):
    """Linear → (something) → Linear → ReLU → Linear, as a CNN's classifier is laid out."""

    def __init__(self, middle: str):
        super().__init__()
        self.flatten = nn.Flatten()
        self.gate = nn.Parameter(torch.rand(16) + 0.5) if middle == "gate" else None
        between = {"norm": nn.LayerNorm(16, elementwise_affine=False),
                   "dropout": nn.Sequential(nn.ReLU(), nn.Dropout(0.1)),
                   "gate": nn.Identity()}[middle]
        self.classifier = nn.Sequential(nn.Linear(8, 16), between, nn.Linear(16, 6), nn.ReLU(),
                                        nn.Linear(6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.classifier
        h = c[1](c[0](self.flatten(x)))
        if self.gate is not None:  # a bare parameter multiplied in: the graph prunes it too
            h = h * self.gate
        return c[4](c[3](c[2](h)))


@pytest.mark.parametrize("middle, plain", [("norm", False), ("gate", False), ("dropout", True)])
def test_only_groups_of_linears_and_width_free_ops_are_pruned_without_the_graph(middle, plain):
    """A LayerNorm without parameters still has a width, and a bare parameter multiplied
    in is pruned with the group by the graph: either sends the group through the graph.
    ReLU and dropout change no width, so such a group is a plain Linear pair."""
    from explorer_core import surgery

    g = surgery._build_graph(_Gated(middle).eval(), {"arch": "custom", "input_shape": [8]})
    pairs = surgery._linear_pairs(g)
    assert pairs.get("classifier.2") == ["classifier.4"]
    assert pairs.get("classifier.0") == (["classifier.2"] if plain else None)
