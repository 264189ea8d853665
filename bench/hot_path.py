"""The stream hot path on the stand-in: the replicator against the bare pipeline.

moto serves GetRecords and BatchWriteItem far slower than DynamoDB, so the
other stream benchmarks measure moto as much as the replicator. This one runs
on ``stand_in.py`` (a stream, its source table and the destination table on one
127.0.0.1 port, served from records built in memory), in a process of its own,
with the checkpoint table on a moto server. The stand-in, moto and this script
are pinned to core 0 (``taskset -c 0``), the process measured to core 1, so that
it has a core of its own (unpinned, and said so, when ``taskset`` is missing or
the machine has one core).

The backlog: ``--records`` records (default 200,000) over 16 shards, items of
1 KB by DynamoDB's rules with every attribute type, NEW_AND_OLD_IMAGES (50%
INSERT, 30% MODIFY, 20% REMOVE; ``Stream.generate``). Each run starts on an
emptied destination (the stand-in's ``/reset``) and a reset moto.

* drain, ``--rounds`` rounds (default 2, order alternating): ``python -m
  replicator`` (defaults, except ``bootstrap=never``, ``progress_interval=0.25``,
  the checkpoint endpoint, no metrics port) from TRIM_HORIZON, timed from its
  "replication starting" line to the last BatchWriteItem the stand-in received
  once the destination holds the backlog's final items; its CPU (``/proc``) over
  the same span. Against ``pipelines.py bare`` (one loop per shard, botocore
  parsing, 8 writes in flight), timed by itself from its clients' opening to its
  last write. Rows: CPU per record replicator / bare (<= 0.25) and records/s
  replicator / bare (>= 3), medians of the rounds;
* memory: the replicator's peak RSS (VmHWM) draining each of
  ``--memory-backlogs`` (default 50,000 and 200,000; the drain's rounds give the
  size equal to ``--records``): < 150 MB, and largest <= 1.10 x smallest;
* lag: a stand-in with 8 empty shards; the replicator (same settings) reads
  them from TRIM_HORIZON while this script appends 2,000 new 1 KB items a
  second over the 8 shards (``/append``, every 20 ms, each record stamped on
  arrival) for ``--lag-seconds`` (default 60). A record's lag: the time the
  stand-in received the write of its item minus its arrival (both the stand-in's
  clock). p50 <= idle_interval / 2 + 50 ms, p99 <= 500 ms;
* write cap: the backlog drained again with ``REPLICATOR_MAX_WCU`` at half the
  write units a second the replicator's drains wrote (the stand-in counts them,
  a put one per started KB, a delete one); the write units a second the stand-in
  received over the steady part (20% to 80% of the span from the first write to
  the last) within 5% of the cap.

    .venv/bin/python bench/hot_path.py [--records 200000] [--memory-backlogs 50000,200000]
        [--lag-seconds 60] [--rounds 2] [--json PATH]

About 11 minutes on 2 cores with the defaults (the bare pipeline drains at about
1,300 records/s). Only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
from fast_scan import item_size
from harness import (
    CLOCK_TICKS,
    DESTINATION,
    Line,
    PerRecord,
    Product,
    Row,
    children_cpu,
    failed,
    finish,
    guarded,
    log_time,
    moto_servers,
    peak_rss_mb,
    print_table,
    process_cpu,
    product_environment,
    py_spy_command,
    replication_settings,
    run_loop,
    run_process,
    script_command,
    server_pid,
    setting_default,
    start,
    summary_row,
    work_directory,
    yes_no,
)
from profile_summary import describe as describe_profile
from profile_summary import stacks as profile_stacks
from stand_in import item_body, partition_keys

from replicator.dev.local import MotoServer

SHARDS = 16
LAG_SHARDS = 8
ITEM_BYTES = 1024
VIEW = "NEW_AND_OLD_IMAGES"
CPU_TARGET = 0.25  # replicator / bare CPU per record, at most
RATE_TARGET = 3.0  # replicator / bare records/s, at least
RSS_TARGET_MB = 150.0
FLAT = 1.10
LAG_RATE = 2000.0  # records a second
LAG_TICK = 0.02  # seconds between appends
LAG_MARGIN = 0.050  # p50 target: idle_interval / 2 + this
LAG_P99 = 0.500
CAP_SHARE = 0.5  # REPLICATOR_MAX_WCU: this share of the measured drain's write units/s
CAP_TOLERANCE = 0.05
STEADY = (0.2, 0.8)  # the steady part of a capped drain, as shares of its write span
PROGRESS_INTERVAL = "0.25"
POLL = 0.05  # seconds between the stand-in's /stats while a drain runs
QUIET = 5.0  # seconds without a write after which a drain that read everything is over
BUILD_TIMEOUT = 300.0
SHARED_NOTE = 0.05  # other processes' share of the measured core worth a word in the rows
NAMES = ("replicator", "bare")


# -- pinning ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pinning:
    """``taskset -c`` prefixes: core 0 for the servers and this script, core 1 for the
    process measured; none when ``taskset`` is missing or there is one core."""

    servers: tuple[str, ...]
    measured: tuple[str, ...]
    note: str
    core: int | None = None  # the measured process's core

    def busy(self) -> float:
        """CPU seconds the measured core has been busy, every process's (/proc/stat); 0
        when unpinned."""
        if self.core is None:
            return 0.0
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith(f"cpu{self.core} "):
                ticks = [int(value) for value in line.split()[1:9]]
                return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS  # less idle, iowait
        return 0.0

    def others(self, busy: float, used: float, seconds: float) -> float | None:
        """The share of the measured core that other processes took: of ``busy`` seconds
        of it over ``seconds``, those beyond the measured process's ``used``."""
        if self.core is None or seconds <= 0:
            return None
        return max(0.0, busy - used) / seconds

    @classmethod
    def detect(cls) -> Pinning:
        taskset = shutil.which("taskset")
        cores = sorted(os.sched_getaffinity(0))
        if taskset is None or len(cores) < 2:
            why = "no taskset" if taskset is None else "one core"
            return cls((), (), f"UNPINNED ({why}): every process shares the cores")
        low, high = str(cores[0]), str(cores[1])
        os.sched_setaffinity(0, {cores[0]})  # this script, and moto (a child) with it
        return cls((taskset, "-c", low), (taskset, "-c", high),
                   f"pinned: stand-in, moto and this script on core {low} (taskset -c {low}), "
                   f"the process measured on core {high} (taskset -c {high}); other "
                   "processes of the machine are not kept off it (their share of it is "
                   "shown)", cores[1])


# -- the stand-in, a process of its own ------------------------------------------------


class StandInProcess:
    """``stand_in.py`` run as its own process, and its plain-HTTP endpoints."""

    def __init__(self, records: int, shards: int, work_dir: Path, pinning: Pinning) -> None:
        self.records = records
        self.shards = shards
        self.err_path = work_dir / f"stand-in-{records}-{shards}.stderr"
        self.url = ""
        command = script_command("stand_in.py", "--port", "0", "--shards", str(shards),
                                 "--records", str(records), "--item-bytes", str(ITEM_BYTES),
                                 "--view", VIEW)
        with self.err_path.open("wb") as err:
            self.process = subprocess.Popen([*pinning.servers, *command], stdout=subprocess.PIPE,
                                            stderr=err, env=product_environment(), text=True)
        self.http: aiohttp.ClientSession | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    async def started(self) -> StandInProcess:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline),
                                      BUILD_TIMEOUT)
        if not line.startswith("listening on "):
            raise RuntimeError(f"the stand-in did not start: {line!r}; "
                               f"{self.err_path.read_text()[-2000:]}")
        self.url = line.split()[-1]
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        return self

    def built(self) -> str:
        return self.err_path.read_text().strip().splitlines()[0]

    async def get(self, path: str) -> Any:
        assert self.http is not None
        async with self.http.get(self.url + path) as response:
            response.raise_for_status()
            return await response.json()

    async def post(self, path: str, body: Any) -> Any:
        assert self.http is not None
        async with self.http.post(self.url + path, json=body) as response:
            response.raise_for_status()
            return await response.json()

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.get("/stats")
        return result

    async def reset(self, *, track: bool = True) -> None:
        await self.post("/reset", {"track": track})

    def cpu(self) -> float:
        return process_cpu(self.pid)

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, 10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.asynccontextmanager
async def stand_in(records: int, shards: int, work_dir: Path, pinning: Pinning) -> Any:
    server = StandInProcess(records, shards, work_dir, pinning)
    try:
        yield await server.started()
    finally:
        with contextlib.suppress(Exception):
            await server.stop()


# -- one drain ---------------------------------------------------------------------------


@dataclass
class Drain(PerRecord):
    name: str
    records: int
    seconds: float
    cpu: float
    peak_rss_mb: float
    writes: int  # puts and deletes the stand-in received
    units: int  # write units the stand-in received
    stand_in_cpu: float  # the stand-in's CPU seconds over the drain (roughly)
    note: str = ""
    unit_log: list[tuple[float, int]] = field(default_factory=list)
    others: float | None = None  # share of the measured core other processes took

    @property
    def units_rate(self) -> float:
        return self.units / self.seconds

    def line(self) -> str:
        gap, at = longest_gap(self.unit_log)
        return (f"{self.records:,} records in {self.seconds:6.2f}s = {self.rate:7,.0f} "
                f"records/s; CPU {self.cpu:6.2f}s ({100 * self.cpu / self.seconds:.0f}% of a "
                f"core) = {self.cpu_per_10k:5.2f}s per 10k records; "
                f"peak RSS {self.peak_rss_mb:.0f} MB; {self.writes:,} writes, "
                f"{self.units:,} write units ({self.units_rate:,.0f}/s); longest pause "
                f"between writes {gap:.2f}s at {at:.1f}s; stand-in CPU "
                f"{100 * self.stand_in_cpu / self.seconds:.0f}%; "
                + (f"other processes on its core {100 * self.others:.0f}%; "
                   if self.others is not None else "") + self.note)


def held(stats: dict[str, Any]) -> int:
    """The items the destination table holds, by the stand-in's /stats."""
    return int(stats["items"][DESTINATION.table])


def replicator_settings(server: StandInProcess, checkpoints: MotoServer, task: str,
                        **extra: str) -> dict[str, str]:
    return replication_settings(server.url, server.url, task, worker_id=f"{task}-worker",
                                metrics_port="0", bootstrap="never",
                                progress_interval=PROGRESS_INTERVAL,
                                checkpoint_endpoint=checkpoints.url, **extra)


def unusual(line: Line) -> str | None:
    """A warning or an error of the replicator's log, by event (and error)."""
    if line.get("level") not in ("warning", "error", "critical"):
        return None
    error = line.get("error") or line.get("exc_type") or ""
    return f"{line.get('event')}" + (f" ({str(error)[:80]})" if error else "")


def progress_note(proc: Product) -> str:
    depths = [int(line["queue_depth"]) for line in proc.events("progress")
              if isinstance(line.get("queue_depth"), int)]
    high = f"queue depth max {max(depths):,}; " if depths else ""
    return f"{high}warnings/errors: {proc.tally(unusual)}"


def attach_py_spy(out: Path, pid: int, pinning: Pinning) -> subprocess.Popen[bytes]:
    """py-spy recording process ``pid``'s raw stacks to ``out`` until it exits."""
    return subprocess.Popen([*pinning.servers, *py_spy_command(out, pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def replicator_drain(server: StandInProcess, checkpoints: MotoServer, task: str,
                           work_dir: Path, pinning: Pinning, *, within: float,
                           profile: Path | None = None, **extra: str) -> Drain:
    """The replicator drains the stand-in's whole backlog from TRIM_HORIZON. ``profile``:
    py-spy (on the servers' core) records its raw stacks there meanwhile."""
    checkpoints.reset()
    await server.reset(track=True)
    expected = await server.stats()
    env = product_environment(replicator_settings(server, checkpoints, task, **extra))
    proc = Product(env, work_dir / f"{task}.log", prefix=pinning.measured)
    pid = proc.process.pid
    try:
        started = await proc.wait_for_event("replication starting", 60)
        cpu_start, stand_in_start = process_cpu(pid), server.cpu()
        busy_start, time_start = pinning.busy(), time.time()
        samples: list[tuple[float, float, float]] = []  # (time, CPU seconds, core busy)
        deadline = time.monotonic() + within
        writes, quiet_since = -1, time.monotonic()
        spy = None
        if profile is not None:
            spy = attach_py_spy(profile, pid, pinning)
        while True:
            stats = await server.stats()
            samples.append((time.time(), process_cpu(pid), pinning.busy()))
            received = stats["items_written"] + stats["items_deleted"]
            unchanged = received == writes  # since the last poll
            if not unchanged:
                writes, quiet_since = received, time.monotonic()
            complete = held(stats) == expected["live_items"]
            read_all = stats["records_served"] >= expected["records"]
            if read_all and ((complete and unchanged) or time.monotonic() - quiet_since > QUIET):
                break
            if proc.returncode is not None:
                raise RuntimeError(f"the replicator exited (code {proc.returncode}) before "
                                   f"the drain was done:\n{proc.excerpt(20)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replicator did not drain {expected['records']:,} "
                                   f"records within {within:g}s: {stats}\n{proc.excerpt(20)}")
            await asyncio.sleep(POLL)
        if not complete:
            raise RuntimeError(f"the replicator read every record, but the destination holds "
                               f"{held(stats):,} items, not "
                               f"{expected['live_items']:,}, and nothing was written for "
                               f"{QUIET:g}s: {stats}\n{proc.excerpt(20)}")
        last = stats["last_write"]
        end = next((sample for sample in samples if sample[0] >= last), samples[-1])
        cpu_end = end[1]
        others = pinning.others(end[2] - busy_start, cpu_end - cpu_start, end[0] - time_start)
        rss = peak_rss_mb(pid)
        stand_in_cpu = server.cpu() - stand_in_start
        note = progress_note(proc)
    finally:
        proc.stop()
        if spy is not None:
            await asyncio.to_thread(spy.wait, 30)
    writes_log = await server.get("/writes")
    unit_log = [(float(at), int(units)) for at, units in writes_log["units"]]
    save_unit_log(work_dir / f"{task}-writes.csv", unit_log)
    return Drain("replicator", expected["records"], last - log_time(started),
                 cpu_end - cpu_start, rss, writes, sum(u for _, u in unit_log), stand_in_cpu,
                 note, unit_log, others)


def save_unit_log(path: Path, unit_log: Sequence[tuple[float, int]]) -> None:
    """Each BatchWriteItem the stand-in received: seconds from the first, write units."""
    first = min((at for at, _ in unit_log), default=0.0)
    path.write_text("seconds,units\n" + "".join(f"{at - first:.4f},{units}\n"
                                                 for at, units in unit_log))


def longest_gap(unit_log: Sequence[tuple[float, int]]) -> tuple[float, float]:
    """The longest time without a write between the first and the last, and when it began
    (seconds from the first write)."""
    times = sorted(at for at, _ in unit_log)
    if len(times) < 2:
        return 0.0, 0.0
    gap, at = max((b - a, a) for a, b in pairwise(times))
    return gap, at - times[0]


async def bare_drain(server: StandInProcess, pinning: Pinning, work_dir: Path, *,
                     within: float) -> Drain:
    """``pipelines.py bare`` drains the stand-in's whole backlog: its own timing and CPU."""
    await server.reset(track=True)
    expected = await server.stats()
    command = [*pinning.measured,
               *script_command("pipelines.py", "bare", "--source", server.url,
                               "--destination", server.url, "--records",
                               str(expected["records"]))]
    stand_in_start, busy_start, child_start = server.cpu(), pinning.busy(), children_cpu()
    finished = await asyncio.to_thread(run_process, command, name="bare",
                                       env=product_environment(), timeout=within)
    stand_in_cpu = server.cpu() - stand_in_start
    others = pinning.others(pinning.busy() - busy_start, children_cpu() - child_start,
                            finished.seconds)
    result = finished.check().last_json()
    stats = await server.stats()
    if held(stats) != expected["live_items"]:
        raise RuntimeError(f"bare: the destination holds {held(stats):,} items, not "
                           f"{expected['live_items']:,}")
    writes_log = await server.get("/writes")
    unit_log = [(float(at), int(units)) for at, units in writes_log["units"]]
    save_unit_log(work_dir / "bare-writes.csv", unit_log)
    return Drain("bare", int(result["records"]), float(result["seconds"]),
                 float(result["cpu"]), float(result["peak_rss_mb"]),
                 stats["items_written"] + stats["items_deleted"],
                 sum(u for _, u in unit_log), stand_in_cpu,
                 f"{result['writes']:,} write calls", unit_log, others)


# -- the measurements ------------------------------------------------------------------


@dataclass
class Lag:
    seconds: float
    asked: float
    appended: int = 0
    append_seconds: float = 0.0
    lags: list[float] = field(default_factory=list)  # in append order
    offsets: list[float] = field(default_factory=list)  # arrival - first arrival
    unseen: int = 0
    idle_interval: float = 0.25
    cpu: float = 0.0  # the replicator's CPU seconds while the records were appended
    others: float | None = None  # share of its core other processes took meanwhile
    note: str = ""

    @property
    def achieved(self) -> float:
        return self.appended / self.append_seconds if self.append_seconds else 0.0

    def quantile(self, q: float) -> float:
        values = sorted(self.lags)
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("inf")

    @property
    def p50_target(self) -> float:
        return self.idle_interval / 2 + LAG_MARGIN


@dataclass
class Capped:
    cap: float
    drain: Drain
    steady_rate: float
    window: tuple[float, float]
    peak_second: int

    @property
    def ratio(self) -> float:
        return self.steady_rate / self.cap


@dataclass
class Results:
    pinning: str
    built: str
    drains: dict[str, list[Drain]]
    memory: list[tuple[int, float]]  # (backlog records, peak RSS MB)
    lag: Lag | None
    capped: Capped | None


def lag_records(numbers: Iterator[int], keys: list[list[str]], bodies: list[Any],
                per_shard: int) -> tuple[list[dict[str, Any]], list[list[tuple[str, str]]]]:
    """One append of ``per_shard`` INSERT records to each shard, new keys each: the
    request's ``appends`` and each shard's keys in order."""
    appends, shard_keys = [], []
    for shard, values in enumerate(keys):
        records, made = [], []
        for _ in range(per_shard):
            number = next(numbers)
            pk = values[number % len(values)]
            body, size = bodies[number % len(bodies)]
            key = {"pk": {"S": pk}, "sk": {"N": str(number)}}
            key_size = item_size(key)
            records.append({"eventName": "INSERT", "dynamodb": {
                "Keys": key, "NewImage": {**key, **body},
                "SizeBytes": key_size + key_size + size, "StreamViewType": VIEW}})
            made.append((pk, str(number)))
        appends.append({"shard": shard, "records": records})
        shard_keys.append(made)
    return appends, shard_keys


async def measure_lag(args: argparse.Namespace, checkpoints: MotoServer, work_dir: Path,
                      pinning: Pinning) -> Lag:
    idle = float(setting_default("idle_interval"))
    run = Lag(args.lag_seconds, LAG_RATE, idle_interval=idle)
    rng = random.Random(args.seed)
    bodies = [item_body(rng, ITEM_BYTES) for _ in range(64)]
    keys = partition_keys(LAG_SHARDS, 64)
    numbers = iter(range(10**9))
    async with stand_in(0, LAG_SHARDS, work_dir, pinning) as server:
        checkpoints.reset()
        await server.reset(track=True)
        task = "bench-hot-path-lag"
        env = product_environment(replicator_settings(server, checkpoints, task))
        proc = Product(env, work_dir / f"{task}.log", prefix=pinning.measured)
        try:
            await proc.wait_for_event("replication starting", 60)
            appends, _ = lag_records(numbers, keys, bodies, 1)  # warm-up: every shard read
            await server.post("/append", {"appends": appends})

            async def warmed() -> bool | None:
                stats = await server.stats()
                return True if stats["items_written"] >= LAG_SHARDS else None

            watch = time.monotonic()
            while (await warmed()) is None:
                if proc.returncode is not None or time.monotonic() - watch > 60:
                    raise RuntimeError("the warm-up records did not reach the destination "
                                       f"within 60s:\n{proc.excerpt(20)}")
                await asyncio.sleep(POLL)
            print(f"  lag: warmed up in {time.monotonic() - watch:.1f}s", flush=True)
            sent: dict[str, tuple[str, str]] = {}  # sequence number -> key
            per_tick = LAG_RATE * LAG_TICK
            per_shard = max(1, round(per_tick / LAG_SHARDS))
            ticks = int(args.lag_seconds / LAG_TICK)
            cpu_start, busy_start = process_cpu(proc.process.pid), pinning.busy()
            begun = time.monotonic()
            for tick in range(ticks):
                delay = begun + tick * LAG_TICK - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif -delay > args.lag_seconds:  # hopelessly behind
                    break
                appends, shard_keys = lag_records(numbers, keys, bodies, per_shard)
                answer = await server.post("/append", {"appends": appends})
                for made, sequence_numbers in zip(shard_keys, answer["SequenceNumbers"],
                                                  strict=True):
                    sent.update(zip(sequence_numbers, made, strict=True))
            run.append_seconds = time.monotonic() - begun
            run.cpu = process_cpu(proc.process.pid) - cpu_start
            run.others = pinning.others(pinning.busy() - busy_start, run.cpu,
                                        run.append_seconds)
            run.appended = len(sent)
            expected = LAG_SHARDS + run.appended
            watch = time.monotonic()
            while (await server.stats())["items_written"] < expected:
                if proc.returncode is not None or time.monotonic() - watch > 60:
                    break
                await asyncio.sleep(POLL)
            run.note = progress_note(proc)
        finally:
            proc.stop()
        written = {(key[0], key[1]): at for key, at in (await server.get("/writes"))["written"]}
        arrivals = await server.get("/arrivals")
    first = min((arrivals[number] for number in sent), default=0.0)
    for number, key in sent.items():  # in append order
        at = written.get(key)
        if at is None:
            run.unseen += 1
            continue
        run.lags.append(at - arrivals[number])
        run.offsets.append(arrivals[number] - first)
    rows = "".join(f"{offset:.3f},{lag:.4f}\n" for offset, lag in
                   zip(run.offsets, run.lags, strict=True))
    (work_dir / "hot-path-lags.csv").write_text("arrival_seconds,lag_seconds\n" + rows)
    return run


def top_frames(path: Path, count: int = 25) -> str:
    """py-spy's raw stacks: the functions the samples were in (self), and those on the
    stack (total), as shares of the samples, the most first."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for stack, n in profile_stacks(path):
        frames = [frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0].rsplit(
            "/", 1)[-1] + ")" for frame in stack]
        samples += n
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    if not samples:
        return "  (no samples)"
    lines = [f"  py-spy: {samples:,} samples; self:"]
    lines += [f"    {100 * n / samples:5.1f}%  {frame}" for frame, n in own.most_common(count)]
    lines += ["  on the stack (total):"]
    lines += [f"    {100 * n / samples:5.1f}%  {frame}" for frame, n in total.most_common(count)]
    return "\n".join(lines)


def steady_units(unit_log: Sequence[tuple[float, int]]) -> tuple[float, tuple[float, float], int]:
    """Write units a second over the steady part of a drain (``STEADY`` of the span from
    the first write to the last), the window (seconds from the first write), and the
    most units received in any one second."""
    times = [at for at, _ in unit_log]
    first, last = min(times), max(times)
    low, high = (first + share * (last - first) for share in STEADY)
    units = sum(u for at, u in unit_log if low <= at < high)
    per_second = Counter[int]()
    for at, u in unit_log:
        per_second[int(at - first)] += u
    return units / (high - low), (low - first, high - first), max(per_second.values())


async def measure(args: argparse.Namespace, checkpoints: MotoServer, work_dir: Path,
                  pinning: Pinning) -> Results:
    drains: dict[str, list[Drain]] = {name: [] for name in NAMES}
    memory: list[tuple[int, float]] = []
    capped: Capped | None = None
    async with stand_in(args.records, SHARDS, work_dir, pinning) as server:
        built = server.built()
        print(built, flush=True)
        for round_number in range(1, args.rounds + 1):
            for name in NAMES if round_number % 2 else reversed(NAMES):
                if name == "replicator":
                    drain = await replicator_drain(server, checkpoints,
                                                   f"bench-hot-path-{round_number}", work_dir,
                                                   pinning, within=args.max_seconds)
                else:
                    drain = await bare_drain(server, pinning, work_dir,
                                             within=args.max_seconds)
                drains[name].append(drain)
                print(f"  round {round_number} {name:<10}: {drain.line()}", flush=True)
        if args.records in args.sizes:
            memory.append((args.records, max(d.peak_rss_mb for d in drains["replicator"])))
        if not args.no_cap:
            units_rate = statistics.median(d.units_rate for d in drains["replicator"])
            cap = round(CAP_SHARE * units_rate)
            drain = await replicator_drain(server, checkpoints, "bench-hot-path-capped",
                                           work_dir, pinning, within=args.max_seconds,
                                           max_wcu=str(cap))
            rate, window, peak = steady_units(drain.unit_log)
            capped = Capped(cap, drain, rate, window, peak)
            print(f"  capped at {cap:,} write units/s: {drain.line()}", flush=True)
            print(f"  capped: {rate:,.0f} write units/s from {window[0]:.1f}s to "
                  f"{window[1]:.1f}s after the first write; at most {peak:,} in one "
                  "second", flush=True)
        if args.profile:
            out = Path(args.profile) / "hot-path-replicator.txt"
            drain = await replicator_drain(server, checkpoints, "bench-hot-path-profile",
                                           work_dir, pinning, within=args.max_seconds,
                                           profile=out)
            print(f"  profiled drain (not counted): {drain.line()}\n{top_frames(out)}\n"
                  f"  by kind of work:\n{describe_profile(out)}", flush=True)
    for size in args.sizes:
        if size == args.records:
            continue
        async with stand_in(size, SHARDS, work_dir, pinning) as server:
            drain = await replicator_drain(server, checkpoints, f"bench-hot-path-memory-{size}",
                                           work_dir, pinning, within=args.max_seconds)
        memory.append((size, drain.peak_rss_mb))
        print(f"  memory {size:,}: {drain.line()}", flush=True)
    memory.sort()
    lag = None
    if args.lag_seconds > 0:
        lag = await measure_lag(args, checkpoints, work_dir, pinning)
        print(f"  lag: {lag.appended:,} records appended in {lag.append_seconds:.1f}s "
              f"({lag.achieved:,.0f}/s), {len(lag.lags):,} seen, {lag.unseen:,} not seen; "
              f"replicator CPU {100 * lag.cpu / lag.append_seconds:.0f}% of a core meanwhile"
              + (f", other processes {100 * lag.others:.0f}% of its core"
                 if lag.others is not None else "") + f"; {lag.note}", flush=True)
    return Results(pinning.note, built, drains, memory, lag, capped)


# -- the report ------------------------------------------------------------------------


def report(results: Results) -> list[Row]:
    drains = results.drains

    def med(name: str, attr: str) -> float:
        return statistics.median(getattr(d, attr) for d in drains[name])

    print_table([("drain of the backlog", "records/s median", "each round",
                  "CPU s/10k records", "each round", "peak RSS MB", "stand-in CPU"),
                 *((name, f"{med(name, 'rate'):,.0f}",
                    " / ".join(f"{d.rate:,.0f}" for d in drains[name]),
                    f"{med(name, 'cpu_per_10k'):.2f}",
                    " / ".join(f"{d.cpu_per_10k:.2f}" for d in drains[name]),
                    f"{max(d.peak_rss_mb for d in drains[name]):.0f}",
                    " / ".join(f"{100 * d.stand_in_cpu / d.seconds:.0f}%"
                               for d in drains[name]))
                   for name in NAMES)])
    shared = [d.others for ds in drains.values() for d in ds if d.others is not None]
    busy = (f"; other processes took up to {100 * max(shared):.0f}% of the measured core"
            if shared and max(shared) >= SHARED_NOTE else "")
    cpu_ratio = med("replicator", "cpu_per_10k") / med("bare", "cpu_per_10k")
    rate_ratio = med("replicator", "rate") / med("bare", "rate")
    records = drains["replicator"][0].records
    rows = [
        summary_row("stand-in: CPU per record, replicator / bare", f"{cpu_ratio:.2f} ("
                    f"{med('replicator', 'cpu_per_10k'):.2f} vs {med('bare', 'cpu_per_10k'):.2f}"
                    f" CPU s per 10k records{busy})", f"<= {CPU_TARGET:g}",
                    cpu_ratio <= CPU_TARGET),
        summary_row(f"stand-in: drain of {records:,} records on {SHARDS} shards, replicator / "
                    "bare records/s", f"{rate_ratio:.2f} ({med('replicator', 'rate'):,.0f} vs "
                    f"{med('bare', 'rate'):,.0f} records/s{busy})", f">= {RATE_TARGET:g}",
                    rate_ratio >= RATE_TARGET),
    ]
    if results.memory:
        rss = [mb for _, mb in results.memory]
        print_table([("backlog records", "peak RSS MB", "x smallest"),
                     *((f"{size:,}", f"{mb:.1f}", f"{mb / min(rss):.2f}")
                       for size, mb in results.memory)])
        rows.append(summary_row(
            "stand-in: replicator peak RSS draining a backlog",
            " / ".join(f"{mb:.0f} MB at {size:,}" for size, mb in results.memory),
            f"< {RSS_TARGET_MB:g} MB, largest <= {FLAT:.2f} x smallest",
            max(rss) < RSS_TARGET_MB and max(rss) <= FLAT * min(rss)))
    lag = results.lag
    if lag is not None:
        p50, p95, p99 = (lag.quantile(q) for q in (0.50, 0.95, 0.99))
        high = max(lag.lags, default=float("inf"))
        if lag.unseen:
            p99 = high = float("inf") if p99 == high else p99
        met = (p50 <= lag.p50_target and p99 <= LAG_P99 and lag.achieved >= 0.95 * lag.asked
               and not lag.unseen)
        print_table([("lag", "records", "p50 ms", "p95 ms", "p99 ms", "max ms", "not seen"),
                     (f"{lag.asked:,.0f}/s asked, {lag.achieved:,.0f}/s appended",
                      f"{lag.appended:,}", f"{1000 * p50:,.0f}", f"{1000 * p95:,.0f}",
                      f"{1000 * p99:,.0f}", f"{1000 * high:,.0f}", f"{lag.unseen:,}")])
        tenths = [sorted(lag.lags[i * len(lag.lags) // 10:(i + 1) * len(lag.lags) // 10])
                  for i in range(10)]
        print("  lag p50 by tenth of the load (ms): " + " / ".join(
            f"{1000 * part[len(part) // 2]:,.0f}" for part in tenths if part))
        worst = sorted(zip(lag.lags, lag.offsets, strict=True), reverse=True)[:3]
        if worst:
            print("  worst lags: " + ", ".join(f"{1000 * value:,.0f} ms at {offset:.1f}s"
                                                for value, offset in worst))
        rows.append(summary_row(
            f"stand-in: lag at {lag.asked:,.0f} records/s on {LAG_SHARDS} shards, "
            f"{lag.seconds:g}s",
            f"p50 {1000 * p50:,.0f} / p95 {1000 * p95:,.0f} / p99 {1000 * p99:,.0f} / max "
            f"{1000 * high:,.0f} ms ({lag.achieved:,.0f} records/s appended"
            + (f", {lag.unseen:,} not seen" if lag.unseen else "")
            + (f"; other processes took {100 * lag.others:.0f}% of the measured core"
               if lag.others is not None and lag.others >= SHARED_NOTE else "") + ")",
            f"p50 <= {1000 * lag.p50_target:.0f} ms (idle_interval {lag.idle_interval:g}s / 2 "
            f"+ 50), p99 <= {1000 * LAG_P99:.0f} ms", met))
    capped = results.capped
    if capped is not None:
        rows.append(summary_row(
            "stand-in: write units/s at the destination / REPLICATOR_MAX_WCU",
            f"{capped.ratio:.3f} ({capped.steady_rate:,.0f} vs cap {capped.cap:,.0f} write "
            f"units/s, steady {capped.window[0]:.0f}-{capped.window[1]:.0f}s; "
            f"{capped.drain.rate:,.0f} records/s)",
            f"within {100 * CAP_TOLERANCE:g}% of the cap",
            abs(capped.ratio - 1) <= CAP_TOLERANCE))
    print_table([("measurement", "figure", "target", "met"),
                 *((r["measurement"], r["figure"], r["target"], yes_no(r["met"])) for r in rows)])
    return rows


# -- the command -----------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The stream hot path on the stand-in: "
                                     "python -m replicator against the bare pipeline.")
    parser.add_argument("--records", type=int, default=200_000,
                        help=f"records of the drained backlog, on {SHARDS} shards "
                        "(default 200000)")
    parser.add_argument("--memory-backlogs", default="50000,200000",
                        help="backlog sizes of the memory measurement (default 50000,200000)")
    parser.add_argument("--lag-seconds", type=float, default=60.0,
                        help=f"seconds of {LAG_RATE:g} records/s for the lag (default 60; "
                        "0 leaves it out)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="drain rounds, order alternating (default 2)")
    parser.add_argument("--no-cap", action="store_true",
                        help="leave out the drain under REPLICATOR_MAX_WCU")
    parser.add_argument("--profile", metavar="DIR", default=None,
                        help="one more replicator drain (not counted) under py-spy (pip "
                        "install py-spy), attached to it; raw stacks in DIR and a summary")
    parser.add_argument("--max-seconds", type=float, default=900.0,
                        help="give up on a drain after this long (default 900)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--json", default=None, help="write the summary rows to this file")
    args = parser.parse_args(argv)
    args.sizes = sorted({int(size) for size in args.memory_backlogs.split(",") if size.strip()})
    if args.rounds < 1 or args.records < SHARDS:
        parser.error(f"--rounds at least 1, --records at least {SHARDS}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start("hot path benchmark on the stand-in")
    pinning = Pinning.detect()
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    print(pinning.note, flush=True)
    print(f"replicator settings: defaults, bootstrap never, progress_interval "
          f"{PROGRESS_INTERVAL}s, checkpoints on moto; idle_interval "
          f"{setting_default('idle_interval')}s", flush=True)
    work_dir = work_directory("hot-path")

    def body() -> int:
        with moto_servers(1) as (checkpoints,):
            pid = server_pid(checkpoints)
            if pid is not None and pinning.servers:
                print(f"moto (checkpoints) on cores {sorted(os.sched_getaffinity(pid))}",
                      flush=True)
            results = run_loop(measure(args, checkpoints, work_dir, pinning))
        return finish(report(results), args.json, work_dir)

    return guarded(body, failed(args.json, "stand-in: hot path"))


if __name__ == "__main__":
    sys.exit(main())
