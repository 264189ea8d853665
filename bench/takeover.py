"""Lease takeover: how long another worker needs to take a shard over from a dead one.

Three ``python -m replicator`` workers share one task (one shard: moto's streams
have exactly one) while a background workload writes to the source. Each trial
finds the lease owner in the checkpoint table, kills it (SIGKILL) or stops it
(SIGTERM), and measures from that instant

* takeover: until another worker's id is the ``lease_owner`` of the row;
* resume: until a marker item, written to the source right after the signal,
  is in the destination.

A fresh worker then replaces the dead one, so every trial starts with three.
The lease settings are the replicator's defaults, read from
``replicator.config.Settings``: nothing is shortened.

    .venv/bin/python bench/takeover.py [--trials N]

Only 127.0.0.1: two moto servers (source and destination) on free ports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_common import code_version, local_environment, signals_ignored

from replicator.aws.clients import Endpoint, open_client
from replicator.config import ENV_PREFIX, Settings, env_name
from replicator.dev.local import LOCAL_CREDENTIALS, MotoServer
from replicator.dev.workload import create_table, run_workload

SOURCE_REGION = "us-east-1"
DESTINATION_REGION = "eu-west-1"
SOURCE_TABLE = "bench-source"
DESTINATION_TABLE = "bench-destination"
TASK_NAME = "bench-takeover"
MARKER_PK = "bench-marker"  # the workload's keys are user-N: no clash
WORKERS = 3
POLL = 0.05  # seconds between polls of the lease row and of the marker
KILL = "kill -9"
TERM = "SIGTERM"
#: The stated bound of a SIGTERM hand-over, in seconds.
SIGTERM_BOUND = 2.0
#: The Java cross-region replication tool's failover, as documented (STREAMS.md): not measured.
JAVA_DOCUMENTED = "lease failover 60 s; takeover after about 1 to 3 minutes"


def default_seconds(name: str) -> float:
    """A default of the replicator's settings (the code under test, not a copy)."""
    return float(Settings.model_fields[name].default)


LEASE_DURATION = default_seconds("lease_duration")
RENEW_INTERVAL = default_seconds("lease_renew_interval")
COORDINATOR_INTERVAL = default_seconds("coordinator_interval")
CHECKPOINT_INTERVAL = default_seconds("checkpoint_interval")
SHUTDOWN_TIMEOUT = default_seconds("shutdown_timeout")
#: The stated bound after kill -9: a lease duration, one coordinator cycle, renewal slack.
KILL_BOUND = LEASE_DURATION + COORDINATOR_INTERVAL + RENEW_INTERVAL


# -- worker processes ----------------------------------------------------------------


class Worker:
    """``python -m replicator`` with JSON logs to ``<log_dir>/<worker_id>.log``."""

    def __init__(self, worker_id: str, env: dict[str, str], log_dir: Path,
                 registry: list[Worker]) -> None:
        self.worker_id = worker_id
        self.log_path = log_dir / f"{worker_id}.log"
        self.err_path = log_dir / f"{worker_id}.stderr"
        with self.log_path.open("wb") as out, self.err_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "replicator"],
                env={**env, env_name("worker_id"): worker_id},
                cwd=log_dir,  # no stray .env file is read
                stdout=out,
                stderr=err,
            )
        registry.append(self)

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def send(self, signum: signal.Signals) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def log_lines(self) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        for text in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(text)
                if isinstance(entry, dict):
                    lines.append(entry)
        return lines

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.log_lines() if line.get("event") == event]

    def excerpt(self, lines: int = 12) -> str:
        """The last lease-related, warning and error lines, and stderr's tail."""
        wanted = [
            line for line in self.log_lines()
            if "lease" in str(line.get("event")) or line.get("level") in ("warning", "error")
            or line.get("event") in ("replication starting", "shutdown requested",
                                     "replication stopped")
        ]
        text = [json.dumps(line, sort_keys=True) for line in wanted[-lines:]]
        stderr = self.err_path.read_text(errors="replace").strip().splitlines()
        text += [f"stderr: {line}" for line in stderr[-lines:]]
        return "\n".join(f"    {line}" for line in text) or "    (nothing logged)"

    async def wait_for_event(self, event: str, within: float) -> bool:
        deadline = time.monotonic() + within
        while not self.events(event):
            if self.returncode is not None or time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    async def wait_exit(self, within: float) -> int | None:
        deadline = time.monotonic() + within
        while (code := self.returncode) is None:
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.05)
        return code


def stop_workers(workers: list[Worker], within: float = 10.0) -> None:
    """SIGTERM every live worker, SIGKILL whichever is still up after ``within``."""
    for worker in workers:
        worker.send(signal.SIGTERM)
    deadline = time.monotonic() + within
    for worker in workers:
        try:
            worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


def worker_environment(source: MotoServer, destination: MotoServer) -> dict[str, str]:
    """This process's environment without REPLICATOR_* or AWS_* variables, plus the
    replication's settings: endpoints, tables, task, JSON logs. No tuning variable."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith((ENV_PREFIX, "AWS_"))}
    settings = {
        "source_table": SOURCE_TABLE,
        "source_region": SOURCE_REGION,
        "source_endpoint": source.url,
        "destination_table": DESTINATION_TABLE,
        "destination_region": DESTINATION_REGION,
        "destination_endpoint": destination.url,
        "task_name": TASK_NAME,
        "log_level": "info",
        "log_format": "json",
    }
    return {**base, **LOCAL_CREDENTIALS, "PYTHONUNBUFFERED": "1",
            **{env_name(name): value for name, value in settings.items()}}


# -- observing the replication from outside -------------------------------------------


async def lease_row(source: Any) -> dict[str, Any] | None:
    """The (single) unfinished row of the checkpoint table; None if there is none yet."""
    try:
        response = await source.scan(TableName=TASK_NAME, ConsistentRead=True)
    except source.exceptions.ResourceNotFoundException:  # no worker has created it yet
        return None
    # The bootstrap copy's rows (keyed copy|<stream ARN>) are not a shard's lease.
    rows = [row for row in response["Items"]
            if row.get("checkpoint", {}).get("S") != "SHARD_END"
            and not row["stream_arn"]["S"].startswith("copy|")]
    return rows[0] if len(rows) == 1 else None


async def lease_owner(source: Any) -> str | None:
    row = await lease_row(source)
    owner = row.get("lease_owner") if row else None
    return str(owner["S"]) if owner else None


async def wait_for_checkpoint(source: Any, within: float) -> bool:
    """Until the row holds a real checkpoint (a sequence number, not TRIM_HORIZON)."""
    deadline = time.monotonic() + within
    while True:
        row = await lease_row(source)
        if row and row.get("checkpoint", {}).get("S", "").isdigit():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)


@dataclass
class OwnerChange:
    owner: str | None  # None: none within the deadline
    seconds: float | None  # from ``since``
    seen: list[str | None]  # every distinct owner value polled, in order


async def wait_for_owner(source: Any, *, not_in: set[str | None], since: float,
                         within: float) -> OwnerChange:
    """Poll the lease row until its owner is a worker not in ``not_in``."""
    deadline = time.monotonic() + within
    seen: list[str | None] = []
    while True:
        owner = await lease_owner(source)
        now = time.monotonic()
        if not seen or seen[-1] != owner:
            seen.append(owner)
        if owner is not None and owner not in not_in:
            return OwnerChange(owner, now - since, seen)
        if now > deadline:
            return OwnerChange(None, None, seen)
        await asyncio.sleep(POLL)


def marker_key(number: int) -> dict[str, Any]:
    return {"pk": {"S": MARKER_PK}, "sk": {"N": str(number)}}


async def wait_for_item(destination: Any, key: dict[str, Any], *, since: float,
                        within: float) -> float | None:
    """Seconds from ``since`` until the item is in the destination; None past ``within``."""
    deadline = time.monotonic() + within
    while True:
        response = await destination.get_item(
            TableName=DESTINATION_TABLE, Key=key, ConsistentRead=True
        )
        now = time.monotonic()
        if "Item" in response:
            return now - since
        if now > deadline:
            return None
        await asyncio.sleep(POLL)


# -- the benchmark --------------------------------------------------------------------


@dataclass
class Trial:
    kind: str
    number: int
    victim: str
    takeover: float | None = None
    resume: float | None = None
    new_owner: str | None = None
    owners_seen: list[str | None] = field(default_factory=list)
    exit_code: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def bound(self) -> float:
        return KILL_BOUND if self.kind == KILL else SIGTERM_BOUND

    @property
    def ok(self) -> bool:
        return (self.takeover is not None and self.resume is not None
                and self.takeover <= self.bound)


class Bench:
    def __init__(self, args: argparse.Namespace, source: Any, destination: Any,
                 env: dict[str, str], log_dir: Path, registry: list[Worker]) -> None:
        self.args = args
        self.source = source
        self.destination = destination
        self.env = env
        self.log_dir = log_dir
        self.registry = registry
        self.live: dict[str, Worker] = {}
        self.spawned = 0
        self.rng = random.Random(args.seed)

    def spawn(self) -> Worker:
        self.spawned += 1
        worker = Worker(f"bench-worker-{self.spawned}", self.env, self.log_dir, self.registry)
        self.live[worker.worker_id] = worker
        return worker

    async def wait_started(self, workers: list[Worker], within: float = 30.0) -> None:
        for worker in workers:
            if not await worker.wait_for_event("replication starting", within):
                raise RuntimeError(
                    f"{worker.worker_id} did not start within {within:g}s "
                    f"(exit code {worker.returncode}):\n{worker.excerpt()}"
                )

    async def put_marker(self, number: int) -> dict[str, Any]:
        """A marker item in the source (trial 0: the warm-up); returns its key."""
        key = marker_key(number)
        await self.source.put_item(TableName=SOURCE_TABLE,
                                   Item={**key, "written_at": {"S": datetime.now(UTC).isoformat()}})
        return key

    async def trial(self, kind: str, number: int) -> Trial:
        change = await wait_for_owner(self.source, not_in={None}, since=time.monotonic(),
                                      within=30)
        if change.owner is None or change.owner not in self.live:
            raise RuntimeError(f"no live owner before trial {number} (saw {change.seen})")
        victim = self.live[change.owner]
        result = Trial(kind, number, victim.worker_id)
        deadline = KILL_BOUND + 20 if kind == KILL else SIGTERM_BOUND + SHUTDOWN_TIMEOUT + 10

        signalled = time.monotonic()
        victim.send(signal.SIGKILL if kind == KILL else signal.SIGTERM)
        key = await self.put_marker(number)
        owner_change, resume = await asyncio.gather(
            wait_for_owner(self.source, not_in={victim.worker_id}, since=signalled,
                           within=deadline),
            wait_for_item(self.destination, key, since=signalled, within=deadline + 10),
        )
        result.takeover, result.new_owner = owner_change.seconds, owner_change.owner
        result.owners_seen, result.resume = owner_change.seen, resume

        result.exit_code = await victim.wait_exit(5 if kind == KILL else SHUTDOWN_TIMEOUT + 5)
        self.check_logs(result, victim)
        del self.live[victim.worker_id]
        if result.exit_code is None:
            victim.process.kill()
            await victim.wait_exit(5)
        return result

    def check_logs(self, result: Trial, victim: Worker) -> None:
        """Cross-check with the workers' own log lines; anything unexpected becomes a note."""
        if result.takeover is None:
            result.notes.append(f"no other owner within the deadline (saw {result.owners_seen})")
        elif result.takeover > result.bound:
            result.notes.append(f"takeover {result.takeover:.2f}s over the bound "
                                f"{result.bound:g}s")
        if result.resume is None:
            result.notes.append("the marker never reached the destination")
        expected_exit = -signal.SIGKILL if result.kind == KILL else 0
        if result.exit_code != expected_exit:
            result.notes.append(f"{victim.worker_id} exit code {result.exit_code} "
                                f"(expected {expected_exit})")
        if result.kind == TERM and not victim.events("lease released"):
            result.notes.append(f"{victim.worker_id} logged no 'lease released'")
        if result.new_owner is not None:
            previous = None if result.kind == TERM else victim.worker_id
            taker = self.live.get(result.new_owner)
            taken = [line for line in (taker.events("lease taken") if taker else [])
                     if line.get("previous_owner") == previous]
            if not taken:
                result.notes.append(f"{result.new_owner} logged no 'lease taken' with "
                                    f"previous_owner={previous}")

    async def run(self) -> list[Trial]:
        trials: list[Trial] = []
        stream_arn = await create_table(self.source, SOURCE_TABLE, stream=True)
        await create_table(self.destination, DESTINATION_TABLE, stream=False)
        assert stream_arn is not None
        await self.wait_started([self.spawn() for _ in range(WORKERS)])
        first = await wait_for_owner(self.source, not_in={None}, since=time.monotonic(),
                                     within=30)
        if first.owner is None:
            raise RuntimeError("no worker took the shard within 30s")
        workload = asyncio.create_task(run_workload(
            self.source, SOURCE_TABLE, rate=self.args.rate, keys=200, seed=self.args.seed,
            concurrency=2,
        ))
        try:
            key = await self.put_marker(0)
            if await wait_for_item(self.destination, key, since=time.monotonic(),
                                   within=30) is None:
                raise RuntimeError("replication is not live: the warm-up marker did not arrive")
            # So that the first trial does not replay the stream from its TRIM_HORIZON.
            if not await wait_for_checkpoint(self.source, 2 * CHECKPOINT_INTERVAL + 5):
                print("  note: no checkpoint written before the first trial")
            for number in range(1, 2 * self.args.trials + 1):
                kind = KILL if number % 2 == 1 else TERM
                # Let the owner replicate a while; a random extra part of a renewal
                # interval puts the kill at a random point of the renewal cycle.
                await asyncio.sleep(self.args.settle + self.rng.uniform(0, RENEW_INTERVAL))
                if workload.done():
                    workload.result()  # raises what ended it
                    raise RuntimeError("the workload ended early")
                trial = await self.trial(kind, number)
                trials.append(trial)
                print_trial(trial)
                if trial.takeover is None or trial.resume is None:
                    for worker in [*self.live.values()]:
                        print(f"  log excerpt of {worker.worker_id}:\n{worker.excerpt()}")
                    break
                replacement = self.spawn()
                await self.wait_started([replacement])
        finally:
            workload.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await workload
        return trials


# -- output -----------------------------------------------------------------------------


def print_trial(trial: Trial) -> None:
    def show(value: float | None) -> str:
        return "timeout" if value is None else f"{value:.2f}s"

    print(f"  trial {trial.number} {trial.kind:<8} victim {trial.victim}: "
          f"takeover {show(trial.takeover)} by {trial.new_owner}, "
          f"resume {show(trial.resume)}, owners seen {trial.owners_seen}")
    for note in trial.notes:
        print(f"    note: {note}")


def retry_summary(workers: list[Worker]) -> str:
    """The workers' logged retries, by operation and error detail."""
    counts: dict[str, int] = {}
    for worker in workers:
        for line in worker.events("retrying"):
            what = f"{line.get('operation')} ({line.get('detail')})"
            counts[what] = counts.get(what, 0) + 1
    return "; ".join(f"{what}: {n}" for what, n in sorted(counts.items())) or "none"


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def report(trials: list[Trial]) -> bool:
    rows = [("kind", "trials", "takeover s min/med/max", "resume s min/med/max",
             "takeover ratio min/med/max", "bound s", "max <= bound")]
    ok = bool(trials)
    for kind, reference, name in ((KILL, LEASE_DURATION, "lease_duration"),
                                  (TERM, COORDINATOR_INTERVAL, "coordinator_interval")):
        done = [t for t in trials if t.kind == kind]
        takeovers = [t.takeover for t in done if t.takeover is not None]
        resumes = [t.resume for t in done if t.resume is not None]
        bound = KILL_BOUND if kind == KILL else SIGTERM_BOUND
        within = bool(done) and all(t.ok for t in done)
        ok = ok and within
        ratios = spread([value / reference for value in takeovers])
        rows.append((kind, str(len(done)), spread(takeovers), spread(resumes),
                     f"{ratios} x {name}", f"{bound:g}", "yes" if within else "NO"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    print()
    print(f"bounds: kill -9 takeover <= lease_duration {LEASE_DURATION:g}s + one coordinator "
          f"cycle {COORDINATOR_INTERVAL:g}s + renew interval {RENEW_INTERVAL:g}s = "
          f"{KILL_BOUND:g}s; SIGTERM takeover <= {SIGTERM_BOUND:g}s")
    print(f"Java cross-region replication tool, documented (not measured): {JAVA_DOCUMENTED}")
    return ok


# -- main -------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, source_server: MotoServer,
                destination_server: MotoServer, log_dir: Path,
                registry: list[Worker]) -> list[Trial]:
    env = worker_environment(source_server, destination_server)
    async with (
        asyncio.timeout(args.max_seconds),
        open_client(Endpoint("dynamodb", SOURCE_REGION, source_server.url),
                    call_timeout=10) as source,
        open_client(Endpoint("dynamodb", DESTINATION_REGION, destination_server.url),
                    call_timeout=10) as destination,
    ):
        return await Bench(args, source, destination, env, log_dir, registry).run()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Lease takeover after kill -9 and after SIGTERM, default lease settings."
    )
    parser.add_argument("--trials", type=int, default=3,
                        help="trials of each kind, alternating (default 3)")
    parser.add_argument("--rate", type=float, default=20.0,
                        help="background workload, operations per second (default 20, "
                        "about 35 item writes a second)")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds the owner replicates before each trial, plus a random "
                        "part of a renewal interval (default 2)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="give up after this long (default 600)")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the workers' log files even when every trial passed")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    local_environment()
    print(f"lease takeover benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC, "
          f"{os.cpu_count()} CPUs {platform.machine()}, Python {platform.python_version()}, "
          f"code {code_version()}")
    print(f"default settings: lease_duration {LEASE_DURATION:g}s, lease_renew_interval "
          f"{RENEW_INTERVAL:g}s, coordinator_interval {COORDINATOR_INTERVAL:g}s, "
          f"checkpoint_interval {CHECKPOINT_INTERVAL:g}s; {WORKERS} workers, "
          f"workload {args.rate:g} ops/s, {args.trials} trials of each kind")
    log_dir = Path(tempfile.mkdtemp(prefix="bench-takeover-"))
    workers: list[Worker] = []
    servers = [MotoServer(), MotoServer()]
    trials: list[Trial] = []
    ok = False
    try:
        for server in servers:
            server.start()
        trials = asyncio.run(bench(args, servers[0], servers[1], log_dir, workers))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError) as exc:
        print(f"benchmark failed: {exc or type(exc).__name__}", file=sys.stderr)
        for worker in workers:
            print(f"  log excerpt of {worker.worker_id}:\n{worker.excerpt()}", file=sys.stderr)
    finally:
        with signals_ignored():
            stop_workers(workers)
            for server in servers:
                server.stop()
        if trials:
            ok = report(trials)
            print(f"retries logged by the workers: {retry_summary(workers)}")
        if ok and not args.keep_logs:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            print(f"worker logs kept in {log_dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
