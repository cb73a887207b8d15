"""unlearn-ops: exact machine unlearning (SISA) as an MLOps pipeline.

The core (this package's modules but the adapters) imports none of mlflow, dvc, prefect,
boto3 or great_expectations, and imports torch only inside the functions that train.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unlearn_ops.deletion.envelope import VerifiedRequest, sign_request, verify_request
    from unlearn_ops.deletion.inbox import Inbox
    from unlearn_ops.errors import (
        CheckpointNotFoundError,
        ConfigError,
        DatasetError,
        DeviceUnavailableError,
        GateFailedError,
        InvalidRequestError,
        LineageError,
        RegistryError,
        ReplayedRequestError,
        RequestNotFoundError,
        RollbackError,
        StoreError,
        UnauthenticatedRequestError,
        UnknownDatasetError,
        UnknownModelError,
        UnknownRecordsError,
        UnlearnOpsError,
        UnsafeVersionError,
        VersionNotFoundError,
        WorkspaceNotFoundError,
    )
    from unlearn_ops.params import Params, load_params
    from unlearn_ops.settings import Settings, load_settings
    from unlearn_ops.sisa.aggregation import aggregate
    from unlearn_ops.sisa.checkpoints import (
        CheckpointStore,
        LocalCheckpointStore,
        MemoryCheckpointStore,
        stage_keys,
    )
    from unlearn_ops.sisa.datasets import (
        Dataset,
        load_dataset,
        load_digits,
        load_mnist_5k,
        split_holdout,
    )
    from unlearn_ops.sisa.ensemble import ForgetReport, SisaEnsemble, TrainReport
    from unlearn_ops.sisa.models import build_model, register_model, registered_models
    from unlearn_ops.sisa.planning import RetrainingPlan, ShardPlan, plan_retraining
    from unlearn_ops.sisa.sharding import assign_shards, assign_slices, split_into_shards
    from unlearn_ops.sisa.training import ShardModel, train_shard, weights_digest
    from unlearn_ops.sisa.verification import Certificate, ShardCertificate, certify_exactness

__version__ = "0.1.0"

# Re-exports load on first use (PEP 562) so that `unlearn-ops --help` imports no pandas.
_EXPORTS: dict[str, str] = {
    "Certificate": "unlearn_ops.sisa.verification",
    "CheckpointNotFoundError": "unlearn_ops.errors",
    "CheckpointStore": "unlearn_ops.sisa.checkpoints",
    "ConfigError": "unlearn_ops.errors",
    "Dataset": "unlearn_ops.sisa.datasets",
    "DatasetError": "unlearn_ops.errors",
    "DeviceUnavailableError": "unlearn_ops.errors",
    "ForgetReport": "unlearn_ops.sisa.ensemble",
    "GateFailedError": "unlearn_ops.errors",
    "Inbox": "unlearn_ops.deletion.inbox",
    "InvalidRequestError": "unlearn_ops.errors",
    "LineageError": "unlearn_ops.errors",
    "LocalCheckpointStore": "unlearn_ops.sisa.checkpoints",
    "MemoryCheckpointStore": "unlearn_ops.sisa.checkpoints",
    "Params": "unlearn_ops.params",
    "RegistryError": "unlearn_ops.errors",
    "ReplayedRequestError": "unlearn_ops.errors",
    "RequestNotFoundError": "unlearn_ops.errors",
    "RetrainingPlan": "unlearn_ops.sisa.planning",
    "RollbackError": "unlearn_ops.errors",
    "Settings": "unlearn_ops.settings",
    "ShardCertificate": "unlearn_ops.sisa.verification",
    "ShardModel": "unlearn_ops.sisa.training",
    "ShardPlan": "unlearn_ops.sisa.planning",
    "SisaEnsemble": "unlearn_ops.sisa.ensemble",
    "StoreError": "unlearn_ops.errors",
    "TrainReport": "unlearn_ops.sisa.ensemble",
    "UnauthenticatedRequestError": "unlearn_ops.errors",
    "UnknownDatasetError": "unlearn_ops.errors",
    "UnknownModelError": "unlearn_ops.errors",
    "UnknownRecordsError": "unlearn_ops.errors",
    "UnlearnOpsError": "unlearn_ops.errors",
    "UnsafeVersionError": "unlearn_ops.errors",
    "VerifiedRequest": "unlearn_ops.deletion.envelope",
    "VersionNotFoundError": "unlearn_ops.errors",
    "WorkspaceNotFoundError": "unlearn_ops.errors",
    "aggregate": "unlearn_ops.sisa.aggregation",
    "assign_shards": "unlearn_ops.sisa.sharding",
    "assign_slices": "unlearn_ops.sisa.sharding",
    "build_model": "unlearn_ops.sisa.models",
    "certify_exactness": "unlearn_ops.sisa.verification",
    "load_dataset": "unlearn_ops.sisa.datasets",
    "load_digits": "unlearn_ops.sisa.datasets",
    "load_mnist_5k": "unlearn_ops.sisa.datasets",
    "load_params": "unlearn_ops.params",
    "load_settings": "unlearn_ops.settings",
    "plan_retraining": "unlearn_ops.sisa.planning",
    "register_model": "unlearn_ops.sisa.models",
    "registered_models": "unlearn_ops.sisa.models",
    "sign_request": "unlearn_ops.deletion.envelope",
    "split_holdout": "unlearn_ops.sisa.datasets",
    "split_into_shards": "unlearn_ops.sisa.sharding",
    "stage_keys": "unlearn_ops.sisa.checkpoints",
    "train_shard": "unlearn_ops.sisa.training",
    "verify_request": "unlearn_ops.deletion.envelope",
    "weights_digest": "unlearn_ops.sisa.training",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Certificate",
    "CheckpointNotFoundError",
    "CheckpointStore",
    "ConfigError",
    "Dataset",
    "DatasetError",
    "DeviceUnavailableError",
    "ForgetReport",
    "GateFailedError",
    "Inbox",
    "InvalidRequestError",
    "LineageError",
    "LocalCheckpointStore",
    "MemoryCheckpointStore",
    "Params",
    "RegistryError",
    "ReplayedRequestError",
    "RequestNotFoundError",
    "RetrainingPlan",
    "RollbackError",
    "Settings",
    "ShardCertificate",
    "ShardModel",
    "ShardPlan",
    "SisaEnsemble",
    "StoreError",
    "TrainReport",
    "UnauthenticatedRequestError",
    "UnknownDatasetError",
    "UnknownModelError",
    "UnknownRecordsError",
    "UnlearnOpsError",
    "UnsafeVersionError",
    "VerifiedRequest",
    "VersionNotFoundError",
    "WorkspaceNotFoundError",
    "__version__",
    "aggregate",
    "assign_shards",
    "assign_slices",
    "build_model",
    "certify_exactness",
    "load_dataset",
    "load_digits",
    "load_mnist_5k",
    "load_params",
    "load_settings",
    "plan_retraining",
    "register_model",
    "registered_models",
    "sign_request",
    "split_holdout",
    "split_into_shards",
    "stage_keys",
    "train_shard",
    "verify_request",
    "weights_digest",
]
