"""The MLflow registry adapter against a real MLflow sqlite store in tmp_path (no server).

Creating a store runs MLflow's migrations (seconds on two cores), so one empty store is
migrated per module and each test copies the file. One real version is logged through
`log_version` from a tiny trained ensemble; the searches run over versions made with the
client directly, carrying the tags that `VersionProvenance.tags()` builds.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.adapters.mlflow.conftest import SETTINGS, tiny_params, training_and_signature
from tests.conftest import made_up_provenance, synthetic_frame
from unlearn_ops.adapters.mlflow.registry import MlflowRegistry
from unlearn_ops.errors import RegistryError, VersionNotFoundError
from unlearn_ops.serving.provenance import VersionProvenance
from unlearn_ops.serving.versions import CHAMPION, PREVIOUS, NewVersion, VersionInfo
from unlearn_ops.sisa.datasets import Dataset
from unlearn_ops.sisa.ensemble import SisaEnsemble

PARAMS = tiny_params(5, 2, "registry-tests")
PROVENANCE = made_up_provenance("train", 2, params=PARAMS, timings={"retraining": 0.5})


def sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite file with every migration applied and nothing in it."""
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    registry = MlflowRegistry(sqlite_uri(path), sqlite_uri(path), "template")
    registry.client.search_experiments()  # the tracking store's tables
    assert registry.versions() == []  # the registry store's tables
    return path


def copy_store(empty_store: Path, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(empty_store, folder / "mlflow.db")
    return sqlite_uri(folder / "mlflow.db")


@pytest.fixture
def store(empty_store: Path, tmp_path: Path) -> str:
    """A fresh, empty store of this test's own."""
    return copy_store(empty_store, tmp_path)


@dataclass(frozen=True)
class Logged:
    """One version logged through `log_version`, made champion."""

    registry: MlflowRegistry
    ensemble: SisaEnsemble
    version: VersionInfo
    provenance: VersionProvenance
    description: str


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory, empty_store: Path) -> Logged:
    root = tmp_path_factory.mktemp("logged")
    uri = copy_store(empty_store, root)
    ensemble = SisaEnsemble(root / "ensemble", PARAMS, SETTINGS)
    # Three separable blobs in four dimensions.
    blobs = synthetic_frame(160, dimensions=4, spread=3.0)
    ensemble.fit(Dataset.from_frame(blobs, source="blobs"))
    params_path = root / "params.yaml"
    params_path.write_text(PARAMS.to_yaml())
    training, signature_frames = training_and_signature(ensemble)
    registry = MlflowRegistry(
        uri, uri, "adapter-test", artifact_location=(root / "mlartifacts").as_uri()
    )
    provenance = dataclasses.replace(PROVENANCE, accuracy=ensemble.evaluate())
    description = "Trained from scratch on all 2 shards."
    model_files = {f"shard-{s:03d}": ensemble.model_path(s) for s in ensemble.shard_ids}
    version = registry.log_version(
        NewVersion(
            provenance=provenance,
            description=description,
            model_files={
                **model_files,
                "ensemble": ensemble.root / "ensemble.json",
                "params": params_path,
            },
            training_frame=training,
            dataset_source=str(ensemble.shards_dir),
            params={"seed": PARAMS.seed, "shards": 2},
            metrics={"accuracy": provenance.accuracy, "train_records": float(len(training))},
            signature_frames=signature_frames,
        )
    )
    registry.set_alias(CHAMPION, version.version)
    return Logged(registry, ensemble, version, provenance, description)


def honouring(request_ids: Sequence[str]) -> dict[str, str]:
    """The tags of a version that honours these requests."""
    return dataclasses.replace(
        PROVENANCE,
        kind="forget",
        request_ids=tuple(request_ids[-1:]),
        honoured_request_ids=tuple(request_ids),
    ).tags()


def registry_with_versions(
    store: str, tmp_path: Path, honoured: Sequence[Sequence[str]]
) -> MlflowRegistry:
    """A registered model whose version k+1 honours `honoured[k]`."""
    registry = MlflowRegistry(store, store, "search-test")
    registry.client.create_registered_model(registry.model_name)
    for request_ids in honoured:
        registry.client.create_model_version(
            registry.model_name, source=(tmp_path / "model").as_uri(), tags=honouring(request_ids)
        )
    return registry


# ----------------------------------------------------------------------- empty store
def test_a_new_store_has_no_versions_aliases_or_requests(store: str) -> None:
    registry = MlflowRegistry(store, store, "nothing-yet")
    assert registry.versions() == []
    assert registry.aliases() == {}
    assert registry.alias_version(CHAMPION) is None
    assert registry.first_honouring("req-1") is None
    with pytest.raises(VersionNotFoundError, match="train a first version") as caught:
        registry.get_version("1")
    assert isinstance(caught.value, KeyError)


def test_construction_opens_no_connection(tmp_path: Path) -> None:
    path = tmp_path / "never" / "mlflow.db"
    registry = MlflowRegistry(sqlite_uri(path), sqlite_uri(path), "lazy")
    assert registry.experiment_name == "unlearn-ops/lazy"
    assert not path.parent.exists()


# ----------------------------------------------------------------------- a real version
def test_a_logged_version_carries_its_provenance(logged: Logged) -> None:
    version = logged.registry.get_version("1")
    assert version.version == logged.version.version == "1"
    assert version.description == logged.description
    expected = logged.provenance.tags()
    assert {k: v for k, v in version.tags.items() if k in expected} == expected
    assert version.tag("kind") == "train"
    assert version.gates_passed
    assert version.run_id
    assert version.created_at > 0
    assert [v.version for v in logged.registry.versions()] == ["1"]


def test_the_run_logged_its_training_data_params_and_provenance(logged: Logged) -> None:
    client = logged.registry.client
    run = client.get_run(logged.version.run_id)
    inputs = run.inputs.dataset_inputs
    assert inputs, "the run has no dataset input"
    dataset = inputs[0].dataset
    assert dataset.name == "shards@0123456789ab"
    assert dataset.digest == logged.provenance.data_md5[:36]
    assert str(logged.ensemble.shards_dir) in dataset.source
    # The schema (inferred from a few rows) names every column of the training tables.
    columns = [c["name"] for c in json.loads(dataset.schema)["mlflow_colspec"]]
    table = logged.ensemble.read_shard(0)
    assert columns == list(table.columns)
    assert json.loads(dataset.profile)["num_rows"] == sum(
        len(logged.ensemble.read_shard(s)) for s in logged.ensemble.shard_ids
    )
    input_tags = {t.key: t.value for t in inputs[0].tags}
    assert input_tags.get("mlflow.data.context") == "training"
    git_sha = logged.provenance.git_sha
    assert input_tags["unlearn.dvc_rev"] == run.data.tags["unlearn.dvc_rev"] == git_sha
    assert input_tags["unlearn.data_md5"] == logged.provenance.data_md5
    assert run.data.tags["mlflow.note.content"] == logged.description  # the run's description
    assert run.data.params == {"seed": "5", "shards": "2"}
    assert run.data.metrics["train_records"] == float(
        sum(len(logged.ensemble.read_shard(s)) for s in logged.ensemble.shard_ids)
    )
    assert run.data.tags["unlearn.kind"] == "train"
    assert "provenance.json" in [a.path for a in client.list_artifacts(run.info.run_id)]
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "unlearn-ops/adapter-test"


def test_an_unknown_version_lists_the_known_ones(logged: Logged) -> None:
    with pytest.raises(VersionNotFoundError, match=r"no version '99'; versions are: 1$"):
        logged.registry.get_version("99")
    with pytest.raises(VersionNotFoundError, match=r"no version 'staging'; versions are: 1"):
        logged.registry.get_version("staging")


def test_the_champion_alias_reads_as_its_version(logged: Logged) -> None:
    registry = logged.registry
    assert registry.alias_version(CHAMPION) == "1"
    champion = registry.get_version(CHAMPION)
    assert champion.version == "1"
    assert CHAMPION in champion.aliases
    assert registry.versions()[0].aliases == champion.aliases


def test_model_uris_name_an_alias_or_a_version(logged: Logged) -> None:
    registry = logged.registry
    assert registry.model_uri(CHAMPION) == "models:/adapter-test@champion"
    assert registry.model_uri("1") == "models:/adapter-test/1"
    assert registry.model_uri("12") == "models:/adapter-test/12"


def test_the_served_pyfunc_predicts_as_the_ensemble_does(logged: Logged) -> None:
    ensemble = logged.ensemble
    features = ensemble.read_holdout()[list(ensemble.columns().feature_columns)].head(9)
    for reference in (CHAMPION, "1"):
        model = logged.registry.load_pyfunc(reference)
        predicted = model.predict(features)
        assert isinstance(predicted, pd.DataFrame)
        assert list(predicted.columns) == [
            "prediction",
            "probability_0",
            "probability_1",
            "probability_2",
        ]
        values = features.to_numpy(dtype=np.float32)
        np.testing.assert_array_equal(predicted["prediction"], ensemble.predict(values))
        np.testing.assert_allclose(
            predicted.drop(columns="prediction").to_numpy(),
            ensemble.predict_proba(values),
            rtol=1e-6,
        )


def test_loading_an_unknown_version_is_a_registry_error(logged: Logged) -> None:
    with pytest.raises(RegistryError, match="MLflow loading the model failed"):
        logged.registry.load_pyfunc("99")


# ------------------------------------------------------------------ aliases, versions
def test_aliases_move_between_versions(store: str, tmp_path: Path) -> None:
    registry = registry_with_versions(store, tmp_path, [["a"], ["a", "b"], ["a", "b", "c"]])
    registry.set_alias(CHAMPION, "1")
    registry.set_alias(CHAMPION, "2")
    registry.set_alias(PREVIOUS, "1")
    assert registry.aliases() == {CHAMPION: "2", PREVIOUS: "1"}
    assert registry.get_version(CHAMPION).aliases == (CHAMPION,)
    assert registry.get_version("1").aliases == (PREVIOUS,)
    assert registry.get_version("3").aliases == ()
    assert registry.get_version(PREVIOUS).honoured_requests == ["a"]


def test_an_alias_to_a_missing_version_is_a_registry_error(store: str, tmp_path: Path) -> None:
    registry = registry_with_versions(store, tmp_path, [["a"]])
    with pytest.raises(RegistryError, match="MLflow setting alias champion failed"):
        registry.set_alias(CHAMPION, "7")
    assert registry.aliases() == {}


def test_versions_are_listed_oldest_first_by_number(store: str, tmp_path: Path) -> None:
    registry = registry_with_versions(store, tmp_path, [[f"r{i}"] for i in range(11)])
    listed = registry.versions()
    assert [v.version for v in listed] == [str(i) for i in range(1, 12)]
    assert listed[9].honoured_requests == ["r9"]


def test_a_version_tag_can_be_set(store: str, tmp_path: Path) -> None:
    registry = registry_with_versions(store, tmp_path, [["a"]])
    registry.set_version_tag("1", "certified", "true")
    assert registry.get_version("1").tag("certified") == "true"


# --------------------------------------------------------------- search by request
def test_first_honouring_finds_the_first_version_that_honours_a_request(
    store: str, tmp_path: Path
) -> None:
    registry = registry_with_versions(
        store,
        tmp_path,
        [["req-10"], ["req-10", "req-1"], ["req-10", "req-1", "req-100"], ["req-1"]],
    )
    found = {
        request_id: (registry.first_honouring(request_id) or VersionInfo("-", "", 0, "")).version
        for request_id in ("req-1", "req-10", "req-100", "req", "eq-1", "req-2", "REQ-1")
    }
    assert found == {
        "req-1": "2",  # not 1: "req-1" is a prefix of "req-10"
        "req-10": "1",
        "req-100": "3",
        "req": "-",
        "eq-1": "-",
        "req-2": "-",
        "REQ-1": "-",
    }


def test_first_honouring_matches_a_request_id_exactly(store: str, tmp_path: Path) -> None:
    # `_` is a valid character of a request id and a wildcard of SQL LIKE: a new request
    # must not be found "honoured already" by a version that honours another one, or the
    # forget flow closes it as a no-op and its records are never forgotten.
    registry = registry_with_versions(store, tmp_path, [["req-1"], ["a-b-c"]])
    assert registry.first_honouring("req-1") is not None
    assert registry.first_honouring("req_1") is None
    assert registry.first_honouring("a_b_c") is None
