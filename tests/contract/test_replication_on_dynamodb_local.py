"""One whole replication on AWS's DynamoDB Local instead of moto: ``python -m
replicator`` copies the items already there, applies the writes made while it streams,
is killed with SIGKILL, and a second worker picks up from the checkpoint the first
one left, applying what was written meanwhile. The tables end equal."""

from __future__ import annotations

import random
import signal
from collections.abc import Callable
from typing import Any

import pytest

from replicator.config import env_name
from replicator.dev.workload import KEY_NAMES, random_item
from replicator.records import Item
from tests.dynamodb_local import DynamoDBLocal
from tests.integration.conftest import (
    DEADLINE,
    FAST,
    ReplicatorProcess,
    _clean_environment,
    compare,
    lease_rows,
    settled,
    spawn,
    wait_equal,
    wait_until,
)

from .conftest import ClientPool, create_table, fresh_name

#: One event loop for the session, so that its clients are opened once.
pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.integration,
              pytest.mark.dynamodb_local]

#: The integration tier's fixtures, used as they are.
__all__ = ["_clean_environment", "spawn"]


def key(index: int) -> Item:
    return {"pk": {"S": f"user-{index % 40:03d}"}, "sk": {"N": str(index)}}


class Tables:
    """The source, destination and checkpoint tables of one task on DynamoDB Local."""

    def __init__(self, client: Any, url: str) -> None:
        self.client = client
        self.url = url
        self.source = fresh_name("source")
        self.destination = fresh_name("destination")
        self.task = fresh_name("task")  # the checkpoint table is named after the task
        self.rng = random.Random(5)

    def environment(self, worker_id: str) -> dict[str, str]:
        values: dict[str, Any] = {
            **FAST,
            "source_table": self.source, "source_region": "us-east-1",
            "source_endpoint": self.url,
            "destination_table": self.destination, "destination_region": "eu-west-1",
            "destination_endpoint": self.url,
            "task_name": self.task, "worker_id": worker_id,
            "log_level": "info", "log_format": "json",
        }
        return {env_name(name): str(value) for name, value in values.items()}

    async def put(self, indices: range, *, rich: bool = False) -> None:
        for start in range(0, len(indices), 25):
            requests: list[dict[str, Any]] = [
                {"PutRequest": {"Item": random_item(self.rng, key(i)) if rich
                                else {**key(i), "v": {"N": str(i)}}}}
                for i in indices[start:start + 25]
            ]
            while requests:
                response = await self.client.batch_write_item(
                    RequestItems={self.source: requests})
                requests = response.get("UnprocessedItems", {}).get(self.source, [])

    async def update(self, indices: range, value: str) -> None:
        for i in indices:
            await self.client.update_item(
                TableName=self.source, Key=key(i), UpdateExpression="SET v = :v, w = :w",
                ExpressionAttributeValues={":v": {"S": value}, ":w": {"N": str(i)}})

    async def delete(self, indices: range) -> None:
        for i in indices:
            await self.client.delete_item(TableName=self.source, Key=key(i))

    async def equal(self, processes: list[ReplicatorProcess]) -> int:
        diff = await wait_equal(self.client, self.client, KEY_NAMES, within=DEADLINE,
                                source_table=self.source, destination_table=self.destination,
                                processes=processes)
        return diff.source_items

    async def checkpoint(self) -> str:
        (row,) = await lease_rows(self.client, self.task)
        checkpoint: str = row["checkpoint"]["S"]
        return checkpoint


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_copy_stream_sigkill_and_restart_on_dynamodb_local(
    dynamodb_local: DynamoDBLocal, client_pool: ClientPool,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    client = await client_pool.client("dynamodb", dynamodb_local.url)
    tables = Tables(client, dynamodb_local.url)
    await create_table(client, tables.source, {"pk": "S", "sk": "N"},
                       stream="NEW_AND_OLD_IMAGES")
    await create_table(client, tables.destination, {"pk": "S", "sk": "N"})
    # Before the start: copied by the bootstrap, not streamed. A tenth carry every type.
    await tables.put(range(0, 300))
    await tables.put(range(0, 300, 10), rich=True)

    first = spawn("first", tables.environment("worker-one"))
    copied = await first.wait_for_event("copy finished")
    assert copied["items_written"] == 300
    assert await tables.equal([first]) == 300

    # While it streams: new items, changed ones (by UpdateItem), deleted ones.
    await tables.put(range(300, 360))
    await tables.update(range(0, 40), "streamed")
    await tables.delete(range(40, 60))
    assert await tables.equal([first]) == 340

    # Killed once its checkpoint holds a sequence number: a restart resumes after it.
    await wait_until(lambda: _is_sequence_number(tables), within=DEADLINE, processes=[first],
                     what="the first worker to checkpoint a sequence number")
    first.send(signal.SIGKILL)
    assert await first.wait() == -signal.SIGKILL
    (row,) = await settled(lambda: lease_rows(client, tables.task))
    assert row["lease_owner"] == {"S": "worker-one"}  # a dead worker releases nothing
    killed_at = row["checkpoint"]["S"]

    # Written while no worker runs, then by the time the second one has taken over.
    await tables.put(range(360, 400), rich=True)
    await tables.update(range(100, 130), "while dead")
    await tables.delete(range(130, 140))
    second = spawn("second", tables.environment("worker-two"))
    taken = await second.wait_for_event("lease taken")
    assert taken["previous_owner"] == "worker-one"  # taken over once the lease expired
    assert taken["checkpoint"] == killed_at  # resumed from the checkpoint, no copy again
    await tables.put(range(400, 420))
    await tables.delete(range(0, 5))
    assert await tables.equal([second]) == 340 + 40 - 10 + 20 - 5

    second.send(signal.SIGTERM)
    assert await second.wait() == 0, second.report()
    assert second.events("copy started") == []
    (row,) = await lease_rows(client, tables.task)
    assert "lease_owner" not in row  # released at the graceful stop
    diff = await compare(client, client, KEY_NAMES, source_table=tables.source,
                         destination_table=tables.destination)
    assert diff.equal, diff.summary()


async def _is_sequence_number(tables: Tables) -> bool:
    return (await tables.checkpoint()).isdigit()
