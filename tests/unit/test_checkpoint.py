"""CheckpointTracker: out-of-order completion, draining, failure."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.checkpoint import Sentinel, is_sentinel
from replicator.errors import PoisonRecordError
from replicator.stream.tracker import CheckpointTracker


def test_sentinels() -> None:
    assert all(is_sentinel(s) for s in ("TRIM_HORIZON", "LATEST", "SHARD_END"))
    assert not is_sentinel("12345")
    assert not is_sentinel("trim_horizon")


def test_out_of_order_completion_moves_only_over_a_done_prefix() -> None:
    tracker = CheckpointTracker(Sentinel.TRIM_HORIZON)
    pending = [tracker.add(str(n), float(n)) for n in (98, 99, 100, 101, 102)]
    assert tracker.last_read == "102"
    assert tracker.in_flight == 5

    tracker.mark_done(pending[2])
    assert tracker.checkpointable == Sentinel.TRIM_HORIZON
    tracker.mark_done(pending[0])
    assert tracker.checkpointable == "98"
    tracker.mark_done(pending[1])
    assert tracker.checkpointable == "100"  # 99 and the already done 100
    tracker.mark_done(pending[4])
    assert tracker.checkpointable == "100"
    assert not tracker.drained
    assert tracker.oldest_unapplied_created_at() == 101.0
    tracker.mark_done(pending[3])
    assert tracker.checkpointable == "102"
    assert tracker.drained
    assert tracker.oldest_unapplied_created_at() is None
    assert tracker.written == Sentinel.TRIM_HORIZON  # only the consumer moves it


def test_a_resumed_shard_keeps_its_checkpoint_until_a_record_is_done() -> None:
    tracker = CheckpointTracker("97")
    first = tracker.add("98", 0.0)
    assert tracker.checkpointable == "97"
    tracker.mark_done(first)
    assert tracker.checkpointable == "98"


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 30).flatmap(lambda n: st.permutations(range(n))))
def test_checkpointable_is_the_longest_done_prefix(order: list[int]) -> None:
    tracker = CheckpointTracker(Sentinel.LATEST)
    pending = [tracker.add(str(1000 + i), float(i)) for i in range(len(order))]
    done: set[int] = set()
    for index in order:
        tracker.mark_done(pending[index])
        done.add(index)
        prefix = 0
        while prefix in done:
            prefix += 1
        expected = Sentinel.LATEST if prefix == 0 else str(1000 + prefix - 1)
        assert tracker.checkpointable == expected
        assert tracker.in_flight == len(order) - prefix
    assert tracker.drained


async def test_wait_drained_returns_at_once_when_nothing_is_in_flight() -> None:
    tracker = CheckpointTracker(Sentinel.TRIM_HORIZON)
    async with asyncio.timeout(1):
        await tracker.wait_drained()


async def test_wait_drained_waits_for_every_record() -> None:
    tracker = CheckpointTracker(Sentinel.TRIM_HORIZON)
    pending = [tracker.add(str(n), 0.0) for n in range(3)]
    waiter = asyncio.create_task(tracker.wait_drained())
    await asyncio.sleep(0)
    tracker.mark_done(pending[2])
    tracker.mark_done(pending[0])
    await asyncio.sleep(0)
    assert not waiter.done()
    tracker.mark_done(pending[1])
    async with asyncio.timeout(1):
        await waiter
    assert tracker.checkpointable == "2"


async def test_fail_wakes_a_waiter_with_the_first_failure() -> None:
    tracker = CheckpointTracker(Sentinel.TRIM_HORIZON)
    tracker.add("1", 0.0)
    waiter = asyncio.create_task(tracker.wait_drained())
    await asyncio.sleep(0)
    first, second = PoisonRecordError("first"), PoisonRecordError("second")
    tracker.fail(first)
    tracker.fail(second)
    with pytest.raises(PoisonRecordError) as caught:
        async with asyncio.timeout(1):
            await waiter
    assert caught.value is first
    assert tracker.failure is first
    assert tracker.cancelled
    assert tracker.checkpointable == Sentinel.TRIM_HORIZON


async def test_a_failed_tracker_raises_even_once_drained() -> None:
    tracker = CheckpointTracker(Sentinel.TRIM_HORIZON)
    tracker.mark_done(tracker.add("1", 0.0))
    error = PoisonRecordError("x")
    tracker.fail(error)
    with pytest.raises(PoisonRecordError):
        await tracker.wait_drained()
