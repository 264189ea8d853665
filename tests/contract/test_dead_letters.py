"""The dead-letter store's contract (``DeadLetterStore``): letters kept as they were put
(binary values and nested maps included), one row per (destination, id), listed in
order (the ids of one shard in stream order), deleted without fuss when already gone,
their images dropped when too large for one item, and a table made on first use."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
import pytest_asyncio

from replicator import errors
from replicator.aws.codec import item_from_boto as wire
from replicator.aws.dead_letters import DynamoDeadLetterStore, letter_item
from replicator.aws.table import describe_table
from replicator.dead_letter import MAX_ITEM_BYTES, DeadLetter, DeadLetterStore, dead_letter_table
from replicator.records import Item, item_size
from tests.fake_dead_letters import FakeDeadLetterStore, stored_size

from .conftest import (
    CALL_TIMEOUT,
    Backend,
    Clients,
    create_table,
    fresh_name,
    on_backends,
    unplayable,
)

#: One event loop for the session, so that its clients are opened once.
pytestmark = pytest.mark.asyncio(loop_scope="session")

NO_TABLE = unplayable("FakeDeadLetterStore has no table to describe")


@pytest_asyncio.fixture(loop_scope="session")
async def dead_letters(backend: Backend, clients: Clients | None) -> DeadLetterStore:
    """A store whose table does not exist yet."""
    if clients is None:
        return FakeDeadLetterStore()
    return DynamoDeadLetterStore(clients.dynamodb, dead_letter_table(fresh_name("task")),
                                 call_timeout=CALL_TIMEOUT)


def letter(sequence_number: str = "100", *, destination: str = "replica",
           source: str = "orders", shard_id: str = "shardId-0001",
           new_image: Item | None = None, old_image: Item | None = None) -> DeadLetter:
    keys: Item = wire({"pk": {"S": f"order-{sequence_number}"}, "sk": {"B": b"\x00\xffkey"}})
    return DeadLetter(
        destination=destination, source=source, shard_id=shard_id,
        sequence_number=sequence_number, event_name="MODIFY", keys=keys,
        new_image=new_image if new_image is not None else {**keys, "n": {"N": "1"}},
        old_image=old_image, error="PutItem: ValidationException: refused",
        stored_at=1_700_000_000.125,
    )


def rich_image(keys: Item) -> Item:
    """An image with binary values, nested maps and lists, and every scalar type (in wire
    form, as the replicator holds items)."""
    return wire({
        **keys,
        "s": {"S": "text é ✓"},
        "n": {"N": "-12.5"},
        "b": {"B": b"\x00\x01binary"},
        "flag": {"BOOL": True},
        "nothing": {"NULL": True},
        "bs": {"BS": [b"only"]},
        "list": {"L": [{"S": "one"}, {"B": b"\x02"}, {"M": {"deep": {"BOOL": False}}}]},
        "map": {"M": {"inner": {"M": {"bytes": {"B": b"\xfe"}, "s": {"S": "v"}}},
                      "n": {"N": "7"}}},
    })


def large_image(keys: Item, size: int) -> Item:
    return {**keys, **wire({"blob": {"B": b"x" * size}})}


async def test_a_put_letter_is_listed_as_it_was(dead_letters: DeadLetterStore) -> None:
    first = letter("100")
    stored = replace(first, new_image=rich_image(first.keys),
                     old_image={**first.keys, **wire({"old": {"M": {"b": {"B": b"\x00"}}}})})
    await dead_letters.put(stored)
    assert await dead_letters.list() == [stored]
    assert await dead_letters.list("replica") == [stored]


async def test_a_removal_without_new_image_is_kept(dead_letters: DeadLetterStore) -> None:
    removed = replace(letter("7"), event_name="REMOVE", new_image=None,
                      old_image=wire({"pk": {"S": "order-7"}, "sk": {"B": b"\x00\xffkey"}}))
    await dead_letters.put(removed)
    assert await dead_letters.list() == [removed]


async def test_a_missing_table_holds_no_letters(dead_letters: DeadLetterStore) -> None:
    assert await dead_letters.list() == []
    assert await dead_letters.list("replica") == []
    assert await dead_letters.count() == 0
    await dead_letters.delete(letter())  # nothing to delete, and no error


async def test_count_counts_the_letters(dead_letters: DeadLetterStore) -> None:
    for n in range(5):
        await dead_letters.put(letter(str(100 + n), destination=f"d-{n % 2}"))
    assert await dead_letters.count() == 5


async def test_a_letter_put_twice_is_kept_once(dead_letters: DeadLetterStore) -> None:
    once = letter("100")
    await dead_letters.put(once)
    again = replace(once, error="PutItem: ValidationException: refused again",
                    stored_at=once.stored_at + 60)
    await dead_letters.put(again)
    assert await dead_letters.list() == [again]
    assert await dead_letters.count() == 1


async def test_list_of_a_destination_lists_its_letters_only(
    dead_letters: DeadLetterStore,
) -> None:
    ours = [letter(str(n), destination="replica") for n in (3, 1, 2)]
    theirs = [letter(str(n), destination="archive") for n in (1, 9)]
    # The same record refused by two destinations is two letters.
    for dead in [*ours, *theirs]:
        await dead_letters.put(dead)
    assert await dead_letters.list("replica") == sorted(ours, key=lambda d: d.id)
    assert await dead_letters.list("archive") == sorted(theirs, key=lambda d: d.id)
    assert await dead_letters.list("absent") == []
    assert await dead_letters.list() == [*sorted(theirs, key=lambda d: d.id),
                                         *sorted(ours, key=lambda d: d.id)]


async def test_delete_removes_the_letter(dead_letters: DeadLetterStore) -> None:
    kept, deleted = letter("100"), letter("101")
    other = letter("101", destination="archive")
    for dead in (kept, deleted, other):
        await dead_letters.put(dead)
    await dead_letters.delete(deleted)
    assert await dead_letters.list() == [other, kept]
    assert await dead_letters.count() == 2


async def test_delete_of_an_absent_letter_is_no_error(dead_letters: DeadLetterStore) -> None:
    dead = letter("100")
    await dead_letters.put(dead)
    await dead_letters.delete(dead)
    await dead_letters.delete(dead)  # another replay removed it first
    await dead_letters.delete(letter("999", destination="never"))
    assert await dead_letters.list() == []


async def test_an_oversized_old_image_is_dropped_first(dead_letters: DeadLetterStore) -> None:
    base = letter("100")
    new_image = large_image(base.keys, 250 * 1024)
    big = replace(base, new_image=new_image, old_image=large_image(base.keys, 250 * 1024))
    await dead_letters.put(big)
    assert await dead_letters.list() == [
        replace(big, old_image=None, images_dropped=True)]


async def test_an_image_too_large_for_an_item_is_dropped(dead_letters: DeadLetterStore) -> None:
    base = letter("100")
    huge = replace(base, new_image=large_image(base.keys, MAX_ITEM_BYTES),
                   old_image=large_image(base.keys, 10))
    await dead_letters.put(huge)
    assert await dead_letters.list() == [
        replace(huge, new_image=None, old_image=None, images_dropped=True)]


async def test_a_letter_that_fits_keeps_its_images(dead_letters: DeadLetterStore) -> None:
    base = letter("100")
    fits = replace(base, new_image=large_image(base.keys, 190 * 1024),
                   old_image=large_image(base.keys, 190 * 1024))
    await dead_letters.put(fits)
    assert await dead_letters.list() == [fits]


async def test_a_letter_at_the_size_limit_is_stored(dead_letters: DeadLetterStore) -> None:
    """An item ``item_size`` puts at exactly 400 KB, whose numbers the service counts a
    byte larger each ("1.5" is 3 bytes to DynamoDB, 2 to ``item_size``; moto's limit is
    lower still): stored all the same, without its images where the service says so."""
    base = replace(letter("100"), old_image=None)
    numbers: Item = {f"n{i}": {"N": "1.5"} for i in range(10)}
    at_limit = replace(base, new_image={**base.keys, **numbers, "v": {"S": ""}})
    padding = MAX_ITEM_BYTES - stored_size(at_limit)
    at_limit = replace(base, new_image={**base.keys, **numbers, "v": {"S": "x" * padding}})
    assert stored_size(at_limit) == item_size(letter_item(at_limit)) == MAX_ITEM_BYTES
    await dead_letters.put(at_limit)
    [stored] = await dead_letters.list()
    assert stored in (at_limit, replace(at_limit, new_image=None, images_dropped=True))


async def test_every_page_is_listed(dead_letters: DeadLetterStore) -> None:
    """More than the 1 MB a Scan or a Query answers at a time."""
    letters = []
    for n in range(5):
        base = letter(str(n))
        letters.append(replace(base, new_image=large_image(base.keys, 300 * 1024)))
    for dead in letters:
        await dead_letters.put(dead)
    assert await dead_letters.list() == letters
    assert await dead_letters.list("replica") == letters
    assert await dead_letters.count() == 5


async def test_the_ids_of_a_shard_sort_in_stream_order(dead_letters: DeadLetterStore) -> None:
    numbers = ["10", "9", "100", "49600000000000000000000000000000000000001",
               "1000000000000000000000000000000000000000"]
    for number in numbers:
        await dead_letters.put(letter(number))
    listed = [dead.sequence_number for dead in await dead_letters.list("replica")]
    assert listed == sorted(numbers, key=int)
    assert letter("9").id == "orders/shardId-0001/" + "9".rjust(40, "0")


async def test_concurrent_first_puts_share_the_table(dead_letters: DeadLetterStore,
                                                     clients: Clients | None) -> None:
    """Two workers storing their first letters at once: one creates the table, the
    other finds it being created."""
    stores: list[DeadLetterStore] = [dead_letters]
    if isinstance(dead_letters, DynamoDeadLetterStore):
        assert clients is not None
        stores.append(DynamoDeadLetterStore(clients.dynamodb, dead_letters.table,
                                            call_timeout=CALL_TIMEOUT))
    else:
        stores.append(dead_letters)
    letters = [letter(str(n)) for n in range(len(stores) * 2)]
    await asyncio.gather(*(stores[n % len(stores)].put(dead)
                           for n, dead in enumerate(letters)))
    assert await dead_letters.list() == letters


@on_backends(fake=NO_TABLE)
async def test_the_first_put_creates_an_on_demand_table(dead_letters: DeadLetterStore,
                                                        clients: Clients | None) -> None:
    assert isinstance(dead_letters, DynamoDeadLetterStore)
    assert clients is not None
    assert await describe_table(clients.dynamodb, dead_letters.table,
                                call_timeout=CALL_TIMEOUT) is None
    await dead_letters.put(letter())
    description = await describe_table(clients.dynamodb, dead_letters.table,
                                       call_timeout=CALL_TIMEOUT)
    assert description is not None
    assert description["TableStatus"] == "ACTIVE"
    assert sorted((k["AttributeName"], k["KeyType"]) for k in description["KeySchema"]) == [
        ("destination", "HASH"), ("id", "RANGE")]
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert await dead_letters.ensure_table() is False  # there already


@on_backends(fake=NO_TABLE)
async def test_a_table_of_another_key_schema_is_refused(dead_letters: DeadLetterStore,
                                                        clients: Clients | None) -> None:
    assert isinstance(dead_letters, DynamoDeadLetterStore)
    assert clients is not None
    await create_table(clients.dynamodb, dead_letters.table, {"pk": "S"})
    with pytest.raises(errors.StartupCheckError, match="another key schema"):
        await dead_letters.put(letter())
