"""The pure parts of monolithic workspaces (issue 14): params, tags, ledger words, adoption checks.

The flows themselves run in tests/pipelines/test_approximate_flow.py.
"""

from __future__ import annotations

import json

import pytest

from unlearn_ops.deletion.ledger import Ledger
from unlearn_ops.errors import AdoptionError, ConfigError
from unlearn_ops.params import Params
from unlearn_ops.serving.versions import VersionInfo
from unlearn_ops.sisa.datasets import BUILTIN_DATASETS
from unlearn_ops.workflow.approx_adopt import check_adoptable
from unlearn_ops.workflow.approx_tags import describe_exactness, exactly_honoured


def version(number: str, **tags: str) -> VersionInfo:
    return VersionInfo(number, "run", 0, "", {f"unlearn.{k}": v for k, v in tags.items()})


def test_monolithic_is_one_shard_of_one_slice() -> None:
    params = Params.from_mapping(
        {"sisa": {"shards": 1, "slices": 1}, "training": {"mode": "monolithic"}}
    )
    assert params.monolithic
    with pytest.raises(ConfigError, match=r"set sisa\.shards and sisa\.slices to 1"):
        Params.from_mapping({"training": {"mode": "monolithic"}})
    with pytest.raises(ConfigError, match=r"training\.mode"):
        Params.from_mapping({"training": {"mode": "federated"}})


def test_the_mode_changes_no_checkpoint_key() -> None:
    sisa = Params.from_mapping({"sisa": {"shards": 1, "slices": 1}})
    monolithic = Params.from_mapping(
        {"sisa": {"shards": 1, "slices": 1}, "training": {"mode": "monolithic"}}
    )
    assert sisa.training_hash() == monolithic.training_hash()
    # A workspace made before these fields keeps its keys: the defaults add nothing.
    assert Params().training_hash() == Params.from_mapping({}).training_hash()


def test_one_reference_model_is_refused() -> None:
    with pytest.raises(ConfigError, match="0 \\(no audit\\) or at least 2"):
        Params.from_mapping({"unlearning": {"reference_models": 1}})


def test_a_provisional_version_honours_approximately_until_superseded() -> None:
    requests = json.dumps(["req-1", "req-2"])
    provisional = version(
        "2",
        provisional="true",
        method="scrub",
        honoured_requests=requests,
        approximate_requests=json.dumps(["req-2"]),
    )
    assert exactly_honoured(provisional) == ["req-1", "req-2"]
    assert describe_exactness(provisional) == (
        "PROVISIONAL: honours req-2 only approximately (scrub); the exact retrain is pending"
    )
    short = {key.removeprefix("unlearn."): value for key, value in provisional.tags.items()}
    superseded = version("2", **short, superseded_by="3")
    assert exactly_honoured(superseded) == ["req-1"]
    assert "superseded by exact version 3" in (describe_exactness(superseded) or "")
    assert describe_exactness(version("3", exact="true")) == "exact retrain of a monolithic model"
    assert describe_exactness(version("1")) is None


def test_the_ledger_says_served_approximate_until_the_exact_entry(tmp_path: object) -> None:
    from pathlib import Path

    ledger = Ledger(Path(str(tmp_path)) / "ledger.jsonl")
    ledger.append("received", "req-1", record_hashes=["h1"])
    ledger.append("served", "req-1", version="2", approximate=True, method="finetune")
    state = ledger.request("req-1")
    assert state is not None
    assert state.approximate
    assert state.display_state == "served (approximate)"
    ledger.append("served", "req-1", version="3", exact=True)
    state = ledger.request("req-1")
    assert state is not None
    assert not state.approximate
    assert state.display_state == "served"


def test_adoption_checks_the_layout_and_the_features() -> None:
    import torch
    from torch import nn

    digits = BUILTIN_DATASETS["digits"]()
    torch.manual_seed(0)
    fits = nn.Sequential(nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 10))
    found = check_adoptable("models:/m/1", fits, digits)
    assert found.hidden_sizes == (12,)
    assert found.num_classes == 10
    with pytest.raises(AdoptionError, match="features do not match: the model takes 30 inputs"):
        check_adoptable("models:/m/1", nn.Sequential(nn.Linear(30, 10)), digits)
    tanh = nn.Sequential(nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 10))
    with pytest.raises(AdoptionError, match="not an MLP classifier of the known layout"):
        check_adoptable("models:/m/1", tanh, digits)
    with pytest.raises(AdoptionError, match="answers 5 classes"):
        check_adoptable("models:/m/1", nn.Sequential(nn.Linear(64, 5)), digits)
