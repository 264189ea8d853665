"""A token bucket: the copy's read and write caps, and the stream's write cap."""

from __future__ import annotations

import asyncio

from replicator.clock import Clock

#: The shortest wait of a rate limiter.
MIN_WAIT = 0.001


class RateLimiter:
    """A token bucket of ``rate`` units a second (capacity: one second's worth).

    Callers take units before a call when they know its cost, or charge what a
    call consumed afterwards (``charge``), which may leave the bucket in debt:
    the next caller waits until it is paid off. ``None`` means no limit.
    """

    def __init__(self, rate: float | None, *, clock: Clock) -> None:
        self.rate = rate
        self._clock = clock
        self._tokens = rate or 0.0
        self._updated = clock.monotonic() if rate is not None else 0.0
        self._lock = asyncio.Lock()
        #: Seconds callers have waited for units, in all.
        self.waited = 0.0

    def _refill(self) -> None:
        assert self.rate is not None
        now = self._clock.monotonic()
        self._tokens = min(self.rate, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self, units: float) -> None:
        if self.rate is None:
            return
        async with self._lock:
            started = self._clock.monotonic()
            self._refill()
            # Never ask for more than the bucket holds, or a big call would wait for ever.
            wanted = min(units, self.rate)
            while self._tokens < wanted:
                # At least MIN_WAIT: a deficit of a rounding error would otherwise be
                # waited off in sleeps too short to move the clock.
                await self._clock.sleep(max(MIN_WAIT, (wanted - self._tokens) / self.rate))
                self._refill()
            self._tokens -= units
            self.waited += self._clock.monotonic() - started

    def charge(self, units: float) -> None:
        if self.rate is None:
            return
        self._refill()
        self._tokens -= units
