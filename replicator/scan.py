"""Parallel Scan of a table, shared by ``copy`` and ``verify``, and a rate limiter."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncGenerator
from typing import Any

from replicator.aws import DynamoTable
from replicator.backoff import Backoff, retry_forever
from replicator.errors import CallTimeoutError, ReplicatorError
from replicator.records import Item
from replicator.stats import Stats

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

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._tokens = rate or 0.0
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        assert self.rate is not None
        now = time.monotonic()
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
                await asyncio.sleep((wanted - self._tokens) / self.rate)
                self._refill()
            self._tokens -= units

    def charge(self, units: float) -> None:
        if self.rate is None:
            return
        self._refill()
        self._tokens -= units


#: The page limit set after a Scan call times out (halved after each further
#: timeout, and dropped again once pages arrive at this size). Until then no
#: limit is set: DynamoDB serves 1 MB pages.
PAGE_LIMIT = 1000


async def scan_segment(
    table: DynamoTable,
    *,
    segment: int,
    total_segments: int,
    start_key: Item | None,
    limiter: RateLimiter,
    backoff: Backoff,
    stats: Stats,
) -> AsyncGenerator[tuple[list[dict[str, Any]], Item | None], None]:
    """Pages of one segment, from ``start_key``: (items, LastEvaluatedKey or None at the end).

    Throttling and transient errors are retried; read units are charged to
    ``limiter``. A page that times out is asked for again with a smaller limit
    (a retried call would take as long, and pile onto the one still being
    served); the limit doubles back after each page that arrives.
    """
    key = start_key
    limit: int | None = None

    def failed(error: ReplicatorError) -> None:
        nonlocal limit
        stats.count_retry(error)
        if isinstance(error, CallTimeoutError):
            limit = PAGE_LIMIT if limit is None else max(1, limit // 2)

    while True:
        await limiter.acquire(1.0)
        # ``limit`` is read when each attempt is made, so that a retry asks for less.
        items, key, consumed = await retry_forever(
            lambda start=key: table.scan_page(  # type: ignore[misc]
                segment=segment, total_segments=total_segments, start_key=start,
                limit=limit,  # noqa: B023
            ),
            what="Scan",
            backoff=backoff,
            on_retry=failed,
        )
        if limit is not None:
            limit = None if limit * 2 > PAGE_LIMIT else limit * 2
        limiter.charge(max(0.0, consumed - 1.0))
        yield items, key
        if key is None:
            return
