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
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench_common import code_version, local_environment, signals_ignored
from stream_bench import (
    Backlog,
    Drain,
    fill_backlog,
    machine,
    pipeline_drain,
    print_table,
    replicator_drain,
    run_loop,
    timeout_settings,
    write_summary,
)

from replicator.dev.local import MotoServer

RATE_VS_BARE = 0.80
RATE_VS_NAIVE = 5.0
CPU_VS_BARE = 1.5
PROFILE_RATE = 100


async def measure(args: argparse.Namespace, servers: list[MotoServer], work_dir: Path
                  ) -> tuple[Backlog, dict[str, list[Drain]]]:
    source, destination = servers
    backlog = await fill_backlog(source, args.records, seed=args.seed)
    print(f"backlog: {backlog.records:,} records ({dict(kinds(backlog))}) in "
          f"{backlog.fill_seconds:.1f}s; the destination ends with "
          f"{backlog.live_after(backlog.records):,} items", flush=True)
    results: dict[str, list[Drain]] = {"replicator": [], "bare": [], "naive": []}
    naive_records = min(args.naive_records, backlog.records)
    within = args.max_seconds
    for round_number in range(1, args.rounds + 1):
        order = ["replicator", "bare", "naive"]
        if round_number % 2 == 0:
            order.reverse()
        for name in order:
            if name == "replicator":
                drain = await replicator_drain(source, destination, backlog,
                                               f"bench-drain-{round_number}", work_dir,
                                               within=within,
                                               call_timeout=args.call_timeout)
            else:
                drain = await pipeline_drain(name, source, destination, backlog,
                                             naive_records if name == "naive"
                                             else backlog.records, within=within)
            results[name].append(drain)
            print(f"  round {round_number} {name:<10}: {drain.records:,} records in "
                  f"{drain.seconds:6.2f}s = {drain.rate:7,.0f} records/s; CPU "
                  f"{drain.cpu:6.2f}s = {drain.cpu_per_10k:5.2f}s per 10k records; "
                  f"peak RSS {drain.peak_rss_mb:.0f} MB; {drain.note}", flush=True)
    if args.profile:
        await profile(args, servers, backlog, work_dir)
    return backlog, results


def kinds(backlog: Backlog) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kind, count in backlog.phases:
        counts[kind] = counts.get(kind, 0) + count
    return counts


async def profile(args: argparse.Namespace, servers: list[MotoServer], backlog: Backlog,
                  work_dir: Path) -> None:
    """One more replicator drain under py-spy (not counted)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = Path(args.profile) / "drain-replicator.txt"
    prefix = [py_spy, "record", "--format", "raw", "--rate", str(PROFILE_RATE),
              "--nonblocking", "-o", str(out), "--"]
    drain = await replicator_drain(servers[0], servers[1], backlog, "bench-drain-profile",
                                   work_dir, within=args.max_seconds,
                                   call_timeout=args.call_timeout, prefix=prefix)
    await asyncio.sleep(2)  # py-spy writes its file once the process has exited
    print(f"  profiled replicator drain: {drain.rate:,.0f} records/s under py-spy; raw "
          f"stacks in {out}")


def report(results: dict[str, list[Drain]], args: argparse.Namespace) -> list[dict[str, str]]:
    def med(name: str, attr: str) -> float:
        return statistics.median(getattr(d, attr) for d in results[name])

    def each(name: str, attr: str, fmt: str) -> str:
        return " / ".join(format(getattr(d, attr), fmt) for d in results[name])

    rate = {name: med(name, "rate") for name in results}
    cpu = {name: med(name, "cpu_per_10k") for name in results}
    rows = [("measurement", "records/s median", "each round", "CPU s/10k records",
             "each round", "peak RSS MB")]
    labels = {"bare": "(a) bare pipeline: GetRecords + concurrent BatchWriteItem",
              "naive": "(b) naive: PutItem/DeleteItem per record, in order",
              "replicator": "replicator (python -m replicator, defaults)"}
    for name in ("bare", "naive", "replicator"):
        rows.append((labels[name], f"{rate[name]:,.0f}", each(name, "rate", ",.0f"),
                     f"{cpu[name]:.2f}", each(name, "cpu_per_10k", ".2f"),
                     f"{max(d.peak_rss_mb or 0 for d in results[name]):.0f}"))
    print()
    print_table(rows)
    checks = [
        ("drain: replicator / bare pipeline records/s", rate["replicator"] / rate["bare"],
         f">= {RATE_VS_BARE:.2f}", rate["replicator"] / rate["bare"] >= RATE_VS_BARE),
        ("drain: replicator / naive records/s", rate["replicator"] / rate["naive"],
         f">= {RATE_VS_NAIVE:g}", rate["replicator"] / rate["naive"] >= RATE_VS_NAIVE),
        ("CPU per record: replicator / bare pipeline", cpu["replicator"] / cpu["bare"],
         f"<= {CPU_VS_BARE:g}", cpu["replicator"] / cpu["bare"] <= CPU_VS_BARE),
    ]
    print()
    rows = [("ratio", "value", "target", "met")]
    summary = []
    for what, value, target, met in checks:
        rows.append((what, f"{value:.2f}", target, "yes" if met else "NO"))
        summary.append({"measurement": what, "figure": f"{value:.2f}", "target": target,
                        "met": met})
    print_table(rows)
    summary[0]["figure"] += (f" ({rate['replicator']:,.0f} vs {rate['bare']:,.0f} records/s)")
    summary[1]["figure"] += f" ({rate['naive']:,.0f} records/s naive)"
    summary[2]["figure"] += (f" ({cpu['replicator']:.2f} vs {cpu['bare']:.2f} CPU s "
                             "per 10k records)")
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Backlog drain rate and CPU per record: "
                                     "replicator, bare pipeline, naive pipeline.")
    parser.add_argument("--records", type=int, default=50_000,
                        help="stream records in the backlog (default 50000)")
    parser.add_argument("--naive-records", type=int, default=10_000,
                        help="records the naive pipeline applies (default 10000)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds, order alternating (default 2)")
    parser.add_argument("--profile", metavar="DIR", default=None,
                        help="after the rounds, one more replicator drain under py-spy "
                        "(pip install py-spy); raw stacks written to DIR")
    parser.add_argument("--call-timeout", type=float, default=60.0,
                        help="REPLICATOR_CALL_TIMEOUT, with REPLICATOR_LEASE_DURATION raised to "
                        "it plus 10s (default 60: on a loaded machine moto can take more than "
                        "the default 5s for a GetRecords page of 1000 records; 5 measures the "
                        "default)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--max-seconds", type=float, default=900.0,
                        help="give up on a drain after this long (default 900)")
    parser.add_argument("--json", default=None, help="write the summary rows to this file")
    args = parser.parse_args(argv)
    if args.records < 100 or args.rounds < 1:
        parser.error("--records must be at least 100 and --rounds at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    local_environment()
    print(f"backlog drain benchmark, {machine()}, code {code_version()}")
    print(f"replicator settings: defaults, bootstrap never, progress_interval 0.25s, "
          f"{timeout_settings(args.call_timeout) or 'default call_timeout'}")
    work_dir = Path(tempfile.mkdtemp(prefix="bench-drain-"))
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    servers = [MotoServer(), MotoServer()]
    ok = False
    try:
        for server in servers:
            server.start()
        _, results = run_loop(measure(args, servers, work_dir))
        summary = report(results, args)
        write_summary(args.json, summary)
        ok = all(row["met"] for row in summary)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        write_summary(args.json, [{"measurement": "drain", "figure": f"failed: {exc}"[:200],
                                   "target": "", "met": False}])
        return 2
    finally:
        with signals_ignored():
            for server in servers:
                server.stop()
    print(f"logs in {work_dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
