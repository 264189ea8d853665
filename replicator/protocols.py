"""The interfaces the core uses to reach AWS.

The service wires in the aiobotocore implementations from ``replicator.aws``;
unit tests wire in in-memory fakes. Every method raises only
``replicator.errors`` exceptions.
"""

from __future__ import annotations

from typing import Any, Protocol

from replicator.leases import Lease
from replicator.records import RecordsPage, Shard


class StreamReader(Protocol):
    """Reads a DynamoDB stream (DescribeStream, GetShardIterator, GetRecords)."""

    async def list_shards(self, stream_arn: str) -> list[Shard]:
        """Every shard of the stream, following DescribeStream's pages."""
        ...

    async def get_shard_iterator(
        self,
        stream_arn: str,
        shard_id: str,
        iterator_type: str,
        sequence_number: str | None = None,
    ) -> str:
        """TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER."""
        ...

    async def get_records(self, iterator: str, limit: int) -> RecordsPage: ...

    async def server_time(self, stream_arn: str) -> float:
        """The service's clock in epoch seconds (whole seconds, from the Date header of
        a DescribeStream answer): the clock that stamps the records' creation times."""
        ...


class DestinationWriter(Protocol):
    """Writes to the destination table."""

    async def batch_write(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One BatchWriteItem call (at most 25 requests, distinct keys).

        Returns the requests the service left unprocessed.
        """
        ...


class LeaseStore(Protocol):
    """The checkpoint table. Every write is conditional.

    ``update_lease`` succeeds only while the row still has the owner and counter
    of the ``Lease`` passed in; otherwise it raises ``ConditionFailedError``.
    """

    async def list_leases(self, stream_arn: str) -> list[Lease]: ...

    async def create_lease(self, lease: Lease) -> bool:
        """Create the row if absent. False if it already exists."""
        ...

    async def update_lease(
        self, lease: Lease, *, new_owner: str | None, checkpoint: str | None = None
    ) -> Lease:
        """Set the owner (None releases), bump the counter, optionally move the checkpoint."""
        ...

    async def delete_lease(self, lease: Lease) -> None: ...


class MetricsSink(Protocol):
    """Where metrics are published (CloudWatch's PutMetricData)."""

    async def put_metric_data(self, namespace: str, data: list[dict[str, Any]]) -> None: ...
