"""Integration fixtures: two real moto servers over HTTP, and ways to run the replicator.

Two ``moto_server`` subprocesses stand for the source and the destination (each
has its own state, like two regions). They live for the whole session and are
reset before every test. The replicator runs either in-process (``replicating``:
a ``Replicator`` in a task, so a test can read its ``stats`` and ask
``caught_up_since``) or as ``python -m replicator`` (``ReplicatorProcess``: JSON
log lines on stdout, real signals, a real exit code).

Waiting, on a loaded machine: every wait has a deadline, and deadlines are failure
detectors, not timing assertions (a wait that takes 2 s here may have 60). An
in-process replicator is waited on through ``InProcess.until``, which wakes on
``Stats.changed``; a subprocess through ``wait_for_event`` (its log lines); a table
another process writes through ``wait_until``. Each failure says what it waited
for and shows the last log lines of the processes involved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

import aiohttp
import pytest
from aiohttp import web

from replicator.aws.clients import Endpoint, open_client
from replicator.commands.run import Replicator
from replicator.commands.settings import load_settings
from replicator.config import ENV_PREFIX, Settings, env_name
from replicator.copy.verify import TableDiff
from replicator.dev.compare import compare_tables
from replicator.dev.local import LOCAL_CREDENTIALS, MotoServer, free_port
from replicator.dev.workload import WorkloadResult, random_item, run_workload
from replicator.logs import configure_logging
from replicator.records import Item
from replicator.stats import Signal, Stats

T = TypeVar("T")

SOURCE_REGION = "us-east-1"
DESTINATION_REGION = "eu-west-1"
SOURCE_TABLE = "source-table"
DESTINATION_TABLE = "destination-table"
TASK_NAME = "integration-task"

#: The default deadline of a wait: what takes a second or two on an idle machine can
#: take ten on a loaded one. A failure detector, never a timing assertion.
DEADLINE = 60.0
#: How often ``wait_until`` and ``wait_for_event`` look again.
POLL = 0.1
#: Log lines of a process shown when a wait involving it fails.
TAIL = 30

#: Small intervals so that a test sees reads, checkpoints and lease moves within a second.
FAST: dict[str, Any] = {
    "idle_interval": 0.05,
    "checkpoint_interval": 0.2,
    "coordinator_interval": 0.2,
    "lease_duration": 4.0,
    "lease_renew_interval": 0.5,
    "progress_interval": 3600.0,
    "call_timeout": 2.0,
    "shutdown_timeout": 10.0,
    "metrics_port": 0,  # several workers run on one machine; a test that scrapes picks a port
}


# -- the two moto servers --------------------------------------------------------


@dataclass(frozen=True)
class Servers:
    source: MotoServer
    destination: MotoServer


@pytest.fixture(scope="session")
def moto_servers() -> Iterator[Servers]:
    with MotoServer() as source, MotoServer() as destination:
        yield Servers(source, destination)


@pytest.fixture
def servers(moto_servers: Servers) -> Servers:
    """Both servers, emptied: no table, stream or checkpoint row survives a test."""
    moto_servers.source.reset()
    moto_servers.destination.reset()
    return moto_servers


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No REPLICATOR_* variable or .env file of the developer's leaks into a test; the
    logging set-up that ``cli.main`` changes is put back afterwards."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield
    configure_logging("warning", "json")


# -- clients -----------------------------------------------------------------------


def source_endpoint(servers: Servers, service: str = "dynamodb") -> Endpoint:
    return Endpoint(service, SOURCE_REGION, servers.source.url)


def destination_endpoint(servers: Servers) -> Endpoint:
    return Endpoint("dynamodb", DESTINATION_REGION, servers.destination.url)


@pytest.fixture
async def source(servers: Servers) -> AsyncIterator[Any]:
    """A DynamoDB client of the source server."""
    async with open_client(source_endpoint(servers), call_timeout=30) as client:
        yield client


@pytest.fixture
async def destination(servers: Servers) -> AsyncIterator[Any]:
    """A DynamoDB client of the destination server."""
    async with open_client(destination_endpoint(servers), call_timeout=30) as client:
        yield client


@pytest.fixture
async def streams(servers: Servers) -> AsyncIterator[Any]:
    """A DynamoDB Streams client of the source server."""
    async with open_client(
        source_endpoint(servers, "dynamodbstreams"), call_timeout=30
    ) as client:
        yield client


def run_sync(make: Callable[[Any, Any], Coroutine[Any, Any, T]], servers: Servers) -> T:
    """Run ``make(source, destination)`` with fresh clients, from a synchronous test
    (the ones that call ``cli.main``, which runs its own event loop)."""

    async def run() -> T:
        async with (
            open_client(source_endpoint(servers), call_timeout=30) as source,
            open_client(destination_endpoint(servers), call_timeout=30) as destination,
        ):
            return await make(source, destination)

    return asyncio.run(run())


# -- tables and streams ------------------------------------------------------------


async def create_table(
    client: Any,
    name: str,
    *,
    keys: Mapping[str, str] | None = None,
    stream: str | None = None,
) -> str | None:
    """A table keyed by ``keys`` (name -> attribute type, hash key first; default pk S,
    sk N as in ``replicator.dev.workload``), with a stream of view type ``stream`` if given.
    Returns the stream ARN."""
    keys = keys if keys is not None else {"pk": "S", "sk": "N"}
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": [
            {"AttributeName": key, "KeyType": "HASH" if index == 0 else "RANGE"}
            for index, key in enumerate(keys)
        ],
        "AttributeDefinitions": [
            {"AttributeName": key, "AttributeType": type_} for key, type_ in keys.items()
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if stream is not None:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream}
    response = await client.create_table(**kwargs)
    arn: str | None = response["TableDescription"].get("LatestStreamArn")
    return arn


async def create_pair(
    source: Any, destination: Any, *, keys: Mapping[str, str] | None = None
) -> str:
    """The usual set-up: a streamed source table and an empty destination table."""
    arn = await create_table(source, SOURCE_TABLE, keys=keys, stream="NEW_AND_OLD_IMAGES")
    await create_table(destination, DESTINATION_TABLE, keys=keys)
    assert arn is not None
    return arn


async def stream_records(streams: Any, stream_arn: str) -> list[dict[str, Any]]:
    """Every record of the stream, read from its TRIM_HORIZON by the test itself: the
    count of stream records is what the replicator reads, whatever moto's quirks
    (two INSERTs for an upserting UpdateItem, a MODIFY for an identical put).

    Two writes that reach moto at the same time can get the same sequence number
    (it numbers a record by the length of the shard before appending it, and builds
    the record in between); when they are the last of the shard, GetRecords answers
    the last record again and again, never an empty page. So a page with no record
    not seen before (by eventID) ends the shard too."""
    description = (await streams.describe_stream(StreamArn=stream_arn))["StreamDescription"]
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    for shard in description["Shards"]:
        iterator = (
            await streams.get_shard_iterator(
                StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )
        )["ShardIterator"]
        while iterator:
            page = await streams.get_records(ShardIterator=iterator, Limit=1000)
            fresh = [record for record in page["Records"] if record["eventID"] not in seen]
            if not fresh:
                break
            seen.update(record["eventID"] for record in fresh)
            records.extend(fresh)
            iterator = page.get("NextShardIterator")
    return records


async def lease_rows(client: Any, task_name: str = TASK_NAME) -> list[Item]:
    """The rows of the checkpoint table (named after the task) in the source server."""
    response = await client.scan(TableName=task_name, ConsistentRead=True)
    # The bootstrap copy's rows (keyed copy|<stream ARN>) and the workers' rows (keyed
    # workers) are not shards' leases.
    rows: list[Item] = [
        row for row in response["Items"] if row["stream_arn"]["S"].startswith("arn:")
    ]
    return rows


async def compare(
    source: Any, destination: Any, key_names: list[str], *,
    source_table: str = SOURCE_TABLE, destination_table: str = DESTINATION_TABLE,
) -> TableDiff:
    return await compare_tables(source, source_table, destination, destination_table, key_names)


# -- waiting on what other processes do -------------------------------------------------


def reports(processes: Iterable[ReplicatorProcess]) -> str:
    """The state and last log lines of each process, for a failure message."""
    return "".join("\n\n" + process.report() for process in processes)


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, within: float,
    what: str | Callable[[], str], processes: Iterable[ReplicatorProcess] = (),
    every: float = POLL,
) -> None:
    """Poll ``condition`` (a read of a table, a scrape) every ``every`` seconds until it
    holds, for what a test cannot await: the checkpoint row of another process, say.
    On failure the error says ``what`` (a callable: what it returns then) and shows
    the last log lines of ``processes``. The deadline holds even for a check that
    does not end (a read retried for as long as moto does not answer)."""
    deadline = time.monotonic() + within

    def failure(note: str = "") -> AssertionError:
        described = what if isinstance(what, str) else what()
        return AssertionError(f"timed out after {within:g}s waiting for {described}{note}"
                              + reports(processes))

    while True:
        # A check begun just before the deadline may take a few seconds to end.
        check = asyncio.timeout(max(0.0, deadline - time.monotonic()) + 5.0)
        try:
            async with check:
                holds = await condition()
        except TimeoutError:
            if not check.expired():
                raise
            raise failure(" (the last check had not ended)") from None
        if holds:
            return
        if time.monotonic() > deadline:
            raise failure()
        await asyncio.sleep(every)


async def wait_equal(
    source: Any, destination: Any, key_names: list[str], *, within: float = DEADLINE,
    source_table: str = SOURCE_TABLE, destination_table: str = DESTINATION_TABLE,
    processes: Iterable[ReplicatorProcess] = (),
) -> TableDiff:
    """Poll both tables until they hold the same items (and some): for a replicator in
    another process, whose progress the test cannot ask for."""
    found: list[TableDiff] = []

    async def equal() -> bool:
        found[:] = [await compare(source, destination, key_names, source_table=source_table,
                                  destination_table=destination_table)]
        return found[0].equal and found[0].source_items > 0

    await wait_until(
        equal, within=within, processes=processes, every=0.25,  # a comparison costs
        what=lambda: "the tables to be equal (last compared: "
        f"{found[0].summary() if found else 'not yet'}"
        f"{'; keys: ' + repr(found[0].examples) if found and not found[0].equal else ''})",
    )
    return found[0]


async def settled(read: Callable[[], Awaitable[T]], *, quiet: float = 0.5,
                  within: float = 30.0) -> T:
    """What ``read`` returns once two reads ``quiet`` seconds apart agree: after a
    SIGKILL (or SIGSTOP), a write the process had fully sent may still reach moto."""
    rows = await read()
    deadline = time.monotonic() + within
    while True:
        await asyncio.sleep(quiet)  # the quiet spell that counts as settled
        again = await read()
        if again == rows:
            return again
        if time.monotonic() > deadline:
            raise AssertionError(f"still changing after {within:g}s: {again}")
        rows = again


async def workload_until(
    stop: asyncio.Event, client: Any, table: str = SOURCE_TABLE, *, chunk: int = 50,
    seed: int = 7, **options: Any,
) -> WorkloadResult:
    """``run_workload`` (same ``options``), ``chunk`` operations at a time, until
    ``stop`` is set: a workload that outlasts whatever the test waits for, however
    long that takes on a loaded machine."""
    total = WorkloadResult()
    while not stop.is_set():
        result = await run_workload(client, table, operations=chunk, seed=seed, **options)
        seed += 1
        total.operations += result.operations
        for kind, count in result.by_kind.items():
            total.by_kind[kind] = total.by_kind.get(kind, 0) + count
    return total


# -- settings ------------------------------------------------------------------------


def _values(servers: Servers, **overrides: Any) -> dict[str, Any]:
    """A replication of the source server's table into the destination server's,
    with small intervals."""
    return {
        "source_table": SOURCE_TABLE,
        "source_region": SOURCE_REGION,
        "source_endpoint": servers.source.url,
        "destination_table": DESTINATION_TABLE,
        "destination_region": DESTINATION_REGION,
        "destination_endpoint": servers.destination.url,
        "task_name": TASK_NAME,
        **FAST,
        **overrides,
    }


def settings_for(servers: Servers, **overrides: Any) -> Settings:
    """The settings, built the way the command line builds them."""
    return load_settings(_values(servers, **{"log_level": "warning", **overrides}),
                         env_file=None)


def environment_for(servers: Servers, **overrides: Any) -> dict[str, str]:
    """The same settings as REPLICATOR_* variables (None drops one)."""
    values = _values(servers, **{"log_level": "info", "log_format": "json", **overrides})
    return {env_name(name): str(value) for name, value in values.items() if value is not None}


# -- an in-process replicator ----------------------------------------------------------


async def until(
    changed: Signal, condition: Callable[[], bool], *, within: float = DEADLINE, what: str,
    task: asyncio.Future[Any] | None = None, describe: Callable[[], str] = str,
) -> None:
    """Until ``condition`` holds, looked at again each time ``changed`` is notified,
    under one deadline: the wait on something in this process (an in-process
    replicator's ``Stats.changed``, a test proxy's), without polling. Fails at once
    when ``task`` (what makes the changes) ends first; a failure includes
    ``describe()``."""
    deadline = time.monotonic() + within
    while True:
        notified = asyncio.ensure_future(changed.wait())  # listens from here on
        try:
            if condition():
                return
            if task is not None and task.done():
                raise AssertionError(
                    f"{_ending(task)} before {what}: {describe()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {within:g}s waiting for {what}: {describe()}")
            await asyncio.wait([notified, *([task] if task is not None else [])],
                               timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        finally:
            notified.cancel()


def _ending(task: asyncio.Future[Any]) -> str:
    """How a finished task ended, for a failure message."""
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    return f"stopped (it returned {task.result()!r})" if error is None else \
        f"stopped ({error!r})"


class InProcess:
    """A ``Replicator`` running in a task of the test's event loop."""

    def __init__(self, settings: Settings) -> None:
        self.replicator = Replicator(settings)
        self.task: asyncio.Task[int] | None = None
        self.exit_code: int | None = None

    @property
    def stats(self) -> Stats:
        return self.replicator.stats

    def now(self) -> float:
        """The replicator's clock now: the instant ``wait_caught_up`` takes."""
        return self.replicator.clock.monotonic()

    async def start(self, within: float = DEADLINE) -> None:
        """Run the replicator, until it has started (after a bootstrap copy, if any)."""
        self.task = asyncio.create_task(self.replicator.run(), name="replicator")
        started = asyncio.create_task(self.replicator.started.wait())
        await asyncio.wait([self.task, started], timeout=within,
                           return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if self.task.done():
            self.task.result()  # raises what ended it
            raise AssertionError("the replicator stopped at start-up")
        if not self.replicator.started.is_set():
            raise AssertionError(f"the replicator did not start within {within:g}s: "
                                 f"{self.describe()}")

    async def until(self, condition: Callable[[], bool], *, within: float = DEADLINE,
                    what: str) -> None:
        """Until ``condition`` (of the replicator's state) holds, looked at again at
        each notification of ``Stats.changed`` (a batch applied, a checkpoint written,
        an empty read, a copy page written, a change of phase), under one deadline.
        Fails at once if the replicator stops."""
        assert self.task is not None, "the replicator was not started"
        await until(self.stats.changed, condition, within=within, what=what,
                    task=self.task, describe=self.describe)

    async def wait_caught_up(self, since: float, within: float = DEADLINE) -> None:
        """Until every record written before ``since`` (an instant of the replicator's
        clock: ``now()``) is applied."""
        await self.until(lambda: self.replicator.caught_up_since(since), within=within,
                         what="every record written before then to be applied")

    def describe(self) -> str:
        """What the replicator has done, for a failure message."""
        stats = self.stats
        copy = self.replicator.copy
        return (f"phase {self.replicator.phase}, {stats.records_read} records read, "
                f"{stats.applied_total} applied, {stats.checkpoints_written} checkpoints "
                f"written, {stats.copy_items_written} items copied"
                + ("" if copy is None else f" ({copy!r})")
                + f", retries {dict(stats.retries)}")

    async def stop(self, within: float = 30.0) -> int:
        """Graceful stop; returns the exit code of ``run``."""
        assert self.task is not None
        self.replicator.stop()
        if self.exit_code is None:
            self.exit_code = await asyncio.wait_for(asyncio.shield(self.task), within)
        return self.exit_code


@contextlib.asynccontextmanager
async def replicating(settings: Settings) -> AsyncIterator[InProcess]:
    """Run a replicator for the body of the block; stop it (gracefully) at the end."""
    running = InProcess(settings)
    try:
        await running.start()
        yield running
    finally:
        if running.task is not None and not running.task.done():
            try:
                await running.stop()
            finally:
                if not running.task.done():
                    running.task.cancel()
                    with contextlib.suppress(BaseException):
                        await running.task


# -- ``python -m replicator`` as a subprocess -------------------------------------------


class ReplicatorProcess:
    """``python -m replicator`` with the given REPLICATOR_* variables and arguments.

    stdout (JSON log lines) and stderr go to files in ``directory``, which is also
    the working directory (so no stray .env file is read).
    """

    def __init__(self, directory: Path, name: str, env: Mapping[str, str],
                 args: tuple[str, ...] = ()) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        self.name = name
        self.stdout_path = directory / f"{name}.stdout"
        self.stderr_path = directory / f"{name}.stderr"
        #: The whole environment of the process.
        self.environment = {**base, **LOCAL_CREDENTIALS, "PYTHONUNBUFFERED": "1", **env}
        #: The log lines parsed so far, the bytes of stdout they came from, and the
        #: start of a line not yet ended.
        self._lines: list[dict[str, Any]] = []
        self._parsed = 0
        self._unended = b""
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "replicator", *args],
                env=self.environment,
                cwd=directory,
                stdout=out,
                stderr=err,
            )

    def __repr__(self) -> str:
        return f"<ReplicatorProcess {self.name} pid {self.pid}>"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        """Every JSON log line so far. stdout is read on from where the last call
        stopped: waits read it every tenth of a second, and a busy worker logs a lot."""
        with self.stdout_path.open("rb") as out:
            out.seek(self._parsed)
            data = out.read()
        self._parsed += len(data)
        *ended, self._unended = (self._unended + data).split(b"\n")
        for line in ended:
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    self._lines.append(entry)
        return list(self._lines)

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.log_lines() if line.get("event") == event]

    def report(self, lines: int = TAIL) -> str:
        """Whether the process runs (or its exit code), its last ``lines`` log lines
        and its stderr: what a failed wait shows."""
        code = self.returncode
        state = "still running" if code is None else f"exited with code {code}"
        tail = self.stdout().splitlines()[-lines:]
        stderr = self.stderr().strip().splitlines()[-2 * lines:]
        return (f"--- {self.name} ({state}); its last {len(tail)} log lines:\n"
                + "\n".join(tail)
                + f"\n--- {self.name}'s stderr:\n" + ("\n".join(stderr) or "(empty)"))

    async def wait_for_event(
        self, event: str, *, where: Callable[[dict[str, Any]], bool] | None = None,
        within: float = DEADLINE,
    ) -> dict[str, Any]:
        """The first log line of ``event`` for which ``where`` holds: see the function
        ``wait_for_event``."""
        _, line = await wait_for_event(self, event, where=where, within=within)
        return line

    async def wait(self, within: float = 30.0) -> int:
        """Wait (without blocking the event loop) for the process to exit."""
        deadline = time.monotonic() + within
        while (code := self.returncode) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} still running after {within:g}s"
                                     + reports([self]))
            await asyncio.sleep(0.05)
        return code

    def send(self, signum: signal.Signals) -> None:
        if self.returncode is None:
            self.process.send_signal(signum)

    def cleanup(self) -> None:
        """Kill the process if it still runs; always safe to call."""
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


async def wait_for_event(
    processes: ReplicatorProcess | Iterable[ReplicatorProcess], event: str, *,
    where: Callable[[dict[str, Any]], bool] | None = None, within: float = DEADLINE,
) -> tuple[ReplicatorProcess, dict[str, Any]]:
    """The first log line of ``event`` for which ``where`` (if given) holds, logged by
    one of ``processes``, and the process that logged it: the one way a test waits on
    a subprocess. Fails when ``within`` seconds pass, or when one of the processes
    exits without having logged it; the error shows each one's exit code (if it
    exited), its last log lines and its stderr."""
    watched = [processes] if isinstance(processes, ReplicatorProcess) else list(processes)
    assert watched, "no process to wait on"
    wanted = repr(event) if where is None else f"{event!r} matching the test's condition"
    deadline = time.monotonic() + within
    while True:
        # Who has exited is read first: their logs are complete by then.
        exited = [process.name for process in watched if process.returncode is not None]
        for process in watched:
            for line in process.events(event):
                if where is None or where(line):
                    return process, line
        if exited:
            raise AssertionError(f"{', '.join(exited)} exited before logging {wanted}"
                                 + reports(watched))
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no {wanted} logged by {', '.join(p.name for p in watched)} within "
                f"{within:g}s" + reports(watched))
        await asyncio.sleep(POLL)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., ReplicatorProcess]]:
    """Start ``python -m replicator`` subprocesses; every one is killed at the end."""
    started: list[ReplicatorProcess] = []

    def start(name: str, env: Mapping[str, str], *args: str) -> ReplicatorProcess:
        process = ReplicatorProcess(tmp_path, name, env, args)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.cleanup()


# -- tables full of items (the bootstrap copy and verify) -------------------------------


def numbered_key(index: int) -> Item:
    """The key of item number ``index``: two items per hash key, so that a parallel
    Scan's segments (chosen by hash key) hold about as many items each."""
    return {"pk": {"S": f"item-{index // 2:06d}"}, "sk": {"N": str(index % 2)}}


def numbered_item(rng: random.Random, index: int, *, pad: int = 0, rich_every: int = 10) -> Item:
    """Item number ``index``: every ``rich_every``-th one carries every attribute type
    (``workload.random_item``), the others two plain ones, since moto takes about
    3 ms to serialize a rich item. ``pad`` characters of padding make an item bigger
    at little cost, and a 1 MB Scan page shorter."""
    key = numbered_key(index)
    if index % rich_every == 0:
        item = random_item(rng, key)
    else:
        item = {**key, "v": {"N": str(index)}, "s": {"S": f"plain-{index}"}}
    if pad:
        item["pad"] = {"S": "p" * pad}
    return item


async def fill_table(
    client: Any, items: list[Item], *, table: str = SOURCE_TABLE, concurrency: int = 1
) -> None:
    """Write ``items`` with BatchWriteItem, 25 a call, ``concurrency`` calls at once.

    One at a time by default: two writes that reach moto at once can get the same
    stream sequence number (see ``stream_records``), after which moto's GetRecords
    serves a record twice, or the last one for ever (a reader never sees the end
    of the shard). One at a time is about as fast on moto (/work/shared/MOTO.md)."""
    batches = [items[start:start + 25] for start in range(0, len(items), 25)]
    batches.reverse()

    async def writer() -> None:
        while batches:
            batch = batches.pop()
            requests: list[dict[str, Any]] = [{"PutRequest": {"Item": item}} for item in batch]
            while requests:
                response = await client.batch_write_item(RequestItems={table: requests})
                requests = response.get("UnprocessedItems", {}).get(table, [])

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(writer())


# -- test proxies in front of a moto server ---------------------------------------------


async def forward(
    session: aiohttp.ClientSession, target: str, request: web.BaseRequest, body: bytes
) -> tuple[bytes, int, dict[str, str]]:
    """Send a request a test proxy received on to ``target``: (body, status, headers)."""
    headers = {k: v for k, v in request.headers.items()
               if k.lower() not in ("host", "content-length", "transfer-encoding")}
    async with session.request(request.method, target + request.path_qs,
                               data=body, headers=headers) as answer:
        data = await answer.read()
        answer_headers = {
            k: v for k, v in answer.headers.items()
            if k.lower() not in ("content-length", "transfer-encoding", "content-encoding",
                                 "connection", "date", "server")
        }
        return data, answer.status, answer_headers


class Proxy:
    """An HTTP proxy on a free loopback port in front of ``target`` (a moto server),
    serving in the test's event loop while ``running``. A subclass decides what to do
    with each request in ``handle``, and passes it on with ``pass_on``."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.url = ""
        self._session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        return await self.pass_on(request, await request.read())

    async def pass_on(self, request: web.BaseRequest, body: bytes) -> web.Response:
        assert self._session is not None, "the proxy is not running"
        data, status, headers = await forward(self._session, self.target, request, body)
        return web.Response(body=data, status=status, headers=headers)

    def closing(self) -> None:
        """Called as the proxy stops: release whatever requests it holds."""

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Self]:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        runner = web.ServerRunner(web.Server(self.handle))
        await runner.setup()
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(auto_decompress=False,
                                         connector=connector) as self._session:
            await web.TCPSite(runner, "127.0.0.1", port).start()
            try:
                yield self
            finally:
                self.closing()
                await runner.cleanup()
