"""Parallel Scan of a table, shared by ``copy`` and ``verify``."""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator
from typing import Any

from replicator.backoff import Backoff, retry_forever
from replicator.clock import Clock
from replicator.config import LONGEST_CALL
from replicator.errors import CallTimeoutError, ReplicatorError
from replicator.protocols import SegmentScanner
from replicator.rate import RateLimiter
from replicator.records import Item
from replicator.stats import Stats

#: Table bytes per Scan segment when the number of segments is not set.
BYTES_PER_SEGMENT = 256 * 1024 * 1024
MIN_SEGMENTS = 4


def default_segments(table_size_bytes: int) -> int:
    """4 segments per 256 MB, at least 4: more segments, more parallel readers."""
    return max(MIN_SEGMENTS, MIN_SEGMENTS * math.ceil(table_size_bytes / BYTES_PER_SEGMENT))


class ScanPacing:
    """How long a Scan page may take, and how many items it asks for; learned from the
    pages, shared by a scan's segments.

    A timed-out page is asked for again, and the server may still be computing the
    one abandoned: on a slow server (moto, a table under heavy load) a retry with
    the same timeout only multiplies its work, and a smaller page makes more pages
    without making each much cheaper. So the first pages, while nothing is known of
    the table's pages (segments scanned at once share the server), are waited for
    ``LONGEST_CALL``; a timeout doubles the page's timeout, up to ``LONGEST_CALL``;
    each page that arrives keeps it at least ``HEADROOM``
    times the slowest of the recent pages, and it settles back toward the call
    timeout as pages come quickly. Only when a page times out at the longest
    timeout does the page shrink (``FIRST`` items, halved after each further
    timeout, doubled back after ``GROW_AFTER`` pages in a row, and dropped past
    ``FIRST``): then the transfer itself is what is slow.
    """

    FIRST = 1000
    GROW_AFTER = 8
    HEADROOM = 3.0
    RECENT = 8

    def __init__(self, call_timeout: float, longest: float = LONGEST_CALL) -> None:
        self.base = call_timeout
        self.longest = max(longest, call_timeout)
        self.timeout = self.longest
        self.limit: int | None = None
        self._arrived = 0
        self._recent: list[float] = []

    def timed_out(self) -> None:
        if self.timeout < self.longest:
            self.timeout = min(self.longest, self.timeout * 2)
            return
        self.limit = self.FIRST if self.limit is None else max(1, self.limit // 2)
        self._arrived = 0

    def arrived(self, seconds: float) -> None:
        """A page arrived after ``seconds``."""
        self._recent = [*self._recent[-(self.RECENT - 1):], seconds]
        self.timeout = min(self.longest, max(self.base, self.HEADROOM * max(self._recent)))
        if self.limit is None:
            return
        self._arrived += 1
        if self._arrived >= self.GROW_AFTER:
            self._arrived = 0
            self.limit = None if self.limit * 2 > self.FIRST else self.limit * 2


async def scan_segment(
    table: SegmentScanner,
    *,
    segment: int,
    total_segments: int,
    start_key: Item | None,
    limiter: RateLimiter,
    backoff: Backoff,
    clock: Clock,
    stats: Stats,
    pacing: ScanPacing,
) -> AsyncGenerator[tuple[list[dict[str, Any]], Item | None], None]:
    """Pages of one segment, from ``start_key``: (items, LastEvaluatedKey or None at the end).

    Throttling and transient errors are retried; read units are charged to
    ``limiter``; a page that times out is asked for again as ``pacing`` says.
    """
    key = start_key

    def failed(error: ReplicatorError) -> None:
        stats.count_retry(error)
        if isinstance(error, CallTimeoutError):
            pacing.timed_out()

    async def page(start: Item | None) -> tuple[list[dict[str, Any]], Item | None, float]:
        sent = clock.monotonic()
        answer = await table.scan_page(
            segment=segment, total_segments=total_segments, start_key=start,
            limit=pacing.limit, call_timeout=pacing.timeout,
        )
        pacing.arrived(clock.monotonic() - sent)
        return answer

    while True:
        await limiter.acquire(1.0)
        # The pacing is read when each attempt is made, so that a retry waits longer.
        items, key, consumed = await retry_forever(
            lambda start=key: page(start),  # type: ignore[misc]
            what="Scan",
            backoff=backoff,
            clock=clock,
            on_retry=failed,
        )
        limiter.charge(max(0.0, consumed - 1.0))
        yield items, key
        if key is None:
            return
