"""The write fence of a held lease: until when this worker may write, by its own clock.
See docs/DESIGN.md ("Fencing")."""

from __future__ import annotations

import asyncio


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
