"""The one clock that lease, fence, balancing, backoff, rate-limit and progress logic read.

Every timed decision in the core (a lease expired, a fence still open, a retry's
delay, a rate limiter's refill, a cycle's wait, a shutdown deadline) asks a
``Clock`` rather than ``time`` or ``asyncio`` directly. The service wires in
``SYSTEM_CLOCK``; unit tests wire in a virtual clock that they advance, so that
how busy the machine is never changes what a test sees.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    """Monotonic seconds, and a sleep measured in the same seconds."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The machine's monotonic clock and asyncio's sleep.

    ``time.monotonic()`` rather than the loop's cached time: a fence is checked
    against the moment a write is sent, and uvloop's loop time can be a long
    callback old.
    """

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "<SystemClock>"


SYSTEM_CLOCK: Clock = SystemClock()


async def wait_event(clock: Clock, event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set, for at most ``seconds`` of ``clock``. Whether it is set."""
    if event.is_set():
        return True
    await first_of(event.wait(), clock.sleep(seconds))
    return event.is_set()


async def first_of(*awaitables: Awaitable[object]) -> None:
    """Wait until the first of ``awaitables`` is done; the others are cancelled."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        # Let the cancelled ones unwind now, so that none is left pending.
        await asyncio.wait(tasks)
    for task in tasks:
        if task.done() and not task.cancelled():
            error = task.exception()
            if error is not None:
                raise error


async def within(clock: Clock, seconds: float, awaitable: Awaitable[T]) -> T:
    """``awaitable``'s result, or ``TimeoutError`` once ``seconds`` of ``clock`` have
    passed (the awaitable is then cancelled and awaited)."""
    work = asyncio.ensure_future(awaitable)
    timer = asyncio.ensure_future(clock.sleep(max(0.0, seconds)))
    try:
        await asyncio.wait([work, timer], return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        if not work.done():
            work.cancel()
        await asyncio.wait([work, timer])
    if work.cancelled():
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise asyncio.CancelledError
        raise TimeoutError(f"not done within {seconds:g}s")
    return work.result()
