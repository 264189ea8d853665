"""The start-up checks and the command line, through ``replicator.cli.main`` (in-process)
and ``python -m replicator`` (subprocess): every mistake a user can make ends in exit
code 2 and one line on stderr that names it, never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import http.server
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from replicator.aws.clients import open_client
from replicator.cli import main
from replicator.commands import process as service
from replicator.commands.run import Replicator
from replicator.dev.local import free_port
from tests.faults import Fault, FaultPlan, FaultProxy

from .conftest import (
    DEADLINE,
    DESTINATION_TABLE,
    SOURCE_TABLE,
    TASK_NAME,
    ReplicatorProcess,
    Servers,
    compare,
    create_pair,
    create_table,
    environment_for,
    lease_rows,
    run_sync,
    source_endpoint,
    stream_records,
    until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PREFIX = "replicator: error: "


def set_environment(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """``replicator [run] ARGV`` in-process: its exit code and its one stderr line."""
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(PREFIX), lines[0]
    return code, lines[0].removeprefix(PREFIX)


def failure_of(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    *argv: str, **settings: Any,
) -> str:
    """Run ``main`` against the test's servers; assert exit code 2; return the message."""
    set_environment(monkeypatch, environment_for(servers, **settings))
    code, message = run_main(capsys, *argv)
    assert code == 2, message
    return message


# -- settings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "argv", "expected"),
    [
        pytest.param(
            {"source_table": None}, (),
            "REPLICATOR_SOURCE_TABLE (--source-table) is required: set it in the environment "
            "or pass the flag",
            id="required-setting-missing",
        ),
        pytest.param(
            {"source_table": None, "destination_table": None}, (),
            "REPLICATOR_SOURCE_TABLE (--source-table) is required: set it in the environment "
            "or pass the flag; REPLICATOR_DESTINATION_TABLE (--destination-table) is required: "
            "set it in the environment or pass the flag",
            id="two-required-settings-missing",
        ),
        pytest.param(
            {"writers": "abc"}, (),
            "REPLICATOR_WRITERS (--writers) Input should be a valid integer, unable to parse "
            "string as an integer, got 'abc'",
            id="writers-not-a-number",
        ),
        pytest.param(
            {}, ("--writers", "0"),
            "--writers: Input should be greater than or equal to 1, got '0'",
            id="writers-flag-out-of-range",
        ),
        pytest.param(
            {"source_endpoint": "localhost:8000"}, (),
            "REPLICATOR_SOURCE_ENDPOINT (--source-endpoint) must be a URL such as "
            "http://127.0.0.1:8000 or https://dynamodb.eu-west-1.amazonaws.com, "
            "got 'localhost:8000'",
            id="endpoint-not-a-url",
        ),
        pytest.param(
            {"initial_position": "EARLIEST"}, (),
            "REPLICATOR_INITIAL_POSITION (--initial-position) Input should be 'TRIM_HORIZON' "
            "or 'LATEST', got 'EARLIEST'",
            id="initial-position-unknown",
        ),
        pytest.param(
            {}, ("--parentShardPollIntervalMillis", "soon"),
            "--parentShardPollIntervalMillis: 'soon' is not a number of milliseconds",
            id="java-millis-flag-not-a-number",
        ),
        pytest.param(
            {"lease_renew_interval": "5", "lease_duration": "5"}, (),
            "REPLICATOR_LEASE_RENEW_INTERVAL must be shorter than REPLICATOR_LEASE_DURATION "
            "(a third of it is usual)",
            id="renewal-not-shorter-than-lease",
        ),
        pytest.param(
            {"source_region": None}, (),
            "the source region is not set: set REPLICATOR_SOURCE_REGION (or AWS_REGION), "
            "or pass --source-region",
            id="no-region",
        ),
        pytest.param(
            {"destination_table": SOURCE_TABLE, "destination_region": None,
             "destination_endpoint": None, "source_endpoint": None}, (),
            "the destination is the source table itself: change REPLICATOR_DESTINATION_TABLE, "
            "REPLICATOR_DESTINATION_REGION or REPLICATOR_DESTINATION_ENDPOINT",
            id="destination-is-the-source",
        ),
    ],
)
def test_a_missing_or_malformed_setting(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    settings: dict[str, Any], argv: tuple[str, ...], expected: str,
) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert failure_of(servers, monkeypatch, capsys, *argv, **settings) == expected


def test_a_bad_argument_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--no-such-flag", "x"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "replicator: error: unrecognized arguments: --no-such-flag x; "
        "see replicator run --help\n"
    )


# -- the matrix: tables, endpoints, credentials and permissions ---------------------------

#: Stand-ins in a case's settings and expected line, replaced when the case runs.
DEAD = "{dead}"  # the URL of a port where nothing listens
HTML = "{html}"  # the URL of a web server that is not DynamoDB
PROXY = "{proxy}"  # the URL of the case's fault proxy


async def source_only(source: Any, destination: Any) -> None:
    await create_table(source, SOURCE_TABLE, stream="NEW_AND_OLD_IMAGES")


async def destination_only(source: Any, destination: Any) -> None:
    await create_table(destination, DESTINATION_TABLE)


def tables(*, stream: str | None = "NEW_AND_OLD_IMAGES",
           destination_keys: dict[str, str] | None = None) -> Arrange:
    async def arrange(source: Any, destination: Any) -> None:
        await create_table(source, SOURCE_TABLE, stream=stream)
        await create_table(destination, DESTINATION_TABLE, keys=destination_keys)

    return arrange


async def foreign_checkpoint_table(source: Any, destination: Any) -> None:
    await create_pair(source, destination)
    await create_table(source, TASK_NAME, keys={"id": "S"})


async def one_item_to_replicate(source: Any, destination: Any) -> None:
    await create_pair(source, destination)
    await source.put_item(TableName=SOURCE_TABLE, Item={"pk": {"S": "a"}, "sk": {"N": "1"}})


Arrange = Callable[[Any, Any], Awaitable[None]]
CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
               "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
               "AWS_WEB_IDENTITY_TOKEN_FILE")
#: How long a start-up may take to fail on a mistake: it retries a call a few times,
#: within a second or two, never for long.
MISTAKE_BOUND = 20.0
#: What every access error says to do.
ACCESS_FIX = ("check the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, the container role) "
              "and their IAM permissions")


@dataclass(frozen=True)
class Mistake:
    """A mistake a user can make: the tables as they are, the settings as given, and the
    one line that must say what is wrong and how to fix it (``*`` matches anything)."""

    expected: str
    arrange: Arrange = create_pair
    settings: dict[str, str] = field(default_factory=dict)
    #: The source or the destination server behind a fault proxy with this plan.
    proxy: tuple[str, FaultPlan] | None = None
    no_credentials: bool = False


MISTAKES = {
    "source-table-unknown": Mistake(
        f"source table {SOURCE_TABLE} does not exist in region us-east-1: "
        "check REPLICATOR_SOURCE_TABLE and REPLICATOR_SOURCE_REGION",
        arrange=destination_only,
    ),
    "destination-table-unknown": Mistake(
        f"destination table {DESTINATION_TABLE} does not exist in region eu-west-1: create it "
        "with the source's key schema (pk HASH S, sk RANGE N), set "
        "REPLICATOR_DESTINATION_CREATE=true to have it created, or fix "
        "REPLICATOR_DESTINATION_TABLE",
        arrange=source_only,
    ),
    "stream-disabled": Mistake(
        f"source table {SOURCE_TABLE} has no stream enabled: enable one with "
        f"aws dynamodb update-table --table-name {SOURCE_TABLE} "
        "--stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES",
        arrange=tables(stream=None),
    ),
    **{
        f"stream-view-{view_type}": Mistake(
            f"the stream of source table {SOURCE_TABLE} has StreamViewType {view_type}, which "
            "does not carry the new image of an item: disable the stream and enable it again "
            "with StreamViewType NEW_AND_OLD_IMAGES (or NEW_IMAGE)",
            arrange=tables(stream=view_type),
        )
        for view_type in ("KEYS_ONLY", "OLD_IMAGE")
    },
    **{
        f"key-schema-{name}": Mistake(
            f"destination table {DESTINATION_TABLE} has key schema ({described}) but source "
            f"table {SOURCE_TABLE} has (pk HASH S, sk RANGE N): create the destination with "
            "the same key attributes, key types and attribute types",
            arrange=tables(stream="NEW_IMAGE", destination_keys=keys),
        )
        for name, keys, described in (
            ("no-sort-key", {"pk": "S"}, "pk HASH S"),
            ("other-key-type", {"pk": "S", "sk": "S"}, "pk HASH S, sk RANGE S"),
            ("other-key-name", {"id": "S", "sk": "N"}, "id HASH S, sk RANGE N"),
        )
    },
    "checkpoint-table-foreign": Mistake(
        f"checkpoint table {TASK_NAME} exists with another key schema (id HASH); it belongs "
        "to something else: choose another REPLICATOR_TASK_NAME",
        arrange=foreign_checkpoint_table,
    ),
    **{
        f"unreachable-{setting.removesuffix('_endpoint').replace('_', '-')}": Mistake(
            f"cannot reach {what} at {DEAD}: nothing answers; check "
            f"REPLICATOR_{setting.upper()} and that the endpoint is up",
            settings={setting: DEAD},
        )
        for setting, what in (
            ("source_endpoint", f"source table {SOURCE_TABLE}"),
            ("source_streams_endpoint", f"the stream of {SOURCE_TABLE}"),
            ("destination_endpoint", f"destination table {DESTINATION_TABLE}"),
            ("checkpoint_endpoint", f"checkpoint table {TASK_NAME}"),
        )
    },
    "endpoint-not-dynamodb": Mistake(
        f"destination table {DESTINATION_TABLE} at {HTML} does not answer properly "
        "(DescribeTable: 502: HTTP 502); check REPLICATOR_DESTINATION_ENDPOINT",
        settings={"destination_endpoint": HTML},
    ),
    "no-credentials": Mistake(
        f"access to source table {SOURCE_TABLE} at {{source}} was refused: DescribeTable: "
        f"no AWS credentials found; {ACCESS_FIX}",
        no_credentials=True,
    ),
    "bad-credentials": Mistake(
        f"access to source table {SOURCE_TABLE} at {PROXY} was refused: DescribeTable: "
        "UnrecognizedClientException: The security token included in the request is "
        f"invalid.; {ACCESS_FIX}",
        settings={"source_endpoint": PROXY},
        proxy=("source", FaultPlan.always(Fault.BAD_CREDENTIALS)),
    ),
    "access-denied-destination": Mistake(
        f"access to destination table {DESTINATION_TABLE} at {PROXY} was refused: "
        "DescribeTable: AccessDeniedException: User: arn:aws:iam::123456789012:user/replicator "
        "is not authorized to perform: dynamodb:DescribeTable on resource: *:table/"
        f"{DESTINATION_TABLE} because no identity-based policy allows the "
        f"dynamodb:DescribeTable action; {ACCESS_FIX}",
        settings={"destination_endpoint": PROXY},
        proxy=("destination", FaultPlan.always(Fault.ACCESS_DENIED)),
    ),
    "access-denied-create-checkpoint-table": Mistake(
        f"access to checkpoint table {TASK_NAME} at {PROXY} was refused: CreateTable: "
        "AccessDeniedException: User: * is not authorized to perform: dynamodb:CreateTable "
        f"on resource: *:table/{TASK_NAME} *; {ACCESS_FIX}",
        settings={"checkpoint_endpoint": PROXY},
        proxy=("source", FaultPlan.always(Fault.ACCESS_DENIED, "CreateTable")),
    ),
    # The start-up checks only read the destination: a role that may not write it
    # fails at the first write, and stops with the same kind of line.
    "access-denied-destination-write": Mistake(
        "BatchWriteItem: AccessDeniedException: User: * is not authorized to perform: "
        f"dynamodb:BatchWriteItem on resource: *:table/{DESTINATION_TABLE} *; {ACCESS_FIX}",
        arrange=one_item_to_replicate,
        settings={"destination_endpoint": PROXY},
        proxy=("destination", FaultPlan.always(Fault.ACCESS_DENIED, "BatchWriteItem")),
    ),
}


@pytest.mark.parametrize("mistake", MISTAKES.values(), ids=MISTAKES.keys())
def test_a_mistake_in_tables_endpoints_or_credentials(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    mistake: Mistake,
) -> None:
    """Exit code 2, one line on stderr naming the problem and its fix, no traceback,
    and no long retrying first (a few quick retries at most: well under the bound,
    which leaves room for a loaded machine)."""
    run_sync(mistake.arrange, servers)
    if mistake.no_credentials:
        for name in CREDENTIALS:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
        monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with contextlib.ExitStack() as stack:
        urls = {"dead": f"http://127.0.0.1:{free_port()}", "source": servers.source.url}
        if HTML in mistake.expected:
            urls["html"] = stack.enter_context(not_dynamodb())
        if mistake.proxy is not None:
            side, plan = mistake.proxy
            target = servers.source if side == "source" else servers.destination
            urls["proxy"] = stack.enter_context(FaultProxy(target.url, plan).in_thread()).url
        settings = {name: value.format(**urls) for name, value in mistake.settings.items()}
        started = time.monotonic()
        message = failure_of(servers, monkeypatch, capsys, **settings)
    assert fnmatch.fnmatchcase(message, mistake.expected.format(**urls)), message
    assert time.monotonic() - started < MISTAKE_BOUND


@contextlib.contextmanager
def not_dynamodb() -> Iterator[str]:
    """A web server that answers every request with an HTML error page."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_error(502, "Bad Gateway", "<html><body>upstream is down</body></html>")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- an item the destination rejects: a poison record -------------------------------------


@pytest.mark.timeout(300)
def test_an_item_the_destination_rejects_stops_its_shard_at_that_record(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The destination has an index on ``g`` that the source lacks, and refuses an item
    whose ``g`` is empty. Exit code 3 and one line naming the record; the checkpoint stays
    before it; once the destination is fixed, a restart resumes from that record."""
    def key(i: int) -> dict[str, Any]:
        return {"pk": {"S": f"user-{i}"}, "sk": {"N": str(i)}}

    async def tables(source: Any, destination: Any) -> list[dict[str, Any]]:
        await create_table(source, SOURCE_TABLE, stream="NEW_AND_OLD_IMAGES")
        await destination.create_table(
            TableName=DESTINATION_TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                       {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "N"},
                                  {"AttributeName": "g", "AttributeType": "S"}],
            GlobalSecondaryIndexes=[{"IndexName": "by-g", "Projection": {"ProjectionType": "ALL"},
                                     "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}]}],
        )
        for i, g in enumerate(["a", "b", "", "c"]):
            await source.put_item(TableName=SOURCE_TABLE, Item={**key(i), "g": {"S": g}})
        async with open_client(source_endpoint(servers, "dynamodbstreams"),
                               call_timeout=30) as streams:
            arn = (await source.describe_table(TableName=SOURCE_TABLE))["Table"]["LatestStreamArn"]
            return await stream_records(streams, arn)

    records = run_sync(tables, servers)
    poison = records[2]["dynamodb"]["SequenceNumber"]
    refusal = ("ValidationException: One or more parameter values are not valid. A value "
               "specified for a secondary index key is not supported. The AttributeValue for "
               "a key attribute cannot contain an empty string value. IndexName: by-g, "
               "IndexKey: g")
    # The first run copies the table (bootstrap), and the copy meets the item first.
    set_environment(monkeypatch, environment_for(servers, log_level="error"))
    code, message = run_main(capsys)
    assert code == 3, message
    assert message == (
        f"the destination rejects item (pk=S:user-2, sk=N:2) of source table {SOURCE_TABLE} "
        f"while copying it: BatchWriteItem: {refusal}; fix the item or the destination table, "
        "then start again: the copy resumes from the page that holds it"
    )

    # Streamed, the record stops its shard.
    set_environment(monkeypatch, environment_for(servers, log_level="error", bootstrap="never"))
    code, message = run_main(capsys)
    assert code == 3, message
    assert fnmatch.fnmatchcase(message, (
        f"the destination rejects stream record {poison} of shard shardId-* (INSERT, key "
        f"pk=S:user-2, sk=N:2): BatchWriteItem: {refusal}; fix the item or the destination "
        "table, then restart: replication of this shard resumes from that record"
    )), message

    async def checkpoint(source: Any, _: Any) -> str:
        (row,) = await lease_rows(source)
        value: str = row["checkpoint"]["S"]
        return value

    written = run_sync(checkpoint, servers)
    assert written == records[1]["dynamodb"]["SequenceNumber"]  # just before the poison

    # The fix: the destination's index goes. A restart applies the refused record first.
    async def drop_index(_: Any, destination: Any) -> None:
        await destination.update_table(
            TableName=DESTINATION_TABLE,
            GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "by-g"}}],
        )

    run_sync(drop_index, servers)
    StopsWhenCaughtUp.ran.clear()
    monkeypatch.setattr(service, "Replicator", StopsWhenCaughtUp)
    assert main([]) == 0, capsys.readouterr().err
    (replicator,) = StopsWhenCaughtUp.ran
    assert replicator.failure is None, replicator.failure
    assert replicator.stats.records_read == 2  # the poison record and the one after it
    assert run_sync(lambda source, destination: compare(source, destination, ["pk", "sk"]),
                    servers).equal


# -- the same checks in a real process -------------------------------------------------


@pytest.mark.timeout(300)
async def test_startup_failures_of_a_real_process(
    servers: Servers, source: Any, destination: Any, spawn: Callable[..., ReplicatorProcess]
) -> None:
    """Exit code 2, one line on stderr, no traceback, and a quiet stdout, for a malformed
    setting, a missing source table and an endpoint that does not answer."""
    dead = f"http://127.0.0.1:{free_port()}"
    cases = {
        "malformed": (
            environment_for(servers, writers="abc"),
            "REPLICATOR_WRITERS (--writers) Input should be a valid integer, unable to parse "
            "string as an integer, got 'abc'",
        ),
        "missing-table": (
            environment_for(servers, source_table="absent-table"),
            "source table absent-table does not exist in region us-east-1: "
            "check REPLICATOR_SOURCE_TABLE and REPLICATOR_SOURCE_REGION",
        ),
        "unreachable": (
            environment_for(servers, destination_endpoint=dead),
            f"cannot reach destination table {DESTINATION_TABLE} at {dead}: nothing answers; "
            "check REPLICATOR_DESTINATION_ENDPOINT and that the endpoint is up",
        ),
    }
    await create_pair(source, destination)
    processes = {name: spawn(name, env) for name, (env, _) in cases.items()}
    for name, process in processes.items():
        code = await process.wait(within=DEADLINE)
        stderr, stdout = process.stderr(), process.stdout()
        assert code == 2, (name, stderr, stdout)
        assert stderr == PREFIX + cases[name][1] + "\n", name
        assert "Traceback" not in stderr + stdout
        assert stdout == "", name


# -- the command line: the Java tool's flags, and flags over the environment -------------


@pytest.mark.parametrize("flag", ["--sourceTable", "--source-table"])
def test_a_flag_wins_over_the_environment(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    flag: str,
) -> None:
    run_sync(create_pair, servers)  # the table the environment names exists
    message = failure_of(servers, monkeypatch, capsys, flag, "table-from-the-flag")
    assert message.startswith("source table table-from-the-flag does not exist"), message


class StopsWhenCaughtUp(Replicator):
    """A replicator that stops itself once it has applied everything in the stream
    (or once the deadline to do so has passed: ``failure`` then says so)."""

    ran: list[StopsWhenCaughtUp] = []
    failure: AssertionError | None = None

    async def run(self, *, copy_only: bool = False) -> int:
        StopsWhenCaughtUp.ran.append(self)
        watcher = asyncio.ensure_future(self._stop_when_caught_up(self.clock.monotonic()))
        try:
            return await super().run(copy_only=copy_only)
        finally:
            watcher.cancel()

    async def _stop_when_caught_up(self, since: float) -> None:
        try:
            await until(self.stats.changed, lambda: self.caught_up_since(since),
                        what="the replicator to catch up",
                        describe=lambda: f"{self.stats.records_read} records read")
        except AssertionError as exc:
            self.failure = exc
        finally:
            self.stop()


@pytest.mark.timeout(180)
def test_the_java_tools_flags(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    items = [{"pk": {"S": f"java-{i}"}, "sk": {"N": str(i)}, "v": {"S": "x" * i}}
             for i in range(12)]

    async def tables(source: Any, destination: Any) -> None:
        await create_pair(source, destination)
        for item in items:
            await source.put_item(TableName=SOURCE_TABLE, Item=item)

    run_sync(tables, servers)
    # The environment names other tables, endpoints and task: every flag must win.
    set_environment(monkeypatch, environment_for(
        servers, source_table="env-source", destination_table="env-destination",
        source_endpoint="http://127.0.0.1:1", destination_endpoint="http://127.0.0.1:1",
        task_name="env-task", get_records_limit="1000", coordinator_interval="5",
        # Streamed, not copied: what is written before a copy it would not read.
        bootstrap="never",
    ))
    StopsWhenCaughtUp.ran.clear()
    monkeypatch.setattr(service, "Replicator", StopsWhenCaughtUp)
    code = main([
        "--sourceTable", SOURCE_TABLE,
        "--sourceRegion", "us-east-1",
        "--sourceEndpoint", servers.source.url,
        "--destinationTable", DESTINATION_TABLE,
        "--destinationRegion", "eu-west-1",
        "--destinationEndpoint", servers.destination.url,
        "--taskName", "java-task",
        "--batchSize", "5",
        "--parentShardPollIntervalMillis", "200",
        "--dontPublishCloudwatch",
    ])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err == ""

    (replicator,) = StopsWhenCaughtUp.ran
    assert replicator.failure is None, replicator.failure
    settings = replicator.settings
    assert (settings.source_table, settings.destination_table) == (SOURCE_TABLE,
                                                                   DESTINATION_TABLE)
    assert settings.source_endpoint == servers.source.url
    assert settings.source_streams_endpoint == servers.source.url
    assert settings.destination_endpoint == servers.destination.url
    assert settings.checkpoint_endpoint == servers.source.url
    assert settings.task_name == "java-task"
    assert settings.get_records_limit == 5
    assert settings.coordinator_interval == pytest.approx(0.2)
    assert settings.cloudwatch is False
    assert replicator.stats.records_read == len(items)

    async def check(source: Any, destination: Any) -> None:
        diff = await compare(source, destination, ["pk", "sk"])
        assert diff.equal, diff.summary()
        assert diff.source_items == len(items)
        (row,) = await lease_rows(source, "java-task")  # the checkpoint table is the task's
        assert "lease_owner" not in row

    run_sync(check, servers)
