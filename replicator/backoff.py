"""Exponential backoff with full jitter, and the one retry loop the project uses."""

from __future__ import annotations

import functools
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import structlog

from replicator.clock import Clock
from replicator.errors import ReplicatorError

T = TypeVar("T")
R = TypeVar("R")
log = structlog.get_logger("replicator.retry")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays of ``uniform(0, min(cap, base * 2**attempt))`` ("full jitter")."""

    base: float = 0.05
    cap: float = 5.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0.0, min(self.cap, self.base * (2 ** min(attempt, 30))))


class Retried(Protocol):
    """A call (on the checkpoint table, the stream) retried while retriable: ``retry_forever``
    with its backoff, clock and counting already chosen."""

    async def __call__(self, call: Callable[[], Awaitable[T]], what: str) -> T: ...


async def retry_forever(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    backoff: Backoff,
    clock: Clock,
    on_retry: Callable[[ReplicatorError], None] | None = None,
) -> T:
    """Run ``operation`` until it succeeds or fails with a non-retriable error.

    Retriable errors are retried with backoff for as long as the caller lets
    this run; cancellation (shutdown, a lost lease) is what ends it.
    """
    attempt = 0
    while True:
        try:
            return await operation()
        except ReplicatorError as exc:
            if not exc.retriable:
                raise
            if on_retry is not None:
                on_retry(exc)
            delay = backoff.delay(attempt)
            if attempt in (0, 5) or attempt % 20 == 19:
                log.warning(
                    "retrying", operation=what, attempt=attempt + 1,
                    error=type(exc).__name__, detail=str(exc), delay=round(delay, 3),
                )
            attempt += 1
            await clock.sleep(delay)


async def until_processed(
    call: Callable[[list[R]], Awaitable[list[R]]],
    items: list[R],
    *,
    what: str,
    backoff: Backoff,
    clock: Clock,
    on_retry: Callable[[ReplicatorError], None] | None = None,
    on_left: Callable[[], None] | None = None,
) -> None:
    """Call ``call`` (a BatchWriteItem, a BatchGetItem) until it leaves nothing unprocessed.

    ``call`` takes what is still to be done and returns what the service left
    unprocessed (its way of throttling a batch), which is sent again after a
    backoff. Errors are retried by ``retry_forever``.
    """
    remaining = items
    attempt = 0
    while remaining:
        remaining = await retry_forever(
            functools.partial(call, remaining), what=what, backoff=backoff,
            clock=clock, on_retry=on_retry,
        )
        if remaining:
            if on_left is not None:
                on_left()
            await clock.sleep(backoff.delay(attempt))
            attempt += 1
