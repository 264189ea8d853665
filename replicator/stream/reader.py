"""One reader of one shard: GetShardIterator from a checkpoint, then GetRecords pages,
retried while retriable, with expired iterators re-acquired after the last record read
and trimmed records reported as data loss (or skipped, when asked)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from replicator.backoff import Backoff, retry_forever
from replicator.checkpoint import Sentinel, at_sequence, before_reading, is_sentinel, since_time
from replicator.clock import Clock
from replicator.errors import (
    CallTimeoutError,
    DataLossError,
    ExpiredIteratorError,
    ReplicatorError,
    TrimmedDataError,
)
from replicator.protocols import StreamReader
from replicator.records import StreamRecord
from replicator.stats import Stats

log = structlog.get_logger("replicator.shard")

#: How many of the last records' event ids a reader remembers, to pass over a record
#: served again.
RECENT_EVENTS = 4096
#: Pages that must arrive in a row, after a timed-out GetRecords, before the
#: limit is doubled again.
GROW_AFTER = 8


@dataclass(slots=True)
class Page:
    """The records of one GetRecords that were not served before, and where to read next
    (None at the end of the shard)."""

    records: list[StreamRecord]
    next_iterator: str | None


class ShardReader:
    """Reads one shard from a checkpoint on. The shard's reader and a lane's catch-up
    reader each have one."""

    def __init__(
        self,
        *,
        stream_arn: str,
        shard_id: str,
        streams: StreamReader,
        stats: Stats,
        get_records_limit: int,
        clock: Clock,
        hold_lease: Callable[[], Awaitable[None]],
        settle: Callable[[], Awaitable[None]] | None = None,
        skip_trimmed: bool = False,
        backoff: Backoff | None = None,
    ) -> None:
        self.stream_arn = stream_arn
        self.shard_id = shard_id
        self._streams = streams
        self._stats = stats
        self._clock = clock
        self._hold_lease = hold_lease
        #: Awaited before the reader starts again after an expired iterator or trimmed
        #: records: the writers apply what they were handed first, so that what follows
        #: is applied after it.
        self._settle = settle
        self._skip_trimmed = skip_trimmed
        self._backoff = backoff or Backoff()
        self._max_limit = get_records_limit
        #: The GetRecords limit in use: halved after a call times out (a page too
        #: slow to fetch in time), doubled back after ``GROW_AFTER`` pages in a row
        #: arrive, so that a lasting slowness does not time out every other call.
        self.limit = get_records_limit
        self._pages_since_timeout = 0
        #: Where the reader started, and the last record it read since.
        self._start = Sentinel.TRIM_HORIZON.value
        self.last_sequence: str | None = None
        #: The event ids of the records read last, oldest first.
        self._recent_events: dict[str, None] = {}

    async def start(self, checkpoint: str) -> str:
        """An iterator for the records after ``checkpoint`` (a sequence number, a
        sentinel, or a bootstrap copy's ``AT:`` or ``SINCE:`` start)."""
        self._start = checkpoint
        self.last_sequence = None
        if checkpoint == Sentinel.SHARD_END:
            raise ValueError(f"shard {self.shard_id} cannot start from {checkpoint}")
        if is_sentinel(checkpoint):
            return await self._get_iterator(checkpoint)
        if since_time(checkpoint) is not None:  # the lanes skip what the copy holds
            return await self._get_iterator(Sentinel.TRIM_HORIZON)
        at = at_sequence(checkpoint)
        try:
            if at is not None:
                return await self._get_iterator("AT_SEQUENCE_NUMBER", at)
            return await self._get_iterator("AFTER_SEQUENCE_NUMBER", checkpoint)
        except TrimmedDataError as exc:
            return await self._trimmed(checkpoint, exc)

    async def read(self, iterator: str) -> Page:
        """One GetRecords, retried while retriable, without the records served before.

        An expired iterator is re-acquired after the last record read (nothing is read
        twice); records trimmed before they were read are data loss.
        """

        async def get_records() -> Page:
            # Retries can outlast the lease (a partition fails renewals and reads alike):
            # every attempt waits on the fence, not only the first.
            await self._hold_lease()
            started = self._clock.monotonic()
            page = await self._streams.get_records(iterator, self.limit)
            self._stats.get_records_seconds.observe(self._clock.monotonic() - started)
            records = [StreamRecord.from_wire(self.shard_id, raw) for raw in page.records]
            return Page(records, page.next_iterator)

        try:
            page = await retry_forever(get_records, what="GetRecords", backoff=self._backoff,
                                       clock=self._clock, on_retry=self._read_failed)
        except ExpiredIteratorError:
            self._stats.expired_iterators += 1
            log.info("shard iterator expired; re-acquiring", after=self.last_sequence)
            if self._settle is not None:
                await self._settle()
            return Page([], await self._resume())
        except TrimmedDataError as exc:
            if self._settle is not None:
                await self._settle()
            position = self.last_sequence or self._start
            return Page([], await self._trimmed(position, exc))
        self._stats.get_records_calls += 1
        self._pages_since_timeout += 1
        if self.limit < self._max_limit and self._pages_since_timeout >= GROW_AFTER:
            self.limit = min(self._max_limit, self.limit * 2)
            self._pages_since_timeout = 0
        page.records = [record for record in page.records
                        if not self._seen_before(record.event_id)]
        if page.records:
            self.last_sequence = page.records[-1].sequence_number
        return page

    async def _resume(self) -> str:
        if self.last_sequence is None:
            return await self.start(self._start)
        last = self.last_sequence
        try:
            return await self._get_iterator("AFTER_SEQUENCE_NUMBER", last)
        except TrimmedDataError as exc:
            return await self._trimmed(last, exc)

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
        self._start, self.last_sequence = Sentinel.TRIM_HORIZON.value, None
        return await self._get_iterator(Sentinel.TRIM_HORIZON)

    def _seen_before(self, event_id: str) -> bool:
        """Whether the record (by its event id, unique to a record) was read already,
        among the last ``RECENT_EVENTS``.

        DynamoDB never sends one twice, but moto can give two concurrent writes one
        sequence number and then serve the second of them again after itself, for
        ever. (Its sequence numbers are then out of order too: only the event id tells.)
        """
        if event_id in self._recent_events:
            return True
        self._recent_events[event_id] = None
        if len(self._recent_events) > RECENT_EVENTS:
            del self._recent_events[next(iter(self._recent_events))]
        return False
