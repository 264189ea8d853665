"""Checkpoints: where a shard's reading resumes, and what may safely be recorded.

A checkpoint is either a sequence number, meaning "every record up to and
including this one is applied", or one of the sentinels below. The tracker
turns the out-of-order completions of the writer pool into the highest
sequence number below which *every* record has been applied: the only value
that may ever be written as a checkpoint.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from dataclasses import dataclass


class Sentinel(enum.StrEnum):
    """Checkpoint values that are not sequence numbers (as in the KCL's SentinelCheckpoint)."""

    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"
    SHARD_END = "SHARD_END"


#: A checkpoint ``AT:<sequence number>`` starts a shard at that record (inclusive):
#: the first record written after a bootstrap copy began.
AT_PREFIX = "AT:"


#: A checkpoint ``SINCE:<epoch seconds>`` starts a shard at its TRIM_HORIZON and skips,
#: without applying them, the records created before that second: a bootstrap copy
#: holds them already. Records of that second and later are applied.
SINCE_PREFIX = "SINCE:"


def is_sentinel(checkpoint: str) -> bool:
    return checkpoint in Sentinel.__members__


def at_sequence(checkpoint: str) -> str | None:
    """The sequence number of an ``AT:`` checkpoint, or None."""
    return checkpoint.removeprefix(AT_PREFIX) if checkpoint.startswith(AT_PREFIX) else None


def since_time(checkpoint: str) -> float | None:
    """The epoch second of a ``SINCE:`` checkpoint, or None."""
    if not checkpoint.startswith(SINCE_PREFIX):
        return None
    return float(checkpoint.removeprefix(SINCE_PREFIX))


def since(epoch_second: float) -> str:
    return f"{SINCE_PREFIX}{int(epoch_second)}"


def is_copy_start(checkpoint: str) -> bool:
    """Whether the checkpoint is a start a bootstrap copy recorded (``AT:``, ``SINCE:``)."""
    return checkpoint.startswith((AT_PREFIX, SINCE_PREFIX))


def before_reading(checkpoint: str) -> bool:
    """Whether nothing of the shard has been applied since the checkpoint was set: a
    sentinel start, or a bootstrap copy's ``AT:`` or ``SINCE:`` position."""
    return is_sentinel(checkpoint) or is_copy_start(checkpoint)


class LeaseFence:
    """Until when this worker may write a shard's records, by its own clock.

    Another worker may take a lease once its counter has stood still for
    ``lease_duration`` by *that* worker's clock, whose count starts no earlier
    than our last successful lease write was sent. A destination write that
    begins at ``now`` ends, or times out, by ``now + window``; it is safe while
    ``now + window <= sent + lease_duration``. Writers wait while that does not
    hold; the fence is renewed by each lease write and revoked when the lease
    is lost or released.
    """

    __slots__ = ("_changed", "lease_duration", "revoked", "valid_until")

    def __init__(self, lease_duration: float, sent_at: float) -> None:
        self.lease_duration = lease_duration
        self.valid_until = sent_at + lease_duration
        self.revoked = False
        self._changed = asyncio.Event()

    def renewed(self, sent_at: float) -> None:
        self.valid_until = max(self.valid_until, sent_at + self.lease_duration)
        self._wake()

    def revoke(self) -> None:
        self.revoked = True
        self._wake()

    def allows(self, now: float, window: float) -> bool:
        return not self.revoked and now + window <= self.valid_until

    async def wait_changed(self) -> None:
        """Wait for the next renewal or revocation."""
        await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        return f"<LeaseFence valid_until={self.valid_until:.3f} revoked={self.revoked}>"


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
