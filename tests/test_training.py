"""Training engine on Digits: learning, repeatability, early stopping with the best
epoch kept, cancellation between batches, gradient accumulation that equals one big
batch, extreme batch sizes, and refusal of bad settings."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from explorer_core.data import Dataset, Split, load_dataset
from explorer_core.errors import Cancelled, ExplorerError
from explorer_core.models import build_model, spec_for_dataset
from explorer_core.training import LR_SCHEDULES, TrainConfig, evaluate, kept_epoch, train


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def small_mlp(data: Dataset, seed: int = 0, hidden=(32, 16)):
    torch.manual_seed(seed)
    return build_model(spec_for_dataset("mlp", data.info, hidden=list(hidden)))


def tiny(data: Dataset, n_train: int, n_val: int = 40) -> Dataset:
    return Dataset(data.info, data.train.subset(n_train, seed=1), data.val.subset(n_val, seed=2),
                   data.test.subset(60, seed=3))


def test_loss_decreases_and_model_learns_digits(digits):
    model = small_mlp(digits)
    before_loss, before_acc = evaluate(model, digits.test)
    seen = []
    result = train(model, digits, TrainConfig(epochs=4, batch_size=32), on_epoch=seen.append)
    losses = [m.train_loss for m in result.history]
    assert len(result.history) == 4 and [m.epoch for m in seen] == [1, 2, 3, 4]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    after_loss, after_acc = evaluate(model, digits.test)
    assert after_loss < before_loss / 3
    assert after_acc > 85 > before_acc
    # no stale gradient is left on the kept weights for every later copy to clone
    assert all(p.grad is None for p in model.parameters())


def test_same_seed_gives_identical_history_and_weights(digits):
    def run(seed: int):
        model = small_mlp(digits, seed=seed)
        result = train(model, digits, TrainConfig(epochs=2, batch_size=16, seed=seed))
        hist = [{k: v for k, v in m.to_dict().items() if k != "seconds"} for m in result.history]
        return hist, model.state_dict()

    h1, w1 = run(4)
    h2, w2 = run(4)
    assert h1 == h2
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    h3, w3 = run(5)
    assert h3 != h1 and not torch.equal(w3["fc1.weight"], w1["fc1.weight"])


def test_seed_torch_draws_what_torch_manual_seed_draws_without_queueing_other_devices():
    """Our seeding is torch's for the CPU (every cached baseline's initial weights rest on
    it), without the stack-trace-capturing seeding of absent accelerators."""
    import torch.cuda

    from explorer_core.training import seed_torch

    seed_torch(11)
    ours = (torch.rand(5), torch.randn(3), torch.randint(0, 100, (4,)))
    torch.manual_seed(11)
    theirs = (torch.rand(5), torch.randn(3), torch.randint(0, 100, (4,)))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    if not torch.cuda.is_available():  # nothing queued for a CUDA that is not there
        queued = torch.cuda._lazy_seed_tracker.get_calls()
        seed_torch(12)
        assert torch.cuda._lazy_seed_tracker.get_calls() == queued
        torch.manual_seed(12)  # what torch's own does: queue one, with a stack trace
        assert torch.cuda._lazy_seed_tracker.get_calls() != queued


def test_early_stopping_keeps_the_best_validation_epoch(digits):
    """Validation labels are shuffled: fitting the training set makes validation loss
    worse after a while, so patience must stop the run and restore the best epoch."""
    g = torch.Generator().manual_seed(0)
    bad_val = Split(digits.train.x[:200], digits.train.y[:200][torch.randperm(200, generator=g)])
    data = Dataset(digits.info, digits.train, bad_val, digits.test)
    model = small_mlp(digits)
    states = {}

    def remember(m):
        states[m.epoch] = copy.deepcopy(model.state_dict())

    cfg = TrainConfig(epochs=40, batch_size=32, lr=3e-3, patience=3, lr_schedule="constant")
    result = train(model, data, cfg, on_epoch=remember)
    val_losses = [m.val_loss for m in result.history]
    best = min(range(len(val_losses)), key=val_losses.__getitem__) + 1
    assert result.stopped_early and len(result.history) < 40
    assert result.best_epoch == best
    assert len(result.history) == best + cfg.patience  # stopped after `patience` worse epochs
    assert all(v >= val_losses[best - 1] for v in val_losses[best:])
    # the model now holds the best epoch's weights, not the last epoch's
    final = model.state_dict()
    assert all(torch.equal(final[k], states[best][k]) for k in final)
    assert not torch.equal(final["fc1.weight"], states[len(result.history)]["fc1.weight"])
    assert evaluate(model, bad_val)[0] == pytest.approx(val_losses[best - 1], rel=1e-6)
    # a live view reading the logged epoch records marks the same epoch as kept
    assert kept_epoch([m.to_dict() for m in result.history]) == result.best_epoch


def test_kept_epoch_falls_back_to_test_loss_and_skips_diverged_epochs():
    nan = float("nan")
    no_val = [{"epoch": 1, "val_loss": nan, "test_loss": 0.9},
              {"epoch": 2, "val_loss": nan, "test_loss": 0.2},
              {"epoch": 3, "val_loss": nan, "test_loss": 0.2}]
    assert kept_epoch(no_val) == 2  # first on a tie
    diverged_first = [{"epoch": 1, "val_loss": nan, "test_loss": nan},
                      {"epoch": 2, "val_loss": 0.7, "test_loss": 0.8},
                      {"epoch": 3, "val_loss": 0.9, "test_loss": 0.1}]
    assert kept_epoch(diverged_first) == 2  # selected on validation, never on test
    assert kept_epoch([{"epoch": 1, "val_loss": nan, "test_loss": nan}]) == 1
    assert kept_epoch([]) is None


def test_should_stop_cancels_between_batches(digits):
    model = small_mlp(digits)
    steps, asked = [], []

    def should_stop() -> bool:
        asked.append(len(steps))
        return len(asked) == 5  # true on the 5th check

    with pytest.raises(Cancelled):
        train(model, digits, TrainConfig(epochs=3, batch_size=32), should_stop=should_stop,
              on_batch=lambda m: steps.append(1))
    assert len(steps) == 4  # checked before every batch, so exactly 4 steps ran
    assert asked == [0, 1, 2, 3, 4]


def sgd_step_by_hand(model, data: Dataset, lr: float) -> dict[str, torch.Tensor]:
    """Weights after one SGD step on the mean loss of the whole training set."""
    model = copy.deepcopy(model)
    loss = F.cross_entropy(model(data.train.x), data.train.y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    with torch.no_grad():
        for p, g in zip(model.parameters(), grads):
            p -= lr * g
    return model.state_dict()


def test_micro_batches_accumulate_to_the_full_batch_step(digits):
    """One step with the effective batch = the whole training set (1294 samples) in
    micro-batches of 100 (the last one 94) equals one big-batch step — and a gradient
    computed by hand. SGD's first step is lr × gradient, so any mis-weighting shows
    (Adam's first step would be ±lr whatever the gradient scale)."""
    n = len(digits.train)
    assert n % 100 != 0
    start = small_mlp(digits, seed=7)
    lr = 0.5
    want = sgd_step_by_hand(start, digits, lr)
    results = {}
    for micro in (100, n, 7):
        model = copy.deepcopy(start)
        seen = []
        hook = model.fc1.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
        cfg = TrainConfig(epochs=1, batch_size=n, max_micro_batch=micro, optimizer="sgd",
                          lr=lr, lr_schedule="constant")
        train(model, Dataset(digits.info, digits.train, Split(digits.val.x[:0], digits.val.y[:0]),
                             digits.test), cfg)
        hook.remove()
        train_passes = seen[:math.ceil(n / micro)]  # then come the evaluation passes
        assert max(train_passes) <= micro and sum(train_passes) == n
        results[micro] = model.state_dict()
    moved = (want["fc1.weight"] - start.state_dict()["fc1.weight"]).abs().max()
    assert moved > 1e-3  # the step is real
    for micro, state in results.items():
        for k in want:
            assert torch.allclose(state[k], want[k], atol=1e-5), (micro, k)


@pytest.mark.parametrize("batch_size,steps", [(1, 50), (10 ** 6, 1), (50, 1), (16, 4)])
def test_extreme_batch_sizes(digits, batch_size, steps):
    data = tiny(digits, 50)
    model = small_mlp(digits)
    counted = []
    result = train(model, data, TrainConfig(epochs=1, batch_size=batch_size),
                   on_batch=lambda m: counted.append(1))
    assert len(counted) == steps
    assert math.isfinite(result.history[0].train_loss)


def test_large_effective_batch_passes_bounded_micro_batches(digits):
    model = small_mlp(digits)
    sizes = []
    model.fc1.register_forward_pre_hook(lambda m, a: sizes.append(a[0].shape[0]) if m.training else None)
    train(model, digits, TrainConfig(epochs=2, batch_size=60000, max_micro_batch=128))
    assert max(sizes) == 128 and sum(sizes) == 2 * len(digits.train)


@pytest.mark.parametrize("schedule", list(LR_SCHEDULES))
def test_every_lr_schedule_trains(digits, schedule):
    model = small_mlp(digits)
    before = evaluate(model, digits.val)[0]
    result = train(model, digits, TrainConfig(epochs=4, batch_size=32, lr=3e-3,
                                               lr_schedule=schedule))
    assert result.history[-1].val_loss < before / 2
    assert result.history[-1].val_acc > 70


def test_stable_decay_ends_at_a_small_rate(digits):
    data = tiny(digits, 100)
    model = small_mlp(digits)
    import explorer_core.training as T

    rates = []
    original = T.OPTIMIZERS["sgd"]
    try:
        def spy(params, lr, weight_decay):
            opt = original(params, lr=lr, weight_decay=weight_decay)
            step = opt.step

            def recorded_step(*a, **k):
                rates.append(opt.param_groups[0]["lr"])
                return step(*a, **k)

            opt.step = recorded_step
            return opt

        T.OPTIMIZERS["sgd"] = spy
        train(model, data, TrainConfig(epochs=2, batch_size=10, optimizer="sgd", lr=0.1))
    finally:
        T.OPTIMIZERS["sgd"] = original
    assert len(rates) == 20
    assert rates[:16] == [pytest.approx(0.1)] * 16   # stable for 80 % of the steps
    assert all(b < a for a, b in zip(rates[16:], rates[17:])) and rates[-1] < 0.03


BAD = {
    "epochs": -1, "batch_size": 0, "max_micro_batch": 0, "eval_batch_size": 0,
    "patience": -2, "seed": -1, "lr": 0, "weight_decay": -0.1, "optimizer": "rmsprop2",
    "lr_schedule": "sawtooth", "device": "tpu",
}


@pytest.mark.parametrize("field", list(BAD))
def test_bad_config_values_are_refused(digits, field):
    cfg = TrainConfig(**{field: BAD[field]})
    with pytest.raises(ExplorerError) as exc:
        train(small_mlp(digits), digits, cfg)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("field,value", [("batch_size", 2.5), ("batch_size", "64"),
                                         ("epochs", True), ("lr", float("nan")),
                                         ("lr", float("inf")), ("lr", True), ("lr", "0.1")])
def test_wrongly_typed_config_values_are_refused(field, value):
    with pytest.raises(ExplorerError):
        TrainConfig(**{field: value}).validate()


def test_cpu_threads_are_set_for_the_run_and_restored(digits):
    """MLPs train on one thread (immune to OpenMP spin-waiting on a busy machine);
    an explicit `threads` wins; the caller's setting comes back afterwards."""
    data = tiny(digits, 64)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        during = []
        train(small_mlp(digits), data, TrainConfig(epochs=1, batch_size=32),
              on_batch=lambda m: during.append(torch.get_num_threads()))
        assert during == [1, 1] and torch.get_num_threads() == 2
        during.clear()
        train(small_mlp(digits), data, TrainConfig(epochs=1, batch_size=32, threads=3),
              on_batch=lambda m: during.append(torch.get_num_threads()))
        assert during == [3, 3] and torch.get_num_threads() == 2
        with pytest.raises(Cancelled):
            train(small_mlp(digits), data, TrainConfig(epochs=1), should_stop=lambda: True)
        assert torch.get_num_threads() == 2  # restored even when cancelled
    finally:
        torch.set_num_threads(before)


def test_micro_batch_shrinks_for_models_with_large_activations():
    """DenseNet-121 on 32×32 keeps ~46 MB of activations per sample: a 2048-sample slice
    would need ~190 GB. Its slice is sized so twice the activations fit the budget; an
    MLP's slice is simply the cap, and a tiny budget still leaves one sample."""
    from explorer_core.metrics import activation_bytes
    from explorer_core.models import default_spec
    from explorer_core.training import ACTIVATION_OVERHEAD, micro_batch_size

    spec = default_spec("densenet121", 3, 32, 10)
    dense = build_model(spec)
    cfg = TrainConfig(batch_size=60000)
    micro = micro_batch_size(dense, tuple(spec["input_shape"]), cfg)
    per_sample = activation_bytes(dense, spec["input_shape"])
    assert 1 < micro < cfg.max_micro_batch
    assert micro * per_sample * ACTIVATION_OVERHEAD <= cfg.memory_budget_mb * 2 ** 20
    assert (micro + 1) * per_sample * ACTIVATION_OVERHEAD > cfg.memory_budget_mb * 2 ** 20
    assert micro_batch_size(dense, tuple(spec["input_shape"]),
                            TrainConfig(batch_size=60000, memory_budget_mb=1)) == 1

    mlp_spec = default_spec("mlp", 1, 28, 10)
    mlp = build_model(mlp_spec)
    assert micro_batch_size(mlp, (1, 28, 28), TrainConfig(batch_size=60000)) == 2048
    assert micro_batch_size(mlp, (1, 28, 28), TrainConfig(batch_size=64)) == 64


def test_training_slices_each_batch_to_the_sized_micro_batch(digits):
    """A 16 384-neuron hidden layer keeps ~131 kB per sample; with a 1 MB budget and twice
    that per sample, 4 samples fit: a 60-sample batch goes through in slices of ≤ 4
    whose sizes add up to the batch."""
    from explorer_core.metrics import activation_bytes
    from explorer_core.training import ACTIVATION_OVERHEAD, micro_batch_size

    model = small_mlp(digits, hidden=(16384,))
    cfg = TrainConfig(epochs=1, batch_size=60, memory_budget_mb=1)
    per_sample = activation_bytes(model, digits.info.input_shape) * ACTIVATION_OVERHEAD
    expected = int(2 ** 20 // per_sample)
    assert 1 < expected < 60
    assert micro_batch_size(model, digits.info.input_shape, cfg) == expected
    seen = []
    hook = model.fc1.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
    train(model, tiny(digits, 60), cfg)
    hook.remove()
    train_passes = seen[:math.ceil(60 / expected)]  # then come the evaluation passes
    assert max(train_passes) == expected and sum(train_passes) == 60


def test_this_process_own_threads_do_not_count_as_busy_cores(monkeypatch):
    """A sweep's checkpoint writer keeps one of two cores busy while training samples
    the idle cores: that core is ours, so training still gets both threads."""
    import time as _time

    from explorer_core import training

    assert training.idle_of((100, 1000), (100, 1020), own_cores=1.0, cores=2) == 1
    assert training.idle_of((100, 1000), (110, 1020), own_cores=1.0, cores=2) == 2
    assert training.idle_of((100, 1000), (120, 1020), own_cores=0.4, cores=2) == 2  # capped
    # the whole machine is busy but only because of this process's writer thread
    samples = iter([(0, 0), (10, 20)])  # half the machine idle over the window
    monkeypatch.setattr(training, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(training.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(training, "_IDLE_CACHE", {})
    # this process used one full core all along (its CPU time grows with the wall time):
    # set, not measured from a spinning thread, which a machine busy with other work
    # gave less than half a core (CI then saw 1 idle core)
    start = _time.monotonic()
    monkeypatch.setattr(training.time, "process_time", lambda: _time.monotonic() - start)
    assert training.idle_cores(window_s=0.3) == 2


def test_an_idle_probe_window_can_overlap_this_process_own_work(monkeypatch):
    """The worker samples idle cores while it reads its config: its own work in the
    window counts as idle, and no extra sleep follows a window already long enough."""
    import types

    from explorer_core import training

    samples = iter([(0, 0), (10, 20)])  # half of two cores idle: the other half is us
    monkeypatch.setattr(training, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(training.os, "cpu_count", lambda: 2)
    now = {"wall": 100.0, "own": 7.0}  # a fake clock: the machine's load cannot move it
    slept: list[float] = []
    monkeypatch.setattr(training, "time", types.SimpleNamespace(
        monotonic=lambda: now["wall"], process_time=lambda: now["own"], sleep=slept.append))
    probe = training.IdleProbe()
    now["wall"] += 0.25  # the worker's own start-up work: one core for 0.25 s
    now["own"] += 0.25
    assert probe.cores(window_s=0.1) == 2
    assert slept == []  # the window was already over: no sleep (not a wall-clock bound)


def test_start_up_probe_samples_over_the_start_up_instead_of_sleeping(monkeypatch):
    """A worker's first question (a sweep's threads) uses the window opened at import."""
    import itertools
    import time
    import types

    from explorer_core import training

    # half the machine idle in every window; this process's own work counts as idle too
    monkeypatch.setattr(training, "_cpu_times", itertools.cycle([(0, 0), (10, 20)]).__next__)
    monkeypatch.setattr(training.os, "cpu_count", lambda: 2)
    slept: list[float] = []
    clock = types.SimpleNamespace(monotonic=time.monotonic, process_time=time.process_time,
                                  sleep=slept.append)
    monkeypatch.setattr(training, "time", clock)
    started = training.IdleProbe()  # as at import
    monkeypatch.setattr(training, "_STARTED", started)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.15:  # the worker's start-up: its own CPU
        sum(i * i for i in range(1000))
    assert training.start_up_probe() is started
    assert 1 <= started.cores() <= 2  # 1 idle core + our own start-up work (≤ 1 core)
    assert slept == []  # the 0.1 s window is over: nothing to sleep through
    started.wall -= training.IDLE_CACHE_S  # a stale window: a long-lived process asks anew
    fresh = training.start_up_probe()
    assert fresh is not started
    fresh.cores(window_s=10.0)
    assert len(slept) == 1 and 9.0 < slept[0] <= 10.0  # a new window is slept through
