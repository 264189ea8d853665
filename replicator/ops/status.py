"""The status report: the task's rows and workers as a table or JSON."""

from __future__ import annotations

import math
import os
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

from replicator.checkpoint import Sentinel
from replicator.lease import WorkerRow
from replicator.ops.heartbeat import live_workers


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


def write_out(text: str) -> None:
    """Print ``text``; a reader that stopped reading (``status | head``) is no error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Nothing more can be written; keep the interpreter's last flush quiet too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
