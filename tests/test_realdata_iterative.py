"""Real data: the thesis' workflow on Fashion-MNIST (Debian package; fails, never skips,
when it is missing — `.ci/run` installs it).

Default MLP (784-256-64-10), interval-adjoint significance, q = 0.8, one retraining
epoch per iteration: iteration 8 keeps 43 + 11 of 320 hidden neurons (16.9 %), and the
retrained model must stay within 2 points of the dense test accuracy.
"""
from __future__ import annotations

import json

from explorer_core.experiment import RunConfig, create_run, execute
from explorer_core.results import iteration_rows

from test_realdata_fashion import require_debian_data


def test_iasa_q08_reaches_20_percent_within_2_points_of_dense(tmp_path, capsys):
    require_debian_data()
    cfg = RunConfig(name="fmnist-iasa", dataset="fashion_mnist", hidden=[256, 64],
                    schedule={"q": 0.8, "iterations": 9, "kind": "geometric"},
                    criterion="interval_adjoint", dense_epochs=1, retrain_epochs=1,
                    batch_size=64, seed=0, use_cache=False)
    paths = create_run(cfg, tmp_path / "runs")
    status = execute(paths, cache_root=tmp_path / "cache")
    assert status["state"] == "finished", status

    rows = iteration_rows(paths)
    seen = [{"iteration": r.iteration, "widths": r.widths,
             "percent_retained": round(r.percent_retained, 2), "test_acc": r.test_acc}
            for r in rows]
    record = json.dumps(seen)
    (tmp_path / "seen.json").write_text(record)
    with capsys.disabled():
        print("\nFashion-MNIST IASA q=0.8 run:", record)

    dense = rows[0]
    assert dense.iteration == 0 and dense.percent_retained == 100.0
    small = [r for r in rows if r.percent_retained <= 20.0]
    assert small, f"no iteration reached ≤ 20 % of hidden neurons: {record}"
    for r in rows:  # every step of the way, not only the end, stays within 2 points
        assert r.test_acc >= dense.test_acc - 2.0, (
            f"at {r.percent_retained:.1f} % kept the test accuracy is {r.test_acc:.2f} %, "
            f"more than 2 points below the dense {dense.test_acc:.2f} %: {record}")
    # the model really shrank: the saved checkpoint has the scheduled widths
    assert rows[-1].widths == [43, 11]
