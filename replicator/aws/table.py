"""Scan, BatchGetItem and BatchWriteItem on one table (the source and destination of the
stream, the copy and verify), and DescribeTable."""

from __future__ import annotations

from typing import Any

from replicator import errors
from replicator.aws.errors import map_errors

# -- DynamoDB Streams ----------------------------------------------------------


# -- DynamoDB tables -----------------------------------------------------------


async def describe_table(client: Any, table: str, *, call_timeout: float) -> dict[str, Any] | None:
    """DescribeTable's ``Table``, or None when the table does not exist."""
    try:
        async with map_errors("DescribeTable", call_timeout):
            response = await client.describe_table(TableName=table)
    except errors.ResourceNotFoundError:
        return None
    description: dict[str, Any] = response["Table"]
    return description


class DynamoTable:
    """Scan, BatchGetItem and BatchWriteItem on one table.

    The destination of the stream (a ``DestinationWriter``) and both sides of
    copy and verify.
    """

    def __init__(self, client: Any, table: str, *, call_timeout: float) -> None:
        self._client = client
        self.table = table
        self._timeout = call_timeout

    async def scan_page(
        self, *, segment: int, total_segments: int, start_key: dict[str, Any] | None,
        limit: int | None = None, call_timeout: float | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None, float]:
        """One page of a parallel Scan: (items, LastEvaluatedKey, read units consumed),
        within ``call_timeout`` (default: the table's)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "Segment": segment,
            "TotalSegments": total_segments,
            "ConsistentRead": True,
            "ReturnConsumedCapacity": "TOTAL",
        }
        if start_key is not None:
            kwargs["ExclusiveStartKey"] = start_key
        if limit is not None:
            kwargs["Limit"] = limit
        async with map_errors("Scan", call_timeout or self._timeout):
            response = await self._client.scan(**kwargs)
        consumed = float(response.get("ConsumedCapacity", {}).get("CapacityUnits", 0.0))
        return response.get("Items", []), response.get("LastEvaluatedKey"), consumed

    async def batch_get(
        self, keys: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """One BatchGetItem (at most 100 keys): (items found, keys left unprocessed)."""
        async with map_errors("BatchGetItem", self._timeout):
            response = await self._client.batch_get_item(
                RequestItems={self.table: {"Keys": keys, "ConsistentRead": True}}
            )
        found: list[dict[str, Any]] = response.get("Responses", {}).get(self.table, [])
        left: list[dict[str, Any]] = (
            response.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
        )
        return found, left

    async def batch_write(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        async with map_errors("BatchWriteItem", self._timeout):
            response = await self._client.batch_write_item(RequestItems={self.table: requests})
        unprocessed: list[dict[str, Any]] = response.get("UnprocessedItems", {}).get(
            self.table, []
        )
        return unprocessed


# -- CloudWatch -----------------------------------------------------------------


