"""Compare two tables' items: what the demo and the tests use to prove replication."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from replicator.aws import map_errors
from replicator.records import Item, KeyId, key_id


def normalize(value: Any) -> Any:
    """A comparable form of a wire attribute value: sets are unordered, so sort them."""
    if isinstance(value, dict):
        out = {}
        for type_, inner in value.items():
            if type_ in ("SS", "NS", "BS"):
                out[type_] = sorted(inner)
            else:
                out[type_] = normalize(inner)
        return out
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


@dataclass
class TableDiff:
    """Keys missing from, extra in, and different at the destination."""

    source_items: int = 0
    destination_items: int = 0
    missing: list[KeyId] = field(default_factory=list)
    extra: list[KeyId] = field(default_factory=list)
    different: list[KeyId] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.different)

    def summary(self) -> str:
        if self.equal:
            return f"equal: {self.source_items} items in each table"
        return (
            f"NOT equal: {len(self.missing)} missing, {len(self.extra)} extra, "
            f"{len(self.different)} different (source {self.source_items} items, "
            f"destination {self.destination_items})"
        )


def diff_items(source: dict[KeyId, Item], destination: dict[KeyId, Item]) -> TableDiff:
    diff = TableDiff(source_items=len(source), destination_items=len(destination))
    for key, item in source.items():
        other = destination.get(key)
        if other is None:
            diff.missing.append(key)
        elif normalize(other) != normalize(item):
            diff.different.append(key)
    diff.extra = [key for key in destination if key not in source]
    return diff


async def scan_pages(
    client: Any, table: str, key_names: list[str], *, call_timeout: float = 30.0
) -> AsyncIterator[list[Item]]:
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        async with map_errors("Scan", call_timeout):
            response = await client.scan(**kwargs)
        yield response.get("Items", [])
        last = response.get("LastEvaluatedKey")
        if not last:
            return
        kwargs["ExclusiveStartKey"] = last


async def read_table(client: Any, table: str, key_names: list[str]) -> dict[KeyId, Item]:
    items: dict[KeyId, Item] = {}
    async for page in scan_pages(client, table, key_names):
        for item in page:
            items[key_id({name: item[name] for name in key_names})] = item
    return items


async def compare_tables(
    source: Any, source_table: str, destination: Any, destination_table: str,
    key_names: list[str],
) -> TableDiff:
    return diff_items(
        await read_table(source, source_table, key_names),
        await read_table(destination, destination_table, key_names),
    )
