"""What the stream benchmarks (drain, lag, memory) share.

A backlog of stream records on a local moto source server, built by phases
in which each key is written at most once, so that the number of stream
records and the destination's final item count are known exactly; the
replicator draining it as a ``python -m replicator`` subprocess; and the two
reference pipelines of ``pipelines.py`` draining it as subprocesses.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    DESTINATION,
    SOURCE,
    Line,
    PerRecord,
    Product,
    aws_client,
    batches_of,
    fresh_table,
    in_parallel,
    item_count,
    log_time,
    peak_rss_mb,
    process_cpu,
    product_environment,
    replication_settings,
    run_process,
    script_command,
    timeout_settings,
    write_batches,
)

from replicator.dev.local import MotoServer
from replicator.dev.workload import create_table

#: One write call at a time. moto numbers a stream record by the length of the shard's
#: list when the record is added, and serves each request on its own thread: two
#: concurrent writes can get one sequence number, and GetRecords pages (cut by sequence
#: number) then overlap, so a reader gets some records twice.
FILL_CONCURRENCY = 1
#: Seconds between the replicator's progress lines in the benchmarks, which read its
#: applied count from them (the default is 10 s). A logging setting only.
PROGRESS_INTERVAL = "0.25"
#: Shares of each round of the backlog: new keys, UpdateItem, puts over live keys;
#: the rest deletes live keys.
INSERTS, UPDATES, OVERWRITES = 0.50, 0.05, 0.25
ROUND = 10_000
#: The events of the replicator's log that are retries.
RETRY_EVENTS = ("retrying", "GetRecords timed out; asking for fewer records")


# -- items and the backlog ---------------------------------------------------------------


def item_key(number: int) -> dict[str, Any]:
    return {"pk": {"S": f"user-{number % 2000}"}, "sk": {"N": str(number)}}


def small_item(rng: random.Random, key: dict[str, Any]) -> dict[str, Any]:
    """A typical small item (about 200 bytes): strings, a number, a set, a map, a flag."""
    n = rng.randint(0, 10**6)
    return {
        **key,
        "name": {"S": f"name-{n}"},
        "email": {"S": f"user{n}@example.com"},
        "count": {"N": str(n % 1000)},
        "active": {"BOOL": rng.random() < 0.5},
        "tags": {"SS": sorted({f"tag{rng.randint(0, 9)}" for _ in range(3)})},
        "address": {"M": {"city": {"S": f"city-{n % 97}"}, "zip": {"N": str(n % 99999)}}},
    }


@dataclass
class Backlog:
    """What the source's stream holds: its records' kinds in order, by phase."""

    stream_arn: str = ""
    phases: list[tuple[str, int]] = field(default_factory=list)  # (event name, records)
    next_key: int = 0
    live: list[int] = field(default_factory=list)
    fill_seconds: float = 0.0

    @property
    def records(self) -> int:
        return sum(count for _, count in self.phases)

    def kinds(self) -> dict[str, int]:
        """Records by event name."""
        counts: dict[str, int] = {}
        for kind, count in self.phases:
            counts[kind] = counts.get(kind, 0) + count
        return counts

    def live_after(self, records: int) -> int:
        """Items the destination holds once the first ``records`` records are applied."""
        live, left = 0, records
        for kind, count in self.phases:
            taken = min(count, left)
            live += taken if kind == "INSERT" else -taken if kind == "REMOVE" else 0
            left -= taken
        return live


async def _batch_write(client: Any, table: str, requests: list[dict[str, Any]]) -> None:
    await write_batches(client, table, batches_of(requests), FILL_CONCURRENCY)


async def _fill_round(client: Any, table: str, backlog: Backlog, size: int,
                      rng: random.Random) -> None:
    inserts = max(1, int(size * INSERTS))
    updates = int(size * UPDATES)
    overwrites = int(size * OVERWRITES)
    deletes = size - inserts - updates - overwrites
    new = range(backlog.next_key, backlog.next_key + inserts)
    backlog.next_key += inserts
    await _batch_write(client, table, [{"PutRequest": {"Item": small_item(rng, item_key(k))}}
                                       for k in new])
    backlog.live.extend(new)
    backlog.phases.append(("INSERT", inserts))
    if updates:
        async def update(k: int) -> None:
            await client.update_item(
                TableName=table, Key=item_key(k),
                UpdateExpression="SET #c = #c + :one, #n = :n",
                ExpressionAttributeNames={"#c": "count", "#n": "name"},
                ExpressionAttributeValues={":one": {"N": "1"}, ":n": {"S": f"upd-{k}"}},
            )
        chosen = rng.sample(backlog.live, updates)
        await in_parallel((lambda k=k: update(k) for k in chosen), FILL_CONCURRENCY)
        backlog.phases.append(("MODIFY", updates))
    if overwrites:
        chosen = rng.sample(backlog.live, overwrites)
        await _batch_write(client, table, [
            {"PutRequest": {"Item": small_item(rng, item_key(k))}} for k in chosen])
        backlog.phases.append(("MODIFY", overwrites))
    if deletes:
        positions = sorted(rng.sample(range(len(backlog.live)), deletes), reverse=True)
        gone = [backlog.live[p] for p in positions]
        for p in positions:
            backlog.live[p] = backlog.live[-1]
            backlog.live.pop()
        await _batch_write(client, table, [{"DeleteRequest": {"Key": item_key(k)}}
                                           for k in gone])
        backlog.phases.append(("REMOVE", deletes))


async def fill_backlog(server: MotoServer, records: int, *, seed: int,
                       backlog: Backlog | None = None) -> Backlog:
    """Create the source table (unless ``backlog`` continues one) and write until its
    stream holds ``records`` records: rounds of 10,000 of 50% inserts of new keys, 5%
    UpdateItem, 25% puts over live keys (MODIFY) and 20% deletes of live keys."""
    started = time.perf_counter()
    rng = random.Random(seed + (backlog.records if backlog else 0))
    async with aws_client(server.url, SOURCE.region, max_connections=FILL_CONCURRENCY) as client:
        if backlog is None:
            arn = await create_table(client, SOURCE.table, stream=True)
            assert arn is not None
            backlog = Backlog(stream_arn=arn)
        while (left := records - backlog.records) > 0:
            await _fill_round(client, SOURCE.table, backlog, min(ROUND, left), rng)
        count = await item_count(client, SOURCE.table)
    if count != backlog.live_after(backlog.records):
        raise RuntimeError(f"the source holds {count} items, expected "
                           f"{backlog.live_after(backlog.records)}")
    backlog.fill_seconds += time.perf_counter() - started
    return backlog


async def check_destination(destination: MotoServer, backlog: Backlog, records: int,
                            name: str) -> None:
    async with aws_client(destination.url, DESTINATION.region) as client:
        count = await item_count(client, DESTINATION.table)
    if count != backlog.live_after(records):
        raise RuntimeError(f"{name}: the destination holds {count} items, expected "
                           f"{backlog.live_after(records)}")


# -- the drains ----------------------------------------------------------------------------


@dataclass
class Drain(PerRecord):
    """One pipeline applying a backlog (or its first ``records``)."""

    name: str
    records: int
    seconds: float
    cpu: float  # process CPU seconds over the same span
    peak_rss_mb: float | None = None
    note: str = ""


def replicator_environment(source: MotoServer, destination: MotoServer, task: str,
                           **extra: str) -> dict[str, str]:
    """The replication's settings, a worker id, no metrics endpoint, and ``extra``."""
    # The metrics endpoint's default port is fixed and another replicator on the machine
    # may hold it: 0 turns the endpoint off.
    return product_environment(replication_settings(
        source.url, destination.url, task, worker_id=f"{task}-worker", metrics_port="0",
        **extra))


def applied(line: Line) -> int:
    return int(line.get("records_applied", 0)) if line.get("event") == "progress" else -1


def retry(line: Line) -> str | None:
    """A retry of the replicator's log, by operation and error."""
    if line.get("event") not in RETRY_EVENTS:
        return None
    return f"{line.get('operation', 'GetRecords')} {line.get('error', 'timeout')}"


async def replicator_drain(source: MotoServer, destination: MotoServer, backlog: Backlog,
                           task: str, work_dir: Path, *, within: float, call_timeout: float,
                           prefix: list[str] | None = None) -> Drain:
    """The replicator applies the whole backlog from TRIM_HORIZON into a fresh table.

    Timed from its "replication starting" line to the progress line that counts
    every record applied; its CPU over the same span, read from /proc when those
    lines appear. ``bootstrap=never``: the backlog is what is measured, not a copy.
    ``call_timeout`` other than the default raises the lease duration to match.
    """
    await fresh_table(destination, DESTINATION.region, DESTINATION.table)
    env = replicator_environment(source, destination, task, bootstrap="never",
                                 progress_interval=PROGRESS_INTERVAL,
                                 **timeout_settings(call_timeout))
    proc = Product(env, work_dir / f"{task}.log", prefix=prefix or ())
    pid = proc.process.pid
    try:
        started = await proc.wait_for_event("replication starting", 60)
        cpu_start = process_cpu(pid) if prefix is None else 0.0
        done = await proc.wait_for(lambda line: applied(line) >= backlog.records, within)
        cpu = process_cpu(pid) - cpu_start if prefix is None else 0.0
        rss = peak_rss_mb(pid) if prefix is None else None
        note = f"retries: {proc.tally(retry)}"
    finally:
        proc.stop()
    if applied(done) != backlog.records:
        raise RuntimeError(f"the replicator applied {applied(done)} records, "
                           f"not {backlog.records}")
    await check_destination(destination, backlog, backlog.records, "replicator")
    return Drain("replicator", backlog.records, log_time(done) - log_time(started), cpu,
                 rss, note)


async def pipeline_drain(kind: str, source: MotoServer, destination: MotoServer,
                         backlog: Backlog, records: int, *, within: float) -> Drain:
    """``pipelines.py bare`` or ``naive`` as a subprocess: its own timing and CPU."""
    await fresh_table(destination, DESTINATION.region, DESTINATION.table)
    command = script_command("pipelines.py", kind, "--source", source.url,
                             "--destination", destination.url, "--records", str(records))
    finished = await asyncio.to_thread(run_process, command, name=kind,
                                       env=product_environment(), timeout=within)
    result = finished.check().last_json()
    await check_destination(destination, backlog, records, kind)
    return Drain(kind, int(result["records"]), float(result["seconds"]), float(result["cpu"]),
                 float(result["peak_rss_mb"]), f"{result['writes']} write calls")


# -- what drain.py and memory.py share ---------------------------------------------------------


def add_call_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--call-timeout", type=float, default=60.0,
                        help="REPLICATOR_CALL_TIMEOUT, with REPLICATOR_LEASE_DURATION raised to "
                        "it plus 10s (default 60: on a loaded machine moto can take more than "
                        "the default 5s for a GetRecords page of 1000 records; 5 measures the "
                        "default)")


def settings_line(call_timeout: float) -> str:
    return ("replicator settings: defaults, bootstrap never, progress_interval "
            f"{PROGRESS_INTERVAL}s, {timeout_settings(call_timeout) or 'default call_timeout'}")
