"""The bootstrap copy against moto servers: a copy with writes going on ends equal, a
copy killed with SIGKILL resumes without copying finished segments again, ``copy``
then ``run`` does not copy twice, and what is written during a copy reaches the
destination through the stream, from the position the copy recorded.

moto serializes an item with every attribute type in about 3 ms (Scan, BatchGetItem
and GetRecords alike; 350 such items a second against the 4,000 small ones of
/work/shared/MOTO.md), so the big tables hold 4,000 items, a tenth of them rich ones,
padded so that a 1 MB Scan page holds about 200: a segment takes a few pages, and a
copy several seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from botocore.exceptions import ClientError

from replicator.copy import DONE, HEADER, START, copy_key, segment_id
from replicator.errors import StartupCheckError
from replicator.records import Item, decode_key
from replicator.service import Replicator
from replicator.verify import normalize
from replicator.workload import KEY_NAMES, random_item

from .conftest import (
    DESTINATION_TABLE,
    SOURCE_TABLE,
    TASK_NAME,
    InProcess,
    Proxy,
    ReplicatorProcess,
    Servers,
    compare,
    create_pair,
    environment_for,
    fill_table,
    lease_rows,
    numbered_item,
    numbered_key,
    replicating,
    settings_for,
    settled,
    stream_records,
    wait_equal,
    wait_until,
)

pytestmark = pytest.mark.integration

#: Items of the tables copied in process, their padding, and the copy's Scan segments.
COPY_ITEMS = 4000
PAD = 5000
SEGMENTS = 8
#: The table of the kill -9 test: 20,000 items, padded so a segment spans two pages.
#: moto serves about 1,400 of them a second, so it is the longest test of the suite.
BIG_ITEMS = 20_000
BIG_PAD = 400

Key = tuple[str, str]


def key_of(item: Item) -> Key:
    return (item["pk"]["S"], item["sk"]["N"])


def scan_order(key: Key) -> tuple[str, int]:
    """Where a key comes in a segment of moto's Scan: by hash key, then range key."""
    return (key[0], int(key[1]))


def original(key: Key) -> bool:
    """Whether the key is one of the numbered items the table was filled with."""
    return key[0].startswith("item-")


class CountingProxy(Proxy):
    """An HTTP proxy in front of a moto server. It counts the items of every
    BatchWriteItem by key and logs every Scan (segment and start key); while
    ``gate`` is clear it holds BatchWriteItem calls (counted first)."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.gate = asyncio.Event()
        self.gate.set()
        self.written: Counter[Key] = Counter()
        self.held: set[Key] = set()
        self.scans: list[tuple[int | None, Item | None]] = []

    def reset(self) -> None:
        self.written = Counter()
        self.held = set()
        self.scans = []

    def _note(self, operation: str, body: bytes) -> bool:
        """Count the call; True when it is a write to hold at the gate."""
        if operation == "BatchWriteItem":
            request = json.loads(body)
            for requests in request["RequestItems"].values():
                for write in requests:
                    if "PutRequest" in write:
                        self.written[key_of(write["PutRequest"]["Item"])] += 1
                    else:
                        self.written[key_of(write["DeleteRequest"]["Key"])] += 1
            if not self.gate.is_set():
                self.held.update(key_of(w["PutRequest"]["Item"])
                                 for requests in request["RequestItems"].values()
                                 for w in requests if "PutRequest" in w)
                return True
        elif operation == "Scan":
            request = json.loads(body)
            self.scans.append((request.get("Segment"), request.get("ExclusiveStartKey")))
        return False

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        operation = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        if self._note(operation, body):
            await self.gate.wait()
        return await self.pass_on(request, body)

    def closing(self) -> None:
        self.gate.set()


async def copy_rows(client: Any, stream_arn: str) -> dict[str, str]:
    """The copy's rows in the checkpoint table: row id -> checkpoint ({} before any)."""
    try:
        response = await client.query(
            TableName=TASK_NAME, KeyConditionExpression="stream_arn = :arn",
            ExpressionAttributeValues={":arn": {"S": copy_key(stream_arn)}},
            ConsistentRead=True,
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return {}
        raise
    return {row["shard_id"]["S"]: row["checkpoint"]["S"] for row in response["Items"]}


async def has_header(source: Any, stream_arn: str) -> bool:
    """Whether the copy has begun: its header row is the first it writes."""
    return HEADER in await copy_rows(source, stream_arn)


def segment_keys(total: int, items: int) -> dict[int, list[Key]]:
    """The keys of each Scan segment of the filled source, in the order a Scan returns
    them. moto puts an item in segment (first byte of the MD5 of its hash key) modulo
    the segments, and returns a segment sorted by hash key, then range key."""
    keys: dict[int, list[Key]] = {segment: [] for segment in range(total)}
    for index in range(items):
        key = key_of(numbered_key(index))
        keys[hashlib.md5(key[0].encode()).digest()[0] % total].append(key)
    return {segment: sorted(found, key=scan_order) for segment, found in keys.items()}


async def table_items(client: Any, table: str, *, segments: int = 4) -> dict[Key, Item]:
    """Every item of a table by key, its sets sorted: a parallel Scan."""

    async def segment(index: int) -> dict[Key, Item]:
        found: dict[Key, Item] = {}
        kwargs: dict[str, Any] = {}
        while True:
            page = await client.scan(TableName=table, Segment=index, TotalSegments=segments,
                                     ConsistentRead=True, **kwargs)
            found.update((key_of(item), normalize(item)) for item in page["Items"])
            if "LastEvaluatedKey" not in page:
                return found
            kwargs = {"ExclusiveStartKey": page["LastEvaluatedKey"]}

    items: dict[Key, Item] = {}
    for part in await asyncio.gather(*(segment(index) for index in range(segments))):
        items.update(part)
    return items


async def assert_tables_equal(source: Any, destination: Any) -> int:
    """Both tables hold the same items; returns how many. One Scan of each table, the
    two at once (``compare_tables`` reads each table twice, a Scan and a BatchGetItem,
    which doubles the time on moto for tables of thousands of items)."""
    ours, theirs = await asyncio.gather(table_items(source, SOURCE_TABLE),
                                        table_items(destination, DESTINATION_TABLE))
    missing = sorted(ours.keys() - theirs.keys())
    extra = sorted(theirs.keys() - ours.keys())
    different = sorted(key for key in ours.keys() & theirs.keys() if ours[key] != theirs[key])
    if missing or extra or different:
        raise AssertionError(
            f"{len(missing)} missing {missing[:5]}, {len(extra)} extra {extra[:5]}, "
            f"{len(different)} different {different[:5]}"
        )
    return len(ours)


async def fill_big_table(source: Any, seed: int, *, items: int = COPY_ITEMS, pad: int = PAD
                         ) -> None:
    rng = random.Random(seed)
    await fill_table(source, [numbered_item(rng, i, pad=pad) for i in range(items)])


async def last_sequence_number(source: Any, streams: Any, stream_arn: str) -> int:
    """Put a last item and return the sequence number of its stream record: read from
    a LATEST iterator taken before the put (the stream has one shard)."""
    (shard,) = (await streams.describe_stream(StreamArn=stream_arn))[
        "StreamDescription"]["Shards"]
    iterator = (await streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="LATEST",
    ))["ShardIterator"]
    last = {"pk": {"S": "last-write"}, "sk": {"N": "0"}}
    await source.put_item(TableName=SOURCE_TABLE, Item={**last, "v": {"S": "last"}})
    while True:
        page = await streams.get_records(ShardIterator=iterator, Limit=1000)
        for record in page["Records"]:
            if record["dynamodb"]["Keys"] == last:
                return int(record["dynamodb"]["SequenceNumber"])
        iterator = page["NextShardIterator"]
        await asyncio.sleep(0.05)


# -- writes going on during the copy ----------------------------------------------------


async def write_while_copying(
    source: Any, destination: Any, stop: asyncio.Event, *, seed: int, workers: int = 2,
    items: int = COPY_ITEMS, touched: set[Key] | None = None,
) -> Counter[str]:
    """Puts, updates (upserts) and deletes until ``stop``: on original keys the copy has
    already written to the destination, on original keys it has not, and on new keys.
    Every key written is added to ``touched``. The workers write disjoint keys, as
    ``run_workload``'s do (see there why)."""
    counts: Counter[str] = Counter()
    touched = set() if touched is None else touched

    async def worker(index: int) -> None:
        rng = random.Random(seed * 100 + index)
        while not stop.is_set():
            if rng.random() < 0.6:
                key = numbered_key(rng.randrange(items // workers) * workers + index)
                found = await destination.get_item(TableName=DESTINATION_TABLE, Key=key,
                                                   ConsistentRead=True, ProjectionExpression="pk")
                where = "copied" if "Item" in found else "not copied yet"
            else:
                key = numbered_key(items + rng.randrange(400 // workers) * workers + index)
                where = "new"
            touched.add(key_of(key))
            operation = rng.choice(["put", "update", "delete"])
            if operation == "put":
                await source.put_item(TableName=SOURCE_TABLE, Item=random_item(rng, key))
            elif operation == "update":
                await source.update_item(
                    TableName=SOURCE_TABLE, Key=key,
                    UpdateExpression="SET #s = :s ADD #ns :ns REMOVE #pad",
                    ExpressionAttributeNames={"#s": "s", "#ns": "ns", "#pad": "pad"},
                    ExpressionAttributeValues={
                        ":s": {"S": f"updated during the copy {rng.random()}"},
                        ":ns": {"NS": [str(rng.randint(100, 120))]},
                    },
                )
            else:
                await source.delete_item(TableName=SOURCE_TABLE, Key=key)
            counts[f"{operation} {where}"] += 1
            await asyncio.sleep(0.01)

    async with asyncio.TaskGroup() as group:
        for index in range(workers):
            group.create_task(worker(index))
    return counts


@pytest.mark.timeout(180)
async def test_a_copy_with_writes_going_on_ends_equal(
    servers: Servers, source: Any, destination: Any
) -> None:
    stream_arn = await create_pair(source, destination)
    await fill_big_table(source, seed=1)
    settings = settings_for(servers, worker_id="copier", copy_segments=SEGMENTS,
                            progress_interval=0.5, call_timeout=5, lease_duration=6)
    running = InProcess(settings)
    started = running.replicator.started

    async def writes() -> Counter[str]:
        await wait_until(lambda: has_header(source, stream_arn), within=20,
                         what="the copy to begin")
        return await write_while_copying(source, destination, started, seed=1)

    writer = asyncio.create_task(writes())
    try:
        await running.start(within=90)  # returns once the copy is done and streaming began
        counts = await asyncio.wait_for(writer, 10)
        await running.wait_caught_up(time.monotonic(), within=40)
        items = await assert_tables_equal(source, destination)
    finally:
        writer.cancel()
        if running.task is not None and not running.task.done():
            await running.stop()
    assert items > COPY_ITEMS // 2

    for operation in ("put", "update", "delete"):
        for where in ("copied", "not copied yet", "new"):
            assert counts[f"{operation} {where}"] > 0, counts
    copy = running.replicator.copy
    assert copy is not None
    assert copy.progress.segments == copy.progress.segments_done == SEGMENTS
    assert not copy.progress.resumed
    assert copy.progress.items_written >= COPY_ITEMS - counts.total()
    # The stream was read from the first write during the copy, not from the start of
    # the stream (which holds the COPY_ITEMS puts of the fill): an upserting
    # UpdateItem is two records in moto, every other write one.
    assert 0 < running.stats.records_read <= 2 * counts.total(), (
        running.stats.records_read, counts.total())
    assert (await copy_rows(source, stream_arn))[HEADER] == DONE


# -- SIGKILL during the copy, and a resume ------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_a_copy_killed_midway_resumes_without_copying_finished_segments_again(
    servers: Servers, source: Any, destination: Any, streams: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    """``run`` with bootstrap auto on 20,000 items, with puts, updates and deletes going
    on during the copy; kill -9 midway; a second worker resumes the copy."""
    stream_arn = await create_pair(source, destination)
    await fill_big_table(source, seed=2, items=BIG_ITEMS, pad=BIG_PAD)
    keys = segment_keys(SEGMENTS, BIG_ITEMS)
    assert sum(map(len, keys.values())) == BIG_ITEMS
    assert all(len(segment) > 200 for segment in keys.values()), {
        s: len(k) for s, k in keys.items()}
    stop_writes = asyncio.Event()
    touched: set[Key] = set()  # every key written during the copy, by anyone
    writer: asyncio.Task[Counter[str]] | None = None

    async with (
        CountingProxy(servers.destination.url).running() as writes,
        CountingProxy(servers.source.url).running() as reads,
    ):
        # Only the copy's reads of the source table go through ``reads``: the stream
        # and the checkpoint table are reached directly.
        env = environment_for(
            servers, worker_id="worker-one", destination_endpoint=writes.url,
            source_endpoint=reads.url, source_streams_endpoint=servers.source.url,
            checkpoint_endpoint=servers.source.url, copy_segments=SEGMENTS,
            copy_concurrency=2, progress_interval=0.5, call_timeout=3, lease_duration=4,
            lease_renew_interval=0.5,
        )
        first = spawn("first", env)
        await first.wait_for_event("copy started", within=30)

        # The watcher moves the stream's start to the first write made during the copy.
        during: list[Key] = []

        async def moved_to_at() -> bool:
            key = {"pk": {"S": f"during-{len(during)}"}, "sk": {"N": "0"}}
            await source.put_item(TableName=SOURCE_TABLE, Item={**key, "v": {"S": "new"}})
            during.append(key_of(key))
            (row,) = await lease_rows(source)
            return bool(row["checkpoint"]["S"].startswith("AT:"))

        await wait_until(moved_to_at, within=15, what="the stream position to be recorded")
        # From here until the resumed copy ends: puts, updates and deletes on copied
        # keys, on keys not copied yet and on new keys.
        writer = asyncio.create_task(write_while_copying(
            source, destination, stop_writes, seed=2, items=BIG_ITEMS, touched=touched))

        async def midway() -> bool:
            """Two segments or more copied, one partly (a page or more), one not started."""
            rows = await copy_rows(source, stream_arn)
            states = [cp if cp in (DONE, START) else "partly"
                      for row, cp in rows.items() if row != HEADER]
            return states.count(DONE) >= 2 and "partly" in states and START in states

        try:
            await wait_until(midway, within=120, what="the copy to be midway")
            first.send(signal.SIGKILL)
            assert await first.wait(within=10) == -signal.SIGKILL

            at_kill = await settled(lambda: copy_rows(source, stream_arn))
            done = {s for s in range(SEGMENTS) if at_kill[segment_id(s)] == DONE}
            unfinished = set(range(SEGMENTS)) - done
            not_started = {s for s in unfinished if at_kill[segment_id(s)] == START}
            assert at_kill[HEADER] == f"RUNNING/{SEGMENTS}"
            assert 2 <= len(done) < SEGMENTS
            assert not_started, f"every segment had started before the kill: {at_kill}"
            assert unfinished - not_started, f"no segment was partly copied: {at_kill}"
            # Before the kill the worker only copied (it streams once the copy is done):
            # every write it made is a copy write. A key deleted during the copy before
            # its segment was scanned is not copied at all.
            first_written = Counter({k: n for k, n in writes.written.items() if original(k)})
            done_keys = {key for s in done for key in keys[s]}
            assert done_keys - touched <= set(first_written)  # a segment is DONE once written

            # What the second run must still copy: each unfinished segment after its
            # position.
            remaining: set[Key] = set()
            starts: dict[int, Item | None] = {}
            for s in unfinished:
                position = at_kill[segment_id(s)]
                if position == START:
                    starts[s] = None
                    remaining.update(keys[s])
                else:
                    start = decode_key(position)
                    starts[s] = start
                    remaining.update(
                        k for k in keys[s] if scan_order(k) > scan_order(key_of(start)))
            writes.reset()
            reads.reset()

            second = spawn("second", {**env, "REPLICATOR_WORKER_ID": "worker-two"})
            resumed = await second.wait_for_event("copy resumed", within=30)
            assert resumed["previous_owner"] == "worker-one"  # taken over once it expired
            assert resumed["segments_left"] == len(unfinished)
            skipped = await second.wait_for_event("segments already copied are skipped")
            assert skipped["skipped"] == len(done)
            await second.wait_for_event("copy finished", within=120)
            stop_writes.set()
            counts = await asyncio.wait_for(writer, 10)
        finally:
            stop_writes.set()
            if writer is not None and not writer.done():
                writer.cancel()
        # Once the copy is done the worker streams: a key written during the copy may be
        # written again by the stream, so the copy's own writes are counted on the keys
        # nobody wrote during the copy, which are nearly all of them.
        second_written = Counter({k: n for k, n in writes.written.items() if original(k)})
        untouched = set(second_written) - touched
        progress = second.events("copy progress")  # every half second
        assert progress, second.stdout()
        assert {line["segments"] for line in progress} == {SEGMENTS}
        assert all(line["segments_done"] >= len(done) for line in progress)

        # Finished segments were neither scanned nor written again; the others were
        # scanned from where the first run had checkpointed them.
        scanned = {segment for segment, _ in reads.scans}
        assert scanned == unfinished, (scanned, unfinished)
        for s in unfinished:
            first_scan = next(start for segment, start in reads.scans if segment == s)
            assert first_scan == starts[s], (s, first_scan, starts[s])
        assert untouched == remaining - touched
        assert not untouched & done_keys
        assert len(remaining - touched) > BIG_ITEMS // 10
        total = sum(n for k, n in first_written.items() if k not in touched) + sum(
            second_written[k] for k in untouched)
        unfinished_items = sum(len(keys[s]) for s in unfinished)
        expected = sum(1 for s in keys for k in keys[s] if k not in touched)
        assert expected <= total < expected + unfinished_items, (total, unfinished_items)
        for operation in ("put", "update", "delete"):
            for where in ("copied", "not copied yet", "new"):
                assert counts[f"{operation} {where}"] > 0, counts

        # Every write made during the copies arrives through the stream: once the
        # shard's checkpoint reaches a last put, every record before it is applied (the
        # writers apply keys concurrently, so the last put being visible is not enough:
        # a SIGTERM then would leave queued records to a next owner there is not).
        last = await last_sequence_number(source, streams, stream_arn)

        async def checkpointed() -> bool:
            (row,) = await lease_rows(source)
            position = row["checkpoint"]["S"]
            return position.isdigit() and int(position) >= last

        await wait_until(checkpointed, within=60, what="the stream to apply the writes")
        second.send(signal.SIGTERM)
        assert await second.wait(within=20) == 0
    assert second.stderr() == ""
    rows = await copy_rows(source, stream_arn)
    assert set(rows.values()) == {DONE}
    assert len(rows) == SEGMENTS + 1
    items = await assert_tables_equal(source, destination)
    print(f"\n{BIG_ITEMS} items copied, {counts.total()} writes during the copy "
          f"({dict(counts)}), {len(done)} of {SEGMENTS} segments finished before the kill "
          f"were not copied again; {items} items in each table at the end")


# -- ``copy``, then ``run`` -------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_copy_then_run_streams_without_copying_again(
    servers: Servers, source: Any, destination: Any, streams: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    stream_arn = await create_pair(source, destination)
    rng = random.Random(3)
    await fill_table(source, [numbered_item(rng, i) for i in range(200)])
    env = environment_for(servers, copy_segments=4, worker_id="copier")

    copier = spawn("copy", env, "copy")
    assert await copier.wait(within=40) == 0
    assert copier.stderr() == ""
    assert copier.events("copy started")[0]["segments"] == 4
    assert copier.events("copy finished")[0]["items_written"] == 200
    assert not copier.events("replication starting")  # copy only copies
    rows = await copy_rows(source, stream_arn)
    assert rows == {HEADER: DONE, **{segment_id(s): DONE for s in range(4)}}
    # Nothing was written during the copy: the stream is to be read from its start.
    (row,) = await lease_rows(source)
    assert row["checkpoint"] == {"S": "TRIM_HORIZON"}
    assert "lease_owner" not in row
    diff = await compare(source, destination, KEY_NAMES)
    assert diff.equal, diff.report()
    assert diff.source_items == 200

    await source.put_item(TableName=SOURCE_TABLE,
                          Item={**numbered_key(500), "v": {"S": "after the copy"}})
    await source.update_item(TableName=SOURCE_TABLE, Key=numbered_key(3),
                             UpdateExpression="SET v = :v",
                             ExpressionAttributeValues={":v": {"S": "updated after the copy"}})
    await source.delete_item(TableName=SOURCE_TABLE, Key=numbered_key(4))  # the last write

    runner = spawn("run", {**env, "REPLICATOR_WORKER_ID": "runner"})
    await runner.wait_for_event("shard started", within=30)
    await wait_equal(source, destination, KEY_NAMES, within=30)
    runner.send(signal.SIGTERM)
    assert await runner.wait(within=20) == 0
    assert runner.stderr() == ""
    assert not runner.events("copy started")
    assert not runner.events("copy resumed")
    assert runner.events("replication starting")
    totals = runner.events("replication stopped")[0]
    # From TRIM_HORIZON: the fill's records, read again, and the three writes after it.
    assert totals["records_read"] == len(await stream_records(streams, stream_arn)) == 203


# -- the hand-off to the stream ----------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_writes_during_the_copy_reach_the_destination_through_the_stream(
    servers: Servers, source: Any, destination: Any, streams: Any
) -> None:
    stream_arn = await create_pair(source, destination)
    rng = random.Random(4)
    await fill_table(source, [numbered_item(rng, i) for i in range(60)])
    filled = len(await stream_records(streams, stream_arn))
    assert filled == 60

    async with CountingProxy(servers.destination.url).running() as proxy:
        proxy.gate.clear()  # the copy's writes wait: the copy lasts as long as the test wants
        settings = settings_for(servers, worker_id="copier", destination_endpoint=proxy.url,
                                copy_segments=SEGMENTS, call_timeout=10, lease_duration=11)
        copier = asyncio.create_task(Replicator(settings).run(copy_only=True))
        try:
            async def all_scanned() -> bool:
                if copier.done():
                    raise AssertionError(f"the copy ended early: {copier.result()!r}")
                return len(proxy.held) == 60

            await wait_until(all_scanned, within=20, what="the copy to scan every item")
            # Every item was read by the copy: these writes come after its scan.
            await source.update_item(
                TableName=SOURCE_TABLE, Key=numbered_key(10), UpdateExpression="SET v = :v",
                ExpressionAttributeValues={":v": {"S": "changed during the copy"}})
            await source.delete_item(TableName=SOURCE_TABLE, Key=numbered_key(11))
            await source.put_item(TableName=SOURCE_TABLE,
                                  Item={**numbered_key(1000), "v": {"S": "new during the copy"}})
            records = await stream_records(streams, stream_arn)
            assert len(records) == filled + 3
            first = records[filled]["dynamodb"]["SequenceNumber"]

            async def position_recorded() -> bool:
                (row,) = await lease_rows(source)
                return bool(row["checkpoint"] == {"S": f"AT:{first}"})

            await wait_until(position_recorded, within=10, what="the stream position")
            proxy.gate.set()
            assert await asyncio.wait_for(copier, 30) == 0
        finally:
            copier.cancel()

    (row,) = await lease_rows(source)
    assert row["checkpoint"] == {"S": f"AT:{first}"}  # where the copy left it
    assert "lease_owner" not in row
    # The copy alone wrote what it had scanned, before the three writes.
    diff = await compare(source, destination, KEY_NAMES)
    assert (diff.missing, diff.extra, diff.different) == (1, 1, 1), diff.report()

    async with replicating(settings_for(servers, worker_id="streamer")) as running:
        await running.wait_caught_up(time.monotonic())
        assert running.replicator.copy is None  # the copy is done: not again
        # Read from the first write during the copy: the three writes, not the fill.
        assert running.stats.records_read == 3
        diff = await compare(source, destination, KEY_NAMES)
        assert diff.equal, diff.report()


# -- REPLICATOR_BOOTSTRAP ---------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_bootstrap_always_copies_on_every_start_and_auto_only_once(
    servers: Servers, source: Any, destination: Any
) -> None:
    await create_pair(source, destination)
    rng = random.Random(7)
    await fill_table(source, [numbered_item(rng, i) for i in range(100)])

    async with replicating(settings_for(servers, worker_id="first", bootstrap="always",
                                        copy_segments=4)) as first:
        assert first.replicator.copy is not None
        assert first.replicator.copy.progress.items_written == 100
    # Drift that no stream record repairs: an item lost from the destination.
    await destination.delete_item(TableName=DESTINATION_TABLE, Key=numbered_key(5))

    async with replicating(settings_for(servers, bootstrap="auto")) as second:
        assert second.replicator.copy is None  # the copy is done
    assert (await compare(source, destination, KEY_NAMES)).missing == 1

    async with replicating(settings_for(servers, bootstrap="always")) as third:
        copy = third.replicator.copy
        assert copy is not None
        assert copy.progress.items_written == 100  # copied again, from the start
        assert not copy.progress.resumed
        await third.wait_caught_up(time.monotonic())
        diff = await compare(source, destination, KEY_NAMES)
        assert diff.equal, diff.report()

    async with replicating(settings_for(servers, bootstrap="never")) as fourth:
        assert fourth.replicator.copy is None


@pytest.mark.timeout(60)
async def test_a_copy_refuses_to_start_while_workers_stream(
    servers: Servers, source: Any, destination: Any
) -> None:
    stream_arn = await create_pair(source, destination)
    streaming = settings_for(servers, worker_id="streamer", bootstrap="never")
    async with replicating(streaming):
        async def leased() -> bool:
            rows = await lease_rows(source)
            return bool(rows) and all("lease_owner" in row for row in rows)

        await wait_until(leased, within=10, what="the streaming worker to hold its lease")
        copier = Replicator(settings_for(servers, worker_id="copier"))
        with pytest.raises(StartupCheckError,
                           match=r"workers of this task are streaming \(streamer\)"):
            await copier.run(copy_only=True)
    # Once the worker has stopped (its lease released), the copy goes ahead.
    assert await Replicator(settings_for(servers, worker_id="copier")).run(copy_only=True) == 0
    assert (await copy_rows(source, stream_arn))[HEADER] == DONE
