"""The service: wire the clients, check the tables, run the coordinator, stop on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import TYPE_CHECKING, Any

import structlog

from replicator.aws.clients import AwsClients
from replicator.aws.cloudwatch import CloudWatchMetrics
from replicator.aws.lease_store import DynamoLeaseStore
from replicator.aws.streams import DynamoStreamReader
from replicator.aws.table import DynamoTable, describe_table
from replicator.clock import SYSTEM_CLOCK, Clock, within
from replicator.commands import startup
from replicator.commands.endpoints import endpoint_for
from replicator.commands.tuning import coordinator_settings, copy_settings, write_window
from replicator.config import DEFAULT_METRICS_PORT, METRICS_PORTS, Settings
from replicator.copy.claims import bootstrap_needed, copy_unfinished
from replicator.copy.table_copy import TableCopy
from replicator.errors import ReplicatorError, StartupCheckError
from replicator.ops.cloudwatch import CloudWatchPublisher
from replicator.ops.endpoint import LoopMonitor, PortTakenError, Readiness, StatusServer
from replicator.ops.heartbeat import Heartbeat, WorkerState
from replicator.ops.metrics import (
    CONTENT_TYPE_LATEST,
    LiveGauges,
    StatsCollector,
    registry_for,
    render,
)
from replicator.stats import Stats
from replicator.stream.coordinator import ShardCoordinator
from replicator.stream.writer import WriterPool

log = structlog.get_logger("replicator")

#: Seconds past the shutdown deadline before the service cancels what still runs: the
#: coordinator's own deadline comes first when the network lets it.
DEADLINE_MARGIN = 0.1
#: Seconds a cancelled shutdown is given to unwind before the service returns anyway.
CANCEL_GRACE = 0.35
#: The exit code of a stop whose shutdown met its deadline (128 + SIGTERM).
DEADLINE_EXIT = 143
#: Seconds past the shutdown deadline at which the process exits whatever it is doing.
HARD_EXIT_MARGIN = 0.6
#: /readyz answers from a DescribeTable of each table at most this old.
PROBE_CACHE_SECONDS = 1.0
#: A table that does not answer a DescribeTable within this is not ready.
PROBE_TIMEOUT = 2.0

if TYPE_CHECKING:
    from replicator.aws.clients import DynamoDBClient


class Replicator:
    """One worker of a replication task. ``run`` returns the process exit code."""

    def __init__(self, settings: Settings, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings
        self.clock = clock
        self.stats = Stats()
        self.stop_requested = asyncio.Event()
        self.started = asyncio.Event()
        self.coordinator: ShardCoordinator | None = None
        self.copy: TableCopy | None = None
        self.publisher: CloudWatchPublisher | None = None
        self.server: StatusServer | None = None
        #: The URL of this worker's metrics endpoint, once it listens.
        self.metrics_address: str | None = None
        self.monitor = LoopMonitor()
        #: starting, copying, replicating, stopped (``readiness`` adds stopping).
        self.phase = "starting"
        self._probes: dict[str, tuple[DynamoDBClient, str]] = {}
        self._probed: tuple[float, dict[str, str]] | None = None
        self._probe_lock = asyncio.Lock()
        self._stop_requested_at: float | None = None
        self._heartbeat: Heartbeat | None = None
        #: Set when the shutdown deadline cut the work short.
        self.deadline_reached = False

    def _set_phase(self, phase: str) -> None:
        self.phase = phase
        self.stats.changed.notify()
        if self._heartbeat is not None:
            self._heartbeat.changed()  # status shows the new phase at once

    def stop(self) -> None:
        """Begin a graceful shutdown: stop reading, drain, checkpoint, release, all
        within ``shutdown_timeout`` (``_bounded``)."""
        if not self.stop_requested.is_set():
            self._stop_requested_at = self.clock.monotonic()
        self.stop_requested.set()

    def caught_up_since(self, instant: float) -> bool:
        """Whether every running shard has applied all it read and found nothing new
        in a read that began after ``instant`` (a ``self.clock.monotonic()`` value)."""
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
        outcome: int | ReplicatorError
        async with AwsClients() as clients:
            server = await self._start_server(copy_only=copy_only)
            try:
                async with asyncio.TaskGroup() as group:
                    background = [group.create_task(self.monitor.run(), name="loop-monitor")]

                    async def attempt() -> int | ReplicatorError:
                        try:
                            return await self._run(clients, group, background, copy_only)
                        except ReplicatorError as exc:
                            return exc  # raised below, not wrapped in an ExceptionGroup

                    try:
                        outcome = await self._bounded(group.create_task(attempt(), name="work"))
                    finally:
                        self._set_phase("stopped")
                        for task in background:
                            task.cancel()
            finally:
                if server is not None:
                    await server.stop()
        if isinstance(outcome, ReplicatorError):
            raise outcome
        return outcome

    async def _bounded(self, work: asyncio.Task[int | ReplicatorError]) -> int | ReplicatorError:
        """``work``'s outcome; once a stop is requested, within ``shutdown_timeout`` of it.

        Stopped while starting (nothing to finish), the work is cancelled at once.
        Otherwise it has until the deadline to stop gracefully (the coordinator and
        the copy finish what they can by then); past it, it is cancelled, and whatever
        was not checkpointed is left to the next owner.
        """
        stopping = asyncio.ensure_future(self.stop_requested.wait())
        try:
            await asyncio.wait([work, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not work.done():
            if self.phase == "starting":
                work.cancel()
            else:
                asked = self._stop_requested_at
                left = self.settings.shutdown_timeout + DEADLINE_MARGIN - (
                    self.clock.monotonic() - asked if asked is not None else 0.0)
                with contextlib.suppress(TimeoutError):
                    await within(self.clock, left, asyncio.shield(work))
                if not work.done():
                    self.deadline_reached = True
                    log.warning("shutdown deadline reached; what was not checkpointed is "
                                "left to the next owner", phase=self.phase,
                                seconds=self.settings.shutdown_timeout)
                    work.cancel()
            with contextlib.suppress(TimeoutError):
                await within(self.clock, CANCEL_GRACE, asyncio.shield(work))
            if not work.done():
                return DEADLINE_EXIT
            if work.cancelled():
                return DEADLINE_EXIT if self.deadline_reached else 0
        return work.result()

    async def _run(self, clients: AwsClients, group: asyncio.TaskGroup,
                   background: list[asyncio.Task[None]], copy_only: bool) -> int:
        settings = self.settings
        timeout = settings.call_timeout
        source = await clients.dynamodb(endpoint_for(settings, "source"), call_timeout=timeout)
        streams_client = await clients.streams(endpoint_for(settings, "streams"),
                                               call_timeout=timeout)
        destination = await clients.dynamodb(
            endpoint_for(settings, "destination"), call_timeout=timeout,
            max_connections=max(settings.writers, settings.copy_writers) + 2,
        )
        checkpoints = await clients.dynamodb(endpoint_for(settings, "checkpoint"),
                                             call_timeout=timeout)
        self._probes = {
            "source": (source, settings.source_table),
            "destination": (destination, settings.destination_table),
            "checkpoint": (checkpoints, str(settings.task_name)),
        }
        streams = DynamoStreamReader(streams_client, call_timeout=timeout)
        store = DynamoLeaseStore(checkpoints, str(settings.task_name), call_timeout=timeout)
        prepared = await startup.check(
            settings, source=source, streams=streams, destination=destination, store=store,
            clock=self.clock,
        )
        if settings.cloudwatch:
            cloudwatch = await clients.cloudwatch(endpoint_for(settings, "cloudwatch"),
                                                  call_timeout=timeout)
            self.publisher = CloudWatchPublisher(
                CloudWatchMetrics(cloudwatch, call_timeout=timeout), self.stats,
                task=str(settings.task_name), interval=settings.cloudwatch_interval,
                leases_held=lambda: self.live_gauges().leases_held, clock=self.clock,
            )
            background.append(group.create_task(self.publisher.run(), name="cloudwatch"))
        heartbeat = self._heartbeat = Heartbeat(
            store, worker_id=str(settings.worker_id), host=socket.gethostname(),
            pid=os.getpid(), interval=settings.lease_renew_interval, clock=self.clock,
            state=self._worker_state,
        )
        beating = group.create_task(heartbeat.run(), name="heartbeat")
        background.append(beating)
        try:
            return await self._replicate(
                source, destination, streams, store, prepared, group, background, copy_only
            )
        finally:
            beating.cancel()
            # The last calls, bounded by what is left of the shutdown deadline: past it
            # the worker's row expires by itself, and the next batch of counts is lost.
            with contextlib.suppress(TimeoutError):
                await within(self.clock, self._time_left(timeout), heartbeat.leave())
            if self.publisher is not None:  # the last counts, before the process ends
                with contextlib.suppress(TimeoutError):
                    await within(self.clock, self._time_left(timeout), self.publisher.publish())

    def _time_left(self, at_most: float) -> float:
        """Seconds a call may take now: ``at_most``, or, once a stop is requested, no more
        than what is left until the shutdown deadline."""
        asked = self._stop_requested_at
        if asked is None:
            return at_most
        left = self.settings.shutdown_timeout - (self.clock.monotonic() - asked)
        return max(0.0, min(at_most, left))

    def _worker_state(self) -> WorkerState:
        phase = "stopping" if self.stop_requested.is_set() else self.phase
        return WorkerState(phase=phase, leases=self.live_gauges().leases_held,
                           metrics=self.metrics_address)

    async def _replicate(
        self, source: DynamoDBClient, destination: DynamoDBClient, streams: DynamoStreamReader,
        store: DynamoLeaseStore, prepared: startup.Prepared, group: asyncio.TaskGroup,
        background: list[asyncio.Task[None]], copy_only: bool,
    ) -> int:
        settings = self.settings
        timeout = settings.call_timeout
        destination_table = DynamoTable(
            destination, settings.destination_table, call_timeout=timeout
        )
        mode = "always" if copy_only else settings.bootstrap
        if await bootstrap_needed(store, prepared.stream_arn, mode, clock=self.clock):
            self._set_phase("copying")
            self.copy = TableCopy(
                source=DynamoTable(source, settings.source_table, call_timeout=timeout),
                destination=destination_table, streams=streams, store=store,
                stream_arn=prepared.stream_arn,
                settings=copy_settings(self.settings, hand_off=not copy_only),
                stats=self.stats, stop=self.stop_requested, clock=self.clock,
                table_items=int(prepared.source_table.get("ItemCount") or 0),
                table_bytes=int(prepared.source_table.get("TableSizeBytes") or 0),
                key_names=tuple(k["AttributeName"] for k in prepared.source_table["KeySchema"]),
            )
            # ``always`` copies on every start: a finished copy is started over.
            if not await self.copy.run(fresh=mode == "always") or copy_only:
                await self._release_handed_over()
                return 0
        # A copy that never finished left starts that hold only with it; a worker that
        # does not copy starts those shards where it starts shards without checkpoints.
        unfinished = mode == "never" and await copy_unfinished(
            store, prepared.stream_arn, clock=self.clock)
        if unfinished:
            log.warning("a bootstrap copy of the source table never finished; with bootstrap "
                        "never, its shards start at the initial position",
                        initial_position=settings.initial_sentinel.value)
        log.info("replication starting", stream_arn=prepared.stream_arn,
                 view_type=prepared.view_type, **settings.describe())
        pool = WriterPool(
            destination_table,
            writers=settings.writers, queue_size=settings.queue_size, stats=self.stats,
            write_window=write_window(settings), clock=self.clock,
        )
        handoff = self.copy.handoff if self.copy is not None else {}
        coordinator = ShardCoordinator(
            stream_arn=prepared.stream_arn, streams=streams, store=store, pool=pool,
            stats=self.stats, stop=self.stop_requested, clock=self.clock,
            adopted={shard_id: (handed.lease, handed.iterator)
                     for shard_id, handed in handoff.items()},
            settings=coordinator_settings(settings, copy_unfinished=unfinished),
        )
        self.coordinator = coordinator
        self._set_phase("replicating")
        self.started.set()
        background.append(group.create_task(self._report_progress(), name="progress"))
        await coordinator.run()
        self._log_totals()
        if coordinator.fatal is not None:
            self.stats.errors[type(coordinator.fatal).__name__] += 1
            raise coordinator.fatal
        return 0

    # -- what the endpoint and the reporters read ---------------------------------

    def live_gauges(self) -> LiveGauges:
        coordinator = self.coordinator
        if coordinator is None:
            return LiveGauges()
        return LiveGauges(leases_held=len(coordinator.held),
                          queue_depth=coordinator.queue_depth())

    async def _start_server(self, *, copy_only: bool) -> StatusServer | None:
        """The metrics endpoint: on the port set, or on the first free one from
        ``DEFAULT_METRICS_PORT`` (so that workers started alike on one machine each get
        one); none when the port is 0, nor for ``copy`` unless a port is set."""
        settings = self.settings
        if settings.metrics_port == 0 or (settings.metrics_port is None and copy_only):
            return None
        collector = StatsCollector(self.stats, task=str(settings.task_name),
                                   worker=str(settings.worker_id), gauges=self.live_gauges)
        registry = registry_for(collector)
        server = StatusServer(
            metrics=lambda: render(registry), metrics_content_type=CONTENT_TYPE_LATEST,
            readiness=self.readiness, monitor=self.monitor,
        )
        host = settings.metrics_host
        if settings.metrics_port is not None:
            await server.start(host, settings.metrics_port)
        else:
            last = DEFAULT_METRICS_PORT + METRICS_PORTS - 1
            for port in range(DEFAULT_METRICS_PORT, last + 1):
                try:
                    await server.start(host, port)
                    break
                except PortTakenError:
                    if port == last:
                        raise StartupCheckError(
                            f"REPLICATOR_METRICS_PORT: ports {DEFAULT_METRICS_PORT} to {last} "
                            f"on {host} are all taken; set a free port, or 0 to turn the "
                            "metrics endpoint off"
                        ) from None
        self.server = server
        self.metrics_address = f"http://{_reachable(host)}:{server.port}"
        log.info("metrics endpoint listening", host=host, port=server.port,
                 url=self.metrics_address)
        return server

    async def readiness(self) -> Readiness:
        """Ready while copying or replicating with every table answering."""
        now = self.clock.monotonic()
        if self._probed is None or now - self._probed[0] > PROBE_CACHE_SECONDS:
            async with self._probe_lock:
                if self._probed is None or now - self._probed[0] > PROBE_CACHE_SECONDS:
                    self._probed = (self.clock.monotonic(), await self._probe_tables())
        tables = self._probed[1]
        phase = "stopping" if self.stop_requested.is_set() and self.phase != "stopped" \
            else self.phase
        live = self.live_gauges()
        ready = phase in ("copying", "replicating") and all(
            state == "ok" for state in tables.values())
        details: dict[str, Any] = {"phase": phase, "tables": tables,
                                   "leases_held": live.leases_held}
        if phase == "replicating" and live.leases_held == 0:
            details["waiting_for_shard"] = True
        return Readiness(ready, details)

    async def _probe_tables(self) -> dict[str, str]:
        """DescribeTable on each table: "ok", "missing", or the error."""
        timeout = min(self.settings.call_timeout, PROBE_TIMEOUT)

        async def probe(client: DynamoDBClient, table: str) -> str:
            try:
                found = await describe_table(client, table, call_timeout=timeout)
            except ReplicatorError as exc:
                return str(exc)
            return "ok" if found is not None else "missing"

        names = list(self._probes)
        answers = await asyncio.gather(*(probe(*self._probes[name]) for name in names))
        return dict(zip(names, answers, strict=True))

    async def _release_handed_over(self) -> None:
        """Leases the copy took for a stream that does not follow (stopped meanwhile):
        free them at once rather than let them expire."""
        if self.copy is None:
            return
        for handed in self.copy.handoff.values():
            with contextlib.suppress(ReplicatorError):
                await handed.lease.release()
        self.copy.handoff.clear()

    async def _report_progress(self) -> None:
        stats = self.stats
        last_applied, last_time = 0, self.clock.monotonic()
        while True:
            await self.clock.sleep(self.settings.progress_interval)
            now = self.clock.monotonic()
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
            records_skipped=stats.records_skipped,
            records_applied=dict(stats.records_applied),
            retries=dict(stats.retries),
            checkpoints_written=stats.checkpoints_written,
            trimmed_events=stats.trimmed_events,
        )


def _reachable(host: str) -> str:
    """The host to name in an address: this machine's name when listening on every one."""
    return socket.gethostname() if host in ("0.0.0.0", "::", "") else host
