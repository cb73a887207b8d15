"""The exactness certificate: served shard weights equal a from-scratch training, bit for bit.

For each shard, train it from scratch on its current records in a fresh in-memory
checkpoint store (no cached stage can leak in) and compare the SHA-256 of the weights with
the served ones. Because training is deterministic, equality proves the served model is
exactly the one that never saw the forgotten records (Bourtoule et al. 2021, section IV).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from unlearn_ops.checkpoints import MemoryCheckpointStore
from unlearn_ops.ensemble import SisaEnsemble
from unlearn_ops.hashing import canonical_id
from unlearn_ops.training import resolve_device, train_shard

__all__ = ["Certificate", "ShardCertificate", "certify_exactness"]


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
    """

    shard_id: int
    num_records: int
    served_hash: str
    scratch_hash: str
    keys_match: bool
    forgotten_present: int

    @property
    def exact(self) -> bool:
        """Whether this shard passes."""
        return (
            self.keys_match
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

    @property
    def passed(self) -> bool:
        """Every checked shard is exact."""
        return bool(self.shards) and all(shard.exact for shard in self.shards)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "passed": self.passed,
            "training_hash": self.training_hash,
            "device": self.device,
            "torch_threads": self.torch_threads,
            "seconds": round(self.seconds, 3),
            "shards": [{**asdict(shard), "exact": shard.exact} for shard in self.shards],
        }


def certify_exactness(
    ensemble: SisaEnsemble, shard_ids: Iterable[int] | None = None
) -> Certificate:
    """Retrain shards from scratch and compare with the served weights.

    Args:
        ensemble: the ensemble to check.
        shard_ids: the shards to check; all when None (the cost of a full retrain).

    Returns:
        The certificate; `passed` is false when any shard differs.
    """
    started = time.perf_counter()
    columns = ensemble.columns()
    forgotten = ensemble.forgotten_hashes()
    device = resolve_device(ensemble.settings.device)
    results = []
    ids = ensemble.shard_ids if shard_ids is None else sorted(set(shard_ids))
    for shard_id in ids:
        table = ensemble.read_shard(shard_id)
        present = sum(
            ensemble.settings.hash_record_id(canonical_id(r)) in forgotten
            for r in table[columns.id_column]
        )
        scratch = train_shard(
            table,
            shard_id=shard_id,
            params=ensemble.params,
            columns=columns,
            store=MemoryCheckpointStore(),
            device=device,
            threads=ensemble.settings.torch_threads,
        )
        info = ensemble.served_model_info(shard_id) or {}
        results.append(
            ShardCertificate(
                shard_id=shard_id,
                num_records=len(table),
                served_hash=str(info.get("weights_hash", "")),
                scratch_hash=scratch.weights_hash,
                keys_match=info.get("stage_keys") == scratch.stage_keys,
                forgotten_present=int(present),
            )
        )
    return Certificate(
        shards=tuple(results),
        training_hash=ensemble.params.training_hash(),
        device=device,
        torch_threads=ensemble.settings.torch_threads,
        seconds=time.perf_counter() - started,
    )
