"""Shared fixtures of the core tests: tiny params, a small synthetic dataset, a trained ensemble.

Everything is seeded and small (S=3, R=3, an MLP with 16 hidden units, 2 epochs per stage)
so that a whole ensemble trains in well under a second on one CPU thread. Beside them, the
helpers several folders use: registry versions and provenance made up, intake settings,
a prepared workspace with signed arrivals, a recording forget seam, client withdrawals.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import SecretStr

# Before anything imports Prefect (it reads its settings once): its INFO lines would also
# be written after pytest has closed the captured streams ("Stopping temporary server").
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# Commands run by tests use Prefect's temporary server (or the harness), never a local
# server left running after the test (issue 15); tests of that server start their own.
os.environ.setdefault("UNLEARN_OPS_PREFECT_SERVER", "ephemeral")
# ... and run in their own process, never in a warm runner (tests of the runner start one).
os.environ.setdefault("UNLEARN_OPS_WARM_RUNNER", "false")

from unlearn_ops.deletion.requests import ForgetRequest
from unlearn_ops.params import Params
from unlearn_ops.serving.provenance import VersionProvenance
from unlearn_ops.serving.versions import VersionInfo
from unlearn_ops.settings import Settings
from unlearn_ops.sisa.datasets import Dataset
from unlearn_ops.sisa.ensemble import SisaEnsemble
from unlearn_ops.sisa.training import ShardColumns
from unlearn_ops.workflow.workspace import Workspace

# Folders whose every test runs flows or starts servers: marked here, so that a test added
# there stays out of `make test-fast` without anyone having to remember the marker.
FOLDER_MARKERS = {
    "pipelines": ("flows",),
    "integration": ("flows", "servers"),
    "infra": ("servers",),
}


def pytest_configure(config: pytest.Config) -> None:
    """Let Ctrl-C reach the commands the tests start, however the suite itself was started.

    A suite started in the background by a non-interactive shell (`make test &`, nohup)
    inherits SIGINT ignored, and an ignored signal stays ignored across exec: the tests that
    press Ctrl-C on `forget`, `ui` or `serve` would wait for a child that cannot hear it.
    A handled signal is reset to the default at exec, so every child gets Python's own.
    """
    del config
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test of a folder of :data:`FOLDER_MARKERS` with that folder's markers."""
    tests = Path(__file__).parent
    for item in items:
        if not item.path.is_relative_to(tests):
            continue
        for marker in FOLDER_MARKERS.get(item.path.relative_to(tests).parts[0], ()):
            item.add_marker(marker)


@pytest.fixture(autouse=True, scope="module")
def _close_prefect_events_client() -> object:
    """After each module that ran flows, send their events and close Prefect's client.

    Left open, its websocket pings the server every 20 s from a background thread, and
    each ping draws from the global `random` (websockets' keepalive): a hypothesis test
    that happens to run then fails its "no `random` inside strategies" check.
    """
    yield
    import sys

    if "prefect.events.worker" in sys.modules:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=30)


TINY_PARAMS = {
    "seed": 3,
    "sisa": {"shards": 3, "slices": 3, "salt": "core-tests"},
    "model": {"name": "mlp", "hidden_sizes": [16]},
    "training": {"epochs_per_stage": 2, "batch_size": 16, "learning_rate": 0.01},
}


def synthetic_frame(
    num_records: int = 300, seed: int = 0, *, dimensions: int = 6, spread: float = 2.0
) -> pd.DataFrame:
    """Three Gaussian blobs, ids 0..n-1: learnable, tiny, seeded.

    Args:
        num_records: how many records.
        seed: the generator's seed.
        dimensions: how many feature columns (`f0`, `f1`, ...).
        spread: standard deviation of the blob centres (the noise around them is 1).
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, num_records)
    centers = rng.normal(0.0, spread, (3, dimensions))
    features = centers[labels] + rng.normal(0.0, 1.0, (num_records, dimensions))
    frame = pd.DataFrame(features.astype(np.float32), columns=[f"f{i}" for i in range(dimensions)])
    frame.insert(0, "label", labels.astype(np.int64))
    frame.insert(0, "record_id", np.arange(num_records, dtype=np.int64))
    return frame


def tagged_version(
    number: str, tags: Mapping[str, str], *, at: datetime, aliases: tuple[str, ...] = ()
) -> VersionInfo:
    """A registry version made at `at`, its `tags` given by short key (`unlearn.` added)."""
    return VersionInfo(
        version=number,
        run_id=f"run-{number}",
        created_at=int(at.timestamp() * 1000),
        description="",
        tags={f"unlearn.{k}": v for k, v in tags.items()},
        aliases=aliases,
    )


def made_up_provenance(
    kind: str = "train", shards: int = 0, *, params: Params | None = None, **changes: Any
) -> VersionProvenance:
    """A version's provenance with made-up hashes, for registry tests.

    Args:
        kind: the version's kind.
        shards: how many shards, all trained from stage 0 (md5s `m0`..., weights `w0`...).
        params: the training hash and seed come from them (made up if None).
        changes: fields to set otherwise (as :func:`dataclasses.replace`); by default no
            request, both gates passed, no timings, accuracy 0.9.
    """
    shard_ids = range(shards)
    made_up = VersionProvenance(
        kind=kind,  # type: ignore[arg-type]
        request_ids=(),
        honoured_request_ids=(),
        parent_version=None,
        git_sha="0123456789abcdef0123456789abcdef01234567",
        data_md5="0f343b0931126a20f133d67c2b018a3b.dir",
        shard_md5s={s: f"m{s}" for s in shard_ids},
        shards_retrained=tuple(shard_ids),
        first_stages=dict.fromkeys(shard_ids, 0),
        records_forgotten=0,
        training_hash="h" if params is None else params.training_hash(),
        seed=1 if params is None else params.seed,
        weights={s: f"w{s}" for s in shard_ids},
        gates={"data": {"passed": True}, "metric": {"passed": True}},
        timings={},
        accuracy=0.9,
    )
    return dataclasses.replace(made_up, **changes)


def columns_of(dataset: Dataset) -> ShardColumns:
    """The column names and class count that training reads off `dataset`."""
    return ShardColumns(
        id_column=dataset.id_column,
        label_column=dataset.label_column,
        feature_columns=dataset.feature_columns,
        num_classes=dataset.num_classes,
    )


@pytest.fixture(scope="session")
def tiny_params() -> Params:
    """S=3, R=3, a [16] MLP, 2 epochs per stage."""
    return Params.from_mapping(TINY_PARAMS)


@pytest.fixture(scope="session")
def cpu_settings() -> Settings:
    """CPU, one torch thread, one shard at a time (whatever the environment says)."""
    return Settings(device="cpu", torch_threads=1, max_parallel_shards=1)


@pytest.fixture(scope="session")
def synthetic_dataset() -> Dataset:
    """300 records, 6 features, 3 classes."""
    return Dataset.from_frame(synthetic_frame(), source="synthetic")


@pytest.fixture(scope="session")
def trained_template(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_params: Params,
    cpu_settings: Settings,
    synthetic_dataset: Dataset,
) -> Path:
    """One ensemble prepared and trained for the session; tests work on copies of it."""
    root = tmp_path_factory.mktemp("template") / "ensemble"
    SisaEnsemble(root, tiny_params, cpu_settings).fit(synthetic_dataset)
    return root


@pytest.fixture
def trained_ensemble(
    tmp_path: Path, trained_template: Path, tiny_params: Params, cpu_settings: Settings
) -> SisaEnsemble:
    """A private copy of the trained ensemble (files, models and checkpoints)."""
    root = tmp_path / "ensemble"
    shutil.copytree(trained_template, root)
    return SisaEnsemble(root, tiny_params, cpu_settings)


CliRunner = Callable[[list[str]], tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CliRunner:
    """`unlearn-ops ARGV` run in this process through `main`, as a user runs it.

    Returns (exit code, stdout, stderr) of the one command.
    """
    from unlearn_ops.cli import main

    def run(argv: list[str]) -> tuple[int, str, str]:
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


# ------------------------------------------------ a prepared workspace and signed arrivals
SIGNING_KEY = "tests-request-signing-key"


def intake_settings(key: str, token: str, id_hash_key: str, **limits: int) -> Settings:
    """Settings with a request signing key, a bearer token and an id hash key (as secrets).

    `limits` sets others by name, e.g. `request_max_age_seconds`.
    """
    return Settings(
        request_signing_key=SecretStr(key),
        request_bearer_token=SecretStr(token),
        id_hash_key=SecretStr(id_hash_key),
        **limits,
    )


@pytest.fixture
def prepared_workspace(
    tmp_path: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> Workspace:
    """A digits workspace made by `init` and `prepare` (S=2, R=2), requests signed with
    :data:`SIGNING_KEY`: real inbox and ledger, nothing trained."""
    monkeypatch.setenv("UNLEARN_OPS_REQUEST_SIGNING_KEY", SIGNING_KEY)
    root = tmp_path / "ws"
    for argv in (
        ["init", str(root), "--shards", "2", "--slices", "2"],
        ["prepare", "-w", str(root)],
    ):
        code, _, err = cli(argv)
        assert code == 0, err
    return Workspace.open(root)


def shard_record_ids(ws: Workspace, shard: int) -> list[str]:
    """The record ids of one shard file, as text."""
    table = pd.read_parquet(ws.root / "data" / "shards" / f"shard-{shard:03d}.parquet")
    return [str(r) for r in table["record_id"]]


def arrive(
    ws: Workspace,
    request_id: str,
    records: list[str],
    *,
    reason: str = "GDPR art. 17",
    requested_at: str = "2026-11-20T09:30:00+00:00",
) -> None:
    """A signed request received into the workspace's inbox, as an intake records it."""
    from datetime import UTC, datetime, timedelta

    from unlearn_ops.deletion.envelope import sign_request
    from unlearn_ops.deletion.receive import Accepted, receive

    body = {
        "request_id": request_id,
        "record_ids": records,
        "reason": reason,
        "requested_at": requested_at,
    }
    envelope = sign_request(body, SIGNING_KEY, signed_at=datetime.now(UTC) - timedelta(seconds=1))
    assert isinstance(receive(ws.inbox, envelope, source="test"), Accepted)


class RecordingForget:
    """A forget seam of the drain that records each batch's request ids instead of training.

    Answers as the forget pipeline does: a version (one more than the batches so far).
    """

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def __call__(self, ws: Workspace, batch: Sequence[ForgetRequest]) -> dict[str, Any]:
        self.batches.append([r.request_id for r in batch])
        return {"version": str(len(self.batches) + 1)}


def signed_withdrawal(client_id: str, request_id: str, key: str) -> dict[str, Any]:
    """A federation client's withdrawal of consent, requested now, signed with `key`."""
    from datetime import UTC, datetime

    from unlearn_ops.deletion.envelope import sign_request

    body = {
        "request_id": request_id,
        "client_id": client_id,
        "reason": "consent withdrawn",
        "requested_at": datetime.now(UTC).isoformat(),
    }
    return sign_request(body, key)
