"""What a user sees of the commands: ``status`` into a reader that stops early,
``verify``'s log lines, and ``make demo`` from end to end."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from replicator.dev.local import LOCAL_CREDENTIALS

from .conftest import (
    DESTINATION_TABLE,
    SOURCE_TABLE,
    TASK_NAME,
    ReplicatorProcess,
    Servers,
    create_pair,
    environment_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def command_environment(env: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("REPLICATOR_")}
    return {**base, **LOCAL_CREDENTIALS, **env}


async def test_status_into_a_reader_that_stops_early_exits_0_without_a_word(
    servers: Servers, source: Any, destination: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await create_pair(source, destination)
    env = environment_for(servers)
    worker = spawn("worker", env)
    await worker.wait_for_event("shard started")

    def status_then_close() -> subprocess.CompletedProcess[bytes]:
        # ``replicator status | head -0``: the reader is gone before the first line.
        process = subprocess.Popen([sys.executable, "-m", "replicator", "status"],
                                   env=command_environment(env), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        assert process.stdout is not None
        process.stdout.close()
        _, err = process.communicate(timeout=60)
        return subprocess.CompletedProcess(process.args, process.returncode, b"", err)

    done = await asyncio.to_thread(status_then_close)
    assert (done.returncode, done.stderr.decode()) == (0, "")


async def test_verify_logs_with_the_task_and_worker_on_every_line(
    servers: Servers, source: Any, destination: Any,
) -> None:
    await create_pair(source, destination)
    await source.put_item(TableName=SOURCE_TABLE, Item={"pk": {"S": "a"}, "sk": {"N": "1"}})
    env = environment_for(servers, log_level="info", worker_id="the-verifier")
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "replicator", "verify", "--repair"],
        env=command_environment(env), capture_output=True, text=True, timeout=120,
        check=False)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert any(line["event"] == "repaired; comparing again" for line in lines), done.stderr
    assert all((line.get("task"), line.get("worker_id")) == (TASK_NAME, "the-verifier")
               for line in lines), lines
    assert done.stdout.splitlines()[-1] == "after repair: equal: 1 items in each table"
    assert (await destination.get_item(TableName=DESTINATION_TABLE,
                                       Key={"pk": {"S": "a"}, "sk": {"N": "1"}}))["Item"]


@pytest.mark.timeout(240)
async def test_the_demo_writes_the_rate_it_announces_and_ends_with_equal_tables() -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "replicator", "demo", "--seconds", "3", "--rate", "20"],
        env=command_environment({}), capture_output=True, text=True, timeout=200,
        check=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "{'" not in out, out  # no Python reprs
    assert "': " not in out, out
    announced = re.search(r"writing about (\d+) operations/s", out)
    assert announced is not None, out
    assert announced.group(1) == "20"
    reached = re.search(r"workload done: (\d+) operations \(([^)]*)\) in ([\d.]+)s, (\d+)/s",
                        out)
    assert reached is not None, out
    rate = int(reached.group(4))
    # Either the rate announced was reached, or the demo says why not.
    assert rate >= 16 or "could not keep up" in out, out
    assert re.fullmatch(r"(\d+ \w+)(, \d+ \w+)*", reached.group(2)), reached.group(2)
    assert "copying:" in out or "bootstrap copy:" in out
    assert "applied 0 of 0" not in out
    assert "source and destination tables are equal" in out
