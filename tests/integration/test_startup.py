"""The start-up checks and the command line, through ``replicator.cli.main`` (in-process)
and ``python -m replicator`` (subprocess): every mistake a user can make ends in exit
code 2 and one line on stderr that names it, never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from replicator import service
from replicator.cli import main
from replicator.local import free_port
from replicator.service import Replicator

from .conftest import (
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
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

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
            "REPLICATOR_WRITERS (--writers) Input should be greater than or equal to 1, got '0'",
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
        "see replicator [run] --help\n"
    )


# -- the tables ------------------------------------------------------------------------


def test_source_table_missing(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_sync(lambda _, destination: create_table(destination, DESTINATION_TABLE), servers)
    assert failure_of(servers, monkeypatch, capsys) == (
        f"source table {SOURCE_TABLE} does not exist in region us-east-1: "
        "check REPLICATOR_SOURCE_TABLE and REPLICATOR_SOURCE_REGION"
    )


def test_stream_not_enabled(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def tables(source: Any, destination: Any) -> None:
        await create_table(source, SOURCE_TABLE)
        await create_table(destination, DESTINATION_TABLE)

    run_sync(tables, servers)
    assert failure_of(servers, monkeypatch, capsys) == (
        f"source table {SOURCE_TABLE} has no stream enabled: enable one with "
        f"aws dynamodb update-table --table-name {SOURCE_TABLE} "
        "--stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES"
    )


@pytest.mark.parametrize("view_type", ["KEYS_ONLY", "OLD_IMAGE"])
def test_stream_without_new_images(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    view_type: str,
) -> None:
    async def tables(source: Any, destination: Any) -> None:
        await create_table(source, SOURCE_TABLE, stream=view_type)
        await create_table(destination, DESTINATION_TABLE)

    run_sync(tables, servers)
    assert failure_of(servers, monkeypatch, capsys) == (
        f"the stream of source table {SOURCE_TABLE} has StreamViewType {view_type}, which does "
        "not carry the new image of an item: disable the stream and enable it again with "
        "StreamViewType NEW_AND_OLD_IMAGES (or NEW_IMAGE)"
    )


def test_destination_table_missing(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_sync(
        lambda source, _: create_table(source, SOURCE_TABLE, stream="NEW_AND_OLD_IMAGES"),
        servers,
    )
    assert failure_of(servers, monkeypatch, capsys) == (
        f"destination table {DESTINATION_TABLE} does not exist in region eu-west-1: create it "
        "with the source's key schema (pk HASH S, sk RANGE N) or fix "
        "REPLICATOR_DESTINATION_TABLE"
    )


@pytest.mark.parametrize(
    ("keys", "described"),
    [
        ({"pk": "S"}, "pk HASH S"),
        ({"pk": "S", "sk": "S"}, "pk HASH S, sk RANGE S"),
        ({"id": "S", "sk": "N"}, "id HASH S, sk RANGE N"),
    ],
    ids=["no-sort-key", "other-key-type", "other-key-name"],
)
def test_destination_key_schema_different(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    keys: dict[str, str], described: str,
) -> None:
    async def tables(source: Any, destination: Any) -> None:
        await create_table(source, SOURCE_TABLE, stream="NEW_IMAGE")
        await create_table(destination, DESTINATION_TABLE, keys=keys)

    run_sync(tables, servers)
    assert failure_of(servers, monkeypatch, capsys) == (
        f"destination table {DESTINATION_TABLE} has key schema ({described}) but source table "
        f"{SOURCE_TABLE} has (pk HASH S, sk RANGE N): create the destination with the same "
        "key attributes, key types and attribute types"
    )


def test_checkpoint_table_with_a_foreign_key_schema(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def tables(source: Any, destination: Any) -> None:
        await create_pair(source, destination)
        await create_table(source, TASK_NAME, keys={"id": "S"})

    run_sync(tables, servers)
    assert failure_of(servers, monkeypatch, capsys) == (
        f"checkpoint table {TASK_NAME} exists with another key schema (id HASH); it belongs "
        "to something else: choose another REPLICATOR_TASK_NAME"
    )


# -- endpoints -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "what"),
    [
        ("source_endpoint", f"source table {SOURCE_TABLE}"),
        ("source_streams_endpoint", f"the stream of {SOURCE_TABLE}"),
        ("destination_endpoint", f"destination table {DESTINATION_TABLE}"),
        ("checkpoint_endpoint", f"checkpoint table {TASK_NAME}"),
    ],
)
def test_an_endpoint_that_does_not_answer(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    setting: str, what: str,
) -> None:
    run_sync(create_pair, servers)
    dead = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    message = failure_of(servers, monkeypatch, capsys, **{setting: dead})
    assert message == (
        f"cannot reach {what} at {dead}: nothing answers; check REPLICATOR_{setting.upper()} "
        "and that the endpoint is up"
    )
    assert time.monotonic() - started < 10  # no long retrying at start-up


def test_an_endpoint_that_is_not_dynamodb(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_sync(create_pair, servers)
    with not_dynamodb() as url:
        message = failure_of(servers, monkeypatch, capsys, destination_endpoint=url)
    assert message.startswith(f"destination table {DESTINATION_TABLE} at {url} does not answer "
                              "properly (DescribeTable: "), message
    assert message.endswith("); check REPLICATOR_DESTINATION_ENDPOINT"), message
    assert "<html" not in message.lower()


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


def test_no_credentials(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_sync(create_pair, servers)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert failure_of(servers, monkeypatch, capsys) == (
        f"access to source table {SOURCE_TABLE} at {servers.source.url} was refused "
        "(DescribeTable: no AWS credentials found); check the AWS credentials (AWS_PROFILE, "
        "AWS_ACCESS_KEY_ID, the container role) and their IAM permissions"
    )


# -- the same checks in a real process -------------------------------------------------


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
        code = await process.wait(within=20)
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
    """A replicator that stops itself once it has applied everything in the stream."""

    ran: list[StopsWhenCaughtUp] = []

    async def run(self, *, copy_only: bool = False) -> int:
        StopsWhenCaughtUp.ran.append(self)
        watcher = asyncio.ensure_future(self._stop_when_caught_up(time.monotonic()))
        try:
            return await super().run(copy_only=copy_only)
        finally:
            watcher.cancel()

    async def _stop_when_caught_up(self, since: float) -> None:
        deadline = time.monotonic() + 20
        try:
            while True:
                if self.caught_up_since(since) or time.monotonic() > deadline:
                    return
                await asyncio.sleep(0.05)
        finally:
            self.stop()


@pytest.mark.timeout(45)
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
