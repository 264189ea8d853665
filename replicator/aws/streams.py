"""``StreamReader`` over the DynamoDB Streams API (DescribeStream, GetShardIterator,
GetRecords)."""

from __future__ import annotations

import contextlib
import email.utils
import time
from typing import TYPE_CHECKING, Any, cast

from replicator.aws import codec
from replicator.aws.errors import map_errors
from replicator.records import RecordsPage, Shard

if TYPE_CHECKING:
    from types_aiobotocore_dynamodbstreams import DynamoDBStreamsClient
    from types_aiobotocore_dynamodbstreams.literals import ShardIteratorTypeType
    from types_aiobotocore_dynamodbstreams.type_defs import (
        DescribeStreamInputTypeDef,
        GetShardIteratorInputTypeDef,
    )


class DynamoStreamReader:
    """``StreamReader`` over the DynamoDB Streams API. Records come in wire form, parsed
    outside botocore's model walk (``replicator.aws.codec``)."""

    def __init__(self, client: DynamoDBStreamsClient, *, call_timeout: float,
                 old_images: bool = True) -> None:
        self._client = codec.install(client)
        #: Whether records keep their OldImage (False: it is skipped, never held).
        self.old_images = old_images
        self._timeout = call_timeout

    async def describe_stream(self, stream_arn: str) -> dict[str, Any]:
        """DescribeStream's ``StreamDescription`` (its first page of shards)."""
        async with map_errors("DescribeStream", self._timeout):
            response = await self._client.describe_stream(StreamArn=stream_arn)
        return cast(dict[str, Any], response["StreamDescription"])

    async def list_shards(self, stream_arn: str) -> list[Shard]:
        shards: list[Shard] = []
        request: DescribeStreamInputTypeDef = {"StreamArn": stream_arn}
        while True:
            async with map_errors("DescribeStream", self._timeout):
                response = await self._client.describe_stream(**request)
            description = response["StreamDescription"]
            shards.extend(
                Shard.from_wire(cast(dict[str, Any], raw)) for raw in description.get("Shards", [])
            )
            last = description.get("LastEvaluatedShardId")
            if not last:
                return shards
            request["ExclusiveStartShardId"] = last

    async def server_time(self, stream_arn: str) -> float:
        async with map_errors("DescribeStream", self._timeout):
            response = await self._client.describe_stream(StreamArn=stream_arn, Limit=1)
        date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        if date is not None:
            with contextlib.suppress(TypeError, ValueError):
                return email.utils.parsedate_to_datetime(date).timestamp()
        # No Date header (a proxy dropped it), or none that parses: this machine's clock,
        # a second back for the difference between the two.
        return float(int(time.time()) - 1)

    async def get_shard_iterator(
        self,
        stream_arn: str,
        shard_id: str,
        iterator_type: str,
        sequence_number: str | None = None,
    ) -> str:
        request: GetShardIteratorInputTypeDef = {
            "StreamArn": stream_arn,
            "ShardId": shard_id,
            "ShardIteratorType": cast("ShardIteratorTypeType", iterator_type),
        }
        if sequence_number is not None:
            request["SequenceNumber"] = sequence_number
        async with map_errors("GetShardIterator", self._timeout):
            response = await self._client.get_shard_iterator(**request)
        return response["ShardIterator"]

    async def get_records(self, iterator: str, limit: int) -> RecordsPage:
        async with map_errors("GetRecords", self._timeout):
            with codec.old_images(self.old_images):
                response = await self._client.get_records(ShardIterator=iterator,
                                                          Limit=limit)
        return RecordsPage(
            records=cast(list[dict[str, Any]], response.get("Records", [])),
            next_iterator=response.get("NextShardIterator"),
        )
