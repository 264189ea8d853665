"""The same ``python -m replicator`` command started three times on one machine, with
the default worker id and metrics port: three workers that share the shards, each
with a metrics endpoint of its own, all listed by ``replicator status``, standbys
included; a kill -9 of the one streaming, and another takes its shard over."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from replicator.commands.status import run_status
from replicator.config import DEFAULT_METRICS_PORT, METRICS_PORTS

from .conftest import (
    DEADLINE,
    SOURCE_TABLE,
    ReplicatorProcess,
    Servers,
    create_pair,
    environment_for,
    settings_for,
    wait_equal,
    wait_for_event,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
        text: str = answer.read().decode()
        return text


async def status_report(servers: Servers, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert await run_status(settings_for(servers), as_json=True) == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return report


async def test_the_same_command_three_times_gives_three_workers_that_share_and_fail_over(
    servers: Servers, source: Any, destination: Any, capsys: pytest.CaptureFixture[str],
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await create_pair(source, destination)
    # Exactly the same settings for all three: no worker id, no metrics port.
    env = environment_for(servers, metrics_port=None)
    assert "REPLICATOR_METRICS_PORT" not in env
    assert "REPLICATOR_WORKER_ID" not in env
    workers = [spawn(f"same-{n}", env) for n in range(3)]

    endpoints: dict[str, str] = {}
    for worker in workers:
        line = await worker.wait_for_event("metrics endpoint listening")
        endpoints[line["worker_id"]] = line["url"]
        assert DEFAULT_METRICS_PORT <= line["port"] < DEFAULT_METRICS_PORT + METRICS_PORTS
    assert len(endpoints) == 3  # three worker ids
    assert len({url.rsplit(":", 1)[1] for url in endpoints.values()}) == 3  # three ports
    for url in endpoints.values():
        assert "replicator_records_read" in await asyncio.to_thread(scrape, url)

    holder, started = await wait_for_event(workers, "shard started")
    await source.put_item(TableName=SOURCE_TABLE, Item={"pk": {"S": "a"}, "sk": {"N": "1"},
                                                         "v": {"S": "before the kill"}})
    await wait_equal(source, destination, ["pk", "sk"], processes=workers)

    # Every worker is listed, the two standbys with no lease, each with its address.
    async def all_listed() -> bool:
        report = await status_report(servers, capsys)
        return {w["worker_id"] for w in report["workers"]} == set(endpoints)

    await wait_until(all_listed, within=DEADLINE, what="status to list the three workers",
                     processes=workers)
    report = await status_report(servers, capsys)
    listed = {w["worker_id"]: w for w in report["workers"]}
    assert {w: entry["metrics"] for w, entry in listed.items()} == endpoints
    assert sorted(entry["leases"] for entry in listed.values()) == [0, 0, 1]
    assert listed[started["worker_id"]]["leases"] == 1
    assert report["fair_share"] == 1  # one shard (moto's), within one of it for all three

    # kill -9 of the worker that streams: another takes the shard over.
    holder.send(signal.SIGKILL)
    survivors = [worker for worker in workers if worker is not holder]
    taker, taken = await wait_for_event(
        survivors, "lease taken", where=lambda line: line["previous_owner"]
        == started["worker_id"])
    await source.put_item(TableName=SOURCE_TABLE, Item={"pk": {"S": "b"}, "sk": {"N": "1"},
                                                         "v": {"S": "after the kill"}})
    await wait_equal(source, destination, ["pk", "sk"], processes=survivors)

    async def dead_gone() -> bool:
        report = await status_report(servers, capsys)
        return started["worker_id"] not in {w["worker_id"] for w in report["workers"]}

    await wait_until(dead_gone, within=DEADLINE, what="status to drop the dead worker",
                     processes=survivors)
    report = await status_report(servers, capsys)
    listed = {w["worker_id"]: w for w in report["workers"]}
    assert listed[taken["worker_id"]]["leases"] == 1
    assert len(listed) == 2
    for worker in survivors:
        worker.send(signal.SIGTERM)
    for worker in survivors:
        assert await worker.wait(within=30) == 0
    assert taker in survivors


async def test_an_explicit_port_taken_is_still_an_error_and_copy_opens_no_endpoint(
    servers: Servers, source: Any, destination: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await create_pair(source, destination)
    first = spawn("first", environment_for(servers, metrics_port=None))
    line = await first.wait_for_event("metrics endpoint listening")
    second = spawn("second", environment_for(servers, metrics_port=line["port"]))
    assert await second.wait(within=DEADLINE) == 2
    message = second.stderr().strip()
    assert message.startswith(f"replicator: error: REPLICATOR_METRICS_PORT: cannot listen on "
                              f"127.0.0.1:{line['port']}"), message
    assert "\n" not in message
    copier = spawn("copier", environment_for(servers, metrics_port=None,
                                             task_name="another-task"), "copy")
    assert await copier.wait(within=DEADLINE) == 0
    assert copier.events("metrics endpoint listening") == []
