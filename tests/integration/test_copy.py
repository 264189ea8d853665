"""The bootstrap copy against moto servers: a copy with writes going on ends equal, a
copy killed with SIGKILL resumes without copying finished segments again, ``copy``
then ``run`` does not copy twice, and what is written during a copy reaches the
destination through the stream, from the position the copy recorded.

The copied tables are small (1,600 items, a tenth of them with every attribute type,
which moto takes about 3 ms to serialize), and their copies last several seconds
because the copy's writes are capped (``copy_max_wcu``), not because the table is
big. A proxy in front of the source cuts the copy's Scan pages short (``scan_limit``,
as DynamoDB's 1 MB pages do on a big table), so that a segment takes several pages.
The same kill -9 test on 20,000 items, with no cap and no proxy limit, is in the soak
tier (``tests/soak/test_copy.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from botocore.exceptions import ClientError

from replicator.commands.run import Replicator
from replicator.copy.claims import DONE, HEADER, START, copy_key, segment_id
from replicator.copy.verify import normalize
from replicator.dev.workload import KEY_NAMES, random_item
from replicator.errors import StartupCheckError
from replicator.records import Item, decode_key
from replicator.stats import Signal

from .conftest import (
    DEADLINE,
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
    until,
    wait_equal,
    wait_until,
)

pytestmark = pytest.mark.integration

#: The copied tables: small items, in 8 Scan segments of about 200 items each.
COPY_ITEMS = 1600
SEGMENTS = 8
#: Scan pages of at most this many items: 4 or 5 pages a segment.
SCAN_LIMIT = 50
#: Write units a second the copy may use: the 1,600 items (one unit each, the rich
#: ones too) take about 8 s, on any machine at least that.
COPY_MAX_WCU = 200

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
    ``gate`` is clear it holds BatchWriteItem calls (counted first). With a
    ``scan_limit``, it asks moto for Scan pages of that many items at most (the
    caller sees pages cut short, as by DynamoDB's 1 MB). ``changed`` is notified at
    every call it counts."""

    def __init__(self, target: str, *, scan_limit: int | None = None) -> None:
        super().__init__(target)
        self.scan_limit = scan_limit
        self.gate = asyncio.Event()
        self.gate.set()
        self.changed = Signal()
        self.written: Counter[Key] = Counter()
        self.held: set[Key] = set()
        self.scans: list[tuple[int | None, Item | None]] = []

    def reset(self) -> None:
        self.written = Counter()
        self.held = set()
        self.scans = []

    def _note(self, operation: str, body: bytes) -> bool:
        """Count the call; True when it is a write to hold at the gate."""
        self.changed.notify()
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
        if operation == "Scan" and self.scan_limit is not None:
            scan = json.loads(body)
            scan["Limit"] = min(scan.get("Limit", self.scan_limit), self.scan_limit)
            body = json.dumps(scan).encode()
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


async def assert_tables_equal(
    source: Any, destination: Any, *,
    explain: Callable[[Key], Awaitable[str]] | None = None,
) -> int:
    """Both tables hold the same items; returns how many. One Scan of each table, the
    two at once (``compare_tables`` reads each table twice, a Scan and a BatchGetItem,
    which doubles the time on moto for tables of thousands of items). On a failure,
    ``explain`` tells the story of each key that differs."""
    ours, theirs = await asyncio.gather(table_items(source, SOURCE_TABLE),
                                        table_items(destination, DESTINATION_TABLE))
    missing = sorted(ours.keys() - theirs.keys())
    extra = sorted(theirs.keys() - ours.keys())
    different = sorted(key for key in ours.keys() & theirs.keys() if ours[key] != theirs[key])
    if missing or extra or different:
        stories = ""
        if explain is not None:
            stories = "".join([f"\n  {key}: {await explain(key)}"
                               for key in [*missing[:5], *extra[:5], *different[:5]]])
        raise AssertionError(
            f"{len(missing)} missing {missing[:5]}, {len(extra)} extra {extra[:5]}, "
            f"{len(different)} different {different[:5]}{stories}"
        )
    return len(ours)


async def fill_big_table(source: Any, seed: int, *, items: int = COPY_ITEMS, pad: int = 0
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
    deadline = time.monotonic() + DEADLINE
    while True:
        page = await streams.get_records(ShardIterator=iterator, Limit=1000)
        for record in page["Records"]:
            if record["dynamodb"]["Keys"] == last:
                return int(record["dynamodb"]["SequenceNumber"])
        iterator = page["NextShardIterator"]
        if not page["Records"]:
            assert time.monotonic() < deadline, "the last put is not in the stream"
            await asyncio.sleep(0.05)  # polled: moto shows a record once its write returns


# -- writes going on during the copy ----------------------------------------------------


async def write_while_copying(
    source: Any, destination: Any, stop: asyncio.Event, *, seed: int, workers: int = 2,
    items: int = COPY_ITEMS, touched: set[Key] | None = None, pause: float = 0.02,
) -> Counter[str]:
    """Puts, updates (upserts) and deletes until ``stop``: on original keys the copy has
    already written to the destination, on original keys it has not, and on new keys.
    Every key written is added to ``touched``. The workers write disjoint keys, as
    ``run_workload``'s do (see there why), each ``pause`` seconds after its last."""
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
            await asyncio.sleep(pause)  # the writers' pace

    async with asyncio.TaskGroup() as group:
        for index in range(workers):
            group.create_task(worker(index))
    return counts


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_a_copy_with_writes_going_on_ends_equal(
    servers: Servers, source: Any, destination: Any
) -> None:
    stream_arn = await create_pair(source, destination)
    await fill_big_table(source, seed=1)
    async with CountingProxy(servers.source.url, scan_limit=SCAN_LIMIT).running() as reads:
        # The copy's Scan goes through ``reads``; the stream and the checkpoint table
        # are reached directly.
        settings = settings_for(
            servers, worker_id="copier", copy_segments=SEGMENTS, copy_max_wcu=COPY_MAX_WCU,
            source_endpoint=reads.url, source_streams_endpoint=servers.source.url,
            checkpoint_endpoint=servers.source.url, progress_interval=0.5, call_timeout=5,
            lease_duration=6,
        )
        running = InProcess(settings)
        started = running.replicator.started

        async def writes() -> Counter[str]:
            await wait_until(lambda: has_header(source, stream_arn), within=DEADLINE,
                             what="the copy to begin")
            # One writer: the test waits until the replicator is caught up, which it
            # never is if the last two writes raced (see ``stream_records``).
            return await write_while_copying(source, destination, started, seed=1, workers=1)

        writer = asyncio.create_task(writes())
        try:
            # ``start`` returns once the copy is done and streaming began.
            await running.start(within=2 * DEADLINE)
            counts = await asyncio.wait_for(writer, DEADLINE)
            await running.wait_caught_up(running.now())
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
    # Every segment was scanned in several pages, each from where the last ended.
    pages = Counter(segment for segment, _ in reads.scans)
    assert set(pages) == set(range(SEGMENTS))
    assert min(pages.values()) >= 3, pages
    # The stream was read from the first write during the copy, not from the start of
    # the stream (which holds the COPY_ITEMS puts of the fill): an upserting
    # UpdateItem is two records in moto, every other write one.
    assert 0 < running.stats.records_read <= 2 * counts.total(), (
        running.stats.records_read, counts.total())
    assert (await copy_rows(source, stream_arn))[HEADER] == DONE


# -- SIGKILL during the copy, and a resume ------------------------------------------------


@dataclass(frozen=True)
class KilledCopy:
    """The table and the copy of a kill -9 test: how many items, how the copy is kept
    slow enough to be seen midway, and how long each step may take."""

    items: int
    #: Each segment holds more items than this: it takes two pages at least.
    segment_items_over: int
    #: Padding of each item (``numbered_item``).
    pad: int = 0
    #: Scan pages cut to this many items by the proxy in front of the source.
    scan_limit: int | None = None
    #: More settings of the two workers (REPLICATOR_*).
    settings: dict[str, Any] = field(default_factory=dict)
    #: The pause of each of the two writers after each write during the copy.
    pause: float = 0.02
    #: Deadlines: for the first copy to be seen midway, and for the second to finish.
    midway_within: float = DEADLINE
    finish_within: float = DEADLINE


#: The integration tier's: 1,600 small items, the copy's writes capped so that it
#: lasts about 8 s, Scan pages of 50 items (4 or 5 a segment).
SMALL_KILLED_COPY = KilledCopy(
    items=COPY_ITEMS, segment_items_over=2 * SCAN_LIMIT, scan_limit=SCAN_LIMIT,
    settings={"copy_max_wcu": COPY_MAX_WCU}, pause=0.05,
)


def midway(rows: dict[str, str]) -> bool:
    """Two segments or more copied, one partly (a page or more), one not started."""
    states = [cp if cp in (DONE, START) else "partly" for row, cp in rows.items()
              if row != HEADER]
    return states.count(DONE) >= 2 and "partly" in states and START in states


async def a_copy_killed_midway_resumes(
    servers: Servers, source: Any, destination: Any, streams: Any,
    spawn: Callable[..., ReplicatorProcess], plan: KilledCopy,
) -> None:
    """``run`` with bootstrap auto, with puts, updates and deletes going on during the
    copy; kill -9 midway; a second worker resumes the copy. Finished segments are
    neither scanned nor written again, unfinished ones resume from their checkpointed
    position, every write made during the copies arrives, and the tables end equal."""
    items_total = plan.items
    stream_arn = await create_pair(source, destination)
    await fill_big_table(source, seed=2, items=items_total, pad=plan.pad)
    keys = segment_keys(SEGMENTS, items_total)
    assert sum(map(len, keys.values())) == items_total
    assert all(len(segment) > plan.segment_items_over for segment in keys.values()), {
        s: len(k) for s, k in keys.items()}
    stop_writes = asyncio.Event()
    touched: set[Key] = set()  # every key written during the copy, by anyone
    writer: asyncio.Task[Counter[str]] | None = None

    async with (
        CountingProxy(servers.destination.url).running() as writes,
        CountingProxy(servers.source.url, scan_limit=plan.scan_limit).running() as reads,
    ):
        # Only the copy's reads of the source table go through ``reads``: the stream
        # and the checkpoint table are reached directly.
        env = environment_for(
            servers, worker_id="worker-one", destination_endpoint=writes.url,
            source_endpoint=reads.url, source_streams_endpoint=servers.source.url,
            checkpoint_endpoint=servers.source.url, copy_segments=SEGMENTS,
            copy_concurrency=2, progress_interval=0.5, call_timeout=3, lease_duration=4,
            lease_renew_interval=0.5, **plan.settings,
        )
        first = spawn("first", env)
        await first.wait_for_event("copy started")

        # The watcher moves the stream's start to the first write made during the copy.
        during: list[Key] = []

        async def moved_to_at() -> bool:
            key = {"pk": {"S": f"during-{len(during)}"}, "sk": {"N": "0"}}
            await source.put_item(TableName=SOURCE_TABLE, Item={**key, "v": {"S": "new"}})
            during.append(key_of(key))
            (row,) = await lease_rows(source)
            return bool(row["checkpoint"]["S"].startswith("AT:"))

        await wait_until(moved_to_at, within=DEADLINE, processes=[first],
                         what="the stream position to be recorded")
        (started_row,) = await lease_rows(source)
        started_at = started_row["checkpoint"]["S"]
        # From here until the resumed copy ends: puts, updates and deletes on copied
        # keys, on keys not copied yet and on new keys.
        writer = asyncio.create_task(write_while_copying(
            source, destination, stop_writes, seed=2, items=items_total, touched=touched,
            pause=plan.pause))

        try:
            await stop_midway(first, source, stream_arn, within=plan.midway_within)
            first.send(signal.SIGKILL)  # stopped midway, now killed there
            assert await first.wait() == -signal.SIGKILL

            at_kill = await settled(lambda: copy_rows(source, stream_arn))
            assert midway(at_kill), at_kill
            done = {s for s in range(SEGMENTS) if at_kill[segment_id(s)] == DONE}
            unfinished = set(range(SEGMENTS)) - done
            not_started = {s for s in unfinished if at_kill[segment_id(s)] == START}
            assert at_kill[HEADER].startswith(f"RUNNING/{SEGMENTS}/")
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
            resumed = await second.wait_for_event("copy resumed")
            assert resumed["previous_owner"] == "worker-one"  # taken over once it expired
            assert resumed["segments_left"] == len(unfinished)
            skipped = await second.wait_for_event("segments already copied are skipped")
            assert skipped["skipped"] == len(done)
            await second.wait_for_event("copy finished", within=plan.finish_within)
            stop_writes.set()
            counts = await asyncio.wait_for(writer, DEADLINE)
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
        assert progress, second.report()
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
        assert len(remaining - touched) > items_total // 10
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

        await wait_until(checkpointed, within=DEADLINE, processes=[second],
                         what="the stream to apply the writes")
        second.send(signal.SIGTERM)
        assert await second.wait() == 0, second.report()
    assert second.stderr() == ""
    rows = await copy_rows(source, stream_arn)
    assert set(rows.values()) == {DONE}
    assert len(rows) == SEGMENTS + 1
    async def explain(key: Key) -> str:
        segment = next((s for s, found in keys.items() if key in found), None)
        history = [(raw["eventName"], raw["dynamodb"]["SequenceNumber"])
                   for raw in await stream_records(streams, stream_arn)
                   if key_of(raw["dynamodb"]["Keys"]) == key]
        where = ("not an original key" if segment is None else
                 f"segment {segment} ({at_kill[segment_id(segment)]} at the kill)")
        return (f"{where}; written during the copy: {key in touched}; copy writes by the "
                f"first worker {first_written[key]}, by the second (and its stream) "
                f"{second_written[key]}; stream records {history}; stream start "
                f"{started_at}")

    items = await assert_tables_equal(source, destination, explain=explain)
    print(f"\n{items_total} items copied, {counts.total()} writes during the copy "
          f"({dict(counts)}), {len(done)} of {SEGMENTS} segments finished before the kill "
          f"were not copied again; {items} items in each table at the end")


async def stop_midway(first: ReplicatorProcess, source: Any, stream_arn: str, *,
                      within: float) -> dict[str, str]:
    """Stop ``first`` (SIGSTOP) once its copy is midway, and leave it stopped there;
    returns the copy's rows. The rows are read again once settled (a write sent just
    before the stop may still land): if the copy moved on past midway meanwhile, the
    process goes on (SIGCONT) until it is seen midway again. So the kill that follows
    lands midway however late the test saw it there, and however busy the machine."""
    deadline = time.monotonic() + within
    rows: dict[str, str] = {}

    async def seen_midway() -> bool:
        rows.clear()
        rows.update(await copy_rows(source, stream_arn))
        if rows.get(HEADER) == DONE or first.returncode is not None:
            raise AssertionError(f"the copy ended before it was seen midway: {rows}; "
                                 "slow it down" + first.report())
        return midway(rows)

    while True:
        await wait_until(seen_midway, within=max(0.0, deadline - time.monotonic()),
                         what=lambda: f"the copy to be midway (rows: {rows})",
                         processes=[first])
        first.send(signal.SIGSTOP)
        at_stop = await settled(lambda: copy_rows(source, stream_arn))
        if midway(at_stop):
            return at_stop
        first.send(signal.SIGCONT)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_a_copy_killed_midway_resumes_without_copying_finished_segments_again(
    servers: Servers, source: Any, destination: Any, streams: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    """On 1,600 small items, the copy slowed by its write cap (``SMALL_KILLED_COPY``);
    the same on 20,000 items is in the soak tier."""
    await a_copy_killed_midway_resumes(servers, source, destination, streams, spawn,
                                       SMALL_KILLED_COPY)


# -- ``copy``, then ``run`` -------------------------------------------------------------------


@pytest.mark.timeout(300)
async def test_copy_then_run_streams_without_copying_again(
    servers: Servers, source: Any, destination: Any, streams: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    stream_arn = await create_pair(source, destination)
    rng = random.Random(3)
    await fill_table(source, [numbered_item(rng, i) for i in range(200)])
    await asyncio.sleep(2.5)  # the test's pacing: the fill is older than the copy's second
    env = environment_for(servers, copy_segments=4, worker_id="copier")

    copier = spawn("copy", env, "copy")
    assert await copier.wait(within=DEADLINE) == 0, copier.report()
    assert copier.stderr() == ""
    assert copier.events("copy started")[0]["segments"] == 4
    assert copier.events("copy finished")[0]["items_written"] == 200
    assert not copier.events("replication starting")  # copy only copies
    rows = await copy_rows(source, stream_arn)
    assert rows == {HEADER: DONE, **{segment_id(s): DONE for s in range(4)}}
    # Nothing was written during the copy, and `copy` hands nothing over to a stream:
    # the stream is to be read from its start, skipping what precedes the copy.
    (row,) = await lease_rows(source)
    assert row["checkpoint"]["S"].startswith("SINCE:")
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
    await runner.wait_for_event("shard started")
    await wait_equal(source, destination, KEY_NAMES, processes=[runner])
    runner.send(signal.SIGTERM)
    assert await runner.wait() == 0, runner.report()
    assert runner.stderr() == ""
    assert not runner.events("copy started")
    assert not runner.events("copy resumed")
    assert runner.events("replication starting")
    totals = runner.events("replication stopped")[0]
    # From TRIM_HORIZON: the fill's records, read again but not applied (the copy holds
    # them), and the three writes after it, applied.
    assert totals["records_read"] == len(await stream_records(streams, stream_arn)) == 203
    assert totals["records_skipped"] == 200
    assert sum(totals["records_applied"].values()) == 3


# -- the hand-off to the stream ----------------------------------------------------------------


@pytest.mark.timeout(450)
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
            await until(proxy.changed, lambda: len(proxy.held) == 60, task=copier,
                        what="the copy to scan every item (its writes held)",
                        describe=lambda: f"{len(proxy.held)} writes held")
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

            await wait_until(position_recorded, within=DEADLINE, what="the stream position")
            proxy.gate.set()
            assert await asyncio.wait_for(copier, DEADLINE) == 0
        finally:
            copier.cancel()

    (row,) = await lease_rows(source)
    assert row["checkpoint"] == {"S": f"AT:{first}"}  # where the copy left it
    assert "lease_owner" not in row
    # The copy alone wrote what it had scanned, before the three writes.
    diff = await compare(source, destination, KEY_NAMES)
    assert (diff.missing, diff.extra, diff.different) == (1, 1, 1), diff.report()

    async with replicating(settings_for(servers, worker_id="streamer")) as running:
        await running.wait_caught_up(running.now())
        assert running.replicator.copy is None  # the copy is done: not again
        # Read from the first write during the copy: the three writes, not the fill.
        assert running.stats.records_read == 3
        diff = await compare(source, destination, KEY_NAMES)
        assert diff.equal, diff.report()


# -- REPLICATOR_BOOTSTRAP ---------------------------------------------------------------------


@pytest.mark.timeout(600)
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
        await third.wait_caught_up(third.now())
        diff = await compare(source, destination, KEY_NAMES)
        assert diff.equal, diff.report()

    async with replicating(settings_for(servers, bootstrap="never")) as fourth:
        assert fourth.replicator.copy is None


@pytest.mark.timeout(300)
async def test_a_copy_refuses_to_start_while_workers_stream(
    servers: Servers, source: Any, destination: Any
) -> None:
    stream_arn = await create_pair(source, destination)
    streaming = settings_for(servers, worker_id="streamer", bootstrap="never")
    async with replicating(streaming) as running:
        # Caught up: it holds the lease of the shard, and has read it.
        await running.wait_caught_up(0.0)
        rows = await lease_rows(source)
        assert rows
        assert all(row.get("lease_owner") == {"S": "streamer"} for row in rows), rows
        copier = Replicator(settings_for(servers, worker_id="copier"))
        with pytest.raises(StartupCheckError,
                           match=r"workers of this task are streaming \(streamer\)"):
            await copier.run(copy_only=True)
    # Once the worker has stopped (its lease released), the copy goes ahead.
    assert await Replicator(settings_for(servers, worker_id="copier")).run(copy_only=True) == 0
    assert (await copy_rows(source, stream_arn))[HEADER] == DONE
