"""`python -m explorer_core prune-once` as a user runs it: files out, one-line errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from explorer_core.checkpoint import load_checkpoint, save_checkpoint
from explorer_core.cli import main
from explorer_core.models import build_model, count_parameters, default_spec

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "explorer_core", "prune-once", *args],
                          cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300)


@pytest.fixture()
def saved_mlp(tmp_path):
    torch.manual_seed(0)
    spec = default_spec("mlp", 1, 8, 10, hidden=[32, 16])
    model = build_model(spec)
    save_checkpoint(model, spec, tmp_path / "dense", {"dataset": "digits",
                                                      "metrics": {"test_acc": 90.0}})
    return tmp_path / "dense.safetensors", model


def test_writes_smaller_checkpoint_scores_and_metrics(saved_mlp, tmp_path):
    ckpt, dense = saved_mlp
    proc = _run("--checkpoint", str(ckpt), "--criterion", "l1", "--keep", "8", "4",
                "--out", str(tmp_path / "small"), "--latency-batch", "16",
                "--latency-repeats", "3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    small = load_checkpoint(tmp_path / "small.safetensors")
    assert small.spec["hidden"] == [8, 4]
    # 64*8+8 + 8*4+4 + 4*10+10
    assert count_parameters(small.model) == 606
    assert small.meta["dataset"] == "digits" and "metrics" not in small.meta
    report = json.loads((tmp_path / "small.scores.json").read_text())
    fc1 = report["layers"]["fc1"]
    assert fc1["dense"] == 32 and fc1["kept_count"] == 8 and len(fc1["scores"]) == 32
    # l1 keeps the 8 rows of fc1 with the largest absolute weight sums
    l1 = dense.fc1.weight.detach().abs().sum(1)
    assert sorted(fc1["kept"]) == sorted(torch.topk(l1, 8).indices.tolist())
    m = report["metrics"]
    assert m["dense"]["macs"] == 64 * 32 + 32 * 16 + 16 * 10
    assert m["pruned"]["macs"] == 64 * 8 + 8 * 4 + 4 * 10
    assert m["dense"]["latency_ms"] > 0 and m["ratios"]["speedup"] > 0


def test_ratio_global_and_a_data_driven_criterion(saved_mlp, tmp_path):
    ckpt, _ = saved_mlp
    proc = _run("--checkpoint", str(ckpt), "--criterion", "taylor", "--ratio", "0.5",
                "--global", "--samples", "200", "--no-latency",
                "--out", str(tmp_path / "g.safetensors"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "g.scores.json").read_text())
    assert report["dataset"] == "digits" and report["samples"] == 200
    kept = sum(layer["kept_count"] for layer in report["layers"].values())
    assert kept == 24  # half of 32 + 16, shared across layers
    assert report["metrics"]["pruned"]["latency_ms"] is None


@pytest.mark.parametrize("args, message", [
    (["--criterion", "l1", "--keep", "40", "4"], "layer fc1 has 32 units; cannot keep 40"),
    (["--criterion", "l1", "--keep", "8"], "1 keep count(s) for 2 prunable layer(s)"),
    (["--criterion", "l1", "--ratio", "1.0"], "ratio must be in [0, 1)"),
    (["--criterion", "l1", "--ratio", "-0.5"], "ratio must be in [0, 1)"),
    (["--criterion", "nope", "--ratio", "0.5"], "unknown criterion 'nope'"),
    (["--criterion", "taylor", "--ratio", "0.5", "--dataset", "fashion_mnist"],
     "has inputs 1×28×28 but the model expects 1×8×8"),
    # k-means refused these with a 37-line traceback; a 10**8 latency batch asked the
    # allocator for 25.6 GB and died with a traceback
    (["--criterion", "kmeans", "--ratio", "0.5", "--seed", "-1"],
     "--seed must be within 0 … 2,147,483,647, got -1"),
    (["--criterion", "l1", "--ratio", "0.5", "--latency-batch", "100000000"],
     "latency batch must be at most 65,536, got 100,000,000"),
])
def test_bad_inputs_exit_2_with_one_line(saved_mlp, tmp_path, args, message, capsys):
    # In-process through the same entry point as `python -m explorer_core` (a subprocess
    # per case would mostly measure torch's import time); the subprocess tests below
    # cover the process boundary.
    ckpt, _ = saved_mlp
    code = main(["prune-once", "--checkpoint", str(ckpt), *args, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "x.safetensors").exists()


def test_a_folder_as_checkpoint_and_an_empty_out_are_named_as_such(saved_mlp, tmp_path,
                                                                      capsys, monkeypatch):
    """A folder given as --checkpoint was "checkpoint not found"; --out '' wrote
    dense-pruned.* into the working folder."""
    ckpt, _ = saved_mlp
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "results"
    folder.mkdir()
    for args, message in ((["--checkpoint", str(folder), "--out", "x"],
                           f"{folder} is a folder, not a checkpoint file"),
                          (["--checkpoint", str(ckpt), "--out", ""], "--out is empty")):
        assert main(["prune-once", *args, "--criterion", "l1", "--ratio", "0.5",
                     "--no-latency"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
    assert not list(tmp_path.glob("*pruned*")) and not list(tmp_path.glob("x.*"))


def test_data_criterion_with_unavailable_dataset(saved_mlp, tmp_path):
    ckpt, _ = saved_mlp
    proc = _run("--checkpoint", str(ckpt), "--criterion", "taylor", "--ratio", "0.5",
                "--dataset", "mnist", "--out", str(tmp_path / "x"), cwd=tmp_path,
                env={"EXPLORER_DATA": str(tmp_path / "empty")})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "needs calibration data, but dataset 'mnist' is unavailable" in lines[0]


def test_bad_checkpoint_and_model_without_hidden_layer(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    proc = _run("--checkpoint", str(tmp_path / "junk.safetensors"), "--criterion", "l1",
                "--ratio", "0.5", "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert proc.returncode == 2 and "not a valid safetensors file" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    spec = default_spec("slp", 1, 8, 10)
    save_checkpoint(build_model(spec), spec, tmp_path / "slp")
    proc = _run("--checkpoint", str(tmp_path / "slp.safetensors"), "--criterion", "l1",
                "--ratio", "0.5", "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert proc.returncode == 2 and "no hidden layer" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_interval_adjoint_boxes_the_whole_training_split_whatever_samples_says(saved_mlp,
                                                                                tmp_path, capsys):
    """prune-once built IASA's box from a random `--samples` subset (2048 of Fashion-MNIST's
    54 000), so one model scored differently here than in the iterative, Compare and
    train-time runs, which box the whole training split."""
    from explorer_core.criteria import CriterionOptions, compute_scores
    from explorer_core.data import load_dataset

    ckpt, model = saved_mlp
    assert main(["prune-once", "--checkpoint", str(ckpt), "--criterion", "interval_adjoint",
                 "--ratio", "0.5", "--samples", "100", "--no-latency",
                 "--out", str(tmp_path / "iasa")]) == 0
    report = json.loads((tmp_path / "iasa.scores.json").read_text())
    train = load_dataset("digits", seed=0).train
    assert report["samples"] == len(train)
    want = compute_scores(model, "interval_adjoint", train, ["fc1", "fc2"], CriterionOptions())
    for layer in ("fc1", "fc2"):
        got = torch.tensor(report["layers"][layer]["scores"])
        assert torch.allclose(got, want[layer].float(), rtol=1e-5), layer


def test_latency_is_timed_on_one_thread_like_the_sweeps(saved_mlp, tmp_path, monkeypatch):
    """prune-once kept torch's thread count while timing: beside two busy processes a
    2.7×-faster pruned CNN read 1.00× (104 ms each), other runs 0.31× … 28.43×."""
    import torch as _torch

    from explorer_core import metrics

    seen: list[int] = []
    real = metrics.measure_latencies

    def spy(models, shape, config=metrics.LatencyConfig(), should_stop=None):
        seen.append(config.threads)
        return real(models, shape, config, should_stop)

    monkeypatch.setattr(metrics, "measure_latencies", spy)
    before = _torch.get_num_threads()
    ckpt, _ = saved_mlp
    assert main(["prune-once", "--checkpoint", str(ckpt), "--criterion", "l1", "--ratio", "0.5",
                 "--latency-repeats", "3", "--out", str(tmp_path / "one")]) == 0
    assert seen == [1] and _torch.get_num_threads() == before


@pytest.mark.parametrize("checkpoint, out", [
    ("dense.safetensors", "dense"),
    ("dense.safetensors", "dense.safetensors"),
    ("dense.safetensors", "./dense.safetensors"),
    ("dense.safetensors", "{abs}/dense"),
    ("dense.safetensors", "dense.json"),
    ("dense.safetensors", "link"),           # link.safetensors → dense.safetensors
    ("dense.safetensors", "sidecar-link"),   # sidecar-link.json → dense.json
    ("dense.json", "./dense"),
    ("link.safetensors", "{abs}/dense.safetensors"),
])
def test_out_naming_the_input_is_refused_and_leaves_it_untouched(saved_mlp, tmp_path, monkeypatch,
                                                                  capsys, checkpoint, out):
    """`--out model` beside `model.safetensors` replaced the dense checkpoint and its
    sidecar by the pruned model and exited 0; every spelling of that path is refused."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link.safetensors").symlink_to("dense.safetensors")
    (tmp_path / "sidecar-link.json").symlink_to("dense.json")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    code = main(["prune-once", "--checkpoint", checkpoint, "--criterion", "l1", "--ratio", "0.5",
                 "--no-latency", "--out", out.format(abs=tmp_path)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1 and "would overwrite the checkpoint being pruned" in lines[0], lines
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert load_checkpoint(tmp_path / "dense.safetensors").spec["hidden"] == [32, 16]


@pytest.mark.parametrize("out", ["small.pth", "small.safetensors", "small.json", "small"])
def test_the_scores_file_is_named_like_the_checkpoint_written(saved_mlp, tmp_path, out):
    """`--out small.pth` wrote small.safetensors and small.json (the suffix is replaced)
    but small.pth.scores.json beside them."""
    from explorer_core.cli import main

    ckpt, _ = saved_mlp
    assert main(["prune-once", "--checkpoint", str(ckpt), "--criterion", "l1", "--ratio",
                 "0.5", "--no-latency", "--out", str(tmp_path / out)]) == 0
    written = sorted(p.name for p in tmp_path.glob("small*"))
    assert written == ["small.json", "small.safetensors", "small.scores.json"]


@pytest.mark.parametrize("out, make", [("results/", False), ("results", True),
                                       ("results/", True)])
def test_an_out_folder_gets_the_files_inside_named_after_the_checkpoint(saved_mlp, tmp_path,
                                                                          out, make):
    """`--out results/` wrote results.safetensors, results.json and results.scores.json
    beside the folder: argparse's Path dropped the trailing slash."""
    ckpt, _ = saved_mlp
    if make:
        (tmp_path / "results").mkdir()
    assert main(["prune-once", "--checkpoint", str(ckpt), "--criterion", "l1", "--ratio",
                 "0.5", "--no-latency", "--out", f"{tmp_path}/{out}"]) == 0
    inside = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert inside == ["dense-pruned.json", "dense-pruned.safetensors",
                      "dense-pruned.scores.json"]
    assert not list(tmp_path.glob("results.*"))
    assert load_checkpoint(tmp_path / "results" / "dense-pruned.safetensors").spec["hidden"] \
        == [16, 8]


def test_the_report_names_all_three_files_written(saved_mlp, tmp_path, capsys):
    """It said "wrote small.safetensors and small.scores.json", leaving out small.json,
    without which the checkpoint does not load."""
    ckpt, _ = saved_mlp
    assert main(["prune-once", "--checkpoint", str(ckpt), "--criterion", "l1", "--ratio",
                 "0.5", "--no-latency", "--out", str(tmp_path / "small")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"wrote {tmp_path / 'small.safetensors'}, small.json and small.scores.json"



def test_keeping_every_unit_is_not_reported_as_fewer_macs(saved_mlp, tmp_path, capsys):
    """--keep 32 16 on a 32-16 MLP printed "(1.00× fewer)"."""
    ckpt, _ = saved_mlp
    for keep, says in ((["32", "16"], "(as many)"), (["8", "4"], "× fewer)")):
        assert main(["prune-once", "--checkpoint", str(ckpt), "--criterion", "l1", "--keep",
                     *keep, "--no-latency", "--out", str(tmp_path / "same"),
                     "--overwrite"]) == 0
        macs = capsys.readouterr().out.splitlines()[1]
        assert macs.endswith(says) and "1.00×" not in macs, macs

@pytest.mark.parametrize("field, value", [("normalisation", {"mean": [0.3], "std": [0.0]}),
                                          ("class_names", ["a", "b"])])
def test_a_source_with_unusable_recorded_inputs_is_refused_before_anything_is_written(
        saved_mlp, tmp_path, field, value):
    """Its std of 0 (or two class names for ten outputs) was copied into the pruned
    checkpoint, which `inspect` then refused."""
    ckpt, _ = saved_mlp
    sidecar = ckpt.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta[field] = value
    sidecar.write_text(json.dumps(meta))
    proc = _run("--checkpoint", str(ckpt), "--criterion", "l1", "--ratio", "0.5",
                "--no-latency", "--out", str(tmp_path / "small"), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"recorded {field}" in proc.stderr
    assert not list(tmp_path.glob("small*"))


def test_the_pruned_checkpoint_records_its_share_of_the_dense_hidden_units(saved_mlp, tmp_path):
    """Without it, Inspect read "Hidden kept —" for every prune-once output. A source that
    records its own share (pruned before) passes it on, multiplied."""
    from explorer_core.catalog import summary

    ckpt, _ = saved_mlp
    proc = _run("--checkpoint", str(ckpt), "--criterion", "l1", "--keep", "8", "4",
                "--no-latency", "--out", str(tmp_path / "small"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    small = load_checkpoint(tmp_path / "small.safetensors")
    assert summary(small)["percent_kept"] == pytest.approx(100 * 12 / 48)
    proc = _run("--checkpoint", str(tmp_path / "small.safetensors"), "--criterion", "l1",
                "--keep", "4", "2", "--no-latency", "--out", str(tmp_path / "smaller"),
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    smaller = load_checkpoint(tmp_path / "smaller.safetensors")
    assert summary(smaller)["percent_kept"] == pytest.approx(100 * 6 / 48)


def test_a_masked_source_counts_all_of_its_units(tmp_path):
    """A sweep's 90 %-masked cell records 11.88: its share of non-zero weights. Taken as a
    share of units, half of them kept made "percent_retained": 5.94 for a model keeping
    half of its units."""
    torch.manual_seed(0)
    spec = default_spec("mlp", 1, 8, 10, hidden=[32, 16])
    save_checkpoint(build_model(spec), spec, tmp_path / "masked", {
        "dataset": "digits", "percent_retained": 11.88,
        "cell": {"type": "weight", "criterion": "magnitude", "ratio": 0.9}})
    proc = _run("--checkpoint", str(tmp_path / "masked.safetensors"), "--criterion", "l1",
                "--keep", "16", "8", "--no-latency", "--out", str(tmp_path / "half"),
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "half.json").read_text())
    assert meta["percent_retained"] == pytest.approx(50.0)


def test_a_model_whose_input_is_no_image_is_still_pruned(tmp_path):
    """Checking the recorded inputs must not ask for an image: an MLP of 50 inputs (no
    square picture) with no dataset is pruned as before."""
    torch.manual_seed(0)
    spec = {"arch": "mlp", "in": 50, "out": 3, "hidden": [16], "activation": "relu"}
    save_checkpoint(build_model(spec), spec, tmp_path / "tab", {})
    proc = _run("--checkpoint", str(tmp_path / "tab.safetensors"), "--criterion", "l1",
                "--ratio", "0.5", "--no-latency", "--out", str(tmp_path / "small"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert load_checkpoint(tmp_path / "small.safetensors").spec["hidden"] == [8]


def test_an_earlier_output_of_the_same_name_is_refused_unless_overwrite(saved_mlp, tmp_path,
                                                                         capsys):
    """A second prune-once with the same --out (another ratio) replaced the first one's
    checkpoint and scores without a word."""
    ckpt, _ = saved_mlp
    args = ["prune-once", "--checkpoint", str(ckpt), "--criterion", "l1", "--no-latency",
            "--out", str(tmp_path / "small")]
    assert main([*args, "--ratio", "0.5"]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.glob("small*")}
    capsys.readouterr()
    assert main([*args, "--ratio", "0.75"]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'small.safetensors'} already exists (an earlier result); add "
        "--overwrite to replace it, or pick another --out\n")
    assert {p.name: p.read_bytes() for p in tmp_path.glob("small*")} == before
    assert main([*args, "--ratio", "0.75", "--overwrite"]) == 0
    assert load_checkpoint(tmp_path / "small.safetensors").spec["hidden"] == [8, 4]
    assert json.loads((tmp_path / "small.scores.json").read_text())["ratio"] == 0.75


def test_overwrite_never_replaces_the_checkpoint_being_pruned(saved_mlp, tmp_path, capsys):
    ckpt, _ = saved_mlp
    assert main(["prune-once", "--checkpoint", str(ckpt), "--criterion", "l1", "--ratio",
                 "0.5", "--no-latency", "--overwrite", "--out", str(tmp_path / "dense")]) == 2
    assert "would overwrite the checkpoint being pruned" in capsys.readouterr().err
    assert load_checkpoint(ckpt).spec["hidden"] == [32, 16]
