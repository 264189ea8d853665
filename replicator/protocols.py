"""The interfaces the core uses to reach AWS.

The service wires in the aiobotocore implementations from ``replicator.aws``;
unit tests wire in in-memory fakes. Every method raises only
``replicator.errors`` exceptions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from replicator.lease import Lease
from replicator.records import Item, RecordsPage, Shard


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


class SegmentScanner(Protocol):
    """Reads a table by parallel Scan segments (the source of a copy, both sides of verify)."""

    #: The table's name, for messages.
    table: str

    async def scan_page(
        self, *, segment: int, total_segments: int, start_key: Item | None,
        limit: int | None = None, call_timeout: float | None = None,
    ) -> tuple[list[Item], Item | None, float]:
        """One page of one segment, strongly consistent: (items, LastEvaluatedKey or None
        at the segment's end, read units consumed), within ``call_timeout`` (None: the
        table's own call timeout)."""
        ...


class KeyReader(Protocol):
    """Reads items by key (BatchGetItem)."""

    async def batch_get(self, keys: list[Item]) -> tuple[list[Item], list[Item]]:
        """One BatchGetItem of at most 100 keys, strongly consistent: (items found, keys
        the service left unprocessed)."""
        ...


class TableAccess(SegmentScanner, KeyReader, DestinationWriter, Protocol):
    """Everything ``verify`` does on a table: scan it, look keys up, repair it."""


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
        self, lease: Lease, *, new_owner: str | None, checkpoint: str | None = None,
        checkpoints: Mapping[str, str] | None = None,
    ) -> Lease:
        """Set the owner (None releases), bump the counter, optionally move the checkpoint
        (and replace the destinations' checkpoints)."""
        ...

    async def delete_lease(self, lease: Lease) -> None: ...


class ValueCodec(Protocol):
    """Converts items between DynamoDB's wire values and plain Python values (a
    transform's view of an item)."""

    def to_python(self, item: Item) -> dict[str, Any]: ...

    def to_wire(self, item: Mapping[str, Any]) -> Item: ...


class MetricsSink(Protocol):
    """Where metrics are published (CloudWatch's PutMetricData)."""

    async def put_metric_data(self, namespace: str, data: list[dict[str, Any]]) -> None: ...
