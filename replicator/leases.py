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
import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from replicator.checkpoint import LeaseFence, Sentinel, is_sentinel
from replicator.clock import Clock
from replicator.errors import ConditionFailedError, LeaseLostError, ReplicatorError

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

    def after_update(self, *, new_owner: str | None, checkpoint: str | None) -> Lease:
        """The row as a successful conditional update leaves it: owner set, counter
        bumped, checkpoint moved when one is given."""
        return replace(
            self,
            owner=new_owner,
            counter=self.counter + 1,
            checkpoint=checkpoint if checkpoint is not None else self.checkpoint,
        )


# -- pure decisions ------------------------------------------------------------


def progressed(lease: Lease) -> bool:
    """Whether the shard has been read: its checkpoint is a sequence number or SHARD_END."""
    return not is_sentinel(lease.checkpoint) or lease.finished


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
    before the starting point) and open ones start at LATEST. A shard whose
    child has already been read is finished, and its row was deleted on
    purpose (``plan_deletions``): it is not created again. Nor is one whose
    child's row was deleted in turn, once a grandchild was read: a stream
    lists a whole lineage (a shard rolls over every few hours, kept 24 hours),
    and the deletions climb down it.
    """
    shards = list(shards)
    first_start = not leases
    read_parents = {
        lease.parent_shard_id for lease in leases.values()
        if lease.parent_shard_id is not None and progressed(lease)
    }
    children: dict[str, list[str]] = {}
    for shard in shards:
        if shard.parent_shard_id is not None:
            children.setdefault(shard.parent_shard_id, []).append(shard.shard_id)

    def read(shard_id: str) -> bool:
        """Whether the shard was read: its row progressed, or it is gone and a child was read."""
        lease = leases.get(shard_id)
        if lease is not None:
            return progressed(lease)
        return any(read(kid) for kid in children.get(shard_id, ()))

    created = []
    for shard in shards:
        if (
            shard.shard_id in leases
            or shard.shard_id in read_parents
            or any(read(kid) for kid in children.get(shard.shard_id, ()))
        ):
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
    A child that has been read before (a checkpoint past its start) started
    with its parent done, whoever read it then.
    """
    lease = leases[shard_id]
    parent = lease.parent_shard_id
    if parent is None or parent not in listed or progressed(lease):
        return True
    parent_lease = leases.get(parent)
    return parent_lease is not None and parent_lease.finished


def plan_deletions(leases: dict[str, Lease], shards: Iterable[Shard]) -> list[Lease]:
    """Finished rows that no worker needs any more.

    A finished row tells its children that they may start, so it stays until
    every child the stream lists has a row that has been read (a checkpoint
    past its start), or until the stream no longer lists the shard (trimmed
    after 24 hours).
    """
    children: dict[str, list[str]] = {}
    listed = set()
    for shard in shards:
        listed.add(shard.shard_id)
        if shard.parent_shard_id is not None:
            children.setdefault(shard.parent_shard_id, []).append(shard.shard_id)
    deletions = []
    for lease in leases.values():
        if not lease.finished:
            continue
        kids = children.get(lease.shard_id, [])
        if lease.shard_id not in listed or (
            kids and all(kid in leases and progressed(leases[kid]) for kid in kids)
        ):
            deletions.append(lease)
    return deletions


class LeaseExpiry:
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


@dataclass(frozen=True, slots=True)
class Share:
    """How the active (unfinished) leases divide among the live workers.

    Live workers are counted from the table: the owners of unexpired active
    leases, and this worker. ``target`` is the fair share, ceil(active / workers).
    """

    active: list[Lease]
    #: Unexpired active leases per other live worker.
    others: dict[str, list[Lease]]
    #: Active leases this worker could take without stealing: free, expired, or
    #: naming this worker without it holding them.
    available: list[Lease]
    mine: int
    target: int


def share_of(
    leases: Iterable[Lease], worker_id: str, expiry: LeaseExpiry, now: float, *, held: set[str]
) -> Share:
    active = [lease for lease in leases if not lease.finished]
    others: dict[str, list[Lease]] = {}
    available = []
    for lease in active:
        if lease.shard_id in held:
            continue
        if lease.owner is None or lease.owner == worker_id or expiry.expired(lease, now):
            available.append(lease)
        else:
            others.setdefault(lease.owner, []).append(lease)
    mine = sum(1 for lease in active if lease.shard_id in held)
    target = math.ceil(len(active) / (len(others) + 1)) if active else 0
    # Own rows first (taken back at once), then an order of this worker's own, so
    # that workers starting together reach for different leases.
    available.sort(key=lambda lease: (lease.owner != worker_id, _spread(worker_id, lease)))
    return Share(active=active, others=others, available=available, mine=mine, target=target)


def _spread(worker_id: str, lease: Lease) -> int:
    """An order of the leases of this worker's own, stable across cycles."""
    return zlib.crc32(f"{worker_id}/{lease.shard_id}".encode())


def plan_takes(
    leases: Iterable[Lease],
    worker_id: str,
    expiry: LeaseExpiry,
    now: float,
    *,
    held: set[str],
) -> list[Lease]:
    """Leases this worker should take: free or expired ones, up to its fair share.

    A row naming this worker that it does not hold (a restart under a fixed
    ``worker_id``, or a shard it stopped when its lease was about to expire) is
    taken back first.
    """
    share = share_of(leases, worker_id, expiry, now, held=held)
    return share.available[: max(0, share.target - share.mine)]


def plan_steal(
    leases: Iterable[Lease],
    worker_id: str,
    expiry: LeaseExpiry,
    now: float,
    *,
    held: set[str],
) -> Lease | None:
    """One lease to take from the most loaded worker, when this one is below its share.

    Only when nothing is free or expired. The victim must hold more than the fair
    share, or exactly the share while this worker is more than one below it: so
    leases settle within one of the fair share and never swing back and forth.
    Ties between the most loaded workers go to the smallest worker id.
    """
    share = share_of(leases, worker_id, expiry, now, held=held)
    if share.available or share.mine >= share.target or not share.others:
        return None
    _, victim_leases = min(
        share.others.items(), key=lambda item: (-len(item[1]), item[0])
    )
    count = len(victim_leases)
    if count > share.target or (count == share.target and share.mine < share.target - 1):
        # Each thief prefers another lease of the victim's, so that workers joining
        # together do not all reach for the same one.
        return min(victim_leases, key=lambda lease: _spread(worker_id, lease))
    return None


# -- I/O around a held lease ---------------------------------------------------


class HeldLease:
    """A lease this worker owns. Every write to its row goes through here, one at a time.

    Renewals and checkpoints both bump the counter, so they must not race each
    other inside one worker: a lock orders them. A failed condition means the
    lease was lost; ``lost`` is set and ``LeaseLostError`` raised. Each
    successful write renews the ``fence`` that lets writers apply this shard's
    records; losing or releasing the lease revokes it. A stolen lease may be
    read only from ``start_after``: its previous owner's fence has closed by then.
    """

    def __init__(
        self,
        store: LeaseStore,
        lease: Lease,
        *,
        clock: Clock,
        lease_duration: float = math.inf,
        sent_at: float | None = None,
        start_after: float = -math.inf,
    ) -> None:
        self._store = store
        self._clock = clock
        self._lock = asyncio.Lock()
        self.lease = lease
        self.lost = False
        self.released = False
        #: The last write failed in a way that may hide its success (see ``_update``).
        self._uncertain = False
        self.start_after = start_after
        self.fence = LeaseFence(
            lease_duration, clock.monotonic() if sent_at is None else sent_at
        )

    @property
    def shard_id(self) -> str:
        return self.lease.shard_id

    async def _update(self, *, new_owner: str | None, checkpoint: str | None) -> None:
        async with self._lock:
            if self.lost:
                raise LeaseLostError(f"lease on shard {self.shard_id} was lost")
            while True:
                sent_at = self._clock.monotonic()
                # A write cancelled in flight (a shard stopped at shutdown) may still reach
                # the table and bump the counter: let it finish (it has a timeout) so that
                # the next write, the final checkpoint and release, expects the right
                # counter.
                write = asyncio.ensure_future(self._store.update_lease(
                    self.lease, new_owner=new_owner, checkpoint=checkpoint
                ))
                try:
                    self.lease = await asyncio.shield(write)
                except asyncio.CancelledError:
                    await asyncio.wait([write])
                    if not write.cancelled():
                        if write.exception() is None:
                            self.lease = write.result()
                            self.fence.renewed(sent_at)
                        elif isinstance(write.exception(), ConditionFailedError):
                            self._lose()
                    raise
                except ConditionFailedError as exc:
                    if self._uncertain and await self._adopt_lost_write():
                        continue  # the row holds our own earlier write: write again
                    self._lose()
                    raise LeaseLostError(
                        f"lease on shard {self.shard_id} was taken by another worker"
                    ) from exc
                except ReplicatorError as exc:
                    # A timeout, a dropped connection or a 5xx may hide a write that
                    # reached the table and moved the counter.
                    self._uncertain = self._uncertain or exc.retriable
                    raise
                self._uncertain = False
                self.fence.renewed(sent_at)
                return

    async def _adopt_lost_write(self) -> bool:
        """After a write whose answer was lost, a failed condition may be that write's
        doing: the row then has this owner and the counter one further. No other
        worker writes this owner into the row, so it is still ours; anything else is
        a lost lease."""
        rows = await self._store.list_leases(self.lease.stream_arn)
        self._uncertain = False
        row = next((row for row in rows if row.shard_id == self.shard_id), None)
        if row is None or row.owner != self.lease.owner or row.counter != self.lease.counter + 1:
            return False
        self.lease = row
        return True

    def _lose(self) -> None:
        self.lost = True
        self.fence.revoke()

    async def renew(self) -> None:
        if self.released:
            return
        try:
            await self._update(new_owner=self.lease.owner, checkpoint=None)
        except LeaseLostError:
            if self.released:  # it waited behind the release: nothing to renew
                return
            raise

    async def checkpoint(self, checkpoint: str) -> None:
        await self._update(new_owner=self.lease.owner, checkpoint=checkpoint)

    async def release(self, checkpoint: str | None = None) -> None:
        """Give the lease up (owner cleared) so another worker may take it at once."""
        await self._update(new_owner=None, checkpoint=checkpoint)
        self.released = True
        self._lose()

    def abandon(self) -> None:
        """Stop using the lease without a write (its fence closed, or it was lost)."""
        self._lose()

    def __repr__(self) -> str:
        return (
            f"<HeldLease shard={self.shard_id} counter={self.lease.counter} "
            f"lost={self.lost} {self.fence!r}>"
        )
