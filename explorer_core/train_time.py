"""Train-time pruning: shrink a network while it learns, against random and no pruning.

A network trains for `initial_epochs`, then after every `prune_every` epochs loses
`prune_fraction` of each hidden layer's neurons (conv channels for a CNN) and keeps
training, so the last prune is always followed by training. Three variants run on the
same seeds and the same schedule:

* `importance`: the lowest-scoring units of each layer go (criterion `contribution` by
  default, any core criterion for classifiers; contribution / l1 / l2 for the VAE),
* `random`: the same number of units per layer, chosen by seeded random scores,
* `none`: no pruning — the reference curve.

Until the first prune the three are the same computation, so it runs once per seed
and each variant continues from a copy of that state (model, optimiser, data order,
learning-rate step); the variants then train side by side, one epoch each in turn, so
live charts grow all curves together. A variant's curve is exactly what it would be
if it ran alone, and bit-for-bit repeatable on a CPU. The learning-rate schedule spans
the whole run; after each prune the optimiser is rebuilt for the new (smaller)
parameters and keeps the moments of the units that stay (`carry_optimizer`).

Two tasks share the loop: "classifier" (MLP or CNN, cross-entropy, accuracy) and "vae"
(a fully connected VAE, reconstruction + KL, image grids; see `vae.py`). Runs live in
`rundir.TrainTimePaths` folders and run in a background worker (`jobs.launch(paths,
"train-time")`). A seed's variants are saved together when the seed ends; a stopped or
killed run resumes with the seeds not yet saved, recomputed from their start, which
gives exactly the numbers of an uninterrupted run.
"""
from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from . import __version__, vae
from .checkpoint import checkpoint_intact, refuse_diverged, save_checkpoint
from .criteria import CRITERIA, CriterionOptions
from .data import Dataset, availability, check_val_fraction, get_info, load_dataset
from .errors import Cancelled, ExplorerError
from .fileio import atomic_write_bytes, atomic_write_json, write_table
from .jobs import worker_session
from .models import (build_model, count_parameters, prunable_layers, spec_for_dataset,
                     validate_spec)
from .ranking import keep_for_ratio
from .results import RunProgress, images_note, paced_remaining, run_progress
from .rundir import (TRAIN_TIME_RUN, TrainTimePaths, WrongKindError, append_event, check_kind,
                     default_train_time_root, failed_run, filter_events, new_run_dir,
                     read_events, read_json, read_record, read_status, session_start,
                     write_status)
from .schedule import MAX_WIDTH
from .settings import (MAX_SEED, check_epochs, check_fields, counted, edited_after_start,
                       first_edited, from_json, shown)
from .surgery import PruneConfig, prune_structural, replay_removal
# The epoch loop and the step-wise LR schedule of the training engine: train-time pruning
# needs them across optimiser rebuilds, which `training.train` (one optimiser per call,
# best-epoch restore) does not offer.
from .training import (OPTIMIZERS, TrainConfig, _StepSchedule, _train_epoch,
                       cpu_threads_for, evaluate, lower_the_rate, resolve_device, seed_torch)

TASKS = ("classifier", "vae")
VARIANTS = ("importance", "random", "none")
CLASSIFIER_ARCHS = ("mlp", "cnn")
DEFAULT_HIDDEN = {"mlp": [50, 30], "cnn": [128], "vae": vae.DEFAULT_HIDDEN}
DEFAULT_CHANNELS = [16, 32]
# The share of each hidden layer one prune removes, on the page and in the CLI alike (the
# page took 0.5–99 % while the CLI ran 99.5 %).
MIN_PRUNE_FRACTION, MAX_PRUNE_FRACTION = 0.005, 0.99
SPLIT_SEED = 0  # the train / validation split is the same for every seed of a run


@dataclass
class TrainTimeConfig:
    """Everything that defines a train-time pruning run (saved as config.json).

    `hidden`: MLP hidden widths (default 50, 30 as in the original study), the CNN's
    fully connected widths (default 128), or the VAE encoder's widths (default 256,
    mirrored by the decoder). `channels`: the CNN's conv channels (default 16, 32).
    `latent`: the VAE's latent size (default 20). Settings of one model only are None
    (the default) for the others, and refused when given for them: a classifier took
    `"latent": 8` from a config file silently and recorded it as if it had been used.
    `seeds`: every variant runs once per seed; charts show the mean over seeds.
    """
    name: str = "train-time"
    task: str = "classifier"
    dataset: str = "digits"
    arch: str = "mlp"
    hidden: list[int] | None = None
    channels: list[int] | None = None
    latent: int | None = None
    # Digits: 7 prunes of 10 % (50-30 → 23-14) in a few seconds; on Digits the
    # contribution-pruned MLP then ends ~6 points above the random-pruned one (5 seeds)
    epochs: int = 30
    initial_epochs: int = 10
    prune_every: int = 3
    prune_fraction: float = 0.1
    criterion: str = "contribution"
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    seeds: list[int] = field(default_factory=lambda: [0])
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    lr_schedule: str = "stable_decay"
    val_fraction: float = 0.1
    calibration_samples: int = 2048
    threads: int = 0
    device: str = "auto"

    # -- derived settings
    def hidden_widths(self) -> list[int]:
        key = "vae" if self.task == "vae" else self.arch
        return list(self.hidden) if self.hidden is not None else list(DEFAULT_HIDDEN[key])

    @property
    def is_cnn(self) -> bool:
        """A CNN classifier: the one model with conv channels, pruned with its layers."""
        return self.task == "classifier" and self.arch == "cnn"

    def conv_channels(self) -> list[int]:
        return list(self.channels) if self.channels is not None else list(DEFAULT_CHANNELS)

    def latent_size(self) -> int:
        return self.latent if self.latent is not None else vae.DEFAULT_LATENT

    def classifier_spec(self, info=None) -> dict:
        """The classifier's model spec on the dataset (`info`: its DatasetInfo, looked up
        when not given): what the run builds, and what `validate` checks before a run
        folder is made."""
        info = get_info(self.dataset) if info is None else info
        spec = spec_for_dataset(self.arch, info, self.hidden_widths())
        if self.arch == "cnn":
            spec["channels"] = self.conv_channels()
        return spec

    def prune_points(self) -> list[int]:
        """Epochs after which a prune happens (1-based); training always follows the last."""
        return list(range(self.initial_epochs, self.epochs, self.prune_every))

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                           optimizer=self.optimizer, weight_decay=self.weight_decay, seed=seed,
                           lr_schedule=self.lr_schedule, threads=self.threads,
                           device=self.device)

    def labels(self) -> dict[str, str]:
        """Display names of the variants: '<criterion>-pruned', 'random-pruned', 'no pruning'."""
        return {"importance": f"{self.criterion}-pruned", "random": "random-pruned",
                "none": "no pruning"}

    def validate(self) -> "TrainTimeConfig":
        """Every bad setting becomes a one-line ExplorerError (configs come from JSON files).

        The checks of this class's own settings come first: they word the message per
        setting and are safe for any type; then every field's type (`check_fields`),
        before the training settings, whose checks assume them."""
        _choice(self.task, TASKS, "task")
        if not isinstance(self.dataset, str):
            raise ExplorerError(f"dataset must be a name, got {self.dataset!r}")
        get_info(self.dataset)
        if self.task == "classifier":
            _choice(self.arch, CLASSIFIER_ARCHS, "the model for train-time pruning")
            _choice(self.criterion, tuple(CRITERIA), "criterion")
            if self.arch != "cnn" and self.channels is not None:
                raise ExplorerError(f"conv channels apply to the CNN only; the {self.arch} has "
                                    "none (drop them)")
            if self.latent is not None:
                raise ExplorerError(f"the latent size applies to the VAE only; the {self.arch} "
                                    "classifier has none (drop it, or set the task to vae)")
        else:
            # not recorded in config.json as if they had been used
            if self.arch != "mlp":
                raise ExplorerError(f"the VAE is fully connected: the model {self.arch!r} "
                                    "applies to classifiers only")
            if self.channels is not None:
                raise ExplorerError("the VAE is fully connected: conv channels apply to the "
                                    "CNN classifier only")
            if not isinstance(self.criterion, str):
                raise ExplorerError(f"criterion must be a name, got {self.criterion!r}")
            vae.check_criterion(self.criterion)
            if self.latent is not None:
                _whole(self.latent, "latent size", 1)
        if self.criterion == "random" and isinstance(self.variants, list) and \
                {"importance", "random"} <= {v for v in self.variants if isinstance(v, str)}:
            # two variants of one name (a VAE's too): their seeds were pooled into one curve
            raise ExplorerError("with the criterion random, the criterion-pruned variant is "
                                "a second random-pruned one: pick a ranking criterion or "
                                "drop one of the two variants")
        if self.hidden is not None:
            # the CNN may go straight from its convs to the logits; MLP and VAE need a layer
            _whole_list(self.hidden, "hidden widths", maximum=MAX_WIDTH,
                        empty_ok=self.is_cnn)
        if self.is_cnn and self.channels is not None:
            _whole_list(self.channels, "conv channels", maximum=MAX_WIDTH)
        # the model's size, from its widths (`settings.MAX_PARAMETERS`): one too large to
        # allocate failed with a traceback in a run folder already made
        if self.task == "classifier":
            validate_spec(self.classifier_spec())
        else:
            vae.check_size(get_info(self.dataset).features, self.hidden_widths(),
                           self.latent_size())
        check_epochs(self.epochs, "total epochs", 2)
        _whole(self.initial_epochs, "initial epochs", 1)
        _whole(self.prune_every, "prune every k epochs", 1)
        if self.initial_epochs >= self.epochs:
            raise ExplorerError(f"initial epochs ({self.initial_epochs}) must be fewer than the "
                                f"total epochs ({self.epochs}): the first prune needs training "
                                "after it")
        f = self.prune_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or \
                not MIN_PRUNE_FRACTION <= f <= MAX_PRUNE_FRACTION:
            raise ExplorerError(f"the fraction of each hidden layer removed per prune must be "
                                f"from {MIN_PRUNE_FRACTION:g} to {MAX_PRUNE_FRACTION:g} (0.1 = "
                                f"10 %; the 'no pruning' variant is the control without "
                                f"pruning), got {f!r}")
        if not isinstance(self.variants, list) or not self.variants or \
                any(v not in VARIANTS for v in self.variants) or \
                len(set(self.variants)) != len(self.variants):
            raise ExplorerError(f"variants must be a list of distinct names among "
                                f"{', '.join(VARIANTS)}; got {self.variants!r}")
        _whole_list(self.seeds, "seeds", minimum=0, maximum=MAX_SEED)
        if len(set(self.seeds)) != len(self.seeds):
            raise ExplorerError(f"seeds must be distinct, got {self.seeds!r}")
        _whole(self.calibration_samples, "calibration samples", 1)
        check_val_fraction(self.val_fraction, self.dataset)
        check_fields(self, "train-time")
        self.train_config(self.seeds[0]).validate()
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainTimeConfig":
        """A JSON config or a run folder's config.json, every value of its setting's type
        (`settings.from_json`); `"name": null` means no name given."""
        return from_json(cls, d, "train-time", ignore=("versions", "created", "spec"),
                         null_is_default=("name",))


def _whole(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ExplorerError(f"{what} must be a whole number ≥ {minimum}, got {value!r}")
    return value


def _whole_list(values: Any, what: str, minimum: int = 1, empty_ok: bool = False,
                maximum: int | None = None) -> list[int]:
    """`values` if a list of whole numbers within minimum … maximum (`maximum`: widths
    and seeds past it ran out of memory or failed mid-run)."""
    if not isinstance(values, list) or (not values and not empty_ok):
        raise ExplorerError(f"{what} must be a {'' if empty_ok else 'non-empty '}list of whole "
                            f"numbers ≥ {minimum}, got {shown(values)}")
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < minimum]
    if bad:  # the entries, as the other pages say it ("got [0]" read as Python's list)
        raise ExplorerError(f"{what} must be whole numbers ≥ {minimum}, got "
                            f"{', '.join(shown(v) for v in bad)}")
    if maximum is not None and any(v > maximum for v in values):
        raise ExplorerError(f"{what} must be at most {maximum:,}, got {shown(values)}")
    return values


def _choice(value: Any, options: tuple[str, ...], what: str) -> str:
    if not isinstance(value, str) or value not in options:
        raise ExplorerError(f"{what} must be one of {', '.join(options)}; got {value!r}")
    return value


def planned_widths(dense: list[int], cfg: TrainTimeConfig) -> list[list[int]]:
    """Widths per epoch (index 0 = epoch 1) of a pruned variant under `cfg`'s schedule.

    Each prune keeps `max(1, round((1 - fraction)·n))` units of every layer (the
    ranking module's rule), so the schedule is known before the run starts.
    """
    points = set(cfg.prune_points())
    widths, out = list(dense), []
    for epoch in range(1, cfg.epochs + 1):
        out.append(list(widths))
        if epoch in points:
            widths = [keep_for_ratio(w, cfg.prune_fraction) for w in widths]
    return out


def idle_prunes(cfg: TrainTimeConfig) -> tuple[list[int], list[int]]:
    """(the prune points, epochs, at which no layer loses a unit any more; the widths
    they leave). "5 prunes of 99 %" went on naming prunes 2–5, which left 1·1 at 1·1.
    Not only at 1: each layer keeps `keep_for_ratio` units, and at 20 % a layer of 2
    rounds back to 2. Once a prune removes nothing, so do all after it. Read off
    `planned_widths` (index e: the widths during epoch e + 1, after a prune at epoch e)."""
    plan = planned_widths(_prunable_widths(cfg), cfg)
    return [p for p in cfg.prune_points() if plan[p] == plan[p - 1]], plan[-1]


def _prunable_widths(cfg: TrainTimeConfig) -> list[int]:
    """Units of every layer a prune removes from: the hidden layers, and a CNN's convs."""
    return cfg.hidden_widths() + (cfg.conv_channels() if cfg.is_cnn else [])


# ------------------------------------------------------------------ tasks

class ClassifierTask:
    """MLP / CNN classifiers: cross-entropy, accuracy, structural pruning by any criterion."""

    name = "classifier"
    curve_metrics = ("test_acc", "test_loss")

    def __init__(self, cfg: TrainTimeConfig, data: Dataset):
        self.cfg, self.data = cfg, data

    def build(self) -> tuple[nn.Module, dict]:
        spec = self.cfg.classifier_spec(self.data.info)
        return build_model(spec), spec

    @property
    def train_size(self) -> int:
        return len(self.data.train)

    @staticmethod
    def widths(model: nn.Module) -> dict[str, int]:
        """Units per prunable layer, in module order (neurons of a Linear, channels of a conv)."""
        out = {}
        for name in prunable_layers(model):
            m = model.get_submodule(name)
            out[name] = m.out_features if isinstance(m, nn.Linear) else m.out_channels
        return out

    def train_epoch(self, model, opt, tcfg, order, noise, device, stop, schedule) -> dict:
        loss, acc = _train_epoch(model, opt, self.data.train, tcfg, order, device, stop, None,
                                 schedule)
        return {"train_loss": loss, "train_acc": acc}

    def evaluate(self, model: nn.Module) -> dict:
        val_loss, val_acc = evaluate(model, self.data.val)
        test_loss, test_acc = evaluate(model, self.data.test)
        return {"val_loss": val_loss, "val_acc": val_acc, "test_loss": test_loss,
                "test_acc": test_acc}

    def prune(self, model: nn.Module, spec: dict, criterion: str, seed: int) -> Pruned:
        options = CriterionOptions(seed=seed, max_samples=self.cfg.calibration_samples)
        config = PruneConfig(criterion, ratio=self.cfg.prune_fraction, options=options)
        calibration = self.data.train if CRITERIA[criterion].needs_data else None
        result = prune_structural(model, spec, config, calibration)
        return Pruned(result.model, result.spec,
                      lambda m: replay_removal(m, spec, result.kept))

    def save(self, paths: TrainTimePaths, variant: str, seed: int, model: nn.Module,
             spec: dict, meta: dict) -> None:
        info = self.data.info
        meta = {**meta, "dataset": info.name,
                "normalisation": {"mean": list(info.mean), "std": list(info.std)},
                "class_names": list(info.classes)}
        save_checkpoint(model, spec, paths.final_model(variant, seed), meta)


class VAETask:
    """The fully connected VAE: reconstruction + KL, neurons ranked by `vae.VAE_CRITERIA`."""

    name = "vae"
    curve_metrics = ("test_recon", "test_kl")

    def __init__(self, cfg: TrainTimeConfig, data: Dataset):
        self.cfg, self.info = cfg, data.info
        self.pixels = vae.VAEData.from_dataset(data)
        self.calibration = self.pixels.train.subset(cfg.calibration_samples, SPLIT_SEED).x

    @property
    def train_size(self) -> int:
        return len(self.pixels.train)

    def build(self) -> tuple[nn.Module, dict]:
        model = vae.FCVAE(self.info.features, self.cfg.hidden_widths(), self.cfg.latent_size())
        return model, vae.spec_of_vae(model, self.info.input_shape)

    @staticmethod
    def widths(model: nn.Module) -> dict[str, int]:
        return model.widths()

    def train_epoch(self, model, opt, tcfg, order, noise, device, stop, schedule) -> dict:
        return vae.train_epoch(model, opt, self.pixels.train, tcfg.batch_size, order, noise,
                               device, stop, schedule.before_step)

    def evaluate(self, model: nn.Module) -> dict:
        val = vae.evaluate(model, self.pixels.val)
        test = vae.evaluate(model, self.pixels.test)
        return {**{f"val_{k}": v for k, v in val.items()}, **{f"test_{k}": v for k, v in test.items()}}

    def prune(self, model, spec, criterion, seed) -> Pruned:
        device = next(model.parameters()).device
        pruned, kept = vae.prune_by_ratio(model, criterion, self.cfg.prune_fraction,
                                          self.calibration.to(device), seed)
        return Pruned(pruned, vae.spec_of_vae(pruned, self.info.input_shape),
                      lambda m: vae.prune_vae(m, kept))

    def save(self, paths: TrainTimePaths, variant: str, seed: int, model, spec, meta) -> None:
        shape = self.info.input_shape
        examples = self.pixels.test.x[:16]
        atomic_write_bytes(paths.reconstructions_png(variant, seed), vae.png_bytes(
            vae.reconstruction_grid(model, examples, shape)))
        atomic_write_bytes(paths.samples_png(variant, seed), vae.png_bytes(
            vae.sample_grid(model, shape, seed=seed)))
        meta = {**meta, "dataset": self.info.name, "pixels": "[0, 1] (normalisation undone)"}
        save_checkpoint(model, spec, paths.final_model(variant, seed), meta)


def make_task(cfg: TrainTimeConfig, data: Dataset):
    return VAETask(cfg, data) if cfg.task == "vae" else ClassifierTask(cfg, data)


# ------------------------------------------------------------------ one training branch

@dataclass
class _Branch:
    """Everything that decides how training continues: copied when the variants split."""
    model: nn.Module
    spec: dict
    opt: torch.optim.Optimizer
    schedule: _StepSchedule
    order: torch.Generator   # data order
    noise: torch.Generator   # VAE sampling noise
    tcfg: TrainConfig

    def copy(self) -> "_Branch":
        model = copy.deepcopy(self.model)
        opt = _optimizer(model, self.tcfg)
        opt.load_state_dict(copy.deepcopy(self.opt.state_dict()))
        schedule = copy.copy(self.schedule)
        schedule.opt = opt
        return _Branch(model, copy.deepcopy(self.spec), opt, schedule, _gen_copy(self.order),
                       _gen_copy(self.noise), self.tcfg)


@dataclass
class Pruned:
    """A pruned model, its spec, and its surgery as a function of any same-shaped model.

    `redo` replays the very same removal (same kept units) on another model with the
    original's shapes, which is how the optimiser's moments follow the weights.
    """
    model: nn.Module
    spec: dict
    redo: Callable[[nn.Module], nn.Module] | None


@torch.no_grad()
def carry_optimizer(opt: torch.optim.Optimizer, old: nn.Module, new: nn.Module,
                    redo: Callable[[nn.Module], nn.Module] | None,
                    tcfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser for the pruned `new`, continuing `opt`'s state for the units kept.

    Training then goes on as if the removed units had never existed: resetting Adam
    instead makes every weight take a full-size first step again, which measurably hurt
    the pruned variants against the unpruned one (Digits, MLP 50-30, 7 prunes of 10 %,
    5 seeds: contribution 92.8 → 94.1 %, random 86.2 → 91.9 % with the state carried;
    CNN 16-32-128, 7 prunes of 20 %, l1, 5 seeds: 83.7 ± 4.4 → 88.4 ± 1.5 %, random
    63.5 ± 18.7 → 80.3 ± 7.6 %).
    Each per-parameter state tensor (Adam's moments, SGD's momentum) is put into a copy
    of `old` and cut by `redo`; step counts are kept. Without `redo`: a fresh optimiser.
    """
    fresh = _optimizer(new, tcfg)
    if redo is None:
        return fresh
    saved = opt.state_dict()
    shapes = [p.shape for p in old.parameters()]
    keys = {k for i, st in saved["state"].items() for k, v in st.items()
            if torch.is_tensor(v) and v.shape == shapes[i]}
    cut: dict[str, list[torch.Tensor]] = {}
    for key in keys:
        holder = copy.deepcopy(old)
        for i, p in enumerate(holder.parameters()):
            p.copy_(saved["state"].get(i, {}).get(key, torch.zeros_like(p)))
        cut[key] = [p.detach().clone() for p in redo(holder).parameters()]
    state = {i: {k: cut[k][i] if k in cut else v.clone() if torch.is_tensor(v) else v
                 for k, v in st.items()} for i, st in saved["state"].items()}
    fresh.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
    return fresh


def _gen_copy(g: torch.Generator) -> torch.Generator:
    new = torch.Generator()
    new.set_state(g.get_state())
    return new


def _optimizer(model: nn.Module, tcfg: TrainConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS[tcfg.optimizer](model.parameters(), lr=tcfg.lr,
                                      weight_decay=tcfg.weight_decay)


def _steps_per_epoch(task, tcfg: TrainConfig) -> int:
    n = task.train_size
    return math.ceil(n / min(tcfg.batch_size, max(n, 1)))


def _prune_seed(seed: int, epoch: int, variant: str) -> int:
    """Seed of one prune: random scores differ per prune, calibration samples per seed."""
    return seed * 100_003 + epoch * 101 + (7 if variant == "random" else 0)


# ------------------------------------------------------------------ the run

def _check_something_to_prune(cfg: TrainTimeConfig) -> None:
    """Refuse a fraction too small to remove one unit of any layer: each keeps
    `keep_for_ratio` units, which rounds 0.5 % of 50 back to 50, so the pruned variants
    ran exactly like the unpruned one while the page reported "2 prunes of 0.5 %"."""
    widths = _prunable_widths(cfg)
    if all(w == 1 for w in widths):  # "remove more than 50 %" said to one asking for 90
        raise ExplorerError(f"every hidden layer has 1 unit (widths "
                            f"{' '.join(map(str, widths))}), and each keeps at least one: "
                            f"nothing can be pruned; make a layer wider")
    if all(keep_for_ratio(w, cfg.prune_fraction) == w for w in widths):
        raise ExplorerError(
            f"removing {100 * cfg.prune_fraction:g} % per prune removes no unit of any layer "
            f"(widths {' '.join(map(str, widths))}: each rounds back to itself); remove more "
            f"than {50 / max(widths):.3g} %")


def create_run(cfg: TrainTimeConfig, root: Path | None = None) -> TrainTimePaths:
    """Make the run folder with config.json and a queued status.

    A dataset missing offline is refused here, before any folder exists.
    """
    cfg.validate()
    _check_something_to_prune(cfg)
    ok, reason = availability(cfg.dataset)
    if not ok:
        raise ExplorerError(reason)
    paths = TrainTimePaths(new_run_dir(cfg.name, root or default_train_time_root()).root)
    record = {**cfg.to_dict(), "created": time.time(),
              "versions": {"explorer": __version__, "torch": torch.__version__}}
    atomic_write_json(paths.config, record)
    write_status(paths, "queued", total_epochs=total_epochs(cfg), epoch=0)
    return paths


def total_epochs(cfg: TrainTimeConfig) -> int:
    """Epoch events a complete run writes (one per variant, seed and epoch)."""
    return cfg.epochs * len(cfg.variants) * len(cfg.seeds)


def load_config(paths: TrainTimePaths) -> TrainTimeConfig:
    """The run's settings; another kind of folder is named as what it is."""
    record = read_json(paths.config)
    if not isinstance(record, dict):
        raise ExplorerError(f"{paths.root} is not a run folder (no readable config.json)")
    check_kind(paths, record, TRAIN_TIME_RUN)
    return TrainTimeConfig.from_dict(_without_unused_latent(record)).validate()


def _without_unused_latent(record: dict) -> dict:
    """A run folder's config.json without a classifier's latent size: versions before
    `latent` became VAE-only wrote one for every run (the default 20, or whatever a
    config file gave), and no classifier ever used it, so those runs still load."""
    if record.get("task", "classifier") == "vae" or "latent" not in record:
        return record
    return {k: v for k, v in record.items() if k != "latent"}


def execute(paths: TrainTimePaths, should_stop: Callable[[], bool] | None = None,
            on_event: Callable[[dict], None] | None = None) -> dict:
    """Run (or resume) the comparison in this process; returns the final status.

    Holds the run's lock throughout. Completed (variant, seed) units are kept unless their
    checkpoint is damaged (`damaged_units`); events of the others are dropped and those
    units are recomputed from their seed's start, which gives exactly the results of an
    uninterrupted run.
    """
    paths = TrainTimePaths(Path(paths.root))
    with worker_session(paths, should_stop) as stop:
        return _execute_locked(paths, stop, on_event or (lambda e: None))


def damaged_units(paths: TrainTimePaths) -> list[tuple[str, int]]:
    """Saved (variant, seed) runs whose final checkpoint is not whole (`checkpoint_intact`:
    the tensor file's header and size, the sidecar's spec; headers only).

    A resume computes them again instead of refusing: a junk final_model.safetensors
    counted as done, so the run "finished" with a checkpoint nothing can load. Redoing
    loses nothing: the file's weights are gone either way, the unit's numbers come back
    bit for bit (its seed restarts from the beginning, as for any unsaved unit), and the
    other runs stay as they are; a refusal would only leave the user to delete it by hand.
    Checked on resume, not by `completed_units`, which the pages poll (as for sweeps).
    """
    return [u for u in paths.completed_units() if not checkpoint_intact(paths.final_model(*u))]


def kept_units(paths: TrainTimePaths) -> set[tuple[str, int]]:
    """The saved (variant, seed) runs a resume keeps (all but `damaged_units`); the rest
    are computed (again)."""
    return set(paths.completed_units()) - set(damaged_units(paths))


def kept_epochs(paths: TrainTimePaths) -> int:
    """Epoch events a resume keeps (those of `kept_units`): where its epoch count starts."""
    return len(_kept_events(read_events(paths), kept_units(paths)))


def _kept_events(events: list[dict], done: set[tuple[str, int]]) -> list[dict]:
    return [e for e in events if e.get("type") == "epoch"
            and (e.get("variant"), e.get("seed")) in done]


def _execute_locked(paths: TrainTimePaths, stop: Callable[[], bool],
                    on_event: Callable[[dict], None]) -> dict:
    try:
        cfg = load_config(paths)
        check_recorded_settings(paths, cfg)
    except WrongKindError:  # not this kind's status to overwrite
        raise
    except ExplorerError as exc:
        return write_status(paths, "failed", message=str(exc))
    done = kept_units(paths)
    events = [e for e in read_events(paths) if e.get("type") == "epoch"]
    counter = {"epochs": len(_kept_events(events, done))}
    # The epochs of unsaved seeds are dropped below and recomputed: the mark keeps the
    # progress shown from stepping back meanwhile (`TrainTimeProgress.work_shown`).
    # Written before the events are dropped, so no poll sees the one without the other.
    mark = max(work_of(cfg, events), _work_mark(read_status(paths)))
    write_status(paths, "running", pid=os.getpid(), message="", **session_start(paths),
                 total_epochs=total_epochs(cfg), epoch=counter["epochs"], units_done=len(done),
                 total_units=len(cfg.variants) * len(cfg.seeds), work_mark=mark)
    filter_events(paths, lambda e: (e.get("variant"), e.get("seed")) in done)

    def emit(event: dict) -> None:
        append_event(paths, event)
        if event.get("type") == "epoch":
            counter["epochs"] += 1
            write_status(paths, "running", epoch=counter["epochs"])
        on_event(event)

    try:
        data = load_dataset(cfg.dataset, seed=SPLIT_SEED, val_fraction=cfg.val_fraction)
        task = make_task(cfg, data)
        for seed in cfg.seeds:
            todo = [v for v in cfg.variants if (v, seed) not in done]
            if todo:
                _run_seed(paths, cfg, task, seed, todo, stop, emit)
                done |= {(v, seed) for v in todo}
        note = images_note(lambda: write_summary(paths, cfg))
        return write_status(paths, "finished", finished=time.time(),
                            message=f"{counted(len(done), 'run')} "
                                    f"complete{note}", units_done=len(done))
    except Cancelled:
        return write_status(paths, "stopped", message="stopped by request; resume continues "
                            "with the unfinished variants")
    except Exception as exc:  # one line to the page; a trace nobody foresaw to the log
        return failed_run(paths, exc, "the run's files")


def _run_seed(paths: TrainTimePaths, cfg: TrainTimeConfig, task, seed: int, todo: list[str],
              stop: Callable[[], bool], emit: Callable[[dict], None]) -> None:
    """The shared prefix once, then the unfinished variants side by side, epoch by epoch.

    Interleaving the variants lets the live chart grow all curves together; each branch
    has its own model, optimiser and generators, so the order changes no number.
    """
    tcfg = cfg.train_config(seed).validate()
    device = resolve_device(tcfg.device)
    seed_torch(seed)  # initial weights
    model, spec = task.build()
    model.to(device)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cpu_threads_for(model, tcfg))
    try:
        opt = _optimizer(model, tcfg)
        shared = _Branch(model, spec, opt, _StepSchedule(opt, tcfg, _steps_per_epoch(task, tcfg)),
                         torch.Generator().manual_seed(seed),
                         torch.Generator().manual_seed(seed + 1_000_003), tcfg)
        histories: dict[str, list[dict]] = {v: [] for v in todo}

        def record(v: str, metrics: dict) -> None:
            event = {"type": "epoch", "variant": v, "seed": seed, **metrics}
            histories[v].append(event)
            emit(event)

        for epoch in range(1, cfg.initial_epochs + 1):
            metrics = _epoch(task, shared, device, stop, epoch)
            for v in todo:
                record(v, metrics)
        branches = {v: shared.copy() for v in todo}
        del shared
        points = set(cfg.prune_points())
        for epoch in range(cfg.initial_epochs + 1, cfg.epochs + 1):
            for v, branch in branches.items():
                if epoch - 1 in points and v != "none":
                    _prune(task, branch, cfg, v, seed, epoch - 1, emit)
                record(v, _epoch(task, branch, device, stop, epoch))
        for v, branch in branches.items():
            _save_unit(paths, cfg, task, v, seed, branch, histories[v])
            emit({"type": "unit", "variant": v, "seed": seed, **_final(histories[v][-1])})
        write_status(paths, "running", units_done=len(paths.completed_units()))
    finally:
        torch.set_num_threads(previous_threads)


def _epoch(task, b: _Branch, device: torch.device, stop: Callable[[], bool], epoch: int) -> dict:
    t0 = time.perf_counter()
    train_metrics = task.train_epoch(b.model, b.opt, b.tcfg, b.order, b.noise, device, stop,
                                     b.schedule)
    if stop():  # an epoch that ended exactly at the request still stops here
        raise Cancelled()
    return {"epoch": epoch, **train_metrics, **task.evaluate(b.model),
            **_widths_fields(task.widths(b.model)), "params": count_parameters(b.model),
            "seconds": time.perf_counter() - t0}


def _widths_fields(widths: dict[str, int]) -> dict[str, list]:
    """Layer names and widths as two lists: events are written with sorted keys, which
    would put a CNN's classifier before its convs and a VAE's decoder before its encoder."""
    return {"layers": list(widths), "widths": list(widths.values())}


def _refuse_diverged(b: _Branch, cfg: TrainTimeConfig, variant: str, seed: int) -> None:
    """Fail the run with the reason when a variant's weights are no longer finite."""
    refuse_diverged(b.model, f"the {cfg.labels()[variant]} training (seed {seed})",
                    lower_the_rate(cfg.train_config(seed)))


def _prune(task, b: _Branch, cfg: TrainTimeConfig, variant: str, seed: int, after_epoch: int,
           emit: Callable[[dict], None]) -> None:
    # before scoring: a diverged model's NaN scores were blamed on the criterion
    _refuse_diverged(b, cfg, variant, seed)
    before = task.widths(b.model)
    criterion = cfg.criterion if variant == "importance" else "random"
    pruned = task.prune(b.model, b.spec, criterion, _prune_seed(seed, after_epoch, variant))
    b.opt = carry_optimizer(b.opt, b.model, pruned.model, pruned.redo, b.tcfg)
    b.model, b.spec = pruned.model, pruned.spec
    b.schedule.opt = b.opt
    emit({"type": "prune", "variant": variant, "seed": seed, "epoch": after_epoch,
          "criterion": criterion, "widths_before": list(before.values()),
          **_widths_fields(task.widths(b.model)), "params": count_parameters(b.model),
          **task.evaluate(b.model)})


def _final(event: dict) -> dict:
    return {k: v for k, v in event.items() if k not in ("type", "variant", "seed", "seconds")}


HISTORY_METRICS = {
    "classifier": [("TrainLoss", "train_loss"), ("TrainAccuracy", "train_acc"),
                   ("TestLoss", "test_loss"), ("TestAccuracy", "test_acc")],
    "vae": [("TrainRecon", "train_recon"), ("TrainKL", "train_kl"),
            ("TestRecon", "test_recon"), ("TestKL", "test_kl")],
}


def _save_unit(paths: TrainTimePaths, cfg: TrainTimeConfig, task, variant: str, seed: int,
               b: _Branch, history: list[dict]) -> None:
    # a diverged variant is neither saved nor counted: its NaN final model was listed on
    # the Inspect page, which then refused it, and the run said "finished"
    _refuse_diverged(b, cfg, variant, seed)
    metric_cols = HISTORY_METRICS[cfg.task]
    write_table(paths.history(variant, seed),
                ["Epoch", *history[0]["layers"], "Params", *[c for c, _ in metric_cols]],
                [[h["epoch"], *h["widths"], h["params"], *[h[k] for _, k in metric_cols]]
                 for h in history])
    meta = {"task": cfg.task, "variant": variant, "label": cfg.labels()[variant], "seed": seed,
            "criterion": cfg.criterion if variant == "importance" else
            ("random" if variant == "random" else None),
            "metrics": _final(history[-1]), "layers": history[-1]["layers"],
            "widths": history[-1]["widths"],
            # the share the Inspect page shows, as iterative and Compare checkpoints record it
            "percent_retained": 100.0 * sum(history[-1]["widths"]) / sum(history[0]["widths"]),
            "epochs": cfg.epochs, "prune_points": cfg.prune_points(),
            "prune_fraction": cfg.prune_fraction, "settings": recorded_settings(cfg)}
    task.save(paths, variant, seed, b.model, b.spec, meta)  # JSON last: marks it complete


# Settings that change no saved result: which seeds and variants there are (a run may
# gain some), its name, and where and on how many threads it computes.
_RESULT_NEUTRAL = ("name", "seeds", "variants", "threads", "device")


# Settings of one task only: not recorded for the others (runs of older versions
# recorded a classifier's unused latent size; leaving it out lets them resume).
_TASK_ONLY = {"latent": "vae"}


def recorded_settings(cfg: TrainTimeConfig) -> dict[str, Any]:
    """What a saved (variant, seed) records of the settings it was computed with."""
    return {k: v for k, v in cfg.to_dict().items() if k not in _RESULT_NEUTRAL
            and _TASK_ONLY.get(k, cfg.task) == cfg.task}


def check_recorded_settings(paths: TrainTimePaths, cfg: TrainTimeConfig) -> None:
    """Refuse a config.json edited since a saved (variant, seed) was computed: a resume
    kept the saved ones and computed the rest with the new settings, so one summary
    averaged two experiments. Records of older versions hold no `settings`: not checked."""
    now = recorded_settings(cfg)
    for variant, seed in paths.completed_units():
        recorded = read_record(paths.final_model_json(variant, seed)).get("settings")
        if not isinstance(recorded, dict):
            continue
        name = first_edited(recorded, now)
        if name is not None:
            raise edited_after_start(f"{variant} seed {seed} was computed with {name} "
                                     f"{shown(recorded[name])}", name, shown(now[name]))


# ------------------------------------------------------------------ reading a run back

def final_rows(paths: TrainTimePaths) -> list[dict]:
    """One row per completed (variant, seed): final metrics, widths, params, checkpoint."""
    rows = []
    for variant, seed in paths.completed_units():
        meta = read_record(paths.final_model_json(variant, seed))
        rows.append({"variant": variant, "seed": seed, "label": meta.get("label", variant),
                     **meta.get("metrics", {}), "widths": meta.get("widths", []),
                     "checkpoint": str(paths.final_model(variant, seed))})
    order = {v: i for i, v in enumerate(VARIANTS)}
    return sorted(rows, key=lambda r: (order.get(r["variant"], 9), r["seed"]))


def summarise(rows: list[dict], task: str) -> dict[str, dict]:
    """Mean (and per-seed values) of the final metrics for each variant."""
    keys = ["test_acc", "test_loss"] if task == "classifier" else ["test_loss", "test_recon",
                                                                  "test_kl"]
    out: dict[str, dict] = {}
    for r in rows:
        out.setdefault(r["variant"], {"label": r["label"], "seeds": [], "params": [],
                                      "hidden_units": [], **{k: [] for k in keys}})
        s = out[r["variant"]]
        s["seeds"].append(r["seed"])
        s["params"].append(r.get("params"))
        s["hidden_units"].append(sum(r["widths"]))
        for k in keys:
            s[k].append(r.get(k))
    for s in out.values():
        for k in [*keys, "params", "hidden_units"]:
            vals = [v for v in s[k] if v is not None]
            s[f"mean_{k}"] = sum(vals) / len(vals) if vals else None
    return out


def write_summary(paths: TrainTimePaths, cfg: TrainTimeConfig) -> list[Path]:
    """summary.json plus the comparison charts as PNG in the results folder (an image that
    cannot be rendered raises `ChartRenderError` once the rest is written)."""
    from . import charts

    rows = final_rows(paths)
    events = read_events(paths)
    epochs = [e for e in events if e.get("type") == "epoch"]
    labels = cfg.labels()
    atomic_write_json(paths.summary, {"task": cfg.task, "config": cfg.to_dict(),
                                      "variants": summarise(rows, cfg.task), "runs": rows})
    made = charts.train_time_charts(cfg.task, epochs, rows, labels, cfg.prune_points(),
                                    cfg.epochs)
    return [paths.summary, *charts.save_chart_pngs(
        [(chart, paths.chart_png(name)) for name, chart in made.items()], table=paths.summary)]


def _work_mark(status: dict) -> float:
    """status.json's `work_mark` (0 when absent, or not a number after a hand edit)."""
    try:
        mark = float(status.get("work_mark") or 0.0)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return mark if math.isfinite(mark) else 0.0


def work_of(cfg: TrainTimeConfig, events: list[dict]) -> float:
    """Epochs computed for these epoch events: an epoch of the shared prefix is one
    computation but one event per variant."""
    return sum(1 / len(cfg.variants) if e.get("epoch", 0) <= cfg.initial_epochs else 1
               for e in events)


@dataclass
class TrainTimeProgress(RunProgress):
    """The live view's numbers (`results.run_progress`) plus the saved (variant, seed) runs.

    `work_*` count epochs as computed: an epoch of the shared prefix is one computation
    but one event per variant, so counting events would make the ETA three times too
    optimistic while the prefix runs.

    A resume recomputes an unsaved seed from its start (a seed's variants are saved
    together when it ends, and starting over gives exactly an uninterrupted run's
    numbers), so its epochs from before the stop are dropped and `work_done` falls back.
    `work_mark` is the most ever counted; `work_shown` and `fraction` never fall below
    it, and `redo` is what is being recomputed (the page says so).
    """
    units_done: int = 0
    total_units: int = 0
    work_done: float = 0.0
    work_total: float = 0.0
    work_mark: float = 0.0
    unsaved: float = 0.0  # epochs computed for seeds whose variants are not saved yet
    seed: int | None = None  # the seed being trained (live) or cut short (stopped)
    seed_epoch: int | None = None  # its last epoch with an event (None: none yet)

    @property
    def work_shown(self) -> float:
        return max(self.work_done, self.work_mark)

    @property
    def redo(self) -> float:
        """Epochs trained before a stop that the resumed run has not recomputed yet."""
        return max(self.work_mark - self.work_done, 0.0)

    @property
    def fraction(self) -> float:
        return min(self.work_shown / self.work_total, 1.0) if self.work_total else 0.0


def progress(paths: TrainTimePaths, now: float | None = None) -> TrainTimeProgress:
    """From config.json, status.json, events.jsonl and the saved final models (pages poll this)."""
    base = run_progress(paths, now)
    status = read_status(paths)
    done = set(paths.completed_units())
    prog = TrainTimeProgress(**vars(base), units_done=len(done),
                             total_units=int(status.get("total_units") or 0))
    try:
        cfg = load_config(paths)
    except ExplorerError:
        return prog

    # a queued run's status has no total yet: "0/0 variant runs saved" until it started
    prog.total_units = prog.total_units or len(cfg.variants) * len(cfg.seeds)
    prog.work_total = float(len(cfg.seeds) * (cfg.initial_epochs + (cfg.epochs - cfg.initial_epochs)
                                              * len(cfg.variants)))
    prog.work_done = work_of(cfg, base.epochs)
    prog.work_mark = min(_work_mark(status), prog.work_total)
    unsaved = [e for e in base.epochs if (e.get("variant"), e.get("seed")) not in done]
    prog.unsaved = work_of(cfg, unsaved)
    # the seed under way: the first with a variant not saved (seeds run in order)
    prog.seed = next((s for s in cfg.seeds if any((v, s) not in done for v in cfg.variants)),
                     None)
    prog.seed_epoch = max((e.get("epoch", 0) for e in unsaved if e.get("seed") == prog.seed),
                          default=None)
    # The rate is taken between epochs of this session, from its first epoch on: the
    # worker's start-up (imports, data) before it is no part of the remaining work, and
    # counting it made the first estimates several times too long.
    started = status.get("started")
    recent = [e for e in base.epochs if started and e.get("time", 0) >= started]
    first = [e for e in recent if (e.get("seed"), e.get("epoch")) ==
             (recent[0].get("seed"), recent[0].get("epoch"))] if recent else []
    after = recent[len(first):] if recent[:len(first)] == first else []
    if base.eta is not None and after:
        prog.eta = paced_remaining(after[-1]["time"] - first[-1]["time"], work_of(cfg, after),
                                   prog.work_total - prog.work_done,
                                   (now or time.time()) - after[-1]["time"])
    return prog
