"""A fault-injecting HTTP proxy in front of a moto server.

moto never throttles, never fails and never drops a connection. ``FaultProxy``
stands between the replicator and a moto server and, at per-operation rates
(the operation is read from the ``X-Amz-Target`` header), answers in place of
the server the way DynamoDB and DynamoDB Streams fail:

- throttling: ``ProvisionedThroughputExceededException`` (data calls) or
  ``ThrottlingException`` (every other call), and ``LimitExceededException``
  (GetRecords, GetShardIterator, DescribeStream), with HTTP 400;
- server errors: HTTP 500 ``InternalServerError`` and HTTP 503
  ``ServiceUnavailable``;
- dropped connections, before the server saw the request or after it applied
  it (the answer is lost);
- answers slower than the call timeout (the server applied the call);
- ``ExpiredIteratorException`` on GetRecords;
- BatchWriteItem applying only part of its requests and returning the rest as
  ``UnprocessedItems``;
- ``AccessDeniedException`` and ``UnrecognizedClientException`` (bad
  credentials), which moto, accepting any credentials, never sends.

Error bodies are DynamoDB's (``{"__type": "com.amazonaws.dynamodb.v20120810#...",
"message": ...}``), so botocore parses them, and ``replicator.aws`` maps them,
exactly as in production. ``outage`` turns the whole endpoint off: connections
refused, or HTTP 503 for every call. ``injected`` counts every fault by
operation and kind.

The proxy runs in the test's event loop (``running``) or, for a test that calls
``replicator.cli.main`` (which runs its own loop), in a thread (``in_thread``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import random
import socket
import threading
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from replicator.dev.local import free_port

DYNAMODB = "com.amazonaws.dynamodb.v20120810#"
CORAL_SERVICE = "com.amazon.coral.service#"
CORAL_AVAILABILITY = "com.amazon.coral.availability#"

#: Calls on a table's items: DynamoDB throttles them with
#: ProvisionedThroughputExceededException, everything else with ThrottlingException.
DATA_OPERATIONS = frozenset({
    "GetItem", "PutItem", "UpdateItem", "DeleteItem", "BatchGetItem", "BatchWriteItem",
    "Query", "Scan", "TransactWriteItems", "TransactGetItems",
})
#: DynamoDB Streams' own rate limits answer LimitExceededException.
LIMITED_OPERATIONS = frozenset({"GetRecords", "GetShardIterator", "DescribeStream"})


class Fault(enum.StrEnum):
    THROTTLE = "throttle"
    LIMIT_EXCEEDED = "limit-exceeded"
    SERVER_ERROR = "http-500"
    UNAVAILABLE = "http-503"
    #: The connection is closed before the request reaches the server.
    DROP = "drop"
    #: The server applies the call; the connection is closed before the answer.
    DROP_ANSWER = "drop-answer"
    #: The server applies the call; the answer comes after ``slow_seconds``.
    SLOW = "slow"
    EXPIRED_ITERATOR = "expired-iterator"
    UNPROCESSED = "unprocessed-items"
    ACCESS_DENIED = "access-denied"
    BAD_CREDENTIALS = "bad-credentials"


class Outage(enum.StrEnum):
    #: Nothing listens: new connections are refused, open ones are closed.
    REFUSED = "refused"
    #: Every call answers HTTP 503.
    UNAVAILABLE = "unavailable"


def applicable(operation: str) -> list[Fault]:
    """The faults DynamoDB (or DynamoDB Streams) can answer ``operation`` with."""
    faults = [Fault.THROTTLE, Fault.SERVER_ERROR, Fault.UNAVAILABLE, Fault.DROP,
              Fault.DROP_ANSWER, Fault.SLOW]
    if operation in LIMITED_OPERATIONS:
        faults.append(Fault.LIMIT_EXCEEDED)
    if operation == "GetRecords":
        faults.append(Fault.EXPIRED_ITERATOR)
    if operation == "BatchWriteItem":
        faults.append(Fault.UNPROCESSED)
    return faults


#: Relative weights of the faults in ``FaultPlan.chaos``: a slow answer costs a
#: whole call timeout, so it is rarer.
WEIGHTS: dict[Fault, float] = {Fault.SLOW: 0.4}


@dataclass
class FaultPlan:
    """Fault rates by operation (``"*"``: any operation not named)."""

    rates: dict[str, dict[Fault, float]] = field(default_factory=dict)
    #: With ``chaos`` set, an operation not in ``rates`` fails at that total rate,
    #: spread over every fault that operation can meet (``applicable``).
    chaos: float = 0.0

    @classmethod
    def chaotic(cls, total: float) -> FaultPlan:
        return cls(chaos=total)

    @classmethod
    def always(cls, fault: Fault, *operations: str) -> FaultPlan:
        """Every call of ``operations`` (of every operation if none) fails with ``fault``."""
        return cls({operation: {fault: 1.0} for operation in operations or ("*",)})

    def for_operation(self, operation: str) -> dict[Fault, float]:
        if operation in self.rates:
            return self.rates[operation]
        if self.chaos > 0:
            faults = applicable(operation)
            weights = {fault: WEIGHTS.get(fault, 1.0) for fault in faults}
            total_weight = sum(weights.values())
            return {fault: self.chaos * weight / total_weight for fault, weight in weights.items()}
        return self.rates.get("*", {})


def error_body(error_type: str, message: str) -> bytes:
    return json.dumps({"__type": error_type, "message": message}).encode()


#: (HTTP status, __type, message) of the faults answered in place of the server.
def _error_of(fault: Fault, operation: str, resource: str = "*") -> tuple[int, str, str]:
    if fault is Fault.THROTTLE:
        if operation in DATA_OPERATIONS:
            return (400, DYNAMODB + "ProvisionedThroughputExceededException",
                    "The level of configured provisioned throughput for the table was "
                    "exceeded. Consider increasing your provisioning level with the "
                    "UpdateTable API.")
        return 400, CORAL_AVAILABILITY + "ThrottlingException", "Rate exceeded"
    if fault is Fault.LIMIT_EXCEEDED:
        return (400, DYNAMODB + "LimitExceededException",
                "Too many requests for this stream; please retry later.")
    if fault is Fault.SERVER_ERROR:
        return 500, DYNAMODB + "InternalServerError", "Internal server error"
    if fault is Fault.UNAVAILABLE:
        return 503, DYNAMODB + "ServiceUnavailable", "Service unavailable"
    if fault is Fault.EXPIRED_ITERATOR:
        return (400, DYNAMODB + "ExpiredIteratorException",
                "Iterator expired. The iterator was created more than 15 minutes ago.")
    if fault is Fault.ACCESS_DENIED:
        return (400, CORAL_SERVICE + "AccessDeniedException",
                "User: arn:aws:iam::123456789012:user/replicator is not authorized to "
                f"perform: dynamodb:{operation} on resource: {resource} because no "
                f"identity-based policy allows the dynamodb:{operation} action")
    if fault is Fault.BAD_CREDENTIALS:
        return (400, CORAL_SERVICE + "UnrecognizedClientException",
                "The security token included in the request is invalid.")
    raise ValueError(f"{fault} is not an error answer")


class FaultProxy:
    """An HTTP proxy in front of ``target`` (a moto server) that injects faults."""

    def __init__(
        self, target: str, plan: FaultPlan | None = None, *, slow_seconds: float = 3.0,
        seed: int = 1,
    ) -> None:
        self.target = target
        self.plan = plan or FaultPlan()
        self.slow_seconds = slow_seconds
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        #: Faults injected, by (operation, fault).
        self.injected: Counter[tuple[str, Fault]] = Counter()
        #: Calls received, by operation (those refused by an outage included).
        self.calls: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._outage: Outage | None = None
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.ServerRunner | None = None
        self._site: web.TCPSite | None = None
        self._placeholder: socket.socket | None = None

    def __repr__(self) -> str:
        return (f"<FaultProxy {self.url} -> {self.target} outage={self._outage} "
                f"faults={sum(self.injected.values())}>")

    # -- counts ------------------------------------------------------------------------

    def total(self) -> int:
        return sum(self.injected.values())

    def by_fault(self) -> Counter[Fault]:
        counts: Counter[Fault] = Counter()
        for (_, fault), count in self.injected.items():
            counts[fault] += count
        return counts

    def summary(self) -> str:
        """One line: the faults injected, by kind, out of the calls received."""
        kinds = ", ".join(f"{fault} {count}" for fault, count in sorted(self.by_fault().items()))
        return f"{self.total()} faults in {sum(self.calls.values())} calls ({kinds or 'none'})"

    # -- outage ------------------------------------------------------------------------

    @property
    def outage(self) -> Outage | None:
        return self._outage

    async def start_outage(self, kind: Outage) -> None:
        """Turn the endpoint off: refuse connections, or answer 503 to everything."""
        self._outage = kind
        if kind is Outage.REFUSED:
            if self._site is not None:
                await self._site.stop()
                self._site = None
            self._hold_port()
        elif self._site is None and self._runner is not None:
            await self._listen()

    async def end_outage(self) -> None:
        self._outage = None
        if self._site is None and self._runner is not None:
            await self._listen()

    def _hold_port(self) -> None:
        """Keep the port bound, but not listening, while connections are refused: a
        connection is refused all the same, and no other server of the test run (a free
        port is picked by binding port 0, which skips a bound port) can take it meanwhile.
        SO_REUSEADDR, as the connections accepted before the outage still use the port."""
        if self._placeholder is None:
            self._placeholder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._placeholder.bind(("127.0.0.1", self.port))

    # -- serving -----------------------------------------------------------------------

    async def _listen(self) -> None:
        assert self._runner is not None
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FaultProxy]:
        """Serve in the current event loop for the body of the block."""
        # Held answers (SLOW) are cut at the end of the test, not waited for.
        self._runner = web.ServerRunner(web.Server(self._handle), shutdown_timeout=1.0)
        await self._runner.setup()
        async with aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=60)
        ) as self._session:
            await self._listen()
            try:
                yield self
            finally:
                await self._runner.cleanup()
                self._site = None
                if self._placeholder is not None:
                    self._placeholder.close()
                    self._placeholder = None

    @contextlib.contextmanager
    def in_thread(self) -> Iterator[FaultProxy]:
        """Serve from a thread with its own event loop, for synchronous tests."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        done: asyncio.Event | None = None
        failure: list[BaseException] = []

        async def serve() -> None:
            nonlocal done
            done = asyncio.Event()
            async with self.running():
                ready.set()
                await done.wait()

        def main() -> None:
            try:
                loop.run_until_complete(serve())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
            finally:
                loop.close()

        thread = threading.Thread(target=main, name="fault-proxy", daemon=True)
        thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        try:
            yield self
        finally:
            assert done is not None
            loop.call_soon_threadsafe(done.set)
            thread.join(10)

    def _choose(self, operation: str) -> Fault | None:
        rates = self.plan.for_operation(operation)
        if not rates:
            return None
        draw = self._rng.random()
        for fault, rate in rates.items():
            if draw < rate:
                return fault
            draw -= rate
        return None

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        target = request.headers.get("X-Amz-Target", "")
        operation = target.rpartition(".")[2] if target else ""
        body = await request.read()
        if operation:
            self.calls[operation] += 1
        # In an outage, a request on a connection opened before it is dropped, and new
        # connections are refused (those the proxy never sees, so never counts).
        if self._outage is Outage.REFUSED:
            self.injected[(operation, Fault.DROP)] += 1
            return self._drop(request)
        if self._outage is Outage.UNAVAILABLE and operation:
            self.injected[(operation, Fault.UNAVAILABLE)] += 1
            return self._error(*_error_of(Fault.UNAVAILABLE, operation))
        fault = self._choose(operation) if operation else None
        if fault is Fault.UNPROCESSED and operation != "BatchWriteItem":
            fault = None
        if fault is not None:
            self.injected[(operation, fault)] += 1
        if fault is Fault.DROP:
            return self._drop(request)
        if fault is Fault.UNPROCESSED:
            return await self._partly(request, body)
        if fault is not None and fault not in (Fault.DROP_ANSWER, Fault.SLOW):
            return self._error(*_error_of(fault, operation, _resource(request, body)))
        data, status, headers = await self._forward(request, body)
        if fault is Fault.DROP_ANSWER:
            return self._drop(request)
        if fault is Fault.SLOW:
            await asyncio.sleep(self.slow_seconds)  # the client has given up by now
        return web.Response(body=data, status=status, headers=headers)

    async def _forward(
        self, request: web.BaseRequest, body: bytes
    ) -> tuple[bytes, int, dict[str, str]]:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "content-length", "transfer-encoding")}
        async with self._session.request(request.method, self.target + request.path_qs,
                                         data=body, headers=headers) as answer:
            data = await answer.read()
            answer_headers = {
                k: v for k, v in answer.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                     "date", "server")
            }
            return data, answer.status, answer_headers

    async def _partly(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """Forward some of a BatchWriteItem's requests; the rest come back unprocessed."""
        asked: dict[str, list[dict[str, Any]]] = json.loads(body)["RequestItems"]
        sent: dict[str, list[dict[str, Any]]] = {}
        left: dict[str, list[dict[str, Any]]] = {}
        for table, requests in asked.items():
            chosen = [self._rng.random() < 0.5 for _ in requests]
            if all(chosen):  # at least one request of the call is left unprocessed
                chosen[self._rng.randrange(len(chosen))] = False
            sent_here = [r for r, keep in zip(requests, chosen, strict=True) if keep]
            left_here = [r for r, keep in zip(requests, chosen, strict=True) if not keep]
            if sent_here:
                sent[table] = sent_here
            if left_here:
                left[table] = left_here
        answer: dict[str, Any] = {}
        if sent:
            forwarded = json.dumps({**json.loads(body), "RequestItems": sent}).encode()
            data, status, _ = await self._forward(request, forwarded)
            if status != 200:  # the server refused what was sent: pass that on as it is
                return web.Response(body=data, status=status,
                                    headers=_json_headers(data))
            answer = json.loads(data)
        answer["UnprocessedItems"] = left
        data = json.dumps(answer).encode()
        return web.Response(body=data, status=200, headers=_json_headers(data))

    def _error(self, status: int, error_type: str, message: str) -> web.StreamResponse:
        data = error_body(error_type, message)
        return web.Response(body=data, status=status, headers=_json_headers(data))

    @staticmethod
    def _drop(request: web.BaseRequest) -> web.StreamResponse:
        """Close the connection without an answer."""
        transport = request.transport
        if transport is not None:
            transport.abort()
        return web.Response(status=204)  # written to a closed transport: never seen


def _resource(request: web.BaseRequest, body: bytes) -> str:
    """The ARN of the table (or stream) a call is about, as an access error names it."""
    try:
        call: dict[str, Any] = json.loads(body) if body else {}
    except ValueError:
        call = {}
    if "StreamArn" in call:
        return str(call["StreamArn"])
    table = call.get("TableName") or next(iter(call.get("RequestItems", {})), "*")
    # The signature's scope names the region: Credential=KEY/DATE/REGION/SERVICE/aws4_request
    scope = request.headers.get("Authorization", "").partition("Credential=")[2].split("/")
    region = scope[2] if len(scope) > 2 else "us-east-1"
    return f"arn:aws:dynamodb:{region}:123456789012:table/{table}"


def _json_headers(data: bytes) -> Mapping[str, str]:
    return {
        "Content-Type": "application/x-amz-json-1.0",
        "x-amzn-RequestId": uuid.uuid4().hex.upper(),
        "x-amz-crc32": str(zlib.crc32(data) & 0xFFFFFFFF),
    }
