"""``replicator status`` against a running task's checkpoint table."""

from __future__ import annotations

import json
from typing import Any

import pytest

from replicator.commands.status import run_status
from replicator.errors import StartupCheckError
from tests.integration.conftest import (
    SOURCE_TABLE,
    Servers,
    create_pair,
    replicating,
    settings_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def report_in(out: str) -> dict[str, Any]:
    """The status report among what stdout caught: the replicator running in this
    process may log a line (a retried call, say) at the same time."""
    # Log lines are one-line JSON objects; the report is indented over several lines.
    text = "\n".join(line for line in out.splitlines() if not line.startswith('{"'))
    report = json.loads(text)
    assert isinstance(report, dict)
    return report


async def test_status_shows_the_shard_its_owner_and_checkpoint(
    servers: Servers, source: Any, destination: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stream_arn = await create_pair(source, destination)
    settings = settings_for(servers, worker_id="status-worker")
    async with replicating(settings) as running:
        # Written once the worker streams, so that it reads it (an item written before
        # would come by the bootstrap copy, and the stream would not read it).
        await source.put_item(TableName=SOURCE_TABLE,
                              Item={"pk": {"S": "a"}, "sk": {"N": "1"}})
        await running.until(lambda: running.stats.applied_total == 1,
                            what="the item to be applied")
        await running.wait_caught_up(since=running.now())
        consumer = next(iter(running.replicator.coordinator.consumers.values()))[0]
        await consumer.write_checkpoint()
        capsys.readouterr()

        assert await run_status(settings, as_json=True) == 0
        report = report_in(capsys.readouterr().out)
        assert report["task"] == settings.task_name
        assert report["stream_arn"] == stream_arn
        (shard,) = report["shards"]
        assert shard["owner"] == "status-worker"
        assert shard["state"] == "leased"
        assert shard["checkpoint"].isdigit()
        assert shard["parent_shard_id"] is None
        (worker,) = report["workers"]
        assert (worker["worker_id"], worker["leases"], worker["phase"]) == (
            "status-worker", 1, "replicating")
        assert worker["heartbeat_seconds_ago"] is not None
        assert report["fair_share"] == 1

        assert await run_status(settings, as_json=False) == 0
        table = capsys.readouterr().out
        assert shard["shard_id"] in table
        assert "status-worker: 1 leases, replicating, heartbeat" in table
        assert shard["checkpoint"] in table

    # Stopped gracefully: the lease is released, the row stays with its checkpoint.
    assert await run_status(settings, as_json=True) == 0
    (shard,) = report_in(capsys.readouterr().out)["shards"]
    assert shard["owner"] is None
    assert shard["state"] == "free"


async def test_status_of_a_task_that_never_ran(servers: Servers, source: Any,
                                               destination: Any) -> None:
    await create_pair(source, destination)
    with pytest.raises(StartupCheckError, match="checkpoint table never-ran does not exist"):
        await run_status(settings_for(servers, task_name="never-ran"), as_json=True)
