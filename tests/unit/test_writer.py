"""The writer pool: per-key order, batching, retries, poison records, stopped shards."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replicator.errors import AccessDeniedError, PoisonRecordError
from replicator.records import EventName, Item, KeyId, StreamRecord, sequence_key
from replicator.stats import Stats
from replicator.stream.tracker import CheckpointTracker, Pending
from replicator.stream.writer import WorkItem, WriterPool
from tests.fakes import (
    FakeDestination,
    Write,
    apply_requests,
    throttled,
    unprocessed_randomly,
    when,
)
from tests.unit.harness import CLOCK, FAST


@dataclass(frozen=True, slots=True)
class Op:
    key: int
    delete: bool
    shard: int


def make_record(index: int, op: Op, *, extra: dict[str, dict[str, str]] | None = None
                ) -> StreamRecord:
    """The index-th record of a test stream. Each gets its own dicts, so that a write the
    destination logs can be traced back to it by identity."""
    keys: Item = {"pk": {"S": f"k{op.key}"}}
    image: Item | None = None
    if not op.delete:
        image = {"pk": {"S": f"k{op.key}"}, "v": {"N": str(index)}, **(extra or {})}
    return StreamRecord(
        shard_id=f"shard-{op.shard}",
        sequence_number=str(95 + index),  # 95, 96, ... 100, ...: lengths vary
        event_name=EventName.REMOVE if op.delete else EventName.MODIFY,
        keys=keys,
        new_image=image,
        size_bytes=10,
        created_at=1_700_000_000.0 + index,
    )


def payload(record: StreamRecord) -> Item:
    return record.new_image if record.new_image is not None else record.keys


class Ledger:
    """What the destination applied, traced back to the records' indices."""

    def __init__(self, destination: FakeDestination, records: list[StreamRecord]) -> None:
        self.index_of = {id(payload(record)): index for index, record in enumerate(records)}
        self.records = records
        self.newest: dict[KeyId, int] = defaultdict(lambda: -1)
        self.problems: list[str] = []
        destination.on_write = self._written

    def _written(self, write: Write) -> None:
        index = self.index_of[id(write.payload)]
        key = self.records[index].key
        if index <= self.newest[key]:
            self.problems.append(f"record {index} applied after record {self.newest[key]}")
        self.newest[key] = index

    def covered(self, index: int) -> bool:
        """The record is applied, or superseded by an applied later record of its key."""
        return self.newest[self.records[index].key] >= index


class CheckedTracker(CheckpointTracker):
    """A tracker that checks, at every mark_done, that its checkpointable sequence number
    covers only applied (or superseded) records."""

    def __init__(self, ledger: Ledger, indices: list[int]) -> None:
        super().__init__("TRIM_HORIZON")
        self.ledger = ledger
        self.indices = indices

    def mark_done(self, pending: Pending) -> None:
        super().mark_done(pending)
        if self.checkpointable == "TRIM_HORIZON":
            return
        limit = sequence_key(self.checkpointable)
        for index in self.indices:
            record = self.ledger.records[index]
            if sequence_key(record.sequence_number) <= limit and not self.ledger.covered(index):
                self.ledger.problems.append(
                    f"checkpointable {self.checkpointable} passes unapplied record {index}"
                )


def expected_table(records: list[StreamRecord]) -> dict[KeyId, Item]:
    table: dict[KeyId, Item] = {}
    apply_requests(table, [record.write_request() for record in records])
    return table


async def replicate(ops: list[Op], *, writers: int, queue_size: int, seed: int,
                    unprocessed: float, throttle: float) -> None:
    rng = random.Random(seed)
    destination = FakeDestination()
    destination.unprocessed = unprocessed_randomly(rng, unprocessed)
    destination.fault = when(lambda call: rng.random() < throttle, throttled)
    stats = Stats()
    pool = WriterPool(destination, clock=CLOCK, writers=writers, queue_size=queue_size, stats=stats,
                      backoff=FAST)
    records = [make_record(index, op) for index, op in enumerate(ops)]
    ledger = Ledger(destination, records)
    by_shard: dict[int, list[int]] = defaultdict(list)
    for index, op in enumerate(ops):
        by_shard[op.shard].append(index)
    trackers = {shard: CheckedTracker(ledger, indices) for shard, indices in by_shard.items()}

    async def feed() -> None:
        for index, op in enumerate(ops):
            record = records[index]
            tracker = trackers[op.shard]
            pending = tracker.add(record.sequence_number, record.created_at)
            await pool.put(WorkItem(record, pending, tracker))
            if rng.random() < 0.3:  # let the writers run now and then: batches vary
                await asyncio.sleep(0)
        pool.close()

    async with asyncio.timeout(10), asyncio.TaskGroup() as group:
        group.create_task(pool.run())
        group.create_task(feed())

    assert ledger.problems == []
    assert destination.violations == []
    assert destination.table == expected_table(records)
    for tracker in trackers.values():
        assert tracker.drained
        assert tracker.checkpointable == records[tracker.indices[-1]].sequence_number
    assert stats.applied_total == len(records)
    assert stats.throttles["BatchWriteItem"] == destination.injected
    assert stats.unprocessed_retries == destination.unprocessed_calls


ops_strategy = st.lists(
    st.builds(Op, key=st.integers(0, 5), delete=st.booleans(), shard=st.integers(0, 2)),
    min_size=1,
    max_size=80,
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=ops_strategy,
    writers=st.integers(1, 4),
    queue_size=st.integers(1, 60),
    seed=st.integers(0, 2**32 - 1),
    unprocessed=st.sampled_from([0.0, 0.2, 0.6]),
    throttle=st.sampled_from([0.0, 0.1, 0.4]),
)
def test_per_key_order_and_checkpoints_hold_for_any_operations(
    ops: list[Op], writers: int, queue_size: int, seed: int, unprocessed: float,
    throttle: float,
) -> None:
    asyncio.run(replicate(ops, writers=writers, queue_size=queue_size, seed=seed,
                          unprocessed=unprocessed, throttle=throttle))


@settings(max_examples=15, deadline=None)
@given(
    ops=st.lists(
        st.builds(Op, key=st.integers(0, 60), delete=st.booleans(), shard=st.integers(0, 1)),
        min_size=30,
        max_size=150,
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_many_distinct_keys_are_split_into_valid_batches(ops: list[Op], seed: int) -> None:
    asyncio.run(replicate(ops, writers=2, queue_size=200, seed=seed, unprocessed=0.2,
                          throttle=0.1))


async def enqueue(pool: WriterPool, records: list[StreamRecord],
                  trackers: dict[str, CheckpointTracker]) -> None:
    for record in records:
        tracker = trackers[record.shard_id]
        await pool.put(WorkItem(record, tracker.add(record.sequence_number, record.created_at),
                                tracker))


async def test_close_drains_what_is_queued() -> None:
    destination = FakeDestination()
    pool = WriterPool(destination, writers=2, queue_size=100, stats=Stats(), backoff=FAST,
                      clock=CLOCK)
    # 50 records fit in either writer's queue (100 // 2) whatever the key routing.
    records = [make_record(i, Op(i % 30, False, 0)) for i in range(50)]
    tracker = CheckpointTracker("TRIM_HORIZON")
    async with asyncio.timeout(5):
        await enqueue(pool, records, {"shard-0": tracker})
        pool.close()
        await pool.run()
    assert destination.table == expected_table(records)
    assert tracker.drained
    assert tracker.checkpointable == records[-1].sequence_number
    assert all(len(batch) <= 25 for batch in destination.batches)
    assert destination.violations == []


async def test_poison_record_fails_its_shard_and_keeps_the_other_keys() -> None:
    destination = FakeDestination()
    stats = Stats()
    pool = WriterPool(destination, writers=1, queue_size=100, stats=stats, backoff=FAST,
                      clock=CLOCK)
    records = [
        make_record(0, Op(0, False, 0)),
        make_record(1, Op(1, False, 0)),
        make_record(2, Op(2, False, 1)),
        make_record(3, Op(3, False, 0), extra={"poison": {"S": "yes"}}),
        make_record(4, Op(4, False, 1)),
        make_record(5, Op(5, False, 0)),
    ]
    trackers = {"shard-0": CheckpointTracker("TRIM_HORIZON"),
                "shard-1": CheckpointTracker("TRIM_HORIZON")}
    async with asyncio.timeout(5):
        await enqueue(pool, records, trackers)  # one batch: the writer has not run yet
        pool.close()
        await pool.run()

    failed = trackers["shard-0"]
    assert isinstance(failed.failure, PoisonRecordError)
    assert "stream record 98 of shard shard-0" in str(failed.failure)
    assert failed.cancelled
    assert failed.checkpointable == records[1].sequence_number
    assert stats.poison_records == 1
    assert destination.rejected >= 1
    applied = {write.key for write in destination.log}
    assert {records[i].key for i in (0, 1, 2, 4)} <= applied
    assert records[3].key not in applied
    other = trackers["shard-1"]
    assert other.failure is None
    assert other.drained
    assert other.checkpointable == records[4].sequence_number
    # The shard's wait for its writes ends with the poison record's error.
    with pytest.raises(PoisonRecordError) as caught:
        await failed.wait_drained()
    assert caught.value is failed.failure


async def test_other_rejections_fail_every_shard_of_the_batch() -> None:
    destination = FakeDestination()
    destination.fault = lambda call: AccessDeniedError(
        "BatchWriteItem: AccessDeniedException: no", code="AccessDeniedException",
        operation="BatchWriteItem",
    )
    pool = WriterPool(destination, writers=1, queue_size=100, stats=Stats(), backoff=FAST,
                      clock=CLOCK)
    records = [make_record(i, Op(i, False, i % 2)) for i in range(4)]
    trackers = {"shard-0": CheckpointTracker("TRIM_HORIZON"),
                "shard-1": CheckpointTracker("TRIM_HORIZON")}
    async with asyncio.timeout(5):
        await enqueue(pool, records, trackers)
        pool.close()
        await pool.run()
    for tracker in trackers.values():
        assert isinstance(tracker.failure, AccessDeniedError)
        assert tracker.checkpointable == "TRIM_HORIZON"
    assert destination.log == []


async def test_records_of_a_stopped_shard_are_dropped_but_not_a_live_shards() -> None:
    # A lease was lost with records still queued; the shard was taken again and its
    # new consumer re-read the same keys. The stale records must be dropped, and the
    # new ones applied, even when both land in one batch.
    destination = FakeDestination()
    pool = WriterPool(destination, writers=1, queue_size=100, stats=Stats(), backoff=FAST,
                      clock=CLOCK)
    stale, fresh = CheckpointTracker("TRIM_HORIZON"), CheckpointTracker("TRIM_HORIZON")
    old = [make_record(i, Op(i % 2, False, 0)) for i in range(4)]
    new = [make_record(i + 4, Op(i % 2, False, 0)) for i in range(4)]
    async with asyncio.timeout(5):
        await enqueue(pool, old, {"shard-0": stale})
        stale.cancelled = True  # what the coordinator does when the lease is lost
        await enqueue(pool, new, {"shard-0": fresh})
        pool.close()
        await pool.run()

    assert fresh.drained
    assert fresh.checkpointable == new[-1].sequence_number
    assert destination.table == expected_table(new)
    stale_payloads = {id(payload(record)) for record in old}
    assert not any(id(write.payload) in stale_payloads for write in destination.log)
    assert stale.checkpointable == "TRIM_HORIZON"


async def test_a_full_queue_makes_the_reader_wait() -> None:
    destination = FakeDestination()
    gate = asyncio.Event()
    real_write = destination.batch_write

    async def slow_write(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        await gate.wait()
        return await real_write(requests)

    destination.batch_write = slow_write  # type: ignore[method-assign]
    pool = WriterPool(destination, writers=1, queue_size=25, stats=Stats(), backoff=FAST,
                      clock=CLOCK)
    tracker = CheckpointTracker("TRIM_HORIZON")
    records = [make_record(i, Op(i, False, 0)) for i in range(60)]
    handed = 0
    progress = asyncio.Condition()

    async def feed() -> None:
        nonlocal handed
        for record in records:
            await pool.put(WorkItem(record, tracker.add(record.sequence_number, 0.0), tracker))
            handed += 1
            async with progress:
                progress.notify_all()

    writers = asyncio.create_task(pool.run())
    feeder = asyncio.create_task(feed())
    # The writer holds a batch of 25 in flight, blocked; 25 more fill its queue.
    async with asyncio.timeout(5), progress:
        await progress.wait_for(lambda: handed == 50)
    for _ in range(20):  # give the reader every chance to go on: it must not
        await asyncio.sleep(0)
    assert handed == 50
    assert not feeder.done()
    assert pool.queue_depth() == 25
    assert destination.log == []
    gate.set()
    async with asyncio.timeout(5):
        await feeder
        pool.close()
        await writers
    assert destination.table == expected_table(records)
    assert tracker.checkpointable == records[-1].sequence_number


async def test_close_abandoning_the_queue_finishes_only_the_batch_in_flight() -> None:
    # A graceful hand-over: the batch being written completes and is checkpointable;
    # what is still queued is never marked done, so no checkpoint passes it.
    destination = FakeDestination()
    sending = asyncio.Event()
    gate = asyncio.Event()
    real_write = destination.batch_write

    async def slow_write(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        sending.set()
        await gate.wait()
        return await real_write(requests)

    destination.batch_write = slow_write  # type: ignore[method-assign]
    pool = WriterPool(destination, writers=1, queue_size=100, stats=Stats(), backoff=FAST,
                      clock=CLOCK)
    tracker = CheckpointTracker("TRIM_HORIZON")
    records = [make_record(i, Op(i, False, 0)) for i in range(60)]
    async with asyncio.timeout(5):
        await enqueue(pool, records[:25], {"shard-0": tracker})
        writers = asyncio.create_task(pool.run())
        await sending.wait()  # the first 25 are in flight
        await enqueue(pool, records[25:], {"shard-0": tracker})
        pool.close(abandon_queued=True)
        gate.set()
        await writers
    assert destination.table == expected_table(records[:25])
    assert len(destination.batches) == 1
    assert tracker.checkpointable == records[24].sequence_number
    assert not tracker.drained
