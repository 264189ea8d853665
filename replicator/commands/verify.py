"""``replicator verify``: compare the two tables, ``--repair`` what differs."""

from __future__ import annotations

import functools

import structlog

from replicator.aws.table import DynamoTable
from replicator.clock import SYSTEM_CLOCK
from replicator.commands.interrupt import until_signalled
from replicator.config import Settings
from replicator.copy.verify import TABLES_DIFFER, Verifier, key_names_of, segments_for
from replicator.errors import StartupCheckError


async def run_verify(settings: Settings, *, repair: bool) -> int:
    """``replicator verify``: print the comparison; exit 0 only when the tables are equal,
    ``TABLES_DIFFER`` when they are not."""
    structlog.contextvars.bind_contextvars(task=settings.task_name, worker_id=settings.worker_id)
    return await until_signalled(_verify(settings, repair=repair), command="verify")


async def _verify(settings: Settings, *, repair: bool) -> int:
    from replicator.aws.clients import AwsClients
    from replicator.aws.table import describe_table
    from replicator.commands.endpoints import endpoint_for
    from replicator.commands.startup import call_checked

    timeout = settings.call_timeout
    async with AwsClients() as clients:
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
                what=f"{name} table {table}", setting=setting, endpoint=endpoint, region=region,
                clock=SYSTEM_CLOCK,
            )
            if description is None:
                raise StartupCheckError(
                    f"{name} table {table} does not exist in region {region}: check "
                    f"REPLICATOR_{name.upper()}_TABLE and REPLICATOR_{name.upper()}_REGION"
                )
            sides.append((DynamoTable(client, table, call_timeout=timeout), description))
        (source, source_description), (destination, _) = sides
        verifier = Verifier(
            source, destination, key_names_of(source_description),
            segments=settings.copy_segments or segments_for(source_description),
            concurrency=settings.copy_concurrency, clock=SYSTEM_CLOCK,
            call_timeout=settings.call_timeout,
        )
        diff = await verifier.verify(repair=repair)
    for line in diff.report():
        print(line)
    return 0 if diff.equal else TABLES_DIFFER
