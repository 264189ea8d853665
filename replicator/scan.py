"""Parallel Scan of a table, shared by ``copy`` and ``verify``, and a rate limiter."""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from replicator.aws import DynamoTable
from replicator.backoff import Backoff, retry_forever
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


async def scan_segment(
    table: DynamoTable,
    *,
    segment: int,
    total_segments: int,
    start_key: Item | None,
    limiter: RateLimiter,
    backoff: Backoff,
    stats: Stats,
) -> AsyncIterator[tuple[list[dict[str, Any]], Item | None]]:
    """Pages of one segment, from ``start_key``: (items, LastEvaluatedKey or None at the end).

    Throttling and transient errors are retried; read units are charged to ``limiter``.
    """
    key = start_key
    while True:
        await limiter.acquire(1.0)
        items, key, consumed = await retry_forever(
            functools.partial(
                table.scan_page, segment=segment, total_segments=total_segments, start_key=key
            ),
            what="Scan",
            backoff=backoff,
            on_retry=stats.count_retry,
        )
        limiter.charge(max(0.0, consumed - 1.0))
        yield items, key
        if key is None:
            return
