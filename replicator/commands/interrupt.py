"""SIGTERM and SIGINT for the one-shot commands (``verify``, ``status``).

They hold no lease and write no checkpoint, so nothing of theirs needs finishing:
a signal cancels the command at once. It exits 128 plus the signal's number
(143 for SIGTERM, 130 for SIGINT) with one line on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Coroutine
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def until_signalled(work: Coroutine[Any, Any, int], *, command: str) -> int:
    """``work``'s exit code, or 128 + the signal's number once a signal stopped it."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        task.cancel()

    for signum in SIGNALS:
        # Not on every platform, nor from a thread other than the main one (a test).
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await task
    except asyncio.CancelledError:
        if not received:
            raise
        name = signal.Signals(received[0]).name
        print(f"replicator: {command} stopped by {name} before it finished", file=sys.stderr)
        return 128 + received[0]
    finally:
        for signum in SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)
