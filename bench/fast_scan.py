"""A source endpoint whose Scan is as fast as DynamoDB's, in front of a moto server.

moto serves Scan slowly: for every page it sorts the whole table, hashes every
item to find its segment, copies the items and serializes them attribute by
attribute, about 0.6 ms per item on one core. DynamoDB serves a 1 MB page in
tens of milliseconds, from separate partitions for separate segments. A copy
benchmark against moto therefore measures moto's Scan, not the copy.

``FastScanSource`` is a small HTTP server on 127.0.0.1 that answers
``DynamoDB_20120810.Scan`` on one table from an in-memory snapshot of it, and
forwards every other request (DescribeTable, other tables, Scans with a filter
or a projection) unchanged to the moto server behind it. The snapshot is built
once, before anything is timed, from the items the table was filled with.

What it keeps of DynamoDB's Scan:

* segments are ranges of a 128-bit hash of the item's key, so an item's
  segment is stable and any ``TotalSegments`` splits the same order;
* within a segment, items come in hash order; ``ExclusiveStartKey`` continues
  after that key, whether or not the key is still in the table;
* a page ends at ``Limit`` items or at 1 MB of item data (DynamoDB's item-size
  rules), whichever comes first, with at least one item;
* ``Items``, ``Count``, ``ScannedCount``, ``LastEvaluatedKey`` (only when more
  items follow in the segment), ``ConsumedCapacity`` when asked (read units:
  4 KB each of the data read, half for an eventually consistent read), and the
  ``x-amz-crc32`` header botocore checks.

One difference: DynamoDB hashes the partition key alone, so the items of one
partition key are next to each other in a Scan. The snapshot hashes the
whole key, which spreads them out. moto's table loses items when two
BatchWriteItem calls running at once both create the same partition key (its
``defaultdict`` of partitions is filled from several threads), and a copy
writes a page's batches concurrently: in DynamoDB's order, a partition
key's items often fall into two batches in flight at once.

Each item is serialized once; a page is the join of its items' JSON and is
kept, so that serving it again costs a dictionary look-up.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import math
import zlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Self

import aiohttp
from aiohttp import web

from replicator.aws.codec import value_from_boto

SCAN_TARGET = "DynamoDB_20120810.Scan"
PAGE_BYTES = 1024 * 1024
READ_UNIT_BYTES = 4096
HASH_SPACE = 1 << 128
#: Scan parameters the snapshot answers; a request with any other goes to moto.
SERVED_PARAMETERS = frozenset({"TableName", "Segment", "TotalSegments", "ExclusiveStartKey",
                               "Limit", "ConsistentRead", "ReturnConsumedCapacity", "Select"})
#: Hop-by-hop and body-encoding headers, not copied from one connection to the other.
NOT_FORWARDED = frozenset({"host", "content-length", "transfer-encoding", "connection",
                           "content-encoding", "keep-alive"})


# -- items on the wire ---------------------------------------------------------------


def to_wire(value: dict[str, Any]) -> dict[str, Any]:
    """An AttributeValue as botocore takes it (bytes for B) -> as JSON carries it (base64);
    one already in wire form is returned as it is."""
    return value_from_boto(value)


def value_size(value: dict[str, Any]) -> int:
    """Bytes of a wire AttributeValue by DynamoDB's item-size rules."""
    (kind, inner), = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return number_size(inner)
    if kind == "B":
        return len(base64.b64decode(inner))
    if kind == "SS":
        return sum(len(s.encode()) for s in inner)
    if kind == "NS":
        return sum(number_size(n) for n in inner)
    if kind == "BS":
        return sum(len(base64.b64decode(b)) for b in inner)
    if kind == "M":
        return 3 + sum(len(name.encode()) + value_size(v) + 1 for name, v in inner.items())
    if kind == "L":
        return 3 + sum(value_size(v) + 1 for v in inner)
    return 1  # BOOL, NULL


def number_size(text: str) -> int:
    """One byte per two significant digits, plus one."""
    digits = Decimal(text).normalize().as_tuple().digits
    return (len(digits) + 1) // 2 + 1


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def key_value(value: dict[str, Any]) -> Any:
    """A key attribute's value in DynamoDB's order (numbers by value, binary by bytes)."""
    (kind, inner), = value.items()
    if kind == "N":
        return Decimal(inner)
    if kind == "B":
        return base64.b64decode(inner)
    return inner


def hash_position(key: dict[str, Any]) -> int:
    """Where an item's key falls in the 128-bit hash space that segments divide."""
    return int.from_bytes(hashlib.md5(json.dumps(key, sort_keys=True).encode()).digest())


# -- the snapshot ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    body: bytes
    crc32: str
    #: Where the segment's next page starts; None on its last page.
    next_first: int | None


class ScanSnapshot:
    """A table's items in Scan order, with their JSON and sizes, and the pages served."""

    def __init__(self, table: str, hash_key: str, range_key: str | None,
                 items: list[dict[str, Any]]) -> None:
        """``items`` as JSON carries them (``to_wire``)."""
        self.table = table
        self._hash_key = hash_key
        self._range_key = range_key
        ordered = sorted(items, key=self._order)
        self._order_keys = [self._order(item) for item in ordered]
        self._json = [json.dumps(item, separators=(",", ":")) for item in ordered]
        self._sizes = [item_size(item) for item in ordered]
        self._keys = [json.dumps(self._key(item), separators=(",", ":")) for item in ordered]
        self._pages: dict[tuple[Any, ...], Page] = {}

    def __len__(self) -> int:
        return len(self._json)

    def _key(self, item: dict[str, Any]) -> dict[str, Any]:
        key = {self._hash_key: item[self._hash_key]}
        if self._range_key is not None:
            key[self._range_key] = item[self._range_key]
        return key

    def _order(self, item: dict[str, Any]) -> tuple[Any, ...]:
        key = self._key(item)
        return (hash_position(key), *(key_value(value) for _, value in sorted(key.items())))

    def _segment_bounds(self, segment: int, total: int) -> tuple[int, int]:
        low = (segment * HASH_SPACE) // total
        high = ((segment + 1) * HASH_SPACE) // total
        return (bisect.bisect_left(self._order_keys, (low,)),
                bisect.bisect_left(self._order_keys, (high,)))

    def page(self, *, segment: int, total: int, start_key: dict[str, Any] | None,
             limit: int | None, capacity: str, consistent: bool) -> Page:
        first, end = self._segment_bounds(segment, total)
        if start_key is not None:
            first = max(first, bisect.bisect_right(self._order_keys, self._order(start_key)))
        return self._page_at(first, end, limit, capacity, consistent)

    def _page_at(self, first: int, end: int, limit: int | None, capacity: str,
                 consistent: bool) -> Page:
        cache_key = (first, end, limit, capacity, consistent)
        page = self._pages.get(cache_key)
        if page is None:
            page = self._pages[cache_key] = self._build(first, end, limit, capacity, consistent)
        return page

    def _build(self, first: int, end: int, limit: int | None, capacity: str,
               consistent: bool) -> Page:
        last, size = first, 0
        while last < end and (limit is None or last - first < limit):
            if last > first and size + self._sizes[last] > PAGE_BYTES:
                break
            size += self._sizes[last]
            last += 1
        count = last - first
        parts = ['{"Items":[', ",".join(self._json[first:last]),
                 f'],"Count":{count},"ScannedCount":{count}']
        if last < end:
            parts.append(f',"LastEvaluatedKey":{self._keys[last - 1]}')
        if capacity in ("TOTAL", "INDEXES"):
            units = math.ceil(size / READ_UNIT_BYTES) * (1.0 if consistent else 0.5)
            consumed: dict[str, Any] = {"TableName": self.table, "CapacityUnits": units}
            if capacity == "INDEXES":
                consumed["Table"] = {"CapacityUnits": units}
            parts.append(f',"ConsumedCapacity":{json.dumps(consumed)}')
        parts.append("}")
        body = "".join(parts).encode()
        return Page(body, str(zlib.crc32(body)), last if last < end else None)

    def warm(self, total: int) -> int:
        """Build every page of a default parallel Scan (no Limit) in ``total`` segments,
        as the copy will ask for them; returns the number of pages."""
        pages = 0
        for segment in range(total):
            first: int | None
            first, end = self._segment_bounds(segment, total)
            while first is not None:
                first = self._page_at(first, end, None, "TOTAL", True).next_first
                pages += 1
        return pages


# -- the server ------------------------------------------------------------------------


class Forwarder:
    """An HTTP server on 127.0.0.1 that forwards every request unchanged to ``upstream``
    (``handle``, which a subclass overrides to answer some requests itself).

    ``async with Forwarder(...) as forwarder:`` then ``forwarder.url``.
    """

    def __init__(self, upstream: str, port: int) -> None:
        self.upstream = upstream.rstrip("/")
        self.url = f"http://127.0.0.1:{port}"
        self._port = port
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.forwarded = 0

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=600), auto_decompress=False,
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self._port).start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        return await self.handle(request, await request.read())

    async def handle(self, request: web.Request, body: bytes) -> web.Response:
        return await self.forward(request, body)

    async def forward(self, request: web.Request, body: bytes) -> web.Response:
        """``upstream``'s answer to the request."""
        assert self._session is not None
        self.forwarded += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED}
        async with self._session.request(request.method, self.upstream + request.path_qs,
                                         headers=headers, data=body) as response:
            payload = await response.read()
            answer = {k: v for k, v in response.headers.items()
                      if k.lower() not in NOT_FORWARDED}
            return web.Response(body=payload, status=response.status, headers=answer)


class FastScanSource(Forwarder):
    """The snapshot's Scan on 127.0.0.1, everything else forwarded to ``upstream``.

    ``async with FastScanSource(...) as source:`` then ``source.url``.
    """

    def __init__(self, upstream: str, snapshot: ScanSnapshot, port: int) -> None:
        super().__init__(upstream, port)
        self.snapshot = snapshot
        self.scans_served = 0

    def __repr__(self) -> str:
        return (f"<FastScanSource {self.url} -> {self.upstream} items={len(self.snapshot)} "
                f"scans={self.scans_served} forwarded={self.forwarded}>")

    async def handle(self, request: web.Request, body: bytes) -> web.Response:
        if request.headers.get("X-Amz-Target") == SCAN_TARGET:
            page = self._scan(body)
            if page is not None:
                self.scans_served += 1
                return web.Response(body=page.body, headers={
                    "Content-Type": "application/x-amz-json-1.0",
                    "x-amz-crc32": page.crc32,
                    "x-amzn-RequestId": f"fast-scan-{self.scans_served}",
                })
        return await self.forward(request, body)

    def _scan(self, body: bytes) -> Page | None:
        """The snapshot's page for this Scan, or None when moto should answer it."""
        try:
            params = json.loads(body)
        except ValueError:
            return None
        if (params.get("TableName") != self.snapshot.table
                or not SERVED_PARAMETERS.issuperset(params)
                or params.get("Select", "ALL_ATTRIBUTES") != "ALL_ATTRIBUTES"):
            return None
        segment, total = params.get("Segment", 0), params.get("TotalSegments", 1)
        limit = params.get("Limit")
        valid = (("Segment" in params) == ("TotalSegments" in params)
                 and isinstance(total, int) and 1 <= total <= 1_000_000
                 and isinstance(segment, int) and 0 <= segment < total
                 and (limit is None or (isinstance(limit, int) and limit >= 1)))
        if not valid:
            return None  # moto answers with its ValidationException
        return self.snapshot.page(
            segment=segment, total=total, start_key=params.get("ExclusiveStartKey"),
            limit=limit, capacity=params.get("ReturnConsumedCapacity", "NONE"),
            consistent=bool(params.get("ConsistentRead", False)),
        )
