"""Leases: which worker reads which shard, decided through the checkpoint table.

The design is the Kinesis Client Library's. A lease row per shard holds its
owner, a counter and the checkpoint. Every write is conditional on the owner
and counter this worker last saw, and bumps the counter, so a worker that lost
a lease learns it on its next write and stops the shard. A lease is expired
when its counter has not moved for a lease duration *as measured by the
observing worker's own monotonic clock*: no clock is trusted across machines.

The decisions (which leases to create, take, delete; which shards may start)
are pure functions over what the table and the stream said; the I/O happens
in the coordinator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from replicator.checkpoint import Sentinel
from replicator.errors import ConditionFailedError, LeaseLostError

if TYPE_CHECKING:
    from replicator.protocols import LeaseStore
    from replicator.records import Shard


@dataclass(frozen=True, slots=True)
class Lease:
    """One row of the checkpoint table."""

    stream_arn: str
    shard_id: str
    parent_shard_id: str | None
    owner: str | None
    counter: int
    checkpoint: str

    @property
    def finished(self) -> bool:
        return self.checkpoint == Sentinel.SHARD_END


# -- pure decisions ------------------------------------------------------------


def plan_new_leases(
    stream_arn: str,
    shards: Iterable[Shard],
    leases: dict[str, Lease],
    initial_position: Sentinel,
) -> list[Lease]:
    """Lease rows to create for shards that have none.

    The initial position applies only the first time a stream is seen (no rows
    yet). After that every new shard is a descendant of one we track, so it is
    read from its TRIM_HORIZON: starting it at LATEST would skip its records.
    On a first start at LATEST, closed shards are marked SHARD_END (they lie
    before the starting point) and open ones start at LATEST.
    """
    first_start = not leases
    created = []
    for shard in shards:
        if shard.shard_id in leases:
            continue
        if not first_start or initial_position is Sentinel.TRIM_HORIZON:
            checkpoint = Sentinel.TRIM_HORIZON
        elif shard.closed:
            checkpoint = Sentinel.SHARD_END
        else:
            checkpoint = Sentinel.LATEST
        created.append(
            Lease(
                stream_arn=stream_arn,
                shard_id=shard.shard_id,
                parent_shard_id=shard.parent_shard_id,
                owner=None,
                counter=0,
                checkpoint=checkpoint,
            )
        )
    return created


def parent_done(shard_id: str, leases: dict[str, Lease], listed: set[str]) -> bool:
    """A child may start once its parent is read to its end, or is gone from the stream.

    A parent still listed blocks its child, even if its lease row is missing:
    reading the child first could overwrite a newer image with an older one.
    """
    lease = leases[shard_id]
    parent = lease.parent_shard_id
    if parent is None or parent not in listed:
        return True
    parent_lease = leases.get(parent)
    return parent_lease is not None and parent_lease.finished


def plan_deletions(leases: dict[str, Lease], listed: set[str]) -> list[Lease]:
    """Finished rows whose shard the stream no longer lists (trimmed after 24 hours).

    Only then is a row safe to remove: while the shard is listed, its row is what
    tells its children that it is finished.
    """
    return [
        lease for lease in leases.values() if lease.finished and lease.shard_id not in listed
    ]


class ExpiryClock:
    """Tells which other workers' leases have expired, by this worker's own clock.

    A lease is expired when its (owner, counter) pair has not changed for
    ``lease_duration`` seconds since this worker first saw it.
    """

    def __init__(self, lease_duration: float) -> None:
        self.lease_duration = lease_duration
        self._seen: dict[str, tuple[str | None, int, float]] = {}

    def observe(self, leases: Iterable[Lease], now: float) -> None:
        current = {}
        for lease in leases:
            previous = self._seen.get(lease.shard_id)
            if previous is not None and previous[:2] == (lease.owner, lease.counter):
                current[lease.shard_id] = previous
            else:
                current[lease.shard_id] = (lease.owner, lease.counter, now)
        self._seen = current

    def expired(self, lease: Lease, now: float) -> bool:
        seen = self._seen.get(lease.shard_id)
        if seen is None or seen[:2] != (lease.owner, lease.counter):
            return False
        return now - seen[2] >= self.lease_duration


def plan_takes(
    leases: Iterable[Lease],
    worker_id: str,
    clock: ExpiryClock,
    now: float,
    *,
    held: set[str],
) -> list[Lease]:
    """Leases this worker should take: unfinished ones that are free or expired.

    A row naming this worker that it does not hold (a restart under a fixed
    ``worker_id``) is taken back at once.
    """
    return [
        lease
        for lease in leases
        if not lease.finished
        and lease.shard_id not in held
        and (
            lease.owner is None
            or lease.owner == worker_id
            or clock.expired(lease, now)
        )
    ]


# -- I/O around a held lease ---------------------------------------------------


class HeldLease:
    """A lease this worker owns. Every write to its row goes through here, one at a time.

    Renewals and checkpoints both bump the counter, so they must not race each
    other inside one worker: a lock orders them. A failed condition means the
    lease was lost; ``lost`` is set and ``LeaseLostError`` raised.
    """

    def __init__(self, store: LeaseStore, lease: Lease) -> None:
        self._store = store
        self._lock = asyncio.Lock()
        self.lease = lease
        self.lost = False

    @property
    def shard_id(self) -> str:
        return self.lease.shard_id

    async def _update(self, *, new_owner: str | None, checkpoint: str | None) -> None:
        async with self._lock:
            if self.lost:
                raise LeaseLostError(f"lease on shard {self.shard_id} was lost")
            # A write cancelled in flight (a shard stopped at shutdown) may still reach
            # the table and bump the counter: let it finish (it has a timeout) so that
            # the next write, the final checkpoint and release, expects the right counter.
            write = asyncio.ensure_future(
                self._store.update_lease(self.lease, new_owner=new_owner, checkpoint=checkpoint)
            )
            try:
                self.lease = await asyncio.shield(write)
            except asyncio.CancelledError:
                await asyncio.wait([write])
                if not write.cancelled():
                    if write.exception() is None:
                        self.lease = write.result()
                    elif isinstance(write.exception(), ConditionFailedError):
                        self.lost = True
                raise
            except ConditionFailedError as exc:
                self.lost = True
                raise LeaseLostError(
                    f"lease on shard {self.shard_id} was taken by another worker"
                ) from exc

    async def renew(self) -> None:
        await self._update(new_owner=self.lease.owner, checkpoint=None)

    async def checkpoint(self, checkpoint: str) -> None:
        await self._update(new_owner=self.lease.owner, checkpoint=checkpoint)

    async def release(self, checkpoint: str | None = None) -> None:
        """Give the lease up (owner cleared) so another worker may take it at once."""
        await self._update(new_owner=None, checkpoint=checkpoint)
        self.lost = True

    def __repr__(self) -> str:
        return f"<HeldLease shard={self.shard_id} counter={self.lease.counter} lost={self.lost}>"
