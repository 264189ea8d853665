"""Shard lineage as pure decisions: the rows to create for new shards, which shards may
start (parents first), which finished rows to delete. See docs/DESIGN.md."""

from __future__ import annotations

from collections.abc import Iterable

from replicator.checkpoint import Sentinel, is_sentinel
from replicator.lease import Lease
from replicator.records import Shard


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
