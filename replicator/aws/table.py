"""DynamoDB tables: DescribeTable, and ``DynamoTable`` (Scan, BatchGetItem, BatchWriteItem).

Items stay as the wire has them (``{"name": {"S": "value"}}``, binary values as
base64 strings), in the plain dicts of ``replicator.records``: ``replicator.aws.codec``
reads and writes them outside botocore's model walk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from replicator import errors
from replicator.aws import codec
from replicator.aws.errors import map_errors

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import (
        KeySchemaElementTypeDef,
        ScanInputTypeDef,
    )


async def describe_table(
    client: DynamoDBClient, table: str, *, call_timeout: float
) -> dict[str, Any] | None:
    """DescribeTable's ``Table``, or None when the table does not exist."""
    try:
        async with map_errors("DescribeTable", call_timeout):
            response = await client.describe_table(TableName=table)
    except errors.ResourceNotFoundError:
        return None
    return cast(dict[str, Any], response["Table"])


async def ensure_own_table(client: DynamoDBClient, table: str,
                           key_schema: Sequence[KeySchemaElementTypeDef], *, what: str,
                           call_timeout: float) -> bool:
    """Create one of the task's own tables (string keys, on-demand billing) if absent,
    and wait until it is active. True when this call created it; ``StartupCheckError``
    when a table of that name exists with another key schema (``what`` names it)."""
    description = await describe_table(client, table, call_timeout=call_timeout)
    created = False
    if description is None:
        try:
            async with map_errors("CreateTable", call_timeout):
                await client.create_table(
                    TableName=table, KeySchema=list(key_schema),
                    AttributeDefinitions=[{"AttributeName": key["AttributeName"],
                                           "AttributeType": "S"} for key in key_schema],
                    BillingMode="PAY_PER_REQUEST",
                )
            created = True
        except errors.TransientError as exc:
            if exc.code != "ResourceInUseException":  # another worker created it first
                raise
    while description is None or description.get("TableStatus") != "ACTIVE":
        await asyncio.sleep(0.5 if description is not None else 0)
        description = await describe_table(client, table, call_timeout=call_timeout)
    if sorted(map(_key_tuple, description["KeySchema"])) != sorted(
            map(_key_tuple, key_schema)):
        raise errors.StartupCheckError(
            f"{what} {table} exists with another key schema "
            f"({_describe_keys(description['KeySchema'])}); it belongs to something else: "
            "choose another REPLICATOR_TASK_NAME"
        )
    return created


def _key_tuple(element: Mapping[str, object]) -> tuple[str, str]:
    return (str(element["AttributeName"]), str(element["KeyType"]))


def _describe_keys(schema: list[dict[str, str]]) -> str:
    return ", ".join(f"{e['AttributeName']} {e['KeyType']}" for e in schema)


class DynamoTable:
    """Scan, BatchGetItem and BatchWriteItem on one table.

    The destination of the stream (a ``DestinationWriter``) and both sides of
    copy and verify.
    """

    def __init__(self, client: DynamoDBClient, table: str, *, call_timeout: float) -> None:
        self._client = codec.install(client)
        self.table = table
        self._timeout = call_timeout

    async def scan_page(
        self, *, segment: int, total_segments: int, start_key: dict[str, Any] | None,
        limit: int | None = None, call_timeout: float | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None, float]:
        """One page of a parallel Scan: (items, LastEvaluatedKey, read units consumed),
        within ``call_timeout`` (default: the table's)."""
        request: ScanInputTypeDef = {
            "TableName": self.table,
            "Segment": segment,
            "TotalSegments": total_segments,
            "ConsistentRead": True,
            "ReturnConsumedCapacity": "TOTAL",
        }
        if start_key is not None:
            request["ExclusiveStartKey"] = start_key
        if limit is not None:
            request["Limit"] = limit
        async with map_errors("Scan", call_timeout or self._timeout):
            response = await self._client.scan(**request)
        consumed = float(response.get("ConsumedCapacity", {}).get("CapacityUnits", 0.0))
        items = cast(list[dict[str, Any]], response.get("Items", []))
        last = cast("dict[str, Any] | None", response.get("LastEvaluatedKey"))
        return items, last, consumed

    async def batch_get(
        self, keys: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """One BatchGetItem (at most 100 keys): (items found, keys left unprocessed)."""
        async with map_errors("BatchGetItem", self._timeout):
            with codec.send_body(codec.batch_get_body(self.table, keys)):
                response = await self._client.batch_get_item(RequestItems={})
        found = (response.get("Responses") or {}).get(self.table, [])
        unprocessed = (response.get("UnprocessedKeys") or {}).get(self.table)
        left = unprocessed.get("Keys", []) if unprocessed is not None else []
        return cast(list[dict[str, Any]], found), cast(list[dict[str, Any]], left)

    async def batch_write(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One BatchWriteItem (at most 25 requests): the requests left unprocessed."""
        async with map_errors("BatchWriteItem", self._timeout):
            with codec.send_body(codec.batch_write_body(self.table, requests)):
                response = await self._client.batch_write_item(RequestItems={})
        unprocessed = response.get("UnprocessedItems", {}).get(self.table, [])
        return cast(list[dict[str, Any]], unprocessed)
