"""``python -m replicator.dev.workload``, compose's set-up step and workload generator,
against the test's moto servers: it creates the streamed source table and a
destination keyed the same, writes, and runs again on tables that exist."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from replicator.config import ENV_PREFIX
from replicator.dev import workload

from .conftest import (
    DEADLINE,
    DESTINATION_REGION,
    DESTINATION_TABLE,
    SOURCE_REGION,
    SOURCE_TABLE,
    Servers,
    stream_records,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def command(servers: Servers, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "replicator.dev.workload",
        "--endpoint", servers.source.url, "--region", SOURCE_REGION, "--table", SOURCE_TABLE,
        "--destination-endpoint", servers.destination.url,
        "--destination-region", DESTINATION_REGION, "--destination-table", DESTINATION_TABLE,
        *extra,
    ]


def environment() -> dict[str, str]:
    # No AWS credentials: with every table on a local endpoint the generator needs none.
    return {k: v for k, v in os.environ.items()
            if not k.startswith((ENV_PREFIX, "AWS_"))}


def run(servers: Servers, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(servers, *extra), env=environment(), capture_output=True,
                          text=True, timeout=DEADLINE, check=False)


def keys_of(description: dict[str, Any]) -> list[tuple[str, str, str]]:
    types = {a["AttributeName"]: a["AttributeType"] for a in description["AttributeDefinitions"]}
    return [(k["AttributeName"], k["KeyType"], types[k["AttributeName"]])
            for k in description["KeySchema"]]


async def test_creates_both_tables_then_writes(
    servers: Servers, source: Any, destination: Any, streams: Any
) -> None:
    created = await asyncio.to_thread(run, servers, "--create-only")
    assert created.returncode == 0, created.stderr
    assert f"source table {SOURCE_TABLE} created" in created.stdout
    assert f"destination table {DESTINATION_TABLE} created" in created.stdout
    source_table = (await source.describe_table(TableName=SOURCE_TABLE))["Table"]
    destination_table = (await destination.describe_table(TableName=DESTINATION_TABLE))["Table"]
    assert source_table["StreamSpecification"] == {
        "StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert keys_of(destination_table) == keys_of(source_table)
    assert (await source.scan(TableName=SOURCE_TABLE))["Count"] == 0

    wrote = await asyncio.to_thread(run, servers, "--operations", "60", "--rate", "500")
    assert wrote.returncode == 0, wrote.stderr
    assert f"source table {SOURCE_TABLE} exists" in wrote.stdout
    assert "wrote 60 operations" in wrote.stdout
    assert (await source.scan(TableName=SOURCE_TABLE))["Count"] > 0
    assert await stream_records(streams, source_table["LatestStreamArn"])
    assert (await destination.scan(TableName=DESTINATION_TABLE))["Count"] == 0


async def test_writes_until_sigterm(servers: Servers, source: Any) -> None:
    process = await asyncio.create_subprocess_exec(
        *command(servers, "--rate", "100"), env=environment(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(DEADLINE):
            while b"writing about" not in await process.stdout.readline():
                pass

        async def written() -> bool:
            return bool((await source.scan(TableName=SOURCE_TABLE, Select="COUNT"))["Count"])

        await wait_until(written, within=DEADLINE, what="the generator's first writes")
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(DEADLINE):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    assert b"stopped" in out
    assert (await source.scan(TableName=SOURCE_TABLE))["Count"] > 0


def test_operations_and_seconds_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--region", "us-east-1", "--table", "t"]
    assert workload.parser().parse_args([*base, "--seconds", "5"]).seconds == 5.0
    with pytest.raises(SystemExit):
        workload.parser().parse_args([*base, "--seconds", "5", "--operations", "9"])
    assert "not allowed with" in capsys.readouterr().err
