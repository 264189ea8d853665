"""A lease this worker holds: conditional renew, checkpoint and release, a write whose
answer was lost, and the fence that stops writes once the lease may be gone."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping

from replicator.clock import Clock
from replicator.errors import ConditionFailedError, LeaseLostError, ReplicatorError
from replicator.lease import Lease
from replicator.leases.fence import LeaseFence
from replicator.protocols import LeaseStore


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

    async def _update(self, *, new_owner: str | None, checkpoint: str | None,
                      checkpoints: Mapping[str, str] | None = None) -> None:
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
                    self.lease, new_owner=new_owner, checkpoint=checkpoint,
                    checkpoints=checkpoints,
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

    async def checkpoint(self, checkpoint: str,
                         checkpoints: Mapping[str, str] | None = None) -> None:
        """Move the checkpoint (and, given them, the destinations' checkpoints)."""
        await self._update(new_owner=self.lease.owner, checkpoint=checkpoint,
                           checkpoints=checkpoints)

    async def release(self, checkpoint: str | None = None,
                      checkpoints: Mapping[str, str] | None = None) -> None:
        """Give the lease up (owner cleared) so another worker may take it at once."""
        await self._update(new_owner=None, checkpoint=checkpoint, checkpoints=checkpoints)
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
