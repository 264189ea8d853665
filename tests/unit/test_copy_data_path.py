"""The bootstrap copy's data path on the fakes: every item of a parallel, paged Scan
reaches the destination unchanged, through unprocessed items and retried errors; a
segment's row moves only after its page is written, so a resumed copy reads only what
is left; a refused item stops the copy and names its key; a lost copy lease stops the
writes; the read and write limits hold on the virtual clock."""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from replicator.copy.claims import DONE, HEADER, START, CopyHeader, copy_key, segment_id
from replicator.copy.table_copy import CopySettings, TableCopy
from replicator.errors import PoisonRecordError, ReplicatorError
from replicator.lease import Lease
from replicator.protocols import DestinationWriter, SegmentScanner
from replicator.records import Item, decode_key, encode_key, key_id
from replicator.stats import Stats
from tests.fakes import (
    STREAM_ARN,
    Call,
    FakeDestination,
    FakeLeaseStore,
    FakeStream,
    FakeTable,
    item,
    throttled,
    timed_out,
    transient,
    unprocessed_every,
    unprocessed_randomly,
)
from tests.unit.harness import CLOCK, FAST

pytestmark = pytest.mark.timeout(20)

COPY_KEY = copy_key(STREAM_ARN)
#: The source's clock (epoch seconds), for the second the copy begins at.
SOURCE_WALL = 1_700_000_000.0


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """The backoff's jitter, and so the order of events, the same on every run."""
    random.seed(1)


def numbered(count: int) -> list[Item]:
    return [item(f"item-{index:04d}", v=index) for index in range(count)]


def one_shard_stream() -> FakeStream:
    stream = FakeStream()
    stream.wall_clock = lambda: SOURCE_WALL
    stream.add_shard()
    return stream


def copy_of(source: SegmentScanner, destination: DestinationWriter, store: FakeLeaseStore,
            *, stream: FakeStream | None = None, stats: Stats | None = None,
            stop: asyncio.Event | None = None, key_names: tuple[str, ...] = ("pk",),
            **overrides: Any) -> TableCopy:
    values: dict[str, Any] = {"worker_id": "copier", "segments": 4}
    values.update(overrides)
    return TableCopy(
        source=source, destination=destination, streams=stream or one_shard_stream(),
        store=store, stream_arn=STREAM_ARN, settings=CopySettings(**values),
        stats=stats or Stats(), stop=stop or asyncio.Event(), clock=CLOCK,
        key_names=key_names, backoff=FAST,
    )


def copy_rows(store: FakeLeaseStore) -> dict[str, Lease]:
    return {shard_id: row for (arn, shard_id), row in store.rows.items() if arn == COPY_KEY}


def segment_items(source: FakeTable, segment: int, total: int) -> list[Item]:
    """The segment's items in the order its pages serve them."""
    return sorted((entry for entry in source.items.values()
                   if source.segment_of(entry, total) == segment), key=source.key_of)


def key_item(source: FakeTable, entry: Item) -> Item:
    return {name: entry[name] for name in source.key_names}


def pages_served(source: FakeTable) -> Counter[int]:
    return Counter(segment for segment, _ in source.scans)


def pages_of(source: FakeTable) -> list[tuple[int, str | None]]:
    """The pages served, each named by its segment and start key."""
    return [(segment, None if start is None else encode_key(start))
            for segment, start in source.scans]


def read_once(source: FakeTable) -> bool:
    """No page was served twice."""
    pages = pages_of(source)
    return len(set(pages)) == len(pages)


def written_once(destination: FakeDestination) -> bool:
    return all(count == 1 for count in Counter(write.key for write in destination.log).values())


def guard_segment_rows(store: FakeLeaseStore, source: FakeTable, destination: FakeDestination,
                       total: int) -> list[str]:
    """Check every write of a segment's row: the items up to the key it records (all of
    the segment's at DONE) are in the destination. Returns the violations seen."""
    violations: list[str] = []

    def observe(operation: str, lease: Lease) -> None:
        if lease.stream_arn != COPY_KEY or not lease.shard_id.startswith("segment-"):
            return
        if lease.checkpoint == START:
            return
        segment = int(lease.shard_id.removeprefix("segment-"))
        covered = segment_items(source, segment, total)
        if lease.checkpoint != DONE:
            reached = key_id(decode_key(lease.checkpoint))
            covered = [entry for entry in covered if source.key_of(entry) <= reached]
        unwritten = [source.key_of(entry) for entry in covered
                     if source.key_of(entry) not in destination.table]
        if unwritten:
            violations.append(f"{operation} {lease.shard_id} at {lease.checkpoint} "
                              f"covers unwritten {unwritten}")

    store.observer = observe
    return violations


# -- every item, unchanged -------------------------------------------------------------


@pytest.mark.parametrize("key_names", [("pk",), ("pk", "sk")], ids=["hash", "hash-and-range"])
async def test_every_item_of_a_multi_segment_multi_page_source_is_copied_once_and_equal(
    key_names: tuple[str, ...],
) -> None:
    if key_names == ("pk",):
        items = numbered(230)
    else:  # a few hash keys with many sort keys each: pages end inside a hash key
        items = [{**item(f"user-{user}", v=user * 100 + n), "sk": {"N": str(n)}}
                 for user in range(12) for n in range(20)]
    source = FakeTable(items, key_names=key_names, page_size=7)
    destination, store, stats = FakeDestination(key_names), FakeLeaseStore(), Stats()
    copy = copy_of(source, destination, store, stats=stats, key_names=key_names)

    assert await copy.run() is True

    assert destination.table == source.items
    assert written_once(destination)
    assert len(destination.log) == len(items)
    assert destination.violations == []
    assert all(len(batch) <= 25 for batch in destination.batches)
    served = pages_served(source)
    assert sorted(served) == [0, 1, 2, 3]
    assert min(served.values()) > 1  # every segment had several pages
    assert read_once(source)
    assert copy.progress.items_written == stats.copy_items_written == len(items)
    assert copy.progress.segments_done == 4
    rows = copy_rows(store)
    assert {shard_id: (row.checkpoint, row.owner) for shard_id, row in rows.items()} == {
        HEADER: (DONE, None), **{segment_id(i): (DONE, "copier") for i in range(4)}}


def every_type(index: int) -> Item:
    return {
        "pk": {"S": f"typed-{index:03d}"},
        "s": {"S": "ünïcode \"quoted\" {json} \x00 " * (index % 3)},
        "empty": {"S": ""},
        "n": {"N": "12345678901234567890.123456789"},
        "negative": {"N": "-1.5E-10"},
        "b": {"B": bytes(range(index % 256, 256))},
        "yes": {"BOOL": True},
        "no": {"BOOL": False},
        "null": {"NULL": True},
        "ss": {"SS": ["b", "a", f"x{index}"]},
        "ns": {"NS": ["10", "9", "-0.5"]},
        "bs": {"BS": [b"\x01", b"\x00\xff"]},
        "list": {"L": [{"S": "a"}, {"N": "1"}, {"L": []}, {"M": {"deep": {"SS": ["z"]}}}]},
        "map": {"M": {"inner": {"M": {"n": {"N": "0"}, "b": {"B": b"\xfe"}}},
                      "list": {"L": [{"NULL": True}, {"BOOL": False}]}, "empty": {"M": {}}}},
    }


async def test_items_of_every_attribute_type_are_copied_unchanged() -> None:
    items = [every_type(index) for index in range(40)]
    source = FakeTable(items, page_size=6)
    destination, store = FakeDestination(), FakeLeaseStore()

    assert await copy_of(source, destination, store, segments=3).run() is True

    assert len(destination.table) == 40
    for entry in items:
        copied = destination.table[key_id({"pk": entry["pk"]})]
        assert copied == entry
        assert type(copied["b"]["B"]) is bytes
    assert written_once(destination)


async def test_binary_keys_are_checkpointed_and_read_back_as_bytes() -> None:
    """A segment's row records the LastEvaluatedKey as JSON: a binary key must come back
    as the very bytes, or the next page would start elsewhere."""
    items: list[Item] = [{"id": {"B": bytes([index, 0, 255 - index])}, "v": {"N": str(index)}}
             for index in range(60)]
    source = FakeTable(items, key_names=("id",), page_size=5)
    destination, store = FakeDestination(("id",)), FakeLeaseStore()
    recorded: list[str] = []

    def observe(operation: str, lease: Lease) -> None:
        if lease.shard_id.startswith("segment-") and lease.checkpoint not in (START, DONE):
            recorded.append(lease.checkpoint)

    store.observer = observe

    assert await copy_of(source, destination, store, segments=2,
                         key_names=("id",)).run() is True

    assert destination.table == source.items
    assert written_once(destination)
    assert recorded
    for checkpoint in recorded:
        key = decode_key(checkpoint)
        assert isinstance(key["id"]["B"], bytes)
        assert key_id(key) in source.items
    # Each page began right after the key the previous page ended at.
    started = [start for _, start in source.scans if start is not None]
    assert {encode_key(start) for start in started} == set(recorded)


# -- unprocessed items and retried errors ---------------------------------------------------


async def test_unprocessed_items_are_sent_again_until_each_is_written_once() -> None:
    source = FakeTable(numbered(200), page_size=30)
    destination, store, stats = FakeDestination(), FakeLeaseStore(), Stats()
    destination.unprocessed = unprocessed_every(2)
    copy = copy_of(source, destination, store, stats=stats)

    assert await copy.run() is True

    assert destination.table == source.items
    assert destination.unprocessed_calls > 0
    assert stats.unprocessed_retries == destination.unprocessed_calls
    # Each item applied exactly once: an unprocessed request is not applied, and is sent
    # again; the items counted as written are those the destination applied.
    assert len(destination.log) == 200
    assert written_once(destination)
    sent = sum(len(batch) for batch in destination.batches)
    assert sent > 200
    assert copy.progress.items_written == 200


async def test_items_left_unprocessed_at_random_never_let_a_segment_row_pass_them() -> None:
    source = FakeTable(numbered(300), page_size=13)
    destination, store = FakeDestination(), FakeLeaseStore()
    destination.unprocessed = unprocessed_randomly(random.Random(11), 0.4)
    violations = guard_segment_rows(store, source, destination, total=3)

    assert await copy_of(source, destination, store, segments=3).run() is True

    assert violations == []
    assert destination.unprocessed_calls > 10
    assert destination.table == source.items
    assert written_once(destination)


def flaky(call: Call) -> ReplicatorError | None:
    """Throttled, internal errors and timeouts on a fixed share of the calls."""
    if call.number % 3 == 0:
        return throttled(call)
    if call.number % 5 == 0:
        return transient(call)
    if call.number % 7 == 0:
        return timed_out(call)
    return None


async def test_throttled_and_transient_scan_and_write_errors_are_retried_and_nothing_is_lost(
) -> None:
    source = FakeTable(numbered(250), page_size=9)
    source.scan_fault = flaky
    destination, store, stats = FakeDestination(), FakeLeaseStore(), Stats()
    destination.fault = flaky
    violations = guard_segment_rows(store, source, destination, total=4)
    copy = copy_of(source, destination, store, stats=stats)

    assert await copy.run() is True

    assert destination.table == source.items
    assert written_once(destination)
    assert violations == []
    assert source.injected["Scan"] > 5
    assert destination.injected > 5
    assert stats.retries["Scan"] == source.injected["Scan"]
    assert stats.retries["BatchWriteItem"] == destination.injected
    assert stats.throttles["Scan"] > 0
    assert stats.throttles["BatchWriteItem"] > 0
    # A failed Scan serves no page and is asked again from the same key: every page was
    # served once, and the failures added none.
    assert read_once(source)
    assert source.counts["Scan"] == len(source.scans) + source.injected["Scan"]


# -- a segment's row moves only after its page is written ---------------------------------


class HeldWrites:
    """A ``DestinationWriter`` that holds the BatchWriteItems ``hold`` picks until the
    test lets each through; the others go straight to ``destination``."""

    def __init__(self, destination: FakeDestination,
                 hold: Callable[[list[dict[str, Any]]], bool] = lambda requests: True) -> None:
        self.destination = destination
        self.hold = hold
        self.held: asyncio.Queue[tuple[list[dict[str, Any]], asyncio.Future[None]]] = (
            asyncio.Queue())

    async def batch_write(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.hold(requests):
            release: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            await self.held.put((requests, release))
            await release
        return await self.destination.batch_write(requests)

    async def next_held(self) -> tuple[list[dict[str, Any]], asyncio.Future[None]]:
        async with asyncio.timeout(5):
            return await self.held.get()


def pks(requests: list[dict[str, Any]]) -> list[str]:
    return [request["PutRequest"]["Item"]["pk"]["S"] for request in requests]


async def test_a_segments_row_moves_to_a_pages_last_key_only_once_the_page_is_written(
) -> None:
    """One segment of three pages: while each page's write is held, the row still names
    the previous page's last key (or START), however long the write takes."""
    items = numbered(30)
    source = FakeTable(items, page_size=10)
    destination, store = FakeDestination(), FakeLeaseStore()
    writes = HeldWrites(destination)
    copy = asyncio.create_task(copy_of(source, writes, store, segments=1).run())

    expected = START
    for page in range(3):
        requests, release = await writes.next_held()
        assert pks(requests) == [f"item-{index:04d}" for index in range(10 * page, 10 * page + 10)]
        await CLOCK.sleep(5.0)  # the write takes (virtual) seconds: the row waits for it
        assert writes.held.empty()
        row = store.row(segment_id(0), COPY_KEY)
        assert row is not None
        assert row.checkpoint == expected
        assert len(destination.table) == 10 * page
        release.set_result(None)
        expected = encode_key(key_item(source, items[10 * page + 9]))

    assert await copy is True
    row = store.row(segment_id(0), COPY_KEY)
    assert row is not None
    assert row.checkpoint == DONE
    assert destination.table == source.items
    # The row went START, then page by page: never ahead of the destination.
    moves = [lease.checkpoint for operation, lease in store.history
             if lease.shard_id == segment_id(0) and operation == "UpdateItem"
             and lease.checkpoint != START]
    assert [checkpoint for i, checkpoint in enumerate(moves)
            if i == 0 or moves[i - 1] != checkpoint] == [
        encode_key(key_item(source, items[9])), encode_key(key_item(source, items[19])), DONE]


async def test_a_page_with_one_batch_held_is_not_checkpointed_though_its_other_batches_are(
) -> None:
    """A page of 60 items goes out in three batches; the second is held. The other two
    are written, and the segment's row stays at START until the held one is."""
    items = numbered(100)
    source = FakeTable(items, page_size=60)
    destination, store = FakeDestination(), FakeLeaseStore()
    writes = HeldWrites(destination, hold=lambda requests: "item-0030" in pks(requests))
    copy = asyncio.create_task(copy_of(source, writes, store, segments=1).run())

    requests, release = await writes.next_held()
    assert pks(requests) == [f"item-{index:04d}" for index in range(25, 50)]
    await destination.wait_until(lambda table: len(table) == 35)
    await CLOCK.sleep(5.0)
    assert len(destination.table) == 35  # the next page waits for this one
    row = store.row(segment_id(0), COPY_KEY)
    assert row is not None
    assert row.checkpoint == START
    release.set_result(None)

    assert await copy is True
    assert destination.table == source.items
    first_move = next(lease.checkpoint for operation, lease in store.history
                      if lease.shard_id == segment_id(0) and lease.checkpoint != START)
    assert first_move == encode_key(key_item(source, items[59]))


# -- resuming ---------------------------------------------------------------------------


async def test_a_resumed_copy_reads_and_writes_only_the_unfinished_segments_and_pages() -> None:
    """Rows left by a worker that died: segments 0 and 3 done, 1 not begun, 2 past its
    second page. The copy taken over scans and writes only what those rows leave."""
    source = FakeTable(numbered(160), page_size=8)
    seg = {index: segment_items(source, index, 4) for index in range(4)}
    assert all(len(items) > 24 for items in seg.values())
    reached = seg[2][15]  # the last item of segment 2's second page
    store = FakeLeaseStore()
    for row in (
        Lease(COPY_KEY, HEADER, None, "dead", 7,
              CopyHeader(done=False, segments=4, since=int(SOURCE_WALL) - 1).value()),
        Lease(COPY_KEY, segment_id(0), None, "dead", 3, DONE),
        Lease(COPY_KEY, segment_id(1), None, "dead", 1, START),
        Lease(COPY_KEY, segment_id(2), None, "dead", 4, encode_key(key_item(source, reached))),
        Lease(COPY_KEY, segment_id(3), None, "dead", 5, DONE),
        Lease(STREAM_ARN, "shardId-00001", None, None, 0, f"SINCE:{int(SOURCE_WALL) - 1}"),
    ):
        await store.plant(row)
    destination = FakeDestination()
    copy = copy_of(source, destination, store, lease_duration=1.0, coordinator_interval=0.1)

    assert await copy.run() is True

    left = [*seg[1], *seg[2][16:]]
    assert set(destination.table) == {source.key_of(entry) for entry in left}
    assert len(destination.log) == len(left)
    assert written_once(destination)
    served = pages_served(source)
    assert served == Counter({1: math.ceil(len(seg[1]) / 8),
                              2: math.ceil(len(seg[2][16:]) / 8)})
    assert next(start for segment, start in source.scans if segment == 1) is None
    assert next(start for segment, start in source.scans if segment == 2) == key_item(
        source, reached)
    assert copy.progress.resumed
    assert copy.progress.segments_skipped == 2
    rows = copy_rows(store)
    assert {shard_id: row.checkpoint for shard_id, row in rows.items()} == {
        HEADER: DONE, **{segment_id(index): DONE for index in range(4)}}
    assert rows[HEADER].owner is None


async def test_a_stopped_copy_checkpoints_the_pages_it_wrote_and_resumes_after_them() -> None:
    """``stop`` lets each segment finish the page it is writing and checkpoint it; the
    page read ahead is dropped. The next run writes no item twice and reads again only
    those read-ahead pages, one a segment at most."""
    source = FakeTable(numbered(200), page_size=10)
    destination, store = FakeDestination(), FakeLeaseStore()
    stop = asyncio.Event()
    destination.on_write = lambda write: stop.set() if len(destination.log) == 90 else None

    assert await copy_of(source, destination, store, stop=stop).run() is False

    rows = copy_rows(store)
    assert rows[HEADER].checkpoint != DONE
    assert rows[HEADER].owner is None  # released: another worker may take it at once
    assert 90 <= len(destination.log) < 200
    assert all(rows[segment_id(index)].checkpoint != START for index in range(4))
    first_pages = pages_of(source)

    assert await copy_of(source, destination, store).run() is True

    assert destination.table == source.items
    assert written_once(destination)
    again = pages_of(source)[len(first_pages):]
    assert len(set(again)) == len(again)
    read_twice = [page for page in again if page in first_pages]
    assert len({segment for segment, _ in read_twice}) == len(read_twice) <= 4


# -- a refused item ---------------------------------------------------------------------------


async def test_an_item_the_destination_refuses_ends_the_copy_naming_it_and_its_page_stays_unwritten(
) -> None:
    items = numbered(30)
    items[15] = {**items[15], "poison": {"S": "too big"}}
    source = FakeTable(items, page_size=10, table="orders")
    destination, store = FakeDestination(), FakeLeaseStore()

    with pytest.raises(PoisonRecordError, match=r"pk=S:item-0015\) of source table orders"):
        await copy_of(source, destination, store, segments=1).run()

    rows = copy_rows(store)
    # The refused item's page is not checkpointed: the row is at the page before it.
    assert rows[segment_id(0)].checkpoint == encode_key(key_item(source, items[9]))
    assert rows[HEADER].checkpoint != DONE
    assert rows[HEADER].owner is None
    assert key_id({"pk": items[15]["pk"]}) not in destination.table
    assert {f"item-{index:04d}" for index in range(10)} <= {
        entry["pk"]["S"] for entry in destination.table.values()}
    assert not any(entry["pk"]["S"] >= "item-0020" for entry in destination.table.values())

    # Once the item is fixed, the copy runs again from the page that holds it.
    del source.items[key_id({"pk": items[15]["pk"]})]["poison"]
    scans_before = len(source.scans)
    assert await copy_of(source, destination, store, segments=1).run() is True
    assert source.scans[scans_before] == (0, key_item(source, items[9]))
    assert destination.table == source.items


async def test_a_refused_item_stops_the_other_segments_too() -> None:
    items = numbered(400)
    source = FakeTable(items, page_size=10)
    poisoned = segment_items(source, 0, 4)[0]
    source.items[source.key_of(poisoned)]["poison"] = {"S": "x"}
    destination, store = FakeDestination(), FakeLeaseStore()

    with pytest.raises(PoisonRecordError, match=poisoned["pk"]["S"]):
        await copy_of(source, destination, store, max_wcu=50).run()

    rows = copy_rows(store)
    assert rows[segment_id(0)].checkpoint == START
    assert all(rows[segment_id(index)].checkpoint != DONE for index in range(1, 4))
    assert len(destination.table) < 100


# -- the copy's lease --------------------------------------------------------------------


async def test_a_copy_whose_lease_is_taken_writes_nothing_until_it_takes_the_lease_back(
) -> None:
    """The checkpoint table stops answering the copier's renewals; once the lease has
    stood still for a lease duration another worker takes it (and then dies). The
    copier's writes stop by the end of its fence, and start again only when it has
    taken the copy back; nothing is lost."""
    lease_duration = 2.0
    source = FakeTable(numbered(200), page_size=10)
    destination, store = FakeDestination(), FakeLeaseStore()
    written_at: list[float] = []
    header_writes: list[tuple[float, str | None]] = []
    outage = asyncio.Event()

    def observe(operation: str, lease: Lease) -> None:
        if (lease.stream_arn, lease.shard_id) == (COPY_KEY, HEADER):
            header_writes.append((CLOCK.monotonic(), lease.owner))

    def on_write(write: object) -> None:
        written_at.append(CLOCK.monotonic())
        if len(destination.log) == 50:
            outage.set()

    destination.on_write = on_write
    store.observer = observe
    store.fault = lambda call: transient(call) if (
        outage.is_set() and call.operation == "UpdateItem" and call.shard_id == HEADER
    ) else None

    async def other_worker() -> float:
        await outage.wait()
        await CLOCK.sleep(lease_duration)
        row = store.row(HEADER, COPY_KEY)
        assert row is not None
        await store.plant(replace(row, owner="other", counter=row.counter + 1))
        store.fault = None
        return CLOCK.monotonic()

    thief = asyncio.create_task(other_worker())
    copy = copy_of(source, destination, store, max_wcu=20, lease_duration=lease_duration,
                   lease_renew_interval=0.5, coordinator_interval=0.1)

    assert await copy.run() is True

    taken_at = await thief
    last_held = max(at for at, owner in header_writes if at <= taken_at and owner == "copier")
    back_at = min(at for at, owner in header_writes if at > taken_at and owner == "copier")
    assert back_at >= taken_at + lease_duration  # it waited for the other's lease to expire
    fence_end = last_held + lease_duration
    assert [at for at in written_at if fence_end < at < back_at] == []
    assert any(at > back_at for at in written_at)
    assert destination.table == source.items
    row = store.row(HEADER, COPY_KEY)
    assert row is not None
    assert (row.checkpoint, row.owner) == (DONE, None)


async def test_a_copy_whose_lease_is_taken_stops_writing_and_waits_for_the_new_owner() -> None:
    source = FakeTable(numbered(200), page_size=10)
    destination, store = FakeDestination(), FakeLeaseStore()
    stop = asyncio.Event()
    copy = copy_of(source, destination, store, stop=stop, max_wcu=20, lease_duration=30.0,
                   lease_renew_interval=0.5, coordinator_interval=0.1)
    run = asyncio.create_task(copy.run())

    await destination.wait_until(lambda table: len(table) >= 40)
    row = store.row(HEADER, COPY_KEY)
    assert row is not None
    await store.plant(replace(row, owner="other", counter=row.counter + 1))
    taken_at = CLOCK.monotonic()
    written = len(destination.log)
    await CLOCK.sleep(10.0)  # well within the other worker's lease
    row = store.row(HEADER, COPY_KEY)
    assert row is not None
    assert row.owner == "other"
    # Writes may go on until the next renewal fails: at most a bucket's units and a
    # renewal interval's more (20 units a second); none after.
    assert len(destination.log) - written <= 20 + 20 * 0.5
    settled = len(destination.log)
    await CLOCK.sleep(10.0)
    assert len(destination.log) == settled
    stop.set()
    assert await run is False
    assert CLOCK.monotonic() - taken_at < 30.0
    assert len(destination.table) < 200


# -- read and write limits ------------------------------------------------------------------


@pytest.mark.parametrize(("size", "units"), [(10, 1), (2500, 3)], ids=["small", "2.5KB"])
async def test_max_wcu_caps_the_write_units_a_virtual_second(size: int, units: int) -> None:
    rate = 30.0
    items = [{**entry, "pad": {"S": "x" * size}} for entry in numbered(150)]
    # Batches of 10 items, at most the bucket's units: a bigger one goes at a full bucket
    # and leaves a debt, which this bound would not allow for.
    source = FakeTable(items, page_size=10)
    destination, store = FakeDestination(), FakeLeaseStore()
    written_at: list[float] = []
    destination.on_write = lambda write: written_at.append(CLOCK.monotonic())
    began = CLOCK.monotonic()

    assert await copy_of(source, destination, store, max_wcu=rate).run() is True

    assert destination.table == source.items
    # A bucket of one second's units: by any moment, at most that plus the rate since.
    for count, at in enumerate(sorted(written_at), start=1):
        assert count * units <= rate + rate * (at - began) + 1e-6, (count, at - began)
    total = 150 * units
    elapsed = max(written_at) - began
    assert elapsed >= (total - rate) / rate - 1e-6
    assert elapsed <= (total - rate) / rate + 1.0  # and not much slower than the cap


class TimedScans:
    """A ``SegmentScanner`` in front of a ``FakeTable`` that logs, for each page, when it
    was asked for and answered (``CLOCK.stamp``: in order at one instant) and the read
    units it consumed."""

    def __init__(self, table: FakeTable) -> None:
        self._table = table
        self.table = table.table
        self.pages: list[tuple[float, float, float]] = []

    async def scan_page(self, *, segment: int, total_segments: int, start_key: Item | None,
                        limit: int | None = None, call_timeout: float | None = None,
                        ) -> tuple[list[Item], Item | None, float]:
        asked = CLOCK.stamp()
        answer = await self._table.scan_page(segment=segment, total_segments=total_segments,
                                             start_key=start_key, limit=limit,
                                             call_timeout=call_timeout)
        self.pages.append((asked, CLOCK.stamp(), answer[2]))
        return answer


async def test_max_rcu_caps_the_read_units_a_virtual_second() -> None:
    rate = 20.0
    source = FakeTable(numbered(240), page_size=10)  # 10 read units a page
    scans = TimedScans(source)
    destination, store = FakeDestination(), FakeLeaseStore()
    began = CLOCK.monotonic()

    assert await copy_of(scans, destination, store, max_rcu=rate).run() is True

    assert destination.table == source.items
    # A page is asked for only while the units of the pages answered before it are within
    # a bucket of one second's units, plus the rate since the copy began. (Pages of other
    # segments asked for and not answered yet are charged when they are.)
    for asked, _, _ in scans.pages:
        paid = sum(units for _, answered, units in scans.pages if answered < asked)
        assert paid <= rate + rate * (asked - began) + 1e-6, (paid, asked - began)
    assert sum(units for _, _, units in scans.pages) == 240
    last_asked = max(asked for asked, _, _ in scans.pages)
    assert last_asked - began >= (240 - 10 * 4 - rate) / rate - 1e-6
