"""Fan-out over the fakes: each shard read once for every destination of its source, a
destination that is down left behind and caught up from its own checkpoint, each
destination resumed from its own checkpoint, and several streams in one coordinator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from replicator.checkpoint import Sentinel, least, position_order
from replicator.lease import Lease, ShardKey
from replicator.records import KeyId, sequence_key
from replicator.stats import Stats
from replicator.stream.coordinator import ShardCoordinator, SourceStream
from replicator.stream.lanes import LaneState
from replicator.stream.writer import WriterPool
from tests.fakes import (
    STREAM_ARN,
    Call,
    FakeDestination,
    FakeLeaseStore,
    FakeStream,
    item,
    transient,
)
from tests.unit.harness import CLOCK, FAST, caught_up, settings, unapplied_up_to

OTHER_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/other/stream/2024-01-01T00:00:00.000"


def table_of(stream: FakeStream) -> str:
    """The source table's name, from its stream's ARN."""
    return stream.stream_arn.split("/")[1]


class FanOut:
    """One worker replicating each stream into its destinations (by name)."""

    def __init__(self, paths: dict[FakeStream, dict[str, FakeDestination]],
                 store: FakeLeaseStore, *, queue_size: int = 40,
                 starts: dict[str, str | None] | None = None, **overrides: Any) -> None:
        self.stats = Stats()
        self.stop = asyncio.Event()
        self.paths = paths
        self.store = store
        self.coordinator = ShardCoordinator(
            sources=[
                SourceStream(
                    source=table_of(stream), stream_arn=stream.stream_arn, streams=stream,
                    pools={name: WriterPool(destination, writers=2, queue_size=queue_size,
                                            stats=self.stats, backoff=FAST, clock=CLOCK,
                                            path=(table_of(stream), name))
                           for name, destination in destinations.items()},
                    starts=dict(starts or {}))
                for stream, destinations in paths.items()
            ],
            store=store, stats=self.stats, settings=settings(**overrides), stop=self.stop,
            backoff=FAST, clock=CLOCK,
        )
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> FanOut:
        self.task = asyncio.create_task(self.coordinator.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.task is not None
        with contextlib.suppress(BaseException) if exc[1] is not None else _nothing():
            async with asyncio.timeout(5.0):
                await self.task


@contextlib.contextmanager
def _nothing() -> Any:
    yield


def fill(stream: FakeStream, shard_id: str, versions: range) -> list[str]:
    return [stream.put(shard_id, item(f"{shard_id}-k{v % 7}", v=v)) for v in versions]


def equal_to(stream: FakeStream) -> Callable[[dict[KeyId, Any]], bool]:
    return lambda table: table == stream.source


def last_of(stream: FakeStream, shard_id: str) -> str:
    return stream.shards[shard_id].sequence_numbers[-1]


def iterator_calls(stream: FakeStream, shard_id: str) -> int:
    return len(stream.calls_on(shard_id, "GetShardIterator"))


def record_checkpoints(stream: FakeStream, destinations: dict[str, FakeDestination],
                       store: FakeLeaseStore) -> list[str]:
    """Every checkpoint written, checked against what its own destination applied."""
    violations: list[str] = []

    def observe(operation: str, lease: Lease) -> None:
        if operation != "UpdateItem" or lease.shard_id not in stream.shards:
            return
        for name, value in lease.checkpoints:
            if value == Sentinel.SHARD_END:
                continue
            missing = unapplied_up_to(stream, destinations[name], lease.shard_id, value)
            if missing:
                violations.append(f"{name} at {value} covers unapplied {missing}")
        if lease.checkpoints and lease.checkpoint != least(v for _, v in lease.checkpoints):
            violations.append(f"{lease.checkpoint} is not the least of {lease.checkpoints}")

    store.observer = observe
    return violations


async def test_each_record_is_read_once_and_applied_to_every_destination() -> None:
    stream, store = FakeStream(), FakeLeaseStore()
    shards = [stream.add_shard() for _ in range(3)]
    destinations = {name: FakeDestination() for name in ("east", "west", "south")}
    violations = record_checkpoints(stream, destinations, store)
    for shard in shards:
        fill(stream, shard, range(60))

    async with FanOut({stream: destinations}, store, get_records_limit=10):
        for destination in destinations.values():
            await destination.wait_until(equal_to(stream))
        await store.wait_until(caught_up(stream))
        for shard in shards:
            fill(stream, shard, range(60, 90))
        for destination in destinations.values():
            await destination.wait_until(equal_to(stream))
        await store.wait_until(caught_up(stream))

    for shard in shards:
        last = last_of(stream, shard)
        row = store.row(shard)
        assert row is not None
        assert dict(row.checkpoints) == dict.fromkeys(destinations, last)
        # One reader: one iterator for the shard, whose reads only move forward.
        assert iterator_calls(stream, shard) == 1
        positions = [call.position for call in stream.calls_on(shard, "GetRecords")]
        assert positions == sorted(positions)  # type: ignore[type-var]
    assert violations == []


async def test_a_destination_that_is_down_is_left_behind_then_catches_up() -> None:
    stream, store = FakeStream(), FakeLeaseStore()
    shards = [stream.add_shard() for _ in range(2)]
    destinations = {name: FakeDestination() for name in ("east", "west", "down")}
    violations = record_checkpoints(stream, destinations, store)
    down = destinations["down"]
    refusing = True

    def outage(call: Call) -> Exception | None:
        return transient(call) if refusing else None

    queue_size = 20
    async with FanOut({stream: destinations}, store, queue_size=queue_size,
                      get_records_limit=10, detach_after=0.5) as fanout:
        down.fault = outage
        for shard in shards:
            fill(stream, shard, range(200))  # far more than the down destination's queues
        for name in ("east", "west"):
            await destinations[name].wait_until(equal_to(stream))

        def healthy_checkpointed(rows: dict[str, Lease]) -> bool:
            return all(dict(rows[shard].checkpoints).get(name) == last_of(stream, shard)
                       for shard in shards for name in ("east", "west"))

        await store.wait_until(healthy_checkpointed)
        lanes = [lane for consumer, _ in fanout.coordinator.consumers.values()
                 for lane in consumer.lanes if lane.destination == "down"]
        assert {lane.state for lane in lanes} == {LaneState.DETACHED}
        # What the down destination holds stays within its queues and batches.
        assert sum(lane.tracker.in_flight for lane in lanes) <= queue_size + 2 * 25
        for shard in shards:
            row = store.row(shard)
            assert row is not None
            behind = dict(row.checkpoints)["down"]
            assert position_order(behind) < position_order(last_of(stream, shard))
            assert row.checkpoint == behind  # the shard resumes from the least
        assert fanout.stats.lanes_detached == len(shards)
        assert fanout.stats.destination_lags()[("source", "down")] > 0

        refusing = False
        await down.wait_until(equal_to(stream))
        await store.wait_until(caught_up(stream))
        assert all(lane.state is LaneState.ATTACHED for lane in lanes)
        # Caught up, the lane is fed by the shard's reader again: no reader of its own.
        iterators = {shard: iterator_calls(stream, shard) for shard in shards}
        assert iterators == dict.fromkeys(shards, 2)  # the shard's reader and one catch-up
        for shard in shards:
            fill(stream, shard, range(200, 230))
        for destination in destinations.values():
            await destination.wait_until(equal_to(stream))
        assert {shard: iterator_calls(stream, shard) for shard in shards} == iterators
    assert violations == []


async def test_each_destination_resumes_from_its_own_checkpoint() -> None:
    stream, store = FakeStream(), FakeLeaseStore()
    shard = stream.add_shard()
    numbers = fill(stream, shard, range(30))
    ahead, behind = numbers[19], numbers[4]
    await store.plant(Lease(STREAM_ARN, shard, None, None, 3, behind,
                            (("ahead", ahead), ("behind", behind))))
    destinations = {"ahead": FakeDestination(), "behind": FakeDestination(),
                    "new": FakeDestination()}

    async with FanOut({stream: destinations}, store):
        await store.wait_until(caught_up(stream))

    def applied(name: str) -> list[int]:
        return sorted(sequence_key(stream.record_of(write.payload)["dynamodb"]["SequenceNumber"])
                      for write in destinations[name].log)

    # Each applies only what follows its own checkpoint (a batch keeps the last record
    # of each key, so the first few after it may be superseded), and ends equal.
    assert sequence_key(ahead) < min(applied("ahead")) <= sequence_key(ahead) + 7
    assert sequence_key(behind) < min(applied("behind")) <= sequence_key(behind) + 7
    # A destination the row does not name is at the row's checkpoint.
    assert sequence_key(behind) < min(applied("new")) <= sequence_key(behind) + 7
    assert all(destination.table == stream.source for destination in destinations.values())
    row = store.row(shard)
    assert row is not None
    assert dict(row.checkpoints) == dict.fromkeys(destinations, numbers[-1])


async def test_streams_whose_shard_ids_repeat_are_kept_apart() -> None:
    first, second = FakeStream(), FakeStream(OTHER_ARN, first_sequence_number=95)
    store = FakeLeaseStore()
    for stream in (first, second):
        for _ in range(2):
            shard = stream.add_shard()
            fill(stream, shard, range(40))
    assert set(first.shards) == set(second.shards)
    into_first, into_second = FakeDestination(), FakeDestination()

    async with FanOut({first: {"a": into_first}, second: {"b": into_second}}, store) as fanout:
        await into_first.wait_until(equal_to(first))
        await into_second.wait_until(equal_to(second))
        await store.wait_until(lambda _: all(
            store.row(shard, stream.stream_arn) is not None
            and store.row(shard, stream.stream_arn).checkpoint  # type: ignore[union-attr]
            == last_of(stream, shard)
            for stream in (first, second) for shard in stream.shards))
        assert set(fanout.coordinator.held) == {
            ShardKey(stream.stream_arn, shard)
            for stream in (first, second) for shard in stream.shards}
        lags = fanout.stats.destination_lags()
        assert set(lags) == {("source", "a"), ("other", "b")}
    assert fanout.stats.applied_by_destination == {("source", "a"): 80, ("other", "b"): 80}


async def test_a_joining_destination_holds_its_shards_open_until_it_is_copied() -> None:
    stream, store = FakeStream(), FakeLeaseStore()
    shards = [stream.add_shard() for _ in range(2)]
    destinations = {"old": FakeDestination(), "new": FakeDestination()}
    violations = record_checkpoints(stream, destinations, store)
    for shard in shards:
        fill(stream, shard, range(30))
    ended = shards[0]

    async with FanOut({stream: destinations}, store, starts={"new": None}) as fanout:
        await destinations["old"].wait_until(equal_to(stream))
        stream.close(ended)
        fill(stream, shards[1], range(30, 40))
        await destinations["old"].wait_until(equal_to(stream))
        await store.wait_until(lambda rows: all(
            dict(rows[shard].checkpoints).get("old") == last_of(stream, shard)
            for shard in shards))
        # Not copied yet: nothing is written to it, its checkpoints are not written, and
        # the ended shard is not finished without it.
        assert destinations["new"].log == []
        for shard in shards:
            row = store.row(shard)
            assert row is not None
            assert set(dict(row.checkpoints)) == {"old"}
        row = store.row(ended)
        assert row is not None
        assert not row.finished
        # Copied (here: from the start of the stream): caught up by readers of its own.
        fanout.coordinator.destination_ready(stream.stream_arn, "new", Sentinel.TRIM_HORIZON)
        await destinations["new"].wait_until(equal_to(stream))
        await store.wait_until(lambda rows: ended not in rows or rows[ended].finished)
        fill(stream, shards[1], range(40, 50))
        for destination in destinations.values():
            await destination.wait_until(equal_to(stream))
    assert violations == []
