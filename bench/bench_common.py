"""What the benchmark scripts share: the code version measured, and safe cleanup."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path


def code_version() -> str:
    """The commit measured, and whether the working tree differs from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                                capture_output=True, text=True, timeout=10, check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--", "replicator"],
                                cwd=root, capture_output=True, text=True, timeout=10,
                                check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    dirty = " + uncommitted changes in replicator/" if status.stdout.strip() else ""
    return commit.stdout.strip() + dirty


def local_environment() -> None:
    """Dummy credentials for this process and its children (moto accepts any), and
    Ctrl-C or SIGTERM stop it, even if it was started with SIGINT ignored."""
    from replicator.dev.local import LOCAL_CREDENTIALS

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    os.environ.update(LOCAL_CREDENTIALS)
    os.environ.pop("AWS_PROFILE", None)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Cleanup that a second Ctrl-C must not cut short."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
