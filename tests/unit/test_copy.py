"""The bootstrap copy's pure parts: the rate limiter, LastEvaluatedKey encoding, when
``run`` copies first (``bootstrap_needed``), the default number of Scan segments, and
workers that start together: one copies, the others stream after it."""

from __future__ import annotations

import asyncio
import json
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from replicator.backoff import Backoff
from replicator.checkpoint import Sentinel
from replicator.copy.claims import (
    DONE,
    HEADER,
    RUNNING,
    START,
    CopyHeader,
    SegmentProgress,
    bootstrap_needed,
    copy_key,
    segment_id,
)
from replicator.copy.scan import (
    BYTES_PER_SEGMENT,
    ScanPacing,
    default_segments,
    scan_segment,
)
from replicator.copy.table_copy import CopySettings, TableCopy
from replicator.errors import CallTimeoutError, StartupCheckError
from replicator.lease import Lease
from replicator.rate import RateLimiter
from replicator.records import Item, decode_key, encode_key
from replicator.stats import Stats
from tests.clock import START as T0
from tests.clock import VirtualClock
from tests.fakes import (
    STREAM_ARN,
    FakeDestination,
    FakeLeaseStore,
    FakeSourceTable,
    FakeStream,
    expired_iterator,
    item,
    on_calls,
)
from tests.unit.harness import CLOCK

# -- RateLimiter ---------------------------------------------------------------------


class RecordingClock(VirtualClock):
    """The test loop's virtual clock, remembering every sleep asked of it."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.slept.append(seconds)
        await super().sleep(seconds)


@pytest.fixture
def clock() -> RecordingClock:
    return RecordingClock()


async def test_a_full_bucket_lets_one_second_of_units_through_at_once(
    clock: RecordingClock,
) -> None:
    limiter = RateLimiter(10, clock=clock)
    for _ in range(10):
        await limiter.acquire(1)
    assert clock.monotonic() == T0
    assert clock.slept == []
    await limiter.acquire(1)  # the eleventh waits for one unit: a tenth of a second
    assert clock.monotonic() == pytest.approx(T0 + 0.1)


async def test_the_rate_is_respected_over_many_calls(clock: RecordingClock) -> None:
    limiter = RateLimiter(50, clock=clock)
    for _ in range(550):
        await limiter.acquire(1)
    # 50 from the full bucket, then 500 more at 50 a second.
    assert clock.monotonic() - T0 == pytest.approx(10.0, rel=1e-6)


async def test_concurrent_callers_share_the_rate(clock: RecordingClock) -> None:
    limiter = RateLimiter(20, clock=clock)
    done_at: list[float] = []

    async def caller() -> None:
        for _ in range(15):
            await limiter.acquire(2)
            done_at.append(clock.monotonic())

    await asyncio.gather(*(caller() for _ in range(4)))
    # 4 * 15 * 2 = 120 units: 20 from the bucket, 100 more at 20 a second.
    assert max(done_at) - T0 == pytest.approx(5.0, rel=1e-6)
    assert len(done_at) == 60


async def test_none_means_unlimited(clock: RecordingClock) -> None:
    limiter = RateLimiter(None, clock=clock)
    for _ in range(1000):
        await limiter.acquire(1_000_000)
    limiter.charge(10**9)
    await limiter.acquire(1)
    assert clock.slept == []
    assert clock.monotonic() == T0


async def test_a_charge_leaves_a_debt_that_the_next_caller_waits_off(clock: RecordingClock) -> None:
    limiter = RateLimiter(10, clock=clock)
    await limiter.acquire(1)  # 9 left
    limiter.charge(24)  # 15 in debt
    await limiter.acquire(1)  # waits until one unit is there: 16 units at 10 a second
    assert clock.monotonic() - T0 == pytest.approx(1.6)
    await limiter.acquire(0)
    assert clock.monotonic() - T0 == pytest.approx(1.6)  # nothing is owed any more


async def test_the_debt_is_paid_by_time_already_passed(clock: RecordingClock) -> None:
    limiter = RateLimiter(10, clock=clock)
    limiter.charge(30)  # -20
    clock.advance(2.5)  # 25 units refilled meanwhile: 5 left
    await limiter.acquire(5)
    assert clock.slept == []


async def test_a_call_bigger_than_the_bucket_does_not_wait_for_ever(clock: RecordingClock) -> None:
    limiter = RateLimiter(10, clock=clock)
    await limiter.acquire(50)  # more than a second's worth: let through at a full bucket
    assert clock.monotonic() == T0
    await limiter.acquire(1)  # but the rest is a debt: 40 owed, plus the one asked for
    assert clock.monotonic() - T0 == pytest.approx(4.1)


async def test_the_bucket_holds_at_most_one_second_of_units(clock: RecordingClock) -> None:
    limiter = RateLimiter(10, clock=clock)
    clock.advance(3600)  # an hour idle does not save up an hour of units
    for _ in range(10):
        await limiter.acquire(1)
    assert clock.slept == []
    await limiter.acquire(1)
    assert clock.monotonic() - T0 - 3600 == pytest.approx(0.1)


async def test_a_deficit_of_a_rounding_error_still_ends(clock: RecordingClock) -> None:
    """A wait for a deficit too small to move a float clock ends all the same."""
    limiter = RateLimiter(3, clock=clock)
    for _ in range(1000):
        await limiter.acquire(0.1)
    assert clock.monotonic() - T0 == pytest.approx((100 - 3) / 3, rel=1e-3)


# -- encode_key / decode_key ----------------------------------------------------------


def test_a_key_with_every_key_type_round_trips() -> None:
    key: Item = {
        "pk": {"S": "user-1 ünïcode \"quoted\" {json}"},
        "sk": {"N": "-12.5e3"},
        "bin": {"B": bytes(range(256))},
    }
    text = encode_key(key)
    assert isinstance(text, str)
    json.loads(text)  # plain JSON, storable as a string attribute
    assert decode_key(text) == key


def test_binary_values_are_base64_in_json() -> None:
    key: Item = {"id": {"B": b"\x00\xff\xfe"}}
    text = encode_key(key)
    assert json.loads(text) == {"id": {"B": {"$b64": "AP/+"}}}
    decoded = decode_key(text)
    assert decoded == key
    assert isinstance(decoded["id"]["B"], bytes)


def test_bytearray_decodes_as_bytes() -> None:
    assert decode_key(encode_key({"id": {"B": bytearray(b"ab")}})) == {"id": {"B": b"ab"}}


def test_the_encoding_does_not_depend_on_dict_order() -> None:
    first: Item = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    second: Item = {"sk": {"N": "1"}, "pk": {"S": "a"}}
    assert encode_key(first) == encode_key(second)


key_values = st.one_of(
    st.builds(lambda s: {"S": s}, st.text(min_size=1, max_size=20)),
    st.builds(lambda n: {"N": str(n)}, st.integers(-(10**30), 10**30)),
    st.builds(lambda b: {"B": b}, st.binary(min_size=1, max_size=40)),
)
# Attribute names are any text: include the marker the encoding uses for binary values.
attribute_names = st.one_of(st.sampled_from(["pk", "sk", "$b64", "B", "S"]),
                            st.text(min_size=1, max_size=10))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(attribute_names, key_values, min_size=1, max_size=2))
def test_any_key_round_trips(key: Item) -> None:
    assert decode_key(encode_key(key)) == key


# -- bootstrap_needed --------------------------------------------------------------------


def stream_row(shard_id: str = "shard-1", stream_arn: str = STREAM_ARN) -> Lease:
    return Lease(stream_arn, shard_id, None, None, 0, Sentinel.TRIM_HORIZON)


def copy_row(shard_id: str, checkpoint: str, owner: str | None = None) -> Lease:
    return Lease(copy_key(STREAM_ARN), shard_id, None, owner, 0, checkpoint)


async def planted(*rows: Lease) -> FakeLeaseStore:
    store = FakeLeaseStore()
    for row in rows:
        await store.plant(row)
    return store


async def needed(store: FakeLeaseStore) -> dict[str, bool]:
    return {mode: await bootstrap_needed(store, STREAM_ARN, mode, clock=CLOCK)
            for mode in ("never", "always", "auto")}


async def test_no_rows_at_all_copies_in_auto() -> None:
    assert await needed(await planted()) == {"never": False, "always": True, "auto": True}


async def test_stream_rows_only_do_not_copy_in_auto() -> None:
    """A task that streamed before (without a copy) does not start copying."""
    store = await planted(stream_row("shard-1"), stream_row("shard-2"))
    assert await needed(store) == {"never": False, "always": True, "auto": False}


async def test_rows_of_another_stream_do_not_count() -> None:
    """A re-created source table has a new stream: its task has no checkpoints for it."""
    store = await planted(stream_row(stream_arn=STREAM_ARN + "-old"))
    assert await needed(store) == {"never": False, "always": True, "auto": True}


async def test_a_running_copy_is_resumed_in_auto() -> None:
    # An interrupted copy has already written the stream's rows (its hand-off positions).
    store = await planted(
        stream_row(),
        copy_row(HEADER, f"{RUNNING}/4", owner="dead-worker"),
        copy_row(segment_id(0), DONE),
        copy_row(segment_id(1), START),
    )
    assert await needed(store) == {"never": False, "always": True, "auto": True}


async def test_a_running_copy_without_stream_rows_is_resumed_in_auto() -> None:
    store = await planted(copy_row(HEADER, f"{RUNNING}/4"))
    assert await needed(store) == {"never": False, "always": True, "auto": True}


async def test_a_finished_copy_is_not_repeated_in_auto() -> None:
    store = await planted(
        stream_row(),
        copy_row(HEADER, DONE),
        copy_row(segment_id(0), DONE),
    )
    assert await needed(store) == {"never": False, "always": True, "auto": False}


async def test_bootstrap_needed_only_reads() -> None:
    store = await planted(stream_row(), copy_row(HEADER, f"{RUNNING}/4"))
    before = dict(store.rows)
    await needed(store)
    assert store.rows == before
    assert store.counts["PutItem"] == store.counts["UpdateItem"] == 0
    assert store.counts["DeleteItem"] == 0


# -- workers that start together -------------------------------------------------------


class OtherWorkerCopiesFirst(FakeLeaseStore):
    """Another worker of the task, started at the same moment: it creates the copy,
    finishes it and begins to stream (its lease counter moves) just after this worker's
    ``stream_rows``-th read of the stream's rows, or with ``copy=False`` streams
    without any copy."""

    def __init__(self, stream_rows: int, *, copy: bool = True) -> None:
        super().__init__()
        self._reads_left = stream_rows
        self._copy = copy

    async def list_leases(self, stream_arn: str) -> list[Lease]:
        rows = await super().list_leases(stream_arn)
        if stream_arn == STREAM_ARN:
            self._reads_left -= 1
            if self._reads_left == 0:
                if self._copy:
                    await self.plant(copy_row(HEADER, DONE))
                row = self.rows[(STREAM_ARN, "shard-1")]
                await self.plant(Lease(row.stream_arn, row.shard_id, None, row.owner,
                                       row.counter + 1, row.checkpoint))
        return rows


def table_copy(store: FakeLeaseStore) -> TableCopy:
    """A copy whose tables and stream are never reached: it only looks at the rows."""
    unused = types.SimpleNamespace()
    settings = CopySettings(worker_id="late", lease_duration=0.5, coordinator_interval=0.02)
    return TableCopy(source=unused, destination=unused, streams=unused,  # type: ignore[arg-type]
                     store=store, stream_arn=STREAM_ARN, settings=settings, stats=Stats(),
                     stop=asyncio.Event(), clock=CLOCK, key_names=("pk",))


@pytest.mark.timeout(10)
@pytest.mark.parametrize("stream_rows", [1, 2], ids=["before-the-check", "while-waiting"])
async def test_a_copy_made_by_a_worker_that_started_together_is_followed_not_refused(
    stream_rows: int,
) -> None:
    """This worker saw no copy and no checkpoints; by the time it checks that nobody
    streams, another worker has copied and streams. It follows that copy: no error,
    no second copy."""
    store = OtherWorkerCopiesFirst(stream_rows)
    await store.plant(Lease(STREAM_ARN, "shard-1", None, "early", 0, "100"))
    assert await table_copy(store).run() is True
    assert store.counts["PutItem"] == store.counts["UpdateItem"] == 0
    assert store.row(HEADER, copy_key(STREAM_ARN)) == copy_row(HEADER, DONE)


@pytest.mark.timeout(10)
async def test_workers_streaming_without_a_copy_are_refused() -> None:
    store = OtherWorkerCopiesFirst(2, copy=False)
    await store.plant(Lease(STREAM_ARN, "shard-1", None, "early", 0, "100"))
    with pytest.raises(StartupCheckError, match=r"workers of this task are streaming \(early\)"):
        await table_copy(store).run()
    assert store.counts["PutItem"] == 0


# -- default_segments ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "segments"),
    [
        (0, 4),
        (1, 4),
        (BYTES_PER_SEGMENT, 4),
        (BYTES_PER_SEGMENT + 1, 8),
        (2 * BYTES_PER_SEGMENT, 8),
        (4 * BYTES_PER_SEGMENT, 16),
        (10 * 1024**3, 160),
    ],
)
def test_default_segments(size: int, segments: int) -> None:
    assert default_segments(size) == segments


def test_default_segments_grow_with_the_table() -> None:
    sizes = [0, 10**6, 10**9, 10**10, 10**12]
    counts = [default_segments(size) for size in sizes]
    assert counts == sorted(counts)
    assert min(counts) == 4


def test_a_timed_out_scan_page_gets_a_longer_timeout_before_a_smaller_page() -> None:
    pacing = ScanPacing(call_timeout=5.0, longest=40.0)
    # Nothing known of the pages yet: 1 MB pages, waited for the longest.
    assert (pacing.timeout, pacing.limit) == (40.0, None)
    pacing.arrived(1.0)
    assert pacing.timeout == 5.0
    pacing.timed_out()
    assert (pacing.timeout, pacing.limit) == (10.0, None)  # the same page, waited for longer
    pacing.timed_out()
    pacing.timed_out()
    assert (pacing.timeout, pacing.limit) == (40.0, None)
    pacing.timed_out()  # at the longest timeout: the transfer itself is slow
    assert (pacing.timeout, pacing.limit) == (40.0, ScanPacing.FIRST)
    pacing.timed_out()
    assert pacing.limit == ScanPacing.FIRST // 2
    for _ in range(ScanPacing.GROW_AFTER - 1):
        pacing.arrived(1.0)
    assert pacing.limit == ScanPacing.FIRST // 2  # not yet
    pacing.arrived(1.0)
    assert pacing.limit == ScanPacing.FIRST
    for _ in range(ScanPacing.GROW_AFTER):
        pacing.arrived(1.0)
    assert pacing.limit is None  # past FIRST: no limit again


def test_the_scan_timeout_follows_the_slowest_recent_pages() -> None:
    pacing = ScanPacing(call_timeout=5.0, longest=60.0)
    assert pacing.timeout == 60.0  # before any page
    pacing.arrived(4.0)  # a page as slow as that needs room to be slower still
    assert pacing.timeout == 12.0
    pacing.arrived(30.0)
    assert pacing.timeout == 60.0  # capped
    for _ in range(ScanPacing.RECENT):
        pacing.arrived(0.5)
    assert pacing.timeout == 5.0  # quick pages bring it back to the call timeout


class SlowScans(FakeSourceTable):
    """A Scan that takes ``seconds_per_item`` of (virtual) server time a returned item,
    and times out like ``map_errors`` when that exceeds the call's timeout."""

    def __init__(self, items: list[Item], seconds_per_item: float) -> None:
        super().__init__(items, page_size=100)
        self.seconds_per_item = seconds_per_item
        self.timeouts: list[float] = []
        self.calls: list[tuple[float | None, int | None]] = []

    async def scan_page(self, *, segment: int, total_segments: int, start_key: Item | None,
                        limit: int | None = None, call_timeout: float | None = None,
                        ) -> tuple[list[Item], Item | None, float]:
        self.calls.append((call_timeout, limit))
        items, last, units = await super().scan_page(
            segment=segment, total_segments=total_segments, start_key=start_key, limit=limit)
        needed = len(items) * self.seconds_per_item
        assert call_timeout is not None
        if needed > call_timeout:
            await CLOCK.sleep(call_timeout)
            self.timeouts.append(call_timeout)
            raise CallTimeoutError("Scan: no answer within the call timeout", operation="Scan")
        await CLOCK.sleep(needed)
        return items, last, units


@pytest.mark.timeout(10)
async def test_a_slow_scan_is_waited_for_rather_than_asked_again_in_pieces() -> None:
    # 100 items a page at 0.12 s each: 12 s a page, more than the 5 s call timeout.
    table = SlowScans([item(f"k{i:04d}", v=i) for i in range(600)], seconds_per_item=0.12)
    pacing = ScanPacing(call_timeout=5.0)
    pages = scan_segment(table, segment=0, total_segments=1, start_key=None,
                         limiter=RateLimiter(None, clock=CLOCK), backoff=Backoff(0.01, 0.05),
                         clock=CLOCK, stats=Stats(), pacing=pacing)
    copied = [entry async for page, _ in pages for entry in page]
    assert len(copied) == 600
    # The first page was waited for the longest, and each one after it for three times
    # the slowest so far: no page was abandoned, none cut smaller.
    assert table.timeouts == []
    assert {limit for _, limit in table.calls} == {None}
    assert len(table.calls) == 6


async def test_a_scan_page_slower_than_its_learned_timeout_is_waited_for_longer_next() -> None:
    # Quick pages bring the timeout down to the call timeout; then a page takes 12 s.
    items = [item(f"k{i:04d}", v=i) for i in range(600)]
    table = SlowScans(items, seconds_per_item=0.01)
    pacing = ScanPacing(call_timeout=5.0)
    pages = scan_segment(table, segment=0, total_segments=1, start_key=None,
                         limiter=RateLimiter(None, clock=CLOCK), backoff=Backoff(0.01, 0.05),
                         clock=CLOCK, stats=Stats(), pacing=pacing)
    copied = []
    async for page, _ in pages:
        copied.extend(page)
        if len(copied) == 300:
            assert pacing.timeout == 5.0
            table.seconds_per_item = 0.12
    assert len(copied) == 600
    # One page abandoned at 5 s and one at 10 s; then the pages came whole.
    assert table.timeouts == [5.0, 10.0]
    assert {limit for _, limit in table.calls} == {None}
    assert len(table.calls) == 6 + 2


# -- the stream's positions, recorded while the copy runs ---------------------------------


def copy_of(stream: FakeStream, store: FakeLeaseStore, source: FakeSourceTable,
            destination: FakeDestination, stats: Stats | None = None, *,
            hand_off: bool = False) -> TableCopy:
    """A copy of ``source`` whose writes are capped at 10 units a second, so that it lasts
    a few (virtual) seconds: long enough for the watchers to look at the stream."""
    settings = CopySettings(worker_id="copier", segments=2, max_wcu=10, idle_interval=0.25,
                            hand_off=hand_off)
    return TableCopy(source=source, destination=destination,  # type: ignore[arg-type]
                     streams=stream, store=store, stream_arn=STREAM_ARN, settings=settings,
                     stats=stats or Stats(), stop=asyncio.Event(), clock=CLOCK,
                     key_names=("pk",))


def source_items(count: int) -> list[Item]:
    return [item(f"item-{index:03d}", v=index) for index in range(count)]


@pytest.mark.timeout(10)
async def test_the_first_write_during_the_copy_becomes_the_streams_start() -> None:
    stream, store, destination = FakeStream(), FakeLeaseStore(), FakeDestination()
    shard = stream.add_shard()
    before = stream.put(shard, item("old", v=0))
    source = FakeSourceTable([*source_items(40), item("old", v=0)])
    written: list[str] = []
    source.on_scan = lambda _: written or written.append(stream.put(shard, item("new", v=1)))
    copy = copy_of(stream, store, source, destination)

    assert await copy.run() is True
    row = store.row(shard)
    assert row is not None
    assert row.checkpoint == f"AT:{written[0]}"  # not TRIM_HORIZON, where {before} is
    assert before != written[0]
    assert len(destination.table) == 41
    assert store.row(HEADER, copy_key(STREAM_ARN)) is not None
    assert copy.progress.items_written == 41


@pytest.mark.timeout(10)
async def test_a_watcher_whose_iterator_expires_leaves_the_stream_at_the_copys_start() -> None:
    """No new iterator can point where an expired LATEST iterator pointed, so the shard
    keeps its ``SINCE:`` start (always correct) and the copy goes on."""
    stream, store, destination = FakeStream(), FakeLeaseStore(), FakeDestination()
    stream.wall_clock = lambda: 1_700_000_000.5
    shard = stream.add_shard()
    stream.put(shard, item("old", v=0))
    stream.get_records_fault = on_calls([1], expired_iterator)
    source = FakeSourceTable(source_items(40))
    written: list[str] = []
    source.on_scan = lambda _: written or written.append(stream.put(shard, item("new", v=1)))
    stats = Stats()
    copy = copy_of(stream, store, source, destination, stats, hand_off=True)

    with capture_logs() as logs:
        assert await copy.run() is True
    assert stream.injected["GetRecords"] == 1
    row = store.row(shard)
    assert row is not None
    assert row.checkpoint == "SINCE:1699999999"  # the service's second, less one
    assert copy.handoff == {}  # nothing to hand over without a live iterator
    assert len(destination.table) == 40
    assert stats.expired_iterators == 1
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert [(w["event"], w["shard_id"]) for w in warnings] == [
        ("stream position not recorded; the stream reads the shard from its start and "
         "skips what the copy holds", shard)]


@pytest.mark.timeout(10)
async def test_with_no_write_during_the_copy_its_worker_takes_the_shard_and_its_iterator(
) -> None:
    stream, store, destination = FakeStream(), FakeLeaseStore(), FakeDestination()
    shard = stream.add_shard()
    for version in range(5):
        stream.put(shard, item(f"old-{version}", v=version))
    closed = stream.add_shard()
    stream.put(closed, item("older", v=0))
    stream.close(closed)
    copy = copy_of(stream, store, FakeSourceTable(source_items(40)), destination,
                   hand_off=True)

    assert await copy.run() is True
    (handed,) = copy.handoff.values()
    assert handed.lease.shard_id == shard
    row = store.row(shard)
    assert row is not None
    assert (row.owner, row.checkpoint) == ("copier", handed.lease.lease.checkpoint)
    assert row.checkpoint.startswith("SINCE:")
    closed_row = store.row(closed)
    assert closed_row is not None
    assert closed_row.checkpoint == Sentinel.SHARD_END
    # The header is DONE only after the lease was taken: no other worker got there first.
    header_done = next(i for i, (operation, lease) in enumerate(store.history)
                       if lease.shard_id == HEADER and lease.checkpoint == DONE)
    taken = next(i for i, (operation, lease) in enumerate(store.history)
                 if lease.shard_id == shard and lease.owner == "copier")
    assert taken < header_done
    # The iterator reads the head of the shard: what is written next, nothing older.
    new = stream.put(shard, item("new", v=9))
    page = await stream.get_records(handed.iterator, 100)
    assert [raw["dynamodb"]["SequenceNumber"] for raw in page.records] == [new]


@pytest.mark.timeout(10)
async def test_a_copy_for_the_copy_command_hands_nothing_over() -> None:
    stream, store, destination = FakeStream(), FakeLeaseStore(), FakeDestination()
    shard = stream.add_shard()
    copy = copy_of(stream, store, FakeSourceTable(source_items(10)), destination)

    assert await copy.run() is True
    assert copy.handoff == {}
    row = store.row(shard)
    assert row is not None
    assert row.owner is None


# -- the copy's rows, read -------------------------------------------------------------


def test_a_header_row_reads_back_what_was_written() -> None:
    header = CopyHeader(done=False, segments=8, since=1_700_000_000)
    row = Lease(copy_key(STREAM_ARN), HEADER, None, "w", 0, header.value())
    assert row.checkpoint == f"{RUNNING}/8/1700000000"
    assert CopyHeader.of(row) == header
    done = Lease(copy_key(STREAM_ARN), HEADER, None, None, 1, CopyHeader(done=True).value())
    assert CopyHeader.of(done).done


def test_a_header_written_before_the_copys_second_was_recorded_has_no_since() -> None:
    row = Lease(copy_key(STREAM_ARN), HEADER, None, "w", 0, f"{RUNNING}/4")
    assert CopyHeader.of(row) == CopyHeader(done=False, segments=4, since=None)


def test_a_segment_row_says_where_its_scan_resumes() -> None:
    def row(checkpoint: str) -> Lease:
        return Lease(copy_key(STREAM_ARN), segment_id(3), None, "w", 0, checkpoint)

    assert SegmentProgress.of(row(START)) == SegmentProgress(done=False, start_key=None)
    key = {"pk": {"S": "a"}, "sk": {"B": b"\x00\x01"}}
    assert SegmentProgress.of(row(SegmentProgress.after_page(key))).start_key == key
    assert SegmentProgress.of(row(SegmentProgress.after_page(None))).done
    assert SegmentProgress.after_page(None) == DONE
