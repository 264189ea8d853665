"""``REPLICATOR_DESTINATION_CREATE``: a destination that does not exist is created like
its source (keys, secondary indexes and their projections, billing mode, time to live;
no stream), then copied and replicated; an existing one that lacks an index of the
source gets a warning naming it."""

from __future__ import annotations

import random
import signal
from collections.abc import Callable
from typing import Any

from replicator.dev.workload import KEY_NAMES

from .conftest import (
    DEADLINE,
    DESTINATION_TABLE,
    SOURCE_TABLE,
    ReplicatorProcess,
    Servers,
    create_table,
    environment_for,
    fill_table,
    numbered_item,
    wait_equal,
)

INDEXED = {
    "TableName": SOURCE_TABLE,
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                  {"AttributeName": "sk", "KeyType": "RANGE"}],
    "AttributeDefinitions": [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "N"},
        {"AttributeName": "s", "AttributeType": "S"},
        {"AttributeName": "v", "AttributeType": "N"},
    ],
    "GlobalSecondaryIndexes": [{
        "IndexName": "by-s",
        "KeySchema": [{"AttributeName": "s", "KeyType": "HASH"}],
        "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["v"]},
        "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 3},
    }],
    "LocalSecondaryIndexes": [{
        "IndexName": "by-v",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                      {"AttributeName": "v", "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "KEYS_ONLY"},
    }],
    "BillingMode": "PROVISIONED",
    "ProvisionedThroughput": {"ReadCapacityUnits": 7, "WriteCapacityUnits": 4},
    "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
}


def indexes(description: dict[str, Any], kind: str) -> list[tuple[Any, ...]]:
    return sorted(
        (index["IndexName"], tuple((k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]),
         index["Projection"]["ProjectionType"],
         tuple(sorted(index["Projection"].get("NonKeyAttributes", []))))
        for index in description.get(kind, []))


async def test_a_missing_destination_is_created_like_its_source_then_replicated(
    servers: Servers, source: Any, destination: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await source.create_table(**INDEXED)
    await source.update_time_to_live(
        TableName=SOURCE_TABLE,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"})
    rng = random.Random(14)
    await fill_table(source, [numbered_item(rng, i) for i in range(60)])

    worker = spawn("creator", environment_for(servers, destination_create="true"))
    await worker.wait_for_event("destination table created")
    await fill_table(source, [numbered_item(rng, i) for i in range(60, 90)])
    await wait_equal(source, destination, KEY_NAMES, processes=[worker])
    worker.send(signal.SIGTERM)
    assert await worker.wait(within=DEADLINE) == 0, worker.report()

    made = (await destination.describe_table(TableName=DESTINATION_TABLE))["Table"]
    like = (await source.describe_table(TableName=SOURCE_TABLE))["Table"]
    assert made["KeySchema"] == like["KeySchema"]
    assert sorted(map(str, made["AttributeDefinitions"])) == sorted(
        map(str, like["AttributeDefinitions"]))
    assert indexes(made, "GlobalSecondaryIndexes") == [
        ("by-s", (("s", "HASH"),), "INCLUDE", ("v",))]
    assert indexes(made, "LocalSecondaryIndexes") == [
        ("by-v", (("pk", "HASH"), ("v", "RANGE")), "KEYS_ONLY", ())]
    assert made["ProvisionedThroughput"]["ReadCapacityUnits"] == 7
    assert made["ProvisionedThroughput"]["WriteCapacityUnits"] == 4
    assert not (made.get("StreamSpecification") or {}).get("StreamEnabled")
    ttl = (await destination.describe_time_to_live(
        TableName=DESTINATION_TABLE))["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires")


async def test_a_missing_destination_without_the_setting_is_an_error_naming_it(
    servers: Servers, source: Any, spawn: Callable[..., ReplicatorProcess],
) -> None:
    await create_table(source, SOURCE_TABLE, stream="NEW_AND_OLD_IMAGES")
    worker = spawn("refused", environment_for(servers))
    assert await worker.wait(within=DEADLINE) == 2
    assert "set REPLICATOR_DESTINATION_CREATE=true to have it created" in worker.stderr()


async def test_an_existing_destination_lacking_an_index_of_the_source_gets_a_warning(
    servers: Servers, source: Any, destination: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await source.create_table(**INDEXED)
    await create_table(destination, DESTINATION_TABLE)
    worker = spawn("warned", environment_for(servers, destination_create="true"))
    await worker.wait_for_event("shard started")
    worker.send(signal.SIGTERM)
    assert await worker.wait(within=DEADLINE) == 0, worker.report()
    warned = worker.events("the destination lacks an index of the source")
    assert sorted(line["index"] for line in warned) == ["by-s", "by-v"]
    assert worker.events("destination table created") == []
