"""Send a burst of signed deletion requests to a running stack and time how they are served.

Start the stack (`infra/launcher.py up`), `source` its stack.env, train a workspace, run
`unlearn-ops serve -w WS` (for `--via event`) or `unlearn-ops listen -w WS` (for
`--via s3`), then::

    .venv/bin/python infra/burst.py -w WS --via event --requests 180 --duplicates 20

It takes one record per request from the workspace's shards (records not forgotten yet),
sends every request plus `--duplicates` second deliveries of the first ones, waits until
the inbox says every request is done (or failed), and prints: deliveries, requests, flow
runs of the deployment (event path), the versions registered for the burst (retraining
runs), shard retrainings, and the seconds from the first send to the last request served.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def _records(workspace: Path, count: int, forgotten: set[str], hash_id: Any) -> list[str]:
    import pandas as pd

    ids: list[str] = []
    for path in sorted((workspace / "data" / "shards").glob("shard-*.parquet")):
        ids += [str(r) for r in pd.read_parquet(path)["record_id"]]
    ids = [r for r in ids if hash_id(r) not in forgotten]
    ids.sort(key=lambda r: hash_id(r))  # spread over the shards
    if len(ids) < count:
        raise SystemExit(f"only {len(ids)} records left in {workspace}")
    return ids[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-w", "--workspace", type=Path, required=True)
    parser.add_argument("--via", choices=("event", "s3"), required=True)
    parser.add_argument("--requests", type=int, default=180)
    parser.add_argument("--duplicates", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()

    from unlearn_ops.deletion.envelope import sign_request
    from unlearn_ops.workflow.workspace import Workspace

    ws = Workspace.open(args.workspace)
    key = os.environ["UNLEARN_OPS_REQUEST_SIGNING_KEY"]
    tag = uuid.uuid4().hex[:6]
    records = _records(
        ws.root, args.requests, ws.ensemble.forgotten_hashes(), ws.settings.hash_record_id
    )
    envelopes = [
        sign_request(
            {
                "request_id": f"burst-{tag}-{i:04d}",
                "record_ids": [record],
                "reason": "burst measurement",
                "requested_at": datetime.now(UTC).isoformat(),
            },
            key,
        )
        for i, record in enumerate(records)
    ]
    deliveries = envelopes + envelopes[: args.duplicates]
    wanted = {e["request"]["request_id"] for e in envelopes}
    before = {v.version for v in ws.registry().versions()}

    start = time.monotonic()
    if args.via == "event":
        events = [
            {
                "id": str(uuid.uuid4()),
                "occurred": datetime.now(UTC).isoformat(),
                "event": "unlearn.deletion.requested",
                "resource": {"prefect.resource.id": f"unlearn.workspace.{ws.model_name}"},
                "payload": envelope,
            }
            for envelope in deliveries
        ]
        request = urllib.request.Request(  # noqa: S310 - the Prefect server's URL
            os.environ["PREFECT_API_URL"] + "/events",
            data=json.dumps(events).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            if response.status != 204:
                raise SystemExit(f"the Prefect server answered {response.status}")
    else:
        from unlearn_ops.adapters.aws.s3_intake import S3Intake

        intake = S3Intake.from_settings(ws.settings)
        for n, envelope in enumerate(deliveries):
            intake.submit(envelope, f"{envelope['request']['request_id']}-{n}.json")
    sent = time.monotonic() - start

    while True:
        states = {e.request_id: e.state for e in ws.inbox.entries()}
        finished = [r for r in wanted if states.get(r) in ("done", "failed")]
        if len(finished) == len(wanted):
            break
        if time.monotonic() - start > args.timeout:
            raise SystemExit(f"timeout: {len(finished)} of {len(wanted)} finished")
        time.sleep(1.0)
    served = time.monotonic() - start

    made = [v for v in ws.registry().versions() if v.version not in before]
    made = [v for v in made if wanted & set(v.request_ids)]
    retrains = sum(len(json.loads(v.tag("shards_retrained") or "[]")) for v in made)
    failed = sum(1 for r in wanted if states.get(r) == "failed")
    runs = None
    if args.via == "event":
        runs = _deployment_runs(wanted)
    print(
        json.dumps(
            {
                "via": args.via,
                "deliveries": len(deliveries),
                "requests": len(wanted),
                "failed": failed,
                "flow_runs": runs,
                "retraining_runs": len(made),
                "shard_retrainings": retrains,
                "seconds_to_send": round(sent, 2),
                "seconds_to_all_served": round(served, 1),
            },
            indent=2,
        )
    )


def _deployment_runs(wanted: set[str]) -> dict[str, int]:
    """How the deployment's runs for these requests ended, by state."""
    from collections import Counter

    from prefect.client.orchestration import get_client

    runs: list[Any] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_flow_runs(limit=200, offset=len(runs))
            runs += page
            if len(page) < 200:
                break
    mine = [
        r
        for r in runs
        if isinstance(r.parameters.get("envelope"), dict)
        and r.parameters["envelope"].get("request", {}).get("request_id") in wanted
    ]
    return dict(Counter(r.state.type.value if r.state else "none" for r in mine))


if __name__ == "__main__":
    main()
