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


def test_a_baseline_trained_on_other_files_of_the_dataset_is_not_reused(tmp_path):
    """The key named the dataset, not its files: a run on other MNIST files (another
    EXPLORER_DATA, files replaced) got the first files' model and metrics, 6 % test
    accuracy reported for a test set of 0 images."""
    import os
    import time

    from test_data import write_mnist

    from explorer_core.data import data_identity

    spec = default_spec("mlp", 1, 28, 10, [8])
    first_root, other_root = tmp_path / "a", tmp_path / "b"
    write_mnist(first_root / "MNIST" / "raw", n_train=40, n_test=12, seed=0)
    write_mnist(other_root / "MNIST" / "raw", n_train=40, n_test=12, seed=1)
    cache = tmp_path / "cache"
    train = TrainConfig(epochs=1, batch_size=16, seed=0)
    first = get_baseline(spec, load_dataset("mnist", root=first_root), train, cache)
    other = get_baseline(spec, load_dataset("mnist", root=other_root), train, cache)
    assert not other.from_cache and other.key != first.key
    assert get_baseline(spec, load_dataset("mnist", root=first_root), train, cache).from_cache
    # the same folder with a file rewritten: other data too, read anew (not the copy the
    # process holds)
    before = data_identity("mnist", first_root)
    labels = first_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    later = time.time() + 5
    os.utime(labels, (later, later))
    assert data_identity("mnist", first_root) != before
    again = get_baseline(spec, load_dataset("mnist", root=first_root), train, cache)
    assert not again.from_cache
    assert data_identity("digits") == "bundled"
    assert data_identity("mnist", tmp_path / "nowhere") == "missing"


def test_bundled_data_keeps_the_keys_its_baselines_were_cached_under():
    """Digits cannot change, so its key names no files: the baselines already in
    models_cache/ stay in use (the key is the one from before files were keyed)."""
    import hashlib
    import json

    from explorer_core.cache import baseline_key

    data = load_dataset("digits")
    train = {k: v for k, v in TRAIN.to_dict().items() if k not in ("device", "eval_batch_size")}
    blob = json.dumps({"spec": dict(SPEC), "dataset": "digits", "split_seed": data.seed,
                       "val_fraction": data.val_fraction, "train": train}, sort_keys=True)
    assert baseline_key(SPEC, data, TRAIN) == \
        f"mlp-digits-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"
