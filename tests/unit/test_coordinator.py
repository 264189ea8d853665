"""The coordinator's lease handling over the fakes: losing a lease, resuming from a
checkpoint, taking over a dead worker's lease, and shutting down."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from replicator.checkpoint import Sentinel
from replicator.errors import DataLossError
from replicator.lease import Lease
from replicator.records import RecordsPage, sequence_key
from tests.fakes import STREAM_ARN, Call, FakeDestination, FakeLeaseStore, FakeStream, item
from tests.unit.harness import (
    WORKER,
    Replication,
    applied_sequence_numbers,
    caught_up,
    duplicate_writes,
    guard_checkpoints,
)


def write(stream: FakeStream, shard_id: str, versions: range) -> list[str]:
    return [stream.put(shard_id, item(f"k{v % 4}", v=v)) for v in versions]


async def test_a_stolen_lease_stops_the_shard_and_is_left_alone() -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    shard = stream.add_shard()
    write(stream, shard, range(5))

    async with Replication(stream, dest, store) as replication:
        await store.wait_until(caught_up(stream))
        row = store.row(shard)
        assert row is not None
        assert row.owner == WORKER
        stolen = replace(row, owner="worker-thief", counter=row.counter + 10)
        await store.plant(stolen)
        # The next renewal or checkpoint meets the failed condition.
        key = replication.key(shard)
        await store.wait_until(lambda rows: key not in replication.coordinator.held)
        await store.wait_for_calls("Query", store.counts["Query"] + 2)
        assert replication.key(shard) not in replication.coordinator.consumers
        reads = len(stream.calls_on(shard))
        late = write(stream, shard, range(5, 8))
        await store.wait_for_calls("Query", store.counts["Query"] + 5)
        assert len(stream.calls_on(shard)) == reads  # the shard is not read any more
        assert not set(late) & set(applied_sequence_numbers(stream, dest))

    assert replication.coordinator.fatal is None
    assert store.row(shard) == stolen  # never overwritten, not even at shutdown


async def test_a_restart_resumes_after_the_checkpoint() -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    checkpoints = guard_checkpoints(stream, dest, store)
    shard = stream.add_shard()
    first = write(stream, shard, range(10))
    async with Replication(stream, dest, store):
        await store.wait_until(caught_up(stream))
    row = store.row(shard)
    assert row is not None
    assert (row.owner, row.checkpoint) == (None, first[-1])

    second = write(stream, shard, range(10, 17))
    calls_before = len(stream.calls)
    async with Replication(stream, dest, store, worker_id="worker-2"):
        await store.wait_until(caught_up(stream))

    resumed = [c for c in stream.calls[calls_before:] if c.operation == "GetShardIterator"]
    assert [(c.iterator_type, c.sequence_number) for c in resumed] == [
        ("AFTER_SEQUENCE_NUMBER", first[-1])
    ]
    assert dest.table == stream.source
    assert duplicate_writes(stream, dest) == []
    assert set(second) & set(applied_sequence_numbers(stream, dest))
    assert checkpoints == []


async def test_a_dead_workers_lease_is_taken_after_the_lease_duration() -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    shard = stream.add_shard()
    done = write(stream, shard, range(6))
    rest = write(stream, shard, range(6, 12))
    # The dead worker applied the first six records and checkpointed them.
    dead = Lease(STREAM_ARN, shard, None, "worker-dead", 41, done[-1])
    await store.plant(dead)

    async with Replication(stream, dest, store, lease_duration=0.1, lease_renew_interval=0.03):
        await store.wait_until(caught_up(stream))

    assert store.owner_switches[(STREAM_ARN, shard)] >= 1
    taken = next(lease for op, lease in store.history if op == "UpdateItem")
    assert (taken.owner, taken.counter, taken.checkpoint) == (WORKER, 42, done[-1])
    applied = applied_sequence_numbers(stream, dest)
    assert not set(done) & set(applied)
    assert max(map(sequence_key, applied)) == sequence_key(rest[-1])


async def test_a_row_naming_this_worker_is_taken_back_at_once() -> None:
    # A restart under a fixed worker id: the row still names this worker. With a
    # 30 s lease duration, only taking it back at once lets the test finish.
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    shard = stream.add_shard()
    numbers = write(stream, shard, range(4))
    await store.plant(Lease(STREAM_ARN, shard, None, WORKER, 7, numbers[1]))

    async with Replication(stream, dest, store, lease_duration=30.0):
        await store.wait_until(caught_up(stream), 2.0)

    assert sorted(applied_sequence_numbers(stream, dest), key=sequence_key) == numbers[2:]


class GatedDestination(FakeDestination):
    """A destination that holds every write until the gate opens."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def batch_write(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        await self.gate.wait()
        return await super().batch_write(requests)


async def test_shutdown_finishes_writes_in_flight_checkpoints_and_releases_leaving_the_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream, dest, store = FakeStream(), GatedDestination(), FakeLeaseStore()
    checkpoints = guard_checkpoints(stream, dest, store)
    shard = stream.add_shard()
    numbers = write(stream, shard, range(30))
    replication = Replication(stream, dest, store, get_records_limit=5)
    # Open the destination only when shutdown closes the writer pool, that is once
    # the readers are stopped: the writes in flight then complete during shutdown.
    close = replication.pool.close

    def close_and_open(*, abandon_queued: bool = False) -> None:
        close(abandon_queued=abandon_queued)
        dest.gate.set()

    monkeypatch.setattr(replication.pool, "close", close_and_open)
    running_consumers: list[int] = []
    dest.on_write = lambda write: running_consumers.append(
        len(replication.coordinator.consumers)
    )

    async with replication:
        # Reading got ahead of the blocked writers.
        await stream.wait_until(lambda calls: stream.delivered.get(shard) == numbers[-1])
        row = store.row(shard)
        assert row is not None
        assert row.checkpoint == Sentinel.TRIM_HORIZON
        await replication.shutdown()

    assert replication.coordinator.fatal is None
    assert running_consumers  # the batches in flight were written...
    assert set(running_consumers) == {0}  # ...after the readers had stopped
    row = store.row(shard)
    assert row is not None
    assert row.owner is None  # released
    # The queued records were left: the checkpoint stops before them.
    assert row.checkpoint in numbers[:-1]
    assert dest.table != stream.source
    assert checkpoints == []

    # The next owner reads them again from the checkpoint: nothing is lost.
    calls_before = len(stream.calls)
    async with Replication(stream, dest, store, worker_id="worker-2") as second:
        await store.wait_until(caught_up(stream))
    resumed = [c for c in stream.calls[calls_before:] if c.operation == "GetShardIterator"]
    assert [(c.iterator_type, c.sequence_number) for c in resumed] == [
        ("AFTER_SEQUENCE_NUMBER", row.checkpoint)
    ]
    assert second.coordinator.fatal is None
    assert dest.table == stream.source
    assert checkpoints == []


class HoldingStore(FakeLeaseStore):
    """A lease store whose next Query, once armed, is held until released."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def list_leases(self, stream_arn: str) -> list[Lease]:
        if self.armed:
            self.armed = False
            self.holding.set()
            await self.release.wait()
        return await super().list_leases(stream_arn)


class StallingStream(FakeStream):
    """A stream whose ``stall_at``-th GetRecords waits for ``go``."""

    def __init__(self, stall_at: int) -> None:
        super().__init__()
        self.stall_at = stall_at
        self.go = asyncio.Event()

    async def get_records(self, iterator: str, limit: int) -> RecordsPage:
        if self.counts["GetRecords"] + 1 == self.stall_at:
            await self.go.wait()
        return await super().get_records(iterator, limit)


async def test_a_shard_that_failed_is_not_restarted_by_a_cycle_in_flight() -> None:
    # The shard fails (trimmed data) while a coordinator cycle waits on its Query.
    # When that cycle goes on, the service is stopping: the failed shard must not
    # be started again (a new consumer would read on from TRIM_HORIZON and replace
    # the tracker whose applied records the final checkpoint must record).
    stream, dest, store = StallingStream(stall_at=3), FakeDestination(), HoldingStore()
    checkpoints = guard_checkpoints(stream, dest, store)
    shard = stream.add_shard()
    numbers = [stream.put(shard, item(f"k{i}", v=i)) for i in range(10)]

    def trim_at_third_read(call: Call) -> None:
        if call.operation == "GetRecords" and call.number == 3:
            stream.trim(shard, 8)

    stream.on_call = trim_at_third_read
    async with Replication(stream, dest, store, get_records_limit=3,
                           checkpoint_interval=60.0) as replication:
        await stream.wait_until(lambda calls: stream.counts["GetRecords"] == 2)
        store.armed = True
        async with asyncio.timeout(5):
            await store.holding.wait()  # a cycle is now in flight
            stream.go.set()  # the third read meets the trimmed records: fatal
            await replication.stop.wait()
        iterators = len(stream.calls_on(shard, "GetShardIterator"))
        store.release.set()
        await replication.ended()

    assert isinstance(replication.coordinator.fatal, DataLossError)
    assert len(stream.calls_on(shard, "GetShardIterator")) == iterators
    assert set(applied_sequence_numbers(stream, dest)) == set(numbers[:6])
    row = store.row(shard)
    assert row is not None
    assert (row.owner, row.checkpoint) == (None, numbers[5])
    assert checkpoints == []


class DeadDestination:
    """A destination that never answers (each call waits until cancelled)."""

    def __init__(self) -> None:
        self.calls = 0

    async def batch_write(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.calls += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_lag_counts_the_queued_records_while_a_shutdown_waits_on_a_dead_destination(
    clock: Any,
) -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    stream.wall_clock = lambda: 5000.0  # every record was created at 5000
    shard = stream.add_shard()
    write(stream, shard, range(10))
    dead = DeadDestination()
    replication = Replication(stream, dest, store, writes_through=dead, shutdown_timeout=4.0,
                              write_window=0.5)

    async with replication:
        consumers = replication.coordinator.consumers
        key = replication.key(shard)
        await store.wait_until(lambda _: key in consumers
                               and consumers[key][0].lanes[0].tracker.in_flight == 10)
        assert replication.stats.lag_seconds(now=5060.0) == 60.0
        stopped_at = clock.monotonic()
        replication.stop.set()
        # The reader stops at once; the writers wait on the destination until the deadline.
        await store.wait_until(lambda _: not replication.coordinator.consumers)
        assert dead.calls > 0
        assert replication.stats.lag_seconds(now=5060.0) == 60.0  # not 0: records wait
        await replication.ended(within=10.0)
        ended_at = clock.monotonic()

    assert ended_at - stopped_at <= 4.0  # the shutdown deadline held
    row = store.row(shard)
    assert row is not None
    assert (row.owner, row.checkpoint) == (None, Sentinel.TRIM_HORIZON)  # released, nothing applied
    assert replication.stats.lag_seconds(now=5060.0) == 0.0  # the shard is no longer ours
