"""Selective replication's cost: the writer path's CPU per record with no rules, with a
filter, and with a trivial transform, measured side by side in one run.

``--records`` stream records (default 50,000 MODIFYs over 5,000 keys, each item about
1 KB with every attribute type, from the workload generator) go through a
``WriterPool`` of 8 writers into a destination that answers at once, in alternating
order over ``--rounds`` (default 3):

* no rules: every record as it is;
* a filter: ``{"eventName": ["INSERT", "MODIFY"], "dynamodb": {"NewImage": {"tenant":
  {"S": [{"prefix": "t"}]}}}}``, which selects every record (the cost of matching,
  with nothing saved by writing less);
* a transform: ``lambda item, event_name: item``, each item converted to Python values
  and back (boto3's TypeDeserializer and TypeSerializer), run in a thread per batch.

CPU is the process's (``time.process_time``) over the records' way through the pool,
per 10,000 records; medians of the rounds are compared with no rules. The read of the
stream is left out: it is the same whatever the rules.

    .venv/bin/python bench/rules.py [--records N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from typing import Any

from replicator.aws.values import BotoValues
from replicator.clock import SYSTEM_CLOCK
from replicator.dev.workload import random_item
from replicator.records import EventName, StreamRecord
from replicator.rules.pattern import FilterPattern
from replicator.rules.selection import IDENTITY, Rules
from replicator.rules.transform import Transform
from replicator.stats import Stats
from replicator.stream.tracker import CheckpointTracker
from replicator.stream.writer import WorkItem, WriterPool

FILTER = {"eventName": ["INSERT", "MODIFY"],
          "dynamodb": {"NewImage": {"tenant": {"S": [{"prefix": "t"}]}}}}


class AtOnce:
    """A destination that applies every batch at once."""

    async def batch_write(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return []


def records(count: int, keys: int, seed: int) -> list[StreamRecord]:
    rng = random.Random(seed)
    made = []
    for index in range(count):
        key = {"pk": {"S": f"key-{index % keys:06d}"}}
        image = {**random_item(rng, key), "tenant": {"S": f"t{index % 7}"}}
        made.append(StreamRecord(
            shard_id="shard-0", sequence_number=str(1_000_000 + index),
            event_name=EventName.MODIFY, keys=key, new_image=image,
            size_bytes=1024, created_at=time.time(), old_image=image))
    return made


async def through_pool(rules: Rules, batch: list[StreamRecord]) -> float:
    """CPU seconds of ``batch`` through a writer pool with ``rules``."""
    pool = WriterPool(AtOnce(), writers=8, queue_size=5000, stats=Stats(),
                      clock=SYSTEM_CLOCK, path=("source", "destination"), rules=rules)
    tracker = CheckpointTracker("TRIM_HORIZON")
    started = time.process_time()
    async with asyncio.TaskGroup() as group:
        group.create_task(pool.run())
        for record in batch:
            await pool.put(WorkItem(record, tracker.add(record.sequence_number,
                                                        record.created_at), tracker))
        pool.close()
    spent = time.process_time() - started
    assert tracker.drained, "every record is applied"
    return spent


def identity(item: dict[str, Any], event_name: str) -> dict[str, Any]:
    return item


async def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    options.add_argument("--records", type=int, default=50_000)
    options.add_argument("--rounds", type=int, default=3)
    args = options.parse_args()
    batch = records(args.records, 5_000, seed=1)
    configurations = {
        "no rules": IDENTITY,
        "filter": Rules(filter=FilterPattern.parse(FILTER)),
        "transform": Rules(transform=Transform("bench.rules:identity", identity,
                                               BotoValues())),
    }
    spent: dict[str, list[float]] = {name: [] for name in configurations}
    for round_ in range(args.rounds):
        names = list(configurations)
        if round_ % 2:
            names.reverse()
        for name in names:
            spent[name].append(await through_pool(configurations[name], batch))
    per_10k = {name: 10_000 * statistics.median(values) / args.records
               for name, values in spent.items()}
    base = per_10k["no rules"]
    print(f"{args.records} records, {args.rounds} rounds (CPU seconds per 10,000 records, "
          "median; each round's figures in brackets)")
    for name, value in per_10k.items():
        rounds = " / ".join(f"{10_000 * one / args.records:.3f}" for one in spent[name])
        print(f"  {name:<10} {value:.3f} s  ({rounds})  {value / base:.2f}x no rules,"
              f" {1e6 * (value - base) / 10_000:+.0f} us a record")


if __name__ == "__main__":
    asyncio.run(main())
