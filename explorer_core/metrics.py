"""What a model costs: parameters, MACs, training FLOPs, CPU latency, memory.

Why several measures: structural pruning shrinks all of them, weight masks shrink only
the count of non-zero parameters (dense kernels still multiply the zeros), and MACs
predict latency only roughly — so the pages show them side by side.

* MACs per sample come from thop, which counts multiply-accumulates of the forward pass
  (none for ReLU, pooling or adds) and leaves `total_ops` / `total_params` buffers and
  hooks on every module it visits. It always profiles a deep copy (`_probe`),
  so the caller's model (and its state dict) never changes.
* Training FLOPs per sample come from `torch.utils.flop_counter`'s formulas (as
  `FlopCounterMode` counts them, `_FlopCount`) over one forward + backward pass. It
  counts 2 FLOPs per MAC of matmuls / convs and only what autograd really computes: the
  first layer gets no input gradient (the data does not need one), so an MLP's training
  step is a little less than the 3× forward of the usual rule of thumb.
* Latency is the median wall time of repeated forward passes of one batch under
  `torch.inference_mode` after a warm-up; medians resist the outliers of a shared CPU.
  `compare_costs` interleaves the two models' repeats so drift hits both equally.
"""
from __future__ import annotations

import functools
import os
import resource
import statistics
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from .errors import Cancelled, ExplorerError
from .settings import check_threads
from torch.nn.utils import prune

from .masks import copy_model
from .models import architecture_key

with warnings.catch_warnings():  # thop's import warns about distutils
    warnings.simplefilter("ignore")
    import thop  # with the other imports: a worker pays it at start, not in its first cell


# A larger latency batch ran into allocator errors (one input tensor of the whole batch).
MAX_LATENCY_BATCH = 65_536


@dataclass(frozen=True)
class LatencyConfig:
    """Batch size, timed repeats and untimed warm-up runs of a latency measurement.

    `threads`: torch intra-op threads while timing (None = leave as is). One, the
    default, gives the steadiest ratios on a small shared machine: a multi-threaded GEMM
    whose peer thread is descheduled waits for it, which makes timings erratic under
    load (`prune-once`, timed with torch's own setting beside two busy processes, put a
    2.7×-faster pruned CNN at 1.00× — 104 ms each against 6 and 2 ms on one thread).
    """
    batch_size: int = 256
    repeats: int = 30
    warmup: int = 5
    threads: int | None = 1

    def validate(self) -> "LatencyConfig":
        for name in ("batch_size", "repeats"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ExplorerError(f"latency {name} must be a whole number ≥ 1, got {v!r}")
        if self.batch_size > MAX_LATENCY_BATCH:  # prune-once: a 25.6 GB allocation traceback
            raise ExplorerError(f"latency batch must be at most {MAX_LATENCY_BATCH:,}, got "
                                f"{self.batch_size:,}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ExplorerError(f"latency warm-up must be a whole number ≥ 0, got {self.warmup!r}")
        if self.threads is not None:
            check_threads(self.threads, "latency threads", 1)
        return self


@dataclass
class CostReport:
    params: int
    nonzero_params: int
    macs: int                      # forward multiply-accumulates per sample (thop)
    train_flops: int               # forward + backward FLOPs per sample (flop_counter)
    param_bytes: int
    activation_bytes: int          # outputs of all leaf modules for one sample
    latency_ms: float | None = None       # median time of one batch
    latency_batch: int | None = None

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero_params / self.params if self.params else 0.0

    @property
    def latency_us_per_sample(self) -> float | None:
        if self.latency_ms is None or not self.latency_batch:
            return None
        return 1000.0 * self.latency_ms / self.latency_batch

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sparsity": self.sparsity,
                "latency_us_per_sample": self.latency_us_per_sample}


@dataclass
class CostComparison:
    dense: CostReport
    pruned: CostReport

    def ratios(self) -> dict[str, float | None]:
        """pruned / dense for sizes, and dense / pruned for `mac_reduction` / `speedup`."""
        d, p = self.dense, self.pruned

        def frac(a: float, b: float) -> float | None:
            return a / b if b else None

        speedup = (frac(d.latency_ms, p.latency_ms)
                   if d.latency_ms is not None and p.latency_ms is not None else None)
        return {
            "params": frac(p.params, d.params),
            "nonzero_params": frac(p.nonzero_params, d.nonzero_params),
            "macs": frac(p.macs, d.macs),
            "train_flops": frac(p.train_flops, d.train_flops),
            "mac_reduction": frac(d.macs, p.macs),
            "speedup": speedup,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"dense": self.dense.to_dict(), "pruned": self.pruned.to_dict(),
                "ratios": self.ratios()}


# ------------------------------------------------------------------ parameters

def effective_parameters(model: nn.Module) -> list[torch.Tensor]:
    """The tensors the forward pass really uses: masked weights instead of `*_orig`.

    With `torch.nn.utils.prune` reparametrisation a module holds `weight_orig` (a
    parameter, still dense) and computes `weight = weight_orig * weight_mask`; the zeros
    live only in the latter.
    """
    out = []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name.endswith("_orig") and hasattr(module, name[:-5] + "_mask"):
                out.append(getattr(module, name[:-5]).detach())
            else:
                out.append(p.detach())
    return out


def count_nonzero(model: nn.Module) -> int:
    return _count_nonzero(effective_parameters(model))


def _count_nonzero(tensors: Sequence[torch.Tensor]) -> int:
    """One `int` per tensor: on CPU that is faster than adding the counts up as tensors
    (a Digits CNN: 45 µs against 47-51 µs), so the per-tensor read stays."""
    return int(sum(int(torch.count_nonzero(t)) for t in tensors))


# ------------------------------------------------------------------ MACs / FLOPs

def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _probe(model: nn.Module) -> nn.Module:
    """A private deep copy to profile: the caller's own hooks removed.

    `deepcopy` copies forward hooks too, so a hook the caller put on the model (to
    count passes, capture activations) would fire for our measuring pass. Pruning
    masks are pre-hooks that compute the weights, so those stay.
    """
    probe = copy_model(model)
    for module in probe.modules():
        module._forward_hooks.clear()
        for key, hook in list(module._forward_pre_hooks.items()):
            if not isinstance(hook, prune.BasePruningMethod):
                del module._forward_pre_hooks[key]
    return probe


def _example(model: nn.Module, shape: Sequence[int], batch: int) -> torch.Tensor:
    return torch.zeros(batch, *[int(s) for s in shape], device=_device(model))


def macs_per_sample(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Forward MACs for one sample, counted by thop on a deep copy."""
    return _count_macs(_probe(model), input_shape)


def _count_macs(probe: nn.Module, input_shape: Sequence[int]) -> int:
    probe.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        macs, _ = thop.profile(probe, inputs=(_example(probe, input_shape, 1),), verbose=False)
    return int(macs)


def train_flops_per_sample(model: nn.Module, input_shape: Sequence[int], batch: int = 2) -> int:
    """FLOPs of one forward + backward pass (cross-entropy on the logits), per sample.

    Runs on a deep copy in training mode; a batch of 2 because BatchNorm refuses to
    train on a single value per channel.
    """
    return _count_train_flops(_probe(model), input_shape, batch)


def _count_train_flops(probe: nn.Module, input_shape: Sequence[int], batch: int = 2) -> int:
    """Leaves the probe in training mode, its running statistics moved and gradients set."""
    probe.train()
    x = _example(probe, input_shape, batch)
    with _FlopCount() as counter:
        out = probe(x)
        target = torch.zeros(out.shape[0], dtype=torch.long, device=out.device)
        F.cross_entropy(out, target).backward()
    return int(counter.total) // batch


@functools.cache
def _flop_api() -> tuple[dict, Any, frozenset]:
    """torch's formula registry, the code object of its `shape_wrapper` and the shape
    queries `FlopCounterMode` lets fall through (NotImplemented) so that tensors with a
    non-standard sizes/strides policy answer them themselves.

    Imported on first use: `torch.utils.flop_counter` takes 80-140 ms to import, which
    only a process that counts FLOPs should pay.
    """
    from torch.utils.flop_counter import flop_registry, shape_wrapper

    aten = torch.ops.aten
    queries = frozenset({
        aten.sym_is_contiguous.default, aten.is_contiguous.default,
        aten.is_contiguous.memory_format, aten.is_strides_like_format.default,
        aten.is_non_overlapping_and_dense.default, aten.size.default, aten.sym_size.default,
        aten.stride.default, aten.sym_stride.default, aten.storage_offset.default,
        aten.sym_storage_offset.default, aten.numel.default, aten.sym_numel.default,
        aten.dim.default, torch.ops.prim.layout.default,
    })
    return flop_registry, shape_wrapper(lambda: 0).__code__, queries


class _NotALeaf(Exception):
    """A value `_FlopCount._shapes` leaves to torch's own tree walk."""


class _FlopCount(TorchDispatchMode):
    """Total FLOPs of the ops run inside it, by torch's own formulas (`flop_registry`).

    Why not `FlopCounterMode`: it also enters a `ModuleTracker` (global module hooks and
    autograd multi-grad hooks on every module's inputs and outputs) to attribute FLOPs to
    modules, which we never read; that tracking cost more than the counting itself
    (training FLOPs of a Digits MLP 2.0 → 1.2 ms, CNN 3.5 → 2.35 ms, ResNet-18 on 32×32
    91 → 77 ms). This is `FlopCounterMode`'s dispatch without it and with the same
    total: ops without a formula are decomposed (under this mode, so their parts are
    counted), shape queries pass through. Higher-order operators (compiled or
    control-flow code, which our eager models never run) raise, as they do under
    `FlopCounterMode` without a formula for them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.formulas, self.shape_wrapper, self.queries = _flop_api()
        self.decomposable: dict[Any, bool] = {}   # per op, for this count
        self.leaves: dict[type, bool] = {}        # per type, for this count
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs if kwargs else {}
        if func in self.queries:
            return NotImplemented
        formula = self.formulas.get(func._overloadpacket)
        if formula is None:
            if self._decomposes(func):
                with self:
                    out = func.decompose(*args, **kwargs)
                if out is not NotImplemented:
                    return out
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        self.total += self._flops(formula, args, kwargs, out)
        return out

    def _decomposes(self, func: torch._ops.OpOverload) -> bool:
        """Whether `func.decompose` would find a kernel (torch's own test, inlined),
        asked before entering the mode again for it. `FlopCounterMode` enters the mode
        and calls `decompose` for every op without a formula; nearly none has a
        decomposition, and those enters, exits and failed calls (~7 µs each) cost a
        Digits CNN's training pass 0.3 ms. Remembered per op for the count (an op
        recurs: 14 distinct of an MLP pass's 51), which saves another 0.15 ms."""
        found = self.decomposable.get(func)
        if found is None:
            key = torch._C.DispatchKey.CompositeImplicitAutograd
            found = self.decomposable[func] = func is not torch.ops.prim.device.default and (
                key in func.py_kernels
                or torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), key))
        return found

    def _flops(self, formula: Callable, args: tuple, kwargs: dict, out: Any) -> int:
        """`formula(*args, **kwargs, out_val=out)`, the way `FlopCounterMode` calls it.

        Torch wraps most formulas in `shape_wrapper`, which turns tensors into shapes
        with a generic tree walk (`tree_map`): ~30-40 µs a call, a third of a Digits
        CNN's counting. For a wrapped formula the shapes are taken here directly from
        the lists and tuples aten ops pass (0.2-0.3 ms less per training pass); any
        other container goes to the wrapper as before.
        """
        if getattr(formula, "__code__", None) is self.shape_wrapper:
            try:
                args, kwargs, out_shape = self._shapes((args, kwargs, out))
            except _NotALeaf:
                pass
            else:
                return formula.__wrapped__(*args, out_shape=out_shape, **kwargs)
        return formula(*args, **kwargs, out_val=out)

    def _shapes(self, value: Any) -> Any:
        """`tree_map(get_shape, value)` for exact lists, tuples and dicts of tensors and
        leaves; raises `_NotALeaf` on any other type `tree_map` would walk into (a
        torch.Size, a named tuple)."""
        kind = type(value)
        if kind is tuple:
            return tuple(self._shapes(v) for v in value)
        if kind is list:
            return [self._shapes(v) for v in value]
        if kind is dict:
            return {k: self._shapes(v) for k, v in value.items()}
        if isinstance(value, torch.Tensor):
            return value.shape
        leaf = self.leaves.get(kind)
        if leaf is None:
            from torch.utils._pytree import tree_is_leaf

            leaf = self.leaves[kind] = tree_is_leaf(value)
        if not leaf:
            raise _NotALeaf(kind)
        return value


_ACTIVATIONS: dict[str, int] = {}


def activation_bytes(model: nn.Module, input_shape: Sequence[int],
                     probe: nn.Module | None = None) -> int:
    """Bytes of every leaf module's output for one sample.

    An upper-bound-style estimate of what autograd keeps for the backward pass of one
    sample (CPU allocators offer no portable peak counter); inference needs far less.
    Sizes depend on the architecture only, so they are measured once per architecture
    and input shape: every `train` call asks, and the probe's deep copy and forward pass
    cost a Compare cell on Digits ~3 ms. `probe`: a `_probe` copy of `model` to measure
    on, when the caller has one.
    """
    key = architecture_key(model, input_shape)
    if key not in _ACTIVATIONS:
        if len(_ACTIVATIONS) > 256:
            _ACTIVATIONS.clear()
        _ACTIVATIONS[key] = _count_activation_bytes(
            _probe(model) if probe is None else probe, input_shape)
    return _ACTIVATIONS[key]


def _count_activation_bytes(probe: nn.Module, input_shape: Sequence[int]) -> int:
    probe.eval()
    total = 0

    def hook(_m, _inp, out):
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel() * out.element_size()

    handles = [m.register_forward_hook(hook) for m in probe.modules()
               if not any(True for _ in m.children())]
    try:
        with torch.no_grad():
            probe(_example(probe, input_shape, 1))
    finally:
        for h in handles:
            h.remove()
    return int(total)


# ------------------------------------------------------------------ latency

def _time_once(model: nn.Module, x: torch.Tensor) -> float:
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    model(x)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1000.0


def measure_latencies(models: Sequence[nn.Module], input_shape: Sequence[int],
                      config: LatencyConfig = LatencyConfig(),
                      should_stop: Callable[[], bool] | None = None) -> list[float]:
    """Median ms per batch of each model, repeats interleaved across the models (each
    round in another order).

    `should_stop` is asked between rounds (one pass of every model): timing a dozen
    large models takes minutes, and a Stop must not wait for all of it (`Cancelled`).
    """
    config.validate()
    states = [m.training for m in models]
    gen = torch.Generator().manual_seed(0)  # real-looking inputs; values do not change GEMM work
    x = torch.randn(config.batch_size, *[int(s) for s in input_shape], generator=gen)
    xs = [x.to(_device(m)) for m in models]
    times: list[list[float]] = [[] for _ in models]
    threads = torch.get_num_threads()
    try:
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        for m in models:
            m.eval()
        with torch.inference_mode():
            for _ in range(config.warmup):
                _check(should_stop)
                for m, x in zip(models, xs):
                    m(x)
            for r in range(config.repeats):
                _check(should_stop)
                for i in _rotated(len(models), r):
                    times[i].append(_time_once(models[i], xs[i]))
    finally:
        torch.set_num_threads(threads)
        for m, s in zip(models, states):
            m.train(s)
    return [statistics.median(t) for t in times]


def _rotated(n: int, shift: int) -> list[int]:
    """0 … n-1 starting at `shift`: each round starts with another model, so no model is
    always the one timed first after the loop's own work (or always last)."""
    return [(shift + i) % n for i in range(n)]


def _check(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise Cancelled()


def measure_latency(model: nn.Module, input_shape: Sequence[int],
                    config: LatencyConfig = LatencyConfig()) -> float:
    """Median ms of one forward pass of a batch (`config.batch_size`) on the model's device."""
    return measure_latencies([model], input_shape, config)[0]


# ------------------------------------------------------------------ reports

def cost_report(model: nn.Module, input_shape: Sequence[int],
                latency: LatencyConfig | None = None, latency_ms: float | None = None) -> CostReport:
    """Everything above for one model; latency only if a `LatencyConfig` is given."""
    if latency is not None and latency_ms is None:
        latency_ms = measure_latency(model, input_shape, latency)
    # after the timing: its forward passes recompute a masked layer's `weight`
    params = effective_parameters(model)
    # one deep copy for the three counts (each used to make its own: ~1.7 ms for the
    # Digits CNN); the training-FLOPs pass, which moves BatchNorm statistics, goes last
    probe = _probe(model)
    acts = activation_bytes(model, input_shape, probe)
    macs = _count_macs(probe, input_shape)
    return CostReport(
        params=int(sum(p.numel() for p in params)),
        nonzero_params=_count_nonzero(params),  # effective_parameters once, not twice
        macs=macs,
        train_flops=_count_train_flops(probe, input_shape),
        param_bytes=int(sum(p.numel() * p.element_size() for p in params)),
        activation_bytes=acts,
        latency_ms=latency_ms,
        latency_batch=latency.batch_size if latency is not None else None,
    )


def compare_costs(dense: nn.Module, pruned: nn.Module, input_shape: Sequence[int],
                  latency: LatencyConfig | None = None) -> CostComparison:
    """Dense and pruned side by side; latencies measured interleaved for a fair ratio."""
    lat: list[float | None] = [None, None]
    if latency is not None:
        lat = list(measure_latencies([dense, pruned], input_shape, latency))
    return CostComparison(cost_report(dense, input_shape, latency, lat[0]),
                          cost_report(pruned, input_shape, latency, lat[1]))


# ------------------------------------------------------------------ peak memory

class _ProcFiles:
    """/proc/self/status and /proc/self/clear_refs, opened once per process.

    A Compare sweep measures every cell's peak (`PeakMemory`): opening, reading and
    closing both files per cell cost 0.04-0.11 ms each in a sweep's worker (68 ms of
    the Digits benchmark). A descriptor stays valid for the process that opened it, so
    a forked child opens its own (`pid`).
    """

    def __init__(self) -> None:
        self.pid: int | None = None
        self.status: int | None = None
        self.clear_refs: int | None = None

    def _open(self) -> None:
        if self.pid == os.getpid():
            return
        self.pid, self.status, self.clear_refs = os.getpid(), None, None
        for name, flags in (("status", os.O_RDONLY), ("clear_refs", os.O_WRONLY)):
            try:
                setattr(self, name, os.open(f"/proc/self/{name}", flags | os.O_CLOEXEC))
            except OSError:
                pass

    def reset_peak(self) -> bool:
        """Reset the kernel's peak-RSS counter; False where that is refused."""
        self._open()
        if self.clear_refs is None:
            return False
        try:
            return os.write(self.clear_refs, b"5") == 1
        except OSError:
            return False

    def peak_bytes(self) -> int | None:
        """VmHWM in bytes, or None off Linux."""
        self._open()
        if self.status is None:
            return None
        try:
            text = os.pread(self.status, 1 << 16, 0)
            start = text.index(b"VmHWM:") + len(b"VmHWM:")
            return int(text[start:text.index(b"\n", start)].split()[0]) * 1024
        except (OSError, ValueError, IndexError):
            return None


_PROC = _ProcFiles()


class PeakMemory:
    """Measured peak memory of the work done inside a `with` block.

    On Linux the kernel's peak-RSS counter is reset on entry (`/proc/self/clear_refs`,
    value 5) and read on exit, so the figure belongs to this block, not to the whole
    process's life; it includes what the process already held (data, other models).
    Where the reset is refused the lifetime peak (`ru_maxrss`) is reported and
    `scope` says so. On CUDA the allocator's peak of the block is measured too.
    """

    def __init__(self, device: torch.device | str | None = None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.peak_bytes: int | None = None
        self.cuda_peak_bytes: int | None = None
        self.scope = "block"

    def __enter__(self) -> "PeakMemory":
        if not _PROC.reset_peak():
            self.scope = "process lifetime"
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        hwm = _PROC.peak_bytes() if self.scope == "block" else None
        if hwm is None:
            self.scope = "process lifetime"
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
        self.peak_bytes = int(hwm)
        if self.device.type == "cuda":
            self.cuda_peak_bytes = int(torch.cuda.max_memory_allocated(self.device))

    @property
    def peak_mb(self) -> float | None:
        return self.peak_bytes / 2 ** 20 if self.peak_bytes is not None else None
