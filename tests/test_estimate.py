"""The Compare estimate's model of a sweep's cost, with controlled step times.

The probe's timing of a training step is replaced by a function of the model and the
slice size, so what is checked is how the estimate prices the work — which model a
cell fine-tunes, at which batch size — not how fast this machine is.
"""
from __future__ import annotations

import math
import time

import pytest
import torch

from explorer_core import estimate as est_mod
from explorer_core.data import get_info
from explorer_core.masks import is_masked
from explorer_core.rundir import RunLock, write_status
from explorer_core.sweep import SweepConfig, create_sweep, plan
from explorer_core.sweep_results import progress


@pytest.fixture
def roots(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_SWEEPS", str(tmp_path / "sweeps"))
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _clear_probes() -> None:
    for name in ("_probe", "_pruned_timings"):  # lru caches of measured timings
        cached = getattr(est_mod, name, None)
        if hasattr(cached, "cache_clear"):
            cached.cache_clear()
    if isinstance(getattr(est_mod, "_MEASURED", None), dict):
        est_mod._MEASURED.clear()


@pytest.fixture
def step_seconds(monkeypatch):
    """Install `fn(model, samples) -> seconds of one training step` as the probe's timing."""
    def install(fn):
        def timed(model, *args, **kwargs):
            first = args[0]  # an input batch, or the input shape and then the slice size
            n = first.shape[0] if isinstance(first, torch.Tensor) else args[1]
            return fn(model, n)
        monkeypatch.setattr(est_mod, "_time_steps", timed)
        _clear_probes()
    yield install
    _clear_probes()


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _sized(model: torch.nn.Module, n: int) -> float:
    """1 ms per step plus 1 ns per parameter and sample; a masked model twice that (its
    masks are multiplied into the weights on every pass)."""
    seconds = 1e-3 + 1e-9 * n * _params(model)
    return 2 * seconds if is_masked(model) else seconds


def _cell_price(type_name: str, ratio: float, epochs: int) -> float:
    """The estimated seconds of the one pruned cell of a one-type, one-ratio grid."""
    criterion = "l1" if type_name == "neuron" else "magnitude"
    cfg = SweepConfig(name="price", types=[type_name], criteria=[criterion],
                      ratios=[0.0, ratio], finetune_epochs=epochs, latency_repeats=0,
                      batch_sizes=[64], mlp_hidden=[256, 64])
    (group,) = est_mod.estimate(cfg, plan(cfg)).groups
    return group["pruned_cell_s"]


def test_fine_tuning_is_priced_on_the_pruned_model_and_per_epoch(roots, step_seconds):
    """The estimate priced every pruned cell's fine-tuning at the dense model's epoch: a
    neuron-pruned MLP at 75 % cost what the dense one did, and a masked one (slower per
    step than the dense model) too. Each cell is priced on the model it fine-tunes."""
    step_seconds(_sized)
    small, large = _cell_price("neuron", 0.75, 4), _cell_price("neuron", 0.25, 4)
    masked = _cell_price("weight", 0.5, 4)
    assert small < large < masked
    # one epoch of the 25 %-pruned model, of which the masked copy of the dense model
    # (more parameters, twice the cost per step) costs more than twice as much
    tuned = {r: _cell_price("neuron", r, 4) - _cell_price("neuron", r, 0) for r in (0.25, 0.75)}
    assert (masked - _cell_price("weight", 0.5, 0)) > 2 * tuned[0.25] > 2 * tuned[0.75]
    # linear in the epochs
    for r in (0.25, 0.75):
        assert _cell_price("neuron", r, 8) - _cell_price("neuron", r, 0) == \
            pytest.approx(2 * tuned[r])


def test_a_step_is_priced_at_the_batch_size_the_sweep_trains_with(roots, step_seconds):
    """The probe fitted `overhead + n × per sample` on steps of 256 and 512 samples and
    extrapolated down to the sweep's batch of 32: where a small step costs its fixed
    part whatever its size, that read a fraction of it (Digits MLP: 54 µs against 1 ms
    of a real step). Steps at the sweep's batch size are measured, not extrapolated."""
    step_seconds(lambda model, n: 1e-3 if n <= 64 else 1e-3 + (n - 64) * 1e-5)
    cfg = SweepConfig(name="batch", types=["neuron"], criteria=["l1"], ratios=[0.0, 0.5],
                      batch_sizes=[32], dense_epochs=3, latency_repeats=0)
    (group,) = est_mod.estimate(cfg, plan(cfg), cache_root=roots / "empty").groups
    n_all, _ = get_info("digits").samples
    n_train = n_all - round(n_all * cfg.val_fraction)
    steps = math.ceil(n_train / 32)  # the last one short: a step of ≤ 64 costs 1 ms
    assert group["train_s"] == pytest.approx(3 * steps * 1e-3, rel=0.01)


def test_the_pace_weighs_each_finished_cell_against_its_own_types_estimate(roots):
    """Neuron cells run before masked ones in a group and fine-tune faster. Weighed
    against the group's mean pruned cell, neuron cells on time read as a fast pace, and
    the remaining time dipped, then climbed as the masked cells came (an honest 34 s at
    the start read 23 s after the first block, 28 s later)."""
    from explorer_core.fileio import atomic_write_json

    cfg = SweepConfig(name="pace", types=["neuron", "weight"], criteria=["l1", "magnitude"],
                      ratios=[0.0, 0.5], finetune_epochs=2, mlp_hidden=[16, 8])
    cells = plan(cfg).cells
    assert [(c.type, c.ratio) for c in cells] == [("neuron", 0.0), ("neuron", 0.5),
                                                  ("weight", 0.0), ("weight", 0.5)]
    group = {"baseline_s": 2.0, "train_s": 1.5, "end_cell_s": 0.02, "pruned_cell_s": 2.0,
             "cell_s": (2 * 0.02 + 2 * 2.0) / 4, "type_cell_s": {"neuron": 1.0, "weight": 3.0}}
    paths = create_sweep(cfg, estimated=[group])
    write_status(paths, "running", started=time.time() - 10.0)
    paths.cells_dir.mkdir(parents=True, exist_ok=True)
    for cell, seconds in ((cells[0], 0.02), (cells[1], 1.0)):  # both on their estimate
        row = {f: getattr(cell, f) for f in ("model", "dataset", "batch_size", "seed", "type",
                                             "criterion", "ratio")}
        row.update(cell_id=cell.id, status="ok", cell_seconds=seconds,
                   dense_train_seconds=1.5, baseline_from_cache=False)
        atomic_write_json(paths.cell(cell.id), row)
    with RunLock(paths):
        eta = progress(paths, now=paths.cells_dir.stat().st_mtime).eta
    assert eta == pytest.approx(0.02 + 3.0)  # the masked block, at its own estimate


def test_a_baseline_training_slower_than_estimated_paces_the_time_left(roots):
    """A baseline trained three times slower than estimated (a browser on a busy
    machine) counted down to "1 s" and stood there for its last 30 of 60 epochs, the
    progress line beside it saying "epoch 30/60": its epochs so far now set the pace."""
    from explorer_core.rundir import append_event

    cfg = SweepConfig(name="slow", types=["neuron"], criteria=["l1"], ratios=[0.0, 0.5],
                      dense_epochs=60, mlp_hidden=[16, 8])
    group = {"baseline_s": 6.0, "train_s": 6.0, "end_cell_s": 0.02, "pruned_cell_s": 1.0,
             "cell_s": 0.51}
    paths = create_sweep(cfg, estimated=[group])
    started = time.time() - 9.5  # 30 epochs of 0.3 s, after half a second of start-up
    write_status(paths, "running", started=started)
    (g,) = plan(cfg).groups
    with RunLock(paths):
        fresh = progress(paths, now=started).eta
        for epoch in range(1, 31):  # 30 epochs at 0.3 s: 3× the estimate's 0.1 s
            append_event(paths, {"type": "epoch", "group": list(g), "epoch": epoch,
                                 "seconds": 0.3})
        now = time.time()
        slow = progress(paths, now=now)
    # at the estimate's pace: 6 s of baseline and two cells' 1.02 s
    assert fresh == pytest.approx(6.0 + 0.02 + 1.0)
    # at 3× (9 s on 30 epochs where 3 s were estimated): 3 × 7.02 s in all, of which the
    # 9.5 s since the start are spent; at the estimate's pace it read 1 s
    assert slow.overdue == 0.0 and slow.eta > 10.0
    assert slow.eta == pytest.approx(3 * (6.0 + 0.02 + 1.0) - (now - started), abs=0.5)
    # a hand-edited last line whose group cannot key one is no pace, not a crash
    with RunLock(paths):
        append_event(paths, {"type": "epoch", "group": [["mlp"], "digits"], "epoch": 31,
                             "seconds": 0.3})
        assert progress(paths, now=now).eta == 1.0  # the estimate's own pace, as before

def test_the_estimate_gives_each_groups_pruned_cells_per_type(roots, step_seconds):
    """What the pace above reads: the mean pruned cell per type, kept in status.json."""
    from explorer_core.rundir import read_status
    from explorer_core.sweep_results import _group_estimates

    step_seconds(_sized)
    cfg = SweepConfig(name="types", types=["neuron", "weight"], criteria=["l1", "magnitude"],
                      ratios=[0.0, 0.25, 0.75, 1.0], finetune_epochs=2, latency_repeats=0)
    (group,) = est_mod.estimate(cfg, plan(cfg)).groups
    by_type = group["type_cell_s"]
    assert by_type["neuron"] < by_type["weight"]
    assert group["pruned_cell_s"] == pytest.approx((by_type["neuron"] + by_type["weight"]) / 2)
    paths = create_sweep(cfg, estimated=[group])
    assert _group_estimates(read_status(paths)) == [group]
