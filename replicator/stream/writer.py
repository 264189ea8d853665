"""The writer pool: applies stream records to the destination, in per-key order.

Each record is routed by its key to one writer, through that writer's bounded
queue. A writer takes what its queue holds (up to 25 distinct keys), asks the
destination's rules what each record becomes (``replicator.rules``), keeps the last
write of each key, and writes the batch through the apply layer; only then are its
records marked done in their shards' trackers. A record the destination (or its
rules) refuses fails its shard (``PoisonRecordError``), or, with ``on_poison =
"dead-letter"``, is stored in the dead-letter table and marked done. See
docs/DESIGN.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import structlog

from replicator.apply.writes import MAX_BATCH, Applier, describe_key
from replicator.backoff import Backoff, retry_forever
from replicator.clock import Clock
from replicator.dead_letter import DeadLetter, DeadLetterStore
from replicator.errors import PoisonRecordError, ReplicatorError, ValidationError
from replicator.protocols import DestinationWriter
from replicator.rate import RateLimiter
from replicator.records import KeyId, StreamRecord
from replicator.rules.selection import IDENTITY, OnPoison, Outcome, Rules, Skipped
from replicator.rules.transform import RuleError
from replicator.stats import Stats
from replicator.stream.tracker import CheckpointTracker, Pending

log = structlog.get_logger("replicator.writer")


@dataclass(slots=True)
class WorkItem:
    """A record on its way to the destination, with the bookkeeping of its shard."""

    record: StreamRecord
    pending: Pending
    tracker: CheckpointTracker
    #: What the destination's rules make of the record (None: the record as it is).
    request: dict[str, Any] | None = None


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
        rules: Rules = IDENTITY,
        dead_letters: DeadLetterStore | None = None,
        max_wcu: float | None = None,
    ) -> None:
        #: (source table, destination name): whose records these writers apply.
        self.path = path
        self._stats = stats
        self._rules = rules
        if rules.on_poison is OnPoison.DEAD_LETTER and dead_letters is None:
            raise ValueError("on_poison dead-letter needs a dead-letter store")
        self._dead_letters = dead_letters
        self._clock = clock
        self._backoff = backoff or Backoff()
        #: The destination's write cap (``max_wcu``), shared by the pool's writers.
        self.write_cap = RateLimiter(max_wcu, clock=clock)
        self._applier = Applier(destination, stats=stats, clock=clock, backoff=backoff,
                                write_window=write_window, on_batch=self._observe_batch,
                                limiter=self.write_cap)
        if max_wcu is not None:
            stats.write_caps[path] = self.write_cap
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
        if self._rules.selective:
            batch = await self._select(batch)
            if not batch:
                self._stats.changed.notify()
                return
        writes = [KeyWrite(key, items) for key, items in batch.items()]
        applied: set[KeyId] = set()
        refused: list[tuple[KeyWrite, ValidationError]] = []

        def done(write: KeyWrite) -> None:
            applied.add(write.key)
            self._done(write.items)

        def refuse(write: KeyWrite, exc: ValidationError) -> None:
            if self._rules.on_poison is OnPoison.DEAD_LETTER:
                refused.append((write, exc))
            else:
                self._poison(write.items[-1], "the destination rejects", str(exc),
                             "fix the item or the destination table")

        try:
            await self._applier.write(writes, done=done, refused=refuse)
            for write, exc in refused:
                await self._dead_letter(write.items[-1], str(exc), write.items[:-1])
        except ReplicatorError as exc:
            # Not about one item (the table is gone, access was revoked): every
            # shard in the batch stops with the error, and nothing is checkpointed.
            for write in writes:
                if write.key not in applied:
                    for item in write.items:
                        item.tracker.fail(exc)

    async def _select(self, batch: dict[KeyId, list[WorkItem]]) -> dict[KeyId, list[WorkItem]]:
        """What the rules make of each record of the batch: the records to write, each
        with its write. A record filtered or skipped is marked done at once: no later
        record of its key is in an earlier batch, so no write of its key is pending
        before it. A transform runs in a thread, so that a slow one does not hold up
        the event loop."""
        items = [item for key_items in batch.values() for item in key_items]
        rules = self._rules
        if rules.transform is not None:
            outcomes = await asyncio.to_thread(_outcomes, rules, items)
        else:
            outcomes = _outcomes(rules, items)
        stats = self._stats
        selected: dict[KeyId, list[WorkItem]] = {}
        stopped: set[KeyId] = set()
        for item, outcome in zip(items, outcomes, strict=True):
            key = item.record.key
            if key in stopped:
                continue
            if isinstance(outcome, RuleError):
                if rules.on_poison is OnPoison.DEAD_LETTER:
                    await self._dead_letter(item, str(outcome))
                else:
                    stopped.add(key)  # nothing after it of its key is written
                    self._poison(item, "the rules of the destination reject", str(outcome),
                                 "fix the transform")
                continue
            if isinstance(outcome, Skipped):
                item.tracker.mark_done(item.pending)
                stats.count_skipped(outcome.value, self.path)
                continue
            if rules.transform is not None:
                stats.count_skipped("transformed", self.path)
            item.request = outcome
            selected.setdefault(key, []).append(item)
        return selected

    def _poison(self, item: WorkItem, who: str, error: str, fix: str) -> None:
        """Fail the shard of a record refused for good: no checkpoint passes it."""
        record = item.record
        self._stats.poison_records += 1
        failure = PoisonRecordError(
            f"{who} stream record {record.sequence_number} "
            f"of shard {record.shard_id} ({record.event_name}, key "
            f"{describe_key(record.key)}): {error}; {fix}, then restart: replication "
            "of this shard resumes from that record"
        )
        log.error(
            "poison record",
            destination=self.path[1],
            shard_id=record.shard_id,
            sequence_number=record.sequence_number,
            error=error,
        )
        item.tracker.fail(failure)

    async def _dead_letter(self, item: WorkItem, error: str,
                           superseded: list[WorkItem] | None = None) -> None:
        """Store a record refused for good in the dead-letter table, then mark it done
        (with the records of its key it superseded in the batch)."""
        assert self._dead_letters is not None
        store = self._dead_letters
        record = item.record
        letter = DeadLetter(
            destination=self.path[1], source=self.path[0], shard_id=record.shard_id,
            sequence_number=record.sequence_number, event_name=record.event_name.value,
            keys=record.keys, new_image=record.new_image, old_image=record.old_image,
            error=error, stored_at=time.time(),
        )
        await retry_forever(lambda: store.put(letter), what="PutItem",
                            backoff=self._backoff, clock=self._clock,
                            on_retry=self._stats.count_retry)
        log.warning("record dead-lettered", destination=self.path[1],
                    shard_id=record.shard_id, sequence_number=record.sequence_number,
                    key=describe_key(record.key), error=error)
        self._stats.count_dead_letter(self.path)
        for done in [*(superseded or []), item]:
            done.tracker.mark_done(done.pending)
        self._stats.changed.notify()

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
        if not self.items:
            return None
        last = self.items[-1]
        return last.request if last.request is not None else last.record.write_request()

    def claims(self) -> list[CheckpointTracker]:
        return [item.tracker for item in self.items]


def _outcomes(rules: Rules, items: list[WorkItem]) -> list[Outcome | RuleError]:
    """``rules.request_for`` of each item's record, a ``RuleError`` in place of a write
    for a record the rules reject."""
    outcomes: list[Outcome | RuleError] = []
    for item in items:
        try:
            outcomes.append(rules.request_for(item.record))
        except RuleError as exc:
            outcomes.append(exc)
    return outcomes
