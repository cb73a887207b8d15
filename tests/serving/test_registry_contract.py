"""The ModelRegistry contract, run over MLflow and the fake.

MLflow twice: an embedded sqlite store in tmp_path, and a real `mlflow server` on loopback
whose artifacts are proxied (`mlflow-artifacts:` URIs, as in production). Every test runs
once per implementation: what the workflow relies on must hold for all, so that tests
using :class:`InMemoryRegistry` say something about MLflow too.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import made_up_provenance
from unlearn_ops.adapters.mlflow.registry import MlflowRegistry
from unlearn_ops.adapters.mlflow.ui import find_free_port
from unlearn_ops.adapters.process import ServerProcess
from unlearn_ops.errors import RegistryError, VersionNotFoundError
from unlearn_ops.serving.ports import ModelRegistry
from unlearn_ops.serving.provenance import VersionProvenance
from unlearn_ops.serving.versions import (
    CHAMPION,
    PREVIOUS,
    NewVersion,
    ServedShards,
    VersionInfo,
)
from unlearn_ops.testing import InjectedCrashError, InMemoryRegistry, fail_at

PROVENANCE = made_up_provenance("forget", 1)


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite file with every migration applied (seconds: made once)."""
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    uri = f"sqlite:///{path}"
    registry = MlflowRegistry(uri, uri, "template")
    registry.client.search_experiments()
    assert registry.versions() == []
    return path


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1 with proxied artifacts; its URL."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = find_free_port()
    server = ServerProcess(
        [
            *(sys.executable, "-m", "mlflow", "server", "--workers", "1"),
            *("--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"),
            *("--artifacts-destination", str(folder / "artifacts")),
            *("--host", "127.0.0.1", "--port", str(port)),
        ],
        health_url=f"http://127.0.0.1:{port}/health",
        log_path=folder / "server.log",
    )
    server.start()
    try:
        outcome = server.wait_healthy(120)
        assert outcome == "healthy", (folder / "server.log").read_text()[-3000:]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(params=["mlflow", "memory", pytest.param("server", marks=pytest.mark.servers)])
def registry(
    request: pytest.FixtureRequest, tmp_path: Path, empty_store: Path
) -> Iterator[ModelRegistry]:
    if request.param == "memory":
        yield InMemoryRegistry("contract")
    elif request.param == "server":
        # One server for the module; a model (and experiment) of its own per test. MLflow's
        # global tracking URI points elsewhere, as in a process that also talks to another
        # store: the registry must never fall back to it.
        import mlflow

        url = request.getfixturevalue("mlflow_server")
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'elsewhere.db'}")
        try:
            yield MlflowRegistry(url, url, f"contract-{uuid.uuid4().hex[:8]}")
        finally:
            mlflow.set_tracking_uri(previous)
    else:
        shutil.copy(empty_store, tmp_path / "mlflow.db")
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        yield MlflowRegistry(
            uri, uri, "contract", artifact_location=(tmp_path / "mlartifacts").as_uri()
        )


def provenance_for(
    requests: Sequence[str] = (), honoured: Sequence[str] = (), *, passed: bool = True
) -> VersionProvenance:
    return dataclasses.replace(
        PROVENANCE,
        request_ids=tuple(requests),
        honoured_request_ids=tuple(honoured),
        gates={"data": {"passed": passed}, "metric": {"passed": True}},
    )


def log(
    registry: ModelRegistry,
    folder: Path,
    *,
    requests: Sequence[str] = (),
    honoured: Sequence[str] = (),
    passed: bool = True,
) -> VersionInfo:
    """Log a version as the workflow does (tiny model files: the registry only copies them)."""
    weights = folder / "shard-000.pt"
    weights.write_bytes(b"weights")
    return registry.log_version(
        NewVersion(
            provenance=provenance_for(requests, honoured, passed=passed),
            description=f"honours {len(honoured)} request(s)",
            model_files={"shard-000": weights},
            training_frame=pd.DataFrame({"record_id": [1, 2], "f0": [0.5, 0.25]}),
            dataset_source=str(folder),
            params={"seed": 1},
            metrics={"accuracy": 0.9},
        )
    )


def assert_not_found(registry: ModelRegistry, *names: str) -> None:
    """`get_version` refuses each of `names` (versions or aliases): not in model `contract`."""
    for name in names:
        with pytest.raises(VersionNotFoundError, match="contract"):
            registry.get_version(name)


class TestModelRegistryContract:
    def test_an_empty_registry_has_no_versions_aliases_or_honouring(
        self, registry: ModelRegistry
    ) -> None:
        assert registry.versions() == []
        assert registry.aliases() == {}
        assert registry.alias_version(CHAMPION) is None
        assert registry.first_honouring("r1") is None
        assert registry.logged_model_versions() == {}
        assert_not_found(registry, "1", CHAMPION)

    def test_logged_versions_are_numbered_from_1_and_carry_their_provenance(
        self, registry: ModelRegistry, tmp_path: Path
    ) -> None:
        first = log(registry, tmp_path, requests=["r1"], honoured=["r1"])
        second = log(registry, tmp_path, requests=["r2"], honoured=["r1", "r2"], passed=False)
        assert (first.version, second.version) == ("1", "2")
        assert first.aliases == ()
        assert first.description == "honours 1 request(s)"
        assert first.run_id
        assert first.run_id != second.run_id
        assert first.created_at > 0
        assert [v.version for v in registry.versions()] == ["1", "2"]
        stored = registry.get_version("2")
        expected = provenance_for(["r2"], ["r1", "r2"], passed=False).tags()
        assert {k: v for k, v in stored.tags.items() if k in expected} == expected
        assert stored.request_ids == ["r2"]
        assert stored.honoured_requests == ["r1", "r2"]
        assert (first.gates_passed, stored.gates_passed) == (True, False)
        assert stored.tag("git_sha") == PROVENANCE.git_sha
        assert sorted(registry.logged_model_versions().values()) == ["1", "2"]

    def test_aliases_move_and_name_their_version(
        self, registry: ModelRegistry, tmp_path: Path
    ) -> None:
        for _ in range(2):
            log(registry, tmp_path)
        registry.set_alias(CHAMPION, "1")
        registry.set_alias(CHAMPION, "2")
        registry.set_alias(PREVIOUS, "1")
        assert registry.aliases() == {CHAMPION: "2", PREVIOUS: "1"}
        assert registry.alias_version(CHAMPION) == "2"
        assert registry.get_version(CHAMPION).version == "2"
        assert registry.get_version(CHAMPION).aliases == (CHAMPION,)
        assert [v.aliases for v in registry.versions()] == [(PREVIOUS,), (CHAMPION,)]

    def test_changes_to_a_version_that_does_not_exist_are_refused(
        self, registry: ModelRegistry, tmp_path: Path
    ) -> None:
        log(registry, tmp_path)
        with pytest.raises(RegistryError):
            registry.set_alias(CHAMPION, "7")
        with pytest.raises(RegistryError):
            registry.set_version_tag("7", "honours_all_deletions", "false")
        with pytest.raises(RegistryError):
            registry.delete_version("7")
        assert registry.aliases() == {}
        assert [v.version for v in registry.versions()] == ["1"]

    def test_version_tags_are_set_under_the_unlearn_prefix(
        self, registry: ModelRegistry, tmp_path: Path
    ) -> None:
        log(registry, tmp_path, honoured=["r1"])
        registry.set_version_tag("1", "honours_all_deletions", "false")
        registry.set_version_tag("1", "honoured_requests", '["r1", "r9"]')
        info = registry.get_version("1")
        assert info.tags["unlearn.honours_all_deletions"] == "false"
        assert info.honoured_requests == ["r1", "r9"]
        assert registry.first_honouring("r9") == info

    def test_first_honouring_is_the_oldest_version_whose_gates_passed(
        self, registry: ModelRegistry, tmp_path: Path
    ) -> None:
        log(registry, tmp_path, honoured=["r_1"], passed=False)
        log(registry, tmp_path, honoured=["r_1", "r%2"])
        log(registry, tmp_path, honoured=["r_1", "r%2", "r3"])
        found = registry.first_honouring("r_1")
        assert found is not None
        assert found.version == "2"
        unfiltered = registry.first_honouring("r_1", passed_only=False)
        assert unfiltered is not None
        assert unfiltered.version == "1"
        assert registry.first_honouring("r%2").version == "2"  # type: ignore[union-attr]
        # `_` and `%` are no wildcards: an id is matched whole.
        assert registry.first_honouring("rx1") is None
        assert registry.first_honouring("r") is None

    def test_a_deleted_version_is_gone_with_its_aliases(
        self, registry: ModelRegistry, tmp_path: Path
    ) -> None:
        log(registry, tmp_path, honoured=["r1"])
        kept = log(registry, tmp_path, honoured=["r1"])
        registry.set_alias(PREVIOUS, "1")
        registry.set_alias(CHAMPION, "2")
        deleted = registry.delete_version("1")
        assert deleted.version == "1"
        assert deleted.run_id
        assert deleted.model_id.startswith("m-")
        # A database store (and the fake) delete for good; a server's client cannot.
        server = isinstance(registry, MlflowRegistry) and registry.tracking_uri.startswith("http")
        assert deleted.hard is not server
        assert [v.version for v in registry.versions()] == ["2"]
        assert registry.aliases() == {CHAMPION: "2"}
        assert registry.first_honouring("r1") == registry.get_version(kept.version)
        assert list(registry.logged_model_versions().values()) == ["2"]
        assert_not_found(registry, "1", PREVIOUS)

    def test_artifact_dirs_are_local_folders_that_exist(
        self, registry: ModelRegistry, tmp_path: Path
    ) -> None:
        log(registry, tmp_path)
        assert all(folder.is_dir() for folder in registry.artifact_dirs())

    def test_a_logged_version_loads_and_predicts_like_the_ensemble_it_holds(
        self, registry: ModelRegistry, tmp_path: Path
    ) -> None:
        import json

        import torch

        from unlearn_ops.params import Params
        from unlearn_ops.sisa.models import build_model

        params = Params.from_mapping({"model": {"name": "mlp", "hidden_sizes": [4]}})
        params_file = tmp_path / "params.yaml"
        params_file.write_text(params.to_yaml(), encoding="utf-8")
        manifest = tmp_path / "ensemble.json"
        manifest.write_text(json.dumps({"feature_columns": ["a", "b"], "num_classes": 3}))
        files = {"ensemble": manifest, "params": params_file}
        for shard in range(2):
            torch.manual_seed(shard)
            files[f"shard-{shard:03d}"] = tmp_path / f"shard-{shard:03d}.pt"
            torch.save(build_model(params.model, 2, 3).state_dict(), files[f"shard-{shard:03d}"])
        frame = pd.DataFrame({"b": [0.5, -1.0, 2.0], "a": [1, 0, 3]})  # ints, other order
        version = registry.log_version(
            NewVersion(
                provenance=PROVENANCE,
                description="a real ensemble",
                model_files=files,
                training_frame=frame,
                dataset_source=str(tmp_path),
                params={"seed": 1},
                metrics={"accuracy": 0.9},
                signature_frames=(frame[["a", "b"]].astype("float32"), None),
            )
        )
        registry.set_alias(CHAMPION, version.version)
        predicted = registry.load_pyfunc(CHAMPION).predict(frame)
        assert list(predicted.columns) == ["prediction", *(f"probability_{k}" for k in range(3))]
        assert predicted["prediction"].dtype == "int64"
        probabilities = predicted.drop(columns="prediction").to_numpy()
        assert probabilities.sum(axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
        assert predicted.equals(registry.load_pyfunc(version.version).predict(frame))
        with pytest.raises(RegistryError):
            registry.load_pyfunc("7")

    def test_served_shards_name_each_shards_weights_by_sha256_beside_the_params(
        self, registry: ModelRegistry, tmp_path: Path
    ) -> None:
        import hashlib

        log(registry, tmp_path)  # a model without params: nothing to compute it from
        assert registry.served_shards("1") is None
        params_file = tmp_path / "params.yaml"
        params_file.write_text("model:\n  name: mlp\n", encoding="utf-8")
        contents = {"shard-001": b"second shard", "shard-000": b"first shard"}
        files = {"params": params_file}
        for name, data in contents.items():
            files[name] = tmp_path / f"{name}.pt"
            files[name].write_bytes(data)
        version = registry.log_version(
            NewVersion(
                provenance=PROVENANCE,
                description="two shards",
                model_files=files,
                training_frame=pd.DataFrame({"record_id": [1], "f0": [0.5]}),
                dataset_source=str(tmp_path),
                params={"seed": 1},
                metrics={"accuracy": 0.9},
            )
        )
        registry.set_alias(CHAMPION, version.version)
        served = registry.served_shards(CHAMPION)
        assert served == ServedShards(
            version.version,
            (  # in shard order, whatever order the files came in
                hashlib.sha256(b"first shard").hexdigest(),
                hashlib.sha256(b"second shard").hexdigest(),
            ),
            "model:\n  name: mlp\n",
        )
        assert registry.served_shards(version.version) == served
        with pytest.raises(VersionNotFoundError, match="contract"):
            registry.served_shards("9")

    def test_a_failure_injected_at_a_call_fails_that_call_only(
        self, registry: ModelRegistry, tmp_path: Path
    ) -> None:
        failing = fail_at(registry, "set_alias", calls_before=1)
        log(failing, tmp_path)
        log(failing, tmp_path)
        failing.set_alias(CHAMPION, "1")
        with pytest.raises(InjectedCrashError, match="set_alias"):
            failing.set_alias(CHAMPION, "2")
        assert registry.aliases() == {CHAMPION: "1"}


def test_fail_at_refuses_a_method_the_port_does_not_have() -> None:
    with pytest.raises(AttributeError, match="set_aliases"):
        fail_at(InMemoryRegistry(), "set_aliases")
