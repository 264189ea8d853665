"""Shard lineage through the real coordinator, writer pool and shard consumers.

A child shard must not be read before its parent is read to its end (its lease
at SHARD_END), or an older image of an item could overwrite a newer one. A
parent the stream no longer lists must not block its child; a listed one must.
"""

from __future__ import annotations

from dataclasses import replace

from replicator.checkpoint import Sentinel
from replicator.lease import Lease
from replicator.stream.lineage import progressed
from tests.fakes import STREAM_ARN, Call, FakeDestination, FakeLeaseStore, FakeStream, item
from tests.unit.harness import (
    WORKER,
    Replication,
    caught_up,
    deleted_when_finished,
    duplicate_writes,
    finished_and_released,
    guard_checkpoints,
)


def watch_lineage(stream: FakeStream, store: FakeLeaseStore) -> list[str]:
    """Record every read of a shard whose listed parent's lease is not yet at SHARD_END,
    and every deletion of a finished row before all its children were read.

    Chains to the store's observer already set (``guard_checkpoints``): call it after.
    """
    violations: list[str] = []
    chained = store.observer

    def deleted(operation: str, row: Lease) -> None:
        if chained is not None:
            chained(operation, row)
        if operation != "DeleteItem":
            return
        children = [shard_id for shard_id, shard in stream.shards.items()
                    if shard.parent_shard_id == row.shard_id]
        unread = [kid for kid in children
                  if (lease := store.row(kid)) is None or not progressed(lease)]
        if not row.finished or unread:
            violations.append(f"{row.shard_id} deleted at {row.checkpoint} with children "
                              f"{unread} not read")

    def check(call: Call) -> None:
        if call.operation not in ("GetShardIterator", "GetRecords") or call.shard_id is None:
            return
        parent = stream.shards[call.shard_id].parent_shard_id
        if parent is None or parent not in stream.shards or not stream.shards[parent].listed:
            return
        row = store.row(parent)
        if row is None and deleted_when_finished(store, parent):
            return
        if row is None or not row.finished:
            violations.append(
                f"{call.operation} on {call.shard_id} while its parent {parent} is at "
                f"{row.checkpoint if row else 'no lease'}"
            )

    stream.on_call = check
    store.observer = deleted
    return violations


def last_sequence_number(stream: FakeStream, shard_id: str) -> str:
    return str(stream.records(shard_id)[-1]["dynamodb"]["SequenceNumber"])


async def test_splits_while_running_keep_lineage_and_order() -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    checkpoints = guard_checkpoints(stream, dest, store)
    lineage = watch_lineage(stream, store)
    root = stream.add_shard()
    version = 0

    def write(shard_id: str, count: int, shared: list[str]) -> None:
        # Keys handed down the lineage (order across parent and child matters),
        # and keys of this shard alone (so that each shard shows in the table).
        # As in DynamoDB, after a split each key belongs to one of the children.
        nonlocal version
        for index in range(count):
            version += 1
            pk = shared[index % len(shared)] if index % 2 else f"{shard_id}-{index % 3}"
            if index % 7 == 6:
                stream.delete(shard_id, {"pk": {"S": pk}})
            else:
                stream.put(shard_id, item(pk, v=version))

    write(root, 40, ["k0", "k1", "k2", "k3"])
    # Small pages: the parent takes many reads, so an early child would show.
    async with Replication(stream, dest, store, get_records_limit=3) as replication:
        await dest.wait_until(lambda table: table == stream.source)
        left, right = stream.split(root)
        write(left, 20, ["k0", "k1"])
        write(right, 20, ["k2", "k3"])
        grandchildren = stream.split(left)
        write(grandchildren[0], 15, ["k0"])
        write(grandchildren[1], 15, ["k1"])
        write(right, 5, ["k2", "k3"])
        await store.wait_until(caught_up(stream))
        # The finished parents' rows go once their children have been read; reading
        # goes on meanwhile (``lineage`` checks the order of reads and deletions).
        await store.wait_until(lambda rows: root not in rows and left not in rows)
    assert replication.coordinator.fatal is None

    assert lineage == []
    assert checkpoints == []
    assert dest.violations == []
    assert duplicate_writes(stream, dest) == []
    assert dest.table == stream.source
    assert deleted_when_finished(store, root)
    assert deleted_when_finished(store, left)
    # Open shards are released at shutdown with everything they applied checkpointed.
    for shard_id in (right, *grandchildren):
        row = store.row(shard_id)
        assert row is not None
        assert (row.checkpoint, row.owner) == (last_sequence_number(stream, shard_id), None)


async def test_closed_lineage_present_at_start_is_read_parent_first() -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    checkpoints = guard_checkpoints(stream, dest, store)
    lineage = watch_lineage(stream, store)
    root = stream.add_shard()
    for version in range(30):
        stream.put(root, item("hot", v=version))
    children = stream.split(root)
    for version in range(30, 50):
        stream.put(children[0], item("hot", v=version))
    grandchildren = stream.split(children[0])
    for version in range(50, 60):
        stream.put(grandchildren[1], item("hot", v=version))
        stream.put(children[1], item(f"cold{version}", v=version))
    # Every image of "hot" except the last would be wrong at the end if a child ran early.

    async with Replication(stream, dest, store, get_records_limit=4, writers=3):
        await store.wait_until(caught_up(stream))

    assert lineage == []
    assert checkpoints == []
    assert duplicate_writes(stream, dest) == []
    assert dest.table[(("pk", "S", "hot"),)]["v"] == {"N": "59"}
    # The child is first read only after its parent's last GetRecords.
    first_child_read = min(stream.calls.index(c) for c in stream.calls_on(children[0]))
    last_parent_read = max(stream.calls.index(c) for c in stream.calls_on(root))
    assert last_parent_read < first_child_read


async def test_child_of_an_unlisted_parent_starts() -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    # The parent was trimmed long ago: DescribeStream never lists it.
    orphan = stream.add_shard(parent_shard_id="shardId-trimmed-long-ago")
    for version in range(5):
        stream.put(orphan, item(f"k{version}", v=version))

    async with Replication(stream, dest, store):
        await dest.wait_until(lambda table: table == stream.source)

    assert dest.table == stream.source


async def test_unlisted_parent_with_an_unfinished_lease_does_not_block() -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    parent = stream.add_shard()
    stream.put(parent, item("a", v=1))
    (child,) = stream.split(parent, children=1)
    stream.put(child, item("b", v=2))
    # Another live worker still holds the parent's row, never finished: the shard
    # was trimmed before it got to the end. The stream no longer lists it.
    await store.plant(Lease(STREAM_ARN, parent, None, "other-worker", 7, "100"))
    stream.unlist(parent)

    async with Replication(stream, dest, store):
        await dest.wait_until(lambda table: (("pk", "S", "b"),) in table)

    assert stream.calls_on(parent) == []
    assert store.row(parent) == Lease(STREAM_ARN, parent, None, "other-worker", 7, "100")


async def test_finished_parent_no_longer_listed_is_deleted_and_child_runs() -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    parent = stream.add_shard()
    stream.put(parent, item("a", v=1))
    (child,) = stream.split(parent, children=1)
    stream.put(child, item("a", v=2))
    await store.plant(Lease(STREAM_ARN, parent, None, None, 3, Sentinel.SHARD_END))
    await store.plant(Lease(STREAM_ARN, child, parent, None, 0, Sentinel.TRIM_HORIZON))
    stream.unlist(parent)

    async with Replication(stream, dest, store):
        await store.wait_until(lambda rows: parent not in rows)
        await dest.wait_until(lambda table: table == stream.source)

    assert ("DeleteItem", Lease(STREAM_ARN, parent, None, None, 3, Sentinel.SHARD_END)) in (
        store.history
    )
    assert stream.calls_on(parent) == []


async def test_listed_parent_held_elsewhere_blocks_its_child_until_finished() -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    parent = stream.add_shard()
    stream.put(parent, item("a", v=1))
    (child,) = stream.split(parent, children=1)
    stream.put(child, item("a", v=2))
    # Another worker is reading the parent; its lease is fresh (30 s duration).
    held_elsewhere = Lease(STREAM_ARN, parent, None, "other-worker", 4, "95")
    await store.plant(held_elsewhere)

    async with Replication(stream, dest, store):
        # The child's lease is created and taken, but several cycles go by unread.
        await store.wait_until(lambda rows: child in rows and rows[child].owner == WORKER)
        await store.wait_for_calls("Query", store.counts["Query"] + 5)
        assert stream.calls_on(child) == []
        assert stream.calls_on(parent) == []
        assert dest.table == {}

        # The other worker reaches the parent's end: the child starts.
        await store.plant(replace(held_elsewhere, owner=None, counter=5,
                                  checkpoint=Sentinel.SHARD_END))
        await dest.wait_until(lambda table: table == stream.source)

    assert stream.calls_on(parent) == []
    assert [c.iterator_type for c in stream.calls_on(child, "GetShardIterator")] == [
        "TRIM_HORIZON"
    ]


async def test_first_start_at_latest_skips_the_past() -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    old = stream.add_shard()
    stream.put(old, item("old", v=1))
    (current,) = stream.split(old, children=1)
    stream.put(current, item("before-start", v=2))

    async with Replication(stream, dest, store, initial_position=Sentinel.LATEST):
        await stream.wait_until(
            lambda calls: any(c.operation == "GetRecords" and c.shard_id == current
                              for c in calls)
        )
        stream.put(current, item("after-start", v=3))
        await dest.wait_until(lambda table: (("pk", "S", "after-start"),) in table)

    assert list(dest.table) == [(("pk", "S", "after-start"),)]
    # Created at SHARD_END (it lies before the starting point), never owned; deleted once
    # its child checkpointed, if that came before the end.
    assert ("PutItem", Lease(STREAM_ARN, old, None, None, 0, Sentinel.SHARD_END)) in store.history
    assert finished_and_released(store, old)
    assert stream.calls_on(old) == []
