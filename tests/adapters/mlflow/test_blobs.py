"""Shard weights stored once by content: a forget adds the retrained shard's weights only.

Real MLflow (sqlite in tmp_path, local artifacts). A tiny ensemble is logged (version 1),
one shard's records are forgotten and the shard retrained (version 2); a version logged
the old way (weights as artifacts, the pyfunc file as unlearn-ops 0.1 froze it) sits
beside them. Each loads through `mlflow.pyfunc.load_model` and predicts what its weights
predict; deleting a version deletes only the blobs no remaining version references.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.adapters.mlflow.conftest import SETTINGS, tiny_params, training_and_signature
from tests.conftest import made_up_provenance, synthetic_frame
from unlearn_ops.adapters.mlflow.blobs import (
    MANIFEST_FORMAT,
    BlobStore,
    file_sha256,
    read_manifest,
    unreferenced_blobs,
)
from unlearn_ops.adapters.mlflow.registry import MlflowRegistry
from unlearn_ops.errors import RegistryError
from unlearn_ops.serving.versions import CHAMPION, NewVersion
from unlearn_ops.sisa.datasets import Dataset
from unlearn_ops.sisa.ensemble import SisaEnsemble

PARAMS = tiny_params(8, 3, "blob-tests")
FROZEN_PYFUNC = Path(__file__).parent / "data" / "pyfunc_model_before_blobs.py.txt"
SELF_CONTAINED_PYFUNC = Path(__file__).parent / "data" / "pyfunc_model_self_contained.py.txt"
_ZIP_MAGIC = b"PK\x03\x04"


def snapshot_files(ensemble: SisaEnsemble, folder: Path) -> dict[str, Path]:
    """Copies of the ensemble's model files as they are now (a version's files)."""
    folder.mkdir(parents=True)
    files = {}
    for shard_id in ensemble.shard_ids:
        files[f"shard-{shard_id:03d}"] = Path(
            shutil.copy(ensemble.model_path(shard_id), folder / f"shard-{shard_id:03d}.pt")
        )
    files["ensemble"] = Path(shutil.copy(ensemble.root / "ensemble.json", folder))
    (folder / "params.yaml").write_text(PARAMS.to_yaml())
    files["params"] = folder / "params.yaml"
    return files


def log(registry: MlflowRegistry, ensemble: SisaEnsemble, files: dict[str, Path]) -> str:
    training, signature_frames = training_and_signature(ensemble)
    version = registry.log_version(
        NewVersion(
            provenance=made_up_provenance(params=PARAMS, accuracy=ensemble.evaluate()),
            description="blob test",
            model_files=files,
            training_frame=training,
            dataset_source=str(ensemble.shards_dir),
            params={},
            metrics={},
            signature_frames=signature_frames,
        )
    )
    return version.version


def log_the_old_way(registry: MlflowRegistry, files: dict[str, Path], scratch: Path) -> str:
    """A version as unlearn-ops logged it before the blob store: weights as artifacts."""
    import mlflow

    scratch.mkdir()
    frozen = scratch / "pyfunc_model.py"
    frozen.write_text(FROZEN_PYFUNC.read_text(encoding="utf-8"), encoding="utf-8")
    with registry._fluent():
        experiment_id = registry._experiment_id()
        with mlflow.start_run(experiment_id=experiment_id) as run:
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(frozen),
                artifacts={key: str(path) for key, path in files.items()},
            )
        version = registry.client.create_model_version(
            registry.model_name, source=info.model_uri, run_id=run.info.run_id
        )
    return str(version.version)


@dataclass(frozen=True)
class Chain:
    """Versions 1 (train), 2 (a forget that retrained one shard) and 3 (logged the old way)."""

    registry: MlflowRegistry
    ensemble: SisaEnsemble
    artifacts: Path
    retrained: int
    probabilities: dict[str, np.ndarray]  # version -> what its weights predict on `features`
    features: pd.DataFrame


def build_chain(root: Path) -> Chain:
    uri = f"sqlite:///{root / 'mlflow.db'}"
    artifacts = root / "mlartifacts"
    registry = MlflowRegistry(uri, uri, "blobs", artifact_location=artifacts.as_uri())
    ensemble = SisaEnsemble(root / "ensemble", PARAMS, SETTINGS)
    ensemble.fit(Dataset.from_frame(synthetic_frame(150, dimensions=4, spread=3.0), source="s"))
    columns = ensemble.columns()
    features = ensemble.read_holdout()[list(columns.feature_columns)]
    values = features.to_numpy(dtype=np.float32)
    first = snapshot_files(ensemble, root / "v1")
    probabilities = {"1": ensemble.predict_proba(values)}
    assert log(registry, ensemble, first) == "1"
    retrained = 1
    ensemble.forget([str(r) for r in ensemble.read_shard(retrained)["record_id"][:3]])
    second = snapshot_files(ensemble, root / "v2")
    probabilities["2"] = ensemble.predict_proba(values)
    assert log(registry, ensemble, second) == "2"
    assert log_the_old_way(registry, first, root / "old") == "3"
    probabilities["3"] = probabilities["1"]
    registry.set_alias(CHAMPION, "2")
    return Chain(registry, ensemble, artifacts, retrained, probabilities, features)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    return build_chain(tmp_path_factory.mktemp("chain"))


def model_folder(chain: Chain, version: str) -> Path:
    model_id = chain.registry._model_id(version)
    return chain.artifacts / "models" / model_id


def weights_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.read_bytes()[:4] == _ZIP_MAGIC]


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# ------------------------------------------------------------------------- storing
def test_a_forget_stores_only_the_retrained_shards_weights(chain: Chain) -> None:
    store = chain.registry.blob_store()
    stored = store.digests()
    assert len(stored) == 3 + 1  # three shards of version 1, the retrained shard of 2
    first = read_manifest(model_folder(chain, "1") / "artifacts" / "artifacts" / "shards.json")
    second = read_manifest(model_folder(chain, "2") / "artifacts" / "artifacts" / "shards.json")
    assert first[0] == second[0] == store.uri
    changed = {key for key in first[1] if first[1][key] != second[1][key]}
    assert changed == {f"shard-{chain.retrained:03d}"}
    assert set(first[1].values()) | set(second[1].values()) == stored
    # The logged models of the new kind hold no weights; the old-way one holds all three.
    assert weights_files(model_folder(chain, "1")) == []
    assert weights_files(model_folder(chain, "2")) == []
    assert len(weights_files(model_folder(chain, "3"))) == 3
    # What version 2 added: its model's metadata and one blob, not three.
    blob = (
        chain.artifacts / "blobs" / "sha256" / second[1]["shard-001"][:2] / second[1]["shard-001"]
    )
    added = folder_bytes(model_folder(chain, "2")) + blob.stat().st_size
    full = folder_bytes(model_folder(chain, "3"))  # the same version, weights copied in
    assert added < full
    assert blob.stat().st_size == chain.ensemble.model_path(chain.retrained).stat().st_size


def test_every_version_loads_through_mlflow_and_predicts_its_own_weights(chain: Chain) -> None:
    import mlflow

    for version in ("1", "2", "3"):
        with chain.registry._fluent():
            model = mlflow.pyfunc.load_model(f"models:/{chain.registry.model_name}/{version}")
        predicted = model.predict(chain.features)
        np.testing.assert_array_equal(
            predicted.drop(columns="prediction").to_numpy(), chain.probabilities[version]
        )
        np.testing.assert_array_equal(
            predicted["prediction"], chain.probabilities[version].argmax(axis=1)
        )
    assert not np.array_equal(chain.probabilities["1"], chain.probabilities["2"])


def test_a_version_carries_the_model_code_by_import_and_older_code_files_still_load(
    chain: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from unlearn_ops.adapters.mlflow import registry as registry_module

    # New versions log a few lines that import the class, not a copy of it (issue 15).
    code = (model_folder(chain, "2") / "artifacts" / "pyfunc_model.py").read_text()
    assert "from unlearn_ops.adapters.mlflow.pyfunc_ensemble import SisaPyfuncModel" in code
    assert "class " not in code
    # A version logged with the self-contained file of the blob store's first release.
    frozen = tmp_path / "pyfunc_model.py"
    frozen.write_text(SELF_CONTAINED_PYFUNC.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(registry_module, "PYFUNC_FILE", frozen)
    files = snapshot_files(chain.ensemble, tmp_path / "files")
    version = log(chain.registry, chain.ensemble, files)
    assert (
        "class SisaPyfuncModel"
        in (model_folder(chain, version) / "artifacts" / "pyfunc_model.py").read_text()
    )

    with chain.registry._fluent():
        model = mlflow.pyfunc.load_model(f"models:/{chain.registry.model_name}/{version}")
    np.testing.assert_array_equal(
        model.predict(chain.features).drop(columns="prediction").to_numpy(),
        chain.probabilities["2"],
    )


@pytest.mark.slow
def test_a_new_mlflow_process_loads_the_champion_by_its_uri(chain: Chain, tmp_path: Path) -> None:
    # Another MLflow client: only the tracking URI, as `mlflow models serve` would have.
    frame = tmp_path / "features.csv"
    chain.features.to_csv(frame, index=False)
    script = (
        "import sys, mlflow, pandas as pd\n"
        "model = mlflow.pyfunc.load_model(sys.argv[1])\n"
        "print(model.predict(pd.read_csv(sys.argv[2])).to_json(orient='split'))\n"
    )
    environment = {
        **os.environ,
        "MLFLOW_TRACKING_URI": chain.registry.tracking_uri,
        "MLFLOW_REGISTRY_URI": chain.registry.registry_uri,
    }
    completed = subprocess.run(
        [sys.executable, "-c", script, f"models:/{chain.registry.model_name}@champion", frame],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    answer = json.loads(completed.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(
        np.asarray(answer["data"])[:, 1:], chain.probabilities["2"], rtol=1e-6
    )


# ------------------------------------------------------------------------ deleting
@pytest.mark.slow
def test_deleting_a_version_deletes_only_blobs_no_kept_version_references(
    tmp_path: Path,
) -> None:
    chain = build_chain(tmp_path)
    store = chain.registry.blob_store()
    references = chain.registry.blob_references()
    only_first = {d for d, versions in references.items() if versions == ["1"]}
    shared = {d for d, versions in references.items() if versions == ["1", "2"]}
    assert len(only_first) == 1  # the retrained shard's weights before the forget
    assert len(shared) == 2

    deleted = chain.registry.delete_version("1")

    assert store.digests() == set(references) - only_first
    assert [store.uri_of(d) for d in only_first] == [
        loc for loc in deleted.artifact_locations if "/blobs/" in loc
    ]
    assert set(chain.registry.blob_references()) == store.digests()
    # The kept versions load as before: version 2 from the shared blobs and its own.
    for version in ("2", "3"):
        predicted = chain.registry.load_pyfunc(version).predict(chain.features)
        np.testing.assert_array_equal(
            predicted.drop(columns="prediction").to_numpy(), chain.probabilities[version]
        )

    # Version 2 goes too: its blobs go, and the old-way version 3 still holds its weights.
    chain.registry.delete_version("2")
    assert store.digests() == set()
    predicted = chain.registry.load_pyfunc("3").predict(chain.features)
    np.testing.assert_array_equal(
        predicted.drop(columns="prediction").to_numpy(), chain.probabilities["3"]
    )


def test_a_blob_whose_bytes_changed_is_refused(tmp_path: Path) -> None:
    store = BlobStore((tmp_path / "blobs").as_uri())
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"PK\x03\x04 some weights")
    digest, uploaded = store.put(weights)
    assert (digest, uploaded) == (file_sha256(weights), True)
    assert store.put(weights) == (digest, False)  # the same bytes are stored once
    assert store.fetch(digest, tmp_path) == tmp_path / "blobs" / "sha256" / digest[:2] / digest
    (tmp_path / "blobs" / "sha256" / digest[:2] / digest).write_bytes(b"other bytes")
    with pytest.raises(RegistryError, match="does not hold the bytes its hash names"):
        store.fetch(digest, tmp_path)
    with pytest.raises(RegistryError, match="reading shard weights"):
        store.fetch("ab" * 32, tmp_path)


def test_a_manifest_of_another_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "shards.json"
    path.write_text(json.dumps({"format": "something/else", "store": "x", "shards": {}}))
    with pytest.raises(RegistryError, match=f"not a {MANIFEST_FORMAT} manifest"):
        read_manifest(path)


def test_unreferenced_blobs_are_those_no_version_names() -> None:
    assert unreferenced_blobs({"a", "b", "c"}, ["b", "b", "z"]) == {"a", "c"}
    assert unreferenced_blobs(set(), ["a"]) == set()
