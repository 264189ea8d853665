"""Dead letters: the stream records a destination refuses for good, kept so that the
shard goes on past them.

They are stored in a table of the replication task's own (``dead_letter_table``), one
row per (destination, record), from which they can be listed, replayed and deleted.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from replicator.records import Item

#: DynamoDB's largest item: 400 KB, counting attribute names and values (UTF-8).
MAX_ITEM_BYTES = 400 * 1024

#: The width sequence numbers are zero-padded to in a letter's id.
SEQUENCE_WIDTH = 40


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One stream record a destination refused for good.

    ``keys`` and the images are wire-format attribute values (binary values as bytes),
    as the stream gave them.
    """

    #: The destination's name in the topology.
    destination: str
    #: The source table's name.
    source: str
    shard_id: str
    sequence_number: str
    #: INSERT, MODIFY or REMOVE.
    event_name: str
    keys: Item
    new_image: Item | None
    old_image: Item | None
    #: Why the destination refused the record.
    error: str
    #: When the letter was stored, in epoch seconds.
    stored_at: float
    #: True when the images were too large to keep in one item and were left out.
    images_dropped: bool = False

    @property
    def id(self) -> str:
        """The letter's id within its destination: source, shard and sequence number,
        the latter zero-padded so that the ids of one shard sort in stream order."""
        return f"{self.source}/{self.shard_id}/{self.sequence_number:0>{SEQUENCE_WIDTH}}"

    def __repr__(self) -> str:  # never prints item contents
        return (
            f"<DeadLetter {self.event_name} destination={self.destination} id={self.id}"
            f"{' images dropped' if self.images_dropped else ''}>"
        )


def without_an_image(letter: DeadLetter) -> DeadLetter | None:
    """``letter`` with one image fewer (the old image first, then the new one) and
    ``images_dropped`` set, or None when it has no image left."""
    if letter.old_image is not None:
        return replace(letter, old_image=None, images_dropped=True)
    if letter.new_image is not None:
        return replace(letter, new_image=None, images_dropped=True)
    return None


def fit_images(letter: DeadLetter, size: Callable[[DeadLetter], int],
               limit: int = MAX_ITEM_BYTES) -> DeadLetter:
    """``letter`` as it can be stored in one item of at most ``limit`` bytes, as ``size``
    measures its item: unchanged when it fits, else without its old image, then without
    its new image too (``without_an_image``). A letter whose keys and error alone exceed
    the limit comes back without images, still too large."""
    while size(letter) > limit:
        smaller = without_an_image(letter)
        if smaller is None:
            break
        letter = smaller
    return letter


class DeadLetterStore(Protocol):
    """The task's dead letters, by destination. Every method raises only
    ``replicator.errors`` exceptions."""

    async def put(self, letter: DeadLetter) -> None:
        """Store ``letter``, creating the table on first use. Idempotent: storing a
        letter of the same destination and id again keeps one row (the latest). Images
        too large for one item are dropped (``fit_images``)."""
        ...

    async def list(self, destination: str | None = None) -> builtins.list[DeadLetter]:
        """Every letter, or ``destination``'s only, ordered by (destination, id); none
        when the table does not exist."""
        ...

    async def delete(self, letter: DeadLetter) -> None:
        """Delete ``letter``'s row. A row already gone (another replay removed it) is
        not an error."""
        ...

    async def count(self) -> int:
        """How many letters are stored (0 when the table does not exist)."""
        ...


def dead_letter_table(task: str) -> str:
    """The name of the dead-letter table of the replication task ``task``."""
    return f"{task}-dead-letters"
