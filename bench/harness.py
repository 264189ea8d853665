"""What every benchmark script shares.

* The run: the code version and machine measured (``start``, ``header``),
  dummy credentials and Ctrl-C handling (``local_environment``,
  ``signals_ignored``), the event loop (``run_loop``), a work directory for
  logs (``work_directory``, ``leave_logs``) and the failure path of a
  ``main`` (``guarded``, ``failed``); ``measured`` puts them together.
* Local moto servers: ``moto_servers`` starts ``replicator.dev.local.MotoServer``
  processes and stops them however the run ends; ``fresh_table`` resets one.
  ``SOURCE`` and ``DESTINATION``: the benchmark tables' regions and names.
* Processes: ``Product`` runs ``python -m replicator ...`` with its JSON log in
  a file read as it grows; ``run_process`` runs a command (a script of
  ``bench/``, the product) to exit and collects its output, timed.
* The product's JSON log lines: ``json_lines``, ``log_time``, ``tally``.
* CPU seconds and peak RSS of a process, from ``/proc`` (``process_cpu``,
  ``peak_rss_mb``, ``children_cpu``, ``CpuMeter``); timing (``Stopwatch``,
  ``poll_until``).
* The benchmark's own DynamoDB calls (``aws_client``, ``write_all``,
  ``write_batches``, ``item_count``).
* Results in one format: ``print_table``, ratios against targets (``Check``,
  ``print_checks``) and the summary rows ``all.py`` reads (``summary_row``,
  ``write_summary``, ``finish``).
* The flags most scripts take (``common_arguments``, ``at_least``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from replicator.aws.clients import Endpoint, open_client
from replicator.config import ENV_PREFIX, Settings, env_name
from replicator.dev.local import LOCAL_CREDENTIALS, MotoServer
from replicator.dev.workload import create_table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class Place:
    """Where a benchmark's table is: its region and its name."""

    region: str
    table: str


SOURCE = Place("us-east-1", "bench-source")
DESTINATION = Place("eu-west-1", "bench-destination")
BATCH = 25  # items of a BatchWriteItem call
BENCH_TIMEOUT = 600.0  # the benchmark's own calls
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROFILE_RATE = 100  # py-spy samples a second
#: Seconds of lease beyond the call timeout, when a benchmark raises the call timeout.
LEASE_MARGIN = 10.0

Line = dict[str, Any]  # a JSON log line
Row = dict[str, Any]  # a summary row, or a DynamoDB request


# -- the run ------------------------------------------------------------------------------


def code_version() -> str:
    """The commit measured, and whether the working tree differs from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, timeout=10, check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--", "replicator"],
                                cwd=ROOT, capture_output=True, text=True, timeout=10,
                                check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    dirty = " + uncommitted changes in replicator/" if status.stdout.strip() else ""
    return commit.stdout.strip() + dirty


def machine() -> str:
    """The time, the machine and its load."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC, nproc {os.cpu_count()}, "
            f"{platform.machine()}, Python {platform.python_version()}, load average {load}")


def header(title: str) -> str:
    return f"{title}, {machine()}, code {code_version()}"


def start(title: str) -> None:
    """A script's start: ``local_environment`` and its first line."""
    local_environment()
    print(header(title), flush=True)


def local_environment() -> None:
    """Dummy credentials for this process and its children (moto accepts any), and
    Ctrl-C or SIGTERM stop it, even if it was started with SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    os.environ.update(LOCAL_CREDENTIALS)
    os.environ.pop("AWS_PROFILE", None)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Cleanup that a second Ctrl-C must not cut short."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_loop(coroutine: Any) -> Any:
    """On uvloop where it is installed, as ``python -m replicator`` runs."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def work_directory(name: str) -> Path:
    """A new directory for a run's logs."""
    return Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))


def leave_logs(directory: Path, *, keep: bool) -> None:
    if keep:
        print(f"logs kept in {directory}")
    else:
        shutil.rmtree(directory, ignore_errors=True)


def guarded(body: Callable[[], int], on_failure: Callable[[BaseException], int]) -> int:
    """``body()``'s exit code; 130 on Ctrl-C; ``on_failure(exc)`` when it fails with a
    RuntimeError or a TimeoutError (the message printed first)."""
    try:
        return body()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError) as exc:
        print(f"benchmark failed: {exc or type(exc).__name__}", file=sys.stderr, flush=True)
        return on_failure(exc)


def failed(json_path: str | None, measurement: str, target: str = "",
           code: int = 2) -> Callable[[BaseException], int]:
    """An ``on_failure`` that writes one failed summary row and returns ``code``."""
    def record(exc: BaseException) -> int:
        figure = f"failed: {exc or type(exc).__name__}"[:200]
        write_summary(json_path, [summary_row(measurement, figure, target, False)])
        return code
    return record


def measured(name: str, args: argparse.Namespace,
             measure: Callable[[argparse.Namespace, list[MotoServer], Path], Awaitable[Any]],
             report: Callable[[Any], list[Row]], *, target: str = "", servers: int = 2) -> int:
    """A benchmark on ``servers`` moto servers: ``measure(args, servers, work_dir)`` on
    the event loop, then ``report(result)``'s summary rows written to ``args.json``; the exit code
    (``finish``, ``guarded``). Logs go to a work directory named after the benchmark,
    and are kept."""
    work_dir = work_directory(name)

    def body() -> int:
        with moto_servers(servers) as started:
            result = run_loop(measure(args, started, work_dir))
        return finish(report(result), args.json, work_dir)

    return guarded(body, failed(args.json, name, target))


# -- local servers -----------------------------------------------------------------------


@contextlib.contextmanager
def moto_servers(count: int = 2, *, before_stop: Callable[[], None] | None = None
                 ) -> Iterator[list[MotoServer]]:
    """``count`` moto servers on free ports, started; stopped on the way out (after
    ``before_stop``), a second Ctrl-C notwithstanding."""
    servers = [MotoServer() for _ in range(count)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        with signals_ignored():
            if before_stop is not None:
                before_stop()
            for server in servers:
                server.stop()


def server_pid(server: MotoServer) -> int | None:
    process = getattr(server, "_process", None)  # MotoServer keeps its Popen private
    return getattr(process, "pid", None)


def aws_client(url: str, region: str, *, service: str = "dynamodb",
               call_timeout: float = BENCH_TIMEOUT,
               max_connections: int = 10) -> AbstractAsyncContextManager[Any]:
    """A client of the benchmark's own, as the replicator opens them."""
    return open_client(Endpoint(service, region, url), call_timeout=call_timeout,
                       max_connections=max_connections)


async def fresh_table(server: MotoServer, region: str, table: str) -> None:
    """An empty server (moto never frees memory otherwise) holding only ``table``."""
    server.reset()
    async with aws_client(server.url, region) as client:
        await create_table(client, table, stream=False)


async def item_count(client: Any, table: str) -> int:
    """DescribeTable's ItemCount: on moto the table's exact length at the time of the call
    (AWS refreshes it only every six hours or so)."""
    response = await client.describe_table(TableName=table)
    return int(response["Table"]["ItemCount"])


def batches_of(requests: Sequence[Row], size: int = BATCH) -> list[list[Row]]:
    return [list(requests[i:i + size]) for i in range(0, len(requests), size)]


async def write_all(client: Any, table: str, requests: list[Row]) -> int:
    """One BatchWriteItem, and again with its UnprocessedItems until none; the calls."""
    calls = 0
    while requests:
        calls += 1
        response = await client.batch_write_item(RequestItems={table: requests})
        requests = response.get("UnprocessedItems", {}).get(table, [])
    return calls


async def in_parallel(calls: Iterable[Callable[[], Awaitable[Any]]], concurrency: int) -> None:
    """Every call, ``concurrency`` at a time, in order."""
    pending = iter(calls)

    async def worker() -> None:
        for call in pending:  # one iterator shared by every worker
            await call()

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())


async def write_batches(client: Any, table: str, batches: list[list[Row]],
                        concurrency: int) -> float:
    """Write every batch with ``concurrency`` calls in flight; seconds taken."""
    watch = Stopwatch()
    await in_parallel((lambda b=b: write_all(client, table, b) for b in batches), concurrency)
    return watch.seconds


# -- the product and other processes -----------------------------------------------------


def setting_default(name: str) -> Any:
    """A default of the replicator's settings (the code under test, not a copy)."""
    return Settings.model_fields[name].default


def timeout_settings(call_timeout: float) -> dict[str, str]:
    """REPLICATOR_CALL_TIMEOUT when not the default, with a lease duration long enough
    for it (the replicator requires lease_duration > renew interval + call timeout)."""
    if call_timeout == setting_default("call_timeout"):
        return {}
    lease_duration = max(float(setting_default("lease_duration")), call_timeout + LEASE_MARGIN)
    return {"call_timeout": f"{call_timeout:g}", "lease_duration": f"{lease_duration:g}"}


def product_environment(settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without REPLICATOR_* or AWS_* variables, with local
    credentials, unbuffered output and ``settings`` as REPLICATOR_* variables."""
    base = {k: v for k, v in os.environ.items() if not k.startswith((ENV_PREFIX, "AWS_"))}
    return {**base, **LOCAL_CREDENTIALS, "PYTHONUNBUFFERED": "1",
            **{env_name(name): value for name, value in (settings or {}).items()}}


def replication_settings(source: str, destination: str, task: str, **extra: str
                         ) -> dict[str, str]:
    """A replication from ``source`` to ``destination`` (endpoint URLs) of the benchmark
    tables, JSON logs, then ``extra`` (which may name other tables). Nothing else: every
    tuning setting is the replicator's default."""
    return {
        "source_table": SOURCE.table,
        "source_region": SOURCE.region,
        "source_endpoint": source,
        "destination_table": DESTINATION.table,
        "destination_region": DESTINATION.region,
        "destination_endpoint": destination,
        "task_name": task,
        "log_level": "info",
        "log_format": "json",
        **extra,
    }


def product_command(*args: str, prefix: Sequence[str] = ()) -> list[str]:
    return [*prefix, sys.executable, "-m", "replicator", *args]


def script_command(script: str, *args: str) -> list[str]:
    """A script of ``bench/`` run by this Python."""
    return [sys.executable, str(HERE / script), *args]


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
    return found


def py_spy_command(out: Path, pid: int | None = None) -> list[str]:
    """py-spy recording raw stacks to ``out``: of ``pid``, or (a prefix) of a command."""
    command = [py_spy(), "record", "--format", "raw", "--rate", str(PROFILE_RATE),
               "--nonblocking", "-o", str(out)]
    return [*command, "--pid", str(pid)] if pid is not None else [*command, "--"]


class Product:
    """``python -m replicator`` (then ``args``; ``prefix`` before it, a profiler) with
    ``env``, run from ``log_path``'s directory so that no stray .env file is read. Its
    stdout (JSON log lines) goes to ``log_path``, its stderr beside it; the log is read as
    it grows. ``session``: its own process group, killed as one."""

    def __init__(self, env: dict[str, str], log_path: Path, *, args: Sequence[str] = (),
                 prefix: Sequence[str] = (), name: str = "the replicator",
                 session: bool = False) -> None:
        self.name = name
        self.log_path = log_path
        self.err_path = log_path.with_suffix(".stderr")
        self.lines: list[Line] = []
        self._offset = 0
        self._partial = b""
        self._session = session
        with log_path.open("wb") as out, self.err_path.open("wb") as err:
            self.started_at = time.time()
            self.watch = Stopwatch()
            self.process = subprocess.Popen(product_command(*args, prefix=prefix), env=env,
                                            cwd=log_path.parent, stdout=out, stderr=err,
                                            start_new_session=session)

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def read_log(self) -> list[Line]:
        """The lines logged since the last call (all of them are in ``lines``)."""
        with self.log_path.open("rb") as log:
            log.seek(self._offset)
            data = log.read()
        self._offset += len(data)
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()
        new = json_lines(b"\n".join(chunks).decode(errors="replace"))
        self.lines.extend(new)
        return new

    def events(self, event: str) -> list[Line]:
        self.read_log()
        return [line for line in self.lines if line.get("event") == event]

    def first(self, event: str) -> Line | None:
        return next(iter(self.events(event)), None)

    async def wait_for(self, check: Callable[[Line], bool], within: float, *,
                       poll: float = 0.02, what: str = "get there") -> Line:
        """The first new log line for which ``check(line)`` holds; RuntimeError if the
        process exits or ``within`` seconds pass first."""
        deadline = time.monotonic() + within
        while True:
            for line in self.read_log():
                if check(line):
                    return line
            if self.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not {what} within {within:g}s (exit code "
                                   f"{self.returncode}):\n{self.excerpt()}")
            await asyncio.sleep(poll)

    async def wait_for_event(self, event: str, within: float, **kwargs: Any) -> Line:
        return await self.wait_for(lambda line: line.get("event") == event, within, **kwargs)

    async def exited(self) -> int:
        """Its exit code, the moment it exits."""
        return await asyncio.to_thread(self.process.wait)

    async def wait_exit(self, within: float) -> int | None:
        """Its exit code; None if it is still running after ``within`` seconds."""
        return await poll_until(lambda: self.returncode, within=within, every=0.05)

    def send(self, signum: signal.Signals) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if self._session:
                    os.killpg(self.process.pid, signal.SIGKILL)
                else:
                    self.process.kill()
        self.process.wait()

    def stop(self, within: float = 30.0) -> None:
        stop_all([self], within)

    def tally(self, describe: Callable[[Line], str | None]) -> str:
        self.read_log()
        return tally(self.lines, describe)

    def excerpt(self, lines: int = 8, wanted: Callable[[Line], bool] | None = None) -> str:
        """The last warning and error lines (or those ``wanted``), and stderr's tail."""
        self.read_log()
        chosen = [line for line in self.lines
                  if (wanted(line) if wanted else line.get("level") in ("warning", "error"))]
        text = [json.dumps(line, sort_keys=True) for line in chosen[-lines:]]
        stderr = self.err_path.read_text(errors="replace").strip().splitlines()
        text += [f"stderr: {line}" for line in stderr[-lines:]]
        return "\n".join(f"    {line}" for line in text) or "    (nothing logged)"


def stop_all(products: Iterable[Product], within: float = 10.0) -> None:
    """SIGTERM every live process, SIGKILL whichever is still up after ``within``."""
    products = list(products)
    for product in products:
        product.send(signal.SIGTERM)
    deadline = time.monotonic() + within
    for product in products:
        try:
            product.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            product.kill()


@dataclass
class Finished:
    """A process run to exit: its exit code, output and seconds from start to exit."""

    name: str
    code: int
    output: str
    errors: str
    seconds: float

    def check(self) -> Finished:
        if self.code != 0:
            raise RuntimeError(f"{self.name} failed (code {self.code}): {self.errors[-2000:]}")
        return self

    def last_json(self) -> Any:
        return json.loads(self.output.strip().splitlines()[-1])


def run_process(command: list[str], *, name: str, env: Mapping[str, str] | None = None,
                cwd: Path | None = None, timeout: float | None = None,
                echo: bool = False) -> Finished:
    """``command`` run to exit, timed. ``echo``: its output (stderr merged into it) shown
    as it comes; otherwise captured, and RuntimeError past ``timeout`` (killed)."""
    watch = Stopwatch()
    if echo:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            print(line, end="", flush=True)
            lines.append(line)
        return Finished(name, process.wait(), "".join(lines), "", watch.seconds)
    try:
        done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{name}: not done within {timeout:g}s") from None
    return Finished(name, done.returncode, done.stdout, done.stderr, watch.seconds)


# -- the product's JSON log ----------------------------------------------------------------


def json_lines(text: str) -> list[Line]:
    """The lines of ``text`` that are JSON objects."""
    lines: list[Line] = []
    for chunk in text.splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(chunk)
            if isinstance(entry, dict):
                lines.append(entry)
    return lines


def log_time(line: Line) -> float:
    """A log line's timestamp, in seconds since the epoch."""
    return datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()


def tally(lines: Iterable[Line], describe: Callable[[Line], str | None]) -> str:
    """``what: n; ...`` over the lines ``describe`` names (retries, say), or ``none``."""
    counts = Counter(what for line in lines if (what := describe(line)) is not None)
    return "; ".join(f"{what}: {n}" for what, n in sorted(counts.items())) or "none"


# -- CPU, memory and time ------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def children_cpu() -> float:
    """CPU seconds of every child process reaped so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuMeter:
    """CPU seconds over a span (``with``): of the processes in ``pids`` (by name), of this
    process's children reaped in the span (named ``children``) and of this one (``bench``)."""

    pids: dict[str, int | None]
    children: str = "children"
    start: dict[str, float | None] = field(default_factory=dict)
    used: dict[str, float | None] = field(default_factory=dict)

    def sample(self) -> dict[str, float | None]:
        def cpu(pid: int | None) -> float | None:
            try:
                return None if pid is None else process_cpu(pid)
            except (OSError, IndexError):
                return None

        return {**{name: cpu(pid) for name, pid in self.pids.items()},
                self.children: children_cpu(), "bench": time.process_time()}

    def __enter__(self) -> CpuMeter:
        self.start = self.sample()
        return self

    def __exit__(self, *exc_info: object) -> None:
        end = self.sample()
        self.used = {}
        for name, value in end.items():
            begun = self.start[name]
            self.used[name] = None if value is None or begun is None else value - begun

    def describe(self, seconds: float, names: Iterable[str]) -> str:
        """``name N%, ... of one core`` for each of ``names`` measured."""
        parts = [f"{name} {100 * used / seconds:.0f}%" for name in names
                 if (used := self.used.get(name)) is not None and seconds > 0]
        return ", ".join(parts) + " of one core" if parts else "unavailable"


class PerRecord:
    """``rate`` and ``cpu_per_10k`` of a drain's figures (its ``records``, ``seconds``
    and CPU seconds, ``cpu``)."""

    records: int
    seconds: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    @property
    def cpu_per_10k(self) -> float:
        return self.cpu * 10_000 / self.records


class Stopwatch:
    """Seconds (``time.perf_counter``) and this process's CPU seconds since it was made."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    @property
    def cpu(self) -> float:
        return time.process_time() - self.cpu_started


async def poll_until(check: Callable[[], Any], *, within: float, every: float) -> Any:
    """The first result of ``check()`` (awaited if need be) that is not None, asked every
    ``every`` seconds; None once ``within`` seconds have passed."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result is not None:
            return result
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(every)


# -- results -------------------------------------------------------------------------------


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell, two spaces apart; a blank line before."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


def yes_no(met: bool) -> str:
    return "yes" if met else "NO"


def each(values: Iterable[float], fmt: str = ",.0f") -> str:
    """Every round's value: ``a / b / c``."""
    return " / ".join(format(value, fmt) for value in values)


def spread(values: Sequence[float], fmt: str = ".2f") -> str:
    """``min / median / max``, or ``-`` for none."""
    if not values:
        return "-"
    return each((min(values), statistics.median(values), max(values)), fmt)


@dataclass(frozen=True)
class Check:
    """A ratio against its target: a row of the ratio table and of the summary."""

    measurement: str
    value: float
    target: str  # ">= 0.80"
    met: bool
    detail: str = ""  # the figures behind the ratio, for the summary

    def summary(self) -> Row:
        figure = f"{self.value:.2f}" + (f" ({self.detail})" if self.detail else "")
        return summary_row(self.measurement, figure, self.target, self.met)


def print_checks(checks: Sequence[Check]) -> list[Row]:
    """The ratio table; the checks' summary rows."""
    print_table([("ratio", "value", "target", "met"),
                 *((c.measurement, f"{c.value:.2f}", c.target, yes_no(c.met)) for c in checks)])
    return [check.summary() for check in checks]


def summary_row(measurement: str, figure: str, target: str, met: bool) -> Row:
    """A row of ``all.py``'s summary."""
    return {"measurement": measurement, "figure": figure, "target": target, "met": met}


def write_summary(path: str | None, rows: list[Row]) -> None:
    """Rows for ``all.py`` (``--json``): measurement, figure, target, met."""
    if path:
        Path(path).write_text(json.dumps(rows, indent=1))


def finish(summary: list[Row], json_path: str | None, work_dir: Path) -> int:
    """Write the summary; 0 when every target is met, else 1. The logs are kept."""
    write_summary(json_path, summary)
    leave_logs(work_dir, keep=True)
    return 0 if summary and all(row["met"] for row in summary) else 1


# -- flags ---------------------------------------------------------------------------------


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value
    return parse


def common_arguments(parser: argparse.ArgumentParser, *, rounds: int | None = None,
                     max_seconds: float | None = None, keep_logs: bool = False,
                     seed: bool = True, json_rows: bool = True) -> None:
    """The flags most benchmarks take: --rounds, --seed, --max-seconds, --keep-logs and
    --json (``all.py``'s summary rows)."""
    if rounds is not None:
        parser.add_argument("--rounds", type=at_least(1), default=rounds,
                            help=f"rounds, order alternating (default {rounds})")
    if seed:
        parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    if max_seconds is not None:
        parser.add_argument("--max-seconds", type=float, default=max_seconds,
                            help=f"give up after this long (default {max_seconds:g})")
    if keep_logs:
        parser.add_argument("--keep-logs", action="store_true",
                            help="keep the log files even when the run passed")
    if json_rows:
        parser.add_argument("--json", default=None, help="write the summary rows to this file")
