"""``Verifier`` on the fakes: equal tables compare equal; missing, extra and different
items are counted and named by key; ``repair`` makes the tables equal and the second
comparison is the verdict; BatchGetItem's unprocessed keys and retried errors hide
nothing; sets compare as sets."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterable
from typing import Any

import pytest

from replicator.copy.verify import EXAMPLES, TableDiff, Verifier, normalize
from replicator.records import Item, key_id
from replicator.stats import Stats
from tests.fakes import (
    Call,
    FakeTable,
    UnprocessedKeys,
    every_nth,
    item,
    keys_unprocessed_every,
    throttled,
    transient,
    unprocessed_every,
)
from tests.unit.harness import CLOCK, FAST

pytestmark = pytest.mark.timeout(20)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """The backoff's jitter, and so the order of events, the same on every run."""
    random.seed(2)


def numbered(count: int) -> list[Item]:
    return [item(f"item-{index:04d}", v=index) for index in range(count)]


def pair(items: Iterable[Item], *, key_names: tuple[str, ...] = ("pk",),
         source_page: int = 10, destination_page: int = 7) -> tuple[FakeTable, FakeTable]:
    """Two tables holding the same items, paged differently."""
    items = list(items)
    return (FakeTable(items, key_names=key_names, page_size=source_page, table="source"),
            FakeTable(items, key_names=key_names, page_size=destination_page,
                      table="destination"))


def verifier(source: FakeTable, destination: FakeTable, *, segments: int = 3,
             stats: Stats | None = None) -> Verifier:
    return Verifier(source, destination, list(source.key_names), segments=segments,
                    clock=CLOCK, backoff=FAST, stats=stats)


def pk(value: str) -> Item:
    return {"pk": {"S": value}}


def drop(table: FakeTable, *values: str) -> None:
    for value in values:
        del table.items[key_id(pk(value))]


def writes(table: FakeTable) -> list[tuple[str, str]]:
    return sorted((write.kind, write.payload["pk"]["S"]) for write in table.writer.log)


# -- equal tables ------------------------------------------------------------------------


async def test_equal_tables_compare_equal_and_nothing_is_written() -> None:
    source, destination = pair(numbered(137))

    diff = await verifier(source, destination).compare()

    assert diff.equal
    assert (diff.source_items, diff.destination_items) == (137, 137)
    assert (diff.missing, diff.extra, diff.different) == (0, 0, 0)
    assert diff.report() == ["equal: 137 items in each table"]
    repaired = await verifier(source, destination).verify(repair=True)
    assert repaired.equal
    assert (repaired.repaired, repaired.before) == (0, None)
    assert source.counts["BatchWriteItem"] == destination.counts["BatchWriteItem"] == 0


async def test_pages_of_more_than_a_hundred_items_are_looked_up_a_hundred_keys_at_a_time(
) -> None:
    source, destination = pair(numbered(450), source_page=250, destination_page=130)

    diff = await verifier(source, destination, segments=2).compare()

    assert diff.equal
    assert (diff.source_items, diff.destination_items) == (450, 450)
    assert destination.violations == source.violations == []
    assert max(len(keys) for keys in destination.gets) == 100
    # Every key looked up once on each side.
    assert sorted(key_id(key) for keys in destination.gets for key in keys) == sorted(
        source.items)
    assert sorted(key_id(key) for keys in source.gets for key in keys) == sorted(
        destination.items)


# -- what differs --------------------------------------------------------------------------


def differing_pair() -> tuple[FakeTable, FakeTable]:
    """50 items; the destination misses two, holds three of its own, and three differ:
    a value changed, an attribute added, an attribute gone."""
    source, destination = pair(numbered(50))
    source.items[key_id(pk("item-0040"))]["note"] = {"S": "only in the source"}
    drop(destination, "item-0003", "item-0031")
    for value in ("zz-1", "extra-2", "extra-1"):
        destination.items[key_id(pk(value))] = item(value, v=-1)
    destination.items[key_id(pk("item-0012"))]["v"] = {"N": "-12"}
    destination.items[key_id(pk("item-0020"))]["added"] = {"BOOL": True}
    return source, destination


DIFFERENCES = [
    "NOT equal: 2 missing, 3 extra, 3 different (source 50 items, destination 51)",
    "first missing: pk='item-0003'; pk='item-0031'",
    "first extra: pk='extra-1'; pk='extra-2'; pk='zz-1'",
    "first different: pk='item-0012'; pk='item-0020'; pk='item-0040'",
]


async def test_missing_extra_and_different_items_are_each_counted_and_named_by_key() -> None:
    source, destination = differing_pair()
    before = copy.deepcopy(destination.items)

    # One segment: the keys are listed in the order the scan meets them.
    diff = await verifier(source, destination, segments=1).compare()

    assert not diff.equal
    assert (diff.missing, diff.extra, diff.different) == (2, 3, 3)
    assert (diff.source_items, diff.destination_items) == (50, 51)
    assert diff.report() == DIFFERENCES
    assert diff.summary() == DIFFERENCES[0]
    # Without repair nothing is written, on either side.
    assert destination.items == before
    assert source.counts["BatchWriteItem"] == destination.counts["BatchWriteItem"] == 0


async def test_a_difference_is_found_whatever_segment_and_page_holds_it() -> None:
    source, destination = pair(numbered(300), source_page=9, destination_page=23)
    rng = random.Random(3)
    values = [f"item-{index:04d}" for index in range(300)]
    missing = set(rng.sample(values, 7))
    changed = set(rng.sample(sorted(set(values) - missing), 5))
    drop(destination, *missing)
    for value in changed:
        destination.items[key_id(pk(value))]["v"] = {"S": "changed"}

    diff = await verifier(source, destination, segments=5).compare()

    assert (diff.missing, diff.extra, diff.different) == (7, 0, 5)
    assert {key[0][2] for key in diff.examples["missing"]} == missing
    assert {key[0][2] for key in diff.examples["different"]} == changed


async def test_every_difference_is_counted_and_the_first_ten_keys_are_listed() -> None:
    source, destination = pair(numbered(100))
    gone = [f"item-{index:04d}" for index in range(0, 100, 4)]
    drop(destination, *gone)

    diff = await verifier(source, destination).compare()

    assert diff.missing == len(gone) == 25
    assert len(diff.examples["missing"]) == EXAMPLES == 10
    assert {key[0][2] for key in diff.examples["missing"]} <= set(gone)
    (listed,) = [line for line in diff.report() if line.startswith("first missing: ")]
    assert listed.count("pk=") == 10


async def test_keys_with_a_sort_key_are_reported_whole() -> None:
    items = [{**item(f"user-{user}", v=n), "sk": {"N": str(n)}}
             for user in range(3) for n in range(4)]
    source, destination = pair(items, key_names=("pk", "sk"))
    del destination.items[key_id({"pk": {"S": "user-1"}, "sk": {"N": "2"}})]

    diff = await verifier(source, destination, segments=1).compare()

    assert diff.report() == [
        "NOT equal: 1 missing, 0 extra, 0 different (source 12 items, destination 11)",
        "first missing: pk='user-1', sk='2'",
    ]


# -- repair ------------------------------------------------------------------------------------


async def test_repair_makes_the_tables_equal_and_the_second_comparison_is_the_verdict() -> None:
    source, destination = differing_pair()
    original = copy.deepcopy(source.items)

    diff = await verifier(source, destination, segments=1).verify(repair=True)

    assert diff.equal
    assert diff.repaired == 8
    assert diff.before is not None
    assert (diff.before.missing, diff.before.extra, diff.before.different) == (2, 3, 3)
    assert diff.report() == [
        *(f"before repair: {line}" for line in DIFFERENCES),
        "repaired 8 items",
        "after repair: equal: 50 items in each table",
    ]
    assert destination.items == source.items == original
    # The source's image of each missing and different item, and a delete of each extra.
    assert writes(destination) == sorted([
        ("put", "item-0003"), ("put", "item-0031"), ("put", "item-0012"),
        ("put", "item-0020"), ("put", "item-0040"),
        ("delete", "extra-1"), ("delete", "extra-2"), ("delete", "zz-1"),
    ])
    assert source.counts["BatchWriteItem"] == 0
    again = await verifier(source, destination).compare()
    assert again.equal
    assert again.report() == ["equal: 50 items in each table"]


async def test_a_compare_that_repairs_counts_what_the_destination_held_before() -> None:
    source, destination = differing_pair()

    diff = await verifier(source, destination).compare(repair=True)

    assert (diff.missing, diff.extra, diff.different) == (2, 3, 3)
    assert (diff.source_items, diff.destination_items) == (50, 51)
    assert destination.items == source.items


async def test_a_repair_through_unprocessed_items_and_write_errors_writes_every_fix() -> None:
    """More fixes than a batch holds, on several pages and segments, with the
    destination leaving requests unprocessed and failing calls."""
    source, destination = pair(numbered(400), source_page=60, destination_page=45)
    drop(destination, *(f"item-{index:04d}" for index in range(0, 400, 3)))
    changed = [index for index in range(1, 400, 7) if index % 3]
    for index in changed:
        destination.items[key_id(pk(f"item-{index:04d}"))]["v"] = {"N": "0.5"}
    for index in range(90):
        destination.items[key_id(pk(f"gone-{index:03d}"))] = item(f"gone-{index:03d}")
    destination.writer.unprocessed = unprocessed_every(2)
    destination.writer.fault = every_nth(3, transient)
    stats = Stats()

    diff = await verifier(source, destination, segments=4, stats=stats).verify(repair=True)

    assert diff.equal
    assert diff.before is not None
    repaired = diff.before.missing + diff.before.extra + diff.before.different
    assert (diff.before.missing, diff.before.extra, diff.before.different) == (
        134, 90, len(changed))
    assert diff.repaired == repaired
    assert destination.items == source.items
    assert destination.writer.violations == []
    assert destination.writer.unprocessed_calls > 0
    assert destination.writer.injected > 0
    assert stats.unprocessed_retries == destination.writer.unprocessed_calls
    assert stats.retries["BatchWriteItem"] == destination.writer.injected


# -- BatchGetItem's unprocessed keys and retried errors -----------------------------------------


async def test_unprocessed_keys_are_asked_again_and_none_is_reported_missing() -> None:
    source, destination = pair(numbered(260), source_page=40, destination_page=55)
    #: (table, index of the call in ``table.gets``, the keys it left unprocessed)
    left_by_call: list[tuple[FakeTable, int, list[Item]]] = []

    def leaving(table: FakeTable) -> UnprocessedKeys:
        pick = keys_unprocessed_every(2)

        def leave(call: Call, keys: list[Item]) -> list[int]:
            chosen = list(pick(call, keys))
            if chosen:
                left_by_call.append((table, len(table.gets), [keys[i] for i in chosen]))
            return chosen

        return leave

    source.unprocessed_keys = leaving(source)
    destination.unprocessed_keys = leaving(destination)

    diff = await verifier(source, destination).compare()

    assert diff.equal, diff.report()
    assert (diff.source_items, diff.destination_items) == (260, 260)
    assert len(left_by_call) > 4
    assert {table.table for table, _, _ in left_by_call} == {"source", "destination"}
    # Each set of keys left unprocessed was asked for again, on its own.
    for table, index, left in left_by_call:
        assert left in table.gets[index + 1:], left


async def test_throttled_and_failed_scans_and_lookups_are_retried_and_hide_nothing() -> None:
    source, destination = pair(numbered(180))
    drop(destination, "item-0100")

    def flaky(call: Call) -> Any:
        if call.number % 4 == 0:
            return throttled(call)
        return transient(call) if call.number % 5 == 0 else None

    for table in (source, destination):
        table.scan_fault = flaky
        table.get_fault = flaky
    stats = Stats()

    diff = await verifier(source, destination, stats=stats).compare()

    assert (diff.missing, diff.extra, diff.different) == (1, 0, 0)
    assert diff.examples["missing"] == [key_id(pk("item-0100"))]
    assert (diff.source_items, diff.destination_items) == (180, 179)
    injected = source.injected + destination.injected
    assert injected["Scan"] > 0
    assert injected["BatchGetItem"] > 0
    assert stats.retries["Scan"] == injected["Scan"]
    assert stats.retries["BatchGetItem"] == injected["BatchGetItem"]


# -- what counts as equal -------------------------------------------------------------------------


def with_sets(value: str, order: int) -> Item:
    """An item with sets at the top, inside a map and inside a list, in an order."""

    def arrange(members: list[Any]) -> list[Any]:
        return members if order == 0 else members[::-1]

    return {
        **item(value),
        "ss": {"SS": arrange(["a", "b", "c"])},
        "ns": {"NS": arrange(["-1", "10", "9.5"])},
        "bs": {"BS": arrange([b"\x00", b"\x01", b"\xff"])},
        "map": {"M": {"tags": {"SS": arrange(["x", "y"])}, "n": {"N": "1"}}},
        "list": {"L": [{"NS": arrange(["1", "2"])}, {"S": "kept in order"}]},
    }


async def test_sets_in_another_order_compare_equal() -> None:
    source = FakeTable([with_sets(f"k{index}", 0) for index in range(20)], table="source")
    destination = FakeTable([with_sets(f"k{index}", 1) for index in range(20)])
    assert destination.items != source.items

    diff = await verifier(source, destination).compare()

    assert diff.equal, diff.report()


@pytest.mark.parametrize(("attribute", "value"), [
    ("ss", {"SS": ["a", "b", "d"]}),
    ("ns", {"NS": ["-1", "10"]}),
    ("map", {"M": {"tags": {"SS": ["x", "z"]}, "n": {"N": "1"}}}),
    ("list", {"L": [{"S": "kept in order"}, {"NS": ["1", "2"]}]}),
], ids=["string-set", "number-set", "set-in-a-map", "list-order"])
async def test_a_set_with_other_members_or_a_list_in_another_order_is_different(
    attribute: str, value: dict[str, Any],
) -> None:
    source = FakeTable([with_sets(f"k{index}", 0) for index in range(5)], table="source")
    destination = FakeTable([with_sets(f"k{index}", 1) for index in range(5)])
    destination.items[key_id(pk("k3"))][attribute] = value

    diff = await verifier(source, destination).compare()

    assert (diff.missing, diff.extra, diff.different) == (0, 0, 1)
    assert diff.examples["different"] == [key_id(pk("k3"))]


async def test_a_map_attribute_named_like_a_set_type_is_compared_by_its_value() -> None:
    source = FakeTable([{**item("k"), "m": {"M": {"SS": {"S": "one"}}}}], table="source")
    destination = FakeTable([{**item("k"), "m": {"M": {"SS": {"S": "other"}}}}])
    assert normalize(source.items[key_id(pk("k"))]) != normalize(
        destination.items[key_id(pk("k"))])

    diff = await verifier(source, destination).compare()

    assert diff.different == 1


def test_a_noted_difference_makes_a_diff_unequal_and_is_reported() -> None:
    diff = TableDiff()
    assert diff.equal
    diff.note("extra", key_id(pk("a")))
    assert not diff.equal
    assert diff.report() == [
        "NOT equal: 0 missing, 1 extra, 0 different (source 0 items, destination 0)",
        "first extra: pk='a'",
    ]
