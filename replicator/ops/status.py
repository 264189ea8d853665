"""The status report: the task's rows and workers as a table or JSON."""

from __future__ import annotations

import math
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from replicator.checkpoint import Sentinel, since_time
from replicator.copy.joins import JOINS_PREFIX, READY, REMOVED
from replicator.lease import WorkerRow
from replicator.ops.heartbeat import live_workers
from replicator.topology import SINGLE_DESTINATION


def shard_state(row: dict[str, Any]) -> str:
    if row["checkpoint"] == Sentinel.SHARD_END:
        return "finished"
    return "free" if row["owner"] is None else "leased"


@dataclass(frozen=True, slots=True)
class SourceView:
    """One source table as ``status`` shows it: its current stream (None when the
    source cannot be read), and the destinations shown with where each stands in the
    topology (``replicator.copy.joins``: READY, ``SINCE:<second>``, REMOVED, or None for
    one not copied yet)."""

    source: str
    stream_arn: str | None
    destinations: dict[str, str | None]


def destination_checkpoint(row: dict[str, Any], name: str, joined: str | None) -> str | None:
    """Where a destination resumes in a shard: its own checkpoint in the row, else the
    start its join gave it (the row's one checkpoint for one served from the start);
    None for a destination still to be copied."""
    own: dict[str, str] = row.get("checkpoints") or {}
    if name in own:
        return own[name]
    if joined is None or joined == REMOVED:
        return None
    return row["checkpoint"] if joined == READY else joined


def joined_state(joined: str | None) -> str:
    if joined == READY:
        return "streaming"
    if joined is None or joined == REMOVED:
        return "joining: to be copied"
    second = since_time(joined)
    at = "?" if second is None else datetime.fromtimestamp(second, UTC).isoformat()
    return f"streaming, joined by a copy begun at {at}"


def build_report(task: str, sources: Sequence[SourceView], rows: list[dict[str, Any]],
                 workers: Sequence[WorkerRow] = (), *,
                 now: float = 0.0, live_within: float = 30.0) -> dict[str, Any]:
    """The status of a task from its checkpoint rows and workers' rows: each source's
    current stream's shards, with each destination's checkpoint in them.

    A source whose stream is not known (it could not be read) gets every row of no
    other source's stream. Every worker whose heartbeat is at most ``live_within``
    seconds old is listed, a standby with no lease too; so is an owner of a lease
    without a recent heartbeat.
    """
    rows = [row for row in rows if not row["stream_arn"].startswith(JOINS_PREFIX)]
    known = {view.stream_arn for view in sources if view.stream_arn is not None}
    shards = []
    for view in sources:
        mine = [row for row in rows if row["stream_arn"] == view.stream_arn
                or (view.stream_arn is None and row["stream_arn"] not in known)]
        shards += [{
            **row, "source": view.source, "state": shard_state(row),
            "checkpoints": {name: destination_checkpoint(row, name, joined)
                            for name, joined in view.destinations.items()},
        } for row in sorted(mine, key=lambda row: (row["stream_arn"], row["shard_id"]))]
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
        "stream_arn": sources[0].stream_arn if len(sources) == 1 else None,
        "sources": [{
            "source": view.source, "stream_arn": view.stream_arn,
            "destinations": [{"name": name, "state": joined_state(joined)}
                             for name, joined in view.destinations.items()],
        } for view in sources],
        "shards": shards,
        "workers": listed,
        "active_shards": len(active),
        "fair_share": math.ceil(len(active) / len(listed)) if listed and active else None,
    }


def render_table(report: dict[str, Any]) -> str:
    lines = [f"task {report['task']}"]
    for source in report["sources"]:
        names = [destination["name"] for destination in source["destinations"]]
        # One path's one destination: its checkpoint is the shard's.
        titles = (["checkpoint"] if names == [SINGLE_DESTINATION]
                  else [f"checkpoint {name}" for name in names])
        columns = ["shard_id", "state", "owner", *titles, "parent_shard_id", "updated_at"]
        rows = [[str(row.get(c) or "-") for c in columns[:3]]
                + [str(row["checkpoints"][name] or "joining") for name in names]
                + [str(row.get(c) or "-") for c in columns[-2:]]
                for row in report["shards"] if row["source"] == source["source"]]
        widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
        stream = source["stream_arn"] or "(source table unreachable: every stream shown)"
        lines += ["", f"source {source['source']}: stream {stream}"]
        if names != [SINGLE_DESTINATION]:
            lines += [f"  -> {destination['name']}: {destination['state']}"
                      for destination in source["destinations"]]
        lines.append("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))
                     .rstrip())
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
                  for r in rows]
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
