"""Start-up checks: everything a user can get wrong is found here, before replicating.

Each failed check raises ``StartupCheckError`` with one line that names the
problem, the setting or fact behind it, and the fix.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from replicator.aws.lease_store import DynamoLeaseStore
from replicator.aws.schema import create_like, missing_indexes, time_to_live_attribute
from replicator.aws.streams import DynamoStreamReader
from replicator.aws.table import describe_table
from replicator.backoff import Backoff
from replicator.clock import Clock
from replicator.config import Settings
from replicator.errors import (
    AccessDeniedError,
    AwsError,
    EndpointUnreachableError,
    StartupCheckError,
    TransientError,
)
from replicator.topology import Destination

T = TypeVar("T")
REPLICABLE_VIEWS = ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")
#: A start-up call that is throttled, meets a server error or loses its connection
#: is tried this many times (about 4 s of backoff at most) before the check fails.
#: An endpoint where nothing answers fails the check at once.
STARTUP_ATTEMPTS = 8
STARTUP_BACKOFF = Backoff(base=0.05, cap=1.0)

if TYPE_CHECKING:
    from replicator.aws.clients import DynamoDBClient

log = structlog.get_logger("replicator.startup")


@dataclass(frozen=True, slots=True)
class Prepared:
    stream_arn: str
    view_type: str
    #: DescribeTable of the source (ItemCount and TableSizeBytes are approximate).
    source_table: dict[str, Any]


async def call_checked(call: Callable[[], Awaitable[T]], *, what: str, setting: str,
                       endpoint: str | None, region: str | None, clock: Clock) -> T:
    """Run a start-up call, turning endpoint and credential failures into one-line errors.

    Throttling, server errors and dropped connections are retried a few times
    first: a worker started while the service has a bad moment still starts.
    """
    where = endpoint or f"the AWS endpoint of region {region}"
    attempt = 0
    while True:
        try:
            return await call()
        except EndpointUnreachableError as exc:
            raise StartupCheckError(
                f"cannot reach {what} at {where}: nothing answers; check {setting} "
                "and that the endpoint is up"
            ) from exc
        except AccessDeniedError as exc:
            # The error names the fix (ACCESS_FIX).
            raise StartupCheckError(f"access to {what} at {where} was refused: {exc}") from exc
        except AwsError as exc:
            attempt += 1
            if exc.retriable and attempt < STARTUP_ATTEMPTS:
                await clock.sleep(STARTUP_BACKOFF.delay(attempt))
                continue
            if isinstance(exc, TransientError):
                raise StartupCheckError(
                    f"{what} at {where} does not answer properly ({exc}); check {setting}"
                ) from exc
            raise StartupCheckError(f"{what} at {where} refused a start-up call: {exc}") from exc


def _key_schema(description: dict[str, Any]) -> list[tuple[str, str, str]]:
    types = {a["AttributeName"]: a["AttributeType"] for a in description["AttributeDefinitions"]}
    order = {"HASH": 0, "RANGE": 1}
    return sorted(
        ((k["AttributeName"], k["KeyType"], types.get(k["AttributeName"], "?"))
         for k in description["KeySchema"]),
        key=lambda key: order[key[1]],
    )


def _describe_schema(schema: list[tuple[str, str, str]]) -> str:
    return ", ".join(f"{name} {key_type} {attr_type}" for name, key_type, attr_type in schema)


async def check_checkpoint_table(settings: Settings, store: DynamoLeaseStore, *,
                                 clock: Clock) -> None:
    """The task's checkpoint table, created if absent."""
    await call_checked(
        store.ensure_table,
        what=f"checkpoint table {store.table}", setting="REPLICATOR_CHECKPOINT_ENDPOINT",
        endpoint=settings.checkpoint_endpoint, region=settings.checkpoint_region, clock=clock,
    )


async def check_source(
    settings: Settings, *, source: DynamoDBClient, streams: DynamoStreamReader, clock: Clock,
) -> Prepared:
    """The source table exists, and has a stream whose records carry the new image."""
    timeout = settings.call_timeout
    source_table = await call_checked(
        lambda: describe_table(source, settings.source_table, call_timeout=timeout),
        what=f"source table {settings.source_table}", setting="REPLICATOR_SOURCE_ENDPOINT",
        endpoint=settings.source_endpoint, region=settings.source_region, clock=clock,
    )
    if source_table is None:
        raise StartupCheckError(
            f"source table {settings.source_table} does not exist in region "
            f"{settings.source_region}: check REPLICATOR_SOURCE_TABLE and REPLICATOR_SOURCE_REGION"
        )
    spec = source_table.get("StreamSpecification") or {}
    stream_arn = source_table.get("LatestStreamArn")
    if not spec.get("StreamEnabled") or not stream_arn:
        raise StartupCheckError(
            f"source table {settings.source_table} has no stream enabled: enable one with "
            f"aws dynamodb update-table --table-name {settings.source_table} "
            "--stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES"
        )
    stream = await call_checked(
        lambda: streams.describe_stream(stream_arn),
        what=f"the stream of {settings.source_table}",
        setting="REPLICATOR_SOURCE_STREAMS_ENDPOINT",
        endpoint=settings.source_streams_endpoint, region=settings.source_region, clock=clock,
    )
    view_type = str(stream.get("StreamViewType") or spec.get("StreamViewType", ""))
    if view_type not in REPLICABLE_VIEWS:
        raise StartupCheckError(
            f"the stream of source table {settings.source_table} has StreamViewType {view_type}, "
            "which does not carry the new image of an item: disable the stream and enable it "
            "again with StreamViewType NEW_AND_OLD_IMAGES (or NEW_IMAGE)"
        )
    return Prepared(stream_arn=stream_arn, view_type=view_type, source_table=source_table)


async def check_destination(
    settings: Settings, *, source: DynamoDBClient, destination: DynamoDBClient,
    source_table: dict[str, Any], create: bool, clock: Clock,
) -> dict[str, Any] | None:
    """The destination table exists with the source's key schema; with
    ``REPLICATOR_DESTINATION_CREATE`` and ``create``, a missing one is created like the
    source. None: missing, and to be created on the first start (``create`` False)."""
    timeout = settings.call_timeout
    destination_table = await call_checked(
        lambda: describe_table(destination, settings.destination_table, call_timeout=timeout),
        what=f"destination table {settings.destination_table}",
        setting="REPLICATOR_DESTINATION_ENDPOINT",
        endpoint=settings.destination_endpoint, region=settings.destination_region, clock=clock,
    )
    source_keys = _key_schema(source_table)
    if destination_table is None and settings.destination_create:
        if not create:
            return None
        destination_table = await _create_destination(settings, source, destination,
                                                      source_table, clock=clock)
    elif destination_table is not None:
        for name in missing_indexes(source_table, destination_table):
            log.warning("the destination lacks an index of the source", index=name,
                        destination_table=settings.destination_table)
    if destination_table is None:
        raise StartupCheckError(
            f"destination table {settings.destination_table} does not exist in region "
            f"{settings.destination_region}: create it with the source's key schema "
            f"({_describe_schema(source_keys)}), set REPLICATOR_DESTINATION_CREATE=true to "
            "have it created, or fix REPLICATOR_DESTINATION_TABLE"
        )
    destination_keys = _key_schema(destination_table)
    if destination_keys != source_keys:
        raise StartupCheckError(
            f"destination table {settings.destination_table} has key schema "
            f"({_describe_schema(destination_keys)}) but source table {settings.source_table} "
            f"has ({_describe_schema(source_keys)}): create the destination with the same key "
            "attributes, key types and attribute types"
        )
    return destination_table


async def _create_destination(
    settings: Settings, source: DynamoDBClient, destination: DynamoDBClient,
    source_table: dict[str, Any], *, clock: Clock,
) -> dict[str, Any]:
    """The destination table, created like the source (``REPLICATOR_DESTINATION_CREATE``)."""
    timeout = settings.call_timeout
    time_to_live = await call_checked(
        lambda: time_to_live_attribute(source, settings.source_table, call_timeout=timeout),
        what=f"the time to live of source table {settings.source_table}",
        setting="REPLICATOR_SOURCE_ENDPOINT", endpoint=settings.source_endpoint,
        region=settings.source_region, clock=clock,
    )
    log.info("creating the destination table like the source",
             destination_table=settings.destination_table, time_to_live=time_to_live)
    created = await call_checked(
        lambda: create_like(destination, source_table, settings.destination_table,
                            time_to_live=time_to_live, call_timeout=timeout, clock=clock),
        what=f"destination table {settings.destination_table}",
        setting="REPLICATOR_DESTINATION_ENDPOINT", endpoint=settings.destination_endpoint,
        region=settings.destination_region, clock=clock,
    )
    log.info("destination table created", destination_table=settings.destination_table)
    return created


def check_rules(destination: Destination, prepared: Prepared) -> None:
    """The destination's rules can be applied to its source: a filter has the old images
    it needs, and a projection keeps the source's key attributes."""
    table = prepared.source_table["TableName"]
    if destination.filter is not None and prepared.view_type != "NEW_AND_OLD_IMAGES":
        raise StartupCheckError(
            f"destination {destination.name!r} has a filter, which needs the old image of "
            f"each changed item, but the stream of source table {table} has StreamViewType "
            f"{prepared.view_type}: disable the stream and enable it again with "
            "StreamViewType NEW_AND_OLD_IMAGES, or remove the filter"
        )
    projection = destination.projection
    if projection is not None:
        keys = [key["AttributeName"] for key in prepared.source_table["KeySchema"]]
        problem = projection.key_problem(keys)
        if problem is not None:
            raise StartupCheckError(
                f"destination {destination.name!r}: the projection of source table {table} "
                f"(include, exclude, rename): {problem}"
            )
