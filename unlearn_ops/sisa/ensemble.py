"""The SISA ensemble on disk: shard files, shard models, checkpoints, and forgetting.

Layout of an ensemble directory (a workspace puts `data/` under DVC)::

    ROOT/ensemble.json              columns, classes, S, R, salt (written by `prepare`)
    ROOT/data/shards/shard-000.parquet   one table per shard: id, slice_id, label, features
    ROOT/data/holdout.parquet       held-out records for evaluation
    ROOT/models/shard-000.pt        served weights of each shard
    ROOT/models/shard-000.json      their stage keys, weights hash, record count
    ROOT/checkpoints/ab/abc....pt   content-addressed stage checkpoints
    ROOT/forgotten.json             keyed hashes of every forgotten id
    ROOT/.unlearn-ops/record-index/ where each record is, by keyed hash (a cache of data/)

A forget writes the keyed hashes first, then rewrites the affected shard files, then
retrains every shard whose model no longer matches its data (a *stale* shard). Each step
is atomic and the last is idempotent, so a crash at any point is completed by running
the same forget again.

Why this module is long: :class:`SisaEnsemble` owns one directory layout, and its operations
(prepare, train, locate, forget, predict) each read and write that layout under the same
atomicity rules; the pure parts are already elsewhere (sharding, checkpoints, planning,
training, aggregation).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from unlearn_ops.atomic import write_atomic
from unlearn_ops.errors import (
    InvalidRequestError,
    StoreError,
    UnknownRecordsError,
)
from unlearn_ops.params import Params
from unlearn_ops.settings import Settings
from unlearn_ops.sisa.aggregation import aggregate
from unlearn_ops.sisa.checkpoints import CheckpointStore, LocalCheckpointStore, stage_keys
from unlearn_ops.sisa.datasets import Dataset
from unlearn_ops.sisa.devices import resolve_device
from unlearn_ops.sisa.dp import settings_noise_key
from unlearn_ops.sisa.hashing import canonical_id
from unlearn_ops.sisa.planning import RetrainingPlan, plan_retraining
from unlearn_ops.sisa.record_index import RecordIndex
from unlearn_ops.sisa.shard_arrays import (
    ShardArrays,
    canonical_ids,
    read_shard_arrays,
    release_arrow_memory,
)
from unlearn_ops.sisa.sharding import (
    SLICE_COLUMN,
    assign_shards,
    read_shard,
    shard_file_name,
    sort_shard,
    write_shard,
)
from unlearn_ops.sisa.staging import stage_split
from unlearn_ops.sisa.training import (
    ShardColumns,
    ShardModel,
    StageProgress,
    load_state,
    serialize_state,
    shard_stage_keys,
    train_shard,
)

__all__ = ["ForgetReport", "SisaEnsemble", "TrainReport", "file_md5"]

_FORMAT = 1
_COPY_ROWS = 16_384
"""Rows per row group of a data file a forget rewrites."""


def file_md5(path: Path) -> str:
    """MD5 of a file's bytes, or "" when it is missing (then every model counts as stale)."""
    try:
        with path.open("rb") as file:
            return hashlib.file_digest(file, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()
    except FileNotFoundError:
        return ""


@dataclass(frozen=True)
class TrainReport:
    """What a training pass did: per-shard models and the wall time."""

    models: tuple[ShardModel, ...]
    seconds: float

    @property
    def shard_ids(self) -> list[int]:
        """Shards that were (re)trained."""
        return [model.shard_id for model in self.models]

    @property
    def samples_processed(self) -> int:
        """Examples run through the models, all shards together."""
        return sum(model.samples_processed for model in self.models)


@dataclass(frozen=True)
class ForgetReport:
    """What a forget did.

    Attributes:
        plan: the plan it followed.
        forgotten: canonical ids removed by this call (training and held-out).
        training: the retraining pass (stale shards).
        seconds: wall time, data update and retraining.
    """

    plan: RetrainingPlan
    forgotten: tuple[str, ...]
    training: TrainReport
    seconds: float

    @property
    def changed(self) -> bool:
        """Whether any data or model changed."""
        return bool(self.forgotten or self.training.models)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "forgotten": len(self.forgotten),
            "already_forgotten": len(self.plan.already_forgotten),
            "plan": self.plan.to_dict(),
            "retrained": [
                {
                    "shard_id": m.shard_id,
                    "first_stage": m.resumed_from_stage,
                    "stages": m.stages_trained,
                    "seconds": round(m.seconds, 3),
                }
                for m in self.training.models
            ],
            "seconds": round(self.seconds, 3),
        }


class SisaEnsemble:
    """A SISA ensemble kept in a directory.

    Construction does no I/O; :meth:`prepare` writes the shards, :meth:`train` the models.

    Example:
        >>> ensemble = SisaEnsemble(tmp_path, Params())          # doctest: +SKIP
        >>> ensemble.prepare(load_digits()); ensemble.train()    # doctest: +SKIP
        >>> ensemble.forget([17, 42]).plan.shard_ids             # doctest: +SKIP
        [2, 5]

    Args:
        root: the ensemble directory.
        params: pipeline params (S, R, seed, model, training).
        settings: device, threads and the key of record-id hashes; from the environment
            when None.
        checkpoint_store: where stage checkpoints live; `ROOT/checkpoints` when None.
    """

    def __init__(
        self,
        root: str | Path,
        params: Params,
        settings: Settings | None = None,
        checkpoint_store: CheckpointStore | None = None,
    ) -> None:
        self.root = Path(root)
        self.params = params
        self.settings = settings if settings is not None else Settings()
        self.checkpoint_store = (
            checkpoint_store
            if checkpoint_store is not None
            else LocalCheckpointStore(self.root / "checkpoints")
        )
        self._model_cache: dict[int, tuple[str, Any]] = {}
        self._record_index: RecordIndex | None = None

    # ----------------------------------------------------------------- paths and metadata
    @property
    def shards_dir(self) -> Path:
        """Folder of the shard tables."""
        return self.root / "data" / "shards"

    @property
    def holdout_path(self) -> Path:
        """The held-out table."""
        return self.root / "data" / "holdout.parquet"

    @property
    def models_dir(self) -> Path:
        """Folder of the served shard weights."""
        return self.root / "models"

    def shard_path(self, shard_id: int) -> Path:
        """Path of one shard table."""
        return self.shards_dir / shard_file_name(shard_id)

    def model_path(self, shard_id: int) -> Path:
        """Path of one shard's served weights."""
        return self.models_dir / f"shard-{shard_id:03d}.pt"

    def _model_meta_path(self, shard_id: int) -> Path:
        return self.models_dir / f"shard-{shard_id:03d}.json"

    @property
    def record_index(self) -> RecordIndex:
        """Where each record is, by keyed hash (:mod:`unlearn_ops.sisa.record_index`)."""
        if self._record_index is None:
            self._record_index = RecordIndex(
                self.root / ".unlearn-ops" / "record-index",
                self.settings.id_hash_key.get_secret_value().encode(),
                self._read_index_columns,
            )
        return self._record_index

    def _read_index_columns(self, path: Path) -> tuple[list[str], np.ndarray | None]:
        """A data file's canonical ids and slices (None for the held-out table)."""
        id_column = self.columns().id_column
        if path == self.holdout_path:
            ids = read_shard(path, [id_column])[id_column]
            return ids.map(canonical_id).tolist(), None
        table = read_shard(path, [id_column, SLICE_COLUMN])
        return table[id_column].map(canonical_id).tolist(), table[SLICE_COLUMN].to_numpy()

    @property
    def _manifest_path(self) -> Path:
        return self.root / "ensemble.json"

    @property
    def _forgotten_path(self) -> Path:
        return self.root / "forgotten.json"

    @property
    def shard_ids(self) -> list[int]:
        """0..S-1."""
        return list(range(self.params.sisa.shards))

    def manifest(self) -> dict[str, Any]:
        """The ensemble's metadata written by :meth:`prepare`.

        Raises:
            StoreError: not prepared, or prepared with another S, R or salt.
        """
        try:
            data: dict[str, Any] = json.loads(self._manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise StoreError(
                self.root, "no ensemble here", "prepare it first (`unlearn-ops train`)"
            ) from exc
        except json.JSONDecodeError as exc:
            raise StoreError(self._manifest_path, f"not valid JSON ({exc})") from exc
        sisa = self.params.sisa
        expected = {"shards": sisa.shards, "slices": sisa.slices, "salt": sisa.salt}
        found = {key: data.get(key) for key in expected}
        if found != expected:
            raise StoreError(
                self.root,
                f"prepared with {found}, but params say {expected}",
                "changing S, R or the salt re-shards the data: prepare and train again",
            )
        return data

    def columns(self) -> ShardColumns:
        """Column names and class count of the shard tables."""
        manifest = self.manifest()
        return ShardColumns(
            id_column=manifest["id_column"],
            label_column=manifest["label_column"],
            feature_columns=tuple(manifest["feature_columns"]),
            num_classes=int(manifest["num_classes"]),
        )

    def forgotten_hashes(self) -> set[str]:
        """Keyed hashes of every id forgotten so far."""
        try:
            data = json.loads(self._forgotten_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return set()
        except json.JSONDecodeError as exc:
            raise StoreError(self._forgotten_path, f"not valid JSON ({exc})") from exc
        return set(data["hashes"])

    # ------------------------------------------------------------------------- prepare
    def prepare(self, dataset: Dataset | Iterable[Dataset]) -> dict[int, int]:
        """Split off the held-out set, shard and slice the rest, write every table.

        Records forgotten earlier (by keyed hash in `forgotten.json`) are left out, so that
        preparing again from the original source never brings one back. The record index
        is written beside the tables.

        Args:
            dataset: the whole dataset, or its chunks
                (:func:`~unlearn_ops.sisa.dataset_chunks.load_dataset_chunks`): each chunk's rows
                are staged on disk per shard, and each shard file is then assembled alone,
                so memory holds one chunk, then one shard, never the whole table twice.

        Returns:
            Record count per shard.

        Raises:
            DatasetError: an id is duplicated across chunks.
            StoreError: the holdout split leaves no training or no held-out record.
        """
        sisa = self.params.sisa
        forgotten = self.forgotten_hashes()
        index = self.record_index

        def keep(chunk: Dataset) -> np.ndarray:
            # Re-preparing must never bring a forgotten record back (DESIGN: ledger).
            return np.array(
                [
                    self.settings.hash_record_id(canonical_id(r)) not in forgotten
                    for r in chunk.record_ids
                ],
                dtype=bool,
            )

        scratch = self.root / ".unlearn-ops"
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch, prefix="prepare-") as staging:
            split = stage_split(
                [dataset] if isinstance(dataset, Dataset) else dataset,
                Path(staging),
                num_shards=sisa.shards,
                num_slices=sisa.slices,
                salt=sisa.salt,
                holdout_fraction=self.params.dataset.holdout_fraction,
                holdout_salt=f"{sisa.salt}:{self.params.seed}",
                keep=keep if forgotten else None,
                index_keys=index.keys,
            )
            split.check(index.keys)
            first = split.first
            counts = {}
            for shard_id, staged in split.shards.items():
                table = sort_shard(staged.read(split.empty_shard), first.id_column)
                write_shard(table, self.shard_path(shard_id))
                counts[shard_id] = len(table)
                del table  # one shard in memory at a time
                index.store(self.shard_path(shard_id), split.shard_index(shard_id))
            write_shard(split.holdout.read(first.frame.iloc[:0]), self.holdout_path)
            index.store(self.holdout_path, split.holdout_index())
        manifest = {
            "format": _FORMAT,
            "source": first.source,
            "id_column": first.id_column,
            "label_column": first.label_column,
            "feature_columns": list(first.feature_columns),
            "num_classes": split.num_classes,
            "shards": sisa.shards,
            "slices": sisa.slices,
            "salt": sisa.salt,
        }
        write_atomic(self._manifest_path, json.dumps(manifest, indent=2) + "\n")
        return counts

    def read_shard(self, shard_id: int) -> pd.DataFrame:
        """One shard's table."""
        return read_shard(self.shard_path(shard_id))

    def read_holdout(self) -> pd.DataFrame:
        """The held-out table."""
        return read_shard(self.holdout_path)

    # --------------------------------------------------------------------------- train
    def data_keys(self, shard_id: int, table: pd.DataFrame | None = None) -> list[str]:
        """Stage keys of a shard's current data (what its model must have been trained on)."""
        columns = self.columns()
        return stage_keys(
            self.read_shard(shard_id) if table is None else table,
            shard_id=shard_id,
            num_slices=self.params.sisa.slices,
            training_hash=self.params.training_hash(),
            id_column=columns.id_column,
            label_column=columns.label_column,
        )

    def training_keys(self, shard_id: int, arrays: ShardArrays, device: str) -> list[str]:
        """The stage keys a training of the shard's `arrays` on `device` writes (under DP,
        with the settings' noise key): what a shard trained elsewhere must come back with."""
        return shard_stage_keys(
            arrays,
            shard_id=shard_id,
            params=self.params,
            device=device,
            noise_key=settings_noise_key(self.settings),
        )

    def served_model_info(self, shard_id: int) -> dict[str, Any] | None:
        """Metadata of a shard's served weights, or None if never trained."""
        try:
            info: dict[str, Any] = json.loads(
                self._model_meta_path(shard_id).read_text(encoding="utf-8")
            )
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as exc:
            raise StoreError(self._model_meta_path(shard_id), f"not valid JSON ({exc})") from exc
        return info

    def stale_shards(self) -> list[int]:
        """Shards whose served model was not trained on their current file with these params.

        Compares the file's MD5 (what DVC records too) with the one noted at training time:
        reading bytes is much cheaper than parsing and hashing every table. A file rewritten
        with the same content only costs a resume in which every stage is cached. A model
        trained under another `Params.training_hash()` (params.yaml edited, or restored by
        a rollback) is stale too; its shard resumes from the checkpoints of these params,
        so going back to params trained before costs nothing for unchanged shards.
        """
        stale = []
        training_hash = self.params.training_hash()
        for shard_id in self.shard_ids:
            info = self.served_model_info(shard_id)
            if (
                info is None
                or not self.model_path(shard_id).is_file()
                or info.get("data_md5") != file_md5(self.shard_path(shard_id))
                or info.get("training_hash") != training_hash
            ):
                stale.append(shard_id)
        return stale

    def train_shard(self, shard_id: int, progress: StageProgress | None = None) -> ShardModel:
        """Train (or resume) one shard on its current table and serve the result."""
        columns = self.columns()
        data_md5 = file_md5(self.shard_path(shard_id))
        # Arrays read column by column, never a pandas frame: the shard is held once
        # (issue 15, memory bounded by a shard); same keys and weights as from the frame.
        path = self.shard_path(shard_id)
        table = read_shard_arrays(path, columns.id_column, columns.label_column)
        model = train_shard(
            table,
            shard_id=shard_id,
            params=self.params,
            columns=columns,
            store=self.checkpoint_store,
            device=resolve_device(self.settings.device),
            threads=self.settings.torch_threads,
            progress=progress,
            noise_key=settings_noise_key(self.settings),  # used under DP only
        )
        self.serve_trained(model, table, data_md5)
        return model

    def serve_trained(self, model: ShardModel, table: ShardArrays, data_md5: str) -> None:
        """Serve weights trained on the shard's `table` (file MD5 `data_md5`): write them and
        their metadata, and index the new stage checkpoints, which the store must hold.

        :meth:`train_shard` calls it; so does a shard trained elsewhere and brought back
        (:mod:`unlearn_ops.workflow.shard_exchange`).
        """
        shard_id = model.shard_id
        write_atomic(self.model_path(shard_id), serialize_state(model.state))
        info = {
            "shard_id": shard_id,
            "stage_keys": model.stage_keys,
            "weights_hash": model.weights_hash,
            "num_records": model.num_records,
            "training_hash": self.params.training_hash(),
            "data_md5": data_md5,
            "device": model.device,  # certificates retrain on the same kind (issue 15)
        }
        if model.noise_key_fingerprint is not None:  # certificates need the same DP key
            info["dp_noise_key_fingerprint"] = model.noise_key_fingerprint
        write_atomic(self._model_meta_path(shard_id), json.dumps(info, indent=2) + "\n")
        self._model_cache.pop(shard_id, None)
        self._index_checkpoints(shard_id, table, model.stage_keys)

    def _index_checkpoints(self, shard_id: int, table: ShardArrays, keys: list[str]) -> None:
        """Note which records each new stage checkpoint saw (what `purge` and `scan` judge by)."""
        from unlearn_ops.sisa.checkpoint_index import CheckpointIndex, index_shard_checkpoints

        index_shard_checkpoints(
            CheckpointIndex(self.root / "checkpoints" / "index"),
            self.checkpoint_store,
            table,
            shard_id=shard_id,
            stage_keys=keys,
            hash_record_id=self.settings.hash_record_id,
        )

    def train(
        self,
        shard_ids: Iterable[int] | None = None,
        *,
        progress: StageProgress | None = None,
        max_workers: int | None = None,
    ) -> TrainReport:
        """Train the given shards (all when None), up to `max_workers` at once.

        Each shard resumes from the longest prefix of its checkpoints in the store, so
        training shards whose data did not change is a cheap no-op.
        """
        started = time.perf_counter()
        ids = self.shard_ids if shard_ids is None else sorted(set(shard_ids))
        workers = max_workers or self.settings.max_parallel_shards
        self.columns()  # fail early, before any thread starts
        if workers <= 1 or len(ids) <= 1:
            models = [self.train_shard(shard_id, progress) for shard_id in ids]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                models = list(pool.map(lambda s: self.train_shard(s, progress), ids))
        return TrainReport(tuple(models), time.perf_counter() - started)

    def fit(self, dataset: Dataset, **train_options: Any) -> TrainReport:
        """Prepare the shards from `dataset` and train every shard."""
        self.prepare(dataset)
        return self.train(**train_options)

    # -------------------------------------------------------------------------- forget
    def _locate(
        self, record_ids: Sequence[object]
    ) -> tuple[dict[int, pd.DataFrame], list[str], list[str], list[str]]:
        """Find each id: in which shard (with its slice), in the holdout, forgotten, or unknown.

        Looks ids up in the record index: no data file is read (unless its index entry
        is out of date, and then that file only).
        """
        columns = self.columns()
        index = self.record_index
        wanted = list(dict.fromkeys(canonical_id(r) for r in record_ids))
        keys = index.keys(wanted)
        shards = assign_shards(wanted, self.params.sisa.shards, self.params.sisa.salt)
        found: dict[int, pd.DataFrame] = {}
        located = np.zeros(len(wanted), dtype=bool)
        for shard_id in sorted(set(shards.tolist())):
            positions = np.flatnonzero(shards == shard_id)
            slices = index.entry(self.shard_path(shard_id)).slices_of(keys[positions])
            hit = positions[slices >= 0]
            if len(hit):
                hits = pd.DataFrame(
                    {
                        columns.id_column: [wanted[i] for i in hit],
                        SLICE_COLUMN: slices[slices >= 0].astype(np.int64),
                    }
                )
                found[shard_id] = sort_shard(hits, columns.id_column)
                located[hit] = True
        rest = np.flatnonzero(~located)
        holdout: list[str] = []
        if len(rest):
            held = index.entry(self.holdout_path).slices_of(keys[rest]) != -2
            holdout = [wanted[i] for i in rest[held]]
        held_set = set(holdout)
        forgotten = self.forgotten_hashes()
        remaining = [wanted[i] for i in rest if wanted[i] not in held_set]
        already = [r for r in remaining if self.settings.hash_record_id(r) in forgotten]
        known = set(already)
        unknown = [r for r in remaining if r not in known]
        return found, holdout, already, unknown

    def plan_forget(self, record_ids: Sequence[object]) -> RetrainingPlan:
        """What forgetting `record_ids` would retrain; changes nothing.

        Raises:
            UnknownRecordsError: some ids were never in the data (nothing is planned).
        """
        plan, _found, _holdout = self._plan(record_ids)
        return plan

    def _plan(
        self, record_ids: Sequence[object]
    ) -> tuple[RetrainingPlan, dict[int, pd.DataFrame], list[str]]:
        found, holdout, already, unknown = self._locate(record_ids)
        if unknown:
            raise UnknownRecordsError(unknown, len(set(map(canonical_id, record_ids))))
        slice_counts = {
            shard_id: self.record_index.entry(self.shard_path(shard_id)).slice_counts(
                self.params.sisa.slices
            )
            for shard_id in self.shard_ids
        }
        plan = plan_retraining(
            slice_counts,
            {s: hits[SLICE_COLUMN].tolist() for s, hits in found.items()},
            holdout_records=len(holdout),
            already_forgotten=already,
            from_first_stage=self.params.training.dp.enabled,
        )
        return plan, found, holdout

    def _record_forgotten(self, keys: Iterable[str]) -> None:
        hashes = self.forgotten_hashes() | {self.settings.hash_record_id(k) for k in keys}
        write_atomic(self._forgotten_path, json.dumps({"hashes": sorted(hashes)}, indent=0) + "\n")

    def remove_records(self, record_ids: Sequence[object]) -> tuple[RetrainingPlan, list[str]]:
        """Remove records from the shard and held-out files, without retraining.

        The first half of :meth:`forget`: the keyed hashes are written first, then only
        the affected files are rewritten (each atomically). Afterwards the affected shards
        are stale (see :meth:`stale_shards`) until trained.

        Returns:
            The plan, and the canonical ids removed now (ids forgotten before excluded).

        Raises:
            InvalidRequestError: no ids.
            UnknownRecordsError: some ids were never in the data; nothing is changed.
        """
        if len(record_ids) == 0:
            raise InvalidRequestError("no record ids given", "pass at least one id to forget")
        plan, found, holdout = self._plan(record_ids)
        columns = self.columns()
        removed: list[str] = []
        for hits in found.values():
            removed.extend(hits[columns.id_column].map(canonical_id))
        removed.extend(holdout)
        # Hashes first: if we crash after this, a rerun knows these ids and finishes the job.
        self._record_forgotten(removed)
        paths = [(self.shard_path(s), hits[columns.id_column]) for s, hits in found.items()]
        if holdout:
            paths.append((self.holdout_path, pd.Series(holdout)))
        index = self.record_index
        for path, ids in paths:
            entry = index.entry(path)
            gone = self._remove_rows(path, columns.id_column, ids)
            index.store(path, entry.without(index.keys(gone)))
        return plan, removed

    def forget(
        self,
        record_ids: Sequence[object],
        *,
        progress: StageProgress | None = None,
        max_workers: int | None = None,
    ) -> ForgetReport:
        """Remove records from the data and retrain the affected shards exactly.

        Ids forgotten before are a no-op (reported in `plan.already_forgotten`). Shards left
        stale by an interrupted earlier forget are retrained too.

        Raises:
            InvalidRequestError: no ids.
            UnknownRecordsError: some ids were never in the data; nothing is changed.
        """
        started = time.perf_counter()
        plan, removed = self.remove_records(record_ids)
        training = self.train(self.stale_shards(), progress=progress, max_workers=max_workers)
        return ForgetReport(plan, tuple(removed), training, time.perf_counter() - started)

    @staticmethod
    def _remove_rows(path: Path, id_column: str, record_ids: pd.Series) -> list[str]:
        """Rewrite a data file without the given ids; returns the canonical ids removed.

        Read and filtered column by column with pyarrow, written in row groups of
        :data:`_COPY_ROWS` (the file's schema, pandas' metadata included, kept as it is):
        a forget holds the kept rows once, never a pandas frame beside them (issue 15).
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        keys = np.array(sorted(set(record_ids.map(canonical_id))), dtype=str)
        try:
            parquet = pq.ParquetFile(path)
            ids = parquet.read(columns=[id_column], use_pandas_metadata=False).column(0)
        except FileNotFoundError as exc:
            raise StoreError(path, "data file is missing", "run `unlearn-ops train` first") from exc
        except (OSError, ValueError) as exc:
            raise StoreError(path, f"data file cannot be read ({exc})") from exc
        canonical = canonical_ids(ids.to_numpy())
        drop = np.isin(canonical, keys)

        keep = pa.array(~drop)

        def write(temp: Path) -> None:
            # Column by column: a row group is decoded one column at a time, and only
            # the kept rows (one copy of the table, in arrow) are held until written.
            kept = [
                parquet.read(columns=[name], use_threads=False, use_pandas_metadata=False)
                .column(0)
                .filter(keep)
                for name in parquet.schema_arrow.names
            ]
            table = pa.Table.from_arrays(kept, schema=parquet.schema_arrow)
            del kept
            pq.write_table(table, temp, row_group_size=_COPY_ROWS)

        try:
            write_atomic(path, write)
        finally:
            release_arrow_memory()
        gone: list[str] = canonical[drop].tolist()
        return gone

    # ------------------------------------------------------------------------- predict
    def _shard_module(self, shard_id: int) -> Any:

        from unlearn_ops.sisa.models import build_model

        info = self.served_model_info(shard_id)
        if info is None:
            raise StoreError(
                self.model_path(shard_id), "shard model is missing", "train the ensemble first"
            )
        cached = self._model_cache.get(shard_id)
        if cached is not None and cached[0] == info["weights_hash"]:
            return cached[1]
        columns = self.columns()
        module = build_model(self.params.model, len(columns.feature_columns), columns.num_classes)
        module.load_state_dict(load_state(self.model_path(shard_id).read_bytes()))
        module.eval()
        self._model_cache[shard_id] = (info["weights_hash"], module)
        return module

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Ensemble class scores for a float feature matrix (rows x features)."""
        import torch

        features = np.ascontiguousarray(features, dtype=np.float32)
        if not features.flags.writeable:  # pandas' copy-on-write arrays are read-only
            features = features.copy()
        inputs = torch.from_numpy(features)
        outputs = []
        with torch.no_grad():
            for shard_id in self.shard_ids:
                module = self._shard_module(shard_id)
                outputs.append(torch.softmax(module(inputs), dim=1).numpy())
        return aggregate(np.stack(outputs), self.params.sisa.aggregation)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predicted class per row."""
        classes: np.ndarray = self.predict_proba(features).argmax(axis=1)
        return classes

    def evaluate(self, table: pd.DataFrame | None = None) -> float:
        """Accuracy on the held-out table (or on `table`)."""
        columns = self.columns()
        table = self.read_holdout() if table is None else table
        features = table[list(columns.feature_columns)].to_numpy(dtype=np.float32)
        labels = table[columns.label_column].to_numpy()
        return float((self.predict(features) == labels).mean())
