"""The exactness certificate: served shard weights equal a from-scratch training, bit for bit.

For each shard, train it from scratch on its current records in a fresh in-memory
checkpoint store (no cached stage can leak in) and compare the SHA-256 of the weights with
the served ones. Because training is deterministic, equality proves the served model is
exactly the one that never saw the forgotten records (Bourtoule et al. 2021, section IV).
Determinism holds on one kind of device: a certificate retrains on the kind the served
weights were trained on (recorded with them), and refuses to run on another.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from unlearn_ops.canonical import json_ready
from unlearn_ops.errors import DeviceMismatchError, NoiseKeyMismatchError
from unlearn_ops.params import Params
from unlearn_ops.settings import Settings
from unlearn_ops.sisa.checkpoints import MemoryCheckpointStore
from unlearn_ops.sisa.devices import device_kind, device_name, resolve_device
from unlearn_ops.sisa.dp import noise_key_fingerprint, settings_noise_key
from unlearn_ops.sisa.ensemble import SisaEnsemble
from unlearn_ops.sisa.hashing import canonical_id
from unlearn_ops.sisa.training import ShardColumns, load_state, train_shard, weights_digest

__all__ = [
    "Certificate",
    "ScratchJob",
    "ScratchMapper",
    "ScratchResult",
    "ShardCertificate",
    "certify_exactness",
    "certify_tables",
    "retrain_from_scratch",
]


@dataclass(frozen=True)
class ShardCertificate:
    """The check of one shard.

    Attributes:
        shard_id: the shard.
        num_records: records it holds now.
        served_hash: SHA-256 of the served weights ("" when no model is served).
        scratch_hash: SHA-256 of the weights trained from scratch now.
        keys_match: the served model's stage keys are those of the current data.
        forgotten_present: forgotten ids found in the shard's data (must be 0).
        recorded_match: the served weights are the ones recorded when they were trained
            (or registered): a weights file swapped or edited afterwards fails here.
    """

    shard_id: int
    num_records: int
    served_hash: str
    scratch_hash: str
    keys_match: bool
    forgotten_present: int
    recorded_match: bool = True

    @property
    def exact(self) -> bool:
        """Whether this shard passes."""
        return (
            self.keys_match
            and self.recorded_match
            and self.forgotten_present == 0
            and bool(self.served_hash)
            and self.served_hash == self.scratch_hash
        )


@dataclass(frozen=True)
class Certificate:
    """The exactness certificate over some shards."""

    shards: tuple[ShardCertificate, ...]
    training_hash: str
    device: str
    torch_threads: int
    seconds: float
    device_name: str = "cpu"

    @property
    def passed(self) -> bool:
        """Every checked shard is exact."""
        return bool(self.shards) and all(shard.exact for shard in self.shards)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view: the fields, whether it passed, and each shard's verdict."""
        return {
            "passed": self.passed,
            **json_ready(self),
            "seconds": round(self.seconds, 3),
            "shards": [{**json_ready(shard), "exact": shard.exact} for shard in self.shards],
        }


@dataclass(frozen=True)
class ScratchJob:
    """One shard to retrain from scratch: all it needs, so that it can run in another process."""

    shard_id: int
    table: pd.DataFrame
    params: Params
    columns: ShardColumns
    device: str
    threads: int
    noise_key: bytes | None = None  # under DP: the operator's noise secret (sisa/dp.py)


@dataclass(frozen=True)
class ScratchResult:
    """What a from-scratch retraining gives back: hashes and keys, never tensors."""

    shard_id: int
    weights_hash: str
    stage_keys: tuple[str, ...]


ScratchMapper = Callable[[Sequence[ScratchJob]], list[ScratchResult]]
"""Runs the jobs (in order, or on a task runner) and returns their results in job order."""


def retrain_from_scratch(job: ScratchJob) -> ScratchResult:
    """Train one shard from scratch in a fresh in-memory store (no cached stage leaks in)."""
    scratch = train_shard(
        job.table,
        shard_id=job.shard_id,
        params=job.params,
        columns=job.columns,
        store=MemoryCheckpointStore(),
        device=job.device,
        threads=job.threads,
        noise_key=job.noise_key,
    )
    return ScratchResult(job.shard_id, scratch.weights_hash, tuple(scratch.stage_keys))


def _in_order(jobs: Sequence[ScratchJob]) -> list[ScratchResult]:
    return [retrain_from_scratch(job) for job in jobs]


def _first_mismatch(
    served: Mapping[int, Mapping[str, Any]],
    recorded: Callable[[Mapping[str, Any]], str | None],
    expected: str,
) -> tuple[str, list[int]] | None:
    """The first (in order) recorded value other than `expected`, and the shards that
    recorded it; None when every shard agrees (a shard whose `recorded` is None is skipped)."""
    other: dict[str, list[int]] = {}
    for shard_id, info in sorted(served.items()):
        value = recorded(info)
        if value is not None and value != expected:
            other.setdefault(value, []).append(shard_id)
    return min(other.items()) if other else None


def _check_replay(
    device: str, noise_key: bytes | None, served: Mapping[int, Mapping[str, Any]]
) -> None:
    """Refuse a replay that could not match the served weights, before anything trains.

    The device kind must be the weights' (CPU when unrecorded: weights trained before
    devices were recorded all trained on the CPU); under DP, the noise key must be the one
    their fingerprint names (shards recorded without a fingerprint are not checked).

    Raises:
        DeviceMismatchError: some served shard was trained on another kind of device.
        NoiseKeyMismatchError: some served shard names another key's fingerprint.
    """
    asked = device_kind(device)
    mismatch = _first_mismatch(
        served, lambda info: device_kind(str(info.get("device") or "cpu")), asked
    )
    if mismatch is not None:
        raise DeviceMismatchError(mismatch[0], asked, mismatch[1])
    if noise_key is None:
        return
    current = noise_key_fingerprint(noise_key)
    mismatch = _first_mismatch(
        served, lambda info: info.get("dp_noise_key_fingerprint") or None, current
    )
    if mismatch is not None:
        raise NoiseKeyMismatchError(mismatch[0], current, mismatch[1])


def certify_tables(
    tables: Mapping[int, pd.DataFrame],
    *,
    params: Params,
    columns: ShardColumns,
    settings: Settings,
    served: Mapping[int, Mapping[str, Any]],
    forgotten: Collection[str] = (),
    mapper: ScratchMapper | None = None,
) -> Certificate:
    """Retrain each shard table from scratch and compare with what is served.

    Args:
        tables: shard tables by shard id.
        params: the params the served weights were trained with.
        columns: column names and class count.
        settings: device, threads, the record-id hash key and, under DP, the noise key.
        served: per shard, `weights_hash` of the weights actually served, and optionally
            `recorded_hash` (what was recorded for them at training or registration),
            `stage_keys`, `device` (the kind they were trained on; `cpu` when absent) and
            under DP `dp_noise_key_fingerprint` (the key their noise came from).
        forgotten: keyed hashes of forgotten ids that must not be in the tables.
        mapper: runs the retrainings (a Prefect task runner in `pipelines/verify.py`); one
            after the other in this process when None.

    Raises:
        DeviceMismatchError: the settings' device is of another kind than some served
            shard's; nothing is trained.
        NoiseKeyMismatchError: under DP, the settings' noise key is not the one some
            served shard was trained with; nothing is trained.
    """
    started = time.perf_counter()
    device = resolve_device(settings.device)
    noise_key = settings_noise_key(settings) if params.training.dp.enabled else None
    _check_replay(device, noise_key, {s: served.get(s, {}) for s in tables})
    jobs = [
        ScratchJob(
            shard_id, tables[shard_id], params, columns, device, settings.torch_threads, noise_key
        )
        for shard_id in sorted(tables)
    ]
    scratches = {r.shard_id: r for r in (mapper or _in_order)(jobs)}
    results = []
    for shard_id in sorted(tables):
        table = tables[shard_id]
        present = sum(
            settings.hash_record_id(canonical_id(r)) in forgotten for r in table[columns.id_column]
        )
        scratch = scratches[shard_id]
        info = served.get(shard_id, {})
        keys = info.get("stage_keys")
        served_hash = str(info.get("weights_hash", ""))
        results.append(
            ShardCertificate(
                shard_id=shard_id,
                num_records=len(table),
                served_hash=served_hash,
                scratch_hash=scratch.weights_hash,
                keys_match=keys is None or list(keys) == list(scratch.stage_keys),
                forgotten_present=int(present),
                recorded_match=info.get("recorded_hash", served_hash) == served_hash,
            )
        )
    return Certificate(
        shards=tuple(results),
        training_hash=params.training_hash(),
        device=device_kind(device),
        torch_threads=settings.torch_threads,
        seconds=time.perf_counter() - started,
        device_name=device_name(device),
    )


def certify_exactness(
    ensemble: SisaEnsemble,
    shard_ids: Iterable[int] | None = None,
    mapper: ScratchMapper | None = None,
) -> Certificate:
    """Retrain the ensemble's shards from scratch and compare with the served weights.

    Args:
        ensemble: the ensemble to check.
        shard_ids: the shards to check; all when None (the cost of a full retrain).
        mapper: runs the retrainings (see :func:`certify_tables`).

    Returns:
        The certificate; `passed` is false when any shard differs, when a served model was
        trained on other data than its shard file holds, or when a forgotten id is present.
    """
    ids = ensemble.shard_ids if shard_ids is None else sorted(set(shard_ids))
    return certify_tables(
        {shard_id: ensemble.read_shard(shard_id) for shard_id in ids},
        params=ensemble.params,
        columns=ensemble.columns(),
        settings=ensemble.settings,
        served={shard_id: _served(ensemble, shard_id) for shard_id in ids},
        forgotten=ensemble.forgotten_hashes(),
        mapper=mapper,
    )


def _served(ensemble: SisaEnsemble, shard_id: int) -> dict[str, Any]:
    """What a shard serves: the digest of its weights file, beside what was recorded."""
    info = ensemble.served_model_info(shard_id) or {}
    path = ensemble.model_path(shard_id)
    served_hash = weights_digest(load_state(path.read_bytes())) if path.is_file() else ""
    return {
        "stage_keys": info.get("stage_keys"),
        "weights_hash": served_hash,
        "recorded_hash": info.get("weights_hash", ""),
        "device": info.get("device", "cpu"),
        "dp_noise_key_fingerprint": info.get("dp_noise_key_fingerprint"),
    }
