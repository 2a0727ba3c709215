"""Weight masks: sparsity equals the ratio, layer-wise vs global, permanent on save."""
import pytest
import torch

from explorer_core.checkpoint import load_checkpoint
from explorer_core.errors import ExplorerError
from explorer_core.masks import (apply_masks, is_masked, make_permanent, save_masked,
                                 sparsity_report)
from explorer_core.models import MLP, build_model, default_spec


def _mlp(seed=0):
    torch.manual_seed(seed)
    return MLP(64, [32, 16], 10)


def _scaled_mlp():
    """fc1 has tiny weights, fc2 large ones: global masking must hit fc1 hardest."""
    m = _mlp()
    with torch.no_grad():
        m.fc1.weight.mul_(0.01)
        m.fc2.weight.mul_(10.0)
    return m


def test_layerwise_sparsity_equals_ratio_in_every_layer():
    m = apply_masks(_mlp(), 0.75, "weight")
    rep = sparsity_report(m)
    for name, n in (("fc1", 64 * 32), ("fc2", 32 * 16), ("fc3", 16 * 10)):
        assert rep.layers[name].total == n
        assert rep.layers[name].zeros == round(0.75 * n)
    assert rep.sparsity == pytest.approx(0.75, abs=1e-3)


def test_layerwise_removes_the_smallest_magnitudes():
    m = _mlp()
    w = m.fc2.weight.detach().abs().flatten().clone()
    apply_masks(m, 0.5, "weight")
    kept = m.fc2.weight.detach().flatten() != 0
    assert w[~kept].max() <= w[kept].min()


def test_global_sparsity_is_the_ratio_overall_but_not_per_layer():
    m = apply_masks(_scaled_mlp(), 0.5, "unstructured")
    rep = sparsity_report(m)
    total = 64 * 32 + 32 * 16 + 16 * 10
    assert rep.total == total and rep.zeros == round(0.5 * total)
    # fc1's weights were scaled down 100x: global ranking removes (nearly) all of them first
    assert rep.layers["fc1"].sparsity > 0.6
    assert rep.layers["fc2"].sparsity < 0.1
    layerwise = sparsity_report(apply_masks(_scaled_mlp(), 0.5, "weight"))
    assert layerwise.layers["fc1"].sparsity == pytest.approx(0.5)
    assert layerwise.layers["fc2"].sparsity == pytest.approx(0.5)


def test_masked_model_keeps_its_shape_and_masks_hold_through_training_steps():
    m = apply_masks(_mlp(), 0.6, "weight")
    shapes = [tuple(lin.weight.shape) for lin in m.linears()]
    assert shapes == [(32, 64), (16, 32), (10, 16)]
    zero_before = m.fc1.weight.detach() == 0
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    assert torch.all(m.fc1.weight.detach()[zero_before] == 0)
    assert sparsity_report(m).layers["fc1"].zeros >= int(zero_before.sum())


def test_save_makes_masks_permanent_and_reloads_identically(tmp_path):
    spec = default_spec("mlp", 1, 8, 10, hidden=[32, 16])
    m = build_model(spec)
    apply_masks(m, 0.5, "unstructured")
    x = torch.randn(5, 1, 8, 8)
    expected = m.eval()(x)
    save_masked(m, spec, tmp_path / "masked")
    assert is_masked(m)  # the live model keeps training with its masks
    ck = load_checkpoint(tmp_path / "masked.safetensors")
    assert not is_masked(ck.model)
    assert set(ck.model.state_dict()) == set(build_model(spec).state_dict())
    assert torch.equal(ck.model(x), expected)
    assert sparsity_report(ck.model).sparsity == pytest.approx(sparsity_report(m).sparsity)


def test_make_permanent_removes_reparametrisation_in_place():
    m = apply_masks(_mlp(), 0.3)
    assert "fc1.weight_orig" in m.state_dict()
    make_permanent(m)
    assert not is_masked(m)
    assert "fc1.weight" in m.state_dict() and "fc1.weight_orig" not in m.state_dict()
    assert sparsity_report(m).layers["fc1"].zeros == round(0.3 * 64 * 32)


def test_conv_layers_are_masked_too():
    m = build_model(default_spec("cnn", 1, 8, 10))
    rep = sparsity_report(apply_masks(m, 0.5))
    assert rep.layers["features.0"].zeros == round(0.5 * 16 * 1 * 9)


@pytest.mark.parametrize("ratio", [1.0, -0.2])
def test_bad_ratio_is_refused(ratio):
    with pytest.raises(ExplorerError, match=r"\[0, 1\)"):
        apply_masks(_mlp(), ratio)


def test_unknown_kind_is_refused():
    with pytest.raises(ExplorerError, match="unknown mask type"):
        apply_masks(_mlp(), 0.5, "channel")


@pytest.mark.parametrize("kind", ["weight", "unstructured"])
def test_random_masks_are_seeded_and_differ_from_magnitude(kind):
    def masks(method, seed):
        m = apply_masks(_mlp(), 0.5, kind, method=method, seed=seed)
        return torch.cat([m.fc1.weight_mask.flatten(), m.fc2.weight_mask.flatten()])

    a, b, c = masks("random", 1), masks("random", 1), masks("random", 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, masks("magnitude", 1))
    # the seed does not leak into (or come from) the global generator
    model = _mlp()
    torch.manual_seed(0)
    first = torch.rand(3)
    torch.manual_seed(0)
    apply_masks(model, 0.5, kind, method="random", seed=5)
    assert torch.equal(torch.rand(3), first)


def test_random_layerwise_masks_hit_the_ratio_in_every_layer():
    rep = sparsity_report(apply_masks(_mlp(), 0.25, "weight", method="random", seed=3))
    assert all(s.sparsity == pytest.approx(0.25, abs=1 / s.total) for s in rep.layers.values())


def test_unknown_mask_method_is_refused():
    with pytest.raises(ExplorerError, match="mask method"):
        apply_masks(_mlp(), 0.5, method="biggest")


@pytest.mark.parametrize("kind", ["weight", "unstructured"])
@pytest.mark.parametrize("method, torch_method", [("magnitude", "L1Unstructured"),
                                                  ("random", "RandomUnstructured")])
def test_masks_are_those_of_torchs_own_methods(kind, method, torch_method):
    """Our k-th value selection masks exactly what torch's top-k methods mask (tie-free
    weights; seeded draws alike), including a second masking of a masked model."""
    from torch.nn.utils import prune

    def torchs(ratio, seed, model):
        targets = [(m, "weight") for m in (model.fc1, model.fc2, model.fc3)]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if kind == "weight":
                for module, name in targets:
                    getattr(prune, torch_method).apply(module, name, amount=ratio)
            else:
                prune.global_unstructured(targets, getattr(prune, torch_method), amount=ratio)
        return model

    for ratio in (0.1, 0.5, 0.93):
        ours = apply_masks(_mlp(), ratio, kind, method=method, seed=7)
        theirs = torchs(ratio, 7, _mlp())
        for layer in ("fc1", "fc2", "fc3"):
            assert torch.equal(getattr(ours, layer).weight_mask, getattr(theirs, layer).weight_mask)
    ours = apply_masks(apply_masks(_mlp(), 0.5, kind, method=method, seed=1), 0.5, kind,
                       method=method, seed=2)
    theirs = torchs(0.5, 2, torchs(0.5, 1, _mlp()))
    assert torch.equal(ours.fc2.weight_mask, theirs.fc2.weight_mask)


def test_weights_tied_at_the_threshold_go_lowest_index_first():
    layer = torch.nn.Linear(6, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, 0.1, -0.1, 0.1, 0.9, -0.3]]))
    apply_masks(layer, 0.5, "weight", layers=[""])
    # three smallest |w|: the three 0.1s (indices 1, 2, 3)
    assert layer.weight_mask.tolist() == [[1, 0, 0, 0, 1, 1]]
    apply_masks(layer, 1 / 3, "weight", layers=[""])  # a third of the remaining three
    assert layer.weight_mask.tolist() == [[1, 0, 0, 0, 1, 0]]  # |-0.3| is the smallest


# ------------------------------------------------------------------ copy_model

def _small_spec(arch: str) -> dict:
    from explorer_core.models import default_spec as spec_of_arch
    small = arch in ("slp", "mlp", "cnn")
    return spec_of_arch(arch, 1 if small else 3, 28 if small else 32, 10)


def _assert_same_model(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
        assert sa[k].data_ptr() != sb[k].data_ptr(), f"{k} shares storage"
    assert [type(m) for m in a.modules()] == [type(m) for m in b.modules()]
    assert [m.training for m in a.modules()] == [m.training for m in b.modules()]


@pytest.mark.parametrize("arch", ["slp", "mlp", "cnn", "resnet18", "mobilenet_v2",
                                  "vgg16_bn", "densenet121"])
def test_copy_model_gives_deepcopys_model_with_its_own_tensors(arch):
    import copy

    from explorer_core.masks import copy_model

    torch.manual_seed(0)
    model = build_model(_small_spec(arch))
    x = torch.randn(4, *_small_spec(arch)["input_shape"])
    model.train()
    model(x).sum().backward()  # gradients and moved BatchNorm statistics to copy too
    model.eval()
    fast, deep = copy_model(model), copy.deepcopy(model)
    _assert_same_model(fast, deep)
    for p, q in zip(fast.parameters(), model.parameters()):
        assert torch.equal(p.grad, q.grad) and p.grad.data_ptr() != q.grad.data_ptr()
        assert p.requires_grad == q.requires_grad
    with torch.no_grad():
        assert torch.equal(fast(x), model(x))
        next(fast.parameters()).add_(1.0)  # the copy's weights are its own
        assert not torch.equal(fast(x), model(x))
    fast.train()
    assert not model.training and all(not m.training for m in model.modules())


def test_copy_of_a_masked_model_has_its_own_masks_and_hooks():
    from explorer_core.masks import copy_model, sparsity_report

    model = apply_masks(build_model(default_spec("mlp", 1, 8, 10, hidden=[32, 16])), 0.5)
    apply_masks(model, 0.0)  # masked twice: the layers' hooks are containers of methods
    hook = next(iter(model.get_submodule("fc1")._forward_pre_hooks.values()))
    methods = len(hook._pruning_methods)
    copied = copy_model(model)
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(copied(x), model(x))
    layer, original = copied.get_submodule("fc1"), model.get_submodule("fc1")
    assert torch.equal(layer.weight, original.weight) and layer.weight is not original.weight
    # masking the copy again (iterative pruning) leaves the original's masks and hooks alone
    apply_masks(copied, 0.5)
    assert abs(sparsity_report(model).sparsity - 0.5) < 0.01
    assert abs(sparsity_report(copied).sparsity - 0.75) < 0.01
    assert len(hook._pruning_methods) == methods
    assert torch.equal(copy_model(model)(x), model(x))
    make_permanent(copied)
    assert is_masked(model) and not is_masked(copied)


def test_copy_model_falls_back_to_deepcopy_for_what_it_cannot_clone():
    from explorer_core.masks import copy_model

    model = build_model(default_spec("mlp", 1, 8, 10, hidden=[8]))
    model.notes = ["trained"]           # a mutable attribute: the copy needs its own
    seen: list[int] = []
    model.register_forward_hook(lambda m, i, o: seen.append(1))  # deepcopy keeps hooks
    copied = copy_model(model)
    copied.notes.append("pruned")
    assert model.notes == ["trained"]
    copied(torch.zeros(1, 1, 8, 8))
    assert seen == [1]


def test_magnitude_masks_leave_torchs_generators_alone(monkeypatch):
    """Only the random method draws: magnitude masking neither seeds (0.75 ms a call,
    on every ratio of a sweep) nor moves the global generator."""
    from explorer_core import masks

    seeded = []
    real = masks.seed_torch
    monkeypatch.setattr(masks, "seed_torch", lambda s: seeded.append(s) or real(s))
    mlp, cnn = (build_model(default_spec("mlp", 1, 8, 10, hidden=[16])),
                build_model(default_spec("cnn", 1, 8, 10)))
    state = torch.get_rng_state()
    apply_masks(mlp, 0.5, "weight")
    apply_masks(cnn, 0.5, "unstructured")
    assert seeded == [] and torch.equal(torch.get_rng_state(), state)
    apply_masks(mlp, 0.5, method="random", seed=3)
    assert seeded == [3] and torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("kind", ["weight", "unstructured"])
def test_a_masked_model_saves_as_its_permanent_copy_would(tmp_path, arch, kind):
    """save_checkpoint folds masks itself (the sweep's writer no longer copies each
    masked model to save it): byte for byte the checkpoint of the permanent copy."""
    from explorer_core.checkpoint import save_checkpoint
    from explorer_core.masks import permanent_copy, sparsity_report

    spec = default_spec(arch, 1, 8, 10, hidden=[16, 8] if arch == "mlp" else None)
    model = apply_masks(build_model(spec), 0.5, kind)
    apply_masks(model, 0.3, kind)  # masked twice: hooks hold a container
    direct = save_checkpoint(model, spec, tmp_path / "direct", {"n": 1})
    copied = save_checkpoint(permanent_copy(model), spec, tmp_path / "copied", {"n": 1})
    assert direct.read_bytes() == copied.read_bytes()
    assert direct.with_suffix(".json").read_bytes() == copied.with_suffix(".json").read_bytes()
    assert is_masked(model)  # saving left the model as it was
    reloaded = load_checkpoint(direct).model
    assert not is_masked(reloaded)
    assert abs(sparsity_report(reloaded).sparsity - sparsity_report(model).sparsity) < 1e-9


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("kind", ["weight", "unstructured"])
@pytest.mark.parametrize("method", ["magnitude", "random"])
def test_a_masked_series_gives_each_ratios_masks_of_apply_masks(arch, kind, method):
    """One ranking for all of a series' ratios: each model equals apply_masks on its own
    copy (masks, kept weights), ties included (quantised weights tie by the hundred)."""
    from explorer_core.masks import copy_model, masked_series

    torch.manual_seed(0)
    spec = default_spec(arch, 1, 8, 10, hidden=[24, 12] if arch == "mlp" else None)
    model = build_model(spec)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.round(p * 20) / 20)  # many equal magnitudes
    ratios = [0.0, 0.1, 0.33, 0.5, 0.9, 0.99]
    series = list(masked_series(model, ratios, kind, method, seed=4))
    assert len(series) == len(ratios)
    for ratio, got in zip(ratios, series):
        want = apply_masks(copy_model(model), ratio, kind, method=method, seed=4)
        got_state, want_state = got.state_dict(), want.state_dict()
        assert sorted(got_state) == sorted(want_state)
        for key in want_state:
            assert torch.equal(got_state[key], want_state[key]), (ratio, key)
    assert not is_masked(model)  # the baseline is left as it was
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(series[3](x), apply_masks(copy_model(model), 0.5, kind, method=method,
                                                 seed=4)(x))


def test_a_masked_series_of_a_masked_model_masks_what_is_left():
    from explorer_core.masks import copy_model, masked_series, sparsity_report

    model = apply_masks(build_model(default_spec("mlp", 1, 8, 10, hidden=[16])), 0.5)
    (half_of_rest,) = masked_series(model, [0.5])
    assert abs(sparsity_report(half_of_rest).sparsity - 0.75) < 0.01
    assert torch.equal(half_of_rest.fc1.weight_mask,
                       apply_masks(copy_model(model), 0.5).fc1.weight_mask)
