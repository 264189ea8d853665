"""``replicator`` / ``python -m replicator``: parse the command line and run a command.

Commands: ``run`` (the default: copy the table when needed, then replicate
for ever), ``copy`` (only the bootstrap copy), ``verify`` (compare the two
tables, ``--repair`` what differs), ``status`` (the task's shards, owners and
checkpoints), ``demo`` (an end-to-end replication between two local moto
servers) and ``help``.

Flags may come before or after the command word: the first word that is not a
flag's value names the command. Every setting's flag takes a value, and two
flags for one setting must agree, since argparse alone would let the last one
win. Every error a user can cause ends in one line on stderr and a non-zero
exit, never a traceback: argparse's errors are raised as ``ConfigError``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

import structlog

from replicator.cli.parsers import (
    COMMANDS,
    DEFAULT_COMMAND,
    HELP_COMMAND,
    PROG,
    _command_parser,
    _Exit,
    _parse,
    _top_parser,
    split_command,
)
from replicator.commands.settings import (
    GIVEN,
    closest,
    load_settings,
    resolve_flags,
)
from replicator.config import Settings
from replicator.errors import ConfigError, ReplicatorError
from replicator.logs import configure_logging

# -- the settings' flags ---------------------------------------------------------------


def run_async(coroutine: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop where it is installed, else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return int(uvloop.run(coroutine))


def _help(args: Sequence[str]) -> int:
    """``replicator help [COMMAND]``."""
    topics = [arg for arg in args if not arg.startswith("-")]
    if len(topics) > 1:
        raise ConfigError(f"help takes one command at most, got {' '.join(topics)}; "
                          f"see {PROG} --help")
    if not topics:
        _top_parser().print_help()
        return 0
    if topics[0] not in COMMANDS:
        meant = closest(topics[0], COMMANDS)
        hint = f" (did you mean {meant}?)" if meant else ""
        raise ConfigError(f"unknown command {topics[0]!r}{hint}: the commands are "
                          f"{', '.join(COMMANDS)}; see {PROG} --help")
    _command_parser(topics[0]).print_help()
    return 0


def _run(command: str, args: Sequence[str]) -> int:
    namespace = _parse(_command_parser(command), args)
    if command == "demo":
        from replicator.dev.demo import run_demo

        return run_async(run_demo(seconds=namespace.seconds, rate=namespace.rate,
                                  keys=namespace.keys))
    if command == "check":
        configure_logging("warning", "auto", stream=sys.stderr)
        from replicator.commands.check import run_check

        return run_async(run_check(namespace.config))
    settings = settings_from(namespace)
    if command == "verify":
        configure_logging(settings.log_level, settings.log_format, stream=sys.stderr)
        from replicator.commands.verify import run_verify

        return run_async(run_verify(settings, repair=namespace.repair,
                                    destination=namespace.destination))
    if command == "status":
        from replicator.commands.status import run_status

        return run_async(run_status(settings, as_json=namespace.json,
                                    destination=namespace.destination))
    if command == "dead-letters":
        configure_logging(settings.log_level, settings.log_format, stream=sys.stderr)
        from replicator.commands.dead_letters import run_dead_letters

        return run_async(run_dead_letters(settings, namespace.action, as_json=namespace.json,
                                          destination=namespace.destination))
    from replicator.commands.process import run_service

    return run_async(run_service(settings, copy_only=command == "copy"))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        command, rest = split_command(args)
        if command == HELP_COMMAND:
            return _help(rest)
        if command is None:
            if "-h" in rest or "--help" in rest:
                _top_parser().print_help()
                return 0
            command = DEFAULT_COMMAND
        return _run(command, rest)
    except _Exit as exc:
        return exc.status
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
    code = main()
    # Everything is written and every connection closed: the interpreter's own
    # teardown (freeing every module's objects, a fraction of a second of CPU) is
    # skipped, so that on a loaded host it cannot push a stopping worker's exit past
    # the shutdown deadline its platform enforces.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def settings_from(namespace: argparse.Namespace, env_file: str | None = ".env") -> Settings:
    """The settings of a parsed command line, over the environment and ``env_file``."""
    overrides, flags = resolve_flags(vars(namespace).get(GIVEN, []))
    return load_settings(overrides, env_file, flags=flags)


def parse_settings(args: Sequence[str], env_file: str | None = ".env") -> Settings:
    """The settings ``replicator run ARGS`` would run with."""
    return settings_from(_parse(_command_parser(DEFAULT_COMMAND), args), env_file)
