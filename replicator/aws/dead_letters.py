"""``DeadLetterStore`` over a DynamoDB table of the task's own (``dead_letter_table``)."""

from __future__ import annotations

import asyncio
import builtins
from typing import TYPE_CHECKING, Any, cast

from replicator import errors
from replicator.aws import codec
from replicator.aws.errors import map_errors
from replicator.aws.table import ensure_own_table
from replicator.dead_letter import DeadLetter, fit_images, without_an_image
from replicator.records import Item, item_size

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

DEAD_LETTER_KEY_SCHEMA: list[KeySchemaElementTypeDef] = [
    {"AttributeName": "destination", "KeyType": "HASH"},
    {"AttributeName": "id", "KeyType": "RANGE"},
]


class DynamoDeadLetterStore:
    """``DeadLetterStore`` over a DynamoDB table keyed by (destination, letter id).

    The table (on-demand billing) is created by the first ``put``; until then the
    store reads as empty. Each letter is one item: its keys and images as maps
    (``keys``, ``new_image``, ``old_image``), beside the scalar fields. Images that
    would take the item past 400 KB are dropped (``fit_images``, measured with
    ``item_size``), and so are those of an item the service still refuses for its size.
    Letters hold wire-form items (``replicator.aws.codec``): botocore is given them in
    its own form and their rows are read back into wire form.
    """

    def __init__(self, client: DynamoDBClient, table: str, *, call_timeout: float) -> None:
        self._client = client
        self.table = table
        self._timeout = call_timeout
        self._ready = False
        self._creating = asyncio.Lock()

    async def ensure_table(self) -> bool:
        """Create the table if absent and wait until it is active.

        Returns True when it was created. Raises ``StartupCheckError`` when a table of
        that name exists with another key schema.
        """
        created = await ensure_own_table(self._client, self.table, DEAD_LETTER_KEY_SCHEMA,
                                         what="dead-letter table",
                                         call_timeout=self._timeout)
        self._ready = True
        return created

    async def put(self, letter: DeadLetter) -> None:
        if not self._ready:
            async with self._creating:
                if not self._ready:
                    await self.ensure_table()
        fitted = fit_images(letter, lambda candidate: item_size(letter_item(candidate)))
        while True:
            try:
                async with map_errors("PutItem", self._timeout):
                    await self._client.put_item(
                        TableName=self.table,
                        Item=cast("dict[str, AttributeValueTypeDef]",
                                  codec.item_to_boto(letter_item(fitted))),
                    )
                return
            except errors.ValidationError as exc:
                # ``item_size`` can fall a few bytes short of the service's count (of
                # numbers, say): the service's own refusal drops the next image.
                smaller = without_an_image(fitted)
                if smaller is None or not _too_large(exc):
                    raise
                fitted = smaller

    async def list(self, destination: str | None = None) -> builtins.list[DeadLetter]:
        rows: builtins.list[Row]
        try:
            if destination is None:
                rows = await self._scan({"TableName": self.table, "ConsistentRead": True})
            else:
                rows = await self._query({
                    "TableName": self.table,
                    "KeyConditionExpression": "#d = :d",
                    "ExpressionAttributeNames": {"#d": "destination"},
                    "ExpressionAttributeValues": {":d": {"S": destination}},
                    "ConsistentRead": True,
                })
        except errors.ResourceNotFoundError:
            return []
        return sorted(map(letter_from_item, rows),
                      key=lambda letter: (letter.destination, letter.id))

    async def delete(self, letter: DeadLetter) -> None:
        try:
            async with map_errors("DeleteItem", self._timeout):
                await self._client.delete_item(
                    TableName=self.table,
                    Key={"destination": {"S": letter.destination}, "id": {"S": letter.id}},
                    ConditionExpression="attribute_exists(#id)",
                    ExpressionAttributeNames={"#id": "id"},
                )
        except (errors.ConditionFailedError, errors.ResourceNotFoundError):
            return  # the row (or the whole table) is gone already

    async def count(self) -> int:
        request: ScanInputTypeDef = {
            "TableName": self.table, "Select": "COUNT", "ConsistentRead": True,
        }
        total = 0
        try:
            while True:
                async with map_errors("Scan", self._timeout):
                    response = await self._client.scan(**request)
                total += response.get("Count", 0)
                last = response.get("LastEvaluatedKey")
                if not last:
                    return total
                request["ExclusiveStartKey"] = last
        except errors.ResourceNotFoundError:
            return 0

    async def _query(self, request: QueryInputTypeDef) -> builtins.list[Row]:
        """Every row a Query finds, following its pages."""
        rows: builtins.list[Row] = []
        while True:
            async with map_errors("Query", self._timeout):
                response = await self._client.query(**request)
            rows.extend(map(codec.item_from_boto, response.get("Items", [])))
            last = response.get("LastEvaluatedKey")
            if not last:
                return rows
            request["ExclusiveStartKey"] = last

    async def _scan(self, request: ScanInputTypeDef) -> builtins.list[Row]:
        """Every row a Scan finds, following its pages."""
        rows: builtins.list[Row] = []
        while True:
            async with map_errors("Scan", self._timeout):
                response = await self._client.scan(**request)
            rows.extend(map(codec.item_from_boto, response.get("Items", [])))
            last = response.get("LastEvaluatedKey")
            if not last:
                return rows
            request["ExclusiveStartKey"] = last


def _too_large(exc: errors.ValidationError) -> bool:
    """Whether the service refused an item for its size ("Item size has exceeded the
    maximum allowed size")."""
    message = str(exc).lower()
    return "size" in message and "exceeded" in message


def letter_item(letter: DeadLetter) -> Item:
    """The item that stores ``letter``."""
    item: Item = {
        "destination": {"S": letter.destination},
        "id": {"S": letter.id},
        "source": {"S": letter.source},
        "shard_id": {"S": letter.shard_id},
        "sequence_number": {"S": letter.sequence_number},
        "event_name": {"S": letter.event_name},
        "keys": {"M": letter.keys},
        "error": {"S": letter.error},
        "stored_at": {"N": repr(letter.stored_at)},
        "images_dropped": {"BOOL": letter.images_dropped},
    }
    if letter.new_image is not None:
        item["new_image"] = {"M": letter.new_image}
    if letter.old_image is not None:
        item["old_image"] = {"M": letter.old_image}
    return item


def letter_from_item(item: Row) -> DeadLetter:
    """The letter an item stores."""
    new_image = item.get("new_image")
    old_image = item.get("old_image")
    return DeadLetter(
        destination=item["destination"]["S"],
        source=item["source"]["S"],
        shard_id=item["shard_id"]["S"],
        sequence_number=item["sequence_number"]["S"],
        event_name=item["event_name"]["S"],
        keys=item["keys"]["M"],
        new_image=new_image["M"] if new_image is not None else None,
        old_image=old_image["M"] if old_image is not None else None,
        error=item["error"]["S"],
        stored_at=float(item["stored_at"]["N"]),
        images_dropped=bool(item.get("images_dropped", {}).get("BOOL", False)),
    )
