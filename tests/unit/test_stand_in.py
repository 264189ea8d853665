"""bench/stand_in.py, the stream and destination stand-in of the benchmarks, read and
written through the replicator's own clients: built from the records moto's stream
holds, it lists the same shards and serves the same records on the same pages,
to the same end; it answers the start-up checks; BatchWriteItem stores what it was
sent. Real sockets on 127.0.0.1, so each test runs its own event loop (not the unit
tests' virtual time, on which a call's timeout would fire while the server works)."""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from replicator import errors
from replicator.aws.clients import Endpoint, open_client
from replicator.aws.streams import DynamoStreamReader
from replicator.aws.table import DynamoTable, describe_table
from replicator.clock import SystemClock
from replicator.commands.startup import check_destination, check_source
from replicator.config import Settings
from replicator.dev.local import MotoServer
from replicator.dev.workload import create_table, random_item
from replicator.records import EncodedItem, RecordsPage

# The benchmarks import one another as scripts do: from bench/ on the path.
sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))
from fast_scan import to_wire
from stand_in import (
    DEFAULT_LIMIT,
    SHARDS_PER_PAGE,
    StandIn,
    Stream,
    record_to_wire,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REGION = "us-east-1"
TABLE = "stand-in-source"
DESTINATION = "stand-in-destination"
TIMEOUT = 30.0
#: What the replicator takes from a record, and what the stand-in must serve alike.
FIELDS = ("eventName", "Keys", "NewImage", "OldImage", "SequenceNumber")


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


def fields(record: dict[str, Any]) -> tuple[Any, ...]:
    body = record["dynamodb"]
    return (record["eventName"], *(body.get(name) for name in FIELDS[1:]))


def plain(record: dict[str, Any]) -> dict[str, Any]:
    """A record with its images decoded (the codec keeps them as ``EncodedItem``)."""
    body = {name: value.decode() if isinstance(value, EncodedItem) else value
            for name, value in record["dynamodb"].items()}
    return {**record, "dynamodb": body}


async def pages(reader: DynamoStreamReader, iterator: str, limit: int) -> list[RecordsPage]:
    """Every page from ``iterator`` to the first empty one (the head), that one included,
    with the images of its records decoded (``plain``)."""
    read = []
    while True:
        page = await reader.get_records(iterator, limit)
        page = RecordsPage(list(map(plain, page.records)), page.next_iterator)
        read.append(page)
        assert page.next_iterator is not None  # an open shard
        if not page.records:
            return read
        iterator = page.next_iterator
        assert len(read) < 100


async def fill(client: Any) -> str:
    """A table with a NEW_AND_OLD_IMAGES stream, and inserts (every attribute type),
    an UpdateItem, puts over live items and deletes, one at a time: its stream ARN."""
    arn = await create_table(client, TABLE, stream=True)
    assert arn is not None
    rng = random.Random(3)
    keys = [{"pk": {"S": f"user-{n % 3}"}, "sk": {"N": str(n)}} for n in range(6)]
    for key in keys:
        await client.put_item(TableName=TABLE, Item=random_item(rng, key))
    await client.update_item(TableName=TABLE, Key=keys[0], UpdateExpression="SET #s = :s",
                             ExpressionAttributeNames={"#s": "s"},
                             ExpressionAttributeValues={":s": {"S": "updated"}})
    for key in keys[1:3]:
        await client.put_item(TableName=TABLE, Item=random_item(rng, key))
    for key in keys[3:5]:
        await client.delete_item(TableName=TABLE, Key=key)
    return arn


def test_the_stand_in_serves_what_moto_serves(moto: MotoServer) -> None:
    async def scenario() -> None:
        where = Endpoint("dynamodb", REGION, moto.url)
        async with open_client(where, call_timeout=TIMEOUT) as client:
            arn = await fill(client)
        async with open_client(Endpoint("dynamodbstreams", REGION, moto.url),
                               call_timeout=TIMEOUT) as moto_client:
            from_moto = DynamoStreamReader(moto_client, call_timeout=TIMEOUT)
            shards = await from_moto.list_shards(arn)
            records = {}
            for shard in shards:
                iterator = await from_moto.get_shard_iterator(arn, shard.shard_id,
                                                              "TRIM_HORIZON")
                read = await pages(from_moto, iterator, DEFAULT_LIMIT)
                records[shard.shard_id] = [record_to_wire(record)
                                           for page in read for record in page.records]
            assert [len(r) for r in records.values()] == [11]
            stream = Stream.from_records(arn, records, view="NEW_AND_OLD_IMAGES")
            async with StandIn(stream, destinations=[DESTINATION]) as stand_in, \
                    open_client(Endpoint("dynamodbstreams", REGION, stand_in.url),
                                call_timeout=TIMEOUT) as stand_in_client:
                from_stand_in = DynamoStreamReader(stand_in_client, call_timeout=TIMEOUT)
                await same_stream(arn, from_moto, from_stand_in)

    run(scenario)


async def same_stream(arn: str, moto: DynamoStreamReader, stand_in: DynamoStreamReader) -> None:
    shards = await moto.list_shards(arn)
    assert await stand_in.list_shards(arn) == shards
    (shard,) = shards

    async def both(kind: str, sequence_number: str | None = None,
                   limit: int = DEFAULT_LIMIT) -> list[list[tuple[Any, ...]]]:
        read = []
        for reader in (moto, stand_in):
            iterator = await reader.get_shard_iterator(arn, shard.shard_id, kind,
                                                       sequence_number)
            read.append([[fields(record) for record in page.records]
                         for page in await pages(reader, iterator, limit)])
        assert read[0] == read[1], kind
        return read[0]

    whole = await both("TRIM_HORIZON")
    assert [len(page) for page in whole] == [11, 0]  # then the head: an empty page
    records = whole[0]
    assert [r[0] for r in records] == ["INSERT"] * 6 + ["MODIFY"] * 3 + ["REMOVE"] * 2
    assert all(len(r[4]) >= 21 for r in records)
    by_two = await both("TRIM_HORIZON", limit=2)
    assert [len(page) for page in by_two] == [2, 2, 2, 2, 2, 1, 0]
    assert [r for page in by_two for r in page] == records
    third = records[2][4]
    assert (await both("AT_SEQUENCE_NUMBER", third, limit=2))[0] == records[2:4]
    assert (await both("AFTER_SEQUENCE_NUMBER", third, limit=2))[0] == records[3:5]
    assert await both("LATEST") == [[]]
    # The whole records alike, not only what the replicator reads of them.
    iterators = [await reader.get_shard_iterator(arn, shard.shard_id, "TRIM_HORIZON")
                 for reader in (moto, stand_in)]
    pages_read = [await reader.get_records(iterator, 3)
                  for reader, iterator in zip((moto, stand_in), iterators, strict=True)]
    assert [*map(plain, pages_read[0].records)] == [*map(plain, pages_read[1].records)]


def test_the_stand_in_passes_the_start_up_checks() -> None:
    async def scenario() -> None:
        stream = Stream.generate(table=TABLE, shards=3, records=300, item_bytes=400)
        async with StandIn(stream, destinations=[DESTINATION]) as stand_in:
            settings = Settings(
                source_table=TABLE, source_region=REGION, source_endpoint=stand_in.url,
                destination_table=DESTINATION, destination_region=REGION,
                destination_endpoint=stand_in.url,
            )
            where = Endpoint("dynamodb", REGION, stand_in.url)
            async with open_client(where, call_timeout=TIMEOUT) as client, \
                    open_client(Endpoint("dynamodbstreams", REGION, stand_in.url),
                                call_timeout=TIMEOUT) as streams:
                reader = DynamoStreamReader(streams, call_timeout=TIMEOUT)
                prepared = await check_source(settings, source=client, streams=reader,
                                              clock=SystemClock())
                assert prepared.stream_arn == stream.stream_arn
                assert prepared.view_type == "NEW_AND_OLD_IMAGES"
                assert prepared.source_table["ItemCount"] == stream.live_items > 0
                found = await check_destination(
                    settings, source=client, destination=client,
                    source_table=prepared.source_table, create=False, clock=SystemClock())
                assert found is not None
                assert found["ItemCount"] == 0
                assert await describe_table(client, "no-such-table",
                                            call_timeout=TIMEOUT) is None
                assert abs(await reader.server_time(stream.stream_arn) - time.time()) < 5

    run(scenario)


def test_batch_write_stores_what_it_was_sent() -> None:
    async def scenario() -> None:
        rng = random.Random(5)
        items = [random_item(rng, {"pk": {"S": f"user-{n // 4}"}, "sk": {"N": str(n)}})
                 for n in range(30)]
        async with StandIn(destinations=[DESTINATION]) as stand_in, \
                open_client(Endpoint("dynamodb", REGION, stand_in.url),
                            call_timeout=TIMEOUT) as client:
            table = DynamoTable(client, DESTINATION, call_timeout=TIMEOUT)
            for first in (0, 25):
                puts = [{"PutRequest": {"Item": item}} for item in items[first:first + 25]]
                assert await table.batch_write(puts) == []
            deleted = [{"DeleteRequest": {"Key": {"pk": items[n]["pk"], "sk": {"N": f"{n}.0"}}}}
                       for n in (1, 7)]
            assert await table.batch_write(deleted) == []
            kept = [to_wire_item(item) for n, item in enumerate(items) if n not in (1, 7)]
            stored = list(stand_in.destinations[DESTINATION].items.values())
            assert sorted(stored, key=sort_key) == sorted(kept, key=sort_key)
            with pytest.raises(errors.ValidationError):
                await table.batch_write([{"PutRequest": {"Item": items[0]}}] * 2)
            with pytest.raises(errors.ValidationError):
                await table.batch_write([{"PutRequest": {"Item": item}} for item in items[:26]])
            with pytest.raises(errors.ResourceNotFoundError):
                await DynamoTable(client, "other", call_timeout=TIMEOUT).batch_write(deleted)
            described = await describe_table(client, DESTINATION, call_timeout=TIMEOUT)
            assert described is not None
            assert described["ItemCount"] == 28
            async with aiohttp.ClientSession() as session, \
                    session.get(f"{stand_in.url}/stats") as response:
                stats = await response.json()
            assert stats["calls"] == {"BatchWriteItem": 6, "DescribeTable": 1}
            assert (stats["items_written"], stats["items_deleted"]) == (30, 2)
            assert stats["items"] == {DESTINATION: 28}

    run(scenario)


def to_wire_item(item: dict[str, Any]) -> dict[str, Any]:
    return {name: to_wire(value) for name, value in item.items()}


def sort_key(item: dict[str, Any]) -> int:
    return int(item["sk"]["N"])


def test_describe_stream_pages_and_generated_pages_keep_to_a_megabyte() -> None:
    async def scenario() -> None:
        stream = Stream.generate(shards=SHARDS_PER_PAGE * 2 + 50, records=2_500,
                                 item_bytes=1024)
        stream.warm()
        async with StandIn(stream) as stand_in, \
                open_client(Endpoint("dynamodbstreams", REGION, stand_in.url),
                            call_timeout=TIMEOUT) as client:
            reader = DynamoStreamReader(client, call_timeout=TIMEOUT)
            shards = await reader.list_shards(stream.stream_arn)
            assert [s.shard_id for s in shards] == [s.shard_id for s in stream.shards]
            assert stand_in.counts.calls["DescribeStream"] == 3
            assert len(set(s.starting_sequence_number for s in shards)) == len(shards)
        big = Stream.generate(shards=1, records=2_500, item_bytes=1024)
        big.warm()
        async with StandIn(big) as stand_in, \
                open_client(Endpoint("dynamodbstreams", REGION, stand_in.url),
                            call_timeout=TIMEOUT) as client:
            reader = DynamoStreamReader(client, call_timeout=TIMEOUT)
            (shard,) = await reader.list_shards(big.stream_arn)
            iterator = await reader.get_shard_iterator(big.stream_arn, shard.shard_id,
                                                       "TRIM_HORIZON")
            read = await pages(reader, iterator, DEFAULT_LIMIT)
            sizes = [sum(r["dynamodb"]["SizeBytes"] for r in page.records) for page in read]
            assert all(size <= 1024 * 1024 for size in sizes)
            assert sizes[0] > 1024 * 1024 - 3000  # full, by DynamoDB's 1 MB
            records = [r for page in read for r in page.records]
            assert len(records) == 2_500 == stand_in.counts.records_served
            numbers = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
            assert numbers == sorted(set(numbers))
            live: dict[tuple[str, str], dict[str, Any]] = {}
            for record in records:  # each record follows the item's last image
                body = record["dynamodb"]
                key = (body["Keys"]["pk"]["S"], body["Keys"]["sk"]["N"])
                if record["eventName"] == "INSERT":
                    assert key not in live
                else:
                    assert body["OldImage"] == live.pop(key)
                if record["eventName"] != "REMOVE":
                    live[key] = body["NewImage"]
            assert len(live) == big.live_items

    run(scenario)


def test_appended_records_come_after_the_backlog_stamped_on_arrival() -> None:
    async def scenario() -> None:
        stream = Stream.generate(shards=2, records=10, item_bytes=200)
        async with StandIn(stream) as stand_in, \
                open_client(Endpoint("dynamodbstreams", REGION, stand_in.url),
                            call_timeout=TIMEOUT) as client:
            reader = DynamoStreamReader(client, call_timeout=TIMEOUT)
            shard = stream.shards[1].shard_id
            latest = await reader.get_shard_iterator(stream.stream_arn, shard, "LATEST")
            head = await reader.get_records(latest, DEFAULT_LIMIT)
            assert head.records == []
            assert head.next_iterator is not None
            key = {"pk": {"S": "late"}, "sk": {"N": "1"}}
            image = {**key, "s": {"S": "new"}}
            before = time.time()
            numbers = stream.append(1, [stream.record("INSERT", key, new_image=image)])
            async with aiohttp.ClientSession() as session:
                order = {"shard": shard, "records": [
                    stream.record("REMOVE", key, old_image=image)]}
                async with session.post(f"{stand_in.url}/append", json=order) as response:
                    numbers += (await response.json())["SequenceNumbers"]
                async with session.get(f"{stand_in.url}/arrivals") as response:
                    arrivals = await response.json()
            page = await reader.get_records(head.next_iterator, DEFAULT_LIMIT)
            page = RecordsPage(list(map(plain, page.records)), page.next_iterator)
            assert [r["eventName"] for r in page.records] == ["INSERT", "REMOVE"]
            assert [r["dynamodb"]["SequenceNumber"] for r in page.records] == numbers
            assert int(numbers[0]) > stream.shards[1].sequence_numbers[-3]
            assert page.records[0]["dynamodb"]["NewImage"] == image
            assert page.records[1]["dynamodb"]["OldImage"] == image
            for record in page.records:
                arrived = arrivals[record["dynamodb"]["SequenceNumber"]]
                assert before <= arrived <= time.time()
                created = record["dynamodb"]["ApproximateCreationDateTime"]  # epoch seconds
                assert created == math.floor(arrived)
            assert page.next_iterator is not None
            assert (await reader.get_records(page.next_iterator, DEFAULT_LIMIT)).records == []
            with pytest.raises(errors.ValidationError):
                await reader.get_records("not an iterator", DEFAULT_LIMIT)
            with pytest.raises(errors.ResourceNotFoundError):
                await reader.get_shard_iterator(stream.stream_arn, "shardId-0", "LATEST")

    run(scenario)


def test_generated_records_are_json_as_dynamodb_writes_them() -> None:
    stream = Stream.generate(shards=3, records=150, item_bytes=1024, view="NEW_IMAGE")
    records = [json.loads(bytes(encoded)) for shard in stream.shards for encoded in shard.records]
    for index, shard in enumerate(stream.shards):
        for encoded in shard.records:  # a partition key's records in one shard
            assert stream.shard_for(json.loads(bytes(encoded))["dynamodb"]["Keys"]) == index
    for record in records:
        assert set(record) == {"eventID", "eventName", "eventVersion", "eventSource",
                               "awsRegion", "dynamodb"}
        body = record["dynamodb"]
        assert "OldImage" not in body
        assert body["StreamViewType"] == "NEW_IMAGE"
        assert isinstance(body["ApproximateCreationDateTime"], float)
        if record["eventName"] != "REMOVE":
            image = body["NewImage"]
            assert {kind for value in image.values() for kind in value} == {
                "S", "N", "B", "SS", "NS", "BS", "M", "L", "BOOL", "NULL"}
