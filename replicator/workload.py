"""A random workload on a source table: puts, updates, deletes and batch writes.

Items carry every DynamoDB attribute type (S, N, B, SS, NS, BS, M, L, BOOL,
NULL). Used by the demo, the integration tests and the benchmarks.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from replicator.records import Item

KEY_SCHEMA = [
    {"AttributeName": "pk", "KeyType": "HASH"},
    {"AttributeName": "sk", "KeyType": "RANGE"},
]
ATTRIBUTES = [
    {"AttributeName": "pk", "AttributeType": "S"},
    {"AttributeName": "sk", "AttributeType": "N"},
]
KEY_NAMES = ["pk", "sk"]


async def create_table(client: Any, table: str, *, stream: bool) -> str | None:
    """A table keyed by (pk S, sk N); with a NEW_AND_OLD_IMAGES stream if asked. Returns its ARN."""
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeySchema": KEY_SCHEMA,
        "AttributeDefinitions": ATTRIBUTES,
        "BillingMode": "PAY_PER_REQUEST",
    }
    if stream:
        kwargs["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
    response = await client.create_table(**kwargs)
    arn: str | None = response["TableDescription"].get("LatestStreamArn")
    return arn


def random_item(rng: random.Random, key: Item) -> Item:
    """An item with every attribute type."""
    n = rng.randint(0, 10**6)
    return {
        **key,
        "s": {"S": f"text-{n}-" + "x" * rng.randint(0, 40)},
        "n": {"N": str(rng.choice([n, -n, n // 7]))},
        "f": {"N": f"{n}.{rng.randint(1, 9)}"},
        "b": {"B": rng.randbytes(rng.randint(1, 32))},
        "ss": {"SS": sorted({f"tag{rng.randint(0, 20)}" for _ in range(rng.randint(1, 4))})},
        "ns": {"NS": sorted({str(rng.randint(-50, 50)) for _ in range(rng.randint(1, 4))})},
        "bs": {"BS": sorted({rng.randbytes(4) for _ in range(rng.randint(1, 3))})},
        "m": {"M": {"nested": {"S": "yes"}, "count": {"N": str(n % 100)},
                    "list": {"L": [{"N": "1"}, {"S": "two"}]}}},
        "l": {"L": [{"S": "a"}, {"N": str(n % 13)}, {"BOOL": True}, {"NULL": True},
                    {"M": {"deep": {"SS": ["p", "q"]}}}]},
        "bool": {"BOOL": rng.random() < 0.5},
        "null": {"NULL": True},
    }


def random_key(rng: random.Random, keys: int) -> Item:
    k = rng.randrange(keys)
    return {"pk": {"S": f"user-{k % max(1, keys // 4)}"}, "sk": {"N": str(k)}}


@dataclass
class WorkloadResult:
    operations: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def some_item(rng: random.Random, key: Item, rich: float) -> Item:
    """An item with every attribute type (a ``rich`` fraction of the time), else a small
    one: moto takes milliseconds to store and stream a rich item."""
    if rng.random() < rich:
        return random_item(rng, key)
    return {**key, "s": {"S": f"small-{rng.randint(0, 10**6)}"}}


async def one_operation(client: Any, table: str, rng: random.Random, keys: int,
                        rich: float = 1.0) -> str:
    choice = rng.random()
    key = random_key(rng, keys)
    if choice < 0.45:
        await client.put_item(TableName=table, Item=some_item(rng, key, rich))
        return "put"
    if choice < 0.70:
        # Top-level paths only, so the update also works on an absent item (an upsert).
        await client.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET #s = :s, #c = :c ADD #ns :ns REMOVE #null",
            ExpressionAttributeNames={"#s": "s", "#c": "count", "#ns": "ns", "#null": "null"},
            ExpressionAttributeValues={
                ":s": {"S": f"updated-{rng.random()}"},
                ":c": {"N": str(rng.randint(0, 99))},
                ":ns": {"NS": [str(rng.randint(100, 120))]},
            },
        )
        return "update"
    if choice < 0.85:
        await client.delete_item(TableName=table, Key=key)
        return "delete"
    batch: dict[tuple[str, str], dict[str, Any]] = {}
    for _ in range(rng.randint(2, 10)):
        k = random_key(rng, keys)
        ident = (k["pk"]["S"], k["sk"]["N"])
        if rng.random() < 0.8:
            batch[ident] = {"PutRequest": {"Item": some_item(rng, k, rich)}}
        else:
            batch[ident] = {"DeleteRequest": {"Key": k}}
    await client.batch_write_item(RequestItems={table: list(batch.values())})
    return "batch"


async def run_workload(
    client: Any,
    table: str,
    *,
    seconds: float | None = None,
    operations: int | None = None,
    rate: float = 200.0,
    keys: int = 400,
    seed: int = 7,
    concurrency: int = 4,
    rich: float = 1.0,
) -> WorkloadResult:
    """Write at about ``rate`` operations a second for ``seconds`` or ``operations``."""
    rng = random.Random(seed)
    result = WorkloadResult()
    start = time.monotonic()
    lock = asyncio.Lock()
    interval = concurrency / rate if rate > 0 else 0.0

    async def worker(index: int) -> None:
        local = random.Random(rng.random() + index)
        next_at = time.monotonic()
        while True:
            async with lock:
                if operations is not None and result.operations >= operations:
                    return
                if seconds is not None and time.monotonic() - start >= seconds:
                    return
                result.operations += 1
            kind = await one_operation(client, table, local, keys, rich)
            async with lock:
                result.by_kind[kind] = result.by_kind.get(kind, 0) + 1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async with asyncio.TaskGroup() as group:
        for index in range(concurrency):
            group.create_task(worker(index))
    return result
