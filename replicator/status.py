"""``replicator status``: the task's shards, their owners and checkpoints, each worker's share."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from replicator.aws import AwsClients, DynamoLeaseStore, describe_table, endpoint_for
from replicator.checkpoint import Sentinel
from replicator.clock import SYSTEM_CLOCK
from replicator.config import Settings
from replicator.errors import ReplicatorError, StartupCheckError
from replicator.heartbeat import WorkerRow, live_workers
from replicator.interrupt import until_signalled
from replicator.startup import call_checked


def shard_state(row: dict[str, Any]) -> str:
    if row["checkpoint"] == Sentinel.SHARD_END:
        return "finished"
    return "free" if row["owner"] is None else "leased"


def build_report(task: str, stream_arn: str | None, rows: list[dict[str, Any]],
                 workers: Sequence[WorkerRow] = (), *,
                 now: float = 0.0, live_within: float = 30.0) -> dict[str, Any]:
    """The status of a task from its checkpoint rows and workers' rows; only the current
    stream's shards when it is known.

    Every worker whose heartbeat is at most ``live_within`` seconds old is listed, a
    standby with no lease too; so is an owner of a lease without a recent heartbeat.
    """
    if stream_arn is not None:
        rows = [row for row in rows if row["stream_arn"] == stream_arn]
    shards = sorted(
        ({**row, "state": shard_state(row)} for row in rows),
        key=lambda row: (row["stream_arn"], row["shard_id"]),
    )
    active = [row for row in shards if row["state"] != "finished"]
    owners = Counter(row["owner"] for row in active if row["owner"] is not None)
    live = {row.worker_id: row for row in live_workers(list(workers), now, within=live_within)}
    listed = []
    for worker_id in sorted(set(owners) | set(live)):
        row = live.get(worker_id)
        listed.append({
            "worker_id": worker_id,
            "leases": owners.get(worker_id, 0),
            "phase": row.phase if row else None,
            "host": row.host if row else None,
            "pid": row.pid if row else None,
            "metrics": row.metrics if row else None,
            "heartbeat_seconds_ago": round(max(0.0, now - row.heartbeat_at), 1) if row else None,
        })
    return {
        "task": task,
        "stream_arn": stream_arn,
        "shards": shards,
        "workers": listed,
        "active_shards": len(active),
        "fair_share": math.ceil(len(active) / len(listed)) if listed and active else None,
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
        share = report["fair_share"]
        lines.append(f"workers ({len(report['workers'])}; fair share "
                     f"{share if share is not None else '-'} of "
                     f"{report['active_shards']} active shards):")
        for worker in report["workers"]:
            beat = worker["heartbeat_seconds_ago"]
            heard = "no heartbeat" if beat is None else f"heartbeat {beat:g}s ago"
            where = f", {worker['host']} pid {worker['pid']}" if worker["host"] else ""
            metrics = f", metrics {worker['metrics']}" if worker["metrics"] else ""
            phase = f", {worker['phase']}" if worker["phase"] else ""
            lines.append(f"  {worker['worker_id']}: {worker['leases']} leases{phase}, "
                         f"{heard}{where}{metrics}")
    else:
        lines.append(f"no worker is running ({report['active_shards']} active shards)")
    return "\n".join(lines)


async def run_status(settings: Settings, *, as_json: bool) -> int:
    return await until_signalled(_status(settings, as_json=as_json), command="status")


async def _status(settings: Settings, *, as_json: bool) -> int:
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
        workers = await store.list_workers()
        stream_arn: str | None = None
        try:
            source_table = await describe_table(source, settings.source_table,
                                                call_timeout=timeout)
            stream_arn = source_table.get("LatestStreamArn") if source_table else None
        except ReplicatorError:  # the rows are still worth showing without the source
            stream_arn = None
    # A worker writes its row every renew interval: three missed beats, or a lease
    # duration, make it gone.
    live_within = max(3 * settings.lease_renew_interval, settings.lease_duration)
    report = build_report(str(settings.task_name), stream_arn, rows, workers,
                          now=time.time(), live_within=live_within)
    write_out(json.dumps(report, indent=2) if as_json else render_table(report))
    return 0


def write_out(text: str) -> None:
    """Print ``text``; a reader that stopped reading (``status | head``) is no error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Nothing more can be written; keep the interpreter's last flush quiet too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
