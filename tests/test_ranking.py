"""Ranking: which units survive, given scores — per layer, by ratio, and globally."""
import pytest
import torch

from explorer_core.errors import ExplorerError
from explorer_core.ranking import (RankingConfig, choose, keep_counts, keep_for_ratio,
                                   select_by_ratio, select_global, select_per_layer, top_n)


def test_top_n_keeps_highest_scores_in_original_order():
    s = torch.tensor([0.5, 3.0, 0.1, 2.0, 1.0])
    assert top_n(s, 3).tolist() == [1, 3, 4]
    assert top_n(s, 5).tolist() == [0, 1, 2, 3, 4]


def test_ties_break_towards_lower_index_and_are_deterministic():
    s = torch.tensor([1.0, 2.0, 2.0, 2.0, 0.0, 2.0])
    picks = {tuple(top_n(s, 2).tolist()) for _ in range(5)}
    assert picks == {(1, 2)}


def test_per_layer_counts_and_missing_layers_keep_everything():
    scores = {"fc1": torch.tensor([3.0, 1.0, 2.0]), "fc2": torch.tensor([0.0, 1.0])}
    kept = select_per_layer(scores, {"fc1": 1})
    assert kept["fc1"].tolist() == [0]
    assert kept["fc2"].tolist() == [0, 1]


def test_ratio_keeps_rounded_share_and_at_least_one():
    # round((1-0.5)*5) = round(2.5) = 2 (half to even), round(0.1*3)=0 -> floor of 1
    assert keep_for_ratio(5, 0.5) == 2
    assert keep_for_ratio(3, 0.9) == 1
    assert keep_for_ratio(10, 0.0) == 10
    kept = select_by_ratio({"a": torch.arange(8.0), "b": torch.tensor([5.0, 1.0])}, 0.75)
    assert kept["a"].tolist() == [6, 7]
    assert kept["b"].tolist() == [0]


@pytest.mark.parametrize("keep, message", [
    ({"fc1": 4}, "has 3 units; cannot keep 4"),
    ({"fc1": 0}, "must be ≥ 1"),
    ({"fc9": 1}, "unknown layer 'fc9'"),
])
def test_bad_keep_counts_raise_clear_errors(keep, message):
    with pytest.raises(ExplorerError, match=message):
        select_per_layer({"fc1": torch.ones(3)}, keep)


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5, float("nan")])
def test_ratio_outside_unit_interval_is_refused(ratio):
    with pytest.raises(ExplorerError, match=r"ratio must be in \[0, 1\)"):
        select_by_ratio({"fc1": torch.ones(3)}, ratio)


def test_wrong_number_of_keep_counts():
    with pytest.raises(ExplorerError, match="2 keep count.*3 prunable"):
        keep_counts({"a": 4, "b": 4, "c": 4}, [1, 2])


def test_global_normalises_per_layer_so_small_scale_layers_survive():
    # Layer "big" has scores 100x larger; raw global ranking would keep only its units.
    scores = {"big": torch.tensor([100.0, 90.0, 10.0, 5.0]),
              "small": torch.tensor([1.0, 0.95, 0.02, 0.01])}
    kept = select_global(scores, total=4, normaliser="max")
    # Normalised: big = [1, .9, .1, .05], small = [1, .95, .02, .01]: the top 4 are two of each.
    assert kept["big"].tolist() == [0, 1]
    assert kept["small"].tolist() == [0, 1]


def test_global_never_empties_a_layer():
    scores = {"strong": torch.tensor([1.0, 1.0, 1.0, 1.0]), "weak": torch.tensor([0.001, 0.0])}
    kept = select_global(scores, total=2, normaliser="none")
    assert kept["weak"].numel() == 1 and kept["weak"].tolist() == [0]
    assert kept["strong"].tolist() == [0]
    # With a minimum fraction every layer keeps at least ceil(f*n) units.
    kept = select_global(scores, total=4, normaliser="none", min_fraction=0.5)
    assert kept["weak"].numel() == 1 and kept["strong"].numel() == 3


def test_global_ties_resolve_by_layer_order_then_index():
    scores = {"a": torch.tensor([0.0, 1.0, 1.0]), "b": torch.tensor([1.0, 1.0, 0.0])}
    kept = select_global(scores, total=4, normaliser="none")
    # floors: a keeps index 1, b keeps index 0; 2 more from the tied 1.0s: a[2] then b[1].
    assert kept["a"].tolist() == [1, 2]
    assert kept["b"].tolist() == [0, 1]


def test_choose_global_uses_the_same_budget_as_per_layer():
    g = torch.Generator().manual_seed(0)
    scores = {"a": torch.rand(10, generator=g), "b": torch.rand(6, generator=g)}
    per_layer = choose(scores, RankingConfig(keep=[4, 2]))
    glob = choose(scores, RankingConfig(keep=[4, 2], global_ranking=True))
    assert sum(v.numel() for v in per_layer.values()) == 6
    assert sum(v.numel() for v in glob.values()) == 6
    ratio = choose(scores, RankingConfig(ratio=0.5, global_ranking=True))
    assert sum(v.numel() for v in ratio.values()) == 8


def test_global_ranking_keeps_the_best_normalised_scores_of_all_layers():
    """b's best unit is all b has: ranked together (each layer by its own best), a keeps
    three and b its floor of one, where per layer each keeps two."""
    scores = {"a": torch.tensor([1.0, 0.9, 0.8, 0.7]), "b": torch.tensor([2.0, 0.2, 0.1, 0.02])}
    glob = choose(scores, RankingConfig(keep=[2, 2], global_ranking=True))
    assert {k: v.tolist() for k, v in glob.items()} == {"a": [0, 1, 2], "b": [0]}
    per_layer = choose(scores, RankingConfig(keep=[2, 2]))
    assert {k: v.tolist() for k, v in per_layer.items()} == {"a": [0, 1], "b": [0, 1]}


def test_nan_scores_are_refused():
    with pytest.raises(ExplorerError, match="NaN"):
        top_n(torch.tensor([1.0, float("nan")]), 1)


def test_keep_and_ratio_are_exclusive():
    with pytest.raises(ExplorerError, match="exactly one"):
        choose({"a": torch.ones(2)}, RankingConfig(keep=[1], ratio=0.5))
