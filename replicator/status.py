"""``replicator status``: the task's shards, their owners and checkpoints, each worker's share."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

from replicator.aws import AwsClients, DynamoLeaseStore, describe_table, endpoint_for
from replicator.checkpoint import Sentinel
from replicator.clock import SYSTEM_CLOCK
from replicator.config import Settings
from replicator.errors import ReplicatorError, StartupCheckError
from replicator.startup import call_checked


def shard_state(row: dict[str, Any]) -> str:
    if row["checkpoint"] == Sentinel.SHARD_END:
        return "finished"
    return "free" if row["owner"] is None else "leased"


def build_report(task: str, stream_arn: str | None, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The status of a task from its checkpoint rows; only the current stream's when known."""
    if stream_arn is not None:
        rows = [row for row in rows if row["stream_arn"] == stream_arn]
    shards = sorted(
        ({**row, "state": shard_state(row)} for row in rows),
        key=lambda row: (row["stream_arn"], row["shard_id"]),
    )
    active = [row for row in shards if row["state"] != "finished"]
    owners = Counter(row["owner"] for row in active if row["owner"] is not None)
    workers = [{"worker_id": worker, "leases": count} for worker, count in sorted(owners.items())]
    return {
        "task": task,
        "stream_arn": stream_arn,
        "shards": shards,
        "workers": workers,
        "active_shards": len(active),
        "fair_share": math.ceil(len(active) / len(workers)) if workers else None,
    }


def render_table(report: dict[str, Any]) -> str:
    columns = ["shard_id", "state", "owner", "checkpoint", "parent_shard_id", "updated_at"]
    rows = [[str(row.get(c) or "-") for c in columns] for row in report["shards"]]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    lines = [
        f"task {report['task']}",
        f"stream {report['stream_arn'] or '(source table unreachable: every stream shown)'}",
        "",
        "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)),
    ]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    lines.append("")
    if report["workers"]:
        lines.append(f"workers (fair share {report['fair_share']} of "
                     f"{report['active_shards']} active shards):")
        lines += [f"  {w['worker_id']}: {w['leases']}" for w in report["workers"]]
    else:
        lines.append(f"no worker holds a lease ({report['active_shards']} active shards)")
    return "\n".join(lines)


async def run_status(settings: Settings, *, as_json: bool) -> int:
    timeout = settings.call_timeout
    async with AwsClients() as clients:
        checkpoints = await clients.open(endpoint_for(settings, "checkpoint"),
                                         call_timeout=timeout)
        source = await clients.open(endpoint_for(settings, "source"), call_timeout=timeout)
        store = DynamoLeaseStore(checkpoints, str(settings.task_name), call_timeout=timeout)
        table = await call_checked(
            lambda: describe_table(checkpoints, store.table, call_timeout=timeout),
            what=f"checkpoint table {store.table}", setting="REPLICATOR_CHECKPOINT_ENDPOINT",
            endpoint=settings.checkpoint_endpoint, region=settings.checkpoint_region,
            clock=SYSTEM_CLOCK,
        )
        if table is None:
            raise StartupCheckError(
                f"checkpoint table {store.table} does not exist in region "
                f"{settings.checkpoint_region}: the task has not run yet, or "
                "REPLICATOR_TASK_NAME names another task"
            )
        rows = await store.scan_rows()
        stream_arn: str | None = None
        try:
            source_table = await describe_table(source, settings.source_table,
                                                call_timeout=timeout)
            stream_arn = source_table.get("LatestStreamArn") if source_table else None
        except ReplicatorError:  # the rows are still worth showing without the source
            stream_arn = None
    report = build_report(str(settings.task_name), stream_arn, rows)
    print(json.dumps(report, indent=2) if as_json else render_table(report))
    return 0
