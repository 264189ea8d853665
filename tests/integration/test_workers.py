"""Several worker processes under one task name: failover after kill -9 and after SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from replicator.dev.workload import KEY_NAMES
from tests.integration.conftest import (
    DEADLINE,
    ReplicatorProcess,
    Servers,
    create_pair,
    environment_for,
    lease_rows,
    wait_equal,
    wait_for_event,
    wait_until,
    workload_until,
)

pytestmark = pytest.mark.integration

LEASE_DURATION = 4.0
RENEW_INTERVAL = 1.0
CYCLE = 0.5
# moto builds a GetRecords answer in Python: 1,000 records with images take about
# 0.7 s on an idle machine, and the same server holds the lease table. A smaller
# page keeps every call short, so the lease cycles measured here are not queued
# behind one. (DynamoDB answers either in milliseconds.)
GET_RECORDS_LIMIT = 200
#: The bounds of the two hand-overs, with room for a loaded machine: a dead worker's
#: lease is taken once it expires (a lease duration after its last renewal) at the
#: next cycle of a survivor; a released one at the next cycle, well before it could
#: have expired.
AFTER_KILL = LEASE_DURATION + CYCLE + 4.0
AFTER_SIGTERM = LEASE_DURATION - RENEW_INTERVAL


def logged_at(line: dict[str, Any]) -> float:
    """When a log line was written (its ISO timestamp), in epoch seconds."""
    return datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()


def timeline(workers: dict[str, ReplicatorProcess]) -> str:
    """The lease events and retried calls of every worker, in time order: shown when a
    hand-over is slower than its bound."""
    shown = {"shutdown requested", "lease released", "lease taken", "retrying",
             "coordinator cycle failed; trying again",
             "GetRecords timed out; asking for fewer records"}
    lines = sorted(
        (entry.get("timestamp", ""), name, entry.get("event"), entry.get("error", ""))
        for name, process in workers.items()
        for entry in process.log_lines()
        if entry.get("event") in shown
    )
    return "\n".join(" ".join(str(part) for part in line) for line in lines)


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_three_workers_fail_over_on_kill_and_hand_over_on_sigterm(
    servers: Servers, source: Any, destination: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await create_pair(source, destination)
    env = environment_for(
        servers, lease_duration=LEASE_DURATION, lease_renew_interval=RENEW_INTERVAL,
        coordinator_interval=CYCLE, checkpoint_interval=0.5,
        get_records_limit=GET_RECORDS_LIMIT,
    )
    workers = {
        name: spawn(name, {**env, "REPLICATOR_WORKER_ID": name})
        for name in ("worker-a", "worker-b", "worker-c")
    }
    first, _ = await wait_for_event(workers.values(), "lease taken")
    # Writes go on until both hand-overs are done. A fifth of the items carry every
    # attribute type (moto takes about 3 ms to serialize one).
    stop_writes = asyncio.Event()
    workload = asyncio.create_task(workload_until(
        stop_writes, source, rate=120, keys=150, seed=3, rich=0.2))

    async def checkpointed_by(owner: str, *, past: str | None = None) -> None:
        """Until ``owner`` holds the lease and has checkpointed past ``past``: it
        replicates."""
        async def moved() -> bool:
            (row,) = await lease_rows(source)
            checkpoint = row["checkpoint"]["S"]
            return (row.get("lease_owner") == {"S": owner} and checkpoint.isdigit()
                    and checkpoint != past)

        await wait_until(moved, within=DEADLINE, processes=workers.values(),
                         what=f"{owner} to replicate and checkpoint")

    try:
        await checkpointed_by(first.name)  # the first owner replicates before it dies
        killed_at = time.time()
        first.send(signal.SIGKILL)
        survivors = [process for process in workers.values() if process is not first]
        second, taken = await wait_for_event(
            survivors, "lease taken", where=lambda line: line["previous_owner"] == first.name)
        after_kill = logged_at(taken) - killed_at

        # The new owner replicates before it is stopped.
        await checkpointed_by(second.name, past=taken["checkpoint"])
        stopped_at = time.time()
        second.send(signal.SIGTERM)
        (third,) = (process for process in survivors if process is not second)
        handed = await third.wait_for_event("lease taken")
        after_sigterm = logged_at(handed) - stopped_at
        stop_writes.set()
        result = await asyncio.wait_for(workload, DEADLINE)
    finally:
        workload.cancel()

    print(f"\ntakeover after kill -9: {after_kill:.2f}s (lease duration {LEASE_DURATION:g}s, "
          f"cycle {CYCLE:g}s); after SIGTERM: {after_sigterm:.2f}s; {result.operations} "
          "operations")
    # The bounds are the point of this test: a dead worker's lease is taken once it
    # expires, a released one at once (the lease was released: no previous owner).
    assert after_kill <= AFTER_KILL, timeline(workers)
    assert handed["previous_owner"] is None, timeline(workers)
    assert after_sigterm <= AFTER_SIGTERM, timeline(workers)
    assert await second.wait() == 0, second.report()
    diff = await wait_equal(source, destination, KEY_NAMES, processes=[third])
    assert diff.source_items > 50
    third.send(signal.SIGTERM)
    assert await third.wait() == 0, third.report()
