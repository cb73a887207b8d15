"""The release switches: min batch held by the drain, limited outputs, fresh noise, DP-SGD shards.

Pure policies on hand-made inputs; the drain on a real workspace (made by `unlearn-ops
init` and `prepare`) with its forget replaced by a function that records batches; the
served outputs through the pyfunc model class that MLflow loads; DP-SGD through the real
shard training and opacus (skipped where the `dp` extra is not installed).
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import RecordingForget, arrive, shard_record_ids
from unlearn_ops.deletion.drain import drain
from unlearn_ops.errors import ConfigError, NoiseKeyMismatchError
from unlearn_ops.params import Params, ReleaseParams
from unlearn_ops.privacy.mitigations import (
    fresh_secret,
    limit_outputs,
    noise_state,
    release_due,
)
from unlearn_ops.sisa.dp import noise_key_fingerprint
from unlearn_ops.workflow.workspace import Workspace

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PROBABILITIES = np.array([[0.1, 0.62, 0.28], [0.5, 0.2, 0.3], [0.33, 0.33, 0.34]])


# ---------------------------------------------------------------- minimum batch per release
def test_nothing_waiting_releases_nothing() -> None:
    assert not release_due([], NOW, min_batch=1, deadline_days=30)


def test_a_release_is_held_until_min_batch_requests_wait() -> None:
    waiting = [NOW - timedelta(days=2), NOW - timedelta(hours=1)]
    assert not release_due(waiting, NOW, min_batch=3, deadline_days=30)
    assert release_due([*waiting, NOW], NOW, min_batch=3, deadline_days=30)
    assert release_due(waiting[:1], NOW, min_batch=1, deadline_days=30)


def test_the_deadline_forces_a_held_release_a_margin_before_it() -> None:
    oldest = NOW - timedelta(days=28, hours=23)
    assert not release_due([oldest], NOW, min_batch=5, deadline_days=30, margin_days=1.0)
    later = NOW + timedelta(hours=1)
    assert release_due([oldest], later, min_batch=5, deadline_days=30, margin_days=1.0)


@pytest.fixture
def ws(prepared_workspace: Workspace) -> Workspace:
    return prepared_workspace


def with_release(ws: Workspace, **release: Any) -> Workspace:
    """The workspace reopened with a `release:` section (and deadline) in its params."""
    data = yaml.safe_load(ws.params_path.read_text())
    deadline = release.pop("deadline_days", None)
    data["release"] = release
    if deadline is not None:
        data.setdefault("compliance", {})["deadline_days"] = deadline
    ws.params_path.write_text(yaml.safe_dump(data))
    return Workspace.open(ws.root)


def test_the_drain_holds_requests_until_the_minimum_batch_waits(ws: Workspace) -> None:
    ws = with_release(ws, min_batch=3)
    records = shard_record_ids(ws, 0)
    arrive(ws, "dsr-1", records[:1], requested_at=datetime.now(UTC).isoformat())
    arrive(ws, "dsr-2", records[1:2], requested_at=datetime.now(UTC).isoformat())
    forgets = RecordingForget()

    held = drain(ws, forgets)

    assert forgets.batches == []
    assert held["awaiting_release"] == 2
    assert {e.state for e in ws.inbox.entries()} == {"pending"}

    arrive(ws, "dsr-3", records[2:3], requested_at=datetime.now(UTC).isoformat())
    released = drain(ws, forgets)

    assert forgets.batches == [["dsr-1", "dsr-2", "dsr-3"]]
    assert released["awaiting_release"] == 0


def test_the_drain_releases_a_short_batch_when_the_deadline_forces_it(ws: Workspace) -> None:
    # A 1-day deadline with a 1-day margin: the oldest request cannot wait at all.
    ws = with_release(ws, min_batch=10, deadline_days=1, deadline_margin_days=1.0)
    arrive(ws, "dsr-1", shard_record_ids(ws, 0)[:1], requested_at=datetime.now(UTC).isoformat())
    forgets = RecordingForget()

    drain(ws, forgets)

    assert forgets.batches == [["dsr-1"]]


def test_the_default_drain_answer_has_no_release_count(ws: Workspace) -> None:
    assert "awaiting_release" not in drain(ws, RecordingForget())


# -------------------------------------------------------------------- outputs that leak less
def test_label_only_outputs_are_one_hot_of_the_prediction() -> None:
    limited = limit_outputs(PROBABILITIES, ReleaseParams(outputs="label"))
    np.testing.assert_array_equal(limited, [[0, 1, 0], [1, 0, 0], [0, 0, 1]])


def test_top_k_keeps_the_k_largest_probabilities_the_lowest_class_among_ties() -> None:
    limited = limit_outputs(PROBABILITIES, ReleaseParams(outputs="top_k", top_k=2))
    np.testing.assert_allclose(limited, [[0, 0.62, 0.28], [0.5, 0, 0.3], [0.33, 0, 0.34]])


def test_rounded_outputs_keep_the_asked_decimals() -> None:
    limited = limit_outputs(PROBABILITIES, ReleaseParams(outputs="rounded", decimals=1))
    np.testing.assert_allclose(limited, [[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.3, 0.3, 0.3]])


def test_the_default_serves_the_probabilities_unchanged() -> None:
    np.testing.assert_array_equal(limit_outputs(PROBABILITIES, ReleaseParams()), PROBABILITIES)


def test_the_pyfunc_model_serves_labels_only_when_asked(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        # mlflow.pyfunc warns about its own response types at import (MLflow 3.17).
        warnings.filterwarnings("ignore", ".*Any type hint is inferred as AnyType")
        from mlflow.pyfunc.model import PythonModelContext

        from unlearn_ops.adapters.mlflow.pyfunc_model import SisaPyfuncModel
    from unlearn_ops.settings import Settings
    from unlearn_ops.sisa.datasets import Dataset
    from unlearn_ops.sisa.ensemble import SisaEnsemble

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 120)
    features = rng.normal(0, 3, (3, 4))[labels] + rng.normal(0, 1, (120, 4))
    frame = pd.DataFrame(features.astype(np.float32), columns=list("abcd"))
    frame.insert(0, "label", labels)
    frame.insert(0, "record_id", np.arange(120))
    params = Params.from_mapping(
        {
            "sisa": {"shards": 1, "slices": 1},
            "model": {"hidden_sizes": [8]},
            "training": {"epochs_per_stage": 2},
            "release": {"outputs": "label"},
        }
    )
    ensemble = SisaEnsemble(tmp_path / "e", params, Settings(device="cpu", torch_threads=1))
    ensemble.fit(Dataset.from_frame(frame, source="blobs"))
    (tmp_path / "params.yaml").write_text(params.to_yaml())
    artifacts = {
        "shard-000": str(ensemble.model_path(0)),
        "ensemble": str(ensemble.root / "ensemble.json"),
        "params": str(tmp_path / "params.yaml"),
    }
    model = SisaPyfuncModel()
    context = PythonModelContext(artifacts=artifacts, model_config={})
    model.load_context(context)

    served = model.predict(context, frame[list("abcd")])

    probabilities = served.drop(columns="prediction").to_numpy()
    assert set(np.unique(probabilities)) == {0.0, 1.0}
    np.testing.assert_array_equal(probabilities.argmax(axis=1), served["prediction"])
    expected = ensemble.predict(frame[list("abcd")].to_numpy(np.float32))
    np.testing.assert_array_equal(served["prediction"], expected)


# ------------------------------------------------------------------- fresh noise on weights
def weights() -> dict[str, Any]:
    import torch

    return {"0.weight": torch.ones(4, 3), "0.bias": torch.zeros(4), "steps": torch.tensor(7)}


def test_noise_is_never_the_same_for_two_releases() -> None:
    first = noise_state(weights(), 0.1, version="5", secret=fresh_secret())
    second = noise_state(weights(), 0.1, version="6", secret=fresh_secret())
    again = noise_state(weights(), 0.1, version="5", secret=fresh_secret())

    # Identical weights released twice: with reused noise the difference would be 0.
    assert (first["0.weight"] - second["0.weight"]).abs().min() > 0
    assert (first["0.weight"] - again["0.weight"]).abs().min() > 0
    assert fresh_secret() != fresh_secret()


def test_noise_has_the_asked_scale_and_spares_integer_buffers() -> None:
    import torch

    big = {"w": torch.zeros(200, 200)}
    noisy = noise_state(big, 0.05, version="2", secret=fresh_secret())
    assert abs(float(noisy["w"].std()) - 0.05) < 0.002
    kept = noise_state(weights(), 0.05, version="2", secret=fresh_secret())
    assert int(kept["steps"]) == 7
    assert torch.equal(
        noise_state(weights(), 0.0, version="2", secret="s")["0.weight"], torch.ones(4, 3)
    )


def test_noise_needs_a_secret_and_a_valid_sigma() -> None:
    with pytest.raises(ConfigError, match="fresh secret"):
        noise_state(weights(), 0.1, version="2", secret="")
    with pytest.raises(ConfigError, match="sigma"):
        noise_state(weights(), -1.0, version="2", secret="s")


# --------------------------------------------------------------------------------- DP-SGD
def test_dp_params_validate() -> None:
    with pytest.raises(ConfigError, match=r"training\.dp\.epsilon"):
        Params.from_mapping({"training": {"dp": {"enabled": True, "epsilon": 0}}})
    with pytest.raises(ConfigError, match=r"training\.dp\.delta"):
        Params.from_mapping({"training": {"dp": {"delta": 1.5}}})
    with pytest.raises(ConfigError, match=r"release\.outputs"):
        Params.from_mapping({"release": {"outputs": "everything"}})


def test_dp_changes_the_training_hash_only_when_enabled() -> None:
    default = Params()
    disabled = Params.from_mapping({"training": {"dp": {"enabled": False, "epsilon": 3}}})
    enabled = Params.from_mapping({"training": {"dp": {"enabled": True}}})
    assert disabled.training_hash() == default.training_hash()
    assert enabled.training_hash() != default.training_hash()


def shard_table() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(160, 4)).astype(np.float32)
    table = pd.DataFrame(features, columns=list("abcd"))
    table.insert(0, "label", (features[:, 0] > 0).astype(np.int64))
    table.insert(0, "record_id", np.arange(160))
    table["slice_id"] = np.arange(160) % 2
    return table


DP_PARAMS = {
    "sisa": {"shards": 1, "slices": 2},
    "model": {"hidden_sizes": [8]},
    "training": {"epochs_per_stage": 2, "batch_size": 32, "dp": {"enabled": True}},
}
DP_COLUMNS = ("record_id", "label", tuple("abcd"), 2)


def train_dp(table: pd.DataFrame, params: Params, **kwargs: Any) -> Any:
    from unlearn_ops.sisa.checkpoints import MemoryCheckpointStore
    from unlearn_ops.sisa.training import ShardColumns, train_shard

    kwargs.setdefault("store", MemoryCheckpointStore())
    columns = ShardColumns(*DP_COLUMNS)
    return train_shard(table, shard_id=0, params=params, columns=columns, **kwargs)


@pytest.mark.slow  # trains DP-SGD shards (about 30 s)
def test_a_dp_shard_trains_reproducibly_within_its_epsilon_from_its_noise_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("opacus")
    params = Params.from_mapping(DP_PARAMS)
    monkeypatch.setenv("UNLEARN_OPS_DP_NOISE_KEY", "operator secret")
    first, second = train_dp(shard_table(), params), train_dp(shard_table(), params)
    explicit = train_dp(shard_table(), params, noise_key=b"operator secret")
    other = train_dp(shard_table(), params, noise_key=b"another secret")
    without_dp = {**DP_PARAMS["training"], "dp": {"enabled": False}}
    plain = train_dp(shard_table(), Params.from_mapping({**DP_PARAMS, "training": without_dp}))

    assert first.weights_hash == second.weights_hash == explicit.weights_hash
    assert other.weights_hash != first.weights_hash  # the noise comes from the secret
    assert other.stage_keys != first.stage_keys  # and its checkpoints are named apart
    assert first.weights_hash != plain.weights_hash
    assert first.dp_epsilon is not None
    assert 0 < first.dp_epsilon <= params.training.dp.epsilon + 1e-6
    assert plain.dp_epsilon is None


def test_dp_training_without_a_noise_key_is_refused_and_trains_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from unlearn_ops.sisa.checkpoints import MemoryCheckpointStore

    monkeypatch.delenv("UNLEARN_OPS_DP_NOISE_KEY", raising=False)
    store = MemoryCheckpointStore()
    with pytest.raises(ConfigError, match="UNLEARN_OPS_DP_NOISE_KEY"):
        train_dp(shard_table(), Params.from_mapping(DP_PARAMS), store=store)
    assert list(store.keys()) == []


@pytest.mark.slow  # trains DP-SGD shards (about 30 s)
def test_a_retrained_dp_stage_draws_fresh_noise_that_does_not_cancel_in_the_pair() -> None:
    """Parent and child differ by one record of slice 1.

    Had the child replayed the parent's noise (seeded by seed, shard and stage), the two
    would differ by little more than the record's signal. Keyed by the stage's content,
    the retrained stages' noise is new: the pair differs about as much as two trainings of
    the child's data under two noise keys. The child retrains from stage 0 (the noise
    multiplier, calibrated to the whole shard, changed with its size), and a replay from
    scratch with the same key gives it bit for bit (the certificate).
    """
    pytest.importorskip("opacus")
    import torch

    from unlearn_ops.sisa.checkpoints import MemoryCheckpointStore

    params = Params.from_mapping(DP_PARAMS)
    table = shard_table()
    store = MemoryCheckpointStore()
    parent = train_dp(table, params, store=store, noise_key=b"k")
    child_table = table[table["record_id"] != 1]  # slice 1
    child = train_dp(child_table, params, store=store, noise_key=b"k")
    again = train_dp(child_table, params, noise_key=b"k")  # from scratch, same key
    other = train_dp(child_table, params, noise_key=b"k2")

    def distance(a: Any, b: Any) -> float:
        return float(sum(torch.sum((a.state[n] - b.state[n]) ** 2) for n in a.state) ** 0.5)

    assert child.resumed_from_stage == 0
    assert child.stage_keys[0] != parent.stage_keys[0]
    assert again.weights_hash == child.weights_hash  # the certificate's replay holds
    assert distance(child, parent) > 0.5 * distance(child, other)


def nothing_trains(jobs: Any) -> Any:
    raise AssertionError(f"{len(jobs)} shards were sent to train")


@pytest.mark.slow  # trains a DP-SGD ensemble, forgets, retrains from scratch (about 40 s)
def test_a_dp_forget_is_certified_exact_bit_for_bit(tmp_path: Path) -> None:
    pytest.importorskip("opacus")
    from pydantic import SecretStr

    from unlearn_ops.settings import Settings
    from unlearn_ops.sisa.datasets import Dataset
    from unlearn_ops.sisa.ensemble import SisaEnsemble
    from unlearn_ops.sisa.verification import certify_exactness

    params = Params.from_mapping({**DP_PARAMS, "sisa": {"shards": 2, "slices": 2}})
    settings = Settings(device="cpu", torch_threads=1, dp_noise_key=SecretStr("operator"))
    ensemble = SisaEnsemble(tmp_path / "e", params, settings)
    ensemble.fit(Dataset.from_frame(shard_table().drop(columns="slice_id"), source="tiny"))
    before = {s: ensemble.read_shard(s) for s in ensemble.shard_ids}
    last_slice = before[0][before[0]["slice_id"] == 1]  # stage 0 would be reusable but for DP
    report = ensemble.forget([last_slice["record_id"].iloc[0]])

    [retrained] = report.training.models
    assert retrained.resumed_from_stage == 0  # the multiplier moved with the shard's size
    certificate = certify_exactness(ensemble)
    assert certificate.passed, certificate.to_dict()
    assert sum(len(t) for t in before.values()) - 1 == sum(
        len(ensemble.read_shard(s)) for s in ensemble.shard_ids
    )

    # Each shard names its key by fingerprint, never by value; under another key the
    # certificate is refused before anything trains, rather than reporting DIFFERS.
    meta = (ensemble.models_dir / "shard-001.json").read_text()
    assert json.loads(meta)["dp_noise_key_fingerprint"] == noise_key_fingerprint(b"operator")
    assert "operator" not in meta
    wrong = SisaEnsemble(
        ensemble.root,
        params,
        settings.model_copy(update={"dp_noise_key": SecretStr("mistyped")}),
    )
    with pytest.raises(
        NoiseKeyMismatchError,
        match=rf"shards \[0, 1\] drew their DP noise from the key with fingerprint "
        rf"{noise_key_fingerprint(b'operator')}, but UNLEARN_OPS_DP_NOISE_KEY has "
        rf"fingerprint {noise_key_fingerprint(b'mistyped')}",
    ):
        certify_exactness(wrong, mapper=nothing_trains)


def test_layers_opacus_cannot_train_are_named() -> None:
    pytest.importorskip("opacus")
    import torch

    from unlearn_ops.params import ModelParams
    from unlearn_ops.sisa.dp import unsupported_dp_layers
    from unlearn_ops.sisa.models import build_model

    assert unsupported_dp_layers(build_model(ModelParams(), 16, 3)) == []
    cnn = ModelParams(name="cnn", channels=(2,), hidden_sizes=(4,))
    assert unsupported_dp_layers(build_model(cnn, 16, 3)) == []
    with_batch_norm = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    assert unsupported_dp_layers(with_batch_norm) == ["1: BatchNorm1d"]


def test_released_weight_files_are_noisy_copies_and_the_trained_ones_stay(tmp_path: Path) -> None:
    import torch

    from unlearn_ops.privacy.mitigations import noisy_model_files
    from unlearn_ops.sisa.training import load_state, serialize_state

    trained = tmp_path / "shard-000.pt"
    trained.write_bytes(serialize_state(weights()))
    manifest = tmp_path / "ensemble.json"
    manifest.write_text("{}")
    files = {"shard-000": trained, "ensemble": manifest}

    first = noisy_model_files(files, 0.1, version="sha:dsr-1", directory=tmp_path / "a")
    second = noisy_model_files(files, 0.1, version="sha:dsr-1", directory=tmp_path / "b")

    assert first["ensemble"] == manifest
    assert torch.equal(load_state(trained.read_bytes())["0.weight"], torch.ones(4, 3))
    one, two = (load_state(f["shard-000"].read_bytes())["0.weight"] for f in (first, second))
    assert not torch.equal(one, torch.ones(4, 3))
    assert (one - two).abs().min() > 0  # the same release made twice: still fresh noise


def test_release_switches_are_tagged_and_the_defaults_add_no_tag() -> None:
    from unlearn_ops.privacy.mitigations import release_tags

    assert release_tags(Params(), ensemble=None) == {}
    params = Params.from_mapping(
        {"release": {"min_batch": 5, "outputs": "top_k", "top_k": 2, "weight_noise": 0.003}}
    )
    assert release_tags(params, ensemble=None) == {
        "release.min_batch": "5",
        "release.outputs": "top_k:2",
        "release.weight_noise": "0.003",
    }


def test_a_dp_version_is_tagged_with_its_epsilon_and_delta(tmp_path: Path) -> None:
    pytest.importorskip("opacus")
    from unlearn_ops.privacy.mitigations import release_tags
    from unlearn_ops.settings import Settings
    from unlearn_ops.sisa.datasets import Dataset
    from unlearn_ops.sisa.ensemble import SisaEnsemble

    params = Params.from_mapping(
        {
            "sisa": {"shards": 2, "slices": 2},
            "training": {"dp": {"enabled": True, "epsilon": 3.0, "delta": 1e-4}},
        }
    )
    table = shard_table().drop(columns="slice_id")
    ensemble = SisaEnsemble(tmp_path / "e", params, Settings(device="cpu", torch_threads=1))
    ensemble.prepare(Dataset.from_frame(table, source="tiny"))

    tags = release_tags(params, ensemble)

    assert 2.9 < float(tags["privacy.dp_epsilon"]) <= 3.0
    # two releases with independent noise: more than one, at most twice (RDP composes)
    assert 3.0 < float(tags["privacy.dp_pair_epsilon"]) <= 6.0
    assert tags["privacy.dp_delta"] == "0.0001"
    assert tags["privacy.dp_max_grad_norm"] == "1.0"
