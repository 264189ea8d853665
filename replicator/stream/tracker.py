"""A shard's records in flight, and the highest checkpoint below which every one is
applied: the only value ever written as a checkpoint."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from replicator.leases.fence import LeaseFence


@dataclass(slots=True)
class Pending:
    """One record handed to the writers, not yet known to be applied."""

    sequence_number: str
    created_at: float
    done: bool = False


class CheckpointTracker:
    """Per-shard bookkeeping of records in flight.

    Records are added in stream order. Writers mark them done in any order.
    ``checkpointable`` only moves past a record once it and every record before
    it are done, so a checkpoint never covers an unapplied record.
    """

    __slots__ = (
        "_changed",
        "_in_flight",
        "cancelled",
        "checkpointable",
        "failure",
        "fence",
        "last_read",
        "written",
    )

    def __init__(self, checkpoint: str, fence: LeaseFence | None = None) -> None:
        self._in_flight: deque[Pending] = deque()
        #: Whether the shard's lease still allows writes (None: always).
        self.fence = fence
        #: Highest checkpoint that may be written (a sequence number or a sentinel).
        self.checkpointable: str = checkpoint
        #: Sequence number of the last record handed to the writers.
        self.last_read: str | None = None
        #: Last checkpoint written to the table.
        self.written: str = checkpoint
        #: Set when the shard stopped: its pending writes are dropped, never applied.
        self.cancelled = False
        #: The error that stopped the shard's writes (a poison record), if any.
        self.failure: BaseException | None = None
        self._changed = asyncio.Event()

    def add(self, sequence_number: str, created_at: float) -> Pending:
        pending = Pending(sequence_number, created_at)
        self._in_flight.append(pending)
        self.last_read = sequence_number
        return pending

    def withdraw(self, pending: Pending) -> None:
        """Take back the record added last: its writers never got it."""
        if not self._in_flight or self._in_flight[-1] is not pending:
            raise ValueError("only the record added last can be withdrawn")
        self._in_flight.pop()
        if not self._in_flight:
            self._changed.set()

    def mark_done(self, pending: Pending) -> None:
        pending.done = True
        in_flight = self._in_flight
        while in_flight and in_flight[0].done:
            self.checkpointable = in_flight.popleft().sequence_number
        if not in_flight:
            self._changed.set()

    def fail(self, error: BaseException) -> None:
        """Record that a write for this shard failed for good; the shard must stop."""
        if self.failure is None:
            self.failure = error
        self.cancelled = True
        self._changed.set()

    async def wait_drained(self) -> None:
        """Wait until every record handed to the writers is applied.

        Raises the shard's failure instead if a write failed for good.
        """
        while True:
            if self.failure is not None:
                raise self.failure
            if not self._in_flight:
                return
            self._changed.clear()
            await self._changed.wait()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def drained(self) -> bool:
        return not self._in_flight

    def oldest_unapplied_created_at(self) -> float | None:
        return self._in_flight[0].created_at if self._in_flight else None

    def __repr__(self) -> str:
        return (
            f"<CheckpointTracker checkpointable={self.checkpointable} "
            f"written={self.written} in_flight={len(self._in_flight)}>"
        )
