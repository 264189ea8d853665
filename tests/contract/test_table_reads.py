"""The reads of copy and verify: a parallel Scan (``SegmentScanner.scan_page``) returns
every item exactly once across all segments and pages, and BatchGetItem
(``KeyReader.batch_get``) returns the items found and leaves out missing keys."""

from __future__ import annotations

import random
from typing import Any

import pytest

from replicator import errors
from replicator.aws.codec import item_from_boto as wire
from replicator.aws.table import DynamoTable
from replicator.protocols import SegmentScanner
from replicator.records import Item, KeyId, decode_key, encode_key, key_id

from .conftest import ReadTable, comparable, on_backends, unplayable

#: One event loop for the session, so that its clients are opened once.
pytestmark = pytest.mark.asyncio(loop_scope="session")

#: A page of more than this many is a scan that does not end.
MOST_PAGES = 200

NO_MISSING_TABLE = unplayable("FakeTable is always there")


def numbered(index: int) -> Item:
    """Item ``index``: two per hash key, with a few attribute types."""
    return wire({"pk": {"S": f"item-{index // 2:04d}"}, "sk": {"N": str(index % 2)},
                 "v": {"N": str(index)}, "s": {"S": f"value {index}"},
                 "tags": {"SS": [f"t{index % 3}", "all"]},
                 "blob": {"B": bytes([index % 256]) * 3}})


def key_of(item: Item) -> KeyId:
    return key_id({"pk": item["pk"], "sk": item["sk"]})


async def scan_segment(
    reader: SegmentScanner, segment: int, total: int, *, limit: int | None,
    start_key: Item | None = None,
) -> tuple[list[Item], int]:
    """Every page of one segment: (its items, the number of pages). Each page holds at
    most ``limit`` items, and the segment ends with a LastEvaluatedKey of None."""
    items: list[Item] = []
    pages = 0
    while True:
        page, last, consumed = await reader.scan_page(
            segment=segment, total_segments=total, start_key=start_key, limit=limit)
        pages += 1
        assert limit is None or len(page) <= limit
        assert consumed >= 0.0
        items.extend(page)
        if last is None:
            return items, pages
        assert set(last) == {"pk", "sk"}, last  # the key, and only the key
        assert pages < MOST_PAGES, f"segment {segment} of {total} does not end"
        start_key = last


@pytest.mark.parametrize(("total", "limit"), [(1, 7), (4, 7), (3, None), (8, 1)])
async def test_a_parallel_scan_returns_every_item_exactly_once(
    read_table: ReadTable, total: int, limit: int | None,
) -> None:
    count = 30 if limit == 1 else 60
    items = [numbered(i) for i in range(count)]
    random.Random(3).shuffle(items)
    await read_table.fill(items)

    seen: dict[KeyId, Item] = {}
    paged = 0
    for segment in range(total):
        found, pages = await scan_segment(read_table.reader, segment, total, limit=limit)
        paged += pages
        for item in found:
            assert key_of(item) not in seen, f"{key_of(item)} returned twice"
            seen[key_of(item)] = comparable(item)
    assert seen == {key_of(item): comparable(item) for item in items}
    if limit is not None:
        assert paged >= count // limit  # the limit made pages


async def test_a_segment_resumes_from_its_last_evaluated_key_stored_as_json(
    read_table: ReadTable,
) -> None:
    """The copy stores a segment's LastEvaluatedKey in the checkpoint table as JSON and
    resumes from it after a restart."""
    items = [numbered(i) for i in range(40)]
    await read_table.fill(items)
    whole, _ = await scan_segment(read_table.reader, 0, 2, limit=None)
    first, last, _ = await read_table.reader.scan_page(
        segment=0, total_segments=2, start_key=None, limit=5)
    assert last is not None
    assert len(first) == 5
    rest, _ = await scan_segment(read_table.reader, 0, 2, limit=5,
                                 start_key=decode_key(encode_key(last)))
    assert [key_of(item) for item in first + rest] == [key_of(item) for item in whole]


@pytest.mark.parametrize("total", [1, 4])
async def test_an_empty_table_scans_to_nothing(read_table: ReadTable, total: int) -> None:
    for segment in range(total):
        assert await scan_segment(read_table.reader, segment, total, limit=10) == ([], 1)


async def test_batch_get_returns_the_items_found_and_omits_missing_keys(
    read_table: ReadTable,
) -> None:
    reader = read_table.reader
    items = [numbered(i) for i in range(20)]
    await read_table.fill(items)
    wanted = [{"pk": item["pk"], "sk": item["sk"]} for item in items[::2]]
    missing = [{"pk": {"S": "absent"}, "sk": {"N": "0"}},
               {"pk": items[0]["pk"], "sk": {"N": "7"}}]
    found, unprocessed = await reader.batch_get(wanted + missing)
    assert unprocessed == []
    assert sorted(key_of(item) for item in found) == sorted(key_id(key) for key in wanted)
    assert {key_of(item): comparable(item) for item in found} == {
        key_of(item): comparable(item) for item in items[::2]}


async def test_batch_get_of_100_keys_none_there(read_table: ReadTable) -> None:
    reader = read_table.reader
    keys = [{"pk": {"S": f"absent-{i}"}, "sk": {"N": str(i)}} for i in range(100)]
    assert await reader.batch_get(keys) == ([], [])


async def test_batch_get_of_one_key_twice_is_refused(read_table: ReadTable) -> None:
    reader = read_table.reader
    key = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    with pytest.raises(errors.ValidationError) as refused:
        await reader.batch_get([key, dict(key)])
    assert refused.value.operation == "BatchGetItem"


@on_backends(fake=NO_MISSING_TABLE)
@pytest.mark.parametrize("read", ["scan", "batch_get"])
async def test_reading_a_missing_table_is_resource_not_found(
    read_table: ReadTable, read: str,
) -> None:
    assert read_table.clients is not None
    missing = DynamoTable(read_table.clients.dynamodb, read_table.reader.table + "-absent",
                          call_timeout=10)
    call: Any = (missing.scan_page(segment=0, total_segments=1, start_key=None)
                 if read == "scan" else missing.batch_get([{"pk": {"S": "a"}, "sk": {"N": "1"}}]))
    with pytest.raises(errors.ResourceNotFoundError) as failed:
        await call
    assert failed.value.operation == ("Scan" if read == "scan" else "BatchGetItem")

