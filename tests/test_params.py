"""params.yaml as frozen models: validation, round trip, and the training hash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from unlearn_ops.errors import ConfigError, UnlearnOpsError
from unlearn_ops.params import Params, load_params


def test_defaults() -> None:
    params = Params.from_mapping(None)
    assert params == Params()
    assert (params.sisa.shards, params.sisa.slices) == (8, 4)
    assert params.model.name == "mlp"
    assert params.dataset.source == "digits"


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"sede": 1}, "sede"),
        ({"sisa": {"shardz": 3}}, "sisa.shardz"),
        ({"model": {"hidden": [8]}}, "model.hidden"),
        ({"training": {"epochs": 2}}, "training.epochs"),
        ({"gates": {"min_acc": 0.5}}, "gates.min_acc"),
        ({"dataset": {"path": "x.csv"}}, "dataset.path"),
        ({"registry": {"uri": "x"}}, "registry.uri"),
    ],
)
def test_unknown_keys_are_rejected_by_name(data: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError, match=rf"{where}: Extra inputs are not permitted") as caught:
        Params.from_mapping(data, source="params.yaml")
    assert str(caught.value).startswith("invalid configuration in params.yaml: ")
    assert isinstance(caught.value, UnlearnOpsError)


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"sisa": {"shards": 0}}, "sisa.shards"),
        ({"sisa": {"slices": 257}}, "sisa.slices"),
        ({"sisa": {"salt": ""}}, "sisa.salt"),
        ({"sisa": {"aggregation": "median"}}, "sisa.aggregation"),
        ({"dataset": {"holdout_fraction": 1.0}}, "dataset.holdout_fraction"),
        ({"training": {"optimizer": "rmsprop"}}, "training.optimizer"),
        ({"training": {"learning_rate": 0}}, "training.learning_rate"),
        ({"model": {"dropout": 1.0}}, "model.dropout"),
        ({"registry": {"model_name": "has space"}}, "registry.model_name"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_values_are_rejected_by_name(data: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError, match=rf"{where}: ") as caught:
        Params.from_mapping(data)
    assert caught.value.problems[0].startswith(f"{where}: ")


def test_every_problem_is_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        Params.from_mapping({"sisa": {"shards": 0, "slices": 0}, "extra": 1})
    assert len(caught.value.problems) == 3


@pytest.mark.parametrize("data", [[1, 2], "shards: 3", 7])
def test_a_document_that_is_not_a_mapping_is_rejected(data: object) -> None:
    with pytest.raises(ConfigError, match="expected a mapping"):
        Params.from_mapping(data)


def test_params_are_frozen() -> None:
    params = Params()
    with pytest.raises(ValidationError):
        params.seed = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        params.sisa.shards = 3  # type: ignore[misc]


CUSTOM = {
    "seed": 11,
    "dataset": {
        "source": "data/table.csv",
        "id_column": "patient",
        "label_column": "outcome",
        "feature_columns": ["age", "weight"],
        "holdout_fraction": 0.1,
    },
    "sisa": {"shards": 5, "slices": 2, "salt": "s", "aggregation": "vote"},
    "model": {"name": "cnn", "channels": [4], "image_shape": [1, 8, 8], "dropout": 0.25},
    "training": {"epochs_per_stage": 3, "optimizer": "sgd", "learning_rate": 0.05},
    "gates": {"min_accuracy": 0.6},
    "registry": {"model_name": "patients.v2"},
}


def test_yaml_round_trip() -> None:
    params = Params.from_mapping(CUSTOM)
    text = params.to_yaml()
    again = Params.from_mapping(yaml.safe_load(text))
    assert again == params
    assert again.training_hash() == params.training_hash()
    assert list(yaml.safe_load(text)) == [
        "seed",
        "dataset",
        "sisa",
        "model",
        "training",
        "gates",
        "registry",
        "compliance",
        "approval",
        "release",
        "unlearning",
    ]
    assert again.model.image_shape == (1, 8, 8)
    assert again.dataset.feature_columns == ("age", "weight")


def test_load_params(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(CUSTOM))
    assert load_params(path) == Params.from_mapping(CUSTOM)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "file not found"),
        ("sisa: [unclosed", "not valid YAML"),
        ("sisa:\n  shards: many\n", "sisa.shards"),
    ],
)
def test_load_params_errors(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "params.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message) as caught:
        load_params(path)
    assert caught.value.source == str(path)


def with_change(section: str | None, key: str, value: object) -> Params:
    data: dict[str, Any] = {key: value} if section is None else {section: {key: value}}
    return Params.from_mapping(data)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        (None, "seed", 1),
        ("sisa", "shards", 4),
        ("sisa", "slices", 3),
        ("sisa", "salt", "pepper"),
        ("model", "name", "cnn"),
        ("model", "hidden_sizes", [64]),
        ("model", "dropout", 0.1),
        ("training", "epochs_per_stage", 9),
        ("training", "batch_size", 32),
        ("training", "learning_rate", 0.01),
        ("training", "weight_decay", 0.001),
        ("training", "optimizer", "sgd"),
    ],
)
def test_training_hash_changes_with_what_changes_weights(
    section: str | None, key: str, value: object
) -> None:
    assert with_change(section, key, value).training_hash() != Params().training_hash()


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("gates", "min_accuracy", 0.5),
        ("gates", "max_accuracy_drop", 0.1),
        ("registry", "model_name", "other"),
        ("sisa", "aggregation", "vote"),
        ("dataset", "source", "mnist-5k"),
    ],
)
def test_training_hash_ignores_what_does_not(section: str, key: str, value: object) -> None:
    assert with_change(section, key, value).training_hash() == Params().training_hash()


def test_training_hash_is_stable_text() -> None:
    digest = Params().training_hash()
    assert digest == Params.from_mapping(yaml.safe_load(Params().to_yaml())).training_hash()
    assert len(digest) == 64
    int(digest, 16)
