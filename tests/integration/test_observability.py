"""Metrics, health and readiness, CloudWatch, and credentials kept out of every output."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from replicator.aws.clients import open_client
from replicator.dev.local import free_port
from replicator.dev.workload import KEY_NAMES
from replicator.ops.endpoint import HEALTHZ_PATH, METRICS_PATH, READYZ_PATH
from replicator.topology import SINGLE_DESTINATION
from tests.integration.conftest import (
    DEADLINE,
    SOURCE_TABLE,
    TASK_NAME,
    Proxy,
    ReplicatorProcess,
    Servers,
    create_pair,
    environment_for,
    source_endpoint,
    wait_equal,
    wait_until,
)

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def key(n: int) -> dict[str, Any]:
    return {"pk": {"S": f"key-{n}"}, "sk": {"N": "1"}}


async def write_known_mix(source: Any) -> dict[str, int]:
    """20 inserts, then 10 updates of existing items and 5 deletes: one stream record each."""
    for n in range(20):
        await source.put_item(TableName=SOURCE_TABLE, Item={**key(n), "v": {"N": "0"}})
    for n in range(10):
        await source.update_item(
            TableName=SOURCE_TABLE, Key=key(n), UpdateExpression="SET v = :v",
            ExpressionAttributeValues={":v": {"N": "1"}},
        )
    for n in range(15, 20):
        await source.delete_item(TableName=SOURCE_TABLE, Key=key(n))
    return {"INSERT": 20, "MODIFY": 10, "REMOVE": 5}


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(
        url, timeout=aiohttp.ClientTimeout(total=10)
    ) as answer:
        return answer.status, await answer.text()


async def scrape(base: str) -> Samples:
    status, text = await get(base + METRICS_PATH)
    assert status == 200, text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The one sample of ``name`` whose labels include ``labels`` (None: there is none)."""
    found = [v for (n, ls), v in samples.items()
             if n == name and labels.items() <= dict(ls).items()]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


async def wait_for_sample(worker: ReplicatorProcess, base: str,
                          predicate: Callable[[Samples], bool], *, what: str) -> Samples:
    """Scrape until the metrics satisfy ``predicate``; returns that scrape."""
    found: Samples = {}

    async def shown() -> bool:
        found.clear()
        found.update(await scrape(base))
        return predicate(found)

    await wait_until(shown, within=DEADLINE, what=f"the metrics to show {what}",
                     processes=[worker])
    return found


async def readiness(worker: ReplicatorProcess, base: str, expected: int) -> dict[str, Any]:
    """Ask /readyz until it answers ``expected`` (a table probe has a 2 s timeout, which
    a loaded machine can miss once); returns that answer."""
    found: dict[str, Any] = {}

    async def answered() -> bool:
        status, body = await get(base + READYZ_PATH)
        found.clear()
        found.update(json.loads(body))
        return status == expected

    await wait_until(answered, within=DEADLINE, processes=[worker],
                     what=lambda: f"/readyz to answer {expected} (last: {found})")
    return found


@pytest.mark.timeout(600)
async def test_metrics_follow_the_replication(
    servers: Servers, source: Any, destination: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await create_pair(source, destination)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    worker = spawn("observed", environment_for(servers, metrics_port=port, worker_id="observed"))
    await worker.wait_for_event("shard started")
    assert worker.events("metrics endpoint listening")[0]["port"] == port

    before = await scrape(base)
    assert value(before, "replicator_leases_held", task=TASK_NAME, worker="observed") == 1
    assert value(before, "replicator_records_read_total") == 0

    written = await write_known_mix(source)
    await wait_equal(source, destination, KEY_NAMES, processes=[worker])
    total = sum(written.values())

    def all_applied(samples: Samples) -> bool:
        return all(value(samples, "replicator_records_applied_total", event=event) == count
                   for event, count in written.items())

    samples = await wait_for_sample(worker, base, all_applied, what="every write applied")
    assert value(samples, "replicator_records_read_total") == total
    assert value(samples, "replicator_apply_latency_seconds_count") == total
    mean_latency = value(samples, "replicator_apply_latency_seconds_sum") / total  # type: ignore[operator]
    # Seconds from the source write to the destination write: a sanity check of the
    # figure (a second or less here), not a bound of the replicator's.
    assert 0 <= mean_latency < DEADLINE
    assert value(samples, "replicator_bytes_applied_total") > 0  # type: ignore[operator]
    assert value(samples, "replicator_getrecords_calls_total") > 0  # type: ignore[operator]
    batches = value(samples, "replicator_batch_size_count")
    assert batches is not None
    # A batch writes the last record of each key it holds: a put and the update of
    # its item, read together after a stall, make one key of a batch.
    batched = value(samples, "replicator_batch_size_sum")
    assert batched is not None
    assert 0 < batches <= batched <= total
    assert value(samples, "replicator_leases_held") == 1
    assert value(samples, "replicator_queue_depth") == 0
    lags = [v for (n, _), v in samples.items() if n == "replicator_replication_lag_seconds"]
    assert len(lags) == 1  # one series: the one shard
    assert 0 <= lags[0] < DEADLINE  # a sanity check too
    # Caught up and everything applied: the lag falls to zero, as does the reader's.
    samples = await wait_for_sample(
        worker, base,
        lambda s: value(s, "replicator_replication_lag_seconds") == 0
        and value(s, "replicator_milliseconds_behind_latest") == 0
        and (value(s, "replicator_checkpoints_written_total") or 0) > 0,
        what="lag 0 and a checkpoint",
    )

    status, body = await get(base + HEALTHZ_PATH)
    assert status == 200, body
    assert json.loads(body)["healthy"] is True
    ready = await readiness(worker, base, 200)
    assert ready["phase"] == "replicating"
    assert ready["tables"] == {"source": "ok", "destination": "ok", "checkpoint": "ok"}
    assert ready["leases_held"] == 1

    worker.send(signal.SIGTERM)
    assert await worker.wait() == 0, worker.report()


class SwitchableProxy(Proxy):
    """A proxy that, while ``down``, holds every request without an answer: an endpoint
    that does not answer."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.down = False
        self.up = asyncio.Event()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        while self.down:
            self.up.clear()
            await self.up.wait()
        return await self.pass_on(request, body)

    def set_down(self, down: bool) -> None:
        self.down = down
        if not down:
            self.up.set()

    def closing(self) -> None:
        self.set_down(False)


@pytest.mark.timeout(600)
async def test_readyz_fails_while_the_destination_does_not_answer(
    servers: Servers, source: Any, destination: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await create_pair(source, destination)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with SwitchableProxy(servers.destination.url).running() as proxy:
        worker = spawn("probed", environment_for(
            servers, metrics_port=port, destination_endpoint=proxy.url))
        await worker.wait_for_event("shard started")

        assert (await readiness(worker, base, 200))["tables"]["destination"] == "ok"
        proxy.set_down(True)
        down = await readiness(worker, base, 503)
        print(f"\n/readyz while the destination does not answer: {down}")
        assert down["ready"] is False
        assert "DescribeTable: no answer within" in down["tables"]["destination"]
        assert down["tables"]["source"] == "ok"
        status, body = await get(base + HEALTHZ_PATH)  # alive all the same
        assert status == 200, body
        proxy.set_down(False)
        assert (await readiness(worker, base, 200))["tables"]["destination"] == "ok"

        worker.send(signal.SIGTERM)
        assert await worker.wait() == 0, worker.report()


@pytest.mark.timeout(300)
async def test_cloudwatch_metrics_arrive_under_the_task_name(
    servers: Servers, source: Any, destination: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await create_pair(source, destination)
    worker = spawn("published", environment_for(
        servers, cloudwatch=True, cloudwatch_endpoint=servers.source.url,
        cloudwatch_interval=0.5))
    await worker.wait_for_event("shard started")
    written = await write_known_mix(source)
    await wait_equal(source, destination, KEY_NAMES, processes=[worker])
    dimensions = [{"Name": "TaskName", "Value": TASK_NAME}]

    async with open_client(source_endpoint(servers, "cloudwatch"), call_timeout=30) as cloudwatch:
        async def total(metric: str, on: list[dict[str, str]] = dimensions) -> float:
            """The sum of the data of ``metric`` with exactly the dimensions ``on``, as
            CloudWatch tells metrics apart (moto's GetMetricStatistics would add the data
            that have more dimensions besides: the destinations' own)."""
            now = datetime.now(UTC)
            answer = await cloudwatch.get_metric_data(
                MetricDataQueries=[{"Id": "total", "MetricStat": {
                    "Metric": {"Namespace": TASK_NAME, "MetricName": metric, "Dimensions": on},
                    "Period": 60, "Stat": "Sum"}}],
                StartTime=now - timedelta(minutes=10), EndTime=now + timedelta(minutes=10),
            )
            (result,) = answer["MetricDataResults"]
            return float(sum(result["Values"]))

        async def all_published() -> bool:
            return await total("RecordsProcessed") == sum(written.values())

        await wait_until(all_published, within=DEADLINE, processes=[worker],
                         what="RecordsProcessed to add up")
        assert await total("RecordsRead") == sum(written.values())
        assert await total("BytesProcessed") > 0
        # The one destination's own figures: the source table and the destination's name.
        path = [*dimensions, {"Name": "SourceTable", "Value": SOURCE_TABLE},
                {"Name": "Destination", "Value": SINGLE_DESTINATION}]
        assert await total("RecordsProcessed", path) == sum(written.values())
        listed = await cloudwatch.list_metrics(Namespace=TASK_NAME)
        by_dimensions: dict[str, set[str]] = {}
        for metric in listed["Metrics"]:
            by_dimensions.setdefault(json.dumps(metric["Dimensions"]), set()).add(
                metric["MetricName"])
        assert set(by_dimensions) == {json.dumps(dimensions), json.dumps(path)}
        assert {"RecordsProcessed", "BytesProcessed", "ReplicationLag"} <= by_dimensions[
            json.dumps(dimensions)]
        assert by_dimensions[json.dumps(path)] == {"RecordsProcessed", "ReplicationLag"}

    worker.send(signal.SIGTERM)
    assert await worker.wait() == 0, worker.report()


MARKERS = {
    "AWS_ACCESS_KEY_ID": "AKIAMARKERKEYID7Q3Z",
    "AWS_SECRET_ACCESS_KEY": "marker-secret-Zx81qPq0vLsecretvalue",
    "AWS_SESSION_TOKEN": "marker-session-token-Fq9wT0kenvalue",
}


@pytest.mark.timeout(400)
async def test_no_credential_value_appears_in_logs_or_metrics(
    servers: Servers, source: Any, destination: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await create_pair(source, destination)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = environment_for(servers, metrics_port=port, log_level="debug", cloudwatch=True,
                          cloudwatch_endpoint=servers.source.url, cloudwatch_interval=0.5)
    worker = spawn("secret", {**env, **MARKERS})
    await worker.wait_for_event("shard started")
    await write_known_mix(source)
    await wait_equal(source, destination, KEY_NAMES, processes=[worker])
    outputs = [text for path in (METRICS_PATH, HEALTHZ_PATH, READYZ_PATH)
               for _, text in [await get(base + path)]]
    worker.send(signal.SIGTERM)
    assert await worker.wait() == 0, worker.report()
    outputs += [worker.stdout(), worker.stderr()]

    # And the other commands, including one that fails.
    for args, extra in ((["status", "--json"], {}),
                        (["run"], {"REPLICATOR_SOURCE_TABLE": "no-such-table"})):
        command = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "replicator", *args,
            env={**worker.environment, **env, **MARKERS, **extra},
            cwd=worker.stdout_path.parent,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(command.communicate(), DEADLINE)
        outputs += [out.decode(), err.decode()]
    assert "no-such-table" in outputs[-1]  # the failure was reported, on one line
    assert len(worker.log_lines()) > 5
    for name, marker in MARKERS.items():
        leaked = [text for text in outputs if marker in text]
        assert not leaked, f"{name}'s value appears in the output"
