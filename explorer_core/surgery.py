"""Physical removal of neurons and channels: the pruned model really gets smaller.

Two families, one entry point (`prune_structural`, dispatched through `PRUNERS` by the
spec's architecture):

* MLPs — our own code (`prune_mlp`): keep rows of W and b of every hidden layer and the
  matching columns of the next layer. It is a few `index_select`s, so there is no reason
  to trace the model, and the thesis' `fcN` naming survives unchanged.
* Conv nets (CNN, DenseNet-121, ResNet-18, VGG16-BN, MobileNetV2) — Torch-Pruning's
  dependency graph. Removing a channel must also remove it from its BatchNorm, from every
  consumer of a DenseNet concatenation, from every layer tied by a ResNet / MobileNetV2
  residual add and from depthwise convs; the graph finds these coupled layers ("groups")
  by tracing, which hand-written rules would get wrong for some architecture. Our
  criteria plug in as its importance (`CriterionImportance`) and our `ranking` module
  decides the kept channels, so conv nets and MLPs share criteria, rounding and
  tie-breaking rules.

Nothing here modifies the model it is given; results are new modules. A pruned model's
spec plus its state dict rebuild it exactly (`build_model(spec, state)` resizes layers
to the state's shapes).
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Iterator, Mapping, Sequence

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune as torch_prune

from .criteria import CriterionOptions, compute_scores, get_criterion
from .data import Split
from .errors import ExplorerError
from .masks import copy_model
from .models import MLP, Spec, architecture_key, input_shape, spec_of
from .ranking import RankingConfig, check_ratio, choose


# ------------------------------------------------------------------ configs and results

@dataclass
class PruneConfig:
    """One structural pruning step.

    `keep`: kept units per prunable layer (MLP: one count per hidden layer; conv nets:
    one count per dependency group, in `conv_groups` order). `ratio`: fraction of units
    removed from every layer / group. Exactly one of the two. `global_ranking` shares
    the same total budget across layers on per-layer-normalised scores (see
    `ranking.select_global`; `normaliser` and `min_fraction` tune it).
    """
    criterion: str = "l1"
    keep: list[int] | None = None
    ratio: float | None = None
    global_ranking: bool = False
    options: CriterionOptions = field(default_factory=CriterionOptions)
    normaliser: str = "max"
    min_fraction: float = 0.0
    # Scores of `score_layers(model, spec)` computed by the caller for this very model:
    # a sweep pruning one baseline at many ratios computes each criterion once. Groups
    # that every config of a series keeps whole may be left out.
    scores: Mapping[str, torch.Tensor] | None = None

    def validate(self) -> "PruneConfig":
        get_criterion(self.criterion)
        if (self.keep is None) == (self.ratio is None):
            raise ExplorerError("give either keep counts or a pruning ratio (exactly one)")
        if self.ratio is not None:
            check_ratio(self.ratio)
        return self

    def ranking(self) -> RankingConfig:
        return RankingConfig(self.keep, self.ratio, self.global_ranking, self.normaliser,
                             self.min_fraction)


@dataclass
class PruneResult:
    """The smaller model, its spec, and what was kept, keyed by layer / group root name.

    `kept[name]` are the surviving unit indices in the *dense* layer's numbering and
    `scores[name]` the scores they were ranked on (for conv groups: aggregated over the
    group's coupled layers).
    """
    model: nn.Module
    spec: Spec
    kept: dict[str, list[int]]
    scores: dict[str, torch.Tensor]
    dense_widths: dict[str, int]

    @property
    def widths(self) -> dict[str, int]:
        return {name: len(idx) for name, idx in self.kept.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: per layer dense width, kept count, kept indices and scores."""
        return {name: {"dense": self.dense_widths[name], "kept_count": len(self.kept[name]),
                       "kept": self.kept[name], "scores": self.scores[name].tolist()}
                for name in self.kept}


def _as_index(name: str, idx: Any, n: int) -> torch.Tensor:
    t = torch.as_tensor(idx, dtype=torch.long).flatten()
    if t.numel() == 0:
        raise ExplorerError(f"layer {name}: keep at least one unit (a layer cannot be emptied)")
    if t.min() < 0 or t.max() >= n:
        raise ExplorerError(f"layer {name} has {n} units; kept index {int(t.max())} is out of range")
    if torch.unique(t).numel() != t.numel():
        raise ExplorerError(f"layer {name}: kept indices contain duplicates")
    return t


# ------------------------------------------------------------------ MLPs (own code)

def mlp_layers(model: MLP) -> list[str]:
    """Names of the hidden (prunable) layers of an MLP: fc1 … fc(K-1)."""
    return [f"fc{i + 1}" for i in range(model.num_layers - 1)]


@torch.no_grad()
def prune_mlp(model: MLP, keep_indices: Mapping[str, torch.Tensor | list[int]]) -> MLP:
    """A new, smaller MLP keeping the given units of each hidden layer.

    Row i of fc_k (and its bias) is neuron i; column i of fc_{k+1} is where that neuron
    feeds in, so both go together. Layers missing from `keep_indices` keep all units;
    indices are kept in the order given (ranking returns them ascending).
    """
    if not isinstance(model, MLP):
        raise ExplorerError(f"prune_mlp needs an MLP, got {type(model).__name__}")
    names = mlp_layers(model)
    unknown = [k for k in keep_indices if k not in names]
    if unknown:
        raise ExplorerError(f"unknown layer {unknown[0]!r}; hidden layers: {', '.join(names) or 'none'}")
    linears = model.linears()
    device = linears[0].weight.device
    rows = [_as_index(n, keep_indices[n], lin.out_features).to(device) if n in keep_indices else None
            for n, lin in zip(names, linears)] + [None]
    widths = [lin.out_features if r is None else r.numel() for lin, r in zip(linears[:-1], rows)]
    new = MLP(linears[0].in_features, widths, linears[-1].out_features, model.activation_name)
    new.to(device=device, dtype=linears[0].weight.dtype)
    cols: torch.Tensor | None = None
    for lin, new_lin, r in zip(linears, new.linears(), rows):
        w = lin.weight if cols is None else lin.weight.index_select(1, cols)
        b = lin.bias
        if r is not None:
            w = w.index_select(0, r)
            b = b.index_select(0, r) if b is not None else None
        new_lin.weight.copy_(w)
        if b is not None:
            new_lin.bias.copy_(b)
        else:  # a layer loaded without its bias keeps none, not a fresh random one
            new_lin.bias = None
        cols = r
    new.train(model.training)
    return new


def _mlp_series(model: nn.Module, spec: Spec, configs: Sequence[PruneConfig],
                data: Split | None) -> Iterator[PruneResult]:
    if not isinstance(model, MLP):
        raise ExplorerError(f"the spec says {spec.get('arch')!r} but the model is a "
                            f"{type(model).__name__}")
    names = mlp_layers(model)
    if not names:
        raise ExplorerError("this model has no hidden layer, so it has no neurons to prune")
    scores = _scores(model, configs[0], data, names)
    dense = {n: lin.out_features for n, lin in zip(names, model.linears())}
    for config in configs:
        kept = choose(scores, config.ranking())
        pruned = prune_mlp(model, kept)
        yield PruneResult(pruned, spec_of(pruned, spec), {n: kept[n].tolist() for n in names},
                          scores, dense)


def _scores(model: nn.Module, config: PruneConfig, data: Split | None,
            layers: list[str]) -> dict[str, torch.Tensor]:
    """The config's precomputed scores for `layers`, or freshly computed ones."""
    if config.scores is None:
        return compute_scores(model, config.criterion, data, layers, config.options)
    missing = [n for n in layers if n not in config.scores]
    if missing:
        raise ExplorerError(f"precomputed scores lack layer(s) {', '.join(missing[:3])}")
    return {n: config.scores[n] for n in layers}


def score_layers(model: nn.Module, spec: Mapping[str, Any],
                 roots: Collection[str] | None = None) -> list[str]:
    """The layers whose scores structural pruning of `model` ranks on (for precomputing);
    for a conv net, those of the dependency groups rooted at `roots` (None: all groups).

    Why `roots`: a config that keeps a group whole never ranks its units, so precomputed
    scores may leave it out (`_graph_series`). Neuron pruning of a CNN keeps every conv
    group whole, and Taylor scores for its conv layers cost a backward pass through them
    (Digits CNN: 20 ms a scoring against 8 ms for the classifier alone).
    """
    if isinstance(model, MLP):
        return mlp_layers(model)
    by_root = _graph_facts(model, spec).coupled
    wanted = by_root if roots is None else [r for r in by_root if r in roots]
    order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    return sorted({n for r in wanted for n in by_root[r]}, key=order.__getitem__)


def prune_to_widths(model: MLP, widths: list[int], criterion: str, data: Split | None = None,
                    options: CriterionOptions | None = None) -> MLP:
    """The MLP pruned to the given hidden widths (the retention schedule's row)."""
    config = PruneConfig(criterion, keep=[int(w) for w in widths],
                         options=options or CriterionOptions()).validate()
    spec = {"arch": "mlp", "in": model.linears()[0].in_features,
            "out": model.linears()[-1].out_features, "hidden": model.hidden}
    return next(_mlp_series(model, spec, [config], data)).model


# ------------------------------------------------------------------ conv nets (Torch-Pruning)

def _out_channel_fns() -> tuple[Callable, ...]:
    fn = tp.pruner.function
    return (fn.prune_conv_out_channels, fn.prune_depthwise_conv_out_channels,
            fn.prune_linear_out_channels)


class CriterionImportance(tp.importance.Importance):
    """Torch-Pruning importance backed by our criteria's precomputed scores.

    For a group it gathers the scores of every coupled layer whose *output* channels the
    group removes (the root conv, the other convs tied to it by residual adds, depthwise
    convs), maps them onto the root's channel numbering through the group's
    `root_idxs`, and averages them. Each layer's scores are first divided by their mean
    |score| so one layer with a large fan-in does not decide the group alone. Consumers
    (input channels) and BatchNorms carry no criterion score of their own.
    """

    def __init__(self, scores: Mapping[str, torch.Tensor], names: Mapping[nn.Module, str]):
        self.scores = scores
        self.names = names
        self.out_fns = _out_channel_fns()

    @torch.no_grad()
    def __call__(self, group) -> torch.Tensor | None:
        n = len(group[0].idxs)
        total = torch.zeros(n, dtype=torch.float64)
        count = torch.zeros(n, dtype=torch.float64)
        for i, (dep, idxs) in enumerate(group):
            name = self.names.get(dep.target.module)
            if dep.handler not in self.out_fns or name not in self.scores:
                continue
            root = group[i].root_idxs
            if root is None or any(r is None for r in root):
                continue
            s = _scaled(self.scores[name])
            root_t = torch.as_tensor(root, dtype=torch.long)
            total.index_add_(0, root_t, s[torch.as_tensor(idxs, dtype=torch.long)])
            count.index_add_(0, root_t, torch.ones(len(root), dtype=torch.float64))
        if count.sum() == 0:
            return None  # Torch-Pruning's convention: this group has no importance
        return (total / count.clamp(min=1)).float()


def _scaled(s: torch.Tensor) -> torch.Tensor:
    """A layer's scores (float64) over their mean |score|, so that one layer with a large
    fan-in does not decide a group alone (`CriterionImportance`)."""
    s = s.to(torch.float64)
    scale = s.abs().mean()
    return s / scale if scale > 0 else s


@dataclass
class _Graph:
    graph: Any
    groups: list[Any]          # full-index groups, sorted by the root's module order
    roots: list[str]           # root layer name per group
    names: dict[nn.Module, str]


def _last_linear(model: nn.Module) -> nn.Module | None:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def _build_graph(model: nn.Module, spec: Spec) -> _Graph:
    unsupported = sorted({type(m).__name__ for m in model.modules()
                          if isinstance(m, (nn.Conv1d, nn.Conv3d, nn.ConvTranspose2d, nn.LSTM))})
    if unsupported:
        raise ExplorerError(f"structural pruning does not support layer type(s) "
                            f"{', '.join(unsupported)}")
    device = next(model.parameters()).device
    example = torch.zeros(1, *input_shape(spec), device=device)
    was_training = model.training
    model.eval()  # BatchNorm cannot trace a batch of one in training mode
    try:
        with warnings.catch_warnings(), torch.enable_grad():  # tracing relies on autograd
            warnings.simplefilter("ignore")
            graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    except Exception as exc:  # tracing errors come in many types
        raise ExplorerError(f"cannot trace the model's channel dependencies "
                            f"({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    finally:
        model.train(was_training)
    names = {m: n for n, m in model.named_modules()}
    order = {n: i for i, n in enumerate(names.values())}
    last = _last_linear(model)
    groups = list(graph.get_all_groups(ignored_layers=[last] if last is not None else [],
                                       root_module_types=[nn.Conv2d, nn.Linear]))
    groups.sort(key=lambda g: order[names[g[0].dep.target.module]])
    return _Graph(graph, groups, [names[g[0].dep.target.module] for g in groups], names)


@dataclass(frozen=True)
class _Facts:
    """What a conv net's dependency graph says, per architecture (`_graph_facts`)."""
    groups: list[tuple[str, int]]         # (root, units) of every group: `conv_groups`
    coupled: dict[str, list[str]]         # root → the layers whose outputs it removes
    linear_pairs: dict[str, list[str]]    # root → consumers, for `_linear_pairs` groups


_FACTS: dict[str, _Facts] = {}


def _graph_facts(model: nn.Module, spec: Mapping[str, Any]) -> _Facts:
    """The groups, each group root's coupled layers (which `score_layers` names) and its
    plain Linear consumers of a conv net, traced once per architecture
    (`models.architecture_key`).

    A sweep asks for these in every block, and a trace costs 3 ms for the Digits CNN,
    1.3 s for DenseNet-121; the answers depend on the architecture alone.
    """
    key = architecture_key(model, input_shape(spec))
    facts = _FACTS.get(key)
    if facts is None:
        g = _build_graph(model, dict(spec))
        facts = _Facts([(root, len(group[0].idxs)) for root, group in zip(g.roots, g.groups)],
                       {root: _coupled_layers(g, [root]) for root in g.roots},
                       _linear_pairs(g))
        if len(_FACTS) > 64:
            _FACTS.clear()
        _FACTS[key] = facts
    return facts


def _linear_pairs(g: _Graph) -> dict[str, list[str]]:
    """Roots whose group is one Linear's outputs feeding other Linears' inputs one to one,
    through parameter-free ops alone (a CNN's or VGG's hidden classifier layers, with
    their ReLU and dropout): root → those consumers.

    Removing such a group's units is Torch-Pruning's own Linear pruning of the root's
    outputs and the consumers' inputs, which needs no traced graph (`_pair_series`).
    Anything else in the group — a BatchNorm, a reshape, a concatenation, a residual
    add, another producer — needs the graph, so such a group is not a pair.
    """
    pairs: dict[str, list[str]] = {}
    for root, group in zip(g.roots, g.groups):
        units = list(range(len(group[0].idxs)))
        consumers: list[str] = []
        plain = isinstance(g.graph.model.get_submodule(root), nn.Linear)
        for i, (dep, idxs) in enumerate(group):
            module = dep.target.module
            if module not in g.names:  # Torch-Pruning's stand-in for an op or a bare
                # parameter: an elementwise op (ReLU, dropout) alone changes no width
                plain = plain and type(module) is tp.ops._ElementWiseOp
                continue
            name, kind = g.names[module], getattr(dep.handler, "__name__", "")
            one_to_one = list(idxs) == units and list(group[i].root_idxs) == units
            if not (isinstance(module, nn.Linear) and one_to_one):
                # a module of a fixed width (a LayerNorm, even without parameters) needs
                # the graph; only activations and dropout pass unchanged
                plain = plain and isinstance(module, _WIDTH_FREE)
            elif kind == "prune_in_channels":
                consumers.append(name)
            elif kind != "prune_out_channels" or name != root:
                plain = False
        if plain and consumers:
            pairs[root] = consumers
    return pairs


# modules whose output has the width of their input whatever it is (`_linear_pairs`)
_WIDTH_FREE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Tanh, nn.Sigmoid,
               nn.Dropout, nn.Identity)


def conv_groups(model: nn.Module, spec: Spec) -> list[tuple[str, int]]:
    """(root layer, channels) of every prunable dependency group, in module order.

    This is the order `PruneConfig.keep` follows for conv nets. The classifier's output
    is never in a group.
    """
    return list(_graph_facts(model, spec).groups)


def _coupled_layers(g: _Graph, roots: Collection[str] | None = None) -> list[str]:
    """Every Conv/Linear whose output channels some group (of `roots`; None: any)
    removes: what needs scores."""
    fns = _out_channel_fns()
    seen: dict[str, None] = {}
    for root, group in zip(g.roots, g.groups):
        if roots is not None and root not in roots:
            continue
        for dep, _ in group:
            if dep.handler in fns and dep.target.module in g.names:
                seen[g.names[dep.target.module]] = None
    order = {n: i for i, n in enumerate(g.names.values())}
    return sorted(seen, key=order.__getitem__)


def _graph_series(model: nn.Module, spec: Spec, configs: Sequence[PruneConfig],
                  data: Split | None, spec_update: Callable[[nn.Module, Spec], Spec] | None = None
                  ) -> Iterator[PruneResult]:
    """Prune one copy of `model` step by step along one dependency graph.

    Why one graph: tracing it is the costly part of conv surgery (3 ms for the Digits
    CNN, 1.3 s for DenseNet-121), and a sweep prunes one baseline at ten ratios.
    Each step removes the units the previous step kept and this one does not, so it
    needs nested keep-sets (falling keep counts on the same scores give them); a step
    whose kept units are not a subset of the previous ones starts from a fresh copy.
    Every result but the last is a copy of the working model, so results stay valid
    while later steps go on.
    """
    if isinstance(model, MLP):
        raise ExplorerError(f"the spec says {spec.get('arch')!r} but the model is an MLP")
    if torch_prune.is_pruned(model):
        raise ExplorerError("the model carries weight masks; make them permanent "
                            "(masks.make_permanent) before removing channels")
    whole: set[str] = set()
    if configs[0].scores is not None:
        # precomputed scores may leave out the groups no config prunes (`score_layers`)
        facts = _graph_facts(model, spec)
        whole = _kept_whole(dict(facts.groups), configs)
        if facts.groups and all(r in facts.linear_pairs for r, _ in facts.groups if r not in whole):
            yield from _pair_series(model, spec, configs, facts, whole, spec_update)
            return
    working = copy_model(model)
    g = _build_graph(working, spec)
    if not g.groups:
        raise ExplorerError("this model has no prunable channel groups")
    dense = {root: len(group[0].idxs) for root, group in zip(g.roots, g.groups)}
    raw = _scores(working, configs[0], data,
                  _coupled_layers(g, [r for r in g.roots if r not in whole]))
    importance = CriterionImportance(raw, g.names)
    scores: dict[str, torch.Tensor] = {}
    for root, group in zip(g.roots, g.groups):
        s = importance(group) if root not in whole else \
            torch.ones(len(group[0].idxs))  # kept whole: its ranking is never used
        if s is None:
            raise ExplorerError(f"no criterion scores for the channels of {root}")
        scores[root] = s
    present = {root: torch.arange(n) for root, n in dense.items()}  # dense numbering
    for step, config in enumerate(configs):
        kept = choose(scores, config.ranking())
        if any(not bool(torch.isin(kept[r], present[r]).all()) for r in g.roots):
            yield from _graph_series(model, spec, configs[step:], data, spec_update)
            return
        for root, group in zip(g.roots, g.groups):
            # positions, in the working model's current numbering, of the units to drop
            removed = torch.nonzero(~torch.isin(present[root], kept[root])).flatten().tolist()
            if not removed:
                continue
            # A fresh group at prune time: earlier removals shifted concat offsets.
            module, handler = group[0].dep.target.module, group[0].dep.handler
            fresh = g.graph.get_pruning_group(module, handler, removed)
            if not g.graph.check_pruning_group(fresh):
                raise ExplorerError(f"removing {len(removed)} channels of {root} would empty a layer")
            fresh.prune()
            present[root] = kept[root]
        result = working if step == len(configs) - 1 else copy_model(working)
        yield _result(result, spec, spec_update, kept, scores, dense)


def _result(model: nn.Module, spec: Spec, spec_update: Callable[[nn.Module, Spec], Spec] | None,
            kept: Mapping[str, torch.Tensor], scores: dict[str, torch.Tensor],
            dense: Mapping[str, int]) -> PruneResult:
    """A conv net's pruned model as a `PruneResult`: its spec follows its new widths."""
    new_spec = spec_of(model, spec)
    if spec_update is not None:
        new_spec = spec_update(model, new_spec)
    return PruneResult(model, new_spec, {r: kept[r].tolist() for r in dense}, scores,
                       dict(dense))


def _kept_whole(units: Mapping[str, int], configs: Sequence[PruneConfig]) -> set[str]:
    """Group roots (`units`: root → units, in group order) whose every unit each config
    keeps (explicit, per-group keep counts)."""
    if any(c.keep is None or c.global_ranking for c in configs):
        return set()
    whole = set(units)
    for c in configs:
        counts = c.keep if isinstance(c.keep, Mapping) else dict(zip(units, c.keep))
        whole -= {r for r, n in units.items() if counts.get(r, n) != n}
    return whole


def _pair_series(model: nn.Module, spec: Spec, configs: Sequence[PruneConfig], facts: _Facts,
                 whole: set[str], spec_update: Callable[[nn.Module, Spec], Spec] | None
                 ) -> Iterator[PruneResult]:
    """`_graph_series` for configs that prune only `_linear_pairs` groups (a sweep's
    neuron pruning of a CNN or VGG), without tracing the model.

    Why: the trace, which such a removal does not need, was most of a Digits CNN's
    neuron pruning (~5 of 7 ms, four times per benchmark sweep). The removal is
    Torch-Pruning's own Linear pruning, the group's only steps with parameters, so the
    models, kept units and scores are those the graph gives.
    """
    units = dict(facts.groups)
    pruned = [r for r in units if r not in whole]
    raw = _scores(model, configs[0], None, [n for r in pruned for n in facts.coupled[r]])
    for r in pruned:
        if raw[r].numel() != units[r]:  # scores made for another model's widths
            raise ExplorerError(f"precomputed scores of {r} have {raw[r].numel()} values for "
                                f"its {units[r]} units")
    scores = {r: _scaled(raw[r]).float() if r in raw else torch.ones(n)
              for r, n in units.items()}
    fn = tp.pruner.function
    for config in configs:
        kept = choose(scores, config.ranking())
        result = copy_model(model)
        for root in pruned:
            removed = sorted(set(range(units[root])) - set(kept[root].tolist()))
            if len(removed) == units[root]:
                raise ExplorerError(f"removing {len(removed)} channels of {root} would empty a layer")
            if removed:
                fn.prune_linear_out_channels(result.get_submodule(root), removed)
                for name in facts.linear_pairs[root]:
                    fn.prune_linear_in_channels(result.get_submodule(name), removed)
        yield _result(result, spec, spec_update, kept, scores, units)


@torch.no_grad()
def replay_removal(model: nn.Module, spec: Mapping[str, Any],
                   kept: Mapping[str, Sequence[int]]) -> nn.Module:
    """The removal a `PruneResult` made (its `kept`, in dense numbering), done again on
    a copy of another model with the dense model's shapes.

    Why: train-time pruning carries the optimiser's moments through the surgery by
    putting them into such a copy (see `train_time.carry_optimizer`). MLPs replay
    `prune_mlp`; conv nets trace the copy and remove the same channels group by group,
    in the order `_graph_series` does. The given model is left untouched.
    """
    if isinstance(model, MLP):
        return prune_mlp(model, kept)
    working = copy.deepcopy(model)
    g = _build_graph(working, dict(spec))
    unknown = sorted(set(kept) - set(g.roots))
    if unknown:
        raise ExplorerError(f"no channel group rooted at {unknown[0]!r}; groups: "
                            f"{', '.join(g.roots)}")
    for root, group in zip(g.roots, g.groups):
        if root not in kept:
            continue
        dense = len(group[0].idxs)
        removed = sorted(set(range(dense)) - {int(i) for i in kept[root]})
        if removed:
            module, handler = group[0].dep.target.module, group[0].dep.handler
            g.graph.get_pruning_group(module, handler, removed).prune()
    return working


def _cnn_spec(model: nn.Module, spec: Spec) -> Spec:
    """The CNN's own spec fields follow its new widths, so the spec alone builds it."""
    spec = dict(spec)
    spec["channels"] = [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)]
    spec["hidden"] = [m.out_features for m in model.classifier if isinstance(m, nn.Linear)][:-1]
    return spec


def _graph(spec_update: Callable[[nn.Module, Spec], Spec] | None = None):
    def run(model: nn.Module, spec: Spec, configs: Sequence[PruneConfig],
            data: Split | None) -> Iterator[PruneResult]:
        return _graph_series(model, spec, configs, data, spec_update)
    return run


# (model, spec, configs of one criterion, calibration data) -> one result per config
Pruner = Callable[[nn.Module, Spec, Sequence[PruneConfig], "Split | None"],
                  Iterator[PruneResult]]

PRUNERS: dict[str, Pruner] = {
    "mlp": _mlp_series,
    "slp": _mlp_series,
    "cnn": _graph(_cnn_spec),
    "densenet121": _graph(),
    "resnet18": _graph(),
    "vgg16_bn": _graph(),
    "mobilenet_v2": _graph(),
}


def prune_structural(model: nn.Module, spec: Mapping[str, Any], config: PruneConfig,
                     data: Split | None = None) -> PruneResult:
    """Score, rank and physically remove units; the input model is left untouched."""
    return next(prune_structural_series(model, spec, [config], data))


def prune_structural_series(model: nn.Module, spec: Mapping[str, Any],
                            configs: Sequence[PruneConfig], data: Split | None = None
                            ) -> Iterator[PruneResult]:
    """`prune_structural` for several configs of one criterion, lazily, in order.

    Scores are computed once (from the first config, or its precomputed `scores`) and
    conv nets are traced once (`_graph_series`); each result equals what
    `prune_structural` gives for its config alone. Configs with falling keep counts
    (rising ratios) share the most work. The input model is left untouched.
    """
    configs = [c.validate() for c in configs]
    if not configs:
        raise ExplorerError("give at least one pruning config")
    if len({(c.criterion, repr(c.options)) for c in configs}) > 1:
        raise ExplorerError("a pruning series ranks with one criterion and one set of options")
    arch = spec.get("arch") if isinstance(spec, Mapping) else None
    if arch not in PRUNERS:
        raise ExplorerError(f"structural pruning does not support model {arch!r}; supported: "
                            f"{', '.join(PRUNERS)}")
    return PRUNERS[arch](model, dict(spec), configs, data)
