"""Settings from the environment, a .env file and flags; the Java tool's aliases; errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from replicator.cli import main, parse_settings
from replicator.config import Settings, env_name
from replicator.dev import settings_doc
from replicator.errors import ConfigError

REQUIRED = {
    "REPLICATOR_SOURCE_TABLE": "orders",
    "REPLICATOR_SOURCE_REGION": "us-east-1",
    "REPLICATOR_DESTINATION_TABLE": "orders-replica",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean environment in an empty directory (no stray .env, no REPLICATOR_ vars)."""
    import os

    for name in list(os.environ):
        if name.startswith("REPLICATOR_") or name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def settings_from(argv: list[str]) -> Settings:
    return parse_settings(argv)


def set_required(env: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        env.setenv(name, value)


def test_environment_variables_are_read(env: pytest.MonkeyPatch) -> None:
    set_required(env)
    env.setenv("REPLICATOR_WRITERS", "3")
    env.setenv("REPLICATOR_INITIAL_POSITION", "LATEST")
    settings = settings_from([])
    assert settings.source_table == "orders"
    assert settings.writers == 3
    assert settings.initial_position == "LATEST"


def test_defaults_are_derived_from_the_source(env: pytest.MonkeyPatch) -> None:
    set_required(env)
    env.setenv("REPLICATOR_SOURCE_ENDPOINT", "http://127.0.0.1:9000/")
    settings = settings_from([])
    assert settings.destination_region == "us-east-1"
    assert settings.checkpoint_region == "us-east-1"
    assert settings.source_endpoint == "http://127.0.0.1:9000"
    assert settings.source_streams_endpoint == "http://127.0.0.1:9000"
    assert settings.checkpoint_endpoint == "http://127.0.0.1:9000"
    assert settings.destination_endpoint is None
    assert settings.worker_id


def test_checkpoint_elsewhere_does_not_inherit_the_source_endpoint(
    env: pytest.MonkeyPatch,
) -> None:
    set_required(env)
    env.setenv("REPLICATOR_SOURCE_ENDPOINT", "http://127.0.0.1:9000")
    env.setenv("REPLICATOR_CHECKPOINT_REGION", "eu-west-1")
    settings = settings_from([])
    assert settings.checkpoint_region == "eu-west-1"
    assert settings.checkpoint_endpoint is None


def test_source_region_falls_back_to_aws_region(env: pytest.MonkeyPatch) -> None:
    set_required(env)
    env.delenv("REPLICATOR_SOURCE_REGION")
    env.setenv("AWS_REGION", "ap-south-1")
    assert settings_from([]).source_region == "ap-south-1"


def test_default_task_name_is_the_md5_of_regions_and_tables(env: pytest.MonkeyPatch) -> None:
    set_required(env)
    env.setenv("REPLICATOR_DESTINATION_REGION", "eu-west-1")
    digest = hashlib.md5(b"us-east-1orderseu-west-1orders-replica").hexdigest()
    assert settings_from([]).task_name == f"replicator-{digest}"


def test_a_flag_wins_over_the_environment(env: pytest.MonkeyPatch) -> None:
    set_required(env)
    env.setenv("REPLICATOR_WRITERS", "3")
    settings = settings_from(["--writers", "5", "--source-table", "other"])
    assert settings.writers == 5
    assert settings.source_table == "other"


def test_a_dotenv_file_is_read_and_the_environment_wins(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "REPLICATOR_SOURCE_TABLE=from-file\nREPLICATOR_SOURCE_REGION=us-west-2\n"
        "REPLICATOR_DESTINATION_TABLE=dest-file\nREPLICATOR_WRITERS=7\n"
    )
    env.setenv("REPLICATOR_WRITERS", "2")
    settings = settings_from([])
    assert settings.source_table == "from-file"
    assert settings.source_region == "us-west-2"
    assert settings.writers == 2


def test_java_flags_are_aliases(env: pytest.MonkeyPatch) -> None:
    settings = settings_from([
        "--sourceRegion", "us-east-1", "--sourceTable", "src",
        "--sourceEndpoint", "http://127.0.0.1:1234",
        "--sourceStreamsEndpoint", "http://127.0.0.1:1235",
        "--destinationRegion", "eu-west-1", "--destinationTable", "dst",
        "--destinationEndpoint", "http://127.0.0.1:1236",
        "--kclRegion", "us-west-2", "--kclEndpoint", "http://127.0.0.1:1237",
        "--taskName", "my-task", "--batchSize", "250",
        "--parentShardPollIntervalMillis", "1500", "--dontPublishCloudwatch",
    ])
    assert (settings.source_region, settings.source_table) == ("us-east-1", "src")
    assert settings.source_streams_endpoint == "http://127.0.0.1:1235"
    assert (settings.destination_region, settings.destination_table) == ("eu-west-1", "dst")
    assert settings.destination_endpoint == "http://127.0.0.1:1236"
    assert (settings.checkpoint_region, settings.checkpoint_endpoint) == (
        "us-west-2", "http://127.0.0.1:1237")
    assert settings.task_name == "my-task"
    assert settings.get_records_limit == 250
    assert settings.coordinator_interval == 1.5
    assert settings.cloudwatch is False


def test_help_lists_every_setting_with_its_variable_and_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for name, field in Settings.model_fields.items():
        assert f"--{name.replace('_', '-')}" in text
        assert env_name(name) in text
        if not field.is_required() and field.default is not None:
            assert f"default: {field.default}" in text
    assert "--sourceTable" in text


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"REPLICATOR_SOURCE_TABLE": None}, "REPLICATOR_SOURCE_TABLE (--source-table) is required"),
        ({"REPLICATOR_WRITERS": "abc"}, "REPLICATOR_WRITERS (--writers) Input should be a valid "
         "integer"),
        ({"REPLICATOR_WRITERS": "0"}, "REPLICATOR_WRITERS (--writers) Input should be greater"),
        ({"REPLICATOR_SOURCE_ENDPOINT": "localhost:8000"},
         "REPLICATOR_SOURCE_ENDPOINT (--source-endpoint) must be a URL"),
        ({"REPLICATOR_INITIAL_POSITION": "EARLIEST"}, "REPLICATOR_INITIAL_POSITION"),
        ({"REPLICATOR_SOURCE_REGION": None}, "the source region is not set"),
        ({"REPLICATOR_LEASE_RENEW_INTERVAL": "20"},
         "REPLICATOR_LEASE_RENEW_INTERVAL must be shorter than REPLICATOR_LEASE_DURATION"),
        ({"REPLICATOR_DESTINATION_TABLE": "orders"}, "the destination is the source table"),
        ({"REPLICATOR_TASK_NAME": "bad name!"}, "REPLICATOR_TASK_NAME (--task-name)"),
    ],
)
def test_bad_settings_give_one_line_naming_the_setting(
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variables: dict[str, str | None],
    expected: str,
) -> None:
    set_required(env)
    for name, value in variables.items():
        if value is None:
            env.delenv(name)
        else:
            env.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        settings_from([])
    assert expected in str(error.value)
    assert "\n" not in str(error.value)

    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("replicator: error: ")
    assert expected in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_bad_java_millis_value(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    set_required(env)
    assert main(["--parentShardPollIntervalMillis", "soon"]) == 2
    assert "--parentShardPollIntervalMillis" in capsys.readouterr().err


def test_env_example_names_every_setting_and_only_real_ones() -> None:
    import re

    text = (Path(__file__).parents[2] / ".env.example").read_text()
    named = set(re.findall(r"^#? ?(REPLICATOR_[A-Z_]+)=", text, flags=re.MULTILINE))
    assert named == {env_name(name) for name in Settings.model_fields}
    assert text == settings_doc.env_example(), (
        "run: python -m replicator.dev.settings_doc")


def test_readme_settings_table_is_current() -> None:
    text = (Path(__file__).parents[2] / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`{env_name(name)}`" in text, name
    assert settings_doc.readme_with_table(text) == text, (
        "run: python -m replicator.dev.settings_doc")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], True),  # AWS's endpoints
        (["--source-endpoint", "http://127.0.0.1:8000",
          "--destination-endpoint", "http://localhost:8001"], False),  # a local run
        (["--source-endpoint", "http://127.0.0.1:8000",
          "--cloudwatch-endpoint", "http://127.0.0.1:8002"], True),  # asked for
        (["--source-endpoint", "http://127.0.0.1:8000",
          "--destination-endpoint", "https://dynamodb.eu-west-1.amazonaws.com"], True),
        (["--cloudwatch", "false"], False),
    ],
)
def test_cloudwatch_is_on_unless_every_endpoint_is_local(
    env: pytest.MonkeyPatch, flags: list[str], expected: bool
) -> None:
    set_required(env)
    settings = settings_from(flags)
    assert settings.cloudwatch is expected
    assert settings.cloudwatch_region == "us-east-1"  # the checkpoint table's
