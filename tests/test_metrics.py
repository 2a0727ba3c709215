"""Cost metrics against hand counts; no profiler state leaks into the model."""
import pytest

from explorer_core.masks import apply_masks
from explorer_core.errors import Cancelled
from explorer_core.metrics import (LatencyConfig, compare_costs, cost_report, count_nonzero,
                                   macs_per_sample, measure_latencies, measure_latency,
                                   train_flops_per_sample)
from explorer_core.models import ARCHS, MLP, build_model, default_spec

# Linear(784, 256) -> ReLU -> Linear(256, 64) -> ReLU -> Linear(64, 10)
MACS = 784 * 256 + 256 * 64 + 64 * 10            # one multiply-add per weight: 217 728
PARAMS = MACS + 256 + 64 + 10                     # plus biases: 218 058


def test_mlp_macs_and_params_by_hand():
    rep = cost_report(MLP(784, [256, 64], 10), (1, 28, 28))
    assert rep.macs == MACS
    assert rep.params == PARAMS == rep.nonzero_params
    assert rep.param_bytes == 4 * PARAMS


def test_single_linear_macs():
    assert macs_per_sample(MLP(784, [], 256), (784,)) == 784 * 256


def test_training_flops_by_hand():
    # Forward: 2 FLOPs per MAC. Backward: weight gradients of every layer (2 per MAC) and
    # input gradients of every layer except the first (the data needs no gradient).
    forward = 2 * MACS
    backward = 2 * MACS + 2 * (256 * 64 + 64 * 10)
    flops = train_flops_per_sample(MLP(784, [256, 64], 10), (784,))
    assert flops == forward + backward
    # "about 3x forward": exactly 3x for every layer but the first, which costs 2x
    assert 2 * forward < flops < 3 * forward
    deep = MLP(16, [256, 256], 10)  # small first layer -> close to the rule of thumb
    assert train_flops_per_sample(deep, (16,)) / (2 * macs_per_sample(deep, (16,))) > 2.9


def test_thop_leaves_no_buffers_or_hooks_behind():
    for model in (MLP(784, [256, 64], 10), build_model(default_spec("resnet18", 1, 8, 10))):
        keys = list(model.state_dict())
        hooks = sum(len(m._forward_hooks) for m in model.modules())
        cost_report(model, (1, 28, 28) if isinstance(model, MLP) else (1, 8, 8))
        assert list(model.state_dict()) == keys
        assert sum(len(m._forward_hooks) for m in model.modules()) == hooks


def test_masks_reduce_nonzero_but_not_macs():
    dense = MLP(64, [32], 10)
    masked = apply_masks(MLP(64, [32], 10), 0.5)
    comp = compare_costs(dense, masked, (64,))
    assert comp.pruned.params == comp.dense.params
    assert comp.pruned.nonzero_params == count_nonzero(masked)
    assert comp.pruned.nonzero_params == comp.dense.params - round(0.5 * 64 * 32) \
        - round(0.5 * 32 * 10)
    assert comp.ratios()["macs"] == 1.0


def test_compare_structural_ratios():
    comp = compare_costs(MLP(64, [32], 10), MLP(64, [8], 10), (64,),
                         LatencyConfig(batch_size=8, repeats=3, warmup=1))
    r = comp.ratios()
    assert r["macs"] == pytest.approx((64 * 8 + 8 * 10) / (64 * 32 + 32 * 10))
    assert r["mac_reduction"] == pytest.approx(1 / r["macs"])
    assert r["speedup"] > 0 and comp.dense.latency_batch == 8
    d = comp.to_dict()
    assert set(d) == {"dense", "pruned", "ratios"} and d["dense"]["macs"] == 64 * 32 + 32 * 10


def test_latency_is_positive_and_restores_training_mode():
    m = MLP(64, [32], 10).train()
    assert measure_latency(m, (64,), LatencyConfig(batch_size=4, repeats=3, warmup=0)) > 0
    assert m.training


def test_a_stop_request_ends_a_latency_measurement_between_rounds():
    models = [MLP(64, [32], 10) for _ in range(3)]
    asked = []

    def stop_in_the_third_round() -> bool:
        asked.append(1)
        return len(asked) == 3

    with pytest.raises(Cancelled):
        measure_latencies(models, (64,), LatencyConfig(batch_size=4, repeats=5, warmup=1),
                          should_stop=stop_in_the_third_round)
    assert len(asked) == 3 and all(m.training for m in models)  # modes restored


def test_each_round_of_an_interleaved_timing_starts_with_another_model():
    """No model is always timed first (right after the loop's own work) or always last."""
    import torch

    calls: list[int] = []

    class Recorder(torch.nn.Module):
        def __init__(self, i: int):
            super().__init__()
            self.i = i
            self.lin = torch.nn.Linear(4, 2)

        def forward(self, x):
            calls.append(self.i)
            return self.lin(x)

    times = measure_latencies([Recorder(i) for i in range(3)], (4,),
                              LatencyConfig(batch_size=2, repeats=6, warmup=0))
    assert len(times) == 3 and all(t > 0 for t in times)
    rounds = [calls[k:k + 3] for k in range(0, len(calls), 3)]
    assert all(sorted(r) == [0, 1, 2] for r in rounds)  # every model once per round
    assert [r[0] for r in rounds] == [0, 1, 2, 0, 1, 2]


def test_activation_bytes_of_an_mlp():
    # leaf outputs for one sample: flatten 784, fc1 256, relu (shared module, called twice)
    # 256 + 64, fc2 64, fc3 10 -> floats
    rep = cost_report(MLP(784, [256, 64], 10), (784,))
    assert rep.activation_bytes == 4 * (784 + 256 + 256 + 64 + 64 + 10)


def test_peak_memory_is_measured_per_block():
    """200 MB allocated inside a block raise its peak by about that; a later block that
    allocates nothing reports a lower peak, so the counter really was reset."""
    import torch

    from explorer_core.metrics import PeakMemory

    with PeakMemory() as idle:
        pass
    with PeakMemory() as busy:
        block = torch.ones(50 * 2 ** 20)  # 200 MB of float32, touched
        del block
    with PeakMemory() as after:
        pass
    assert busy.scope == "block"
    assert busy.peak_bytes - idle.peak_bytes > 190 * 2 ** 20
    assert after.peak_bytes < busy.peak_bytes - 150 * 2 ** 20
    assert busy.peak_mb == busy.peak_bytes / 2 ** 20


def test_profiling_does_not_fire_the_callers_hooks():
    """MACs, FLOPs and activation sizes come from a private copy; a hook on the caller's
    model (e.g. one counting passes) must not see those passes."""
    from explorer_core.metrics import activation_bytes

    model = MLP(64, [32], 10)
    calls = []
    model.fc1.register_forward_pre_hook(lambda m, a: calls.append(1))
    model.fc1.register_forward_hook(lambda m, a, o: calls.append(2))
    macs_per_sample(model, (1, 8, 8))
    train_flops_per_sample(model, (1, 8, 8))
    activation_bytes(model, (1, 8, 8))
    assert calls == []


def test_profiling_a_masked_model_keeps_its_masks():
    """Mask pre-hooks compute the weights, so the private copy keeps them."""
    masked = apply_masks(MLP(64, [32], 10), 0.5)
    assert cost_report(masked, (1, 8, 8)).nonzero_params < cost_report(MLP(64, [32], 10), (1, 8, 8)).params
    assert train_flops_per_sample(masked, (1, 8, 8)) > 0


@pytest.mark.parametrize("arch, shape", [("cnn", (1, 8, 8)), ("resnet18", (3, 32, 32))])
def test_one_report_counts_on_one_copy_what_each_count_gets_on_its_own(arch, shape):
    """`cost_report` makes one private copy for its three counts (thop leaves buffers
    behind until it is done, the FLOPs pass trains BatchNorm): each must still equal the
    count made alone on a fresh copy, and the caller's model must keep its state."""
    from explorer_core import metrics

    spec = default_spec(arch, in_ch=shape[0], size=shape[1], classes=10)
    model = build_model(spec).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = cost_report(model, shape)
    metrics._ACTIVATIONS.clear()  # measured again, not read from the report's cache entry
    assert report.macs == macs_per_sample(model, shape) > 0
    assert report.train_flops == train_flops_per_sample(model, shape) > 2 * report.macs
    assert report.activation_bytes == metrics.activation_bytes(model, shape) > 0
    assert not model.training
    assert model.state_dict().keys() == before.keys()
    assert all(model.state_dict()[k].equal(v) for k, v in before.items())


# ------------------------------------------------------------------ training FLOPs vs torch

def _flop_counter_mode_per_sample(model, shape, batch: int = 2) -> int:
    """The reference: torch's own FlopCounterMode over the pass `train_flops_per_sample`
    makes (a private copy in training mode, cross-entropy on a batch of zeros)."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from explorer_core.masks import copy_model

    probe = copy_model(model).train()
    with FlopCounterMode(display=False) as counter:
        out = probe(torch.zeros(batch, *shape))
        F.cross_entropy(out, torch.zeros(batch, dtype=torch.long)).backward()
    return counter.get_total_flops() // batch


def _small_shape(arch: str) -> tuple[int, int, int]:
    return (1, 8, 8) if arch in ("slp", "mlp", "cnn") else (3, 32, 32)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_training_flops_equal_torchs_flop_counter_on_every_architecture(arch):
    shape = _small_shape(arch)
    model = build_model(default_spec(arch, in_ch=shape[0], size=shape[1], classes=10))
    flops = train_flops_per_sample(model, shape)
    assert flops == _flop_counter_mode_per_sample(model, shape) > 0


def test_training_flops_of_a_masked_model_equal_torchs_flop_counter():
    shape = _small_shape("cnn")
    model = apply_masks(build_model(default_spec("cnn", 1, 8, 10)), 0.5)
    reference = _flop_counter_mode_per_sample(model, shape)
    assert train_flops_per_sample(model, shape) == reference > 0
    assert cost_report(model, shape).train_flops == reference


def test_flop_count_decomposes_ops_without_a_formula_like_torch():
    """Under inference mode `aten.linear` reaches the counting mode undecomposed; it has
    no formula, so its FLOPs are found only by decomposing it into `addmm`."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from explorer_core.metrics import _FlopCount

    model, x = MLP(64, [32], 10).eval(), torch.zeros(3, 64)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as reference:
            model(x)
        with _FlopCount() as counter:
            model(x)
    assert counter.total == reference.get_total_flops() > 0


def test_flop_formulas_get_the_shapes_torchs_wrapper_gives_them():
    """Shapes are taken without torch's generic tree walk: the same values as
    `tree_map(get_shape, …)` for lists, tuples and dicts (a keyword argument included),
    and any other container is left to torch's wrapper."""
    from collections import namedtuple

    import torch
    from torch.utils._pytree import tree_map
    from torch.utils.flop_counter import flop_registry, get_shape

    from explorer_core.metrics import _FlopCount, _NotALeaf

    x, w = torch.zeros(2, 3, 8, 8), torch.zeros(5, 3, 3, 3)
    out = torch.nn.functional.conv2d(x, w)
    args = (x, w, None, [1, 1], [0, 0], [1, 1])
    kwargs = {"transposed": False, "output_padding": [0, 0], "groups": 1}
    counter = _FlopCount()
    value = (args, kwargs, (out, [x, None], 2.5))
    assert counter._shapes(value) == tree_map(get_shape, value)
    formula = flop_registry[torch.ops.aten.convolution]
    assert counter._flops(formula, args, kwargs, out) == formula(*args, **kwargs, out_val=out) > 0
    for other in (torch.Size([2, 3]), namedtuple("Pair", "a b")(x, w)):
        with pytest.raises(_NotALeaf):
            counter._shapes((x, [other]))


def test_peak_memory_opens_the_proc_files_once_and_anew_in_a_forked_child(monkeypatch):
    """A sweep measures every cell: the /proc files stay open (opening both per cell cost
    up to 0.1 ms each in a worker). A forked child's descriptors would still read its
    parent's /proc/self, so the child opens its own."""
    import os

    from explorer_core import metrics

    with metrics.PeakMemory():
        pass
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, *a, **k: opened.append(p) or real_open(p, *a, **k))
    for _ in range(5):
        with metrics.PeakMemory() as block:
            pass
        assert block.scope == "block"
    assert opened == []
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a 200 MB block must show in its own peak
        try:
            with metrics.PeakMemory() as idle:
                pass
            with metrics.PeakMemory() as busy:  # no torch here: its threads do not fork
                x = b"\x01" * (200 * 2 ** 20)
                del x
            ok = busy.peak_bytes - idle.peak_bytes > 190 * 2 ** 20 and len(opened) == 2
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
