"""A destination's rules on the copy's path: each copied item written as the
destination's rules make it (``Rules.copied``), or not at all."""

from __future__ import annotations

import time
from typing import Any

from replicator.apply.writes import describe_key, request_key
from replicator.backoff import Backoff, retry_forever
from replicator.clock import Clock
from replicator.dead_letter import DeadLetter, DeadLetterStore
from replicator.protocols import DestinationWriter
from replicator.records import KeyId, encode_key, key_id
from replicator.rules.selection import OnPoison, Rules
from replicator.rules.transform import RuleError
from replicator.stats import Stats

#: The shard id of a dead letter stored by the copy: a copied item has no shard.
COPY_SHARD = "copy"


class RuledWriter:
    """A ``DestinationWriter`` that writes what ``rules`` make of each copied item.

    The copy sends puts of the source's items; an item the filter does not select (or
    the transform returns None for) is not sent, and what the destination leaves
    unprocessed is given back as the copy sent it, so that it is formed again. An item
    the transform rejects stops the copy (``RuleError``, exit 3), or with ``on_poison =
    "dead-letter"`` is stored in ``dead_letters``.
    """

    def __init__(self, destination: DestinationWriter, rules: Rules, *,
                 key_names: tuple[str, ...], stats: Stats, clock: Clock,
                 path: tuple[str, str], dead_letters: DeadLetterStore | None = None,
                 backoff: Backoff | None = None) -> None:
        self._destination = destination
        self._rules = rules
        self._key_names = key_names
        self._stats = stats
        self._clock = clock
        self._path = path
        self._dead_letters = dead_letters
        self._backoff = backoff or Backoff()

    async def batch_write(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        asked: dict[KeyId, dict[str, Any]] = {}
        for request in requests:
            item = request["PutRequest"]["Item"]
            try:
                formed = self._rules.copied(item, self._key_names)
            except RuleError as exc:
                await self._poison(item, exc)
                continue
            if formed is None:
                self._stats.count_skipped("filtered", self._path)
                continue
            sent.append({"PutRequest": {"Item": formed}})
            asked[request_key(request, self._key_names)] = request
        if not sent:
            return []
        left = await self._destination.batch_write(sent)
        return [asked[request_key(request, self._key_names)] for request in left]

    async def _poison(self, item: dict[str, Any], exc: RuleError) -> None:
        keys = {name: item[name] for name in self._key_names}
        if self._rules.on_poison is not OnPoison.DEAD_LETTER or self._dead_letters is None:
            raise RuleError(
                f"the rules of destination {self._path[1]} reject item "
                f"({describe_key(key_id(keys))}) of source table {self._path[0]} while "
                f"copying it: {exc}; fix the transform, then start again: the copy "
                "resumes from the page that holds it") from exc
        store = self._dead_letters
        letter = DeadLetter(destination=self._path[1], source=self._path[0],
                            shard_id=COPY_SHARD, sequence_number=encode_key(keys),
                            event_name="INSERT",
                            keys=keys, new_image=item, old_image=None, error=str(exc),
                            stored_at=time.time())
        await retry_forever(lambda: store.put(letter), what="PutItem", backoff=self._backoff,
                            clock=self._clock, on_retry=self._stats.count_retry)
        self._stats.count_dead_letter(self._path)
