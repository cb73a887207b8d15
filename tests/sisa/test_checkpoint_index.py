"""The checkpoint index: entries written by the ensemble, records along the chain."""

from __future__ import annotations

import hashlib

from unlearn_ops.sisa.checkpoint_index import CheckpointIndex
from unlearn_ops.sisa.ensemble import SisaEnsemble
from unlearn_ops.sisa.hashing import canonical_id


def test_the_ensemble_indexes_every_stage_it_trains(trained_ensemble: SisaEnsemble) -> None:
    index = CheckpointIndex(trained_ensemble.root / "checkpoints" / "index")
    hash_id = trained_ensemble.settings.hash_record_id
    for shard_id in trained_ensemble.shard_ids:
        keys = (trained_ensemble.served_model_info(shard_id) or {})["stage_keys"]
        table = trained_ensemble.read_shard(shard_id)
        assert index.records(keys[-1]) == {hash_id(canonical_id(r)) for r in table["record_id"]}
        first = table[table["slice_id"] == 0]["record_id"]
        assert index.records(keys[0]) == {hash_id(canonical_id(r)) for r in first}
        # The served weights are the last checkpoint, byte for byte: judged by their MD5.
        weights = trained_ensemble.model_path(shard_id).read_bytes()
        md5 = hashlib.md5(weights, usedforsecurity=False).hexdigest()
        assert index.keys_by_md5()[md5] == keys[-1]


def test_a_forget_indexes_the_new_keys_and_keeps_the_old(trained_ensemble: SisaEnsemble) -> None:
    index_root = trained_ensemble.root / "checkpoints" / "index"
    before = set(CheckpointIndex(index_root).keys())
    record = trained_ensemble.read_shard(0)["record_id"].iloc[0]
    trained_ensemble.forget([record])
    index = CheckpointIndex(index_root)
    after = set(index.keys())
    assert before < after
    forgotten = trained_ensemble.settings.hash_record_id(canonical_id(record))
    keys = (trained_ensemble.served_model_info(0) or {})["stage_keys"]
    assert forgotten not in (index.records(keys[-1]) or set())
    assert any(forgotten in (index.records(k) or set()) for k in before)
    assert set(trained_ensemble.checkpoint_store.keys()) <= after
