"""Bootstrap copy: its throughput against the destination's raw BatchWriteItem ceiling.

Two local moto servers, a source and a destination. The source table (with a
stream, as the replicator requires) is filled with ``--items`` items of
``replicator.dev.workload.random_item`` shape (every attribute type). moto serves
Scan far slower than DynamoDB (about 0.6 ms of its one core per item), so the
copy also reads through a stand-in source, ``fast_scan.FastScanSource``: it
answers Scan on the source table from an in-memory snapshot of the items the
table was filled with, as fast as DynamoDB serves a page, and forwards every
other request to the moto source. Each round then measures, side by side:

* ceiling: the same items, pre-built into batches of 25 PutRequests, written
  to a fresh destination table with plain aiobotocore BatchWriteItem calls at
  each of several concurrencies (no Scan); the best items/s is the ceiling;
* Scan alone (not a target, to explain the copies): plain Scan calls over one
  of the copy's segments, no writes, from the stand-in and from moto;
* copy via the stand-in (the target): ``python -m replicator copy`` as a
  subprocess, as the product runs it, with the default settings (unless
  ``--segments``, ``--concurrency`` or ``--writers`` override them), into
  another fresh destination table on the same server. Its source endpoint is
  the stand-in; its streams and checkpoint endpoints are the moto source.
  Timed from process start to exit, and also read from the copy's own "copy
  finished" log line. The destination must then hold exactly ``--items``
  items (DescribeTable's ItemCount, exact on moto);
* copy via moto (secondary, limited by moto's Scan; ``--sources`` leaves it
  out): the same, with moto as the source endpoint. One setting is not the
  default here: ``--call-timeout`` (120 s, with the lease duration raised to
  match). moto takes seconds to serialize a Scan page of these items, more
  than the default 5 s call timeout, and with the default the copy only times
  out and retries (pass ``--call-timeout 5`` to see it).

The order of the measurements alternates between rounds; the medians are
compared. The destination server is reset before every measurement.

    .venv/bin/python bench/copy_throughput.py [--items N] [--rounds R] [--sources S]
        [--profile DIR]

``--profile DIR`` adds one copy via the stand-in (via moto with ``--sources
moto``), not counted in the table, under py-spy (``pip install py-spy``):
the replicator process and both moto servers are sampled, the raw stacks are
written to DIR and the busiest functions printed.

Only 127.0.0.1: two moto servers and the stand-in on free ports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_common import code_version, local_environment, signals_ignored
from fast_scan import FastScanSource, ScanSnapshot, to_wire

from replicator.aws.clients import Endpoint, open_client
from replicator.config import ENV_PREFIX, Settings, env_name
from replicator.copy.scan import default_segments
from replicator.dev.local import LOCAL_CREDENTIALS, MotoServer, free_port
from replicator.dev.workload import KEY_NAMES, create_table, random_item

SOURCE_REGION = "us-east-1"
DESTINATION_REGION = "eu-west-1"
SOURCE_TABLE = "bench-source"
CEILING_TABLE = "bench-ceiling"
COPY_TABLE = "bench-copy"
BATCH = 25
CONCURRENCIES = (1, 4, 16, 32)
#: The copy should reach this share of the destination's raw write rate.
TARGET = 0.80
FILL_CONCURRENCY = 8
CALL_TIMEOUT = 600.0  # the benchmark's own calls
#: Seconds of lease beyond the call timeout, when ``--call-timeout`` raises it.
LEASE_MARGIN = 10.0
PROFILE_RATE = 100  # py-spy samples a second
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: The copy's sources: the stand-in with DynamoDB's Scan speed, and moto itself.
FAST, MOTO = "fast", "moto"
SOURCE_NAMES = {FAST: "the stand-in", MOTO: "moto"}


def copy_default(name: str) -> Any:
    """A default of the replicator's settings (the code under test, not a copy)."""
    return Settings.model_fields[name].default


# -- items and plain BatchWriteItem ------------------------------------------------------


def make_items(count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` distinct keys over 1000 partition keys, every attribute type."""
    rng = random.Random(seed)
    partitions = max(1, min(1000, count // 4))
    return [random_item(rng, {"pk": {"S": f"user-{k % partitions}"}, "sk": {"N": str(k)}})
            for k in range(count)]


def make_batches(items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [[{"PutRequest": {"Item": item}} for item in items[i:i + BATCH]]
            for i in range(0, len(items), BATCH)]


async def write_batches(client: Any, table: str, batches: list[list[dict[str, Any]]],
                        concurrency: int) -> float:
    """Write every batch with ``concurrency`` calls in flight; seconds taken."""
    pending = iter(batches)

    async def writer() -> None:
        for batch in pending:  # one iterator shared by every writer
            requests = batch
            while requests:
                response = await client.batch_write_item(RequestItems={table: requests})
                requests = response.get("UnprocessedItems", {}).get(table, [])

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(writer())
    return time.perf_counter() - started


async def item_count(client: Any, table: str) -> int:
    """DescribeTable's ItemCount: on moto the table's exact length at the time of the call
    (AWS refreshes it only every six hours or so)."""
    response = await client.describe_table(TableName=table)
    return int(response["Table"]["ItemCount"])


# -- CPU time of the processes involved ---------------------------------------------------


def process_cpu(pid: int | None) -> float | None:
    """User + system CPU seconds of a live process, from /proc (None where unavailable)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children_cpu() -> float:
    """CPU seconds of every child process reaped so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def server_pid(server: MotoServer) -> int | None:
    process = getattr(server, "_process", None)  # MotoServer keeps its Popen private
    return getattr(process, "pid", None)


@dataclass
class CpuMeter:
    """CPU seconds used by the source server, the destination server and our children."""

    source: MotoServer
    destination: MotoServer
    start: dict[str, float | None] = field(default_factory=dict)
    used: dict[str, float | None] = field(default_factory=dict)

    def sample(self) -> dict[str, float | None]:
        return {"source server": process_cpu(server_pid(self.source)),
                "destination server": process_cpu(server_pid(self.destination)),
                "replicator": children_cpu(),
                "bench": time.process_time()}

    def __enter__(self) -> CpuMeter:
        self.start = self.sample()
        return self

    def __exit__(self, *exc_info: object) -> None:
        end = self.sample()
        self.used = {name: None if end[name] is None or self.start[name] is None
                     else end[name] - self.start[name]  # type: ignore[operator]
                     for name in end}

    def describe(self, seconds: float, names: tuple[str, ...]) -> str:
        parts = []
        for name in names:
            used = self.used.get(name)
            if used is not None and seconds > 0:
                parts.append(f"{name} {100 * used / seconds:.0f}%")
        return ", ".join(parts) + " of one core" if parts else "unavailable"


# -- the copy as a subprocess --------------------------------------------------------------


def copy_environment(args: argparse.Namespace, source: MotoServer, scan_url: str,
                     destination: MotoServer, task: str, call_timeout: float) -> dict[str, str]:
    """This process's environment without REPLICATOR_* or AWS_* variables, plus the
    copy's settings. Tuning variables only for the flags given. ``scan_url`` is the
    source endpoint (Scan, DescribeTable); streams and checkpoints go to ``source``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith((ENV_PREFIX, "AWS_"))}
    settings = {
        "source_table": SOURCE_TABLE,
        "source_region": SOURCE_REGION,
        "source_endpoint": scan_url,
        "source_streams_endpoint": source.url,
        "checkpoint_endpoint": source.url,
        "destination_table": COPY_TABLE,
        "destination_region": DESTINATION_REGION,
        "destination_endpoint": destination.url,
        "task_name": task,
        "worker_id": "bench-copier",
        "log_level": "info",
        "log_format": "json",
    }
    for name, value in (("copy_segments", args.segments), ("copy_concurrency", args.concurrency),
                        ("copy_writers", args.writers)):
        if value is not None:
            settings[name] = str(value)
    settings.update(timeout_settings(call_timeout))
    return {**base, **LOCAL_CREDENTIALS, "PYTHONUNBUFFERED": "1",
            **{env_name(name): value for name, value in settings.items()}}


def timeout_settings(call_timeout: float) -> dict[str, str]:
    """REPLICATOR_CALL_TIMEOUT, and a lease duration long enough for it (the replicator
    requires lease_duration > lease_renew_interval + call_timeout + 0.25 s)."""
    if call_timeout == copy_default("call_timeout"):
        return {}
    lease_duration = max(float(copy_default("lease_duration")), call_timeout + LEASE_MARGIN)
    return {"call_timeout": f"{call_timeout:g}", "lease_duration": f"{lease_duration:g}"}


def log_lines(path: Path) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for text in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(text)
            if isinstance(entry, dict):
                lines.append(entry)
    return lines


def event(lines: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((line for line in lines if line.get("event") == name), None)


def log_time(line: dict[str, Any] | None) -> float | None:
    if line is None or "timestamp" not in line:
        return None
    return datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()


def retry_summary(lines: list[dict[str, Any]]) -> str:
    """The copy's logged retries by operation and error, and its lease warnings."""
    counts: Counter[str] = Counter()
    for line in lines:
        if line.get("event") == "retrying":
            counts[f"{line.get('operation')} {line.get('error')}"] += 1
        elif line.get("event") in ("copy lease renewal failed", "copy lease lost",
                                   "copy taken over by another worker; waiting for it"):
            counts[str(line["event"])] += 1
    return "; ".join(f"{what}: {n}" for what, n in sorted(counts.items())) or "none"


@dataclass
class CopyRun:
    source: str  # FAST or MOTO
    seconds: float  # process start to exit
    items: int
    logged_rate: float | None  # the "copy finished" line's items_per_second
    logged_seconds: float | None
    segments: int | None
    startup: float | None  # process start to the "copy started" line
    counted: int
    exit_code: int
    cpu: str
    retries: str

    @property
    def rate(self) -> float:
        return self.items / self.seconds


# -- the benchmark ---------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, source_server: MotoServer,
                 destination_server: MotoServer, work_dir: Path) -> None:
        self.args = args
        self.source_server = source_server
        self.destination_server = destination_server
        self.work_dir = work_dir
        self.items = make_items(args.items, args.seed)
        self.batches = make_batches(self.items)
        self.copies = 0
        self.segments = args.segments or default_segments(0)
        self.fast_source: FastScanSource | None = None

    def endpoint(self, server: MotoServer, region: str) -> Endpoint:
        return Endpoint("dynamodb", region, server.url)

    async def fill_source(self) -> None:
        async with open_client(self.endpoint(self.source_server, SOURCE_REGION),
                               call_timeout=CALL_TIMEOUT,
                               max_connections=FILL_CONCURRENCY) as source:
            await create_table(source, SOURCE_TABLE, stream=True)
            seconds = await write_batches(source, SOURCE_TABLE, self.batches, FILL_CONCURRENCY)
            description = (await source.describe_table(TableName=SOURCE_TABLE))["Table"]
        count, size = int(description["ItemCount"]), int(description["TableSizeBytes"])
        if count != len(self.items):
            raise RuntimeError(f"the source holds {count} items, not {len(self.items)}")
        # What the copy will choose: it sizes segments by the same TableSizeBytes.
        self.segments = self.args.segments or default_segments(size)
        print(f"source filled: {count} items, {size / 1e6:.1f} MB (moto's TableSizeBytes), "
              f"in {seconds:.1f}s; the copy will use {self.segments} segments")

    def snapshot(self) -> ScanSnapshot:
        """The stand-in's copy of the source table: the items it was filled with, with
        every page of the copy's parallel Scan built before anything is timed."""
        started = time.perf_counter()
        snapshot = ScanSnapshot(SOURCE_TABLE, *KEY_NAMES,
                                [{name: to_wire(value) for name, value in item.items()}
                                 for item in self.items])
        pages = snapshot.warm(self.segments)
        print(f"stand-in source: {len(snapshot)} items, {pages} Scan pages for "
              f"{self.segments} segments built in {time.perf_counter() - started:.1f}s")
        return snapshot

    def scan_url(self, source: str) -> str:
        if source == MOTO:
            return self.source_server.url
        assert self.fast_source is not None
        return self.fast_source.url

    async def fresh_destination(self, table: str) -> None:
        """An empty destination server holding only ``table``."""
        self.destination_server.reset()
        async with open_client(self.endpoint(self.destination_server, DESTINATION_REGION),
                               call_timeout=CALL_TIMEOUT) as destination:
            await create_table(destination, table, stream=False)

    async def ceiling(self, round_number: int) -> tuple[float, int]:
        """Items/s of plain BatchWriteItem at each concurrency; returns the best and its c."""
        rates: dict[int, float] = {}
        order = CONCURRENCIES if round_number % 2 else tuple(reversed(CONCURRENCIES))
        for concurrency in order:
            await self.fresh_destination(CEILING_TABLE)
            async with open_client(self.endpoint(self.destination_server, DESTINATION_REGION),
                                   call_timeout=CALL_TIMEOUT,
                                   max_connections=concurrency) as destination:
                with CpuMeter(self.source_server, self.destination_server) as cpu:
                    seconds = await write_batches(destination, CEILING_TABLE, self.batches,
                                                  concurrency)
                count = await item_count(destination, CEILING_TABLE)
            if count != len(self.items):
                raise RuntimeError(f"ceiling c={concurrency}: the destination holds {count} "
                                   f"items, not {len(self.items)}")
            rates[concurrency] = len(self.items) / seconds
            print(f"  round {round_number} ceiling c={concurrency:<2}: {seconds:5.2f}s, "
                  f"{rates[concurrency]:7,.0f} items/s; CPU "
                  f"{cpu.describe(seconds, ('destination server', 'bench'))}")
        best = max(rates, key=lambda c: rates[c])
        return rates[best], best

    def copy_command(self, profile_path: Path | None) -> list[str]:
        command = [sys.executable, "-m", "replicator", "copy"]
        if profile_path is None:
            return command
        return [py_spy(), "record", "--format", "raw", "--rate", str(PROFILE_RATE),
                "--nonblocking", "-o", str(profile_path), "--", *command]

    async def copy(self, label: str, source: str, profile_dir: Path | None = None) -> CopyRun:
        """``python -m replicator copy`` from ``source`` (FAST or MOTO) into a fresh table;
        timed from start to exit."""
        self.copies += 1
        task = f"bench-copy-{self.copies}"  # a fresh checkpoint table, as on a first run
        label = f"{label} via {SOURCE_NAMES[source]}"
        await self.fresh_destination(COPY_TABLE)
        log_path = self.work_dir / f"{task}.log"
        err_path = self.work_dir / f"{task}.stderr"
        # Via the stand-in every setting is the replicator's default; moto needs a longer
        # call timeout (see the module docstring).
        call_timeout = (self.args.call_timeout if source == MOTO
                        else float(copy_default("call_timeout")))
        env = copy_environment(self.args, self.source_server, self.scan_url(source),
                               self.destination_server, task, call_timeout)
        profilers: list[tuple[str, subprocess.Popen[bytes]]] = []
        if profile_dir is not None:
            profilers = start_server_profiles(profile_dir, self.source_server,
                                              self.destination_server)
        try:
            with (log_path.open("wb") as out, err_path.open("wb") as err,
                  CpuMeter(self.source_server, self.destination_server) as cpu):
                started_wall, started = time.time(), time.perf_counter()
                process = await asyncio.create_subprocess_exec(
                    *self.copy_command(profile_dir and profile_dir / "replicator.txt"),
                    env=env, cwd=self.work_dir,  # no stray .env file is read
                    stdout=out, stderr=err,
                    start_new_session=True,  # its own process group: py-spy and its child
                )
                try:
                    code = await process.wait()
                finally:
                    if process.returncode is None:
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(process.pid, signal.SIGKILL)
                        await process.wait()
                seconds = time.perf_counter() - started
        finally:
            stop_profiles(profilers)
        lines = log_lines(log_path)
        finished = event(lines, "copy finished") or {}
        started_line = event(lines, "copy started") or {}
        startup_at = log_time(event(lines, "copy started"))
        if code != 0 or not finished:
            tail = err_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"{label}: the copy exited with code {code} without a "
                               f"'copy finished' line; log {log_path}; stderr: {tail}")
        async with open_client(self.endpoint(self.destination_server, DESTINATION_REGION),
                               call_timeout=CALL_TIMEOUT) as destination:
            counted = await item_count(destination, COPY_TABLE)
        run = CopyRun(
            source=source, seconds=seconds, items=len(self.items),
            logged_rate=finished.get("items_per_second"),
            logged_seconds=finished.get("seconds"),
            segments=started_line.get("segments"),
            startup=None if startup_at is None else startup_at - started_wall,
            counted=counted, exit_code=code,
            # Under py-spy the replicator is a grandchild: its CPU time is not counted.
            # The stand-in serves from this process ("bench").
            cpu=cpu.describe(seconds, ("source server", "destination server")
                             + (("replicator",) if profile_dir is None else ())
                             + (("bench",) if source == FAST else ())),
            retries=retry_summary(lines),
        )
        print(f"  {label}: {run.seconds:5.2f}s start to exit, {run.rate:7,.0f} items/s; "
              f"its log: {run.logged_rate:,} items/s in {run.logged_seconds}s "
              f"({run.segments} segments, {finished.get('items_written')} items written); "
              f"start-up to 'copy started' "
              f"{'?' if run.startup is None else f'{run.startup:.2f}s'}; "
              f"destination count {counted} {'OK' if counted == run.items else 'WRONG'}")
        print(f"    CPU during the copy: {run.cpu}; retries and lease trouble: {run.retries}")
        if counted != run.items:
            raise RuntimeError(f"{label}: the destination holds {counted} items, "
                               f"not {run.items}")
        return run

    async def scan_alone(self, round_number: int, source_name: str) -> float:
        """Items/s of plain Scan calls over segment 0 of the copy's segments, one at a
        time, no writes: how fast the source hands out what the copy reads."""
        segments = self.segments
        kwargs: dict[str, Any] = {"TableName": SOURCE_TABLE, "Segment": 0,
                                  "TotalSegments": segments, "ConsistentRead": True,
                                  "ReturnConsumedCapacity": "TOTAL"}
        items = pages = 0
        async with open_client(Endpoint("dynamodb", SOURCE_REGION, self.scan_url(source_name)),
                               call_timeout=CALL_TIMEOUT) as source:
            with CpuMeter(self.source_server, self.destination_server) as cpu:
                started = time.perf_counter()
                while True:
                    response = await source.scan(**kwargs)
                    items, pages = items + int(response["Count"]), pages + 1
                    if "LastEvaluatedKey" not in response:
                        break
                    kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
                seconds = time.perf_counter() - started
        print(f"  round {round_number} Scan alone via {SOURCE_NAMES[source_name]}: segment 0 "
              f"of {segments}, {items} items in {pages} page(s), {seconds:5.2f}s, "
              f"{items / seconds:7,.0f} items/s; "
              f"CPU {cpu.describe(seconds, ('source server', 'bench'))}")
        return items / seconds

    async def run(self, results: Results) -> None:
        await self.fill_source()
        async with FastScanSource(self.source_server.url, self.snapshot(),
                                  free_port()) as self.fast_source:
            await self.rounds(results)

    async def rounds(self, results: Results) -> None:
        sources = results.sources
        for number in range(1, self.args.rounds + 1):
            steps = ["ceiling", "scan", *sources]
            for step in steps if number % 2 else reversed(steps):
                if step == "ceiling":
                    results.ceilings.append(await self.ceiling(number))
                elif step == "scan":
                    for source in sources if number % 2 else reversed(sources):
                        results.scans[source].append(await self.scan_alone(number, source))
                else:
                    results.copies[step].append(await self.copy(f"round {number} copy", step))
        if self.args.profile is not None:
            directory = Path(self.args.profile)  # created by main
            print(f"profiled copy (py-spy at {PROFILE_RATE} Hz, not counted above); "
                  f"raw stacks in {directory}:")
            run = await self.copy("profiled copy", sources[0], directory)
            summarize_profiles(directory, run.seconds)


@dataclass
class Results:
    sources: list[str]  # the target's source first
    ceilings: list[tuple[float, int]] = field(default_factory=list)
    scans: dict[str, list[float]] = field(default_factory=dict)
    copies: dict[str, list[CopyRun]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for source in self.sources:
            self.scans.setdefault(source, [])
            self.copies.setdefault(source, [])

    def complete(self, rounds: int) -> bool:
        return all(len(self.copies[source]) == rounds for source in self.sources)


# -- profiles -------------------------------------------------------------------------------


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
    return found


def start_server_profiles(directory: Path, source: MotoServer,
                          destination: MotoServer) -> list[tuple[str, subprocess.Popen[bytes]]]:
    profilers = []
    for name, server in (("source-server", source), ("destination-server", destination)):
        pid = server_pid(server)
        if pid is None:
            continue
        process = subprocess.Popen(
            [py_spy(), "record", "--format", "raw", "--rate", str(PROFILE_RATE),
             "--nonblocking", "-o", str(directory / f"{name}.txt"), "--pid", str(pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        profilers.append((name, process))
    time.sleep(1.0)  # py-spy attaches before the copy starts
    return profilers


def stop_profiles(profilers: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _, process in profilers:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    for _, process in profilers:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def frame_name(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (package/module.py)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


def summarize_profiles(directory: Path, seconds: float, top: int = 10) -> None:
    for name in ("replicator", "source-server", "destination-server"):
        path = directory / f"{name}.txt"
        if not path.exists():
            print(f"  {name}: no profile written")
            continue
        own: Counter[str] = Counter()
        packages: Counter[str] = Counter()
        total = 0
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frame = frame_name(stack.split(";")[-1])
            total += int(count)
            own[frame] += int(count)
            packages[frame.rpartition(" (")[2].split("/")[0].rstrip(")")] += int(count)
        # The servers are profiled from a second before the copy to after it.
        print(f"  {name}: {total} samples of non-idle threads "
              f"(about {total / PROFILE_RATE:.1f}s busy, copy took {seconds:.1f}s)")
        share = max(1, total)
        print("    own time by package: " + ", ".join(
            f"{package} {100 * count / share:.0f}%" for package, count in packages.most_common(8)))
        for frame, count in own.most_common(top):
            print(f"    {100 * count / share:5.1f}%  {frame}")


# -- output ------------------------------------------------------------------------------


def report(results: Results) -> bool:
    """Print the table; True when every row of the target's copy (the first source's)
    meets the target. The copy via moto, when the stand-in is measured too, is limited
    by moto's Scan and shown for comparison only."""
    ceilings = [rate for rate, _ in results.ceilings]
    ceiling = statistics.median(ceilings)
    best = ", ".join(f"c={c}" for _, c in results.ceilings)

    def each(values: list[float]) -> str:
        return " / ".join(f"{value:,.0f}" for value in values)

    rows = [("measurement", "items/s median", "each round", "ratio to ceiling", "target", "met")]
    rows.append((f"ceiling: BatchWriteItem, best concurrency ({best})", f"{ceiling:,.0f}",
                 each(ceilings), "1.00", "", ""))
    for source in results.sources:
        scans = results.scans[source]
        if scans:
            scan = statistics.median(scans)
            rows.append((f"Scan alone via {SOURCE_NAMES[source]}, one segment (not a target)",
                         f"{scan:,.0f}", each(scans), f"{scan / ceiling:.2f}", "", ""))
    met = all(results.copies[source] for source in results.sources)
    for number, source in enumerate(results.sources):
        runs = results.copies[source]
        if not runs:
            continue
        target = number == 0
        name = f"copy via {SOURCE_NAMES[source]}"
        if source == MOTO and not target:
            name += " (limited by moto's Scan)"
        for what, values in (("process start to exit", [run.rate for run in runs]),
                             ("its 'copy finished' line",
                              [run.logged_rate or 0.0 for run in runs])):
            ratio = statistics.median(values) / ceiling
            ok = ratio >= TARGET
            if target:
                met = met and ok
            rows.append((f"{name}: {what}", f"{statistics.median(values):,.0f}", each(values),
                         f"{ratio:.2f}", f">= {TARGET:.2f}" if target else "",
                         ("yes" if ok else "NO") if target else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    print()
    for source in results.sources:
        runs = results.copies[source]
        startups = [run.startup for run in runs if run.startup is not None]
        if startups:
            whole = statistics.median(run.seconds for run in runs)
            print(f"copy via {SOURCE_NAMES[source]}: start-up (process start to its 'copy "
                  f"started' line), median: {statistics.median(startups):.2f}s of {whole:.2f}s")
    for source in results.sources:
        if results.scans[source]:
            scan = statistics.median(results.scans[source])
            serial = 1 / (1 / scan + 1 / ceiling)
            print(f"what Scan via {SOURCE_NAMES[source]} allows a copy (items/s): Scan and "
                  f"writes one after the other {serial:,.0f} ({serial / ceiling:.2f} x "
                  f"ceiling); overlapped {min(scan, ceiling):,.0f} "
                  f"({min(scan, ceiling) / ceiling:.2f} x ceiling)")
    return met


# -- main -------------------------------------------------------------------------------


def run_loop(coroutine: Any) -> Any:
    """On uvloop where it is installed, as ``python -m replicator`` runs."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


async def bench(args: argparse.Namespace, servers: list[MotoServer], work_dir: Path,
                results: Results) -> None:
    async with asyncio.timeout(args.max_seconds):
        await Bench(args, servers[0], servers[1], work_dir).run(results)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Bootstrap copy throughput against the destination's raw "
        "BatchWriteItem ceiling, on two local moto servers."
    )
    parser.add_argument("--items", type=int, default=20_000,
                        help="items in the source table (default 20000)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of the measurements, order alternating (default 2)")
    parser.add_argument("--segments", type=int, default=None,
                        help="REPLICATOR_COPY_SEGMENTS for the copy (default: the "
                        "replicator's, 4 per 256 MB of table, at least 4)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="REPLICATOR_COPY_CONCURRENCY for the copy (default: the "
                        f"replicator's, {copy_default('copy_concurrency')})")
    parser.add_argument("--writers", type=int, default=None,
                        help="REPLICATOR_COPY_WRITERS for the copy (default: the "
                        f"replicator's, {copy_default('copy_writers')})")
    parser.add_argument("--sources", choices=("both", FAST, MOTO), default="both",
                        help="the copy's source: the stand-in with DynamoDB's Scan speed "
                        "(the target), moto (limited by its Scan), or both (default)")
    parser.add_argument("--call-timeout", type=float, default=120.0,
                        help="REPLICATOR_CALL_TIMEOUT for the copy via moto (the copy via the "
                        "stand-in keeps the default), with REPLICATOR_LEASE_DURATION "
                        f"raised to it plus {LEASE_MARGIN:g}s (default 120: moto needs seconds "
                        "per Scan page of these items; the replicator's default "
                        f"{copy_default('call_timeout'):g} reproduces the copy's livelock)")
    parser.add_argument("--profile", metavar="DIR", default=None,
                        help="after the rounds, one more copy under py-spy (replicator and "
                        "both servers); raw stacks written to DIR")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--max-seconds", type=float, default=1200.0,
                        help="give up after this long (default 1200)")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the copy's log files even when the run passed")
    args = parser.parse_args(argv)
    if args.items < BATCH:
        parser.error(f"--items must be at least {BATCH}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    local_environment()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"bootstrap copy benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC, "
          f"{os.cpu_count()} CPUs {platform.machine()}, Python {platform.python_version()}, "
          f"code {code_version()}, load average {load}")
    timeouts = timeout_settings(args.call_timeout)
    sources = [FAST, MOTO] if args.sources == "both" else [args.sources]
    print(f"{args.items} items, {args.rounds} rounds; copy via "
          f"{' and via '.join(SOURCE_NAMES[source] for source in sources)}; copy settings: "
          f"segments {args.segments or 'default'}, concurrency "
          f"{args.concurrency or copy_default('copy_concurrency')}, writers "
          f"{args.writers or copy_default('copy_writers')}, default call_timeout and "
          "lease_duration"
          + (f" (via moto: call_timeout {timeouts['call_timeout']}s and lease_duration "
             f"{timeouts['lease_duration']}s)" if timeouts and MOTO in sources else "")
          + f"; ceiling concurrencies {', '.join(map(str, CONCURRENCIES))}")
    work_dir = Path(tempfile.mkdtemp(prefix="bench-copy-"))
    if args.profile is not None:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    servers = [MotoServer(), MotoServer()]
    results = Results(sources)
    ok = False
    try:
        for server in servers:
            server.start()
        run_loop(bench(args, servers, work_dir, results))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except TimeoutError:
        print(f"benchmark failed: not done within {args.max_seconds:g}s (--max-seconds)",
              file=sys.stderr, flush=True)
    except RuntimeError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr, flush=True)
    finally:
        with signals_ignored():
            for server in servers:
                server.stop()
        if results.ceilings and any(results.copies.values()):
            ok = report(results) and results.complete(args.rounds)
            print(f"load average at the end: "
                  f"{', '.join(f'{value:.2f}' for value in os.getloadavg())}")
        if ok and not args.keep_logs:
            shutil.rmtree(work_dir, ignore_errors=True)
        else:
            print(f"copy logs kept in {work_dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
