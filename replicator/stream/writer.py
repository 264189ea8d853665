"""The writer pool: applies stream records to the destination, in per-key order.

Each record is routed by its key to one writer, through that writer's bounded
queue. A writer takes what its queue holds (up to 25 distinct keys), keeps the
last record of each key, and writes the batch through the apply layer; only
then are its records marked done in their shards' trackers. A record the
destination refuses fails its shard (``PoisonRecordError``). See docs/DESIGN.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import structlog

from replicator.apply.writes import MAX_BATCH, Applier, describe_key
from replicator.backoff import Backoff
from replicator.clock import Clock
from replicator.errors import PoisonRecordError, ReplicatorError, ValidationError
from replicator.protocols import DestinationWriter
from replicator.records import KeyId, StreamRecord
from replicator.stats import Stats
from replicator.stream.tracker import CheckpointTracker, Pending

log = structlog.get_logger("replicator.writer")


@dataclass(slots=True)
class WorkItem:
    """A record on its way to the destination, with the bookkeeping of its shard."""

    record: StreamRecord
    pending: Pending
    tracker: CheckpointTracker


_STOP: Any = object()


class WriterPool:
    """``writers`` coroutines, each owning one bounded queue."""

    def __init__(
        self,
        destination: DestinationWriter,
        *,
        writers: int,
        queue_size: int,
        stats: Stats,
        clock: Clock,
        backoff: Backoff | None = None,
        write_window: float = 0.0,
        path: tuple[str, str] = ("", ""),
    ) -> None:
        #: (source table, destination name): whose records these writers apply.
        self.path = path
        self._stats = stats
        self._applier = Applier(destination, stats=stats, clock=clock, backoff=backoff,
                                write_window=write_window, on_batch=self._observe_batch)
        self._closing = False
        self._abandoning = False
        per_writer = max(MAX_BATCH, queue_size // writers)
        self._queues: list[asyncio.Queue[WorkItem]] = [
            asyncio.Queue(maxsize=per_writer) for _ in range(writers)
        ]

    async def put(self, item: WorkItem) -> None:
        """Hand a record to the writer that owns its key; waits while that queue is full."""
        await self._queues[hash(item.record.key) % len(self._queues)].put(item)

    def offer(self, item: WorkItem) -> bool:
        """Hand a record over if its writer's queue has room; False when it is full."""
        try:
            self._queues[hash(item.record.key) % len(self._queues)].put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True

    def queue_depth(self) -> int:
        return sum(queue.qsize() for queue in self._queues)

    async def run(self) -> None:
        """Run every writer until ``close`` has been called and the queues are drained."""
        if self.path[1]:  # its own task: each line it logs names its source and destination
            structlog.contextvars.bind_contextvars(source=self.path[0],
                                                   destination=self.path[1])
        async with asyncio.TaskGroup() as group:
            for index, queue in enumerate(self._queues):
                group.create_task(self._writer(queue), name=f"writer-{index}")

    def close(self, *, abandon_queued: bool = False) -> None:
        """Ask the writers to stop once nothing puts any more.

        By default they first apply everything queued. With ``abandon_queued``
        each finishes only the batch it is writing: what waits in the queues is
        never marked done, so no checkpoint passes it, and whoever reads the
        shard next applies it. A hand-over then takes one write, not a queue.
        """
        self._closing = True
        self._abandoning = abandon_queued
        for queue in self._queues:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(_STOP)  # wakes a writer waiting on an empty queue

    async def _writer(self, queue: asyncio.Queue[WorkItem]) -> None:
        carry: WorkItem | None = None
        while True:
            first = carry if carry is not None else await queue.get()
            carry = None
            if first is _STOP or self._abandoning:
                return
            batch: dict[KeyId, list[WorkItem]] = {first.record.key: [first]}
            stop = False
            while not queue.empty():
                item = queue.get_nowait()
                if item is _STOP:
                    stop = True
                    break
                same_key = batch.get(item.record.key)
                if same_key is not None:
                    same_key.append(item)
                elif len(batch) < MAX_BATCH:
                    batch[item.record.key] = [item]
                else:
                    carry = item
                    break
            await self._apply(batch)
            if stop or self._abandoning or (self._closing and carry is None and queue.empty()):
                return

    async def _apply(self, batch: dict[KeyId, list[WorkItem]]) -> None:
        writes = [KeyWrite(key, items) for key, items in batch.items()]
        applied: set[KeyId] = set()

        def done(write: KeyWrite) -> None:
            applied.add(write.key)
            self._done(write.items)

        try:
            await self._applier.write(writes, done=done, refused=self._refused)
        except ReplicatorError as exc:
            # Not about one item (the table is gone, access was revoked): every
            # shard in the batch stops with the error, and nothing is checkpointed.
            for write in writes:
                if write.key not in applied:
                    for item in write.items:
                        item.tracker.fail(exc)

    def _refused(self, write: KeyWrite, exc: ValidationError) -> None:
        """Fail the shard of a record the destination refuses: no checkpoint passes it."""
        last = write.items[-1]
        record = last.record
        self._stats.poison_records += 1
        error = PoisonRecordError(
            f"the destination rejects stream record {record.sequence_number} "
            f"of shard {record.shard_id} ({record.event_name}, key "
            f"{describe_key(record.key)}): {exc}; fix the item or the destination "
            "table, then restart: replication of this shard resumes from that record"
        )
        log.error(
            "poison record",
            destination=self.path[1],
            shard_id=record.shard_id,
            sequence_number=record.sequence_number,
            error=str(exc),
        )
        last.tracker.fail(error)

    def _done(self, items: list[WorkItem]) -> None:
        stats = self._stats
        now = time.time()
        for item in items:
            item.tracker.mark_done(item.pending)
            stats.record_applied(item.record, self.path)
            stats.apply_seconds.observe(max(0.0, now - item.record.created_at))
        stats.changed.notify()

    def _observe_batch(self, size: int) -> None:
        self._stats.batches += 1
        self._stats.batch_sizes.observe(size)


@dataclass(slots=True)
class KeyWrite:
    """The records of one key in a writer's batch: the last one's image is written."""

    key: KeyId
    items: list[WorkItem]

    def request(self) -> dict[str, Any] | None:
        # Records of a stopped shard (lost lease, poison record) are dropped: they are
        # not checkpointed, so whoever reads the shard next applies them. Filtered
        # record by record: one key's list can hold a stopped shard's stale records
        # followed by those of the consumer that took the shard over.
        self.items = [item for item in self.items if not item.tracker.cancelled]
        return self.items[-1].record.write_request() if self.items else None

    def claims(self) -> list[CheckpointTracker]:
        return [item.tracker for item in self.items]
