"""The writer pool: applies stream records to the destination, in per-key order.

Each record is routed by its key to one writer, through that writer's bounded
queue, so all the records of one key are applied by one coroutine in the order
they were read. A writer takes what its queue holds (up to 25 distinct keys),
keeps only the last record of each key (BatchWriteItem rejects two requests
for one key, and the last image is the one that counts), and sends one
BatchWriteItem. Unprocessed items and retriable errors are retried with
backoff, never dropped. Only when a whole batch is applied are its records
marked done in their shard's ``CheckpointTracker``.

A batch that the destination rejects as invalid is replayed one key at a time
to find the record it refuses; that record's shard is failed with a
``PoisonRecordError`` and nothing of it is marked done, so no checkpoint
passes it. Any other non-retriable error (the table is gone, access was
revoked) fails every shard of the batch with that error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from dataclasses import dataclass
from typing import Any

import structlog

from replicator.backoff import Backoff, retry_forever
from replicator.clock import Clock
from replicator.errors import PoisonRecordError, ReplicatorError, ValidationError
from replicator.protocols import DestinationWriter
from replicator.records import KeyId, StreamRecord, key_id
from replicator.stats import Stats
from replicator.stream.tracker import CheckpointTracker, Pending

MAX_BATCH = 25

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
    ) -> None:
        self._destination = destination
        self._clock = clock
        self._write_window = write_window
        self._stats = stats
        self._backoff = backoff or Backoff()
        self._closing = False
        self._abandoning = False
        per_writer = max(MAX_BATCH, queue_size // writers)
        self._queues: list[asyncio.Queue[WorkItem]] = [
            asyncio.Queue(maxsize=per_writer) for _ in range(writers)
        ]

    async def put(self, item: WorkItem) -> None:
        """Hand a record to the writer that owns its key; waits while that queue is full."""
        await self._queues[hash(item.record.key) % len(self._queues)].put(item)

    def queue_depth(self) -> int:
        return sum(queue.qsize() for queue in self._queues)

    async def run(self) -> None:
        """Run every writer until ``close`` has been called and the queues are drained."""
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
        try:
            try:
                await self._send(batch)
            except ValidationError:
                await self._isolate(batch)
        except ReplicatorError as exc:
            # Not about one item (the table is gone, access was revoked): every
            # shard in the batch stops with the error, and nothing is checkpointed.
            for items in batch.values():
                for item in items:
                    item.tracker.fail(exc)

    async def _send(self, pending: dict[KeyId, list[WorkItem]]) -> None:
        """Write the last record of each key until every key is applied.

        Keys are marked done as soon as their write succeeds; those left
        unprocessed are sent again after a backoff. Raises non-retriable errors.
        """
        attempt = 0
        while True:
            left = await retry_forever(
                functools.partial(self._attempt, pending),
                what="BatchWriteItem",
                backoff=self._backoff,
                clock=self._clock,
                on_retry=self._stats.count_retry,
            )
            unprocessed = {_request_key(request, pending) for request in left}
            for key in [key for key in pending if key not in unprocessed]:
                self._done(pending.pop(key))
            if not pending:
                return
            self._stats.unprocessed_retries += 1
            await self._clock.sleep(self._backoff.delay(attempt))
            attempt += 1

    async def _attempt(self, pending: dict[KeyId, list[WorkItem]]) -> list[dict[str, Any]]:
        """One BatchWriteItem of what is still pending and still allowed to be written."""
        await self._wait_for_fences(pending)
        # Records of a stopped shard (lost lease, poison record) are dropped: they are
        # not checkpointed, so whoever reads the shard next applies them. Filtered
        # record by record: one key's list can hold a stopped shard's stale records
        # followed by those of the consumer that took the shard over.
        for key in list(pending):
            kept = [item for item in pending[key] if not item.tracker.cancelled]
            if kept:
                pending[key] = kept
            else:
                del pending[key]
        if not pending:
            return []
        left = await self._destination.batch_write(
            [items[-1].record.write_request() for items in pending.values()]
        )
        self._stats.batches += 1
        self._stats.batch_sizes.observe(len(pending))
        return left

    async def _wait_for_fences(self, pending: dict[KeyId, list[WorkItem]]) -> None:
        """Wait until every shard in the batch holds its lease for the whole write.

        A shard whose lease renewal is late waits here; once it is renewed the
        write goes ahead, and once it is lost the shard's records are dropped.
        """
        trackers = {id(item.tracker): item.tracker for items in pending.values() for item in items}
        for tracker in trackers.values():
            fence = tracker.fence
            while (
                fence is not None
                and not tracker.cancelled
                and not fence.allows(self._clock.monotonic(), self._write_window)
            ):
                if fence.revoked:
                    tracker.cancelled = True
                    break
                self._stats.fence_waits += 1
                await fence.wait_changed()

    async def _isolate(self, batch: dict[KeyId, list[WorkItem]]) -> None:
        """Apply a rejected batch one key at a time, failing the shard of each refused record."""
        for key, items in batch.items():
            last = items[-1]
            if last.tracker.cancelled:
                continue
            try:
                await self._send({key: items})
            except ValidationError as exc:
                record = last.record
                self._stats.poison_records += 1
                error = PoisonRecordError(
                    f"the destination rejects stream record {record.sequence_number} "
                    f"of shard {record.shard_id} ({record.event_name}, key "
                    f"{_describe_key(record)}): {exc}; fix the item or the destination "
                    "table, then restart: replication of this shard resumes from that record"
                )
                log.error(
                    "poison record",
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
            stats.record_applied(item.record)
            stats.apply_seconds.observe(max(0.0, now - item.record.created_at))
        stats.changed.notify()


def _request_key(request: dict[str, Any], pending: dict[KeyId, list[WorkItem]]) -> KeyId:
    """The key a (put or delete) request writes, in the form the batch is keyed by."""
    names = next(iter(pending.values()))[-1].record.keys
    if "PutRequest" in request:
        item = request["PutRequest"]["Item"]
    else:
        item = request["DeleteRequest"]["Key"]
    return key_id({name: item[name] for name in names})


def _describe_key(record: StreamRecord) -> str:
    return ", ".join(f"{name}={type_}:{str(value)[:64]}" for name, type_, value in record.key)
