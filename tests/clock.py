"""Virtual time for unit tests: an event loop whose clock moves only when told, or idle.

``VirtualTimeLoop`` is an asyncio loop whose ``time()`` is a number the test
owns. When no callback is ready, no I/O is pending and no thread is at work
(``asyncio.to_thread``), the loop does not wait for its next timer: it moves its
time forward to that timer at once (trio's
``MockClock`` with ``autojump_threshold=0`` does the same). So every
``asyncio.sleep``, ``asyncio.timeout`` and ``Clock.sleep`` in a test takes the
virtual seconds it names and no wall time, and what happens in a test depends
only on the order of events, never on how busy the machine is.

``VirtualClock`` is the ``replicator.clock.Clock`` that reads that time. A test
may also ``advance`` it, as if the process had been paused that long (a GC
pause, a starved loop): timers due meanwhile fire together on the next turn.
"""

from __future__ import annotations

import asyncio
import math
import selectors
from typing import Any

#: Virtual time at a loop's start: well away from zero, as monotonic clocks are.
START = 1000.0
#: What ``stamp`` adds to order events at one instant: far below any interval a test
#: sets, far above a float's resolution at ``START``.
TICK = 1e-9


class _JumpingSelector(selectors.DefaultSelector):
    """Waits for nothing: a wait for the next timer moves the loop's time to it."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if (timeout is None or timeout <= 0 or self.loop is None
                or self.loop.in_executor):
            # Nothing scheduled (wait for I/O, such as a thread's wake-up), something
            # ready (only poll), or a thread at work (``run_in_executor``, which wakes
            # the loop when it is done): real waiting, as any loop does.
            return super().select(timeout)
        ready = super().select(0)
        if ready:
            return ready
        self.loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop on virtual time (see the module docstring)."""

    def __init__(self) -> None:
        selector = _JumpingSelector()
        super().__init__(selector)
        self._virtual_now = START
        self._last_stamp = -math.inf
        #: Calls running in a thread (``run_in_executor``, ``asyncio.to_thread``): while
        #: any is, time does not jump, so no timer fires before the thread is done.
        self.in_executor = 0
        selector.loop = self

    def run_in_executor(self, executor: Any, func: Any, *args: Any) -> asyncio.Future[Any]:
        future = super().run_in_executor(executor, func, *args)
        self.in_executor += 1
        future.add_done_callback(self._executor_done)
        return future

    def _executor_done(self, _: asyncio.Future[Any]) -> None:
        self.in_executor -= 1

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (timers due meanwhile run on the next turn)."""
        assert seconds >= 0, seconds
        self._virtual_now += seconds

    def stamp(self) -> float:
        """The time, strictly later than the last stamp (by ``TICK`` at least).

        Nothing advances virtual time while tasks run, so many events happen at one
        instant; a log of them stamped this way keeps their order.
        """
        self._last_stamp = max(self._virtual_now, self._last_stamp + TICK)
        return self._last_stamp


class VirtualClock:
    """``replicator.clock.Clock`` on the running ``VirtualTimeLoop``'s time."""

    def monotonic(self) -> float:
        return _loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def advance(self, seconds: float) -> None:
        _loop().advance(seconds)

    def stamp(self) -> float:
        """For logs of what happened when: see ``VirtualTimeLoop.stamp``."""
        return _loop().stamp()

    def __repr__(self) -> str:
        return "<VirtualClock>"


def _loop() -> VirtualTimeLoop:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop), f"not on virtual time: {loop!r}"
    return loop


def loop_factories() -> dict[str, Any]:
    """For the ``pytest_asyncio_loop_factories`` hook."""
    return {"virtual-time": VirtualTimeLoop}
