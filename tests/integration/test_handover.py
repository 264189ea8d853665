"""The stream's start after a bootstrap copy: it applies only what was written after
the copy began, and reads nothing older when nothing was written during the copy; a
worker killed at any step of the hand-over leaves a start that replays no history.

The source's history before the copy is made to show if it were replayed: keys put
and then deleted ("gone-*", which the copy never sees, so no delete of them is ever
sent but by a replay), and keys put twice ("old-*": a replay would send the first
image). A proxy in front of the destination records every write.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from .conftest import (
    DEADLINE,
    DESTINATION_TABLE,
    SOURCE_TABLE,
    Proxy,
    ReplicatorProcess,
    Servers,
    create_pair,
    environment_for,
    fill_table,
    lease_rows,
    numbered_item,
    replicating,
    settings_for,
    wait_equal,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

KEYS = ["pk", "sk"]
HISTORY = 15
BULK = 300


class WriteLog(Proxy):
    """Records every request of every BatchWriteItem that reaches the destination:
    (kind, pk, the item's "v" or None)."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.writes: list[tuple[str, str, str | None]] = []

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        if request.headers.get("X-Amz-Target", "").endswith(".BatchWriteItem"):
            for requests in json.loads(body)["RequestItems"].values():
                for write in requests:
                    if "PutRequest" in write:
                        item = write["PutRequest"]["Item"]
                        self.writes.append(("put", item["pk"]["S"], item.get("v", {}).get("S")))
                    else:
                        key = write["DeleteRequest"]["Key"]
                        self.writes.append(("delete", key["pk"]["S"], None))
        return await self.pass_on(request, body)

    def replayed(self) -> list[tuple[str, str, str | None]]:
        """Writes that only a replay of the history before the copy sends."""
        return [write for write in self.writes
                if (write[1].startswith("gone-"))
                or (write[1].startswith("old-") and write[2] == "first")]


async def write_history(source: Any) -> None:
    """The history before the copy, then a pause, so that all of it is older than the
    copy's start by the stream's clock (whole seconds, and one more for safety)."""
    for index in range(HISTORY):
        key = {"pk": {"S": f"old-{index}"}, "sk": {"N": "0"}}
        await source.put_item(TableName=SOURCE_TABLE, Item={**key, "v": {"S": "first"}})
        await source.put_item(TableName=SOURCE_TABLE, Item={**key, "v": {"S": "second"}})
        gone = {"pk": {"S": f"gone-{index}"}, "sk": {"N": "0"}}
        await source.put_item(TableName=SOURCE_TABLE, Item={**gone, "v": {"S": "x"}})
        await source.delete_item(TableName=SOURCE_TABLE, Key=gone)
    await asyncio.sleep(2.5)  # the test's pacing: the history's seconds are over


async def write_new(source: Any, prefix: str, count: int) -> None:
    for index in range(count):
        await source.put_item(TableName=SOURCE_TABLE, Item={
            "pk": {"S": f"{prefix}-{index}"}, "sk": {"N": "0"}, "v": {"S": "new"}})


async def test_with_nothing_written_during_the_copy_the_stream_reads_only_what_follows(
    servers: Servers, source: Any, destination: Any,
) -> None:
    await create_pair(source, destination)
    await write_history(source)
    async with WriteLog(servers.destination.url).running() as log:
        settings = settings_for(servers, worker_id="copier", destination_endpoint=log.url)
        async with replicating(settings) as running:  # copies, then streams
            copy = running.replicator.copy
            assert copy is not None
            assert copy.progress.items_written == HISTORY  # the old-* items
            assert list(copy.handoff)  # the shard went on from its watcher's iterator
            await write_new(source, "new", 5)
            await running.until(lambda: running.stats.applied_total >= 5,
                                what="the five new writes to be applied")
            await running.wait_caught_up(running.now())
            assert running.stats.records_read == 5  # nothing older was read
            assert running.stats.records_skipped == 0
    assert log.replayed() == []
    await wait_equal(source, destination, KEYS)


STEPS: dict[str, Callable[[dict[str, Any]], bool] | None] = {
    "copy started": None,
    "copy progress": lambda line: line["items_written"] > 0,
    "stream handed over from the copy": None,
    "copy finished": None,
}


@pytest.mark.parametrize("step", list(STEPS))
async def test_a_worker_killed_at_a_step_of_the_hand_over_leaves_no_history_to_replay(
    servers: Servers, source: Any, destination: Any, step: str,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await create_pair(source, destination)
    rng = random.Random(5)
    await fill_table(source, [numbered_item(rng, i) for i in range(BULK)])
    await write_history(source)
    async with WriteLog(servers.destination.url).running() as log:
        # The copy is held to about 60 items a second, so that each step can be caught.
        env = environment_for(servers, destination_endpoint=log.url, copy_max_wcu=60,
                              progress_interval=0.2)
        first = spawn("first", {**env, "REPLICATOR_WORKER_ID": "first"})
        await first.wait_for_event(step, where=STEPS[step])
        first.send(signal.SIGKILL)
        assert await first.wait(within=30) == -signal.SIGKILL
        second = spawn("second", {**env, "REPLICATOR_WORKER_ID": "second"})
        await second.wait_for_event("shard started", within=DEADLINE)
        await write_new(source, "after", 5)
        try:
            await wait_equal(source, destination, KEYS, processes=[first, second])
        except AssertionError as exc:
            exc.add_note(f"writes that reached the destination: {log.writes}")
            raise

        async def checkpointed() -> bool:
            rows = await lease_rows(source)
            return bool(rows) and all(row["checkpoint"]["S"].isdigit() for row in rows)

        await wait_until(checkpointed, within=DEADLINE, processes=[second],
                         what="the shard to be checkpointed past the new writes")
        second.send(signal.SIGTERM)
        assert await second.wait(within=30) == 0
    assert log.replayed() == [], f"killed after {step!r}: history replayed"
    assert not [write for write in log.writes if write[0] == "delete"]
    await wait_equal(source, destination, KEYS)
    (destination_count,) = [
        (await destination.describe_table(TableName=DESTINATION_TABLE))["Table"]["ItemCount"]]
    assert destination_count == BULK + HISTORY + 5
