"""One coroutine per shard: read records in order and hand each to every destination.

A shard moves through explicit states, as in the KCL's ConsumerStates::

    INITIALIZING -> PROCESSING -> SHARD_END
                              \\-> SHUTTING_DOWN   (service stops, or the lease is lost)
                              \\-> FAILED          (poison record, trimmed data)

The shard is read once for all the destinations of its source: each destination is a
lane (``replicator.stream.lanes``) with its own writers and its own checkpoint, and a
lane that falls behind is detached and caught up by a reader of its own. The
coordinator starts a consumer only once the shard's parent is finished, so a
consumer never waits on lineage itself.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Mapping

import structlog

from replicator.backoff import Backoff, retry_forever
from replicator.checkpoint import Sentinel, is_copy_start, least
from replicator.clock import Clock, within
from replicator.errors import LeaseLostError, ReplicatorError
from replicator.leases.held import HeldLease
from replicator.protocols import StreamReader
from replicator.records import LaneKey, StreamRecord
from replicator.stats import ShardReading, Stats
from replicator.stream.lanes import Lane, LaneState, Verdict
from replicator.stream.reader import ShardReader
from replicator.stream.writer import WorkItem, WriterPool

log = structlog.get_logger("replicator.shard")

#: Seconds the shard's reader waits for room in a lane's queue before it goes on
#: without that lane, when another lane of the shard keeps up.
DETACH_AFTER = 1.0


class ShardState(enum.StrEnum):
    INITIALIZING = "INITIALIZING"
    PROCESSING = "PROCESSING"
    SHARD_END = "SHARD_END"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    FAILED = "FAILED"


class ShardConsumer:
    """Reads one leased shard from its checkpoint to its end, for every destination."""

    def __init__(
        self,
        *,
        stream_arn: str,
        lease: HeldLease,
        streams: StreamReader,
        pools: Mapping[str, WriterPool],
        stats: Stats,
        get_records_limit: int,
        idle_interval: float,
        checkpoint_interval: float,
        clock: Clock,
        source: str = "",
        starts: Mapping[str, str | None] | None = None,
        detach_after: float = DETACH_AFTER,
        skip_trimmed: bool = False,
        backoff: Backoff | None = None,
        start_iterator: str | None = None,
        instead_of_copy_start: Sentinel | None = None,
    ) -> None:
        self.stream_arn = stream_arn
        self.shard_id = lease.shard_id
        self.lease = lease
        self._clock = clock
        self._streams = streams
        self._stats = stats
        self._limit = get_records_limit
        self._idle = idle_interval
        self._checkpoint_interval = checkpoint_interval
        self._detach_after = detach_after
        self._skip_trimmed = skip_trimmed
        self._backoff = backoff or Backoff()
        self._source = source
        starts = starts or {}
        self.lanes = []
        for name, pool in pools.items():
            start = _start_of(lease, name, starts, instead_of_copy_start)
            self.lanes.append(Lane(
                LaneKey(source, self.shard_id, name), pool,
                Sentinel.TRIM_HORIZON if start is None else start, fence=lease.fence,
                state=LaneState.PARKED if start is None else LaneState.ATTACHED))
        self._unparked = asyncio.Event()
        self.state = ShardState.INITIALIZING
        #: Where the shard's reader stands against the head of the shard (for the lag).
        self.reading = ShardReading()
        self._last_checkpoint_at = clock.monotonic()
        #: When the latest GetRecords that found nothing began (monotonic), or -inf.
        self.empty_read_started_at = float("-inf")
        #: An iterator to start from instead of the checkpoint's: a bootstrap copy's
        #: watcher hands over the one it read the shard's head with.
        self._start_iterator = start_iterator
        #: The event id of the last record the shard's reader read: where a catch-up
        #: reader meets it.
        self._last_event: str | None = None
        self._catch_ups: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        #: The shard's reader (each catch-up has its own).
        self.reader = self._reader(self._attached_applied)

    def __repr__(self) -> str:
        return f"<ShardConsumer {self.shard_id} {self.state} {self.lanes!r}>"

    @property
    def drained(self) -> bool:
        """Every lane is fed by the shard's reader and has applied all it was handed."""
        return all(lane.state is LaneState.ATTACHED and lane.tracker.drained
                   for lane in self.lanes)

    async def run(self) -> ShardState:
        """Read until the shard ends. Returns SHARD_END; raises on failure.

        Cancellation (shutdown, lost lease) passes through; whatever the writers
        had applied by then is checkpointed by the coordinator.
        """
        structlog.contextvars.bind_contextvars(shard_id=self.shard_id)
        try:
            try:
                async with asyncio.TaskGroup() as group:  # the lanes' catch-up readers
                    self._group = group
                    await self._read_to_end()
            except BaseExceptionGroup as failed:  # the catch-ups never raise: ours
                raise failed.exceptions[0] from None
            # One conditional write marks the shard finished and frees its lease.
            ended = {lane.destination: Sentinel.SHARD_END.value for lane in self.lanes}
            await retry_forever(
                lambda: self.lease.release(Sentinel.SHARD_END, ended),
                what="UpdateItem",
                backoff=self._backoff,
                clock=self._clock,
                on_retry=self._stats.count_retry,
            )
            for lane in self.lanes:
                lane.tracker.written = Sentinel.SHARD_END
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
            for lane in self.lanes:
                lane.tracker.cancelled = True
            raise

    def _reader(self, settle: Callable[[], Awaitable[None]]) -> ShardReader:
        return ShardReader(
            stream_arn=self.stream_arn, shard_id=self.shard_id, streams=self._streams,
            stats=self._stats, get_records_limit=self._limit, clock=self._clock,
            hold_lease=self._hold_lease, settle=settle, skip_trimmed=self._skip_trimmed,
            backoff=self._backoff,
        )

    async def _attached_applied(self) -> None:
        """Until the lanes the shard's reader feeds have applied all they were handed."""
        for lane in self.lanes:
            if lane.state is LaneState.ATTACHED:
                await lane.tracker.wait_drained()

    def unpark(self, destination: str, start: str) -> None:
        """A destination joining the topology has been copied: its lane starts at
        ``start`` (a ``SINCE:`` start) with a catch-up reader of its own."""
        for index, lane in enumerate(self.lanes):
            if lane.destination == destination and lane.state is LaneState.PARKED:
                joined = Lane(lane.key, lane.pool, start, fence=self.lease.fence,
                              state=LaneState.DETACHED)
                self.lanes[index] = joined
                self._stats.trackers[joined.key] = joined
                if self._group is not None:
                    self._spawn_catch_up(joined)
        self._unparked.set()

    def _spawn_catch_up(self, lane: Lane) -> None:
        assert self._group is not None
        self._catch_ups[lane.destination] = self._group.create_task(
            self._catch_up(lane), name=f"catch-up-{self.shard_id}-{lane.destination}")

    def _fed(self) -> list[Lane]:
        return [lane for lane in self.lanes if lane.state is not LaneState.PARKED]

    async def _read_to_end(self) -> None:
        reader = self.reader
        for lane in self.lanes:
            if lane.state is LaneState.DETACHED:  # unparked before the shard started
                self._spawn_catch_up(lane)
        fed = self._fed()
        start = least(lane.start for lane in fed) if fed else self.lease.lease.checkpoint
        iterator: str | None = self._start_iterator
        if iterator is None:
            iterator = await reader.start(start)
        else:  # handed over by the copy: it reads only what was written after the copy
            for lane in fed:
                if lane.start == self.lease.lease.checkpoint:
                    lane.apply_all()
        self.state = ShardState.PROCESSING
        log.info("shard started", checkpoint=start,
                 handed_over=self._start_iterator is not None)
        reading = self.reading
        while iterator is not None:
            await self._hold_lease()
            read_started = self._clock.monotonic()
            page = await reader.read(iterator)
            await self._hand_over(page.records)
            await self._maybe_checkpoint()
            iterator = page.next_iterator
            reading.caught_up = not page.records
            if reading.caught_up:
                self._stats.changed.notify()
            if iterator is not None and not page.records:
                self.empty_read_started_at = read_started
                await self._clock.sleep(self._idle)
        # The end of the shard: every lane applies all of it first, a joining one too,
        # while the others' checkpoints are kept.
        if any(lane.state is LaneState.PARKED for lane in self.lanes):
            await self._attached_applied()
            self._last_checkpoint_at = float("-inf")
            await self._maybe_checkpoint()
        while any(lane.state is LaneState.PARKED for lane in self.lanes):
            self._unparked.clear()
            await self._unparked.wait()
        while pending := [task for task in self._catch_ups.values() if not task.done()]:
            await asyncio.wait(pending)
        for lane in self.lanes:
            await lane.tracker.wait_drained()

    async def _hold_lease(self) -> None:
        """Read only while this worker surely holds the lease (see ``LeaseFence``)."""
        fence = self.lease.fence
        while not fence.allows(self._clock.monotonic(), 0.0):
            if fence.revoked:
                raise LeaseLostError(f"lease on shard {self.shard_id} was lost")
            await fence.wait_changed()

    async def _hand_over(self, records: list[StreamRecord]) -> None:
        """Hand each record to the writers of every lane the reader feeds."""
        for record in records:
            self._last_event = record.event_id
            self.reading.last_read_created_at = record.created_at
            for lane in self.lanes:
                # A lane whose catch-up reader met this reader at this very record has
                # been handed it already.
                if lane.state is LaneState.ATTACHED and lane.last_event != record.event_id:
                    await self._hand_to(lane, record)
            self._raise_failure()
        self._stats.records_read += len(records)

    async def _hand_to(self, lane: Lane, record: StreamRecord) -> None:
        verdict = lane.verdict(record)
        if verdict is Verdict.PASS:
            return
        pending = lane.tracker.add(record.sequence_number, record.created_at)
        if verdict is Verdict.SKIP:
            lane.tracker.mark_done(pending)
            self._stats.records_skipped += 1
            return
        item = WorkItem(record, pending, lane.tracker)
        if await self._offer(lane, item):
            lane.last_event = record.event_id
            return
        lane.tracker.withdraw(pending)
        lane.detach(record)
        self._stats.lanes_detached += 1
        log.warning("destination falls behind; the shard is read on without it, and for "
                    "it from its checkpoint once it applies what it holds",
                    destination=lane.destination, checkpoint=lane.tracker.checkpointable)
        self._spawn_catch_up(lane)

    async def _offer(self, lane: Lane, item: WorkItem) -> bool:
        """Put the record in the lane's queue; False when the lane cannot take it within
        ``detach_after`` while another lane keeps up (the only lane fed always waits)."""
        if lane.pool.offer(item):
            return True
        if not any(other.state is LaneState.ATTACHED
                   for other in self.lanes if other is not lane):
            await lane.pool.put(item)
            return True
        try:
            await within(self._clock, self._detach_after, lane.pool.put(item))
        except TimeoutError:
            return False
        return True

    async def _catch_up(self, lane: Lane) -> None:
        """Once the lane's destination has applied what it holds, read the shard for the
        lane alone from its checkpoint, until the record the shard's reader read last."""
        try:
            await lane.tracker.wait_drained()
            lane.state = LaneState.CATCHING_UP
            checkpoint = lane.tracker.checkpointable
            log.info("destination answers again; catching up", destination=lane.destination,
                     checkpoint=checkpoint)
            reader = self._reader(lane.tracker.wait_drained)
            iterator: str | None = await reader.start(checkpoint)
            while iterator is not None:
                await self._hold_lease()
                page = await reader.read(iterator)
                for record in page.records:
                    verdict = lane.verdict(record)
                    if verdict is not Verdict.PASS:
                        pending = lane.tracker.add(record.sequence_number, record.created_at)
                        if verdict is Verdict.SKIP:
                            lane.tracker.mark_done(pending)
                        else:
                            await lane.pool.put(WorkItem(record, pending, lane.tracker))
                            lane.last_event = record.event_id
                            lane.behind_since = record.created_at
                    if record.event_id == self._last_event:
                        break
                else:
                    iterator = page.next_iterator
                    if iterator is not None and not page.records:
                        await self._clock.sleep(self._idle)
                    continue
                break
            lane.attach()
            log.info("destination caught up; read with the others again",
                     destination=lane.destination)
        except ReplicatorError as exc:
            lane.tracker.fail(exc)  # the shard's reader raises it

    def _raise_failure(self) -> None:
        for lane in self.lanes:
            if lane.tracker.failure is not None:
                raise lane.tracker.failure

    async def _maybe_checkpoint(self) -> None:
        self._raise_failure()
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

    def pending_checkpoint(self) -> tuple[str, dict[str, str]] | None:
        """The checkpoints to write (the shard's, the least, and each lane's), if any
        lane's moved: each covers only records its destination has applied."""
        fed = self._fed()
        values = {lane.destination: lane.tracker.checkpointable for lane in fed}
        if all(values[lane.destination] == lane.tracker.written for lane in fed):
            return None
        return least(values.values()), values

    def checkpointed(self, values: Mapping[str, str]) -> None:
        for lane in self.lanes:
            if lane.destination in values:
                lane.tracker.written = values[lane.destination]

    async def write_checkpoint(self) -> None:
        """Write the lanes' checkpoints, if one moved, in one conditional write."""
        pending = self.pending_checkpoint()
        if pending is None:
            return
        checkpoint, values = pending
        await self.lease.checkpoint(checkpoint, values)
        self.checkpointed(values)
        self._stats.checkpoints_written += 1
        self._stats.changed.notify()


def _start_of(lease: HeldLease, destination: str, starts: Mapping[str, str | None],
              instead_of_copy_start: Sentinel | None) -> str | None:
    """Where a lane starts: its checkpoint; for a row that does not name it, its start
    in ``starts`` (None: a destination joining the topology, not copied yet) or the
    row's checkpoint; ``instead_of_copy_start`` in place of a start left by a bootstrap
    copy that never finished."""
    named = dict(lease.lease.checkpoints)
    if destination in named:
        checkpoint = named[destination]
    elif destination in starts:
        start = starts[destination]
        if start is None:
            return None
        checkpoint = start
    else:
        checkpoint = lease.lease.checkpoint
    if instead_of_copy_start is not None and is_copy_start(checkpoint):
        log.warning("a start left by an unfinished copy is not used",
                    shard_id=lease.shard_id, checkpoint=checkpoint,
                    start=instead_of_copy_start.value)
        return instead_of_copy_start.value
    return checkpoint
