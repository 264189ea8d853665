"""The wire codec against botocore: what the pass-through path sends is what botocore
would send, and what it reads is what botocore would read, byte for byte where the
JSON allows it.

Requests are captured by a small HTTP server on 127.0.0.1 that answers as DynamoDB
does; the same batch is sent through ``DynamoTable.batch_write`` (the codec: wire-form
items, some of them ``EncodedItem`` as GetRecords gives them) and through a client
whose items botocore serializes itself (binary values as ``bytes``). The bodies are
compared as JSON (botocore escapes non-ASCII characters, the codec writes them as
UTF-8: the same JSON value), with every header that describes the request.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from replicator.aws import codec
from replicator.aws.clients import Endpoint, open_dynamodb
from replicator.aws.table import DynamoTable
from replicator.records import EncodedItem, Item, StreamRecord, item_size
from replicator.rules.pattern import FilterPattern
from replicator.rules.selection import OnPoison, Rules

pytestmark = pytest.mark.timeout(300)

TABLE = "codec-destination"
REGION = "eu-west-1"
TIMEOUT = 10.0
#: Headers that say what a request is (the signature and the date differ by the second).
DESCRIBING = ("Content-Type", "X-Amz-Target", "Host")


# -- items with every attribute type -----------------------------------------------------

#: Numbers as DynamoDB takes them: up to 38 significant digits, signed, with a
#: fraction or an exponent; the text is sent as it is, whatever its precision.
numbers = st.builds(
    lambda sign, digits, point, exponent: (
        f"{sign}{digits[:point]}{'.' if point < len(digits) else ''}{digits[point:]}"
        f"{exponent}"),
    st.sampled_from(["", "-"]),
    st.text("0123456789", min_size=1, max_size=38).map(lambda d: d.lstrip("0") or "0"),
    st.integers(min_value=1, max_value=38),
    st.sampled_from(["", "E+12", "e-7", "E125", "E-130"]),
)
names = st.text(min_size=1, max_size=12)
scalars = st.one_of(
    st.text(max_size=40).map(lambda s: {"S": s}),  # empty strings outside keys
    numbers.map(lambda n: {"N": n}),
    st.binary(max_size=40).map(lambda b: {"B": b}),  # empty binaries outside keys
    st.sets(st.text(max_size=8), min_size=1, max_size=5).map(lambda s: {"SS": sorted(s)}),
    st.sets(numbers, min_size=1, max_size=5).map(lambda s: {"NS": sorted(s)}),
    st.sets(st.binary(max_size=8), min_size=1, max_size=5).map(lambda s: {"BS": sorted(s)}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: {"L": items}),
        st.dictionaries(names, inner, max_size=4).map(lambda m: {"M": m}),
    ),
    max_leaves=30,
)


def deep(levels: int) -> dict[str, Any]:
    """A value nested ``levels`` deep, maps and lists in turn, binary at the bottom."""
    value: dict[str, Any] = {"BS": [b"\x00", b"\xff\xfe"]}
    for level in range(levels):
        value = {"M": {f"level{level}": value}} if level % 2 else {"L": [value, {"N": "1"}]}
    return value


@st.composite
def batches(draw: st.DrawFn) -> list[dict[str, Any]]:
    """BatchWriteItem requests in botocore's form: 1 to 25 distinct keys (a string and
    a binary key attribute), puts of items with every attribute type, and deletes."""
    keys = draw(st.lists(st.tuples(st.text(min_size=1, max_size=10),
                                   st.binary(min_size=1, max_size=10)),
                         min_size=1, max_size=25, unique=True))
    requests: list[dict[str, Any]] = []
    for pk, sk in keys:
        key = {"pk": {"S": pk}, "sk": {"B": sk}}
        if draw(st.booleans()) and draw(st.booleans()):
            requests.append({"DeleteRequest": {"Key": key}})
            continue
        attributes = draw(st.dictionaries(names, values, max_size=8))
        requests.append({"PutRequest": {"Item": {**attributes, **key}}})
    return requests


# -- the two paths to one server --------------------------------------------------------


class Capture:
    """An HTTP server that keeps each request it gets and answers as DynamoDB does."""

    def __init__(self, answer: bytes = b'{"UnprocessedItems":{}}') -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.answer = answer

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        return web.Response(body=self.answer, content_type="application/x-amz-json-1.0")

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        app = web.Application()
        app.router.add_post("/", self.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()


def wire(item: Item) -> Item:
    return codec.item_from_boto(item)


def as_received(requests: list[dict[str, Any]], encode: list[bool]) -> list[dict[str, Any]]:
    """The requests in the codec's form: wire-form items, an ``EncodedItem`` (as GetRecords
    gives it: JSON with non-ASCII escaped, as botocore writes it) where ``encode`` says."""
    received = []
    for request, encoded in zip(requests, encode, strict=False):
        if "PutRequest" in request:
            item = wire(request["PutRequest"]["Item"])
            image: Any = EncodedItem(json.dumps(item).encode()) if encoded else item
            received.append({"PutRequest": {"Item": image}})
        else:
            received.append({"DeleteRequest": {"Key": wire(request["DeleteRequest"]["Key"])}})
    return received


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


class BothWays:
    """One server and one client, open on an event loop of their own (a thread) for
    every example of a test: each example sends a batch through the codec, then the
    same batch through botocore, and gets the two requests the server received."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._stack = AsyncExitStack()
        self.capture = Capture()
        self._call(self._open())

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(TIMEOUT * 3)

    async def _open(self) -> None:
        url = await self._stack.enter_async_context(self.capture.running())
        self.client = await self._stack.enter_async_context(
            open_dynamodb(Endpoint("dynamodb", REGION, url), call_timeout=TIMEOUT))
        self.table = DynamoTable(self.client, TABLE, call_timeout=TIMEOUT)

    def send(self, requests: list[dict[str, Any]], encode: list[bool]
             ) -> tuple[tuple[dict[str, str], bytes], tuple[dict[str, str], bytes]]:
        """What the server receives for ``requests``: through the codec, through botocore."""
        return self._call(self._send(requests, encode))  # type: ignore[no-any-return]

    async def _send(self, requests: list[dict[str, Any]], encode: list[bool]) -> Any:
        self.capture.requests.clear()
        assert await self.table.batch_write(as_received(requests, encode)) == []
        await self.client.batch_write_item(RequestItems={TABLE: requests})  # type: ignore[dict-item]
        codec_request, botocore_request = self.capture.requests
        return codec_request, botocore_request

    def close(self) -> None:
        self._call(self._stack.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT)
        self.loop.close()


@pytest.fixture(scope="module")
def both_ways() -> Iterator[BothWays]:
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("AWS_"):
                patch.delenv(name)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        sides = BothWays()
        try:
            yield sides
        finally:
            sides.close()


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches(), st.lists(st.booleans(), min_size=25, max_size=25))
@example([{"PutRequest": {"Item": {"pk": {"S": "deep"}, "sk": {"B": b"\x00"},
                                   "nested": deep(40), "empty": {"S": ""},
                                   "nothing": {"B": b""}, "n": {"N": "-0.1" + "9" * 37}}}}],
         [True] * 25)
@example([{"PutRequest": {"Item": {"pk": {"S": "é ✓ \u2028 \"q\" \\"}, "sk": {"B": b"\xff"},
                                   "s": {"S": "\x00\x1f\ud7ff"}}}}], [False] * 25)
def test_the_codec_sends_what_botocore_sends(both_ways: BothWays,
                                             requests: list[dict[str, Any]],
                                             encode: list[bool]) -> None:
    (codec_headers, codec_body), (boto_headers, boto_body) = both_ways.send(requests, encode)
    assert json.loads(codec_body) == json.loads(boto_body)
    for header in DESCRIBING:
        assert codec_headers[header] == boto_headers[header], header
    assert int(codec_headers["Content-Length"]) == len(codec_body)
    assert codec_headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=")


def test_binary_values_cross_as_base64_both_ways() -> None:
    item = {"pk": {"S": "a"}, "b": {"B": b"\x00\x01"}, "bs": {"BS": [b"\xff", b""]},
            "l": {"L": [{"B": b"x"}, {"M": {"in": {"BS": [b"y"]}}}]}}
    assert wire(item) == {"pk": {"S": "a"}, "b": {"B": "AAE="}, "bs": {"BS": ["/w==", ""]},
                          "l": {"L": [{"B": "eA=="}, {"M": {"in": {"BS": ["eQ=="]}}}]}}
    assert codec.item_to_boto(wire(item)) == item
    assert codec.item_to_boto(item) == item  # bytes already: left as they are
    assert item_size(wire(item)) == item_size(item)


@pytest.mark.usefixtures("credentials")
def test_unprocessed_items_come_back_in_wire_form() -> None:
    left = {"PutRequest": {"Item": {"pk": {"S": "a"}, "sk": {"B": "AAE="},
                                    "n": {"N": "1.000000000000000000000000000000000001"}}}}
    answer = json.dumps({"UnprocessedItems": {TABLE: [left]}}).encode()

    async def scenario() -> None:
        capture = Capture(answer)
        async with capture.running() as url, open_dynamodb(
                Endpoint("dynamodb", REGION, url), call_timeout=TIMEOUT) as client:
            sent = [{"PutRequest": {"Item": left["PutRequest"]["Item"]}}]
            assert await DynamoTable(client, TABLE, call_timeout=TIMEOUT).batch_write(
                sent) == [left]

    run(scenario)


def test_stream_records_keep_their_images_as_the_wire_has_them() -> None:
    image = {"pk": {"S": "a"}, "sk": {"B": base64.b64encode(b"\x00").decode()},
             "n": {"N": "12345678901234567890123456789012345678"}}
    page = {"Records": [{
        "eventID": "1", "eventName": "MODIFY", "eventSource": "aws:dynamodb",
        "dynamodb": {"ApproximateCreationDateTime": 1700000000.0, "Keys": {
            "pk": image["pk"], "sk": image["sk"]}, "NewImage": image, "OldImage": image,
            "SequenceNumber": "100", "SizeBytes": 60, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    }], "NextShardIterator": "next"}
    body = json.dumps(page).encode()
    response: dict[str, Any] = {"status_code": 200, "body": body}
    parsed: dict[str, Any] = {}
    codec._parse_records(response_dict=response, customized_response_dict=parsed)
    assert json.loads(response["body"]) == {"NextShardIterator": "next"}
    (raw,) = parsed["Records"]
    record = StreamRecord.from_wire("shard", raw)
    assert isinstance(record.new_wire, EncodedItem)
    assert record.new_image == image
    assert record.old_image == image
    assert (record.created_at, record.size_bytes) == (1700000000.0, 60)
    assert json.loads(codec.batch_write_body(TABLE, [record.write_request()])) == {
        "RequestItems": {TABLE: [{"PutRequest": {"Item": image}}]}}


def test_old_images_are_skipped_when_no_rule_reads_them() -> None:
    image = {"pk": {"S": "a"}, "v": {"N": "1"}}
    page = {"Records": [{"eventID": "1", "eventName": "MODIFY", "dynamodb": {
        "Keys": {"pk": image["pk"]}, "NewImage": image, "OldImage": {**image, "v": {"N": "0"}},
        "SequenceNumber": "7", "SizeBytes": 30}}]}

    def parsed() -> StreamRecord:
        response: dict[str, Any] = {"status_code": 200, "body": json.dumps(page).encode()}
        customized: dict[str, Any] = {}
        codec._parse_records(response_dict=response, customized_response_dict=customized)
        return StreamRecord.from_wire("shard", customized["Records"][0])

    assert parsed().old_image == {**image, "v": {"N": "0"}}
    with codec.old_images(False):
        record = parsed()
    assert record.old_image is None
    assert record.new_image == image
    assert parsed().old_image is not None  # only within the block


@pytest.mark.parametrize(("rules", "reads"), [
    (Rules(), False),
    (Rules(skip_ttl_deletes=True), False),
    (Rules(on_poison=OnPoison.DEAD_LETTER), True),
    (Rules(filter=FilterPattern.parse('{"eventName": ["INSERT"]}')), True),
])
def test_old_images_are_kept_for_the_rules_that_read_them(rules: Rules, reads: bool) -> None:
    assert rules.reads_old_images is reads
