"""Integration fixtures: two real moto servers over HTTP, and ways to run the replicator.

Two ``moto_server`` subprocesses stand for the source and the destination (each
has its own state, like two regions). They live for the whole session and are
reset before every test. The replicator runs either in-process (``replicating``:
a ``Replicator`` in a task, so a test can read its ``stats`` and ask
``caught_up_since``) or as ``python -m replicator`` (``ReplicatorProcess``: JSON
log lines on stdout, real signals, a real exit code).
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
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

import aiohttp
import pytest
from aiohttp import web

from replicator.aws import Endpoint, open_client
from replicator.cli import load_settings
from replicator.config import ENV_PREFIX, Settings, env_name
from replicator.local import LOCAL_CREDENTIALS, MotoServer, free_port
from replicator.logs import configure_logging
from replicator.records import Item
from replicator.service import Replicator
from replicator.stats import Stats
from replicator.verify import TableDiff, compare_tables
from replicator.workload import random_item

T = TypeVar("T")

SOURCE_REGION = "us-east-1"
DESTINATION_REGION = "eu-west-1"
SOURCE_TABLE = "source-table"
DESTINATION_TABLE = "destination-table"
TASK_NAME = "integration-task"

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
    sk N as in ``replicator.workload``), with a stream of view type ``stream`` if given.
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
    (two INSERTs for an upserting UpdateItem, a MODIFY for an identical put)."""
    description = (await streams.describe_stream(StreamArn=stream_arn))["StreamDescription"]
    records: list[dict[str, Any]] = []
    for shard in description["Shards"]:
        iterator = (
            await streams.get_shard_iterator(
                StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )
        )["ShardIterator"]
        while iterator:
            page = await streams.get_records(ShardIterator=iterator, Limit=1000)
            if not page["Records"]:
                break
            records.extend(page["Records"])
            iterator = page.get("NextShardIterator")
    return records


async def lease_rows(client: Any, task_name: str = TASK_NAME) -> list[Item]:
    """The rows of the checkpoint table (named after the task) in the source server."""
    response = await client.scan(TableName=task_name, ConsistentRead=True)
    # The bootstrap copy's rows (keyed copy|<stream ARN>) are not shards' leases.
    rows: list[Item] = [
        row for row in response["Items"] if not row["stream_arn"]["S"].startswith("copy|")
    ]
    return rows


async def compare(
    source: Any, destination: Any, key_names: list[str], *,
    source_table: str = SOURCE_TABLE, destination_table: str = DESTINATION_TABLE,
) -> TableDiff:
    return await compare_tables(source, source_table, destination, destination_table, key_names)


async def wait_equal(
    source: Any, destination: Any, key_names: list[str], *, within: float = 30.0,
    source_table: str = SOURCE_TABLE, destination_table: str = DESTINATION_TABLE,
) -> TableDiff:
    """Poll both tables until they hold the same items. For a replicator in another
    process, whose progress the test cannot ask for."""
    deadline = time.monotonic() + within
    while True:
        diff = await compare(source, destination, key_names, source_table=source_table,
                             destination_table=destination_table)
        if diff.equal and diff.source_items > 0:
            return diff
        if time.monotonic() > deadline:
            raise AssertionError(f"tables still differ after {within:g}s: {diff.summary()}")
        await asyncio.sleep(0.2)


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, within: float, what: str
) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(0.1)


async def settled(read: Callable[[], Awaitable[T]], *, quiet: float = 0.5,
                  within: float = 5.0) -> T:
    """What ``read`` returns once two reads ``quiet`` seconds apart agree: after a
    SIGKILL, a write the dead process had fully sent may still reach moto."""
    rows = await read()
    deadline = time.monotonic() + within
    while True:
        await asyncio.sleep(quiet)
        again = await read()
        if again == rows:
            return again
        if time.monotonic() > deadline:
            raise AssertionError(f"still changing after {within:g}s: {again}")
        rows = again


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


class InProcess:
    """A ``Replicator`` running in a task of the test's event loop."""

    def __init__(self, settings: Settings) -> None:
        self.replicator = Replicator(settings)
        self.task: asyncio.Task[int] | None = None
        self.exit_code: int | None = None

    @property
    def stats(self) -> Stats:
        return self.replicator.stats

    async def start(self, within: float = 20.0) -> None:
        self.task = asyncio.create_task(self.replicator.run(), name="replicator")
        started = asyncio.create_task(self.replicator.started.wait())
        await asyncio.wait([self.task, started], timeout=within,
                           return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if self.task.done():
            self.task.result()  # raises what ended it
            raise AssertionError("the replicator stopped at start-up")
        if not self.replicator.started.is_set():
            raise AssertionError(f"the replicator did not start within {within:g}s")

    async def wait_caught_up(self, since: float, within: float = 30.0) -> None:
        """Until every record written before ``since`` (a monotonic instant) is applied."""
        assert self.task is not None
        deadline = time.monotonic() + within
        while not self.replicator.caught_up_since(since):
            if self.task.done():
                raise AssertionError(f"the replicator stopped: {self.task.result()!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the replicator did not catch up within {within:g}s")
            await asyncio.sleep(0.05)

    async def stop(self, within: float = 20.0) -> int:
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
        self.stdout_path = directory / f"{name}.stdout"
        self.stderr_path = directory / f"{name}.stderr"
        #: The whole environment of the process.
        self.environment = {**base, **LOCAL_CREDENTIALS, "PYTHONUNBUFFERED": "1", **env}
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "replicator", *args],
                env=self.environment,
                cwd=directory,
                stdout=out,
                stderr=err,
            )

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
        lines = []
        for line in self.stdout().splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    lines.append(entry)
        return lines

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.log_lines() if line.get("event") == event]

    async def wait_for_event(self, event: str, within: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            found = self.events(event)
            if found:
                return found[0]
            if self.returncode is not None:
                raise AssertionError(
                    f"replicator exited ({self.returncode}) before logging {event!r}:\n"
                    f"{self.stdout()}\n{self.stderr()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"replicator did not log {event!r} within {within:g}s")
            await asyncio.sleep(0.05)

    async def wait(self, within: float) -> int:
        """Wait (without blocking the event loop) for the process to exit."""
        deadline = time.monotonic() + within
        while (code := self.returncode) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"replicator still running after {within:g}s")
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
    client: Any, items: list[Item], *, table: str = SOURCE_TABLE, concurrency: int = 8
) -> None:
    """Write ``items`` with BatchWriteItem, 25 a call, ``concurrency`` calls at once."""
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
