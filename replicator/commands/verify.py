"""``replicator verify``: compare each destination with its source, ``--repair`` what
differs."""

from __future__ import annotations

import functools

import structlog

from replicator.aws.clients import AwsClients
from replicator.aws.table import DynamoTable, describe_table
from replicator.aws.values import BotoValues
from replicator.clock import SYSTEM_CLOCK
from replicator.commands.endpoints import endpoint_for
from replicator.commands.interrupt import until_signalled
from replicator.commands.settings import topology_of
from replicator.commands.startup import call_checked
from replicator.config import Settings
from replicator.copy.verify import TABLES_DIFFER, Verifier, key_names_of, segments_for
from replicator.errors import StartupCheckError
from replicator.ops.status import write_out
from replicator.rules.selection import Rules
from replicator.topology import SINGLE_DESTINATION


async def run_verify(settings: Settings, *, repair: bool, destination: str | None = None
                     ) -> int:
    """``replicator verify``: print the comparison of every destination (or of the one
    named ``destination``) with its source; exit 0 only when every pair is equal,
    ``TABLES_DIFFER`` when one is not."""
    structlog.contextvars.bind_contextvars(task=settings.task_name, worker_id=settings.worker_id)
    return await until_signalled(_verify(settings, repair=repair, destination=destination),
                                 command="verify")


async def _verify(settings: Settings, *, repair: bool, destination: str | None) -> int:
    topology = topology_of(settings)
    pairs = topology.chosen(destination)
    differ = 0
    async with AwsClients() as clients:
        for source, target in pairs:
            own = topology.for_path(settings, source, target)
            if target.name != SINGLE_DESTINATION or len(topology.destinations()) > 1:
                write_out(f"{source.table} -> {target.name} ({target.table} in "
                          f"{target.endpoint or target.region}):")
            with structlog.contextvars.bound_contextvars(source=source.table,
                                                         destination=target.name):
                equal = await _verify_path(own, clients, repair=repair,
                                           rules=target.rules(BotoValues()))
            differ += not equal
    if len(pairs) > 1:
        write_out(f"{len(pairs) - differ} of {len(pairs)} destinations equal to their source"
                  if differ else f"all {len(pairs)} destinations equal to their source")
    return TABLES_DIFFER if differ else 0


async def _verify_path(settings: Settings, clients: AwsClients, *, repair: bool,
                       rules: Rules) -> bool:
    """Compare (and with ``repair`` mend) one destination; print the report."""
    timeout = settings.call_timeout
    sides = []
    for name, table, region, endpoint, setting in (
        ("source", settings.source_table, settings.source_region,
         settings.source_endpoint, "REPLICATOR_SOURCE_ENDPOINT"),
        ("destination", settings.destination_table, settings.destination_region,
         settings.destination_endpoint, "REPLICATOR_DESTINATION_ENDPOINT"),
    ):
        client = await clients.dynamodb(endpoint_for(settings, name),
                                        call_timeout=timeout, max_connections=32)
        description = await call_checked(
            functools.partial(describe_table, client, table, call_timeout=timeout),
            what=f"{name} table {table}",
            setting=setting if not settings.config else f"the {name}'s endpoint in "
            f"{settings.config}", endpoint=endpoint, region=region,
            clock=SYSTEM_CLOCK,
        )
        if description is None:
            raise StartupCheckError(
                f"{name} table {table} does not exist in region {region}: check "
                f"REPLICATOR_{name.upper()}_TABLE and REPLICATOR_{name.upper()}_REGION"
                if not settings.config else
                f"{name} table {table} does not exist in region {region}: check "
                f"{settings.config}"
            )
        sides.append((DynamoTable(client, table, call_timeout=timeout), description))
    (source, source_description), (destination, _) = sides
    verifier = Verifier(
        source, destination, key_names_of(source_description),
        segments=settings.copy_segments or segments_for(source_description),
        concurrency=settings.copy_concurrency, clock=SYSTEM_CLOCK,
        call_timeout=settings.call_timeout, rules=rules,
    )
    diff = await verifier.verify(repair=repair)
    write_out("\n".join(diff.report()))
    return diff.equal
