"""Selective replication on moto servers, end to end: a destination's filter, projection
and transform applied by workers (``python -m replicator``) killed with SIGKILL and
restarted, by the bootstrap copy, and by ``replicator verify``; records the destination
refuses kept as dead letters (``on_poison = "dead-letter"``), then replayed; and
``replicator check`` refusing rules the source cannot serve.

Each test ends with the destination holding exactly what the rules select: the test
computes it from the source's final contents with its own, simple, version of the rule,
and compares the tables item by item, attribute by attribute.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from replicator.apply.replay import Replay
from replicator.aws.dead_letters import DynamoDeadLetterStore
from replicator.aws.table import DynamoTable
from replicator.cli import main
from replicator.clock import SYSTEM_CLOCK
from replicator.dead_letter import DeadLetter
from replicator.dev.local import LOCAL_CREDENTIALS
from replicator.records import Item
from replicator.rules.selection import Rules

from .conftest import (
    DEADLINE,
    DESTINATION_REGION,
    DESTINATION_TABLE,
    FAST,
    SOURCE_REGION,
    SOURCE_TABLE,
    TASK_NAME,
    ReplicatorProcess,
    Servers,
    create_table,
    environment_for,
    fill_table,
    lease_rows,
    settled,
    wait_until,
)

pytestmark = pytest.mark.integration

#: The repository's root: on the workers' PYTHONPATH, for ``tests.transforms``.
REPO = Path(__file__).resolve().parents[2]
TASK = "selective-task"
#: The destination's name in the topology files.
REPLICA = "replica"
ACME = {"dynamodb": {"NewImage": {"tenant": {"S": ["acme"]}}}}
MASK_EMAIL = "tests.transforms:mask_email"
#: What a key is, for the tests' own reading of the tables.
Key = tuple[str, str]


# -- the workload: items of two tenants, moving between them ------------------------


def key(index: int) -> Item:
    return {"pk": {"S": f"k-{index % 10}"}, "sk": {"N": str(index)}}


def key_of(item: Item) -> Key:
    return item["pk"]["S"], item["sk"]["N"]


def tenant_item(rng: random.Random, index: int) -> Item:
    """Item ``index``: a tenant (acme or other), and attributes of every type, some of
    them (email, nick, the sets, the map) only now and then."""
    item: Item = {**key(index), "tenant": {"S": rng.choice(("acme", "other"))},
                  "v": {"N": str(rng.randrange(10_000))},
                  "secret": {"S": f"secret-{rng.randrange(10**6)}"}}
    if rng.random() < 0.7:
        item["email"] = {"S": f"user{index}@example.com"}
    if rng.random() < 0.6:
        item["nick"] = {"S": rng.choice(("ann", "bob", "cy", "dee"))}
    if rng.random() < 0.3:
        item["tags"] = {"SS": rng.sample(["a", "b", "c", "d", "e"], rng.randint(1, 3))}
        item["counts"] = {"NS": [str(n) for n in rng.sample(range(100), 2)]}
    if rng.random() < 0.3:
        item["data"] = {"M": {"n": {"N": str(rng.randrange(50))},
                              "l": {"L": [{"S": "x"}, {"BOOL": rng.random() < 0.5},
                                          {"NULL": True}]}}}
        item["blob"] = {"B": bytes(rng.randrange(256) for _ in range(4))}
    return item


@dataclass
class Writes:
    """What a workload did: operations by kind, and the moves between tenants that
    UpdateItem made (``into`` acme, ``out`` of it)."""

    by_kind: dict[str, int] = field(default_factory=dict)
    into: int = 0
    out: int = 0

    @property
    def operations(self) -> int:
        return sum(self.by_kind.values())

    def count(self, kind: str) -> None:
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1


async def one_write(client: Any, rng: random.Random, keys: int, writes: Writes) -> None:
    """One random operation over ``keys`` keys: a put, an UpdateItem that may move the
    item to another tenant (or drop its tenant), one that leaves the tenant, a delete,
    or a BatchWriteItem of puts and deletes."""
    index = rng.randrange(keys)
    roll = rng.random()
    if roll < 0.35:
        await client.put_item(TableName=SOURCE_TABLE, Item=tenant_item(rng, index))
        writes.count("put")
    elif roll < 0.6:
        tenant = rng.choice(("acme", "other", None))
        values: dict[str, Any] = {":v": {"N": str(rng.randrange(10_000))}}
        sets = ["v = :v"]
        if tenant is not None:
            sets.append("tenant = :t")
            values[":t"] = {"S": tenant}
        if rng.random() < 0.3:
            sets.append("email = :e")
            values[":e"] = {"S": f"moved{index}@example.com"}
        expression = "SET " + ", ".join(sets) + (" REMOVE tenant" if tenant is None else "")
        answer = await client.update_item(
            TableName=SOURCE_TABLE, Key=key(index), UpdateExpression=expression,
            ExpressionAttributeValues=values, ReturnValues="ALL_OLD")
        before = answer.get("Attributes", {}).get("tenant", {}).get("S")
        writes.into += before != "acme" and tenant == "acme"
        writes.out += before == "acme" and tenant != "acme"
        writes.count("move")
    elif roll < 0.75:
        await client.update_item(
            TableName=SOURCE_TABLE, Key=key(index),
            UpdateExpression="SET v = :v, nick = :n",
            ExpressionAttributeValues={":v": {"N": str(rng.randrange(10_000))},
                                       ":n": {"S": "updated"}})
        writes.count("update")
    elif roll < 0.9:
        await client.delete_item(TableName=SOURCE_TABLE, Key=key(index))
        writes.count("delete")
    else:
        chosen = rng.sample(range(keys), 4)
        await client.batch_write_item(RequestItems={SOURCE_TABLE: [
            {"PutRequest": {"Item": tenant_item(rng, i)}} if rng.random() < 0.7
            else {"DeleteRequest": {"Key": key(i)}} for i in chosen]})
        writes.count("batch")


async def workload_until(stop: asyncio.Event, client: Any, *, seed: int, keys: int = 60,
                         rate: float = 60.0, writes: Writes | None = None) -> Writes:
    """Writes, one at a time (two writes that reach moto at once can get one stream
    sequence number: see ``conftest.stream_records``), at about ``rate`` a second,
    until ``stop`` is set; counted in ``writes`` as they are made."""
    rng = random.Random(seed)
    writes = writes if writes is not None else Writes()
    next_at = time.monotonic()
    while not stop.is_set():
        await one_write(client, rng, keys, writes)
        next_at += 1 / rate
        delay = next_at - time.monotonic()
        if delay > 0:  # pacing the writes, not waiting for something
            await asyncio.sleep(delay)
    return writes


# -- the rules, as the tests understand them ------------------------------------------


def acme_only(items: dict[Key, Item]) -> dict[Key, Item]:
    return {k: item for k, item in items.items() if item.get("tenant") == {"S": "acme"}}


def projected(items: dict[Key, Item]) -> dict[Key, Item]:
    """exclude = ["secret"], rename = {nick = "nickname"}."""
    return {k: {("nickname" if name == "nick" else name): value
                for name, value in item.items() if name != "secret"}
            for k, item in items.items()}


def masked(items: dict[Key, Item]) -> dict[Key, Item]:
    return {k: {**item, "email": {"S": "***"}} if "email" in item else item
            for k, item in items.items()}


# -- reading and comparing tables -----------------------------------------------------


async def contents(client: Any, table: str) -> dict[Key, Item]:
    """Every item of ``table`` (a consistent Scan), by key."""
    items: dict[Key, Item] = {}
    request: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = await client.scan(**request)
        items.update((key_of(item), item) for item in page["Items"])
        if not page.get("LastEvaluatedKey"):
            return items
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def canonical(value: Any) -> Any:
    """An attribute value with its sets in order (DynamoDB keeps no order in a set)."""
    ((kind, inner),) = value.items()
    if kind in ("SS", "NS", "BS"):
        return {kind: sorted(inner)}
    if kind == "M":
        return {"M": {name: canonical(element) for name, element in inner.items()}}
    if kind == "L":
        return {"L": [canonical(element) for element in inner]}
    return value


def differences(expected: dict[Key, Item], found: dict[Key, Item]) -> list[str]:
    """What the destination holds that it should not, item by item, attribute by
    attribute (at most 10 lines)."""
    lines = [f"missing {k}" for k in sorted(expected.keys() - found.keys())]
    lines += [f"extra {k}: {found[k]}" for k in sorted(found.keys() - expected.keys())]
    for k in sorted(expected.keys() & found.keys()):
        want, have = expected[k], found[k]
        for name in sorted(want.keys() | have.keys()):
            a, b = want.get(name), have.get(name)
            if (a is None) != (b is None) or (a is not None and canonical(a) != canonical(b)):
                lines.append(f"{k}.{name}: expected {a}, found {b}")
    return lines[:10]


async def wait_selected(source: Any, destination: Any, rule: Callable[[dict[Key, Item]],
                        dict[Key, Item]], *, processes: list[ReplicatorProcess],
                        at_least: int = 1) -> dict[Key, Item]:
    """Until the destination holds exactly what ``rule`` makes of the source (with the
    writes over); returns it."""
    last: list[list[str]] = [["not compared yet"]]
    expected: dict[Key, Item] = {}

    async def holds() -> bool:
        nonlocal expected
        expected = rule(await contents(source, SOURCE_TABLE))
        last[0] = differences(expected, await contents(destination, DESTINATION_TABLE))
        return not last[0] and len(expected) >= at_least

    await wait_until(holds, within=DEADLINE, processes=processes, every=0.25,
                     what=lambda: f"the destination to hold what the rules select "
                     f"({len(expected)} items); differences: {last[0]}")
    return expected


async def assert_selected(source: Any, destination: Any,
                          rule: Callable[[dict[Key, Item]], dict[Key, Item]]) -> None:
    expected = rule(await contents(source, SOURCE_TABLE))
    found = await contents(destination, DESTINATION_TABLE)
    assert not differences(expected, found), differences(expected, found)


# -- topology files, environments, commands ----------------------------------------------


def topology(directory: Path, servers: Servers, rules: str, *, name: str = "topology"
             ) -> Path:
    """A topology file of one path, the source server's table into the destination
    server's, with ``rules`` (TOML lines) for the destination."""
    text = (f'task = "{TASK}"\n\n[[path]]\n'
            f'source = {{ table = "{SOURCE_TABLE}", region = "{SOURCE_REGION}", '
            f'endpoint = "{servers.source.url}" }}\n\n'
            f'[[path.destination]]\nname = "{REPLICA}"\ntable = "{DESTINATION_TABLE}"\n'
            f'region = "{DESTINATION_REGION}"\nendpoint = "{servers.destination.url}"\n'
            + rules)
    file = directory / f"{name}.toml"
    file.write_text(text)
    return file


def python_path() -> dict[str, str]:
    """PYTHONPATH with the repository's root first: a worker runs in the test's temporary
    directory, and imports the transforms of ``tests.transforms``."""
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"PYTHONPATH": os.pathsep.join(paths)}


def environment(config: Path, **overrides: Any) -> dict[str, str]:
    values = {**FAST, "log_level": "info", "log_format": "json", "config": str(config),
              "get_records_limit": 250, **overrides}
    return {**python_path(),
            **{f"REPLICATOR_{name.upper()}": str(value) for name, value in values.items()}}


def command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m replicator ARGS`` with the settings ``env``, as a user runs it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("REPLICATOR_")}
    return subprocess.run([sys.executable, "-m", "replicator", *args],
                          env={**base, **LOCAL_CREDENTIALS, **env}, capture_output=True,
                          text=True, timeout=120, check=False)


async def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(command, env, *args)


async def verify(env: dict[str, str], *args: str) -> tuple[int, list[str]]:
    """``replicator verify``: its exit code and the lines of its report (without the
    heading a topology's destination gets)."""
    done = await run(env, "verify", *args)
    assert done.returncode in (0, 5), done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines()
             if not line.startswith(f"{SOURCE_TABLE} -> {REPLICA} (")]
    return done.returncode, lines


async def checkpoint_is(source: Any, task: str, test: Callable[[str], bool]) -> bool:
    rows = await lease_rows(source, task)
    return len(rows) == 1 and test(rows[0]["checkpoint"]["S"])


async def count(client: Any, table: str = DESTINATION_TABLE) -> int:
    return int((await client.scan(TableName=table, Select="COUNT"))["Count"])


async def through_a_sigkill(source: Any, destination: Any, env: dict[str, str],
                            spawn: Callable[..., ReplicatorProcess], *, task: str,
                            seed: int) -> tuple[ReplicatorProcess, Writes]:
    """A worker replicating a live workload, killed with SIGKILL once it has applied
    some records and checkpointed; a second worker takes its lease over and
    checkpoints; then the writes stop. Returns the second worker, still running."""
    first = spawn("first", {**env, "REPLICATOR_WORKER_ID": "worker-one"})
    await first.wait_for_event("shard started")
    stop = asyncio.Event()
    writes = asyncio.create_task(workload_until(stop, source, seed=seed))
    try:
        async def applied_and_checkpointed() -> bool:
            return (await count(destination) >= 5
                    and await checkpoint_is(source, task, str.isdigit))

        await wait_until(applied_and_checkpointed, within=DEADLINE, processes=[first],
                         what="the first worker to apply records and checkpoint")
        first.send(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
        (row,) = await settled(lambda: lease_rows(source, task))
        killed_at = row["checkpoint"]["S"]

        second = spawn("second", {**env, "REPLICATOR_WORKER_ID": "worker-two"})
        taken = await second.wait_for_event("lease taken")
        assert taken["previous_owner"] == "worker-one"
        assert taken["checkpoint"] == killed_at  # resumed from the checkpoint
        (row,) = await lease_rows(source, task)
        await wait_until(lambda: checkpoint_is(source, task, lambda checkpoint:
                                               checkpoint.isdigit()
                                               and checkpoint != row["checkpoint"]["S"]),
                         within=DEADLINE, processes=[second],
                         what="the second worker to checkpoint")
    finally:
        stop.set()
        done = await asyncio.wait_for(writes, DEADLINE)
    return second, done


async def stopped(process: ReplicatorProcess) -> None:
    process.send(signal.SIGTERM)
    assert await process.wait() == 0, process.report()
    assert process.stderr() == ""


# -- 1-3, 5: a filter, a projection, a transform, through a SIGKILL; verify -----------


async def plant_filtered(destination: Any, expected: dict[Key, Item]) -> str:
    """An item the filter does not select, and a selected one changed."""
    await destination.put_item(TableName=DESTINATION_TABLE,
                               Item={**key(999), "tenant": {"S": "other"}})
    first = next(iter(expected.values()))
    await destination.update_item(TableName=DESTINATION_TABLE, Key=key_pair(first),
                                  UpdateExpression="SET v = :v",
                                  ExpressionAttributeValues={":v": {"N": "-1"}})
    return (f"NOT equal: 0 missing, 1 extra, 1 different (source {len(expected)} items, "
            f"destination {len(expected) + 1})")


async def plant_projected(destination: Any, expected: dict[Key, Item]) -> str:
    """An excluded attribute written back, and an item deleted."""
    first, second = list(expected.values())[:2]
    await destination.update_item(TableName=DESTINATION_TABLE, Key=key_pair(first),
                                  UpdateExpression="SET secret = :s",
                                  ExpressionAttributeValues={":s": {"S": "leaked"}})
    await destination.delete_item(TableName=DESTINATION_TABLE, Key=key_pair(second))
    return (f"NOT equal: 1 missing, 0 extra, 1 different (source {len(expected)} items, "
            f"destination {len(expected) - 1})")


async def plant_masked(destination: Any, expected: dict[Key, Item]) -> str:
    """An address unmasked."""
    first = next(item for item in expected.values() if "email" in item)
    await destination.update_item(TableName=DESTINATION_TABLE, Key=key_pair(first),
                                  UpdateExpression="SET email = :e",
                                  ExpressionAttributeValues={":e": {"S": "bob@example.com"}})
    return (f"NOT equal: 0 missing, 0 extra, 1 different (source {len(expected)} items, "
            f"destination {len(expected)})")


def key_pair(item: Item) -> Item:
    return {"pk": item["pk"], "sk": item["sk"]}


RULES = {
    "filter": ("filter = { dynamodb = { NewImage = { tenant = { S = [\"acme\"] } } } }\n",
               acme_only, plant_filtered),
    "projection": ('exclude = ["secret"]\nrename = { nick = "nickname" }\n', projected,
                   plant_projected),
    "transform": (f'transform = "{MASK_EMAIL}"\n', masked, plant_masked),
}


async def verify_judges_by_the_rules(env: dict[str, str], destination: Any,
                                     expected: dict[Key, Item],
                                     plant: Callable[..., Any]) -> None:
    """verify: equal under the rules (exit 0); a difference planted, exit 5 and what
    differs; --repair mends it as the rules say."""
    code, lines = await verify(env)
    assert (code, lines) == (0, [f"equal: {len(expected)} items in each table"])
    verdict = await plant(destination, expected)
    code, lines = await verify(env)
    assert code == 5, lines
    assert lines[0] == verdict, lines
    code, lines = await verify(env, "--repair")
    assert code == 0, lines
    assert lines[-1] == f"after repair: equal: {len(expected)} items in each table", lines


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("rule", list(RULES))
async def test_a_destinations_rules_hold_through_a_sigkill_and_verify_judges_by_them(
    rule: str, servers: Servers, source: Any, destination: Any, tmp_path: Path,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    rules, select, plant = RULES[rule]
    await create_table(source, SOURCE_TABLE, stream="NEW_AND_OLD_IMAGES")
    await create_table(destination, DESTINATION_TABLE)
    env = environment(topology(tmp_path, servers, rules))
    second, writes = await through_a_sigkill(source, destination, env, spawn, task=TASK,
                                             seed=len(rule))
    assert writes.operations > 50, writes
    if rule == "filter":
        assert writes.into > 0, writes  # items moved into acme
        assert writes.out > 0, writes  # and out of it
    expected = await wait_selected(source, destination, select, processes=[second],
                                   at_least=10)
    await stopped(second)
    if rule == "filter":
        assert acme_only(expected) == expected
        source_items = await contents(source, SOURCE_TABLE)
        assert len(source_items) > len(expected)  # some are other's
    elif rule == "projection":
        assert any("nickname" in item for item in expected.values())
        assert not any({"nick", "secret"} & item.keys() for item in expected.values())
    else:
        assert any(item.get("email") == {"S": "***"} for item in expected.values())
    await verify_judges_by_the_rules(env, destination, expected, plant)
    await assert_selected(source, destination, select)


# -- 4: the bootstrap copy with a filter, then the stream --------------------------------


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_the_copy_takes_only_what_the_filter_selects_then_the_stream_goes_on(
    servers: Servers, source: Any, destination: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    keys = 300
    await create_table(source, SOURCE_TABLE, stream="NEW_AND_OLD_IMAGES")
    await create_table(destination, DESTINATION_TABLE)
    rng = random.Random(41)
    await fill_table(source, [tenant_item(rng, index) for index in range(keys)])
    filled = acme_only(await contents(source, SOURCE_TABLE))
    assert 50 < len(filled) < keys - 50

    # Single-path settings this time: REPLICATOR_FILTER, as JSON.
    env = {**python_path(), **environment_for(
        servers, filter=json.dumps(ACME), bootstrap="auto", get_records_limit=250,
        worker_id="worker-one")}
    worker = spawn("worker", env)
    await worker.wait_for_event("copy finished")
    await worker.wait_for_event("shard started")
    # The copy wrote the items the filter selects, and nothing else.
    await assert_selected(source, destination, acme_only)

    stop = asyncio.Event()
    made = Writes()
    writes = asyncio.create_task(workload_until(stop, source, seed=43, keys=keys, rate=80,
                                                writes=made))
    try:
        async def streamed_and_moved() -> bool:
            return (made.into >= 3 and made.out >= 3
                    and await checkpoint_is(source, TASK_NAME, str.isdigit))

        await wait_until(streamed_and_moved, within=DEADLINE, processes=[worker],
                         what=lambda: "items to move into and out of acme, and the worker "
                         f"to checkpoint stream records ({made})")
        # Killed in the middle of the stream; the next worker resumes from its checkpoint.
        worker.send(signal.SIGKILL)
        assert await worker.wait() == -signal.SIGKILL
        (row,) = await settled(lambda: lease_rows(source, TASK_NAME))
        worker = spawn("second", {**env, "REPLICATOR_WORKER_ID": "worker-two"})
        taken = await worker.wait_for_event("lease taken")
        assert taken["previous_owner"] == "worker-one"
        assert taken["checkpoint"] == row["checkpoint"]["S"]
        moved = (made.into, made.out)

        async def moved_again() -> bool:
            return (made.into > moved[0] and made.out > moved[1] and await checkpoint_is(
                source, TASK_NAME, lambda at: at.isdigit() and at != row["checkpoint"]["S"]))

        await wait_until(moved_again, within=DEADLINE, processes=[worker],
                         what=lambda: "more items to move, and the second worker to "
                         f"checkpoint ({made})")
    finally:
        stop.set()
        await asyncio.wait_for(writes, DEADLINE)
    expected = await wait_selected(source, destination, acme_only, processes=[worker],
                                   at_least=50)
    await stopped(worker)
    code, lines = await verify(env)
    assert (code, lines) == (0, [f"equal: {len(expected)} items in each table"])
    verdict = await plant_filtered(destination, expected)
    code, lines = await verify(env)
    assert (code, lines[0]) == (5, verdict), lines


# -- 6: dead letters: kept, listed, replayed ------------------------------------------

LETTERS = f"{TASK}-dead-letters"
#: The destination's index on ``tier``: moto refuses an item whose ``tier`` is the empty
#: string (a secondary index's key cannot be), which the source, without the index, takes.
TIER_INDEX = "by-tier"


def tiered(index: int, tier: str) -> Item:
    return {**key(index), "tier": {"S": tier}, "v": {"N": str(index)}}


def described(index: int) -> str:
    """A key as ``dead-letters list`` shows it."""
    return f"pk=S:k-{index % 10}, sk=N:{index}"


async def letter_keys(source: Any) -> set[int]:
    """The items (by index) of the dead letters in the task's table, read by the test."""
    try:
        rows = (await source.scan(TableName=LETTERS, ConsistentRead=True))["Items"]
    except source.exceptions.ResourceNotFoundException:
        return set()
    return {int(row["keys"]["M"]["sk"]["N"]) for row in rows}


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_refused_records_are_dead_lettered_the_shard_goes_on_and_a_replay_applies_them(
    servers: Servers, source: Any, destination: Any, tmp_path: Path,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await create_table(source, SOURCE_TABLE, stream="NEW_AND_OLD_IMAGES")
    await destination.create_table(
        TableName=DESTINATION_TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "N"},
                              {"AttributeName": "tier", "AttributeType": "S"}],
        GlobalSecondaryIndexes=[{"IndexName": TIER_INDEX,
                                 "KeySchema": [{"AttributeName": "tier", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "ALL"}}],
        BillingMode="PAY_PER_REQUEST")
    env = environment(topology(tmp_path, servers, 'on_poison = "dead-letter"\n'))
    worker = spawn("worker", {**env, "REPLICATOR_WORKER_ID": "worker-one"})
    await worker.wait_for_event("shard started")

    # Refused: five INSERTs (20-24), a MODIFY (3), and a put in a batch of good ones (40).
    good = [tiered(index, "gold" if index % 2 else "silver") for index in range(20)]
    for item in good:
        await source.put_item(TableName=SOURCE_TABLE, Item=item)
    for index in range(20, 25):
        await source.put_item(TableName=SOURCE_TABLE, Item=tiered(index, ""))
    await source.update_item(TableName=SOURCE_TABLE, Key=key(3),
                             UpdateExpression="SET tier = :t",
                             ExpressionAttributeValues={":t": {"S": ""}})
    await source.batch_write_item(RequestItems={SOURCE_TABLE: [
        {"PutRequest": {"Item": tiered(index, "" if index == 40 else "bronze")}}
        for index in range(40, 45)]})
    later = [tiered(index, "gold") for index in range(25, 30)]
    for item in later:  # written after the refused ones: the shard goes on
        await source.put_item(TableName=SOURCE_TABLE, Item=item)
    refused = {3, 20, 21, 22, 23, 24, 40}
    applied = {key_of(item): item for item in good + later if item["sk"]["N"] != "3"}
    applied.update((key_of(tiered(index, "bronze")), tiered(index, "bronze"))
                   for index in range(41, 45))

    found: list[Any] = [set(), {}]

    async def lettered_and_applied() -> bool:
        found[:] = [await letter_keys(source), await contents(destination, DESTINATION_TABLE)]
        held = {k: item for k, item in found[1].items() if k != key_of(key(3))}
        return found[0] == refused and not differences(applied, held)

    await wait_until(lettered_and_applied, within=DEADLINE, processes=[worker],
                     what=lambda: f"the refused records to be dead-lettered ({found[0]}) and "
                     f"the others applied ({differences(applied, found[1])})")
    # Item 3 is as it was before the refused MODIFY, or absent (when its put and the
    # MODIFY were in one batch, the put was superseded).
    assert found[1].get(key_of(key(3)), good[3]) == good[3]

    done = await run(env, "dead-letters", "list", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    listed = json.loads(done.stdout)
    assert sorted(letter["key"] for letter in listed) == sorted(map(described, refused))
    for letter in listed:
        assert (letter["destination"], letter["source"]) == (REPLICA, SOURCE_TABLE)
        assert letter["event_name"] == ("MODIFY" if letter["key"] == described(3)
                                        else "INSERT"), letter
        assert "ValidationException" in letter["error"], letter
        assert "cannot contain an empty string value" in letter["error"], letter
        assert letter["images_dropped"] is False
    done = await run(env, "dead-letters", "list")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"7 dead letters in {LETTERS}:"

    # The source mends two of them on its own: 20 gets a tier, 21 is deleted.
    await source.update_item(TableName=SOURCE_TABLE, Key=key(20),
                             UpdateExpression="SET tier = :t",
                             ExpressionAttributeValues={":t": {"S": "gold"}})
    await source.delete_item(TableName=SOURCE_TABLE, Key=key(21))
    await source.put_item(TableName=SOURCE_TABLE, Item=tiered(45, "gold"))

    async def mended() -> bool:
        held = await contents(destination, DESTINATION_TABLE)
        return (held.get(key_of(key(20)), {}).get("tier") == {"S": "gold"}
                and key_of(key(45)) in held)

    await wait_until(mended, within=DEADLINE, processes=[worker],
                     what="item 20's new tier and item 45 to be applied")
    assert await letter_keys(source) == refused

    # A replay before the destination is fixed applies those two, and keeps the rest.
    done = await run(env, "dead-letters", "replay")
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "2 dead letters applied and removed, 5 kept"
    assert await letter_keys(source) == refused - {20, 21}

    # The fix: the index goes. The replay then applies every letter.
    await destination.update_table(TableName=DESTINATION_TABLE, GlobalSecondaryIndexUpdates=[
        {"Delete": {"IndexName": TIER_INDEX}}])
    table = (await destination.describe_table(TableName=DESTINATION_TABLE))["Table"]
    assert not table.get("GlobalSecondaryIndexes")
    done = await run(env, "dead-letters", "replay")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "5 dead letters applied and removed, 0 kept"
    assert await letter_keys(source) == set()
    await assert_selected(source, destination, lambda items: items)

    # And the stream goes on as before.
    await source.put_item(TableName=SOURCE_TABLE, Item=tiered(46, ""))
    expected = await wait_selected(source, destination, lambda items: items,
                                   processes=[worker], at_least=36)
    await stopped(worker)
    code, lines = await verify(env)
    assert (code, lines) == (0, [f"equal: {len(expected)} items in each table"])
    done = await run(env, "dead-letters", "list", "--json")
    assert (done.returncode, json.loads(done.stdout)) == (0, [])
    done = await run(env, "dead-letters", "list")
    assert (done.returncode, done.stdout) == (0, f"no dead letters in {LETTERS}\n")
    assert len(worker.events("record dead-lettered")) == len(refused)


class WrittenMeanwhile:
    """The source as a replay reads it: right after the replay's first read of the
    item, a newer image of it is written to the source, and the worker applies it, so
    that the replay's write of what it read comes after a newer one."""

    def __init__(self, source: Any, newer: Item, applied: Callable[[], Any]) -> None:
        self._table = DynamoTable(source, SOURCE_TABLE, call_timeout=DEADLINE)
        self._source = source
        self._newer = newer
        self._applied = applied
        self.reads = 0

    async def batch_get(self, keys: list[Item]) -> tuple[list[Item], list[Item]]:
        found = await self._table.batch_get(keys)
        self.reads += 1
        if self.reads == 1:
            await self._source.put_item(TableName=SOURCE_TABLE, Item=self._newer)
            await self._applied()
        return found


@pytest.mark.timeout(180)
async def test_a_write_to_a_dead_lettered_key_while_it_is_replayed_wins(
    servers: Servers, source: Any, destination: Any, tmp_path: Path,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await create_table(source, SOURCE_TABLE, stream="NEW_AND_OLD_IMAGES")
    await create_table(destination, DESTINATION_TABLE)
    env = environment(topology(tmp_path, servers, 'on_poison = "dead-letter"\n'))
    worker = spawn("worker", {**env, "REPLICATOR_WORKER_ID": "worker-one"})
    await worker.wait_for_event("shard started")
    older, newer = tiered(7, "silver"), tiered(7, "gold")

    def holds(image: Item) -> Callable[[], Any]:
        async def check() -> bool:
            return (await contents(destination, DESTINATION_TABLE)).get(key_of(image)) == image

        return lambda: wait_until(check, within=DEADLINE, processes=[worker],
                                  what=f"the destination to hold {image}")

    await source.put_item(TableName=SOURCE_TABLE, Item=older)
    await holds(older)()
    # As if the destination had refused that write: its letter, and the item not there.
    store = DynamoDeadLetterStore(source, LETTERS, call_timeout=DEADLINE)
    letter = DeadLetter(destination=REPLICA, source=SOURCE_TABLE, shard_id="shardId-1",
                        sequence_number="100", event_name="INSERT", keys=key(7),
                        new_image=older, old_image=None, error="refused",
                        stored_at=time.time())
    await store.put(letter)
    await destination.delete_item(TableName=DESTINATION_TABLE, Key=key(7))

    read = WrittenMeanwhile(source, newer, holds(newer))
    replay = Replay(source=read, rules=Rules(), key_names=("pk", "sk"), store=store,
                    destination=DynamoTable(destination, DESTINATION_TABLE,
                                            call_timeout=DEADLINE), clock=SYSTEM_CLOCK)
    done = await replay.replay(letter)

    assert done.error is None
    # It read the older image, wrote it over the newer one, read the newer one, wrote
    # it, and read it unchanged.
    assert (done.reads, read.reads) == (3, 3)
    assert (await contents(destination, DESTINATION_TABLE))[key_of(newer)] == newer
    assert await store.list() == []
    await stopped(worker)


# -- 7: ``check`` refuses rules the source cannot serve ---------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("rules", "stream", "error"), [
    ("filter = '{\"dynamodb\": {\"NewImage\": {\"tenant\": {\"S\": [\"acme\"]}}}}'\n",
     "NEW_IMAGE",
     f"destination '{REPLICA}' has a filter, which needs the old image of each changed "
     f"item, but the stream of source table {SOURCE_TABLE} has StreamViewType NEW_IMAGE: "
     "disable the stream and enable it again with StreamViewType NEW_AND_OLD_IMAGES, or "
     "remove the filter"),
    ('exclude = ["secret", "sk"]\n', "NEW_AND_OLD_IMAGES",
     f"destination '{REPLICA}': the projection of source table {SOURCE_TABLE} (include, "
     "exclude, rename): exclude lists key attribute sk: key attributes are always kept"),
], ids=["filter-without-old-images", "projection-without-a-key"])
async def test_check_refuses_rules_the_source_cannot_serve_in_one_line(
    rules: str, stream: str, error: str, servers: Servers, source: Any, destination: Any,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await create_table(source, SOURCE_TABLE, stream=stream)
    await create_table(destination, DESTINATION_TABLE)
    config = topology(tmp_path, servers, rules)
    capsys.readouterr()
    code = await asyncio.wait_for(
        asyncio.to_thread(main, ["check", "--config", str(config)]), DEADLINE)
    captured = capsys.readouterr()
    assert (code, captured.out) == (2, "")
    assert captured.err == f"replicator: error: {error}\n"
    # A worker refuses to start the same way.
    worker = spawn("worker", environment(config))
    assert await worker.wait() == 2, worker.report()
    assert worker.stderr() == f"replicator: error: {error}\n"
