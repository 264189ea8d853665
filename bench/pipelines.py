"""The two reference pipelines of the drain benchmark, each run as its own process.

* ``bare``: the floor any replicator pays. One loop: GetRecords (Limit 1000)
  from TRIM_HORIZON, then the page's records as BatchWriteItem calls of 25,
  written concurrently (8 at once, as many as the replicator's default
  writers), then the next GetRecords. Within a page only the last record of
  each key is written: a batch may not name a key twice, and the last image is
  the one that counts. No leases, no checkpoints, no per-key routing, no
  parsing beyond taking the key and the new image.
* ``naive``: each record applied in stream order by its own PutItem (INSERT,
  MODIFY) or DeleteItem (REMOVE), one call at a time.

    python bench/pipelines.py bare|naive --source URL --destination URL --records N

Reads until ``--records`` records are applied, then prints one JSON line:
records, seconds and process CPU seconds (both from after the clients are
open to the last write), write calls, peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from harness import (
    DESTINATION,
    SOURCE,
    Stopwatch,
    aws_client,
    batches_of,
    local_environment,
    peak_rss_mb,
    run_loop,
    write_all,
)

LIMIT = 1000
CONCURRENCY = 8


def key_of(keys: dict[str, Any]) -> tuple[Any, ...]:
    return tuple((name, *value.items()) for name, value in keys.items())


async def open_iterator(client: Any, source: Any) -> str:
    description = (await source.describe_table(TableName=SOURCE.table))["Table"]
    arn = description["LatestStreamArn"]
    stream = (await client.describe_stream(StreamArn=arn))["StreamDescription"]
    shard = stream["Shards"][0]["ShardId"]
    response = await client.get_shard_iterator(StreamArn=arn, ShardId=shard,
                                               ShardIteratorType="TRIM_HORIZON")
    return str(response["ShardIterator"])


async def pages(streams: Any, source: Any, records: int) -> Any:
    """Up to ``records`` records, page by page."""
    iterator = await open_iterator(streams, source)
    read = 0
    while read < records:
        response = await streams.get_records(ShardIterator=iterator, Limit=LIMIT)
        iterator = response["NextShardIterator"]
        page = response.get("Records", [])[:records - read]
        if not page:
            await asyncio.sleep(0.05)
            continue
        read += len(page)
        yield page


async def bare(streams: Any, source: Any, destination: Any, records: int) -> int:
    calls = 0
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def write(batch: list[dict[str, Any]]) -> None:
        nonlocal calls
        async with semaphore:
            made = await write_all(destination, DESTINATION.table, batch)
        calls += made  # after the await: a += across it would lose other writers' calls

    async for page in pages(streams, source, records):
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
    return calls


async def naive(streams: Any, source: Any, destination: Any, records: int) -> int:
    calls = 0
    async for page in pages(streams, source, records):
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
        aws_client(args.source, SOURCE.region, service="dynamodbstreams") as streams,
        aws_client(args.source, SOURCE.region) as source,
        aws_client(args.destination, DESTINATION.region,
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
