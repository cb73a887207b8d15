"""The ServerApp: federate each planned client group, write checkpoints and results.

The run config names one file, `plan`, written by :mod:`unlearn_ops.workflow.federated`::

    {"output_dir": "/abs/run", "params": {...FederationParams...},
     "num_features": 784, "num_classes": 10,
     "groups": {"0": [0, 3], "1": [1, 2]}}          # group -> partition ids to train

A removal plans only the removed client's group, without it. The server first asks every
node which partition it holds (a `query` message), then trains the groups in order, each
from its seeded initial model, and writes `OUTPUT/group-GGG/round-RRR.npz` (the group model
after each round), `OUTPUT/group-GGG/updates/...` (each client's update) and
`OUTPUT/result.json` (per group: partitions, rounds, the final model's SHA-256).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from unlearn_federation.strategy import GroupFedAvg
from unlearn_ops.federated.client import initial_weights, weights_hash
from unlearn_ops.federated.config import FederationParams

app = ServerApp()

NODE_WAIT_SECONDS = 120.0


def _partitions(grid: Grid, wanted: set[int]) -> dict[int, int]:
    """Partition id -> node id, asking every connected node until all `wanted` answered."""
    found: dict[int, int] = {}
    deadline = time.monotonic() + NODE_WAIT_SECONDS
    while not wanted <= found.keys():
        if time.monotonic() > deadline:
            raise RuntimeError(f"partitions {sorted(wanted - found.keys())} never connected")
        asked = [n for n in grid.get_node_ids() if n not in found.values()]
        messages = [
            Message(
                content=RecordDict({"config": ConfigRecord()}),
                message_type=MessageType.QUERY,
                dst_node_id=n,
            )
            for n in asked
        ]
        for reply in grid.send_and_receive(messages, timeout=60):
            if not reply.has_error():
                partition = int(reply.content["metrics"]["partition-id"])  # type: ignore[arg-type]
                found[partition] = reply.metadata.src_node_id
        if not wanted <= found.keys():
            time.sleep(0.5)
    return found


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Train the plan's groups and write their checkpoints and `result.json`."""
    plan: dict[str, Any] = json.loads(Path(str(context.run_config["plan"])).read_text())
    output = Path(plan["output_dir"])
    params = FederationParams.model_validate(plan["params"])
    groups = {int(g): sorted(int(p) for p in ps) for g, ps in plan["groups"].items()}
    nodes = _partitions(grid, {p for ps in groups.values() for p in ps})
    train_config = ConfigRecord(
        {"params": params.model_dump_json(), "num-classes": int(plan["num_classes"])}
    )
    result: dict[str, Any] = {"groups": {}}
    for group_id, partitions in sorted(groups.items()):
        folder = output / f"group-{group_id:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        strategy = GroupFedAvg(group_id, {p: nodes[p] for p in partitions}, folder)
        start = initial_weights(
            params, int(plan["num_features"]), int(plan["num_classes"]), group_id=group_id
        )
        outcome = strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(start),
            num_rounds=params.rounds,
            train_config=train_config,
        )
        final = outcome.arrays.to_numpy_ndarrays()
        result["groups"][str(group_id)] = {
            "partitions": partitions,
            "rounds": params.rounds,
            "final": f"group-{group_id:03d}/round-{params.rounds:03d}.npz",
            "weights_hash": weights_hash(final),
        }
    (output / "result.json").write_text(json.dumps(result, indent=2, sort_keys=True))
