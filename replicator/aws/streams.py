"""``StreamReader`` over the DynamoDB Streams API (DescribeStream, GetShardIterator,
GetRecords)."""

from __future__ import annotations

import email.utils
import time
from typing import Any

from replicator.aws.errors import map_errors
from replicator.records import RecordsPage, Shard


class DynamoStreamReader:
    """``StreamReader`` over the DynamoDB Streams API."""

    def __init__(self, client: Any, *, call_timeout: float) -> None:
        self._client = client
        self._timeout = call_timeout

    async def describe_stream(self, stream_arn: str) -> dict[str, Any]:
        async with map_errors("DescribeStream", self._timeout):
            response = await self._client.describe_stream(StreamArn=stream_arn)
        description: dict[str, Any] = response["StreamDescription"]
        return description

    async def list_shards(self, stream_arn: str) -> list[Shard]:
        shards: list[Shard] = []
        kwargs: dict[str, Any] = {"StreamArn": stream_arn}
        while True:
            async with map_errors("DescribeStream", self._timeout):
                response = await self._client.describe_stream(**kwargs)
            description = response["StreamDescription"]
            shards.extend(Shard.from_wire(raw) for raw in description.get("Shards", []))
            last = description.get("LastEvaluatedShardId")
            if not last:
                return shards
            kwargs["ExclusiveStartShardId"] = last

    async def server_time(self, stream_arn: str) -> float:
        async with map_errors("DescribeStream", self._timeout):
            response = await self._client.describe_stream(StreamArn=stream_arn, Limit=1)
        date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        try:
            return email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            # No Date header (a proxy dropped it): this machine's clock, a second back
            # for the difference between the two.
            return float(int(time.time()) - 1)

    async def get_shard_iterator(
        self,
        stream_arn: str,
        shard_id: str,
        iterator_type: str,
        sequence_number: str | None = None,
    ) -> str:
        kwargs: dict[str, Any] = {
            "StreamArn": stream_arn,
            "ShardId": shard_id,
            "ShardIteratorType": iterator_type,
        }
        if sequence_number is not None:
            kwargs["SequenceNumber"] = sequence_number
        async with map_errors("GetShardIterator", self._timeout):
            response = await self._client.get_shard_iterator(**kwargs)
        iterator: str = response["ShardIterator"]
        return iterator

    async def get_records(self, iterator: str, limit: int) -> RecordsPage:
        async with map_errors("GetRecords", self._timeout):
            response = await self._client.get_records(ShardIterator=iterator, Limit=limit)
        return RecordsPage(
            records=response.get("Records", []),
            next_iterator=response.get("NextShardIterator"),
        )
