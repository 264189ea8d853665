"""Checkpoints: where a shard's reading resumes, and what may safely be recorded.

A checkpoint is either a sequence number, meaning "every record up to and
including this one is applied", or one of the sentinels below. The tracker
turns the out-of-order completions of the writer pool into the highest
sequence number below which *every* record has been applied: the only value
that may ever be written as a checkpoint.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Sentinel(enum.StrEnum):
    """Checkpoint values that are not sequence numbers (as in the KCL's SentinelCheckpoint)."""

    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"
    SHARD_END = "SHARD_END"


#: A checkpoint ``AT:<sequence number>`` starts a shard at that record (inclusive):
#: the first record written after a bootstrap copy began.
AT_PREFIX = "AT:"


#: A checkpoint ``SINCE:<epoch seconds>`` starts a shard at its TRIM_HORIZON and skips,
#: without applying them, the records created before that second: a bootstrap copy
#: holds them already. Records of that second and later are applied.
SINCE_PREFIX = "SINCE:"


def is_sentinel(checkpoint: str) -> bool:
    return checkpoint in Sentinel.__members__


def at_sequence(checkpoint: str) -> str | None:
    """The sequence number of an ``AT:`` checkpoint, or None."""
    return checkpoint.removeprefix(AT_PREFIX) if checkpoint.startswith(AT_PREFIX) else None


def since_time(checkpoint: str) -> float | None:
    """The epoch second of a ``SINCE:`` checkpoint, or None."""
    if not checkpoint.startswith(SINCE_PREFIX):
        return None
    return float(checkpoint.removeprefix(SINCE_PREFIX))


def since(epoch_second: float) -> str:
    return f"{SINCE_PREFIX}{int(epoch_second)}"


def is_copy_start(checkpoint: str) -> bool:
    """Whether the checkpoint is a start a bootstrap copy recorded (``AT:``, ``SINCE:``)."""
    return checkpoint.startswith((AT_PREFIX, SINCE_PREFIX))


def before_reading(checkpoint: str) -> bool:
    """Whether nothing of the shard has been applied since the checkpoint was set: a
    sentinel start, or a bootstrap copy's ``AT:`` or ``SINCE:`` position."""
    return is_sentinel(checkpoint) or is_copy_start(checkpoint)




def position_order(checkpoint: str) -> tuple[int, int, int]:
    """Where in a shard a checkpoint leaves its reader, as a sortable value: the start
    (TRIM_HORIZON, then ``SINCE:`` by its second), a record (``AT:s`` just before the
    sequence number ``s``), the head (LATEST), the end (SHARD_END)."""
    if checkpoint == Sentinel.TRIM_HORIZON:
        return (0, 0, 0)
    since_second = since_time(checkpoint)
    if since_second is not None:
        return (1, int(since_second), 0)
    if checkpoint == Sentinel.LATEST:
        return (3, 0, 0)
    if checkpoint == Sentinel.SHARD_END:
        return (4, 0, 0)
    at = at_sequence(checkpoint)
    if at is not None:
        return (2, int(at), 0)
    return (2, int(checkpoint), 1)


def least(checkpoints: Iterable[str]) -> str:
    """The checkpoint furthest back: where a shard read for several destinations resumes."""
    return min(checkpoints, key=position_order)
