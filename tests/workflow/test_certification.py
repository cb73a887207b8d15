"""Certifying a registered version from its own data revision (lineage faked in memory)."""

from __future__ import annotations

import json

import pytest

from tests.workflow.conftest import gate, register_unrequested
from unlearn_ops.errors import DeviceMismatchError, LineageError, VersionNotFoundError
from unlearn_ops.workflow.certification import certify_version
from unlearn_ops.workflow.retraining import evaluate
from unlearn_ops.workflow.workspace import Workspace


def register_trained(ws: Workspace) -> str:
    return register_unrequested(ws, "train", [gate("data", True)], metrics=evaluate(ws)).version


def test_a_version_certifies_from_its_revision_even_after_the_data_changed(
    trained: Workspace,
) -> None:
    version = register_trained(trained)
    trained.ensemble.shard_path(0).write_bytes(b"not the data any more")
    certificate = certify_version(trained, version, [0, 2])
    assert certificate.passed


def test_a_version_whose_revision_holds_other_data_is_refused(trained: Workspace) -> None:
    version = register_trained(trained)
    md5s = json.loads(trained.registry().get_version(version).tag("shard_md5s"))
    trained.registry().set_version_tag(version, "shard_md5s", json.dumps({**md5s, "1": "0" * 32}))
    with pytest.raises(LineageError, match=r"shard 1 at git \w+ is not the data"):
        certify_version(trained, version, [1])
    with pytest.raises(VersionNotFoundError):
        certify_version(trained, "7")


def test_a_version_trained_on_cuda_is_not_certified_on_the_cpu(trained: Workspace) -> None:
    # The device each shard trained on is in its models/ JSON, committed with the version.
    path = trained.ensemble.models_dir / "shard-002.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "device": "cuda"}))
    version = register_trained(trained)
    assert certify_version(trained, version, [0, 1]).passed
    with pytest.raises(DeviceMismatchError, match=r"shards \[2\] were trained on 'cuda'"):
        certify_version(trained, version)
