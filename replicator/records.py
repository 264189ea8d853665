"""Stream records, shards and sequence numbers: the data the replicator moves."""

from __future__ import annotations

import base64
import enum
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import msgspec

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
    if len(keys) == 1:
        ((name, value),) = keys.items()
        ((type_, inner),) = value.items()
        return ((name, type_, inner),)
    parts = []
    for name in sorted(keys):
        ((type_, inner),) = keys[name].items()
        parts.append((name, type_, inner))
    return tuple(parts)


def sequence_key(sequence_number: str) -> int:
    """Sequence numbers are decimal strings of varying length; compare them as integers."""
    return int(sequence_number)


#: No image (a JSON text of no bytes).
EMPTY_IMAGE = msgspec.Raw(b"")


class EncodedItem:
    """An item kept as its wire JSON text, as the codec reads images from GetRecords
    (``replicator.aws.codec``): one buffer instead of a tree of dicts, which the
    garbage collector never walks. It is written into a request as it is, and decoded
    only where something reads its attributes (``decode``)."""

    __slots__ = ("json",)

    def __init__(self, json: msgspec.Raw | bytes) -> None:
        self.json = json if isinstance(json, msgspec.Raw) else msgspec.Raw(json)

    def decode(self) -> Item:
        item: Item = msgspec.json.decode(self.json)
        return item

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EncodedItem) and bytes(other.json) == bytes(self.json)

    def __hash__(self) -> int:
        return hash(bytes(self.json))

    def __repr__(self) -> str:  # never prints item contents
        return f"<EncodedItem {len(self.json)} bytes>"


#: An image as a stream record holds it: decoded, or as its wire JSON text.
Image = Item | EncodedItem


def decoded(image: Image | None) -> Item | None:
    """An image's attributes (``EncodedItem.decode`` when it is encoded)."""
    return None if image is None else as_item(image)


def as_item(image: Image) -> Item:
    """An image's attributes: ``EncodedItem.decode`` of an encoded one."""
    return image.decode() if isinstance(image, EncodedItem) else image


@dataclass(slots=True, init=False)
class StreamRecord:
    """One change read from a shard, reduced to what the destination needs."""

    shard_id: str
    sequence_number: str
    event_name: EventName
    keys: Item
    #: The NewImage as it was read (``new_image`` decodes it).
    new_wire: Image | None
    size_bytes: int
    #: ApproximateCreationDateTime as epoch seconds (rounded down to the second by AWS).
    created_at: float
    #: The record's eventID, unique to it (its sequence number when it has none).
    event_id: str
    #: The OldImage as it was read (streams of NEW_AND_OLD_IMAGES only; ``old_image``).
    old_wire: Image | None
    #: A REMOVE made by DynamoDB's time to live (its userIdentity is the service's).
    by_ttl: bool
    key: KeyId

    def __init__(self, *, shard_id: str, sequence_number: str, event_name: EventName,
                 keys: Item, new_image: Image | None, size_bytes: int, created_at: float,
                 event_id: str = "", old_image: Image | None = None,
                 by_ttl: bool = False) -> None:
        self.shard_id = shard_id
        self.sequence_number = sequence_number
        self.event_name = event_name
        self.keys = keys
        self.new_wire = new_image
        self.size_bytes = size_bytes
        self.created_at = created_at
        self.event_id = event_id or sequence_number
        self.old_wire = old_image
        self.by_ttl = by_ttl
        self.key = key_id(keys)

    @property
    def new_image(self) -> Item | None:
        """The item after the change (None for a REMOVE)."""
        return decoded(self.new_wire)

    @property
    def old_image(self) -> Item | None:
        """The item before the change (streams of NEW_AND_OLD_IMAGES only)."""
        return decoded(self.old_wire)

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
        return {"PutRequest": {"Item": self.new_wire}}

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


def write_units(item: Image) -> int:
    """Write capacity units of a put of ``item``: one per started KB."""
    return max(1, -(-item_size(as_item(item)) // 1024))
