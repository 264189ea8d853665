"""Several worker processes under one task name: failover after kill -9 and after SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from replicator.workload import KEY_NAMES, run_workload
from tests.integration.conftest import (
    SOURCE_TABLE,
    ReplicatorProcess,
    Servers,
    create_pair,
    environment_for,
    lease_rows,
    wait_equal,
)

pytestmark = pytest.mark.integration

LEASE_DURATION = 4.0
CYCLE = 0.5
# moto builds a GetRecords answer in Python: 1,000 records with images take about
# 0.7 s on an idle machine, and the same server holds the lease table. A smaller
# page keeps every call short, so the lease cycles measured here are not queued
# behind one. (DynamoDB answers either in milliseconds.)
GET_RECORDS_LIMIT = 200
#: At 120 a second, the workload lasts 12.5 s: it outlasts both hand-overs even when
#: each takes as long as its bound allows (1 + 6 + 1 + 2 s). A fifth of its items carry
#: every attribute type (moto takes about 3 ms to serialize one).
OPERATIONS = 1500


async def owner_of_the_shard(source: Any) -> str | None:
    try:
        rows = await lease_rows(source)
    except source.exceptions.ResourceNotFoundException:  # no worker has created it yet
        return None
    if len(rows) != 1:
        return None
    owner = rows[0].get("lease_owner")
    return owner["S"] if owner else None


async def wait_for_owner(
    source: Any, *, not_in: set[str | None], within: float
) -> tuple[str, float]:
    """Poll the lease row until its owner is someone new; returns (owner, monotonic time)."""
    deadline = time.monotonic() + within
    while True:
        owner = await owner_of_the_shard(source)
        if owner not in not_in and owner is not None:
            return owner, time.monotonic()
        if time.monotonic() > deadline:
            raise AssertionError(f"no new owner within {within:g}s (owner: {owner})")
        await asyncio.sleep(0.05)


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


@pytest.mark.timeout(90)
async def test_three_workers_fail_over_on_kill_and_hand_over_on_sigterm(
    servers: Servers, source: Any, destination: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await create_pair(source, destination)
    env = environment_for(
        servers, lease_duration=LEASE_DURATION, lease_renew_interval=1.0,
        coordinator_interval=CYCLE, checkpoint_interval=0.5,
        get_records_limit=GET_RECORDS_LIMIT,
    )
    workers = {
        name: spawn(name, {**env, "REPLICATOR_WORKER_ID": name})
        for name in ("worker-a", "worker-b", "worker-c")
    }
    first_owner, _ = await wait_for_owner(source, not_in=set(), within=20)
    workload = asyncio.create_task(
        run_workload(source, SOURCE_TABLE, operations=OPERATIONS, rate=120, keys=150, seed=3,
                     rich=0.2)
    )
    try:
        await asyncio.sleep(1.0)  # let the first owner replicate a while before it dies
        killed_at = time.monotonic()
        workers[first_owner].send(signal.SIGKILL)
        second_owner, taken_at = await wait_for_owner(
            source, not_in={first_owner}, within=LEASE_DURATION + 10
        )
        after_kill = taken_at - killed_at

        await asyncio.sleep(1.0)  # the new owner replicates before it is stopped
        stopped_at = time.monotonic()
        workers[second_owner].send(signal.SIGTERM)
        _, taken_at = await wait_for_owner(
            source, not_in={first_owner, second_owner}, within=10
        )
        after_sigterm = taken_at - stopped_at
        assert not workload.done(), "the workload ended before both hand-overs: lengthen it"
        result = await workload
    finally:
        workload.cancel()

    print(f"\ntakeover after kill -9: {after_kill:.2f}s (lease duration {LEASE_DURATION:g}s, "
          f"cycle {CYCLE:g}s); after SIGTERM: {after_sigterm:.2f}s")
    assert after_kill <= LEASE_DURATION + CYCLE + 1.5, timeline(workers)
    assert after_sigterm <= 2.0, timeline(workers)
    assert await workers[second_owner].wait(within=15) == 0
    assert result.operations == OPERATIONS
    diff = await wait_equal(source, destination, KEY_NAMES, within=40)
    assert diff.source_items > 50
    # Each survivor logged its take-over; the first took the shard from the dead worker.
    taken = [line for line in workers[second_owner].events("lease taken")
             if line.get("previous_owner") == first_owner]
    assert taken, workers[second_owner].stdout()
    for name in {"worker-a", "worker-b", "worker-c"} - {first_owner, second_owner}:
        workers[name].send(signal.SIGTERM)
        assert await workers[name].wait(within=15) == 0
