"""MLflow registry adapter: log an ensemble as a pyfunc version, aliases, search by request.

A version is one MLflow run (params, metrics, the training data as a dataset input, the
full provenance as `provenance.json`) and the pyfunc model logged from code
(:mod:`unlearn_ops.adapters.mlflow.pyfunc_model`), registered under the workspace's model
name with `unlearn.*` tags and a plain-words description. The shard weights are stored
once by content in the experiment's blob store (:mod:`unlearn_ops.adapters.mlflow.blobs`)
and the pyfunc holds a manifest of them: a version references the weights of the shards
it did not retrain. Deleting a version deletes the blobs no remaining version references.
Aliases,
never stages: `champion` is what is served. MLflow errors become :class:`RegistryError`.
:class:`MlflowRegistry` implements :class:`unlearn_ops.serving.ports.ModelRegistry`; the
types it returns (:mod:`unlearn_ops.serving.versions`) belong to the core.

Why this module is long: it is the one class that speaks to MLflow's registry and tracking
store (log a version, aliases, tags, search, load, delete with its artifacts and `mlflow gc`),
and every method translates MLflow's errors at the same boundary; splitting it by method
would spread that boundary over several modules.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from unlearn_ops.adapters.mlflow.blobs import (
    MANIFEST_ARTIFACT,
    BlobStore,
    read_manifest,
    unreferenced_blobs,
    write_manifest,
)
from unlearn_ops.errors import RegistryError, VersionNotFoundError
from unlearn_ops.serving.provenance import TAG_PREFIX
from unlearn_ops.serving.versions import CHAMPION, DeletedVersion, NewVersion, ServedShards
from unlearn_ops.serving.versions import VersionInfo as VersionInfo  # old import path

__all__ = ["MlflowRegistry"]

PYFUNC_FILE = Path(__file__).resolve().parent / "pyfunc_model.py"


def _quiet_environment() -> None:
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        # mlflow.pyfunc warns about its own response types at import (MLflow 3.17).
        warnings.filterwarnings("ignore", ".*Any type hint is inferred as AnyType")
        import mlflow.pyfunc  # noqa: F401


def _serving_signature(features: Any, output: Any) -> Any:
    """The served model's signature: its feature columns by name, of MLflow's `Any` type.

    Inferred from the float32 sample, every column would be `float`, and MLflow refuses
    the float64 that `pd.read_csv` gives ("Can not safely convert float64 to float32"),
    and the integers and booleans of a database table (issue 11, finding 2). With `Any`,
    MLflow still requires the named columns, orders them and drops the others; the model
    casts them to float32 itself and refuses what is not a number
    (:mod:`unlearn_ops.adapters.mlflow.pyfunc_model`).
    """
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    any_type = AnyType()  # type: ignore[no-untyped-call]
    inputs = Schema([ColSpec(any_type, name=str(column)) for column in features.columns])
    return ModelSignature(inputs=inputs, outputs=infer_signature(features, output).outputs)


@contextlib.contextmanager
def _translate(operation: str) -> Iterator[None]:
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        raise RegistryError(operation, exc.message) from exc


class MlflowRegistry:
    """The registered model of one workspace. Construction opens no connection.

    Args:
        tracking_uri: MLflow tracking URI (a `sqlite:///` path or a server URL).
        registry_uri: MLflow registry URI.
        model_name: registered model name.
        artifact_location: artifact root for a new experiment (embedded store only).
    """

    def __init__(
        self,
        tracking_uri: str,
        registry_uri: str,
        model_name: str,
        artifact_location: str | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri
        self.model_name = model_name
        self.artifact_location = artifact_location
        self._client: Any = None

    @property
    def experiment_name(self) -> str:
        """The experiment that holds this model's runs."""
        return f"unlearn-ops/{self.model_name}"

    @property
    def client(self) -> Any:
        """The MLflow client (made on first use)."""
        if self._client is None:
            _quiet_environment()
            from mlflow import MlflowClient

            self._client = MlflowClient(self.tracking_uri, self.registry_uri)
        return self._client

    @contextlib.contextmanager
    def _fluent(self) -> Iterator[Any]:
        """Point MLflow's fluent API at this store for the duration."""
        import mlflow

        previous = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.registry_uri)
        try:
            yield mlflow
        finally:
            mlflow.set_tracking_uri(previous[0])
            mlflow.set_registry_uri(previous[1])

    def _experiment_id(self) -> str:
        with _translate("experiment lookup"):
            experiment = self.client.get_experiment_by_name(self.experiment_name)
            if experiment is not None:
                return str(experiment.experiment_id)
            return str(
                self.client.create_experiment(
                    self.experiment_name, artifact_location=self.artifact_location
                )
            )

    # ----------------------------------------------------------------------- logging
    def log_version(self, new: NewVersion) -> VersionInfo:
        """Log a run with the pyfunc ensemble and register it as a new version.

        Args:
            new: the ensemble's files, training data, params, metrics and provenance.

        Returns:
            The new version (not yet aliased).
        """
        from unlearn_ops import __version__

        provenance, description = new.provenance, new.description
        experiment_id = self._experiment_id()
        tags = provenance.tags()
        with (
            self._fluent() as mlflow,
            _translate("logging the model version"),
            warnings.catch_warnings(),
            contextlib.ExitStack() as stack,
        ):
            # The prediction column is an integer class by design; MLflow hints otherwise.
            warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer")
            self._ensure_registered_model()
            with mlflow.start_run(
                experiment_id=experiment_id,
                run_name=f"{provenance.kind}-{'-'.join(provenance.request_ids) or 'initial'}",
            ) as run:
                mlflow.log_params({k: str(v)[:6000] for k, v in new.params.items()})
                mlflow.log_metrics(dict(new.metrics))
                mlflow.set_tags(tags)
                # The DVC revision of the training data: the git commit that `dvc diff`,
                # `dvc.api.open(rev=...)` and `unlearn-ops verify` read it back from.
                dvc_rev = {
                    f"{TAG_PREFIX}dvc_rev": provenance.git_sha,
                    f"{TAG_PREFIX}data_md5": provenance.data_md5,
                }
                mlflow.set_tags(dvc_rev)
                # MLflow's own tag for a run's description: the run page says it too.
                mlflow.set_tag("mlflow.note.content", description)
                with warnings.catch_warnings():
                    # MLflow registers its local-file source for two schemes ("" and
                    # "file") and warns that a plain path matches both; both are the same.
                    warnings.filterwarnings("ignore", "The specified dataset source can be")
                    dataset = mlflow.data.from_pandas(
                        new.training_frame,
                        source=new.dataset_source,
                        name=f"shards@{provenance.git_sha[:12]}",
                        digest=provenance.data_md5[:36] or None,
                        targets=None,
                    )
                # MLflow infers the schema by testing every cell for NaN (3.4 s for the
                # 4,000 x 786 MNIST frame); the shard tables are validated to hold no
                # missing value, so the schema of a few rows is the same (0.1 s).
                from mlflow.models import infer_signature

                dataset.__dict__["schema"] = infer_signature(new.training_frame.head(64)).inputs
                mlflow.log_input(dataset, context="training", tags=dvc_rev)
                scratch = stack.enter_context(tempfile.TemporaryDirectory())
                provenance_path = Path(scratch) / "provenance.json"
                # Compact, and without what the version's tags hold whole: every version
                # logs it, and a forget should add little beside the retrained shards'
                # weights (issue 15); MLflow's UI pretty-prints it.
                provenance_path.write_text(
                    json.dumps(provenance.artifact_dict(), sort_keys=True, separators=(",", ":"))
                )
                mlflow.log_artifact(str(provenance_path))
                signature = input_example = None
                if new.signature_frames is not None:
                    signature = _serving_signature(*new.signature_frames)
                    # One row shows the shape; MLflow also stores it a second time as
                    # the serving example, in every version.
                    input_example = new.signature_frames[0].head(1)
                import torch

                artifacts = self._store_shards(experiment_id, new.model_files, Path(scratch))
                model_info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=str(PYFUNC_FILE),
                    artifacts=artifacts,
                    pip_requirements=[
                        f"unlearn-ops=={__version__}",
                        f"torch=={torch.__version__.split('+')[0]}",
                        "pandas",
                        "numpy",
                    ],
                    signature=signature,
                    input_example=input_example,
                )
            version = self.client.create_model_version(
                self.model_name,
                source=model_info.model_uri,
                run_id=run.info.run_id,
                # A tracking server checks that a `models:/m-...` source names this model.
                model_id=model_info.model_id,
                tags=tags,
                description=description,
            )
        return self.get_version(str(version.version))

    def blob_store(self, experiment_id: str | None = None) -> BlobStore:
        """The content-addressed store of shard weights under the experiment's artifact root."""
        with _translate("experiment lookup"):
            experiment = self.client.get_experiment(experiment_id or self._experiment_id())
        return BlobStore(
            f"{str(experiment.artifact_location).rstrip('/')}/blobs", self.tracking_uri
        )

    def _store_shards(
        self, experiment_id: str, model_files: Mapping[str, Path], scratch: Path
    ) -> dict[str, str]:
        """The pyfunc artifacts of a version: its shard weights as blobs, named by a manifest.

        Each shard file is uploaded only if no version stored the same bytes before
        (:mod:`unlearn_ops.adapters.mlflow.blobs`); the other files are artifacts as before.
        """
        store = self.blob_store(experiment_id)
        shards = {}
        artifacts = {}
        for key, path in model_files.items():
            if key.startswith("shard-"):
                shards[key], _uploaded = store.put(path)
            else:
                artifacts[key] = str(path)
        if shards:
            manifest = write_manifest(scratch / "shards.json", store, shards)
            artifacts[MANIFEST_ARTIFACT] = str(manifest)
        return artifacts

    def _ensure_registered_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.model_name)
        except MlflowException:
            self.client.create_registered_model(
                self.model_name,
                description=(
                    "A SISA ensemble managed by unlearn-ops: every version's description says "
                    "which deletion requests it honours; the `champion` alias is served."
                ),
            )

    # ---------------------------------------------------------------------- queries
    def _aliases(self) -> dict[str, str]:
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(self.model_name)
        except MlflowException:
            return {}
        return {str(alias): str(version) for alias, version in model.aliases.items()}

    def aliases(self) -> dict[str, str]:
        """Alias -> version of the registered model (empty if it does not exist yet)."""
        return self._aliases()

    def alias_version(self, alias: str) -> str | None:
        """The version an alias points at, or None."""
        return self._aliases().get(alias)

    def _info(self, version: Any, aliases: Mapping[str, str]) -> VersionInfo:
        number = str(version.version)
        return VersionInfo(
            version=number,
            run_id=str(version.run_id or ""),
            created_at=int(version.creation_timestamp or 0),
            description=str(version.description or ""),
            tags={str(k): str(v) for k, v in (version.tags or {}).items()},
            aliases=tuple(sorted(a for a, v in aliases.items() if v == number)),
        )

    def versions(self) -> list[VersionInfo]:
        """Every version, oldest first."""
        aliases = self._aliases()
        if not aliases and not self._exists():
            return []
        with _translate("listing versions"):
            found = self.client.search_model_versions(
                f"name = '{self.model_name}'", max_results=10_000
            )
        return sorted((self._info(v, aliases) for v in found), key=lambda info: int(info.version))

    def _exists(self) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.model_name)
        except MlflowException:
            return False
        return True

    def get_version(self, version: str) -> VersionInfo:
        """One version.

        Raises:
            VersionNotFoundError: no such version (or alias).
        """
        from mlflow.exceptions import MlflowException

        aliases = self._aliases()
        number = aliases.get(version, version)
        try:
            found = self.client.get_model_version(self.model_name, number)
        except MlflowException as exc:
            known = [v.version for v in self.versions()] if self._exists() else []
            raise VersionNotFoundError(self.model_name, version, known) from exc
        return self._info(found, aliases)

    def first_honouring(self, request_id: str, *, passed_only: bool = True) -> VersionInfo | None:
        """The first version that honours `request_id`, or None.

        Args:
            request_id: the deletion request.
            passed_only: only versions whose gates passed (the ones that can be served);
                a version that failed its gates honours the request in its data but was
                never promoted, so a rerun of the request must still produce one.
        """
        if not self._exists():
            return None
        # LIKE narrows the search in the store; `_` and `%` in ids are wildcards there, so
        # the exact membership is checked on the parsed list below.
        needle = json.dumps(request_id).replace("'", "''")
        query = (
            f"name = '{self.model_name}' and tags.`{TAG_PREFIX}honoured_requests` LIKE '%{needle}%'"
        )
        if passed_only:
            query += f" and tags.`{TAG_PREFIX}gates_passed` = 'true'"
        with _translate("searching versions"):
            found = self.client.search_model_versions(query, max_results=10_000)
        aliases = self._aliases()
        matches = [
            info
            for info in (self._info(v, aliases) for v in found)
            if request_id in info.honoured_requests
        ]
        return min(matches, key=lambda info: int(info.version)) if matches else None

    # ---------------------------------------------------------------------- changes
    def set_alias(self, alias: str, version: str) -> None:
        """Point `alias` at `version`."""
        with _translate(f"setting alias {alias}"):
            self.client.set_registered_model_alias(self.model_name, alias, version)

    def set_version_tag(self, version: str, key: str, value: str) -> None:
        """Set an `unlearn.*` tag on a version."""
        with _translate("tagging a version"):
            self.client.set_model_version_tag(self.model_name, version, f"{TAG_PREFIX}{key}", value)

    def load_pyfunc(self, alias_or_version: str = CHAMPION) -> Any:
        """The served model of a version or alias, as MLflow's pyfunc."""
        with self._fluent() as mlflow, _translate("loading the model"):
            return mlflow.pyfunc.load_model(self.model_uri(alias_or_version))

    def model_uri(self, alias_or_version: str) -> str:
        """`models:/NAME@alias` or `models:/NAME/version`."""
        if alias_or_version.isdigit():
            return f"models:/{self.model_name}/{alias_or_version}"
        return f"models:/{self.model_name}@{alias_or_version}"

    # ------------------------------------------------------------------------ purge
    def logged_model_versions(self) -> dict[str, str]:
        """Logged model id (`m-...`) -> the registered version whose source it is."""
        return {
            model_id: info.version
            for info in self.versions()
            if (model_id := self._model_id(info.version))
        }

    def _model_id(self, version: str) -> str:
        with _translate("reading a version"):
            found = self.client.get_model_version(self.model_name, version)
        model_id = getattr(found, "model_id", None) or ""
        source = str(found.source or "")
        if not model_id and source.startswith("models:/m-"):
            model_id = source.removeprefix("models:/").split("/")[0]
        return str(model_id)

    def artifact_dirs(self) -> list[Path]:
        """Local folders of the experiment's artifact store (none for a remote store)."""
        from urllib.parse import unquote, urlparse

        with _translate("experiment lookup"):
            experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            return []
        parsed = urlparse(str(experiment.artifact_location))
        if parsed.scheme not in ("", "file"):
            return []
        return [Path(unquote(parsed.path))]

    def delete_version(self, version: str) -> DeletedVersion:
        """Delete a version for good: its artifacts, the version, its run and logged model.

        The artifacts go first, through MLflow's artifact repository API (local files, S3,
        or the server's proxied store alike). MLflow's own deletes are soft (lifecycle
        `deleted`), so on a database store the run and logged model are then removed for
        good by `mlflow gc` (run in-process); a client of a tracking server cannot
        hard-delete, which is left to the server's operator (`hard` is False then).
        """
        with _translate(f"deleting version {version}"):
            found = self.client.get_model_version(self.model_name, version)
            run_id = str(found.run_id or "")
            model_id = self._model_id(version)
            locations = []
            if model_id:
                locations.append(self.client.get_logged_model(model_id).artifact_location)
            if run_id:
                locations.append(self.client.get_run(run_id).info.artifact_uri)
            for location in locations:
                self._artifacts(location).delete_artifacts()
            self.client.delete_model_version(self.model_name, version)
            if model_id:
                self.client.delete_logged_model(model_id)
            if run_id:
                self.client.delete_run(run_id)
            locations += self._sweep_blobs()
        hard = self._hard_delete([run_id] if run_id else [], [model_id] if model_id else [])
        return DeletedVersion(version, run_id, model_id, tuple(locations), hard)

    def _artifacts(self, location: str) -> Any:
        """MLflow's artifact repository of `location`, resolved against this store.

        An `mlflow-artifacts:` location (a tracking server's proxied artifacts) is served
        by *this* registry's server, never by whatever MLflow's global tracking URI is.
        """
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        return get_artifact_repository(location, self.tracking_uri, self.registry_uri)

    def _manifest_of(self, model_id: str) -> dict[str, str]:
        """Shard key -> blob of a logged model; empty for one logged before the blob store."""
        location = self.client.get_logged_model(model_id).artifact_location
        repository = self._artifacts(location)
        names = {Path(info.path).name for info in repository.list_artifacts("artifacts")}
        if "shards.json" not in names:
            return {}
        with tempfile.TemporaryDirectory(prefix="unlearn-manifest-") as scratch:
            path = repository.download_artifacts("artifacts/shards.json", scratch)
            return read_manifest(path)[1]

    def served_shards(self, alias_or_version: str = CHAMPION) -> ServedShards | None:
        """A version's shard blobs (from its manifest) and params file, without loading it.

        Reads two small files of the logged model (`MLmodel` names where its `params`
        artifact lies); None for a model with no shard manifest.
        """
        import yaml

        number = self.get_version(alias_or_version).version
        with _translate(f"reading the shards of version {number}"):
            model_id = self._model_id(number)
            if not model_id:
                return None
            location = self.client.get_logged_model(model_id).artifact_location
            repository = self._artifacts(location)
            with tempfile.TemporaryDirectory(prefix="unlearn-manifest-") as scratch:
                mlmodel = yaml.safe_load(
                    Path(repository.download_artifacts("MLmodel", scratch)).read_text("utf-8")
                )
                artifacts = mlmodel.get("flavors", {}).get("python_function", {})
                artifacts = artifacts.get("artifacts") or {}
                if MANIFEST_ARTIFACT not in artifacts or "params" not in artifacts:
                    return None
                manifest = repository.download_artifacts(
                    artifacts[MANIFEST_ARTIFACT]["path"], scratch
                )
                params = repository.download_artifacts(artifacts["params"]["path"], scratch)
                shards = read_manifest(manifest)[1]
                return ServedShards(
                    number,
                    tuple(shards[key] for key in sorted(shards)),
                    Path(params).read_text(encoding="utf-8"),
                )

    def blob_references(self) -> dict[str, list[str]]:
        """Blob SHA-256 -> the registered versions whose manifest names it."""
        references: dict[str, list[str]] = {}
        for info in self.versions():
            model_id = self._model_id(info.version)
            if not model_id:
                continue
            for digest in self._manifest_of(model_id).values():
                references.setdefault(digest, []).append(info.version)
        return references

    def _sweep_blobs(self) -> list[str]:
        """Delete every blob that no registered version references; their URIs.

        The reference count is read from the manifests of the versions still registered
        (never from a cache that could be stale): a blob a kept version serves is kept.
        """
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            return []
        store = self.blob_store(experiment.experiment_id)
        stored = store.digests()
        if not stored:
            return []
        referenced = self.blob_references()
        return [store.delete(d) for d in sorted(unreferenced_blobs(stored, referenced))]

    def _hard_delete(self, run_ids: list[str], model_ids: list[str]) -> bool:
        """`mlflow gc` of soft-deleted runs and logged models; False without a database store."""
        from urllib.parse import urlparse

        from mlflow.cli import gc

        scheme = urlparse(self.tracking_uri).scheme.split("+")[0]
        if scheme not in ("sqlite", "postgresql", "mysql", "mssql") or not (run_ids or model_ids):
            return False
        args = ["--backend-store-uri", self.tracking_uri, "--tracking-uri", self.tracking_uri]
        if run_ids:
            args += ["--run-ids", ",".join(run_ids)]
        if model_ids:
            args += ["--logged-model-ids", ",".join(model_ids)]
        with (
            self._fluent(),
            _translate("mlflow gc"),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            gc.main(args, standalone_mode=False)
        return True
