"""A stream and a destination table served as fast as DynamoDB serves them.

moto serves GetRecords and BatchWriteItem slowly (it copies and serializes every
record and item attribute by attribute, on one core shared by every caller), so a
drain against moto measures moto. ``StandIn`` is a small HTTP server on
127.0.0.1 that plays, on one port, the three things a replicator's stream path
talks to besides its checkpoint table:

* **the stream** (DynamoDB Streams' JSON protocol, ``DynamoDBStreams_20120810``):
  ``DescribeStream`` (100 shards a page, ``Limit``, ``ExclusiveStartShardId`` and
  ``LastEvaluatedShardId``), ``GetShardIterator`` (TRIM_HORIZON, LATEST,
  AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER) and ``GetRecords`` (``Limit`` 1 to
  1000, default 1000, and at most 1 MB of records a page by their ``SizeBytes``,
  as DynamoDB). The shards are open: no lineage, no end; a page at the head is
  empty and carries a ``NextShardIterator``. An iterator names its shard and a
  position (``<stream arn>|1|<shard index>.<position>``) and does not expire;
* **the source table**: ``DescribeTable`` answers ACTIVE, with the key schema,
  ``StreamSpecification`` (enabled, the stream's view type) and ``LatestStreamArn``
  (the stream above), and the item count and size the stream's records leave;
* **destination tables**: ``BatchWriteItem`` (at most 25 requests, no key twice,
  key attributes present, else a ValidationException, as DynamoDB) keeps the items
  in a dict by their key values and answers ``{"UnprocessedItems": {}}``;
  ``DescribeTable`` gives their exact ItemCount.

The records are built in memory before anything is timed (``Stream.generate``,
or ``Stream.from_records`` from records read elsewhere, moto's say), each
serialized to JSON once. The pages of a drain (``Limit`` 1000 from TRIM_HORIZON)
are serialized in advance (``Stream.warm``), and any other page the first time it
is asked for, and kept: a GetRecords answer is a dictionary look-up and a write.
A record's JSON is then a view of the page that holds it, not a second copy.

``Stream.append`` adds records to a shard while the server runs (a lag
benchmark's writes), each stamped on arrival: ``ApproximateCreationDateTime`` is
the arrival time in whole epoch seconds, as DynamoDB rounds it, and the exact
float is kept in ``Stream.arrivals`` by sequence number.

Besides the AWS API, plain HTTP for a benchmark: ``GET /stats`` (calls by
operation, records served, items written and deleted, items held by table, the
time of the last BatchWriteItem applied), ``POST /reset`` (empty the destination
tables, zero the counts; a body ``{"track": true}`` tracks writes from then on, see
below), ``POST /append`` (``{"shard": id or index, "records": [...]}``:
``Stream.append``; or ``{"appends": [{"shard": ..., "records": [...]}, ...]}``, several
shards in one request) and ``GET /arrivals`` (``Stream.arrivals``).

Tracking writes (off unless a reset turns it on, as it costs an item-size
computation per put): each BatchWriteItem's receive time and its write units by
DynamoDB's rules (a put one per started KB of the item, a delete one), and the
time of the latest write of each key; ``GET /writes`` answers
``{"units": [[time, units], ...], "written": [[[key values as text], time], ...]}``.

In a process of its own (the cost of the stand-in off the replicator's core,
under ``taskset``)::

    .venv/bin/python bench/stand_in.py --port P --shards 16 --records 200000 \\
        --item-bytes 1024 --view NEW_AND_OLD_IMAGES

prints ``listening on http://127.0.0.1:P`` once the records are built and the
pages serialized, and serves until SIGTERM or SIGINT. In-process:
``async with StandIn(Stream.generate(...)) as stand_in:`` then ``stand_in.url``
(or ``await stand_in.start()`` ... ``await stand_in.stop()``).

Differences from DynamoDB, none of which a drain sees: shards never close or
split; iterators never expire and records are never trimmed; no throttling; the
stream answers without the ``x-amz-crc32`` header (botocore checks it on
DynamoDB's answers only, which carry it here too).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gc
import json
import math
import random
import signal
import sys
import time
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Self

from aiohttp import web
from fast_scan import item_size, to_wire

from replicator.dev.workload import random_item

STREAMS_PREFIX = "DynamoDBStreams_20120810."
DYNAMODB_PREFIX = "DynamoDB_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"
ACCOUNT = "123456789012"
#: GetRecords: records a page by default and at most, and DynamoDB's 1 MB a page.
DEFAULT_LIMIT = 1000
PAGE_BYTES = 1024 * 1024
#: DescribeStream: shards a page by default and at most.
SHARDS_PER_PAGE = 100
PAGE_START = b'{"Records":['
#: BatchWriteItem: requests a call at most.
BATCH_LIMIT = 25
#: Seconds between the collections of ``collect_young`` (in a process of its own).
COLLECT_INTERVAL = 1.0
#: Sequence numbers: shard ``i``'s first is ``(i + 1) * SEQUENCE_BASE`` (27 digits and
#: more, as DynamoDB's), and each next one ``SEQUENCE_STEP`` more (they are not
#: consecutive in DynamoDB either).
SEQUENCE_BASE = 10**26
SEQUENCE_STEP = 10
#: Items of one partition key (``pk``) in a generated backlog.
ITEMS_PER_PARTITION_KEY = 4
#: (name, attribute type): the hash key, then the range key if any.
KeySchema = Sequence[tuple[str, str]]
WORKLOAD_KEYS: KeySchema = (("pk", "S"), ("sk", "N"))
VIEWS = ("NEW_AND_OLD_IMAGES", "NEW_IMAGE", "OLD_IMAGE", "KEYS_ONLY")
Record = dict[str, Any]  # a stream record as JSON carries it (binary values in base64)


class ApiError(Exception):
    """An AWS error answer: HTTP 400 with DynamoDB's ``__type`` and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def body(self) -> bytes:
        return json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{self.code}",
                           "message": self.message}).encode()


def _validation(message: str) -> ApiError:
    return ApiError("ValidationException", message)


# -- records ------------------------------------------------------------------------


def record_to_wire(parsed: Mapping[str, Any]) -> Record:
    """A stream record as botocore parses it (binary values as bytes, a datetime) -> as
    JSON carries it (base64, epoch seconds)."""
    record = dict(parsed)
    body = dict(record["dynamodb"])
    for name in ("Keys", "NewImage", "OldImage"):
        if name in body:
            body[name] = {attr: to_wire(value) for attr, value in body[name].items()}
    created = body.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        body["ApproximateCreationDateTime"] = created.timestamp()
    record["dynamodb"] = body
    return record


def item_body(rng: random.Random, item_bytes: int) -> tuple[dict[str, Any], int]:
    """The attributes of a ``random_item`` but its key (every attribute type) as JSON
    carries them, padded with a string attribute ``pad`` to ``item_bytes`` with the
    workload's key, by DynamoDB's item-size rules; and their size."""
    key = {"pk": {"S": "user-0"}, "sk": {"N": "0"}}
    item = {name: to_wire(value) for name, value in random_item(rng, key).items()
            if name not in key}
    missing = item_bytes - item_size(key) - item_size(item) - len("pad")
    if missing > 0:
        item["pad"] = {"S": "p" * missing}
    return item, item_size(item)


def key_of(item: Mapping[str, Any], key_names: Sequence[str]) -> tuple[Any, ...]:
    """An item's key values, equal when DynamoDB's are (numbers by value)."""
    parts = []
    for name in key_names:
        (kind, value), = item[name].items()
        parts.append(Decimal(value) if kind == "N" else value)
    return tuple(parts)


def partition(value: Mapping[str, Any], shards: int) -> int:
    """The shard of a partition key value (``{"S": "user-1"}``), by a hash of it."""
    return zlib.crc32(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()) % shards


def partition_keys(shards: int, each: int) -> list[list[str]]:
    """``each`` partition key values (``user-<n>``) of each shard (``partition``)."""
    values: list[list[str]] = [[] for _ in range(shards)]
    number, short = 0, shards if each > 0 else 0
    while short:
        value = f"user-{number}"
        number += 1
        found = values[partition({"S": value}, shards)]
        if len(found) < each:
            found.append(value)
            short -= len(found) == each
    return values


def new_shard_id(rng: random.Random, created: float) -> str:
    """``shardId-<20 digits of creation milliseconds>-<8 hex>``, as DynamoDB's."""
    return f"shardId-{int(created * 1000):020d}-{rng.getrandbits(32):08x}"


# -- the stream ---------------------------------------------------------------------


@dataclass(slots=True)
class Page:
    body: bytes
    #: Records on the page, where the next page starts, and the shard's length when
    #: the page was built (a page that reached the head then is built again once the
    #: shard has grown).
    count: int
    end: int
    length: int


@dataclass(slots=True)
class StreamShard:
    shard_id: str
    starting_sequence_number: str
    #: Per record: its JSON, its sequence number and the running total of SizeBytes.
    records: list[bytes | memoryview] = field(default_factory=list)
    sequence_numbers: list[int] = field(default_factory=list)
    total_sizes: list[int] = field(default_factory=lambda: [0])
    pages: dict[tuple[int, int], Page] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def add(self, record: Record) -> None:
        body = record["dynamodb"]
        self.add_encoded(json.dumps(record, separators=(",", ":")).encode(),
                         int(body["SequenceNumber"]), int(body["SizeBytes"]))

    def add_encoded(self, encoded: bytes, number: int, size: int) -> None:
        """A record already serialized, with its sequence number and SizeBytes."""
        if self.sequence_numbers and number <= self.sequence_numbers[-1]:
            raise ValueError(f"shard {self.shard_id}: sequence number {number} does not "
                             f"follow {self.sequence_numbers[-1]}")
        self.records.append(encoded)
        self.sequence_numbers.append(number)
        self.total_sizes.append(self.total_sizes[-1] + size)

    def next_sequence_number(self, index: int) -> int:
        if self.sequence_numbers:
            return self.sequence_numbers[-1] + SEQUENCE_STEP
        return max(int(self.starting_sequence_number), (index + 1) * SEQUENCE_BASE)

    def to_json(self) -> dict[str, Any]:
        return {"ShardId": self.shard_id,
                "SequenceNumberRange": {"StartingSequenceNumber": self.starting_sequence_number}}


class Stream:
    """One stream's shards and records, and its answers to the streams API.

    ``from_records`` or ``generate`` make one; ``warm`` serializes a drain's pages.
    """

    def __init__(self, stream_arn: str, shards: Mapping[str, Sequence[Record]], *,
                 view: str = "NEW_AND_OLD_IMAGES", key_schema: KeySchema = WORKLOAD_KEYS,
                 region: str = "us-east-1", page_bytes: int = PAGE_BYTES,
                 starting_sequence_numbers: Mapping[str, str] | None = None,
                 live: tuple[int, int] | None = None) -> None:
        """``shards``: each shard's records (``Record``: as JSON carries them, complete,
        in sequence-number order) by shard ID, in DescribeStream's order. A shard
        without records starts at ``starting_sequence_numbers`` or at its own base.
        ``live``: the items and bytes the records leave in the table, when known."""
        if view not in VIEWS:
            raise ValueError(f"view {view!r}: one of {', '.join(VIEWS)}")
        self.stream_arn = stream_arn
        self.view = view
        self.key_schema = list(key_schema)
        self.key_names = [name for name, _ in key_schema]
        self.region = region
        self.page_bytes = page_bytes
        self.table = stream_arn.split(":table/", 1)[-1].split("/stream/", 1)[0]
        self.label = stream_arn.rsplit("/stream/", 1)[-1]
        self.created = time.time()
        #: Sequence number -> exact arrival time (epoch seconds) of each appended record.
        self.arrivals: dict[str, float] = {}
        self.shards: list[StreamShard] = []
        starts = starting_sequence_numbers or {}
        for index, (shard_id, records) in enumerate(shards.items()):
            first = (records[0]["dynamodb"]["SequenceNumber"] if records
                     else starts.get(shard_id, str((index + 1) * SEQUENCE_BASE)))
            shard = StreamShard(shard_id, str(first))
            for record in records:
                shard.add(record)
            self.shards.append(shard)
        self._by_id = {shard.shard_id: index for index, shard in enumerate(self.shards)}
        self.live_items, self.live_bytes = live or self._live(shards.values())

    def __repr__(self) -> str:
        return (f"<Stream {self.stream_arn} shards={len(self.shards)} "
                f"records={self.record_count}>")

    @property
    def record_count(self) -> int:
        return sum(len(shard) for shard in self.shards)

    def _live(self, shards: Any) -> tuple[int, int]:
        """The items and bytes the records leave in the source table (REMOVE takes an
        item out, any other record puts its new image), for DescribeTable."""
        sizes: dict[tuple[Any, ...], int] = {}
        for records in shards:
            for record in records:
                body = record["dynamodb"]
                key = key_of(body["Keys"], self.key_names)
                if record["eventName"] == "REMOVE":
                    sizes.pop(key, None)
                else:
                    sizes[key] = item_size(body.get("NewImage") or body["Keys"])
        return len(sizes), sum(sizes.values())

    # -- making one

    @classmethod
    def from_records(cls, stream_arn: str, shards: Mapping[str, Sequence[Record]],
                     **options: Any) -> Stream:
        """A stream of exactly these records (``Stream``'s arguments)."""
        return cls(stream_arn, shards, **options)

    @classmethod
    def generate(cls, *, table: str = "bench-source", shards: int = 16,
                 records: int = 200_000, item_bytes: int = 1024,
                 view: str = "NEW_AND_OLD_IMAGES", region: str = "us-east-1",
                 seed: int = 7, page_bytes: int = PAGE_BYTES,
                 distinct: int = 1024) -> Stream:
        """A backlog of ``records`` records over ``shards`` shards (their counts differ
        by one at most), keyed ``pk`` S / ``sk`` N, items of ``item_bytes`` with every
        attribute type, ``ITEMS_PER_PARTITION_KEY`` of each ``pk``. A partition key's
        records are in one shard (``shard_for``), as DynamoDB's; in each shard, 50%
        INSERT of a new key, 30% MODIFY (a new item over a live one) and 20% REMOVE
        of a live key, while any key is live;
        ``live_items`` is what a replica holds once it has applied them all. The
        items' attributes but their keys are drawn from ``distinct`` random ones
        (making each takes longer than serializing a record)."""
        rng = random.Random(seed)
        created = time.time()
        label = datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        arn = f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{table}/stream/{label}"
        stream = cls(arn, {new_shard_id(rng, created): [] for _ in range(shards)}, view=view,
                     key_schema=WORKLOAD_KEYS, region=region, page_bytes=page_bytes)
        bodies = []
        for _ in range(max(1, min(distinct, records))):
            body, size = item_body(rng, item_bytes)
            bodies.append((json.dumps(body, separators=(",", ":"))[1:-1], size))
        stream.live_items = stream.live_bytes = 0
        counts = [records // shards + (index < records % shards) for index in range(shards)]
        values = partition_keys(shards, -(-counts[0] // ITEMS_PER_PARTITION_KEY))
        for index, shard in enumerate(stream.shards):
            live = _generate_shard(shard, index, counts[index], values[index], bodies, rng,
                                   view, region)
            stream.live_items += len(live)
            stream.live_bytes += sum(size for _, _, size in live)
        return stream

    def record(self, event_name: str, keys: Mapping[str, Any], *,
               new_image: Mapping[str, Any] | None = None,
               old_image: Mapping[str, Any] | None = None) -> Record:
        """A record of this stream's view for ``append`` (images as JSON carries them),
        without its sequence number and time, which ``append`` gives it."""
        body: dict[str, Any] = {"Keys": dict(keys)}
        if new_image is not None and self.view in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
            body["NewImage"] = dict(new_image)
        if old_image is not None and self.view in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES"):
            body["OldImage"] = dict(old_image)
        body["SizeBytes"] = _size_bytes(body)
        body["StreamViewType"] = self.view
        return {"eventID": f"{random.getrandbits(128):032x}", "eventName": event_name,
                "eventVersion": "1.1", "eventSource": "aws:dynamodb",
                "awsRegion": self.region, "dynamodb": body}

    def shard_for(self, keys: Mapping[str, Any]) -> int:
        """The shard of an item, by its partition key (as DynamoDB's partitions), as
        ``generate`` placed its items: where ``append`` keeps a key's records in order."""
        return partition(keys[self.key_names[0]], len(self.shards))

    def append(self, shard: int | str, records: Sequence[Record]) -> list[str]:
        """Add records to the head of a shard (an index or an ID), each stamped on
        arrival: the next sequence numbers, ``ApproximateCreationDateTime`` the arrival
        time in whole seconds, and the exact time in ``arrivals``. Their sequence
        numbers, in order."""
        index = self._by_id[shard] if isinstance(shard, str) else shard
        target = self.shards[index]
        numbers = []
        for raw in records:
            now = time.time()
            number = str(target.next_sequence_number(index))
            body = dict(raw["dynamodb"], SequenceNumber=number,
                        ApproximateCreationDateTime=float(math.floor(now)))
            if "SizeBytes" not in body:
                body["SizeBytes"] = _size_bytes(body)
            body.setdefault("StreamViewType", self.view)
            record = {"eventID": raw.get("eventID") or f"{random.getrandbits(128):032x}",
                      **{k: v for k, v in raw.items() if k not in ("eventID", "dynamodb")},
                      "dynamodb": body}
            target.add(record)
            self.arrivals[number] = now
            numbers.append(number)
        return numbers

    # -- pages

    def warm(self) -> int:
        """Serialize every page a drain reads (``Limit`` 1000 from TRIM_HORIZON) now, so
        that serving them costs a look-up; the pages built. Each record's JSON becomes a
        view of the page that holds it (one copy in memory, not two)."""
        pages = 0
        for shard in self.shards:
            position = 0
            while position < len(shard):
                page = self._page(shard, position, DEFAULT_LIMIT)
                if page.end < page.length:  # complete for good: its records live in it
                    view = memoryview(page.body)
                    offset = len(PAGE_START)
                    for i in range(position, page.end):
                        size = len(shard.records[i])
                        shard.records[i] = view[offset:offset + size]
                        offset += size + 1
                position = page.end
                pages += 1
        return pages

    def _page(self, shard: StreamShard, position: int, limit: int) -> Page:
        page = shard.pages.get((position, limit))
        length = len(shard)
        if page is None or (page.end == page.length and page.length != length):
            page = shard.pages[position, limit] = self._build(shard, position, limit)
        return page

    def _build(self, shard: StreamShard, position: int, limit: int) -> Page:
        length = len(shard)
        end = min(position + limit, length)
        if self.page_bytes and end > position + 1:
            totals = shard.total_sizes
            within = bisect.bisect_right(totals, totals[position] + self.page_bytes) - 1
            end = min(end, max(position + 1, within))
        index = self._by_id[shard.shard_id]
        body = b"".join((PAGE_START, b",".join(shard.records[position:end]),
                         b'],"NextShardIterator":"',
                         self._iterator(index, end).encode(), b'"}'))
        return Page(body, end - position, end, length)

    def _iterator(self, index: int, position: int) -> str:
        return f"{self.stream_arn}|1|{index}.{position}"

    # -- the API

    def _shard(self, params: Mapping[str, Any]) -> tuple[int, StreamShard]:
        if params.get("StreamArn") != self.stream_arn:
            raise ApiError("ResourceNotFoundException",
                           f"Requested resource not found: Stream: {params.get('StreamArn')} "
                           "not found")
        index = self._by_id.get(params.get("ShardId", ""))
        if index is None:
            raise ApiError("ResourceNotFoundException",
                           f"Requested resource not found: Shard: {params.get('ShardId')} "
                           f"in Stream: {self.stream_arn} not found")
        return index, self.shards[index]

    def describe_stream(self, params: Mapping[str, Any]) -> dict[str, Any]:
        if params.get("StreamArn") != self.stream_arn:
            raise ApiError("ResourceNotFoundException",
                           f"Requested resource not found: Stream: {params.get('StreamArn')} "
                           "not found")
        limit = params.get("Limit", SHARDS_PER_PAGE)
        if not isinstance(limit, int) or not 1 <= limit <= SHARDS_PER_PAGE:
            raise _validation(f"Limit {limit!r}: between 1 and {SHARDS_PER_PAGE}")
        first = 0
        after = params.get("ExclusiveStartShardId")
        if after is not None:
            if after not in self._by_id:
                raise _validation(f"ExclusiveStartShardId {after!r} is not a shard of the "
                                  "stream")
            first = self._by_id[after] + 1
        shards = self.shards[first:first + limit]
        description: dict[str, Any] = {
            "StreamArn": self.stream_arn,
            "StreamLabel": self.label,
            "StreamStatus": "ENABLED",
            "StreamViewType": self.view,
            "CreationRequestDateTime": self.created,
            "TableName": self.table,
            "KeySchema": [{"AttributeName": name, "KeyType": kind}
                          for (name, _), kind in zip(self.key_schema, ("HASH", "RANGE"),
                                                     strict=False)],
            "Shards": [shard.to_json() for shard in shards],
        }
        if first + limit < len(self.shards):
            description["LastEvaluatedShardId"] = shards[-1].shard_id
        return {"StreamDescription": description}

    def get_shard_iterator(self, params: Mapping[str, Any]) -> dict[str, Any]:
        index, shard = self._shard(params)
        kind = params.get("ShardIteratorType")
        if kind == "TRIM_HORIZON":
            position = 0
        elif kind == "LATEST":
            position = len(shard)
        elif kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            try:
                number = int(params["SequenceNumber"])
            except (KeyError, TypeError, ValueError):
                raise _validation(f"{kind} needs a SequenceNumber") from None
            find = bisect.bisect_left if kind == "AT_SEQUENCE_NUMBER" else bisect.bisect_right
            position = find(shard.sequence_numbers, number)
        else:
            raise _validation(f"ShardIteratorType {kind!r}")
        return {"ShardIterator": self._iterator(index, position)}

    def get_records(self, params: Mapping[str, Any]) -> Page:
        iterator = params.get("ShardIterator")
        limit = params.get("Limit", DEFAULT_LIMIT)
        if not isinstance(limit, int) or not 1 <= limit <= DEFAULT_LIMIT:
            raise _validation(f"Limit {limit!r}: between 1 and {DEFAULT_LIMIT}")
        arn, _, where = str(iterator).rpartition("|1|")
        try:
            index_text, _, position_text = where.partition(".")
            index, position = int(index_text), int(position_text)
            shard = self.shards[index]
        except (ValueError, IndexError):
            raise _validation("Invalid ShardIterator") from None
        if arn != self.stream_arn or not 0 <= position <= len(shard):
            raise _validation("Invalid ShardIterator")
        return self._page(shard, position, limit)

    def describe_source(self) -> dict[str, Any]:
        """DescribeTable's ``Table`` for the source table of this stream."""
        return {**table_description(self.table, self.key_schema, self.region,
                                    items=self.live_items, size=self.live_bytes,
                                    created=self.created),
                "StreamSpecification": {"StreamEnabled": True, "StreamViewType": self.view},
                "LatestStreamArn": self.stream_arn,
                "LatestStreamLabel": self.label}


def _size_bytes(body: Mapping[str, Any]) -> int:
    return sum(item_size(body[name]) for name in ("Keys", "NewImage", "OldImage")
               if name in body)


def _generate_shard(shard: StreamShard, index: int, count: int, partition_values: list[str],
                    bodies: Sequence[tuple[str, int]], rng: random.Random, view: str,
                    region: str) -> list[tuple[str, int, int]]:
    """``Stream.generate``'s records of one shard, written as JSON text from the
    bodies' (an item's attributes but its key, serialized, and their size), keyed by
    the shard's partition key values; the items they leave: (key JSON, body, size)."""
    live: list[tuple[str, int, int]] = []  # in no order
    made = 0
    created = float(math.floor(time.time()))
    with_new = view in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")
    with_old = view in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES")
    head = ('{"eventID":"%032x","eventName":"%s","eventVersion":"1.1",'
            f'"eventSource":"aws:dynamodb","awsRegion":{json.dumps(region)},'
            f'"dynamodb":{{"ApproximateCreationDateTime":{created!r},"Keys":{{')
    tail = f'"StreamViewType":"{view}"}}}}'

    def image(name: str, keys: str, body: int) -> str:
        return f'"{name}":{{{keys},{bodies[body][0]}}},'

    number = (index + 1) * SEQUENCE_BASE
    for _ in range(count):
        choice = rng.random()
        if not live or choice < 0.5:
            event = "INSERT"
            value = partition_values[made // ITEMS_PER_PARTITION_KEY]
            keys = f'"pk":{{"S":"{value}"}},"sk":{{"N":"{made}"}}'
            # By DynamoDB's rules: the names, the string, and a number's digits.
            key_size = 2 + len(value) + 2 + (len(str(made).strip("0") or "0") + 1) // 2 + 1
            made += 1
            new = rng.randrange(len(bodies))
            live.append((keys, new, key_size + bodies[new][1]))
            images = image("NewImage", keys, new) if with_new else ""
            size = key_size + (key_size + bodies[new][1]) * with_new
        else:
            at = rng.randrange(len(live))
            keys, old, old_size = live[at]
            key_size = old_size - bodies[old][1]
            images = image("OldImage", keys, old) if with_old else ""
            size = key_size + old_size * with_old
            if choice < 0.8:
                event = "MODIFY"
                new = rng.randrange(len(bodies))
                live[at] = (keys, new, key_size + bodies[new][1])
                if with_new:
                    images = image("NewImage", keys, new) + images
                size += (key_size + bodies[new][1]) * with_new
            else:
                event = "REMOVE"
                live[at] = live[-1]
                live.pop()
        text = (head % (rng.getrandbits(128), event) + keys + "}," + images
                + f'"SequenceNumber":"{number}","SizeBytes":{size},' + tail)
        shard.add_encoded(text.encode(), number, size)
        number += SEQUENCE_STEP
    return live


# -- the tables ---------------------------------------------------------------------


def table_description(table: str, key_schema: KeySchema, region: str, *, items: int,
                      size: int, created: float) -> dict[str, Any]:
    """DescribeTable's ``Table`` of an ACTIVE on-demand table."""
    return {
        "TableName": table,
        "TableArn": f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{table}",
        "TableId": f"{zlib.crc32(table.encode()):08x}-0000-4000-8000-000000000000",
        "TableStatus": "ACTIVE",
        "CreationDateTime": created,
        "KeySchema": [{"AttributeName": name, "KeyType": kind}
                      for (name, _), kind in zip(key_schema, ("HASH", "RANGE"), strict=False)],
        "AttributeDefinitions": [{"AttributeName": name, "AttributeType": attribute}
                                 for name, attribute in key_schema],
        "ProvisionedThroughput": {"NumberOfDecreasesToday": 0, "ReadCapacityUnits": 0,
                                  "WriteCapacityUnits": 0},
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST",
                               "LastUpdateToPayPerRequestDateTime": created},
        "ItemCount": items,
        "TableSizeBytes": size,
        "DeletionProtectionEnabled": False,
    }


class Destination:
    """A destination table: its items by key values (as JSON carries them)."""

    def __init__(self, table: str, key_schema: KeySchema = WORKLOAD_KEYS,
                 region: str = "us-east-1") -> None:
        self.table = table
        self.key_schema = list(key_schema)
        self.key_names = [name for name, _ in key_schema]
        self.region = region
        self.created = time.time()
        self.items: dict[tuple[Any, ...], dict[str, Any]] = {}

    def key(self, item: Mapping[str, Any]) -> tuple[Any, ...]:
        try:
            return key_of(item, self.key_names)
        except (KeyError, AttributeError, ValueError, ArithmeticError):
            raise _validation("The provided key element does not match the schema") from None

    def describe(self) -> dict[str, Any]:
        size = sum(item_size(item) for item in self.items.values()) if self.items else 0
        return table_description(self.table, self.key_schema, self.region,
                                 items=len(self.items), size=size, created=self.created)


# -- the server ---------------------------------------------------------------------


EMPTY_BATCH_ANSWER = b'{"UnprocessedItems":{}}'


@dataclass
class Counts:
    calls: Counter[str] = field(default_factory=Counter)
    records_served: int = 0
    items_written: int = 0
    items_deleted: int = 0
    #: time.time() of the last BatchWriteItem applied (0: none yet).
    last_write: float = 0.0


@dataclass
class Tracking:
    """What the writes of a tracked span were: (receive time, write units) per
    BatchWriteItem, and the receive time of the latest write of each key."""

    units: list[tuple[float, int]] = field(default_factory=list)
    written: dict[tuple[Any, ...], float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"units": self.units,
                "written": [[[str(part) for part in key], at]
                            for key, at in self.written.items()]}


def write_units(item: Mapping[str, Any]) -> int:
    """A put's write units by DynamoDB's rules: one per started KB of the item (as
    JSON carries it: binary values in base64, sized decoded)."""
    return max(1, -(-item_size(item) // 1024))


class StandIn:
    """The stream, its source table and the destination tables on one port of
    127.0.0.1 (see the module docstring).

    ``async with StandIn(stream, destinations=["t"]) as stand_in:`` then
    ``stand_in.url``; ``counts`` and ``destinations`` hold what it was asked and sent.
    """

    def __init__(self, stream: Stream | None = None, *,
                 destinations: Sequence[str] = ("bench-destination",),
                 key_schema: KeySchema | None = None, port: int = 0) -> None:
        self.stream = stream
        schema = key_schema or (stream.key_schema if stream is not None else WORKLOAD_KEYS)
        region = stream.region if stream is not None else "us-east-1"
        self.destinations = {name: Destination(name, schema, region) for name in destinations}
        self.counts = Counts()
        self.tracking: Tracking | None = None
        self._port = port
        self.url = f"http://127.0.0.1:{port}"
        self._runner: web.AppRunner | None = None
        self._crc_empty = str(zlib.crc32(EMPTY_BATCH_ANSWER))
        self._requests = 0

    def __repr__(self) -> str:
        return f"<StandIn {self.url} {self.stream!r} tables={sorted(self.destinations)}>"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/", self._api)
        app.router.add_get("/stats", self._stats)
        app.router.add_get("/arrivals", self._arrivals)
        app.router.add_get("/writes", self._writes)
        app.router.add_post("/reset", self._reset)
        app.router.add_post("/append", self._append)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self._port, backlog=1024).start()
        self._port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self._port}"

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def stats(self) -> dict[str, Any]:
        counts = self.counts
        return {"calls": dict(counts.calls), "records_served": counts.records_served,
                "items_written": counts.items_written, "items_deleted": counts.items_deleted,
                "last_write": counts.last_write, "tracking": self.tracking is not None,
                "items": {name: len(table.items) for name, table in self.destinations.items()},
                "stream_arn": self.stream.stream_arn if self.stream is not None else None,
                "records": self.stream.record_count if self.stream is not None else 0,
                "live_items": self.stream.live_items if self.stream is not None else 0}

    def reset(self, *, track: bool = False) -> None:
        """Empty the destination tables and zero the counts; ``track``: track the
        writes from now on (``Tracking``), else stop tracking."""
        for table in self.destinations.values():
            table.items.clear()
        self.counts = Counts()
        self.tracking = Tracking() if track else None

    # -- plain HTTP

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _arrivals(self, request: web.Request) -> web.Response:
        return web.json_response(self.stream.arrivals if self.stream is not None else {})

    async def _writes(self, request: web.Request) -> web.Response:
        return web.json_response(self.tracking.to_json() if self.tracking is not None
                                 else {"units": [], "written": []})

    async def _reset(self, request: web.Request) -> web.Response:
        order = await request.json() if request.can_read_body else {}
        self.reset(track=bool(order.get("track")))
        return web.json_response({})

    async def _append(self, request: web.Request) -> web.Response:
        if self.stream is None:
            raise web.HTTPNotFound(text="no stream")
        order = await request.json()
        if "appends" in order:
            return web.json_response({"SequenceNumbers": [
                self.stream.append(one["shard"], one["records"]) for one in order["appends"]]})
        numbers = self.stream.append(order["shard"], order["records"])
        return web.json_response({"SequenceNumbers": numbers})

    # -- the AWS API

    async def _api(self, request: web.Request) -> web.Response:
        target = request.headers.get("X-Amz-Target", "")
        body = await request.read()
        self._requests += 1
        headers = {"Content-Type": CONTENT_TYPE,
                   "x-amzn-RequestId": f"stand-in-{self._requests}"}
        prefix, _, operation = target.partition(".")
        self.counts.calls[operation or target] += 1
        try:
            try:
                params = json.loads(body) if body else {}
            except ValueError:
                raise ApiError("SerializationException", "the request is not JSON") from None
            if not isinstance(params, dict):
                raise ApiError("SerializationException", "Start of structure or map found "
                               "where not expected")
            if prefix + "." == STREAMS_PREFIX and self.stream is not None:
                answer = self._streams(operation, params)
            elif prefix + "." == DYNAMODB_PREFIX:
                answer = self._dynamodb(operation, params)
                if answer is EMPTY_BATCH_ANSWER:
                    headers["x-amz-crc32"] = self._crc_empty
                    return web.Response(body=answer, headers=headers)
                headers["x-amz-crc32"] = str(zlib.crc32(answer))
            else:
                raise ApiError("UnknownOperationException", f"unknown operation {target!r}")
        except ApiError as error:
            return web.Response(status=400, body=error.body(), headers=headers)
        return web.Response(body=answer, headers=headers)

    def _streams(self, operation: str, params: dict[str, Any]) -> bytes:
        assert self.stream is not None
        if operation == "GetRecords":
            page = self.stream.get_records(params)
            self.counts.records_served += page.count
            return page.body
        if operation == "GetShardIterator":
            return json.dumps(self.stream.get_shard_iterator(params)).encode()
        if operation == "DescribeStream":
            return json.dumps(self.stream.describe_stream(params)).encode()
        raise ApiError("UnknownOperationException", f"unknown operation {operation!r}")

    def _dynamodb(self, operation: str, params: dict[str, Any]) -> bytes:
        if operation == "BatchWriteItem":
            return self._batch_write(params)
        if operation == "DescribeTable":
            name = params.get("TableName")
            if self.stream is not None and name == self.stream.table:
                return json.dumps({"Table": self.stream.describe_source()}).encode()
            if name in self.destinations:
                return json.dumps({"Table": self.destinations[name].describe()}).encode()
            raise ApiError("ResourceNotFoundException",
                           f"Requested resource not found: Table: {name} not found")
        raise ApiError("UnknownOperationException", f"unknown operation {operation!r}")

    def _batch_write(self, params: dict[str, Any]) -> bytes:
        """Every request checked first (as DynamoDB, all or nothing), then applied."""
        requests = params.get("RequestItems")
        if not isinstance(requests, dict) or not requests:
            raise _validation("RequestItems must not be empty")
        total = sum(len(batch) for batch in requests.values())
        if not 1 <= total <= BATCH_LIMIT:
            raise _validation(f"Too many items requested for the BatchWriteItem call: {total}")
        writes: list[tuple[Destination, tuple[Any, ...], dict[str, Any] | None]] = []
        for name, batch in requests.items():
            table = self.destinations.get(name)
            if table is None:
                raise ApiError("ResourceNotFoundException",
                               f"Requested resource not found: Table: {name} not found")
            seen: set[tuple[Any, ...]] = set()
            for one in batch:
                put = one.get("PutRequest")
                item = put["Item"] if put is not None else one["DeleteRequest"]["Key"]
                key = table.key(item)
                if key in seen:
                    raise _validation("Provided list of item keys contains duplicates")
                seen.add(key)
                writes.append((table, key, item if put is not None else None))
        counts = self.counts
        for table, key, item in writes:
            if item is None:
                table.items.pop(key, None)
                counts.items_deleted += 1
            else:
                table.items[key] = item
                counts.items_written += 1
        counts.last_write = now = time.time()
        if self.tracking is not None:
            written = self.tracking.written
            units = 0
            for _, key, item in writes:
                units += 1 if item is None else write_units(item)
                written[key] = now
            self.tracking.units.append((now, units))
        return EMPTY_BATCH_ANSWER


# -- python bench/stand_in.py ---------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    command = argparse.ArgumentParser(
        prog="python bench/stand_in.py",
        description="A DynamoDB stream (its source table's DescribeTable included) and "
        "destination tables on 127.0.0.1, from records built in memory: DescribeStream, "
        "GetShardIterator, GetRecords, DescribeTable, BatchWriteItem; GET /stats. Prints "
        "'listening on URL' when ready; serves until SIGTERM or SIGINT.",
    )
    command.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    command.add_argument("--shards", type=int, default=16, help="open shards")
    command.add_argument("--records", type=int, default=200_000,
                         help="records in the stream, over every shard")
    command.add_argument("--item-bytes", type=int, default=1024,
                         help="item size by DynamoDB's rules (every attribute type, padded)")
    command.add_argument("--view", choices=VIEWS, default="NEW_AND_OLD_IMAGES",
                         help="StreamViewType")
    command.add_argument("--region", default="us-east-1", help="region in the ARNs")
    command.add_argument("--source-table", default="bench-source",
                         help="the source table (DescribeTable names the stream)")
    command.add_argument("--destination-table", action="append", dest="destinations",
                         help="a destination table (again for more; default "
                         "bench-destination)")
    command.add_argument("--page-bytes", type=int, default=PAGE_BYTES,
                         help="GetRecords page limit in SizeBytes (default 1 MB, as "
                         "DynamoDB; 0: Limit only)")
    command.add_argument("--seed", type=int, default=7, help="random seed")
    return command


async def serve(options: argparse.Namespace) -> None:
    started = time.perf_counter()
    stream = Stream.generate(table=options.source_table, shards=options.shards,
                             records=options.records, item_bytes=options.item_bytes,
                             view=options.view, region=options.region, seed=options.seed,
                             page_bytes=options.page_bytes)
    pages = stream.warm()
    print(f"stand-in: {stream.record_count} records on {len(stream.shards)} shards, "
          f"{pages} pages, {stream.live_items} live items, built in "
          f"{time.perf_counter() - started:.1f}s; stream {stream.stream_arn}",
          file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    collector = asyncio.create_task(collect_young())
    async with StandIn(stream, destinations=options.destinations or ["bench-destination"],
                       port=options.port) as stand_in:
        print(f"listening on {stand_in.url}", flush=True)
        await stop.wait()
    collector.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await collector


async def collect_young(interval: float = COLLECT_INTERVAL) -> None:
    """The garbage collector on what was made since it last ran, every ``interval``,
    and never on what is kept: the records, and the items written (a full collection
    traverses them all, and one came every few BatchWriteItem calls, which made
    parsing a request three times dearer). A reference cycle alive at a collection is
    kept for good: a few in-flight requests' at most."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        while True:
            await asyncio.sleep(interval)
            gc.collect(1)
            gc.freeze()
    finally:
        gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    options = parser().parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(options))
    else:
        uvloop.run(serve(options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
