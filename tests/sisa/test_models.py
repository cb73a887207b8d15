"""Shard model factories: the built-in mlp and cnn, the registry, and its errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unlearn_ops.errors import ConfigError, UnknownModelError
from unlearn_ops.params import ModelParams
from unlearn_ops.sisa import models
from unlearn_ops.sisa.layers import SeededDropout
from unlearn_ops.sisa.models import build_model, register_model, registered_models


@pytest.fixture
def restore_registry() -> object:
    """Factories registered by a test are gone after it."""
    saved = dict(models._FACTORIES)
    yield
    models._FACTORIES.clear()
    models._FACTORIES.update(saved)


def layer_types(model: nn.Module) -> list[type[nn.Module]]:
    return [type(layer) for layer in model.children()]


def test_the_built_in_models_are_registered() -> None:
    assert {"mlp", "cnn"} <= set(registered_models())


def test_mlp_has_a_hidden_layer_per_width_and_maps_features_to_classes() -> None:
    model = build_model(ModelParams(name="mlp", hidden_sizes=(16, 8)), 6, 3)
    assert layer_types(model) == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    linears = [layer for layer in model.children() if isinstance(layer, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(6, 16), (16, 8), (8, 3)]
    assert model(torch.zeros(5, 6)).shape == (5, 3)


def test_mlp_without_hidden_layers_is_linear() -> None:
    model = build_model(ModelParams(name="mlp", hidden_sizes=()), 4, 2)
    assert layer_types(model) == [nn.Linear]


def test_dropout_is_the_seeded_layer_never_torch_dropout() -> None:
    for name in ("mlp", "cnn"):
        model = build_model(ModelParams(name=name, hidden_sizes=(8,), dropout=0.5), 64, 10)
        kinds = {type(m) for m in model.modules()}
        assert SeededDropout in kinds, name
        assert nn.Dropout not in kinds, name


def test_cnn_infers_a_square_image_and_outputs_class_scores() -> None:
    model = build_model(ModelParams(name="cnn", channels=(4, 8), hidden_sizes=(16,)), 64, 10)
    unflatten = next(model.children())
    assert isinstance(unflatten, nn.Unflatten)
    assert tuple(unflatten.unflattened_size) == (1, 8, 8)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 2
    assert model(torch.zeros(3, 64)).shape == (3, 10)


def test_cnn_takes_an_explicit_image_shape() -> None:
    params = ModelParams(name="cnn", channels=(4,), hidden_sizes=(), image_shape=(3, 4, 8))
    model = build_model(params, 96, 5)
    assert model(torch.zeros(2, 96)).shape == (2, 5)
    assert isinstance(list(model.children())[-1], nn.Linear)  # no hidden layer


@pytest.mark.parametrize(
    ("image_shape", "features", "message"),
    [
        (None, 30, "30 features are not a square image"),
        ((1, 4, 4), 30, "model.image_shape [1, 4, 4] does not hold 30 features"),
    ],
)
def test_cnn_refuses_features_that_are_not_its_image(
    image_shape: tuple[int, int, int] | None, features: int, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        build_model(ModelParams(name="cnn", image_shape=image_shape), features, 2)
    assert message in str(caught.value)


def test_an_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(UnknownModelError) as caught:
        build_model(ModelParams(name="transformer"), 4, 2)
    message = str(caught.value)
    assert "transformer" in message
    assert "cnn" in message
    assert "mlp" in message


@pytest.mark.usefixtures("restore_registry")
def test_a_registered_factory_is_built_by_name() -> None:
    built: list[tuple[ModelParams, int, int]] = []

    def tiny(params: ModelParams, num_features: int, num_classes: int) -> nn.Module:
        built.append((params, num_features, num_classes))
        return nn.Linear(num_features, num_classes)

    register_model("tiny", tiny)
    assert "tiny" in registered_models()
    params = ModelParams(name="tiny")
    model = build_model(params, 7, 3)
    assert isinstance(model, nn.Linear)
    assert built == [(params, 7, 3)]


def test_a_fixed_seed_gives_the_same_initial_weights() -> None:
    params = ModelParams(name="mlp", hidden_sizes=(8,))
    torch.manual_seed(11)
    first = build_model(params, 6, 3).state_dict()
    torch.manual_seed(11)
    second = build_model(params, 6, 3).state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)
