"""The ClientApp: a site trains its own table from the group model the server sends.

A SuperNode is started with ``--node-config "partition-id=P client-id='ID'
data-path='/site/table.parquet'"`` (or a .csv): the table (a `label` column, every other
column a feature, in order) never leaves the site, and the client id in clear stays there too (it
seeds the batch order, as in the simulation). The replies carry the partition id, never
the client id: the server and everything it writes name partitions, the workflow maps
them to keyed hashes.
"""

from __future__ import annotations

import json
from functools import cache

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from unlearn_ops.federated.client import local_update
from unlearn_ops.federated.config import FederationParams
from unlearn_ops.federated.data import ClientData

app = ClientApp()

LABEL_COLUMN = "label"


@cache
def _read_table(client_id: str, path: str) -> ClientData:
    """The site's table: CSV (`hmnist_28_28_L.csv` as it is downloaded) or parquet."""
    import pandas as pd

    if path.lower().endswith(".csv"):
        frame = pd.read_csv(path)
    elif path.lower().endswith((".parquet", ".pq")):
        frame = pd.read_parquet(path)
    else:
        raise ValueError(f"{path}: a site's table is a .csv or .parquet file")
    if LABEL_COLUMN not in frame.columns:
        raise ValueError(f"{path}: no {LABEL_COLUMN!r} column")
    # Copies: pandas hands out read-only arrays, which torch warns about.
    features = frame.drop(columns=[LABEL_COLUMN]).to_numpy(dtype=np.float32).copy()
    labels = frame[LABEL_COLUMN].to_numpy(dtype=np.int64).copy()
    return ClientData(client_id, features, labels)


def _site(context: Context) -> tuple[int, ClientData]:
    config = context.node_config
    data = _read_table(str(config["client-id"]), str(config["data-path"]))
    return int(config["partition-id"]), data


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Say which partition this node holds (the server maps node ids to partitions)."""
    partition, data = _site(context)
    metrics = MetricRecord({"partition-id": partition, "num-examples": data.num_examples})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One round of local training (:func:`~unlearn_ops.federated.client.local_update`)."""
    partition, data = _site(context)
    config = msg.content["config"]
    params = FederationParams.model_validate(json.loads(str(config["params"])))
    weights = msg.content["arrays"].to_numpy_ndarrays()
    result = local_update(
        weights,
        data,
        params,
        num_classes=int(config["num-classes"]),
        # Flower counts rounds from 1, the library (and its simulation) from 0.
        round_number=int(config["server-round"]) - 1,
        # FedEraser's calibration rounds train fewer epochs than the params' own.
        epochs=int(config["epochs"]) if "epochs" in config else None,  # type: ignore[arg-type]
    )
    metrics = MetricRecord(
        {
            "num-examples": result.num_examples,
            "partition-id": partition,
            **{key: float(value) for key, value in result.metrics.items()},
        }
    )
    reply = RecordDict({"arrays": ArrayRecord(result.weights), "metrics": metrics})
    return Message(reply, reply_to=msg)
