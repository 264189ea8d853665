"""Local endpoints: servers as subprocesses on 127.0.0.1 and a free port (moto's).

Used by ``replicator demo`` and by the integration tests. Each server has its
own state, so two of them stand for two regions or accounts. moto is not a
runtime dependency: it comes with the ``demo`` extra (and the ``dev`` one).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

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
    """In the child, before the server starts: end with the process that started it,
    even one killed outright (a test process past its timeout), instead of lingering.
    (Linux ties this to the thread that started the child: start servers from a
    thread that outlives them, as the main thread does.)"""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


class LocalServer:
    """A server process on a free loopback port, in a process group of its own: waited
    on until it answers, stopped (the whole group) on exit. Subclasses say how to start
    it (``command``) and how to tell it answers (``answers``)."""

    #: For messages.
    name = "local server"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._directory: tempfile.TemporaryDirectory[str] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def answers(self) -> bool:
        """Whether the server answers HTTP at all (an error status is an answer)."""
        try:
            with urllib.request.urlopen(self.url, timeout=1):
                return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def start(self, timeout: float = 30.0) -> Self:
        """Start it and wait until it answers, for at most ``timeout`` seconds."""
        # The working directory takes the server's output, and whatever it leaves behind.
        self._directory = tempfile.TemporaryDirectory(prefix="replicator-server-")
        output = Path(self._directory.name) / "server.log"
        with output.open("wb") as out:
            self._process = subprocess.Popen(
                self.command(), cwd=self._directory.name, env=self.environment(),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self._process.poll() is not None:
                code = self._process.returncode
                said = output.read_text(errors="replace").strip().splitlines()[-1:]
                self.stop()
                raise StartupCheckError(
                    f"{self.name} on port {self.port} exited at start (code {code})"
                    + (f": {said[0][:300]}" if said else "")
                )
            if time.monotonic() > deadline:
                self.stop()
                raise StartupCheckError(
                    f"{self.name} on port {self.port} did not answer within {timeout:g}s"
                )
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class MotoServer(LocalServer):
    """moto's server (``replicator.dev.moto_server``) on a free loopback port, stopped on exit."""

    name = "moto server"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "replicator.dev.moto_server",
                "-H", "127.0.0.1", "-p", str(self.port)]

    def environment(self) -> dict[str, str]:
        return dict(os.environ, **LOCAL_CREDENTIALS)

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def start(self, timeout: float = 30.0) -> Self:
        require_moto()
        return super().start(timeout)

    def reset(self) -> None:
        """Forget every table and stream (and free moto's memory)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass
