"""The copy's rows in the checkpoint table, and who may copy.

Under the key ``copy|<stream ARN>``, a header row (a lease: one worker copies,
the others wait, and another takes the copy over once the lease expires) and
one row per Scan segment, which records how far the segment was written.
See docs/DESIGN.md ("The bootstrap copy").
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass

import structlog

from replicator.backoff import Backoff, Retried, retry_forever
from replicator.clock import Clock, wait_event
from replicator.errors import StartupCheckError
from replicator.lease import Lease
from replicator.protocols import LeaseStore
from replicator.records import Item, decode_key, encode_key

log = structlog.get_logger("replicator.copy")

#: The copy's rows are under the key ``copy|<stream ARN>``.
COPY_PREFIX = "copy|"
#: The header row: ``RUNNING/<segments>/<second>`` or ``DONE``; a lease on the copy.
HEADER = "copy"
RUNNING = "RUNNING"
DONE = "DONE"
#: A segment's row before its first page: then the LastEvaluatedKey reached, then DONE.
START = "START"


def copy_key(stream_arn: str, destination: str | None = None) -> str:
    """The copy's rows: of the whole source, or of one destination joining the topology."""
    key = COPY_PREFIX + stream_arn
    return key if destination is None else f"{key}|{destination}"


def segment_id(index: int) -> str:
    return f"segment-{index:06d}"


async def bootstrap_needed(store: LeaseStore, stream_arn: str, mode: str, *,
                           clock: Clock) -> bool:
    """Whether ``run`` copies first: always; or, for auto, when the task has no
    checkpoints yet or a copy was interrupted."""
    if mode == "never":
        return False
    if mode == "always":
        return True
    header = await _copy_header(store, stream_arn, clock=clock)
    if header is not None:
        return not CopyHeader.of(header).done
    return not await _rows(store, stream_arn, clock=clock)


async def copy_unfinished(store: LeaseStore, stream_arn: str, *, clock: Clock) -> bool:
    """Whether a bootstrap copy of the stream's table began and never finished."""
    header = await _copy_header(store, stream_arn, clock=clock)
    return header is not None and not CopyHeader.of(header).done


async def _rows(store: LeaseStore, key: str, *, clock: Clock) -> list[Lease]:
    return await retry_forever(lambda: store.list_leases(key), what="Query",
                               backoff=Backoff(), clock=clock)


async def _copy_header(store: LeaseStore, stream_arn: str, *, clock: Clock) -> Lease | None:
    rows = await _rows(store, copy_key(stream_arn), clock=clock)
    return {row.shard_id: row for row in rows}.get(HEADER)


@dataclass(frozen=True, slots=True)
class CopyHeader:
    """What the copy's header row says: ``RUNNING/<segments>/<since>`` or ``DONE``."""

    done: bool
    segments: int = 0
    #: The epoch second the copy began at, by the service's clock (None: a header
    #: written before it was recorded).
    since: int | None = None

    @classmethod
    def of(cls, row: Lease) -> CopyHeader:
        if row.checkpoint == DONE:
            return cls(done=True)
        parts = row.checkpoint.split("/")
        return cls(done=False, segments=int(parts[1]),
                   since=int(parts[2]) if len(parts) > 2 else None)

    def value(self) -> str:
        """The row's checkpoint attribute."""
        if self.done:
            return DONE
        since = "" if self.since is None else f"/{self.since}"
        return f"{RUNNING}/{self.segments}{since}"


@dataclass(frozen=True, slots=True)
class SegmentProgress:
    """What a segment's row says: not begun (``START``), the LastEvaluatedKey its last
    written page ended at, or ``DONE``."""

    done: bool
    #: Where the segment's Scan resumes (None: from its beginning).
    start_key: Item | None = None

    @classmethod
    def of(cls, row: Lease) -> SegmentProgress:
        if row.checkpoint == DONE:
            return cls(done=True)
        return cls(done=False,
                   start_key=None if row.checkpoint == START else decode_key(row.checkpoint))

    @staticmethod
    def after_page(last_key: Item | None) -> str:
        """The row's checkpoint once a page ending at ``last_key`` is written."""
        return DONE if last_key is None else encode_key(last_key)


def is_header(row: Lease) -> bool:
    return row.shard_id == HEADER


async def nobody_streams(
    store: LeaseStore, stream_arn: str, *, worker: str, lease_duration: float, interval: float,
    retried: Retried, clock: Clock, stop: asyncio.Event,
) -> bool:
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

    def owned(rows: list[Lease]) -> dict[str, tuple[str | None, int]]:
        return {row.shard_id: (row.owner, row.counter) for row in rows
                if row.owner not in (None, worker) and not row.finished}

    async def stream_rows() -> dict[str, tuple[str | None, int]]:
        return owned(await retried(
            functools.partial(store.list_leases, stream_arn), "Query"))

    async def copy_created() -> bool:
        rows = await retried(
            functools.partial(store.list_leases, copy_key(stream_arn)), "Query")
        return any(row.shard_id == HEADER for row in rows)

    first = await stream_rows()
    if not first:
        return True
    if await copy_created():
        return False
    log.info("waiting to see whether the task's workers are stopped",
             owners=sorted({owner for owner, _ in first.values() if owner}),
             seconds=lease_duration)
    deadline = clock.monotonic() + lease_duration
    while clock.monotonic() < deadline:
        await wait_event(clock, stop, interval)
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
