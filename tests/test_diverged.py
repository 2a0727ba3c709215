"""Trainings that diverge (weights NaN / ±inf) on Digits: a Compare sweep on a diverged
dense model reported its cells "ok" at 7.80 % (the constant guess) and saved NaN
checkpoints that Inspect then refused; a NaN baseline went into models_cache/. Now the
group's cells fail with the reason, a fine-tuning or retraining that diverges fails its
cell or iteration, and nothing non-finite is saved or cached (`checkpoint.refuse_diverged`,
the check every loader makes)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from explorer_core.cache import baseline_key, get_baseline
from explorer_core.checkpoint import load_checkpoint, save_checkpoint
from explorer_core.data import get_info, load_dataset
from explorer_core.errors import CheckpointError
from explorer_core.experiment import RunConfig, model_spec
from explorer_core.experiment import create_run as create_iterative_run
from explorer_core.experiment import execute as execute_run
from explorer_core.rundir import SweepPaths
from explorer_core.sweep import SPLIT_SEED, SweepConfig, create_sweep, execute
from explorer_core.sweep_results import results_frame
from explorer_core.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
# SGD (momentum 0.9) at learning rate 10 (the largest allowed) in batches of 8: the
# default 256-64 MLP on Digits is NaN after its first epoch
DIVERGING = dict(lr=10.0, optimizer="sgd")
BATCH = 8
BASELINE_NOTE = "the dense baseline diverged: fc1.weight holds NaN ("
ADVICE = "; lower the learning rate (it was 10 with sgd)"


def sweep_config(name: str, **over) -> SweepConfig:
    base = dict(name=name, models=["mlp"], datasets=["digits"], batch_sizes=[BATCH],
                types=["neuron", "weight"], criteria=["l1", "magnitude"],
                ratios=[0.0, 0.5, 1.0], dense_epochs=1, finetune_epochs=1,
                mlp_hidden=[256, 64], latency_repeats=0, **DIVERGING)
    base.update(over)
    return SweepConfig(**base)


def files_under(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


def file_sane_baseline_under(cache: Path, spec: dict, data, cfg: TrainConfig) -> None:
    """Train the baseline at a sane rate (Adam, 1e-3) and file it in `cache` under the
    key of `cfg`: a cache holding a good baseline for settings whose later training (a
    fine-tuning, a retraining at the same rate) diverges."""
    good = get_baseline(spec, data, TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size,
                                                seed=cfg.seed), cache)
    key = baseline_key(spec, data, cfg)
    for suffix in (".safetensors", ".json"):
        good.path.with_suffix(suffix).rename(cache / f"{key}{suffix}")


@pytest.mark.parametrize("use_cache", [True, False])
def test_a_diverged_baseline_fails_every_cell_of_its_group_and_saves_nothing(tmp_path,
                                                                             use_cache):
    cache = tmp_path / "cache"
    for attempt in ("first", "again"):  # a later sweep with the same settings: the same
        paths = create_sweep(sweep_config(f"nan-{attempt}", use_cache=use_cache),
                             tmp_path / "sweeps")
        status = execute(paths, cache_root=cache)
        assert status["state"] == "finished"
        assert status["message"] == "6 cells, 6 failed", status["message"]
        df = results_frame(paths)
        assert len(df) == 6 and set(df["status"]) == {"failed"}
        for note in df["note"]:  # one clear reason per cell, dead cells (100 %) included
            assert note.startswith(BASELINE_NOTE) and note.endswith(ADVICE), note
        assert df["test_acc"].isna().all()
        # nothing ran, so no times: "0 s" cells made the remaining time's pace far too fast
        assert df["cell_seconds"].isna().all() and df["finetune_seconds"].isna().all()
        for cell in paths.cells_dir.glob("*.json"):
            assert "checkpoint" not in json.loads(cell.read_text())
        assert files_under(paths.root / "checkpoints") == []
        assert files_under(paths.baselines_dir) == []  # --no-cache's own baseline folder
        assert files_under(cache) == []  # not cached, so never served to a later sweep


def test_a_nan_baseline_cached_before_is_not_served(tmp_path):
    """One written to models_cache/ by an older version: refused by the loader, trained
    again, and the group's cells fail as if there were none."""
    cfg = sweep_config("stale", ratios=[0.0, 0.5], finetune_epochs=0)
    data = load_dataset("digits", seed=SPLIT_SEED, val_fraction=cfg.val_fraction)
    spec = cfg.spec("mlp", "digits")
    cache = tmp_path / "cache"
    file_sane_baseline_under(cache, spec, data, cfg.train_config(BATCH, 0, cfg.dense_epochs))
    [weights] = cache.glob("*.safetensors")
    ck = load_checkpoint(weights)
    with torch.no_grad():
        ck.model.fc2.weight[0, 0] = float("nan")
    save_checkpoint(ck.model, spec, weights, ck.meta)  # what the old code cached
    paths = create_sweep(cfg, tmp_path / "sweeps")
    assert execute(paths, cache_root=cache)["message"] == "4 cells, 4 failed"
    assert all(n.startswith(BASELINE_NOTE) for n in results_frame(paths)["note"])
    assert files_under(paths.root / "checkpoints") == []


def test_a_fine_tuning_that_diverges_fails_its_cell_and_saves_no_checkpoint(tmp_path):
    """The baseline is sane (from the cache); fine-tuning its pruned copies at rate 10
    turns them NaN. That cell was "ok" with a NaN checkpoint; now it fails with the reason and
    every checkpoint the sweep saved loads."""
    cfg = sweep_config("fine-tune", ratios=[0.0, 0.5])
    data = load_dataset("digits", seed=SPLIT_SEED, val_fraction=cfg.val_fraction)
    cache = tmp_path / "cache"
    file_sane_baseline_under(cache, cfg.spec("mlp", "digits"), data,
                             cfg.train_config(BATCH, 0, cfg.dense_epochs))
    paths = create_sweep(cfg, tmp_path / "sweeps")
    assert execute(paths, cache_root=cache)["state"] == "finished"
    df = results_frame(paths).set_index("cell_id")
    assert (df.loc[df["ratio"] == 0.0, "status"] == "ok").all()  # the sane baseline itself
    failed = df[df["status"] == "failed"]
    assert "mlp-digits-b8-s0-weight-magnitude-r50" in failed.index
    for note in failed["note"]:
        assert note.startswith("fine-tuning diverged: fc1.") and note.endswith(ADVICE), note
        assert " holds NaN (" in note
    for cell_id, row in df.iterrows():
        saved = SweepPaths(paths.root).checkpoint(cell_id)
        if row["status"] == "ok":
            assert load_checkpoint(saved).meta["metrics"]["test_acc"] == row["test_acc"]
        else:  # no NaN checkpoint left for Inspect to refuse
            assert not saved.exists() and not saved.with_suffix(".json").exists()


def test_a_dense_baseline_that_diverges_is_not_cached(tmp_path):
    from explorer_core.errors import TrainingDiverged

    data = load_dataset("digits")
    spec = SweepConfig().spec("mlp", "digits")
    cfg = TrainConfig(epochs=1, batch_size=BATCH, seed=0, **DIVERGING)
    for _ in range(2):  # and asked again: trained again, never served from the cache
        with pytest.raises(TrainingDiverged) as info:
            get_baseline(spec, data, cfg, tmp_path)
        assert str(info.value).startswith(BASELINE_NOTE) and str(info.value).endswith(ADVICE)
        assert files_under(tmp_path) == []


def test_a_retraining_that_diverges_fails_its_iteration_without_saving_it(tmp_path):
    """Iteration 1's retraining at rate 10 turns the model NaN: it was saved as the
    iteration's best model and the run "finished"; now the run fails naming it, and
    iteration 0 (sane, from the cache) is kept for a resume."""
    cfg = RunConfig(name="retrain", hidden=[1024, 1024], criterion="l1",
                    schedule={"q": 0.5, "iterations": 2, "kind": "geometric"},
                    dense_epochs=1, retrain_epochs=1, batch_size=BATCH, **DIVERGING)
    data = load_dataset("digits", seed=cfg.seed, val_fraction=cfg.val_fraction)
    cache = tmp_path / "cache"
    file_sane_baseline_under(cache, model_spec(cfg, get_info("digits")), data,
                             cfg.train_config(0))
    paths = create_iterative_run(cfg, tmp_path / "runs")
    status = execute_run(paths, cache_root=cache)
    assert status["state"] == "failed"
    assert status["message"].startswith("iteration 1's retraining diverged: fc1.weight holds "
                                        "NaN (")
    assert status["message"].endswith(ADVICE)
    assert paths.completed_iterations() == [0]
    assert not paths.best_model(1).exists()
    load_checkpoint(paths.best_model(0))


def run_cli(args: list[str], scratch: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EXPLORER_RUNS": str(scratch / "runs"),
           "EXPLORER_SWEEPS": str(scratch / "sweeps"), "EXPLORER_CACHE": str(scratch / "cache")}
    return subprocess.run([sys.executable, "-m", "explorer_core", *args], cwd=scratch,
                          env=env, capture_output=True, text=True, timeout=300)


def test_cli_compare_on_a_diverging_rate_fails_its_cells_and_inspect_has_nothing_to_refuse(
        tmp_path):
    """QA's command (at rate 50 then, which is now refused up front): "finished: 4 cells,
    1 failed", three cells "ok" at 7.80 % with checkpoints that `inspect` refused."""
    result = run_cli(["compare", "--lr", "10", "--optimizer", "sgd", "--batch-sizes", "8",
                      "--ratios", "0", "0.5", "--types", "neuron", "weight", "--criteria",
                      "l1", "magnitude", "--dense-epochs", "1", "--finetune-epochs", "1",
                      "--latency-repeats", "0", "--quiet", "--name", "nanlr", "--no-cache"],
                     tmp_path)
    # every cell failed: the sweep answered nothing, so the exit says so, in one line
    assert result.returncode == 2, result.stderr
    assert result.stdout.startswith("finished: 4 cells, 4 failed ("), result.stdout
    *_, err = result.stderr.strip().splitlines()  # after "sweep folder: …"
    assert "Traceback" not in result.stderr
    assert err.startswith("error: every cell failed (4 of 4); the first: " + BASELINE_NOTE), err
    [sweep] = (tmp_path / "sweeps").glob("*/nanlr")
    for cell in (sweep / "cells").glob("*.json"):
        record = json.loads(cell.read_text())
        assert record["status"] == "failed" and record["note"].startswith(BASELINE_NOTE)
    assert files_under(sweep / "checkpoints") == [] and files_under(tmp_path / "cache") == []
    # the diverged epochs' losses are written as null, which every JSON reader takes
    # (they were NaN, which strict readers refuse)
    events = (sweep / "events.jsonl").read_text()
    assert "NaN" not in events and '"train_loss": null' in events


def test_cli_prune_on_a_diverging_rate_fails_at_the_dense_model_in_one_line(tmp_path):
    """It failed one iteration later, on loading the NaN checkpoint it had saved (and
    cached) for the dense model."""
    result = run_cli(["prune", "--lr", "10", "--optimizer", "sgd", "--batch-size", "8",
                      "--q", "0.5", "--iterations", "2", "--dense-epochs", "1",
                      "--criterion", "l1", "--quiet", "--name", "nan"], tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""  # the reason once, on stderr ("failed: …" was said here too)
    err = result.stderr.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("run folder: "), result.stderr  # then the error
    assert err[1].startswith(f"error: {BASELINE_NOTE}") and err[1].endswith(ADVICE)
    [run] = (tmp_path / "runs").glob("*/nan")
    assert not (run / "0").exists() and files_under(tmp_path / "cache") == []
    with pytest.raises(CheckpointError):  # nothing there for a resume to go on from
        load_checkpoint(run / "0" / "prune_w_retrain" / "best_model.safetensors")


@pytest.mark.parametrize("epochs", [("2", "1"), ("6", "2")])
def test_cli_train_time_on_a_diverging_rate_fails_in_one_line_and_saves_nothing(tmp_path,
                                                                                epochs):
    """Review: it said "finished: 1 runs complete" with a NaN final model (which Inspect
    listed, then refused), or blamed the criterion for the NaN scores of the model."""
    total, initial = epochs
    result = run_cli(["train-time", "--dataset", "digits", "--hidden", "256", "64",
                      "--optimizer", "sgd", "--lr", "10", "--batch-size", "8", "--epochs",
                      total, "--initial-epochs", initial, "--quiet", "--name", "tnan"],
                     tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    err = result.stderr.strip().splitlines()
    assert err[-1].startswith("error: the contribution-pruned training (seed 0) diverged: ") \
        and err[-1].endswith(ADVICE), result.stderr
    assert "Traceback" not in result.stderr
    [run] = (tmp_path / "runs").rglob("tnan")
    assert list(run.rglob("*.safetensors")) == []
