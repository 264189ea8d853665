"""Lease balancing as pure decisions: each worker's fair share, which expired leases
to take, which lease to steal from a worker over its share.

The design is the Kinesis Client Library's; see docs/DESIGN.md ("Balancing").
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from replicator.lease import Lease, ShardKey
from replicator.leases.expiry import LeaseExpiry

if TYPE_CHECKING:
    pass


# -- pure decisions ------------------------------------------------------------


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
    leases: Iterable[Lease], worker_id: str, expiry: LeaseExpiry, now: float, *, held: set[ShardKey]
) -> Share:
    active = [lease for lease in leases if not lease.finished]
    others: dict[str, list[Lease]] = {}
    available = []
    for lease in active:
        if lease.key in held:
            continue
        if lease.owner is None or lease.owner == worker_id or expiry.expired(lease, now):
            available.append(lease)
        else:
            others.setdefault(lease.owner, []).append(lease)
    mine = sum(1 for lease in active if lease.key in held)
    target = math.ceil(len(active) / (len(others) + 1)) if active else 0
    # Own rows first (taken back at once), then an order of this worker's own, so
    # that workers starting together reach for different leases.
    available.sort(key=lambda lease: (lease.owner != worker_id, _spread(worker_id, lease)))
    return Share(active=active, others=others, available=available, mine=mine, target=target)


def _spread(worker_id: str, lease: Lease) -> int:
    """An order of the leases of this worker's own, stable across cycles."""
    return zlib.crc32(f"{worker_id}/{lease.stream_arn}/{lease.shard_id}".encode())


def plan_takes(
    leases: Iterable[Lease],
    worker_id: str,
    expiry: LeaseExpiry,
    now: float,
    *,
    held: set[ShardKey],
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
    held: set[ShardKey],
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


