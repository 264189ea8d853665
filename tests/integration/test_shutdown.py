"""SIGTERM in every phase ends the process within the shutdown timeout plus a second,
whatever the network does: during the start-up checks, the bootstrap copy, streaming
and ``verify``, with the endpoints they use refusing connections or not answering."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.faults import Fault, FaultPlan, FaultProxy, Outage

from .conftest import (
    SOURCE_TABLE,
    ReplicatorProcess,
    Servers,
    create_pair,
    environment_for,
    fill_table,
    numbered_item,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SHUTDOWN = 3.0
#: An answer held this long never comes within a call timeout.
NEVER = 600.0


def stop_answering(proxy: FaultProxy) -> None:
    """Every call from now on is accepted and never answered in time."""
    proxy.slow_seconds = NEVER
    proxy.plan = FaultPlan.always(Fault.SLOW)


async def stops_within_the_deadline(process: ReplicatorProcess) -> tuple[int, float]:
    """SIGTERM, then the exit code and the seconds until the process was gone."""
    sent = time.monotonic()
    process.send(signal.SIGTERM)
    code = await asyncio.to_thread(process.process.wait, SHUTDOWN + 30)
    took = time.monotonic() - sent
    assert took <= SHUTDOWN + 1.0, f"exited {took:.2f}s after SIGTERM\n{process.report()}"
    return code, took


def env(servers: Servers, **overrides: Any) -> dict[str, str]:
    return environment_for(servers, shutdown_timeout=SHUTDOWN, **overrides)


async def test_sigterm_during_the_start_up_checks_to_an_endpoint_that_does_not_answer(
    servers: Servers, source: Any, destination: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await create_pair(source, destination)
    async with FaultProxy(servers.destination.url).running() as proxy:
        stop_answering(proxy)
        worker = spawn("starting", env(servers, destination_endpoint=proxy.url))
        await wait_until(lambda: _called(proxy, "DescribeTable"), within=60,
                         what="the start-up check of the destination", processes=[worker])
        code, took = await stops_within_the_deadline(worker)
    assert code == 0  # nothing was running yet: stopped at once
    assert took < SHUTDOWN
    assert worker.events("replication starting") == []


async def test_sigterm_during_a_copy_whose_endpoints_stopped_answering(
    servers: Servers, source: Any, destination: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await create_pair(source, destination)
    await fill_table(source, [numbered_item(random_rng(), i) for i in range(600)])
    async with FaultProxy(servers.source.url).running() as proxy:
        # The table, its stream and the checkpoint table, all behind the proxy; the copy
        # is slowed to about 6 s by a cap on its writes.
        worker = spawn("copier", env(servers, source_endpoint=proxy.url,
                                     copy_max_wcu=100, progress_interval=0.2))
        await worker.wait_for_event("copy progress",
                                    where=lambda line: line["items_written"] > 0)
        stop_answering(proxy)
        calls = sum(proxy.calls.values())
        await wait_until(lambda: _more_calls(proxy, calls), within=30,
                         what="a call to the silent endpoint", processes=[worker])
        code, _ = await stops_within_the_deadline(worker)
    assert code in (0, 143)
    assert worker.events("copy finished") == []


async def test_sigterm_while_streaming_to_a_destination_that_refuses_connections(
    servers: Servers, source: Any, destination: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await create_pair(source, destination)
    async with FaultProxy(servers.destination.url).running() as proxy:
        worker = spawn("streamer", env(servers, destination_endpoint=proxy.url,
                                       bootstrap="never", progress_interval=0.2))
        await worker.wait_for_event("shard started")
        await proxy.start_outage(Outage.REFUSED)
        for index in range(20):
            await source.put_item(TableName=SOURCE_TABLE,
                                  Item=numbered_item(random_rng(), index))
        # The records are read, and wait: the lag says so.
        await worker.wait_for_event("progress", where=lambda line: line["records_read"] > 0
                                    and line["lag_seconds"] > 0)
        code, _ = await stops_within_the_deadline(worker)
    assert code in (0, 143)
    # Until the worker gives the lease up: from then on the shard is no longer its own
    # and its lag is the next owner's to report.
    lines = worker.log_lines()
    released = next((index for index, line in enumerate(lines)
                     if line.get("event") == "lease released"), len(lines))
    stopping = [line for line in lines[:released]
                if line.get("event") == "progress" and line["records_read"] > 0]
    assert stopping, worker.report()
    assert all(line["lag_seconds"] > 0 for line in stopping), (
        [(line["records_read"], line["lag_seconds"]) for line in stopping], worker.report())
    assert worker.events("replication stopped")


async def test_sigterm_during_verify_with_a_source_that_does_not_answer(
    servers: Servers, source: Any, destination: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await create_pair(source, destination)
    await fill_table(source, [numbered_item(random_rng(), i) for i in range(200)])
    async with FaultProxy(servers.source.url).running() as proxy:
        proxy.plan = FaultPlan({"Scan": {Fault.SLOW: 1.0}})
        proxy.slow_seconds = NEVER
        worker = spawn("verifier", env(servers, source_endpoint=proxy.url), "verify")
        await wait_until(lambda: _called(proxy, "Scan"), within=60,
                         what="verify's first Scan", processes=[worker])
        code, _ = await stops_within_the_deadline(worker)
    assert code == 143
    assert "verify stopped by SIGTERM before it finished" in worker.stderr()


def random_rng() -> random.Random:
    return random.Random(3)


async def _called(proxy: FaultProxy, operation: str) -> bool:
    return proxy.calls[operation] > 0


async def _more_calls(proxy: FaultProxy, than: int) -> bool:
    return sum(proxy.calls.values()) > than

