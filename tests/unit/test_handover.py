"""The stream's start after a bootstrap copy: ``SINCE:`` skips what the copy holds, and a
shard handed over by the copy is read from its watcher's iterator, nothing older."""

from __future__ import annotations

import pytest

from replicator.lease import Lease
from replicator.leases.held import HeldLease
from tests.fakes import STREAM_ARN, FakeDestination, FakeLeaseStore, FakeStream, item, key_of
from tests.unit.harness import CLOCK, Replication, applied_sequence_numbers, caught_up

pytestmark = pytest.mark.timeout(10)


class Wall:
    """The source's wall clock, set by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_a_since_start_skips_the_records_created_before_that_second() -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    wall = Wall(1_000_000.0)
    stream.wall_clock = wall
    shard = stream.add_shard()
    old = [stream.put(shard, item(f"k{v % 3}", v=v)) for v in range(6)]
    old.append(stream.delete(shard, key_of("k0")))
    wall.now = 1_000_010.9  # the copy began in this second
    same_second = stream.put(shard, item("k1", v=100))
    wall.now = 1_000_020.0
    later = [stream.put(shard, item(f"k{v % 3}", v=v)) for v in range(200, 205)]
    await store.plant(Lease(STREAM_ARN, shard, None, None, 0, "SINCE:1000010"))

    async with Replication(stream, dest, store) as replication:
        await store.wait_until(caught_up(stream))

    applied = applied_sequence_numbers(stream, dest)
    assert not set(old) & set(applied)
    assert set(later) <= set(applied)
    assert dest.table == stream.source  # every key was written again after the copy
    # Only the records older than the copy's second: not the one of that second.
    assert replication.stats.records_skipped == len(old)
    assert same_second not in old
    row = store.row(shard)
    assert row is not None
    assert row.checkpoint == later[-1]


@pytest.mark.parametrize("start", ["SINCE:1000010", "AT:{later}"])
async def test_a_start_left_by_an_unfinished_copy_is_not_used_by_a_worker_that_does_not_copy(
    start: str,
) -> None:
    """A copy that stopped before its end (a refused item, then ``bootstrap never``) holds
    only part of the table: its ``SINCE:``/``AT:`` start would pass over the records of
    the items it never reached. Such a shard starts at the initial position instead."""
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    wall = Wall(1_000_000.0)
    stream.wall_clock = wall
    shard = stream.add_shard()
    old = [stream.put(shard, item(f"k{v}", v=v)) for v in range(4)]
    wall.now = 1_000_010.0
    later = stream.put(shard, item("k9", v=9))
    await store.plant(Lease(STREAM_ARN, shard, None, None, 0, start.format(later=later)))

    async with Replication(stream, dest, store, copy_unfinished=True) as replication:
        await store.wait_until(caught_up(stream))

    assert sorted(applied_sequence_numbers(stream, dest)) == sorted([*old, later])
    assert dest.table == stream.source
    assert replication.stats.records_skipped == 0


async def test_skipping_ends_at_the_first_record_of_the_copys_second_or_later() -> None:
    """Records come in write order: once one is as new as the copy, every later one is
    newer, whatever its (approximate) creation time says."""
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    wall = Wall(2_000_000.0)
    stream.wall_clock = wall
    shard = stream.add_shard()
    stream.put(shard, item("a", v=1))
    wall.now = 2_000_005.0
    new = stream.put(shard, item("b", v=2))
    wall.now = 2_000_004.0  # a stamp a little behind: written later all the same
    behind = stream.put(shard, item("c", v=3))
    await store.plant(Lease(STREAM_ARN, shard, None, None, 0, "SINCE:2000005"))

    async with Replication(stream, dest, store) as replication:
        await store.wait_until(caught_up(stream))

    assert set(applied_sequence_numbers(stream, dest)) == {new, behind}
    assert replication.stats.records_skipped == 1


async def test_a_shard_handed_over_by_the_copy_is_read_from_the_watchers_iterator() -> None:
    """Everything the watcher's iterator reads is applied, even records whose stamp is
    rounded down to well before the copy's second (DynamoDB Local's are, to the minute)."""
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    wall = Wall(3_000_000.0)
    stream.wall_clock = wall
    shard = stream.add_shard()
    for v in range(20):
        stream.put(shard, item(f"old-{v}", v=v))
    head = await stream.get_shard_iterator(STREAM_ARN, shard, "LATEST")
    row = Lease(STREAM_ARN, shard, None, None, 0, "SINCE:3000100")
    await store.plant(row)
    taken = await store.update_lease(row, new_owner="worker-1")
    held = HeldLease(store, taken, clock=CLOCK, lease_duration=30.0)
    new = [stream.put(shard, item(f"new-{v}", v=v)) for v in range(5)]
    before = len(stream.calls)

    async with Replication(stream, dest, store, adopted={shard: (held, head)}):
        await store.wait_until(caught_up(stream))

    assert applied_sequence_numbers(stream, dest) != []
    assert set(applied_sequence_numbers(stream, dest)) == set(new)
    reads = [c for c in stream.calls[before:] if c.shard_id == shard]
    assert reads
    assert {c.operation for c in reads} == {"GetRecords"}  # no iterator asked for
    assert min(c.position for c in reads if c.position is not None) == 20
