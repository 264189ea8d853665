"""``replicator check``: validate a topology file, then every table and endpoint it
names, without replicating."""

from __future__ import annotations

import structlog

from replicator.aws.clients import AwsClients
from replicator.aws.streams import DynamoStreamReader
from replicator.aws.table import describe_table
from replicator.clock import SYSTEM_CLOCK
from replicator.commands.endpoints import endpoint_for
from replicator.commands.interrupt import until_signalled
from replicator.commands.settings import load_topology
from replicator.commands.startup import (
    call_checked,
    check_destination,
    check_rules,
    check_source,
)
from replicator.ops.status import write_out
from replicator.topology import Source

log = structlog.get_logger("replicator.check")


async def run_check(config: str) -> int:
    """Check the topology in ``config`` and print its paths (exit 0); a ``ConfigError``
    or ``StartupCheckError`` (exit 2) names the first problem."""
    return await until_signalled(_check(config), command="check")


async def _check(config: str) -> int:
    topology = load_topology(config, setting="--config")
    pairs = topology.destinations()
    lines = [f"task {topology.task}: {len(topology.path)} source table"
             f"{'s' if len(topology.path) != 1 else ''}, {len(pairs)} destination"
             f"{'s' if len(pairs) != 1 else ''}"]
    async with AwsClients() as clients:
        for path in topology.path:
            for index, destination in enumerate(path.destination):
                settings = topology.settings_for(path.source, destination)
                timeout = settings.call_timeout
                source = await clients.dynamodb(endpoint_for(settings, "source"),
                                                call_timeout=timeout)
                if index == 0:
                    streams = DynamoStreamReader(await clients.streams(
                        endpoint_for(settings, "streams"), call_timeout=timeout),
                        call_timeout=timeout)
                    prepared = await check_source(settings, source=source, streams=streams,
                                                  clock=SYSTEM_CLOCK)
                    lines.append(f"  {_where(path.source)}: stream {prepared.view_type}")
                written = await clients.dynamodb(endpoint_for(settings, "destination"),
                                                 call_timeout=timeout)
                found = await check_destination(
                    settings, source=source, destination=written,
                    source_table=prepared.source_table, create=False, clock=SYSTEM_CLOCK)
                check_rules(destination, prepared)
                state = "ok" if found is not None else "created on the first start"
                lines.append(f"    -> {destination.name}: {destination.table} in "
                             f"{destination.endpoint or destination.region}: {state}")
        settings = topology.settings_for(*pairs[0])
        checkpoints = await clients.dynamodb(endpoint_for(settings, "checkpoint"),
                                             call_timeout=settings.call_timeout)
        table = await call_checked(
            lambda: describe_table(checkpoints, topology.task,
                                   call_timeout=settings.call_timeout),
            what=f"checkpoint table {topology.task}", setting="the topology's [checkpoint]",
            endpoint=settings.checkpoint_endpoint, region=settings.checkpoint_region,
            clock=SYSTEM_CLOCK)
    lines.append(f"  checkpoint table {topology.task} in "
                 f"{settings.checkpoint_endpoint or settings.checkpoint_region}: "
                 f"{'ok' if table is not None else 'created on the first start'}")
    write_out("\n".join(lines))
    return 0


def _where(source: Source) -> str:
    return f"{source.table} in {source.endpoint or source.region}"
