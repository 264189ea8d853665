"""A random workload on a source table: puts, updates, deletes and batch writes.

Items carry every DynamoDB attribute type (S, N, B, SS, NS, BS, M, L, BOOL,
NULL). Used by the demo, the integration tests and the benchmarks, and on its
own as ``python -m replicator.dev.workload`` (docker/compose.yaml's generator): it
creates the source table with a NEW_AND_OLD_IMAGES stream and the destination
table when they are absent, then writes until stopped or done.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from replicator.aws.clients import Endpoint, open_dynamodb
from replicator.aws.table import describe_table
from replicator.dev.local import LOCAL_CREDENTIALS
from replicator.records import Item

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import (
        AttributeDefinitionTypeDef,
        CreateTableInputTypeDef,
        KeySchemaElementTypeDef,
        WriteRequestTypeDef,
    )

KEY_SCHEMA: list[KeySchemaElementTypeDef] = [
    {"AttributeName": "pk", "KeyType": "HASH"},
    {"AttributeName": "sk", "KeyType": "RANGE"},
]
ATTRIBUTES: list[AttributeDefinitionTypeDef] = [
    {"AttributeName": "pk", "AttributeType": "S"},
    {"AttributeName": "sk", "AttributeType": "N"},
]
KEY_NAMES = ["pk", "sk"]


async def create_table(client: DynamoDBClient, table: str, *, stream: bool) -> str | None:
    """A table keyed by (pk S, sk N); with a NEW_AND_OLD_IMAGES stream if asked. Returns its ARN."""
    request: CreateTableInputTypeDef = {
        "TableName": table,
        "KeySchema": KEY_SCHEMA,
        "AttributeDefinitions": ATTRIBUTES,
        "BillingMode": "PAY_PER_REQUEST",
    }
    if stream:
        request["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
    response = await client.create_table(**request)
    return response["TableDescription"].get("LatestStreamArn")


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


def random_key(rng: random.Random, keys: int, lane: int = 0, lanes: int = 1) -> Item:
    """One of ``keys`` keys; with ``lanes``, one of those whose number is ``lane``
    modulo ``lanes``."""
    k = rng.randrange(max(1, keys // lanes)) * lanes + lane
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


async def one_operation(client: DynamoDBClient, table: str, rng: random.Random, keys: int,
                        rich: float = 1.0, lane: int = 0, lanes: int = 1) -> str:
    choice = rng.random()
    key = random_key(rng, keys, lane, lanes)
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
    batch: dict[tuple[str, str], WriteRequestTypeDef] = {}
    for _ in range(rng.randint(2, 10)):
        k = random_key(rng, keys, lane, lanes)
        ident = (k["pk"]["S"], k["sk"]["N"])
        if rng.random() < 0.8:
            batch[ident] = {"PutRequest": {"Item": some_item(rng, k, rich)}}
        else:
            batch[ident] = {"DeleteRequest": {"Key": k}}
    await client.batch_write_item(RequestItems={table: list(batch.values())})
    return "batch"


async def run_workload(
    client: DynamoDBClient,
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
    """Write at about ``rate`` operations a second for ``seconds`` or ``operations``.

    The ``concurrency`` workers write disjoint sets of keys. moto stores a write in
    its table and appends its stream record in two steps, so two writes of one key
    at once could reach its stream in the other order than its table; DynamoDB
    orders them, so the workload never asks moto to.
    """
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
            kind = await one_operation(client, table, local, keys, rich, index, concurrency)
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


# -- python -m replicator.dev.workload --------------------------------------------------


async def ensure_table(
    client: DynamoDBClient, table: str, *, stream: bool, within: float = 120.0
) -> bool:
    """Create ``table`` (keyed like the workload's items) when absent, and wait until
    it is ACTIVE. Returns True when it was created."""
    description = await describe_table(client, table, call_timeout=30.0)
    created = description is None
    if created:
        await create_table(client, table, stream=stream)
    deadline = time.monotonic() + within
    while description is None or description.get("TableStatus") != "ACTIVE":
        if time.monotonic() > deadline:
            raise TimeoutError(f"table {table} is not ACTIVE after {within:g}s")
        await asyncio.sleep(0 if description is None else 1.0)
        description = await describe_table(client, table, call_timeout=30.0)
    return created


def parser() -> argparse.ArgumentParser:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    command = argparse.ArgumentParser(
        prog="python -m replicator.dev.workload",
        description="Write a random workload (puts, updates, deletes, batch writes; every "
        "attribute type) to a source table, creating it with a NEW_AND_OLD_IMAGES stream "
        "when absent, and the destination table with the same key schema when one is named. "
        "Without --operations or --seconds it writes until SIGTERM or SIGINT. When every "
        "table has an endpoint (a local server such as moto), dummy credentials are used "
        "unless AWS credentials are set.",
    )
    command.add_argument("--endpoint", help="source DynamoDB endpoint URL (default: AWS's)")
    command.add_argument("--region", default=region, required=region is None,
                         help="source region (default: AWS_REGION)")
    command.add_argument("--table", required=True, help="source table")
    command.add_argument("--destination-endpoint",
                         help="destination DynamoDB endpoint URL (default: AWS's)")
    command.add_argument("--destination-region",
                         help="destination region (default: the source region)")
    command.add_argument("--destination-table",
                         help="destination table to create when absent (default: none)")
    command.add_argument("--create-only", action="store_true",
                         help="create the tables, then exit without writing")
    command.add_argument("--rate", type=float, default=50.0, help="operations per second")
    limit = command.add_mutually_exclusive_group()
    limit.add_argument("--operations", type=int, help="stop after this many operations")
    limit.add_argument("--seconds", type=float, help="stop after this many seconds")
    command.add_argument("--keys", type=int, default=400, help="distinct item keys")
    command.add_argument("--seed", type=int, default=7, help="random seed")
    return command


def say(message: str) -> None:
    print(f"workload: {message}", flush=True)


async def _stop_on_signals(task: asyncio.Task[Any]) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)


async def run_cli(options: argparse.Namespace) -> int:
    local = options.endpoint is not None and (
        options.destination_table is None or options.destination_endpoint is not None
    )
    if local:
        for name, value in LOCAL_CREDENTIALS.items():
            os.environ.setdefault(name, value)
    source_endpoint = Endpoint("dynamodb", options.region, options.endpoint)
    async with open_dynamodb(source_endpoint, call_timeout=30.0) as source:
        created = await ensure_table(source, options.table, stream=True)
        say(f"source table {options.table} {'created' if created else 'exists'}")
        if options.destination_table is not None:
            destination_endpoint = Endpoint(
                "dynamodb", options.destination_region or options.region,
                options.destination_endpoint,
            )
            async with open_dynamodb(destination_endpoint, call_timeout=30.0) as destination:
                created = await ensure_table(destination, options.destination_table,
                                             stream=False)
            say(f"destination table {options.destination_table} "
                f"{'created' if created else 'exists'}")
        if options.create_only:
            return 0
        until = (f"{options.operations} operations" if options.operations is not None
                 else f"{options.seconds:g}s" if options.seconds is not None
                 else "SIGTERM or SIGINT")
        say(f"writing about {options.rate:g} operations/s to {options.table} until {until}")
        task = asyncio.create_task(run_workload(
            source, options.table, seconds=options.seconds, operations=options.operations,
            rate=options.rate, keys=options.keys, seed=options.seed,
        ))
        await _stop_on_signals(task)
        started = time.monotonic()
        with contextlib.suppress(asyncio.CancelledError):
            result = await task
            kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(result.by_kind.items()))
            say(f"wrote {result.operations} operations in {time.monotonic() - started:.1f}s "
                f"({kinds})")
            return 0
        say("stopped")
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    options = parser().parse_args(argv)
    try:
        return asyncio.run(run_cli(options))
    except Exception as exc:  # one line, not a traceback: this is a command-line tool
        print(f"workload: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
