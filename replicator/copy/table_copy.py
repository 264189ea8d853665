"""The bootstrap copy: what the source table holds, copied before streaming starts.

The hand-off to the stream is race-free. Before the first Scan, every open
shard gets a lease row at ``SINCE:<second>``, the second the copy began by the
service's clock (the one that stamps the records' creation times), less one:
the stream reads such a shard from its TRIM_HORIZON but skips every record
created before that second, since the copy holds its effect already. A copied
item may be older than a streamed one, and the stream wins because it is
applied later. Closed shards end before the copy began: their rows start at
SHARD_END.

A watcher per open shard reads it from LATEST (taken before the scan began).
At the first record written after that moment it moves the row to
``AT:<sequence number>``, so the stream reads only what was written during the
copy. When no record was written, the copying worker takes the shard's lease
at the end of the copy and its stream goes on from the watcher's iterator
(``HandedOver``): nothing before the copy is read at all. A crash at any step
leaves the rows at ``SINCE:`` or ``AT:``, both safe starts.

The copy's progress lives in the checkpoint table, in rows under the key
``copy|<stream ARN>``. A header row ``copy`` holds ``RUNNING/<segments>/<second>``
or ``DONE``, and its owner and counter make it a lease: one worker copies,
the others wait, and if the copier dies another takes the copy over once
the lease expires. One row per Scan segment holds ``START``, the
LastEvaluatedKey reached (as JSON), or ``DONE``. It is written after each
page has been written to the destination, so a resumed copy neither skips
items nor copies finished segments again. See docs/DESIGN.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from replicator.apply.writes import MAX_BATCH, Applier, describe_key
from replicator.backoff import Backoff, retry_forever
from replicator.checkpoint import AT_PREFIX, Sentinel, since
from replicator.clock import Clock, wait_event
from replicator.copy.claims import (
    DONE,
    HEADER,
    START,
    copy_key,
    header_checkpoint,
    header_segments,
    header_since,
    segment_id,
)
from replicator.copy.progress import RETENTION_SECONDS, CopyProgress, _progress_bar
from replicator.copy.scan import RateLimiter, ScanPacing, default_segments, scan_segment
from replicator.errors import (
    ConditionFailedError,
    ExpiredIteratorError,
    LeaseLostError,
    PoisonRecordError,
    ReplicatorError,
    StartupCheckError,
    ValidationError,
)
from replicator.lease import Lease
from replicator.leases.expiry import LeaseExpiry
from replicator.leases.fence import LeaseFence
from replicator.leases.held import HeldLease
from replicator.protocols import DestinationWriter, LeaseStore, SegmentScanner, StreamReader
from replicator.records import Item, KeyId, decode_key, encode_key, key_id
from replicator.stats import Stats

log = structlog.get_logger("replicator.copy")
T = TypeVar("T")



@dataclass(frozen=True, slots=True)
class CopySettings:
    worker_id: str
    segments: int | None = None
    concurrency: int = 8
    writers: int = 16
    max_rcu: float | None = None
    max_wcu: float | None = None
    lease_duration: float = 10.0
    lease_renew_interval: float = 3.0
    coordinator_interval: float = 1.0
    idle_interval: float = 0.25
    write_window: float = 0.0
    progress_interval: float = 10.0
    #: The timeout of a call, and the first of a Scan page (``ScanPacing``).
    call_timeout: float = 5.0
    #: Streaming follows the copy in this process: the shards whose watchers saw no
    #: write are handed over to it with their iterators (``TableCopy.handoff``).
    hand_off: bool = False


@dataclass(frozen=True, slots=True)
class HandedOver:
    """A shard whose lease the copy took at its end, and the iterator its watcher read
    the shard's head with: the stream goes on from there, not from the rows' start."""

    lease: HeldLease
    iterator: str


@dataclass(slots=True)
class CopyClaim:
    """The copy's lease, which every write of the copy is made under (``apply.Claim``)."""

    fence: LeaseFence
    cancelled: bool = False


@dataclass(slots=True)
class ItemWrite:
    """A copied item on its way to the destination."""

    key: KeyId
    item: Item
    claim: CopyClaim

    def request(self) -> dict[str, Any] | None:
        return None if self.claim.cancelled else {"PutRequest": {"Item": self.item}}

    def claims(self) -> tuple[CopyClaim]:
        return (self.claim,)


class TableCopy:
    """Copies the source table into the destination; see the module docstring."""

    def __init__(
        self,
        *,
        source: SegmentScanner,
        destination: DestinationWriter,
        streams: StreamReader,
        store: LeaseStore,
        stream_arn: str,
        settings: CopySettings,
        stats: Stats,
        stop: asyncio.Event,
        clock: Clock,
        table_items: int = 0,
        table_bytes: int = 0,
        key_names: tuple[str, ...],
        backoff: Backoff | None = None,
    ) -> None:
        self._source = source
        self._destination = destination
        self._streams = streams
        self._store = store
        self.stream_arn = stream_arn
        self._key = copy_key(stream_arn)
        self._settings = settings
        self._stats = stats
        self._stop = stop
        self._clock = clock
        self._table_items = table_items
        self._table_bytes = table_bytes
        self._key_names = key_names
        self._backoff = backoff or Backoff()
        self._reads = RateLimiter(settings.max_rcu, clock=clock)
        self._writes = RateLimiter(settings.max_wcu, clock=clock)
        self._writer_slots = asyncio.Semaphore(settings.writers)
        self._pacing = ScanPacing(settings.call_timeout)
        self.progress = CopyProgress()
        self._header: HeldLease | None = None
        self._claim: CopyClaim | None = None
        self._applier = Applier(destination, stats=stats, clock=clock, backoff=self._backoff,
                                write_window=settings.write_window)
        self._segments: dict[str, HeldLease] = {}
        self._watch: list[str] = []
        #: Shards being watched, and the iterator each watcher would read next.
        self._heads: dict[str, str] = {}
        #: Rows this copy created for open shards, by shard id.
        self._positions: dict[str, Lease] = {}
        #: Filled at the end of a copy with ``hand_off``: see ``HandedOver``.
        self.handoff: dict[str, HandedOver] = {}
        self._warned_retention = False
        #: Set when a segment meets a lost lease or a non-retriable error: the
        #: other segments stop after their current page.
        self._halt = asyncio.Event()
        self._lost = False
        self._failure: ReplicatorError | None = None

    def __repr__(self) -> str:
        return (
            f"<TableCopy segments={self.progress.segments} done={self.progress.segments_done} "
            f"items={self.progress.items_written}>"
        )

    # -- the copy lease ----------------------------------------------------------

    async def run(self, *, fresh: bool = False) -> bool:
        """Copy, resume a copy, or wait for another worker's. True once the copy is
        done (by anyone); False when stopped first. ``fresh`` starts over a copy
        that was done before."""
        attempt = 0
        while not self._stop.is_set():
            try:
                header = await self._acquire(fresh)
                if header is None:
                    return not self._stop.is_set()
                fresh = False
                return await self._copy(header)
            except LeaseLostError:
                log.warning("copy taken over by another worker; waiting for it")
            except ReplicatorError as exc:
                if not exc.retriable:
                    raise
                # A call on the checkpoint table failed between pages: the copy's rows
                # say how far it got, so it resumes from them. The stream is then
                # replayed from its start (no watcher), as after a crash.
                self._stats.count_retry(exc)
                self._watch = []
                delay = self._backoff.delay(attempt)
                attempt += 1
                log.warning("copy interrupted by a failed call; resuming", error=str(exc),
                            delay=round(delay, 3))
                await self._clock.sleep(delay)
        return False

    async def _acquire(self, fresh: bool) -> HeldLease | None:
        """Hold the copy's header lease, creating the copy if there is none.

        None when the copy is done (or ``stop`` was set while another worker copies).
        """
        expiry = LeaseExpiry(self._settings.lease_duration)
        worker = self._settings.worker_id
        waiting_logged = False
        self._segments = {}
        self._halt = asyncio.Event()
        self._lost = False
        while not self._stop.is_set():
            rows = {row.shard_id: row for row in await self._retried(
                functools.partial(self._store.list_leases, self._key), "Query")}
            header = rows.get(HEADER)
            if header is None:
                created = await self._create()
                if created is not None:
                    return created
                continue
            if header.checkpoint == DONE:
                if not fresh:
                    return None
                await self._forget(rows.values())
                fresh = False
                continue
            now = self._clock.monotonic()
            expiry.observe([header], now)
            if header.owner in (None, worker) or expiry.expired(header, now):
                held = await self._take(header, rows)
                if held is not None:
                    return held
                continue
            if not waiting_logged:
                log.info("another worker is copying the table; waiting", owner=header.owner)
                waiting_logged = True
            await wait_event(self._clock, self._stop, self._settings.coordinator_interval)
        return None

    async def _create(self) -> HeldLease | None:
        if not await self._nobody_streams():
            return None  # another worker created a copy since the rows were read
        segments = self._settings.segments or default_segments(self._table_bytes)
        worker = self._settings.worker_id
        # The service's clock, which stamps the records' creation times, a second back:
        # a write the copy may miss is created at this second or later, whatever the
        # small differences between the service's hosts (see docs/DESIGN.md).
        began = int(await self._retried(
            functools.partial(self._streams.server_time, self.stream_arn),
            "DescribeStream")) - 1
        sent_at = self._clock.monotonic()
        header = Lease(self._key, HEADER, None, worker, 0, header_checkpoint(segments, began))
        if not await self._retried(functools.partial(self._store.create_lease, header),
                                   "PutItem"):
            return None  # another worker created the copy first
        held = self._hold(header, sent_at)
        # Positions first: every write from now on is in the stream after them.
        await self._record_positions(watch=True, since_second=began)
        for index in range(segments):
            row = Lease(self._key, segment_id(index), None, worker, 0, START)
            await self._retried(functools.partial(self._store.create_lease, row), "PutItem")
            self._segments[row.shard_id] = self._hold(row, sent_at)
        log.info("copy started", segments=segments, items=self._table_items,
                 bytes=self._table_bytes)
        return held

    async def _nobody_streams(self) -> bool:
        """Refuse to copy while other workers apply the task's stream.

        Their checkpoints would not go back to before the copy, so an item they
        update after it was scanned could be overwritten by its older, copied
        image for good. Rows whose owner's counter does not move for a lease
        duration belong to stopped (or dead) workers; then the copy may go on.

        False when a copy header appeared meanwhile: workers that started at the
        same time saw no copy, one of them created it, copied and began to stream
        before this one looked. Its stream follows its copy, so this worker goes
        back to the copy's rows rather than refuse.
        """
        worker = self._settings.worker_id

        def owned(rows: list[Lease]) -> dict[str, tuple[str | None, int]]:
            return {row.shard_id: (row.owner, row.counter) for row in rows
                    if row.owner not in (None, worker) and not row.finished}

        async def stream_rows() -> dict[str, tuple[str | None, int]]:
            return owned(await self._retried(
                functools.partial(self._store.list_leases, self.stream_arn), "Query"))

        async def copy_created() -> bool:
            rows = await self._retried(
                functools.partial(self._store.list_leases, self._key), "Query")
            return any(row.shard_id == HEADER for row in rows)

        first = await stream_rows()
        if not first:
            return True
        if await copy_created():
            return False
        log.info("waiting to see whether the task's workers are stopped",
                 owners=sorted({owner for owner, _ in first.values() if owner}),
                 seconds=self._settings.lease_duration)
        deadline = self._clock.monotonic() + self._settings.lease_duration
        while self._clock.monotonic() < deadline:
            await wait_event(self._clock, self._stop, self._settings.coordinator_interval)
            current = await stream_rows()
            live = sorted({owner for shard_id, (owner, counter) in current.items()
                           if first.get(shard_id) != (owner, counter) and owner})
            if live:
                if await copy_created():
                    return False
                raise StartupCheckError(
                    f"workers of this task are streaming ({', '.join(live)}): stop every "
                    "worker before copying the table again, then start them; a copy made "
                    "while the stream is applied can leave items older than the source"
                )
        return True

    async def _take(self, header: Lease, rows: dict[str, Lease]) -> HeldLease | None:
        worker = self._settings.worker_id
        sent_at = self._clock.monotonic()
        try:
            taken = await self._retried(
                functools.partial(self._store.update_lease, header, new_owner=worker),
                "UpdateItem")
        except ConditionFailedError:
            return None
        held = self._hold(taken, sent_at)
        for shard_id, row in rows.items():
            if shard_id == HEADER or row.checkpoint == DONE:
                continue
            sent_at = self._clock.monotonic()
            try:
                taken_row = await self._retried(
                    functools.partial(self._store.update_lease, row, new_owner=worker),
                    "UpdateItem")
            except ConditionFailedError as exc:
                # The row moved since it was read (a write of ours whose answer was
                # lost): read the rows again rather than copy without this segment.
                raise LeaseLostError(f"copy row {shard_id} changed while taken") from exc
            self._segments[shard_id] = self._hold(taken_row, sent_at)
        # A copy interrupted while it created its rows misses some segments: not one
        # of them may be skipped.
        for index in range(header_segments(header.checkpoint)):
            if segment_id(index) not in rows:
                row = Lease(self._key, segment_id(index), None, worker, 0, START)
                sent_at = self._clock.monotonic()
                if await self._retried(functools.partial(self._store.create_lease, row),
                                       "PutItem"):
                    self._segments[row.shard_id] = self._hold(row, sent_at)
        # Shards the interrupted copy did not get to: from when it began (or, for a
        # header that does not say, from TRIM_HORIZON).
        await self._record_positions(watch=False,
                                     since_second=header_since(header.checkpoint))
        self.progress.resumed = True
        log.info("copy resumed", previous_owner=header.owner,
                 segments_left=len(self._segments))
        return held

    async def _retried(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """A call on the checkpoint table or the stream, retried while retriable. A
        conditional write whose answer was lost fails its condition when retried:
        each caller reads that as "the row moved" and reads the rows again."""
        return await retry_forever(call, what=what, backoff=self._backoff, clock=self._clock,
                                   on_retry=self._stats.count_retry)

    def _hold(self, lease: Lease, sent_at: float) -> HeldLease:
        return HeldLease(self._store, lease, clock=self._clock,
                         lease_duration=self._settings.lease_duration, sent_at=sent_at)

    async def _forget(self, rows: Any) -> None:
        """Delete a finished copy's rows, so that ``always`` copies again."""
        for row in rows:
            with contextlib.suppress(ConditionFailedError):
                await self._retried(functools.partial(self._store.delete_lease, row),
                                    "DeleteItem")

    # -- positions for the stream ---------------------------------------------

    async def _record_positions(self, *, watch: bool, since_second: int | None) -> None:
        """A row for every shard without one: closed shards end before the copy began
        (SHARD_END); open ones start at ``SINCE:<the copy's start>``."""
        shards = await self._retried(
            functools.partial(self._streams.list_shards, self.stream_arn), "DescribeStream")
        existing = {row.shard_id for row in await self._retried(
            functools.partial(self._store.list_leases, self.stream_arn), "Query")}
        start = Sentinel.TRIM_HORIZON if since_second is None else since(since_second)
        for shard in shards:
            if shard.shard_id in existing:
                continue  # already streamed from: its checkpoint stands
            checkpoint = Sentinel.SHARD_END if shard.closed else start
            row = Lease(self.stream_arn, shard.shard_id, shard.parent_shard_id, None, 0,
                        checkpoint)
            created = await self._retried(functools.partial(self._store.create_lease, row),
                                          "PutItem")
            if created and not shard.closed:
                self._positions[shard.shard_id] = row
                if watch:
                    self._watch.append(shard.shard_id)

    async def _watch_shard(self, shard_id: str, iterator: str) -> None:
        """Move the shard's start to the first record written after the copy began
        (``AT:``), or, while none is, keep the iterator that reads the shard's head up
        to date (``_heads``) for the hand-over.

        Only an optimisation: ``SINCE:`` is always a correct start. So when the
        watcher cannot go on (its iterator expired, which no new iterator can make
        good: it pointed at the head of the shard as the copy began), the row stays
        as it is.
        """
        next_iterator: str | None = iterator
        while next_iterator is not None:
            self._heads[shard_id] = next_iterator
            try:
                page = await retry_forever(
                    functools.partial(self._streams.get_records, next_iterator, 1),
                    what="GetRecords", backoff=self._backoff, clock=self._clock,
                    on_retry=self._stats.count_retry,
                )
            except ReplicatorError as exc:
                if isinstance(exc, ExpiredIteratorError):
                    self._stats.expired_iterators += 1
                self._heads.pop(shard_id, None)
                log.warning("stream position not recorded; the stream reads the shard from "
                            "its start and skips what the copy holds", shard_id=shard_id,
                            error=str(exc))
                return
            if page.records:
                self._heads.pop(shard_id, None)
                sequence = page.records[0]["dynamodb"]["SequenceNumber"]
                row = self._positions[shard_id]
                with contextlib.suppress(ConditionFailedError):  # already streamed from
                    await self._retried(
                        functools.partial(self._store.update_lease, row, new_owner=None,
                                          checkpoint=f"{AT_PREFIX}{sequence}"),
                        "UpdateItem",
                    )
                    log.info("stream position recorded", shard_id=shard_id, at=sequence)
                return
            next_iterator = page.next_iterator
            await self._clock.sleep(self._settings.idle_interval)

    async def _hand_over(self) -> None:
        """Take the lease of every shard whose watcher saw no write, so that this
        worker's stream goes on from the watcher's iterator: it reads nothing written
        before the copy. Done before the copy is marked DONE, when no other worker of
        the task streams. A row that moved meanwhile keeps its start."""
        worker = self._settings.worker_id
        for shard_id, iterator in self._heads.items():
            row = self._positions.get(shard_id)
            if row is None:
                continue
            sent_at = self._clock.monotonic()
            try:
                taken = await self._retried(
                    functools.partial(self._store.update_lease, row, new_owner=worker),
                    "UpdateItem")
            except ConditionFailedError:
                continue
            self.handoff[shard_id] = HandedOver(self._hold(taken, sent_at), iterator)
        if self.handoff:
            log.info("stream handed over from the copy", shards=sorted(self.handoff))
        self._heads = {}

    # -- copying -----------------------------------------------------------------

    async def _copy(self, header: HeldLease) -> bool:
        """Copy every unfinished segment. True when all are done; False when stopped."""
        self._header = header
        self._claim = CopyClaim(header.fence)
        self.progress.started_at = self._clock.monotonic()
        rows = {row.shard_id: row for row in await self._retried(
            functools.partial(self._store.list_leases, self._key), "Query")}
        total = header_segments(rows[HEADER].checkpoint) if HEADER in rows else 0
        if HEADER in rows and rows[HEADER].checkpoint == DONE:
            return True
        self.progress.segments = total
        self.progress.segments_skipped = sum(
            1 for shard_id, row in rows.items() if shard_id != HEADER and row.checkpoint == DONE
        )
        if self.progress.segments_skipped:
            log.info("segments already copied are skipped",
                     skipped=self.progress.segments_skipped, total=total)
        # LATEST iterators are taken before any Scan page is read.
        iterators = {
            shard_id: await retry_forever(
                functools.partial(self._streams.get_shard_iterator, self.stream_arn, shard_id,
                                  "LATEST"),
                what="GetShardIterator", backoff=self._backoff, clock=self._clock,
                on_retry=self._stats.count_retry,
            )
            for shard_id in self._watch
        }
        scanners = asyncio.Semaphore(self._settings.concurrency)
        async with asyncio.TaskGroup() as group:
            helpers = [
                group.create_task(self._renew_loop(), name="copy-renewer"),
                group.create_task(self._report(), name="copy-progress"),
            ]
            watchers = [
                group.create_task(self._watch_shard(shard_id, iterator))
                for shard_id, iterator in iterators.items()
            ]
            copiers = [
                group.create_task(self._copy_segment(held, total, scanners))
                for held in self._segments.values()
            ]
            if copiers:
                await asyncio.wait(copiers)
            stopped = self._stop.is_set() or self._halt.is_set()
            for task in watchers:
                task.cancel()
            if not stopped and self._failure is None and self._settings.hand_off:
                if watchers:
                    await asyncio.wait(watchers)
                await self._hand_over()
            for task in helpers:
                task.cancel()
        self._watch = []
        if self._lost or (header.lost and not header.released):
            raise LeaseLostError("the copy's lease was taken by another worker")
        if self._failure is not None:
            await header.release()
            raise self._failure
        if stopped:
            await header.release()
            log.info("copy stopped; it resumes where it stopped on the next start",
                     items_written=self.progress.items_written)
            return False
        await header.release(DONE)
        log.info("copy finished", items_written=self.progress.items_written,
                 segments=total, segments_skipped=self.progress.segments_skipped,
                 seconds=round(self._clock.monotonic() - self.progress.started_at, 1),
                 items_per_second=round(self.progress.rate(self._clock.monotonic()), 1))
        return True

    async def _copy_segment(self, held: HeldLease, total: int,
                            scanners: asyncio.Semaphore) -> None:
        index = int(held.shard_id.removeprefix("segment-"))
        checkpoint = held.lease.checkpoint
        start = None if checkpoint == START else decode_key(checkpoint)
        async with scanners:
            if self._stop.is_set() or self._halt.is_set():
                return
            pages = scan_segment(
                self._source, segment=index, total_segments=total, start_key=start,
                limiter=self._reads, backoff=self._backoff, clock=self._clock, stats=self._stats,
                pacing=self._pacing,
            )
            try:
                async with contextlib.aclosing(pages):
                    await self._copy_pages(held, pages)
            except (ReplicatorError, ExceptionGroup) as exc:
                error = _first_error(exc)
                if isinstance(error, LeaseLostError):
                    self._lost = True
                elif isinstance(error, ReplicatorError):
                    if self._failure is None:
                        self._failure = error
                    log.error("copy failed", segment=index, error=str(error))
                else:
                    raise
                self._halt.set()

    async def _copy_pages(self, held: HeldLease, pages: AsyncIterator[
            tuple[list[dict[str, Any]], dict[str, Any] | None]]) -> None:
        """Write a segment's pages, reading ahead: the next page is scanned while this
        one is written. A page's checkpoint is written only after its items, in order."""
        async with asyncio.TaskGroup() as group:
            writing: asyncio.Task[bool] | None = None
            async for items, last_key in pages:
                if writing is not None and not await writing:
                    return
                writing = group.create_task(self._write_page(held, items, last_key))
                if last_key is None:
                    break
            if writing is not None:
                await writing

    async def _write_page(self, held: HeldLease, items: list[dict[str, Any]],
                          last_key: dict[str, Any] | None) -> bool:
        """Write a page, then checkpoint its segment. False when the copy should stop."""
        await self._write_items(items)
        await retry_forever(
            functools.partial(held.checkpoint,
                              DONE if last_key is None else encode_key(last_key)),
            what="UpdateItem", backoff=self._backoff, clock=self._clock,
            on_retry=self._stats.count_retry,
        )
        if last_key is None:
            self.progress.segments_done += 1
            return False
        return not (self._stop.is_set() or self._halt.is_set())

    async def _write_items(self, items: list[dict[str, Any]]) -> None:
        async with asyncio.TaskGroup() as group:
            for start in range(0, len(items), MAX_BATCH):
                group.create_task(self._write_batch(items[start:start + MAX_BATCH]))

    async def _write_batch(self, items: list[dict[str, Any]]) -> None:
        """Write a batch of a page's items while this worker surely holds the copy. An
        item the destination refuses stops the copy: its page is not checkpointed, so a
        copy run again starts with it."""
        assert self._claim is not None
        claim = self._claim
        writes = [ItemWrite(key_id({name: item[name] for name in self._key_names}), item, claim)
                  for item in items]
        async with self._writer_slots:
            if self._writes.rate is not None:
                await self._writes.acquire(sum(_write_units(item) for item in items))
            await self._applier.write(writes, done=self._written, refused=self._refused)
        if claim.cancelled:
            raise LeaseLostError("the copy's lease was lost")

    def _refused(self, write: ItemWrite, exc: ValidationError) -> None:
        raise PoisonRecordError(
            f"the destination rejects item ({describe_key(write.key)}) of source table "
            f"{self._source.table} while copying it: {exc}; fix the item or the "
            "destination table, then start again: the copy resumes from the page that "
            "holds it"
        ) from exc

    def _written(self, write: ItemWrite) -> None:
        self.progress.items_written += 1
        self._stats.copy_items_written += 1
        self._stats.changed.notify()

    # -- lease renewal and progress ------------------------------------------------

    async def _renew_loop(self) -> None:
        while True:
            await self._clock.sleep(self._settings.lease_renew_interval)
            held = [lease for lease in (self._header, *self._segments.values())
                    if lease is not None and not lease.lost]
            async with asyncio.TaskGroup() as group:
                for lease in held:
                    group.create_task(self._renew(lease))

    async def _renew(self, lease: HeldLease) -> None:
        try:
            await lease.renew()
        except LeaseLostError:
            log.warning("copy lease lost", row=lease.shard_id)
        except ReplicatorError as exc:
            self._stats.count_retry(exc)
            log.warning("copy lease renewal failed", row=lease.shard_id, error=str(exc))

    async def _report(self) -> None:
        progress = self.progress
        bar = _progress_bar(self._table_items)
        try:
            interval = 0.5 if bar is not None else self._settings.progress_interval
            last = 0
            while True:
                await self._clock.sleep(interval)
                rate = progress.rate(self._clock.monotonic())
                eta = (max(0, self._table_items - progress.items_written) / rate
                       if rate > 0 else None)
                if bar is not None:
                    bar.update(progress.items_written - last)
                    last = progress.items_written
                else:
                    log.info("copy progress", items_written=progress.items_written,
                             items_per_second=round(rate, 1),
                             segments_done=progress.segments_done
                             + progress.segments_skipped,
                             segments=progress.segments,
                             eta_seconds=None if eta is None else round(eta))
                self._check_retention(eta)
        finally:
            if bar is not None:
                bar.close()

    def _check_retention(self, eta: float | None) -> None:
        """Warn when the copy may outlast the stream's 24-hour retention."""
        if eta is None or self._warned_retention:
            return
        elapsed = self._clock.monotonic() - self.progress.started_at
        if elapsed < 10:  # too early to measure a rate
            return
        total = elapsed + eta
        if total > 0.5 * RETENTION_SECONDS:
            self._warned_retention = True
            level = log.error if total > 0.9 * RETENTION_SECONDS else log.warning
            level(
                "the copy may outlast the stream's 24-hour retention",
                estimated_hours=round(total / 3600, 1),
                advice="records written when the copy began are trimmed after 24 hours; "
                "raise the destination's write capacity or REPLICATOR_COPY_WRITERS and "
                "REPLICATOR_COPY_CONCURRENCY, or the copy must be redone",
            )


def _first_error(exc: BaseException) -> BaseException:
    """The first leaf of a (possibly nested) exception group, or the exception itself."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _write_units(item: Item) -> float:
    """Write units of a put: one per started KB of the item (estimated from its JSON)."""
    return float(math.ceil((len(json.dumps(item, default=str)) + 1) / 1024))


