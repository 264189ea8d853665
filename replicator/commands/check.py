"""``replicator check``: validate a topology file and show its paths."""

from __future__ import annotations

from replicator.aws.clients import known_profiles
from replicator.errors import ConfigError
from replicator.ops.status import write_out
from replicator.topology import Source, Topology, load


def run_check(config: str) -> int:
    """Print the topology's paths; ``ConfigError`` (exit 2) when the file is not valid."""
    topology = load(config)
    _check_profiles(config, topology)
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


def _check_profiles(config: str, topology: Topology) -> None:
    """Every profile the topology names is in the AWS config files."""
    known = known_profiles()
    problems = []
    for index, path in enumerate(topology.path):
        named = [(f"path[{index}].source", path.source.profile)] + [
            (f"path[{index}] destination {d.name!r}", d.profile) for d in path.destination]
        problems += [f"{where}: AWS profile {profile!r} is not in the AWS config files "
                     "(~/.aws/config, or AWS_CONFIG_FILE): add it, or name another"
                     for where, profile in named if profile is not None and profile not in known]
    if problems:
        raise ConfigError(f"--config {config}: " + "; ".join(problems))
