"""Compare two tables given their clients: for the demo, the tests and the benchmarks."""

from __future__ import annotations

from typing import Any

from replicator.aws.table import DynamoTable
from replicator.clock import SYSTEM_CLOCK
from replicator.copy.verify import TableDiff, Verifier


async def compare_tables(
    source: Any, source_table: str, destination: Any, destination_table: str,
    key_names: list[str], *, segments: int = 4,
) -> TableDiff:
    """Compare two tables given their clients (for the demo and tests)."""
    verifier = Verifier(
        DynamoTable(source, source_table, call_timeout=30.0),
        DynamoTable(destination, destination_table, call_timeout=30.0),
        key_names, segments=segments, clock=SYSTEM_CLOCK, call_timeout=30.0,
    )
    return await verifier.compare()
