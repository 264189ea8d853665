"""When another worker's lease has expired: its counter has stood still for a lease
duration, by this worker's monotonic clock."""

from __future__ import annotations

from collections.abc import Iterable

from replicator.lease import Lease, ShardKey


class LeaseExpiry:
    """Tells which other workers' leases have expired, by this worker's own clock.

    A lease is expired when its (owner, counter) pair has not changed for
    ``lease_duration`` seconds since this worker first saw it.
    """

    def __init__(self, lease_duration: float) -> None:
        self.lease_duration = lease_duration
        self._seen: dict[ShardKey, tuple[str | None, int, float]] = {}

    def observe(self, leases: Iterable[Lease], now: float) -> None:
        current = {}
        for lease in leases:
            previous = self._seen.get(lease.key)
            if previous is not None and previous[:2] == (lease.owner, lease.counter):
                current[lease.key] = previous
            else:
                current[lease.key] = (lease.owner, lease.counter, now)
        self._seen = current

    def expired(self, lease: Lease, now: float) -> bool:
        seen = self._seen.get(lease.key)
        if seen is None or seen[:2] != (lease.owner, lease.counter):
            return False
        return now - seen[2] >= self.lease_duration
