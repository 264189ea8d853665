"""The copy's data path: a segment's pages scanned, written through the apply layer,
and checkpointed in order. See docs/DESIGN.md ("The bootstrap copy")."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from replicator.apply.writes import MAX_BATCH, Applier, describe_key
from replicator.backoff import Backoff, retry_forever
from replicator.clock import Clock
from replicator.copy.claims import SegmentProgress
from replicator.copy.progress import CopyProgress
from replicator.errors import LeaseLostError, PoisonRecordError, ValidationError
from replicator.leases.fence import LeaseFence
from replicator.leases.held import HeldLease
from replicator.rate import RateLimiter
from replicator.records import Item, KeyId, key_id, write_units
from replicator.stats import Stats


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


@dataclass(kw_only=True)
class PageWriter:
    """Writes a segment's pages under the copy's lease (``CopyClaim``), and checkpoints
    each page in its segment's row once its items are written."""

    applier: Applier
    claim: CopyClaim
    source_table: str
    key_names: tuple[str, ...]
    #: The copy's write rate (``REPLICATOR_COPY_MAX_WCU``).
    writes: RateLimiter
    #: How many batches are written at once (``REPLICATOR_COPY_WRITERS``).
    writers: int
    progress: CopyProgress
    stats: Stats
    clock: Clock
    backoff: Backoff
    #: Whether the copy is stopping: no page is begun then.
    stopping: Callable[[], bool]
    _writer_slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._writer_slots = asyncio.Semaphore(self.writers)

    async def copy_pages(self, held: HeldLease, pages: AsyncIterator[
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
            functools.partial(held.checkpoint, SegmentProgress.after_page(last_key)),
            what="UpdateItem", backoff=self.backoff, clock=self.clock,
            on_retry=self.stats.count_retry,
        )
        if last_key is None:
            self.progress.segments_done += 1
            return False
        return not (self.stopping())

    async def _write_items(self, items: list[dict[str, Any]]) -> None:
        async with asyncio.TaskGroup() as group:
            for start in range(0, len(items), MAX_BATCH):
                group.create_task(self._write_batch(items[start:start + MAX_BATCH]))

    async def _write_batch(self, items: list[dict[str, Any]]) -> None:
        """Write a batch of a page's items while this worker surely holds the copy. An
        item the destination refuses stops the copy: its page is not checkpointed, so a
        copy run again starts with it."""
        claim = self.claim
        writes = [ItemWrite(key_id({name: item[name] for name in self.key_names}), item, claim)
                  for item in items]
        async with self._writer_slots:
            if self.writes.rate is not None:
                await self.writes.acquire(float(sum(write_units(item) for item in items)))
            await self.applier.write(writes, done=self._written, refused=self._refused)
        if claim.cancelled:
            raise LeaseLostError("the copy's lease was lost")

    def _refused(self, write: ItemWrite, exc: ValidationError) -> None:
        raise PoisonRecordError(
            f"the destination rejects item ({describe_key(write.key)}) of source table "
            f"{self.source_table} while copying it: {exc}; fix the item or the "
            "destination table, then start again: the copy resumes from the page that "
            "holds it"
        ) from exc

    def _written(self, write: ItemWrite) -> None:
        self.progress.items_written += 1
        self.stats.copy_items_written += 1
        self.stats.changed.notify()
