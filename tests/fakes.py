"""In-memory fakes of the three AWS interfaces of ``replicator.protocols``.

They behave like the aiobotocore implementations in ``replicator.aws``: they
raise only ``replicator.errors`` exceptions (with the ``code`` and
``operation`` that ``map_client_error`` would set), and ``FakeLeaseStore``
applies exactly the conditions of ``DynamoLeaseStore``.

Each fake yields to the event loop once per call, as a network call would, and
can be told to fail chosen calls (``Fault``). Each keeps a log of what it was
asked and did, and offers ``wait_until``: an awaitable condition notified on
every change, so tests never sleep-poll.

The stream hands out the very dicts it stores (``Keys``, ``NewImage``), and
the destination logs the very dicts it receives, so a test can trace every
write back to the stream record it came from (``FakeStream.record_of``).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import random
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from replicator import errors
from replicator.lease import Lease
from replicator.records import (
    Item,
    KeyId,
    RecordsPage,
    Shard,
    item_size,
    key_id,
    sequence_key,
)

STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/source/stream/2024-01-01T00:00:00.000"

# -- calls and faults -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """One call made to a fake, as hooks and fault injectors see it."""

    operation: str  # the AWS operation: GetRecords, BatchWriteItem, UpdateItem, ...
    number: int  # 1-based count of this operation's calls on this fake
    shard_id: str | None = None
    iterator_type: str | None = None
    sequence_number: str | None = None
    #: GetRecords: index in the shard's records the iterator points at.
    position: int | None = None
    #: GetRecords: the Limit asked for.
    limit: int | None = None


#: Decides whether a call fails: returns the error to raise, or None.
Fault = Callable[[Call], errors.ReplicatorError | None]
ErrorFactory = Callable[[Call], errors.ReplicatorError]


def throttled(call: Call) -> errors.ThrottledError:
    code = "ProvisionedThroughputExceededException"
    return errors.ThrottledError(
        f"{call.operation}: {code}: fake throttle", code=code, operation=call.operation
    )


def expired_iterator(call: Call) -> errors.ExpiredIteratorError:
    code = "ExpiredIteratorException"
    return errors.ExpiredIteratorError(
        f"{call.operation}: {code}: Iterator expired", code=code, operation=call.operation
    )


def transient(call: Call) -> errors.TransientError:
    code = "InternalServerError"
    return errors.TransientError(
        f"{call.operation}: {code}: fake", code=code, operation=call.operation
    )


def timed_out(call: Call) -> errors.CallTimeoutError:
    """What ``map_errors`` raises when a call gets no answer within the call timeout."""
    return errors.CallTimeoutError(
        f"{call.operation}: no answer within the call timeout (fake)", operation=call.operation
    )


def every_nth(n: int, error: ErrorFactory = throttled) -> Fault:
    """Fail every ``n``-th call (the n-th, 2n-th, ...)."""
    return lambda call: error(call) if call.number % n == 0 else None


def on_calls(numbers: Iterable[int], error: ErrorFactory = throttled) -> Fault:
    """Fail the calls with these 1-based numbers."""
    chosen = frozenset(numbers)
    return lambda call: error(call) if call.number in chosen else None


def when(decide: Callable[[Call], bool], error: ErrorFactory = throttled) -> Fault:
    """Fail the calls ``decide`` picks."""
    return lambda call: error(call) if decide(call) else None


# -- items -------------------------------------------------------------------------


def item(pk: str, **attributes: Any) -> Item:
    """A wire-format item keyed by ``pk``: numbers become N, everything else S."""
    result: Item = {"pk": {"S": pk}}
    for name, value in attributes.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            result[name] = {"S": str(value)}
        else:
            result[name] = {"N": str(value)}
    return result


def key_of(pk: str) -> Item:
    return {"pk": {"S": pk}}


def apply_requests(table: dict[KeyId, Item], requests: Iterable[dict[str, Any]],
                   key_names: Iterable[str] = ("pk",)) -> None:
    """Apply BatchWriteItem requests to ``table`` (in the given order)."""
    names = tuple(key_names)
    for request in requests:
        if "PutRequest" in request:
            put = request["PutRequest"]["Item"]
            table[key_id({name: put[name] for name in names})] = copy.deepcopy(put)
        else:
            table.pop(key_id(request["DeleteRequest"]["Key"]), None)


async def _wait(condition: asyncio.Condition, ready: Callable[[], bool], within: float,
                describe: Callable[[], str]) -> None:
    try:
        async with asyncio.timeout(within), condition:
            await condition.wait_for(ready)
    except TimeoutError:
        raise AssertionError(f"condition not met within {within}s: {describe()}") from None


# -- the stream --------------------------------------------------------------------


@dataclass(slots=True)
class FakeShard:
    shard_id: str
    parent_shard_id: str | None
    starting_sequence_number: str
    records: list[dict[str, Any]] = field(default_factory=list)
    ending_sequence_number: str | None = None
    #: ``records[:trimmed]`` are past the trim horizon: gone.
    trimmed: int = 0
    #: False once DescribeStream no longer lists the shard (trimmed as a whole).
    listed: bool = True

    @property
    def closed(self) -> bool:
        return self.ending_sequence_number is not None

    @property
    def sequence_numbers(self) -> list[str]:
        return [raw["dynamodb"]["SequenceNumber"] for raw in self.records]

    def index_of(self, sequence_number: str) -> int | None:
        wanted = sequence_key(sequence_number)
        for index, raw in enumerate(self.records):
            if sequence_key(raw["dynamodb"]["SequenceNumber"]) == wanted:
                return index
        return None


class FakeStream:
    """``StreamReader`` over in-memory shards with lineage, closing, splits and trimming.

    Sequence numbers are decimal strings, unique and increasing across the whole
    stream, that change length on the way (95, 96, ..., 100, ...) so that a string
    comparison would be caught. Iterators are opaque tokens naming (shard,
    position); they stay valid until a fault says otherwise.

    ``source`` is the source table: every write applied in stream order, i.e. what
    the destination must end up equal to.
    """

    def __init__(self, stream_arn: str = STREAM_ARN, *, first_sequence_number: int = 95,
                 key_names: Iterable[str] = ("pk",), epoch_timestamps: bool = False) -> None:
        self.stream_arn = stream_arn
        self.key_names = tuple(key_names)
        self.shards: dict[str, FakeShard] = {}
        self.source: dict[KeyId, Item] = {}
        self.calls: list[Call] = []
        self.counts: Counter[str] = Counter()
        #: Injected failures raised, by operation.
        self.injected: Counter[str] = Counter()
        #: Last sequence number returned by GetRecords, by shard.
        self.delivered: dict[str, str] = {}
        self.list_shards_fault: Fault | None = None
        self.get_shard_iterator_fault: Fault | None = None
        self.get_records_fault: Fault | None = None
        #: Called first on every call (before faults): may check invariants or change
        #: the stream (trim it, close a shard) at a precise point.
        self.on_call: Callable[[Call], None] | None = None
        self._epoch = epoch_timestamps
        #: The source's wall clock (epoch seconds): stamps the records' creation times
        #: (rounded down to the second, as AWS does) and answers ``server_time``.
        self.wall_clock: Callable[[], float] = time.time
        self._next_sequence = first_sequence_number
        self._shard_numbers = itertools.count(1)
        self._tokens = itertools.count(1)
        self._iterators: dict[str, tuple[str, int]] = {}
        self._by_payload: dict[int, tuple[str, dict[str, Any]]] = {}
        self._changed = asyncio.Condition()

    # -- shaping the stream (synchronous: the test is the source table's writer) ----

    def add_shard(self, parent_shard_id: str | None = None, shard_id: str | None = None) -> str:
        shard_id = shard_id or f"shardId-{next(self._shard_numbers):05d}"
        assert shard_id not in self.shards, shard_id
        self.shards[shard_id] = FakeShard(
            shard_id, parent_shard_id, starting_sequence_number=str(self._next_sequence)
        )
        return shard_id

    def close(self, shard_id: str) -> None:
        shard = self.shards[shard_id]
        assert not shard.closed, f"{shard_id} is already closed"
        last = shard.sequence_numbers[-1:] or [shard.starting_sequence_number]
        shard.ending_sequence_number = last[0]

    def split(self, shard_id: str, children: int = 2) -> list[str]:
        """Close ``shard_id`` and open ``children`` shards whose parent it is."""
        self.close(shard_id)
        return [self.add_shard(parent_shard_id=shard_id) for _ in range(children)]

    def put(self, shard_id: str, image: Item) -> str:
        """Write an item (INSERT or MODIFY) through ``shard_id``; returns its sequence number."""
        image = copy.deepcopy(image)  # each record owns its dicts: writes trace back to it
        keys = {name: image[name] for name in self.key_names}
        old = self.source.get(key_id(keys))
        event = "MODIFY" if old is not None else "INSERT"
        self.source[key_id(keys)] = copy.deepcopy(image)
        return self._append(shard_id, event, keys, image, old)

    def delete(self, shard_id: str, keys: Item, *, by_ttl: bool = False) -> str:
        """Delete an item (REMOVE) through ``shard_id``; returns its sequence number.
        ``by_ttl``: a delete made by the table's time to live (DynamoDB's principal)."""
        keys = copy.deepcopy(keys)
        old = self.source.pop(key_id(keys), None)
        return self._append(shard_id, "REMOVE", keys, None, old, by_ttl=by_ttl)

    def trim(self, shard_id: str, count: int) -> None:
        """Drop the first ``count`` records of the shard past the trim horizon."""
        shard = self.shards[shard_id]
        shard.trimmed = max(shard.trimmed, min(count, len(shard.records)))

    def unlist(self, shard_id: str) -> None:
        """The shard is trimmed as a whole: DescribeStream no longer lists it."""
        shard = self.shards[shard_id]
        shard.listed = False
        shard.trimmed = len(shard.records)

    def _append(self, shard_id: str, event: str, keys: Item, image: Item | None,
                old: Item | None = None, *, by_ttl: bool = False) -> str:
        shard = self.shards[shard_id]
        assert not shard.closed, f"cannot write to closed shard {shard_id}"
        sequence_number = str(self._next_sequence)
        self._next_sequence += 1
        # Rounded down to the second, as AWS does; aiobotocore parses it to a datetime.
        now = datetime.fromtimestamp(int(self.wall_clock()), UTC)
        created: datetime | float = now.timestamp() if self._epoch else now
        body: dict[str, Any] = {
            "ApproximateCreationDateTime": created,
            "Keys": keys,
            "SequenceNumber": sequence_number,
            "SizeBytes": len(repr(image if image is not None else keys)),
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        if image is not None:
            body["NewImage"] = image
        if old is not None:
            body["OldImage"] = old
        raw: dict[str, Any] = {
            "eventID": f"event-{sequence_number}",
            "eventName": event,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": body,
        }
        if by_ttl:
            raw["userIdentity"] = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
        shard.records.append(raw)
        self._by_payload[id(image if image is not None else keys)] = (shard_id, raw)
        return sequence_number

    # -- what the tests look at --------------------------------------------------

    def record_of(self, payload: Item) -> dict[str, Any]:
        """The stream record whose NewImage (put) or Keys (delete) is ``payload``."""
        return self._by_payload[id(payload)][1]

    def shard_of(self, payload: Item) -> str:
        """The shard whose record has ``payload`` as its NewImage (put) or Keys (delete)."""
        return self._by_payload[id(payload)][0]

    def records(self, shard_id: str) -> list[dict[str, Any]]:
        return self.shards[shard_id].records

    def all_records(self) -> list[dict[str, Any]]:
        """Every record of the stream, in sequence number order."""
        every = [raw for shard in self.shards.values() for raw in shard.records]
        return sorted(every, key=lambda raw: sequence_key(raw["dynamodb"]["SequenceNumber"]))

    def calls_on(self, shard_id: str, *operations: str) -> list[Call]:
        return [
            call for call in self.calls
            if call.shard_id == shard_id and (not operations or call.operation in operations)
        ]

    async def wait_until(self, predicate: Callable[[list[Call]], bool],
                         within: float = 5.0) -> None:
        """Wait until ``predicate(calls)`` holds; re-checked after every call."""
        await _wait(self._changed, lambda: predicate(self.calls), within,
                    lambda: f"{len(self.calls)} stream calls, last {self.calls[-3:]}")

    # -- StreamReader ------------------------------------------------------------

    async def _enter(self, call: Call, fault: Fault | None) -> None:
        # The call is logged when made, even if the caller is cancelled while it is
        # on the wire: the network yields.
        self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)
        async with self._changed:
            self._changed.notify_all()
        await asyncio.sleep(0)
        error = fault(call) if fault is not None else None
        if error is not None:
            self.injected[call.operation] += 1
            raise error

    def _count(self, operation: str) -> int:
        self.counts[operation] += 1
        return self.counts[operation]

    async def list_shards(self, stream_arn: str) -> list[Shard]:
        call = Call("DescribeStream", self._count("DescribeStream"))
        await self._enter(call, self.list_shards_fault)
        self._check_arn(stream_arn, call)
        return [
            Shard(shard.shard_id, shard.parent_shard_id, shard.starting_sequence_number,
                  shard.ending_sequence_number)
            for shard in self.shards.values()
            if shard.listed
        ]

    async def get_shard_iterator(self, stream_arn: str, shard_id: str, iterator_type: str,
                                 sequence_number: str | None = None) -> str:
        call = Call("GetShardIterator", self._count("GetShardIterator"), shard_id=shard_id,
                    iterator_type=iterator_type, sequence_number=sequence_number)
        await self._enter(call, self.get_shard_iterator_fault)
        self._check_arn(stream_arn, call)
        shard = self.shards.get(shard_id)
        if shard is None or not shard.listed:
            raise errors.ResourceNotFoundError(
                f"GetShardIterator: ResourceNotFoundException: shard {shard_id} does not exist",
                code="ResourceNotFoundException", operation="GetShardIterator",
            )
        if iterator_type == "TRIM_HORIZON":
            position = shard.trimmed
        elif iterator_type == "LATEST":
            position = len(shard.records)
        elif iterator_type in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            index = shard.index_of(sequence_number) if sequence_number is not None else None
            if index is None:
                raise self._validation(
                    call, f"sequence number {sequence_number} is not in shard {shard_id}"
                )
            if index < shard.trimmed:
                raise errors.TrimmedDataError(
                    f"GetShardIterator: TrimmedDataAccessException: {sequence_number} of "
                    f"{shard_id} is beyond the trim horizon",
                    code="TrimmedDataAccessException", operation="GetShardIterator",
                )
            position = index if iterator_type == "AT_SEQUENCE_NUMBER" else index + 1
        else:
            raise self._validation(call, f"unknown ShardIteratorType {iterator_type}")
        return self._token(shard_id, position)

    async def get_records(self, iterator: str, limit: int) -> RecordsPage:
        where = self._iterators.get(iterator)
        shard_id, position = where if where is not None else (None, None)
        call = Call("GetRecords", self._count("GetRecords"), shard_id=shard_id, position=position,
                    limit=limit)
        await self._enter(call, self.get_records_fault)
        if shard_id is None or position is None:
            raise self._validation(call, f"invalid shard iterator {iterator!r}")
        if not 1 <= limit <= 1000:
            raise self._validation(call, f"Limit {limit} is not within 1..1000")
        shard = self.shards[shard_id]
        if position < shard.trimmed:
            raise errors.TrimmedDataError(
                f"GetRecords: TrimmedDataAccessException: the iterator of {shard_id} points "
                "beyond the trim horizon",
                code="TrimmedDataAccessException", operation="GetRecords",
            )
        page = shard.records[position:position + limit]
        end = position + len(page)
        if page:
            self.delivered[shard_id] = page[-1]["dynamodb"]["SequenceNumber"]
        next_iterator = None if shard.closed and end >= len(shard.records) else self._token(
            shard_id, end
        )
        return RecordsPage(records=list(page), next_iterator=next_iterator)

    async def server_time(self, stream_arn: str) -> float:
        call = Call("DescribeStream", self._count("DescribeStream"))
        await self._enter(call, self.list_shards_fault)
        self._check_arn(stream_arn, call)
        return float(int(self.wall_clock()))

    def _token(self, shard_id: str, position: int) -> str:
        token = f"iterator-{next(self._tokens)}"
        self._iterators[token] = (shard_id, position)
        return token

    def _check_arn(self, stream_arn: str, call: Call) -> None:
        if stream_arn != self.stream_arn:
            raise errors.ResourceNotFoundError(
                f"{call.operation}: ResourceNotFoundException: no stream {stream_arn}",
                code="ResourceNotFoundException", operation=call.operation,
            )

    @staticmethod
    def _validation(call: Call, message: str) -> errors.ValidationError:
        return errors.ValidationError(f"{call.operation}: ValidationException: {message}",
                                      code="ValidationException", operation=call.operation)


# -- the destination ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Write:
    """One request the destination applied."""

    call: int
    kind: Literal["put", "delete"]
    key: KeyId
    #: The PutRequest's Item or the DeleteRequest's Key, the very dict received.
    payload: Item


#: Picks the indices of a batch's requests to leave unprocessed.
Unprocessed = Callable[[Call, list[dict[str, Any]]], Iterable[int]]


def unprocessed_every(n: int) -> Unprocessed:
    """On every ``n``-th call, leave the second half of the batch (at least one) unprocessed."""
    return lambda call, requests: (
        range(len(requests) // 2, len(requests)) if call.number % n == 0 else ()
    )


def unprocessed_randomly(rng: random.Random, probability: float) -> Unprocessed:
    return lambda call, requests: [i for i in range(len(requests)) if rng.random() < probability]


#: DynamoDB's largest item: 400 KB, attribute names and values counted.
MAX_ITEM_BYTES = 400 * 1024


def _refusal(request: dict[str, Any], key_names: tuple[str, ...]) -> str | None:
    """Why DynamoDB refuses a request for its item alone, or None."""
    put = request.get("PutRequest")
    keys = put["Item"] if put is not None else request["DeleteRequest"]["Key"]
    for name in key_names:
        ((type_, inner),) = keys[name].items()
        if type_ in ("S", "B") and len(inner) == 0:
            return ("One or more parameter values are not valid. The AttributeValue for a "
                    f"key attribute cannot contain an empty string value. Key: {name}")
    if put is not None and item_size(put["Item"]) > MAX_ITEM_BYTES:
        return "Item size has exceeded the maximum allowed size"
    return None


class FakeDestination:
    """``DestinationWriter`` over a dict keyed by ``key_id``.

    Enforces BatchWriteItem's rules (1 to 25 requests, no two for one key) with a
    ``ValidationError``, as DynamoDB would, and also records them in
    ``violations`` so that a test can assert that none happened. An item holding
    the ``poison_attribute`` makes the whole batch fail with ``ValidationError``,
    as DynamoDB fails one with an item over 400 KB or a key attribute that is an
    empty string (which the fake refuses too: ``tests/contract``).
    """

    def __init__(self, key_names: Iterable[str] = ("pk",), *,
                 poison_attribute: str = "poison") -> None:
        self.key_names = tuple(key_names)
        self.poison_attribute = poison_attribute
        self.table: dict[KeyId, Item] = {}
        self.log: list[Write] = []
        self.batches: list[list[dict[str, Any]]] = []
        self.violations: list[str] = []
        self.calls = 0
        self.injected = 0
        self.rejected = 0
        #: Calls that returned unprocessed requests.
        self.unprocessed_calls = 0
        self.fault: Fault | None = None
        self.unprocessed: Unprocessed | None = None
        self.on_write: Callable[[Write], None] | None = None
        self._changed = asyncio.Condition()

    def writes_of(self, key: KeyId) -> list[Write]:
        return [write for write in self.log if write.key == key]

    async def wait_until(self, predicate: Callable[[dict[KeyId, Item]], bool],
                         within: float = 5.0) -> None:
        """Wait until ``predicate(table)`` holds; re-checked after every BatchWriteItem."""
        await _wait(self._changed, lambda: predicate(self.table), within,
                    lambda: f"{len(self.table)} items after {self.calls} calls")

    async def batch_write(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.calls += 1
        call = Call("BatchWriteItem", self.calls)
        await asyncio.sleep(0)
        try:
            error = self.fault(call) if self.fault is not None else None
            if error is not None:
                self.injected += 1
                raise error
            keys = [self._key(request) for request in requests]
            if not 1 <= len(requests) <= 25:
                raise self._invalid(f"a batch of {len(requests)} requests", violation=True)
            if len(set(keys)) != len(keys):
                raise self._invalid("two requests for one key in a batch", violation=True)
            for request in requests:
                put = request.get("PutRequest")
                if put is not None and self.poison_attribute in put["Item"]:
                    self.rejected += 1
                    raise self._invalid("item refused (poison)", violation=False)
                refused = _refusal(request, self.key_names)
                if refused is not None:
                    self.rejected += 1
                    raise self._invalid(refused, violation=False)
            left = set(self.unprocessed(call, requests)) if self.unprocessed else set()
            if left:
                self.unprocessed_calls += 1
            self.batches.append(requests)
            for index, (request, key) in enumerate(zip(requests, keys, strict=True)):
                if index in left:
                    continue
                apply_requests(self.table, [request], self.key_names)
                if "PutRequest" in request:
                    write = Write(call.number, "put", key, request["PutRequest"]["Item"])
                else:
                    write = Write(call.number, "delete", key, request["DeleteRequest"]["Key"])
                self.log.append(write)
                if self.on_write is not None:
                    self.on_write(write)
            return [requests[index] for index in sorted(left)]
        finally:
            async with self._changed:
                self._changed.notify_all()

    def _key(self, request: dict[str, Any]) -> KeyId:
        if "PutRequest" in request:
            put = request["PutRequest"]["Item"]
            return key_id({name: put[name] for name in self.key_names})
        return key_id(request["DeleteRequest"]["Key"])

    def _invalid(self, message: str, *, violation: bool) -> errors.ValidationError:
        if violation:
            self.violations.append(message)
        return errors.ValidationError(
            f"BatchWriteItem: ValidationException: {message}",
            code="ValidationException", operation="BatchWriteItem",
        )


# -- the source table's items (the bootstrap copy) ------------------------------------


class FakeSourceTable:
    """The Scan side of a table, for the bootstrap copy: ``items`` split into segments
    by key (as DynamoDB splits them by hash key) and served ``page_size`` at a time.
    ``on_scan`` is called before each page is served (to write to the stream while
    the copy runs, say)."""

    def __init__(self, items: Iterable[Item] = (), *, key_names: Iterable[str] = ("pk",),
                 page_size: int = 10, table: str = "source") -> None:
        self.key_names = tuple(key_names)
        self.items = {key_id({n: i[n] for n in self.key_names}): copy.deepcopy(i) for i in items}
        self.page_size = page_size
        self.table = table
        self.scans: list[tuple[int, Item | None]] = []
        self.on_scan: Callable[[int], None] | None = None

    async def scan_page(self, *, segment: int, total_segments: int, start_key: Item | None,
                        limit: int | None = None, call_timeout: float | None = None,
                        ) -> tuple[list[Item], Item | None, float]:
        self.scans.append((segment, start_key))
        if self.on_scan is not None:
            self.on_scan(segment)
        await asyncio.sleep(0)
        keys = sorted(key for key in self.items
                      if zlib.crc32(repr(key[0]).encode()) % total_segments == segment)
        if start_key is not None:
            after = key_id({n: start_key[n] for n in self.key_names})
            keys = [key for key in keys if key > after]
        page = keys[:min(self.page_size, limit or self.page_size)]
        last = None
        if len(page) < len(keys):
            item = self.items[page[-1]]
            last = {n: item[n] for n in self.key_names}
        return [copy.deepcopy(self.items[key]) for key in page], last, float(len(page))


# -- the lease store ---------------------------------------------------------------


def _condition_failed(operation: str) -> errors.ConditionFailedError:
    code = "ConditionalCheckFailedException"
    return errors.ConditionFailedError(
        f"{operation}: {code}: The conditional request failed", code=code, operation=operation
    )


class FakeLeaseStore:
    """``LeaseStore`` over a dict, with ``DynamoLeaseStore``'s conditions.

    - create_lease: put if absent, else False.
    - update_lease: the row must exist with the lease's counter, and its owner
      (or no owner when the lease has none); the counter is bumped, the owner
      set or removed, the checkpoint moved only when one is given.
    - delete_lease: the row must exist with the lease's counter.

    ``history`` holds every successful write as (operation, row after it).
    """

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Lease] = {}
        self.owner_switches: Counter[tuple[str, str]] = Counter()
        self.history: list[tuple[str, Lease]] = []
        self.counts: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.fault: Fault | None = None
        #: Called after every successful write with (operation, row after it).
        self.observer: Callable[[str, Lease], None] | None = None
        self._changed = asyncio.Condition()

    def row(self, shard_id: str, stream_arn: str = STREAM_ARN) -> Lease | None:
        return self.rows.get((stream_arn, shard_id))

    def by_shard(self) -> dict[str, Lease]:
        return {shard_id: lease for (_, shard_id), lease in self.rows.items()}

    async def plant(self, lease: Lease) -> None:
        """Write a row directly, as another worker would."""
        self.rows[(lease.stream_arn, lease.shard_id)] = lease
        self.history.append(("plant", lease))
        await self._notify()

    async def wait_until(self, predicate: Callable[[dict[str, Lease]], bool],
                         within: float = 5.0) -> None:
        """Wait until ``predicate(rows by shard id)`` holds; re-checked after every call."""
        await _wait(self._changed, lambda: predicate(self.by_shard()), within,
                    lambda: f"rows {self.by_shard()}")

    async def wait_for_calls(self, operation: str, count: int, within: float = 5.0) -> None:
        """Wait until ``operation`` (Query, PutItem, UpdateItem, DeleteItem) was called
        ``count`` times in all: a coordinator cycle is one Query."""
        await _wait(self._changed, lambda: self.counts[operation] >= count, within,
                    lambda: f"{self.counts[operation]} {operation} calls")

    async def _enter(self, operation: str, shard_id: str | None = None) -> None:
        self.counts[operation] += 1
        call = Call(operation, self.counts[operation], shard_id=shard_id)
        await self._notify()
        await asyncio.sleep(0)
        error = self.fault(call) if self.fault is not None else None
        if error is not None:
            self.injected[operation] += 1
            raise error

    async def _written(self, operation: str, lease: Lease) -> None:
        self.history.append((operation, lease))
        if self.observer is not None:
            self.observer(operation, lease)
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def list_leases(self, stream_arn: str) -> list[Lease]:
        await self._enter("Query")
        return sorted(
            (lease for (arn, _), lease in self.rows.items() if arn == stream_arn),
            key=lambda lease: lease.shard_id,
        )

    async def create_lease(self, lease: Lease) -> bool:
        await self._enter("PutItem", lease.shard_id)
        key = (lease.stream_arn, lease.shard_id)
        if key in self.rows:
            return False
        self.rows[key] = lease
        await self._written("PutItem", lease)
        return True

    async def update_lease(self, lease: Lease, *, new_owner: str | None,
                           checkpoint: str | None = None,
                           checkpoints: Mapping[str, str] | None = None) -> Lease:
        await self._enter("UpdateItem", lease.shard_id)
        key = (lease.stream_arn, lease.shard_id)
        row = self.rows.get(key)
        if row is None or row.counter != lease.counter or row.owner != lease.owner:
            raise _condition_failed("UpdateItem")
        self.rows[key] = replace(
            row,
            owner=new_owner,
            counter=lease.counter + 1,
            checkpoint=checkpoint if checkpoint is not None else row.checkpoint,
            checkpoints=(tuple(sorted(checkpoints.items())) if checkpoints is not None
                         else row.checkpoints),
        )
        if new_owner != lease.owner:
            self.owner_switches[key] += 1
        await self._written("UpdateItem", self.rows[key])
        # What DynamoLeaseStore returns: built from the lease passed in, not the row.
        return lease.after_update(new_owner=new_owner, checkpoint=checkpoint,
                                  checkpoints=checkpoints)

    async def delete_lease(self, lease: Lease) -> None:
        await self._enter("DeleteItem", lease.shard_id)
        key = (lease.stream_arn, lease.shard_id)
        row = self.rows.get(key)
        if row is None or row.counter != lease.counter:
            raise _condition_failed("DeleteItem")
        del self.rows[key]
        await self._written("DeleteItem", row)


# -- a whole table (both sides of verify; the source of a copy) ------------------------


#: Picks the indices of a BatchGetItem's keys to leave unprocessed.
UnprocessedKeys = Callable[[Call, list[Item]], Iterable[int]]


def keys_unprocessed_on(numbers: Iterable[int]) -> UnprocessedKeys:
    """On the calls with these 1-based numbers, leave the second half of the keys (at
    least one) unprocessed."""
    chosen = frozenset(numbers)
    return lambda call, keys: (
        range(len(keys) // 2, len(keys)) if call.number in chosen else ()
    )


def keys_unprocessed_every(n: int) -> UnprocessedKeys:
    """On every ``n``-th call, leave the second half of the keys (at least one) unprocessed."""
    return lambda call, keys: (
        range(len(keys) // 2, len(keys)) if call.number % n == 0 else ()
    )


class FakeTable(FakeSourceTable):
    """``TableAccess`` over one dict of items: a whole table, read and written.

    - ``scan_page``: ``FakeSourceTable``'s segments and pages, over ``items``; a call
      may fail (``scan_fault``), and only the pages served are logged in ``scans``.
    - ``batch_get``: at most 100 distinct keys of the table's key attributes, else
      ``ValidationError`` (also noted in ``violations``). Returns the items found, in
      no particular order (here the reverse of the keys'), and the keys that
      ``unprocessed_keys`` picks, not looked up. ``gets`` logs the keys of every call
      that was answered.
    - ``batch_write``: ``writer``, a ``FakeDestination`` over the same ``items``
      dict, so its rules, ``fault``, ``unprocessed``, ``log`` and ``wait_until`` are
      this table's.

    ``counts`` holds every call by operation (Scan, BatchGetItem, BatchWriteItem),
    failed ones included, and ``injected`` the failures raised.
    """

    def __init__(self, items: Iterable[Item] = (), *, key_names: Iterable[str] = ("pk",),
                 page_size: int = 10, table: str = "table",
                 poison_attribute: str = "poison") -> None:
        super().__init__(items, key_names=key_names, page_size=page_size, table=table)
        self.writer = FakeDestination(self.key_names, poison_attribute=poison_attribute)
        self.writer.table = self.items
        self.counts: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.violations: list[str] = []
        self.gets: list[list[Item]] = []
        self.scan_fault: Fault | None = None
        self.get_fault: Fault | None = None
        self.unprocessed_keys: UnprocessedKeys | None = None

    def key_of(self, entry: Item) -> KeyId:
        return key_id({name: entry[name] for name in self.key_names})

    def segment_of(self, entry: Item, total_segments: int) -> int:
        """The Scan segment that serves ``entry`` (as ``scan_page`` splits the table)."""
        return zlib.crc32(repr(self.key_of(entry)[0]).encode()) % total_segments

    async def scan_page(self, *, segment: int, total_segments: int, start_key: Item | None,
                        limit: int | None = None, call_timeout: float | None = None,
                        ) -> tuple[list[Item], Item | None, float]:
        self.counts["Scan"] += 1
        call = Call("Scan", self.counts["Scan"])
        await asyncio.sleep(0)
        error = self.scan_fault(call) if self.scan_fault is not None else None
        if error is not None:
            self.injected["Scan"] += 1
            raise error
        return await super().scan_page(segment=segment, total_segments=total_segments,
                                       start_key=start_key, limit=limit,
                                       call_timeout=call_timeout)

    async def batch_get(self, keys: list[Item]) -> tuple[list[Item], list[Item]]:
        self.counts["BatchGetItem"] += 1
        call = Call("BatchGetItem", self.counts["BatchGetItem"])
        await asyncio.sleep(0)
        error = self.get_fault(call) if self.get_fault is not None else None
        if error is not None:
            self.injected["BatchGetItem"] += 1
            raise error
        if not 1 <= len(keys) <= 100:
            raise self._invalid_get(call, f"{len(keys)} keys")
        if any(set(key) != set(self.key_names) for key in keys):
            raise self._invalid_get(call, "a key does not match the table's key schema")
        ids = [key_id(key) for key in keys]
        if len(set(ids)) != len(ids):
            raise self._invalid_get(call, "the keys hold duplicates")
        left = set(self.unprocessed_keys(call, keys)) if self.unprocessed_keys else set()
        self.gets.append(list(keys))
        found = [copy.deepcopy(self.items[ids[index]]) for index in range(len(keys))
                 if index not in left and ids[index] in self.items]
        return found[::-1], [keys[index] for index in sorted(left)]

    async def batch_write(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.counts["BatchWriteItem"] += 1
        return await self.writer.batch_write(requests)

    def _invalid_get(self, call: Call, message: str) -> errors.ValidationError:
        self.violations.append(message)
        return errors.ValidationError(
            f"{call.operation}: ValidationException: {message}",
            code="ValidationException", operation=call.operation,
        )
