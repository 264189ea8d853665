"""Each worker's row in the checkpoint table: who works on the task, doing what, where.

A worker writes its own row every heartbeat interval (its phase, the leases it
holds, its metrics address) and deletes it when it stops. ``replicator status``
lists the rows whose heartbeat is recent, so a standby worker (no lease) shows
as live and a dead one drops out. Rows are keyed ``workers`` / worker id, apart
from the shards' leases; writing one's own row needs no condition, as no other
worker writes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from replicator.clock import Clock, wait_event
from replicator.errors import ReplicatorError
from replicator.lease import WorkerRow

log = structlog.get_logger("replicator.heartbeat")


class WorkerRegistry(Protocol):
    """The workers' rows (``DynamoLeaseStore`` keeps them in the checkpoint table)."""

    async def put_worker(self, row: WorkerRow) -> None: ...

    async def list_workers(self) -> list[WorkerRow]: ...

    async def delete_worker(self, worker_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class WorkerState:
    phase: str
    leases: int
    metrics: str | None
    #: The destinations the worker serves (``<source table>/<destination name>``).
    destinations: tuple[str, ...] = ()


class Heartbeat:
    """Writes this worker's row every ``interval`` seconds until cancelled, and at once
    when ``changed`` says the worker's state changed (its phase)."""

    def __init__(self, registry: WorkerRegistry, *, worker_id: str, host: str, pid: int,
                 interval: float, clock: Clock, state: Callable[[], WorkerState],
                 wall: Callable[[], float] = time.time) -> None:
        self._registry = registry
        self._worker_id = worker_id
        self._host = host
        self._pid = pid
        self._interval = interval
        self._clock = clock
        self._state = state
        self._wall = wall
        self._started_at = wall()
        self._changed = asyncio.Event()
        self.beats = 0

    def changed(self) -> None:
        """Write the row again now: the worker's phase changed."""
        self._changed.set()

    def row(self) -> WorkerRow:
        state = self._state()
        return WorkerRow(self._worker_id, self._host, self._pid, state.phase, state.leases,
                         state.metrics, self._started_at, self._wall(),
                         destinations=state.destinations)

    async def beat(self) -> None:
        try:
            await self._registry.put_worker(self.row())
        except ReplicatorError as exc:  # status shows the worker late; nothing else needs it
            log.warning("worker heartbeat not written", error=str(exc))
            return
        self.beats += 1

    async def run(self) -> None:
        while True:
            self._changed.clear()
            await self.beat()
            await wait_event(self._clock, self._changed, self._interval)

    async def leave(self) -> None:
        """Delete this worker's row (a stopping worker is no longer part of the task)."""
        try:
            await self._registry.delete_worker(self._worker_id)
        except ReplicatorError as exc:
            log.warning("worker row not deleted; it ages out of status", error=str(exc))


def live_workers(rows: list[WorkerRow], now: float, *, within: float) -> list[WorkerRow]:
    """The rows whose heartbeat is at most ``within`` seconds old by ``now``."""
    return [row for row in rows if now - row.heartbeat_at <= within]
