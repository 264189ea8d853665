"""Prometheus metrics: a collector that reads ``Stats`` when scraped.

Nothing on the hot path touches prometheus-client: the replicator counts in
``Stats``, and ``StatsCollector`` turns those counts into metric families at
scrape time. Every family carries the labels ``task`` and ``worker``; the
per-shard lag gauges add ``shard``, so cardinality stays at one series per
open shard.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from replicator.stats import Histogram, Stats, behind_latest

__all__ = ["CONTENT_TYPE_LATEST", "LiveGauges", "StatsCollector", "registry_for", "render"]


@dataclass(frozen=True, slots=True)
class LiveGauges:
    """What the running parts report at scrape time."""

    leases_held: int = 0
    queue_depth: int = 0


class StatsCollector(Collector):
    def __init__(self, stats: Stats, *, task: str, worker: str,
                 gauges: Callable[[], LiveGauges]) -> None:
        self._stats = stats
        self._labels = {"task": task, "worker": worker}
        self._gauges = gauges

    def collect(self) -> Iterator[Metric]:
        stats, base = self._stats, self._labels
        names, values = list(base), list(base.values())

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=names)
            family.add_metric(values, value)
            return family

        def counter_by(name: str, doc: str, label: str,
                       counts: dict[str, int]) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=[*names, label])
            for key, count in sorted(counts.items()):
                family.add_metric([*values, key], count)
            return family

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=names)
            family.add_metric(values, value)
            return family

        def histogram(name: str, doc: str, observed: Histogram) -> HistogramMetricFamily:
            family = HistogramMetricFamily(name, doc, labels=names)
            family.add_metric(
                values,
                [(_bound(bound), count) for bound, count in observed.cumulative()],
                observed.sum,
            )
            return family

        yield counter("replicator_records_read", "Stream records read.", stats.records_read)
        yield counter_by("replicator_records_applied",
                         "Stream records applied to the destination, by event type.",
                         "event", dict(stats.records_applied))
        yield counter("replicator_bytes_applied",
                      "Bytes of stream records applied (the records' SizeBytes).",
                      stats.bytes_applied)
        yield counter("replicator_write_retries",
                      "BatchWriteItem calls sent again for their UnprocessedItems.",
                      stats.unprocessed_retries)
        yield counter_by("replicator_retries", "AWS calls retried, by operation.",
                         "operation", dict(stats.retries))
        yield counter_by("replicator_throttles", "Throttled AWS calls, by operation.",
                         "operation", dict(stats.throttles))
        yield counter("replicator_getrecords_calls", "GetRecords calls answered.",
                      stats.get_records_calls)
        yield counter("replicator_checkpoints_written", "Checkpoints written.",
                      stats.checkpoints_written)
        yield counter_by("replicator_errors", "Errors met, by kind (retried or fatal).",
                         "kind", dict(stats.errors))
        yield counter("replicator_trimmed_records",
                      "Times records were found trimmed from the stream before being applied.",
                      stats.trimmed_events)
        yield counter("replicator_poison_records", "Records the destination refused.",
                      stats.poison_records)
        yield counter("replicator_copy_items_written",
                      "Items written to the destination by the bootstrap copy.",
                      stats.copy_items_written)

        live = self._gauges()
        yield gauge("replicator_leases_held", "Shard leases this worker holds.",
                    live.leases_held)
        yield gauge("replicator_queue_depth", "Records queued for the writers.",
                    live.queue_depth)

        now = time.time()
        lag = GaugeMetricFamily(
            "replicator_replication_lag_seconds",
            "How far the destination runs behind the source: 0 when the shard is caught "
            "up and everything read is applied, else now minus the creation time of the "
            "oldest record not yet applied.",
            labels=[*names, "source", "destination", "shard"],
        )
        behind = GaugeMetricFamily(
            "replicator_milliseconds_behind_latest",
            "How far the shard's reader is behind the newest record of the shard.",
            labels=[*names, "source", "shard"],
        )
        shown: set[tuple[str, str]] = set()
        for key, seconds in sorted(stats.shard_lags(now).items()):
            lag.add_metric([*values, key.source, key.destination, key.shard_id], seconds)
            reading = stats.readings.get(key)
            if reading is not None and (key.source, key.shard_id) not in shown:
                shown.add((key.source, key.shard_id))
                behind.add_metric([*values, key.source, key.shard_id],
                                  1000.0 * behind_latest(now, reading))
        yield lag
        yield behind
        def by_path(family: type[GaugeMetricFamily] | type[CounterMetricFamily],
                    name: str, doc: str, figures: Mapping[tuple[str, str], float],
                    ) -> GaugeMetricFamily | CounterMetricFamily:
            """One series per (source table, destination)."""
            made = family(name, doc, labels=[*names, "source", "destination"])
            for (source, destination), figure in sorted(figures.items()):
                made.add_metric([*values, source, destination], figure)
            return made

        yield by_path(GaugeMetricFamily, "replicator_destination_lag_seconds",
                      "The replication lag of each destination: the largest of its shards'.",
                      stats.destination_lags(now))
        yield by_path(CounterMetricFamily, "replicator_destination_records_applied",
                      "Stream records applied, by source table and destination.",
                      stats.applied_by_destination)
        for outcome, name, doc in _RULE_OUTCOMES:
            yield by_path(CounterMetricFamily, name, doc, {
                (source, destination): count
                for (source, destination, counted), count in stats.rule_outcomes.items()
                if counted == outcome})
        yield by_path(CounterMetricFamily, "replicator_records_dead_lettered",
                      "Records refused for good and stored in the dead-letter table, by "
                      "source table and destination.", stats.dead_lettered)
        yield by_path(CounterMetricFamily, "replicator_write_cap_wait_seconds",
                      "Seconds the stream's writes to a destination waited for its write cap "
                      "(max_wcu), by source table and destination.",
                      {path: cap.waited for path, cap in stats.write_caps.items()})
        yield gauge("replicator_dead_letters", "Records in the task's dead-letter table "
                    "(counted at start-up, then added to).", stats.dead_letters_stored)
        yield counter("replicator_destinations_detached",
                      "Times a shard's reader went on without a destination that fell "
                      "behind (it then catches up from its own checkpoint).",
                      stats.lanes_detached)

        yield histogram("replicator_getrecords_latency_seconds", "GetRecords call latency.",
                        stats.get_records_seconds)
        yield histogram("replicator_batch_size", "Keys per BatchWriteItem call.",
                        stats.batch_sizes)
        yield histogram("replicator_apply_latency_seconds",
                        "From a record's source write (its creation time, to the second) "
                        "to its write to the destination.",
                        stats.apply_seconds)


#: The rules' outcomes (``Stats.rule_outcomes``) and their counters.
_RULE_OUTCOMES = (
    ("filtered", "replicator_records_filtered",
     "Stream records a destination's filter does not select (not written)."),
    ("transformed", "replicator_records_transformed",
     "Stream records written as a destination's transform returned them."),
    ("transformed_away", "replicator_records_transformed_away",
     "Stream records a destination's transform returned None for (not written)."),
    ("ttl_delete", "replicator_ttl_deletes_skipped",
     "Time-to-live deletes not applied (skip_ttl_deletes): the destination keeps the item."),
)


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value))


def registry_for(collector: StatsCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format, for GET /metrics."""
    return generate_latest(registry)
