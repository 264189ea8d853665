"""The fakes behave like the real clients; the other unit tests rely on it."""

from __future__ import annotations

import asyncio
import inspect
from datetime import datetime

import pytest

from replicator.checkpoint import Sentinel
from replicator.errors import (
    ConditionFailedError,
    ExpiredIteratorError,
    ResourceNotFoundError,
    ThrottledError,
    TransientError,
    TrimmedDataError,
    ValidationError,
)
from replicator.lease import Lease
from replicator.protocols import TableAccess
from replicator.records import EventName, Shard, StreamRecord, key_id
from tests.fakes import (
    STREAM_ARN,
    FakeDestination,
    FakeLeaseStore,
    FakeStream,
    FakeTable,
    every_nth,
    expired_iterator,
    item,
    key_of,
    keys_unprocessed_on,
    on_calls,
    transient,
    unprocessed_every,
)

# -- FakeStream ------------------------------------------------------------------------


async def read_to_end(stream: FakeStream, iterator: str | None, limit: int = 2) -> list[str]:
    """Every sequence number of a closed shard, page by page."""
    numbers: list[str] = []
    for _ in range(100):
        if iterator is None:
            return numbers
        page = await stream.get_records(iterator, limit)
        numbers += [raw["dynamodb"]["SequenceNumber"] for raw in page.records]
        iterator = page.next_iterator
    raise AssertionError("a closed shard never ended")


async def test_records_parse_and_sequence_numbers_grow_across_the_stream() -> None:
    stream = FakeStream(first_sequence_number=98)
    a = stream.add_shard()
    first = stream.put(a, item("x", v=1))
    second = stream.put(a, item("x", v=2))
    b = stream.add_shard()
    third = stream.delete(b, key_of("x"))
    assert [first, second, third] == ["98", "99", "100"]
    records = [StreamRecord.from_wire(a, raw) for raw in stream.records(a)]
    assert [r.event_name for r in records] == [EventName.INSERT, EventName.MODIFY]
    assert records[1].new_image == item("x", v=2)
    assert records[0].created_at > 1_600_000_000
    assert isinstance(stream.records(a)[0]["dynamodb"]["ApproximateCreationDateTime"], datetime)
    removed = StreamRecord.from_wire(b, stream.records(b)[0])
    assert (removed.event_name, removed.new_image) == (EventName.REMOVE, None)
    assert stream.source == {}
    epoch = FakeStream(epoch_timestamps=True)
    shard = epoch.add_shard()
    epoch.put(shard, item("y"))
    assert isinstance(epoch.records(shard)[0]["dynamodb"]["ApproximateCreationDateTime"], float)


async def test_iterator_types() -> None:
    stream = FakeStream()
    shard = stream.add_shard()
    numbers = [stream.put(shard, item(f"k{i}", v=i)) for i in range(5)]
    arn = stream.stream_arn

    async def first(kind: str, number: str | None = None) -> list[str]:
        page = await stream.get_records(
            await stream.get_shard_iterator(arn, shard, kind, number), 1
        )
        return [raw["dynamodb"]["SequenceNumber"] for raw in page.records]

    assert await first("TRIM_HORIZON") == numbers[:1]
    assert await first("AT_SEQUENCE_NUMBER", numbers[2]) == [numbers[2]]
    assert await first("AFTER_SEQUENCE_NUMBER", numbers[2]) == [numbers[3]]
    assert await first("LATEST") == []
    with pytest.raises(ValidationError):
        await stream.get_shard_iterator(arn, shard, "AT_TIMESTAMP")
    with pytest.raises(ValidationError):
        await stream.get_shard_iterator(arn, shard, "AFTER_SEQUENCE_NUMBER", "1")
    with pytest.raises(ResourceNotFoundError):
        await stream.get_shard_iterator(arn, "shardId-nope", "TRIM_HORIZON")
    with pytest.raises(ResourceNotFoundError):
        await stream.get_shard_iterator("arn:other", shard, "TRIM_HORIZON")


async def test_open_shards_never_end_and_closed_shards_do() -> None:
    stream = FakeStream()
    parent = stream.add_shard()
    numbers = [stream.put(parent, item(f"k{i}")) for i in range(5)]
    iterator = await stream.get_shard_iterator(stream.stream_arn, parent, "TRIM_HORIZON")
    page = await stream.get_records(iterator, 10)
    assert len(page.records) == 5
    assert page.next_iterator is not None
    empty = await stream.get_records(page.next_iterator, 10)
    assert (empty.records, empty.next_iterator is not None) == ([], True)

    children = stream.split(parent)
    listed = await stream.list_shards(stream.stream_arn)
    assert listed == [
        Shard(parent, None, numbers[0], numbers[-1]),
        Shard(children[0], parent, str(int(numbers[-1]) + 1)),
        Shard(children[1], parent, str(int(numbers[-1]) + 1)),
    ]
    assert empty.next_iterator is not None
    end = await stream.get_records(empty.next_iterator, 10)
    assert (end.records, end.next_iterator) == ([], None)
    iterator = await stream.get_shard_iterator(stream.stream_arn, parent, "TRIM_HORIZON")
    assert await read_to_end(stream, iterator) == numbers


async def test_trimming() -> None:
    stream = FakeStream()
    shard = stream.add_shard()
    numbers = [stream.put(shard, item(f"k{i}")) for i in range(6)]
    early = await stream.get_shard_iterator(stream.stream_arn, shard, "TRIM_HORIZON")
    stream.trim(shard, 3)
    with pytest.raises(TrimmedDataError):
        await stream.get_records(early, 10)
    with pytest.raises(TrimmedDataError):
        await stream.get_shard_iterator(stream.stream_arn, shard, "AFTER_SEQUENCE_NUMBER",
                                        numbers[1])
    horizon = await stream.get_shard_iterator(stream.stream_arn, shard, "TRIM_HORIZON")
    page = await stream.get_records(horizon, 10)
    assert [raw["dynamodb"]["SequenceNumber"] for raw in page.records] == numbers[3:]
    stream.unlist(shard)
    assert await stream.list_shards(stream.stream_arn) == []
    with pytest.raises(ResourceNotFoundError):
        await stream.get_shard_iterator(stream.stream_arn, shard, "TRIM_HORIZON")


async def test_stream_faults_and_hooks() -> None:
    stream = FakeStream()
    shard = stream.add_shard()
    stream.put(shard, item("a"))
    stream.get_records_fault = on_calls({2}, expired_iterator)
    stream.get_shard_iterator_fault = every_nth(2)
    seen = []
    stream.on_call = lambda call: seen.append((call.operation, call.number, call.position))
    iterator = await stream.get_shard_iterator(stream.stream_arn, shard, "TRIM_HORIZON")
    with pytest.raises(ThrottledError) as throttled:
        await stream.get_shard_iterator(stream.stream_arn, shard, "TRIM_HORIZON")
    assert throttled.value.operation == "GetShardIterator"
    assert throttled.value.retriable
    page = await stream.get_records(iterator, 5)
    assert len(page.records) == 1
    with pytest.raises(ExpiredIteratorError):
        await stream.get_records(iterator, 5)
    assert seen == [("GetShardIterator", 1, None), ("GetShardIterator", 2, None),
                    ("GetRecords", 1, 0), ("GetRecords", 2, 0)]
    assert stream.injected == {"GetShardIterator": 1, "GetRecords": 1}


async def test_stream_wait_until_is_woken_by_calls() -> None:
    stream = FakeStream()
    shard = stream.add_shard()
    waiter = asyncio.create_task(
        stream.wait_until(lambda calls: any(c.operation == "DescribeStream" for c in calls), 1)
    )
    await asyncio.sleep(0)
    assert not waiter.done()
    await stream.list_shards(stream.stream_arn)
    await waiter
    with pytest.raises(AssertionError, match="not met within"):
        await stream.wait_until(lambda calls: shard in str(calls), 0.01)


# -- FakeDestination -----------------------------------------------------------------------


def put(pk: str, **attributes: object) -> dict[str, object]:
    return {"PutRequest": {"Item": item(pk, **attributes)}}


def delete(pk: str) -> dict[str, object]:
    return {"DeleteRequest": {"Key": key_of(pk)}}


async def test_destination_applies_and_logs_writes() -> None:
    dest = FakeDestination()
    assert await dest.batch_write([put("a", v=1), put("b", v=1)]) == []
    assert await dest.batch_write([delete("a"), put("b", v=2), delete("zz")]) == []
    assert dest.table == {key_id(key_of("b")): item("b", v=2)}
    assert [(w.call, w.kind, w.key) for w in dest.log] == [
        (1, "put", key_id(key_of("a"))), (1, "put", key_id(key_of("b"))),
        (2, "delete", key_id(key_of("a"))), (2, "put", key_id(key_of("b"))),
        (2, "delete", key_id(key_of("zz"))),
    ]


async def test_destination_enforces_batch_rules() -> None:
    dest = FakeDestination()
    with pytest.raises(ValidationError):
        await dest.batch_write([put(f"k{i}") for i in range(26)])
    with pytest.raises(ValidationError):
        await dest.batch_write([put("a", v=1), delete("a")])
    with pytest.raises(ValidationError):
        await dest.batch_write([])
    assert len(dest.violations) == 3
    with pytest.raises(ValidationError):
        await dest.batch_write([put("a"), put("b", poison="yes")])
    assert len(dest.violations) == 3  # a poison item is the test's wish, not a violation
    assert dest.rejected == 1
    assert dest.table == {}
    assert dest.log == []


async def test_destination_faults_and_unprocessed_items() -> None:
    dest = FakeDestination()
    dest.fault = on_calls({1})
    dest.unprocessed = unprocessed_every(2)
    with pytest.raises(ThrottledError) as caught:
        await dest.batch_write([put("a")])
    assert caught.value.operation == "BatchWriteItem"
    requests = [put("a"), put("b"), put("c")]
    left = await dest.batch_write(requests)
    assert left == requests[1:]
    assert left[0] is requests[1]
    assert list(dest.table) == [key_id(key_of("a"))]
    assert await dest.batch_write(left) == []
    assert len(dest.table) == 3
    assert (dest.injected, dest.unprocessed_calls) == (1, 1)


async def test_destination_wait_until() -> None:
    dest = FakeDestination()
    waiter = asyncio.create_task(dest.wait_until(lambda table: len(table) == 2, 1))
    await dest.batch_write([put("a")])
    await asyncio.sleep(0)
    assert not waiter.done()
    await dest.batch_write([put("b")])
    await waiter


# -- FakeLeaseStore: the conditions of DynamoLeaseStore ------------------------------------


def row(owner: str | None = None, counter: int = 0,
        checkpoint: str = Sentinel.TRIM_HORIZON) -> Lease:
    return Lease(STREAM_ARN, "s1", "s0", owner, counter, checkpoint)


async def test_create_only_if_absent() -> None:
    store = FakeLeaseStore()
    assert await store.create_lease(row())
    assert not await store.create_lease(row(owner="x", counter=5))
    assert store.row("s1") == row()
    assert await store.list_leases(STREAM_ARN) == [row()]
    assert await store.list_leases("arn:other") == []


async def test_update_is_conditional_on_counter_and_owner() -> None:
    store = FakeLeaseStore()
    await store.create_lease(row())
    taken = await store.update_lease(row(), new_owner="w1")
    assert taken == row(owner="w1", counter=1)
    with pytest.raises(ConditionFailedError):  # stale counter
        await store.update_lease(row(), new_owner="w2")
    with pytest.raises(ConditionFailedError):  # owner expected absent, but present
        await store.update_lease(row(counter=1), new_owner="w2")
    with pytest.raises(ConditionFailedError):  # another owner
        await store.update_lease(row(owner="w2", counter=1), new_owner="w2")
    moved = await store.update_lease(taken, new_owner="w1", checkpoint="150")
    assert moved == row(owner="w1", counter=2, checkpoint="150")
    kept = await store.update_lease(moved, new_owner=None)
    assert kept == row(owner=None, counter=3, checkpoint="150")
    assert store.row("s1") == kept
    assert store.owner_switches[(STREAM_ARN, "s1")] == 2
    with pytest.raises(ConditionFailedError):  # no row at all
        await store.update_lease(replace_shard(row(), "s9"), new_owner="w1")


def replace_shard(lease: Lease, shard_id: str) -> Lease:
    return Lease(lease.stream_arn, shard_id, lease.parent_shard_id, lease.owner, lease.counter,
                 lease.checkpoint)


async def test_delete_is_conditional_on_the_counter() -> None:
    store = FakeLeaseStore()
    await store.create_lease(row())
    await store.update_lease(row(), new_owner=None, checkpoint=Sentinel.SHARD_END)
    with pytest.raises(ConditionFailedError):
        await store.delete_lease(row(checkpoint=Sentinel.SHARD_END))
    await store.delete_lease(row(counter=1, checkpoint=Sentinel.SHARD_END))
    assert store.rows == {}
    with pytest.raises(ConditionFailedError):
        await store.delete_lease(row(counter=1))


async def test_store_waits_and_observes() -> None:
    store = FakeLeaseStore()
    observed = []
    store.observer = lambda operation, lease: observed.append((operation, lease.counter))
    waiter = asyncio.create_task(store.wait_until(lambda rows: "s1" in rows, 1))
    calls = asyncio.create_task(store.wait_for_calls("Query", 2, 1))
    await store.create_lease(row())
    await store.update_lease(row(), new_owner="w")
    await store.list_leases(STREAM_ARN)
    await store.list_leases(STREAM_ARN)
    await waiter
    await calls
    assert observed == [("PutItem", 0), ("UpdateItem", 1)]


# -- FakeTable: a whole table, scanned, read by key and written -----------------------------


def test_table_has_every_method_of_table_access_with_its_parameters() -> None:
    table: TableAccess = FakeTable()  # and mypy checks the assignment
    for name in ("scan_page", "batch_get", "batch_write"):
        wanted = inspect.signature(getattr(TableAccess, name))
        assert inspect.signature(getattr(table, name)).parameters.keys() == {
            parameter: None for parameter in wanted.parameters if parameter != "self"
        }.keys(), name
    assert isinstance(table.table, str)


async def scan_all(table: FakeTable, total_segments: int) -> dict[int, list[list[str]]]:
    """Every page of every segment, as lists of pk values."""
    pages: dict[int, list[list[str]]] = {}
    for segment in range(total_segments):
        start = None
        while True:
            items, start, units = await table.scan_page(
                segment=segment, total_segments=total_segments, start_key=start)
            assert units == len(items)
            pages.setdefault(segment, []).append([entry["pk"]["S"] for entry in items])
            if start is None:
                break
    return pages


async def test_table_scans_every_item_once_by_segment_and_page() -> None:
    table = FakeTable([item(f"k{i:02d}", v=i) for i in range(50)], page_size=4)
    pages = await scan_all(table, 3)
    scanned = [pk for segment in pages.values() for page in segment for pk in page]
    assert sorted(scanned) == [f"k{i:02d}" for i in range(50)]
    assert all(len(page) <= 4 for segment in pages.values() for page in segment)
    assert all(len(segment) > 1 for segment in pages.values())
    for segment, pks in pages.items():
        assert {table.segment_of(item(pk), 3) for page in pks for pk in page} == {segment}


async def test_table_scan_faults_serve_no_page() -> None:
    table = FakeTable([item("a")])
    table.scan_fault = on_calls({1}, transient)
    with pytest.raises(TransientError) as caught:
        await table.scan_page(segment=0, total_segments=1, start_key=None)
    assert caught.value.operation == "Scan"
    assert table.scans == []
    assert await table.scan_page(segment=0, total_segments=1, start_key=None) == (
        [item("a")], None, 1.0)
    assert (table.counts["Scan"], table.injected["Scan"], len(table.scans)) == (2, 1, 1)


async def test_table_batch_get_returns_the_items_found_and_the_keys_left_unprocessed() -> None:
    table = FakeTable([item(f"k{i}", v=i) for i in range(6)])
    table.unprocessed_keys = keys_unprocessed_on({2})
    keys = [key_of("k1"), key_of("nope"), key_of("k3")]
    found, left = await table.batch_get(keys)
    assert sorted(found, key=str) == [item("k1", v=1), item("k3", v=3)]
    assert left == []
    keys = [key_of(f"k{i}") for i in range(4)]
    found, left = await table.batch_get(keys)
    assert found == [item("k1", v=1), item("k0", v=0)]  # in no particular order
    assert left == keys[2:]
    assert table.gets[1] == keys
    found[0]["v"] = {"N": "99"}  # the caller's copy
    assert table.items[key_id(key_of("k1"))] == item("k1", v=1)


async def test_table_batch_get_refuses_what_dynamodb_refuses() -> None:
    table = FakeTable([item("a")])
    for keys in ([], [key_of(f"k{i}") for i in range(101)], [key_of("a"), key_of("a")],
                 [{"pk": {"S": "a"}, "v": {"N": "1"}}], [{"id": {"S": "a"}}]):
        with pytest.raises(ValidationError):
            await table.batch_get(keys)
    assert len(table.violations) == 5
    assert table.gets == []
    assert len((await table.batch_get([key_of(f"k{i}") for i in range(100)]))[1]) == 0
    table.get_fault = on_calls({7})
    with pytest.raises(ThrottledError) as caught:
        await table.batch_get([key_of("a")])
    assert (caught.value.operation, table.injected["BatchGetItem"]) == ("BatchGetItem", 1)


async def test_table_writes_change_what_it_scans_and_gets() -> None:
    table = FakeTable([item("a", v=1), item("b", v=1)])
    table.writer.unprocessed = unprocessed_every(1)
    requests = [put("c", v=1), delete("a")]
    assert await table.batch_write(requests) == [requests[1]]
    table.writer.unprocessed = None
    assert await table.batch_write([delete("a"), put("b", v=2)]) == []
    items, _, _ = await table.scan_page(segment=0, total_segments=1, start_key=None)
    assert sorted(items, key=str) == [item("b", v=2), item("c", v=1)]
    found, _ = await table.batch_get([key_of("a"), key_of("b")])
    assert found == [item("b", v=2)]
    with pytest.raises(ValidationError):
        await table.batch_write([put("b", v=3), delete("b")])
    table.writer.fault = on_calls({4})
    with pytest.raises(ThrottledError):
        await table.batch_write([put("d")])
    assert len(table.writer.violations) == 1
    assert (table.counts["BatchWriteItem"], table.writer.injected) == (4, 1)
    assert set(table.items) == {key_id(key_of("b")), key_id(key_of("c"))}
