"""The dense-baseline cache: reuse, damaged entries, and a cache that cannot be written."""
from __future__ import annotations

from explorer_core.cache import get_baseline, is_cached
from explorer_core.data import load_dataset
from explorer_core.models import default_spec
from explorer_core.sweep import SweepConfig, create_sweep, execute
from explorer_core.sweep_results import results_frame
from explorer_core.training import TrainConfig

SPEC = default_spec("mlp", 1, 8, 10, [16, 8])
TRAIN = TrainConfig(epochs=2, batch_size=64, seed=0)


def test_a_baseline_is_trained_once_then_reused(tmp_path):
    data = load_dataset("digits")
    first = get_baseline(SPEC, data, TRAIN, tmp_path)
    again = get_baseline(SPEC, data, TRAIN, tmp_path)
    assert not first.from_cache and again.from_cache and is_cached(first.key, tmp_path)
    assert again.metrics == first.metrics and again.history == first.history
    assert again.train_seconds == first.train_seconds > 0


def test_weights_without_their_sidecar_are_retrained_not_reused_empty(tmp_path):
    """A kill between the two writes leaves the weights alone: reused, they reported no
    metrics, no history and 0 s of dense training."""
    data = load_dataset("digits")
    first = get_baseline(SPEC, data, TRAIN, tmp_path)
    first.path.with_suffix(".json").unlink()
    assert not is_cached(first.key, tmp_path)
    again = get_baseline(SPEC, data, TRAIN, tmp_path)
    assert not again.from_cache and again.history and again.train_seconds > 0
    assert is_cached(first.key, tmp_path)


def test_save_with_hands_the_cache_write_to_the_caller(tmp_path, capsys):
    """A sweep's writer thread writes the baseline, so the sweep need not wait for the
    disk; the write a failure would have warned about warns when it runs, and raises
    nothing into the writer (which would stop every later write of the sweep)."""
    data = load_dataset("digits")
    queued: list = []
    baseline = get_baseline(SPEC, data, TRAIN, tmp_path, save_with=queued.append)
    assert len(queued) == 1 and not is_cached(baseline.key, tmp_path)
    queued[0]()
    assert is_cached(baseline.key, tmp_path)
    assert get_baseline(SPEC, data, TRAIN, tmp_path).metrics == baseline.metrics

    blocked = tmp_path / "blocked"
    blocked.write_text("in the way")
    get_baseline(SPEC, data, TRAIN, blocked, save_with=queued.append)
    assert "could not cache" not in capsys.readouterr().err
    queued[1]()
    assert "could not cache the dense baseline" in capsys.readouterr().err


def test_a_cache_that_cannot_be_written_warns_and_keeps_the_trained_baseline(tmp_path, capsys):
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    baseline = get_baseline(SPEC, load_dataset("digits"), TRAIN, blocked)
    assert not baseline.from_cache and baseline.metrics["test_acc"] > 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not cache the dense baseline" in err


def test_a_sweep_runs_to_the_end_when_its_cache_cannot_be_written(tmp_path):
    """It failed after training its first baseline, and every resume did the same."""
    blocked = tmp_path / "cache"
    blocked.write_text("in the way")
    cfg = SweepConfig(name="no-cache", types=["neuron"], criteria=["l1"], ratios=[0.0, 0.5],
                      dense_epochs=1, mlp_hidden=[16, 8], latency_repeats=0)
    paths = create_sweep(cfg, tmp_path / "sweeps")
    status = execute(paths, cache_root=blocked)
    assert status["state"] == "finished", status
    assert len(results_frame(paths)) == 2
