"""CloudWatch metrics, as the Java tool published them: records and bytes processed, and
the replication lag, under the task name's namespace with the dimension TaskName.

Beside them, each replication path (source table, destination) gets its own
``ReplicationLag`` and ``RecordsProcessed`` with the dimensions TaskName,
SourceTable and Destination. CloudWatch tells metrics apart by name and dimensions,
so the task-level ones, and the alarms on them, stay as they were.

Every ``cloudwatch_interval`` the publisher sends what changed in ``Stats`` in one
PutMetricData batch (``metric_data``, a pure function; the sink splits it into calls
of at most 1,000 data); a failed batch is carried by the next, and never stops
replication.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from replicator.clock import Clock
from replicator.errors import ReplicatorError
from replicator.protocols import MetricsSink
from replicator.stats import Stats

log = structlog.get_logger("replicator.cloudwatch")

#: The dimension of every datum: the task, as the Java tool named it.
TASK_DIMENSION = "TaskName"
#: The dimensions that, beside ``TASK_DIMENSION``, name a replication path's data.
SOURCE_DIMENSION = "SourceTable"
DESTINATION_DIMENSION = "Destination"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The counters CloudWatch gets the increase of."""

    records_read: int = 0
    records_applied: int = 0
    bytes_applied: int = 0
    errors: int = 0
    copy_items_written: int = 0
    #: Records applied, by (source table, destination).
    applied_by_destination: Mapping[tuple[str, str], int] = field(
        default_factory=dict, hash=False)

    @classmethod
    def of(cls, stats: Stats) -> Snapshot:
        return cls(
            records_read=stats.records_read,
            records_applied=stats.applied_total,
            bytes_applied=stats.bytes_applied,
            errors=sum(stats.errors.values()),
            copy_items_written=stats.copy_items_written,
            applied_by_destination=dict(stats.applied_by_destination),
        )


def metric_data(
    task: str, before: Snapshot, now: Snapshot, *, lag_seconds: float, leases_held: int,
    at: datetime, destination_lags: Mapping[tuple[str, str], float] | None = None,
) -> list[dict[str, Any]]:
    """The data of one PutMetricData: counts since ``before``, and current gauges.

    The task's data come first, with the one dimension TaskName. Then, for each
    (source table, destination) that has a lag in ``destination_lags`` (its open
    shards') or records applied in ``now``, with the dimensions TaskName,
    SourceTable and Destination: its ``ReplicationLag`` (when it has open shards)
    and its ``RecordsProcessed`` since ``before``.
    """
    task_dimension = {"Name": TASK_DIMENSION, "Value": task}
    dimensions = [task_dimension]

    def datum(name: str, value: float, unit: str,
              on: list[dict[str, str]] = dimensions) -> dict[str, Any]:
        return {"MetricName": name, "Dimensions": on, "Timestamp": at,
                "Value": float(value), "Unit": unit}

    data = [
        datum("RecordsProcessed", now.records_applied - before.records_applied, "Count"),
        datum("BytesProcessed", now.bytes_applied - before.bytes_applied, "Bytes"),
        datum("RecordsRead", now.records_read - before.records_read, "Count"),
        datum("Errors", now.errors - before.errors, "Count"),
        datum("CopyItemsWritten", now.copy_items_written - before.copy_items_written, "Count"),
        datum("ReplicationLag", lag_seconds, "Seconds"),
        datum("LeasesHeld", leases_held, "Count"),
    ]
    lags = destination_lags or {}
    # CloudWatch refuses an empty dimension value: a path without both names (only
    # ever Stats' default) is in the task's figures alone.
    paths = sorted(path for path in {*lags, *now.applied_by_destination} if all(path))
    for path in paths:
        source, destination = path
        on = [task_dimension, {"Name": SOURCE_DIMENSION, "Value": source},
              {"Name": DESTINATION_DIMENSION, "Value": destination}]
        if path in lags:
            data.append(datum("ReplicationLag", lags[path], "Seconds", on))
        applied = (now.applied_by_destination.get(path, 0)
                   - before.applied_by_destination.get(path, 0))
        data.append(datum("RecordsProcessed", applied, "Count", on))
    return data


class CloudWatchPublisher:
    def __init__(self, sink: MetricsSink, stats: Stats, *, task: str, interval: float,
                 leases_held: Any, clock: Clock) -> None:
        self._sink = sink
        self._clock = clock
        self._stats = stats
        self._task = task
        self._interval = interval
        self._leases_held = leases_held
        self._sent = Snapshot()
        self.batches_sent = 0

    async def run(self) -> None:
        """Publish every interval until cancelled."""
        next_at = self._clock.monotonic() + self._interval
        while True:
            await self._clock.sleep(max(0.0, next_at - self._clock.monotonic()))
            next_at += self._interval
            await self.publish()

    async def publish(self) -> None:
        now = Snapshot.of(self._stats)
        at = datetime.now(UTC)
        wall = at.timestamp()
        data = metric_data(
            self._task, self._sent, now, lag_seconds=self._stats.lag_seconds(wall),
            leases_held=int(self._leases_held()), at=at,
            destination_lags=self._stats.destination_lags(wall),
        )
        try:
            await self._sink.put_metric_data(self._task, data)
        except ReplicatorError as exc:
            self._stats.count_retry(exc)
            log.warning("CloudWatch metrics not published; the next batch includes them",
                        error=str(exc))
            return
        self._sent = now
        self.batches_sent += 1
