"""Lease fences: a shard's records are read and written only while its lease is surely held.

A worker's hold on a lease lasts a lease duration after its last successful lease
write was sent (``LeaseFence``). Writers start a BatchWriteItem only if it ends
within that hold (``write_window``), the reader calls GetRecords only within it,
and both wait while renewals fail. A renewal that meets a failed condition means
another worker has the lease: the shard stops and its pending records are dropped.
Also here: the adaptive GetRecords limit, which shrinks when reads time out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from replicator.leases.fence import LeaseFence
from replicator.leases.held import HeldLease
from replicator.stream.consumer import ShardConsumer, ShardState
from replicator.stream.reader import GROW_AFTER
from tests.fakes import (
    Call,
    ErrorFactory,
    FakeDestination,
    FakeLeaseStore,
    FakeStream,
    item,
    throttled,
    timed_out,
    when,
)
from tests.unit.harness import (
    CLOCK,
    LeaseWrite,
    RecordingDestination,
    Replication,
    applied_sequence_numbers,
    caught_up,
    duplicate_writes,
    guard_checkpoints,
    time_lease_writes,
)

LEASE_DURATION = 0.4
WRITE_WINDOW = 0.15
RENEW = 0.05
FENCED: dict[str, Any] = {
    "lease_duration": LEASE_DURATION,
    "write_window": WRITE_WINDOW,
    "lease_renew_interval": RENEW,
    "coordinator_interval": 0.02,
}


# -- LeaseFence alone ------------------------------------------------------------------


def test_a_fence_allows_writes_that_end_within_a_lease_duration_of_the_last_renewal() -> None:
    fence = LeaseFence(10.0, sent_at=100.0)
    assert fence.valid_until == 110.0
    assert fence.allows(100.0, 0.0)
    assert fence.allows(109.5, 0.5)  # ends exactly when the hold could lapse
    assert not fence.allows(109.75, 0.5)  # would end after it
    assert fence.allows(110.0, 0.0)
    assert not fence.allows(110.25, 0.0)


def test_a_renewal_extends_the_fence_and_a_late_older_one_never_shortens_it() -> None:
    fence = LeaseFence(10.0, sent_at=100.0)
    fence.renewed(105.0)
    assert fence.valid_until == 115.0
    assert fence.allows(112.0, 2.5)
    # A renewal sent earlier whose answer came later proves nothing newer.
    fence.renewed(101.0)
    assert fence.valid_until == 115.0


def test_a_revoked_fence_allows_nothing_and_no_renewal_reopens_it() -> None:
    fence = LeaseFence(10.0, sent_at=100.0)
    fence.revoke()
    assert fence.revoked
    assert not fence.allows(100.0, 0.0)
    fence.renewed(200.0)
    assert not fence.allows(201.0, 0.0)


async def test_wait_changed_wakes_on_each_renewal_and_revocation_and_only_on_new_ones() -> None:
    fence = LeaseFence(10.0, sent_at=100.0)
    fence.renewed(101.0)  # a change before anyone waits does not wake a later waiter
    first = asyncio.ensure_future(fence.wait_changed())
    await asyncio.sleep(0)
    assert not first.done()

    fence.renewed(102.0)
    async with asyncio.timeout(1):
        await first
    second = asyncio.ensure_future(fence.wait_changed())
    for _ in range(3):
        await asyncio.sleep(0)
    assert not second.done()  # the renewal that woke the first waiter is spent

    fence.revoke()
    async with asyncio.timeout(1):
        await second


# -- a shard whose renewals fail --------------------------------------------------------


class ReadLog:
    """Timestamps of the stream's calls (``CLOCK.stamp``)."""

    def __init__(self, stream: FakeStream) -> None:
        self.calls: list[tuple[float, Call]] = []
        stream.on_call = lambda call: self.calls.append((CLOCK.stamp(), call))

    def reads(self, shard_id: str) -> list[float]:
        return [at for at, call in self.calls
                if call.operation == "GetRecords" and call.shard_id == shard_id]


class FailingRenewals:
    """Makes every UpdateItem (renewals, checkpoints) fail while ``failing`` is set."""

    def __init__(self, store: FakeLeaseStore, error: ErrorFactory) -> None:
        self.failing = False
        store.fault = when(lambda call: self.failing and call.operation == "UpdateItem", error)


def last_success_before(writes: list[LeaseWrite], shard_id: str, moment: float) -> float:
    return max(w.at for w in writes
               if w.operation == "UpdateItem" and w.lease.shard_id == shard_id and w.at < moment)


def first_success_after(writes: list[LeaseWrite], shard_id: str, moment: float) -> float:
    return min(w.at for w in writes
               if w.operation == "UpdateItem" and w.lease.shard_id == shard_id and w.at > moment)


def put_many(stream: FakeStream, shard_id: str, start: int, count: int) -> list[str]:
    return [stream.put(shard_id, item(f"k{v % 7}", v=v)) for v in range(start, start + count)]


def closed_for_writes(held: HeldLease) -> Callable[[object], bool]:
    return lambda _: not held.fence.allows(CLOCK.monotonic(), WRITE_WINDOW)


def closed_for_reads(held: HeldLease) -> Callable[[object], bool]:
    return lambda _: not held.fence.allows(CLOCK.monotonic(), 0.0)


async def hold_records_behind_a_closed_fence(
    replication: Replication, stream: FakeStream, shard: str, renewals: FailingRenewals,
) -> tuple[HeldLease, list[str]]:
    """Fail the renewals until the writers' fence closes, then have the reader (whose
    fence closes ``WRITE_WINDOW`` later) read records the writers must hold back."""
    held = replication.coordinator.held[replication.key(shard)]
    renewals.failing = True
    # The idle reader calls GetRecords every few milliseconds, re-checking the condition.
    await stream.wait_until(closed_for_writes(held), within=2.0)
    assert held.fence.allows(CLOCK.monotonic(), 0.0), "reads closed with the writes"
    held_back = put_many(stream, shard, 1000, 6)
    await stream.wait_until(lambda _: stream.delivered.get(shard) == held_back[-1], within=1.0)
    return held, held_back


@pytest.mark.parametrize("error", [throttled, timed_out], ids=["throttled", "timed-out"])
async def test_a_closed_fence_holds_the_shards_reads_and_writes_until_a_renewal_succeeds(
    error: ErrorFactory,
) -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    checkpoints = guard_checkpoints(stream, dest, store)
    lease_writes = time_lease_writes(store)
    reads = ReadLog(stream)
    renewals = FailingRenewals(store, error)
    recording = RecordingDestination(dest, stream)
    shard = stream.add_shard()
    put_many(stream, shard, 0, 10)

    async with Replication(stream, dest, store, writes_through=recording,
                           **FENCED) as replication:
        await dest.wait_until(lambda table: table == stream.source)
        held, held_back = await hold_records_behind_a_closed_fence(
            replication, stream, shard, renewals)
        await store.wait_until(closed_for_reads(held), within=2.0)
        unread = put_many(stream, shard, 2000, 4)  # written while the reader may not read
        await store.wait_for_calls("Query", store.counts["Query"] + 10)  # a while, closed
        assert not set(held_back + unread) & set(applied_sequence_numbers(stream, dest))
        assert stream.delivered[shard] == held_back[-1]  # nothing read since
        consumer, _ = replication.coordinator.consumers[replication.key(shard)]
        assert consumer.lanes[0].tracker.in_flight == len(held_back)

        reopening = CLOCK.stamp()
        renewals.failing = False
        await store.wait_until(caught_up(stream), within=3.0)
        await dest.wait_until(lambda table: table == stream.source, within=1.0)

    assert replication.coordinator.fatal is None
    assert store.injected["UpdateItem"] > 0
    last_renewed = last_success_before(lease_writes, shard, reopening)
    reopened = first_success_after(lease_writes, shard, reopening)
    # The fence was sent no later than the last success was seen: it closed by then.
    writes_closed = (last_renewed + LEASE_DURATION - WRITE_WINDOW, reopened)
    reads_closed = (last_renewed + LEASE_DURATION, reopened)
    assert reads_closed[1] - reads_closed[0] > 0.1  # the fence stayed closed a while
    assert [b for b in recording.batches_of(shard)
            if writes_closed[0] <= b.started <= writes_closed[1]] == []
    assert [at for at in reads.reads(shard) if reads_closed[0] <= at <= reads_closed[1]] == []
    # Writes and reads went on once the renewal came through.
    first_held_back_write = min(b.started for b in recording.batches_of(shard)
                                if set(held_back) & set(b.sequence_numbers))
    assert first_held_back_write > reopened
    assert any(at > reopened for at in reads.reads(shard))
    assert replication.stats.fence_waits > 0
    assert duplicate_writes(stream, dest) == []
    assert checkpoints == []


async def test_a_reader_retrying_failed_reads_stops_calling_once_its_fence_closes() -> None:
    # A partition: the lease table and the stream both fail. The reader, stuck in its
    # GetRecords retry loop, must not go on reading a shard another worker may own.
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    lease_writes = time_lease_writes(store)
    reads = ReadLog(stream)
    renewals = FailingRenewals(store, throttled)
    partitioned = False
    stream.get_records_fault = when(lambda call: partitioned)
    shard = stream.add_shard()
    put_many(stream, shard, 0, 10)

    async with Replication(stream, dest, store, **FENCED) as replication:
        await dest.wait_until(lambda table: table == stream.source)
        held = replication.coordinator.held[replication.key(shard)]
        renewals.failing = partitioned = True
        await store.wait_until(closed_for_reads(held), within=2.0)
        await store.wait_for_calls("Query", store.counts["Query"] + 10)
        healed = CLOCK.stamp()
        renewals.failing = partitioned = False
        more = put_many(stream, shard, 100, 5)
        await dest.wait_until(lambda table: table == stream.source)

    assert replication.coordinator.fatal is None
    assert stream.injected["GetRecords"] > 0
    last_renewed = last_success_before(lease_writes, shard, healed)
    reopened = first_success_after(lease_writes, shard, healed)
    assert [at for at in reads.reads(shard)
            if last_renewed + LEASE_DURATION <= at <= reopened] == []
    assert set(more) <= set(applied_sequence_numbers(stream, dest))


async def test_a_lease_taken_while_the_fence_was_closed_drops_the_held_back_records() -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    reads = ReadLog(stream)
    renewals = FailingRenewals(store, throttled)
    recording = RecordingDestination(dest, stream)
    shard = stream.add_shard()
    put_many(stream, shard, 0, 10)

    async with Replication(stream, dest, store, writes_through=recording,
                           **FENCED) as replication:
        await dest.wait_until(lambda table: table == stream.source)
        held, held_back = await hold_records_behind_a_closed_fence(
            replication, stream, shard, renewals)
        consumer, task = replication.coordinator.consumers[replication.key(shard)]
        tracker = consumer.lanes[0].tracker
        # Another worker takes the lease meanwhile (its lease duration went by).
        row = store.row(shard)
        assert row is not None
        thief = replace(row, owner="worker-thief", counter=row.counter + 10)
        await store.plant(thief)

        async def thief_renews() -> None:
            """The thief is alive: its lease never expires under this worker's eyes."""
            while True:
                await CLOCK.sleep(RENEW)
                current = store.row(shard)
                assert current is not None
                await store.plant(replace(current, counter=current.counter + 1))

        renewing = asyncio.create_task(thief_renews())
        renewals.failing = False
        async with asyncio.timeout(2):
            await asyncio.wait([task])
        dropped_at = CLOCK.stamp()
        assert replication.key(shard) not in replication.coordinator.held
        assert replication.key(shard) not in replication.coordinator.consumers
        assert held.lost
        assert tracker.cancelled
        later = put_many(stream, shard, 3000, 3)
        await store.wait_for_calls("Query", store.counts["Query"] + 10)
        renewing.cancel()

    assert replication.coordinator.fatal is None
    # Never written by this worker again, not even at shutdown: only the thief's renewals.
    since_theft = store.history[store.history.index(("plant", thief)) + 1:]
    assert [(operation, row) for operation, row in since_theft
            if row.shard_id == shard and operation != "plant"] == []
    final = store.row(shard)
    assert final is not None
    assert final.owner == "worker-thief"
    applied = set(applied_sequence_numbers(stream, dest))
    assert not set(held_back) & applied
    assert not set(later) & applied
    assert [b for b in recording.batches_of(shard)
            if set(held_back) & set(b.sequence_numbers)] == []
    assert [at for at in reads.reads(shard) if at > dropped_at] == []
    assert tracker.in_flight == len(held_back)  # dropped: never marked applied
    assert consumer.state in (ShardState.SHUTTING_DOWN, ShardState.FAILED)


class StallingDestination(RecordingDestination):
    """Stalls the whole process (a long GC pause, a suspended VM) for ``seconds`` inside
    its ``on_call``-th BatchWriteItem, by moving the clock on while nothing runs."""

    def __init__(self, destination: FakeDestination, stream: FakeStream, *, on_call: int,
                 seconds: float) -> None:
        super().__init__(destination, stream)
        self._on_call = on_call
        self._seconds = seconds
        self.calls = 0
        self.stalled_at: float | None = None

    async def batch_write(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.calls += 1
        left = await super().batch_write(requests)
        if self.calls == self._on_call:  # applied; the answer is on its way back
            CLOCK.advance(self._seconds)
            self.stalled_at = CLOCK.stamp()
        return left


async def test_a_process_stalled_past_its_lease_neither_reads_nor_writes_until_renewed(
    clock: Any,
) -> None:
    # After the stall every timer is late: the renewal, the reader's idle wait and the
    # writers' next batch all become due together. None of the reads or writes may go
    # out before a renewal has proved the lease still this worker's.
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    lease_writes = time_lease_writes(store)
    reads = ReadLog(stream)
    shard = stream.add_shard()
    put_many(stream, shard, 0, 30)
    stalling = StallingDestination(dest, stream, on_call=2, seconds=3 * LEASE_DURATION)

    async with Replication(stream, dest, store, writes_through=stalling, writers=1,
                           queue_size=25, get_records_limit=5, **FENCED) as replication:
        await dest.wait_until(lambda table: table == stream.source)
        more = put_many(stream, shard, 100, 5)
        await dest.wait_until(lambda table: table == stream.source)

    assert replication.coordinator.fatal is None
    stalled_at = stalling.stalled_at
    assert stalled_at is not None
    renewed = first_success_after(lease_writes, shard, stalled_at)
    after = [b for b in stalling.batches_of(shard) if b.started > stalled_at]
    assert after, "nothing was written after the stall"
    assert min(b.started for b in after) > renewed
    assert min(at for at in reads.reads(shard) if at > stalled_at) > renewed
    assert replication.stats.fence_waits > 0
    assert set(more) <= set(applied_sequence_numbers(stream, dest))
    assert clock.monotonic() - stalled_at < LEASE_DURATION  # the shard went on at once


# -- the adaptive GetRecords limit ------------------------------------------------------


async def test_reads_that_time_out_shrink_the_limit_which_grows_back_when_pages_arrive() -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    checkpoints = guard_checkpoints(stream, dest, store)
    slow = True
    # A page of more than 50 records takes longer than the call timeout.
    stream.get_records_fault = when(
        lambda call: slow and call.limit is not None and call.limit > 50, timed_out
    )
    shard = stream.add_shard()
    put_many(stream, shard, 0, 400)

    async with Replication(stream, dest, store, get_records_limit=200,
                           writers=2, queue_size=400) as replication:
        await dest.wait_until(lambda table: table == stream.source)
        consumer: ShardConsumer = replication.coordinator.consumers[replication.key(shard)][0]
        await store.wait_until(caught_up(stream))
        slow_calls = len(stream.calls)
        limit_when_slow = consumer.reader.limit

        slow = False
        put_many(stream, shard, 400, 300)
        await store.wait_until(caught_up(stream))
        await dest.wait_until(lambda table: table == stream.source)
        # The limit grows back by doubling after GROW_AFTER pages in a row.
        await stream.wait_until(
            lambda calls: [c.limit for c in calls if c.operation == "GetRecords"][-3:]
            == [200, 200, 200]
        )
        limit_after = consumer.reader.limit

    during = [c.limit for c in stream.calls[:slow_calls] if c.operation == "GetRecords"]
    after = [c.limit for c in stream.calls[slow_calls:] if c.operation == "GetRecords"]
    # Halved after each timeout until a page came; doubled only after GROW_AFTER pages
    # in a row, so a lasting slowness times out one read in GROW_AFTER or fewer.
    assert during[:3] == [200, 100, 50]
    assert stream.injected["GetRecords"] == sum(1 for limit in during if limit and limit > 50)
    assert stream.injected["GetRecords"] >= 2
    assert stream.injected["GetRecords"] <= 2 + len(during) / GROW_AFTER
    assert replication.stats.retries["GetRecords"] == stream.injected["GetRecords"]
    assert set(during) <= {200, 100, 50}
    assert limit_when_slow <= 100
    # Once pages come quickly the limit is back at the configured maximum.
    assert after
    assert after[-3:] == [200, 200, 200]
    assert limit_after == 200
    print(f"\nslow phase: {len(during)} GetRecords, {stream.injected['GetRecords']} timed out; "
          f"after: {after[:6]}...")
    assert dest.table == stream.source
    assert duplicate_writes(stream, dest) == []
    assert checkpoints == []
