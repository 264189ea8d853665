"""An in-memory ``DeadLetterStore`` that behaves like ``DynamoDeadLetterStore``.

Like the fakes of ``tests.fakes`` it yields to the event loop once per call, counts
its calls by AWS operation, can be told to fail chosen calls (``fault``) and offers
``wait_until``.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
from collections import Counter
from collections.abc import Callable

from replicator.aws.dead_letters import letter_item
from replicator.dead_letter import DeadLetter, fit_images
from replicator.records import item_size
from tests.fakes import Call, Fault, _wait


def stored_size(letter: DeadLetter) -> int:
    """The size of the item ``DynamoDeadLetterStore`` stores ``letter`` in."""
    return item_size(letter_item(letter))


class FakeDeadLetterStore:
    """``DeadLetterStore`` over a dict keyed by (destination, id).

    - put: creates the table on first use, stores a copy of the letter (the latest
      one of an id), its images dropped as ``DynamoDeadLetterStore`` drops them.
    - list / count: every letter (or one destination's), ordered by (destination,
      id); none while the table does not exist.
    - delete: removes the row if there is one.

    ``rows`` holds the letters as stored; ``created`` tells whether the table exists.
    """

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], DeadLetter] = {}
        self.created = False
        self.counts: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.fault: Fault | None = None
        self._changed = asyncio.Condition()

    async def wait_until(self, predicate: Callable[[builtins.list[DeadLetter]], bool],
                         within: float = 5.0) -> None:
        """Wait until ``predicate(letters in order)`` holds; re-checked after every call."""
        await _wait(self._changed, lambda: predicate(self._ordered(None)), within,
                    lambda: f"letters {self._ordered(None)}")

    async def _enter(self, operation: str, shard_id: str | None = None) -> None:
        self.counts[operation] += 1
        call = Call(operation, self.counts[operation], shard_id=shard_id)
        await self._notify()
        await asyncio.sleep(0)
        error = self.fault(call) if self.fault is not None else None
        if error is not None:
            self.injected[operation] += 1
            raise error

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _ordered(self, destination: str | None) -> builtins.list[DeadLetter]:
        return [copy.deepcopy(letter) for (name, _), letter in sorted(self.rows.items())
                if destination is None or name == destination]

    async def put(self, letter: DeadLetter) -> None:
        if not self.created:
            await self._enter("CreateTable")
            self.created = True
        await self._enter("PutItem", letter.shard_id)
        stored = copy.deepcopy(fit_images(letter, stored_size))
        self.rows[(stored.destination, stored.id)] = stored
        await self._notify()

    async def list(self, destination: str | None = None) -> builtins.list[DeadLetter]:
        await self._enter("Scan" if destination is None else "Query")
        return self._ordered(destination)

    async def delete(self, letter: DeadLetter) -> None:
        await self._enter("DeleteItem", letter.shard_id)
        if self.rows.pop((letter.destination, letter.id), None) is not None:
            await self._notify()

    async def count(self) -> int:
        await self._enter("Scan")
        return len(self.rows)
