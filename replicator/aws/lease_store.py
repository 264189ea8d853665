"""``LeaseStore`` over the checkpoint table, a DynamoDB table of the task's own."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from replicator import errors
from replicator.aws.errors import map_errors
from replicator.aws.table import ensure_own_table
from replicator.lease import WORKERS_KEY, Lease, WorkerRow

if TYPE_CHECKING:

    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import (
        AttributeValueTypeDef,
        KeySchemaElementTypeDef,
        QueryInputTypeDef,
        ScanInputTypeDef,
    )

#: A row as DynamoDB answers it.
Row = dict[str, Any]

LEASE_KEY_SCHEMA: list[KeySchemaElementTypeDef] = [
    {"AttributeName": "stream_arn", "KeyType": "HASH"},
    {"AttributeName": "shard_id", "KeyType": "RANGE"},
]


class DynamoLeaseStore:
    """``LeaseStore`` over a DynamoDB table keyed by (stream ARN, shard id).

    The stream ARN in the key keeps the rows of a re-created source table (a new
    stream, whose shard ids may repeat) apart from the old ones.
    """

    def __init__(self, client: DynamoDBClient, table: str, *, call_timeout: float) -> None:
        self._client = client
        self.table = table
        self._timeout = call_timeout

    async def ensure_table(self) -> bool:
        """Create the table if absent (on-demand billing) and wait until it is active.

        Returns True when it was created. Raises ``StartupCheckError`` when a
        table of that name exists with another key schema.
        """
        return await ensure_own_table(self._client, self.table, LEASE_KEY_SCHEMA,
                                      what="checkpoint table", call_timeout=self._timeout)

    async def list_leases(self, stream_arn: str) -> list[Lease]:
        request: QueryInputTypeDef = {
            "TableName": self.table,
            "KeyConditionExpression": "stream_arn = :arn",
            "ExpressionAttributeValues": {":arn": {"S": stream_arn}},
            "ConsistentRead": True,
        }
        return [_lease_from_item(item) for item in await self._query(request)]

    async def _query(self, request: QueryInputTypeDef) -> list[Row]:
        """Every row a Query finds, following its pages."""
        rows: list[Row] = []
        while True:
            async with map_errors("Query", self._timeout):
                response = await self._client.query(**request)
            rows.extend(cast(list[Row], response.get("Items", [])))
            last = response.get("LastEvaluatedKey")
            if not last:
                return rows
            request["ExclusiveStartKey"] = last

    async def scan_rows(self) -> list[dict[str, Any]]:
        """Every row of the table, of every stream, as plain values (for ``status``)."""
        rows: list[dict[str, Any]] = []
        request: ScanInputTypeDef = {"TableName": self.table, "ConsistentRead": True}
        while True:
            async with map_errors("Scan", self._timeout):
                response = await self._client.scan(**request)
            for item in cast(list[Row], response.get("Items", [])):
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
                    "checkpoints": dict(lease.checkpoints),
                    "owner_switches": int(item.get("owner_switches", {}).get("N", 0)),
                    "updated_at": item.get("updated_at", {}).get("S"),
                })
            last = response.get("LastEvaluatedKey")
            if not last:
                return rows
            request["ExclusiveStartKey"] = last

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
        self, lease: Lease, *, new_owner: str | None, checkpoint: str | None = None,
        checkpoints: Mapping[str, str] | None = None,
    ) -> Lease:
        names = {"#c": "lease_counter", "#o": "lease_owner", "#u": "updated_at"}
        values: dict[str, AttributeValueTypeDef] = {
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
        if checkpoints is not None:
            names["#cps"] = "checkpoints"
            sets.append("#cps = :checkpoints")
            values[":checkpoints"] = {"M": {name: {"S": value}
                                            for name, value in checkpoints.items()}}
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
        return lease.after_update(new_owner=new_owner, checkpoint=checkpoint,
                                  checkpoints=checkpoints)

    async def delete_lease(self, lease: Lease) -> None:
        async with map_errors("DeleteItem", self._timeout):
            await self._client.delete_item(
                TableName=self.table,
                Key=_lease_key(lease),
                ConditionExpression="lease_counter = :expected",
                ExpressionAttributeValues={":expected": {"N": str(lease.counter)}},
            )


    # -- the workers' rows (``replicator.ops.heartbeat``) ------------------------------

    async def put_worker(self, row: WorkerRow) -> None:
        item: dict[str, AttributeValueTypeDef] = {
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
        if row.destinations:
            item["destinations"] = {"SS": list(row.destinations)}
        async with map_errors("PutItem", self._timeout):
            await self._client.put_item(TableName=self.table, Item=item)

    async def list_workers(self) -> list[WorkerRow]:
        request: QueryInputTypeDef = {
            "TableName": self.table,
            "KeyConditionExpression": "stream_arn = :workers",
            "ExpressionAttributeValues": {":workers": {"S": WORKERS_KEY}},
            "ConsistentRead": True,
        }
        return [
            WorkerRow(
                worker_id=item["shard_id"]["S"],
                host=item.get("host", {}).get("S", ""),
                pid=int(item.get("pid", {}).get("N", 0)),
                phase=item.get("phase", {}).get("S", ""),
                leases=int(item.get("leases", {}).get("N", 0)),
                metrics=item.get("metrics", {}).get("S"),
                started_at=float(item.get("started_at", {}).get("N", 0)),
                heartbeat_at=float(item.get("heartbeat_at", {}).get("N", 0)),
                destinations=tuple(sorted(item.get("destinations", {}).get("SS", []))),
            )
            for item in await self._query(request)
        ]

    async def delete_worker(self, worker_id: str) -> None:
        async with map_errors("DeleteItem", self._timeout):
            await self._client.delete_item(
                TableName=self.table,
                Key={"stream_arn": {"S": WORKERS_KEY}, "shard_id": {"S": worker_id}},
            )


def _lease_key(lease: Lease) -> dict[str, AttributeValueTypeDef]:
    return {"stream_arn": {"S": lease.stream_arn}, "shard_id": {"S": lease.shard_id}}


def _lease_to_item(lease: Lease) -> dict[str, AttributeValueTypeDef]:
    item = _lease_key(lease)
    item["lease_counter"] = {"N": str(lease.counter)}
    item["checkpoint"] = {"S": lease.checkpoint}
    if lease.parent_shard_id is not None:
        item["parent_shard_id"] = {"S": lease.parent_shard_id}
    if lease.owner is not None:
        item["lease_owner"] = {"S": lease.owner}
    if lease.checkpoints:
        item["checkpoints"] = {"M": {name: {"S": value} for name, value in lease.checkpoints}}
    return item


def _lease_from_item(item: Row) -> Lease:
    return Lease(
        stream_arn=item["stream_arn"]["S"],
        shard_id=item["shard_id"]["S"],
        parent_shard_id=item.get("parent_shard_id", {}).get("S"),
        owner=item.get("lease_owner", {}).get("S"),
        counter=int(item["lease_counter"]["N"]),
        checkpoint=item["checkpoint"]["S"],
        checkpoints=tuple(sorted(
            (name, value["S"]) for name, value in item.get("checkpoints", {}).get("M", {}).items()
        )),
    )
