"""Counters of what the replicator did, and the replication lag derived from them.

``Stats`` is the one record of what happened. The progress line, the
Prometheus endpoint (``replicator.ops.metrics``) and CloudWatch
(``replicator.ops.cloudwatch``) read it; the hot path only adds to it.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from replicator.errors import ReplicatorError, ThrottledError

if TYPE_CHECKING:
    from replicator.records import LaneKey, StreamRecord


class Waited(Protocol):
    """A write cap: how long writes have waited for it, in seconds."""

    waited: float


class Unapplied(Protocol):
    """A shard's record of what it read and has not applied yet (its checkpoint tracker)."""

    def oldest_unapplied_created_at(self) -> float | None: ...


#: Bucket upper bounds, in the unit of each histogram.
GET_RECORDS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZES = (1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 25.0)
APPLY_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class Histogram:
    """Observations counted in buckets (each counts the values up to its bound)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, times: int = 1) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += times
        self.sum += value * times
        self.count += times

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations up to it), ending with (inf, count)."""
        running, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets


@dataclass(slots=True)
class ShardReading:
    """Where a shard's reader stands against the head of the shard."""

    #: Creation time (epoch seconds) of the last record read, if any.
    last_read_created_at: float | None = None
    #: The last GetRecords found nothing new: the reader is at the head of the shard.
    caught_up: bool = False


def shard_lag(now: float, oldest_unapplied: float | None, reading: ShardReading) -> float:
    """How far the destination runs behind the source on one shard, in seconds.

    Records read but not applied: now minus the oldest one's creation time.
    Everything read applied and the reader at the head of the shard: zero.
    Everything read applied but more to read: at least now minus the creation
    time of the last record read.
    """
    if oldest_unapplied is not None:
        return max(0.0, now - oldest_unapplied)
    if reading.caught_up or reading.last_read_created_at is None:
        return 0.0
    return max(0.0, now - reading.last_read_created_at)


def behind_latest(now: float, reading: ShardReading) -> float:
    """How far the reader is behind the newest record of its shard, in seconds."""
    if reading.caught_up or reading.last_read_created_at is None:
        return 0.0
    return max(0.0, now - reading.last_read_created_at)


class Signal:
    """Wakes whoever waits for the next change; costs next to nothing when nobody waits.

    ``Stats.changed`` is notified when a batch is applied, a checkpoint written, a
    shard's reader finds nothing new, a copy's page is written or the service
    changes phase: what an in-process observer (a test, the demo) waits on instead
    of polling.
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def notify(self) -> None:
        event, self._event = self._event, None
        if event is not None:
            event.set()

    def wait(self) -> Coroutine[Any, Any, bool]:
        """Until the next ``notify`` after this call (not after the awaiting begins:
        ``ensure_future(changed.wait())`` misses nothing notified meanwhile)."""
        if self._event is None:
            self._event = asyncio.Event()
        return self._event.wait()


class Stats:
    """Plain counters, updated in place on the hot path; read by the reporters."""

    def __init__(self) -> None:
        self.changed = Signal()
        self.records_read = 0
        #: Records older than a bootstrap copy's start, read but not applied.
        self.records_skipped = 0
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
        #: Errors by kind (the exception's class): retried ones and the one that stopped.
        self.errors: Counter[str] = Counter()
        self.copy_items_written = 0
        #: Times a shard's reader went on without a destination that fell behind.
        self.lanes_detached = 0
        #: Records applied, by (source table, destination name).
        self.applied_by_destination: Counter[tuple[str, str]] = Counter()
        #: What a destination's rules did, by (source table, destination name, outcome):
        #: filtered, ttl_delete (skipped), transformed_away (the transform returned
        #: None), transformed (written as the transform returned it).
        self.rule_outcomes: Counter[tuple[str, str, str]] = Counter()
        #: Records stored in the dead-letter table, by (source table, destination name).
        self.dead_lettered: Counter[tuple[str, str]] = Counter()
        #: The dead-letter table's size: counted at start-up, then added to.
        self.dead_letters_stored = 0
        #: Each destination's stream write cap (``max_wcu``), by (source, destination).
        self.write_caps: dict[tuple[str, str], Waited] = {}
        self.get_records_seconds = Histogram(GET_RECORDS_SECONDS)
        self.batch_sizes = Histogram(BATCH_SIZES)
        #: From the source write (the record's creation time) to the destination write.
        self.apply_seconds = Histogram(APPLY_SECONDS)
        #: Open shards' lanes and readers, by (source, shard id, destination), for the
        #: lag figures.
        self.trackers: dict[LaneKey, Unapplied] = {}
        self.readings: dict[LaneKey, ShardReading] = {}

    def record_applied(self, record: StreamRecord, path: tuple[str, str] = ("", "")) -> None:
        """One record applied to the destination ``path`` (source table, destination)."""
        self.records_applied[record.event_name.value] += 1
        self.bytes_applied += record.size_bytes
        self.applied_by_destination[path] += 1

    def count_skipped(self, outcome: str, path: tuple[str, str] = ("", "")) -> None:
        """One record of ``path`` that the destination's rules did not write as it is."""
        self.rule_outcomes[(*path, outcome)] += 1

    def count_dead_letter(self, path: tuple[str, str] = ("", "")) -> None:
        self.dead_lettered[path] += 1
        self.dead_letters_stored += 1

    def count_retry(self, error: ReplicatorError) -> None:
        operation = getattr(error, "operation", "") or "unknown"
        self.retries[operation] += 1
        self.errors[type(error).__name__] += 1
        if isinstance(error, ThrottledError):
            self.throttles[operation] += 1

    def count_unprocessed(self) -> None:
        self.unprocessed_retries += 1

    @property
    def applied_total(self) -> int:
        return sum(self.records_applied.values())

    def shard_lags(self, now: float | None = None) -> dict[LaneKey, float]:
        """``shard_lag`` of every open shard, for each of its destinations."""
        now = time.time() if now is None else now
        return {
            key: shard_lag(now, tracker.oldest_unapplied_created_at(),
                           self.readings.get(key) or ShardReading())
            for key, tracker in list(self.trackers.items())
        }

    def destination_lags(self, now: float | None = None) -> dict[tuple[str, str], float]:
        """The replication lag of each (source table, destination): its shards' largest."""
        lags: dict[tuple[str, str], float] = {}
        for key, seconds in self.shard_lags(now).items():
            path = (key.source, key.destination)
            lags[path] = max(seconds, lags.get(path, 0.0))
        return lags

    def lag_seconds(self, now: float | None = None) -> float:
        """The replication lag: the largest of the open shards' (zero with none)."""
        return max(self.shard_lags(now).values(), default=0.0)
