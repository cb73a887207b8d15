"""The pure parts of rollback: which deletions a version misses, the errors, stale detection."""

from __future__ import annotations

from unlearn_ops.errors import RollbackError, UnlearnOpsError, UnsafeVersionError
from unlearn_ops.params import Params
from unlearn_ops.serving.promotion import missing_deletions
from unlearn_ops.serving.versions import VersionInfo
from unlearn_ops.sisa.ensemble import SisaEnsemble
from unlearn_ops.workflow.rollback import RollbackPlan


def test_missing_deletions_keep_the_order_they_were_recorded_in() -> None:
    recorded = ["req-3", "req-1", "req-2"]
    assert missing_deletions(["req-1"], recorded) == ["req-3", "req-2"]
    assert missing_deletions(["req-2", "req-1", "req-3", "req-9"], recorded) == []
    assert missing_deletions([], []) == []


def test_unsafe_version_error_names_the_requests_and_the_way_out() -> None:
    error = UnsafeVersionError("1", ["req-a", "req-b"], "2")
    assert isinstance(error, UnlearnOpsError)
    message = str(error)
    assert "version 1 does not honour 2 deletion request(s)" in message
    assert "req-a, req-b" in message
    assert "champion stays at version 2" in message
    assert "unlearn-ops rollback --to 1 --replay" in message
    assert (error.version, error.missing, error.champion) == ("1", ["req-a", "req-b"], "2")


def test_rollback_error_message_is_built_from_its_fields() -> None:
    error = RollbackError("version 4", "its gates failed", "choose another")
    assert str(error) == "cannot roll back to version 4: its gates failed; choose another"
    assert str(RollbackError("version 4", "no")) == "cannot roll back to version 4: no"


def test_plan_to_dict_leaves_out_the_params_text() -> None:
    info = VersionInfo("1", "run", 0, "")
    plan = RollbackPlan("replay", info, "2", ("req-a",), "abc", "seed: 0\n", "rebuild it")
    assert plan.to_dict() == {
        "action": "replay",
        "target": "1",
        "champion": "2",
        "missing": ["req-a"],
        "git_sha": "abc",
        "message": "rebuild it",
    }


def with_param(ensemble: SisaEnsemble, section: str, key: str, value: float) -> SisaEnsemble:
    """The same ensemble folder and checkpoints opened under params with one value edited."""
    data = ensemble.params.model_dump(mode="json")
    data[section][key] = value
    return SisaEnsemble(
        ensemble.root, Params.from_mapping(data), ensemble.settings, ensemble.checkpoint_store
    )


def test_a_model_trained_under_other_params_is_stale(trained_ensemble: SisaEnsemble) -> None:
    assert trained_ensemble.stale_shards() == []
    edited = with_param(trained_ensemble, "training", "weight_decay", 1e-6)
    assert edited.stale_shards() == [0, 1, 2]
    # Gate thresholds do not change weights: nothing is stale.
    gated = with_param(trained_ensemble, "gates", "min_accuracy", 0.1)
    assert gated.stale_shards() == []


def test_going_back_to_earlier_params_resumes_every_stage_from_the_cache(
    trained_ensemble: SisaEnsemble,
) -> None:
    original = {s: trained_ensemble.served_model_info(s) for s in trained_ensemble.shard_ids}
    edited = with_param(trained_ensemble, "training", "weight_decay", 1e-6)
    edited.train(edited.stale_shards())
    assert trained_ensemble.stale_shards() == [0, 1, 2]

    report = trained_ensemble.train(trained_ensemble.stale_shards())
    assert [m.stages_trained for m in report.models] == [[], [], []]
    assert trained_ensemble.stale_shards() == []
    for shard_id, info in original.items():
        assert info is not None
        served = trained_ensemble.served_model_info(shard_id)
        assert served is not None
        assert served["weights_hash"] == info["weights_hash"]
