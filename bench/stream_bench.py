"""What the stream benchmarks (drain, lag, memory) share.

A backlog of stream records on a local moto source server, built by phases
in which each key is written at most once, so that the number of stream
records and the destination's final item count are known exactly; the
replicator as a ``python -m replicator`` subprocess; the two reference
pipelines of ``pipelines.py`` as subprocesses; and reading a process's CPU
time and peak RSS from ``/proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from replicator.aws.clients import Endpoint, open_client
from replicator.config import ENV_PREFIX, Settings, env_name
from replicator.dev.local import LOCAL_CREDENTIALS, MotoServer
from replicator.dev.workload import create_table

SOURCE_REGION = "us-east-1"
DESTINATION_REGION = "eu-west-1"
SOURCE_TABLE = "bench-source"
DESTINATION_TABLE = "bench-destination"
BATCH = 25
#: One write call at a time. moto numbers a stream record by the length of the shard's
#: list when the record is added, and serves each request on its own thread: two
#: concurrent writes can get one sequence number, and GetRecords pages (cut by sequence
#: number) then overlap, so a reader gets some records twice.
FILL_CONCURRENCY = 1
BENCH_TIMEOUT = 600.0  # the benchmark's own calls
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PIPELINES = Path(__file__).resolve().parent / "pipelines.py"
#: Seconds between the replicator's progress lines in the benchmarks, which read its
#: applied count from them (the default is 10 s). A logging setting only.
PROGRESS_INTERVAL = "0.25"
#: Shares of each round of the backlog: new keys, UpdateItem, puts over live keys;
#: the rest deletes live keys.
INSERTS, UPDATES, OVERWRITES = 0.50, 0.05, 0.25
ROUND = 10_000


def machine() -> str:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC, nproc {os.cpu_count()}, "
            f"{platform.machine()}, Python {platform.python_version()}, load average {load}")


def run_loop(coroutine: Any) -> Any:
    """On uvloop where it is installed, as ``python -m replicator`` runs."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


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

    def live_after(self, records: int) -> int:
        """Items the destination holds once the first ``records`` records are applied."""
        live, left = 0, records
        for kind, count in self.phases:
            taken = min(count, left)
            live += taken if kind == "INSERT" else -taken if kind == "REMOVE" else 0
            left -= taken
        return live


async def _in_parallel(calls: Iterator[Any], concurrency: int) -> None:
    async def worker() -> None:
        for call in calls:  # one iterator shared by every worker
            await call()

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())


async def _batch_write(client: Any, table: str, requests: list[dict[str, Any]]) -> None:
    async def write(batch: list[dict[str, Any]]) -> None:
        while batch:
            response = await client.batch_write_item(RequestItems={table: batch})
            batch = response.get("UnprocessedItems", {}).get(table, [])

    batches = [requests[i:i + BATCH] for i in range(0, len(requests), BATCH)]
    await _in_parallel((lambda b=b: write(b) for b in batches), FILL_CONCURRENCY)


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
        await _in_parallel((lambda k=k: update(k) for k in chosen), FILL_CONCURRENCY)
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
    async with open_client(Endpoint("dynamodb", SOURCE_REGION, server.url),
                           call_timeout=BENCH_TIMEOUT, max_connections=FILL_CONCURRENCY) as client:
        if backlog is None:
            arn = await create_table(client, SOURCE_TABLE, stream=True)
            assert arn is not None
            backlog = Backlog(stream_arn=arn)
        while (left := records - backlog.records) > 0:
            await _fill_round(client, SOURCE_TABLE, backlog, min(ROUND, left), rng)
        count = await item_count(client, SOURCE_TABLE)
    if count != backlog.live_after(backlog.records):
        raise RuntimeError(f"the source holds {count} items, expected "
                           f"{backlog.live_after(backlog.records)}")
    backlog.fill_seconds += time.perf_counter() - started
    return backlog


async def item_count(client: Any, table: str) -> int:
    """DescribeTable's ItemCount: exact on moto."""
    response = await client.describe_table(TableName=table)
    return int(response["Table"]["ItemCount"])


async def fresh_destination(server: MotoServer) -> None:
    """An empty destination server (moto never frees memory otherwise) with the table."""
    server.reset()
    async with open_client(Endpoint("dynamodb", DESTINATION_REGION, server.url),
                           call_timeout=BENCH_TIMEOUT) as client:
        await create_table(client, DESTINATION_TABLE, stream=False)


async def destination_count(server: MotoServer) -> int:
    async with open_client(Endpoint("dynamodb", DESTINATION_REGION, server.url),
                           call_timeout=BENCH_TIMEOUT) as client:
        return await item_count(client, DESTINATION_TABLE)


# -- processes -------------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


@dataclass
class Drain:
    """One pipeline applying a backlog (or its first ``records``)."""

    name: str
    records: int
    seconds: float
    cpu: float  # process CPU seconds over the same span
    peak_rss_mb: float | None = None
    note: str = ""

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    @property
    def cpu_per_10k(self) -> float:
        return self.cpu * 10_000 / self.records


def base_environment() -> dict[str, str]:
    """This process's environment without REPLICATOR_* or AWS_* variables."""
    base = {k: v for k, v in os.environ.items() if not k.startswith((ENV_PREFIX, "AWS_"))}
    return {**base, **LOCAL_CREDENTIALS, "PYTHONUNBUFFERED": "1"}


def replicator_environment(source: MotoServer, destination: MotoServer, task: str,
                           **extra: str) -> dict[str, str]:
    """The replication's settings: endpoints, tables, task, JSON logs, no metrics
    endpoint, and ``extra``. Every tuning setting is the replicator's default."""
    settings = {
        "source_table": SOURCE_TABLE,
        "source_region": SOURCE_REGION,
        "source_endpoint": source.url,
        "destination_table": DESTINATION_TABLE,
        "destination_region": DESTINATION_REGION,
        "destination_endpoint": destination.url,
        "task_name": task,
        "worker_id": f"{task}-worker",
        "log_level": "info",
        "log_format": "json",
        # The metrics endpoint's default port is fixed and another replicator on the
        # machine may hold it: 0 turns the endpoint off.
        "metrics_port": "0",
        **extra,
    }
    return {**base_environment(), **{env_name(k): v for k, v in settings.items()}}


class ReplicatorProcess:
    """``python -m replicator`` with its JSON log in ``log_path``; the log read as it grows."""

    def __init__(self, env: dict[str, str], log_path: Path,
                 prefix: list[str] | None = None) -> None:
        self.log_path = log_path
        self.err_path = log_path.with_suffix(".stderr")
        with log_path.open("wb") as out, self.err_path.open("wb") as err:
            self.process = subprocess.Popen(
                [*(prefix or []), sys.executable, "-m", "replicator"], env=env,
                cwd=log_path.parent, stdout=out, stderr=err)
        self._offset = 0
        self._partial = b""
        self.lines: list[dict[str, Any]] = []

    @property
    def pid(self) -> int:
        return self.process.pid

    def read_log(self) -> list[dict[str, Any]]:
        """The lines logged since the last call."""
        with self.log_path.open("rb") as log:
            log.seek(self._offset)
            data = log.read()
        self._offset += len(data)
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()
        new: list[dict[str, Any]] = []
        for chunk in chunks:
            with contextlib.suppress(ValueError):
                entry = json.loads(chunk)
                if isinstance(entry, dict):
                    new.append(entry)
        self.lines.extend(new)
        return new

    async def wait_for(self, check: Any, within: float, poll: float = 0.02) -> dict[str, Any]:
        """The first new log line for which ``check(line)`` holds."""
        deadline = time.monotonic() + within
        while True:
            for line in self.read_log():
                if check(line):
                    return line
            if self.process.poll() is not None:
                raise RuntimeError(f"the replicator exited (code {self.process.returncode}):\n"
                                   f"{self.excerpt()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replicator did not get there within {within:g}s:\n"
                                   f"{self.excerpt()}")
            await asyncio.sleep(poll)

    def stop(self, within: float = 30.0) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None

    def count(self, event: str) -> int:
        return sum(1 for line in self.lines if line.get("event") == event)

    def retries(self) -> str:
        counts: dict[str, int] = {}
        for line in self.lines:
            if line.get("event") in ("retrying", "GetRecords timed out; asking for fewer records"):
                what = f"{line.get('operation', 'GetRecords')} {line.get('error', 'timeout')}"
                counts[what] = counts.get(what, 0) + 1
        return "; ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"

    def excerpt(self, lines: int = 8) -> str:
        self.read_log()
        text = [json.dumps(line) for line in self.lines
                if line.get("level") in ("warning", "error")][-lines:]
        text += [f"stderr: {line}" for line in
                 self.err_path.read_text(errors="replace").splitlines()[-lines:]]
        return "\n".join(f"    {line}" for line in text) or "    (nothing logged)"


def log_time(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()


def applied(line: dict[str, Any]) -> int:
    return int(line.get("records_applied", 0)) if line.get("event") == "progress" else -1


def timeout_settings(call_timeout: float) -> dict[str, str]:
    """REPLICATOR_CALL_TIMEOUT when not the default, with a lease duration long enough
    for it (the replicator requires lease_duration > renew interval + call timeout)."""
    if call_timeout == Settings.model_fields["call_timeout"].default:
        return {}
    lease_duration = max(float(Settings.model_fields["lease_duration"].default),
                         call_timeout + 10)
    return {"call_timeout": f"{call_timeout:g}", "lease_duration": f"{lease_duration:g}"}


async def replicator_drain(source: MotoServer, destination: MotoServer, backlog: Backlog,
                           task: str, work_dir: Path, *, within: float, call_timeout: float,
                           prefix: list[str] | None = None) -> Drain:
    """The replicator applies the whole backlog from TRIM_HORIZON into a fresh table.

    Timed from its "replication starting" line to the progress line that counts
    every record applied; its CPU over the same span, read from /proc when those
    lines appear. ``bootstrap=never``: the backlog is what is measured, not a copy.
    ``call_timeout`` other than the default raises the lease duration to match.
    """
    await fresh_destination(destination)
    env = replicator_environment(source, destination, task, bootstrap="never",
                                 progress_interval=PROGRESS_INTERVAL,
                                 **timeout_settings(call_timeout))
    proc = ReplicatorProcess(env, work_dir / f"{task}.log", prefix)
    try:
        pid = proc.pid
        started = await proc.wait_for(lambda line: line.get("event") == "replication starting",
                                      60)
        cpu_start = process_cpu(pid) if prefix is None else 0.0
        done = await proc.wait_for(lambda line: applied(line) >= backlog.records, within)
        cpu = process_cpu(pid) - cpu_start if prefix is None else 0.0
        rss = peak_rss_mb(pid) if prefix is None else None
        note = f"retries: {proc.retries()}"
    finally:
        proc.stop()
    if applied(done) != backlog.records:
        raise RuntimeError(f"the replicator applied {applied(done)} records, "
                           f"not {backlog.records}")
    await check_destination(destination, backlog, backlog.records, "replicator")
    return Drain("replicator", backlog.records, log_time(done) - log_time(started), cpu,
                 rss, note)


async def check_destination(destination: MotoServer, backlog: Backlog, records: int,
                            name: str) -> None:
    count = await destination_count(destination)
    if count != backlog.live_after(records):
        raise RuntimeError(f"{name}: the destination holds {count} items, expected "
                           f"{backlog.live_after(records)}")


async def pipeline_drain(kind: str, source: MotoServer, destination: MotoServer,
                         backlog: Backlog, records: int, *, within: float) -> Drain:
    """``pipelines.py bare`` or ``naive`` as a subprocess: its own timing and CPU."""
    await fresh_destination(destination)
    command = [sys.executable, str(PIPELINES), kind, "--source", source.url,
               "--destination", destination.url, "--records", str(records)]
    process = await asyncio.create_subprocess_exec(
        *command, env=base_environment(), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise RuntimeError(f"{kind}: not done within {within:g}s") from None
    if process.returncode != 0:
        raise RuntimeError(f"{kind} failed (code {process.returncode}): "
                           f"{err.decode(errors='replace')[-2000:]}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    await check_destination(destination, backlog, records, kind)
    return Drain(kind, int(result["records"]), float(result["seconds"]), float(result["cpu"]),
                 float(result["peak_rss_mb"]), f"{result['writes']} write calls")


# -- output ------------------------------------------------------------------------------


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


def write_summary(path: str | None, rows: list[dict[str, Any]]) -> None:
    """Rows for ``all.py``: measurement, figure, target, met."""
    if path:
        Path(path).write_text(json.dumps(rows, indent=1))
