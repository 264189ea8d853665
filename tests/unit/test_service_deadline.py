"""The service's shutdown deadline (``Replicator._bounded``), on virtual time: a stop
while starting ends the work at once; a stop while copying or replicating gives the work
until ``shutdown_timeout`` to stop by itself, and cancels it past that."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from replicator.commands.run import DEADLINE_EXIT, DEADLINE_MARGIN, Replicator
from replicator.commands.settings import load_settings
from tests.unit.harness import CLOCK

pytestmark = pytest.mark.timeout(10)

SHUTDOWN = 5.0


def replicator() -> Replicator:
    settings = load_settings({
        "source_table": "source", "source_region": "us-east-1",
        "destination_table": "destination", "shutdown_timeout": SHUTDOWN,
    }, env_file=None)
    return Replicator(settings, clock=CLOCK)


async def forever() -> int:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def stop_after(service: Replicator, seconds: float) -> None:
    await CLOCK.sleep(seconds)
    service.stop()


async def run(service: Replicator, work: Any, *, stop_at: float) -> tuple[int, float]:
    started = CLOCK.monotonic()
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop_after(service, stop_at))
    outcome = await service._bounded(task)
    await stopper
    assert isinstance(outcome, int)
    return outcome, CLOCK.monotonic() - started - stop_at


async def test_a_stop_while_starting_cancels_the_start_up_checks_at_once() -> None:
    service = replicator()
    code, after = await run(service, forever(), stop_at=1.0)
    assert (code, after) == (0, 0.0)
    assert not service.deadline_reached


async def test_a_stop_while_copying_waits_for_the_work_until_the_deadline_then_cancels() -> None:
    service = replicator()
    service.phase = "copying"
    code, after = await run(service, forever(), stop_at=1.0)
    assert code == DEADLINE_EXIT
    assert service.deadline_reached
    assert after == pytest.approx(SHUTDOWN + DEADLINE_MARGIN)


async def test_work_that_stops_by_itself_within_the_deadline_gives_its_own_exit_code() -> None:
    service = replicator()
    service.phase = "replicating"

    async def graceful() -> int:
        await service.stop_requested.wait()
        await CLOCK.sleep(SHUTDOWN - 1.0)  # drains, checkpoints, releases
        return 0

    code, after = await run(service, graceful(), stop_at=2.0)
    assert (code, after) == (0, pytest.approx(SHUTDOWN - 1.0))
    assert not service.deadline_reached
