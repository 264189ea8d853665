"""Which destinations of a source the task serves: rows under the key
``destinations|<stream ARN>``, one per destination name, in the checkpoint table.

- ``READY``: served since the task began (its first copy, or a task of one path that
  ran before topologies): a shard's row that does not name it holds its checkpoint in
  ``checkpoint``.
- ``SINCE:<second>``: added to a running topology and copied, by a copy that began at
  that second: a shard's row that does not name it starts it there (``SINCE:``).
- ``REMOVED``: taken out of the topology; added again, it is copied again.

A destination with no row, or a removed one, joins the topology: it is copied on its
own while the stream is read for the others. See docs/DESIGN.md ("Fan-out").
"""

from __future__ import annotations

import functools

from replicator.backoff import Backoff, retry_forever
from replicator.checkpoint import since
from replicator.clock import Clock
from replicator.errors import ConditionFailedError
from replicator.lease import Lease
from replicator.protocols import LeaseStore

JOINS_PREFIX = "destinations|"
READY = "READY"
REMOVED = "REMOVED"


def joins_key(stream_arn: str) -> str:
    return JOINS_PREFIX + stream_arn


async def served(store: LeaseStore, stream_arn: str, *, clock: Clock) -> dict[str, str]:
    """The destinations the task serves or served, by name: READY, SINCE:... or REMOVED."""
    rows = await retry_forever(lambda: store.list_leases(joins_key(stream_arn)),
                               what="Query", backoff=Backoff(), clock=clock)
    return {row.shard_id: row.checkpoint for row in rows}


async def mark(store: LeaseStore, stream_arn: str, destination: str, value: str, *,
               clock: Clock) -> None:
    """Set a destination's row to ``value`` (READY, a ``since`` start or REMOVED)."""
    key = joins_key(stream_arn)
    while True:
        rows = {row.shard_id: row for row in await retry_forever(
            lambda: store.list_leases(key), what="Query", backoff=Backoff(), clock=clock)}
        row = rows.get(destination)
        try:
            if row is None:
                created = Lease(key, destination, None, None, 0, value)
                if await retry_forever(functools.partial(store.create_lease, created),
                                       what="PutItem", backoff=Backoff(), clock=clock):
                    return
                continue
            if row.checkpoint == value:
                return
            await retry_forever(
                functools.partial(store.update_lease, row, new_owner=None, checkpoint=value),
                what="UpdateItem", backoff=Backoff(), clock=clock)
            return
        except ConditionFailedError:
            continue  # another worker wrote it meanwhile: read it again


def joined_since(second: int) -> str:
    """The value of a destination copied by a copy that began at ``second``."""
    return since(second)


def is_served(value: str | None) -> bool:
    return value is not None and value != REMOVED
