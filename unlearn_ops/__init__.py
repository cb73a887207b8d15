"""unlearn-ops: exact machine unlearning (SISA) as an MLOps pipeline.

The core (this package's modules but the adapters) imports none of mlflow, dvc, prefect,
boto3 or great_expectations, and imports torch only inside the functions that train.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unlearn_ops.aggregation import aggregate
    from unlearn_ops.checkpoints import (
        CheckpointStore,
        LocalCheckpointStore,
        MemoryCheckpointStore,
        stage_keys,
    )
    from unlearn_ops.datasets import (
        Dataset,
        load_dataset,
        load_digits,
        load_mnist_5k,
        split_holdout,
    )
    from unlearn_ops.ensemble import ForgetReport, SisaEnsemble, TrainReport
    from unlearn_ops.envelope import VerifiedRequest, sign_request, verify_request
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
    from unlearn_ops.inbox import Inbox
    from unlearn_ops.models import build_model, register_model, registered_models
    from unlearn_ops.params import Params, load_params
    from unlearn_ops.planning import RetrainingPlan, ShardPlan, plan_retraining
    from unlearn_ops.settings import Settings, load_settings
    from unlearn_ops.sharding import assign_shards, assign_slices, split_into_shards
    from unlearn_ops.training import ShardModel, train_shard, weights_digest
    from unlearn_ops.verification import Certificate, ShardCertificate, certify_exactness

__version__ = "0.1.0"

# Re-exports load on first use (PEP 562) so that `unlearn-ops --help` imports no pandas.
_EXPORTS: dict[str, str] = {
    "Certificate": "unlearn_ops.verification",
    "CheckpointNotFoundError": "unlearn_ops.errors",
    "CheckpointStore": "unlearn_ops.checkpoints",
    "ConfigError": "unlearn_ops.errors",
    "Dataset": "unlearn_ops.datasets",
    "DatasetError": "unlearn_ops.errors",
    "DeviceUnavailableError": "unlearn_ops.errors",
    "ForgetReport": "unlearn_ops.ensemble",
    "GateFailedError": "unlearn_ops.errors",
    "Inbox": "unlearn_ops.inbox",
    "InvalidRequestError": "unlearn_ops.errors",
    "LineageError": "unlearn_ops.errors",
    "LocalCheckpointStore": "unlearn_ops.checkpoints",
    "MemoryCheckpointStore": "unlearn_ops.checkpoints",
    "Params": "unlearn_ops.params",
    "RegistryError": "unlearn_ops.errors",
    "ReplayedRequestError": "unlearn_ops.errors",
    "RequestNotFoundError": "unlearn_ops.errors",
    "RetrainingPlan": "unlearn_ops.planning",
    "RollbackError": "unlearn_ops.errors",
    "Settings": "unlearn_ops.settings",
    "ShardCertificate": "unlearn_ops.verification",
    "ShardModel": "unlearn_ops.training",
    "ShardPlan": "unlearn_ops.planning",
    "SisaEnsemble": "unlearn_ops.ensemble",
    "StoreError": "unlearn_ops.errors",
    "TrainReport": "unlearn_ops.ensemble",
    "UnauthenticatedRequestError": "unlearn_ops.errors",
    "UnknownDatasetError": "unlearn_ops.errors",
    "UnknownModelError": "unlearn_ops.errors",
    "UnknownRecordsError": "unlearn_ops.errors",
    "UnlearnOpsError": "unlearn_ops.errors",
    "UnsafeVersionError": "unlearn_ops.errors",
    "VerifiedRequest": "unlearn_ops.envelope",
    "VersionNotFoundError": "unlearn_ops.errors",
    "WorkspaceNotFoundError": "unlearn_ops.errors",
    "aggregate": "unlearn_ops.aggregation",
    "assign_shards": "unlearn_ops.sharding",
    "assign_slices": "unlearn_ops.sharding",
    "build_model": "unlearn_ops.models",
    "certify_exactness": "unlearn_ops.verification",
    "load_dataset": "unlearn_ops.datasets",
    "load_digits": "unlearn_ops.datasets",
    "load_mnist_5k": "unlearn_ops.datasets",
    "load_params": "unlearn_ops.params",
    "load_settings": "unlearn_ops.settings",
    "plan_retraining": "unlearn_ops.planning",
    "register_model": "unlearn_ops.models",
    "registered_models": "unlearn_ops.models",
    "sign_request": "unlearn_ops.envelope",
    "split_holdout": "unlearn_ops.datasets",
    "split_into_shards": "unlearn_ops.sharding",
    "stage_keys": "unlearn_ops.checkpoints",
    "train_shard": "unlearn_ops.training",
    "verify_request": "unlearn_ops.envelope",
    "weights_digest": "unlearn_ops.training",
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
