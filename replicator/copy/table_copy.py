"""The bootstrap copy: what the source table holds, copied before streaming starts.

``TableCopy`` takes the copy's lease (``claims``), records the stream's start
(``positions``), copies every unfinished Scan segment (``pages``), and hands the
unwritten shards over to this worker's stream. A crash at any step leaves the
rows at safe starts, and another worker resumes the copy where it stopped.
See docs/DESIGN.md ("The bootstrap copy").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from replicator.apply.writes import Applier
from replicator.backoff import Backoff, retry_forever
from replicator.clock import Clock, wait_event
from replicator.copy.claims import (
    HEADER,
    START,
    CopyHeader,
    SegmentProgress,
    copy_key,
    is_header,
    nobody_streams,
    segment_id,
)
from replicator.copy.pages import CopyClaim, PageWriter
from replicator.copy.positions import HandedOver, StreamPositions
from replicator.copy.progress import CopyProgress, ProgressReport
from replicator.copy.scan import ScanPacing, default_segments, scan_segment
from replicator.errors import (
    ConditionFailedError,
    LeaseLostError,
    ReplicatorError,
)
from replicator.lease import Lease
from replicator.leases.expiry import LeaseExpiry
from replicator.leases.held import HeldLease
from replicator.protocols import DestinationWriter, LeaseStore, SegmentScanner, StreamReader
from replicator.rate import RateLimiter
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
        joining: str | None = None,
        on_joined: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self._source = source
        self._destination = destination
        self._streams = streams
        self._store = store
        self.stream_arn = stream_arn
        #: The name of a destination joining a running topology: the copy is into it
        #: alone, while the stream is read for the others; it records no stream
        #: positions (the destination's lanes start from the second the copy began,
        #: which ``on_joined`` is given before the copy is marked done).
        self.joining = joining
        self._on_joined = on_joined
        self._key = copy_key(stream_arn, joining)
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
        self._pacing = ScanPacing(settings.call_timeout)
        self.progress = CopyProgress()
        self._header: HeldLease | None = None
        self._pages: PageWriter | None = None
        self._applier = Applier(destination, stats=stats, clock=clock, backoff=self._backoff,
                                write_window=settings.write_window)
        self._segments: dict[str, HeldLease] = {}
        self.positions = StreamPositions(
            streams=streams, store=store, stream_arn=stream_arn, worker_id=settings.worker_id,
            idle_interval=settings.idle_interval, retried=self._retried, hold=self._hold,
            stats=stats, clock=clock, backoff=self._backoff)
        #: Set when a segment meets a lost lease or a non-retriable error: the
        #: other segments stop after their current page.
        self._halt = asyncio.Event()
        self._lost = False
        self._failure: ReplicatorError | None = None

    @property
    def handoff(self) -> dict[str, HandedOver]:
        """Filled at the end of a copy with ``hand_off``: see ``HandedOver``."""
        return self.positions.handoff

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
                self.positions.watched = []
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
            if CopyHeader.of(header).done:
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
        if self.joining is None and not await nobody_streams(
                self._store, self.stream_arn, worker=self._settings.worker_id,
                lease_duration=self._settings.lease_duration,
                interval=self._settings.coordinator_interval, retried=self._retried,
                clock=self._clock, stop=self._stop):
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
        header = Lease(self._key, HEADER, None, worker, 0,
                       CopyHeader(done=False, segments=segments, since=began).value())
        if not await self._retried(functools.partial(self._store.create_lease, header),
                                   "PutItem"):
            return None  # another worker created the copy first
        held = self._hold(header, sent_at)
        # Positions first: every write from now on is in the stream after them.
        if self.joining is None:
            await self.positions.record(watch=True, since_second=began)
        for index in range(segments):
            row = Lease(self._key, segment_id(index), None, worker, 0, START)
            await self._retried(functools.partial(self._store.create_lease, row), "PutItem")
            self._segments[row.shard_id] = self._hold(row, sent_at)
        log.info("copy started", segments=segments, items=self._table_items,
                 bytes=self._table_bytes)
        return held

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
            if is_header(row) or SegmentProgress.of(row).done:
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
        for index in range(CopyHeader.of(header).segments):
            if segment_id(index) not in rows:
                row = Lease(self._key, segment_id(index), None, worker, 0, START)
                sent_at = self._clock.monotonic()
                if await self._retried(functools.partial(self._store.create_lease, row),
                                       "PutItem"):
                    self._segments[row.shard_id] = self._hold(row, sent_at)
        # Shards the interrupted copy did not get to: from when it began (or, for a
        # header that does not say, from TRIM_HORIZON).
        if self.joining is None:
            await self.positions.record(watch=False,
                                         since_second=CopyHeader.of(header).since)
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

    # -- copying -----------------------------------------------------------------

    async def _copy(self, header: HeldLease) -> bool:
        """Copy every unfinished segment. True when all are done; False when stopped."""
        self._header = header
        self._pages = PageWriter(
            applier=self._applier, claim=CopyClaim(header.fence), source_table=self._source.table,
            key_names=self._key_names, writes=self._writes, writers=self._settings.writers,
            progress=self.progress, stats=self._stats, clock=self._clock, backoff=self._backoff,
            stopping=lambda: self._stop.is_set() or self._halt.is_set())
        self.progress.started_at = self._clock.monotonic()
        rows = {row.shard_id: row for row in await self._retried(
            functools.partial(self._store.list_leases, self._key), "Query")}
        read = CopyHeader.of(rows[HEADER]) if HEADER in rows else CopyHeader(done=False)
        if read.done:
            return True
        total = read.segments
        self.progress.segments = total
        self.progress.segments_skipped = sum(
            1 for row in rows.values() if not is_header(row) and SegmentProgress.of(row).done
        )
        if self.progress.segments_skipped:
            log.info("segments already copied are skipped",
                     skipped=self.progress.segments_skipped, total=total)
        iterators = {} if self.joining is not None else await self.positions.latest_iterators()
        scanners = asyncio.Semaphore(self._settings.concurrency)
        async with asyncio.TaskGroup() as group:
            helpers = [
                group.create_task(self._renew_loop(), name="copy-renewer"),
                group.create_task(ProgressReport(
                    self.progress, table_items=self._table_items,
                    interval=self._settings.progress_interval, clock=self._clock).run(),
                    name="copy-progress"),
            ]
            watchers = [
                group.create_task(self.positions.watch(shard_id, iterator))
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
                await self.positions.hand_over()
            for task in helpers:
                task.cancel()
        self.positions.watched = []
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
        if self._on_joined is not None:
            if read.since is None:
                raise LeaseLostError("the joining copy's header does not say when it began")
            await self._on_joined(read.since)
        await header.release(CopyHeader(done=True).value())
        log.info("copy finished", items_written=self.progress.items_written,
                 segments=total, segments_skipped=self.progress.segments_skipped,
                 seconds=round(self._clock.monotonic() - self.progress.started_at, 1),
                 items_per_second=round(self.progress.rate(self._clock.monotonic()), 1))
        return True

    async def _copy_segment(self, held: HeldLease, total: int,
                            scanners: asyncio.Semaphore) -> None:
        index = int(held.shard_id.removeprefix("segment-"))
        start = SegmentProgress.of(held.lease).start_key
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
                    assert self._pages is not None
                    await self._pages.copy_pages(held, pages)
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


def _first_error(exc: BaseException) -> BaseException:
    """The first leaf of a (possibly nested) exception group, or the exception itself."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc



