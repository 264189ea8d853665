"""Every benchmark, one after the other, and one summary table with targets.

Runs ``drain.py`` (backlog drain and CPU per record), ``lag.py``,
``memory.py``, ``takeover.py`` and ``copy_throughput.py``, each as its own
process with its output shown as it comes, with modest sizes by default
(flags to scale up), then prints one row per target: the figure, the target
and whether it is met.

    .venv/bin/python bench/all.py [--records 50000] [--memory-backlogs 50000,200000]
    make bench

About 25 minutes on 2 cores with the defaults. Only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import code_version
from stream_bench import machine, print_table

HERE = Path(__file__).resolve().parent


def run(script: str, args: list[str]) -> tuple[int, str, float]:
    """The script's exit code, its output (also echoed) and its seconds."""
    print(f"\n=== {script} {' '.join(args)}", flush=True)
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, str(HERE / script), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    return process.wait(), "".join(lines), time.monotonic() - started


def own_rows(script: str, args: list[str], work: Path) -> list[dict[str, Any]]:
    path = work / f"{Path(script).stem}.json"
    code, _, seconds = run(script, [*args, "--json", str(path)])
    if path.exists():
        rows: list[dict[str, Any]] = json.loads(path.read_text())
    else:
        rows = [{"measurement": script, "figure": f"no result (exit code {code})",
                 "target": "", "met": False}]
    print(f"=== {script}: exit code {code}, {seconds:.0f}s", flush=True)
    return rows


def matching(output: str, pattern: str) -> str | None:
    found = re.search(pattern, output, re.MULTILINE)
    return " ".join(found.group(0).split()) if found else None


def takeover_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    code, output, seconds = run("takeover.py", ["--trials", str(args.takeover_trials)])
    print(f"=== takeover.py: exit code {code}, {seconds:.0f}s", flush=True)
    rows = []
    for kind, bound in (("kill -9", "<= 14 s"), ("SIGTERM", "<= 2 s")):
        line = matching(output, rf"^{re.escape(kind)}\s+\d+\s+.*$")
        figure = "see its output"
        if line:
            parts = line.split()
            # kind, trials, takeover min / med / max ...
            offset = len(kind.split())
            figure = f"takeover {' '.join(parts[offset + 1:offset + 6])} s (min / med / max)"
            met = parts[-1] == "yes"
        else:
            met = False
        rows.append({"measurement": f"takeover after {kind}", "figure": figure,
                     "target": f"max {bound}", "met": met and code == 0})
    return rows


def copy_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    code, output, seconds = run("copy_throughput.py", ["--items", str(args.copy_items)])
    print(f"=== copy_throughput.py: exit code {code}, {seconds:.0f}s", flush=True)
    # The target row: the copy reading through the stand-in source (moto's own Scan is
    # the limit of the other copy row).
    found = re.search(r"^copy via the stand-in: process start to exit\s+([\d,]+)\s+"
                      r"[\d,]+(?: / [\d,]+)*\s+([\d.]+)", output, re.MULTILINE)
    figure = (f"{found.group(2)} x ceiling ({found.group(1)} items/s, process start to exit, "
              "source Scan via the stand-in)" if found else "see its output")
    return [{"measurement": "bootstrap copy / BatchWriteItem ceiling", "figure": figure,
             "target": ">= 0.80 x ceiling", "met": code == 0}]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Every benchmark and one summary table.")
    parser.add_argument("--records", type=int, default=20_000,
                        help="drain.py's backlog (default 20000; the issue's figure is 50000)")
    parser.add_argument("--naive-records", type=int, default=2_000,
                        help="records the naive pipeline applies (default 2000)")
    parser.add_argument("--lag-seconds", type=float, default=60.0,
                        help="lag.py's seconds of load at each rate (default 60)")
    parser.add_argument("--memory-backlogs", default="10000,40000",
                        help="memory.py's backlog sizes (default 10000,40000)")
    parser.add_argument("--takeover-trials", type=int, default=3,
                        help="takeover.py's trials of each kind (default 3)")
    parser.add_argument("--copy-items", type=int, default=20_000,
                        help="copy_throughput.py's items (default 20000)")
    parser.add_argument("--skip", default="",
                        help="comma-separated benchmarks to leave out: drain, lag, memory, "
                        "takeover, copy")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    started = time.monotonic()
    print(f"all benchmarks, {machine()}, code {code_version()}", flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-all-") as work_dir:
        work = Path(work_dir)
        if "drain" not in skip:
            rows += own_rows("drain.py", ["--records", str(args.records),
                                          "--naive-records", str(args.naive_records)], work)
        if "lag" not in skip:
            rows += own_rows("lag.py", ["--seconds", str(args.lag_seconds)], work)
        if "memory" not in skip:
            rows += own_rows("memory.py", ["--backlogs", args.memory_backlogs], work)
        if "takeover" not in skip:
            rows += takeover_rows(args)
        if "copy" not in skip:
            rows += copy_rows(args)
    print(f"\n=== summary ({(time.monotonic() - started) / 60:.0f} minutes; finished "
          f"{machine()})\n")
    print_table([("measurement", "figure", "target", "met")] + [
        (row["measurement"], row["figure"], row["target"], "yes" if row["met"] else "NO")
        for row in rows])
    return 0 if rows and all(row["met"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
