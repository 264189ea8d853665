"""The clients and start-up checks of every path of a topology: each source table with
its stream, each destination table (created when so set)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from replicator.apply.fanout import FanOutWriter
from replicator.aws.clients import AwsClients
from replicator.aws.lease_store import DynamoLeaseStore
from replicator.aws.streams import DynamoStreamReader
from replicator.aws.table import DynamoTable
from replicator.clock import Clock
from replicator.commands import startup
from replicator.commands.endpoints import endpoint_for
from replicator.commands.tuning import copy_settings, write_window
from replicator.config import Settings
from replicator.copy.claims import copy_unfinished
from replicator.copy.positions import HandedOver
from replicator.copy.table_copy import TableCopy
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
            destinations.append(WiredDestination(
                destination, own, client,
                DynamoTable(client, destination.table, call_timeout=timeout)))
        wired.append(WiredSource(path.source, first, source, streams, prepared, destinations))
    return wired


def copy_of(wired: WiredSource, store: DynamoLeaseStore, *, stats: Stats, stop: asyncio.Event,
            clock: Clock, hand_off: bool) -> TableCopy:
    """The bootstrap copy of one source, into every destination at once."""
    settings = wired.settings
    tables = [destination.table for destination in wired.destinations]
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
                    starts: dict[str, str | None]) -> SourceStream:
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
            path=(wired.table, destination.name),
        )
        for destination in wired.destinations
    }
    return SourceStream(
        source=wired.table, stream_arn=wired.stream_arn, streams=wired.streams,
        pools=pools, copy_unfinished=unfinished, starts=starts,
        adopted={shard_id: (handed.lease, handed.iterator)
                 for shard_id, handed in handoff.items()},
    )
