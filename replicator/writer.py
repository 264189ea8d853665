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
from dataclasses import dataclass
from typing import Any

import structlog

from replicator.backoff import Backoff, retry_forever
from replicator.checkpoint import CheckpointTracker, Pending
from replicator.errors import PoisonRecordError, ReplicatorError, ValidationError
from replicator.protocols import DestinationWriter
from replicator.records import KeyId, StreamRecord
from replicator.stats import Stats

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
        backoff: Backoff | None = None,
    ) -> None:
        self._destination = destination
        self._stats = stats
        self._backoff = backoff or Backoff()
        self._closing = False
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

    def close(self) -> None:
        """Ask the writers to finish what is queued and stop. Call once nothing puts any more."""
        self._closing = True
        for queue in self._queues:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(_STOP)  # wakes a writer waiting on an empty queue

    async def _writer(self, queue: asyncio.Queue[WorkItem]) -> None:
        carry: WorkItem | None = None
        while True:
            first = carry if carry is not None else await queue.get()
            carry = None
            if first is _STOP:
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
            if stop or (self._closing and carry is None and queue.empty()):
                return

    async def _apply(self, batch: dict[KeyId, list[WorkItem]]) -> None:
        # Records of a stopped shard (lost lease, poison record) are dropped:
        # they are not checkpointed, so whoever reads the shard next applies them.
        # Filtered record by record: one key's list can hold a stopped shard's stale
        # records followed by those of the consumer that took the shard over.
        live: dict[KeyId, list[WorkItem]] = {}
        for key, items in batch.items():
            kept = [item for item in items if not item.tracker.cancelled]
            if kept:
                live[key] = kept
        if not live:
            return
        try:
            try:
                await self._write([items[-1].record.write_request() for items in live.values()])
            except ValidationError:
                await self._isolate(live)
                return
        except ReplicatorError as exc:
            # Not about one item (the table is gone, access was revoked): every
            # shard in the batch stops with the error, and nothing is checkpointed.
            for items in live.values():
                items[-1].tracker.fail(exc)
            return
        for items in live.values():
            self._done(items)

    async def _write(self, requests: list[dict[str, Any]]) -> None:
        """BatchWriteItem until nothing is left unprocessed; raises non-retriable errors."""
        attempt = 0
        remaining = requests
        while True:
            remaining = await retry_forever(
                functools.partial(self._destination.batch_write, remaining),
                what="BatchWriteItem",
                backoff=self._backoff,
                on_retry=self._stats.count_retry,
            )
            self._stats.batches += 1
            if not remaining:
                return
            self._stats.unprocessed_retries += 1
            await asyncio.sleep(self._backoff.delay(attempt))
            attempt += 1

    async def _isolate(self, batch: dict[KeyId, list[WorkItem]]) -> None:
        """Apply a rejected batch one key at a time, failing the shard of each refused record."""
        for items in batch.values():
            last = items[-1]
            if last.tracker.cancelled:
                continue
            try:
                await self._write([last.record.write_request()])
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
                continue
            self._done(items)

    def _done(self, items: list[WorkItem]) -> None:
        stats = self._stats
        for item in items:
            item.tracker.mark_done(item.pending)
            stats.record_applied(item.record)


def _describe_key(record: StreamRecord) -> str:
    return ", ".join(f"{name}={type_}:{str(value)[:64]}" for name, type_, value in record.key)
