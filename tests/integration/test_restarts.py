"""Stops and restarts: a graceful stop checkpoints and releases, a restart resumes from
the checkpoint (reading only the new stream records), and a worker killed with SIGKILL
in the middle of a workload is replaced by a new one without losing anything."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from replicator.dev.workload import KEY_NAMES

from .conftest import (
    DEADLINE,
    DESTINATION_TABLE,
    SOURCE_TABLE,
    InProcess,
    Proxy,
    ReplicatorProcess,
    Servers,
    compare,
    create_pair,
    environment_for,
    lease_rows,
    replicating,
    settings_for,
    settled,
    stream_records,
    wait_equal,
    wait_until,
    workload_until,
)

pytestmark = pytest.mark.integration


def key(i: int) -> dict[str, Any]:
    return {"pk": {"S": f"user-{i % 5}"}, "sk": {"N": str(i)}}


async def first_writes(source: Any) -> None:
    for i in range(30):
        await source.put_item(TableName=SOURCE_TABLE, Item={**key(i), "v": {"N": str(i)}})
    for i in range(0, 30, 3):
        await source.update_item(
            TableName=SOURCE_TABLE, Key=key(i), UpdateExpression="SET v = :v",
            ExpressionAttributeValues={":v": {"S": "first update"}},
        )


async def more_writes(source: Any) -> None:
    """Writes after the first run, including those moto streams oddly: an UpdateItem
    that creates its item (two INSERTs) and an identical put (a MODIFY)."""
    for i in range(30, 45):
        await source.put_item(TableName=SOURCE_TABLE, Item={**key(i), "v": {"N": str(i)}})
    await source.update_item(
        TableName=SOURCE_TABLE, Key=key(100), UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": {"S": "upserted"}},
    )
    await source.put_item(TableName=SOURCE_TABLE, Item={**key(31), "v": {"N": "31"}})
    for i in (1, 2, 40):
        await source.delete_item(TableName=SOURCE_TABLE, Key=key(i))
    await source.batch_write_item(RequestItems={SOURCE_TABLE: [
        {"PutRequest": {"Item": {**key(i), "v": {"S": "batch"}}}} for i in range(200, 210)
    ]})


def last_sequence_number(records: list[dict[str, Any]]) -> str:
    sequence_number: str = records[-1]["dynamodb"]["SequenceNumber"]
    return sequence_number


@pytest.mark.timeout(600)
async def test_a_restart_resumes_from_its_checkpoint(
    servers: Servers, source: Any, destination: Any, streams: Any
) -> None:
    stream_arn = await create_pair(source, destination)

    first = InProcess(settings_for(servers, worker_id="first-worker"))
    await first.start()
    await first_writes(source)
    await first.wait_caught_up(first.now())
    assert await first.stop() == 0
    records = await stream_records(streams, stream_arn)
    read_first = len(records)
    assert read_first == 40
    assert first.stats.records_read == read_first
    (row,) = await lease_rows(source)
    assert row["checkpoint"] == {"S": last_sequence_number(records)}
    assert "lease_owner" not in row  # released: the next worker need not wait

    await more_writes(source)
    records = await stream_records(streams, stream_arn)
    new = len(records) - read_first
    assert new >= 15 + 2 + 1 + 3 + 10  # moto: two INSERTs for the upsert

    async with replicating(settings_for(servers, worker_id="second-worker")) as second:
        await second.wait_caught_up(second.now())
        assert second.stats.records_read == new  # only the new records, none twice
        assert second.stats.applied_total == new
        diff = await compare(source, destination, KEY_NAMES)
        assert diff.equal, diff.summary()
    assert second.exit_code == 0
    (row,) = await lease_rows(source)
    assert row["checkpoint"] == {"S": last_sequence_number(records)}

    # With nothing new in the stream, a third run reads nothing at all.
    async with replicating(settings_for(servers, worker_id="third-worker")) as third:
        await third.wait_caught_up(third.now())
        assert third.stats.records_read == 0
    assert third.exit_code == 0


def stopped_line(process: ReplicatorProcess) -> dict[str, Any]:
    """The final JSON log line of a process that stopped: its totals."""
    lines = process.log_lines()
    assert lines, process.stdout()
    last = lines[-1]
    assert last["event"] == "replication stopped", last
    return last


@pytest.mark.timeout(600)
async def test_sigterm_checkpoints_releases_and_exits_0_and_a_restart_resumes(
    servers: Servers, source: Any, destination: Any, streams: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    stream_arn = await create_pair(source, destination)
    # The bound this test holds the exit to; what it takes on an idle machine is well
    # under a second, and a loaded one gets the rest.
    shutdown_timeout = 15.0
    # No periodic checkpoint: the only checkpoint is the one written at shutdown.
    env = environment_for(servers, checkpoint_interval=3600, shutdown_timeout=shutdown_timeout,
                          worker_id="worker-one")
    first = spawn("first", env)
    await first.wait_for_event("shard started")
    await first_writes(source)  # its last write changes an item: see below
    await wait_equal(source, destination, KEY_NAMES, processes=[first])
    records = await stream_records(streams, stream_arn)
    (row,) = await lease_rows(source)
    assert row["lease_owner"] == {"S": "worker-one"}
    # Still where the stream starts after the (empty) bootstrap copy: nothing checkpointed.
    assert row["checkpoint"]["S"].startswith("SINCE:")

    sent = time.monotonic()
    first.send(signal.SIGTERM)
    assert await first.wait(within=shutdown_timeout + DEADLINE) == 0, first.report()
    assert time.monotonic() - sent < shutdown_timeout  # exits within the shutdown timeout
    assert first.stderr() == ""
    assert first.events("shutdown requested")[0]["signal"] == "SIGTERM"
    totals = stopped_line(first)
    assert totals["records_read"] == len(records) == 40
    assert sum(totals["records_applied"].values()) == len(records)
    assert totals["checkpoints_written"] == 1
    (row,) = await lease_rows(source)
    assert row["checkpoint"] == {"S": last_sequence_number(records)}
    assert "lease_owner" not in row
    assert first.events("lease released")[0]["checkpoint"] == last_sequence_number(records)

    # A second process resumes where the first stopped: it reads only the new records.
    await more_writes(source)
    everything = await stream_records(streams, stream_arn)
    second = spawn("second", {**env, "REPLICATOR_WORKER_ID": "worker-two"})
    taken = await second.wait_for_event("lease taken")
    assert taken["previous_owner"] is None  # released, so taken at once
    assert taken["checkpoint"] == last_sequence_number(records)
    # The last write changes an item, and records are read in order: once the tables
    # are equal, every record has been read.
    await wait_equal(source, destination, KEY_NAMES, processes=[second])
    second.send(signal.SIGTERM)
    assert await second.wait(within=shutdown_timeout + DEADLINE) == 0, second.report()
    totals = stopped_line(second)
    assert totals["records_read"] == len(everything) - len(records)
    (row,) = await lease_rows(source)
    assert row["checkpoint"] == {"S": last_sequence_number(everything)}
    assert "lease_owner" not in row


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_sigkill_mid_workload_then_a_restart_loses_nothing(
    servers: Servers, source: Any, destination: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await create_pair(source, destination)
    # Pages of 250 records: the second worker reads the backlog left at the kill, and
    # moto, on a loaded machine, can take longer than the call timeout to build a
    # page of 1,000.
    env = environment_for(servers, lease_duration=4, lease_renew_interval=0.5,
                          checkpoint_interval=0.2, get_records_limit=250,
                          worker_id="worker-one")
    first = spawn("first", env)
    await first.wait_for_event("shard started")
    # Writes go on from before the kill until the second worker has taken over and
    # checkpointed. A tenth of the items carry every attribute type (moto takes about
    # 3 ms to serialize one).
    stop_writes = asyncio.Event()
    workload = asyncio.create_task(workload_until(
        stop_writes, source, rate=100, keys=120, seed=11, rich=0.1))
    try:
        async def replicated_and_checkpointed() -> bool:
            (row,) = await lease_rows(source)
            copied = await destination.scan(TableName=DESTINATION_TABLE, Select="COUNT")
            return bool(copied["Count"] > 10 and row["checkpoint"]["S"].isdigit())

        await wait_until(replicated_and_checkpointed, within=DEADLINE, processes=[first],
                         what="the first worker to replicate and checkpoint")
        first.send(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
        (row,) = await settled(lambda: lease_rows(source))
        assert row["lease_owner"] == {"S": "worker-one"}  # a dead worker releases nothing
        killed_at_checkpoint = row["checkpoint"]["S"]

        second = spawn("second", {**env, "REPLICATOR_WORKER_ID": "worker-two"})
        taken = await second.wait_for_event("lease taken")
        # The second worker replicates some of the writes made after it took over.
        (row,) = await lease_rows(source)
        await wait_until(lambda: checkpoint_moved(source, past=row["checkpoint"]["S"]),
                         within=DEADLINE, processes=[second],
                         what="the second worker to checkpoint")
        stop_writes.set()
        result = await asyncio.wait_for(workload, DEADLINE)
    finally:
        workload.cancel()
    assert result.operations > 0
    diff = await wait_equal(source, destination, KEY_NAMES, processes=[second])
    assert diff.source_items > 50

    assert taken["previous_owner"] == "worker-one"  # taken over once the lease expired
    assert taken["checkpoint"] == killed_at_checkpoint  # resumed, not from TRIM_HORIZON
    second.send(signal.SIGTERM)
    assert await second.wait() == 0, second.report()
    assert second.stderr() == ""
    (row,) = await lease_rows(source)
    assert "lease_owner" not in row
    assert (await compare(source, destination, KEY_NAMES)).equal


async def checkpoint_moved(source: Any, *, past: str) -> bool:
    """Whether the shard's checkpoint is a sequence number other than ``past``."""
    (row,) = await lease_rows(source)
    checkpoint: str = row["checkpoint"]["S"]
    return checkpoint.isdigit() and checkpoint != past


class SlowCheckpointProxy(Proxy):
    """An HTTP proxy in front of the checkpoint table's server that, once armed, holds
    the answer to one checkpoint write (an UpdateItem setting ``checkpoint``) after the
    server has applied it: a write still in flight when the shard is stopped."""

    def __init__(self, target: str, hold: float) -> None:
        super().__init__(target)
        self.hold = hold
        self.armed = False
        self.holding = asyncio.Event()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        answer = await self.pass_on(request, body)
        is_checkpoint = (request.headers.get("X-Amz-Target", "").endswith(".UpdateItem")
                         and b'"#cp"' in body)
        if self.armed and is_checkpoint:
            self.armed = False
            self.holding.set()
            await asyncio.sleep(self.hold)
        return answer


@pytest.mark.timeout(400)
async def test_a_stop_during_a_checkpoint_write_still_checkpoints_and_releases(
    servers: Servers, source: Any, destination: Any, streams: Any
) -> None:
    """The shard is cancelled while its checkpoint write is in flight, but that write
    reached the table and moved the lease counter: the final checkpoint and the release
    must still succeed (they failed, as "taken by another worker", leaving the lease
    owned by a stopped worker until it expired)."""
    stream_arn = await create_pair(source, destination)
    async with SlowCheckpointProxy(servers.source.url, hold=1.0).running() as proxy:
        settings = settings_for(servers, checkpoint_endpoint=proxy.url, checkpoint_interval=0.05)
        async with replicating(settings) as running:
            for i in range(5):
                await source.put_item(TableName=SOURCE_TABLE, Item={**key(i), "v": {"N": "1"}})
            await running.wait_caught_up(running.now())
            # Armed once the first five are checkpointed: the write held is the sixth's.
            first = last_sequence_number(await stream_records(streams, stream_arn))
            coordinator = running.replicator.coordinator
            assert coordinator is not None
            await running.until(
                lambda: [c.lanes[0].tracker.written for c, _ in coordinator.consumers.values()]
                == [first],
                what="the first five checkpointed")
            (row,) = await lease_rows(source)
            assert row["checkpoint"] == {"S": first}
            proxy.armed = True
            await source.put_item(TableName=SOURCE_TABLE, Item={**key(99), "v": {"N": "2"}})
            await asyncio.wait_for(proxy.holding.wait(), DEADLINE)
            assert await running.stop() == 0
        records = await stream_records(streams, stream_arn)
        assert running.stats.records_read == len(records) == 6
        (row,) = await lease_rows(source)
        assert "lease_owner" not in row
        assert row["checkpoint"] == {"S": last_sequence_number(records)}
        assert (await compare(source, destination, KEY_NAMES)).equal
