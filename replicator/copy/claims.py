"""TODO"""

from __future__ import annotations

from replicator.backoff import Backoff, retry_forever
from replicator.clock import Clock
from replicator.lease import Lease
from replicator.protocols import LeaseStore

COPY_PREFIX = "copy|"


HEADER = "copy"


RUNNING = "RUNNING"


DONE = "DONE"


START = "START"


def copy_key(stream_arn: str) -> str:
    return COPY_PREFIX + stream_arn


def segment_id(index: int) -> str:
    return f"segment-{index:06d}"


async def bootstrap_needed(store: LeaseStore, stream_arn: str, mode: str, *,
                           clock: Clock) -> bool:
    """Whether ``run`` copies first: always; or, for auto, when the task has no
    checkpoints yet or a copy was interrupted."""
    if mode == "never":
        return False
    if mode == "always":
        return True
    header = await _copy_header(store, stream_arn, clock=clock)
    if header is not None:
        return header.checkpoint != DONE
    return not await _rows(store, stream_arn, clock=clock)


async def copy_unfinished(store: LeaseStore, stream_arn: str, *, clock: Clock) -> bool:
    """Whether a bootstrap copy of the stream's table began and never finished."""
    header = await _copy_header(store, stream_arn, clock=clock)
    return header is not None and header.checkpoint != DONE


async def _rows(store: LeaseStore, key: str, *, clock: Clock) -> list[Lease]:
    return await retry_forever(lambda: store.list_leases(key), what="Query",
                               backoff=Backoff(), clock=clock)


async def _copy_header(store: LeaseStore, stream_arn: str, *, clock: Clock) -> Lease | None:
    rows = await _rows(store, copy_key(stream_arn), clock=clock)
    return {row.shard_id: row for row in rows}.get(HEADER)


def header_checkpoint(segments: int, since_second: int) -> str:
    return f"{RUNNING}/{segments}/{since_second}"


def header_segments(checkpoint: str) -> int:
    """The number of segments of a ``RUNNING/<segments>[/<since>]`` header."""
    return int(checkpoint.split("/")[1])


def header_since(checkpoint: str) -> int | None:
    """The epoch second the copy began at, by the service's clock (None: a header
    written before it was recorded)."""
    parts = checkpoint.split("/")
    return int(parts[2]) if len(parts) > 2 else None
