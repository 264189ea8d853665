"""Backlog drain and CPU per record: the replicator against a bare and a naive pipeline.

A source table on a local moto server gets ``--records`` stream records
(default 50,000: inserts, UpdateItem updates, puts over live items, deletes;
see ``stream_bench.fill_backlog``), built once. Each round then drains that
backlog from TRIM_HORIZON into a fresh destination table (the destination
server is reset each time) with, in alternating order:

* replicator: ``python -m replicator`` with its default settings, except
  ``bootstrap=never`` (the backlog is measured, not a table copy),
  ``progress_interval=0.25`` (its applied count is read from those lines) and
  ``call_timeout`` 60 s with ``lease_duration`` 70 s (``--call-timeout``): on a
  loaded machine moto can take more than the default 5 s to answer a
  GetRecords of 1000 records, and the reference pipelines wait as long;
* bare: ``pipelines.py bare``, GetRecords and concurrent BatchWriteItem, nothing
  else: the floor any replicator pays;
* naive: ``pipelines.py naive``, a PutItem or DeleteItem per record in order,
  over the first ``--naive-records`` records (default 10,000; its rate does not
  depend on how many).

Records/s, and process CPU seconds per 10,000 records, over the same span:
from the start of reading to the last record applied. The destination's item
count is checked after every drain. Medians of the rounds are compared.

    .venv/bin/python bench/drain.py [--records N] [--rounds R] [--profile DIR]

Only 127.0.0.1: two moto servers on free ports.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

from harness import (
    Check,
    at_least,
    common_arguments,
    each,
    measured,
    print_checks,
    print_table,
    py_spy_command,
    start,
)
from stream_bench import (
    Backlog,
    Drain,
    add_call_timeout,
    fill_backlog,
    pipeline_drain,
    replicator_drain,
    settings_line,
)

from replicator.dev.local import MotoServer

RATE_VS_BARE = 0.80
RATE_VS_NAIVE = 5.0
CPU_VS_BARE = 1.5
NAMES = ("replicator", "bare", "naive")
LABELS = {"bare": "(a) bare pipeline: GetRecords + concurrent BatchWriteItem",
          "naive": "(b) naive: PutItem/DeleteItem per record, in order",
          "replicator": "replicator (python -m replicator, defaults)"}


async def measure(args: argparse.Namespace, servers: list[MotoServer], work_dir: Path
                  ) -> dict[str, list[Drain]]:
    source, destination = servers
    backlog = await fill_backlog(source, args.records, seed=args.seed)
    print(f"backlog: {backlog.records:,} records ({backlog.kinds()}) in "
          f"{backlog.fill_seconds:.1f}s; the destination ends with "
          f"{backlog.live_after(backlog.records):,} items", flush=True)
    results: dict[str, list[Drain]] = {name: [] for name in NAMES}
    naive_records = min(args.naive_records, backlog.records)
    for round_number in range(1, args.rounds + 1):
        for name in NAMES if round_number % 2 else reversed(NAMES):
            if name == "replicator":
                drain = await replicator_drain(source, destination, backlog,
                                               f"bench-drain-{round_number}", work_dir,
                                               within=args.max_seconds,
                                               call_timeout=args.call_timeout)
            else:
                drain = await pipeline_drain(name, source, destination, backlog,
                                             naive_records if name == "naive"
                                             else backlog.records, within=args.max_seconds)
            results[name].append(drain)
            print(f"  round {round_number} {name:<10}: {drain.records:,} records in "
                  f"{drain.seconds:6.2f}s = {drain.rate:7,.0f} records/s; CPU "
                  f"{drain.cpu:6.2f}s = {drain.cpu_per_10k:5.2f}s per 10k records; "
                  f"peak RSS {drain.peak_rss_mb:.0f} MB; {drain.note}", flush=True)
    if args.profile:
        await profile(args, servers, backlog, work_dir)
    return results


async def profile(args: argparse.Namespace, servers: list[MotoServer], backlog: Backlog,
                  work_dir: Path) -> None:
    """One more replicator drain under py-spy (not counted)."""
    out = Path(args.profile) / "drain-replicator.txt"
    drain = await replicator_drain(servers[0], servers[1], backlog, "bench-drain-profile",
                                   work_dir, within=args.max_seconds,
                                   call_timeout=args.call_timeout, prefix=py_spy_command(out))
    await asyncio.sleep(2)  # py-spy writes its file once the process has exited
    print(f"  profiled replicator drain: {drain.rate:,.0f} records/s under py-spy; raw "
          f"stacks in {out}")


def report(results: dict[str, list[Drain]]) -> list[dict[str, str]]:
    def med(name: str, attr: str) -> float:
        return statistics.median(getattr(d, attr) for d in results[name])

    rate = {name: med(name, "rate") for name in results}
    cpu = {name: med(name, "cpu_per_10k") for name in results}
    rows = [("measurement", "records/s median", "each round", "CPU s/10k records",
             "each round", "peak RSS MB")]
    for name in ("bare", "naive", "replicator"):
        drains = results[name]
        rows.append((LABELS[name], f"{rate[name]:,.0f}", each(d.rate for d in drains),
                     f"{cpu[name]:.2f}", each((d.cpu_per_10k for d in drains), ".2f"),
                     f"{max(d.peak_rss_mb or 0 for d in drains):.0f}"))
    print_table(rows)
    vs_bare, vs_naive = rate["replicator"] / rate["bare"], rate["replicator"] / rate["naive"]
    cpu_vs_bare = cpu["replicator"] / cpu["bare"]
    return print_checks([
        Check("drain: replicator / bare pipeline records/s", vs_bare,
              f">= {RATE_VS_BARE:.2f}", vs_bare >= RATE_VS_BARE,
              f"{rate['replicator']:,.0f} vs {rate['bare']:,.0f} records/s"),
        Check("drain: replicator / naive records/s", vs_naive, f">= {RATE_VS_NAIVE:g}",
              vs_naive >= RATE_VS_NAIVE, f"{rate['naive']:,.0f} records/s naive"),
        Check("CPU per record: replicator / bare pipeline", cpu_vs_bare,
              f"<= {CPU_VS_BARE:g}", cpu_vs_bare <= CPU_VS_BARE,
              f"{cpu['replicator']:.2f} vs {cpu['bare']:.2f} CPU s per 10k records"),
    ])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Backlog drain rate and CPU per record: "
                                     "replicator, bare pipeline, naive pipeline.")
    parser.add_argument("--records", type=at_least(100), default=50_000,
                        help="stream records in the backlog (default 50000, at least 100)")
    parser.add_argument("--naive-records", type=int, default=10_000,
                        help="records the naive pipeline applies (default 10000)")
    parser.add_argument("--profile", metavar="DIR", default=None,
                        help="after the rounds, one more replicator drain under py-spy "
                        "(pip install py-spy); raw stacks written to DIR")
    add_call_timeout(parser)
    common_arguments(parser, rounds=2, max_seconds=900.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start("backlog drain benchmark")
    print(settings_line(args.call_timeout))
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    return measured("drain", args, measure, report)


if __name__ == "__main__":
    sys.exit(main())
