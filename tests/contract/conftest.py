"""Contract fixtures: each protocol of ``replicator.protocols`` on three backends.

A contract test states what a ``LeaseStore``, ``DestinationWriter``,
``SegmentScanner``/``KeyReader`` or ``StreamReader`` does, once, and runs on:

- ``fake``: the in-memory fakes of ``tests.fakes``, which the unit tests use;
- ``moto``: the ``replicator.aws`` implementation against a moto server;
- ``dynamodb-local``: the same implementation against AWS's DynamoDB Local.

So a fake cannot drift from the real thing, and a moto quirk cannot hide a bug.
Where a server departs from DynamoDB (DynamoDB Local is the reference when moto
disagrees with it), the test says so per backend with ``on_backends(moto=quirk(...))``:
an xfail that must fail, with the reason; ``unplayable`` skips a backend that cannot
play the case at all (a fake with no such table). One server of each kind runs per
test session (per pytest-xdist worker); every test makes tables of its own.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from replicator.aws.clients import Endpoint, open_client
from replicator.aws.codec import item_to_boto
from replicator.aws.lease_store import DynamoLeaseStore
from replicator.aws.streams import DynamoStreamReader
from replicator.aws.table import DynamoTable
from replicator.dev.local import MotoServer
from replicator.protocols import DestinationWriter, LeaseStore, StreamReader, TableAccess
from replicator.records import Item, KeyId, key_id
from tests.dynamodb_local import REQUIRE_VARIABLE, REQUIRED, DynamoDBLocal, DynamoDBLocalMissing
from tests.fakes import FakeDestination, FakeLeaseStore, FakeStream, FakeTable
from tests.faults import Fault, FaultPlan, FaultProxy

REGION = "us-east-1"
#: The call timeout of every client: a failure detector on a loaded machine.
CALL_TIMEOUT = 20.0


class Backend(enum.StrEnum):
    FAKE = "fake"
    MOTO = "moto"
    DYNAMODB_LOCAL = "dynamodb-local"


#: The marks of each backend: the servers are reached over HTTP (``integration``: the
#: timeout is enforced from a thread, see ``tests/conftest.py``).
MARKS: dict[Backend, list[pytest.MarkDecorator]] = {
    Backend.FAKE: [],
    Backend.MOTO: [pytest.mark.integration],
    Backend.DYNAMODB_LOCAL: [pytest.mark.integration, pytest.mark.dynamodb_local],
}


def quirk(reason: str, *, raises: type[BaseException] | tuple[type[BaseException], ...] = (
    AssertionError, pytest.fail.Exception), strict: bool = True) -> pytest.MarkDecorator:
    """This backend departs from DynamoDB here, for ``reason``: the test must fail on it
    (with ``raises``: an assertion, by default), and fails the day it passes, so that
    the mark goes; ``strict=False`` for a departure that some runs cannot show."""
    return pytest.mark.xfail(reason=reason, raises=raises, strict=strict)


def unplayable(reason: str) -> pytest.MarkDecorator:
    """This backend cannot play the case at all (a fake without the table)."""
    return pytest.mark.skip(reason=reason)


def on_backends(
    *, fake: pytest.MarkDecorator | None = None, moto: pytest.MarkDecorator | None = None,
    dynamodb_local: pytest.MarkDecorator | None = None,
) -> pytest.MarkDecorator:
    """Run the test on every backend, with a ``quirk`` or ``unplayable`` mark on some."""
    extra = {Backend.FAKE: fake, Backend.MOTO: moto, Backend.DYNAMODB_LOCAL: dynamodb_local}
    params = [
        pytest.param(backend, id=backend.value,
                     marks=[*MARKS[backend], *([mark] if (mark := extra[backend]) else [])])
        for backend in Backend
    ]
    return pytest.mark.parametrize("backend", params, indirect=True)


def fresh_name(kind: str) -> str:
    """A table name no other test uses (DynamoDB Local wants 3 to 255 characters)."""
    return f"contract-{kind}-{uuid.uuid4().hex[:12]}"


# -- the servers --------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    """DynamoDB Local for the session; skipped (or failed, when required) if missing."""
    try:
        server = DynamoDBLocal()
    except DynamoDBLocalMissing as exc:
        if REQUIRED:
            pytest.fail(f"{exc} ({REQUIRE_VARIABLE} is set: DynamoDB Local is required)")
        pytest.skip(str(exc))
    with server:
        yield server


@pytest.fixture(params=[pytest.param(b, id=b.value, marks=MARKS[b]) for b in Backend])
def backend(request: pytest.FixtureRequest) -> Backend:
    return Backend(request.param)


@pytest.fixture
def endpoint_url(backend: Backend, request: pytest.FixtureRequest) -> str | None:
    """The backend's server (started on first use), or None for the fakes."""
    if backend is Backend.MOTO:
        moto: MotoServer = request.getfixturevalue("moto_server")
        return moto.url
    if backend is Backend.DYNAMODB_LOCAL:
        local: DynamoDBLocal = request.getfixturevalue("dynamodb_local")
        return local.url
    return None


class ClientPool:
    """The clients of the session, each opened on first use and kept: opening one costs
    about 0.3 s of CPU (botocore loads the service's model), more than most tests."""

    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[tuple[str, str], Any] = {}

    async def client(self, service: str, url: str) -> Any:
        if (service, url) not in self._clients:
            self._clients[(service, url)] = await self._stack.enter_async_context(
                open_client(Endpoint(service, REGION, url), call_timeout=CALL_TIMEOUT))
        return self._clients[(service, url)]

    async def aclose(self) -> None:
        await self._stack.aclose()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def client_pool() -> AsyncIterator[ClientPool]:
    pool = ClientPool()
    try:
        yield pool
    finally:
        await pool.aclose()


@dataclass
class Clients:
    """A DynamoDB client of one server, and the pool to get others from."""

    url: str
    dynamodb: Any
    pool: ClientPool

    async def streams(self) -> Any:
        return await self.pool.client("dynamodbstreams", self.url)


@contextlib.asynccontextmanager
async def clients_of(url: str) -> AsyncIterator[Any]:
    """A DynamoDB client of its own (of a test proxy, say), closed at the end."""
    async with open_client(Endpoint("dynamodb", REGION, url),
                           call_timeout=CALL_TIMEOUT) as dynamodb:
        yield dynamodb


@pytest_asyncio.fixture(loop_scope="session")
async def clients(endpoint_url: str | None, client_pool: ClientPool) -> Clients | None:
    if endpoint_url is None:
        return None
    return Clients(endpoint_url, await client_pool.client("dynamodb", endpoint_url), client_pool)


async def create_table(
    client: Any, name: str, keys: dict[str, str], *, stream: str | None = None
) -> str | None:
    """An on-demand table keyed by ``keys`` (name -> type, hash key first), with a stream
    of view type ``stream`` if given; returns the stream ARN."""
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": [{"AttributeName": key, "KeyType": "HASH" if i == 0 else "RANGE"}
                      for i, key in enumerate(keys)],
        "AttributeDefinitions": [{"AttributeName": key, "AttributeType": type_}
                                 for key, type_ in keys.items()],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if stream is not None:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream}
    response = await client.create_table(**kwargs)
    arn: str | None = response["TableDescription"].get("LatestStreamArn")
    return arn


async def scan_all(client: Any, table: str) -> list[Item]:
    """Every item of ``table``, read by the test itself (not by the code under test)."""
    items: list[Item] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        response = await client.scan(**kwargs)
        items.extend(response.get("Items", []))
        if not response.get("LastEvaluatedKey"):
            return items
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def comparable(item: Item) -> Item:
    """``item`` with its sets sorted: DynamoDB keeps no order in a set."""
    result: Item = {}
    for name, value in item.items():
        ((type_, inner),) = value.items()
        if type_ in ("SS", "NS", "BS"):
            result[name] = {type_: sorted(inner)}
        elif type_ == "M":
            result[name] = {"M": comparable(inner)}
        elif type_ == "L":
            result[name] = {"L": [comparable({"_": element})["_"] for element in inner]}
        else:
            result[name] = {type_: inner}
    return result


# -- the lease store ------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def lease_store(backend: Backend, clients: Clients | None) -> LeaseStore:
    """An empty checkpoint table."""
    if clients is None:
        return FakeLeaseStore()
    store = DynamoLeaseStore(clients.dynamodb, fresh_name("leases"), call_timeout=CALL_TIMEOUT)
    assert await store.ensure_table()
    return store


# -- the destination --------------------------------------------------------------------


@dataclass
class Destination:
    """A destination table keyed by ``pk`` (S), its writer, and a way to read it back."""

    writer: DestinationWriter
    clients: Clients | None = None
    fake: FakeDestination | None = None
    table: str = ""

    async def contents(self) -> dict[KeyId, Item]:
        """What the table holds, by key, with sets sorted."""
        if self.fake is not None:
            items = list(self.fake.table.values())
        else:
            assert self.clients is not None
            items = await scan_all(self.clients.dynamodb, self.table)
        return {key_id({"pk": item["pk"]}): comparable(item) for item in items}

    @contextlib.asynccontextmanager
    async def leaving_unprocessed(self) -> AsyncIterator[DestinationWriter]:
        """A writer of the same table to which the service leaves part of every
        BatchWriteItem unprocessed: the fake's hook, or a fault proxy in front of the
        server (as DynamoDB does under load, which no local server does)."""
        if self.fake is not None:
            self.fake.unprocessed = lambda call, requests: range(len(requests) // 2,
                                                                 len(requests))
            try:
                yield self.fake
            finally:
                self.fake.unprocessed = None
            return
        assert self.clients is not None
        proxy = FaultProxy(self.clients.url, FaultPlan.always(Fault.UNPROCESSED,
                                                              "BatchWriteItem"))
        async with proxy.running(), clients_of(proxy.url) as through:
            yield DynamoTable(through, self.table, call_timeout=CALL_TIMEOUT)


@pytest_asyncio.fixture(loop_scope="session")
async def destination(backend: Backend, clients: Clients | None) -> Destination:
    if clients is None:
        fake = FakeDestination()
        return Destination(fake, fake=fake)
    name = fresh_name("destination")
    await create_table(clients.dynamodb, name, {"pk": "S"})
    return Destination(DynamoTable(clients.dynamodb, name, call_timeout=CALL_TIMEOUT),
                       clients=clients, table=name)


# -- a table read by copy and verify ---------------------------------------------------------

#: The key of the read tables: a hash and a range key, as most tables have.
READ_KEYS = {"pk": "S", "sk": "N"}


@dataclass
class ReadTable:
    """A table keyed by (``pk`` S, ``sk`` N) that the test fills, and its reader (a
    ``SegmentScanner`` and a ``KeyReader``)."""

    reader: TableAccess
    clients: Clients | None = None
    fake: FakeTable | None = None

    async def fill(self, items: list[Item]) -> None:
        if self.fake is not None:
            for item in items:
                self.fake.items[key_id({n: item[n] for n in READ_KEYS})] = copy.deepcopy(item)
            return
        assert self.clients is not None
        for start in range(0, len(items), 25):
            requests: list[dict[str, Any]] = [
                {"PutRequest": {"Item": item_to_boto(item)}} for item in items[start:start + 25]
            ]
            while requests:
                response = await self.clients.dynamodb.batch_write_item(
                    RequestItems={self.reader.table: requests})
                requests = response.get("UnprocessedItems", {}).get(self.reader.table, [])


@pytest_asyncio.fixture(loop_scope="session")
async def read_table(backend: Backend, clients: Clients | None) -> ReadTable:
    if clients is None:
        fake = FakeTable(key_names=tuple(READ_KEYS), table=fresh_name("read"))
        return ReadTable(fake, fake=fake)
    name = fresh_name("read")
    await create_table(clients.dynamodb, name, READ_KEYS)
    return ReadTable(DynamoTable(clients.dynamodb, name, call_timeout=CALL_TIMEOUT),
                     clients=clients)


# -- a stream ---------------------------------------------------------------------------------


@dataclass
class Stream:
    """A table keyed by ``pk`` (S) with a stream of new and old images: the test writes
    the table, the ``reader`` reads its stream."""

    reader: StreamReader
    stream_arn: str
    clients: Clients | None = None
    fake: FakeStream | None = None
    table: str = ""
    shard_id: str = ""

    async def put(self, item: Item) -> None:
        if self.fake is not None:
            self.fake.put(self.shard_id, item)
            return
        assert self.clients is not None
        await self.clients.dynamodb.put_item(TableName=self.table, Item=item)

    async def delete(self, key: Item) -> None:
        if self.fake is not None:
            self.fake.delete(self.shard_id, key)
            return
        assert self.clients is not None
        await self.clients.dynamodb.delete_item(TableName=self.table, Key=key)


@pytest_asyncio.fixture(loop_scope="session")
async def stream(backend: Backend, clients: Clients | None) -> Stream:
    if clients is None:
        fake = FakeStream()
        shard_id = fake.add_shard()
        return Stream(fake, fake.stream_arn, fake=fake, shard_id=shard_id)
    name = fresh_name("stream")
    arn = await create_table(clients.dynamodb, name, {"pk": "S"}, stream="NEW_AND_OLD_IMAGES")
    assert arn is not None
    reader = DynamoStreamReader(await clients.streams(), call_timeout=CALL_TIMEOUT)
    return Stream(reader, arn, clients=clients, table=name)
