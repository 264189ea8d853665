"""Fan-out: one backlog drained into three destinations against the same backlog into one.

A source table on a local moto server gets ``--records`` stream records
(default 20,000: inserts, UpdateItem updates, puts over live items, deletes;
see ``stream_bench.fill_backlog``), built once. Each round then drains that
backlog from TRIM_HORIZON with ``python -m replicator`` and a topology file
(``REPLICATOR_CONFIG``), in alternating order:

* one destination: the source into a fresh table on a second moto server
  (eu-west-1);
* three destinations: the source into fresh tables on three moto servers
  (eu-west-1, us-west-2, ap-southeast-2), one reader per shard feeding them all.

Each drain runs under a new task name (a fresh checkpoint table), with the
replicator's defaults except ``bootstrap=never``, ``progress_interval=0.25``
and ``call_timeout`` 60 s (``--call-timeout``, as in drain.py). The source's
streams endpoint is a counting proxy (``StreamsCounter``): it counts the
GetRecords calls, and those that returned records (the reads of the backlog), until
the drain ends; the empty polls at the head of the shard follow the drain's length.

Records/s is the backlog's records over the span from "replication starting" to
the progress line counting every record applied at every destination (its
``records_applied`` counts one per record and destination); CPU seconds per 10,000
records and peak RSS over the same span, read from /proc. Each destination's item
count is checked after every drain. Medians of the rounds are compared.

    .venv/bin/python bench/fanout.py [--records N] [--rounds R]

Only 127.0.0.1: four moto servers and one proxy on free ports.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from fast_scan import Forwarder
from harness import (
    DESTINATION,
    SOURCE,
    Check,
    PerRecord,
    Product,
    at_least,
    aws_client,
    common_arguments,
    each,
    fresh_table,
    item_count,
    log_time,
    measured,
    peak_rss_mb,
    print_checks,
    print_table,
    process_cpu,
    product_environment,
    start,
    timeout_settings,
)
from stream_bench import (
    PROGRESS_INTERVAL,
    Backlog,
    add_call_timeout,
    applied,
    fill_backlog,
    retry,
    settings_line,
)

from replicator.dev.local import MotoServer, free_port

RATE_RATIO = 0.80  # three destinations / one, records/s
CALLS_RATIO = 1.10  # three destinations / one, GetRecords calls
REGIONS = ("eu-west-1", "us-west-2", "ap-southeast-2")
GET_RECORDS = "DynamoDBStreams_20120810.GetRecords"


class StreamsCounter(Forwarder):
    """The source's streams endpoint, forwarded unchanged, counting GetRecords calls."""

    def __init__(self, upstream: str, port: int) -> None:
        super().__init__(upstream, port)
        self.get_records = 0
        #: GetRecords calls that returned at least one record.
        self.pages = 0

    async def handle(self, request: web.Request, body: bytes) -> web.Response:
        response = await self.forward(request, body)
        if request.headers.get("X-Amz-Target") == GET_RECORDS:
            self.get_records += 1
            if response.status == 200 and isinstance(response.body, bytes) \
                    and json.loads(response.body).get("Records"):
                self.pages += 1
        return response


@dataclass
class FanOut(PerRecord):
    """One drain of the backlog into ``destinations`` destinations."""

    destinations: int
    records: int
    seconds: float
    cpu: float
    peak_rss_mb: float
    get_records: int
    pages: int
    note: str


def topology(task: str, source: MotoServer, streams: str,
             destinations: list[MotoServer]) -> str:
    """The topology file: the benchmark's source into each of ``destinations``."""
    lines = [f"task = {json.dumps(task)}", "", "[[path]]",
             f"source = {{ table = {json.dumps(SOURCE.table)}, "
             f"region = {json.dumps(SOURCE.region)}, endpoint = {json.dumps(source.url)}, "
             f"streams_endpoint = {json.dumps(streams)} }}"]
    for region, server in zip(REGIONS, destinations, strict=False):
        lines += ["", "[[path.destination]]", f"name = {json.dumps(region)}",
                  f"table = {json.dumps(DESTINATION.table)}", f"region = {json.dumps(region)}",
                  f"endpoint = {json.dumps(server.url)}"]
    return "\n".join(lines) + "\n"


async def fan_out(source: MotoServer, destinations: list[MotoServer], backlog: Backlog,
                  task: str, work_dir: Path, *, within: float, call_timeout: float
                  ) -> FanOut:
    """The replicator applies the whole backlog into a fresh table on each destination."""
    for region, server in zip(REGIONS, destinations, strict=False):
        await fresh_table(server, region, DESTINATION.table)
    expected = backlog.records * len(destinations)
    async with StreamsCounter(source.url, free_port()) as counter:
        config = work_dir / f"{task}.toml"
        config.write_text(topology(task, source, counter.url, destinations))
        env = product_environment({
            "config": str(config), "worker_id": f"{task}-worker", "metrics_port": "0",
            "bootstrap": "never", "progress_interval": PROGRESS_INTERVAL,
            "log_level": "info", "log_format": "json", **timeout_settings(call_timeout)})
        proc = Product(env, work_dir / f"{task}.log")
        pid = proc.process.pid
        try:
            started = await proc.wait_for_event("replication starting", 60)
            cpu_start = process_cpu(pid)
            done = await proc.wait_for(lambda line: applied(line) >= expected, within,
                                       what=f"apply {expected:,} records")
            calls, pages = counter.get_records, counter.pages
            cpu = process_cpu(pid) - cpu_start
            rss = peak_rss_mb(pid)
            note = f"retries: {proc.tally(retry)}"
        finally:
            proc.stop()
    if applied(done) != expected:
        raise RuntimeError(f"the replicator applied {applied(done)} records, not {expected}")
    live = backlog.live_after(backlog.records)
    for region, server in zip(REGIONS, destinations, strict=False):
        async with aws_client(server.url, region) as client:
            count = await item_count(client, DESTINATION.table)
        if count != live:
            raise RuntimeError(f"{task}: {region} holds {count} items, expected {live}")
    return FanOut(len(destinations), backlog.records, log_time(done) - log_time(started),
                  cpu, rss, calls, pages, note)


async def measure(args: argparse.Namespace, servers: list[MotoServer], work_dir: Path
                  ) -> dict[int, list[FanOut]]:
    source, *destinations = servers
    backlog = await fill_backlog(source, args.records, seed=args.seed)
    print(f"backlog: {backlog.records:,} records ({backlog.kinds()}) in "
          f"{backlog.fill_seconds:.1f}s; each destination ends with "
          f"{backlog.live_after(backlog.records):,} items", flush=True)
    results: dict[int, list[FanOut]] = {1: [], 3: []}
    for round_number in range(1, args.rounds + 1):
        for count in (1, 3) if round_number % 2 else (3, 1):
            drain = await fan_out(source, destinations[:count], backlog,
                                  f"bench-fanout-{count}-{round_number}", work_dir,
                                  within=args.max_seconds, call_timeout=args.call_timeout)
            results[count].append(drain)
            print(f"  round {round_number} {count} destination(s): {drain.records:,} records "
                  f"in {drain.seconds:6.2f}s = {drain.rate:7,.0f} records/s; GetRecords "
                  f"{drain.get_records} calls, {drain.pages} with records; CPU "
                  f"{drain.cpu_per_10k:5.2f}s per 10k records; peak RSS "
                  f"{drain.peak_rss_mb:.0f} MB; {drain.note}", flush=True)
    return results


def report(results: dict[int, list[FanOut]]) -> list[dict[str, str]]:
    def med(count: int, attr: str) -> float:
        return float(statistics.median(getattr(d, attr) for d in results[count]))

    rows = [("destinations", "records/s median", "each round", "GetRecords calls",
             "with records", "CPU s/10k records", "peak RSS MB")]
    for count in (1, 3):
        drains = results[count]
        rows.append((str(count), f"{med(count, 'rate'):,.0f}", each(d.rate for d in drains),
                     each((d.get_records for d in drains), "d"),
                     each((d.pages for d in drains), "d"), f"{med(count, 'cpu_per_10k'):.2f}",
                     f"{max(d.peak_rss_mb for d in drains):.0f}"))
    print_table(rows)
    rate = med(3, "rate") / med(1, "rate")
    calls = med(3, "get_records") / med(1, "get_records")
    pages = med(3, "pages") / med(1, "pages")
    return print_checks([
        Check("fan-out: 3 destinations / 1 destination records/s", rate,
              f">= {RATE_RATIO:.2f}", rate >= RATE_RATIO,
              f"{med(3, 'rate'):,.0f} vs {med(1, 'rate'):,.0f} records/s"),
        Check("fan-out: 3 destinations / 1 destination GetRecords calls reading records",
              pages, f"<= {CALLS_RATIO:.2f}", pages <= CALLS_RATIO,
              f"{med(3, 'pages'):.0f} vs {med(1, 'pages'):.0f}; all calls {calls:.2f}x "
              "(the empty polls at the head of the shard follow the drain's length)"),
    ])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Fan-out: one backlog drained into three "
                                     "destinations against the same backlog into one.")
    parser.add_argument("--records", type=at_least(100), default=20_000,
                        help="stream records in the backlog (default 20000, at least 100)")
    add_call_timeout(parser)
    common_arguments(parser, rounds=2, max_seconds=900.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start("fan-out benchmark")
    print(settings_line(args.call_timeout) + "; a topology file (REPLICATOR_CONFIG)")
    return measured("fanout", args, measure, report, servers=1 + len(REGIONS))


if __name__ == "__main__":
    sys.exit(main())
