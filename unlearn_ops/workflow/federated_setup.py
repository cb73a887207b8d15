"""Setting a federation up from files: the sites list, the server's held-out table, its params.

`unlearn-ops federation init` reads the same `sites.json` that starts the deployment
(`python infra/flower.py up --sites sites.json`: a JSON list of `{"partition_id",
"client_id", "data_path"}`; the server keeps only each client's keyed hash and partition,
never its data path or table), the server's held-out table (a `label` column and the
feature columns, CSV or parquet), and optionally a YAML or JSON file of
:class:`~unlearn_ops.federated.config.FederationParams` (rounds, local epochs, groups G,
the model, FedEraser's schedule). Everything is checked before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from unlearn_ops.errors import ConfigError, DatasetError
from unlearn_ops.federated.config import FederationParams
from unlearn_ops.workflow.federated import LABEL_COLUMN, setup_federation
from unlearn_ops.workflow.workspace import Workspace

__all__ = ["init_federation", "read_federation_params", "read_sites"]


def read_sites(path: Path) -> dict[str, int]:
    """Client id -> partition id, from a sites file.

    Raises:
        ConfigError: not a JSON list of objects with a `client_id` and a `partition_id`,
            or a client or partition named twice.
    """
    source = str(path)
    try:
        sites = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(source, ["file not found"]) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(source, [f"not a JSON file ({exc})"]) from None
    if not isinstance(sites, list) or not sites:
        raise ConfigError(source, ['a JSON list of {"partition_id", "client_id", "data_path"}'])
    partitions: dict[str, int] = {}
    for index, site in enumerate(sites):
        client = site.get("client_id") if isinstance(site, dict) else None
        partition = site.get("partition_id") if isinstance(site, dict) else None
        if not isinstance(client, str) or not client.strip():
            raise ConfigError(source, [f"site {index}: no client_id (a non-empty string)"])
        if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
            raise ConfigError(source, [f"site {index}: partition_id must be an integer >= 0"])
        if client in partitions:
            raise ConfigError(source, [f"site {index}: client {client!r} is listed twice"])
        if partition in partitions.values():
            raise ConfigError(source, [f"site {index}: partition {partition} is listed twice"])
        partitions[client] = partition
    return partitions


def read_federation_params(path: Path | None) -> FederationParams:
    """The federation's params from a YAML or JSON file; the defaults when None.

    Raises:
        ConfigError: the file is missing, does not parse, or its values do not validate.
    """
    if path is None:
        return FederationParams()
    import yaml
    from pydantic import ValidationError

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(str(path), [f"not a YAML or JSON file ({exc})"]) from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), ["a mapping of federation params (rounds, num_groups...)"])
    try:
        return FederationParams.model_validate(data)
    except ValidationError as exc:
        raise ConfigError.from_validation(str(path), exc, root="params") from None


def _holdout(path: Path, num_classes: int | None) -> tuple[Any, int]:
    """The held-out table (label first, float features) and the number of classes."""
    import numpy as np

    from unlearn_ops.sisa.datasets import read_table

    frame = read_table(path)
    if LABEL_COLUMN not in frame.columns:
        raise DatasetError(str(path), f"no {LABEL_COLUMN!r} column", "name the label column label")
    features = [c for c in frame.columns if c != LABEL_COLUMN]
    if not features or len(frame) == 0:
        raise DatasetError(str(path), "needs rows and at least one feature column")
    numeric = frame[features].apply(lambda column: column.dtype.kind in "biuf")
    if not bool(numeric.all()):
        bad = [c for c in features if not numeric[c]][:3]
        raise DatasetError(str(path), f"feature columns must be numbers: {', '.join(bad)}")
    labels = frame[LABEL_COLUMN]
    if labels.dtype.kind not in "iu" or int(labels.min()) < 0:
        raise DatasetError(str(path), f"{LABEL_COLUMN!r} must hold class numbers 0, 1, 2...")
    classes = int(labels.max()) + 1 if num_classes is None else num_classes
    if int(labels.max()) >= classes:
        raise DatasetError(str(path), f"a label is {int(labels.max())}, beyond {classes} classes")
    table = frame[features].astype(np.float32)
    table.insert(len(features), LABEL_COLUMN, labels.astype(np.int64))
    return table, classes


def init_federation(
    workspace: Workspace,
    sites: Path,
    holdout: Path,
    params_file: Path | None = None,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Check the files, then record the federation in the workspace; what was set up.

    Raises:
        ConfigError, DatasetError: a file is wrong (nothing is written).
        FederationError: as :func:`~unlearn_ops.workflow.federated.setup_federation`: a
            federation is kept already, or a group would have no client.
    """
    partitions = read_sites(sites)
    params = read_federation_params(params_file)
    table, classes = _holdout(holdout, num_classes)
    groups: Mapping[int, int] = setup_federation(
        workspace,
        partitions,
        params,
        num_features=table.shape[1] - 1,
        num_classes=classes,
        holdout=table,
    )
    return {
        "clients": len(partitions),
        "groups": {str(g): n for g, n in sorted(groups.items())},
        "num_features": table.shape[1] - 1,
        "num_classes": classes,
        "holdout_rows": len(table),
        "rounds": params.rounds,
    }
