"""Shards trained on workers that do not share the workspace's disk, through an object store.

With `UNLEARN_OPS_SHARD_EXCHANGE=s3://bucket/prefix` a flow trains its shards in three
steps, so that a Dask worker on another host needs nothing but the object store:

1. :func:`stage_shard`, in the flow's process: the shard's file, and the one stage
   checkpoint it resumes from (if any), are put in the exchange under the flow run's own
   prefix;
2. :func:`train_staged_shard`, on a worker: reads the shard file and the checkpoint from the
   exchange, trains exactly as :meth:`~unlearn_ops.sisa.ensemble.SisaEnsemble.train_shard`
   would (the same keys, hence the same weights), and puts each new stage checkpoint and the
   final weights back; it returns keys and hashes, never tensors;
3. :func:`collect_shard`, in the flow's process: brings the new checkpoints into the
   workspace's store, checks the weights against the hash the worker computed, and serves
   them (model file, metadata, checkpoint index) as a local training would.

The run's prefix is deleted afterwards, whatever happened (:meth:`ObjectExchange.clear`):
the exchange is a staging area, never a second home for records or for weights that saw
them, so `purge` and the scans keep judging the workspace alone. The S3 implementation is
:class:`unlearn_ops.adapters.aws.exchange.S3Exchange`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from unlearn_ops.errors import NoiseKeyMismatchError, StoreError
from unlearn_ops.params import Params
from unlearn_ops.settings import Settings
from unlearn_ops.sisa.training import ShardColumns, ShardModel
from unlearn_ops.workflow.retraining import ShardTrained
from unlearn_ops.workflow.workspace import Workspace

__all__ = [
    "ExchangeCheckpoints",
    "ObjectExchange",
    "StagedResult",
    "StagedShard",
    "collect_shard",
    "exchange_for_run",
    "stage_shard",
    "train_staged_shard",
]


class ObjectExchange(Protocol):
    """Objects by key under one prefix of an object store (it pickles, to reach workers)."""

    def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key`."""

    def get(self, key: str) -> bytes:
        """The object under `key` (KeyError when there is none)."""

    def contains(self, key: str) -> bool:
        """Whether an object is stored under `key`."""

    def clear(self) -> None:
        """Delete every object under the prefix."""


class ExchangeCheckpoints:
    """A :class:`~unlearn_ops.sisa.checkpoints.CheckpointStore` on an exchange (`checkpoints/`)."""

    def __init__(self, exchange: ObjectExchange) -> None:
        self.exchange = exchange

    def contains(self, key: str) -> bool:
        """Whether the checkpoint `key` is in the exchange."""
        return self.exchange.contains(f"checkpoints/{key}")

    def load(self, key: str) -> bytes:
        """The checkpoint `key`."""
        return self.exchange.get(f"checkpoints/{key}")

    def save(self, key: str, data: bytes) -> None:
        """Put the checkpoint `key`."""
        self.exchange.put(f"checkpoints/{key}", data)

    def delete(self, key: str) -> None:
        """Not used on a staging area: the whole run's prefix is cleared at its end."""
        raise NotImplementedError("an exchange is cleared as a whole")

    def keys(self) -> Iterator[str]:
        """Not used on a staging area (nothing lists it but `clear`)."""
        raise NotImplementedError("an exchange is not listed")


@dataclass(frozen=True)
class StagedShard:
    """What a worker needs to train one shard: no path of the workspace, only the exchange."""

    exchange: ObjectExchange
    shard_id: int
    params: Params
    columns: ShardColumns
    device: str
    threads: int


@dataclass(frozen=True)
class StagedResult:
    """What a worker trained: the shard model without its weights, and where they are."""

    model: ShardModel  # its `state` is empty: the weights travel through the exchange
    weights_key: str

    @property
    def trained(self) -> ShardTrained:
        """The summary of what the worker trained."""
        return ShardTrained.of(self.model)


def exchange_for_run(settings: Settings) -> ObjectExchange | None:
    """A prefix of its own under `UNLEARN_OPS_SHARD_EXCHANGE` for one flow run; None unset."""
    if settings.shard_exchange is None:
        return None
    from unlearn_ops.adapters.aws.exchange import S3Exchange

    return S3Exchange.for_run(settings.shard_exchange)


def _shard_key(shard_id: int) -> str:
    return f"shards/shard-{shard_id:03d}.parquet"


def stage_shard(workspace: Workspace, exchange: ObjectExchange, shard_id: int) -> StagedShard:
    """Put the shard's file and its resume checkpoint in the exchange (the flow's process)."""
    from unlearn_ops.sisa.devices import resolve_device
    from unlearn_ops.sisa.shard_arrays import read_shard_arrays
    from unlearn_ops.sisa.training import cached_stages

    ensemble = workspace.ensemble
    columns = ensemble.columns()
    path = ensemble.shard_path(shard_id)
    device = resolve_device(workspace.settings.device)
    arrays = read_shard_arrays(path, columns.id_column, columns.label_column)
    keys = ensemble.training_keys(shard_id, arrays, device)
    resume = cached_stages(keys, ensemble.checkpoint_store)
    exchange.put(_shard_key(shard_id), path.read_bytes())
    if resume > 0:
        key = keys[resume - 1]
        ExchangeCheckpoints(exchange).save(key, ensemble.checkpoint_store.load(key))
    return StagedShard(
        exchange, shard_id, workspace.params, columns, device, workspace.settings.torch_threads
    )


def train_staged_shard(job: StagedShard) -> StagedResult:
    """Train one staged shard from the exchange alone (a worker; no workspace disk)."""
    from unlearn_ops.sisa.shard_arrays import read_shard_arrays
    from unlearn_ops.sisa.training import serialize_state, train_shard

    with tempfile.TemporaryDirectory(prefix="unlearn-ops-shard-") as folder:
        path = Path(folder) / "shard.parquet"
        path.write_bytes(job.exchange.get(_shard_key(job.shard_id)))
        arrays = read_shard_arrays(path, job.columns.id_column, job.columns.label_column)
    model = train_shard(
        arrays,
        shard_id=job.shard_id,
        params=job.params,
        columns=job.columns,
        store=ExchangeCheckpoints(job.exchange),
        device=job.device,
        threads=job.threads,
    )
    weights_key = f"models/shard-{job.shard_id:03d}"
    job.exchange.put(weights_key, serialize_state(model.state))
    return StagedResult(replace(model, state={}), weights_key)


def collect_shard(
    workspace: Workspace, exchange: ObjectExchange, result: StagedResult
) -> ShardTrained:
    """Bring a worker's checkpoints and weights into the workspace and serve them.

    Raises:
        StoreError: the weights in the exchange are not the ones the worker hashed, or the
            shard's file changed since it was staged; nothing is served.
        NoiseKeyMismatchError: under DP, the worker drew its noise from another key than
            this process's (`UNLEARN_OPS_DP_NOISE_KEY` differs there); nothing is served.
    """
    from unlearn_ops.sisa.dp import noise_key_fingerprint, settings_noise_key
    from unlearn_ops.sisa.ensemble import file_md5
    from unlearn_ops.sisa.shard_arrays import read_shard_arrays
    from unlearn_ops.sisa.training import load_state, weights_digest

    ensemble = workspace.ensemble
    trained = result.trained
    path = ensemble.shard_path(trained.shard_id)
    state = load_state(exchange.get(result.weights_key))
    if weights_digest(state) != trained.weights_hash:
        raise StoreError(path, "the weights brought back are not the ones trained")
    columns = ensemble.columns()
    arrays = read_shard_arrays(path, columns.id_column, columns.label_column)
    data_md5 = file_md5(path)
    keys = list(result.model.stage_keys)
    noise_key, worker_key = (
        settings_noise_key(workspace.settings),
        result.model.noise_key_fingerprint,
    )
    if noise_key and worker_key and worker_key != noise_key_fingerprint(noise_key):  # DP only
        raise NoiseKeyMismatchError(
            worker_key, noise_key_fingerprint(noise_key), [trained.shard_id]
        )
    if keys != ensemble.training_keys(trained.shard_id, arrays, result.model.device):
        raise StoreError(path, "the shard's file changed while it trained elsewhere")
    staged = ExchangeCheckpoints(exchange)
    for stage in trained.stages:
        ensemble.checkpoint_store.save(keys[stage], staged.load(keys[stage]))
    ensemble.serve_trained(replace(result.model, state=state), arrays, data_md5)
    return trained
