"""Real data: on Fashion-MNIST (Debian package; fails, never skips, when it is missing —
`.ci/run` installs it) with the default MLP (784-256-64-10), removing 50 % of the hidden
neurons without fine-tuning, interval-adjoint, L1 and Taylor scores each keep more test
accuracy than random scores. The same sweep the Compare page runs.

Why ten seeds and ten random draws per seed, not the three seeds of a single draw
each: at 50 % without fine-tuning a seed's accuracy spreads widely (sd 4–5 points for
every criterion; one random draw sd 4.0), and CPUs that round differently train other
models from the same seed. Measured over 24 seeds (2 dense epochs, batch 64), the
criteria beat random's mean of ten draws by 3.8 (IASA), 4.6 (L1) and 4.8 (Taylor)
points, yet three seeds of one draw each had a 15–26 % chance per criterion of showing
the opposite — on one machine seeds 0–2 gave IASA 74.02 % against random 74.77 %. With
ten seeds and random as the mean of ten draws on each seed's baseline (the sweep's own
draw and nine more on its saved checkpoint), a reversal has < 1 % chance per criterion.
The three-seed means are still recorded beside the ten-seed ones.
"""
from __future__ import annotations

import json
import statistics

from explorer_core.checkpoint import load_checkpoint
from explorer_core.criteria import CriterionOptions
from explorer_core.data import load_dataset
from explorer_core.pruning_types import PRUNING_TYPES
from explorer_core.sweep import SPLIT_SEED, SweepConfig, create_sweep, execute
from explorer_core.sweep_results import results_frame
from explorer_core.training import evaluate

from test_realdata_fashion import require_debian_data

CRITERIA = ["interval_adjoint", "l1", "taylor"]
SEEDS = 10
RANDOM_DRAWS = 10  # per seed, the sweep's own draw included


def _random_draws(checkpoint: str, seed: int, first: float, test) -> float:
    """Mean test accuracy of RANDOM_DRAWS random 50 % prunings of one baseline."""
    dense = load_checkpoint(checkpoint)
    accs = [first]
    for draw in range(1, RANDOM_DRAWS):
        options = CriterionOptions(seed=seed + 1000 * draw)
        model, _ = PRUNING_TYPES["neuron"].prune(dense.model, dense.spec, 0.5, "random", None,
                                                 options)
        accs.append(evaluate(model.eval(), test)[1])
    return statistics.mean(accs)


def test_criteria_beat_random_at_half_the_neurons(tmp_path, monkeypatch, capsys):
    require_debian_data()
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))
    cfg = SweepConfig(name="fmnist-half", models=["mlp"], datasets=["fashion_mnist"],
                      batch_sizes=[64], types=["neuron"], criteria=[*CRITERIA, "random"],
                      ratios=[0.0, 0.5], repeats=SEEDS, dense_epochs=2, latency_repeats=0)
    paths = create_sweep(cfg, tmp_path / "sweeps")
    status = execute(paths)
    assert status["state"] == "finished", status

    df = results_frame(paths)
    assert len(df) == 2 * 4 * SEEDS and set(df["status"]) == {"ok"}
    half = df[df["ratio"] == 0.5]
    per_seed = half.pivot_table(index="seed", columns="criterion", values="test_acc")
    baselines = df[(df["ratio"] == 0) & (df["criterion"] == "random")].set_index("seed")
    test = load_dataset("fashion_mnist", seed=SPLIT_SEED, val_fraction=cfg.val_fraction).test
    per_seed["random_mean"] = [
        _random_draws(baselines.loc[s, "checkpoint"], s, per_seed.loc[s, "random"], test)
        for s in per_seed.index]
    means = per_seed.mean()
    seen = {"dense_test_acc": baselines["test_acc"].round(2).tolist(),
            "per_seed": per_seed.round(2).to_dict(), f"mean over {SEEDS} seeds":
            means.round(2).to_dict(), "mean over seeds 0-2": per_seed.iloc[:3].mean().round(2)
            .to_dict()}
    record = json.dumps(seen)
    (tmp_path / "seen.json").write_text(record)
    with capsys.disabled():
        print("\nFashion-MNIST, 50 % neurons removed, no fine-tuning:", record)

    assert (baselines["test_acc"] > 84).all(), record  # the baselines learned
    # ratio 0 is the baseline itself: its accuracy is the dense one the cells report
    assert (baselines["test_acc"] == baselines["dense_test_acc"]).all(), record
    for criterion in CRITERIA:
        assert means[criterion] > means["random_mean"], (
            f"{criterion} kept {means[criterion]:.2f} % on average, random "
            f"{means['random_mean']:.2f} %: {record}")
    # pruning half the neurons without fine-tuning costs accuracy for everyone
    assert (means < baselines["test_acc"].mean()).all(), record
