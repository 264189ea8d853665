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
import random
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fast_scan import FastScanSource, ScanSnapshot, to_wire
from harness import (
    BATCH,
    DESTINATION,
    LEASE_MARGIN,
    PROFILE_RATE,
    SOURCE,
    CpuMeter,
    Line,
    Product,
    Stopwatch,
    at_least,
    aws_client,
    batches_of,
    common_arguments,
    each,
    fresh_table,
    guarded,
    item_count,
    leave_logs,
    log_time,
    machine,
    moto_servers,
    print_table,
    product_environment,
    py_spy_command,
    replication_settings,
    run_loop,
    server_pid,
    setting_default,
    start,
    summary_row,
    timeout_settings,
    work_directory,
    write_batches,
    write_summary,
    yes_no,
)

from replicator.copy.scan import default_segments
from replicator.dev.local import MotoServer, free_port
from replicator.dev.workload import KEY_NAMES, create_table, random_item

CEILING_TABLE = "bench-ceiling"
COPY_TABLE = "bench-copy"
CONCURRENCIES = (1, 4, 16, 32)
#: The copy should reach this share of the destination's raw write rate.
TARGET = 0.80
FILL_CONCURRENCY = 8
#: The copy's sources: the stand-in with DynamoDB's Scan speed, and moto itself.
FAST, MOTO = "fast", "moto"
SOURCE_NAMES = {FAST: "the stand-in", MOTO: "moto"}
#: Events of the copy's log counted beside its retries.
LEASE_TROUBLE = ("copy lease renewal failed", "copy lease lost",
                 "copy taken over by another worker; waiting for it")
SOURCE_CPU, DESTINATION_CPU, COPY_CPU = "source server", "destination server", "replicator"


# -- items ---------------------------------------------------------------------------------


def make_items(count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` distinct keys over 1000 partition keys, every attribute type."""
    rng = random.Random(seed)
    partitions = max(1, min(1000, count // 4))
    return [random_item(rng, {"pk": {"S": f"user-{k % partitions}"}, "sk": {"N": str(k)}})
            for k in range(count)]


# -- the copy as a subprocess --------------------------------------------------------------


def copy_environment(args: argparse.Namespace, source: MotoServer, scan_url: str,
                     destination: MotoServer, task: str, call_timeout: float) -> dict[str, str]:
    """The copy's settings. Tuning variables only for the flags given. ``scan_url`` is the
    source endpoint (Scan, DescribeTable); streams and checkpoints go to ``source``."""
    settings = replication_settings(scan_url, destination.url, task,
                                    source_streams_endpoint=source.url,
                                    checkpoint_endpoint=source.url,
                                    destination_table=COPY_TABLE, worker_id="bench-copier")
    for name, value in (("copy_segments", args.segments), ("copy_concurrency", args.concurrency),
                        ("copy_writers", args.writers)):
        if value is not None:
            settings[name] = str(value)
    settings.update(timeout_settings(call_timeout))
    return product_environment(settings)


def retry(line: Line) -> str | None:
    """The copy's logged retries by operation and error, and its lease warnings."""
    if line.get("event") == "retrying":
        return f"{line.get('operation')} {line.get('error')}"
    return str(line["event"]) if line.get("event") in LEASE_TROUBLE else None


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
        self.batches = batches_of([{"PutRequest": {"Item": item}} for item in self.items])
        self.copies = 0
        self.segments = args.segments or default_segments(0)
        self.fast_source: FastScanSource | None = None

    def destination(self, max_connections: int = 10) -> Any:
        return aws_client(self.destination_server.url, DESTINATION.region,
                          max_connections=max_connections)

    def cpu(self) -> CpuMeter:
        """CPU of both servers, of the copy (a child reaped) and of this process."""
        return CpuMeter({SOURCE_CPU: server_pid(self.source_server),
                         DESTINATION_CPU: server_pid(self.destination_server)},
                        children=COPY_CPU)

    async def fill_source(self) -> None:
        async with aws_client(self.source_server.url, SOURCE.region,
                              max_connections=FILL_CONCURRENCY) as source:
            await create_table(source, SOURCE.table, stream=True)
            seconds = await write_batches(source, SOURCE.table, self.batches, FILL_CONCURRENCY)
            description = (await source.describe_table(TableName=SOURCE.table))["Table"]
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
        watch = Stopwatch()
        snapshot = ScanSnapshot(SOURCE.table, *KEY_NAMES,
                                [{name: to_wire(value) for name, value in item.items()}
                                 for item in self.items])
        pages = snapshot.warm(self.segments)
        print(f"stand-in source: {len(snapshot)} items, {pages} Scan pages for "
              f"{self.segments} segments built in {watch.seconds:.1f}s")
        return snapshot

    def scan_url(self, source: str) -> str:
        if source == MOTO:
            return self.source_server.url
        assert self.fast_source is not None
        return self.fast_source.url

    async def ceiling(self, round_number: int) -> tuple[float, int]:
        """Items/s of plain BatchWriteItem at each concurrency; returns the best and its c."""
        rates: dict[int, float] = {}
        order = CONCURRENCIES if round_number % 2 else tuple(reversed(CONCURRENCIES))
        for concurrency in order:
            await fresh_table(self.destination_server, DESTINATION.region, CEILING_TABLE)
            async with self.destination(max_connections=concurrency) as destination:
                with self.cpu() as cpu:
                    seconds = await write_batches(destination, CEILING_TABLE, self.batches,
                                                  concurrency)
                count = await item_count(destination, CEILING_TABLE)
            if count != len(self.items):
                raise RuntimeError(f"ceiling c={concurrency}: the destination holds {count} "
                                   f"items, not {len(self.items)}")
            rates[concurrency] = len(self.items) / seconds
            print(f"  round {round_number} ceiling c={concurrency:<2}: {seconds:5.2f}s, "
                  f"{rates[concurrency]:7,.0f} items/s; CPU "
                  f"{cpu.describe(seconds, (DESTINATION_CPU, 'bench'))}")
        best = max(rates, key=lambda c: rates[c])
        return rates[best], best

    async def copy(self, label: str, source: str, profile_dir: Path | None = None) -> CopyRun:
        """``python -m replicator copy`` from ``source`` (FAST or MOTO) into a fresh table;
        timed from start to exit."""
        self.copies += 1
        task = f"bench-copy-{self.copies}"  # a fresh checkpoint table, as on a first run
        label = f"{label} via {SOURCE_NAMES[source]}"
        await fresh_table(self.destination_server, DESTINATION.region, COPY_TABLE)
        # Via the stand-in every setting is the replicator's default; moto needs a longer
        # call timeout (see the module docstring).
        call_timeout = (self.args.call_timeout if source == MOTO
                        else float(setting_default("call_timeout")))
        env = copy_environment(self.args, self.source_server, self.scan_url(source),
                               self.destination_server, task, call_timeout)
        profilers: list[subprocess.Popen[bytes]] = []
        prefix: list[str] = []
        if profile_dir is not None:
            profilers = start_server_profiles(profile_dir, self.source_server,
                                              self.destination_server)
            prefix = py_spy_command(profile_dir / "replicator.txt")
        try:
            with self.cpu() as cpu:
                # Its own process group: py-spy and its child are killed as one.
                proc = Product(env, self.work_dir / f"{task}.log", args=["copy"],
                               prefix=prefix, session=True)
                try:
                    code = await proc.exited()
                    seconds = proc.watch.seconds
                finally:
                    proc.kill()
        finally:
            stop_profiles(profilers)
        finished = proc.first("copy finished") or {}
        started_line = proc.first("copy started")
        if code != 0 or not finished:
            tail = proc.err_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"{label}: the copy exited with code {code} without a "
                               f"'copy finished' line; log {proc.log_path}; stderr: {tail}")
        async with self.destination() as destination:
            counted = await item_count(destination, COPY_TABLE)
        # Under py-spy the replicator is a grandchild: its CPU time is not counted.
        # The stand-in serves from this process ("bench").
        cpu_names = ((SOURCE_CPU, DESTINATION_CPU) + ((COPY_CPU,) if profile_dir is None else ())
                     + (("bench",) if source == FAST else ()))
        run = CopyRun(
            source=source, seconds=seconds, items=len(self.items),
            logged_rate=finished.get("items_per_second"),
            logged_seconds=finished.get("seconds"),
            segments=(started_line or {}).get("segments"),
            startup=None if started_line is None else log_time(started_line) - proc.started_at,
            counted=counted, exit_code=code, cpu=cpu.describe(seconds, cpu_names),
            retries=proc.tally(retry),
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
        kwargs: dict[str, Any] = {"TableName": SOURCE.table, "Segment": 0,
                                  "TotalSegments": segments, "ConsistentRead": True,
                                  "ReturnConsumedCapacity": "TOTAL"}
        items = pages = 0
        async with aws_client(self.scan_url(source_name), SOURCE.region) as source:
            with self.cpu() as cpu:
                watch = Stopwatch()
                while True:
                    response = await source.scan(**kwargs)
                    items, pages = items + int(response["Count"]), pages + 1
                    if "LastEvaluatedKey" not in response:
                        break
                    kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
                seconds = watch.seconds
        print(f"  round {round_number} Scan alone via {SOURCE_NAMES[source_name]}: segment 0 "
              f"of {segments}, {items} items in {pages} page(s), {seconds:5.2f}s, "
              f"{items / seconds:7,.0f} items/s; "
              f"CPU {cpu.describe(seconds, (SOURCE_CPU, 'bench'))}")
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


def start_server_profiles(directory: Path, source: MotoServer,
                          destination: MotoServer) -> list[subprocess.Popen[bytes]]:
    profilers = []
    for name, server in (("source-server", source), ("destination-server", destination)):
        pid = server_pid(server)
        if pid is not None:
            profilers.append(subprocess.Popen(py_spy_command(directory / f"{name}.txt", pid),
                                              stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))
    time.sleep(1.0)  # py-spy attaches before the copy starts
    return profilers


def stop_profiles(profilers: list[subprocess.Popen[bytes]]) -> None:
    for process in profilers:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    for process in profilers:
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


def report(results: Results) -> tuple[bool, float | None]:
    """Print the table; True when every row of the target's copy (the first source's)
    meets the target, and that copy's ratio to the ceiling from start to exit. The copy
    via moto, when the stand-in is measured too, is limited by moto's Scan and shown for
    comparison only."""
    ceilings = [rate for rate, _ in results.ceilings]
    ceiling = statistics.median(ceilings)
    best = ", ".join(f"c={c}" for _, c in results.ceilings)
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
    target_ratio = None
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
                target_ratio = ratio if target_ratio is None else target_ratio
            rows.append((f"{name}: {what}", f"{statistics.median(values):,.0f}", each(values),
                         f"{ratio:.2f}", f">= {TARGET:.2f}" if target else "",
                         yes_no(ok) if target else ""))
    print_table(rows)
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
    return met, target_ratio


def summary(results: Results, ratio: float | None, met: bool) -> list[dict[str, Any]]:
    """The target's row of ``all.py``'s summary."""
    source = results.sources[0]
    runs = results.copies[source]
    figure = "no copy finished"
    if ratio is not None:
        figure = (f"{ratio:.2f} x ceiling ({statistics.median(run.rate for run in runs):,.0f} "
                  f"items/s, process start to exit, source Scan via {SOURCE_NAMES[source]})")
    return [summary_row("bootstrap copy / BatchWriteItem ceiling", figure,
                        f">= {TARGET:.2f} x ceiling", met)]


# -- main -------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, servers: list[MotoServer], work_dir: Path,
                results: Results) -> None:
    try:
        async with asyncio.timeout(args.max_seconds):
            await Bench(args, servers[0], servers[1], work_dir).run(results)
    except TimeoutError:
        raise TimeoutError(f"not done within {args.max_seconds:g}s (--max-seconds)") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Bootstrap copy throughput against the destination's raw "
        "BatchWriteItem ceiling, on two local moto servers."
    )
    parser.add_argument("--items", type=at_least(BATCH), default=20_000,
                        help=f"items in the source table (default 20000, at least {BATCH})")
    parser.add_argument("--segments", type=int, default=None,
                        help="REPLICATOR_COPY_SEGMENTS for the copy (default: the "
                        "replicator's, 4 per 256 MB of table, at least 4)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="REPLICATOR_COPY_CONCURRENCY for the copy (default: the "
                        f"replicator's, {setting_default('copy_concurrency')})")
    parser.add_argument("--writers", type=int, default=None,
                        help="REPLICATOR_COPY_WRITERS for the copy (default: the "
                        f"replicator's, {setting_default('copy_writers')})")
    parser.add_argument("--sources", choices=("both", FAST, MOTO), default="both",
                        help="the copy's source: the stand-in with DynamoDB's Scan speed "
                        "(the target), moto (limited by its Scan), or both (default)")
    parser.add_argument("--call-timeout", type=float, default=120.0,
                        help="REPLICATOR_CALL_TIMEOUT for the copy via moto (the copy via the "
                        "stand-in keeps the default), with REPLICATOR_LEASE_DURATION "
                        f"raised to it plus {LEASE_MARGIN:g}s (default 120: moto needs seconds "
                        "per Scan page of these items; the replicator's default "
                        f"{setting_default('call_timeout'):g} reproduces the copy's livelock)")
    parser.add_argument("--profile", metavar="DIR", default=None,
                        help="after the rounds, one more copy under py-spy (replicator and "
                        "both servers); raw stacks written to DIR")
    common_arguments(parser, rounds=2, max_seconds=1200.0, keep_logs=True)
    return parser.parse_args(argv)


def settings_line(args: argparse.Namespace, sources: list[str]) -> str:
    timeouts = timeout_settings(args.call_timeout)
    return (f"{args.items} items, {args.rounds} rounds; copy via "
            f"{' and via '.join(SOURCE_NAMES[source] for source in sources)}; copy settings: "
            f"segments {args.segments or 'default'}, concurrency "
            f"{args.concurrency or setting_default('copy_concurrency')}, writers "
            f"{args.writers or setting_default('copy_writers')}, default call_timeout and "
            "lease_duration"
            + (f" (via moto: call_timeout {timeouts['call_timeout']}s and lease_duration "
               f"{timeouts['lease_duration']}s)" if timeouts and MOTO in sources else "")
            + f"; ceiling concurrencies {', '.join(map(str, CONCURRENCIES))}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start("bootstrap copy benchmark")
    sources = [FAST, MOTO] if args.sources == "both" else [args.sources]
    print(settings_line(args, sources))
    work_dir = work_directory("copy")
    if args.profile is not None:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    results = Results(sources)

    def body() -> int:
        with moto_servers() as servers:
            run_loop(bench(args, servers, work_dir, results))
        return 0

    code = guarded(body, lambda exc: 1)
    ok = False
    if results.ceilings and any(results.copies.values()):
        met, ratio = report(results)
        ok = met and results.complete(args.rounds)
        write_summary(args.json, summary(results, ratio, ok))
        print(f"finished {machine()}")
    else:
        write_summary(args.json, [summary_row("bootstrap copy", "failed: see its output",
                                              f">= {TARGET:.2f} x ceiling", False)])
    leave_logs(work_dir, keep=not ok or args.keep_logs)
    return 130 if code == 130 else 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
