"""``replicator verify``: are the two tables equal? ``--repair`` makes them so.

Two parallel scans, with the copy's scan code. The source's pages are looked
up in the destination with BatchGetItem (missing and different items), and the
destination's pages in the source (extra items). Memory stays bounded by a
page, whatever the table's size. With ``repair``, missing and different items
are written again from the source and extra ones deleted. Then the tables are
compared once more, and that second comparison is the verdict.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from replicator.apply.writes import MAX_BATCH, Applier, PlainWrite, request_key
from replicator.backoff import Backoff, until_processed
from replicator.clock import Clock
from replicator.copy.scan import ScanPacing, default_segments, scan_segment
from replicator.protocols import TableAccess
from replicator.rate import RateLimiter
from replicator.records import Item, KeyId, key_id
from replicator.rules.selection import IDENTITY, Rules
from replicator.rules.transform import RuleError
from replicator.stats import Stats

log = structlog.get_logger("replicator.verify")

#: How many keys of each kind a report lists.
EXAMPLES = 10
#: ``replicator verify``'s exit code when the tables differ (after a repair, if asked).
TABLES_DIFFER = 5


def normalize(item: Item) -> dict[str, Any]:
    """A comparable form of an item: its sets sorted, at any depth (sets are unordered)."""
    return {name: normalize_value(value) for name, value in item.items()}


def normalize_value(value: dict[str, Any]) -> dict[str, Any]:
    """A comparable form of one wire attribute value (see ``normalize``)."""
    ((type_, inner),) = value.items()
    if type_ in ("SS", "NS", "BS"):
        return {type_: sorted(inner)}
    if type_ == "M":
        return {"M": normalize(inner)}
    if type_ == "L":
        return {"L": [normalize_value(element) for element in inner]}
    return value


@dataclass
class TableDiff:
    """Counts of missing, extra and different items, with the first keys of each."""

    source_items: int = 0
    destination_items: int = 0
    missing: int = 0
    extra: int = 0
    different: int = 0
    examples: dict[str, list[KeyId]] = field(
        default_factory=lambda: {"missing": [], "extra": [], "different": []}
    )
    repaired: int = 0
    #: Items only the destination holds, which its rules keep (TTL deletes skipped, or a
    #: filter on the event): no difference.
    kept: int = 0
    #: The comparison made before repairing, when ``--repair`` fixed something.
    before: TableDiff | None = None

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.different)

    def note(self, kind: str, key: KeyId) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.examples[kind]) < EXAMPLES:
            self.examples[kind].append(key)

    def summary(self) -> str:
        kept = (f" (and {self.kept} items the source deleted, kept by the destination's "
                "rules)") if self.kept else ""
        if self.equal:
            return f"equal: {self.source_items} items in each table{kept}"
        return (
            f"NOT equal: {self.missing} missing, {self.extra} extra, "
            f"{self.different} different (source {self.source_items} items, "
            f"destination {self.destination_items}){kept}"
        )

    def report(self) -> list[str]:
        """What differed (before a repair, if one was made), what was repaired, and the
        verdict."""
        lines = []
        if self.before is not None:
            lines += [f"before repair: {line}" for line in self.before._details()]
            lines.append(f"repaired {self.repaired} items")
            lines.append(f"after repair: {self.summary()}")
            lines += self._details()[1:]
            return lines
        return self._details()

    def _details(self) -> list[str]:
        lines = [self.summary()]
        for kind in ("missing", "extra", "different"):
            if self.examples[kind]:
                keys = "; ".join(describe_key(key) for key in self.examples[kind])
                lines.append(f"first {kind}: {keys}")
        return lines


def describe_key(key: KeyId) -> str:
    return ", ".join(f"{name}={value!r}" for name, _, value in key)


class Verifier:
    def __init__(
        self,
        source: TableAccess,
        destination: TableAccess,
        key_names: list[str],
        *,
        segments: int = 4,
        concurrency: int = 8,
        clock: Clock,
        call_timeout: float = 5.0,
        stats: Stats | None = None,
        backoff: Backoff | None = None,
        rules: Rules = IDENTITY,
    ) -> None:
        self._source = source
        #: The destination's rules: the destination should hold what they make of each
        #: source item, and nothing else.
        self._rules = rules
        self._clock = clock
        self._destination = destination
        self._key_names = key_names
        self._segments = segments
        self._concurrency = asyncio.Semaphore(concurrency)
        self._stats = stats or Stats()
        self._backoff = backoff or Backoff()
        self._unlimited = RateLimiter(None, clock=clock)
        self._pacing = ScanPacing(call_timeout)
        self._repairs = Applier(destination, stats=self._stats, clock=clock,
                                backoff=self._backoff)

    async def compare(self, *, repair: bool = False) -> TableDiff:
        diff = TableDiff()
        await self._pass(self._source, self._destination, diff, self._source_page, repair)
        await self._pass(self._destination, self._source, diff, self._destination_page, repair)
        if repair:
            # The destination's pass comes after the source's, which wrote the missing
            # items: it counted them, though the destination did not hold them before.
            diff.destination_items -= diff.missing
        return diff

    async def verify(self, *, repair: bool = False) -> TableDiff:
        """Compare; with ``repair``, fix what differs and return a second comparison."""
        diff = await self.compare(repair=repair)
        if not repair or diff.equal:
            return diff
        repaired = diff.missing + diff.extra + diff.different
        log.info("repaired; comparing again", repaired=repaired)
        after = await self.compare()
        after.repaired = repaired
        after.before = diff
        return after

    async def _pass(
        self,
        scanned: TableAccess,
        other: TableAccess,
        diff: TableDiff,
        judge: Callable[[list[Item], dict[KeyId, Item], TableDiff, bool], Any],
        repair: bool,
    ) -> None:
        async def segment(index: int) -> None:
            async with self._concurrency:
                pages = scan_segment(
                    scanned, segment=index, total_segments=self._segments, start_key=None,
                    limiter=self._unlimited, backoff=self._backoff, clock=self._clock,
                    stats=self._stats,
                    pacing=self._pacing,
                )
                async for items, _ in pages:
                    found = await self._look_up(other, items)
                    await judge(items, found, diff, repair)

        async with asyncio.TaskGroup() as group:
            for index in range(self._segments):
                group.create_task(segment(index))

    async def _source_page(self, items: list[Item], found: dict[KeyId, Item], diff: TableDiff,
                           repair: bool) -> None:
        rewrite = []
        for item in items:
            key = self._key(item)
            try:
                expected = self._expected(item)
            except RuleError:
                diff.source_items += 1
                diff.note("different", key)  # the transform refuses it: cannot be written
                continue
            if expected is None:
                continue  # not the destination's: the destination's pass judges its copy
            diff.source_items += 1
            other = found.get(key)
            if other is None:
                diff.note("missing", key)
            elif normalize(other) != normalize(expected):
                diff.note("different", key)
            else:
                continue
            rewrite.append({"PutRequest": {"Item": expected}})
        if repair:
            await self._write(rewrite)

    async def _destination_page(self, items: list[Item], found: dict[KeyId, Item],
                                diff: TableDiff, repair: bool) -> None:
        diff.destination_items += len(items)
        deletes = []
        for item in items:
            key = self._key(item)
            source = found.get(key)
            if source is None and self._rules.keeps_removed:
                diff.kept += 1
            elif source is None or self._not_selected(source):
                diff.note("extra", key)
                deletes.append({"DeleteRequest": {"Key": self._key_item(item)}})
        if repair:
            await self._write(deletes)

    def _expected(self, item: Item) -> Item | None:
        """What the destination should hold for a source item (None: nothing)."""
        if not self._rules.selective:
            return item
        return self._rules.copied(item, self._key_names)

    def _not_selected(self, source: Item) -> bool:
        try:
            return self._expected(source) is None
        except RuleError:
            return False  # counted as different by the source's pass

    def _key_item(self, item: Item) -> Item:
        return {name: item[name] for name in self._key_names}

    def _key(self, item: Item) -> KeyId:
        return key_id(self._key_item(item))

    async def _look_up(self, table: TableAccess, items: list[Item]) -> dict[KeyId, Item]:
        found: dict[KeyId, Item] = {}

        async def batch_get(keys: list[Item]) -> list[Item]:
            page, left = await table.batch_get(keys)
            for item in page:
                found[self._key(item)] = item
            return left

        for start in range(0, len(items), 100):
            await until_processed(
                batch_get, [self._key_item(item) for item in items[start:start + 100]],
                what="BatchGetItem", backoff=self._backoff, clock=self._clock,
                on_retry=self._stats.count_retry,
            )
        return found

    async def _write(self, requests: list[dict[str, Any]]) -> None:
        """Repair the destination: puts of what differs, deletes of what is extra."""
        for start in range(0, len(requests), MAX_BATCH):
            writes = [PlainWrite(request_key(request, self._key_names), request)
                      for request in requests[start:start + MAX_BATCH]]
            await self._repairs.write(writes, done=lambda write: None)


def key_names_of(description: dict[str, Any]) -> list[str]:
    """The key attribute names of a DescribeTable ``Table``, hash key first."""
    order = {"HASH": 0, "RANGE": 1}
    schema = sorted(description["KeySchema"], key=lambda element: order[element["KeyType"]])
    return [element["AttributeName"] for element in schema]


def segments_for(description: dict[str, Any]) -> int:
    return default_segments(int(description.get("TableSizeBytes") or 0))


