"""``replicator demo``: a live replication between two local moto servers, end to end.

Starts a source and a destination server, creates a streamed source table and
a destination table, writes a live workload to the source while the
replicator runs, prints progress, then compares the two tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from replicator.aws.clients import Endpoint, open_cloudwatch, open_dynamodb
from replicator.commands.run import Replicator
from replicator.commands.settings import load_settings
from replicator.dev.compare import compare_tables
from replicator.dev.local import LOCAL_CREDENTIALS, MotoServer, free_port, require_moto
from replicator.dev.workload import KEY_NAMES, create_table, random_item, run_workload
from replicator.logs import configure_logging

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import WriteRequestTypeDef

#: Operations a second the demo asks of the workload: about what one moto server serves
#: on a 2-core machine while the replicator reads it too.
DEFAULT_RATE = 40
SOURCE_TABLE = "demo-source"
DESTINATION_TABLE = "demo-destination"


def say(message: str) -> None:
    print(f"demo: {message}", flush=True)


async def run_demo(
    *, seconds: float = 8.0, rate: int = DEFAULT_RATE, keys: int = 400, seed_items: int = 500
) -> int:
    require_moto()
    for name, value in LOCAL_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    configure_logging("warning", "console")
    say("starting two moto servers (source region us-east-1, destination region eu-west-1)")
    with MotoServer() as source_server, MotoServer() as destination_server:
        say(f"source {source_server.url}, destination {destination_server.url}")
        source_endpoint = Endpoint("dynamodb", "us-east-1", source_server.url)
        destination_endpoint = Endpoint("dynamodb", "eu-west-1", destination_server.url)
        async with (
            open_dynamodb(source_endpoint, call_timeout=30) as source,
            open_dynamodb(destination_endpoint, call_timeout=30) as destination,
        ):
            await create_table(source, SOURCE_TABLE, stream=True)
            await create_table(destination, DESTINATION_TABLE, stream=False)
            say(f"created {SOURCE_TABLE} (stream NEW_AND_OLD_IMAGES) and {DESTINATION_TABLE}")
            await _seed(source, seed_items)
            say(f"wrote {seed_items} items to the source before replication starts: "
                "the replicator copies them first (bootstrap), then streams")
            settings = load_settings(
                {
                    "source_table": SOURCE_TABLE,
                    "source_region": "us-east-1",
                    "source_endpoint": source_server.url,
                    "destination_table": DESTINATION_TABLE,
                    "destination_region": "eu-west-1",
                    "destination_endpoint": destination_server.url,
                    "task_name": "replicator-demo",
                    "checkpoint_interval": 1.0,
                    "metrics_port": free_port(),
                    # CloudWatch too, into the source's moto server.
                    "cloudwatch_endpoint": source_server.url,
                    "cloudwatch_interval": 5.0,
                },
                env_file=None,
            )
            replicator = Replicator(settings)
            say(f"metrics: http://127.0.0.1:{settings.metrics_port}/metrics, health: /healthz, "
                "readiness: /readyz")
            async with asyncio.TaskGroup() as group:
                service = group.create_task(replicator.run())
                progress = group.create_task(_progress(replicator))
                started = time.monotonic()
                say(f"writing about {rate} operations/s to the source for {seconds:g}s "
                    "(puts, updates, deletes, batch writes; every attribute type)")
                result = await run_workload(
                    source, SOURCE_TABLE, seconds=seconds, rate=rate, keys=keys
                )
                finished = time.monotonic()
                if replicator.copy is not None:
                    copied = replicator.copy.progress
                    say(f"bootstrap copy: {copied.items_written} items in "
                        f"{copied.segments} segments")
                took = finished - started
                achieved = result.operations / took if took > 0 else 0.0
                slower = f" (asked for {rate}/s: the source server could not keep up)" \
                    if achieved < 0.8 * rate else ""
                say(f"workload done: {result.operations} operations ({counts(result.by_kind)}) "
                    f"in {took:.1f}s, {achieved:.0f}/s{slower}; waiting for the destination "
                    "to catch up")
                await _caught_up(replicator, finished, service)
                say(f"caught up {time.monotonic() - finished:.2f}s after the last write")
                replicator.stop()
                progress.cancel()
                code = await service
            stats = replicator.stats
            say(f"replicator read {stats.records_read} stream records, applied "
                f"{stats.applied_total} ({counts(stats.records_applied)}), wrote "
                f"{stats.checkpoints_written} checkpoints, exit code {code}")
            published = await _cloudwatch_datapoints(source_server.url, "replicator-demo")
            say(f"CloudWatch (moto) holds {published} RecordsProcessed data points of the task")
            diff = await compare_tables(
                source, SOURCE_TABLE, destination, DESTINATION_TABLE, KEY_NAMES
            )
    say(f"source and destination tables are {diff.summary()}")
    return 0 if diff.equal and code == 0 else 1


async def _cloudwatch_datapoints(url: str, task: str) -> int:
    """The task's RecordsProcessed data points: with the one dimension TaskName, as
    CloudWatch tells metrics apart (moto's GetMetricStatistics would add those of
    each destination, which have more dimensions)."""
    async with open_cloudwatch(Endpoint("cloudwatch", "us-east-1", url), call_timeout=30) as client:
        now = datetime.now(UTC)
        answer = await client.get_metric_data(
            MetricDataQueries=[{"Id": "published", "MetricStat": {
                "Metric": {"Namespace": task, "MetricName": "RecordsProcessed",
                           "Dimensions": [{"Name": "TaskName", "Value": task}]},
                "Period": 60, "Stat": "SampleCount"}}],
            StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=5),
        )
    return int(sum(sum(result.get("Values", [])) for result in answer["MetricDataResults"]))


async def _seed(client: DynamoDBClient, items: int) -> None:
    """Items the table holds before replication starts (keys apart from the workload's)."""
    rng = random.Random(1)
    for start in range(0, items, 25):
        batch: list[WriteRequestTypeDef] = [
            {"PutRequest": {"Item": random_item(
                rng, {"pk": {"S": f"seed-{n % 50}"}, "sk": {"N": str(n)}}
            )}}
            for n in range(start, min(items, start + 25))
        ]
        await client.batch_write_item(RequestItems={SOURCE_TABLE: batch})


async def _caught_up(replicator: Replicator, since: float, service: asyncio.Task[int]) -> None:
    deadline = since + 120
    while not replicator.caught_up_since(since):
        if service.done():
            return
        if time.monotonic() > deadline:
            raise TimeoutError("the replicator did not catch up within 120 s")
        await asyncio.sleep(0.05)


def counts(by_kind: Mapping[str, int]) -> str:
    """``{"put": 3, "delete": 1}`` as "3 put, 1 delete"."""
    return ", ".join(f"{count} {kind}" for kind, count in sorted(
        by_kind.items(), key=lambda entry: -entry[1]))


async def _progress(replicator: Replicator) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            await asyncio.sleep(1.0)
            stats = replicator.stats
            coordinator = replicator.coordinator
            if replicator.phase == "copying" and replicator.copy is not None:
                copied = replicator.copy.progress
                say(f"copying: {copied.items_written} items written, "
                    f"{copied.segments_done} of {copied.segments} segments done")
            elif coordinator is not None and stats.records_read == 0:
                say(f"streaming: {len(coordinator.held)} shards leased, no record read yet")
            elif coordinator is not None:
                say(f"applied {stats.applied_total:6d} of {stats.records_read:6d} records "
                    f"read, lag {stats.lag_seconds():.2f}s, queue {coordinator.queue_depth()}")
