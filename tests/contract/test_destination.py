"""The destination's contract (``DestinationWriter.batch_write``, one BatchWriteItem):
what lands, what DynamoDB refuses (with ``ValidationError``, the whole batch), and
requests left unprocessed coming back to the caller instead of raising."""

from __future__ import annotations

from typing import Any

import pytest

from replicator import errors
from replicator.aws.codec import item_from_boto as wire
from replicator.aws.table import DynamoTable
from replicator.records import Item, key_id

from .conftest import Destination, comparable, on_backends, quirk, unplayable

#: One event loop for the session, so that its clients are opened once.
pytestmark = pytest.mark.asyncio(loop_scope="session")

#: DynamoDB's largest item: 400 KB, counting attribute names and values (UTF-8).
MAX_ITEM_BYTES = 400 * 1024

MOTO_TAKES_DUPLICATES = quirk(
    "moto applies a BatchWriteItem with two requests for one key; DynamoDB refuses it")
MOTO_TAKES_ANY_COUNT = quirk(
    "moto applies a BatchWriteItem of no requests or of more than 25; DynamoDB takes 1 to 25")


def put(item: Item) -> dict[str, Any]:
    return {"PutRequest": {"Item": item}}


def delete(pk: str) -> dict[str, Any]:
    return {"DeleteRequest": {"Key": {"pk": {"S": pk}}}}


def rich_item(pk: str) -> Item:
    """An item with every attribute type, in wire form."""
    return wire({
        "pk": {"S": pk},
        "s": {"S": "text é ✓"},
        "n": {"N": "-12.5"},
        "b": {"B": b"\x00\x01binary"},
        "flag": {"BOOL": True},
        "nothing": {"NULL": True},
        "ss": {"SS": ["b", "a", "c"]},
        "ns": {"NS": ["3", "1", "2"]},
        "bs": {"BS": [b"y", b"x"]},
        "list": {"L": [{"S": "one"}, {"N": "2"}, {"M": {"deep": {"BOOL": False}}}]},
        "map": {"M": {"inner": {"S": "v"}, "set": {"SS": ["z", "y"]}}},
    })


def sized_item(pk: str, size: int) -> Item:
    """An item of exactly ``size`` bytes as DynamoDB counts them (names and values)."""
    overhead = len("pk") + len(pk.encode()) + len("v")
    return {"pk": {"S": pk}, "v": {"S": "x" * (size - overhead)}}


async def test_puts_and_deletes_land(destination: Destination) -> None:
    first = [put(rich_item(f"key-{i}")) for i in range(5)]
    assert await destination.writer.batch_write(first) == []
    assert await destination.contents() == {
        key_id({"pk": {"S": f"key-{i}"}}): comparable(rich_item(f"key-{i}")) for i in range(5)
    }

    replaced = {"pk": {"S": "key-1"}, "only": {"S": "this"}}
    second = [delete("key-0"), put(replaced), delete("key-3"), delete("never-written")]
    assert await destination.writer.batch_write(second) == []
    assert await destination.contents() == {
        key_id({"pk": {"S": pk}}): comparable(item)
        for pk, item in (("key-1", replaced), ("key-2", rich_item("key-2")),
                         ("key-4", rich_item("key-4")))
    }


async def test_twenty_five_requests_for_distinct_keys_are_one_batch(
    destination: Destination,
) -> None:
    await destination.writer.batch_write([put({"pk": {"S": f"old-{i}"}}) for i in range(10)])
    requests = [put({"pk": {"S": f"new-{i}"}, "i": {"N": str(i)}}) for i in range(15)]
    requests += [delete(f"old-{i}") for i in range(10)]
    assert len(requests) == 25
    assert await destination.writer.batch_write(requests) == []
    assert sorted(key[0][2] for key in await destination.contents()) == sorted(
        f"new-{i}" for i in range(15))


@on_backends(moto=MOTO_TAKES_DUPLICATES)
@pytest.mark.parametrize("requests", [
    pytest.param([put({"pk": {"S": "a"}}), put({"pk": {"S": "a"}, "v": {"N": "1"}})],
                 id="two-puts"),
    pytest.param([put({"pk": {"S": "a"}}), delete("a")], id="a-put-and-a-delete"),
])
async def test_two_requests_for_one_key_are_refused(
    destination: Destination, requests: list[dict[str, Any]],
) -> None:
    await refused_whole(destination, [put({"pk": {"S": "other"}}), *requests])


async def test_two_deletes_of_one_key_are_refused(destination: Destination) -> None:
    await refused_whole(destination, [put({"pk": {"S": "other"}}), delete("a"), delete("a")])


async def refused_whole(destination: Destination, requests: list[dict[str, Any]]) -> None:
    """The batch is refused with ``ValidationError`` and none of it lands."""
    with pytest.raises(errors.ValidationError) as refused:
        await destination.writer.batch_write(requests)
    assert refused.value.operation == "BatchWriteItem"
    assert refused.value.code == "ValidationException"
    assert await destination.contents() == {}


@on_backends(moto=MOTO_TAKES_ANY_COUNT)
@pytest.mark.parametrize("count", [0, 26])
async def test_a_batch_of_more_than_25_or_no_requests_is_refused(
    destination: Destination, count: int,
) -> None:
    await refused_whole(destination, [put({"pk": {"S": f"k-{i}"}}) for i in range(count)])


@on_backends(moto=quirk("moto writes the requests before an oversized item, then refuses "
                        "the batch; DynamoDB writes none of it"))
async def test_an_item_over_400_kb_is_refused_with_its_batch(destination: Destination) -> None:
    too_big = sized_item("big", MAX_ITEM_BYTES + 1)
    await refused_whole(destination, [put({"pk": {"S": "small"}}), put(too_big)])


@on_backends(moto=quirk("moto refuses items over 405,000 bytes, DynamoDB over 409,600 "
                        "(400 KB)", raises=errors.ValidationError))
async def test_an_item_of_exactly_400_kb_is_accepted(destination: Destination) -> None:
    largest = sized_item("big", MAX_ITEM_BYTES)
    assert await destination.writer.batch_write([put(largest)]) == []
    assert await destination.contents() == {key_id({"pk": {"S": "big"}}): largest}


async def test_a_put_with_an_empty_string_key_is_refused(destination: Destination) -> None:
    await refused_whole(destination, [put({"pk": {"S": "fine"}}),
                                      put({"pk": {"S": ""}, "v": {"N": "1"}})])


@on_backends(moto=quirk("moto accepts a DeleteRequest whose key is an empty string"))
async def test_a_delete_with_an_empty_string_key_is_refused(destination: Destination) -> None:
    await refused_whole(destination, [put({"pk": {"S": "fine"}}), delete("")])


async def test_an_empty_string_outside_the_key_is_accepted(destination: Destination) -> None:
    item: Item = {"pk": {"S": "k"}, "empty": {"S": ""}, "nested": {"M": {"e": {"S": ""}}}}
    assert await destination.writer.batch_write([put(item)]) == []
    assert await destination.contents() == {key_id({"pk": {"S": "k"}}): item}


async def test_unprocessed_requests_are_returned_not_raised(destination: Destination) -> None:
    requests = [put({"pk": {"S": f"k-{i:02d}"}, "i": {"N": str(i)}}) for i in range(20)]
    requests += [delete("never-written")]
    async with destination.leaving_unprocessed() as writer:
        left = await writer.batch_write(requests)
    assert left, "the service was told to leave some requests unprocessed"
    assert all(request in requests for request in left)
    landed = await destination.contents()
    applied = [r for r in requests if r not in left and "PutRequest" in r]
    assert landed == {key_id({"pk": r["PutRequest"]["Item"]["pk"]}): r["PutRequest"]["Item"]
                      for r in applied}
    # Sent again, the requests left over land too.
    assert await destination.writer.batch_write(left) == []
    assert len(await destination.contents()) == 20


@on_backends(fake=unplayable("FakeDestination is always there"))
async def test_a_missing_table_is_resource_not_found(destination: Destination) -> None:
    assert destination.clients is not None
    missing = DynamoTable(destination.clients.dynamodb, destination.table + "-absent",
                          call_timeout=10)
    with pytest.raises(errors.ResourceNotFoundError) as failed:
        await missing.batch_write([put({"pk": {"S": "a"}})])
    assert failed.value.operation == "BatchWriteItem"
