"""The shard coordinator: discovers shards, holds leases, runs a consumer per shard.

Every ``coordinator_interval`` it reads the stream's lease rows and applies the
decisions of ``balance`` and ``lineage``; every ``shard_sync_interval``, and
whenever a shard ends, it lists the shards again. One TaskGroup owns the writer
pool, the lease renewer and the consumers, so shutdown happens in order; see
docs/DESIGN.md ("Tasks, shutdown and errors").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog

from replicator.backoff import Backoff
from replicator.checkpoint import Sentinel
from replicator.clock import Clock, first_of, within
from replicator.errors import ConditionFailedError, LeaseLostError, ReplicatorError
from replicator.lease import Lease, ShardKey
from replicator.leases.expiry import LeaseExpiry
from replicator.leases.held import HeldLease
from replicator.protocols import LeaseStore, StreamReader
from replicator.records import Shard
from replicator.stats import Stats
from replicator.stream.balance import plan_steal, plan_takes
from replicator.stream.consumer import DETACH_AFTER, ShardConsumer, ShardState
from replicator.stream.lineage import parent_done, plan_deletions, plan_new_leases
from replicator.stream.writer import WriterPool

log = structlog.get_logger("replicator.coordinator")


@dataclass(frozen=True, slots=True)
class CoordinatorSettings:
    worker_id: str
    initial_position: Sentinel
    get_records_limit: int
    idle_interval: float
    checkpoint_interval: float
    coordinator_interval: float
    shard_sync_interval: float
    lease_duration: float
    lease_renew_interval: float
    shutdown_timeout: float
    #: How long a destination write may take, timeout and safety margin included: a
    #: write starts only if it ends before this worker's hold on the lease could lapse.
    write_window: float = 0.0
    skip_trimmed: bool = False
    #: Seconds a shard's reader waits on a destination that cannot take a record before
    #: it reads on without it (see ``replicator.stream.lanes``).
    detach_after: float = DETACH_AFTER


@dataclass(frozen=True, slots=True)
class SourceStream:
    """A source table's stream and the writer pools of its destinations."""

    #: The source table's name (in logs and metrics).
    source: str
    stream_arn: str
    streams: StreamReader
    #: The writers of each destination, by destination name.
    pools: Mapping[str, WriterPool]
    #: A bootstrap copy of this source began but never finished, and this worker does
    #: not copy (bootstrap ``never``): the ``SINCE:``/``AT:`` starts that copy recorded
    #: hold only with the copy, so those shards start at ``initial_position`` instead.
    copy_unfinished: bool = False
    #: Leases a bootstrap copy took and handed over, by shard id, with the iterators it
    #: read the shards' heads with.
    adopted: Mapping[str, tuple[HeldLease, str]] = field(default_factory=dict)
    #: Where a destination starts on a shard whose row does not name it, when not at
    #: the row's checkpoint: a ``SINCE:`` start for a destination that joined the
    #: topology, None for one joining it now (being copied; see ``destination_ready``).
    starts: dict[str, str | None] = field(default_factory=dict)


class ShardCoordinator:
    """Holds this worker's share of the leases of every source stream of the task and
    runs a consumer per held shard. Everything is keyed by (stream ARN, shard id)."""

    def __init__(
        self,
        *,
        sources: list[SourceStream],
        store: LeaseStore,
        stats: Stats,
        settings: CoordinatorSettings,
        stop: asyncio.Event,
        clock: Clock,
        backoff: Backoff | None = None,
    ) -> None:
        self.sources = {source.stream_arn: source for source in sources}
        self._store = store
        self._stats = stats
        self._settings = settings
        self._stop = stop
        self._backoff = backoff or Backoff()
        self._clock = clock
        self._expiry = LeaseExpiry(settings.lease_duration)
        self._wake = asyncio.Event()
        self._shards: dict[str, list[Shard]] = {arn: [] for arn in self.sources}
        self._last_shard_sync = float("-inf")
        self.held: dict[ShardKey, HeldLease] = {}
        #: Iterators to start shards from instead of their checkpoints: a bootstrap
        #: copy handed over the leases it took and the iterators it read the heads with.
        self._start_iterators: dict[ShardKey, str] = {}
        for source in sources:
            for shard_id, (held, iterator) in source.adopted.items():
                key = ShardKey(source.stream_arn, shard_id)
                self.held[key] = held
                self._start_iterators[key] = iterator
        self.consumers: dict[ShardKey, tuple[ShardConsumer, asyncio.Task[None]]] = {}
        #: The consumers of the held shards that have been started, kept past their
        #: end for the final checkpoint.
        self.started: dict[ShardKey, ShardConsumer] = {}
        #: The error that ended the service (poison record, data loss, ...), if any.
        self.fatal: ReplicatorError | None = None

    def __repr__(self) -> str:
        return (
            f"<ShardCoordinator worker={self._settings.worker_id} held={len(self.held)} "
            f"running={len(self.consumers)}>"
        )

    @property
    def pools(self) -> list[WriterPool]:
        return [pool for source in self.sources.values() for pool in source.pools.values()]

    def queue_depth(self) -> int:
        return sum(pool.queue_depth() for pool in self.pools)

    def consumer_of(self, shard_id: str, stream_arn: str | None = None) -> ShardConsumer:
        """The running consumer of a shard (of the only stream, unless one is named)."""
        for (arn, shard), (consumer, _) in self.consumers.items():
            if shard == shard_id and stream_arn in (None, arn):
                return consumer
        raise KeyError(shard_id)

    def destination_ready(self, stream_arn: str, destination: str, start: str) -> None:
        """A destination joining the topology has been copied: it starts at ``start`` on
        every shard of the stream, those running now (by a catch-up reader each) and
        those started later."""
        self.sources[stream_arn].starts[destination] = start
        for key, (consumer, _) in self.consumers.items():
            if key.stream_arn == stream_arn:
                consumer.unpark(destination, start)
        log.info("destination copied; streaming to it", destination=destination,
                 source=self.sources[stream_arn].source, start=start)

    async def run(self) -> None:
        """Replicate until ``stop`` is set, then shut down in order."""
        for key, held in self.held.items():  # handed over by a bootstrap copy
            log.info("lease taken", shard_id=key.shard_id, previous_owner=None,
                     checkpoint=held.lease.checkpoint, stolen=False, handed_over=True)
        async with asyncio.TaskGroup() as group:
            writers = group.create_task(self._run_writers(), name="writer-pools")
            renewer = group.create_task(self._renew_loop(), name="lease-renewer")
            try:
                await self._lease_loop(group)
            finally:
                deadline = self._clock.monotonic() + self._settings.shutdown_timeout
                # The last part of the deadline is kept for the final checkpoints, so
                # that writers stuck on a dead destination cannot take it all.
                reserve = min(self._settings.write_window or 1.0,
                              self._settings.shutdown_timeout / 4)
                await self._stop_consumers()
                await self._drain(writers, deadline - reserve)
                await self._final_checkpoints(deadline)
                renewer.cancel()

    async def _run_writers(self) -> None:
        async with asyncio.TaskGroup() as group:
            for pool in self.pools:
                group.create_task(pool.run(), name=f"writers-{pool.path[1]}")

    # -- the lease cycle ---------------------------------------------------------

    async def _lease_loop(self, group: asyncio.TaskGroup) -> None:
        while not self._stop.is_set():
            # Cleared before the cycle, so a shard ending during it wakes the next one.
            sync_shards = self._wake.is_set()
            self._wake.clear()
            try:
                await self._cycle(group, sync_shards=sync_shards)
            except ReplicatorError as exc:
                if not exc.retriable:
                    self._fail(exc)
                    return
                self._stats.count_retry(exc)
                log.warning("coordinator cycle failed; trying again", error=str(exc))
            await first_of(self._stop.wait(), self._wake.wait(),
                           self._clock.sleep(self._settings.coordinator_interval))

    async def _cycle(self, group: asyncio.TaskGroup, *, sync_shards: bool) -> None:
        now = self._clock.monotonic()
        sync = sync_shards or now - self._last_shard_sync >= self._settings.shard_sync_interval
        if sync:
            for arn, source in self.sources.items():
                self._shards[arn] = await source.streams.list_shards(arn)
            self._last_shard_sync = now
        by_stream = {arn: await self._stream_leases(arn) for arn in self.sources}
        # A counter seen in these rows may have been written (and its owner's fence
        # renewed) while DescribeStream or this Query was on the wire: expiry, and a
        # stolen lease's wait, count from the answer, not from the start of the cycle.
        now = self._clock.monotonic()
        every = [lease for leases in by_stream.values() for lease in leases.values()]
        if not every:
            return
        self._expiry.observe(every, now)
        worker_id = self._settings.worker_id
        takes = plan_takes(every, worker_id, self._expiry, now, held=set(self.held))
        for lease in takes:
            await self._take(lease)
        if not takes:
            victim = plan_steal(every, worker_id, self._expiry, now, held=set(self.held))
            if victim is not None:
                # Its owner may write until its own fence closes, a lease duration
                # after its last renewal at the latest: start reading only then.
                await self._take(victim, start_after=now + self._settings.lease_duration)

        if self._stop.is_set():
            # A shard failed (or shutdown began) while this cycle waited on the table:
            # starting a consumer now would restart the failed shard and replace the
            # consumer its final checkpoint is taken from.
            return
        for key, held in list(self.held.items()):
            leases = by_stream[key.stream_arn]
            listed = {shard.shard_id for shard in self._shards[key.stream_arn]}
            if (
                key not in self.consumers
                and not held.lost
                and now >= held.start_after
                and not held.lease.finished
                and key.shard_id in leases
                and parent_done(key.shard_id, leases, listed)
            ):
                self._start(group, key, held)

    async def _stream_leases(self, stream_arn: str) -> dict[str, Lease]:
        """The stream's lease rows by shard id, after creating the rows of new shards
        and deleting the finished rows nobody needs."""
        shards = self._shards[stream_arn]
        leases = {lease.shard_id: lease for lease in await self._store.list_leases(stream_arn)}
        for lease in plan_new_leases(stream_arn, shards, leases,
                                     self._settings.initial_position):
            if await self._store.create_lease(lease):
                log.info("lease created", shard_id=lease.shard_id, checkpoint=lease.checkpoint)
                leases[lease.shard_id] = lease
        for lease in plan_deletions(leases, shards) if leases else []:
            with contextlib.suppress(ConditionFailedError):
                await self._store.delete_lease(lease)
                log.info("finished lease deleted", shard_id=lease.shard_id)
            del leases[lease.shard_id]
        return leases

    async def _take(self, lease: Lease, *, start_after: float = float("-inf")) -> None:
        sent_at = self._clock.monotonic()
        try:
            taken = await self._store.update_lease(lease, new_owner=self._settings.worker_id)
        except ConditionFailedError:
            return  # another worker was faster
        log.info("lease taken", source=self.sources[lease.stream_arn].source,
                 shard_id=lease.shard_id, previous_owner=lease.owner,
                 checkpoint=taken.checkpoint, stolen=start_after > sent_at)
        self.held[lease.key] = HeldLease(
            self._store, taken, clock=self._clock, lease_duration=self._settings.lease_duration,
            sent_at=sent_at, start_after=start_after,
        )

    def _start(self, group: asyncio.TaskGroup, key: ShardKey, held: HeldLease) -> None:
        settings = self._settings
        source = self.sources[key.stream_arn]
        consumer = ShardConsumer(
            stream_arn=key.stream_arn,
            source=source.source,
            lease=held,
            streams=source.streams,
            pools=source.pools,
            starts=source.starts,
            stats=self._stats,
            get_records_limit=settings.get_records_limit,
            idle_interval=settings.idle_interval,
            checkpoint_interval=settings.checkpoint_interval,
            detach_after=settings.detach_after,
            skip_trimmed=settings.skip_trimmed,
            backoff=self._backoff,
            clock=self._clock,
            start_iterator=self._start_iterators.pop(key, None),
            instead_of_copy_start=settings.initial_position if source.copy_unfinished else None,
        )
        task = group.create_task(self._run_consumer(key, consumer),
                                 name=f"shard-{source.source}-{key.shard_id}")
        self.consumers[key] = (consumer, task)
        self.started[key] = consumer
        # The lag counts the shard's records until its lease is given up: queued records
        # still wait while its reader is stopped at shutdown.
        for lane in consumer.lanes:
            self._stats.trackers[lane.key] = lane
            self._stats.readings[lane.key] = consumer.reading

    async def _run_consumer(self, key: ShardKey, consumer: ShardConsumer) -> None:
        structlog.contextvars.bind_contextvars(source=self.sources[key.stream_arn].source)
        try:
            state = await consumer.run()
        except LeaseLostError as exc:
            log.warning("lease lost; shard stopped", shard_id=key.shard_id, error=str(exc))
            self.held.pop(key, None)
            self._forget(key)
        except ReplicatorError as exc:
            exc.add_note(f"shard {key.shard_id} of {self.sources[key.stream_arn].source}")
            self._fail(exc)
        else:
            if state is ShardState.SHARD_END:
                self.held.pop(key, None)
                self._forget(key)
                self._wake.set()  # its children are probably listed by now
        finally:
            self.consumers.pop(key, None)

    def _forget(self, key: ShardKey) -> None:
        consumer = self.started.pop(key, None)
        if consumer is not None:
            for lane in consumer.lanes:
                self._stats.trackers.pop(lane.key, None)
                self._stats.readings.pop(lane.key, None)

    def fail(self, exc: ReplicatorError) -> None:
        """Stop the service with ``exc`` (the first such error is the one reported)."""
        self._fail(exc)

    def _fail(self, exc: ReplicatorError) -> None:
        if self.fatal is None:
            self.fatal = exc
        log.error("replication failed", error=str(exc))
        self._stop.set()

    # -- lease renewal -----------------------------------------------------------

    async def _renew_loop(self) -> None:
        while True:
            await self._clock.sleep(self._settings.lease_renew_interval)
            async with asyncio.TaskGroup() as group:
                for held in list(self.held.values()):
                    if not held.lost:  # released at SHARD_END, or already known lost
                        group.create_task(self._renew(held))

    async def _renew(self, held: HeldLease) -> None:
        try:
            await held.renew()
        except LeaseLostError as exc:
            log.warning("lease lost; shard stopped", shard_id=held.shard_id, error=str(exc))
            self._drop(held)
        except ReplicatorError as exc:
            # The shard's reader and writers wait on the lease's fence once it closes,
            # so nothing is read or written after another worker could take the lease.
            # The next renewal either reopens the fence or finds the lease taken.
            self._stats.count_retry(exc)
            paused = not held.fence.allows(self._clock.monotonic(), self._settings.write_window)
            log.warning("lease renewal failed", shard_id=held.shard_id, error=str(exc),
                        writes_paused=paused)

    def _drop(self, held: HeldLease) -> None:
        """Stop a shard whose lease is gone: no more reads, its pending writes dropped."""
        held.abandon()  # wakes writers waiting on its fence, which then drop its records
        key = held.lease.key
        if self.held.get(key) is held:
            del self.held[key]
            self._forget(key)
        running = self.consumers.get(key)
        if running is not None and running[0].lease is held:
            consumer, task = running
            for lane in consumer.lanes:
                lane.tracker.cancelled = True
            task.cancel()

    # -- shutdown ----------------------------------------------------------------

    async def _stop_consumers(self) -> None:
        tasks = [task for _, task in self.consumers.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _drain(self, writers: asyncio.Task[None], deadline: float) -> None:
        # Queued records are left to the next owner: they are not checkpointed.
        for pool in self.pools:
            pool.close(abandon_queued=True)
        timer = asyncio.ensure_future(
            self._clock.sleep(max(0.0, deadline - self._clock.monotonic())))
        try:
            await asyncio.wait([writers, timer], return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        if not writers.done():
            log.warning("shutdown deadline reached before the writers drained",
                        queued=self.queue_depth())
            writers.cancel()
            await asyncio.wait([writers])

    async def _final_checkpoints(self, deadline: float) -> None:
        """Checkpoint what was applied and release every lease, so others may take them at once."""
        async def finish(key: ShardKey, held: HeldLease) -> None:
            consumer = self.started.get(key)
            pending = consumer.pending_checkpoint() if consumer is not None else None
            checkpoint, values = pending if pending is not None else (None, None)
            try:
                await held.release(checkpoint, values)
            except ReplicatorError as exc:
                log.warning("could not release lease", shard_id=key.shard_id, error=str(exc))
                return
            if consumer is not None and values is not None:
                consumer.checkpointed(values)
                self._stats.checkpoints_written += 1
                self._stats.changed.notify()
            log.info("lease released", shard_id=key.shard_id,
                     checkpoint=checkpoint or held.lease.checkpoint)

        async def finish_all() -> None:
            async with asyncio.TaskGroup() as group:
                for key, held in list(self.held.items()):
                    if not held.lost:
                        group.create_task(finish(key, held))

        remaining = max(0.1, deadline - self._clock.monotonic())
        with contextlib.suppress(TimeoutError):
            await within(self._clock, remaining, finish_all())
        self.held.clear()
        for key in list(self.started):
            self._forget(key)
