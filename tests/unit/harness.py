"""The real ShardCoordinator, WriterPool and ShardConsumers wired to the fakes.

Also the checks several tests share: which stream records the destination has
applied (traced through the fakes' shared dicts), and "no checkpoint ever
covers an unapplied record".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from replicator.backoff import Backoff
from replicator.checkpoint import Sentinel, is_sentinel
from replicator.lease import Lease, ShardKey
from replicator.leases.held import HeldLease
from replicator.protocols import DestinationWriter, LeaseStore, StreamReader
from replicator.records import Item, KeyId, key_id, sequence_key
from replicator.rules.selection import IDENTITY, Rules
from replicator.stats import Stats
from replicator.stream.coordinator import CoordinatorSettings, ShardCoordinator, SourceStream
from replicator.stream.lineage import progressed
from replicator.stream.writer import WriterPool
from tests.clock import VirtualClock
from tests.fakes import FakeDestination, FakeLeaseStore, FakeStream

#: Backoff for tests: retries after at most 2 ms.
FAST = Backoff(base=0.0005, cap=0.002)
WORKER = "worker-1"
#: The clock of every unit test: the virtual time of the test's event loop.
CLOCK = VirtualClock()


def settings(**overrides: Any) -> CoordinatorSettings:
    values: dict[str, Any] = {
        "worker_id": WORKER,
        "initial_position": Sentinel.TRIM_HORIZON,
        "get_records_limit": 10,
        "idle_interval": 0.005,
        "checkpoint_interval": 0.01,
        "coordinator_interval": 0.02,
        "shard_sync_interval": 0.02,
        "lease_duration": 30.0,
        "lease_renew_interval": 0.05,
        "shutdown_timeout": 2.0,
        "skip_trimmed": False,
    }
    values.update(overrides)
    return CoordinatorSettings(**values)


class Replication:
    """One worker replicating ``stream`` into ``destination``, run in a background task.

    ``async with Replication(...) as r:`` starts it; leaving the block stops it
    gracefully (drain, final checkpoints, lease release) and re-raises whatever
    the coordinator raised.

    ``reads_through``, ``writes_through`` and ``leases_through`` put a wrapper
    (recording, slow, failing) between this worker and the shared fakes; several
    ``Replication`` objects with their own ``worker_id`` over one set of fakes
    are several workers. The writer pool gets the settings' ``write_window``.
    """

    def __init__(self, stream: FakeStream, destination: FakeDestination, store: FakeLeaseStore,
                 *, writers: int = 4, queue_size: int = 100, backoff: Backoff = FAST,
                 reads_through: StreamReader | None = None,
                 writes_through: DestinationWriter | None = None,
                 leases_through: LeaseStore | None = None,
                 adopted: dict[str, tuple[HeldLease, str]] | None = None,
                 copy_unfinished: bool = False, rules: Rules = IDENTITY,
                 **overrides: Any) -> None:
        self.stream = stream
        self.destination = destination
        self.store = store
        self.stats = Stats()
        self.stop = asyncio.Event()
        self.settings = settings(**overrides)
        self.pool = WriterPool(writes_through or destination, writers=writers,
                               queue_size=queue_size, stats=self.stats, backoff=backoff,
                               write_window=self.settings.write_window, clock=CLOCK,
                               path=("source", "destination"), rules=rules)
        self.coordinator = ShardCoordinator(
            sources=[SourceStream(source="source", stream_arn=stream.stream_arn,
                                  streams=reads_through or stream,
                                  pools={"destination": self.pool}, adopted=adopted or {},
                                  copy_unfinished=copy_unfinished)],
            store=leases_through or store, stats=self.stats,
            settings=self.settings, stop=self.stop, backoff=backoff, clock=CLOCK,
        )
        self.task: asyncio.Task[None] | None = None

    def key(self, shard_id: str) -> ShardKey:
        """A shard of this replication's stream, as the coordinator keys it."""
        return ShardKey(self.stream.stream_arn, shard_id)

    async def __aenter__(self) -> Replication:
        self.task = asyncio.create_task(self.coordinator.run(), name="coordinator")
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is None:
            await self.shutdown()
            return
        # The test failed already: stop quietly, its error is the one to report.
        with contextlib.suppress(BaseException):
            await self.shutdown()

    async def shutdown(self, within: float = 5.0) -> None:
        self.stop.set()
        await self.ended(within)

    async def ended(self, within: float = 5.0) -> None:
        """Wait until the coordinator has returned (stopped by a fatal error, or by ``stop``)."""
        assert self.task is not None
        async with asyncio.timeout(within):
            await asyncio.shield(self.task)


def deleted_when_finished(store: FakeLeaseStore, shard_id: str) -> bool:
    """Whether the shard's row was deleted at SHARD_END: a finished parent's row goes
    once all its children have been read (``plan_deletions``), which may happen while
    they are still being read, or just before a test ends."""
    return any(operation == "DeleteItem" and row.shard_id == shard_id and row.finished
               for operation, row in store.history)


def finished_and_released(store: FakeLeaseStore, shard_id: str) -> bool:
    """The shard's row is at SHARD_END with no owner, or was deleted at SHARD_END."""
    row = store.row(shard_id)
    if row is None:
        return deleted_when_finished(store, shard_id)
    return (row.checkpoint, row.owner) == (Sentinel.SHARD_END, None)


def caught_up(stream: FakeStream) -> Callable[[dict[str, Lease]], bool]:
    """For ``FakeLeaseStore.wait_until``: every closed shard's row is at SHARD_END and
    every open shard's row has checkpointed its last record."""

    def read_below(shard_id: str, rows: dict[str, Lease]) -> bool:
        """Whether a child was read, or (its row deleted in turn) a later descendant."""
        for child in stream.shards.values():
            if child.parent_shard_id != shard_id:
                continue
            row = rows.get(child.shard_id)
            if (row is not None and progressed(row)) or (
                row is None and child.closed and read_below(child.shard_id, rows)
            ):
                return True
        return False

    def check(rows: dict[str, Lease]) -> bool:
        for shard_id, shard in stream.shards.items():
            if not shard.listed:
                continue
            row = rows.get(shard_id)
            if row is None:
                # A finished parent's row is deleted once its children have been read.
                if shard.closed and (any(
                    child.parent_shard_id == shard_id and progressed(child)
                    for child in rows.values()
                ) or read_below(shard_id, rows)):
                    continue
                return False
            if shard.closed:
                if not row.finished:
                    return False
            elif shard.records and row.checkpoint != shard.sequence_numbers[-1]:
                return False
        return True

    return check


# -- when things happened ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimedBatch:
    """One BatchWriteItem that a worker sent and the destination answered."""

    worker: str
    started: float
    ended: float
    #: Sequence numbers of the records whose requests the batch carried.
    sequence_numbers: tuple[str, ...]
    #: The shards those records came from.
    shards: frozenset[str]


class RecordingDestination:
    """A ``DestinationWriter`` in front of a (shared) ``FakeDestination`` that logs, for
    each batch, the worker that sent it, the shards of its records and when it ran
    (``CLOCK``). Several workers may log into one list."""

    def __init__(self, destination: FakeDestination, stream: FakeStream, *,
                 worker: str = WORKER, log: list[TimedBatch] | None = None,
                 latency: float = 0.0) -> None:
        self.destination = destination
        self.stream = stream
        self.worker = worker
        self.log: list[TimedBatch] = [] if log is None else log
        #: Seconds each batch spends on the way before the destination applies it.
        self.latency = latency

    async def batch_write(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        started = CLOCK.stamp()
        if self.latency:
            await CLOCK.sleep(self.latency)
        left = await self.destination.batch_write(requests)
        unprocessed = {id(request) for request in left}
        payloads = [
            request["PutRequest"]["Item"] if "PutRequest" in request
            else request["DeleteRequest"]["Key"]
            for request in requests
            if id(request) not in unprocessed
        ]
        self.log.append(TimedBatch(
            worker=self.worker,
            started=started,
            ended=CLOCK.stamp(),
            sequence_numbers=tuple(
                self.stream.record_of(payload)["dynamodb"]["SequenceNumber"]
                for payload in payloads
            ),
            shards=frozenset(self.stream.shard_of(payload) for payload in payloads),
        ))
        return left

    def batches_of(self, shard_id: str) -> list[TimedBatch]:
        return [batch for batch in self.log if shard_id in batch.shards]


@dataclass(frozen=True, slots=True)
class LeaseWrite:
    """A successful write to the lease table, with the owner the row had before it."""

    at: float
    operation: str
    lease: Lease
    previous_owner: str | None

    @property
    def taken(self) -> bool:
        """Whether this write gave the row to a (new) owner."""
        return (
            self.operation == "UpdateItem" and self.lease.owner is not None
            and self.lease.owner != self.previous_owner
        )


def time_lease_writes(store: FakeLeaseStore) -> list[LeaseWrite]:
    """Log every successful write to ``store`` with its time (``CLOCK``).

    Chains to the observer already set (``guard_checkpoints``), so call it after that.
    """
    writes: list[LeaseWrite] = []
    owners = {shard_id: lease.owner for shard_id, lease in store.by_shard().items()}
    chained = store.observer

    def observe(operation: str, lease: Lease) -> None:
        writes.append(LeaseWrite(CLOCK.stamp(), operation, lease, owners.get(lease.shard_id)))
        owners[lease.shard_id] = None if operation == "DeleteItem" else lease.owner
        if chained is not None:
            chained(operation, lease)

    store.observer = observe
    return writes


# -- tracing writes back to stream records -------------------------------------------


def applied_sequence_numbers(stream: FakeStream, destination: FakeDestination) -> list[str]:
    """The sequence numbers of the records whose writes the destination applied, in order."""
    return [
        stream.record_of(write.payload)["dynamodb"]["SequenceNumber"]
        for write in destination.log
    ]


def record_key(raw: dict[str, Any]) -> KeyId:
    keys: Item = raw["dynamodb"]["Keys"]
    return key_id(keys)


def unapplied_up_to(stream: FakeStream, destination: FakeDestination, shard_id: str,
                    checkpoint: str) -> list[str]:
    """Records of the shard at or below ``checkpoint`` that are neither applied nor
    superseded by an applied later record of the same key."""
    if is_sentinel(checkpoint):
        return []
    newest_applied: dict[KeyId, int] = defaultdict(lambda: -1)
    for write in destination.log:
        raw = stream.record_of(write.payload)
        number = sequence_key(raw["dynamodb"]["SequenceNumber"])
        key = record_key(raw)
        newest_applied[key] = max(newest_applied[key], number)
    limit = sequence_key(checkpoint)
    missing = []
    for raw in stream.records(shard_id):
        number = sequence_key(raw["dynamodb"]["SequenceNumber"])
        if number <= limit and newest_applied[record_key(raw)] < number:
            missing.append(raw["dynamodb"]["SequenceNumber"])
    return missing


def guard_checkpoints(stream: FakeStream, destination: FakeDestination,
                      store: FakeLeaseStore) -> list[str]:
    """Check every checkpoint the store is given; returns the list of violations found."""
    violations: list[str] = []

    def observe(operation: str, lease: Lease) -> None:
        if operation != "UpdateItem" or lease.shard_id not in stream.shards:
            return
        missing = unapplied_up_to(stream, destination, lease.shard_id, lease.checkpoint)
        if missing:
            violations.append(
                f"checkpoint {lease.checkpoint} of {lease.shard_id} covers unapplied {missing}"
            )
        if lease.checkpoint == Sentinel.SHARD_END:
            last = stream.records(lease.shard_id)[-1:]
            if last and unapplied_up_to(stream, destination, lease.shard_id,
                                        last[0]["dynamodb"]["SequenceNumber"]):
                violations.append(f"{lease.shard_id} marked SHARD_END with records unapplied")

    store.observer = observe
    return violations


def duplicate_writes(stream: FakeStream, destination: FakeDestination) -> list[str]:
    """Records written more than once, or written after a later record of their key."""
    problems = []
    seen: set[str] = set()
    newest: dict[KeyId, int] = {}
    for write in destination.log:
        raw = stream.record_of(write.payload)
        sequence_number = raw["dynamodb"]["SequenceNumber"]
        if sequence_number in seen:
            problems.append(f"{sequence_number} applied twice")
        seen.add(sequence_number)
        key = record_key(raw)
        if newest.get(key, -1) > sequence_key(sequence_number):
            problems.append(f"{sequence_number} applied after a newer record of its key")
        newest[key] = max(newest.get(key, -1), sequence_key(sequence_number))
    return problems
