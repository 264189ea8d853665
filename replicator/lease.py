"""The checkpoint table's rows: a shard's lease (owner, counter, checkpoints) and a
worker's heartbeat row."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import NamedTuple

from replicator.checkpoint import Sentinel


class ShardKey(NamedTuple):
    """A shard of a stream, as the checkpoint table keys its lease."""

    stream_arn: str
    shard_id: str


@dataclass(frozen=True, slots=True)
class Lease:
    """One row of the checkpoint table.

    ``checkpoint`` is where the shard's reader resumes: the least of the checkpoints
    of its destinations, which ``checkpoints`` holds by destination name. A
    destination the row does not name (a row written for a single path, or created
    for a new shard) is at ``checkpoint``.
    """

    stream_arn: str
    shard_id: str
    parent_shard_id: str | None
    owner: str | None
    counter: int
    checkpoint: str
    checkpoints: tuple[tuple[str, str], ...] = ()

    @property
    def finished(self) -> bool:
        return self.checkpoint == Sentinel.SHARD_END

    @property
    def key(self) -> ShardKey:
        """The row's key: shard ids repeat across streams."""
        return ShardKey(self.stream_arn, self.shard_id)

    def checkpoint_of(self, destination: str) -> str:
        """The checkpoint of one destination of the shard."""
        return dict(self.checkpoints).get(destination, self.checkpoint)

    def after_update(self, *, new_owner: str | None, checkpoint: str | None,
                     checkpoints: Mapping[str, str] | None = None) -> Lease:
        """The row as a successful conditional update leaves it: owner set, counter
        bumped, checkpoints moved when they are given."""
        return replace(
            self,
            owner=new_owner,
            counter=self.counter + 1,
            checkpoint=checkpoint if checkpoint is not None else self.checkpoint,
            checkpoints=(tuple(sorted(checkpoints.items())) if checkpoints is not None
                         else self.checkpoints),
        )


#: The hash key value of the workers' rows.
WORKERS_KEY = "workers"


@dataclass(frozen=True, slots=True)
class WorkerRow:
    worker_id: str
    host: str
    pid: int
    #: starting, copying, replicating or stopping.
    phase: str
    leases: int
    #: The URL of the worker's metrics endpoint, if it serves one.
    metrics: str | None
    #: Wall-clock epoch seconds, by the worker's clock.
    started_at: float
    heartbeat_at: float
    #: The destinations it serves, as ``<source table>/<destination name>``.
    destinations: tuple[str, ...] = ()
