"""A destination's rules, applied to each stream record and each copied item: which
records it takes (a filter, time-to-live deletes), in what form (a transform, then a
projection), and what becomes of a record it cannot take (``on_poison``).

Everything here is a pure function of the record: the writer pool asks ``request_for``
what to write, the copy and ``verify`` ask ``copied`` what a source item becomes.
See docs/DESIGN.md ("Selective replication").
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from replicator.records import EventName, Item, StreamRecord
from replicator.rules.pattern import FilterPattern
from replicator.rules.projection import Projection
from replicator.rules.transform import Transform


class Skipped(enum.StrEnum):
    """Why a record is not applied (it is still marked done for the checkpoint)."""

    #: The filter does not select it (nor did it select the item before).
    FILTERED = "filtered"
    #: A REMOVE made by DynamoDB's time to live, with ``skip_ttl_deletes``.
    TTL_DELETE = "ttl_delete"
    #: The transform returned None.
    TRANSFORMED_AWAY = "transformed_away"


class OnPoison(enum.StrEnum):
    #: A record the destination or the rules refuse stops its shard (exit 3).
    STOP = "stop"
    #: It is stored in the dead-letter table, and the shard goes on.
    DEAD_LETTER = "dead-letter"


#: A write to make (a BatchWriteItem PutRequest or DeleteRequest), or why there is none.
Outcome = dict[str, Any] | Skipped


@dataclass(frozen=True, slots=True)
class Rules:
    """One destination's rules. ``Rules()`` copies every record as it is."""

    filter: FilterPattern | None = None
    transform: Transform | None = None
    projection: Projection | None = None
    skip_ttl_deletes: bool = False
    on_poison: OnPoison = OnPoison.STOP

    @property
    def selective(self) -> bool:
        """Whether the rules change anything of what is written."""
        return (self.filter is not None or self.transform is not None
                or self.projection is not None or self.skip_ttl_deletes)

    @property
    def reads_old_images(self) -> bool:
        """Whether anything of the rules reads a record's OldImage: a filter (an item
        leaving it, a REMOVE), a transform (of a REMOVE), a dead letter (it keeps the
        record's images)."""
        return (self.filter is not None or self.transform is not None
                or self.on_poison is OnPoison.DEAD_LETTER)

    @property
    def keeps_removed(self) -> bool:
        """Whether the destination may keep items the source deleted (TTL deletes are
        skipped, or the filter names the event): ``verify`` does not count them."""
        return self.skip_ttl_deletes or (
            self.filter is not None and self.filter.mentions("eventName"))

    def request_for(self, record: StreamRecord) -> Outcome:
        """What to write for a stream record; ``RuleError`` when the transform rejects it.

        With a filter, an INSERT or MODIFY whose new image it selects is put; a MODIFY
        whose new image it does not select, but whose old image it did, deletes the
        item (the item left the filter); a REMOVE is applied when the filter selects
        the removed item (its old image, matched as the record's NewImage).
        """
        if record.event_name is EventName.REMOVE and self.skip_ttl_deletes and record.by_ttl:
            return Skipped.TTL_DELETE
        old = record.old_image  # decoded once: the filter may see it twice
        if record.event_name is EventName.REMOVE:
            if self.filter is not None and not self.filter.matches(
                    _view(record, "REMOVE", old, old)):
                return Skipped.FILTERED
            return self._delete(record, old)
        image = record.new_image
        assert image is not None
        if self.filter is not None and not self.filter.matches(
                _view(record, record.event_name.value, image, old)):
            if (record.event_name is EventName.MODIFY and old is not None
                    and self.filter.matches(_view(record, "MODIFY", old, old))):
                return self._delete(record, old)
            return Skipped.FILTERED
        item = self._form(image, record.event_name.value, record.keys)
        return Skipped.TRANSFORMED_AWAY if item is None else {"PutRequest": {"Item": item}}

    def copied(self, item: Item, key_names: Collection[str]) -> Item | None:
        """What a source item becomes at the destination (as an INSERT of it), or None
        when the destination does not take it; ``RuleError`` from the transform."""
        keys = {name: item[name] for name in key_names}
        if self.filter is not None and not self.filter.matches(
                {"eventName": "INSERT", "eventSource": "aws:dynamodb",
                 "dynamodb": {"Keys": keys, "NewImage": item}}):
            return None
        return self._form(item, "INSERT", keys)

    def _form(self, image: Item, event_name: str, keys: Item) -> Item | None:
        item = image
        if self.transform is not None:
            transformed = self.transform.apply(image, event_name, keys)
            if transformed is None:
                return None
            item = transformed
        if self.projection is not None:
            item = self.projection.apply(item, keys)
        return item

    def _delete(self, record: StreamRecord, old: Item | None) -> Outcome:
        if self.transform is not None and self.transform.apply(
                old or record.keys, "REMOVE", record.keys) is None:
            return Skipped.TRANSFORMED_AWAY
        return {"DeleteRequest": {"Key": record.keys}}


IDENTITY = Rules()


def _view(record: StreamRecord, event_name: str, image: Item | None,
          old: Item | None) -> dict[str, Any]:
    """The record as a Lambda filter sees it, with ``image`` as its NewImage and ``old``
    (the record's decoded OldImage) as its OldImage."""
    body: dict[str, Any] = {"Keys": record.keys, "SequenceNumber": record.sequence_number,
                            "SizeBytes": record.size_bytes}
    if image is not None:
        body["NewImage"] = image
    if old is not None:
        body["OldImage"] = old
    view: dict[str, Any] = {"eventName": event_name, "eventSource": "aws:dynamodb",
                            "dynamodb": body}
    if record.by_ttl:
        view["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    return view
