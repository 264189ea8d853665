"""The checkpoint table's rows: a shard's lease (owner, counter, checkpoint) and a
worker's heartbeat row."""

from __future__ import annotations

from dataclasses import dataclass, replace

from replicator.checkpoint import Sentinel


@dataclass(frozen=True, slots=True)
class Lease:
    """One row of the checkpoint table."""

    stream_arn: str
    shard_id: str
    parent_shard_id: str | None
    owner: str | None
    counter: int
    checkpoint: str

    @property
    def finished(self) -> bool:
        return self.checkpoint == Sentinel.SHARD_END

    def after_update(self, *, new_owner: str | None, checkpoint: str | None) -> Lease:
        """The row as a successful conditional update leaves it: owner set, counter
        bumped, checkpoint moved when one is given."""
        return replace(
            self,
            owner=new_owner,
            counter=self.counter + 1,
            checkpoint=checkpoint if checkpoint is not None else self.checkpoint,
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
