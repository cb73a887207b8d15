"""The served model takes what pandas reads (issue 11, finding 2), through MLflow's own loader.

One tiny ensemble is logged through `MlflowRegistry.log_version` into a real sqlite store in
tmp_path and made champion; every test loads it as a user does,
`mlflow.pyfunc.load_model("models:/NAME@champion")`, and compares with the ensemble's own
predictions on the float32 features it was trained on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.adapters.mlflow.conftest import SETTINGS, tiny_params, training_and_signature
from tests.conftest import made_up_provenance
from unlearn_ops.adapters.mlflow.registry import CHAMPION, MlflowRegistry
from unlearn_ops.serving.versions import NewVersion
from unlearn_ops.sisa.datasets import Dataset
from unlearn_ops.sisa.ensemble import SisaEnsemble

PARAMS = tiny_params(11, 2, "pyfunc-tests", epochs=3, learning_rate=0.02)
FEATURES = ["alcohol", "ash", "hue", "proline"]
MODEL_NAME = "pandas-users"


@dataclass(frozen=True)
class Served:
    """The logged champion and what it was trained from."""

    ensemble: SisaEnsemble
    csv: Path  # the held-out table as a user's CSV file (id, label, features)
    uri: str


def table(num_records: int = 200) -> pd.DataFrame:
    """Three separable blobs, integer ids and labels, four float32 features."""
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, num_records)
    centers = rng.normal(0.0, 3.0, (3, len(FEATURES)))
    features = centers[labels] + rng.normal(0.0, 1.0, (num_records, len(FEATURES)))
    frame = pd.DataFrame(features.astype(np.float32), columns=FEATURES)
    frame.insert(0, "label", labels.astype(np.int64))
    frame.insert(0, "record_id", np.arange(1000, 1000 + num_records, dtype=np.int64))
    return frame


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    root = tmp_path_factory.mktemp("served")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    ensemble = SisaEnsemble(root / "ensemble", PARAMS, SETTINGS)
    ensemble.fit(Dataset.from_frame(table(), source="blobs"))
    (root / "params.yaml").write_text(PARAMS.to_yaml())
    training, signature_frames = training_and_signature(ensemble)
    registry = MlflowRegistry(uri, uri, MODEL_NAME, artifact_location=(root / "art").as_uri())
    version = registry.log_version(
        NewVersion(
            provenance=made_up_provenance("train", 2, params=PARAMS, accuracy=ensemble.evaluate()),
            description="pandas users",
            model_files={
                **{f"shard-{s:03d}": ensemble.model_path(s) for s in ensemble.shard_ids},
                "ensemble": ensemble.root / "ensemble.json",
                "params": root / "params.yaml",
            },
            training_frame=training,
            dataset_source=str(ensemble.shards_dir),
            params={},
            metrics={},
            signature_frames=signature_frames,
        )
    )
    registry.set_alias(CHAMPION, version.version)
    csv = root / "new-records.csv"
    ensemble.read_holdout().to_csv(csv, index=False)
    return Served(ensemble, csv, uri)


@pytest.fixture
def model(served: Served) -> Iterator[Any]:
    """The champion loaded as a user loads it, with the store as the registry URI."""
    import mlflow

    previous = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    mlflow.set_tracking_uri(served.uri)
    mlflow.set_registry_uri(served.uri)
    try:
        yield mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


def expected_classes(served: Served, features: pd.DataFrame) -> np.ndarray:
    """The ensemble's own prediction on the float32 values of `features`."""
    return served.ensemble.predict(features[FEATURES].to_numpy(dtype=np.float32))


def test_a_float64_frame_straight_from_read_csv_is_served(served: Served, model: Any) -> None:
    frame = pd.read_csv(served.csv)[FEATURES]
    assert set(frame.dtypes) == {np.dtype("float64")}

    predicted = model.predict(frame)

    assert list(predicted.columns) == [
        "prediction",
        "probability_0",
        "probability_1",
        "probability_2",
    ]
    np.testing.assert_array_equal(predicted["prediction"], expected_classes(served, frame))
    np.testing.assert_allclose(
        predicted.drop(columns="prediction").to_numpy(),
        served.ensemble.predict_proba(frame.to_numpy(dtype=np.float32)),
        rtol=1e-6,
    )


def test_the_prediction_is_the_integer_label_as_trained(served: Served, model: Any) -> None:
    records = pd.read_csv(served.csv)

    predicted = model.predict(records[FEATURES])

    assert predicted["prediction"].dtype == np.int64
    assert all(type(value) is int for value in predicted["prediction"].tolist())
    assert set(predicted["prediction"]) <= set(records["label"])
    # The held-out records are learnable blobs: the labels come back as they were given.
    assert (predicted["prediction"] == records["label"]).mean() > 0.8


def test_integer_and_boolean_columns_are_served(served: Served, model: Any) -> None:
    frame = pd.read_csv(served.csv)[FEATURES].round().astype(np.int64)
    frame["hue"] = frame["hue"] > 0

    predicted = model.predict(frame)

    assert frame.dtypes.tolist() == [np.int64, np.int64, np.bool_, np.int64]
    np.testing.assert_array_equal(predicted["prediction"], expected_classes(served, frame))


def test_columns_in_another_order_are_taken_by_name(served: Served, model: Any) -> None:
    frame = pd.read_csv(served.csv)[FEATURES]

    reordered = model.predict(frame[list(reversed(FEATURES))])

    pd.testing.assert_frame_equal(reordered, model.predict(frame))


def test_the_id_and_label_columns_are_ignored(served: Served, model: Any) -> None:
    records = pd.read_csv(served.csv)
    assert list(records.columns[:2]) == ["record_id", "label"]

    predicted = model.predict(records)

    pd.testing.assert_frame_equal(predicted, model.predict(records[FEATURES]))


def test_the_output_keeps_the_rows_index(served: Served, model: Any) -> None:
    records = pd.read_csv(served.csv)
    some = records[records["label"] == 1]
    assert not some.index.equals(pd.RangeIndex(len(some)))

    predicted = model.predict(some[FEATURES])

    assert predicted.index.equals(some.index)
    # So that assigning it back lines up with the rows it scored.
    records["predicted"] = predicted["prediction"]
    np.testing.assert_array_equal(
        records.loc[some.index, "predicted"], expected_classes(served, some)
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ash": "high"}, r"feature column\(s\) \['ash'\] are not numeric"),
        ({"hue": np.nan}, r"feature column\(s\) \['hue'\] hold missing or infinite values"),
        ({"proline": np.inf}, r"\['proline'\] hold missing or infinite values"),
    ],
)
def test_what_is_not_a_finite_number_is_refused_naming_the_column(
    served: Served, model: Any, change: dict[str, object], message: str
) -> None:
    frame = pd.read_csv(served.csv)[FEATURES].assign(**change)  # type: ignore[arg-type]

    with pytest.raises(ValueError, match=message):
        model.predict(frame)


def test_a_missing_feature_column_is_refused_by_mlflow(served: Served, model: Any) -> None:
    from mlflow.exceptions import MlflowException

    frame = pd.read_csv(served.csv)[FEATURES].drop(columns="ash")

    with pytest.raises(MlflowException, match=r"Model is missing inputs \['ash'\]"):
        model.predict(frame)


def test_the_signature_names_the_features_and_types_the_output(model: Any) -> None:
    from mlflow.types.schema import AnyType, DataType

    signature = model.metadata.signature
    inputs = signature.inputs.inputs
    assert [column.name for column in inputs] == FEATURES
    assert all(isinstance(column.type, AnyType) and column.required for column in inputs)
    outputs = {column.name: column.type for column in signature.outputs.inputs}
    assert outputs["prediction"] == DataType.long
    assert outputs["probability_0"] == DataType.float
