"""A topology in one process: two source tables, the first fanned out to three
destinations on three moto servers (three regions), the second to one; a mixed workload
on both; the worker killed with SIGKILL and restarted; every destination ends equal to
its source. And one read of each shard serving three destinations."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from replicator.aws.clients import Endpoint, open_client
from replicator.dev.local import LOCAL_CREDENTIALS, MotoServer
from replicator.dev.workload import KEY_NAMES, run_workload

from .conftest import (
    DEADLINE,
    FAST,
    SOURCE_REGION,
    Proxy,
    ReplicatorProcess,
    Servers,
    compare,
    create_table,
    lease_rows,
    wait_equal,
    wait_for_event,
    wait_until,
    workload_until,
)

ORDERS, USERS = "orders", "users"
TASK = "topology-task"
#: (name, table, region, server index) of the destinations: orders into three regions,
#: users into one.
ORDERS_DESTINATIONS = [("eu", "orders-eu", "eu-west-1", 0), ("us", "orders-us", "us-west-2", 1),
                       ("ap", "orders-ap", "ap-southeast-2", 2)]
USERS_DESTINATIONS = [("users-eu", "users-replica", "eu-west-1", 0)]


@pytest.fixture(scope="module")
def more_servers() -> Iterator[list[MotoServer]]:
    """Two moto servers besides the session's two: three destination regions."""
    with MotoServer() as second, MotoServer() as third:
        yield [second, third]


@pytest.fixture
def destination_servers(servers: Servers, more_servers: list[MotoServer]) -> list[MotoServer]:
    for server in more_servers:
        server.reset()
    return [servers.destination, *more_servers]


def topology_file(directory: Path, servers: Servers, destinations: list[MotoServer], *,
                  streams_endpoint: str | None = None, task: str = TASK,
                  orders: list[tuple[str, str, str, int]] | None = None,
                  users: bool = True) -> Path:
    """The topology's TOML file: orders and users in the source server."""
    def path(table: str, routes: list[tuple[str, str, str, int]]) -> str:
        text = (f'[[path]]\nsource = {{ table = "{table}", region = "{SOURCE_REGION}", '
                f'endpoint = "{servers.source.url}"'
                + (f', streams_endpoint = "{streams_endpoint}"' if streams_endpoint else "")
                + " }\n")
        for name, dest_table, region, index in routes:
            text += (f'[[path.destination]]\nname = "{name}"\ntable = "{dest_table}"\n'
                     f'region = "{region}"\nendpoint = "{destinations[index].url}"\n')
        return text

    text = f'task = "{task}"\n\n' + path(ORDERS, ORDERS_DESTINATIONS if orders is None
                                          else orders)
    if users:
        text += "\n" + path(USERS, USERS_DESTINATIONS)
    file = directory / f"{task}.toml"
    file.write_text(text)
    return file


@contextlib.asynccontextmanager
async def clients(servers: Servers, destinations: list[MotoServer]
                  ) -> AsyncIterator[tuple[Any, list[Any]]]:
    async with contextlib.AsyncExitStack() as stack:
        source = await stack.enter_async_context(open_client(
            Endpoint("dynamodb", SOURCE_REGION, servers.source.url), call_timeout=30))
        regions = {index: region for _, _, region, index in
                   ORDERS_DESTINATIONS + USERS_DESTINATIONS}
        written = [await stack.enter_async_context(open_client(
            Endpoint("dynamodb", regions[index], server.url), call_timeout=30))
            for index, server in enumerate(destinations)]
        yield source, written


async def create_tables(source: Any, written: list[Any]) -> list[tuple[str, str, Any]]:
    """Both source tables and the four destinations; (source table, destination table,
    its client) of each destination."""
    for table in (ORDERS, USERS):
        await create_table(source, table, stream="NEW_AND_OLD_IMAGES")
    for _, table, _, index in ORDERS_DESTINATIONS + USERS_DESTINATIONS:
        await create_table(written[index], table)
    return [(ORDERS, table, written[index]) for _, table, _, index in ORDERS_DESTINATIONS] + [
        (USERS, table, written[index]) for _, table, _, index in USERS_DESTINATIONS]


def environment(config: Path, **overrides: Any) -> dict[str, str]:
    values = {**FAST, "log_level": "info", "log_format": "json", "config": str(config),
              **overrides}
    return {f"REPLICATOR_{name.upper()}": str(value) for name, value in values.items()}


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_two_sources_into_four_destinations_survive_a_sigkill(
    servers: Servers, destination_servers: list[MotoServer], tmp_path: Path,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    config = topology_file(tmp_path, servers, destination_servers)
    async with clients(servers, destination_servers) as (source, written):
        pairs = await create_tables(source, written)

        env = environment(config, worker_id="worker-one", get_records_limit=250)
        first = spawn("first", env)
        await first.wait_for_event("shard started")
        stop_writes = asyncio.Event()
        workloads = [asyncio.create_task(workload_until(
            stop_writes, source, table, rate=60, keys=80, seed=seed, rich=0.2))
            for seed, table in ((3, ORDERS), (5, USERS))]
        try:
            async def every_destination_checkpointed() -> bool:
                rows = await lease_rows(source, TASK)
                names = {name for name, *_ in ORDERS_DESTINATIONS + USERS_DESTINATIONS}
                seen = {name for row in rows
                        for name, value in row.get("checkpoints", {}).get("M", {}).items()
                        if value["S"].isdigit()}
                return seen == names

            await wait_until(every_destination_checkpointed, within=DEADLINE,
                             processes=[first], what="every destination to checkpoint")
            first.send(signal.SIGKILL)
            assert await first.wait() == -signal.SIGKILL
            second = spawn("second", {**env, "REPLICATOR_WORKER_ID": "worker-two"})
            await second.wait_for_event("shard started")
        finally:
            stop_writes.set()
            results = await asyncio.wait_for(asyncio.gather(*workloads), DEADLINE)
        assert all(result.operations > 0 for result in results)
        for source_table, table, client in pairs:
            diff = await wait_equal(source, client, KEY_NAMES, source_table=source_table,
                                    destination_table=table, processes=[second])
            assert diff.source_items > 20
        second.send(signal.SIGTERM)
        assert await second.wait() == 0, second.report()
        assert second.stderr() == ""
        for source_table, table, client in pairs:
            assert (await compare(source, client, KEY_NAMES, source_table=source_table,
                                  destination_table=table)).equal
        # Both streams' leases are in the one checkpoint table of the task, each with a
        # checkpoint per destination of its source.
        rows = await lease_rows(source, TASK)
        by_stream = Counter(row["stream_arn"]["S"].split("/")[1] for row in rows)
        assert set(by_stream) == {ORDERS, USERS}
        for row in rows:
            names = set(row["checkpoints"]["M"])
            table = row["stream_arn"]["S"].split("/")[1]
            routes = ORDERS_DESTINATIONS if table == ORDERS else USERS_DESTINATIONS
            assert names == {name for name, *_ in routes}

        # ``verify`` and ``status`` cover every destination of every path, or one.
        await commands_cover_each_destination(config, env, written)


def command(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m replicator ARGS --config FILE``, as a user runs it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("REPLICATOR_")}
    settings = {k: v for k, v in env.items() if k != "REPLICATOR_CONFIG"}
    return subprocess.run([sys.executable, "-m", "replicator", *args, "--config", str(config)],
                          env={**base, **LOCAL_CREDENTIALS, **settings}, capture_output=True,
                          text=True, timeout=120, check=False)


async def commands_cover_each_destination(config: Path, env: dict[str, str],
                                          written: list[Any]) -> None:
    def run(*args: str) -> Any:
        return asyncio.to_thread(command, config, env, *args)

    done = await run("verify")
    assert done.returncode == 0, done.stdout + done.stderr
    for name, table, *_ in ORDERS_DESTINATIONS:
        assert f"orders -> {name} ({table} in " in done.stdout
    assert "users -> users-eu (users-replica in " in done.stdout
    assert done.stdout.splitlines()[-1] == "all 4 destinations equal to their source"

    # One destination differs: verify says which; --destination compares one.
    _, us_table, _, us_index = ORDERS_DESTINATIONS[1]
    first = (await written[us_index].scan(TableName=us_table, Limit=1))["Items"][0]
    await written[us_index].delete_item(TableName=us_table,
                                        Key={name: first[name] for name in KEY_NAMES})
    done = await run("verify")
    assert done.returncode == 5, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "3 of 4 destinations equal to their source"
    done = await run("verify", "--destination", "eu")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "orders -> eu (" in done.stdout
    assert "orders -> us (" not in done.stdout
    done = await run("verify", "--destination", "us")
    assert done.returncode == 5, done.stdout + done.stderr
    assert "1 missing" in done.stdout, done.stdout
    done = await run("verify", "--destination", "mars")
    assert (done.returncode, done.stderr) == (
        2, "replicator: error: --destination mars: no destination of that name in the "
        "topology (eu, us, ap, users-eu)\n")

    done = await run("status", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [source["source"] for source in report["sources"]] == [ORDERS, USERS]
    assert all(destination["state"] == "streaming" for source in report["sources"]
               for destination in source["destinations"])
    for shard in report["shards"]:
        routes = ORDERS_DESTINATIONS if shard["source"] == ORDERS else USERS_DESTINATIONS
        assert list(shard["checkpoints"]) == [name for name, *_ in routes]
        assert all(value.isdigit() for value in shard["checkpoints"].values()), shard
    done = await run("status", "--json", "--destination", "ap")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {shard["source"] for shard in report["shards"]} == {ORDERS}
    assert all(list(shard["checkpoints"]) == ["ap"] for shard in report["shards"])
    done = await run("status")
    assert done.returncode == 0, done.stderr
    assert "CHECKPOINT EU" in done.stdout
    assert "CHECKPOINT USERS-EU" in done.stdout
    assert "  -> ap: streaming" in done.stdout


class CountingProxy(Proxy):
    """Counts the DynamoDB Streams calls it passes on: by operation, the GetShardIterator
    calls by shard, and the GetRecords calls that returned records."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.calls: Counter[str] = Counter()
        self.iterators: Counter[str] = Counter()
        self.pages = 0

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        operation = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        self.calls[operation] += 1
        if operation == "GetShardIterator":
            self.iterators[json.loads(body)["ShardId"]] += 1
        answer = await self.pass_on(request, body)
        if operation == "GetRecords" and answer.status == 200 and answer.body:
            assert isinstance(answer.body, bytes)
            self.pages += bool(json.loads(answer.body).get("Records"))
        return answer


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_one_read_of_each_shard_serves_three_destinations(
    servers: Servers, destination_servers: list[MotoServer], tmp_path: Path,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    # Side by side, over one backlog of the stream: a task applying it to three
    # destinations, and a task applying it to one, each reading through its own
    # counting proxy, from the stream's start, 20 records a page.
    async with (clients(servers, destination_servers) as (source, written),
                CountingProxy(servers.source.url).running() as three_proxy,
                CountingProxy(servers.source.url).running() as one_proxy):
        await create_table(source, ORDERS, stream="NEW_AND_OLD_IMAGES")
        for _, table, _, index in ORDERS_DESTINATIONS:
            await create_table(written[index], table)
        await create_table(written[0], "orders-alone")
        await run_workload(source, ORDERS, operations=400, seed=9, keys=150, rich=0.2)
        three = topology_file(tmp_path, servers, destination_servers, task="three",
                              streams_endpoint=three_proxy.url, users=False)
        one = topology_file(tmp_path, servers, destination_servers, task="one",
                            streams_endpoint=one_proxy.url, users=False,
                            orders=[("alone", "orders-alone", "eu-west-1", 0)])
        settings = {"bootstrap": "never", "initial_position": "TRIM_HORIZON",
                    "get_records_limit": 20}
        processes = [spawn(name, environment(config, worker_id=name, **settings))
                     for name, config in (("three", three), ("one", one))]
        tables = [(table, written[index]) for _, table, _, index in ORDERS_DESTINATIONS]
        for table, client in [*tables, ("orders-alone", written[0])]:
            await wait_equal(source, client, KEY_NAMES, source_table=ORDERS,
                             destination_table=table, processes=processes)
        for process in processes:
            process.send(signal.SIGTERM)
            assert await process.wait() == 0, process.report()
    print(f"\nGetRecords pages read: three destinations {three_proxy.pages}, one "
          f"destination {one_proxy.pages}; GetRecords calls {three_proxy.calls['GetRecords']} "
          f"and {one_proxy.calls['GetRecords']}")
    assert one_proxy.pages >= 20  # at least 400 records, 20 a page
    assert abs(three_proxy.pages - one_proxy.pages) <= 0.1 * one_proxy.pages
    # One reader per shard: one iterator per shard, never a catch-up reader's.
    assert set(three_proxy.iterators.values()) == {1}


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_two_workers_share_both_streams_and_a_kill_9_loses_nothing(
    servers: Servers, destination_servers: list[MotoServer], tmp_path: Path,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    config = topology_file(tmp_path, servers, destination_servers)
    async with clients(servers, destination_servers) as (source, written):
        pairs = await create_tables(source, written)
        workers = [spawn(name, environment(config, worker_id=name, get_records_limit=250))
                   for name in ("worker-one", "worker-two")]
        await wait_for_event(workers, "lease taken")
        stop_writes = asyncio.Event()
        workloads = [asyncio.create_task(workload_until(
            stop_writes, source, table, rate=50, keys=60, seed=seed, rich=0.2))
            for seed, table in ((13, ORDERS), (17, USERS))]
        try:
            owners: list[Counter[str]] = []

            async def shared() -> bool:
                rows = await lease_rows(source, TASK)
                held = Counter(row["lease_owner"]["S"] for row in rows if "lease_owner" in row)
                owners[:] = [held]
                # Every shard of both streams is held, and each worker holds its fair share.
                return (len(rows) >= 2 and sum(held.values()) == len(rows)
                        and set(held) == {"worker-one", "worker-two"}
                        and max(held.values()) - min(held.values()) <= 1)

            await wait_until(shared, within=DEADLINE, processes=workers,
                             what=lambda: f"the leases to be shared ({owners})")
            rows = await lease_rows(source, TASK)
            assert {row["stream_arn"]["S"].split("/")[1] for row in rows} == {ORDERS, USERS}
            workers[0].send(signal.SIGKILL)
            assert await workers[0].wait() == -signal.SIGKILL

            async def taken_over() -> bool:
                rows = await lease_rows(source, TASK)
                return all(row.get("lease_owner", {}).get("S") == "worker-two"
                           for row in rows)

            await wait_until(taken_over, within=DEADLINE, processes=workers[1:],
                             what="worker-two to take over every lease")
        finally:
            stop_writes.set()
            results = await asyncio.wait_for(asyncio.gather(*workloads), DEADLINE)
        assert all(result.operations > 0 for result in results)
        for source_table, table, client in pairs:
            diff = await wait_equal(source, client, KEY_NAMES, source_table=source_table,
                                    destination_table=table, processes=workers[1:])
            assert diff.source_items > 20
        workers[1].send(signal.SIGTERM)
        assert await workers[1].wait() == 0, workers[1].report()


INDEXED_ORDERS = {
    "TableName": ORDERS,
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                  {"AttributeName": "sk", "KeyType": "RANGE"}],
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                             {"AttributeName": "sk", "AttributeType": "N"},
                             {"AttributeName": "gk", "AttributeType": "S"},
                             {"AttributeName": "lk", "AttributeType": "N"}],
    "GlobalSecondaryIndexes": [{
        "IndexName": "by-gk", "KeySchema": [{"AttributeName": "gk", "KeyType": "HASH"}],
        "Projection": {"ProjectionType": "ALL"}}],
    "LocalSecondaryIndexes": [{
        "IndexName": "by-lk", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                                            {"AttributeName": "lk", "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "KEYS_ONLY"}}],
    "BillingMode": "PAY_PER_REQUEST",
    "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
}


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_a_destination_added_to_a_running_topology_is_created_copied_and_streamed(
    servers: Servers, destination_servers: list[MotoServer], tmp_path: Path,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    two = ORDERS_DESTINATIONS[:2]
    added = ("ap", "orders-ap-new", "ap-southeast-2", 2)
    async with clients(servers, destination_servers) as (source, written):
        await source.create_table(**INDEXED_ORDERS)
        await source.update_time_to_live(
            TableName=ORDERS,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"})
        for _, table, _, index in two:
            await create_table(written[index], table)
        config = topology_file(tmp_path, servers, destination_servers, orders=two, users=False)
        # The copy of the added destination is paced, so that it lasts while the stream
        # is applied to the others.
        env = environment(config, get_records_limit=250, copy_max_wcu=40)
        first = spawn("first", {**env, "REPLICATOR_WORKER_ID": "worker-one"})
        await first.wait_for_event("shard started")
        stop_writes = asyncio.Event()
        workload = asyncio.create_task(workload_until(
            stop_writes, source, ORDERS, rate=60, keys=300, seed=23, rich=0.2))
        try:
            for _, table, _, index in two:
                await wait_until(lambda client=written[index], name=table: counted(
                    client, name, at_least=150), within=DEADLINE, processes=[first],
                    what=f"{table} to fill")
            # The rolling restart with a third destination, to be created.
            text = config.read_text() + (
                f'[[path.destination]]\nname = "{added[0]}"\ntable = "{added[1]}"\n'
                f'region = "{added[2]}"\nendpoint = "{destination_servers[2].url}"\n'
                "create = true\n")
            config.write_text(text)
            first.send(signal.SIGTERM)
            assert await first.wait() == 0, first.report()
            second = spawn("second", {**env, "REPLICATOR_WORKER_ID": "worker-two"})
            await second.wait_for_event("destination joins the topology; copying it")
            rows = await lease_rows(source, TASK)
            before = {dict(row["checkpoints"]["M"])["eu"]["S"] for row in rows}

            async def others_streamed() -> bool:
                rows = await lease_rows(source, TASK)
                return {dict(row["checkpoints"]["M"])["eu"]["S"] for row in rows} != before

            await wait_until(others_streamed, within=DEADLINE, processes=[second],
                             what="the others to be checkpointed during the copy")
            copying = not second.events("destination copied; streaming to it")
            await second.wait_for_event("destination copied; streaming to it")
        finally:
            stop_writes.set()
            await asyncio.wait_for(workload, DEADLINE)
        assert copying  # the others' checkpoints moved while the new one was copied
        for _, table, _, index in [*two, added]:
            diff = await wait_equal(source, written[index], KEY_NAMES, source_table=ORDERS,
                                    destination_table=table, processes=[second])
            assert diff.source_items > 100
        created = (await written[2].describe_table(TableName=added[1]))["Table"]
        assert [index["IndexName"] for index in created["GlobalSecondaryIndexes"]] == ["by-gk"]
        assert [index["IndexName"] for index in created["LocalSecondaryIndexes"]] == ["by-lk"]
        ttl = (await written[2].describe_time_to_live(TableName=added[1]))
        assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires"
        rows = await lease_rows(source, TASK)
        assert all(set(row["checkpoints"]["M"]) == {"eu", "us", "ap"} for row in rows)
        second.send(signal.SIGTERM)
        assert await second.wait() == 0, second.report()

        # Removed from the file, a destination is written no more, and its checkpoints go.
        config.write_text(topology_file(tmp_path, servers, destination_servers,
                                        orders=[two[0], added], users=False).read_text())
        third = spawn("third", {**env, "REPLICATOR_WORKER_ID": "worker-three"})
        await third.wait_for_event("shard started")
        await workload_until_written(source)

        async def forgotten() -> bool:
            rows = await lease_rows(source, TASK)
            return all(set(row["checkpoints"]["M"]) == {"eu", "ap"} for row in rows)

        await wait_until(forgotten, within=DEADLINE, processes=[third],
                         what="the removed destination's checkpoints to go")
        third.send(signal.SIGTERM)
        assert await third.wait() == 0, third.report()
        assert third.stderr() == ""


async def counted(client: Any, table: str, *, at_least: int) -> bool:
    answer = await client.scan(TableName=table, Select="COUNT")
    return bool(answer["Count"] >= at_least)


async def workload_until_written(source: Any) -> None:
    """A few more writes, for every shard to checkpoint again."""
    await run_workload(source, ORDERS, operations=40, seed=31, keys=300, rich=0.0)
