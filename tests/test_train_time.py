"""Train-time pruning on Digits: schedule, controls, determinism, stop/resume, VAE, errors, CLI.

Runs are tiny (an MLP 20-12, a handful of epochs) so the whole file takes seconds; every
run goes to a pytest tmp folder.
"""
from __future__ import annotations

import json
import time

import pytest
import torch

from explorer_core import jobs
from explorer_core.catalog import list_run_checkpoints
from explorer_core.checkpoint import load_checkpoint
from explorer_core.cli import main
from explorer_core.errors import ExplorerError
from explorer_core.rundir import (RunLock, TrainTimePaths, read_events, read_status,
                                  write_status)
from explorer_core.train_time import (TrainTimeConfig, create_run, execute, final_rows,
                                      idle_prunes, planned_widths, progress, summarise,
                                      total_epochs)
from explorer_core.vae import load_vae

from conftest import bar_at_a_terminal

# Two prunes of 25 % (after epochs 2 and 4), each followed by training.
SMALL = dict(dataset="digits", hidden=[20, 12], epochs=5, initial_epochs=2, prune_every=2,
             prune_fraction=0.25, seeds=[0])


def run(tmp_path, name: str, **settings) -> TrainTimePaths:
    paths = create_run(TrainTimeConfig(name=name, **{**SMALL, **settings}), tmp_path)
    status = execute(paths)
    assert status["state"] == "finished", status
    return paths


def epochs_of(paths: TrainTimePaths) -> dict[tuple[str, int], list[dict]]:
    """Epoch events per (variant, seed), without the wall-clock fields."""
    out: dict[tuple[str, int], list[dict]] = {}
    for e in read_events(paths):
        if e["type"] == "epoch":
            out.setdefault((e["variant"], e["seed"]), []).append(
                {k: v for k, v in e.items() if k not in ("time", "seconds")})
    return out


def finals(paths: TrainTimePaths) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("checkpoint", "seconds")}
            for r in final_rows(paths)]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> TrainTimePaths:
    return run(tmp_path_factory.mktemp("runs") / "train-time", "small")


def test_widths_shrink_exactly_on_schedule(small_run):
    cfg = TrainTimeConfig(**SMALL)
    assert cfg.prune_points() == [2, 4]
    plan = planned_widths([20, 12], cfg)
    assert plan == [[20, 12], [20, 12], [15, 9], [15, 9], [11, 7]]
    curves = epochs_of(small_run)
    for variant in ("importance", "random"):
        events = curves[(variant, 0)]
        assert [e["epoch"] for e in events] == [1, 2, 3, 4, 5]
        assert [e["widths"] for e in events] == plan
        assert all(e["layers"] == ["fc1", "fc2"] for e in events)
        prunes = [e for e in read_events(small_run)
                  if e["type"] == "prune" and e["variant"] == variant]
        assert [(p["epoch"], p["widths_before"], p["widths"]) for p in prunes] == \
            [(2, [20, 12], [15, 9]), (4, [15, 9], [11, 7])]
        assert prunes[0]["criterion"] == ("contribution" if variant == "importance" else "random")
        ck = load_checkpoint(small_run.final_model(variant, 0))
        assert ck.spec["hidden"] == [11, 7] and ck.model.hidden == [11, 7]
        # the share Inspect shows as "Hidden kept" (it showed "—" for these models)
        assert ck.meta["percent_retained"] == pytest.approx(100 * (11 + 7) / (20 + 12))
    # importance and random remove the same number of units, not the same units
    imp, rnd = curves[("importance", 0)], curves[("random", 0)]
    assert imp[2]["test_loss"] != rnd[2]["test_loss"]


def test_no_pruning_keeps_the_widths_and_shares_the_prefix(small_run):
    curves = epochs_of(small_run)
    none = curves[("none", 0)]
    assert [e["widths"] for e in none] == [[20, 12]] * 5
    assert not [e for e in read_events(small_run) if e["type"] == "prune" and e["variant"] == "none"]
    assert load_checkpoint(small_run.final_model("none", 0)).model.hidden == [20, 12]
    # until the first prune the three variants are one computation
    for epoch in (0, 1):
        strip = lambda e: {k: v for k, v in e.items() if k != "variant"}  # noqa: E731
        assert strip(curves[("importance", 0)][epoch]) == strip(none[epoch]) == \
            strip(curves[("random", 0)][epoch])
    assert none[2]["test_loss"] != curves[("importance", 0)][2]["test_loss"]


def test_results_summary_history_and_charts(small_run):
    rows = final_rows(small_run)
    assert [(r["variant"], r["seed"]) for r in rows] == [("importance", 0), ("random", 0),
                                                        ("none", 0)]
    assert [r["widths"] for r in rows] == [[11, 7], [11, 7], [20, 12]]
    # parameters by hand: 64·11+11 + 11·7+7 + 7·10+10 and 64·20+20 + 20·12+12 + 12·10+10
    assert [r["params"] for r in rows] == [879, 879, 1682]
    summary = summarise(rows, "classifier")
    assert summary["none"]["mean_test_acc"] == pytest.approx(rows[2]["test_acc"])
    assert summary["importance"]["label"] == "contribution-pruned"
    header, *lines = small_run.history("random", 0).read_text().splitlines()
    assert header.split() == ["Epoch", "fc1", "fc2", "Params", "TrainLoss", "TrainAccuracy",
                              "TestLoss", "TestAccuracy"]
    assert [ln.split()[:3] for ln in lines] == [["1", "20", "12"], ["2", "20", "12"],
                                                ["3", "15", "9"], ["4", "15", "9"],
                                                ["5", "11", "7"]]
    saved = json.loads(small_run.summary.read_text())
    assert set(saved["variants"]) == {"importance", "random", "none"}
    for name in ("accuracy", "loss", "widths", "sizes"):
        png = small_run.chart_png(name)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    prog = progress(small_run)
    assert (prog.state, prog.epochs_done, prog.total_epochs, prog.units_done,
            prog.total_units, prog.fraction) == ("finished", 15, 15, 3, 3, 1.0)
    # 2 shared epochs computed once, then 3 epochs for each of the 3 variants
    assert prog.work_total == 11 and prog.work_done == pytest.approx(11)


def test_same_seed_same_curves_other_seed_other_curves(tmp_path, small_run):
    again = run(tmp_path, "again")
    assert epochs_of(again) == epochs_of(small_run)
    assert finals(again) == finals(small_run)
    other = run(tmp_path, "other", seeds=[1])
    assert epochs_of(other)[("none", 1)][-1]["test_loss"] != \
        epochs_of(small_run)[("none", 0)][-1]["test_loss"]


def test_stop_then_resume_gives_the_uninterrupted_results(tmp_path):
    settings = dict(seeds=[0, 1], variants=["importance", "none"])
    reference = run(tmp_path, "reference", **settings)
    paths = create_run(TrainTimeConfig(name="stopped", **{**SMALL, **settings}), tmp_path)
    seen = {"epochs": 0}

    def count(event: dict) -> None:
        seen["epochs"] += event["type"] == "epoch"

    # stop in seed 1, after seed 0 was saved
    status = execute(paths, should_stop=lambda: seen["epochs"] >= 13, on_event=count)
    assert status["state"] == "stopped" and "resume" in status["message"]
    assert paths.completed_units() == [("importance", 0), ("none", 0)]
    assert execute(paths)["state"] == "finished"
    assert epochs_of(paths) == epochs_of(reference)
    assert finals(paths) == finals(reference)
    assert len([e for e in read_events(paths) if e["type"] == "prune"]) == 4


def test_progress_never_goes_back_when_a_resume_redoes_an_unsaved_seed(tmp_path):
    """After a stop in seed 1 the page showed '23 of 40 epochs · now seed 1, epoch 3', and
    after Resume '20 of 40 · now seed 0, epoch 8': the resume drops the unsaved seed's
    epochs and recomputes it from its start (same numbers as an uninterrupted run), and
    the progress counted the events left. It now holds at the most ever counted until
    the recomputation catches up, and says which seed it is on."""
    settings = dict(seeds=[0, 1], variants=["importance", "none"])
    paths = create_run(TrainTimeConfig(name="redo", **{**SMALL, **settings}), tmp_path)
    seen = {"epochs": 0}
    shown: list[tuple[float, float]] = []  # (work shown, fraction) at every event

    def watch(event: dict) -> None:
        seen["epochs"] += event["type"] == "epoch"
        prog = progress(paths)
        shown.append((prog.work_shown, prog.fraction))

    # 10 events for seed 0 (saved), then seed 1's two shared epochs; stopped in its third
    assert execute(paths, should_stop=lambda: seen["epochs"] >= 13, on_event=watch)["state"] \
        == "stopped"
    stopped = progress(paths)
    events = [e for e in read_events(paths) if e["type"] == "epoch"]
    assert stopped.work_done == pytest.approx(stopped.work_shown)
    assert (stopped.seed, stopped.seed_epoch) == (1, max(e["epoch"] for e in events
                                                        if e["seed"] == 1))
    assert stopped.unsaved > 0 and stopped.units_done == 2
    before = stopped.work_shown

    resumed: list[object] = []

    def watch_resume(event: dict) -> None:
        watch(event)
        resumed.append(progress(paths))

    assert execute(paths, on_event=watch_resume)["state"] == "finished"
    first = resumed[0]  # seed 1's first epoch again
    assert first.seed == 1 and first.seed_epoch == 1
    assert first.work_done < before  # its earlier epochs really are recomputed …
    assert first.work_shown == pytest.approx(before)  # … but the count does not fall
    assert first.redo == pytest.approx(before - first.work_done)
    for (a, fa), (b, fb) in zip(shown, shown[1:]):
        assert b >= a - 1e-9 and fb >= fa - 1e-9, shown
    done = progress(paths)
    assert done.fraction == 1.0 and done.redo == 0 and done.seed is None


def test_sigkill_of_the_background_worker_then_resume(tmp_path):
    # batch 16 makes seed 1 long enough to kill the worker in the middle of it
    settings = dict(seeds=[0, 1], variants=["importance", "random"], batch_size=16, epochs=4,
                    initial_epochs=1, prune_every=1)
    reference = run(tmp_path, "reference", **settings)
    paths = create_run(TrainTimeConfig(name="killed", **{**SMALL, **settings}), tmp_path)
    jobs.launch(paths, "train-time")
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not any(
                e.get("seed") == 1 and e["type"] == "epoch" for e in read_events(paths)):
            time.sleep(0.05)
        assert paths.completed_units() == [("importance", 0), ("random", 0)]
    finally:
        jobs.kill(paths)
    time.sleep(0.5)
    assert read_status(paths)["state"] == "interrupted"
    jobs.launch(paths, "train-time")
    assert jobs.wait(paths, timeout=180)["state"] == "finished", paths.log.read_text()[-2000:]
    assert epochs_of(paths) == epochs_of(reference)
    assert finals(paths) == finals(reference)


def test_vae_loss_falls_and_the_pruned_decoder_draws_images(tmp_path):
    paths = run(tmp_path, "vae", task="vae", hidden=[48], latent=4, epochs=6, initial_epochs=2,
                prune_every=1, prune_fraction=0.2)
    curves = epochs_of(paths)
    cfg = TrainTimeConfig(**{**SMALL, "task": "vae", "hidden": [48], "epochs": 6,
                             "initial_epochs": 2, "prune_every": 1, "prune_fraction": 0.2})
    plan = planned_widths([48, 48], cfg)
    assert plan[-1] == [19, 19]  # 48 → 38 → 30 → 24 → 19 (round half to even)
    for variant in ("importance", "random", "none"):
        events = curves[(variant, 0)]
        losses = [e["test_loss"] for e in events]
        assert losses[-1] < losses[0] - 1.0, (variant, losses)
        assert all(e["test_loss"] == pytest.approx(e["test_recon"] + e["test_kl"]) for e in events)
        assert [e["layers"] for e in events] == [["enc1", "dec1"]] * 6
        assert [e["widths"] for e in events] == (plan if variant != "none" else [[48, 48]] * 6)
    model, info = load_vae(paths.final_model("importance", 0))
    assert (model.widths(), model.latent) == ({"enc1": 19, "dec1": 19}, 4)
    with torch.no_grad():
        images = model.decode(torch.randn(5, 4))
    assert images.shape == (5, 64) and 0 <= images.min() and images.max() <= 1
    from PIL import Image

    # 16 test images, 8 per row: originals and reconstructions → 4 rows of 8×8 cells ×7
    recon = Image.open(paths.reconstructions_png("importance", 0))
    samples = Image.open(paths.samples_png("random", 0))
    assert recon.size == (8 * 58 + 2, 4 * 58 + 2) and samples.size == (8 * 58 + 2, 4 * 58 + 2)
    for name in ("reconstruction", "kl", "elbo", "widths", "sizes"):
        assert paths.chart_png(name).is_file(), name


def test_catalog_lists_the_final_classifiers_for_inspect(tmp_path, small_run):
    runs_root = small_run.root.parents[2]  # <runs root>/train-time/<date>/<name>
    vae = run(runs_root / "train-time", "vae-run", task="vae", hidden=[16], latent=2, epochs=3)
    assert vae.completed_units()
    groups = list_run_checkpoints(runs_root)
    assert list(groups) == [f"train-time small ({small_run.root.parent.name})"]
    entries = groups[list(groups)[0]]
    assert [e.path for e in entries] == [small_run.final_model(v, 0)
                                         for v in ("none", "importance", "random")]
    assert entries[1].label.startswith("contribution-pruned, seed 0: test ")
    assert entries[1].label.endswith(" · 11-7")
    assert entries[1].widths == [11, 7] and entries[1].dataset == "digits"
    assert load_checkpoint(entries[1].path).model.hidden == [11, 7]


def test_only_seed_folders_named_as_a_run_names_them_are_seeds(small_run, tmp_path):
    """'seed²' (a digit to str.isdigit) crashed every reader of the run with int()'s
    ValueError; 'seed007' beside 'seed0…' counted one seed twice in the summary."""
    import shutil

    copy = TrainTimePaths(tmp_path / "copy")
    shutil.copytree(small_run.root, copy.root)
    before = copy.completed_units()
    for odd in ("seed²", "seed00"):
        shutil.copytree(copy.unit_dir("random", 0), copy.unit_dir("random", 0).parent / odd)
    assert copy.completed_units() == before


def test_a_pruned_classifier_is_set_beside_its_own_seeds_unpruned_one(tmp_path):
    """Opened on Inspect, "random-pruned, seed 1" came with "no pruning, seed 0" beside it:
    two seeds' models compared as if pruning made their difference."""
    paths = run(tmp_path / "train-time", "two-seeds", seeds=[0, 1], epochs=3, initial_epochs=1)
    entries = {e.path: e for e in list_run_checkpoints(tmp_path)[
        f"train-time two-seeds ({paths.root.parent.name})"]}
    for variant in ("importance", "random"):
        for seed in (0, 1):
            assert entries[paths.final_model(variant, seed)].reference == \
                paths.final_model("none", seed)
    assert entries[paths.final_model("none", 1)].reference is None  # the group's first


@pytest.mark.parametrize("settings, message", [
    ({"initial_epochs": 5}, "initial epochs (5) must be fewer than the total epochs (5)"),
    ({"task": "vae", "arch": "cnn"}, "the model 'cnn' applies to classifiers only"),
    ({"task": "vae", "channels": [8]}, "conv channels apply to the CNN classifier only"),
    ({"channels": [8]}, "conv channels apply to the CNN only; the mlp has none"),
    ({"criterion": "random"}, "the criterion-pruned variant is a second random-pruned one"),
    ({"prune_fraction": 1.0}, "removed per prune must be from 0.005 to 0.99"),
    ({"prune_fraction": 0.0}, "must be from 0.005"),
    # the page's range: the CLI ran 99.5 %, which the page refused
    ({"prune_fraction": 0.995}, "must be from 0.005 to 0.99 (0.1 = 10 %;"),
    ({"prune_fraction": 0.001}, "got 0.001"),
    ({"hidden": []}, "hidden widths must be a non-empty list"),
    ({"hidden": [20, "x"]}, "hidden widths must be whole numbers ≥ 1, got 'x'"),
    # the bad entries, as the Retention page names them ("got [0]" read as a Python list)
    ({"hidden": [0]}, "hidden widths must be whole numbers ≥ 1, got 0"),
    ({"seeds": [-1, 2]}, "seeds must be whole numbers ≥ 0, got -1"),
    ({"batch_size": 0}, "batch size must be a whole number ≥ 1, got 0"),
    ({"seeds": 3}, "seeds must be a non-empty list"),
    ({"seeds": [1, 1]}, "seeds must be distinct"),
    ({"variants": ["none", "magic"]}, "variants must be a list of distinct names"),
    ({"arch": "resnet18"}, "the model for train-time pruning must be one of mlp, cnn"),
    ({"criterion": "nope"}, "criterion must be one of interval_adjoint, l1"),
    ({"task": "vae", "criterion": "taylor"}, "not available for the VAE"),
    ({"dataset": ["digits"]}, "dataset must be a name"),
    ({"dataset": "imagenet"}, "unknown dataset"),
    ({"lr": -1.0}, "learning rate must be a number from 1e-06 to 10, got -1.0"),
    # past float32's range Adam's update overflowed: a RuntimeError traceback
    ({"lr": 1e39}, "learning rate must be a number from 1e-06 to 10, got 1e+39"),
    ({"weight_decay": 1e39}, "weight decay must be a number from 0 to 1, got 1e+39"),
    ({"epochs": 2.5}, "total epochs must be a whole number"),
    # 100 000 started that many OpenMP threads: a traceback and a "failed" folder
    ({"threads": 100_000}, "threads must be a whole number from 0 (automatic) to 1,024, "
                           "got 100000"),
    ({"threads": -1}, "threads must be a whole number from 0 (automatic) to 1,024"),
    # a VAE-only setting: a classifier took it silently and recorded it as used
    ({"latent": 8}, "the latent size applies to the VAE only; the mlp classifier has none"),
    ({"arch": "cnn", "latent": 8}, "the latent size applies to the VAE only; the cnn "
                                   "classifier has none"),
])
def test_bad_settings_are_one_line_errors_and_make_no_folder(tmp_path, settings, message):
    with pytest.raises(ExplorerError) as info:
        create_run(TrainTimeConfig(name="bad", **{**SMALL, **settings}), tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not list(tmp_path.iterdir())


def test_unknown_settings_in_a_config_file_are_refused():
    with pytest.raises(ExplorerError, match="unknown train-time setting"):
        TrainTimeConfig.from_dict({"epochs": 3, "prune_evry": 2})


def test_cli_runs_a_config_file_and_writes_the_results(tmp_path, capsys):
    config = tmp_path / "tt.json"
    config.write_text(json.dumps({**SMALL, "name": "from-file", "variants": ["importance",
                                                                           "none"]}))
    assert main(["train-time", "--config", str(config), "--epochs", "3", "--initial-epochs", "1",
                 "--runs-root", str(tmp_path / "runs"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("finished: 2 runs complete")
    paths = TrainTimePaths(next((tmp_path / "runs").glob("*/from-file")))
    saved = json.loads(paths.config.read_text())
    assert (saved["epochs"], saved["initial_epochs"], saved["hidden"]) == (3, 1, [20, 12])
    assert paths.completed_units() == [("importance", 0), ("none", 0)]


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "3", "--initial-epochs", "3"], "error: initial epochs (3) must be fewer"),
    (["--fraction", "1.5"], "error: the fraction of each hidden layer removed per prune must be from 0.005 to 0.99"),
    (["--config", "/nonexistent/tt.json"], "error: cannot read /nonexistent/tt.json"),
    (["--resume", "/nonexistent/run"], "error: /nonexistent/run is not a run folder"),
    (["--dataset", "mnist", "--data-root-is-not-a-flag"], "unrecognized arguments"),
    (["--hidden", "50", "x"], "invalid int value: 'x'"),
    (["--latent", "4"], "error: --latent sets the VAE's latent size; a classifier has none"),
])
def test_cli_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, argv, message):
    where = [] if "--resume" in argv else ["--runs-root", str(tmp_path)]  # resume: refused
    assert _cli(["train-time", *argv, *where]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("settings, message", [
    ({"threads": 100_000}, "error: threads must be a whole number from 0 (automatic) to "
                           "1,024, got 100000"),
    ({"latent": 8}, "error: the latent size applies to the VAE only; the mlp classifier has "
                    "none (drop it, or set the task to vae)"),
])
def test_cli_config_file_settings_refused_in_one_line_before_any_folder(tmp_path, capsys,
                                                                       settings, message):
    config = tmp_path / "tt.json"
    config.write_text(json.dumps({**SMALL, **settings}))
    runs = tmp_path / "runs"
    assert _cli(["train-time", "--config", str(config), "--runs-root", str(runs),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == message + "\n"
    assert not runs.exists()


def _cli(argv: list[str]) -> int:
    """`main`'s exit code, also for argparse errors (which exit through SystemExit)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def test_cli_resume_refuses_new_settings(tmp_path, small_run, capsys):
    assert main(["train-time", "--resume", str(small_run.root), "--epochs", "9"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --resume continues a run with its saved settings; drop --epochs\n"


def test_a_resumed_runs_bar_starts_at_the_epochs_it_kept(tmp_path):
    """Seed 0 saved (15 of 30 epochs), seed 1 cut short: the resumed command's bar
    restarted at 0 of 30 (its first frame read 3.3 %, its last 50.0 %). It goes on from
    the 15 kept: 16 of 30 after the first epoch, 100 % at the end."""
    paths = create_run(TrainTimeConfig(name="bar", **{**SMALL, "seeds": [0, 1]}), tmp_path)
    seen = {"epochs": 0}

    def count(event: dict) -> None:
        seen["epochs"] += event["type"] == "epoch"

    assert execute(paths, should_stop=lambda: seen["epochs"] >= 18, on_event=count)["state"] \
        == "stopped"
    assert len(paths.completed_units()) == 3
    code, frames = bar_at_a_terminal(["train-time", "--resume", str(paths.root)])
    assert code == 0
    assert len(frames) == 15  # one per epoch of seed 1, recomputed from its start
    assert frames[0].startswith("[" + "#" * 16 + "-" * 14 + "]  53.3 %  ")
    assert frames[-1].startswith("[" + "#" * 30 + "] 100.0 %  no pruning seed 1 epoch 5")
    assert frames[-1].rstrip().endswith("eta 0 s")


def test_the_bars_remaining_time_is_paced_by_this_sessions_epochs():
    """15 of 30 epochs kept, 5 computed in 10 s: the 10 left take 20 s (counting the
    kept 15 as if they had taken those 10 s said 5 s)."""
    from explorer_core.cli import EpochBar

    bar = EpochBar(total=30, done=15, started=time.time() - 10)
    for kind in ["epoch"] * 5 + ["prune", "unit"]:
        bar.count({"type": kind})
    assert bar.done == 20 and bar.bar() == "[" + "#" * 20 + "-" * 10 + "]  66.7 %"
    assert bar.times() == "elapsed 10 s  eta 20 s"


def test_a_queued_run_counts_the_variant_runs_it_will_save(tmp_path):
    """Queued, the status has no total yet: the page read "0/0 variant runs saved"."""
    cfg = TrainTimeConfig(name="queued", epochs=4, initial_epochs=1, prune_every=1,
                          seeds=[0, 1]).validate()
    prog = progress(create_run(cfg, tmp_path))
    assert prog.state == "queued"
    assert (prog.units_done, prog.total_units) == (0, 2 * len(cfg.variants))


def test_remaining_time_is_paced_by_epochs_not_by_the_workers_start_up(tmp_path):
    """A worker that took 100 s to start, then trained an epoch a second: three of the
    22 units of work done (the shared epochs count a third per variant), 19 left."""
    cfg = TrainTimeConfig(name="eta", epochs=10, initial_epochs=4, prune_every=2,
                          seeds=[0]).validate()
    paths = create_run(cfg, tmp_path)
    now = time.time()
    write_status(paths, "running", started=now - 100.0, total_epochs=total_epochs(cfg))
    events = [{"type": "epoch", "variant": v, "seed": 0, "epoch": ep, "test_acc": 50.0,
               "time": now - 3 + ep} for ep in (1, 2, 3) for v in cfg.variants]
    paths.events.write_text("".join(json.dumps(e) + "\n" for e in events))
    with RunLock(paths):
        eta = progress(paths, now=now).eta
    assert eta == pytest.approx(19.0)


def test_remaining_time_credits_the_epoch_under_way(tmp_path):
    """Epochs of 10 s each: at 5 s into the fourth of 22 units of work, 185 s remain (the
    clock-paced estimate read 19 × 12.5 = 237.5 s)."""
    cfg = TrainTimeConfig(name="eta-mid", epochs=10, initial_epochs=4, prune_every=2,
                          seeds=[0]).validate()
    paths = create_run(cfg, tmp_path)
    t0 = time.time() - 1000.0
    write_status(paths, "running", started=t0 - 5.0, total_epochs=total_epochs(cfg))
    events = [{"type": "epoch", "variant": v, "seed": 0, "epoch": ep, "test_acc": 50.0,
               "time": t0 + 10.0 * ep} for ep in (1, 2, 3) for v in cfg.variants]
    paths.events.write_text("".join(json.dumps(e) + "\n" for e in events))
    with RunLock(paths):
        assert progress(paths, now=t0 + 35.0).eta == pytest.approx(185.0)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_pruning_carries_each_kept_weights_optimiser_moments(arch):
    """After a prune, every kept weight continues with its own Adam moments and step count.

    Checked without the surgery's own bookkeeping: weights are made distinct, so each
    pruned weight is found in the old model by value, and its moments must be the ones
    stored at that position."""
    from explorer_core.data import load_dataset
    from explorer_core.train_time import carry_optimizer, make_task

    cfg = TrainTimeConfig(name="carry", arch=arch, **{**SMALL, "hidden": [20, 12]})
    task = make_task(cfg, load_dataset("digits"))
    torch.manual_seed(0)
    model, spec = task.build()
    tcfg = cfg.train_config(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = task.data.train.x[:64], task.data.train.y[:64]
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    with torch.no_grad():  # distinct values everywhere, so a weight's value names its place
        offset = 0
        for p in model.parameters():
            p.add_(torch.arange(offset, offset + p.numel()).reshape(p.shape).float())
            offset += p.numel()
    pruned = task.prune(model, spec, "l1", seed=0)
    new_opt = carry_optimizer(opt, model, pruned.model, pruned.redo, tcfg)
    old_params, new_params = list(model.parameters()), list(pruned.model.parameters())
    assert len(old_params) == len(new_params)
    assert sum(p.numel() for p in new_params) < sum(p.numel() for p in old_params)
    for old, new in zip(old_params, new_params):
        flat = old.detach().flatten()
        where = (new.detach().flatten()[:, None] == flat[None, :]).nonzero()
        assert where.shape[0] == new.numel()  # every kept weight found, exactly once
        position = where[:, 1]
        before, after = opt.state[old], new_opt.state[new]
        assert int(after["step"]) == int(before["step"]) == 3
        for moment in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(after[moment].flatten(), before[moment].flatten()[position])


def test_a_damaged_final_model_json_is_redone_not_counted(tmp_path, small_run):
    """A truncated final_model.json counted as a finished unit: resume said "6 runs
    complete" and the summary averaged one seed's accuracy as the variant's mean."""
    import json
    import shutil

    paths = TrainTimePaths(shutil.copytree(small_run.root, tmp_path / "copy"))
    want = finals(small_run)
    sidecar = paths.final_model_json("random", 0)
    sidecar.write_text(sidecar.read_text()[:40])  # torn by hand
    assert ("random", 0) not in paths.completed_units()
    assert execute(paths)["state"] == "finished"
    assert finals(paths) == want  # the unit was redone, to the same result
    summary = json.loads(paths.summary.read_text())
    assert summary["variants"]["random"]["test_acc"] == [r["test_acc"] for r in want
                                                         if r["variant"] == "random"]


@pytest.mark.parametrize("damage", [lambda b: b"this is not a safetensors file",
                                    lambda b: b"", lambda b: b[:len(b) // 2]],
                         ids=["junk", "emptied", "cut-short"])
def test_a_damaged_final_model_checkpoint_is_redone_on_resume(tmp_path, small_run, capsys,
                                                              damage):
    """A junk final_model.safetensors counted as done: resume said "3 runs complete" and
    left a checkpoint nothing could load. The unit is computed again, to the same weights,
    and the command names the file."""
    import shutil

    paths = TrainTimePaths(shutil.copytree(small_run.root, tmp_path / "copy"))
    junk = paths.final_model("random", 0)
    junk.write_bytes(damage(junk.read_bytes()))
    kept = {v: paths.final_model(v, 0).read_bytes() for v in ("importance", "none")}
    assert main(["train-time", "--resume", str(paths.root), "--quiet"]) == 0
    redone, original = load_checkpoint(junk), load_checkpoint(small_run.final_model("random", 0))
    for key, tensor in original.model.state_dict().items():
        assert torch.equal(redone.model.state_dict()[key], tensor), key
    assert finals(paths) == finals(small_run)
    captured = capsys.readouterr()
    assert captured.err == f"{junk} is damaged: computing random seed 0 again\n"
    assert captured.out.startswith("finished: 3 runs complete")
    # the intact units were kept, not recomputed
    assert {v: paths.final_model(v, 0).read_bytes() for v in kept} == kept
    assert len(epochs_of(paths)[("random", 0)]) == SMALL["epochs"]


@pytest.mark.parametrize("setting, value", [("lr", 0.01), ("prune_fraction", 0.2),
                                            ("criterion", "l1")])
def test_a_resume_refuses_settings_edited_since_a_seed_was_saved(tmp_path, setting, value):
    """Seed 0 saved, then lr (or the pruning, or the criterion) edited in config.json:
    the resume computed seed 1 with the new settings and averaged the two as one
    experiment. It fails with one line naming the setting; put back, it finishes."""
    settings = dict(seeds=[0, 1], variants=["importance", "none"])
    paths = create_run(TrainTimeConfig(name="edited", **{**SMALL, **settings}), tmp_path)
    seen = {"epochs": 0}

    def count(event: dict) -> None:
        seen["epochs"] += event["type"] == "epoch"

    assert execute(paths, should_stop=lambda: seen["epochs"] >= 13, on_event=count)["state"] \
        == "stopped"
    config = json.loads(paths.config.read_text())
    recorded, config[setting] = config[setting], value
    paths.config.write_text(json.dumps(config))
    # at a terminal: the one line, and the status as it was (the worker wrote "failed")
    stopped = read_status(paths)
    assert main(["train-time", "--resume", str(paths.root)]) == 2
    assert read_status(paths) == stopped
    status = execute(paths)  # a worker, with no terminal, says it in status.json
    assert status["state"] == "failed" and "\n" not in status["message"]
    assert f"seed 0 was computed with {setting}" in status["message"]
    assert paths.completed_units() == [("importance", 0), ("none", 0)]
    config[setting] = recorded
    config["seeds"] = [0, 1, 2]  # more seeds change nothing saved: allowed
    paths.config.write_text(json.dumps(config))
    assert execute(paths)["state"] == "finished"
    assert len(paths.completed_units()) == 6


def test_a_run_whose_charts_cannot_be_rendered_finishes_with_its_summary(tmp_path,
                                                                          refused_pngs):
    """summary.json holds every number the charts draw: a chart vl-convert cannot render
    leaves the run finished, its status naming the missing images."""
    paths = run(tmp_path, "no-pngs")
    status = read_status(paths)
    assert "runs complete" in status["message"] and "not written" in status["message"]
    assert "cannot render this Vega-Lite spec" in status["message"]
    summary = json.loads(paths.summary.read_text())
    assert len(summary["runs"]) == len(TrainTimeConfig(**SMALL).variants)
    assert not list(paths.summary.parent.glob("*.png"))


def test_a_fraction_that_removes_no_unit_is_refused_before_any_folder(tmp_path):
    """0.5 % of 50 and 30 neurons rounds back to 50 and 30: the pruned variants ran like
    the unpruned one while the page said "2 prunes of 0.5 %"."""
    with pytest.raises(ExplorerError) as info:
        create_run(TrainTimeConfig(name="tiny", **{**SMALL, "hidden": [50, 30],
                                                   "prune_fraction": 0.005}), tmp_path)
    assert str(info.value) == ("removing 0.5 % per prune removes no unit of any layer (widths "
                               "50 30: each rounds back to itself); remove more than 1 %")
    assert not any(tmp_path.rglob("config.json"))
    # layers of one unit keep it at any fraction: "remove more than 50 %" was said to 90 %
    with pytest.raises(ExplorerError) as info:
        create_run(TrainTimeConfig(name="ones", **{**SMALL, "hidden": [1],
                                                   "prune_fraction": 0.9}), tmp_path)
    assert str(info.value) == ("every hidden layer has 1 unit (widths 1), and each keeps at "
                               "least one: nothing can be pruned; make a layer wider")
    # one layer that loses a unit is a prune: 2 % of 50 and 30 keeps 49 and 29
    paths = create_run(TrainTimeConfig(name="small-step", **{**SMALL, "hidden": [50, 30],
                                                             "prune_fraction": 0.02}), tmp_path)
    assert paths.config.is_file()


def test_a_classifier_run_whose_config_json_records_a_latent_size_still_resumes(tmp_path,
                                                                               small_run):
    """Versions before `latent` became VAE-only wrote the default latent size into every
    classifier run's config.json and saved records: such a run still loads and resumes
    (the size was never used), while a new classifier config with a latent is refused."""
    import shutil

    paths = TrainTimePaths(shutil.copytree(small_run.root, tmp_path / "old"))
    config = json.loads(paths.config.read_text())
    assert config["latent"] is None  # a classifier records no latent size now
    paths.config.write_text(json.dumps({**config, "latent": 20}))
    for variant, seed in paths.completed_units():
        record = json.loads(paths.final_model_json(variant, seed).read_text())
        assert "latent" not in record["settings"]
        record["settings"]["latent"] = 20
        paths.final_model_json(variant, seed).write_text(json.dumps(record))
    paths.final_model_json("random", 0).unlink()  # one unit left to compute
    assert main(["train-time", "--resume", str(paths.root), "--quiet"]) == 0
    assert finals(paths) == finals(small_run)


@pytest.mark.parametrize("every, epoch_lines", [(1e9, 0), (0.0, 8)])
def test_a_train_time_run_into_a_log_says_an_epoch_when_it_has_been_quiet(
        tmp_path, capsys, monkeypatch, every, epoch_lines):
    """Into a log the bar wrote a line per finished (variant, seed) only: a seed of the
    default 30 epochs × 3 variants went by without one. An epoch gets a line when nothing
    was written for `LOG_EPOCH_EVERY_S`; otherwise the log is as before."""
    from explorer_core import cli

    monkeypatch.setattr(cli, "LOG_EPOCH_EVERY_S", every)
    assert cli.main(["train-time", "--dataset", "digits", "--hidden", "20", "12", "--epochs",
                     "4", "--initial-epochs", "2", "--prune-every", "2", "--seeds", "0",
                     "--variants", "importance", "random", "--name", f"log-{epoch_lines}",
                     "--runs-root", str(tmp_path)]) == 0
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("[")]
    # 2 shared epochs, then 2 per variant: 8 epoch events; 2 (variant, seed) lines
    assert len(lines) == 2 + epoch_lines, lines
    assert "\r" not in "".join(lines) and lines[-1].startswith("[" + "#" * 30 + "] 100.0 %")


def test_prunes_that_can_no_longer_remove_a_unit_are_found_with_the_widths_they_leave():
    """"5 prunes of 99 %" went on naming prunes 2–5, which left 1·1 at 1·1."""
    cfg = TrainTimeConfig(epochs=6, initial_epochs=1, prune_every=1, prune_fraction=0.99,
                          hidden=[50, 30])
    assert cfg.prune_points() == [1, 2, 3, 4, 5] and idle_prunes(cfg) == ([2, 3, 4, 5], [1, 1])
    # 4 → 2 → 1: the third and fourth prunes have nothing left to remove
    cfg = TrainTimeConfig(epochs=6, initial_epochs=2, prune_every=1, prune_fraction=0.5,
                          hidden=[4])
    assert cfg.prune_points() == [2, 3, 4, 5] and idle_prunes(cfg) == ([4, 5], [1])
    # not only at 1 unit: 20 % of 2 rounds to 0, so a layer of 2 keeps 2
    # (5 → 4 → 3 → 2, round(0.8 · 3) = 2, round(0.8 · 2) = 2)
    cfg = TrainTimeConfig(epochs=7, initial_epochs=1, prune_every=1, prune_fraction=0.2,
                          hidden=[5])
    assert idle_prunes(cfg) == ([4, 5, 6], [2])
    # a CNN's convs count: 1-unit hidden layers while its channels still shrink
    cfg = TrainTimeConfig(arch="cnn", epochs=4, initial_epochs=1, prune_every=1,
                          prune_fraction=0.5, hidden=[1], channels=[4, 4])
    assert idle_prunes(cfg) == ([3], [1, 1, 1])
    assert idle_prunes(TrainTimeConfig())[0] == []


def test_a_vae_refuses_the_random_criterion_beside_the_random_variant():
    """Both variants were labelled "random-pruned", and their seeds pooled into one curve
    (refused for classifiers only)."""
    with pytest.raises(ExplorerError, match="second random-pruned one"):
        TrainTimeConfig(task="vae", criterion="random").validate()
    TrainTimeConfig(task="vae", criterion="random", variants=["random", "none"]).validate()
