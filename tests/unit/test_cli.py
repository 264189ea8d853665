"""The command line: commands and their help, flags in any position, the version, and
nothing read loosely (unknown variables, abbreviated or conflicting flags). Every
mistake ends in exit code 2 and one line on stderr that names it."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest

import replicator
from replicator import cli
from replicator.cli import parsers
from replicator.commands import process as service
from replicator.commands import status, verify
from replicator.commands.settings import unknown_variables
from replicator.config import GROUPS, JAVA_FLAGS, OTHER_VARIABLES, Settings, env_name, flag_name
from replicator.logs import configure_logging

ROOT = Path(__file__).parents[2]
PREFIX = "replicator: error: "
REQUIRED = {
    "REPLICATOR_SOURCE_TABLE": "orders",
    "REPLICATOR_SOURCE_REGION": "us-east-1",
    "REPLICATOR_DESTINATION_TABLE": "orders-replica",
}
ENUMS = {name: get_args(field.annotation) for name, field in Settings.model_fields.items()
         if get_origin(field.annotation) is Literal}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """A clean environment with the required settings, in an empty directory (no .env);
    the logging that ``main`` may set up is put back afterwards."""
    for name in list(os.environ):
        if name.upper().startswith("REPLICATOR_") or name in ("AWS_REGION",
                                                              "AWS_DEFAULT_REGION"):
            monkeypatch.delenv(name)
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    yield monkeypatch
    configure_logging("warning", "json")


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Settings, dict[str, Any]]]:
    """The commands ``main`` ran, with their settings and options: each command's
    coroutine is replaced by one that only records its call."""
    calls: list[tuple[str, Settings, dict[str, Any]]] = []

    def recorder(name: str) -> Any:
        async def record(settings: Settings, **options: Any) -> int:
            calls.append((name, settings, options))
            return 0

        return record

    monkeypatch.setattr(service, "run_service", recorder("service"))
    monkeypatch.setattr(status, "run_status", recorder("status"))
    monkeypatch.setattr(verify, "run_verify", recorder("verify"))
    return calls


def error_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``main``; assert exit code 2, one line on stderr, no traceback; the message."""
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(PREFIX), lines[0]
    assert code == 2, lines[0]
    return lines[0].removeprefix(PREFIX)


def help_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert cli.main(list(argv)) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


# -- item 5: unknown variables --------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "meant"),
    [
        ("REPLICATOR_WRITRES", "REPLICATOR_WRITERS"),
        ("REPLICATOR_DESTINATON_TABLE", "REPLICATOR_DESTINATION_TABLE"),
        ("REPLICATOR_SOURCETABLE", "REPLICATOR_SOURCE_TABLE"),
        ("REPLICATOR_WRIT", "REPLICATOR_WRITERS"),
        ("REPLICATOR_BATCH_SIZE", "REPLICATOR_GET_RECORDS_LIMIT"),  # the Java tool's name
        ("REPLICATOR_KCL_REGION", "REPLICATOR_CHECKPOINT_REGION"),
    ],
)
def test_an_unknown_variable_names_the_closest_setting(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, meant: str
) -> None:
    env.setenv(variable, "4")
    assert error_of(capsys) == (
        f"{variable} in the environment is not a setting: did you mean {meant}?")


def test_an_unknown_variable_like_no_setting_says_how_to_list_them(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("REPLICATOR_QQQ", "1")
    assert error_of(capsys, "status") == (
        "REPLICATOR_QQQ in the environment is not a setting and resembles none: "
        "replicator run --help lists the settings")


def test_an_unknown_dotenv_key_names_the_file_and_the_closest_setting(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("AWS_REGION=us-east-1\nREPLICATOR_DESTINATON_TABLE=x\n")
    assert error_of(capsys, "verify") == (
        "REPLICATOR_DESTINATON_TABLE in .env is not a setting: did you mean "
        "REPLICATOR_DESTINATION_TABLE?")


def test_every_unknown_variable_is_named_on_the_one_line(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    env.setenv("REPLICATOR_WRITRES", "4")
    env.setenv("REPLICATOR_QUEUE_SIZ", "4")
    (tmp_path / ".env").write_text("export REPLICATOR_TASKNAME=t\n")
    message = error_of(capsys)
    assert message.split("; ") == [
        "REPLICATOR_QUEUE_SIZ in the environment is not a setting: did you mean "
        "REPLICATOR_QUEUE_SIZE?",
        "REPLICATOR_WRITRES in the environment is not a setting: did you mean "
        "REPLICATOR_WRITERS?",
        "REPLICATOR_TASKNAME in .env is not a setting: did you mean REPLICATOR_TASK_NAME?",
    ]


def test_real_settings_in_any_case_and_other_dotenv_keys_are_accepted(
    env: pytest.MonkeyPatch, tmp_path: Path, ran: list[tuple[str, Settings, dict[str, Any]]]
) -> None:
    """pydantic-settings reads names without case, and a .env file may hold AWS_* keys
    (docker --env-file): neither is an unknown setting."""
    (tmp_path / ".env").write_text("AWS_REGION=eu-west-1\nOTHER=1\nREPLICATOR_WRITERS=3\n")
    env.setenv("replicator_queue_size", "100")
    assert cli.main([]) == 0
    ((_, settings, _),) = ran
    assert (settings.writers, settings.queue_size) == (3, 100)


def test_every_variable_the_project_uses_is_accepted() -> None:
    """Every REPLICATOR_* name in the code, deployment files and documents is a setting
    (or one of ``OTHER_VARIABLES``): none of them may become an unknown variable."""
    pattern = re.compile(r"\bREPLICATOR_[A-Z0-9_]*[A-Z0-9]\b")
    deliberate_mistakes = {Path(__file__), ROOT / "tests" / "unit" / "test_config.py"}
    names: set[str] = set()
    for directory, subdirectories, files in os.walk(ROOT):
        subdirectories[:] = [name for name in subdirectories
                             if name not in (".git", ".venv", "node_modules", "__pycache__")
                             and not name.endswith(("_cache", ".egg-info"))]
        for file in files:
            path = Path(directory, file)
            if path in deliberate_mistakes or path.suffix in (".pyc", ".png", ".svg"):
                continue
            try:
                names.update(pattern.findall(path.read_text(errors="ignore")))
            except OSError:
                continue
    assert {"REPLICATOR_METRICS_PORT", "REPLICATOR_SOURCE_TABLE"} <= names  # the scan works
    assert unknown_variables(dict.fromkeys(names, "x"), env_file=None) == []
    assert not OTHER_VARIABLES & {env_name(name) for name in Settings.model_fields}


# -- item 5: flags are exact, agree with each other, and errors name them ---------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--writ", "4"], "unrecognized arguments: --writ 4 (did you mean --writers?); "
         "see replicator run --help"),
        (["--source_table", "x"], "unrecognized arguments: --source_table x (did you mean "
         "--source-table?); see replicator run --help"),
        (["status", "--js"], "unrecognized arguments: --js (did you mean --json?); "
         "see replicator status --help"),
        (["verify", "--rep"], "unrecognized arguments: --rep (did you mean --repair?); "
         "see replicator verify --help"),
        (["--no-such-flag", "x"], "unrecognized arguments: --no-such-flag x; "
         "see replicator run --help"),
        (["demo", "--writers", "3"], "unrecognized arguments: --writers 3; "
         "see replicator demo --help"),
    ],
)
def test_no_abbreviated_or_unknown_flag(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str],
    expected: str,
) -> None:
    assert error_of(capsys, *argv) == expected


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--cloudwatch", "true", "--dontPublishCloudwatch"],
         "--cloudwatch true and --dontPublishCloudwatch both set REPLICATOR_CLOUDWATCH"),
        (["--batchSize", "100", "--get-records-limit", "200"],
         "--batchSize 100 and --get-records-limit 200 both set REPLICATOR_GET_RECORDS_LIMIT"),
        (["--sourceTable", "AAA", "--source-table", "BBB"],
         "--sourceTable AAA and --source-table BBB both set REPLICATOR_SOURCE_TABLE"),
        (["--writers", "3", "status", "--writers", "4"],
         "--writers 3 and --writers 4 both set REPLICATOR_WRITERS"),
        (["--parentShardPollIntervalMillis", "1500", "--coordinator-interval", "2"],
         "--parentShardPollIntervalMillis 1500 and --coordinator-interval 2 both set "
         "REPLICATOR_COORDINATOR_INTERVAL"),
        (["--worker-id=a b", "--worker-id", "c"],
         "--worker-id 'a b' and --worker-id c both set REPLICATOR_WORKER_ID"),
    ],
)
def test_two_flags_for_one_setting_with_different_values(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str],
    expected: str,
) -> None:
    assert error_of(capsys, *argv) == f"{expected}, to different values: give one of them"


@pytest.mark.parametrize(
    ("argv", "setting", "value"),
    [
        (["--sourceTable", "AAA", "--source-table", "AAA"], "source_table", "AAA"),
        (["--cloudwatch", "false", "--dontPublishCloudwatch"], "cloudwatch", False),
        (["--batchSize", "100", "--get-records-limit", "100"], "get_records_limit", 100),
        (["--parentShardPollIntervalMillis", "1500", "--coordinator-interval", "1.5"],
         "coordinator_interval", 1.5),
        (["--writers", "4", "--writers=4"], "writers", 4),
    ],
)
def test_the_same_value_twice_is_fine(
    env: pytest.MonkeyPatch, ran: list[tuple[str, Settings, dict[str, Any]]],
    argv: list[str], setting: str, value: Any,
) -> None:
    assert cli.main(argv) == 0
    ((_, settings, _),) = ran
    assert getattr(settings, setting) == value


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--batchSize", "abc"], "--batchSize: Input should be a valid integer, unable to "
         "parse string as an integer, got 'abc'"),
        (["--get-records-limit", "5000"], "--get-records-limit: Input should be less than or "
         "equal to 1000, got '5000'"),
        (["--writers", "0"], "--writers: Input should be greater than or equal to 1, got '0'"),
        (["--source-endpoint", "localhost:8000"], "--source-endpoint: must be a URL such as "
         "http://127.0.0.1:8000 or https://dynamodb.eu-west-1.amazonaws.com, "
         "got 'localhost:8000'"),
        (["--cloudwatch", "maybe"], "--cloudwatch: Input should be a valid boolean, unable to "
         "interpret input, got 'maybe'"),
        (["--taskName", "bad name!"], "--taskName: String should match pattern "
         "'^[A-Za-z0-9_.-]+$', got 'bad name!'"),
        (["--parentShardPollIntervalMillis", "soon"],
         "--parentShardPollIntervalMillis: 'soon' is not a number of milliseconds"),
        (["--parentShardPollIntervalMillis", "0"],
         "--parentShardPollIntervalMillis: Input should be greater than 0, got '0'"),
        # A check across settings names the flags the user typed, the variables else.
        (["--lease-renew-interval", "20"], "--lease-renew-interval must be shorter than "
         "REPLICATOR_LEASE_DURATION (a third of it is usual)"),
        (["--destinationTable", "orders"], "the destination is the source table itself: "
         "change --destinationTable, REPLICATOR_DESTINATION_REGION or "
         "REPLICATOR_DESTINATION_ENDPOINT"),
    ],
)
def test_an_error_about_a_flag_names_the_flag(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str],
    expected: str,
) -> None:
    assert error_of(capsys, *argv) == expected


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("REPLICATOR_GET_RECORDS_LIMIT", "abc", "REPLICATOR_GET_RECORDS_LIMIT "
         "(--get-records-limit) Input should be a valid integer, unable to parse string as "
         "an integer, got 'abc'"),
        ("REPLICATOR_LOG_LEVEL", "loud", "REPLICATOR_LOG_LEVEL (--log-level) Input should be "
         "'debug', 'info', 'warning' or 'error', got 'loud'"),
        ("REPLICATOR_LEASE_RENEW_INTERVAL", "20", "REPLICATOR_LEASE_RENEW_INTERVAL must be "
         "shorter than REPLICATOR_LEASE_DURATION (a third of it is usual)"),
    ],
)
def test_an_error_about_a_variable_names_the_variable(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str,
    expected: str,
) -> None:
    env.setenv(variable, value)
    assert error_of(capsys, "status") == expected


def test_a_flag_overrides_a_bad_variable(
    env: pytest.MonkeyPatch, ran: list[tuple[str, Settings, dict[str, Any]]]
) -> None:
    env.setenv("REPLICATOR_WRITERS", "abc")
    assert cli.main(["--writers", "5"]) == 0
    assert ran[0][1].writers == 5


# -- item 6: commands, their help, the version ----------------------------------------


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["help"], ["--writers", "3", "-h"]])
def test_the_top_level_help_lists_the_commands_and_exit_codes(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    text = help_of(capsys, *argv)
    assert text.startswith("usage: replicator [COMMAND] [SETTINGS]\n")
    lines = text.splitlines()
    for command in [*parsers.COMMANDS, "help"]:
        (line,) = [line for line in lines if line.startswith(f"  {command} ")]
        following = lines[lines.index(line) + 1]
        assert not following.startswith("   "), f"{command}: more than one line"
    assert "(the default)" in next(line for line in lines if line.startswith("  run "))
    assert "--source-table" not in text  # the settings are each command's
    codes = text[text.index("exit codes:"):]
    for code in ("0", "1", "2", "3", "4", "5", "130", "143"):
        assert re.search(rf"^  {code} +\S", codes, flags=re.MULTILINE), code
    assert "--version" in text


def test_the_exit_codes_of_the_help_are_the_readmes() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Exit codes"):]
    section = section[:section.index("\n### ")]
    documented = set(re.findall(r"^\| (\d+) \|", section, flags=re.MULTILINE))
    assert documented == {code for code, _ in parsers.EXIT_CODES}


def test_the_top_level_help_lines_fit_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    for line in help_of(capsys, "--help").splitlines():
        assert len(line) <= 79, line


@pytest.mark.parametrize(("command", "own"), [("status", "--json"), ("verify", "--repair")])
def test_a_commands_help_shows_its_own_options_then_the_settings_grouped(
    capsys: pytest.CaptureFixture[str], command: str, own: str
) -> None:
    text = help_of(capsys, command, "--help")
    assert text == help_of(capsys, "help", command)
    assert text.startswith(f"usage: replicator {command} [{own}] [--destination NAME] "
                           "[SETTINGS]\n")
    headings = [f"\n{title}:\n" for title in GROUPS]
    positions = [text.index(heading) for heading in headings]
    assert text.index(own) < positions[0]
    assert text.index("--destination NAME ") < positions[0]
    assert positions == sorted(positions)
    for title, names in GROUPS.items():
        start = text.index(f"\n{title}:\n")
        section = text[start:text.index("\n\n", start + 1)]
        for name in names:
            assert f"\n  {flag_name(name)} " in section, (title, name)
            assert env_name(name) in " ".join(section.split()), (title, name)
    # The Java tool's flags: absent from the groups, listed once at the end.
    tail = text[text.index("The Java cross-region replication tool's flags"):]
    for flag in JAVA_FLAGS:
        assert text.count(flag) == 1 + (flag == "--dontPublishCloudwatch"), flag
        assert flag in tail


def test_the_enum_settings_show_their_choices(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(capsys, "run", "--help")
    for name, choices in ENUMS.items():
        assert f"{flag_name(name)} {{{','.join(choices)}}}" in text, name
        description = Settings.model_fields[name].description or ""
        assert all(choice in description for choice in choices), name
    assert set(ENUMS) >= {"initial_position", "bootstrap", "on_trimmed_data", "log_level",
                          "log_format"}


@pytest.mark.parametrize("name", sorted(ENUMS))
def test_an_invalid_choice_is_one_line_naming_the_flag_and_the_choices(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    choices = ", ".join(repr(choice) for choice in ENUMS[name])
    assert error_of(capsys, "copy", flag_name(name), "BOGUS") == (
        f"argument {flag_name(name)}: invalid choice: 'BOGUS' (choose from {choices}); "
        "see replicator copy --help")


def test_the_demo_keeps_its_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    from replicator.dev.demo import DEFAULT_RATE

    text = help_of(capsys, "demo", "--help")
    assert text.startswith("usage: replicator demo [--seconds SECONDS] [--rate N] [--keys N]")
    assert f"source writes per second (default: {DEFAULT_RATE})" in text
    assert DEFAULT_RATE == 40
    assert "--keys N" in text
    assert "--source-table" not in text
    assert error_of(capsys, "demo", "--rate", "0") == (
        "argument --rate: must be a whole number above 0, got '0'; see replicator demo --help")


@pytest.mark.parametrize("argv", [["--version"], ["status", "--version"],
                                  ["--version", "verify"], ["demo", "--version"]])
def test_the_version(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert help_of(capsys, *argv) == f"replicator {importlib.metadata.version('replicator')}\n"


def test_the_version_of_a_source_tree_that_is_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    with (ROOT / "pyproject.toml").open("rb") as file:
        expected = tomllib.load(file)["project"]["version"]
    assert replicator.package_version() == expected


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["stauts"], "unknown command 'stauts' (did you mean status?): the commands are run, "
         "copy, verify, status, check, dead-letters, demo and help; see replicator --help"),
        (["--sourceTable", "TTT", "verfy"], "unknown command 'verfy' (did you mean verify?): "
         "the commands are run, copy, verify, status, check, dead-letters, demo and help; "
         "see replicator --help"),
        (["orders"], "unknown command 'orders': the commands are run, copy, verify, status, "
         "check, dead-letters, demo and help; see replicator --help"),
        (["status", "run"], "unrecognized arguments: run; see replicator status --help"),
        (["help", "sttus"], "unknown command 'sttus' (did you mean status?): the commands are "
         "run, copy, verify, status, check, dead-letters, demo; see replicator --help"),
    ],
)
def test_an_unknown_command(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str],
    expected: str,
) -> None:
    assert error_of(capsys, *argv) == expected


# -- item 6: flags in any position -------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "command", "rest"),
    [
        ([], None, []),
        (["status"], "status", []),
        (["--sourceTable", "T", "status"], "status", ["--sourceTable", "T"]),
        (["--source-table", "status"], None, ["--source-table", "status"]),  # a value
        (["--source-table=x", "verify", "--repair"], "verify", ["--source-table=x", "--repair"]),
        (["--json", "status", "--writers", "2"], "status", ["--json", "--writers", "2"]),
        (["--dontPublishCloudwatch", "copy"], "copy", ["--dontPublishCloudwatch"]),
        (["--rate", "5", "demo"], "demo", ["--rate", "5"]),
        (["--no-such-flag", "x"], None, ["--no-such-flag", "x"]),  # argparse names the flag
        (["help", "status"], "help", ["status"]),
        (["status", "run"], "status", ["run"]),
    ],
)
def test_the_command_word_is_the_first_word_that_is_no_flags_value(
    argv: list[str], command: str | None, rest: list[str]
) -> None:
    assert parsers.split_command(argv) == (command, rest)


def test_the_command_split_knows_which_flags_take_a_value() -> None:
    flags = parsers._flags()
    for command in parsers.COMMANDS:
        parser = parsers._command_parser(command)
        for action in parser._actions:
            for flag in action.option_strings:
                takes_value = action.nargs != 0
                assert flags[flag] == takes_value, (command, flag)
                known = parsers.split_command([flag, *(["v"] if takes_value else []), command])
                assert known[0] == command, (command, flag)


@pytest.mark.parametrize(
    ("argv", "command", "options", "table"),
    [
        ([], "service", {"copy_only": False}, "orders"),
        (["run"], "service", {"copy_only": False}, "orders"),
        (["--sourceTable", "flagged", "copy"], "service", {"copy_only": True}, "flagged"),
        (["--sourceTable", "flagged", "status"], "status",
         {"as_json": False, "destination": None}, "flagged"),
        (["--json", "--sourceTable", "flagged", "status"], "status",
         {"as_json": True, "destination": None}, "flagged"),
        (["status", "--sourceTable", "flagged", "--json"], "status",
         {"as_json": True, "destination": None}, "flagged"),
        (["--repair", "verify", "--source-table", "flagged"], "verify",
         {"repair": True, "destination": None}, "flagged"),
        (["--destination", "eu", "verify", "--source-table", "flagged"], "verify",
         {"repair": False, "destination": "eu"}, "flagged"),
        # A flag's value is no command: a table named status, replicated.
        (["--source-table", "status"], "service", {"copy_only": False}, "status"),
    ],
)
def test_flags_before_or_after_the_command(
    env: pytest.MonkeyPatch, ran: list[tuple[str, Settings, dict[str, Any]]],
    argv: list[str], command: str, options: dict[str, Any], table: str,
) -> None:
    assert cli.main(argv) == 0
    ((name, settings, given),) = ran
    assert (name, given, settings.source_table) == (command, options, table)


# -- the groups and the parser's settings -----------------------------------------------


def test_every_setting_is_in_one_group_in_the_order_of_the_model() -> None:
    grouped = [name for names in GROUPS.values() for name in names]
    assert grouped == list(Settings.model_fields)


def test_every_setting_has_one_flag_that_takes_a_value() -> None:
    parser = parsers._command_parser("run")
    for name in Settings.model_fields:
        action = parser._option_string_actions[flag_name(name)]
        assert action.nargs is None, name
        assert action.help not in (None, argparse.SUPPRESS), name


# -- end to end: python -m replicator --------------------------------------------------


def replicator_process(*argv: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("REPLICATOR_")}
    return subprocess.run([sys.executable, "-m", "replicator", *argv], cwd=tmp_path,
                          env=environment, capture_output=True, text=True, timeout=60,
                          check=False)


def test_help_version_and_a_mistake_of_a_real_process(tmp_path: Path) -> None:
    top = replicator_process("--help", tmp_path=tmp_path)
    assert (top.returncode, top.stderr) == (0, "")
    assert all(f"\n  {command} " in top.stdout for command in parsers.COMMANDS)

    status_help = replicator_process("--sourceTable", "T", "status", "--help",
                                     tmp_path=tmp_path)
    assert (status_help.returncode, status_help.stderr) == (0, "")
    assert status_help.stdout.startswith(
        "usage: replicator status [--json] [--destination NAME] [SETTINGS]")

    version = replicator_process("--version", tmp_path=tmp_path)
    assert (version.returncode, version.stdout) == (0, f"replicator {replicator.__version__}\n")

    mistake = replicator_process("--sourceTable", "T", "stauts", tmp_path=tmp_path)
    assert mistake.returncode == 2
    assert mistake.stderr.startswith(PREFIX + "unknown command 'stauts' (did you mean status?)")
    assert mistake.stderr.count("\n") == 1
    assert mistake.stdout == ""
