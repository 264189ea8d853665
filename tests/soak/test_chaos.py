"""The long fault tests: three workers under 20% faulted calls and repeated kill -9,
and a 60-second destination outage. Each runs about a minute and a half; they share
nothing, so they can run at the same time (``make soak``).

The replicator's endpoints point at ``tests.faults.FaultProxy`` proxies in front of
the moto servers; the test's own workload writes to moto directly.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from replicator.dev.workload import KEY_NAMES, run_workload
from tests.faults import FaultPlan, FaultProxy, Outage
from tests.integration.conftest import (
    DEADLINE,
    DESTINATION_TABLE,
    SOURCE_TABLE,
    ReplicatorProcess,
    Servers,
    compare,
    create_pair,
    environment_for,
    lease_rows,
    reports,
    stream_records,
    wait_equal,
    wait_for_event,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Longer than FAST's: moto, sharing two cores with three workers and the proxies,
#: can take seconds to build a GetRecords answer, and a timed-out GetRecords halves
#: the page size.
CALL_TIMEOUT = 3.0
LEASE_DURATION = 5.0
#: A slow answer comes this long after the call: the client has timed out by then.
SLOW = CALL_TIMEOUT + 1.0
#: moto answers a GetRecords of 1,000 records with images in about 0.7 s on an idle
#: machine; smaller pages keep every call well inside the call timeout.
GET_RECORDS_LIMIT = 200


def fault_report(name: str, proxy: FaultProxy) -> str:
    return f"{name}: {proxy.summary()}"


def retries_of(process: ReplicatorProcess) -> dict[str, int]:
    """The retries a stopped worker counted, by operation (its final log line)."""
    stopped = process.events("replication stopped")
    assert stopped, process.report()
    retries: dict[str, int] = stopped[-1]["retries"]
    return retries


def assert_running(workers: Mapping[str, ReplicatorProcess]) -> None:
    """Every worker not killed by the test is still running: none died of a fault."""
    exited = [process for process in workers.values() if process.returncode is not None]
    if exited:
        raise AssertionError(
            f"{', '.join(process.name for process in exited)} exited" + reports(exited))


# -- three workers, faults and kill -9 ---------------------------------------------------

FAULT_RATE = 0.2
KILLING = 60.0
KILL_EVERY = 3.0
OPERATIONS = 5000
RATE = 95.0
SEED = 20


@pytest.mark.timeout(900)
async def test_three_workers_under_faults_and_kill_9_lose_nothing(
    servers: Servers, source: Any, destination: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await create_pair(source, destination)
    rng = random.Random(SEED)
    source_proxy = FaultProxy(servers.source.url, FaultPlan.chaotic(FAULT_RATE),
                              slow_seconds=SLOW, seed=SEED)
    destination_proxy = FaultProxy(servers.destination.url, FaultPlan.chaotic(FAULT_RATE),
                                   slow_seconds=SLOW, seed=SEED + 1)
    async with source_proxy.running(), destination_proxy.running():
        # The stream, the checkpoint table and the source table all go through the
        # source's proxy: their endpoints default to the source endpoint.
        env = environment_for(
            servers, source_endpoint=source_proxy.url,
            destination_endpoint=destination_proxy.url, get_records_limit=GET_RECORDS_LIMIT,
            call_timeout=CALL_TIMEOUT, lease_duration=LEASE_DURATION, idle_interval=0.1,
            coordinator_interval=0.5, checkpoint_interval=0.5,
        )
        numbers = itertools.count(1)
        everyone: dict[str, ReplicatorProcess] = {}
        running: dict[str, ReplicatorProcess] = {}

        def start_worker() -> None:
            name = f"worker-{next(numbers)}"
            running[name] = everyone[name] = spawn(name, {**env, "REPLICATOR_WORKER_ID": name})

        for _ in range(3):
            start_worker()
        await wait_for_event(running.values(), "shard started")  # one has begun reading
        started = time.monotonic()
        workload = asyncio.create_task(run_workload(
            source, SOURCE_TABLE, operations=OPERATIONS, rate=RATE, keys=600, seed=SEED,
            concurrency=8, rich=0.1,
        ))
        kills = 0
        try:
            while time.monotonic() - started < KILLING:
                await asyncio.sleep(KILL_EVERY)  # the cadence of the kills
                assert_running(running)
                victim = rng.choice(sorted(running))
                process = running.pop(victim)
                process.send(signal.SIGKILL)
                assert await process.wait(within=30) == -signal.SIGKILL
                kills += 1
                start_worker()
            result = await asyncio.wait_for(workload, DEADLINE)
        finally:
            workload.cancel()
        killing = time.monotonic() - started
        assert_running(running)
        ended = time.monotonic()
        diff = await wait_equal(source, destination, KEY_NAMES, within=180,
                                processes=running.values())
        caught_up = time.monotonic() - ended
        assert_running(running)
        for process in running.values():
            process.send(signal.SIGTERM)
        for process in running.values():
            assert await process.wait(within=30) == 0, process.report()
        retries: dict[str, int] = {}
        for process in running.values():
            for error, count in retries_of(process).items():
                retries[error] = retries.get(error, 0) + count

    for name, process in everyone.items():
        assert process.stderr() == "", (name, process.stderr())
    assert result.operations == OPERATIONS
    assert (await compare(source, destination, KEY_NAMES)).equal
    print(f"\nchaos: {result.operations} operations ({result.by_kind}) in {killing:.1f}s, "
          f"{kills} workers killed with SIGKILL every {KILL_EVERY:g}s, "
          f"{len(everyone)} started; destination equal {caught_up:.1f}s after the "
          f"workload, {diff.source_items} items")
    print(fault_report("source (stream, checkpoints)", source_proxy))
    print(fault_report("destination", destination_proxy))
    print(f"faults injected and survived: {source_proxy.total() + destination_proxy.total()}; "
          f"retries counted by the last three workers, by operation: {retries}")
    # About a fifth of the calls, and every kind of fault each endpoint can meet.
    for proxy in (source_proxy, destination_proxy):
        assert proxy.total() > 0.1 * sum(proxy.calls.values())
        assert len(proxy.by_fault()) >= 6, proxy.summary()


# -- a 60-second destination outage ----------------------------------------------------

OUTAGE = 60.0


@pytest.mark.timeout(900)
async def test_a_60_second_destination_outage_is_waited_out_without_loss(
    servers: Servers, source: Any, destination: Any, streams: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    """The destination refuses connections for 30 s, then answers 503 for 30 s. The
    worker retries its writes, keeps its lease all along, catches up after, and the
    checkpoint ends on the last record of the stream."""
    stream_arn = await create_pair(source, destination)
    async with FaultProxy(servers.destination.url).running() as proxy:
        # The chaos test's timeouts and pages: this test runs beside it or the
        # 20,000-item copy, and the backlog of the outage is read in pages that moto
        # builds well within the call timeout.
        env = environment_for(servers, destination_endpoint=proxy.url, worker_id="worker-one",
                              call_timeout=CALL_TIMEOUT, lease_duration=LEASE_DURATION,
                              get_records_limit=GET_RECORDS_LIMIT)
        worker = spawn("worker", env)
        await worker.wait_for_event("shard started")
        # A fifth of the items carry every attribute type (moto takes about 3 ms to
        # serialize one): the outage's backlog is read in seconds, not a minute.
        workload = asyncio.create_task(run_workload(
            source, SOURCE_TABLE, seconds=OUTAGE + 2.0, rate=40, keys=300, seed=5, rich=0.2,
        ))

        async def replicating() -> bool:
            copied = await destination.scan(TableName=DESTINATION_TABLE, Select="COUNT")
            return bool(copied["Count"] >= 20)
        try:
            await wait_until(replicating, within=DEADLINE, processes=[worker],
                             what="the first items to be replicated")
            await proxy.start_outage(Outage.REFUSED)
            outage_started = time.monotonic()
            await asyncio.sleep(OUTAGE / 2)  # the outage itself
            assert_running({"worker": worker})
            await proxy.start_outage(Outage.UNAVAILABLE)
            await asyncio.sleep(OUTAGE / 2)
            assert_running({"worker": worker})
            (row,) = await lease_rows(source)
            assert row["lease_owner"] == {"S": "worker-one"}
            await proxy.end_outage()
            outage = time.monotonic() - outage_started
            result = await asyncio.wait_for(workload, DEADLINE)
        finally:
            workload.cancel()
        ended = time.monotonic()
        diff = await wait_equal(source, destination, KEY_NAMES, within=120, processes=[worker])
        caught_up = time.monotonic() - ended
        # Equal tables can still hide queued records that change nothing (a put, then
        # the delete of that item): the checkpoint shows when every record is applied.
        records = await stream_records(streams, stream_arn)
        last = records[-1]["dynamodb"]["SequenceNumber"]

        async def checkpointed() -> bool:
            (row,) = await lease_rows(source)
            return bool(row["checkpoint"] == {"S": last})

        await wait_until(checkpointed, within=DEADLINE, processes=[worker],
                         what="the checkpoint to reach the last record")
        worker.send(signal.SIGTERM)
        assert await worker.wait() == 0, worker.report()

    assert worker.stderr() == ""
    (row,) = await lease_rows(source)
    assert row["checkpoint"] == {"S": last}
    assert "lease_owner" not in row  # released at the stop
    # One take at the start, none after: the lease was never lost or taken again (a
    # renewal that timed out on the loaded machine is retried, and shows as neither).
    assert len(worker.events("lease taken")) == 1
    assert not worker.events("lease lost; shard stopped")
    assert row["owner_switches"] == {"N": "2"}  # taken, then released
    retries = retries_of(worker)
    assert retries.get("BatchWriteItem", 0) > 0  # retries counted by operation
    print(f"\noutage: {outage:.1f}s ({proxy.summary()}); {result.operations} operations; "
          f"destination equal {caught_up:.1f}s after the outage, {diff.source_items} items; "
          f"retries: {retries}")
