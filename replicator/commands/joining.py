"""The destinations of each source, as the task serves them: which are served, which
join the topology (copied on their own while the others stream), which were removed.
See ``replicator.copy.joins`` and docs/DESIGN.md ("Fan-out")."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import structlog

from replicator.aws.lease_store import DynamoLeaseStore
from replicator.aws.table import DynamoTable
from replicator.backoff import Backoff
from replicator.clock import Clock, wait_event
from replicator.commands.tuning import copy_settings
from replicator.commands.wiring import WiredDestination, WiredSource, copy_writer
from replicator.config import Settings
from replicator.copy.joins import READY, REMOVED, joined_since, mark, served
from replicator.copy.table_copy import TableCopy
from replicator.dead_letter import DeadLetterStore
from replicator.errors import ReplicatorError, StartupCheckError
from replicator.ops.heartbeat import live_workers
from replicator.stats import Stats
from replicator.stream.coordinator import ShardCoordinator

log = structlog.get_logger("replicator")

BACKOFF = Backoff(base=0.5, cap=10.0)


@dataclass(slots=True)
class Destinations:
    """A source's destinations at this start."""

    #: Where a destination starts on a row that does not name it (see
    #: ``SourceStream.starts``): None for those joining now.
    starts: dict[str, str | None] = field(default_factory=dict)
    joining: list[WiredDestination] = field(default_factory=list)


async def settle(store: DynamoLeaseStore, wired: WiredSource, *, copied: bool,
                 clock: Clock) -> Destinations:
    """Read (and, on a task's first start, write) which destinations the task serves."""
    arn = wired.stream_arn
    names = [destination.name for destination in wired.destinations]
    known = await served(store, arn, clock=clock)
    if not known and not copied and len(names) > 1 and await store.list_leases(arn):
        # A worker starting the task marks its destinations before its copy writes a
        # checkpoint, so rows read before this second look are marked by now, unless
        # they are a task of one path's.
        known = await served(store, arn, clock=clock)
        if not known:
            raise StartupCheckError(
                f"the checkpoint table {store.table} holds checkpoints of source table "
                f"{wired.table} that name no destination (a task of one path): start it "
                "first with the one destination it replicated into, then add the others "
                "to the topology file, which copies them")
    if not known:
        # The task's first start (its copy writes every destination), or a task of one
        # path, whose checkpoints are its one destination's.
        for name in names:
            await mark(store, arn, name, READY, clock=clock)
        return Destinations()
    result = Destinations()
    for name, value in known.items():
        if name not in names and value != REMOVED:
            await mark(store, arn, name, REMOVED, clock=clock)
            log.info("destination removed from the topology; its checkpoints go with the "
                     "next checkpoint of each shard", source=wired.table, destination=name)
    for destination in wired.destinations:
        state = known.get(destination.name)
        if state == READY:
            continue
        if state is not None and state != REMOVED:
            result.starts[destination.name] = state
            continue
        result.starts[destination.name] = None
        result.joining.append(destination)
    return result


@dataclass(slots=True)
class Join:
    """Copies a destination joining the topology (or waits for the worker that does),
    then streams to it."""

    wired: WiredSource
    destination: WiredDestination
    store: DynamoLeaseStore
    settings: Settings
    stats: Stats
    stop: asyncio.Event
    clock: Clock
    coordinator: ShardCoordinator
    dead_letters: DeadLetterStore | None = None

    @property
    def served_as(self) -> str:
        return f"{self.wired.table}/{self.destination.name}"

    async def run(self) -> None:
        """Join, resumed after a failed call; a failure that no retry mends stops the
        service, as a shard's would."""
        attempt = 0
        while not self.stop.is_set():
            try:
                await self._join()
                return
            except ReplicatorError as exc:
                if not exc.retriable:
                    self.coordinator.fail(exc)
                    return
                self.stats.count_retry(exc)
                attempt += 1
                log.warning("joining a destination was interrupted; resuming",
                            destination=self.destination.name, error=str(exc))
                await wait_event(self.clock, self.stop, BACKOFF.delay(attempt))

    async def _join(self) -> None:
        name, arn = self.destination.name, self.wired.stream_arn
        await self._every_worker_serves_it()
        if self.stop.is_set():
            return
        prepared = self.wired.prepared

        async def joined(second: int) -> None:
            await mark(self.store, arn, name, joined_since(second), clock=self.clock)

        copy = TableCopy(
            source=DynamoTable(self.wired.client, self.wired.table,
                               call_timeout=self.settings.call_timeout),
            destination=copy_writer(self.wired, self.destination, stats=self.stats,
                                    clock=self.clock, dead_letters=self.dead_letters),
            streams=self.wired.streams,
            store=self.store, stream_arn=arn,
            settings=copy_settings(self.settings, hand_off=False),
            stats=self.stats, stop=self.stop, clock=self.clock,
            table_items=int(prepared.source_table.get("ItemCount") or 0),
            table_bytes=int(prepared.source_table.get("TableSizeBytes") or 0),
            key_names=tuple(k["AttributeName"] for k in prepared.source_table["KeySchema"]),
            joining=name, on_joined=joined,
        )
        log.info("destination joins the topology; copying it", source=self.wired.table,
                 destination=name)
        if not await copy.run():
            return  # stopped: the copy resumes on the next start
        start = (await served(self.store, arn, clock=self.clock)).get(name)
        if start is None or start in (READY, REMOVED):
            log.warning("a joining destination's copy is done but the task does not say "
                        "since when; it starts on the next start", destination=name)
            return
        self.coordinator.destination_ready(arn, name, start)

    async def _every_worker_serves_it(self) -> None:
        """Until every live worker of the task serves the destination (a rolling restart
        with the new file is over): its lanes then hold every shard back from ending
        until the destination has its records, whoever reads the shard."""
        logged = False
        within = self.settings.lease_duration
        while not self.stop.is_set():
            rows = live_workers(await self.store.list_workers(), time.time(), within=within)
            behind = [row.worker_id for row in rows if self.served_as not in row.destinations]
            if rows and not behind:
                return
            if not logged:
                log.info("waiting for every worker to serve the new destination before "
                         "copying it", destination=self.destination.name, workers=behind)
                logged = True
            await wait_event(self.clock, self.stop, self.settings.coordinator_interval)
