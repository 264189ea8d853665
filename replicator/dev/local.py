"""Local endpoints: moto's server as a subprocess on 127.0.0.1 and a free port.

Used by ``replicator demo`` and by the integration tests. Each server has its
own state, so two of them stand for two regions or accounts. moto is not a
runtime dependency: it comes with the ``demo`` extra (and the ``dev`` one).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from types import TracebackType

from replicator.errors import StartupCheckError

# moto accepts any credentials; these keep botocore from looking further.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
#: What installs moto's server.
DEMO_INSTALL = "pip install 'replicator[demo]'"


def require_moto() -> None:
    """Raise ``StartupCheckError`` (one line, naming the fix) when moto is not installed."""
    if importlib.util.find_spec("moto") is None:
        raise StartupCheckError(
            f"the demo runs on moto's server, and moto is not installed: {DEMO_INSTALL}"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child, before moto starts: end with the process that started it, even
    one killed outright (a test process past its timeout), instead of lingering.
    (Linux ties this to the thread that started the child: start servers from a
    thread that outlives them, as the main thread does.)"""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


class MotoServer:
    """moto's server (``replicator.dev.moto_server``) on a free loopback port, stopped on exit."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> MotoServer:
        require_moto()
        env = dict(os.environ, **LOCAL_CREDENTIALS)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "replicator.dev.moto_server",
             "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise StartupCheckError(
                    f"moto server on port {self.port} exited at start "
                    f"(code {self._process.returncode}): is moto[server] installed?"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise StartupCheckError(
                        f"moto server on port {self.port} did not answer within {timeout:g}s"
                    ) from None
                time.sleep(0.05)

    def reset(self) -> None:
        """Forget every table and stream (and free moto's memory)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
