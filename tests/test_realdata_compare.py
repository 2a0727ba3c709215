"""Real data: on Fashion-MNIST (Debian package; fails, never skips, when it is missing —
`.ci/run` installs it) with the default MLP (784-256-64-10), removing 50 % of the hidden
neurons without fine-tuning, interval-adjoint, L1 and Taylor scores each keep more test
accuracy than random scores, mean over three seeds. The same sweep the Compare page runs.
"""
from __future__ import annotations

import json

from explorer_core.sweep import SweepConfig, create_sweep, execute
from explorer_core.sweep_results import results_frame

from test_realdata_fashion import require_debian_data

CRITERIA = ["interval_adjoint", "l1", "taylor"]


def test_criteria_beat_random_at_half_the_neurons(tmp_path, monkeypatch, capsys):
    require_debian_data()
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))
    cfg = SweepConfig(name="fmnist-half", models=["mlp"], datasets=["fashion_mnist"],
                      batch_sizes=[64], types=["neuron"], criteria=[*CRITERIA, "random"],
                      ratios=[0.5], repeats=3, dense_epochs=2, latency_repeats=0,
                      save_checkpoints=False)
    paths = create_sweep(cfg, tmp_path / "sweeps")
    status = execute(paths)
    assert status["state"] == "finished", status

    df = results_frame(paths)
    assert len(df) == 12 and set(df["status"]) == {"ok"}
    per_seed = df.pivot_table(index="seed", columns="criterion", values="test_acc")
    means = per_seed.mean()
    seen = {"dense_test_acc": df.groupby("seed")["dense_test_acc"].first().round(2).tolist(),
            "per_seed": per_seed.round(2).to_dict(), "mean": means.round(2).to_dict()}
    record = json.dumps(seen)
    (tmp_path / "seen.json").write_text(record)
    with capsys.disabled():
        print("\nFashion-MNIST, 50 % neurons removed, no fine-tuning:", record)

    assert (df["dense_test_acc"] > 84).all(), record  # the baselines learned
    for criterion in CRITERIA:
        assert means[criterion] > means["random"], (
            f"{criterion} kept {means[criterion]:.2f} % on average, random "
            f"{means['random']:.2f} %: {record}")
    # pruning half the neurons without fine-tuning costs accuracy for everyone
    assert (means < df["dense_test_acc"].mean()).all(), record
