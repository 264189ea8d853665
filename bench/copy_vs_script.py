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
import random
import statistics
import sys
from typing import Any

from harness import (
    DESTINATION,
    ROOT,
    SOURCE,
    Check,
    aws_client,
    batches_of,
    common_arguments,
    each,
    failed,
    guarded,
    item_count,
    moto_servers,
    print_checks,
    print_table,
    product_command,
    product_environment,
    replication_settings,
    run_process,
    script_command,
    start,
    write_batches,
    write_summary,
)

from replicator.dev.local import MotoServer
from replicator.dev.workload import create_table, random_item

SOURCE_TABLE = "copy-source"
TARGET = 1.2
FILL_CONCURRENCY = 8
COPY_TIMEOUT = 3600.0
LABELS = {"script": "plain boto3 script", "product": "replicator copy"}


def make_item(rng: random.Random, index: int) -> dict[str, Any]:
    """About 1 KB with every attribute type."""
    item = random_item(rng, {"pk": {"S": f"user-{index // 2:06d}"}, "sk": {"N": str(index % 2)}})
    item["pad"] = {"S": "p" * 700}
    return item


async def fill(client: Any, items: int) -> None:
    rng = random.Random(7)
    requests = [{"PutRequest": {"Item": make_item(rng, i)}} for i in range(items)]
    await write_batches(client, SOURCE_TABLE, batches_of(requests), FILL_CONCURRENCY)


def script(source: MotoServer, destination: MotoServer, target: str, task: str) -> float:
    """``plain_copy.py`` from start to exit, in seconds (``task`` is the product's)."""
    return run_process(script_command(
        "plain_copy.py", "--endpoint", source.url, "--region", SOURCE.region,
        "--table", SOURCE_TABLE, "--destination-endpoint", destination.url,
        "--destination-region", DESTINATION.region, "--destination-table", target,
    ), name="plain_copy.py", cwd=ROOT, timeout=COPY_TIMEOUT).check().seconds


def product(source: MotoServer, destination: MotoServer, target: str, task: str) -> float:
    """``python -m replicator copy`` with its default settings, from start to exit."""
    env = product_environment(replication_settings(
        source.url, destination.url, task, source_table=SOURCE_TABLE, destination_table=target))
    return run_process(product_command("copy"), name="replicator copy", env=env, cwd=ROOT,
                       timeout=COPY_TIMEOUT).check().seconds


async def bench(args: argparse.Namespace) -> dict[str, list[float]]:
    """Items/s of each copy, round by round."""
    copies = {"script": script, "product": product}
    rates: dict[str, list[float]] = {name: [] for name in copies}
    with moto_servers() as (source, destination):
        async with (
            aws_client(source.url, SOURCE.region) as src,
            aws_client(destination.url, DESTINATION.region) as dst,
        ):
            await create_table(src, SOURCE_TABLE, stream=True)
            await fill(src, args.items)
            if (count := await item_count(src, SOURCE_TABLE)) != args.items:
                raise RuntimeError(f"the source holds {count} items, not {args.items}")
            for round_number in range(args.rounds):
                for name in list(copies) if round_number % 2 == 0 else reversed(copies):
                    target = f"copy-{name}-{round_number}"
                    await create_table(dst, target, stream=False)
                    seconds = await asyncio.to_thread(copies[name], source, destination,
                                                      target, f"copy-bench-{round_number}")
                    copied = await item_count(dst, target)
                    if copied != args.items:
                        raise RuntimeError(f"{name} copied {copied} of {args.items}")
                    rates[name].append(args.items / seconds)
                    print(f"  round {round_number + 1} {name}: {seconds:.1f}s, "
                          f"{args.items / seconds:.0f} items/s", flush=True)
                    await dst.delete_table(TableName=target)
    return rates


def report(rates: dict[str, list[float]], args: argparse.Namespace) -> int:
    median = {name: statistics.median(values) for name, values in rates.items()}
    print_table([(f"copy of {args.items} items of about 1 KB on moto", "items/s median",
                  "each round"), *(
        (LABELS[name], f"{median[name]:.1f}", each(rates[name])) for name in rates)])
    ratio = median["product"] / median["script"]
    summary = print_checks([Check("copy: replicator / plain boto3 script items/s", ratio,
                                  f">= {TARGET:g}", ratio >= TARGET)])
    write_summary(args.json, summary)
    return 0 if summary[0]["met"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=8000,
                        help="items in the source table (default 8000)")
    common_arguments(parser, rounds=3, seed=False)
    args = parser.parse_args(argv)
    start("copy against a plain script benchmark")
    return guarded(lambda: report(asyncio.run(bench(args)), args),
                   failed(args.json, "copy against a plain script", f">= {TARGET:g}"))


if __name__ == "__main__":
    sys.exit(main())
