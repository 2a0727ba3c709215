"""`prune-once`: structurally prune a saved model one time and report what it saved.

Writes `<out>.safetensors` + `<out>.json` (a normal checkpoint: spec with the new
widths) and `<out>.scores.json` (per-layer scores, kept indices, dense vs pruned costs),
so a single pruning step can be scripted, inspected and compared without the app.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any, Mapping

from torch import nn

from ..checkpoint import Checkpoint, checkpoint_paths, load_checkpoint, save_checkpoint
from ..cli import add_overwrite_flag, command, refuse_existing
from ..criteria import CRITERIA, CriterionOptions, get_criterion
from ..data import DATASETS, Split, load_dataset
from ..errors import DatasetUnavailable, ExplorerError, raise_pending_interrupt
from ..fileio import atomic_write_json
from ..imaging import check_recorded_inputs
from ..metrics import LatencyConfig, compare_costs
from ..models import Spec, hidden_widths, input_shape
from ..settings import check_seed, is_number
from ..surgery import PruneConfig, prune_structural

# Sidecar fields that still describe the pruned model (its data and preprocessing);
# metrics, history and iteration numbers of the source model do not.
CARRIED_META = ("dataset", "normalisation", "class_names")


@command("prune-once", "prune a saved model once; write the smaller checkpoint, scores and costs")
def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, required=True, metavar="F",
                   help="model to prune (.safetensors with its .json spec)")
    p.add_argument("--criterion", required=True, metavar="C",
                   help=f"significance criterion: {', '.join(CRITERIA)}")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--keep", type=int, nargs="+", metavar="N",
                     help="units kept per prunable layer (MLP: one per hidden layer)")
    how.add_argument("--ratio", type=float,
                     help="fraction of units removed from every layer, in [0, 1)")
    p.add_argument("--global", dest="global_ranking", action="store_true",
                   help="rank all layers together on per-layer-normalised scores (with "
                        "--keep, the counts' sum is the budget the layers share)")
    p.add_argument("--dataset", choices=sorted(DATASETS),
                   help="calibration data for data-driven criteria (default: the checkpoint's "
                        "dataset, else digits)")
    p.add_argument("--samples", type=int, default=2048,
                   help="calibration samples drawn from the training split for taylor and "
                        "contribution (default 2048); interval_adjoint's input box spans the "
                        "whole training split, as in the iterative, Compare and train-time runs")
    p.add_argument("--seed", type=int, default=0, help="seed for sampling and 'random'")
    p.add_argument("--latency-batch", type=int, default=256,
                   help="batch size of the CPU latency measurement (default 256)")
    p.add_argument("--latency-repeats", type=int, default=10,
                   help="timed repeats; the median is reported (default 10)")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.add_argument("--out", required=True, metavar="G",
                   help="output stem: writes G.safetensors, G.json and G.scores.json; a "
                        "folder (G/ or an existing one) gets <checkpoint name>-pruned.* inside")
    add_overwrite_flag(p, "G.safetensors, G.json and G.scores.json")
    p.set_defaults(run=run)


def _dataset_name(args: argparse.Namespace, meta: Mapping[str, Any]) -> str:
    if args.dataset:
        return args.dataset
    ds = meta.get("dataset")
    if isinstance(ds, Mapping):
        ds = ds.get("name")
    return ds if isinstance(ds, str) and ds in DATASETS else "digits"


def _calibration(args: argparse.Namespace, spec: Spec, meta: Mapping[str, Any]) -> tuple[Split, str]:
    name = _dataset_name(args, meta)
    try:
        data = load_dataset(name, seed=args.seed)
    except DatasetUnavailable as exc:
        raise ExplorerError(f"criterion {args.criterion!r} needs calibration data, but dataset "
                            f"{name!r} is unavailable: {exc}") from None
    want, have = input_shape(spec), data.info.input_shape
    if math.prod(want) != math.prod(have):  # an MLP flattens, so only the size must match
        raise ExplorerError(f"dataset {name!r} has inputs {'×'.join(map(str, have))} but the "
                            f"model expects {'×'.join(map(str, want))}; pick --dataset")
    # the criteria draw their own `max_samples` (IASA takes every sample for its box)
    return data.train, name


def _samples_used(args: argparse.Namespace, data: Split | None) -> int | None:
    """Training samples the criterion read: IASA's box spans all of them."""
    if data is None:
        return None
    return len(data) if args.criterion == "interval_adjoint" else min(args.samples, len(data))


def out_stem(out: str, checkpoint: Path) -> Path:
    """The stem `--out` names. A folder — written with a trailing separator, or one that
    exists — gets the files inside, named after the checkpoint: `--out results/` wrote
    results.safetensors beside the folder (argparse's Path drops the slash)."""
    if not out.strip():  # '' wrote <checkpoint>-pruned.* into the working folder
        raise ExplorerError("--out is empty: name the checkpoint to write, or a folder")
    path = Path(out)
    if out.endswith(("/", os.sep)) or path.is_dir():
        return path / f"{_input_files(checkpoint)[0].with_suffix('').name}-pruned"
    return path


def _stem(path: Path) -> Path:
    """`--out` without the suffix `save_checkpoint` replaces, so the scores file is named
    like the checkpoint: `--out small.pth` wrote small.safetensors beside
    small.pth.scores.json."""
    return checkpoint_paths(path)[0].with_suffix("")


def _scores_path(stem: Path) -> Path:
    return stem.with_name(stem.name + ".scores.json")


def _input_files(checkpoint: Path) -> tuple[Path, Path]:
    """(weights, sidecar) that `load_checkpoint` reads for `--checkpoint`: a sidecar
    names its weights, and the spec always comes from the sidecar beside the weights."""
    tensor = checkpoint_paths(checkpoint)[0] if checkpoint.suffix == ".json" else checkpoint
    return tensor, checkpoint_paths(tensor)[1]


def _output_files(out: Path) -> tuple[Path, Path, Path]:
    """Every file `run` writes for `--out` (the names `save_checkpoint` gives, and the scores)."""
    stem = _stem(out)
    return (*checkpoint_paths(stem), _scores_path(stem))


def refuse_overwriting_input(checkpoint: Path, out: Path) -> None:
    """Refuse an `--out` that names the checkpoint being pruned, however it is spelled.

    `--out model` beside `model.safetensors` replaced the dense model and its sidecar by
    the pruned one and exited 0: the model a person prunes again at another ratio was
    gone. Paths are compared resolved, so `./model.safetensors`, an absolute path, the
    `.json` sidecar's name and a symlink to either are the same file.
    """
    inputs = {p.resolve() for p in _input_files(checkpoint)}
    if any(p.resolve() in inputs for p in _output_files(out)):
        raise ExplorerError(f"--out {out} would overwrite the checkpoint being pruned "
                            f"({checkpoint}); pick another name")


def _percent_retained(source: Checkpoint, pruned: nn.Module) -> float:
    """The pruned model's share of hidden units, of the source's dense model: the source's
    own share (100 % when it records none) times what this pruning kept. Without it the
    Inspect page read "Hidden kept —" for every `prune-once` output.

    A masked source (a sweep's weight or unstructured cell) records its share of non-zero
    weights, and masks remove no unit: it has all of its units (a 90 %-masked MLP's 11.88
    times the half kept made "5.94 % of hidden units" of a model that keeps 50 %)."""
    from ..catalog import is_masked_record

    before = sum(hidden_widths(source.model)) or 1
    share = source.meta.get("percent_retained")
    share = float(share) if is_number(share) and not is_masked_record(source.meta) else 100.0
    return share * sum(hidden_widths(pruned)) / before


def run(args: argparse.Namespace) -> int:
    if args.samples < 1:
        raise ExplorerError(f"--samples must be ≥ 1, got {args.samples}")
    check_seed(args.seed, "--seed")  # k-means refused -1 with a 37-line traceback
    out_arg = out_stem(args.out, args.checkpoint)
    refuse_overwriting_input(args.checkpoint, out_arg)  # even with --overwrite
    refuse_existing(_output_files(out_arg), args.overwrite)
    criterion = get_criterion(args.criterion)
    options = CriterionOptions(seed=args.seed, max_samples=args.samples)
    config = PruneConfig(args.criterion, keep=args.keep, ratio=args.ratio,
                         global_ranking=args.global_ranking, options=options).validate()
    latency = None if args.no_latency else LatencyConfig(args.latency_batch, args.latency_repeats,
                                                         warmup=2).validate()
    ck = load_checkpoint(args.checkpoint)
    check_recorded_inputs(ck.spec, ck.meta)  # which the output carries
    data, dataset = None, None
    if criterion.needs_data:
        data, dataset = _calibration(args, ck.spec, ck.meta)
    result = prune_structural(ck.model, ck.spec, config, data)
    costs = compare_costs(ck.model, result.model, input_shape(ck.spec), latency)
    raise_pending_interrupt()  # a Ctrl-C in an import of the work (torch's compiler): no files

    out = _stem(out_arg)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {"criterion": args.criterion, "keep": args.keep, "ratio": args.ratio,
                "global_ranking": args.global_ranking, "dataset": dataset,
                "samples": _samples_used(args, data), "seed": args.seed}
    meta = {k: ck.meta[k] for k in CARRIED_META if k in ck.meta}
    meta.update({"pruned_from": str(args.checkpoint), "prune": settings,
                 "widths": result.widths, "percent_retained": _percent_retained(ck, result.model)})
    tensor_path = save_checkpoint(result.model, result.spec, out, meta)
    scores_path = atomic_write_json(_scores_path(out), {
        "source": str(args.checkpoint), **settings,
        "layers": result.to_dict(), "metrics": costs.to_dict()})

    r = costs.ratios()
    print(f"wrote {tensor_path}, {checkpoint_paths(tensor_path)[1].name} and {scores_path.name}")
    print(f"params {costs.dense.params:,} → {costs.pruned.params:,}  "
          f"MACs/sample {costs.dense.macs:,} → {costs.pruned.macs:,} "
          # keeping every unit: "(1.00× fewer)" read as a reduction
          + (f"({r['mac_reduction']:.2f}× fewer)" if costs.pruned.macs < costs.dense.macs
             else "(as many)")
          + (f"  latency speed-up {r['speedup']:.2f}×" if r["speedup"] else ""))
    return 0
