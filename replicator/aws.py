"""The one module that talks to aiobotocore.

It builds the clients, puts a timeout on every call, translates botocore's
exceptions into ``replicator.errors`` (``map_errors``) and implements the
interfaces of ``replicator.protocols`` over DynamoDB and DynamoDB Streams.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import gc
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore import exceptions as boto_errors

from replicator import errors
from replicator.config import Settings
from replicator.heartbeat import WORKERS_KEY, WorkerRow
from replicator.leases import Lease
from replicator.records import RecordsPage, Shard

_THROTTLING = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "LimitExceededException",
    "TooManyRequestsException",
}
_TRANSIENT = {
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "ResourceInUseException",
}
_ACCESS = {
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "MissingAuthenticationToken",
    "MissingAuthenticationTokenException",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "IncompleteSignature",
}
#: The fix an access error names, wherever it happens: the service's own message
#: says which permission is missing.
ACCESS_FIX = (
    "check the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, the container role) "
    "and their IAM permissions"
)
_BY_CODE: dict[str, type[errors.AwsError]] = {
    "ResourceNotFoundException": errors.ResourceNotFoundError,
    "ValidationException": errors.ValidationError,
    "SerializationException": errors.ValidationError,
    # An item that can never be written (its LSI item collection is full).
    "ItemCollectionSizeLimitExceededException": errors.ValidationError,
    "ConditionalCheckFailedException": errors.ConditionFailedError,
    "ExpiredIteratorException": errors.ExpiredIteratorError,
    "TrimmedDataAccessException": errors.TrimmedDataError,
}


def map_client_error(exc: boto_errors.ClientError, operation: str) -> errors.AwsError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", "")).strip()
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if "<html" in message.lower() or len(message) > 300:
        message = f"HTTP {status or code}"
    text = f"{operation}: {code}: {message}" if message else f"{operation}: {code}"
    cls: type[errors.AwsError]
    if code in _THROTTLING:
        cls = errors.ThrottledError
    elif code in _ACCESS:
        cls = errors.AccessDeniedError
        text = f"{text}; {ACCESS_FIX}"
    elif code in _BY_CODE:
        cls = _BY_CODE[code]
    elif code in _TRANSIENT or status >= 500 or (code.isdigit() and int(code) >= 500):
        cls = errors.TransientError
    else:
        cls = errors.AwsError
    return cls(text, code=code, operation=operation)


@asynccontextmanager
async def map_errors(operation: str, seconds: float) -> AsyncIterator[None]:
    """Bound a call by ``seconds`` and turn whatever botocore raises into our errors."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except boto_errors.ClientError as exc:
        raise map_client_error(exc, operation) from exc
    except (boto_errors.NoCredentialsError, boto_errors.PartialCredentialsError) as exc:
        raise errors.AccessDeniedError(
            f"{operation}: no AWS credentials found; {ACCESS_FIX}", operation=operation
        ) from exc
    except (boto_errors.EndpointConnectionError, boto_errors.ConnectTimeoutError) as exc:
        url = getattr(exc, "kwargs", {}).get("endpoint_url", "the endpoint")
        raise errors.EndpointUnreachableError(
            f"{operation}: cannot connect to {url}", operation=operation
        ) from exc
    except (
        boto_errors.ReadTimeoutError,
        boto_errors.ConnectionClosedError,
        boto_errors.HTTPClientError,
        aiohttp.ClientError,
        ConnectionError,
    ) as exc:
        raise errors.TransientError(
            f"{operation}: {type(exc).__name__}: {exc}", operation=operation
        ) from exc
    except TimeoutError as exc:
        raise errors.CallTimeoutError(
            f"{operation}: no answer within {seconds:g}s", operation=operation
        ) from exc


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one AWS client connects, and with which profile's credentials
    (None: the standard chain)."""

    service: str
    region: str
    endpoint_url: str | None
    profile: str | None = None
    #: The setting that named the profile, for error messages.
    profile_setting: str = "the profile setting"


def endpoint_for(settings: Settings, side: str) -> Endpoint:
    """The endpoint of one side of the replication: source, streams, destination,
    checkpoint or cloudwatch."""
    source = ("REPLICATOR_SOURCE_PROFILE", settings.source_profile)
    checkpoint = ("REPLICATOR_CHECKPOINT_PROFILE", settings.checkpoint_profile)
    if checkpoint[1] == source[1]:
        checkpoint = source  # derived from it, or set to the same
    service, region, url, (setting, profile) = {
        "source": ("dynamodb", settings.source_region, settings.source_endpoint, source),
        "streams": ("dynamodbstreams", settings.source_region,
                    settings.source_streams_endpoint, source),
        "destination": ("dynamodb", settings.destination_region,
                        settings.destination_endpoint,
                        ("REPLICATOR_DESTINATION_PROFILE", settings.destination_profile)),
        "checkpoint": ("dynamodb", settings.checkpoint_region, settings.checkpoint_endpoint,
                       checkpoint),
        "cloudwatch": ("cloudwatch", settings.cloudwatch_region, settings.cloudwatch_endpoint,
                       checkpoint),
    }[side]
    return Endpoint(service, str(region), url, profile, setting)


@asynccontextmanager
async def open_client(
    endpoint: Endpoint, *, call_timeout: float, max_connections: int = 10
) -> AsyncIterator[Any]:
    """An aiobotocore client with our timeouts and without botocore's own retries.

    Retrying is ours to do (``replicator.backoff``), so that a throttled call is
    retried for as long as it takes and every retry is counted and logged.
    Credentials come from the standard AWS chain.

    botocore does not check the parameters before sending them: the service
    checks them anyway and answers a ValidationException, which ``map_errors``
    translates (botocore's own ParamValidationError it would not), and the
    check walks every attribute of every item a copy or a writer sends, which
    costs about as much as serializing them. Scan pages are parsed by
    ``_parse_scan_items``.
    """
    config = AioConfig(
        connect_timeout=min(call_timeout, 5.0),
        # Every call is bounded by ``map_errors``'s timeout; a Scan's may grow past the
        # call timeout (``scan.ScanPacing``), so botocore's own is only a backstop.
        read_timeout=max(call_timeout, LONGEST_CALL),
        retries={"total_max_attempts": 1},
        max_pool_connections=max_connections,
        parameter_validation=False,
    )
    session = get_session() if endpoint.profile is None else AioSession(profile=endpoint.profile)
    try:
        # botocore reads the profile here, and its credentials on the first call.
        session.get_scoped_config()
    except boto_errors.ProfileNotFound as exc:
        raise errors.ConfigError(
            f"{endpoint.profile_setting}: AWS profile {endpoint.profile!r} is not in the AWS "
            "config files (~/.aws/config, or AWS_CONFIG_FILE): add it, or name another"
        ) from exc
    async with session.create_client(
        endpoint.service,
        region_name=endpoint.region,
        endpoint_url=endpoint.endpoint_url,
        config=config,
    ) as client:
        if endpoint.service == "dynamodb":
            client.meta.events.register(
                "before-parse.dynamodb.Scan", _parse_scan_items, unique_id="replicator-scan"
            )
        yield client


def _parse_scan_items(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """Parse a Scan page's items here, and leave botocore the rest of the response.

    botocore's parser walks every attribute value through the model, about
    five times the cost of ``json.loads`` and ``_attribute_value``, and a 1 MB
    page holds thousands of items: parsed by botocore, one page held up the
    event loop for a second or more, long enough for the calls in flight to
    overrun their timeouts. The items come out as botocore would return them.

    The cyclic garbage collector is paused meanwhile: a page is hundreds of
    thousands of new dicts and lists, none of them in a cycle, and collections
    triggered by their allocation (full ones too, over every live page) took
    two thirds of the parse.
    """
    body = response_dict.get("body")
    if response_dict.get("status_code") != 200 or not body:
        return
    collecting = gc.isenabled()
    gc.disable()
    try:
        parsed = json.loads(body)
        if not isinstance(parsed, dict) or not isinstance(parsed.get("Items"), list):
            return
        customized_response_dict["Items"] = [
            {name: _attribute_value(value) for name, value in item.items()}
            for item in parsed.pop("Items")
        ]
    except ValueError:
        return  # botocore reports it
    finally:
        if collecting:
            gc.enable()
    response_dict["body"] = json.dumps(parsed).encode()


def _attribute_value(value: dict[str, Any]) -> dict[str, Any]:
    """A wire AttributeValue as botocore returns it: binary values decoded from base64."""
    if "S" in value or "N" in value or "SS" in value or "NS" in value:
        return value
    if "M" in value:
        return {"M": {name: _attribute_value(inner) for name, inner in value["M"].items()}}
    if "L" in value:
        return {"L": [_attribute_value(inner) for inner in value["L"]]}
    if "B" in value:
        return {"B": base64.b64decode(value["B"])}
    if "BS" in value:
        return {"BS": [base64.b64decode(inner) for inner in value["BS"]]}
    return value  # BOOL, NULL


class AwsClients:
    """The service's clients, opened together and closed together."""

    def __init__(self) -> None:
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> AwsClients:
        await self._stack.__aenter__()
        return self

    async def open(
        self, endpoint: Endpoint, *, call_timeout: float, max_connections: int = 10
    ) -> Any:
        return await self._stack.enter_async_context(
            open_client(endpoint, call_timeout=call_timeout, max_connections=max_connections)
        )

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.__aexit__(None, None, None)


# -- DynamoDB Streams ----------------------------------------------------------


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


#: Seconds the longest call may take: a Scan page whose timeout grew (``ScanPacing``).
LONGEST_CALL = 60.0


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


LEASE_KEY_SCHEMA = [
    {"AttributeName": "stream_arn", "KeyType": "HASH"},
    {"AttributeName": "shard_id", "KeyType": "RANGE"},
]


class DynamoLeaseStore:
    """``LeaseStore`` over a DynamoDB table keyed by (stream ARN, shard id).

    The stream ARN in the key keeps the rows of a re-created source table (a new
    stream, whose shard ids may repeat) apart from the old ones.
    """

    def __init__(self, client: Any, table: str, *, call_timeout: float) -> None:
        self._client = client
        self.table = table
        self._timeout = call_timeout

    async def ensure_table(self) -> bool:
        """Create the table if absent (on-demand billing) and wait until it is active.

        Returns True when it was created. Raises ``StartupCheckError`` when a
        table of that name exists with another key schema.
        """
        description = await describe_table(self._client, self.table, call_timeout=self._timeout)
        created = False
        if description is None:
            try:
                async with map_errors("CreateTable", self._timeout):
                    await self._client.create_table(
                        TableName=self.table,
                        KeySchema=LEASE_KEY_SCHEMA,
                        AttributeDefinitions=[
                            {"AttributeName": "stream_arn", "AttributeType": "S"},
                            {"AttributeName": "shard_id", "AttributeType": "S"},
                        ],
                        BillingMode="PAY_PER_REQUEST",
                    )
                created = True
            except errors.TransientError as exc:
                if exc.code != "ResourceInUseException":  # another worker created it first
                    raise
        while description is None or description.get("TableStatus") != "ACTIVE":
            await asyncio.sleep(0.5 if description is not None else 0)
            description = await describe_table(
                self._client, self.table, call_timeout=self._timeout
            )
        if sorted(map(_key_tuple, description["KeySchema"])) != sorted(
            map(_key_tuple, LEASE_KEY_SCHEMA)
        ):
            raise errors.StartupCheckError(
                f"checkpoint table {self.table} exists with another key schema "
                f"({_describe_keys(description['KeySchema'])}); it belongs to something else: "
                "choose another REPLICATOR_TASK_NAME"
            )
        return created

    async def list_leases(self, stream_arn: str) -> list[Lease]:
        leases: list[Lease] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "stream_arn = :arn",
            "ExpressionAttributeValues": {":arn": {"S": stream_arn}},
            "ConsistentRead": True,
        }
        while True:
            async with map_errors("Query", self._timeout):
                response = await self._client.query(**kwargs)
            leases.extend(_lease_from_item(item) for item in response.get("Items", []))
            last = response.get("LastEvaluatedKey")
            if not last:
                return leases
            kwargs["ExclusiveStartKey"] = last

    async def scan_rows(self) -> list[dict[str, Any]]:
        """Every row of the table, of every stream, as plain values (for ``status``)."""
        rows: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        while True:
            async with map_errors("Scan", self._timeout):
                response = await self._client.scan(**kwargs)
            for item in response.get("Items", []):
                if item["stream_arn"]["S"] == WORKERS_KEY:
                    continue  # a worker's row, not a shard's (``list_workers``)
                lease = _lease_from_item(item)
                rows.append({
                    "stream_arn": lease.stream_arn,
                    "shard_id": lease.shard_id,
                    "parent_shard_id": lease.parent_shard_id,
                    "owner": lease.owner,
                    "lease_counter": lease.counter,
                    "checkpoint": lease.checkpoint,
                    "owner_switches": int(item.get("owner_switches", {}).get("N", 0)),
                    "updated_at": item.get("updated_at", {}).get("S"),
                })
            last = response.get("LastEvaluatedKey")
            if not last:
                return rows
            kwargs["ExclusiveStartKey"] = last

    async def create_lease(self, lease: Lease) -> bool:
        try:
            async with map_errors("PutItem", self._timeout):
                await self._client.put_item(
                    TableName=self.table,
                    Item=_lease_to_item(lease),
                    ConditionExpression="attribute_not_exists(shard_id)",
                )
        except errors.ConditionFailedError:
            return False
        return True

    async def update_lease(
        self, lease: Lease, *, new_owner: str | None, checkpoint: str | None = None
    ) -> Lease:
        names = {"#c": "lease_counter", "#o": "lease_owner", "#u": "updated_at"}
        values: dict[str, Any] = {
            ":expected": {"N": str(lease.counter)},
            ":next": {"N": str(lease.counter + 1)},
            ":now": {"S": datetime.now(UTC).isoformat(timespec="milliseconds")},
        }
        if lease.owner is None:
            condition = "#c = :expected AND attribute_not_exists(#o)"
        else:
            condition = "#c = :expected AND #o = :owner"
            values[":owner"] = {"S": lease.owner}
        sets = ["#c = :next", "#u = :now"]
        removes = []
        if new_owner is None:
            removes.append("#o")
        else:
            sets.append("#o = :new_owner")
            values[":new_owner"] = {"S": new_owner}
        if checkpoint is not None:
            names["#cp"] = "checkpoint"
            sets.append("#cp = :checkpoint")
            values[":checkpoint"] = {"S": checkpoint}
        if new_owner != lease.owner:
            names["#sw"] = "owner_switches"
            sets.append("#sw = if_not_exists(#sw, :zero) + :one")
            values[":zero"] = {"N": "0"}
            values[":one"] = {"N": "1"}
        expression = "SET " + ", ".join(sets)
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        async with map_errors("UpdateItem", self._timeout):
            await self._client.update_item(
                TableName=self.table,
                Key=_lease_key(lease),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        return lease.after_update(new_owner=new_owner, checkpoint=checkpoint)

    async def delete_lease(self, lease: Lease) -> None:
        async with map_errors("DeleteItem", self._timeout):
            await self._client.delete_item(
                TableName=self.table,
                Key=_lease_key(lease),
                ConditionExpression="lease_counter = :expected",
                ExpressionAttributeValues={":expected": {"N": str(lease.counter)}},
            )


    # -- the workers' rows (``replicator.heartbeat``) ------------------------------

    async def put_worker(self, row: WorkerRow) -> None:
        item: dict[str, Any] = {
            "stream_arn": {"S": WORKERS_KEY},
            "shard_id": {"S": row.worker_id},
            "host": {"S": row.host},
            "pid": {"N": str(row.pid)},
            "phase": {"S": row.phase},
            "leases": {"N": str(row.leases)},
            "started_at": {"N": repr(row.started_at)},
            "heartbeat_at": {"N": repr(row.heartbeat_at)},
        }
        if row.metrics is not None:
            item["metrics"] = {"S": row.metrics}
        async with map_errors("PutItem", self._timeout):
            await self._client.put_item(TableName=self.table, Item=item)

    async def list_workers(self) -> list[WorkerRow]:
        rows: list[WorkerRow] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "stream_arn = :workers",
            "ExpressionAttributeValues": {":workers": {"S": WORKERS_KEY}},
            "ConsistentRead": True,
        }
        while True:
            async with map_errors("Query", self._timeout):
                response = await self._client.query(**kwargs)
            for item in response.get("Items", []):
                rows.append(WorkerRow(
                    worker_id=item["shard_id"]["S"],
                    host=item.get("host", {}).get("S", ""),
                    pid=int(item.get("pid", {}).get("N", 0)),
                    phase=item.get("phase", {}).get("S", ""),
                    leases=int(item.get("leases", {}).get("N", 0)),
                    metrics=item.get("metrics", {}).get("S"),
                    started_at=float(item.get("started_at", {}).get("N", 0)),
                    heartbeat_at=float(item.get("heartbeat_at", {}).get("N", 0)),
                ))
            last = response.get("LastEvaluatedKey")
            if not last:
                return rows
            kwargs["ExclusiveStartKey"] = last

    async def delete_worker(self, worker_id: str) -> None:
        async with map_errors("DeleteItem", self._timeout):
            await self._client.delete_item(
                TableName=self.table,
                Key={"stream_arn": {"S": WORKERS_KEY}, "shard_id": {"S": worker_id}},
            )


def _key_tuple(element: dict[str, str]) -> tuple[str, str]:
    return (element["AttributeName"], element["KeyType"])


def _describe_keys(schema: list[dict[str, str]]) -> str:
    return ", ".join(f"{e['AttributeName']} {e['KeyType']}" for e in schema)


def _lease_key(lease: Lease) -> dict[str, Any]:
    return {"stream_arn": {"S": lease.stream_arn}, "shard_id": {"S": lease.shard_id}}


def _lease_to_item(lease: Lease) -> dict[str, Any]:
    item = _lease_key(lease)
    item["lease_counter"] = {"N": str(lease.counter)}
    item["checkpoint"] = {"S": lease.checkpoint}
    if lease.parent_shard_id is not None:
        item["parent_shard_id"] = {"S": lease.parent_shard_id}
    if lease.owner is not None:
        item["lease_owner"] = {"S": lease.owner}
    return item


def _lease_from_item(item: dict[str, Any]) -> Lease:
    return Lease(
        stream_arn=item["stream_arn"]["S"],
        shard_id=item["shard_id"]["S"],
        parent_shard_id=item.get("parent_shard_id", {}).get("S"),
        owner=item.get("lease_owner", {}).get("S"),
        counter=int(item["lease_counter"]["N"]),
        checkpoint=item["checkpoint"]["S"],
    )


# -- CloudWatch -----------------------------------------------------------------

#: PutMetricData takes at most 1,000 metric data a call.
METRIC_DATA_PER_CALL = 1000


class CloudWatchMetrics:
    """PutMetricData, in calls of at most ``METRIC_DATA_PER_CALL`` data."""

    def __init__(self, client: Any, *, call_timeout: float) -> None:
        self._client = client
        self._timeout = call_timeout

    async def put_metric_data(self, namespace: str, data: list[dict[str, Any]]) -> None:
        for start in range(0, len(data), METRIC_DATA_PER_CALL):
            async with map_errors("PutMetricData", self._timeout):
                await self._client.put_metric_data(
                    Namespace=namespace, MetricData=data[start:start + METRIC_DATA_PER_CALL]
                )
