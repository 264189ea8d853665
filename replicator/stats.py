"""Counters of what the replicator did, and the replication lag derived from them."""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING

from replicator.errors import ReplicatorError, ThrottledError

if TYPE_CHECKING:
    from replicator.checkpoint import CheckpointTracker
    from replicator.records import StreamRecord


class Stats:
    """Plain counters, updated in place on the hot path; read by the progress reporter."""

    def __init__(self) -> None:
        self.records_read = 0
        self.records_applied: Counter[str] = Counter()
        self.bytes_applied = 0
        self.batches = 0
        self.retries: Counter[str] = Counter()
        self.throttles: Counter[str] = Counter()
        self.unprocessed_retries = 0
        self.poison_records = 0
        self.trimmed_events = 0
        self.expired_iterators = 0
        self.checkpoints_written = 0
        self.get_records_calls = 0
        #: Writes held back until a late lease renewal came through.
        self.fence_waits = 0
        #: Open shards' trackers, by shard id, for the lag figure.
        self.trackers: dict[str, CheckpointTracker] = {}

    def record_applied(self, record: StreamRecord) -> None:
        self.records_applied[record.event_name.value] += 1
        self.bytes_applied += record.size_bytes

    def count_retry(self, error: ReplicatorError) -> None:
        operation = getattr(error, "operation", "") or "unknown"
        self.retries[operation] += 1
        if isinstance(error, ThrottledError):
            self.throttles[operation] += 1

    def count_unprocessed(self) -> None:
        self.unprocessed_retries += 1

    @property
    def applied_total(self) -> int:
        return sum(self.records_applied.values())

    def lag_seconds(self, now: float | None = None) -> float:
        """How far the destination runs behind: now minus the creation time of the
        oldest record read but not yet applied; zero when nothing is pending."""
        now = time.time() if now is None else now
        oldest = [
            created
            for tracker in self.trackers.values()
            if (created := tracker.oldest_unapplied_created_at()) is not None
        ]
        return max(0.0, now - min(oldest)) if oldest else 0.0
