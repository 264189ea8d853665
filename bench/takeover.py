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
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import (
    DESTINATION,
    SOURCE,
    Line,
    Product,
    at_least,
    aws_client,
    common_arguments,
    guarded,
    leave_logs,
    moto_servers,
    poll_until,
    print_table,
    product_environment,
    replication_settings,
    setting_default,
    spread,
    start,
    stop_all,
    summary_row,
    tally,
    work_directory,
    write_summary,
    yes_no,
)

from replicator.config import env_name
from replicator.dev.local import MotoServer
from replicator.dev.workload import create_table, run_workload
from replicator.lease import WORKERS_KEY

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
LEASE_DURATION = float(setting_default("lease_duration"))
RENEW_INTERVAL = float(setting_default("lease_renew_interval"))
COORDINATOR_INTERVAL = float(setting_default("coordinator_interval"))
CHECKPOINT_INTERVAL = float(setting_default("checkpoint_interval"))
SHUTDOWN_TIMEOUT = float(setting_default("shutdown_timeout"))
#: The stated bound after kill -9: a lease duration, one coordinator cycle, renewal slack.
KILL_BOUND = LEASE_DURATION + COORDINATOR_INTERVAL + RENEW_INTERVAL
#: Events a worker's log excerpt shows besides warnings and errors.
EXCERPT_EVENTS = ("replication starting", "shutdown requested", "replication stopped")


# -- worker processes ----------------------------------------------------------------


def spawn_worker(worker_id: str, env: dict[str, str], log_dir: Path) -> Product:
    """``python -m replicator`` with JSON logs to ``<log_dir>/<worker_id>.log``."""
    return Product({**env, env_name("worker_id"): worker_id}, log_dir / f"{worker_id}.log",
                   name=worker_id)


def excerpt(worker: Product) -> str:
    """The last lease-related, warning and error lines, and stderr's tail."""
    return worker.excerpt(12, lambda line: (
        "lease" in str(line.get("event")) or line.get("level") in ("warning", "error")
        or line.get("event") in EXCERPT_EVENTS))


def worker_environment(source: MotoServer, destination: MotoServer) -> dict[str, str]:
    """The replication's settings: endpoints, tables, task, JSON logs. No tuning variable."""
    return product_environment(replication_settings(source.url, destination.url, TASK_NAME))


# -- observing the replication from outside -------------------------------------------


async def lease_row(source: Any) -> dict[str, Any] | None:
    """The (single) unfinished row of the checkpoint table; None if there is none yet."""
    try:
        response = await source.scan(TableName=TASK_NAME, ConsistentRead=True)
    except source.exceptions.ResourceNotFoundException:  # no worker has created it yet
        return None
    # The bootstrap copy's rows (keyed copy|<stream ARN>), the destinations' rows
    # (destinations|<stream ARN>) and the workers' heartbeat rows are not a shard's lease.
    rows = [row for row in response["Items"]
            if row.get("checkpoint", {}).get("S") != "SHARD_END"
            and row["stream_arn"]["S"] != WORKERS_KEY
            and "|" not in row["stream_arn"]["S"]]
    return rows[0] if len(rows) == 1 else None


async def lease_owner(source: Any) -> str | None:
    row = await lease_row(source)
    owner = row.get("lease_owner") if row else None
    return str(owner["S"]) if owner else None


async def wait_for_checkpoint(source: Any, within: float) -> bool:
    """Until the row holds a real checkpoint (a sequence number, not TRIM_HORIZON)."""
    async def checkpointed() -> bool | None:
        row = await lease_row(source)
        return True if row and row.get("checkpoint", {}).get("S", "").isdigit() else None

    return bool(await poll_until(checkpointed, within=within, every=0.2))


@dataclass
class OwnerChange:
    owner: str | None  # None: none within the deadline
    seconds: float | None  # from ``since``
    seen: list[str | None]  # every distinct owner value polled, in order


async def wait_for_owner(source: Any, *, not_in: set[str | None], since: float,
                         within: float) -> OwnerChange:
    """Poll the lease row until its owner is a worker not in ``not_in``."""
    seen: list[str | None] = []

    async def changed() -> OwnerChange | None:
        owner = await lease_owner(source)
        now = time.monotonic()
        if not seen or seen[-1] != owner:
            seen.append(owner)
        found = owner is not None and owner not in not_in
        return OwnerChange(owner, now - since, seen) if found else None

    change = await poll_until(changed, within=within, every=POLL)
    return change or OwnerChange(None, None, seen)


def marker_key(number: int) -> dict[str, Any]:
    return {"pk": {"S": MARKER_PK}, "sk": {"N": str(number)}}


async def wait_for_item(destination: Any, key: dict[str, Any], *, since: float,
                        within: float) -> float | None:
    """Seconds from ``since`` until the item is in the destination; None past ``within``."""
    async def arrived() -> float | None:
        response = await destination.get_item(TableName=DESTINATION.table, Key=key,
                                               ConsistentRead=True)
        return time.monotonic() - since if "Item" in response else None

    result: float | None = await poll_until(arrived, within=within, every=POLL)
    return result


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
                 env: dict[str, str], log_dir: Path, registry: list[Product]) -> None:
        self.args = args
        self.source = source
        self.destination = destination
        self.env = env
        self.log_dir = log_dir
        self.registry = registry
        self.live: dict[str, Product] = {}
        self.spawned = 0
        self.rng = random.Random(args.seed)

    def spawn(self) -> Product:
        self.spawned += 1
        worker = spawn_worker(f"bench-worker-{self.spawned}", self.env, self.log_dir)
        self.registry.append(worker)
        self.live[worker.name] = worker
        return worker

    async def wait_started(self, workers: list[Product], within: float = 30.0) -> None:
        for worker in workers:
            await worker.wait_for_event("replication starting", within, poll=0.1,
                                        what="start")

    async def put_marker(self, number: int) -> dict[str, Any]:
        """A marker item in the source (trial 0: the warm-up); returns its key."""
        key = marker_key(number)
        await self.source.put_item(TableName=SOURCE.table,
                                   Item={**key, "written_at": {"S": datetime.now(UTC).isoformat()}})
        return key

    async def trial(self, kind: str, number: int) -> Trial:
        change = await wait_for_owner(self.source, not_in={None}, since=time.monotonic(),
                                      within=30)
        if change.owner is None or change.owner not in self.live:
            raise RuntimeError(f"no live owner before trial {number} (saw {change.seen})")
        victim = self.live[change.owner]
        result = Trial(kind, number, victim.name)
        deadline = KILL_BOUND + 20 if kind == KILL else SIGTERM_BOUND + SHUTDOWN_TIMEOUT + 10

        signalled = time.monotonic()
        victim.send(signal.SIGKILL if kind == KILL else signal.SIGTERM)
        key = await self.put_marker(number)
        owner_change, resume = await asyncio.gather(
            wait_for_owner(self.source, not_in={victim.name}, since=signalled,
                           within=deadline),
            wait_for_item(self.destination, key, since=signalled, within=deadline + 10),
        )
        result.takeover, result.new_owner = owner_change.seconds, owner_change.owner
        result.owners_seen, result.resume = owner_change.seen, resume

        result.exit_code = await victim.wait_exit(5 if kind == KILL else SHUTDOWN_TIMEOUT + 5)
        self.check_logs(result, victim)
        del self.live[victim.name]
        if result.exit_code is None:
            victim.kill()
        return result

    def check_logs(self, result: Trial, victim: Product) -> None:
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
            result.notes.append(f"{victim.name} exit code {result.exit_code} "
                                f"(expected {expected_exit})")
        if result.kind == TERM and not victim.events("lease released"):
            result.notes.append(f"{victim.name} logged no 'lease released'")
        if result.new_owner is not None:
            previous = None if result.kind == TERM else victim.name
            taker = self.live.get(result.new_owner)
            taken = [line for line in (taker.events("lease taken") if taker else [])
                     if line.get("previous_owner") == previous]
            if not taken:
                result.notes.append(f"{result.new_owner} logged no 'lease taken' with "
                                    f"previous_owner={previous}")

    async def run(self) -> list[Trial]:
        trials: list[Trial] = []
        stream_arn = await create_table(self.source, SOURCE.table, stream=True)
        await create_table(self.destination, DESTINATION.table, stream=False)
        assert stream_arn is not None
        await self.wait_started([self.spawn() for _ in range(WORKERS)])
        first = await wait_for_owner(self.source, not_in={None}, since=time.monotonic(),
                                     within=30)
        if first.owner is None:
            raise RuntimeError("no worker took the shard within 30s")
        workload = asyncio.create_task(run_workload(
            self.source, SOURCE.table, rate=self.args.rate, keys=200, seed=self.args.seed,
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
                        print(f"  log excerpt of {worker.name}:\n{excerpt(worker)}")
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


def retry(line: Line) -> str | None:
    """A retry of a worker's log, by operation and error detail."""
    if line.get("event") != "retrying":
        return None
    return f"{line.get('operation')} ({line.get('detail')})"


def retries(workers: list[Product]) -> str:
    for worker in workers:
        worker.read_log()
    return tally((line for worker in workers for line in worker.lines), retry)


def report(trials: list[Trial], json_path: str | None) -> bool:
    """The table of both kinds; True when every trial met its bound. The summary rows
    (one a kind) are met only when every trial is."""
    rows = [("kind", "trials", "takeover s min/med/max", "resume s min/med/max",
             "takeover ratio min/med/max", "bound s", "max <= bound")]
    summary = []
    for kind, reference, name in ((KILL, LEASE_DURATION, "lease_duration"),
                                  (TERM, COORDINATOR_INTERVAL, "coordinator_interval")):
        done = [t for t in trials if t.kind == kind]
        takeovers = [t.takeover for t in done if t.takeover is not None]
        resumes = [t.resume for t in done if t.resume is not None]
        bound = KILL_BOUND if kind == KILL else SIGTERM_BOUND
        within = bool(done) and all(t.ok for t in done)
        ratios = spread([value / reference for value in takeovers])
        rows.append((kind, str(len(done)), spread(takeovers), spread(resumes),
                     f"{ratios} x {name}", f"{bound:g}", yes_no(within)))
        summary.append(summary_row(f"takeover after {kind}",
                                   f"takeover {spread(takeovers)} s (min / med / max)",
                                   f"max <= {bound:g} s", within))
    ok = bool(trials) and all(row["met"] for row in summary)
    for row in summary:
        row["met"] = ok
    write_summary(json_path, summary)
    print_table(rows)
    print()
    print(f"bounds: kill -9 takeover <= lease_duration {LEASE_DURATION:g}s + one coordinator "
          f"cycle {COORDINATOR_INTERVAL:g}s + renew interval {RENEW_INTERVAL:g}s = "
          f"{KILL_BOUND:g}s; SIGTERM takeover <= {SIGTERM_BOUND:g}s")
    print(f"Java cross-region replication tool, documented (not measured): {JAVA_DOCUMENTED}")
    return ok


# -- main -------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, source_server: MotoServer,
                destination_server: MotoServer, log_dir: Path,
                registry: list[Product]) -> list[Trial]:
    env = worker_environment(source_server, destination_server)
    async with (
        asyncio.timeout(args.max_seconds),
        aws_client(source_server.url, SOURCE.region, call_timeout=10) as source,
        aws_client(destination_server.url, DESTINATION.region, call_timeout=10) as destination,
    ):
        return await Bench(args, source, destination, env, log_dir, registry).run()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Lease takeover after kill -9 and after SIGTERM, default lease settings."
    )
    parser.add_argument("--trials", type=at_least(1), default=3,
                        help="trials of each kind, alternating (default 3)")
    parser.add_argument("--rate", type=float, default=20.0,
                        help="background workload, operations per second (default 20, "
                        "about 35 item writes a second)")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds the owner replicates before each trial, plus a random "
                        "part of a renewal interval (default 2)")
    common_arguments(parser, max_seconds=600.0, keep_logs=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start("lease takeover benchmark")
    print(f"default settings: lease_duration {LEASE_DURATION:g}s, lease_renew_interval "
          f"{RENEW_INTERVAL:g}s, coordinator_interval {COORDINATOR_INTERVAL:g}s, "
          f"checkpoint_interval {CHECKPOINT_INTERVAL:g}s; {WORKERS} workers, "
          f"workload {args.rate:g} ops/s, {args.trials} trials of each kind")
    log_dir = work_directory("takeover")
    workers: list[Product] = []
    trials: list[Trial] = []

    def body() -> int:
        with moto_servers(before_stop=lambda: stop_all(workers)) as (source, destination):
            trials.extend(asyncio.run(bench(args, source, destination, log_dir, workers)))
        return 0

    def failure(exc: BaseException) -> int:
        for worker in workers:
            print(f"  log excerpt of {worker.name}:\n{excerpt(worker)}", file=sys.stderr)
        write_summary(args.json, [summary_row("takeover", f"failed: {exc}"[:200], "", False)])
        return 1

    code = guarded(body, failure)
    ok = False
    if trials:
        ok = report(trials, args.json)
        print(f"retries logged by the workers: {retries(workers)}")
    leave_logs(log_dir, keep=not ok or args.keep_logs)
    return code or (0 if ok else 1)


if __name__ == "__main__":
    sys.exit(main())
