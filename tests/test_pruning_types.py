"""What each pruning type asks a criterion to score."""
from __future__ import annotations

import pytest

from explorer_core.models import build_model, default_spec
from explorer_core.pruning_types import scored_layers


@pytest.mark.parametrize("types, expected", [
    (["neuron"], ["classifier.0"]),
    (["neuron", "weight"], ["classifier.0"]),
    (["structured"], ["features.0", "features.3"]),
    (["weight", "structured", "neuron"], ["features.0", "features.3", "classifier.0"]),
])
def test_a_cnn_is_scored_on_the_layers_its_types_prune(types, expected):
    spec = default_spec("cnn", 1, 8, 10)
    assert scored_layers(build_model(spec), spec, types) == expected


def test_an_mlp_is_scored_on_its_hidden_layers():
    spec = default_spec("mlp", 1, 8, 10, hidden=[32, 16])
    assert scored_layers(build_model(spec), spec, ["neuron"]) == ["fc1", "fc2"]
