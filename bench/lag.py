"""Replication lag under steady load, write by write.

Two local moto servers; ``python -m replicator`` with every setting at its
default (the bootstrap copy of the empty source included) replicates the
source into the destination. A writer puts new items into the source at
``--rate`` writes a second for ``--seconds`` (open loop: a BatchWriteItem of
rate / 50 new items every 20 ms, one call at a time; stopped after
``--seconds`` even when the source could not take them all), and records
when each call returned. A separate poller reads the destination (BatchGetItem of the 100
oldest writes not yet seen, ConsistentRead, continuously) and records when
each item is first there. The lag of a write is the time from its write call
returning to the poller's answer that holds it.

Each rate of ``--rates`` (default 500, the target's load, then 100) runs on
freshly reset servers with a new replicator.

    .venv/bin/python bench/lag.py [--rates 500,100] [--seconds 60]

Only 127.0.0.1: two moto servers on free ports.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    DESTINATION,
    SOURCE,
    Product,
    aws_client,
    common_arguments,
    measured,
    poll_until,
    print_table,
    start,
    summary_row,
    write_all,
    yes_no,
)
from stream_bench import replicator_environment, retry, small_item

from replicator.dev.local import MotoServer
from replicator.dev.workload import create_table

P50_TARGET = 0.200
P99_TARGET = 0.500
TARGET_RATE = 500.0
TICK = 0.02  # seconds between the load's write calls
POLL_KEYS = 100
POLLERS = 4  # BatchGetItem calls in flight when more than 100 writes are outstanding


def lag_key(number: int) -> dict[str, Any]:
    return {"pk": {"S": f"lag-{number % 1000}"}, "sk": {"N": str(number)}}


@dataclass
class LagRun:
    rate: float
    seconds: float
    written: int = 0
    write_seconds: float = 0.0
    returned: dict[int, float] = field(default_factory=dict)
    lags: dict[int, float] = field(default_factory=dict)
    polls: int = 0
    poll_seconds: float = 0.0
    retries: str = ""

    @property
    def achieved(self) -> float:
        return self.written / self.write_seconds if self.write_seconds else 0.0

    def quantile(self, q: float) -> float:
        values = sorted(self.lags.values())
        return values[min(len(values) - 1, int(q * len(values)))]


async def write_load(client: Any, run: LagRun, seed: int) -> None:
    """BatchWriteItem calls of ``rate / 50`` new items every 20 ms, one call at a time
    (concurrent writes can share a sequence number on moto: see ``FILL_CONCURRENCY``)."""
    rng = random.Random(seed)
    total = int(run.rate * run.seconds)
    per_call = max(1, min(25, round(run.rate * TICK)))
    items = [small_item(rng, lag_key(i)) for i in range(total)]
    start = time.monotonic()
    for first in range(0, total, per_call):
        if time.monotonic() - start >= run.seconds:  # the source falls behind: stop on time
            break
        delay = start + first / run.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await write_all(client, SOURCE.table, [{"PutRequest": {"Item": item}}
                                               for item in items[first:first + per_call]])
        now = time.monotonic()
        for index in range(first, min(total, first + per_call)):
            run.returned[index] = now
        run.written = min(total, first + per_call)
    run.write_seconds = time.monotonic() - start


async def poll(client: Any, run: LagRun, writing: asyncio.Task[None], within: float) -> None:
    """Until every write is seen, or ``within`` seconds after the writes ended."""
    seen: set[int] = set()
    started = time.monotonic()

    async def get(indexes: list[int]) -> None:
        response = await client.batch_get_item(RequestItems={DESTINATION.table: {
            "Keys": [lag_key(i) for i in indexes], "ConsistentRead": True,
            "ProjectionExpression": "sk"}})
        now = time.monotonic()
        run.polls += 1
        for item in response["Responses"].get(DESTINATION.table, []):
            index = int(item["sk"]["N"])
            seen.add(index)
            run.lags[index] = now - run.returned[index]

    ended_at: float | None = None
    while True:
        outstanding = [i for i in run.returned if i not in seen]
        if writing.done():
            ended_at = ended_at or time.monotonic()
            if not outstanding or time.monotonic() - ended_at > within:
                break
        if not outstanding:
            await asyncio.sleep(0.005)
            continue
        outstanding.sort()
        chunks = [outstanding[i:i + POLL_KEYS]
                  for i in range(0, min(len(outstanding), POLL_KEYS * POLLERS), POLL_KEYS)]
        async with asyncio.TaskGroup() as group:
            for chunk in chunks:
                group.create_task(get(chunk))
    run.poll_seconds = time.monotonic() - started


async def measure_rate(rate: float, args: argparse.Namespace, servers: list[MotoServer],
                       work_dir: Path) -> LagRun:
    source_server, destination_server = servers
    for server in servers:
        server.reset()
    run = LagRun(rate, args.seconds)
    async with (
        aws_client(source_server.url, SOURCE.region) as source,
        aws_client(destination_server.url, DESTINATION.region,
                   max_connections=POLLERS) as destination,
    ):
        await create_table(source, SOURCE.table, stream=True)
        await create_table(destination, DESTINATION.table, stream=False)
        task = f"bench-lag-{int(rate)}"
        proc = Product(replicator_environment(source_server, destination_server, task),
                       work_dir / f"{task}.log")
        try:
            await proc.wait_for_event("replication starting", 60)
            # Warm-up: one item through, so the shard is leased and read.
            warm_up = {"pk": {"S": "warm-up"}, "sk": {"N": "0"}}
            await source.put_item(TableName=SOURCE.table,
                                  Item=small_item(random.Random(0), warm_up))

            async def arrived() -> bool | None:
                response = await destination.get_item(TableName=DESTINATION.table, Key=warm_up)
                return True if "Item" in response else None

            if not await poll_until(arrived, within=60, every=0.05):
                raise RuntimeError("the warm-up item did not arrive within 60s")
            writing = asyncio.create_task(write_load(source, run, args.seed))
            await poll(destination, run, writing, args.drain_seconds)
            await writing
            run.retries = proc.tally(retry)
        finally:
            proc.stop()
    return run


async def measure(args: argparse.Namespace, servers: list[MotoServer],
                  work_dir: Path) -> list[LagRun]:
    runs = []
    for rate in args.rate_list:
        run = await measure_rate(rate, args, servers, work_dir)
        runs.append(run)
        print(describe(run), flush=True)
        # Each write's lag by when it returned, to see where the tail comes from.
        first = min(run.returned.values(), default=0.0)
        rows = (f"{run.returned[i] - first:.3f},{lag:.3f}\n"
                for i, lag in sorted(run.lags.items()))
        (work_dir / f"lags-{rate:g}.csv").write_text("seconds,lag\n" + "".join(rows))
    return runs


def describe(run: LagRun) -> str:
    unseen = run.written - len(run.lags)
    text = (f"  rate {run.rate:g}/s: {run.written:,} writes in {run.write_seconds:.1f}s "
            f"({run.achieved:,.0f}/s achieved); {len(run.lags):,} seen, {unseen:,} not seen; "
            f"{run.polls:,} polls ({run.polls / run.poll_seconds:.0f}/s); "
            f"replicator retries: {run.retries}")
    return text


def report(runs: list[LagRun]) -> list[dict[str, Any]]:
    rows = [("load (writes/s asked / achieved)", "writes", "p50 ms", "p95 ms", "p99 ms",
             "max ms", "p50 <= 200", "p99 <= 500")]
    summary: list[dict[str, Any]] = []
    for run in runs:
        if not run.lags:
            rows.append((f"{run.rate:g} / {run.achieved:,.0f}", f"{run.written:,}", "-", "-",
                         "-", "-", "NO", "NO"))
            continue
        unseen = run.written - len(run.lags)
        p50, p95, p99 = (run.quantile(q) for q in (0.50, 0.95, 0.99))
        high = max(run.lags.values())
        if unseen:  # not seen within the drain time: their lag is at least that
            p99 = high = float("inf") if p99 == high else p99
        rows.append((f"{run.rate:g} / {run.achieved:,.0f}", f"{run.written:,}",
                     f"{1000 * p50:,.0f}", f"{1000 * p95:,.0f}",
                     "> drain time" if p99 == float("inf") else f"{1000 * p99:,.0f}",
                     "> drain time" if high == float("inf") else f"{1000 * high:,.0f}",
                     yes_no(p50 <= P50_TARGET), yes_no(p99 <= P99_TARGET)))
        if run.rate == TARGET_RATE:
            figure = (f"p50 {1000 * p50:,.0f} / p95 {1000 * p95:,.0f} / p99 "
                      f"{1000 * p99:,.0f} / max {1000 * high:,.0f} ms "
                      f"({run.achieved:,.0f} writes/s achieved)")
            summary.append(summary_row(
                f"lag at {run.rate:g} writes/s, {run.seconds:g}s", figure,
                "p50 <= 200 ms, p99 <= 500 ms",
                p50 <= P50_TARGET and p99 <= P99_TARGET and run.achieved >= 0.95 * run.rate))
    print_table(rows)
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Replication lag under steady load.")
    parser.add_argument("--rates", default="500,100",
                        help="writes a second, one measurement each (default 500,100)")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="seconds of load at each rate (default 60)")
    parser.add_argument("--drain-seconds", type=float, default=120.0,
                        help="how long after the load ends writes may still arrive "
                        "(default 120)")
    common_arguments(parser)
    args = parser.parse_args(argv)
    args.rate_list = [float(rate) for rate in args.rates.split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start("replication lag benchmark")
    return measured("lag", args, measure, report, target="p50 <= 200 ms, p99 <= 500 ms")


if __name__ == "__main__":
    sys.exit(main())
