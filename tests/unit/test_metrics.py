"""Lag figures, histograms, the Prometheus collector, the CloudWatch batches and the
endpoint's own checks."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC, datetime
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator
from prometheus_client.parser import text_string_to_metric_families

from replicator.errors import StartupCheckError, ThrottledError
from replicator.ops.cloudwatch import CloudWatchPublisher, Snapshot, metric_data
from replicator.ops.endpoint import LOOP_LAG_LIMIT, LoopMonitor, Readiness, StatusServer
from replicator.ops.metrics import LiveGauges, StatsCollector, registry_for, render
from replicator.records import LaneKey
from replicator.stats import Histogram, ShardReading, Stats, behind_latest, shard_lag
from replicator.stream.tracker import CheckpointTracker
from tests.clock import VirtualClock

pytestmark = pytest.mark.timeout(10)


def test_shard_lag_counts_from_the_oldest_record_not_applied() -> None:
    reading = ShardReading(last_read_created_at=990.0, caught_up=False)
    assert shard_lag(1000.0, 950.0, reading) == 50.0
    # Everything read is applied, but the reader has more to read: at least this far.
    assert shard_lag(1000.0, None, reading) == 10.0
    # At the head of the shard with nothing pending: no lag.
    assert shard_lag(1000.0, None, ShardReading(990.0, caught_up=True)) == 0.0
    assert shard_lag(1000.0, None, ShardReading()) == 0.0
    assert behind_latest(1000.0, reading) == 10.0
    assert behind_latest(1000.0, ShardReading(990.0, caught_up=True)) == 0.0


def test_the_lag_is_the_largest_of_the_open_shards() -> None:
    stats = Stats()
    for shard, created in (("a", 900.0), ("b", 980.0)):
        tracker = CheckpointTracker("TRIM_HORIZON")
        tracker.add("1" + shard.encode().hex(), created)
        stats.trackers[LaneKey("source", shard, "destination")] = tracker
        stats.readings[LaneKey("source", shard, "destination")] = ShardReading(
            created, caught_up=False)
    assert stats.shard_lags(1000.0) == {LaneKey("source", "a", "destination"): 100.0,
                                        LaneKey("source", "b", "destination"): 20.0}
    assert stats.destination_lags(1000.0) == {("source", "destination"): 100.0}
    assert stats.lag_seconds(1000.0) == 100.0
    assert Stats().lag_seconds(1000.0) == 0.0


def test_histogram_buckets_are_cumulative() -> None:
    histogram = Histogram((1.0, 5.0))
    for value in (0.5, 1.0, 3.0, 9.0):
        histogram.observe(value)
    histogram.observe(2.0, times=2)
    assert histogram.cumulative() == [(1.0, 2), (5.0, 5), (float("inf"), 6)]
    assert histogram.count == 6
    assert histogram.sum == 17.5


def test_the_collector_reports_stats_with_task_and_worker_labels() -> None:
    stats = Stats()
    stats.records_read = 7
    stats.records_applied.update({"INSERT": 4, "REMOVE": 2})
    stats.count_retry(ThrottledError("BatchWriteItem: slow down", operation="BatchWriteItem"))
    stats.apply_seconds.observe(0.3, times=6)
    tracker = CheckpointTracker("TRIM_HORIZON")
    stats.trackers[LaneKey("source", "shard-1", "destination")] = tracker
    stats.readings[LaneKey("source", "shard-1", "destination")] = ShardReading(caught_up=True)
    collector = StatsCollector(stats, task="t", worker="w",
                               gauges=lambda: LiveGauges(leases_held=3, queue_depth=9))
    text = render(registry_for(collector)).decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
    }
    base = (("task", "t"), ("worker", "w"))
    assert samples[("replicator_records_read_total", base)] == 7
    assert samples[("replicator_records_applied_total", (("event", "INSERT"), *base))] == 4
    assert samples[("replicator_throttles_total", (("operation", "BatchWriteItem"), *base))] == 1
    assert samples[("replicator_errors_total", (("kind", "ThrottledError"), *base))] == 1
    assert samples[("replicator_leases_held", base)] == 3
    assert samples[("replicator_queue_depth", base)] == 9
    lane = (("destination", "destination"), ("shard", "shard-1"), ("source", "source"))
    assert samples[("replicator_replication_lag_seconds", (*lane, *base))] == 0
    path = (("destination", "destination"), ("source", "source"))
    assert samples[("replicator_destination_lag_seconds", (*path, *base))] == 0
    assert samples[("replicator_apply_latency_seconds_count", base)] == 6
    assert samples[("replicator_apply_latency_seconds_bucket", (("le", "0.5"), *base))] == 6
    assert samples[("replicator_apply_latency_seconds_bucket", (("le", "0.25"), *base))] == 0
    assert all(dict(labels).get("task") == "t" for _, labels in samples)


def test_cloudwatch_data_are_increases_with_the_task_dimension() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    data = metric_data("task-1", Snapshot(records_applied=10, bytes_applied=100),
                       Snapshot(records_applied=25, bytes_applied=400, records_read=30),
                       lag_seconds=1.5, leases_held=2, at=at)
    by_name = {datum["MetricName"]: datum for datum in data}
    assert by_name["RecordsProcessed"]["Value"] == 15
    assert by_name["BytesProcessed"] == {
        "MetricName": "BytesProcessed", "Dimensions": [{"Name": "TaskName", "Value": "task-1"}],
        "Timestamp": at, "Value": 300.0, "Unit": "Bytes"}
    assert by_name["RecordsRead"]["Value"] == 30
    assert by_name["ReplicationLag"]["Value"] == 1.5
    assert by_name["LeasesHeld"]["Value"] == 2


#: Two sources and three destinations: orders to eu and ap, customers to backup.
PATHS = (("orders", "eu"), ("orders", "ap"), ("customers", "backup"))


def path_dimensions(task: str, source: str, destination: str) -> list[dict[str, str]]:
    return [{"Name": "TaskName", "Value": task}, {"Name": "SourceTable", "Value": source},
            {"Name": "Destination", "Value": destination}]


def topology_stats(now: float) -> Stats:
    """Stats of two sources and three destinations: two shards of orders, one of
    customers; ap is 100 s behind on one of them, backup 30 s, eu caught up."""
    stats = Stats()
    behind = {("orders", "ap", "o-1"): 100.0, ("customers", "backup", "c-1"): 30.0}
    for source, destination in PATHS:
        for shard in (("o-1", "o-2") if source == "orders" else ("c-1",)):
            key = LaneKey(source, shard, destination)
            tracker = CheckpointTracker("TRIM_HORIZON")
            seconds = behind.get((source, destination, shard))
            if seconds is not None:
                tracker.add("1" + shard.encode().hex(), now - seconds)
            stats.trackers[key] = tracker
            stats.readings[key] = ShardReading(caught_up=seconds is None)
    return stats


def by_metric_and_dimensions(
    data: list[dict[str, Any]],
) -> dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]]:
    keyed = {(datum["MetricName"], tuple((d["Name"], d["Value"]) for d in datum["Dimensions"])):
             datum for datum in data}
    assert len(keyed) == len(data), "one datum per metric and dimensions"
    return keyed


def test_cloudwatch_data_of_each_destination_have_its_source_and_name() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    stats = topology_stats(1000.0)
    before = Snapshot(records_applied=10, applied_by_destination={
        ("orders", "eu"): 4, ("orders", "ap"): 6})
    stats.records_applied["INSERT"] += 25
    stats.applied_by_destination.update(
        {("orders", "eu"): 12, ("orders", "ap"): 6, ("customers", "backup"): 7})
    data = metric_data("task-1", before, Snapshot.of(stats), lag_seconds=stats.lag_seconds(1000.0),
                       leases_held=3, at=at, destination_lags=stats.destination_lags(1000.0))
    keyed = by_metric_and_dimensions(data)
    task = (("TaskName", "task-1"),)
    # The task's data are as before: one dimension, every destination's records.
    assert [name for name, dimensions in keyed if dimensions == task] == [
        "RecordsProcessed", "BytesProcessed", "RecordsRead", "Errors", "CopyItemsWritten",
        "ReplicationLag", "LeasesHeld"]
    assert keyed[("RecordsProcessed", task)]["Value"] == 15
    assert keyed[("ReplicationLag", task)]["Value"] == 100
    expected = {
        ("orders", "eu"): (0.0, 8.0), ("orders", "ap"): (100.0, 0.0),
        ("customers", "backup"): (30.0, 7.0),
    }
    for (source, destination), (lag, applied) in expected.items():
        dimensions = path_dimensions("task-1", source, destination)
        on = tuple((d["Name"], d["Value"]) for d in dimensions)
        assert keyed[("ReplicationLag", on)] == {
            "MetricName": "ReplicationLag", "Dimensions": dimensions, "Timestamp": at,
            "Value": lag, "Unit": "Seconds"}
        assert keyed[("RecordsProcessed", on)] == {
            "MetricName": "RecordsProcessed", "Dimensions": dimensions, "Timestamp": at,
            "Value": applied, "Unit": "Count"}
    assert len(data) == 7 + 2 * len(PATHS)
    assert all(len(datum["Dimensions"]) <= 30 for datum in data)  # CloudWatch's limit


def test_cloudwatch_data_of_a_destination_without_open_shards_are_its_records() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    now = Snapshot(applied_by_destination={("orders", "eu"): 5, ("", ""): 2})
    data = metric_data("task-1", Snapshot(), now, lag_seconds=0.0, leases_held=0, at=at,
                       destination_lags={})
    per_path = [datum for datum in data if len(datum["Dimensions"]) > 1]
    # No lag without open shards; the path without names (Stats' default) is left out:
    # CloudWatch refuses an empty dimension value.
    assert [(d["MetricName"], d["Value"]) for d in per_path] == [("RecordsProcessed", 5.0)]
    assert per_path[0]["Dimensions"] == path_dimensions("task-1", "orders", "eu")
    # Without destination lags, as before: the task's data alone.
    assert len(metric_data("task-1", Snapshot(), Snapshot(), lag_seconds=0.0, leases_held=0,
                           at=at)) == 7


def test_cloudwatch_data_of_every_destination_are_a_valid_put_metric_data() -> None:
    stats = topology_stats(1000.0)
    stats.applied_by_destination.update({path: 1 for path in PATHS})
    stats.applied_by_destination[("", "")] += 1  # left out, not sent empty
    data = metric_data("task-1", Snapshot(), Snapshot.of(stats), lag_seconds=1.0,
                       leases_held=1, at=datetime(2026, 1, 1, tzinfo=UTC),
                       destination_lags=stats.destination_lags(1000.0))
    shape = botocore.session.get_session().get_service_model("cloudwatch").operation_model(
        "PutMetricData").input_shape
    assert shape is not None
    report = ParamValidator().validate({"Namespace": "task-1", "MetricData": data}, shape)
    assert not report.has_errors(), report.generate_report()


class FlakySink:
    def __init__(self) -> None:
        self.fail = True
        self.sent: list[tuple[str, list[dict[str, Any]]]] = []

    async def put_metric_data(self, namespace: str, data: list[dict[str, Any]]) -> None:
        if self.fail:
            raise ThrottledError("PutMetricData: Throttling", operation="PutMetricData")
        self.sent.append((namespace, data))


async def test_a_failed_cloudwatch_batch_is_carried_by_the_next() -> None:
    stats, sink = Stats(), FlakySink()
    publisher = CloudWatchPublisher(sink, stats, task="task-1", interval=60,
                                    leases_held=lambda: 1, clock=VirtualClock())
    stats.records_applied["INSERT"] += 5
    await publisher.publish()  # fails: logged, nothing lost
    assert sink.sent == []
    assert stats.throttles["PutMetricData"] == 1
    sink.fail = False
    stats.records_applied["MODIFY"] += 2
    await publisher.publish()
    stats.records_applied["MODIFY"] += 1
    await publisher.publish()
    processed = [next(d["Value"] for d in data if d["MetricName"] == "RecordsProcessed")
                 for _, data in sink.sent]
    assert processed == [7, 1]
    assert {namespace for namespace, _ in sink.sent} == {"task-1"}


async def test_each_cloudwatch_batch_has_every_destinations_increase_and_lag() -> None:
    stats, sink = topology_stats(time.time()), FlakySink()
    publisher = CloudWatchPublisher(sink, stats, task="task-1", interval=60,
                                    leases_held=lambda: 3, clock=VirtualClock())
    sink.fail = False
    applied = [{("orders", "eu"): 5, ("orders", "ap"): 1, ("customers", "backup"): 2},
               {("orders", "eu"): 3, ("customers", "backup"): 4}]
    for increase in applied:
        stats.applied_by_destination.update(increase)
        stats.records_applied["INSERT"] += sum(increase.values())
        await publisher.publish()
    sink.fail = True
    stats.applied_by_destination[("orders", "ap")] += 9
    await publisher.publish()  # fails: carried by the next
    sink.fail = False
    await publisher.publish()
    applied.append({("orders", "ap"): 9})
    for (namespace, data), increase in zip(sink.sent, applied, strict=True):
        assert namespace == "task-1"
        keyed = by_metric_and_dimensions(data)
        for source, destination in PATHS:
            on = tuple((d["Name"], d["Value"])
                       for d in path_dimensions("task-1", source, destination))
            assert keyed[("RecordsProcessed", on)]["Value"] == increase.get(
                (source, destination), 0)
            lag = keyed[("ReplicationLag", on)]["Value"]
            if (source, destination) == ("orders", "eu"):
                assert lag == 0
            else:
                expected = 100 if destination == "ap" else 30
                assert expected <= lag < expected + 60
        task_lag = keyed[("ReplicationLag", (("TaskName", "task-1"),))]["Value"]
        assert 100 <= task_lag < 160

def test_a_stalled_loop_is_unhealthy() -> None:
    monitor = LoopMonitor(interval=0.5)
    healthy, details = monitor.healthy(monitor.beat + 1.0)
    assert healthy
    assert details["loop_lag_seconds"] == 0.5
    healthy, details = monitor.healthy(monitor.beat + 0.5 + LOOP_LAG_LIMIT + 1)
    assert not healthy


async def test_a_busy_metrics_port_is_a_one_line_startup_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def ready() -> Readiness:
            return Readiness(True)

        server = StatusServer(metrics=lambda: b"", metrics_content_type="text/plain",
                              readiness=ready, monitor=LoopMonitor())
        with pytest.raises(StartupCheckError) as caught:
            await server.start("127.0.0.1", port)
    message = str(caught.value)
    assert "\n" not in message
    assert f"REPLICATOR_METRICS_PORT: cannot listen on 127.0.0.1:{port}" in message
    assert "set 0" in message
    await asyncio.sleep(0)
