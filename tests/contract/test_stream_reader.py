"""The stream's contract (``StreamReader``), as far as the local servers can play it:
one open shard for a new table, records in write order with increasing sequence
numbers, the four iterator types starting where they say, and the creation times
the bootstrap copy's ``SINCE:`` start relies on."""

from __future__ import annotations

import time
from typing import Any

import pytest

from replicator import errors
from replicator.records import EventName, Item, RecordsPage, StreamRecord, sequence_key

from .conftest import Stream, on_backends, quirk

#: One event loop for the session, so that its clients are opened once.
pytestmark = pytest.mark.asyncio(loop_scope="session")

#: Pages read before a test gives up on records it wrote: DynamoDB may answer empty
#: pages before the records, a local server does not.
MOST_PAGES = 50
LIMIT = 100


def image(pk: str, **values: Any) -> Item:
    return {"pk": {"S": pk}, **{name: {"N": str(value)} for name, value in values.items()}}


async def only_shard(stream: Stream) -> str:
    (shard,) = await stream.reader.list_shards(stream.stream_arn)
    return shard.shard_id


async def read(stream: Stream, iterator: str, count: int) -> list[StreamRecord]:
    """The next ``count`` records from ``iterator``, then a page to show there are no
    more: the records the test wrote, and nothing else."""
    shard_id = await only_shard(stream)
    records: list[StreamRecord] = []
    pages = 0
    next_iterator: str | None = iterator
    while len(records) < count:
        assert next_iterator is not None, f"the shard ended after {len(records)} records"
        page = await stream.reader.get_records(next_iterator, LIMIT)
        records.extend(StreamRecord.from_wire(shard_id, raw) for raw in page.records)
        next_iterator = page.next_iterator
        pages += 1
        assert pages < MOST_PAGES, f"{len(records)} records of {count} after {pages} pages"
    assert next_iterator is not None  # the shard is open: there is always a next iterator
    rest: RecordsPage = await stream.reader.get_records(next_iterator, LIMIT)
    assert rest.records == [], "records nobody wrote"
    return records


async def test_a_new_tables_stream_has_one_open_shard(stream: Stream) -> None:
    (shard,) = await stream.reader.list_shards(stream.stream_arn)
    assert shard.shard_id
    assert shard.parent_shard_id is None
    assert not shard.closed
    assert shard.starting_sequence_number is not None
    assert shard.starting_sequence_number.isdigit()


async def test_records_come_in_write_order_with_increasing_sequence_numbers(
    stream: Stream,
) -> None:
    shard_id = await only_shard(stream)
    iterator = await stream.reader.get_shard_iterator(stream.stream_arn, shard_id,
                                                      "TRIM_HORIZON")
    await stream.put(image("a", v=1))
    await stream.put(image("b", v=1))
    await stream.put(image("a", v=2))
    await stream.delete({"pk": {"S": "b"}})
    await stream.put(image("c", v=1, w=5))

    records = await read(stream, iterator, 5)
    assert [(r.event_name, r.keys) for r in records] == [
        (EventName.INSERT, {"pk": {"S": "a"}}),
        (EventName.INSERT, {"pk": {"S": "b"}}),
        (EventName.MODIFY, {"pk": {"S": "a"}}),
        (EventName.REMOVE, {"pk": {"S": "b"}}),
        (EventName.INSERT, {"pk": {"S": "c"}}),
    ]
    assert [r.new_image for r in records] == [
        image("a", v=1), image("b", v=1), image("a", v=2), None, image("c", v=1, w=5)]
    numbers = [sequence_key(r.sequence_number) for r in records]
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == 5
    assert all(r.shard_id == shard_id for r in records)


async def test_a_trim_horizon_iterator_taken_after_the_writes_reads_them_all(
    stream: Stream,
) -> None:
    for i in range(3):
        await stream.put(image(f"k{i}", v=i))
    shard_id = await only_shard(stream)
    iterator = await stream.reader.get_shard_iterator(stream.stream_arn, shard_id,
                                                      "TRIM_HORIZON")
    assert [r.keys["pk"]["S"] for r in await read(stream, iterator, 3)] == ["k0", "k1", "k2"]


async def test_at_and_after_sequence_number_start_where_they_say(stream: Stream) -> None:
    shard_id = await only_shard(stream)
    start = await stream.reader.get_shard_iterator(stream.stream_arn, shard_id, "TRIM_HORIZON")
    for i in range(4):
        await stream.put(image(f"k{i}", v=i))
    records = await read(stream, start, 4)
    second = records[1].sequence_number

    at = await stream.reader.get_shard_iterator(stream.stream_arn, shard_id,
                                                "AT_SEQUENCE_NUMBER", second)
    assert [r.sequence_number for r in await read(stream, at, 3)] == [
        r.sequence_number for r in records[1:]]
    after = await stream.reader.get_shard_iterator(stream.stream_arn, shard_id,
                                                   "AFTER_SEQUENCE_NUMBER", second)
    assert [r.sequence_number for r in await read(stream, after, 2)] == [
        r.sequence_number for r in records[2:]]
    after_last = await stream.reader.get_shard_iterator(
        stream.stream_arn, shard_id, "AFTER_SEQUENCE_NUMBER", records[-1].sequence_number)
    assert await read(stream, after_last, 0) == []  # at the head: nothing yet
    await stream.put(image("k4", v=4))
    after_last = await stream.reader.get_shard_iterator(
        stream.stream_arn, shard_id, "AFTER_SEQUENCE_NUMBER", records[-1].sequence_number)
    assert [r.keys["pk"]["S"] for r in await read(stream, after_last, 1)] == ["k4"]


async def test_latest_sees_only_later_writes(stream: Stream) -> None:
    await stream.put(image("before", v=1))
    shard_id = await only_shard(stream)
    latest = await stream.reader.get_shard_iterator(stream.stream_arn, shard_id, "LATEST")
    await stream.put(image("after", v=1))
    await stream.put(image("before", v=2))
    records = await read(stream, latest, 2)
    assert [(r.event_name, r.keys["pk"]["S"]) for r in records] == [
        (EventName.INSERT, "after"), (EventName.MODIFY, "before")]


async def test_server_time_is_a_whole_second_near_now(stream: Stream) -> None:
    before = int(time.time())
    server = await stream.reader.server_time(stream.stream_arn)
    assert server == int(server)
    assert before - 5 <= server <= time.time() + 5  # one machine: one clock


@on_backends(dynamodb_local=quirk(
    "DynamoDB Local rounds ApproximateCreationDateTime down to the minute, DynamoDB to "
    "the second (a write in a minute's first second passes)", strict=False))
async def test_a_record_is_created_no_earlier_than_the_server_time_before_its_write(
    stream: Stream,
) -> None:
    """The copy starts a shard at ``SINCE:<server time>`` and skips the records created
    before that second: a record written after the server time was read must not be
    stamped earlier, or it would be skipped and lost."""
    shard_id = await only_shard(stream)
    iterator = await stream.reader.get_shard_iterator(stream.stream_arn, shard_id, "LATEST")
    since = await stream.reader.server_time(stream.stream_arn)
    await stream.put(image("written-after", v=1))
    (record,) = await read(stream, iterator, 1)
    assert record.created_at >= since


@on_backends(moto=quirk("moto answers HTTP 500 for an unknown shard",
                        raises=errors.TransientError))
async def test_an_unknown_shard_is_resource_not_found(stream: Stream) -> None:
    with pytest.raises(errors.ResourceNotFoundError) as failed:
        await stream.reader.get_shard_iterator(stream.stream_arn, "shardId-00000000000000000000"
                                               "-00000000", "TRIM_HORIZON")
    assert failed.value.operation == "GetShardIterator"


async def test_an_unknown_stream_is_resource_not_found(stream: Stream) -> None:
    absent = stream.stream_arn.replace(":table/", ":table/absent-")
    with pytest.raises(errors.ResourceNotFoundError) as failed:
        await stream.reader.list_shards(absent)
    assert failed.value.operation == "DescribeStream"


@on_backends(moto=quirk("moto answers HTTP 500 for a malformed iterator",
                        raises=errors.TransientError))
async def test_a_malformed_iterator_is_refused(stream: Stream) -> None:
    with pytest.raises(errors.ValidationError) as refused:
        await stream.reader.get_records("not-an-iterator-" + "x" * 40, LIMIT)
    assert refused.value.operation == "GetRecords"
