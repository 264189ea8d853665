"""Items as the wire carries them, read and written outside botocore's model walk.

botocore parses every attribute value of every item through the service model
(binary values decoded from base64, each value a new dict) and serializes each one
back the same way: for 1 KB items that walk is most of what a replicator spends.
The attribute values travel from the source to the destination unchanged, so here
they stay in DynamoDB's wire JSON form (``{"B": "<base64>"}``, numbers as their
decimal strings), parsed and written with msgspec:

* **answers** (``before-parse`` hooks): GetRecords' records, Scan's and
  BatchGetItem's items, and the requests BatchWriteItem leaves unprocessed are
  parsed here; botocore parses only what is left (an iterator, a
  LastEvaluatedKey, ConsumedCapacity), as before. A stream record's images are
  not parsed at all: each is kept as its JSON text (``EncodedItem``), skipped
  over by the parser, and written into a BatchWriteItem as it is;
* **requests** (``send_body`` and a ``before-call`` hook): a BatchWriteItem or a
  BatchGetItem is serialized here, and botocore is given an empty request whose
  body the hook replaces before it is signed and sent: signing, the timeouts, the
  retries (none: they are ours) and the error mapping are botocore's as before.

``install`` registers the hooks on a client (``open_dynamodb``, ``open_streams``,
and the readers and tables built on a client, so that no caller can miss them).
Python values (``bytes``, ``Decimal``) appear only where something needs them:
a transform (``replicator.aws.values``), and the calls whose requests botocore
still builds from Python values (``item_to_boto`` before them, ``item_from_boto``
after).
See docs/DESIGN.md ("Items on the wire").
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import gc
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, cast

import msgspec

from replicator.records import EMPTY_IMAGE, EncodedItem, Item

#: The body the next BatchWriteItem or BatchGetItem of this task sends (``send_body``).
_BODY: contextvars.ContextVar[_Sent | None] = contextvars.ContextVar(
    "replicator_wire_body", default=None
)

#: The members of each answer parsed here, by service and operation.
_PARSED = {
    ("dynamodb", "Scan"): ("Items",),
    ("dynamodb", "BatchGetItem"): ("Responses", "UnprocessedKeys"),
    ("dynamodb", "BatchWriteItem"): ("UnprocessedItems",),
}
#: The requests whose bodies are serialized here, and the parameters botocore gets.
_SENT = ("BatchWriteItem", "BatchGetItem")
_EMPTY_REQUEST: dict[str, Any] = {"RequestItems": {}}


C = TypeVar("C")


class _Sent:
    """A serialized request on its way, and whether the hook put it in the request."""

    __slots__ = ("data", "used")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.used = False


def install(client: C) -> C:
    """Register the codec's hooks on an aiobotocore DynamoDB or Streams client (once:
    registering again changes nothing); the client is returned."""
    meta: Any = cast(Any, client).meta
    events = meta.events
    service = meta.service_model.service_id.hyphenize()
    for (parsed_service, operation), members in _PARSED.items():
        if parsed_service == service:
            events.register(f"before-parse.{service}.{operation}", _parser(members),
                            unique_id=f"replicator-wire-parse-{operation}")
    if service == "dynamodb-streams":
        events.register(f"before-parse.{service}.GetRecords", _parse_records,
                        unique_id="replicator-wire-parse-GetRecords")
    if service == "dynamodb":
        for operation in _SENT:
            events.register(f"before-call.{service}.{operation}", _use_body,
                            unique_id=f"replicator-wire-send-{operation}")
        _resolve_endpoints_once(client)
    return client


def _resolve_endpoints_once(client: Any) -> None:
    """Resolve the endpoint of a call whose body this module sends once per operation,
    not on every call: botocore gives it the same parameters each time (an empty
    request), and evaluates the service's endpoint rules for them, a tenth of what a
    BatchWriteItem costs the client. Other calls are resolved as before."""
    resolver = getattr(client, "_ruleset_resolver", None)
    if resolver is None or getattr(resolver, "_replicator_once", False):
        return
    construct = resolver.construct_endpoint
    resolved: dict[str, Any] = {}

    async def construct_endpoint(operation_model: Any, call_args: Any,
                                 request_context: Any) -> Any:
        name = operation_model.name
        if _BODY.get() is None or name not in _SENT or call_args != _EMPTY_REQUEST:
            return await construct(operation_model, call_args, request_context)
        endpoint = resolved.get(name)
        if endpoint is None:
            endpoint = resolved[name] = await construct(operation_model, call_args,
                                                        request_context)
        return endpoint

    resolver.construct_endpoint = construct_endpoint
    resolver._replicator_once = True


@contextlib.contextmanager
def send_body(data: bytes) -> Iterator[None]:
    """Within the block, this task's next BatchWriteItem or BatchGetItem sends ``data``
    as its body, whatever parameters it is called with (give it empty ones). Raises
    RuntimeError after the call when the client had no hook to send it
    (``install``): the empty request botocore made was sent instead."""
    body = _Sent(data)
    token = _BODY.set(body)
    try:
        yield
    finally:
        _BODY.reset(token)
    if not body.used:
        raise RuntimeError("the client sent its own body: replicator.aws.codec.install "
                           "was not called on it")


def _use_body(params: dict[str, Any], **_: Any) -> None:
    body = _BODY.get()
    if body is not None and not body.used:
        params["body"] = body.data
        body.used = True


def batch_write_body(table: str, requests: list[dict[str, Any]]) -> bytes:
    """The body of a BatchWriteItem of ``requests`` (PutRequest or DeleteRequest, their
    items in wire form) to ``table``."""
    return dumps({"RequestItems": {table: requests}})


def batch_get_body(table: str, keys: list[dict[str, Any]]) -> bytes:
    """The body of a strongly consistent BatchGetItem of ``keys`` from ``table``."""
    return dumps({"RequestItems": {table: {"Keys": keys, "ConsistentRead": True}}})


def _encoded_item(value: Any) -> Any:
    if isinstance(value, EncodedItem):
        return value.json
    raise TypeError(f"{type(value).__name__} is not an attribute value")


#: JSON, with an ``EncodedItem`` as its text and any ``bytes`` (a binary value in
#: botocore's form) as base64.
dumps = msgspec.json.Encoder(enc_hook=_encoded_item).encode


class _NewBody(msgspec.Struct):
    """A stream record's ``dynamodb``: its NewImage skipped over (``msgspec.Raw``), its
    OldImage not read at all (``old_images``)."""

    Keys: Item
    SequenceNumber: str
    SizeBytes: int = 0
    ApproximateCreationDateTime: float = 0.0
    NewImage: msgspec.Raw = EMPTY_IMAGE


class _Body(_NewBody):
    """A stream record's ``dynamodb`` with its OldImage, skipped over too."""

    OldImage: msgspec.Raw = EMPTY_IMAGE


B = TypeVar("B", _NewBody, _Body)


class _Record(msgspec.Struct, Generic[B]):
    eventName: str
    dynamodb: B
    eventID: str = ""
    userIdentity: dict[str, Any] | None = None


class _Page(msgspec.Struct, Generic[B]):
    Records: list[_Record[B]] = []
    NextShardIterator: str | None = None


_decode_page = msgspec.json.Decoder(_Page[_Body]).decode
_decode_new_page = msgspec.json.Decoder(_Page[_NewBody]).decode
_decode = msgspec.json.decode
#: Whether this task's GetRecords keep each record's OldImage (``old_images``).
_OLD_IMAGES: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "replicator_old_images", default=True)


@contextlib.contextmanager
def old_images(keep: bool) -> Iterator[None]:
    """Within the block, this task's GetRecords keep (or skip) each record's OldImage."""
    token = _OLD_IMAGES.set(keep)
    try:
        yield
    finally:
        _OLD_IMAGES.reset(token)


def _parser(members: tuple[str, ...]) -> Any:
    def parse(response_dict: dict[str, Any], customized_response_dict: dict[str, Any],
              **_: Any) -> None:
        """Parse ``members`` of a successful answer here; leave botocore the rest."""
        body = _answered(response_dict)
        if body is None:
            return
        try:
            with _collector_paused():
                parsed = _decode(body)
                if not isinstance(parsed, dict):
                    return
                for member in members:
                    if member in parsed:
                        customized_response_dict[member] = parsed.pop(member)
        except msgspec.DecodeError:
            return  # botocore reports it
        response_dict["body"] = dumps(parsed)

    return parse


def _parse_records(response_dict: dict[str, Any], customized_response_dict: dict[str, Any],
                   **_: Any) -> None:
    """GetRecords' records parsed here (botocore parses the rest, the next iterator),
    each image as its JSON text (``EncodedItem``), copied out of the page so that the
    page is freed once read. A record of another shape is decoded whole."""
    body = _answered(response_dict)
    if body is None:
        return
    try:
        with _collector_paused():
            try:
                page = (_decode_page if _OLD_IMAGES.get() else _decode_new_page)(body)
            except msgspec.ValidationError:
                parsed = _decode(body)
                customized_response_dict["Records"] = parsed.pop("Records", [])
                rest = parsed
            else:
                customized_response_dict["Records"] = [_record(r) for r in page.Records]
                rest = {} if page.NextShardIterator is None else {
                    "NextShardIterator": page.NextShardIterator}
    except msgspec.DecodeError:
        return  # botocore reports it
    response_dict["body"] = dumps(rest)


def _answered(response_dict: dict[str, Any]) -> bytes | None:
    """The body of a successful answer (None for an error: botocore parses those)."""
    body = response_dict.get("body")
    if response_dict.get("status_code") != 200 or not body:
        return None
    return cast(bytes, body)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused: a page is thousands of new dicts and lists,
    none of them in a cycle, and collections triggered by their allocation (full ones
    too, over every live page) took two thirds of the parse."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _record(record: _Record[_Body] | _Record[_NewBody]) -> dict[str, Any]:
    wire = record.dynamodb
    body: dict[str, Any] = {
        "Keys": wire.Keys, "SequenceNumber": wire.SequenceNumber,
        "SizeBytes": wire.SizeBytes,
        "ApproximateCreationDateTime": wire.ApproximateCreationDateTime,
    }
    if wire.NewImage:
        body["NewImage"] = EncodedItem(wire.NewImage.copy())
    if isinstance(wire, _Body) and wire.OldImage:
        body["OldImage"] = EncodedItem(wire.OldImage.copy())
    raw: dict[str, Any] = {"eventName": record.eventName, "eventID": record.eventID,
                           "dynamodb": body}
    if record.userIdentity is not None:
        raw["userIdentity"] = record.userIdentity
    return raw


def item_to_boto(item: dict[str, Any]) -> dict[str, Any]:
    """An item (or a key) in botocore's form: binary values decoded from base64 (those
    already ``bytes`` are left as they are)."""
    return {name: _binaries(value, _decoded) for name, value in item.items()}


def item_from_boto(item: dict[str, Any]) -> dict[str, Any]:
    """The inverse of ``item_to_boto``: binary values as base64 strings."""
    return {name: _binaries(value, _encoded) for name, value in item.items()}


def value_from_boto(value: dict[str, Any]) -> dict[str, Any]:
    """One attribute value in wire form (see ``item_from_boto``)."""
    return _binaries(value, _encoded)


def _binaries(value: dict[str, Any], convert: Callable[[Any], Any]) -> dict[str, Any]:
    """``value`` with ``convert`` applied to each binary value in it, at any depth."""
    ((type_, inner),) = value.items()
    if type_ == "M":
        return {"M": {name: _binaries(element, convert) for name, element in inner.items()}}
    if type_ == "L":
        return {"L": [_binaries(element, convert) for element in inner]}
    if type_ == "B":
        return {"B": convert(inner)}
    if type_ == "BS":
        return {"BS": [convert(element) for element in inner]}
    return value


def _decoded(value: str | bytes) -> bytes:
    return base64.b64decode(value) if isinstance(value, str) else value


def _encoded(value: str | bytes | bytearray) -> str:
    return value if isinstance(value, str) else base64.b64encode(bytes(value)).decode()
