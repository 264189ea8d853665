"""Dead letters applied again, once what refused them is fixed (``replicator
dead-letters replay``).

A letter's own images may be older than what the destination holds by now: the
stream went on past the letter, and may have written the same key since. So a replay
never writes the letter's image. It reads the item from the source (strongly
consistent), writes what the destination's rules make of it (a delete when the
source no longer holds it or the rules no longer select it), then reads the source
again: if the item changed meanwhile, the newer image is written too, until a read
after the write finds the item unchanged. The destination then holds the source's
image of a moment after every write the replay made, and any stream record of the
key not applied yet is newer still (the stream applies each key in order). See
docs/DESIGN.md ("Dead letters").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from replicator.apply.writes import Applier, PlainWrite, request_key
from replicator.backoff import Backoff, until_processed
from replicator.clock import Clock
from replicator.dead_letter import DeadLetter, DeadLetterStore
from replicator.errors import ValidationError
from replicator.protocols import DestinationWriter, KeyReader
from replicator.records import Item
from replicator.rules.selection import Rules
from replicator.rules.transform import RuleError
from replicator.stats import Stats

#: Reads of the source after a write that may find the item changed again before the
#: replay gives the letter up for this run (a key written without pause).
MAX_ROUNDS = 20


@dataclass(frozen=True, slots=True)
class Replayed:
    letter: DeadLetter
    #: None: applied and removed from the store; else why it is kept.
    error: str | None = None
    #: Source reads made.
    reads: int = 0


class Replay:
    """Applies the letters of one destination again, from its source."""

    def __init__(self, *, source: KeyReader, destination: DestinationWriter, rules: Rules,
                 key_names: tuple[str, ...], store: DeadLetterStore, clock: Clock,
                 stats: Stats | None = None, backoff: Backoff | None = None) -> None:
        self._source = source
        self._rules = rules
        self._key_names = key_names
        self._store = store
        self._clock = clock
        self._stats = stats or Stats()
        self._backoff = backoff or Backoff()
        self._applier = Applier(destination, stats=self._stats, clock=clock,
                                backoff=self._backoff)

    async def replay(self, letter: DeadLetter) -> Replayed:
        """Apply ``letter`` again; it is removed from the store once applied."""
        current = await self._read(letter)
        for round_ in range(1, MAX_ROUNDS + 1):
            try:
                request = self._request(letter, current)
            except RuleError as exc:
                return Replayed(letter, f"the destination's rules reject it: {exc}", round_)
            if request is not None:
                try:
                    await self._write(request)
                except ValidationError as exc:
                    return Replayed(letter, f"the destination rejects it: {exc}", round_)
            after = await self._read(letter)
            if after == current:
                await self._store.delete(letter)
                return Replayed(letter, None, round_ + 1)
            current = after
        return Replayed(letter, f"the item changed on each of {MAX_ROUNDS} reads; replay "
                        "it again", MAX_ROUNDS + 1)

    def _request(self, letter: DeadLetter, item: Item | None) -> dict[str, Any] | None:
        """The write that makes the destination hold what the source holds now."""
        rules = self._rules
        if item is None:
            if rules.keeps_removed:
                return None  # the destination keeps what the source deleted
            return {"DeleteRequest": {"Key": letter.keys}}
        formed = rules.copied(item, self._key_names) if rules.selective else item
        if formed is None:
            return {"DeleteRequest": {"Key": letter.keys}}
        return {"PutRequest": {"Item": formed}}

    async def _read(self, letter: DeadLetter) -> Item | None:
        found: list[Item] = []

        async def get(keys: list[Item]) -> list[Item]:
            items, left = await self._source.batch_get(keys)
            found.extend(items)
            return left

        await until_processed(get, [letter.keys], what="BatchGetItem", backoff=self._backoff,
                              clock=self._clock, on_retry=self._stats.count_retry)
        return found[0] if found else None

    async def _write(self, request: dict[str, Any]) -> None:
        write = PlainWrite(request_key(request, self._key_names), request)
        await self._applier.write([write], done=lambda _: None)
