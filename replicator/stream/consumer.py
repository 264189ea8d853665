"""One coroutine per shard: read records in order and hand them to the writers.

A shard moves through explicit states, as in the KCL's ConsumerStates::

    INITIALIZING -> PROCESSING -> SHARD_END
                              \\-> SHUTTING_DOWN   (service stops, or the lease is lost)
                              \\-> FAILED          (poison record, trimmed data)

The coordinator starts a consumer only once the shard's parent is finished, so
a consumer never waits on lineage itself.
"""

from __future__ import annotations

import asyncio
import enum

import structlog

from replicator.backoff import Backoff, retry_forever
from replicator.checkpoint import (
    Sentinel,
    at_sequence,
    before_reading,
    is_copy_start,
    is_sentinel,
    since_time,
)
from replicator.clock import Clock
from replicator.errors import (
    CallTimeoutError,
    DataLossError,
    ExpiredIteratorError,
    LeaseLostError,
    ReplicatorError,
    TrimmedDataError,
)
from replicator.leases.held import HeldLease
from replicator.protocols import StreamReader
from replicator.records import RecordsPage, StreamRecord
from replicator.stats import ShardReading, Stats
from replicator.stream.tracker import CheckpointTracker
from replicator.stream.writer import WorkItem, WriterPool

log = structlog.get_logger("replicator.shard")

#: How many of the last records' event ids a consumer remembers, to pass over a record
#: served again.
RECENT_EVENTS = 4096
#: Pages that must arrive in a row, after a timed-out GetRecords, before the
#: limit is doubled again.
GROW_AFTER = 8


class ShardState(enum.StrEnum):
    INITIALIZING = "INITIALIZING"
    PROCESSING = "PROCESSING"
    SHARD_END = "SHARD_END"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    FAILED = "FAILED"


class ShardConsumer:
    """Reads one leased shard from its checkpoint to its end."""

    def __init__(
        self,
        *,
        stream_arn: str,
        lease: HeldLease,
        streams: StreamReader,
        pool: WriterPool,
        stats: Stats,
        get_records_limit: int,
        idle_interval: float,
        checkpoint_interval: float,
        clock: Clock,
        skip_trimmed: bool = False,
        backoff: Backoff | None = None,
        start_iterator: str | None = None,
        instead_of_copy_start: Sentinel | None = None,
    ) -> None:
        self.stream_arn = stream_arn
        self._clock = clock
        #: Where to start instead of a ``SINCE:``/``AT:`` start left by a copy that
        #: never finished (see ``CoordinatorSettings.copy_unfinished``).
        self._instead_of_copy_start = instead_of_copy_start
        self.shard_id = lease.shard_id
        self.lease = lease
        self.tracker = CheckpointTracker(lease.lease.checkpoint, fence=lease.fence)
        self.state = ShardState.INITIALIZING
        #: Where the reader stands against the head of the shard (for the lag).
        self.reading = ShardReading()
        self._streams = streams
        self._pool = pool
        self._stats = stats
        self._max_limit = get_records_limit
        #: The GetRecords limit in use: halved after a call times out (a page too
        #: slow to fetch in time), doubled back after ``GROW_AFTER`` pages in a row
        #: arrive, so that a lasting slowness does not time out every other call.
        self.limit = get_records_limit
        self._pages_since_timeout = 0
        self._idle = idle_interval
        self._checkpoint_interval = checkpoint_interval
        self._skip_trimmed = skip_trimmed
        self._backoff = backoff or Backoff()
        self._last_checkpoint_at = clock.monotonic()
        #: When the latest GetRecords that found nothing began (monotonic), or -inf.
        self.empty_read_started_at = float("-inf")
        #: An iterator to start from instead of the checkpoint's: a bootstrap copy's
        #: watcher hands over the one it read the shard's head with.
        self._start_iterator = start_iterator
        #: The event ids of the records handed over last, oldest first.
        self._recent_events: dict[str, None] = {}
        #: Records created before this epoch second are skipped, not applied, until
        #: the first one created at it or later (set by a ``SINCE:`` start).
        self._skip_before: float | None = None

    def __repr__(self) -> str:
        return f"<ShardConsumer {self.shard_id} {self.state} {self.tracker!r}>"

    async def run(self) -> ShardState:
        """Read until the shard ends. Returns SHARD_END; raises on failure.

        Cancellation (shutdown, lost lease) passes through; whatever the writers
        had applied by then is checkpointed by the coordinator.
        """
        structlog.contextvars.bind_contextvars(shard_id=self.shard_id)
        reading = self.reading
        try:
            iterator: str | None = self._start_iterator
            if iterator is None:
                iterator = await self._initial_iterator()
            self.state = ShardState.PROCESSING
            log.info("shard started", checkpoint=self.tracker.written,
                     handed_over=self._start_iterator is not None)
            while iterator is not None:
                await self._hold_lease()
                read_started = self._clock.monotonic()
                page = await self._read(iterator)
                if page is None:  # iterator expired: every read record is applied by now
                    iterator = await self._iterator_after(self.tracker.checkpointable)
                    continue
                fresh = await self._hand_over(page, reading)
                await self._maybe_checkpoint()
                iterator = page.next_iterator
                reading.caught_up = not fresh
                if reading.caught_up:
                    self._stats.changed.notify()
                if iterator is not None and not fresh:
                    self.empty_read_started_at = read_started
                    await self._clock.sleep(self._idle)
            await self.tracker.wait_drained()
            # One conditional write marks the shard finished and frees its lease.
            await retry_forever(
                lambda: self.lease.release(Sentinel.SHARD_END),
                what="UpdateItem",
                backoff=self._backoff,
                clock=self._clock,
                on_retry=self._stats.count_retry,
            )
            self.tracker.written = Sentinel.SHARD_END
            self._stats.checkpoints_written += 1
            self._stats.changed.notify()
            self.state = ShardState.SHARD_END
            log.info("shard finished")
            return self.state
        except asyncio.CancelledError:
            self.state = ShardState.SHUTTING_DOWN
            raise
        except BaseException:
            self.state = ShardState.FAILED
            self.tracker.cancelled = True
            raise

    async def _hold_lease(self) -> None:
        """Read only while this worker surely holds the lease (see ``LeaseFence``)."""
        fence = self.lease.fence
        while not fence.allows(self._clock.monotonic(), 0.0):
            if fence.revoked:
                raise LeaseLostError(f"lease on shard {self.shard_id} was lost")
            await fence.wait_changed()

    async def _initial_iterator(self) -> str:
        checkpoint = self.tracker.written
        if checkpoint == Sentinel.TRIM_HORIZON or checkpoint == Sentinel.LATEST:
            return await self._get_iterator(checkpoint)
        if is_sentinel(checkpoint):
            raise ValueError(f"shard {self.shard_id} cannot start from {checkpoint}")
        return await self._iterator_after(checkpoint)

    async def _iterator_after(self, checkpoint: str) -> str:
        if is_sentinel(checkpoint):  # nothing read yet
            return await self._get_iterator(checkpoint)
        if self._instead_of_copy_start is not None and is_copy_start(checkpoint):
            log.warning("a start left by an unfinished copy is not used",
                        checkpoint=checkpoint, start=self._instead_of_copy_start.value)
            return await self._get_iterator(self._instead_of_copy_start)
        skip_before = since_time(checkpoint)
        if skip_before is not None:  # nothing read yet since a bootstrap copy
            self._skip_before = skip_before
            return await self._get_iterator(Sentinel.TRIM_HORIZON)
        at = at_sequence(checkpoint)
        if at is not None:  # nothing read yet since a bootstrap copy
            try:
                return await self._get_iterator("AT_SEQUENCE_NUMBER", at)
            except TrimmedDataError as exc:
                return await self._trimmed(checkpoint, exc)
        try:
            return await self._get_iterator("AFTER_SEQUENCE_NUMBER", checkpoint)
        except TrimmedDataError as exc:
            return await self._trimmed(checkpoint, exc)

    async def _get_iterator(self, iterator_type: str, sequence_number: str | None = None) -> str:
        return await retry_forever(
            lambda: self._streams.get_shard_iterator(
                self.stream_arn, self.shard_id, iterator_type, sequence_number
            ),
            what="GetShardIterator",
            backoff=self._backoff,
            clock=self._clock,
            on_retry=self._stats.count_retry,
        )

    async def _read(self, iterator: str) -> RecordsPage | None:
        """One GetRecords, retried while retriable. None when the iterator expired."""

        async def get_records() -> RecordsPage:
            # Retries can outlast the lease (a partition fails renewals and reads alike):
            # every attempt waits on the fence, not only the first.
            await self._hold_lease()
            started = self._clock.monotonic()
            page = await self._streams.get_records(iterator, self.limit)
            self._stats.get_records_seconds.observe(self._clock.monotonic() - started)
            return page

        try:
            page = await retry_forever(
                get_records,
                what="GetRecords",
                backoff=self._backoff,
                clock=self._clock,
                on_retry=self._read_failed,
            )
        except ExpiredIteratorError:
            # Re-acquire after the last applied record: wait for the writers to
            # apply what was handed over, so nothing is read or applied twice.
            self._stats.expired_iterators += 1
            log.info("shard iterator expired; re-acquiring", after=self.tracker.last_read)
            await self.tracker.wait_drained()
            return None
        except TrimmedDataError as exc:
            await self.tracker.wait_drained()
            resumed = await self._trimmed(self.tracker.checkpointable, exc)
            return RecordsPage(records=[], next_iterator=resumed)
        self._stats.get_records_calls += 1
        self._pages_since_timeout += 1
        if self.limit < self._max_limit and self._pages_since_timeout >= GROW_AFTER:
            self.limit = min(self._max_limit, self.limit * 2)
            self._pages_since_timeout = 0
        return page

    def _read_failed(self, error: ReplicatorError) -> None:
        self._stats.count_retry(error)
        if isinstance(error, CallTimeoutError) and self.limit > 1:
            self.limit = max(1, self.limit // 2)
            self._pages_since_timeout = 0
            log.warning("GetRecords timed out; asking for fewer records", limit=self.limit)

    async def _trimmed(self, checkpoint: str, exc: TrimmedDataError) -> str:
        """Records after ``checkpoint`` are gone from the stream: data loss, said loudly."""
        self._stats.trimmed_events += 1
        after = "its start" if before_reading(checkpoint) else f"sequence number {checkpoint}"
        message = (
            f"shard {self.shard_id}: records after {after} were trimmed from the stream "
            "(24-hour retention) before they were applied, so the destination is missing "
            "them; copy the table again (bootstrap) and restart, or set "
            "REPLICATOR_ON_TRIMMED_DATA=skip to go on from the oldest record still in the stream"
        )
        log.error("trimmed data: records lost", shard_id=self.shard_id, checkpoint=checkpoint,
                  skipping=self._skip_trimmed, error=str(exc))
        if not self._skip_trimmed:
            raise DataLossError(message) from exc
        return await self._get_iterator(Sentinel.TRIM_HORIZON)

    async def _hand_over(self, page: RecordsPage, reading: ShardReading) -> int:
        """Hand the page's records to the writers; returns how many were new.

        A record the shard has given already (its event id) is passed over: DynamoDB
        never sends one twice, but moto can give two concurrent writes one sequence
        number and then serve the second of them again after itself, for ever. (Its
        sequence numbers are then out of order too: only the event id tells.)
        """
        tracker = self.tracker
        fresh = 0
        for raw in page.records:
            record = StreamRecord.from_wire(self.shard_id, raw)
            if self._seen_before(raw.get("eventID")):
                continue
            fresh += 1
            pending = tracker.add(record.sequence_number, record.created_at)
            reading.last_read_created_at = record.created_at
            if self._skip_before is not None:
                if record.created_at < self._skip_before:
                    # Older than the bootstrap copy, which holds its effect already.
                    tracker.mark_done(pending)
                    self._stats.records_skipped += 1
                    continue
                self._skip_before = None  # every later record is later still
            await self._pool.put(WorkItem(record, pending, tracker))
            if tracker.failure is not None:
                raise tracker.failure
        self._stats.records_read += fresh
        return fresh

    def _seen_before(self, event_id: str | None) -> bool:
        """Whether the record (by its event id, unique to a record) was handed over
        already, among the last ``RECENT_EVENTS``."""
        if event_id is None:
            return False
        if event_id in self._recent_events:
            return True
        self._recent_events[event_id] = None
        if len(self._recent_events) > RECENT_EVENTS:
            del self._recent_events[next(iter(self._recent_events))]
        return False

    async def _maybe_checkpoint(self) -> None:
        if self.tracker.failure is not None:
            raise self.tracker.failure
        now = self._clock.monotonic()
        if now - self._last_checkpoint_at < self._checkpoint_interval:
            return
        self._last_checkpoint_at = now
        try:
            await self.write_checkpoint()
        except ReplicatorError as exc:
            if not exc.retriable:
                raise
            # The checkpoint table throttled or timed out: the next interval tries again.
            self._stats.count_retry(exc)
            log.warning("checkpoint write failed; will try again", error=str(exc))

    async def write_checkpoint(self) -> None:
        """Write the highest checkpoint that covers only applied records, if it moved."""
        value = self.tracker.checkpointable
        if value == self.tracker.written:
            return
        await self.lease.checkpoint(value)
        self.tracker.written = value
        self._stats.checkpoints_written += 1
        self._stats.changed.notify()
