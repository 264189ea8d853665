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
from replicator.aws.table import describe_table
from replicator.clock import SYSTEM_CLOCK, Clock, within
from replicator.commands import startup
from replicator.commands.endpoints import endpoint_for
from replicator.commands.joining import Join, settle
from replicator.commands.tuning import coordinator_settings
from replicator.commands.wiring import WiredSource, copy_of, dead_letter_store, stream_of, wire
from replicator.config import DEFAULT_METRICS_PORT, METRICS_PORTS, Settings
from replicator.copy.claims import bootstrap_needed
from replicator.copy.table_copy import TableCopy
from replicator.dead_letter import DeadLetterStore
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
from replicator.topology import Topology, load, single_path

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

    def __init__(self, settings: Settings, *, clock: Clock = SYSTEM_CLOCK,
                 topology: Topology | None = None) -> None:
        self.settings = settings
        self.clock = clock
        #: The paths replicated: the topology file's, or the settings' single path.
        self.topology = topology or (load(settings.config, setting="REPLICATOR_CONFIG")
                                     if settings.config else single_path(settings))
        self.stats = Stats()
        self.stop_requested = asyncio.Event()
        self.started = asyncio.Event()
        self.coordinator: ShardCoordinator | None = None
        #: The bootstrap copies of this start, by stream ARN.
        self.copies: dict[str, TableCopy] = {}
        self.sources: list[WiredSource] = []
        self.publisher: CloudWatchPublisher | None = None
        #: The task's dead-letter table, when a destination stores its poison records.
        self.dead_letters: DeadLetterStore | None = None
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
            consumer.drained and consumer.empty_read_started_at >= instant
            for consumer, _ in coordinator.consumers.values()
        )

    @property
    def copy(self) -> TableCopy | None:
        """The bootstrap copy of this start (the first source's, with several)."""
        return next(iter(self.copies.values()), None)

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
        checkpoints = await clients.dynamodb(endpoint_for(settings, "checkpoint"),
                                             call_timeout=timeout)
        store = DynamoLeaseStore(checkpoints, str(settings.task_name), call_timeout=timeout)
        self.sources = await wire(self.topology, settings, clients, clock=self.clock)
        self.dead_letters = await dead_letter_store(self.sources, checkpoints, settings,
                                                    self.stats)
        self._probes = self._tables_to_probe(checkpoints)
        await startup.check_checkpoint_table(settings, store, clock=self.clock)
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
            return await self._replicate(store, group, background, copy_only)
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
                           metrics=self.metrics_address, destinations=tuple(
                               f"{wired.table}/{destination.name}"
                               for wired in self.sources for destination in wired.destinations))

    def _tables_to_probe(self, checkpoints: DynamoDBClient) -> dict[str, tuple[DynamoDBClient,
                                                                               str]]:
        """The tables /readyz describes: with one path, "source" and "destination"."""
        probes: dict[str, tuple[DynamoDBClient, str]] = {}
        single = len(self.sources) == 1 and len(self.sources[0].destinations) == 1
        for wired in self.sources:
            probes["source" if single else f"source {wired.table}"] = (wired.client,
                                                                      wired.table)
            for destination in wired.destinations:
                probes["destination" if single else f"destination {destination.name}"] = (
                    destination.client, destination.destination.table)
        probes["checkpoint"] = (checkpoints, str(self.settings.task_name))
        return probes

    async def _replicate(self, store: DynamoLeaseStore, group: asyncio.TaskGroup,
                         background: list[asyncio.Task[None]], copy_only: bool) -> int:
        settings = self.settings
        mode = "always" if copy_only else settings.bootstrap
        for wired in self.sources:
            if await bootstrap_needed(store, wired.stream_arn, mode, clock=self.clock):
                self.copies[wired.stream_arn] = copy_of(
                    wired, store, stats=self.stats, stop=self.stop_requested, clock=self.clock,
                    hand_off=not copy_only, dead_letters=self.dead_letters)
        # Before any copy writes a checkpoint: see ``settle``.
        settled = {wired.stream_arn: await settle(store, wired,
                                                  copied=wired.stream_arn in self.copies,
                                                  clock=self.clock)
                   for wired in self.sources}
        if self.copies:
            self._set_phase("copying")
            # ``always`` copies on every start: a finished copy is started over.
            if not await self._run_copies(fresh=mode == "always") or copy_only:
                await self._release_handed_over()
                return 0
        sources, joining = [], []
        for wired in self.sources:
            copied = self.copies.get(wired.stream_arn)
            served = settled[wired.stream_arn]
            joining += [(wired, destination) for destination in served.joining]
            sources.append(await stream_of(
                wired, store, settings, mode=mode, stats=self.stats, clock=self.clock,
                handoff=copied.handoff if copied is not None else {}, starts=served.starts,
                dead_letters=self.dead_letters))
            log.info("replication starting", stream_arn=wired.stream_arn,
                     view_type=wired.prepared.view_type,
                     destinations=[d.name for d in wired.destinations],
                     **wired.settings.describe())
        coordinator = ShardCoordinator(
            sources=sources, store=store, stats=self.stats, stop=self.stop_requested,
            clock=self.clock, settings=coordinator_settings(settings),
        )
        self.coordinator = coordinator
        self._set_phase("replicating")
        self.started.set()
        background.append(group.create_task(self._report_progress(), name="progress"))
        for wired, destination in joining:
            join = Join(wired, destination, store, settings, self.stats, self.stop_requested,
                        self.clock, coordinator, self.dead_letters)
            background.append(group.create_task(join.run(), name=f"join-{destination.name}"))
        await coordinator.run()
        self._log_totals()
        if coordinator.fatal is not None:
            self.stats.errors[type(coordinator.fatal).__name__] += 1
            raise coordinator.fatal
        return 0

    async def _run_copies(self, *, fresh: bool) -> bool:
        """Run every source's copy at once; whether all of them finished."""
        try:
            async with asyncio.TaskGroup() as group:
                runs = [group.create_task(copy.run(fresh=fresh), name=f"copy-{arn}")
                        for arn, copy in self.copies.items()]
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        return all(run.result() for run in runs)

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
        """Leases the copies took for a stream that does not follow (stopped meanwhile):
        free them at once rather than let them expire."""
        for copied in self.copies.values():
            for handed in copied.handoff.values():
                with contextlib.suppress(ReplicatorError):
                    await handed.lease.release()
            copied.handoff.clear()

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
