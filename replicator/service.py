"""The service: wire the clients, check the tables, run the coordinator, stop on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time

import structlog

from replicator import startup
from replicator.aws import (
    AwsClients,
    DynamoLeaseStore,
    DynamoStreamReader,
    DynamoTable,
    Endpoint,
)
from replicator.config import FENCE_SAFETY, Settings
from replicator.coordinator import CoordinatorSettings, ShardCoordinator
from replicator.copy import CopySettings, TableCopy, bootstrap_needed
from replicator.logs import configure_logging
from replicator.stats import Stats
from replicator.writer import WriterPool

log = structlog.get_logger("replicator")


class Replicator:
    """One worker of a replication task. ``run`` returns the process exit code."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stats = Stats()
        self.stop_requested = asyncio.Event()
        self.started = asyncio.Event()
        self.coordinator: ShardCoordinator | None = None
        self.copy: TableCopy | None = None

    def stop(self) -> None:
        """Begin a graceful shutdown: stop reading, drain, checkpoint, release."""
        self.stop_requested.set()

    def caught_up_since(self, instant: float) -> bool:
        """Whether every running shard has applied all it read and found nothing new
        in a read that began after ``instant`` (a ``time.monotonic()`` value)."""
        coordinator = self.coordinator
        if coordinator is None or not coordinator.consumers:
            return False
        return all(
            consumer.tracker.drained and consumer.empty_read_started_at >= instant
            for consumer, _ in coordinator.consumers.values()
        )

    async def run(self, *, copy_only: bool = False) -> int:
        """Replicate (after a bootstrap copy when one is needed) until stopped; with
        ``copy_only``, copy the table afresh and return."""
        settings = self.settings
        structlog.contextvars.bind_contextvars(
            task=settings.task_name, worker_id=settings.worker_id
        )
        timeout = settings.call_timeout
        async with AwsClients() as clients:
            source = await clients.open(
                Endpoint("dynamodb", str(settings.source_region), settings.source_endpoint),
                call_timeout=timeout,
            )
            streams_client = await clients.open(
                Endpoint("dynamodbstreams", str(settings.source_region),
                         settings.source_streams_endpoint),
                call_timeout=timeout,
            )
            destination = await clients.open(
                Endpoint("dynamodb", str(settings.destination_region),
                         settings.destination_endpoint),
                call_timeout=timeout,
                max_connections=max(settings.writers, settings.copy_writers) + 2,
            )
            checkpoints = await clients.open(
                Endpoint("dynamodb", str(settings.checkpoint_region),
                         settings.checkpoint_endpoint),
                call_timeout=timeout,
            )
            streams = DynamoStreamReader(streams_client, call_timeout=timeout)
            store = DynamoLeaseStore(checkpoints, str(settings.task_name), call_timeout=timeout)
            prepared = await startup.check(
                settings, source=source, streams=streams, destination=destination, store=store
            )
            destination_table = DynamoTable(
                destination, settings.destination_table, call_timeout=timeout
            )
            mode = "always" if copy_only else settings.bootstrap
            if await bootstrap_needed(store, prepared.stream_arn, mode):
                self.copy = TableCopy(
                    source=DynamoTable(source, settings.source_table, call_timeout=timeout),
                    destination=destination_table, streams=streams, store=store,
                    stream_arn=prepared.stream_arn, settings=self._copy_settings(),
                    stats=self.stats, stop=self.stop_requested,
                    table_items=int(prepared.source_table.get("ItemCount") or 0),
                    table_bytes=int(prepared.source_table.get("TableSizeBytes") or 0),
                    key_names=tuple(k["AttributeName"]
                                    for k in prepared.source_table["KeySchema"]),
                )
                # ``always`` copies on every start: a finished copy is started over.
                if not await self.copy.run(fresh=mode == "always") or copy_only:
                    return 0
            log.info("replication starting", stream_arn=prepared.stream_arn,
                     view_type=prepared.view_type, **settings.describe())
            pool = WriterPool(
                destination_table,
                writers=settings.writers, queue_size=settings.queue_size, stats=self.stats,
                write_window=settings.call_timeout + FENCE_SAFETY,
            )
            coordinator = ShardCoordinator(
                stream_arn=prepared.stream_arn, streams=streams, store=store, pool=pool,
                stats=self.stats, stop=self.stop_requested,
                settings=CoordinatorSettings(
                    worker_id=str(settings.worker_id),
                    initial_position=settings.initial_sentinel,
                    get_records_limit=settings.get_records_limit,
                    idle_interval=settings.idle_interval,
                    checkpoint_interval=settings.checkpoint_interval,
                    coordinator_interval=settings.coordinator_interval,
                    shard_sync_interval=settings.shard_sync_interval,
                    lease_duration=settings.lease_duration,
                    lease_renew_interval=settings.lease_renew_interval,
                    shutdown_timeout=settings.shutdown_timeout,
                    skip_trimmed=settings.on_trimmed_data == "skip",
                    write_window=settings.call_timeout + FENCE_SAFETY,
                ),
            )
            self.coordinator = coordinator
            self.started.set()
            async with asyncio.TaskGroup() as group:
                reporter = group.create_task(self._report_progress(), name="progress")
                await coordinator.run()
                reporter.cancel()
            self._log_totals()
        if coordinator.fatal is not None:
            raise coordinator.fatal
        return 0

    def _copy_settings(self) -> CopySettings:
        settings = self.settings
        return CopySettings(
            worker_id=str(settings.worker_id),
            segments=settings.copy_segments,
            concurrency=settings.copy_concurrency,
            writers=settings.copy_writers,
            max_rcu=settings.copy_max_rcu,
            max_wcu=settings.copy_max_wcu,
            lease_duration=settings.lease_duration,
            lease_renew_interval=settings.lease_renew_interval,
            coordinator_interval=settings.coordinator_interval,
            idle_interval=settings.idle_interval,
            write_window=settings.call_timeout + FENCE_SAFETY,
            progress_interval=settings.progress_interval,
        )

    async def _report_progress(self) -> None:
        stats = self.stats
        last_applied, last_time = 0, time.monotonic()
        while True:
            await asyncio.sleep(self.settings.progress_interval)
            now = time.monotonic()
            applied = stats.applied_total
            log.info(
                "progress",
                records_read=stats.records_read,
                records_applied=applied,
                records_per_second=round((applied - last_applied) / (now - last_time), 1),
                lag_seconds=round(stats.lag_seconds(), 3),
                leases_held=len(self.coordinator.held) if self.coordinator else 0,
                queue_depth=self.coordinator and self.coordinator.queue_depth(),
            )
            last_applied, last_time = applied, now

    def _log_totals(self) -> None:
        stats = self.stats
        log.info(
            "replication stopped",
            records_read=stats.records_read,
            records_applied=dict(stats.records_applied),
            retries=dict(stats.retries),
            checkpoints_written=stats.checkpoints_written,
            trimmed_events=stats.trimmed_events,
        )


async def run_service(settings: Settings, *, copy_only: bool = False) -> int:
    """``replicator run`` (or ``copy``): replicate until SIGTERM or SIGINT, then shut
    down gracefully."""
    configure_logging(settings.log_level, settings.log_format)
    # Bound here too, so that lines logged from signal handlers carry them.
    structlog.contextvars.bind_contextvars(task=settings.task_name, worker_id=settings.worker_id)
    replicator = Replicator(settings)
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def on_signal(signum: int) -> None:
        if replicator.stop_requested.is_set():  # a second signal: stop at once
            if main_task is not None:
                main_task.cancel()
            return
        log.info("shutdown requested", signal=signal.Signals(signum).name)
        replicator.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await replicator.run(copy_only=copy_only)
    except asyncio.CancelledError:
        print("replicator: stopped by a second signal before the shutdown finished",
              file=sys.stderr)
        return 130
