"""`python -m explorer_core retention`: files on disk, one-line errors, documented options."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "explorer_core", "retention", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which must follow the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_writes_retain_txt_and_both_pngs(tmp_path):
    out = tmp_path / "schedule"
    result = run_cli("--widths", "256", "64", "--q", "0.8", "--iterations", "31",
                     "--kind", "geometric", "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = (out / "retain.txt").read_text().splitlines()
    assert lines[0] == "Iteration h1NodesRetained h2NodesRetained perNodesRetained"
    assert "7 54 13 20.9375" in lines
    assert "8 43 11 16.875" in lines
    assert lines[-1].split()[1:3] == ["1", "1"]
    for name in ("pruneNodesIteration.png", "pruneNodesDistribution.png"):
        width, height = png_size(out / name)
        assert width > 300 and height > 200
    assert sorted(p.name for p in out.iterdir()) == [
        "pruneNodesDistribution.png", "pruneNodesIteration.png", "retain.txt"]


def test_widths_from_a_checkpoint_sidecar_without_plots(tmp_path):
    sidecar = tmp_path / "best_model.json"
    sidecar.write_text(json.dumps({"spec": {"arch": "mlp", "in": 64, "hidden": [40, 10],
                                            "out": 10}}))
    result = run_cli("--spec", str(sidecar), "--q", "0.5", "--no-plots", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    # 40, 10 halved each time; 2.5 rounds to 2 (half to even) and widths never drop below 1
    assert (tmp_path / "retain.txt").read_text() == (
        "Iteration h1NodesRetained h2NodesRetained perNodesRetained\n"
        "0 40 10 100\n1 20 5 50\n2 10 2 24\n3 5 1 12\n4 2 1 6\n5 1 1 4\n")
    assert not list(tmp_path.glob("*.png"))


def test_a_conv_nets_widths_are_written_with_a_note_that_they_are_no_mlps(tmp_path, capsys):
    """A CNN's spec gives its conv channels, then its hidden layer: `prune --retain` would
    read the table as a three-layer MLP's, which the command now says (an MLP's spec
    gets no such note)."""
    sidecar = tmp_path / "cnn.json"
    sidecar.write_text(json.dumps({"spec": {"arch": "cnn", "in_channels": 1, "image_size": 8,
                                            "out": 10, "channels": [8, 16], "hidden": [128]}}))
    code, out, err = run_main(["--spec", str(sidecar), "--no-plots", "--out", str(tmp_path)],
                              capsys)
    assert code == 0
    assert (tmp_path / "retain.txt").read_text().splitlines()[:2] == [
        "Iteration h1NodesRetained h2NodesRetained h3NodesRetained perNodesRetained",
        "0 8 16 128 100"]
    assert err == ("note: cnn.json is a CNN's spec: these are its conv channels, then its "
                   "hidden layers; `prune --retain` trains an MLP and would take them for its "
                   "hidden widths\n")
    mlp = tmp_path / "mlp.json"
    mlp.write_text(json.dumps({"arch": "mlp", "in": 64, "hidden": [40, 10], "out": 10}))
    code, _, err = run_main(["--spec", str(mlp), "--no-plots", "--out", str(tmp_path / "m")],
                            capsys)
    assert (code, err) == (0, "")


def test_bad_q_in_a_real_process_exits_2_with_one_line_and_no_traceback(tmp_path):
    result = run_cli("--q", "1.5", "--out", str(tmp_path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == "error: q must lie strictly between 0 and 1, got 1.5"
    assert not (tmp_path / "retain.txt").exists()


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    """In-process `main` (fast): argparse errors leave through SystemExit, ours by return."""
    from explorer_core.cli import main

    try:
        code = main(["retention", *args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("args,needle", [
    (["--q", "0"], "q must lie strictly between 0 and 1"),
    (["--q", "abc"], "--q"),
    (["--widths", "256", "0"], "width"),
    (["--widths", "256", "x"], "--widths"),
    (["--iterations", "0"], "iterations"),
    (["--kind", "exponential"], "--kind"),
    (["--spec", "missing.json"], "missing.json"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, args, needle):
    code, out, err = run_main([*args, "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert out == ""
    assert "\n" not in err.strip()
    assert needle in err
    assert not (tmp_path / "out" / "retain.txt").exists()


def test_a_spec_that_is_not_json_exits_2(tmp_path, capsys):
    weights = tmp_path / "model.json"
    weights.write_bytes(b"\x80\x04\x95 pickled bytes")
    code, _, err = run_main(["--spec", str(weights), "--out", str(tmp_path)], capsys)
    assert code == 2
    assert err.strip() == f"error: {weights} is not a JSON file"


def test_help_documents_every_option(capsys):
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0
    for option in ("--widths", "--spec", "--q", "--iterations", "--kind", "--out",
                   "--no-plots"):
        assert option in out
    for kind in ("geometric", "linear", "cubic"):
        assert kind in out
    for name in ("retain.txt", "pruneNodesIteration.png", "pruneNodesDistribution.png"):
        assert name in out


def test_every_retention_option_has_help_text():
    import argparse

    from explorer_core.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    retention = sub.choices["retention"]
    options = [a for a in retention._actions if a.option_strings]
    assert len(options) >= 7
    for action in options:
        assert action.help and len(action.help) > 10, action.option_strings


@pytest.mark.parametrize("out", ["a-file", "a-file/sub"])
def test_an_output_folder_blocked_by_a_file_exits_2_with_one_line(tmp_path, out):
    """The line names the folder given and, when it is another, the file in the way."""
    (tmp_path / "a-file").write_text("not a folder")
    result = run_cli("--out", str(tmp_path / out))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    why = ("a file of that name is in the way" if out == "a-file" else
           f"{tmp_path / 'a-file'} is a file in the way")
    assert result.stderr.strip() == f"error: cannot write into {tmp_path / out}: {why} " \
                                    "(need a folder)"


def test_spec_and_widths_together_are_refused(tmp_path, capsys):
    """`--widths` beside `--spec` was silently ignored: the table came from the spec
    while the command line asked for other widths."""
    sidecar = tmp_path / "best_model.json"
    sidecar.write_text(json.dumps({"spec": {"arch": "mlp", "in": 64, "hidden": [40, 10],
                                            "out": 10}}))
    code, out, err = run_main(["--spec", str(sidecar), "--widths", "256", "64", "--no-plots",
                               "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and out == ""
    assert err.strip() == "error: give the widths with --spec or with --widths, not both"
    assert not (tmp_path / "out").exists()


def test_charts_that_cannot_be_rendered_leave_retain_txt_and_say_so_in_one_line(
        tmp_path, capsys, refused_pngs):
    code, out, err = run_main(["--widths", "32", "16", "--out", str(tmp_path)], capsys)
    assert code == 2
    assert "retain.txt" in out
    assert "\n" not in err.strip() and "Traceback" not in err, err
    for name in ("pruneNodesIteration.png", "pruneNodesDistribution.png"):
        assert f"{name} not written" in err, err
    assert (tmp_path / "retain.txt").is_file() and not list(tmp_path.glob("*.png"))
    assert err.startswith("error: retain.txt written, its plots not (")
    assert err.strip().endswith("rerun with --overwrite to draw them")


def test_plots_a_full_disk_refuses_say_retain_txt_is_written_and_how_to_redo_them(
        tmp_path, capsys, monkeypatch):
    """A full disk said only "cannot write …/pruneNodesDistribution.png: No space left on
    device"; the rerun was then refused over the retain.txt written, unexplained."""
    import errno

    from explorer_core import charts

    def full(path, data, durable=True):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(charts, "atomic_write_bytes", full)
    code, out, err = run_main(["--widths", "32", "16", "--out", str(tmp_path)], capsys)
    assert code == 2 and (tmp_path / "retain.txt").is_file()
    assert err == (f"error: retain.txt written, its plots not (cannot write "
                   f"{tmp_path / 'pruneNodesIteration.png'}: No space left on device); rerun "
                   "with --overwrite to draw them\n")
    monkeypatch.undo()
    code, out, err = run_main(["--widths", "32", "16", "--out", str(tmp_path), "--overwrite"],
                              capsys)
    assert code == 0 and len(list(tmp_path.glob("*.png"))) == 2


def test_a_vae_spec_is_named_as_such_and_one_iteration_is_singular(tmp_path, capsys):
    """A VAE sidecar was said to list "no prunable layer widths (a single-layer model has
    none…)" though it has them; a one-row table printed "(1 iterations, …)"."""
    from explorer_core.cli import main

    sidecar = tmp_path / "vae.json"
    sidecar.write_text(json.dumps({"spec": {"arch": "fc_vae", "in": 64, "latent": 4,
                                            "enc_hidden": [26], "dec_hidden": [26]}}))
    assert main(["retention", "--spec", str(sidecar), "--no-plots", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "error: the fc_vae spec is a variational autoencoder's (a train-time VAE run); a "
        "retention schedule plans an iterative pruning run of a classifier\n")
    assert main(["retention", "--widths", "8", "--iterations", "1", "--no-plots",
                 "--out", str(tmp_path)]) == 0
    assert "(1 iteration, ends at 100 % kept)" in capsys.readouterr().out


def test_an_earlier_result_is_refused_and_overwrite_removes_its_plots(tmp_path, capsys):
    """A second run into the same folder replaced retain.txt without a word, and with
    --no-plots left the first run's pictures beside a table they did not draw."""
    pngs = ("pruneNodesIteration.png", "pruneNodesDistribution.png")
    assert run_main(["--widths", "32", "16", "--out", str(tmp_path)], capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == sorted([*pngs, "retain.txt"])
    code, out, err = run_main(["--widths", "8", "--no-plots", "--out", str(tmp_path)], capsys)
    assert (code, out) == (2, "")
    assert err == (f"error: {tmp_path / 'retain.txt'} already exists (an earlier result); "
                   "add --overwrite to replace it, or pick another --out\n")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    code, out, err = run_main(["--widths", "8", "--no-plots", "--overwrite",
                               "--out", str(tmp_path)], capsys)
    assert (code, err) == (0, "")
    assert [p.name for p in tmp_path.iterdir()] == ["retain.txt"]
    assert (tmp_path / "retain.txt").read_text().splitlines()[1] == "0 8 100"
    for name in pngs:
        assert f"removed {tmp_path / name} (it drew the table this retain.txt replaces)" in out


def test_an_earlier_plot_alone_is_refused_too(tmp_path, capsys):
    """A plot left from an earlier run (its retain.txt deleted) would stand beside the new
    table with --no-plots, or be replaced silently."""
    (tmp_path / "pruneNodesIteration.png").write_bytes(PNG_SIGNATURE)
    code, _, err = run_main(["--widths", "8", "--no-plots", "--out", str(tmp_path)], capsys)
    assert code == 2 and "pruneNodesIteration.png already exists" in err
    assert not (tmp_path / "retain.txt").exists()


@pytest.mark.parametrize("kind", ["linear", "cubic"])
def test_q_beside_a_ramp_is_refused(tmp_path, capsys, kind):
    """The ramps never read q: `--q 0.5 --kind linear` wrote the linear table as if q had
    not been typed. Without --q, a ramp runs as before; q still works for geometric."""
    code, out, err = run_main(["--widths", "8", "--q", "0.5", "--kind", kind, "--no-plots",
                               "--out", str(tmp_path)], capsys)
    assert (code, out) == (2, "")
    assert err == (f"error: --q sets the geometric schedule's keep factor; the {kind} "
                   "schedule ramps to 1 neuron without it: drop --q\n")
    assert not (tmp_path / "retain.txt").exists()
    assert run_main(["--widths", "8", "--kind", kind, "--no-plots", "--out",
                     str(tmp_path / "ramp")], capsys)[0] == 0
    assert run_main(["--widths", "8", "--q", "0.5", "--no-plots", "--out",
                     str(tmp_path / "geo")], capsys)[0] == 0
    assert (tmp_path / "geo" / "retain.txt").read_text().splitlines()[2] == "1 4 50"
