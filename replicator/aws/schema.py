"""A destination table made like its source: the CreateTable request drawn from the
source's DescribeTable (keys, attribute definitions, indexes, billing mode) and its
time to live, and the source's indexes a destination lacks."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, cast

from replicator.aws.errors import map_errors
from replicator.aws.table import describe_table
from replicator.clock import Clock

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import CreateTableInputTypeDef

#: Seconds between DescribeTable calls while a new table becomes ACTIVE.
ACTIVE_POLL = 0.5


def create_table_request(source: dict[str, Any], table: str) -> dict[str, Any]:
    """CreateTable's parameters for a table like ``source`` (a DescribeTable ``Table``):
    its key schema and attribute definitions, its global and local secondary indexes
    with their projections, and its billing mode (on-demand, or the source's
    provisioned capacity). No stream: the destination is written, not read."""
    provisioned = _billing_mode(source) == "PROVISIONED"
    request: dict[str, Any] = {
        "TableName": table,
        "KeySchema": _keys(source["KeySchema"]),
        "AttributeDefinitions": [
            {"AttributeName": d["AttributeName"], "AttributeType": d["AttributeType"]}
            for d in source["AttributeDefinitions"]
        ],
        "BillingMode": "PROVISIONED" if provisioned else "PAY_PER_REQUEST",
    }
    if provisioned:
        request["ProvisionedThroughput"] = _throughput(source)
    globals_ = [
        {"IndexName": index["IndexName"], "KeySchema": _keys(index["KeySchema"]),
         "Projection": _projection(index["Projection"]),
         **({"ProvisionedThroughput": _throughput(index)} if provisioned else {})}
        for index in source.get("GlobalSecondaryIndexes") or []
    ]
    if globals_:
        request["GlobalSecondaryIndexes"] = globals_
    locals_ = [
        {"IndexName": index["IndexName"], "KeySchema": _keys(index["KeySchema"]),
         "Projection": _projection(index["Projection"])}
        for index in source.get("LocalSecondaryIndexes") or []
    ]
    if locals_:
        request["LocalSecondaryIndexes"] = locals_
    return request


def missing_indexes(source: dict[str, Any], destination: dict[str, Any]) -> list[str]:
    """The names of the source's secondary indexes the destination has not."""
    def names(description: dict[str, Any]) -> list[str]:
        return [index["IndexName"]
                for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes")
                for index in description.get(kind) or []]

    present = set(names(destination))
    return [name for name in names(source) if name not in present]


async def time_to_live_attribute(client: DynamoDBClient, table: str, *,
                                 call_timeout: float) -> str | None:
    """The attribute that holds the items' expiry times, when TTL is on (or turning on)."""
    async with map_errors("DescribeTimeToLive", call_timeout):
        response = await client.describe_time_to_live(TableName=table)
    description = response.get("TimeToLiveDescription", {})
    if description.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        return description.get("AttributeName")
    return None


async def create_like(
    client: DynamoDBClient, source: dict[str, Any], table: str, *,
    time_to_live: str | None, call_timeout: float, clock: Clock,
) -> dict[str, Any]:
    """Create ``table`` like ``source``, wait until it is ACTIVE, turn on its TTL on
    ``time_to_live``; its DescribeTable ``Table``. A table that another worker created
    meanwhile is taken as it is."""
    request = cast("CreateTableInputTypeDef", create_table_request(source, table))
    async with map_errors("CreateTable", call_timeout):
        # ResourceInUse: created by another worker of the task meanwhile.
        with contextlib.suppress(client.exceptions.ResourceInUseException):
            await client.create_table(**request)
    while True:
        description = await describe_table(client, table, call_timeout=call_timeout)
        if description is not None and description.get("TableStatus") == "ACTIVE":
            break
        await clock.sleep(ACTIVE_POLL)
    if time_to_live is not None:
        async with map_errors("UpdateTimeToLive", call_timeout):
            await client.update_time_to_live(
                TableName=table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": time_to_live},
            )
    return description


def _billing_mode(description: dict[str, Any]) -> str:
    summary = description.get("BillingModeSummary") or {}
    if summary.get("BillingMode"):
        return str(summary["BillingMode"])
    # A table created provisioned before billing modes existed has no summary.
    throughput = description.get("ProvisionedThroughput") or {}
    return "PROVISIONED" if throughput.get("ReadCapacityUnits") else "PAY_PER_REQUEST"


def _throughput(description: dict[str, Any]) -> dict[str, int]:
    throughput = description.get("ProvisionedThroughput") or {}
    return {"ReadCapacityUnits": max(1, int(throughput.get("ReadCapacityUnits") or 1)),
            "WriteCapacityUnits": max(1, int(throughput.get("WriteCapacityUnits") or 1))}


def _keys(schema: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{"AttributeName": k["AttributeName"], "KeyType": k["KeyType"]} for k in schema]


def _projection(projection: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"ProjectionType": projection.get("ProjectionType", "ALL")}
    if projection.get("NonKeyAttributes"):
        out["NonKeyAttributes"] = list(projection["NonKeyAttributes"])
    return out
