"""The bootstrap copy's pure parts: the rate limiter, LastEvaluatedKey encoding, when
``run`` copies first (``bootstrap_needed``), the default number of Scan segments, and
workers that start together: one copies, the others stream after it."""

from __future__ import annotations

import asyncio
import json
import time
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator import scan
from replicator.checkpoint import Sentinel
from replicator.copy import (
    DONE,
    HEADER,
    RUNNING,
    START,
    CopySettings,
    TableCopy,
    bootstrap_needed,
    copy_key,
    segment_id,
)
from replicator.errors import StartupCheckError
from replicator.leases import Lease
from replicator.records import Item, decode_key, encode_key
from replicator.scan import BYTES_PER_SEGMENT, RateLimiter, default_segments
from replicator.stats import Stats
from tests.fakes import STREAM_ARN, FakeLeaseStore

# -- RateLimiter ---------------------------------------------------------------------


class FakeClock:
    """Virtual time for ``replicator.scan``: its sleeps advance the clock at once."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.slept.append(seconds)
        # Real sleeps take at least a little time: a sleep for a rounding error's worth
        # must still move the clock, or the limiter's wait loop would spin for ever.
        self.now += max(seconds, 1e-9)
        await asyncio.sleep(0)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    # Only replicator.scan's view of the modules is replaced, not asyncio itself.
    monkeypatch.setattr(scan, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    monkeypatch.setattr(scan, "asyncio", types.SimpleNamespace(sleep=fake.sleep,
                                                               Lock=asyncio.Lock))
    return fake


async def test_a_full_bucket_lets_one_second_of_units_through_at_once(clock: FakeClock) -> None:
    limiter = RateLimiter(10)
    for _ in range(10):
        await limiter.acquire(1)
    assert clock.now == 1000.0
    assert clock.slept == []
    await limiter.acquire(1)  # the eleventh waits for one unit: a tenth of a second
    assert clock.now == pytest.approx(1000.1)


async def test_the_rate_is_respected_over_many_calls(clock: FakeClock) -> None:
    limiter = RateLimiter(50)
    for _ in range(550):
        await limiter.acquire(1)
    # 50 from the full bucket, then 500 more at 50 a second.
    assert clock.now - 1000.0 == pytest.approx(10.0, rel=1e-6)


async def test_concurrent_callers_share_the_rate(clock: FakeClock) -> None:
    limiter = RateLimiter(20)
    done_at: list[float] = []

    async def caller() -> None:
        for _ in range(15):
            await limiter.acquire(2)
            done_at.append(clock.now)

    await asyncio.gather(*(caller() for _ in range(4)))
    # 4 * 15 * 2 = 120 units: 20 from the bucket, 100 more at 20 a second.
    assert max(done_at) - 1000.0 == pytest.approx(5.0, rel=1e-6)
    assert len(done_at) == 60


async def test_none_means_unlimited(clock: FakeClock) -> None:
    limiter = RateLimiter(None)
    for _ in range(1000):
        await limiter.acquire(1_000_000)
    limiter.charge(10**9)
    await limiter.acquire(1)
    assert clock.slept == []
    assert clock.now == 1000.0


async def test_a_charge_leaves_a_debt_that_the_next_caller_waits_off(clock: FakeClock) -> None:
    limiter = RateLimiter(10)
    await limiter.acquire(1)  # 9 left
    limiter.charge(24)  # 15 in debt
    await limiter.acquire(1)  # waits until one unit is there: 16 units at 10 a second
    assert clock.now - 1000.0 == pytest.approx(1.6)
    await limiter.acquire(0)
    assert clock.now - 1000.0 == pytest.approx(1.6)  # nothing is owed any more


async def test_the_debt_is_paid_by_time_already_passed(clock: FakeClock) -> None:
    limiter = RateLimiter(10)
    limiter.charge(30)  # -20
    clock.now += 2.5  # 25 units refilled meanwhile: 5 left
    await limiter.acquire(5)
    assert clock.slept == []


async def test_a_call_bigger_than_the_bucket_does_not_wait_for_ever(clock: FakeClock) -> None:
    limiter = RateLimiter(10)
    await limiter.acquire(50)  # more than a second's worth: let through at a full bucket
    assert clock.now == 1000.0
    await limiter.acquire(1)  # but the rest is a debt: 40 owed, plus the one asked for
    assert clock.now - 1000.0 == pytest.approx(4.1)


async def test_the_bucket_holds_at_most_one_second_of_units(clock: FakeClock) -> None:
    limiter = RateLimiter(10)
    clock.now += 3600  # an hour idle does not save up an hour of units
    for _ in range(10):
        await limiter.acquire(1)
    assert clock.slept == []
    await limiter.acquire(1)
    assert clock.now - 1000.0 - 3600 == pytest.approx(0.1)


@pytest.mark.timeout(10)
async def test_the_rate_is_respected_in_real_time() -> None:
    limiter = RateLimiter(200)
    started = time.monotonic()

    async def caller() -> None:
        for _ in range(75):
            await limiter.acquire(1)

    await asyncio.gather(*(caller() for _ in range(4)))
    elapsed = time.monotonic() - started
    # 300 units: 200 at once, then 100 at 200 a second.
    assert 0.45 <= elapsed <= 2.0, elapsed  # the upper bound only guards against a stall


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
    return {mode: await bootstrap_needed(store, STREAM_ARN, mode)
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
                     stop=asyncio.Event())


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


def test_the_scan_page_limit_is_learned_from_timeouts_and_relaxed_slowly() -> None:
    from replicator.scan import PageLimit

    limit = PageLimit()
    assert limit.value is None  # 1 MB pages until a page times out
    limit.arrived()
    assert limit.value is None
    limit.timed_out()
    assert limit.value == PageLimit.FIRST
    limit.timed_out()
    assert limit.value == PageLimit.FIRST // 2
    for _ in range(PageLimit.GROW_AFTER - 1):
        limit.arrived()
    assert limit.value == PageLimit.FIRST // 2  # not yet
    limit.arrived()
    assert limit.value == PageLimit.FIRST
    for _ in range(PageLimit.GROW_AFTER):
        limit.arrived()
    assert limit.value is None  # past FIRST: no limit again
