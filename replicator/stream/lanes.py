"""A shard's lanes: one per destination of its source, each with its own writers and
checkpoint, fed by the shard's one reader while it keeps up.

A lane that cannot take a record within ``detach_after`` while another lane can is
detached: the reader goes on without it, and once its destination has applied what
it holds, a catch-up reader reads the shard from the lane's own checkpoint and feeds
it alone, until it reaches the record the shard's reader read last; the lane is then
attached again. See docs/DESIGN.md ("Fan-out").
"""

from __future__ import annotations

import enum

from replicator.checkpoint import Sentinel, at_sequence, since_time
from replicator.leases.fence import LeaseFence
from replicator.records import LaneKey, StreamRecord, sequence_key
from replicator.stream.tracker import CheckpointTracker
from replicator.stream.writer import WriterPool


class LaneState(enum.StrEnum):
    #: Fed by the shard's reader.
    ATTACHED = "ATTACHED"
    #: Fell behind: the reader goes on without it while its destination applies what
    #: it holds.
    DETACHED = "DETACHED"
    #: Fed by its own catch-up reader, from its checkpoint.
    CATCHING_UP = "CATCHING_UP"
    #: A destination joining the topology, being copied: not fed yet, and the shard
    #: does not end without it.
    PARKED = "PARKED"


class Verdict(enum.Enum):
    #: Apply the record to the lane's destination.
    APPLY = "apply"
    #: Older than the lane's bootstrap copy: counted as done, not applied.
    SKIP = "skip"
    #: Before the lane's checkpoint: not the lane's to apply.
    PASS = "pass"


class Lane:
    """One destination of one shard: its writer pool, its checkpoint tracker, its state."""

    __slots__ = (
        "_joined",
        "_skip_before",
        "behind_since",
        "key",
        "last_event",
        "pool",
        "start",
        "state",
        "tracker",
    )

    def __init__(self, key: LaneKey, pool: WriterPool, checkpoint: str, *,
                 fence: LeaseFence | None, state: LaneState = LaneState.ATTACHED) -> None:
        self.key = key
        self.pool = pool
        #: Where the lane resumes: its checkpoint in the lease row.
        self.start = checkpoint
        self.tracker = CheckpointTracker(checkpoint, fence=fence)
        self.state = state
        #: The event id of the last record handed to the lane's writers.
        self.last_event: str | None = None
        #: Not attached: the creation time of the oldest record it has not been handed.
        self.behind_since: float | None = None
        # Every record after the first one the lane applies is the lane's too.
        self._joined = checkpoint in (Sentinel.TRIM_HORIZON, Sentinel.LATEST)
        self._skip_before = since_time(checkpoint)

    @property
    def destination(self) -> str:
        return self.key.destination

    def verdict(self, record: StreamRecord) -> Verdict:
        """What the lane does with the shard's next record.

        Records come in stream order, so the first one the lane applies settles it:
        the lane applies every later one without comparing sequence numbers again.
        """
        if self._joined:
            return Verdict.APPLY
        start = self.start
        if start == Sentinel.SHARD_END:
            return Verdict.PASS
        if self._skip_before is not None:
            if record.created_at < self._skip_before:
                return Verdict.SKIP  # the bootstrap copy holds its effect already
        else:
            at = at_sequence(start)
            sequence = sequence_key(record.sequence_number)
            if at is not None and sequence < sequence_key(at):
                return Verdict.PASS
            if at is None and sequence <= sequence_key(start):
                return Verdict.PASS
        self._joined = True
        return Verdict.APPLY

    def apply_all(self) -> None:
        """The lane applies every record it is handed: the reader starts where the
        bootstrap copy's watcher stood, after everything the copy holds."""
        self._joined = True

    def detach(self, missed: StreamRecord) -> None:
        """The reader goes on without the lane from ``missed`` on."""
        self.state = LaneState.DETACHED
        self.behind_since = missed.created_at

    def attach(self) -> None:
        self.state = LaneState.ATTACHED
        self.behind_since = None

    def oldest_unapplied_created_at(self) -> float | None:
        """For the lag: the oldest record read for the lane and not applied, or, while
        the lane is not attached, the oldest one it has not been handed."""
        oldest = self.tracker.oldest_unapplied_created_at()
        if self.behind_since is None:
            return oldest
        return self.behind_since if oldest is None else min(oldest, self.behind_since)

    def __repr__(self) -> str:
        return f"<Lane {self.destination} {self.state} {self.tracker!r}>"
