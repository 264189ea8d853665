"""The clients and start-up checks of every path of a topology: each source table with
its stream, each destination table (created when so set)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from replicator.apply.fanout import FanOutWriter
from replicator.apply.ruled import RuledWriter
from replicator.aws.clients import AwsClients
from replicator.aws.dead_letters import DynamoDeadLetterStore
from replicator.aws.lease_store import DynamoLeaseStore
from replicator.aws.streams import DynamoStreamReader
from replicator.aws.table import DynamoTable
from replicator.aws.values import BotoValues
from replicator.clock import Clock
from replicator.commands import startup
from replicator.commands.endpoints import endpoint_for
from replicator.commands.tuning import copy_settings, write_window
from replicator.config import Settings
from replicator.copy.claims import copy_unfinished
from replicator.copy.positions import HandedOver
from replicator.copy.table_copy import TableCopy
from replicator.dead_letter import DeadLetterStore, dead_letter_table
from replicator.protocols import DestinationWriter
from replicator.rules.selection import OnPoison, Rules
from replicator.stats import Stats
from replicator.stream.coordinator import SourceStream
from replicator.stream.writer import WriterPool
from replicator.topology import Destination, Source, Topology

if TYPE_CHECKING:
    from replicator.aws.clients import DynamoDBClient

log = structlog.get_logger("replicator")


@dataclass(frozen=True, slots=True)
class WiredDestination:
    destination: Destination
    #: The service's settings for this source and destination.
    settings: Settings
    client: DynamoDBClient
    table: DynamoTable
    #: What the destination takes of its source, and in what form.
    rules: Rules

    @property
    def name(self) -> str:
        return self.destination.name


@dataclass(frozen=True, slots=True)
class WiredSource:
    source: Source
    #: The service's settings for this source (and its first destination).
    settings: Settings
    client: DynamoDBClient
    streams: DynamoStreamReader
    prepared: startup.Prepared
    destinations: list[WiredDestination]

    @property
    def stream_arn(self) -> str:
        return self.prepared.stream_arn

    @property
    def table(self) -> str:
        return self.source.table

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(key["AttributeName"] for key in self.prepared.source_table["KeySchema"])


async def wire(topology: Topology, settings: Settings, clients: AwsClients, *,
               clock: Clock) -> list[WiredSource]:
    """Open the clients of every path and run its start-up checks (a destination set to
    be created is created here)."""
    timeout = settings.call_timeout
    wired = []
    for path in topology.path:
        first = topology.for_path(settings, path.source, path.destination[0])
        source = await clients.dynamodb(endpoint_for(first, "source"), call_timeout=timeout)
        streams = DynamoStreamReader(
            await clients.streams(endpoint_for(first, "streams"), call_timeout=timeout),
            call_timeout=timeout)
        prepared = await startup.check_source(first, source=source, streams=streams,
                                              clock=clock)
        destinations = []
        for destination in path.destination:
            own = topology.for_path(settings, path.source, destination)
            client = await clients.dynamodb(
                endpoint_for(own, "destination"), call_timeout=timeout,
                max_connections=max(own.writers, own.copy_writers) + 2,
            )
            await startup.check_destination(own, source=source, destination=client,
                                            source_table=prepared.source_table, create=True,
                                            clock=clock)
            startup.check_rules(destination, prepared)
            destinations.append(WiredDestination(
                destination, own, client,
                DynamoTable(client, destination.table, call_timeout=timeout),
                destination.rules(BotoValues())))
        # Old images are kept only for the rules that read them: half of what a
        # record of a NEW_AND_OLD_IMAGES stream holds.
        streams.old_images = any(wired_destination.rules.reads_old_images
                                 for wired_destination in destinations)
        wired.append(WiredSource(path.source, first, source, streams, prepared, destinations))
    return wired


async def dead_letter_store(sources: list[WiredSource], checkpoints: DynamoDBClient,
                            settings: Settings, stats: Stats) -> DeadLetterStore | None:
    """The task's dead-letter table (beside its checkpoint table), when a destination
    stores its poison records; its size is counted for the gauge."""
    if not any(destination.rules.on_poison is OnPoison.DEAD_LETTER
               for wired in sources for destination in wired.destinations):
        return None
    store = DynamoDeadLetterStore(checkpoints, dead_letter_table(str(settings.task_name)),
                                  call_timeout=settings.call_timeout)
    stats.dead_letters_stored = await store.count()
    return store


def copy_writer(wired: WiredSource, destination: WiredDestination, *, stats: Stats,
                clock: Clock, dead_letters: DeadLetterStore | None) -> DestinationWriter:
    """Where the copy writes one destination: its table, through its rules if it has any."""
    if not destination.rules.selective:
        return destination.table
    return RuledWriter(destination.table, destination.rules, key_names=wired.key_names,
                       stats=stats, clock=clock, path=(wired.table, destination.name),
                       dead_letters=dead_letters)


def copy_of(wired: WiredSource, store: DynamoLeaseStore, *, stats: Stats, stop: asyncio.Event,
            clock: Clock, hand_off: bool, dead_letters: DeadLetterStore | None) -> TableCopy:
    """The bootstrap copy of one source, into every destination at once."""
    settings = wired.settings
    tables = [copy_writer(wired, destination, stats=stats, clock=clock,
                          dead_letters=dead_letters)
              for destination in wired.destinations]
    prepared = wired.prepared
    return TableCopy(
        source=DynamoTable(wired.client, wired.table, call_timeout=settings.call_timeout),
        destination=tables[0] if len(tables) == 1 else FanOutWriter(tables),
        streams=wired.streams, store=store, stream_arn=wired.stream_arn,
        settings=copy_settings(settings, hand_off=hand_off),
        stats=stats, stop=stop, clock=clock,
        table_items=int(prepared.source_table.get("ItemCount") or 0),
        table_bytes=int(prepared.source_table.get("TableSizeBytes") or 0),
        key_names=tuple(k["AttributeName"] for k in prepared.source_table["KeySchema"]),
    )


async def stream_of(wired: WiredSource, store: DynamoLeaseStore, settings: Settings, *,
                    mode: str, stats: Stats, clock: Clock,
                    handoff: Mapping[str, HandedOver],
                    starts: dict[str, str | None],
                    dead_letters: DeadLetterStore | None) -> SourceStream:
    """A source's stream for the coordinator, with a writer pool per destination."""
    # A copy that never finished left starts that hold only with it; a worker that
    # does not copy starts those shards where it starts shards without checkpoints.
    unfinished = mode == "never" and await copy_unfinished(store, wired.stream_arn,
                                                           clock=clock)
    if unfinished:
        log.warning("a bootstrap copy of the source table never finished; with bootstrap "
                    "never, its shards start at the initial position",
                    source=wired.table, initial_position=settings.initial_sentinel.value)
    pools = {
        destination.name: WriterPool(
            destination.table, writers=settings.writers, queue_size=settings.queue_size,
            stats=stats, write_window=write_window(settings), clock=clock,
            path=(wired.table, destination.name), rules=destination.rules,
            dead_letters=dead_letters, max_wcu=destination.destination.max_wcu,
        )
        for destination in wired.destinations
    }
    return SourceStream(
        source=wired.table, stream_arn=wired.stream_arn, streams=wired.streams,
        pools=pools, copy_unfinished=unfinished, starts=starts,
        adopted={shard_id: (handed.lease, handed.iterator)
                 for shard_id, handed in handoff.items()},
    )
