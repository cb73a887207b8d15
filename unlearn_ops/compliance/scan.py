"""Scan a workspace's stores for files that still hold a forgotten record.

The stores: the DVC cache, DVC remotes that are local folders, the checkpoint store and
the MLflow artifact store (local folders). Each file is judged by what it is:

- a parquet file (shard or holdout table, a dataset artifact): its id column is read and
  each id's keyed hash (`settings.hash_record_id(canonical_id(id))`) compared with
  `forgotten.json`;
- a stage checkpoint: by the checkpoint index (:mod:`unlearn_ops.sisa.checkpoint_index`);
- a weights file elsewhere (DVC cache, MLflow artifacts): by its MD5 in the index (the
  served weights are the last stage's checkpoint, byte for byte), else, for an MLflow
  logged model, by its version: one that does not honour a forgotten request holds it;
  for a shard blob of the registry's content-addressed store (named by its SHA-256, and
  shared by every version that references it), by those versions: it holds a forgotten
  record only when every version that references it does not honour one (a version that
  honours every deletion was trained without those records, issue 15).

Files that cannot be judged (a checkpoint with no index entry, weights of no known
version) are listed as `unverified`, not as findings. Other files (JSON, YAML, MLmodel)
hold no record ids.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from unlearn_ops.canonical import JsonReady, json_ready
from unlearn_ops.errors import StoreError
from unlearn_ops.sisa.checkpoint_index import CheckpointIndex
from unlearn_ops.sisa.hashing import canonical_id

if TYPE_CHECKING:
    from unlearn_ops.workflow.workspace import Workspace

__all__ = ["Finding", "ScanReport", "StoreKind", "scan_files", "scan_workspace"]

StoreKind = Literal["dvc-cache", "dvc-remote", "checkpoints", "mlflow-artifacts"]

_PARQUET_MAGIC = b"PAR1"
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive
_SCAN_BATCH_ROWS = 65_536


@dataclass(frozen=True)
class Finding(JsonReady):
    """A file that holds forgotten records.

    Attributes:
        store: which store it is in.
        path: the file.
        kind: `table`, `checkpoint` or `weights`.
        forgotten_records: how many forgotten records it holds (0 when judged by version).
        reason: how it was judged.
    """

    store: StoreKind
    path: str
    kind: Literal["table", "checkpoint", "weights"]
    forgotten_records: int
    reason: str


@dataclass
class ScanReport:
    """What a scan found.

    Attributes:
        findings: files holding forgotten records.
        unverified: files that could not be judged, with why.
        files_scanned: files looked at, per store.
    """

    findings: list[Finding] = field(default_factory=list)
    unverified: list[dict[str, str]] = field(default_factory=list)
    files_scanned: dict[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """No file holds a forgotten record."""
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {"clean": self.clean, **json_ready(self)}


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            return file.read(4)
    except OSError:
        return b""


def _md5(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def _count_forgotten_ids(
    path: Path, id_columns: Iterable[str], forgotten: set[str], hash_id: Callable[[str], str]
) -> int | None:
    """Forgotten ids in a parquet table; None when it has none of the id columns."""
    import pyarrow.parquet as pq

    names = set(pq.read_schema(path).names)
    column = next((c for c in id_columns if c in names), None)
    if column is None:
        return None
    # By batches of the one column: a million-record table is never read whole (issue 15).
    batches = pq.ParquetFile(path).iter_batches(batch_size=_SCAN_BATCH_ROWS, columns=[column])
    return sum(
        1
        for batch in batches
        for value in batch.column(0).to_pylist()
        if hash_id(canonical_id(value)) in forgotten
    )


def scan_files(
    files: Iterable[tuple[StoreKind, Path]],
    *,
    forgotten: set[str],
    hash_record_id: Callable[[str], str],
    id_columns: Iterable[str],
    index: CheckpointIndex,
    model_versions: Mapping[str, str] | None = None,
    superseded_versions: Mapping[str, str] | None = None,
    blob_versions: Mapping[str, Iterable[str]] | None = None,
) -> ScanReport:
    """Judge each file; see the module docstring for how.

    Args:
        files: (store, path) pairs.
        forgotten: keyed hashes of forgotten ids.
        hash_record_id: the keyed hash of a canonical id.
        id_columns: names the id column may have in a table.
        index: the checkpoint index.
        model_versions: MLflow logged model id -> registered version.
        superseded_versions: version -> a forgotten request it does not honour.
        blob_versions: SHA-256 of a shard blob -> the versions that reference it.
    """
    report = ScanReport()
    columns = list(id_columns)
    by_md5 = index.keys_by_md5()
    model_versions = model_versions or {}
    superseded_versions = superseded_versions or {}
    blob_holders = {k: list(v) for k, v in (blob_versions or {}).items()}

    def judge_key(
        store: StoreKind, path: Path, key: str, kind: Literal["checkpoint", "weights"]
    ) -> bool:
        records = index.records(key)
        if records is None:
            return False
        hits = len(records & forgotten)
        if hits:
            reason = f"trained on {hits} forgotten record(s) (checkpoint index, key {key[:12]})"
            report.findings.append(Finding(store, str(path), kind, hits, reason))
        return True

    for store, path in files:
        report.files_scanned[store] = report.files_scanned.get(store, 0) + 1
        if store == "checkpoints":
            if not judge_key(store, path, path.stem, "checkpoint"):
                report.unverified.append(
                    {"store": store, "path": str(path), "reason": "no checkpoint index entry"}
                )
            continue
        head = _head(path)
        if head == _PARQUET_MAGIC:
            hits = _count_forgotten_ids(path, columns, forgotten, hash_record_id)
            if hits is None:
                report.unverified.append(
                    {"store": store, "path": str(path), "reason": "table without an id column"}
                )
            elif hits:
                report.findings.append(
                    Finding(store, str(path), "table", hits, f"{hits} forgotten id(s) in the table")
                )
        elif head == _ZIP_MAGIC or path.suffix == ".pt":
            key = by_md5.get(_md5(path))
            if key is not None and judge_key(store, path, key, "weights"):
                continue
            if path.name in blob_holders:
                holders = blob_holders[path.name]
                stale = [v for v in holders if v in superseded_versions]
                if holders and len(stale) == len(holders):
                    reason = (
                        f"shard blob of version(s) {', '.join(stale)}, none of which honours "
                        f"request {superseded_versions[stale[0]]}"
                    )
                    report.findings.append(Finding(store, str(path), "weights", 0, reason))
                continue
            model_id = next((p for p in path.parts if p.startswith("m-")), None)
            version = model_versions.get(model_id or "")
            if version is None:
                report.unverified.append(
                    {"store": store, "path": str(path), "reason": "weights of no known checkpoint"}
                )
            elif version in superseded_versions:
                reason = (
                    f"weights of version {version}, which does not honour request "
                    f"{superseded_versions[version]}"
                )
                report.findings.append(Finding(store, str(path), "weights", 0, reason))
    return report


def _walk(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def scan_workspace(workspace: Workspace) -> ScanReport:
    """Scan every store of a workspace for files holding a forgotten record."""
    from unlearn_ops.adapters.dvc.cache import cache_dir, local_remote_dirs

    ensemble = workspace.ensemble
    forgotten = ensemble.forgotten_hashes()
    index = CheckpointIndex(workspace.root / "checkpoints" / "index")
    files: list[tuple[StoreKind, Path]] = []
    files += [("dvc-cache", p) for p in _walk(cache_dir(workspace.root)) if "runs" not in p.parts]
    for remote in local_remote_dirs(workspace.root):
        files += [("dvc-remote", p) for p in _walk(remote)]
    checkpoints = workspace.root / "checkpoints"
    files += [("checkpoints", p) for p in sorted(checkpoints.glob("??/*.pt"))]
    registry = workspace.registry()
    for folder in registry.artifact_dirs():
        files += [("mlflow-artifacts", p) for p in _walk(folder)]
    honoured_everywhere = {
        state.request_id
        for state in workspace.ledger.requests().values()
        if state.record_hashes and set(state.record_hashes) <= forgotten
    }
    superseded = {}
    for info in registry.versions():
        missing = sorted(honoured_everywhere - set(info.honoured_requests))
        if missing:
            superseded[info.version] = missing[0]
    id_columns = [workspace.params.dataset.id_column]
    with contextlib.suppress(StoreError):  # not prepared: the params' column name will do
        id_columns.insert(0, ensemble.columns().id_column)
    return scan_files(
        files,
        forgotten=forgotten,
        hash_record_id=workspace.settings.hash_record_id,
        id_columns=dict.fromkeys(id_columns),
        index=index,
        model_versions=registry.logged_model_versions(),
        superseded_versions=superseded,
        # Only MLflow's registry keeps a blob store; the in-memory fake has none.
        blob_versions=getattr(registry, "blob_references", dict)(),
    )
