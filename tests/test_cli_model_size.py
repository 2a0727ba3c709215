"""Models too large to build, in real processes: `compare`, `prune` and `train-time` with
hidden widths of 200 000 and 100 000 (20 G parameters, an 80 GB allocation) ended in a
39-line torch traceback, and `prune` / `train-time` left a "failed" run folder behind.
Now each is refused up front with one line naming the parameters and memory it would
need, before any folder is made (`settings.MAX_PARAMETERS`)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

HUGE = ["200000", "100000"]
COMMANDS = {
    "compare --estimate": ["compare", "--mlp-hidden", *HUGE, "--ratios", "0", "--estimate"],
    "compare": ["compare", "--mlp-hidden", *HUGE, "--ratios", "0", "--dense-epochs", "1",
                "--latency-repeats", "0", "--quiet", "--no-cache"],
    "prune": ["prune", "--hidden", *HUGE, "--q", "0.5", "--iterations", "2",
              "--dense-epochs", "1", "--quiet", "--no-cache"],
    "train-time": ["train-time", "--hidden", *HUGE, "--epochs", "2", "--initial-epochs", "1",
                   "--quiet"],
    "train-time vae": ["train-time", "--task", "vae", "--hidden", *HUGE, "--epochs", "2",
                       "--initial-epochs", "1", "--quiet"],
}


def run_cli(args: list[str], scratch: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EXPLORER_RUNS": str(scratch / "runs"),
           "EXPLORER_SWEEPS": str(scratch / "sweeps"),
           "EXPLORER_CACHE": str(scratch / "cache")}
    # a timeout: the code before this fix tried to allocate the model
    return subprocess.run([sys.executable, "-m", "explorer_core", *args], cwd=scratch,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_model_too_large_is_refused_in_one_line_before_any_folder(tmp_path, name):
    result = run_cli(COMMANDS[name], tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    what = "the VAE 64-200000-100000-20" if name.endswith("vae") else \
        "the MLP 64-200000-100000-10"  # Digits: 8×8 inputs, 10 classes
    assert lines[0].startswith(f"error: {what}"), lines[0]
    count = "40,032,200,104" if name.endswith("vae") else "20,014,100,010"
    assert f"would have {count} parameters" in lines[0]
    assert "GB of float32 weights" in lines[0] and "at most 100,000,000" in lines[0]
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no runs/, sweeps/, cache/

