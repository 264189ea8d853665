"""Compare two tables given their clients: for the demo, the tests and the benchmarks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from replicator.aws.table import DynamoTable
from replicator.clock import SYSTEM_CLOCK
from replicator.copy.verify import TableDiff, Verifier

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


async def compare_tables(
    source: DynamoDBClient, source_table: str, destination: DynamoDBClient,
    destination_table: str,
    key_names: list[str], *, segments: int = 4,
) -> TableDiff:
    """Compare two tables given their clients (for the demo and tests)."""
    verifier = Verifier(
        DynamoTable(source, source_table, call_timeout=30.0),
        DynamoTable(destination, destination_table, call_timeout=30.0),
        key_names, segments=segments, clock=SYSTEM_CLOCK, call_timeout=30.0,
    )
    return await verifier.compare()
