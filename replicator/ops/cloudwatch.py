"""CloudWatch metrics, as the Java tool published them: records and bytes processed, and
the replication lag, under the task name's namespace with the dimension TaskName.

Every ``cloudwatch_interval`` the publisher sends what changed in ``Stats`` in one
PutMetricData call (``metric_data``, a pure function); a failed batch is carried
by the next, and never stops replication.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from replicator.clock import Clock
from replicator.errors import ReplicatorError
from replicator.protocols import MetricsSink
from replicator.stats import Stats

log = structlog.get_logger("replicator.cloudwatch")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The counters CloudWatch gets the increase of."""

    records_read: int = 0
    records_applied: int = 0
    bytes_applied: int = 0
    errors: int = 0
    copy_items_written: int = 0

    @classmethod
    def of(cls, stats: Stats) -> Snapshot:
        return cls(
            records_read=stats.records_read,
            records_applied=stats.applied_total,
            bytes_applied=stats.bytes_applied,
            errors=sum(stats.errors.values()),
            copy_items_written=stats.copy_items_written,
        )


def metric_data(
    task: str, before: Snapshot, now: Snapshot, *, lag_seconds: float, leases_held: int,
    at: datetime,
) -> list[dict[str, Any]]:
    """The data of one PutMetricData: counts since ``before``, and current gauges."""
    dimensions = [{"Name": "TaskName", "Value": task}]

    def datum(name: str, value: float, unit: str) -> dict[str, Any]:
        return {"MetricName": name, "Dimensions": dimensions, "Timestamp": at,
                "Value": float(value), "Unit": unit}

    return [
        datum("RecordsProcessed", now.records_applied - before.records_applied, "Count"),
        datum("BytesProcessed", now.bytes_applied - before.bytes_applied, "Bytes"),
        datum("RecordsRead", now.records_read - before.records_read, "Count"),
        datum("Errors", now.errors - before.errors, "Count"),
        datum("CopyItemsWritten", now.copy_items_written - before.copy_items_written, "Count"),
        datum("ReplicationLag", lag_seconds, "Seconds"),
        datum("LeasesHeld", leases_held, "Count"),
    ]


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
        data = metric_data(
            self._task, self._sent, now, lag_seconds=self._stats.lag_seconds(),
            leases_held=int(self._leases_held()), at=datetime.now(UTC),
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
