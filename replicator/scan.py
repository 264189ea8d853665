"""Parallel Scan of a table, shared by ``copy`` and ``verify``, and a rate limiter."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator
from typing import Any

from replicator.aws import DynamoTable
from replicator.backoff import Backoff, retry_forever
from replicator.clock import Clock
from replicator.errors import CallTimeoutError, ReplicatorError
from replicator.records import Item
from replicator.stats import Stats

#: The shortest wait of a rate limiter.
MIN_WAIT = 0.001
#: Table bytes per Scan segment when the number of segments is not set.
BYTES_PER_SEGMENT = 256 * 1024 * 1024
MIN_SEGMENTS = 4


def default_segments(table_size_bytes: int) -> int:
    """4 segments per 256 MB, at least 4: more segments, more parallel readers."""
    return max(MIN_SEGMENTS, MIN_SEGMENTS * math.ceil(table_size_bytes / BYTES_PER_SEGMENT))


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
        self._updated = clock.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        assert self.rate is not None
        now = self._clock.monotonic()
        self._tokens = min(self.rate, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self, units: float) -> None:
        if self.rate is None:
            return
        async with self._lock:
            self._refill()
            # Never ask for more than the bucket holds, or a big call would wait for ever.
            wanted = min(units, self.rate)
            while self._tokens < wanted:
                # At least MIN_WAIT: a deficit of a rounding error would otherwise be
                # waited off in sleeps too short to move the clock.
                await self._clock.sleep(max(MIN_WAIT, (wanted - self._tokens) / self.rate))
                self._refill()
            self._tokens -= units

    def charge(self, units: float) -> None:
        if self.rate is None:
            return
        self._refill()
        self._tokens -= units


class PageLimit:
    """The Scan page limit, learned from timeouts and shared by a scan's segments.

    No limit at first (DynamoDB serves 1 MB pages). A timed-out page sets one
    (``FIRST``), and each further timeout halves it: a retried call would take
    as long, and pile onto the one the server is still serving. After
    ``GROW_AFTER`` pages in a row arrive, the limit doubles, and past ``FIRST``
    it is dropped again. Shared by all segments, so that what one learned the
    others need not learn again.
    """

    FIRST = 1000
    GROW_AFTER = 8

    def __init__(self) -> None:
        self.value: int | None = None
        self._arrived = 0

    def timed_out(self) -> None:
        self.value = self.FIRST if self.value is None else max(1, self.value // 2)
        self._arrived = 0

    def arrived(self) -> None:
        if self.value is None:
            return
        self._arrived += 1
        if self._arrived >= self.GROW_AFTER:
            self._arrived = 0
            self.value = None if self.value * 2 > self.FIRST else self.value * 2


async def scan_segment(
    table: DynamoTable,
    *,
    segment: int,
    total_segments: int,
    start_key: Item | None,
    limiter: RateLimiter,
    backoff: Backoff,
    clock: Clock,
    stats: Stats,
    page_limit: PageLimit | None = None,
) -> AsyncGenerator[tuple[list[dict[str, Any]], Item | None], None]:
    """Pages of one segment, from ``start_key``: (items, LastEvaluatedKey or None at the end).

    Throttling and transient errors are retried; read units are charged to
    ``limiter``; a page that times out is asked for again with a smaller
    ``page_limit``.
    """
    key = start_key
    limit = page_limit or PageLimit()

    def failed(error: ReplicatorError) -> None:
        stats.count_retry(error)
        if isinstance(error, CallTimeoutError):
            limit.timed_out()

    while True:
        await limiter.acquire(1.0)
        # The limit is read when each attempt is made, so that a retry asks for less.
        items, key, consumed = await retry_forever(
            lambda start=key: table.scan_page(  # type: ignore[misc]
                segment=segment, total_segments=total_segments, start_key=start,
                limit=limit.value,
            ),
            what="Scan",
            backoff=backoff,
            clock=clock,
            on_retry=failed,
        )
        limit.arrived()
        limiter.charge(max(0.0, consumed - 1.0))
        yield items, key
        if key is None:
            return
