"""A destination made like its source (``replicator.aws.schema.create_like``), on moto
and on DynamoDB Local: the same keys, indexes, projections and billing mode, and the
source's time to live; no stream."""

from __future__ import annotations

from typing import Any

import pytest

from replicator.aws.schema import create_like, missing_indexes, time_to_live_attribute
from replicator.aws.table import describe_table
from replicator.clock import SYSTEM_CLOCK

from .conftest import Clients, fresh_name, on_backends, unplayable

pytestmark = pytest.mark.asyncio(loop_scope="session")

NO_TABLES = unplayable("the fakes have no table definitions")


def indexed(name: str) -> dict[str, Any]:
    return {
        "TableName": name,
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                      {"AttributeName": "sk", "KeyType": "RANGE"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                 {"AttributeName": "sk", "AttributeType": "N"},
                                 {"AttributeName": "g", "AttributeType": "S"}],
        "GlobalSecondaryIndexes": [{
            "IndexName": "by-g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["a"]},
        }],
        "LocalSecondaryIndexes": [{
            "IndexName": "by-g-local",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                          {"AttributeName": "g", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }],
        "BillingMode": "PAY_PER_REQUEST",
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    }


def shape(description: dict[str, Any]) -> dict[str, Any]:
    def index(entry: dict[str, Any]) -> tuple[Any, ...]:
        projection = entry["Projection"]
        return (entry["IndexName"], [(k["AttributeName"], k["KeyType"])
                                     for k in entry["KeySchema"]],
                projection["ProjectionType"], sorted(projection.get("NonKeyAttributes", [])))

    return {
        "keys": description["KeySchema"],
        "attributes": sorted((d["AttributeName"], d["AttributeType"])
                             for d in description["AttributeDefinitions"]),
        "global": sorted(map(index, description.get("GlobalSecondaryIndexes") or [])),
        "local": sorted(map(index, description.get("LocalSecondaryIndexes") or [])),
        "billing": (description.get("BillingModeSummary") or {}).get("BillingMode"),
    }


async def source_table(clients: Clients | None, *, expires: str | None = None,
                       ) -> tuple[Any, str, dict[str, Any]]:
    """A new indexed source table (with its time to live on ``expires``): its server's
    client, its name and its description."""
    assert clients is not None
    client = clients.dynamodb
    name = fresh_name("like-source")
    await client.create_table(**indexed(name))
    if expires is not None:
        await client.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": expires})
    description = await describe_table(client, name, call_timeout=10)
    assert description is not None
    return client, name, description


@on_backends(fake=NO_TABLES)
async def test_a_table_made_like_its_source_has_its_keys_indexes_billing_and_ttl(
    clients: Clients | None,
) -> None:
    client, source_name, source = await source_table(clients, expires="expires")
    copy_name = fresh_name("like-copy")
    ttl = await time_to_live_attribute(client, source_name, call_timeout=10)
    assert ttl == "expires"

    made = await create_like(client, source, copy_name, time_to_live=ttl, call_timeout=10,
                             clock=SYSTEM_CLOCK)
    assert made["TableStatus"] == "ACTIVE"
    assert shape(made) == shape(source)
    assert missing_indexes(source, made) == []
    assert not (made.get("StreamSpecification") or {}).get("StreamEnabled")
    assert await time_to_live_attribute(client, copy_name, call_timeout=10) == "expires"


@on_backends(fake=NO_TABLES)
async def test_a_table_made_again_by_another_worker_is_taken_as_it_is(
    clients: Clients | None,
) -> None:
    client, _, source = await source_table(clients)
    copy_name = fresh_name("like-copy")
    first = await create_like(client, source, copy_name, time_to_live=None, call_timeout=10,
                              clock=SYSTEM_CLOCK)
    again = await create_like(client, source, copy_name, time_to_live=None, call_timeout=10,
                              clock=SYSTEM_CLOCK)
    assert shape(again) == shape(first)
    assert await time_to_live_attribute(client, copy_name, call_timeout=10) is None
