"""The unit tests' virtual time (``tests/clock.py``): timers jump, threads do not."""

from __future__ import annotations

import asyncio
import threading

from tests.clock import VirtualClock


async def test_an_idle_loop_jumps_to_its_next_timer() -> None:
    clock = VirtualClock()
    before = clock.monotonic()
    await asyncio.sleep(3600)
    assert clock.monotonic() - before == 3600


async def test_no_timer_fires_while_a_thread_is_at_work() -> None:
    """A call in a thread takes wall time the loop cannot skip: a timeout around it
    does not expire meanwhile, however long the thread takes to be scheduled."""
    started, release = threading.Event(), threading.Event()

    def work() -> str:
        started.set()
        release.wait(10)
        return "done"

    async def let_go() -> None:  # lets the thread finish only once the loop has waited
        await asyncio.to_thread(started.wait, 10)
        await asyncio.sleep(0)
        release.set()

    clock = VirtualClock()
    before = clock.monotonic()
    async with asyncio.timeout(5):
        result, _ = await asyncio.gather(asyncio.to_thread(work), let_go())
    assert result == "done"
    assert clock.monotonic() - before < 5
