"""Several workers in one event loop, sharing one stream, destination and lease table.

Each worker is a real ShardCoordinator, WriterPool and Stats (``harness.Replication``
with its own ``worker_id``) that reaches the shared fakes through its own thin
wrappers: they log which worker read or wrote what and when, count the worker's
coordinator cycles (one lease-table Query each), and can cut the worker off (it
died) or make its lease writes fail (a partition from the lease table).

What must hold while shards split and workers join, leave and die:

- the leases balance to within one of the fair share in a bounded number of cycles;
- no shard is written by two workers at once (each worker's writes of a shard, per
  time it took the lease, span an interval; those intervals never overlap);
- a child shard's first write comes after its parent's last one;
- the destination ends equal to the source, nothing lost; no record is applied again
  once a checkpoint covering it was written, and no key goes back to an older image
  except where a new owner replays a shard from its checkpoint.

Two regressions found here: a thief whose lease-table read was slow counted the lease
duration from before that read (``test_a_thief_whose_lease_read_was_slow...``), and a
lineage of three or more generations had its finished rows re-created and re-read
(``test_a_lineage_rolled_over_many_times_is_read_once``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import pytest
from structlog.testing import capture_logs

from replicator.checkpoint import Sentinel
from replicator.errors import EndpointUnreachableError, ReplicatorError
from replicator.lease import Lease
from replicator.records import KeyId, RecordsPage, Shard, sequence_key
from replicator.stream.consumer import ShardState
from replicator.stream.coordinator import ShardCoordinator
from replicator.stream.lineage import progressed
from tests.fakes import (
    FakeDestination,
    FakeLeaseStore,
    FakeStream,
    item,
    key_of,
    timed_out,
)
from tests.unit.harness import (
    CLOCK,
    RecordingDestination,
    Replication,
    TimedBatch,
    caught_up,
    guard_checkpoints,
    record_key,
    time_lease_writes,
    unapplied_up_to,
)

LEASE_DURATION = 0.4
RENEW = 0.05
CYCLE = 0.03
WRITE_WINDOW = 0.1  # + RENEW < LEASE_DURATION: a renewal fits before writes pause
SETTINGS: dict[str, Any] = {
    "lease_duration": LEASE_DURATION,
    "lease_renew_interval": RENEW,
    "coordinator_interval": CYCLE,
    "shard_sync_interval": CYCLE,
    "write_window": WRITE_WINDOW,
    "checkpoint_interval": 0.01,
    "idle_interval": 0.02,
    "shutdown_timeout": 0.5,
}

#: The worker on whose behalf a lease-table call runs (set by its ``WorkerStore``).
CALLER: ContextVar[str | None] = ContextVar("caller", default=None)


# -- each worker's view of the shared fakes ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Read:
    """A GetShardIterator or GetRecords a worker made (``at``: when it was sent)."""

    at: float
    worker: str
    operation: str
    shard_id: str
    sequence_numbers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LeaseCall:
    """An UpdateItem a worker sent: when, for which shard, to which owner, and its error."""

    sent: float
    answered: float
    shard_id: str
    new_owner: str | None
    error: str | None
    #: Whether it tried to take the row from its owner (or from nobody).
    take: bool


class Link:
    """A worker's network. Once cut (the worker died) every call fails at once."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.cut = False

    def check(self, operation: str) -> None:
        if self.cut:
            raise EndpointUnreachableError(f"{operation}: {self.worker} is dead",
                                           operation=operation)


class WorkerStream:
    """``StreamReader`` of one worker: logs its reads by shard."""

    def __init__(self, stream: FakeStream, link: Link, reads: list[Read]) -> None:
        self._stream = stream
        self._link = link
        self._reads = reads
        self._shards: dict[str, str] = {}

    async def list_shards(self, stream_arn: str) -> list[Shard]:
        self._link.check("DescribeStream")
        return await self._stream.list_shards(stream_arn)

    async def get_shard_iterator(self, stream_arn: str, shard_id: str, iterator_type: str,
                                 sequence_number: str | None = None) -> str:
        self._link.check("GetShardIterator")
        self._reads.append(Read(CLOCK.stamp(), self._link.worker, "GetShardIterator",
                                shard_id))
        iterator = await self._stream.get_shard_iterator(
            stream_arn, shard_id, iterator_type, sequence_number)
        self._shards[iterator] = shard_id
        return iterator

    async def get_records(self, iterator: str, limit: int) -> RecordsPage:
        self._link.check("GetRecords")
        sent = CLOCK.stamp()
        page = await self._stream.get_records(iterator, limit)
        shard_id = self._shards[iterator]
        if page.next_iterator is not None:
            self._shards[page.next_iterator] = shard_id
        self._reads.append(Read(sent, self._link.worker, "GetRecords", shard_id, tuple(
            raw["dynamodb"]["SequenceNumber"] for raw in page.records)))
        return page


class WorkerStore:
    """``LeaseStore`` of one worker: counts its coordinator cycles (one Query each), logs
    its UpdateItems, and can hold its first Query (``hold_first_query``)."""

    def __init__(self, store: FakeLeaseStore, link: Link) -> None:
        self._store = store
        self._link = link
        self.cycles = 0
        #: When each Query was answered.
        self.answers: list[float] = []
        self.updates: list[LeaseCall] = []
        self.hold_first_query: Callable[[], Awaitable[None]] | None = None

    async def list_leases(self, stream_arn: str) -> list[Lease]:
        self._link.check("Query")
        self.cycles += 1
        hold, self.hold_first_query = self.hold_first_query, None
        if hold is not None:
            await hold()
        token = CALLER.set(self._link.worker)
        try:
            rows = await self._store.list_leases(stream_arn)
        finally:
            CALLER.reset(token)
        self.answers.append(CLOCK.stamp())
        return rows

    async def create_lease(self, lease: Lease) -> bool:
        self._link.check("PutItem")
        return await self._store.create_lease(lease)

    async def update_lease(self, lease: Lease, *, new_owner: str | None,
                           checkpoint: str | None = None,
                           checkpoints: Mapping[str, str] | None = None) -> Lease:
        self._link.check("UpdateItem")
        sent = CLOCK.stamp()
        take = new_owner is not None and new_owner != lease.owner
        token = CALLER.set(self._link.worker)
        try:
            updated = await self._store.update_lease(lease, new_owner=new_owner,
                                                     checkpoint=checkpoint,
                                                     checkpoints=checkpoints)
        except ReplicatorError as exc:
            self.updates.append(LeaseCall(sent, CLOCK.stamp(), lease.shard_id, new_owner,
                                          type(exc).__name__, take))
            raise
        finally:
            CALLER.reset(token)
        self.updates.append(LeaseCall(sent, CLOCK.stamp(), lease.shard_id, new_owner, None,
                                      take))
        return updated

    async def delete_lease(self, lease: Lease) -> None:
        self._link.check("DeleteItem")
        await self._store.delete_lease(lease)


class WorkerDestination(RecordingDestination):
    """``DestinationWriter`` of one worker: logs its batches; fails once the worker died."""

    def __init__(self, link: Link, destination: FakeDestination, stream: FakeStream,
                 log: list[TimedBatch], latency: float) -> None:
        super().__init__(destination, stream, worker=link.worker, log=log, latency=latency)
        self._link = link

    async def batch_write(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self._link.check("BatchWriteItem")
        return await super().batch_write(requests)


class Worker:
    def __init__(self, cluster: Cluster, name: str, *, latency: float = 0.0,
                 **overrides: Any) -> None:
        self.name = name
        self.link = Link(name)
        self.store = WorkerStore(cluster.store, self.link)
        self.replication = Replication(
            cluster.stream, cluster.dest, cluster.store, worker_id=name,
            reads_through=WorkerStream(cluster.stream, self.link, cluster.reads),
            writes_through=WorkerDestination(self.link, cluster.dest, cluster.stream,
                                             cluster.batches, latency),
            leases_through=self.store,
            **{**SETTINGS, **overrides},
        )
        self.gone_at: float | None = None
        self.died = False

    @property
    def coordinator(self) -> ShardCoordinator:
        return self.replication.coordinator

    @property
    def live(self) -> bool:
        return self.gone_at is None

    async def start(self) -> None:
        await self.replication.__aenter__()

    async def stop(self) -> None:
        """Graceful: drain, final checkpoints, release the leases."""
        self.gone_at = CLOCK.stamp()
        await self.replication.shutdown()

    def kill(self) -> None:
        """Abrupt: the process is gone. Nothing it sends arrives any more (not even the
        lease releases its shutdown path tries), so other workers must wait for its leases
        to expire. Its coordinator task is cancelled and left to unwind."""
        self.link.cut = True
        self.died = True
        self.gone_at = CLOCK.stamp()
        assert self.replication.task is not None
        self.replication.task.cancel()


class Cluster:
    """The shared fakes, the workers, and the logs every worker writes into."""

    def __init__(self) -> None:
        self.stream = FakeStream()
        self.dest = FakeDestination()
        self.store = FakeLeaseStore()
        self.checkpoints = guard_checkpoints(self.stream, self.dest, self.store)
        self.lease_writes = time_lease_writes(self.store)
        self.batches: list[TimedBatch] = []
        self.reads: list[Read] = []
        self.workers: dict[str, Worker] = {}
        #: Workers cut off from the lease table: their UpdateItems time out.
        self.partitioned: set[str] = set()
        self.store.fault = lambda call: (
            timed_out(call)
            if call.operation == "UpdateItem" and CALLER.get() in self.partitioned else None
        )

    async def __aenter__(self) -> Cluster:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        # After a failed test, stop quietly: its error is the one to report.
        with contextlib.suppress(BaseException) if exc is not None else contextlib.nullcontext():
            for worker in self.workers.values():
                if worker.live:
                    await worker.stop()
        for worker in self.workers.values():
            task = worker.replication.task
            if task is not None and not task.done():
                async with asyncio.timeout(5):
                    await asyncio.wait([task])
            if task is not None and not task.cancelled():
                task.exception()  # retrieved: a dead worker's task may end either way

    def worker(self, name: str, **overrides: Any) -> Worker:
        self.workers[name] = Worker(self, name, **overrides)
        return self.workers[name]

    async def join(self, name: str, **overrides: Any) -> Worker:
        worker = self.worker(name, **overrides)
        await worker.start()
        return worker

    def live(self) -> set[str]:
        return {name for name, worker in self.workers.items() if worker.live}

    def cycles(self) -> dict[str, int]:
        return {name: worker.store.cycles for name, worker in self.workers.items()}

    def running(self) -> set[str]:
        """The shards whose consumer runs, in any live worker."""
        return {key.shard_id for worker in self.workers.values() if worker.live
                for key in worker.coordinator.consumers}

    def lost_races(self) -> int:
        """Takes and steals that failed because another worker changed the row first."""
        return sum(
            1 for worker in self.workers.values() for call in worker.store.updates
            if call.error == "ConditionFailedError" and call.take
        )

    def open_shards(self) -> list[str]:
        return [s.shard_id for s in self.stream.shards.values() if not s.closed]

    def settled(self, rows: dict[str, Lease]) -> bool:
        """Every closed shard finished (row at SHARD_END or deleted), every open shard has a
        row, and the rows are balanced among the live workers."""
        for shard in self.stream.shards.values():
            row = rows.get(shard.shard_id)
            if (shard.closed and row is not None and not row.finished) or (
                not shard.closed and row is None
            ):
                return False
        return balanced(rows, self.live())

    async def settle(self, within: float = 5.0) -> None:
        await self.store.wait_until(self.settled, within)

    async def balanced_after(self, since: dict[str, int], within: float = 5.0) -> int:
        """Wait until the rows are balanced among the live workers; returns how many
        cycles that took: the most any live worker ran since ``since``."""
        live = self.live()
        await self.store.wait_until(lambda rows: balanced(rows, live), within)
        return max(self.workers[name].store.cycles - since.get(name, 0) for name in live)

    async def stays_balanced(self, cycles: int) -> list[dict[str, int]]:
        """Watch every lease-table change during ``cycles`` more cycles of each live worker;
        returns the unbalanced states seen."""
        live = self.live()
        goal = {name: self.workers[name].store.cycles + cycles for name in live}
        seen: list[dict[str, int]] = []

        def check(rows: dict[str, Lease]) -> bool:
            if not balanced(rows, live):
                seen.append(owned(rows))
            return all(self.workers[name].store.cycles >= goal[name] for name in live)

        await self.store.wait_until(check, within=5.0)
        return seen

    async def caught_up(self) -> None:
        await self.store.wait_until(caught_up(self.stream), within=5.0)
        await self.dest.wait_until(lambda table: table == self.stream.source, within=2.0)

    def takes(self) -> dict[tuple[str, str], list[float]]:
        """When each worker took each shard's lease, by (shard, worker)."""
        taken: dict[tuple[str, str], list[float]] = defaultdict(list)
        for write in self.lease_writes:
            if write.taken and write.lease.owner is not None:
                taken[(write.lease.shard_id, write.lease.owner)].append(write.at)
        return taken


# -- the source table's writer -----------------------------------------------------------


class Source:
    """Writes to the source table. As in DynamoDB each key lives in one shard at a time:
    a split hands the parent's keys down to its children, so a key's records run from
    parent to child and only lineage order keeps the newest image last."""

    def __init__(self, stream: FakeStream, seed: int) -> None:
        self.stream = stream
        self.rng = random.Random(seed)
        self.keys: dict[str, list[str]] = {}
        self.version = 0

    def add_roots(self, count: int) -> list[str]:
        roots = []
        for index in range(count):
            shard_id = self.stream.add_shard()
            self.keys[shard_id] = [f"r{index}-k{k}" for k in range(4)]
            roots.append(shard_id)
        return roots

    def write(self, count: int = 1, shard_id: str | None = None) -> None:
        for _ in range(count):
            target = shard_id or self.rng.choice(sorted(self.keys))
            pk = self.rng.choice(self.keys[target])
            self.version += 1
            if self.version % 9 == 0:
                self.stream.delete(target, key_of(pk))
            else:
                self.stream.put(target, item(pk, v=self.version))

    def split(self, shard_id: str) -> list[str]:
        """The parent's last records, the split, then the first records of each child."""
        self.write(4, shard_id)
        keys = self.keys.pop(shard_id)
        children = self.stream.split(shard_id)
        if len(keys) == 1:
            keys = [*keys, f"{shard_id}-new"]
        half = len(keys) // 2
        self.keys[children[0]], self.keys[children[1]] = keys[:half], keys[half:]
        for child in children:
            self.write(4, child)
        return children

    async def run(self, period: float) -> None:
        while True:
            self.write()
            await CLOCK.sleep(period)


# -- checks --------------------------------------------------------------------------------


def owned(rows: dict[str, Lease]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for row in rows.values():
        if not row.finished:
            counts[str(row.owner)] += 1
    return dict(counts)


def balanced(rows: dict[str, Lease], live: set[str]) -> bool:
    """Every active (unfinished) row is owned by a live worker, and each live worker
    owns within one of the fair share, ceil(active / live workers)."""
    active = [row for row in rows.values() if not row.finished]
    counts = dict.fromkeys(live, 0)
    for row in active:
        if row.owner not in counts:
            return False
        counts[row.owner] += 1
    target = math.ceil(len(active) / len(live))
    return all(abs(count - target) <= 1 for count in counts.values())


Tenure = tuple[str, float]  # (worker, when it took the lease)


def tenure_of(takes: dict[tuple[str, str], list[float]], worker: str, shard_id: str,
              at: float) -> Tenure | None:
    """The worker's hold on the shard that a write at ``at`` was made under."""
    before = [taken for taken in takes.get((shard_id, worker), []) if taken <= at]
    return (worker, max(before)) if before else None


def concurrent_writers(cluster: Cluster) -> tuple[list[str], int]:
    """Per shard, the interval from the first to the last write of each hold on its lease
    (a worker, from one take): no two may overlap. Returns the problems and how many
    shards were written under more than one hold."""
    takes = cluster.takes()
    spans: dict[str, dict[Tenure, list[float]]] = defaultdict(dict)
    problems = []
    for batch in cluster.batches:
        for shard_id in batch.shards:
            tenure = tenure_of(takes, batch.worker, shard_id, batch.started)
            if tenure is None:
                problems.append(f"{batch.worker} wrote {shard_id} without holding its lease")
                continue
            span = spans[shard_id].setdefault(tenure, [batch.started, batch.ended])
            span[0], span[1] = min(span[0], batch.started), max(span[1], batch.ended)
    for shard_id, by_tenure in spans.items():
        ordered = sorted(by_tenure.items(), key=lambda entry: entry[1][0])
        for (first, (_, first_end)), (second, (second_start, _)) in itertools.pairwise(ordered):
            if second_start < first_end:
                problems.append(
                    f"{shard_id}: {second[0]} (took it at {second[1]:.3f}) wrote from "
                    f"{second_start:.3f} while {first[0]} (took it at {first[1]:.3f}) "
                    f"wrote until {first_end:.3f}"
                )
    return problems, sum(1 for by_tenure in spans.values() if len(by_tenure) > 1)


def lineage_order(cluster: Cluster) -> tuple[list[str], int]:
    """Every child's first write starts after its parent's last write ended, and the
    parent's last record was applied. Returns the problems and the pairs checked."""
    first_start: dict[str, float] = {}
    last_end: dict[str, float] = {}
    written: set[str] = set()
    for batch in cluster.batches:
        written.update(batch.sequence_numbers)
        for shard_id in batch.shards:
            first_start[shard_id] = min(first_start.get(shard_id, math.inf), batch.started)
            last_end[shard_id] = max(last_end.get(shard_id, -math.inf), batch.ended)
    problems, pairs = [], 0
    for child in cluster.stream.shards.values():
        parent = child.parent_shard_id
        if parent is None or parent not in cluster.stream.shards:
            continue
        records = cluster.stream.records(parent)
        if records and records[-1]["dynamodb"]["SequenceNumber"] not in written:
            problems.append(f"the last record of {parent} was never applied")
        if child.shard_id in first_start and parent in last_end:
            pairs += 1
            if first_start[child.shard_id] < last_end[parent]:
                problems.append(f"{child.shard_id} written from {first_start[child.shard_id]:.3f}"
                                f" before its parent {parent}'s last write ended at "
                                f"{last_end[parent]:.3f}")
    return problems, pairs


@dataclass(frozen=True, slots=True)
class Applied:
    number: int
    shard_id: str
    tenure: Tenure
    at: float


def per_key_order(cluster: Cluster) -> tuple[list[str], int]:
    """No key is written with a record older than (or equal to) one already written,
    except by a later hold on the same shard replaying it from its checkpoint.
    Returns the problems and the number of replayed writes."""
    takes = cluster.takes()
    shard_of = {
        raw["dynamodb"]["SequenceNumber"]: (shard_id, raw)
        for shard_id, shard in cluster.stream.shards.items() for raw in shard.records
    }
    history: dict[KeyId, list[Applied]] = defaultdict(list)
    problems, replays = [], 0
    for batch in sorted(cluster.batches, key=lambda b: b.started):
        for sequence_number in batch.sequence_numbers:
            shard_id, raw = shard_of[sequence_number]
            tenure = tenure_of(takes, batch.worker, shard_id, batch.started)
            if tenure is None:
                continue  # reported by concurrent_writers
            number = sequence_key(sequence_number)
            key = record_key(raw)
            for earlier in history[key]:
                if earlier.number < number:
                    continue
                if earlier.shard_id == shard_id and earlier.tenure[1] < tenure[1]:
                    replays += 1
                    break
                problems.append(f"{sequence_number} of {shard_id} written by {batch.worker} "
                                f"after {earlier.number} of {earlier.shard_id} "
                                f"(written by {earlier.tenure[0]})")
                break
            history[key].append(Applied(number, shard_id, tenure, batch.started))
    return problems, replays


def reapplied_past_checkpoint(cluster: Cluster) -> list[str]:
    """Records applied after a checkpoint covering them was written. A checkpoint says
    "applied up to here", so a new owner may replay only what lies after the last one."""
    covered: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for write in cluster.lease_writes:
        checkpoint = write.lease.checkpoint
        if checkpoint == Sentinel.SHARD_END:
            covered[write.lease.shard_id].append((write.at, math.inf))
        elif checkpoint.isdigit():
            covered[write.lease.shard_id].append((write.at, sequence_key(checkpoint)))
    shard_of = {raw["dynamodb"]["SequenceNumber"]: shard_id
                for shard_id, shard in cluster.stream.shards.items() for raw in shard.records}
    problems = []
    for batch in cluster.batches:
        for sequence_number in batch.sequence_numbers:
            shard_id, number = shard_of[sequence_number], sequence_key(sequence_number)
            if any(at < batch.started and number <= upto for at, upto in covered[shard_id]):
                problems.append(f"{sequence_number} of {shard_id} applied by {batch.worker} "
                                "after a checkpoint covering it was written")
    return problems


def assert_destination_complete(cluster: Cluster) -> None:
    assert reapplied_past_checkpoint(cluster) == []
    assert cluster.dest.violations == []
    assert cluster.dest.table == cluster.stream.source
    for shard_id, shard in cluster.stream.shards.items():
        if shard.records:
            last = shard.records[-1]["dynamodb"]["SequenceNumber"]
            assert unapplied_up_to(cluster.stream, cluster.dest, shard_id, last) == []
    assert cluster.checkpoints == []


def assert_one_writer_per_shard_and_lineage_order(cluster: Cluster) -> tuple[int, int, int]:
    overlaps, handed_over = concurrent_writers(cluster)
    assert overlaps == []
    lineage, pairs = lineage_order(cluster)
    assert lineage == []
    order, replays = per_key_order(cluster)
    assert order == []
    return handed_over, pairs, replays


# -- the tests ---------------------------------------------------------------------------

#: Bounds, in coordinator cycles (the most any live worker ran), for the leases to balance.
#:
#: Joining: a worker below its share steals one lease per cycle. Workers joining together
#: reach for the same lease (the victim's lowest shard id), so in the worst case one steal
#: a cycle succeeds in all; and a worker that owns nothing is not yet seen as live, so the
#: first joiner may steal up to the share of two workers, ceil(active / 2), before the
#: second takes any, then the second steals up to one below its share: steals =
#: ceil(active / 2) + target - 1, plus a cycle for the first look and up to four steals
#: lost to the victim's own renewals and checkpoints (each bumps the row's counter).
#: Leaving gracefully (counted from the end of its shutdown): its rows are released, so
#: free at once: taken in the survivors' next cycle (after the one in flight), or one
#: cycle later for each take a survivor lost to the other reaching for the same row.
#: Dying (counted from its death): its rows expire a lease duration after the last
#: renewal the survivors saw, then are taken in the next cycle.
JOIN_SLACK = 5
LEAVE_BOUND = 3
DEATH_BOUND = math.ceil(LEASE_DURATION / CYCLE) + 3


@pytest.mark.parametrize("leaving", ["stops", "dies"])
async def test_workers_joining_and_leaving_share_a_splitting_stream(leaving: str) -> None:
    cluster = Cluster()
    source = Source(cluster.stream, seed=11)
    roots = source.add_roots(12)
    source.write(48)
    measured: dict[str, tuple[int, int]] = {}

    async with cluster:
        await cluster.join("worker-1")
        await cluster.settle()
        writing = asyncio.create_task(source.run(0.003))
        try:
            # One worker: two parents close and get children while it reads them.
            children = source.split(roots[0]) + source.split(roots[1])
            await cluster.settle()

            # 1 -> 3 workers: the newcomers steal one lease per cycle up to their share.
            since = cluster.cycles()
            await cluster.join("worker-2")
            await cluster.join("worker-3")
            active = len(cluster.open_shards())
            bound = math.ceil(active / 2) + math.ceil(active / 3) - 1 + JOIN_SLACK
            races = cluster.lost_races()
            measured["join"] = (await cluster.balanced_after(since), bound)
            print(f"\njoin: {cluster.lost_races() - races} takes lost to another worker")
            assert await cluster.stays_balanced(cycles=5) == []
            source.split(children[0])
            source.split(roots[2])
            await cluster.settle()

            # 3 -> 2 workers.
            leaver = cluster.workers["worker-2"]
            its_rows = {shard_id for shard_id, row in cluster.store.by_shard().items()
                        if row.owner == "worker-2" and not row.finished}
            if leaving == "stops":
                await leaver.stop()
                assert all(cluster.store.by_shard()[shard_id].owner is None
                           for shard_id in its_rows)  # released
                since = cluster.cycles()
                races = cluster.lost_races()
                cycles = await cluster.balanced_after(since)
                # A cycle more for each take lost to the other survivor.
                measured["leave"] = (cycles, LEAVE_BOUND + cluster.lost_races() - races)
            else:
                since = cluster.cycles()
                leaver.kill()
                measured["death"] = (await cluster.balanced_after(since), DEATH_BOUND)
            assert await cluster.stays_balanced(cycles=5) == []
            source.split(children[1])
            source.split(roots[3])
            await cluster.settle()
        finally:
            writing.cancel()
        await cluster.caught_up()

    for worker in cluster.workers.values():
        if not worker.died:
            assert worker.coordinator.fatal is None
    handed_over, pairs, replays = assert_one_writer_per_shard_and_lineage_order(cluster)
    assert_destination_complete(cluster)
    print(f"\n{leaving}: cycles to balance (measured, bound) {measured}; shards written under "
          f"several holds: {handed_over}; parent/child pairs: {pairs}; replayed writes: "
          f"{replays}; records: {sum(len(s.records) for s in cluster.stream.shards.values())}")
    for what, (cycles, bound) in measured.items():
        assert cycles <= bound, f"{what}: balanced after {cycles} cycles, bound {bound}"
    assert handed_over >= 3
    assert pairs >= 8

    leaver = cluster.workers["worker-2"]
    assert leaver.gone_at is not None
    assert its_rows
    for shard_id in its_rows:
        take = next(w for w in cluster.lease_writes
                    if w.taken and w.lease.shard_id == shard_id and w.at > leaver.gone_at)
        if leaving == "stops":
            # Released at its shutdown: taken from nobody.
            assert take.previous_owner is None
        else:
            # Still its own: taken only once it had stood still for a lease duration
            # after the dead worker's last write to it.
            assert take.previous_owner == "worker-2"
            last = max(w.at for w in cluster.lease_writes
                       if w.lease.shard_id == shard_id and w.lease.owner == "worker-2"
                       and w.at < take.at)
            assert take.at >= last + LEASE_DURATION
    if leaving == "dies":
        # Nothing it sent arrived after it died.
        assert all(b.ended <= leaver.gone_at for b in cluster.batches if b.worker == "worker-2")
        assert all(c.sent <= leaver.gone_at for c in leaver.store.updates)


async def test_a_stolen_lease_is_read_a_lease_duration_later_and_dropped_by_its_victim() -> None:
    cluster = Cluster()
    shards = [cluster.stream.add_shard() for _ in range(6)]
    for shard_id in shards:
        for version in range(3):
            cluster.stream.put(shard_id, item(f"{shard_id}-{version}", v=version))
    # One slow writer per worker, so that a backlog stays queued for a while.
    slow = {"writers": 1, "queue_size": 25, "latency": 0.02}

    async with cluster:
        await cluster.join("worker-1", **slow)
        await cluster.join("worker-2", **slow)
        await cluster.store.wait_until(
            lambda rows: owned(rows) == {"worker-1": 3, "worker-2": 3}
            and cluster.running() == set(shards))
        await cluster.caught_up()
        consumers = {
            key.shard_id: (name, consumer, task)
            for name in ("worker-1", "worker-2")
            for key, (consumer, task) in cluster.workers[name].coordinator.consumers.items()
        }
        stopped: dict[str, float] = {}

        def when_stopped(shard_id: str) -> Callable[[object], None]:
            def record(_: object) -> None:
                stopped.setdefault(shard_id, CLOCK.stamp())
            return record

        for shard_id, (_, _, task) in consumers.items():
            task.add_done_callback(when_stopped(shard_id))
        for shard_id in shards:
            for version in range(150):
                cluster.stream.put(shard_id, item(f"{shard_id}-{version % 40}", v=version))
        # Every shard has records read and queued behind the slow writers.
        await cluster.store.wait_until(
            lambda _: all(consumer.lanes[0].tracker.in_flight > 0
                          for _, consumer, _ in consumers.values()))
        since = cluster.cycles()
        races_before = cluster.lost_races()
        with capture_logs() as logs:
            thief = await cluster.join("worker-3", **slow)
            cycles = await cluster.balanced_after(since)
            await cluster.caught_up()
            ended = CLOCK.stamp()

    joined = min(thief.store.answers)
    thefts = [w for w in cluster.lease_writes
              if w.taken and w.lease.owner == "worker-3" and joined < w.at < ended]
    # One lease a cycle, from the most loaded worker (a tie: the smallest id) down to the
    # fair share of two each.
    assert [w.previous_owner for w in thefts] == ["worker-1", "worker-2"]
    assert cycles <= 2 + JOIN_SLACK + cluster.lost_races() - races_before
    for theft in thefts:
        shard_id, victim = theft.lease.shard_id, str(theft.previous_owner)
        # The thief decided on the lease table as its Query answered; it reads the shard
        # only a lease duration after that, when the victim's fence has surely closed.
        decided = max(at for at in thief.store.answers if at <= theft.at)
        started = min(r.at for r in cluster.reads
                      if r.worker == "worker-3" and r.shard_id == shard_id)
        assert started >= decided + LEASE_DURATION
        victim_renewed = max(w.at for w in cluster.lease_writes
                             if w.lease.shard_id == shard_id and w.lease.owner == victim
                             and w.at < theft.at)
        assert started >= victim_renewed + LEASE_DURATION
        # The victim's next lease write on the shard (checked after the theft, though
        # perhaps sent before it) met the failed condition, well within a lease duration;
        # it changed the row no more, and the shard's consumer stopped.
        after = [c for c in cluster.workers[victim].store.updates
                 if c.shard_id == shard_id and c.answered > theft.at]
        assert after
        assert (after[0].error, after[0].take) == ("ConditionFailedError", False)
        assert all(c.error == "ConditionFailedError" for c in after)
        assert after[0].answered - theft.at < LEASE_DURATION
        assert {"event": "lease lost; shard stopped", "shard_id": shard_id} in [
            {k: entry.get(k) for k in ("event", "shard_id")} for entry in logs]
        owner, consumer, _ = consumers[shard_id]
        assert owner == victim
        assert consumer.state in (ShardState.SHUTTING_DOWN, ShardState.FAILED)
        lost_at = stopped[shard_id]
        assert lost_at >= after[0].answered
        assert [r for r in cluster.reads
                if r.worker == victim and r.shard_id == shard_id and r.at > lost_at] == []
        # Nothing of the shard written by the victim after that, nor once the thief began.
        victim_batches = [b for b in cluster.batches
                          if b.worker == victim and shard_id in b.shards]
        assert all(b.started <= lost_at for b in victim_batches)
        assert all(b.ended < started for b in victim_batches)
        # The records it had queued were dropped (never marked applied); the thief read
        # them again from the victim's checkpoint and applied them.
        assert consumer.lanes[0].tracker.cancelled
        assert consumer.lanes[0].tracker.in_flight > 0
        print(f"\n{shard_id}: stolen from {victim}; thief read it {started - theft.at:.3f}s "
              f"after the take; victim stopped {lost_at - theft.at:.3f}s after it with "
              f"{consumer.lanes[0].tracker.in_flight} records dropped")
    # The other shards' consumers ran on until shutdown.
    kept = set(shards) - {theft.lease.shard_id for theft in thefts}
    assert all(stopped[shard_id] > ended for shard_id in kept)

    assert_one_writer_per_shard_and_lineage_order(cluster)
    assert_destination_complete(cluster)


async def test_a_thief_whose_lease_read_was_slow_still_waits_out_the_victims_fence() -> None:
    # The victim renews while the thief's Query is on the wire, then is cut off from the
    # lease table (its renewals time out) and goes on writing until its fence closes: a
    # lease duration after that renewal was sent. The thief's lease duration (to take an
    # expired lease, or to start a stolen one) must not count from before it read the row.
    cluster = Cluster()
    source = Source(cluster.stream, seed=5)
    first, second = source.add_roots(2)
    source.write(20)
    lease_duration = 0.5
    timing = {"lease_duration": lease_duration}

    async with cluster:
        # The victim's only lease writes are its renewals (no checkpoints meanwhile), so
        # the thief's take lands between two of them.
        await cluster.join("victim", checkpoint_interval=60.0, **timing)
        await cluster.settle()
        await cluster.dest.wait_until(lambda table: table == cluster.stream.source)
        writing = asyncio.create_task(source.run(0.003))
        thief = cluster.worker("thief", **timing)

        async def slow_query() -> None:
            # On the wire for six of the victim's renewals; answered right after the last.
            rows = cluster.store.by_shard()
            goal = {shard_id: rows[shard_id].counter + 6 for shard_id in (first, second)}
            await cluster.store.wait_until(
                lambda rows: all(rows[s].counter >= goal[s] for s in goal), within=5.0)

        thief.store.hold_first_query = slow_query
        chained = cluster.store.observer

        def cut_off_the_victim_once_robbed(operation: str, lease: Lease) -> None:
            if chained is not None:
                chained(operation, lease)
            if lease.owner == "thief":
                cluster.partitioned.add("victim")

        cluster.store.observer = cut_off_the_victim_once_robbed
        try:
            await thief.start()
            await cluster.store.wait_until(
                lambda rows: all(rows[s].owner == "thief" for s in (first, second)),
                within=5.0)
            # Both shards are read by the thief now; let it write a while.
            await cluster.store.wait_for_calls("Query", cluster.store.counts["Query"] + 10)
        finally:
            writing.cancel()
        cluster.partitioned.clear()  # the victim hears it lost both leases
        await cluster.caught_up()

    assert cluster.store.injected["UpdateItem"] > 0  # the victim was cut off
    for shard_id in (first, second):
        taken = min(w.at for w in cluster.lease_writes
                    if w.taken and w.lease.shard_id == shard_id and w.lease.owner == "thief")
        victim_renewed = max(w.at for w in cluster.lease_writes
                             if w.lease.shard_id == shard_id and w.lease.owner == "victim"
                             and w.at < taken)
        thief_started = min(r.at for r in cluster.reads
                            if r.worker == "thief" and r.shard_id == shard_id)
        assert thief_started >= victim_renewed + lease_duration, (
            f"{shard_id}: thief read from {thief_started - victim_renewed:.3f}s after the "
            f"victim's last renewal (taken {taken - victim_renewed:.3f}s after it)")
    assert_one_writer_per_shard_and_lineage_order(cluster)
    assert_destination_complete(cluster)


async def test_a_lineage_rolled_over_many_times_is_read_once() -> None:
    # DynamoDB closes a shard every few hours and opens its child, and lists a day of
    # them. Finished rows are deleted as their children are read, parent first: a shard
    # listed without a row whose descendant was read is done, not new.
    cluster = Cluster()
    stream = cluster.stream
    version = 0

    def roll(shard_id: str) -> str:
        nonlocal version
        for _ in range(6):
            version += 1
            stream.put(shard_id, item(f"hot{version % 3}", v=version))
        (child,) = stream.split(shard_id, children=1)
        version += 1
        stream.put(child, item(f"hot{version % 3}", v=version))
        return child

    def read(shard_id: str) -> Callable[[dict[str, Lease]], bool]:
        return lambda rows: shard_id in rows and progressed(rows[shard_id])

    current = stream.add_shard()
    stream.put(current, item("hot0", v=0))
    for _ in range(3):
        current = roll(current)

    async with cluster:
        await cluster.join("worker-a")
        await cluster.join("worker-b")
        for _ in range(3):
            await cluster.store.wait_until(read(current))
            current = roll(current)
        # Every finished row is deleted; then many more cycles bring none back.
        await cluster.store.wait_until(lambda rows: set(rows) == {current})
        await cluster.store.wait_for_calls("Query", cluster.store.counts["Query"] + 20)
        await cluster.caught_up()

    created = Counter(w.lease.shard_id for w in cluster.lease_writes if w.operation == "PutItem")
    assert created == Counter(dict.fromkeys(stream.shards, 1))
    assert set(cluster.store.by_shard()) == {current}
    assert_one_writer_per_shard_and_lineage_order(cluster)
    assert_destination_complete(cluster)
