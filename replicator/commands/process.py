"""The process around ``run`` and ``copy``: signals, the shutdown deadline, exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading

import structlog

from replicator.commands.run import DEADLINE_EXIT, HARD_EXIT_MARGIN, Replicator
from replicator.config import Settings
from replicator.logs import configure_logging

log = structlog.get_logger("replicator")


async def run_service(settings: Settings, *, copy_only: bool = False) -> int:
    """``replicator run`` (or ``copy``): replicate until SIGTERM or SIGINT, then shut
    down gracefully."""
    configure_logging(settings.log_level, settings.log_format)
    # Bound here too, so that lines logged from signal handlers carry them.
    structlog.contextvars.bind_contextvars(task=settings.task_name, worker_id=settings.worker_id)
    replicator = Replicator(settings)
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    backstop: threading.Timer | None = None

    def on_signal(signum: int) -> None:
        nonlocal backstop
        if replicator.stop_requested.is_set():  # a second signal: stop at once
            if main_task is not None:
                main_task.cancel()
            return
        log.info("shutdown requested", signal=signal.Signals(signum).name,
                 deadline_seconds=settings.shutdown_timeout)
        replicator.stop()
        # Whatever the loop is doing (a call that ignores cancellation, a loop held up),
        # the process is gone shortly after the deadline.
        backstop = threading.Timer(settings.shutdown_timeout + HARD_EXIT_MARGIN, _hard_exit)
        backstop.daemon = True
        backstop.start()

    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await replicator.run(copy_only=copy_only)
    except asyncio.CancelledError:
        print("replicator: stopped by a second signal before the shutdown finished",
              file=sys.stderr)
        return 130
    finally:
        if backstop is not None:
            backstop.cancel()


def _hard_exit() -> None:
    """The shutdown overran its deadline: leave now, as SIGKILL would, but saying so."""
    log.error("shutdown overran its deadline; exiting now")
    print("replicator: the shutdown overran REPLICATOR_SHUTDOWN_TIMEOUT; exited without "
          "finishing it (what was not checkpointed is left to the next owner)",
          file=sys.stderr)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(DEADLINE_EXIT)
