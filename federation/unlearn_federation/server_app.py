"""The ServerApp: federate each planned client group, write checkpoints and results.

The run config names one file, `plan`, written by :mod:`unlearn_ops.workflow.federated`::

    {"output_dir": "/abs/run", "params": {...FederationParams...},
     "num_features": 784, "num_classes": 10,
     "groups": {"0": [0, 3], "1": [1, 2]}}          # group -> partition ids to train

A removal plans only the removed client's group, without it. The server first asks every
node which partition it holds (a `query` message), then trains the groups side by side
(one round of every group at once), each from its seeded initial model, and writes
`OUTPUT/group-GGG/round-RRR.npz` (the group model after each round),
`OUTPUT/group-GGG/updates/...` (each client's update) and `OUTPUT/result.json` (per group:
partitions, rounds, the final model's SHA-256). A plan with `history` (group -> the
training run's group folder) erases instead: FedEraser's calibration rounds
(:class:`.strategy.GroupFedEraser`) over the stored updates, then `erasure.finish_rounds`
ordinary rounds of the remaining clients; approximate and provisional.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from unlearn_federation.strategy import GroupFedAvg, GroupFedEraser
from unlearn_ops.federated.client import initial_weights, weights_hash
from unlearn_ops.federated.config import FederationParams

app = ServerApp()

NODE_WAIT_SECONDS = 120.0
ROUND_TIMEOUT_SECONDS = 600.0


def _partitions(grid: Grid, wanted: set[int]) -> dict[int, int]:
    """Partition id -> node id, asking every connected node until all `wanted` answered."""
    found: dict[int, int] = {}
    errors: dict[int, str] = {}  # node id -> the reason its ClientApp failed, last seen
    deadline = time.monotonic() + NODE_WAIT_SECONDS
    while not wanted <= found.keys():
        if time.monotonic() > deadline:
            missing = sorted(wanted - found.keys())
            if errors:  # connected, but the site's ClientApp fails (its table, say)
                reasons = "; ".join(sorted(set(errors.values())))
                raise RuntimeError(
                    f"partitions {missing} never answered: {len(errors)} node(s) failed: {reasons}"
                )
            raise RuntimeError(f"partitions {missing} never connected")
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
            if reply.has_error():
                errors[reply.metadata.src_node_id] = reply.error.reason
            else:
                partition = int(reply.content["metrics"]["partition-id"])  # type: ignore[arg-type]
                found[partition] = reply.metadata.src_node_id
                errors.pop(reply.metadata.src_node_id, None)
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
    initial = {
        group_id: initial_weights(
            params, int(plan["num_features"]), int(plan["num_classes"]), group_id=group_id
        )
        for group_id in groups
    }
    strategies: dict[int, GroupFedAvg] = {}
    history = plan.get("history")  # FedEraser: group -> the training run's group folder
    rounds = list(range(1, params.rounds + 1))
    if history is not None:
        # FedEraser keeps every interval-th round (0-based as the library counts).
        rounds = [r for r in rounds if (r - 1) % params.erasure.interval == 0]
        # Then the finishing rounds: ordinary FedAvg of the remaining clients.
        rounds += [params.rounds + 1 + k for k in range(params.erasure.finish_rounds)]
    for group_id, partitions in sorted(groups.items()):
        members, folder = {p: nodes[p] for p in partitions}, output / f"group-{group_id:03d}"
        if history is None:
            strategies[group_id] = GroupFedAvg(group_id, members, folder)
        else:
            strategies[group_id] = GroupFedEraser(
                group_id,
                members,
                folder,
                history=Path(history[str(group_id)]),
                retained=rounds,
                initial=initial[group_id],
                last_round=params.rounds,
                stretch=params.erasure.scale_to_interval,
                granularity=params.erasure.granularity,
            )
    arrays = {group_id: ArrayRecord(initial[group_id]) for group_id in strategies}
    for server_round in rounds:
        # The groups' rounds go out together: groups are independent, and on a deployment
        # a round's time is mostly the clients' start-up, which then overlaps.
        config = dict(train_config)
        if history is not None and server_round <= params.rounds:
            # FedEraser's calibration rounds train fewer epochs than the params' own.
            config["epochs"] = params.erasure.calibration_epochs
        messages = []
        for group_id, strategy in strategies.items():
            strategy.output.mkdir(parents=True, exist_ok=True)
            messages += strategy.configure_train(
                server_round, arrays[group_id], ConfigRecord(config), grid
            )
        replies = list(grid.send_and_receive(messages, timeout=ROUND_TIMEOUT_SECONDS))
        for group_id, strategy in strategies.items():
            members = set(strategy.nodes.values())
            mine = [r for r in replies if r.metadata.src_node_id in members]
            averaged, _ = strategy.aggregate_train(server_round, mine)
            if averaged is None:  # GroupFedAvg raises first; kept for the type
                raise RuntimeError(f"group {group_id} round {server_round}: no model")
            arrays[group_id] = averaged
    result: dict[str, Any] = {"groups": {}}
    for group_id, partitions in sorted(groups.items()):
        result["groups"][str(group_id)] = {
            "partitions": partitions,
            "rounds": params.rounds,
            "method": "fedavg" if history is None else "federaser",
            "final": f"group-{group_id:03d}/round-{rounds[-1]:03d}.npz",
            "weights_hash": weights_hash(arrays[group_id].to_numpy_ndarrays()),
        }
    (output / "result.json").write_text(json.dumps(result, indent=2, sort_keys=True))
