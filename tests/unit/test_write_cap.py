"""The stream's write cap (``REPLICATOR_MAX_WCU``, a destination's ``max_wcu``): the
writer pool consumes at most that many write units a second, and says how long its
writes waited."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from replicator.apply.writes import request_units
from replicator.ops.metrics import LiveGauges, StatsCollector, registry_for, render
from replicator.records import EventName, StreamRecord
from replicator.stats import Stats
from replicator.stream.tracker import CheckpointTracker
from replicator.stream.writer import WorkItem, WriterPool
from tests.clock import VirtualClock
from tests.fakes import FakeDestination
from tests.unit.harness import FAST


def record(index: int, size: int) -> StreamRecord:
    image = {"pk": {"S": f"k{index}"}, "pad": {"S": "x" * size}}
    return StreamRecord(shard_id="shard-0", sequence_number=str(100 + index),
                        event_name=EventName.INSERT, keys={"pk": image["pk"]},
                        new_image=image, size_bytes=size, created_at=1.0)


async def drain(pool: WriterPool, records: list[StreamRecord]) -> CheckpointTracker:
    tracker = CheckpointTracker("TRIM_HORIZON")
    for one in records:
        await pool.put(WorkItem(one, tracker.add(one.sequence_number, 1.0), tracker))
    pool.close()
    await pool.run()
    return tracker


async def test_the_write_units_a_second_stay_at_the_cap() -> None:
    clock = VirtualClock()
    destination, stats = FakeDestination(), Stats()
    pool = WriterPool(destination, writers=4, queue_size=2000, stats=stats, backoff=FAST,
                      clock=clock, path=("orders", "eu"), max_wcu=50)
    # 1,000 records of 1.5 KB: two write units each, 2,000 in all.
    records = [record(index, 1500) for index in range(1000)]
    units = sum(request_units(one.write_request()) for one in records)
    assert units == 2000
    started = clock.monotonic()
    async with asyncio.timeout(120):
        tracker = await drain(pool, records)
    elapsed = clock.monotonic() - started

    assert tracker.drained
    assert len(destination.table) == 1000
    # The bucket starts full (one second's worth), then 50 units a second.
    assert elapsed == pytest.approx((units - 50) / 50, rel=0.05)
    assert pool.write_cap.waited > 0.9 * elapsed

    collector = StatsCollector(stats, task="t", worker="w", gauges=LiveGauges)
    waited = {sample.labels["destination"]: sample.value
              for family in text_string_to_metric_families(
                  render(registry_for(collector)).decode())
              for sample in family.samples
              if sample.name == "replicator_write_cap_wait_seconds_total"}
    assert waited == {"eu": pool.write_cap.waited}


async def test_without_a_cap_nothing_waits() -> None:
    clock = VirtualClock()
    pool = WriterPool(FakeDestination(), writers=4, queue_size=2000, stats=Stats(),
                      backoff=FAST, clock=clock)
    started = clock.monotonic()
    async with asyncio.timeout(5):
        await drain(pool, [record(index, 1500) for index in range(1000)])
    assert clock.monotonic() - started < 1.0
    assert pool.write_cap.waited == 0.0


def test_a_put_costs_a_unit_a_started_kb_and_a_delete_one() -> None:
    assert request_units({"PutRequest": {"Item": {"pk": {"S": "a"}}}}) == 1
    assert request_units(record(1, 1500).write_request()) == 2
    assert request_units({"DeleteRequest": {"Key": {"pk": {"S": "a"}}}}) == 1
