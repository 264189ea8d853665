"""Stream records, shards and sequence numbers: the data the replicator moves."""

from __future__ import annotations

import base64
import enum
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

#: A DynamoDB item or key in the low-level wire format: {"pk": {"S": "a"}, ...}, binary
#: values as their base64 text, as the wire has them (``replicator.aws.codec``).
Item = dict[str, dict[str, Any]]
#: A hashable identity of an item's key, used to route and collapse writes.
KeyId = tuple[tuple[str, str, Any], ...]


class EventName(enum.StrEnum):
    INSERT = "INSERT"
    MODIFY = "MODIFY"
    REMOVE = "REMOVE"


def key_id(keys: Item) -> KeyId:
    """A hashable identity for a key, the same for equal keys whatever their dict order."""
    parts = []
    for name in sorted(keys):
        ((type_, value),) = keys[name].items()
        parts.append((name, type_, value))
    return tuple(parts)


def sequence_key(sequence_number: str) -> int:
    """Sequence numbers are decimal strings of varying length; compare them as integers."""
    return int(sequence_number)


@dataclass(slots=True)
class StreamRecord:
    """One change read from a shard, reduced to what the destination needs."""

    shard_id: str
    sequence_number: str
    event_name: EventName
    keys: Item
    new_image: Item | None
    size_bytes: int
    #: ApproximateCreationDateTime as epoch seconds (rounded down to the second by AWS).
    created_at: float
    #: The record's eventID, unique to it (its sequence number when it has none).
    event_id: str = ""
    #: The item's image before the change (streams of NEW_AND_OLD_IMAGES only).
    old_image: Item | None = None
    #: A REMOVE made by DynamoDB's time to live (its userIdentity is the service's).
    by_ttl: bool = False
    key: KeyId = field(init=False)

    def __post_init__(self) -> None:
        self.key = key_id(self.keys)
        if not self.event_id:
            self.event_id = self.sequence_number

    @classmethod
    def from_wire(cls, shard_id: str, raw: dict[str, Any]) -> StreamRecord:
        body = raw["dynamodb"]
        event_name = EventName(raw["eventName"])
        new_image = body.get("NewImage")
        if event_name is not EventName.REMOVE and new_image is None:
            # Only reachable with a KEYS_ONLY or OLD_IMAGE stream, refused at start-up.
            raise ValueError(f"stream record {body['SequenceNumber']} carries no NewImage")
        created = body.get("ApproximateCreationDateTime")
        created_at = (
            created.timestamp() if isinstance(created, datetime) else float(created or 0.0)
        )
        return cls(
            shard_id=shard_id,
            sequence_number=body["SequenceNumber"],
            event_name=event_name,
            keys=body["Keys"],
            new_image=new_image if event_name is not EventName.REMOVE else None,
            size_bytes=int(body.get("SizeBytes", 0)),
            created_at=created_at,
            event_id=str(raw.get("eventID") or ""),
            old_image=body.get("OldImage"),
            by_ttl=_by_ttl(raw.get("userIdentity")),
        )

    def write_request(self) -> dict[str, Any]:
        """The BatchWriteItem request that applies this record."""
        if self.event_name is EventName.REMOVE:
            return {"DeleteRequest": {"Key": self.keys}}
        return {"PutRequest": {"Item": self.new_image}}

    def __repr__(self) -> str:  # never prints item contents
        return (
            f"<StreamRecord {self.event_name} shard={self.shard_id} "
            f"seq={self.sequence_number}>"
        )


#: The principal of the deletes DynamoDB's time to live makes, in their userIdentity.
TTL_PRINCIPAL = "dynamodb.amazonaws.com"


def _by_ttl(identity: Any) -> bool:
    """Whether a record's userIdentity is DynamoDB's own (a time-to-live delete)."""
    return (isinstance(identity, dict) and identity.get("Type") == "Service"
            and identity.get("PrincipalId") == TTL_PRINCIPAL)


class LaneKey(NamedTuple):
    """One destination of one shard: a source table's shard (shard ids repeat across
    streams, so a shard is named with its source) and a destination's name."""

    source: str
    shard_id: str
    destination: str


@dataclass(frozen=True, slots=True)
class Shard:
    """A shard as DescribeStream lists it."""

    shard_id: str
    parent_shard_id: str | None
    starting_sequence_number: str | None = None
    ending_sequence_number: str | None = None

    @property
    def closed(self) -> bool:
        return self.ending_sequence_number is not None

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Shard:
        seq_range = raw.get("SequenceNumberRange", {})
        return cls(
            shard_id=raw["ShardId"],
            parent_shard_id=raw.get("ParentShardId"),
            starting_sequence_number=seq_range.get("StartingSequenceNumber"),
            ending_sequence_number=seq_range.get("EndingSequenceNumber"),
        )


@dataclass(frozen=True, slots=True)
class RecordsPage:
    """One GetRecords answer. ``next_iterator`` is None once a closed shard is read to its end."""

    records: list[dict[str, Any]]
    next_iterator: str | None


def encode_key(key: Item) -> str:
    """A key (a LastEvaluatedKey, say) as a JSON string; binary values as base64."""
    return json.dumps(_to_json(key), sort_keys=True, separators=(",", ":"))


def decode_key(text: str) -> Item:
    decoded: Item = _from_json(json.loads(text))
    return decoded


def _to_json(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return {"$b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        # Only the encoding's own marker holds a string: a key attribute named "$b64"
        # holds a {type: value} dict.
        if set(value) == {"$b64"} and isinstance(value["$b64"], str):
            return base64.b64decode(value["$b64"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def item_size(item: Item) -> int:
    """An item's size in bytes as DynamoDB counts it for capacity units: each attribute
    name's UTF-8 length plus its value's size."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def value_size(value: dict[str, Any]) -> int:
    """The size of one AttributeValue, by DynamoDB's rules: strings by their UTF-8
    length, binaries by their length, numbers one byte per two significant digits
    plus one, BOOL and NULL one byte, lists and maps 3 bytes plus one byte and the
    size of each element (and each map key's length)."""
    ((type_, inner),) = value.items()
    if type_ == "S":
        return len(str(inner).encode())
    if type_ == "N":
        return _number_size(str(inner))
    if type_ == "B":
        return binary_size(inner)
    if type_ == "SS":
        return sum(len(str(element).encode()) for element in inner)
    if type_ == "NS":
        return sum(_number_size(str(element)) for element in inner)
    if type_ == "BS":
        return sum(map(binary_size, inner))
    if type_ == "L":
        return 3 + sum(1 + value_size(element) for element in inner)
    if type_ == "M":
        return 3 + sum(1 + len(name.encode()) + value_size(element)
                       for name, element in inner.items())
    return 1  # BOOL, NULL


def binary_size(value: str | bytes) -> int:
    """The length of a binary value: in wire form (base64), of what it decodes to."""
    if not isinstance(value, str):
        return len(value)
    padding = 2 if value.endswith("==") else 1 if value.endswith("=") else 0
    return len(value) * 3 // 4 - padding


def _number_size(text: str) -> int:
    digits = text.lstrip("+-").split("e")[0].split("E")[0].replace(".", "").strip("0")
    return (len(digits) + 1) // 2 + 1


def write_units(item: Item) -> int:
    """Write capacity units of a put of ``item``: one per started KB."""
    return max(1, -(-item_size(item) // 1024))
