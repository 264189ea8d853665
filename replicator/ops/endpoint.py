"""The HTTP endpoint: Prometheus metrics, liveness and readiness.

One small aiohttp server on ``REPLICATOR_METRICS_HOST:REPLICATOR_METRICS_PORT``:

- ``/metrics``: the Prometheus text format (``replicator.ops.metrics``).
- ``/healthz``: 200 while the process is alive and its event loop answers in
  time (``LoopMonitor``), else 503. For ECS health checks and liveness probes.
- ``/readyz``: 200 while the service is copying or replicating and its tables
  answer, else 503, with the reason in a JSON body. For readiness probes.
"""

from __future__ import annotations

import asyncio
import errno
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from replicator.errors import StartupCheckError

METRICS_PATH = "/metrics"
HEALTHZ_PATH = "/healthz"
READYZ_PATH = "/readyz"

#: The event loop is unhealthy when a 0.5 s sleep overshoots by more than this.
LOOP_LAG_LIMIT = 5.0


class LoopMonitor:
    """Measures how late the event loop wakes a sleeping task."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.lag = 0.0
        self.beat = time.monotonic()

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(self.interval)
            self.beat = time.monotonic()
            self.lag = max(0.0, self.beat - started - self.interval)

    def healthy(self, now: float | None = None) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic() if now is None else now
        silent = max(0.0, now - self.beat - self.interval)
        lag = max(self.lag, silent)
        return lag <= LOOP_LAG_LIMIT, {"loop_lag_seconds": round(lag, 3)}


@dataclass(slots=True)
class Readiness:
    """The answer of ``/readyz``."""

    ready: bool
    details: dict[str, Any] = field(default_factory=dict)


class PortTakenError(StartupCheckError):
    """The metrics port is held by another process (another worker, say)."""


class StatusServer:
    def __init__(
        self,
        *,
        metrics: Callable[[], bytes],
        metrics_content_type: str,
        readiness: Callable[[], Awaitable[Readiness]],
        monitor: LoopMonitor,
    ) -> None:
        self._metrics = metrics
        self._content_type = metrics_content_type
        self._readiness = readiness
        self._monitor = monitor
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get(METRICS_PATH, self._get_metrics)
        app.router.add_get(HEALTHZ_PATH, self._get_healthz)
        app.router.add_get(READYZ_PATH, self._get_readyz)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            error = PortTakenError if exc.errno == errno.EADDRINUSE else StartupCheckError
            raise error(
                f"REPLICATOR_METRICS_PORT: cannot listen on {host}:{port} "
                f"({exc.strerror or exc}); choose a free port, or set 0 to turn the "
                "metrics endpoint off"
            ) from None
        self._runner = runner
        sockets = getattr(site, "_server", None)
        bound = sockets.sockets if sockets is not None else []
        self.port = bound[0].getsockname()[1] if bound else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _get_metrics(self, request: web.Request) -> web.Response:
        body = self._metrics()
        return web.Response(body=body, headers={"Content-Type": self._content_type})

    async def _get_healthz(self, request: web.Request) -> web.Response:
        healthy, details = self._monitor.healthy()
        return _json(200 if healthy else 503, {"healthy": healthy, **details})

    async def _get_readyz(self, request: web.Request) -> web.Response:
        answer = await self._readiness()
        return _json(200 if answer.ready else 503, {"ready": answer.ready, **answer.details})


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, text=json.dumps(body, sort_keys=True),
                        content_type="application/json")
