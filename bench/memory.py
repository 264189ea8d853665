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
from pathlib import Path
from typing import Any

from harness import (
    common_arguments,
    measured,
    print_table,
    start,
    summary_row,
    yes_no,
)
from stream_bench import (
    Backlog,
    Drain,
    add_call_timeout,
    fill_backlog,
    replicator_drain,
    settings_line,
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
    rss = [drain.peak_rss_mb or 0.0 for drain in drains]
    smallest = rss[0]
    print_table([("backlog records", "peak RSS MB", "x smallest", "< 200 MB"), *(
        (f"{drain.records:,}", f"{mb:.1f}", f"{mb / smallest:.2f}", yes_no(mb < RSS_TARGET_MB))
        for drain, mb in zip(drains, rss, strict=True))])
    figures = " / ".join(f"{mb:.0f} MB at {drain.records:,}"
                         for drain, mb in zip(drains, rss, strict=True))
    return [summary_row("memory: peak RSS draining a backlog", figures,
                        f"< 200 MB, largest <= {FLAT:.2f} x smallest",
                        max(rss) < RSS_TARGET_MB and rss[-1] <= FLAT * smallest)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The replicator's peak RSS draining "
                                     "backlogs of growing size.")
    parser.add_argument("--backlogs", default="25000,100000",
                        help="backlog sizes in records, growing (default 25000,100000)")
    add_call_timeout(parser)
    common_arguments(parser, max_seconds=1800.0)
    args = parser.parse_args(argv)
    args.sizes = [int(size) for size in args.backlogs.split(",")]
    if len(args.sizes) < 2 or args.sizes != sorted(set(args.sizes)):
        parser.error("--backlogs needs at least two growing sizes")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start("memory benchmark")
    print(settings_line(args.call_timeout))
    return measured("memory", args, measure, report, target="< 200 MB, flat")


if __name__ == "__main__":
    sys.exit(main())
