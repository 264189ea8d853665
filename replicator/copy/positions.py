"""The stream's positions after a bootstrap copy: rows at ``SINCE:``, watchers that move
them to ``AT:``, and the hand-over of unwritten shards to this worker's stream.
See docs/DESIGN.md ("The hand-off to the stream")."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from replicator.backoff import Backoff, Retried, retry_forever
from replicator.checkpoint import AT_PREFIX, Sentinel, since
from replicator.clock import Clock
from replicator.errors import ConditionFailedError, ExpiredIteratorError, ReplicatorError
from replicator.lease import Lease
from replicator.leases.held import HeldLease
from replicator.protocols import LeaseStore, StreamReader
from replicator.stats import Stats

log = structlog.get_logger("replicator.copy")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class HandedOver:
    """A shard whose lease the copy took at its end, and the iterator its watcher read
    the shard's head with: the stream goes on from there, not from the rows' start."""

    lease: HeldLease
    iterator: str



class StreamPositions:
    """The stream's start after the copy, recorded while it runs (docs/DESIGN.md).

    Before the first Scan, every shard without a row gets one: closed shards at
    SHARD_END, open ones at ``SINCE:<the copy's start>``. A watcher per open shard
    reads it from LATEST, taken before the scan began, and moves its row to
    ``AT:<sequence number>`` at the first record written after that moment. When
    none was written, ``hand_over`` takes the shard's lease at the end of the copy
    and the stream goes on from the watcher's iterator (``HandedOver``).
    """

    def __init__(
        self,
        *,
        streams: StreamReader,
        store: LeaseStore,
        stream_arn: str,
        worker_id: str,
        idle_interval: float,
        retried: Retried,
        hold: Callable[[Lease, float], HeldLease],
        stats: Stats,
        clock: Clock,
        backoff: Backoff,
    ) -> None:
        self._streams = streams
        self._store = store
        self.stream_arn = stream_arn
        self._worker_id = worker_id
        self._idle_interval = idle_interval
        self._retried = retried
        self._hold = hold
        self._stats = stats
        self._clock = clock
        self._backoff = backoff
        #: Open shards whose rows this copy created, to be watched.
        self.watched: list[str] = []
        #: Shards being watched, and the iterator each watcher would read next.
        self._heads: dict[str, str] = {}
        #: Rows this copy created for open shards, by shard id.
        self.rows: dict[str, Lease] = {}
        #: Filled by ``hand_over``: see ``HandedOver``.
        self.handoff: dict[str, HandedOver] = {}

    async def latest_iterators(self) -> dict[str, str]:
        """A LATEST iterator of each watched shard: taken before any Scan page is read."""
        return {
            shard_id: await self._retried(
                functools.partial(self._streams.get_shard_iterator, self.stream_arn, shard_id,
                                  "LATEST"),
                "GetShardIterator",
            )
            for shard_id in self.watched
        }

    async def record(self, *, watch: bool, since_second: int | None) -> None:
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
                self.rows[shard.shard_id] = row
                if watch:
                    self.watched.append(shard.shard_id)

    async def watch(self, shard_id: str, iterator: str) -> None:
        """Move the shard's start to the first record written after the copy began
        (``AT:``), or, while none is, keep the iterator that reads the shard's head up
        to date (``heads``) for the hand-over.

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
                row = self.rows[shard_id]
                with contextlib.suppress(ConditionFailedError):  # already streamed from
                    await self._retried(
                        functools.partial(self._store.update_lease, row, new_owner=None,
                                          checkpoint=f"{AT_PREFIX}{sequence}"),
                        "UpdateItem",
                    )
                    log.info("stream position recorded", shard_id=shard_id, at=sequence)
                return
            next_iterator = page.next_iterator
            await self._clock.sleep(self._idle_interval)

    async def hand_over(self) -> None:
        """Take the lease of every shard whose watcher saw no write, so that this
        worker's stream goes on from the watcher's iterator: it reads nothing written
        before the copy. Done before the copy is marked DONE, when no other worker of
        the task streams. A row that moved meanwhile keeps its start."""
        worker = self._worker_id
        for shard_id, iterator in self._heads.items():
            row = self.rows.get(shard_id)
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
