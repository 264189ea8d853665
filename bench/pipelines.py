"""The two reference pipelines of the drain benchmark, each run as its own process.

* ``bare``: the floor any replicator pays. One loop per shard of the stream
  (every shard DescribeStream lists, the loops run concurrently): GetRecords
  (Limit 1000) from TRIM_HORIZON, then the page's records as BatchWriteItem
  calls of 25, written concurrently (8 at once over every shard, as many as the
  replicator's default writers), then the shard's next GetRecords. Within a page
  only the last record of each key is written: a batch may not name a key twice,
  and the last image is the one that counts. No leases, no checkpoints, no
  per-key routing, no parsing beyond botocore's and taking the key and the new
  image. moto's streams have one shard: one loop.
* ``naive``: each record applied in stream order by its own PutItem (INSERT,
  MODIFY) or DeleteItem (REMOVE), one call at a time, from the first shard.

    python bench/pipelines.py bare|naive --source URL --destination URL --records N

Both use plain aiobotocore clients, botocore's parsing and serialization and
nothing else (not the replicator's clients, which read and write items in wire
form), with the replicator's client settings but the timeouts: no botocore
retries, no parameter validation; the benchmark's timeout.

Reads until ``--records`` records (over every shard) are applied, then prints one
JSON line:
records, seconds and process CPU seconds (both from after the clients are
open to the last write), write calls, peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from contextlib import AbstractAsyncContextManager
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from harness import (
    BENCH_TIMEOUT,
    DESTINATION,
    SOURCE,
    Stopwatch,
    batches_of,
    local_environment,
    peak_rss_mb,
    run_loop,
    write_all,
)

LIMIT = 1000
CONCURRENCY = 8


def plain_client(url: str, region: str, *, service: str = "dynamodb",
                 max_connections: int = 10) -> AbstractAsyncContextManager[Any]:
    """A plain aiobotocore client: botocore parses and serializes every call. The connect
    timeout covers the wait for a free connection of the pool too, which many shards'
    loops can make long: the benchmark's timeout, as the read's."""
    config = AioConfig(connect_timeout=BENCH_TIMEOUT, read_timeout=BENCH_TIMEOUT,
                       retries={"total_max_attempts": 1}, parameter_validation=False,
                       max_pool_connections=max_connections)
    return AioSession().create_client(service, region_name=region, endpoint_url=url,
                                      config=config)


def key_of(keys: dict[str, Any]) -> tuple[Any, ...]:
    return tuple((name, *value.items()) for name, value in keys.items())


class Budget:
    """The records still to read, over every shard's loop."""

    def __init__(self, records: int) -> None:
        self.left = records


async def shards_of(client: Any, source: Any) -> tuple[str, list[str]]:
    """The source's stream and its shards, every page of DescribeStream."""
    description = (await source.describe_table(TableName=SOURCE.table))["Table"]
    arn = description["LatestStreamArn"]
    shards: list[str] = []
    after: dict[str, str] = {}
    while True:
        stream = (await client.describe_stream(StreamArn=arn, **after))["StreamDescription"]
        shards += [shard["ShardId"] for shard in stream["Shards"]]
        if "LastEvaluatedShardId" not in stream:
            return arn, shards
        after = {"ExclusiveStartShardId": stream["LastEvaluatedShardId"]}


async def pages(streams: Any, arn: str, shard: str, budget: Budget) -> Any:
    """One shard's records, page by page, until ``budget`` has none left."""
    response = await streams.get_shard_iterator(StreamArn=arn, ShardId=shard,
                                                ShardIteratorType="TRIM_HORIZON")
    iterator = response["ShardIterator"]
    while budget.left > 0 and iterator:
        response = await streams.get_records(ShardIterator=iterator, Limit=LIMIT)
        iterator = response.get("NextShardIterator")
        page = response.get("Records", [])[:budget.left]
        if not page:
            if budget.left > 0 and iterator:
                await asyncio.sleep(0.05)
            continue
        budget.left -= len(page)
        yield page


async def bare(streams: Any, source: Any, destination: Any, records: int) -> int:
    calls = 0
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def write(batch: list[dict[str, Any]]) -> None:
        nonlocal calls
        async with semaphore:
            made = await write_all(destination, DESTINATION.table, batch)
        calls += made  # after the await: a += across it would lose other writers' calls

    async def shard_loop(arn: str, shard: str, budget: Budget) -> None:
        async for page in pages(streams, arn, shard, budget):
            last: dict[tuple[Any, ...], dict[str, Any]] = {}
            for record in page:
                body = record["dynamodb"]
                if record["eventName"] == "REMOVE":
                    last[key_of(body["Keys"])] = {"DeleteRequest": {"Key": body["Keys"]}}
                else:
                    last[key_of(body["Keys"])] = {"PutRequest": {"Item": body["NewImage"]}}
            async with asyncio.TaskGroup() as group:
                for batch in batches_of(list(last.values())):
                    group.create_task(write(batch))

    arn, shards = await shards_of(streams, source)
    budget = Budget(records)
    async with asyncio.TaskGroup() as loops:
        for shard in shards:
            loops.create_task(shard_loop(arn, shard, budget))
    return calls


async def naive(streams: Any, source: Any, destination: Any, records: int) -> int:
    calls = 0
    arn, shards = await shards_of(streams, source)
    async for page in pages(streams, arn, shards[0], Budget(records)):
        for record in page:
            body = record["dynamodb"]
            if record["eventName"] == "REMOVE":
                await destination.delete_item(TableName=DESTINATION.table, Key=body["Keys"])
            else:
                await destination.put_item(TableName=DESTINATION.table, Item=body["NewImage"])
            calls += 1
    return calls


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    async with (
        plain_client(args.source, SOURCE.region, service="dynamodbstreams") as streams,
        plain_client(args.source, SOURCE.region) as source,
        plain_client(args.destination, DESTINATION.region,
                     max_connections=CONCURRENCY + 2) as destination,
    ):
        run = bare if args.kind == "bare" else naive
        watch = Stopwatch()
        calls = await run(streams, source, destination, args.records)
        seconds, cpu = watch.seconds, watch.cpu
    return {"records": args.records, "seconds": seconds, "cpu": cpu, "writes": calls,
            "peak_rss_mb": peak_rss_mb(os.getpid())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("bare", "naive"))
    parser.add_argument("--source", required=True, help="source endpoint URL")
    parser.add_argument("--destination", required=True, help="destination endpoint URL")
    parser.add_argument("--records", type=int, required=True,
                        help="records to apply from TRIM_HORIZON")
    args = parser.parse_args(argv)
    local_environment()
    print(json.dumps(run_loop(main_async(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
