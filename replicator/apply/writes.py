"""The one write path to a destination table.

The stream's writer pool, the bootstrap copy and verify's repair all write
through ``Applier``: one BatchWriteItem of at most 25 distinct keys at a time,
sent only while the leases the writes are made under allow it, retried while
the service throttles or leaves items unprocessed, and, when the destination
refuses the batch, replayed one key at a time to find the write it refuses.
See docs/DESIGN.md ("The apply layer").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from replicator.backoff import Backoff, until_processed
from replicator.clock import Clock
from replicator.errors import ValidationError
from replicator.leases.fence import LeaseFence
from replicator.protocols import DestinationWriter
from replicator.rate import RateLimiter
from replicator.records import Item, KeyId, key_id, write_units
from replicator.stats import Stats

#: BatchWriteItem takes at most 25 requests, each for another key.
MAX_BATCH = 25


class Claim(Protocol):
    """What a write is made under: a shard's lease (its checkpoint tracker), the copy's
    lease. Its fence says when writing is safe; a cancelled claim's writes are dropped,
    unwritten, for whoever holds the lease next."""

    cancelled: bool

    @property
    def fence(self) -> LeaseFence | None: ...


class Write(Protocol):
    """One key's write."""

    @property
    def key(self) -> KeyId: ...

    def request(self) -> dict[str, Any] | None:
        """The PutRequest or DeleteRequest to send now; None once nothing of it is to be
        written (every claim it was made under was cancelled)."""
        ...

    def claims(self) -> Iterable[Claim]: ...


W = TypeVar("W", bound=Write)


class Applier:
    """Writes batches of distinct keys to one destination table."""

    def __init__(
        self,
        destination: DestinationWriter,
        *,
        stats: Stats,
        clock: Clock,
        backoff: Backoff | None = None,
        write_window: float = 0.0,
        on_batch: Callable[[int], None] | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._destination = destination
        #: A cap on the write units a second these writes consume.
        self._limiter = limiter
        self._stats = stats
        self._clock = clock
        self._backoff = backoff or Backoff()
        self._write_window = write_window
        self._on_batch = on_batch

    async def write(
        self,
        writes: Sequence[W],
        *,
        done: Callable[[W], None],
        refused: Callable[[W, ValidationError], None] | None = None,
    ) -> None:
        """Write ``writes`` (at most 25, distinct keys) until each is applied or dropped.

        ``done`` is called for each write as soon as the service has applied it. A
        batch the destination refuses as invalid is written again one key at a time,
        and ``refused`` is called for each write it still refuses (without ``refused``
        the ValidationError is raised). Other non-retriable errors are raised; writes
        not applied by then were not reported done.
        """
        pending = {write.key: write for write in writes}
        try:
            await self._send(pending, done)
        except ValidationError:
            if refused is None:
                raise
            for key, write in list(pending.items()):
                try:
                    await self._send({key: write}, done)
                except ValidationError as exc:
                    refused(write, exc)

    async def _send(self, pending: dict[KeyId, W], done: Callable[[W], None]) -> None:
        """Send what is pending until nothing is; ``pending`` loses each key once done."""

        async def attempt(keys: list[KeyId]) -> list[KeyId]:
            sent = await self._attempt(pending)
            left = set() if not sent else await self._batch_write(sent)
            for key in [key for key in keys if key in pending and key not in left]:
                done(pending.pop(key))
            return [key for key in keys if key in pending]

        await until_processed(
            attempt, list(pending), what="BatchWriteItem", backoff=self._backoff,
            clock=self._clock, on_retry=self._stats.count_retry,
            on_left=self._stats.count_unprocessed,
        )

    async def _attempt(self, pending: dict[KeyId, W]) -> dict[KeyId, dict[str, Any]]:
        """The requests to send now: only those still to be written, once every claim in
        the batch allows the write (see ``LeaseFence``)."""
        await self._wait_for_fences(pending.values())
        requests = {}
        for key, write in list(pending.items()):
            request = write.request()
            if request is None:
                del pending[key]  # dropped: its claim is gone
            else:
                requests[key] = request
        return requests

    async def _batch_write(self, sent: dict[KeyId, dict[str, Any]]) -> set[KeyId]:
        """One BatchWriteItem: the keys it left unprocessed."""
        if self._limiter is not None and self._limiter.rate is not None:
            await self._limiter.acquire(float(sum(map(request_units, sent.values()))))
        left = await self._destination.batch_write(list(sent.values()))
        if self._on_batch is not None:
            self._on_batch(len(sent))
        if not left:
            return set()
        names = [name for name, _, _ in next(iter(sent))]
        return {request_key(request, names) for request in left}

    async def _wait_for_fences(self, writes: Iterable[Write]) -> None:
        """Wait until every claim of the batch holds its lease for the whole write.

        A claim whose lease renewal is late waits here; once it is renewed the
        write goes ahead, and once it is lost the claim is cancelled.
        """
        claims = {id(claim): claim for write in writes for claim in write.claims()}
        for claim in claims.values():
            fence = claim.fence
            while (
                fence is not None
                and not claim.cancelled
                and not fence.allows(self._clock.monotonic(), self._write_window)
            ):
                if fence.revoked:
                    claim.cancelled = True
                    break
                self._stats.fence_waits += 1
                await fence.wait_changed()


@dataclass(frozen=True, slots=True)
class PlainWrite:
    """A put or delete made under no lease (verify's repairs, a replay's writes)."""

    key: KeyId
    put_or_delete: dict[str, Any]

    def request(self) -> dict[str, Any]:
        return self.put_or_delete

    def claims(self) -> tuple[()]:
        return ()


def request_units(request: dict[str, Any]) -> int:
    """The write units a put or delete consumes: a put one per started KB of its item,
    a delete one (it may take more when the deleted item is larger: the cap counts
    what it can know before the call)."""
    put = request.get("PutRequest")
    return write_units(put["Item"]) if put is not None else 1


def request_key(request: dict[str, Any], names: Iterable[str]) -> KeyId:
    """The key a put or delete request writes."""
    if "PutRequest" in request:
        item: Item = request["PutRequest"]["Item"]
    else:
        item = request["DeleteRequest"]["Key"]
    return key_id({name: item[name] for name in names})


def describe_key(key: KeyId) -> str:
    """A key for a message: ``pk=S:a, sk=N:1``, each value cut at 64 characters."""
    return ", ".join(f"{name}={type_}:{str(value)[:64]}" for name, type_, value in key)
