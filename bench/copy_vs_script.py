"""The bootstrap copy against a plain boto3 script, on moto, side by side.

Two local moto servers, a source and a destination. The source table (with a
stream, as the replicator requires) holds ``--items`` items of about 1 KB with
every attribute type. Each round copies it twice into a fresh destination
table, in an order that alternates between rounds:

* the script: ``bench/plain_copy.py`` (4 Scan segments, one thread each,
  BatchWriteItem of 25, no call timeout);
* the product: ``python -m replicator copy`` with its default settings (a
  fresh task name each time, so each copies from scratch).

Each is timed from process start to exit; the destination must then hold every
item. moto's Scan is far slower than DynamoDB's (it serializes every item it
returns on one core), which is what this measures: how the copy behaves on a
slow endpoint, where a call that times out and is asked again multiplies the
server's work.

    .venv/bin/python bench/copy_vs_script.py [--items N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_common import code_version, local_environment

from replicator.aws.clients import Endpoint, open_client
from replicator.dev.local import MotoServer
from replicator.dev.workload import random_item

ROOT = Path(__file__).resolve().parent.parent
SOURCE_TABLE = "copy-source"
TARGET = 1.2


def make_item(rng: random.Random, index: int) -> dict[str, Any]:
    """About 1 KB with every attribute type."""
    item = random_item(rng, {"pk": {"S": f"user-{index // 2:06d}"}, "sk": {"N": str(index % 2)}})
    item["pad"] = {"S": "p" * 700}
    return item


async def create(client: Any, table: str, *, stream: bool) -> None:
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                      {"AttributeName": "sk", "KeyType": "RANGE"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                 {"AttributeName": "sk", "AttributeType": "N"}],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if stream:
        kwargs["StreamSpecification"] = {"StreamEnabled": True,
                                         "StreamViewType": "NEW_AND_OLD_IMAGES"}
    await client.create_table(**kwargs)


async def fill(client: Any, items: int) -> None:
    rng = random.Random(7)
    batches = [[{"PutRequest": {"Item": make_item(rng, i)}}
                for i in range(start, min(items, start + 25))]
               for start in range(0, items, 25)]

    async def writer() -> None:
        while batches:
            requests = batches.pop()
            while requests:
                answer = await client.batch_write_item(RequestItems={SOURCE_TABLE: requests})
                requests = answer.get("UnprocessedItems", {}).get(SOURCE_TABLE, [])

    async with asyncio.TaskGroup() as group:
        for _ in range(8):
            group.create_task(writer())


async def count(client: Any, table: str) -> int:
    description = await client.describe_table(TableName=table)
    return int(description["Table"]["ItemCount"])


def run_timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=3600, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command[2]} exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds, done.stdout


def script(source: MotoServer, destination: MotoServer, target: str) -> float:
    seconds, _ = run_timed([
        sys.executable, "bench/plain_copy.py", "--endpoint", source.url,
        "--region", "us-east-1", "--table", SOURCE_TABLE,
        "--destination-endpoint", destination.url, "--destination-region", "eu-west-1",
        "--destination-table", target,
    ])
    return seconds


def product(source: MotoServer, destination: MotoServer, target: str, task: str) -> float:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLICATOR_")}
    env.update({
        "REPLICATOR_SOURCE_TABLE": SOURCE_TABLE, "REPLICATOR_SOURCE_REGION": "us-east-1",
        "REPLICATOR_SOURCE_ENDPOINT": source.url,
        "REPLICATOR_DESTINATION_TABLE": target, "REPLICATOR_DESTINATION_REGION": "eu-west-1",
        "REPLICATOR_DESTINATION_ENDPOINT": destination.url,
        "REPLICATOR_TASK_NAME": task, "REPLICATOR_LOG_FORMAT": "json",
    })
    seconds, _ = run_timed([sys.executable, "-m", "replicator", "copy"], env=env)
    return seconds


async def bench(args: argparse.Namespace) -> int:
    with MotoServer() as source, MotoServer() as destination:
        async with (
            open_client(Endpoint("dynamodb", "us-east-1", source.url), call_timeout=120) as src,
            open_client(Endpoint("dynamodb", "eu-west-1", destination.url),
                        call_timeout=120) as dst,
        ):
            await create(src, SOURCE_TABLE, stream=True)
            await fill(src, args.items)
            assert await count(src, SOURCE_TABLE) == args.items
            rates: dict[str, list[float]] = {"script": [], "product": []}
            for round_number in range(args.rounds):
                order = ["script", "product"] if round_number % 2 == 0 else ["product", "script"]
                for name in order:
                    target = f"copy-{name}-{round_number}"
                    await create(dst, target, stream=False)
                    if name == "script":
                        seconds = await asyncio.to_thread(script, source, destination, target)
                    else:
                        seconds = await asyncio.to_thread(product, source, destination, target,
                                                          f"copy-bench-{round_number}")
                    copied = await count(dst, target)
                    assert copied == args.items, f"{name} copied {copied} of {args.items}"
                    rates[name].append(args.items / seconds)
                    print(f"round {round_number + 1} {name}: {seconds:.1f}s, "
                          f"{args.items / seconds:.0f} items/s", flush=True)
                    await dst.delete_table(TableName=target)
    script_rate = statistics.median(rates["script"])
    product_rate = statistics.median(rates["product"])
    ratio = product_rate / script_rate
    print(f"\ncopy of {args.items} items of about 1 KB on moto ({platform.machine()}, "
          f"code {code_version()}), median of {args.rounds} rounds:")
    print(f"  plain boto3 script:  {script_rate:7.1f} items/s")
    print(f"  replicator copy:     {product_rate:7.1f} items/s")
    print(f"  ratio: {ratio:.2f} x the script (target >= {TARGET}) "
          f"{'met' if ratio >= TARGET else 'NOT met'}")
    return 0 if ratio >= TARGET else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=8000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    local_environment()
    return asyncio.run(bench(args))


if __name__ == "__main__":
    raise SystemExit(main())
