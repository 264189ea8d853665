"""``replicator`` / ``python -m replicator``: parse the command line and run a command.

Commands: ``run`` (the default: copy the table when needed, then replicate
for ever), ``copy`` (only the bootstrap copy), ``verify`` (compare the two
tables, ``--repair`` what differs), ``status`` (the task's shards, owners and
checkpoints) and ``demo`` (an end-to-end replication between two local moto
servers). Every error a user can cause
ends in one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, NoReturn

import pydantic
import structlog

from replicator.config import JAVA_FLAGS, Settings, env_name, flag_name
from replicator.errors import ConfigError, ReplicatorError
from replicator.logs import configure_logging

COMMANDS = ("run", "copy", "verify", "status", "demo")


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one ``ConfigError`` line instead of usage text."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message}; see {self.prog} --help")


def _settings_parser(prog: str) -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description="Replicate a DynamoDB table into another from its stream, for ever. "
        "Every setting is a flag and an environment variable; a flag wins over the "
        "environment, which wins over a .env file in the working directory.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The Java cross-region replication tool's flags are accepted too: "
        + " ".join(JAVA_FLAGS),
    )
    for name, field in Settings.model_fields.items():
        default = "required" if field.is_required() else field.default
        if default is None:
            default = "derived, see above"
        parser.add_argument(
            flag_name(name),
            dest=name,
            metavar="VALUE",
            default=argparse.SUPPRESS,
            help=f"{field.description} [{env_name(name)}; default: {default}]",
        )
    for flag, (name, convert) in JAVA_FLAGS.items():
        if convert is None:
            parser.add_argument(
                flag, dest=name, action="store_const", const="false",
                default=argparse.SUPPRESS, help=argparse.SUPPRESS,
            )
        else:
            dest = f"java_millis_{name}" if convert == "millis" else name
            parser.add_argument(flag, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _given(namespace: argparse.Namespace) -> dict[str, Any]:
    given: dict[str, Any] = {}
    for key, value in vars(namespace).items():
        if key.startswith("java_millis_"):
            name = key.removeprefix("java_millis_")
            try:
                given[name] = float(value) / 1000.0
            except ValueError:
                raise ConfigError(
                    f"--parentShardPollIntervalMillis: {value!r} is not a number of milliseconds"
                ) from None
        else:
            given[key] = value
    return given


def load_settings(overrides: dict[str, Any], env_file: str | None = ".env") -> Settings:
    """Build the settings, turning validation errors into one ``ConfigError`` line."""
    try:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except pydantic.ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def _one_line(exc: pydantic.ValidationError) -> str:
    problems = []
    for error in exc.errors():
        location = error["loc"]
        if not location:  # raised by the model validator: the message says it all
            problems.append(str(error["msg"]).removeprefix("Value error, "))
            continue
        name = str(location[0])
        where = f"{env_name(name)} ({flag_name(name)})"
        if error["type"] == "missing":
            problems.append(f"{where} is required: set it in the environment or pass the flag")
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{where} {message}, got {error.get('input')!r}")
    return "; ".join(problems)


def _demo_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="replicator demo",
        description="Start two local moto servers, replicate a live workload from one to "
        "the other, and compare the tables at the end.",
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="workload duration")
    parser.add_argument("--rate", type=int, default=40, help="source writes per second")
    parser.add_argument("--keys", type=int, default=400, help="distinct item keys")
    return parser


def run_async(coroutine: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop where it is installed, else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return int(uvloop.run(coroutine))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args and args[0] in COMMANDS else "run"
    try:
        if command == "demo":
            from replicator.demo import run_demo

            options = _demo_parser().parse_args(args)
            return run_async(run_demo(seconds=options.seconds, rate=options.rate,
                                      keys=options.keys))
        if command == "copy":
            parser = _settings_parser("replicator copy")
            parser.description = (
                "Copy the source table into the destination (a parallel Scan), record "
                "where the stream must start so that nothing written meanwhile is missed, "
                "and exit. A copy that was interrupted resumes where it stopped."
            )
            settings = load_settings(_given(parser.parse_args(args)))
            from replicator.service import run_service

            return run_async(run_service(settings, copy_only=True))
        if command == "verify":
            parser = _settings_parser("replicator verify")
            parser.description = (
                "Compare the source and destination tables (parallel scans); exit 0 only "
                "when they are equal. --repair rewrites what differs from the source."
            )
            parser.add_argument("--repair", action="store_true", default=argparse.SUPPRESS,
                                help="write missing and different items, delete extra ones")
            namespace = parser.parse_args(args)
            repair = bool(vars(namespace).pop("repair", False))
            settings = load_settings(_given(namespace))
            configure_logging(settings.log_level, settings.log_format, stream=sys.stderr)
            from replicator.verify import run_verify

            return run_async(run_verify(settings, repair=repair))
        if command == "status":
            parser = _settings_parser("replicator status")
            parser.description = "Show the task's shards, their owners and checkpoints, and " \
                "each worker's share, from the checkpoint table."
            parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                                help="print JSON instead of a table")
            namespace = parser.parse_args(args)
            as_json = bool(vars(namespace).pop("json", False))
            settings = load_settings(_given(namespace))
            from replicator.status import run_status

            return run_async(run_status(settings, as_json=as_json))
        namespace = _settings_parser("replicator [run]").parse_args(args)
        settings = load_settings(_given(namespace))
        from replicator.service import run_service

        return run_async(run_service(settings))
    except ReplicatorError as exc:
        print(f"replicator: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: keep the traceback in the log, one line on stderr
        structlog.get_logger("replicator").exception("unexpected error")
        print(f"replicator: internal error: {type(exc).__name__}: {exc} "
              "(the log has the traceback)", file=sys.stderr)
        return 1


def entry() -> None:
    sys.exit(main())
