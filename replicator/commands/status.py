"""``replicator status``: the task's shards, owners, each destination's checkpoints, and
the live workers."""

from __future__ import annotations

import json
import time

from replicator.aws.clients import AwsClients
from replicator.aws.lease_store import DynamoLeaseStore
from replicator.aws.table import describe_table
from replicator.clock import SYSTEM_CLOCK
from replicator.commands.endpoints import endpoint_for
from replicator.commands.interrupt import until_signalled
from replicator.commands.settings import topology_of
from replicator.commands.startup import call_checked
from replicator.config import Settings
from replicator.copy.joins import READY, joins_key
from replicator.errors import ReplicatorError, StartupCheckError
from replicator.ops.status import SourceView, build_report, render_table, write_out


async def run_status(settings: Settings, *, as_json: bool, destination: str | None = None
                     ) -> int:
    return await until_signalled(
        _status(settings, as_json=as_json, destination=destination), command="status")


async def _status(settings: Settings, *, as_json: bool, destination: str | None) -> int:
    timeout = settings.call_timeout
    topology = topology_of(settings)
    chosen = topology.chosen(destination)
    async with AwsClients() as clients:
        checkpoints = await clients.dynamodb(endpoint_for(settings, "checkpoint"),
                                             call_timeout=timeout)
        store = DynamoLeaseStore(checkpoints, str(settings.task_name), call_timeout=timeout)
        table = await call_checked(
            lambda: describe_table(checkpoints, store.table, call_timeout=timeout),
            what=f"checkpoint table {store.table}", setting="REPLICATOR_CHECKPOINT_ENDPOINT",
            endpoint=settings.checkpoint_endpoint, region=settings.checkpoint_region,
            clock=SYSTEM_CLOCK,
        )
        if table is None:
            raise StartupCheckError(
                f"checkpoint table {store.table} does not exist in region "
                f"{settings.checkpoint_region}: the task has not run yet, or "
                f"{'the topology file' if settings.config else 'REPLICATOR_TASK_NAME'} "
                "names another task"
            )
        rows = await store.scan_rows()
        workers = await store.list_workers()
        views = []
        for path in topology.path:
            names = [d.name for s, d in chosen if s is path.source]
            if not names:
                continue
            own = topology.for_path(settings, path.source, path.destination[0])
            source = await clients.dynamodb(endpoint_for(own, "source"), call_timeout=timeout)
            stream_arn: str | None = None
            try:
                source_table = await describe_table(source, path.source.table,
                                                    call_timeout=timeout)
                stream_arn = source_table.get("LatestStreamArn") if source_table else None
            except ReplicatorError:  # the rows are still worth showing without the source
                stream_arn = None
            joined = {} if stream_arn is None else {
                row.shard_id: row.checkpoint
                for row in await store.list_leases(joins_key(stream_arn))}
            # No row at all: a task of one path, or one not started: served from the start.
            views.append(SourceView(path.source.table, stream_arn, {
                name: joined.get(name) if joined else READY for name in names}))
    # A worker writes its row every renew interval: three missed beats, or a lease
    # duration, make it gone.
    live_within = max(3 * settings.lease_renew_interval, settings.lease_duration)
    report = build_report(str(settings.task_name), views, rows, workers,
                          now=time.time(), live_within=live_within)
    write_out(json.dumps(report, indent=2) if as_json else render_table(report))
    return 0
