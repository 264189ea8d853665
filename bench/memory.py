"""Memory: the replicator's peak RSS while it drains backlogs of growing size.

The source's stream gets the first backlog of ``--backlogs`` (default
25,000 and 100,000 records; the same mix as ``drain.py``); the replicator
drains it from TRIM_HORIZON into a fresh destination table, and its peak
resident set size (VmHWM in /proc/<pid>/status) is read once every record is
applied. The backlog is then extended to the next size and drained again, from
TRIM_HORIZON, by a new replicator process. Default settings, except
``bootstrap=never``, ``progress_interval=0.25`` and the call timeout (60 s)
as in ``drain.py``.

Targets: peak RSS under 200 MB at every size, and flat: the largest backlog's
peak at most 10% above the smallest's (the queue between readers and writers
is bounded, so nothing should grow with the backlog).

    .venv/bin/python bench/memory.py [--backlogs 50000,200000]

Only 127.0.0.1: two moto servers on free ports.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_common import code_version, local_environment, signals_ignored
from stream_bench import (
    Backlog,
    Drain,
    fill_backlog,
    machine,
    print_table,
    replicator_drain,
    run_loop,
    timeout_settings,
    write_summary,
)

from replicator.dev.local import MotoServer

RSS_TARGET_MB = 200.0
FLAT = 1.10


async def measure(args: argparse.Namespace, servers: list[MotoServer],
                  work_dir: Path) -> list[Drain]:
    source, destination = servers
    backlog: Backlog | None = None
    drains: list[Drain] = []
    for size in args.sizes:
        backlog = await fill_backlog(source, size, seed=args.seed, backlog=backlog)
        print(f"  backlog now {backlog.records:,} records (filled in "
              f"{backlog.fill_seconds:.0f}s so far)", flush=True)
        drain = await replicator_drain(source, destination, backlog, f"bench-memory-{size}",
                                       work_dir, within=args.max_seconds,
                                       call_timeout=args.call_timeout)
        drains.append(drain)
        print(f"  {size:,} records: drained in {drain.seconds:.1f}s "
              f"({drain.rate:,.0f} records/s), peak RSS {drain.peak_rss_mb:.1f} MB; "
              f"{drain.note}", flush=True)
    return drains


def report(drains: list[Drain]) -> list[dict[str, Any]]:
    rows = [("backlog records", "peak RSS MB", "x smallest", "< 200 MB")]
    smallest = drains[0].peak_rss_mb or 0.0
    for drain in drains:
        rss = drain.peak_rss_mb or 0.0
        rows.append((f"{drain.records:,}", f"{rss:.1f}", f"{rss / smallest:.2f}",
                     "yes" if rss < RSS_TARGET_MB else "NO"))
    print()
    print_table(rows)
    largest = max(d.peak_rss_mb or 0.0 for d in drains)
    flat = (drains[-1].peak_rss_mb or 0.0) <= FLAT * smallest
    figures = " / ".join(f"{d.peak_rss_mb:.0f} MB at {d.records:,}" for d in drains)
    return [{"measurement": "memory: peak RSS draining a backlog", "figure": figures,
             "target": f"< 200 MB, largest <= {FLAT:.2f} x smallest",
             "met": largest < RSS_TARGET_MB and flat}]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The replicator's peak RSS draining "
                                     "backlogs of growing size.")
    parser.add_argument("--backlogs", default="25000,100000",
                        help="backlog sizes in records, growing (default 25000,100000)")
    parser.add_argument("--call-timeout", type=float, default=60.0,
                        help="REPLICATOR_CALL_TIMEOUT, with REPLICATOR_LEASE_DURATION raised to "
                        "it plus 10s (default 60: on a loaded machine moto can take more than "
                        "the default 5s for a GetRecords page of 1000 records; 5 measures the "
                        "default)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--max-seconds", type=float, default=1800.0,
                        help="give up on a drain after this long (default 1800)")
    parser.add_argument("--json", default=None, help="write the summary rows to this file")
    args = parser.parse_args(argv)
    args.sizes = [int(size) for size in args.backlogs.split(",")]
    if len(args.sizes) < 2 or args.sizes != sorted(set(args.sizes)):
        parser.error("--backlogs needs at least two growing sizes")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    local_environment()
    print(f"memory benchmark, {machine()}, code {code_version()}; replicator settings: "
          f"defaults, bootstrap never, progress_interval 0.25s, "
          f"{timeout_settings(args.call_timeout) or 'default call_timeout'}")
    work_dir = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    servers = [MotoServer(), MotoServer()]
    try:
        for server in servers:
            server.start()
        drains = run_loop(measure(args, servers, work_dir))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        write_summary(args.json, [{"measurement": "memory", "figure": f"failed: {exc}"[:200],
                                   "target": "< 200 MB, flat", "met": False}])
        return 2
    finally:
        with signals_ignored():
            for server in servers:
                server.stop()
    summary = report(drains)
    write_summary(args.json, summary)
    print(f"logs in {work_dir}")
    return 0 if all(row["met"] for row in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
