"""Every benchmark, one after the other, and one summary table with targets.

Runs ``drain.py`` (backlog drain and CPU per record), ``lag.py``,
``memory.py``, ``takeover.py``, ``copy_throughput.py`` and ``fanout.py`` on moto,
then ``hot_path.py`` on the stand-in (``stand_in.py``), each as its own process
with its output shown as it comes, with modest sizes by default (flags to scale
up), then prints one row per target: the figure, the target and whether it is
met, in two tables: the benchmarks on moto, then those on the stand-in.

    .venv/bin/python bench/all.py [--records 50000] [--memory-backlogs 50000,200000]
    make bench

About 45 minutes on 2 cores with the defaults. Only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import (
    header,
    machine,
    print_table,
    run_process,
    script_command,
    summary_row,
    yes_no,
)


@dataclass(frozen=True)
class Flag:
    """A flag of this script, passed on to a benchmark as one of its own."""

    name: str  # here
    passed: str  # the benchmark's
    default: str
    help: str


#: Each benchmark (by the name --skip takes): its script and the flags it is given.
BENCHMARKS: dict[str, tuple[str, tuple[Flag, ...]]] = {
    "drain": ("drain.py", (
        Flag("--records", "--records", "20000", "drain.py's backlog (the issue's figure is 50000)"),
        Flag("--naive-records", "--naive-records", "2000", "records the naive pipeline applies"),
    )),
    "lag": ("lag.py", (Flag("--lag-seconds", "--seconds", "60",
                            "lag.py's seconds of load at each rate"),)),
    "memory": ("memory.py", (Flag("--memory-backlogs", "--backlogs", "10000,40000",
                                  "memory.py's backlog sizes"),)),
    "takeover": ("takeover.py", (Flag("--takeover-trials", "--trials", "3",
                                      "takeover.py's trials of each kind"),)),
    "copy": ("copy_throughput.py", (Flag("--copy-items", "--items", "20000",
                                         "copy_throughput.py's items"),)),
    "fanout": ("fanout.py", (Flag("--fanout-records", "--records", "20000",
                                  "fanout.py's backlog"),)),
    "hot_path": ("hot_path.py", (
        Flag("--hot-path-records", "--records", "200000",
             "hot_path.py's 16-shard backlog on the stand-in"),
        Flag("--hot-path-memory-backlogs", "--memory-backlogs", "50000,200000",
             "hot_path.py's backlog sizes for peak RSS"),
        Flag("--hot-path-lag-seconds", "--lag-seconds", "60",
             "hot_path.py's seconds of 2,000 records/s"),
        Flag("--hot-path-rounds", "--rounds", "2", "hot_path.py's drain rounds"),
    )),
}
#: The benchmarks measured on the stand-in (``stand_in.py``), not on moto: their rows
#: are a table of their own.
ON_STAND_IN = frozenset({"hot_path"})
TABLES = {False: "on moto", True: "on the stand-in (bench/stand_in.py; moto for checkpoints)"}


def run(script: str, args: list[str], work: Path) -> list[dict[str, Any]]:
    """The benchmark's summary rows (its --json), its output shown as it comes."""
    path = work / f"{Path(script).stem}.json"
    print(f"\n=== {script} {' '.join(args)}", flush=True)
    finished = run_process(script_command(script, *args, "--json", str(path)), name=script,
                           echo=True)
    print(f"=== {script}: exit code {finished.code}, {finished.seconds:.0f}s", flush=True)
    if path.exists():
        rows: list[dict[str, Any]] = json.loads(path.read_text())
        return rows
    return [summary_row(script, f"no result (exit code {finished.code})", "", False)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Every benchmark and one summary table.")
    for _, flags in BENCHMARKS.values():
        for flag in flags:
            parser.add_argument(flag.name, default=flag.default,
                                help=f"{flag.help} (default {flag.default})")
    parser.add_argument("--skip", default="",
                        help="comma-separated benchmarks to leave out: "
                        f"{', '.join(BENCHMARKS)}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    started = time.monotonic()
    print(header("all benchmarks"), flush=True)
    tables: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="bench-all-") as work:
        for name, (script, flags) in BENCHMARKS.items():
            if name not in skip:
                passed = [word for flag in flags for word in
                          (flag.passed, getattr(args, flag.name[2:].replace("-", "_")))]
                tables[name in ON_STAND_IN] += run(script, passed, Path(work))
    print(f"\n=== summary ({(time.monotonic() - started) / 60:.0f} minutes; finished "
          f"{machine()})")
    for stand_in, rows in tables.items():
        if rows:
            print(f"\n--- {TABLES[stand_in]}", end="")
            print_table([("measurement", "figure", "target", "met")] + [
                (row["measurement"], row["figure"], row["target"], yes_no(row["met"]))
                for row in rows])
    rows = tables[False] + tables[True]
    return 0 if rows and all(row["met"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
