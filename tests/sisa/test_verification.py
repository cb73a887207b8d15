"""The exactness certificate: it passes on honest ensembles and fails on tampered ones."""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Sequence

import pandas as pd
import pytest
import torch

from unlearn_ops.errors import DeviceMismatchError
from unlearn_ops.sisa.ensemble import SisaEnsemble
from unlearn_ops.sisa.sharding import SLICE_COLUMN, write_shard
from unlearn_ops.sisa.training import load_state, serialize_state
from unlearn_ops.sisa.verification import (
    Certificate,
    ScratchJob,
    ScratchResult,
    certify_exactness,
    certify_tables,
    retrain_from_scratch,
)


def edit_meta(ensemble: SisaEnsemble, shard_id: int, **changes: object) -> None:
    path = ensemble.models_dir / f"shard-{shard_id:03d}.json"
    info = json.loads(path.read_text())
    info.update(changes)
    path.write_text(json.dumps(info))


def failing_shards(certificate: Certificate) -> list[int]:
    return [shard.shard_id for shard in certificate.shards if not shard.exact]


def test_a_trained_ensemble_is_certified(trained_ensemble: SisaEnsemble) -> None:
    certificate = certify_exactness(trained_ensemble)
    assert certificate.passed
    assert [s.shard_id for s in certificate.shards] == [0, 1, 2]
    assert certificate.training_hash == trained_ensemble.params.training_hash()
    assert (certificate.device, certificate.torch_threads) == ("cpu", 1)
    for shard in certificate.shards:
        assert shard.served_hash == shard.scratch_hash
        assert shard.keys_match
        assert shard.forgotten_present == 0
        assert shard.num_records == len(trained_ensemble.read_shard(shard.shard_id))
    view = certificate.to_dict()
    assert view["passed"] is True
    assert [s["exact"] for s in view["shards"]] == [True, True, True]
    json.dumps(view)


def test_a_forgotten_ensemble_is_certified(trained_ensemble: SisaEnsemble) -> None:
    table = trained_ensemble.read_shard(1)
    victims = table.loc[table[SLICE_COLUMN] == 1, "record_id"].tolist()[:3]
    trained_ensemble.forget(victims)
    assert certify_exactness(trained_ensemble).passed
    only_one = certify_exactness(trained_ensemble, shard_ids=[1, 1])
    assert only_one.passed
    assert [s.shard_id for s in only_one.shards] == [1]


def test_served_weights_of_another_shard_fail(trained_ensemble: SisaEnsemble) -> None:
    # The served file is what predict() loads: the certificate must be about it.
    shutil.copyfile(trained_ensemble.model_path(1), trained_ensemble.model_path(0))
    certificate = certify_exactness(trained_ensemble)
    assert not certificate.passed
    assert failing_shards(certificate) == [0]


def test_perturbed_served_weights_fail(trained_ensemble: SisaEnsemble) -> None:
    path = trained_ensemble.model_path(2)
    state = load_state(path.read_bytes())
    name = sorted(state)[0]
    state[name] = state[name] + 1e-3
    path.write_bytes(serialize_state(state))
    certificate = certify_exactness(trained_ensemble)
    assert failing_shards(certificate) == [2]


def test_an_edited_weights_hash_fails(trained_ensemble: SisaEnsemble) -> None:
    edit_meta(trained_ensemble, 2, weights_hash="0" * 64)
    certificate = certify_exactness(trained_ensemble)
    assert not certificate.passed
    assert failing_shards(certificate) == [2]
    # The served file is intact; what it was recorded as is not.
    assert certificate.shards[2].served_hash == certificate.shards[2].scratch_hash
    assert not certificate.shards[2].recorded_match


def test_edited_stage_keys_fail(trained_ensemble: SisaEnsemble) -> None:
    info = trained_ensemble.served_model_info(1)
    assert info is not None
    edit_meta(trained_ensemble, 1, stage_keys=list(reversed(info["stage_keys"])))
    certificate = certify_exactness(trained_ensemble)
    assert failing_shards(certificate) == [1]
    assert not certificate.shards[1].keys_match


def test_a_shard_never_trained_fails(trained_ensemble: SisaEnsemble) -> None:
    (trained_ensemble.models_dir / "shard-000.json").unlink()
    certificate = certify_exactness(trained_ensemble)
    assert failing_shards(certificate) == [0]
    assert not certificate.shards[0].recorded_match


def test_records_removed_but_not_retrained_fail(trained_ensemble: SisaEnsemble) -> None:
    victim = trained_ensemble.read_shard(2)["record_id"].iloc[0]
    trained_ensemble.remove_records([victim])
    certificate = certify_exactness(trained_ensemble)
    assert failing_shards(certificate) == [2]
    assert not certificate.shards[2].keys_match
    assert certificate.shards[2].served_hash != certificate.shards[2].scratch_hash


def test_a_forgotten_record_put_back_fails(trained_ensemble: SisaEnsemble) -> None:
    table = trained_ensemble.read_shard(0)
    trained_ensemble.forget([table["record_id"].iloc[-1]])
    # Someone restores the old shard file and retrains: weights match, data do not.
    write_shard(table, trained_ensemble.shard_path(0))
    trained_ensemble.train([0])
    certificate = certify_exactness(trained_ensemble)
    assert failing_shards(certificate) == [0]
    assert certificate.shards[0].forgotten_present == 1
    assert certificate.shards[0].served_hash == certificate.shards[0].scratch_hash


def test_certify_tables_directly(trained_ensemble: SisaEnsemble) -> None:
    tables = {s: trained_ensemble.read_shard(s) for s in (0, 2)}
    served = {s: trained_ensemble.served_model_info(s) or {} for s in (0, 2)}

    def certify(checked: dict[int, pd.DataFrame]) -> Certificate:
        return certify_tables(
            checked,
            params=trained_ensemble.params,
            columns=trained_ensemble.columns(),
            settings=trained_ensemble.settings,
            served=served,
        )

    certificate = certify(tables)
    assert certificate.passed
    assert [s.shard_id for s in certificate.shards] == [0, 2]
    grown = pd.concat([tables[2], tables[0].iloc[:1]], ignore_index=True)
    assert failing_shards(certify({0: tables[0], 2: grown})) == [2]


def test_an_empty_certificate_does_not_pass(trained_ensemble: SisaEnsemble) -> None:
    assert not certify_exactness(trained_ensemble, shard_ids=[]).passed


@pytest.mark.parametrize("shard_id", [0, 1, 2])
def test_every_shard_is_checked(trained_ensemble: SisaEnsemble, shard_id: int) -> None:
    edit_meta(trained_ensemble, shard_id, weights_hash="f" * 64)
    assert failing_shards(certify_exactness(trained_ensemble)) == [shard_id]


# ------------------------------------------------------------------ devices (issue 15)
def test_the_certificate_says_where_it_retrained(trained_ensemble: SisaEnsemble) -> None:
    view = certify_exactness(trained_ensemble, [0]).to_dict()
    assert (view["device"], view["device_name"]) == ("cpu", "cpu")
    assert trained_ensemble.served_model_info(0)["device"] == "cpu"  # type: ignore[index]


def test_shards_trained_on_cuda_are_not_certified_on_the_cpu(
    trained_ensemble: SisaEnsemble,
) -> None:
    edit_meta(trained_ensemble, 1, device="cuda")
    edit_meta(trained_ensemble, 2, device="cuda")
    with pytest.raises(
        DeviceMismatchError,
        match=r"shards \[1, 2\] were trained on 'cuda' but the certificate would retrain "
        r"them on 'cpu'.*UNLEARN_OPS_DEVICE=cuda",
    ):
        certify_exactness(trained_ensemble)
    # Shard 0 alone was trained here: its certificate is unaffected.
    assert certify_exactness(trained_ensemble, [0]).passed


def test_weights_recorded_before_devices_were_are_cpu_weights(
    trained_ensemble: SisaEnsemble,
) -> None:
    path = trained_ensemble.models_dir / "shard-000.json"
    info = json.loads(path.read_text())
    del info["device"]
    path.write_text(json.dumps(info))
    assert certify_exactness(trained_ensemble).passed


def test_a_mapper_runs_the_retrainings(trained_ensemble: SisaEnsemble) -> None:
    seen: list[int] = []

    def elsewhere(jobs: Sequence[ScratchJob]) -> list[ScratchResult]:
        # What a task runner does: each job travels (pickled) and comes back as hashes.
        results = [retrain_from_scratch(pickle.loads(pickle.dumps(job))) for job in jobs]  # noqa: S301
        seen.extend(job.shard_id for job in jobs)
        return list(reversed(results))  # order must not matter

    certificate = certify_exactness(trained_ensemble, mapper=elsewhere)
    assert certificate.passed
    assert seen == [0, 1, 2]
    in_process = certify_exactness(trained_ensemble)
    assert [s.scratch_hash for s in certificate.shards] == [
        s.scratch_hash for s in in_process.shards
    ]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_an_ensemble_trained_on_cuda_certifies_on_cuda_only(
    trained_ensemble: SisaEnsemble,
) -> None:
    on_cuda = SisaEnsemble(
        trained_ensemble.root,
        trained_ensemble.params,
        trained_ensemble.settings.model_copy(update={"device": "cuda"}),
    )
    on_cuda.train()
    certificate = certify_exactness(on_cuda)
    assert certificate.passed
    assert certificate.device == "cuda"
    assert certificate.device_name.startswith("cuda: ")
    with pytest.raises(DeviceMismatchError):
        certify_exactness(trained_ensemble)  # its settings say cpu
