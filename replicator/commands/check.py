"""``replicator check``: validate a topology file and show its paths."""

from __future__ import annotations

from replicator.ops.status import write_out
from replicator.topology import Source, load


def run_check(config: str) -> int:
    """Print the topology's paths; ``ConfigError`` (exit 2) when the file is not valid."""
    topology = load(config, setting="--config")
    pairs = topology.destinations()
    lines = [f"task {topology.task}: {len(topology.path)} source table"
             f"{'s' if len(topology.path) != 1 else ''}, {len(pairs)} destination"
             f"{'s' if len(pairs) != 1 else ''}"]
    for path in topology.path:
        lines.append(f"  {_where(path.source)}")
        for destination in path.destination:
            create = " (created when absent)" if destination.create else ""
            lines.append(f"    -> {destination.name}: {destination.table} in "
                         f"{destination.endpoint or destination.region}{create}")
    write_out("\n".join(lines))
    return 0


def _where(source: Source) -> str:
    return f"{source.table} in {source.endpoint or source.region}"
