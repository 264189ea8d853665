"""TODO"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, get_args, get_origin

from pydantic.fields import FieldInfo

from replicator import __version__
from replicator.commands.settings import (
    GIVEN,
    FlagValue,
    closest,
)
from replicator.config import ENV_PREFIX, GROUPS, JAVA_FLAGS, Settings, env_name, flag_name
from replicator.errors import ConfigError

PROG = "replicator"


WIDTH = 79


VERSION = f"{PROG} {__version__}"


@dataclass(frozen=True)
class Command:
    """What the help says of a command."""

    summary: str  # its line in ``replicator --help``
    description: str  # the head of its own ``--help``
    usage: str


COMMANDS: dict[str, Command] = {
    "run": Command(
        "copy when needed, then replicate the stream (the default)",
        "Replicate a DynamoDB table into another from its stream, for ever: copy the "
        "table first when needed (see --bootstrap), then apply every change. SIGTERM or "
        "SIGINT finishes the writes in flight, checkpoints and exits 0. run is the "
        "default command: replicator with settings and no command runs.",
        f"{PROG} [run] [SETTINGS]",
    ),
    "copy": Command(
        "only the bootstrap copy of the source table, then exit",
        "Copy the source table into the destination (a parallel Scan), record where the "
        "stream must start so that nothing written meanwhile is missed, and exit. A copy "
        "that was interrupted resumes where it stopped.",
        f"{PROG} copy [SETTINGS]",
    ),
    "verify": Command(
        "compare the tables (exit 5 if they differ); --repair fixes them",
        "Compare the source and destination tables (parallel scans); exit 0 when they are "
        "equal, 5 when they differ. --repair rewrites what differs from the source. With "
        "a topology (--config), every destination is compared with its source, or only "
        "the one --destination names.",
        f"{PROG} verify [--repair] [--destination NAME] [SETTINGS]",
    ),
    "status": Command(
        "the task's shards, owners, checkpoints and workers' shares",
        "Show the task's shards, their owners and checkpoints, and each worker's share, "
        "from the checkpoint table. With a topology (--config): each source's shards, "
        "with the checkpoint of each destination (or of the one --destination names) "
        "and whether it streams or is still to be copied.",
        f"{PROG} status [--json] [--destination NAME] [SETTINGS]",
    ),
    "check": Command(
        "check a topology file (--config FILE) and every table it names",
        "Read a topology file (TOML: the task, and each source table with its "
        "destinations), check every key and rule of it, then every table it names (the "
        "sources' streams, the destinations' key schemas, the checkpoint table), without "
        "creating or writing anything, and print its paths. Exit 0 when all is well, 2 "
        "with a one-line error naming the problem otherwise.",
        f"{PROG} check --config FILE",
    ),
    "dead-letters": Command(
        "list the records destinations refused, or replay them",
        "The records a destination refused for good, with on_poison dead-letter, are kept "
        "in the task's dead-letter table (TASK-dead-letters). list shows them; replay "
        "applies each one again, once what refused it is fixed, and removes it when "
        "applied: it reads the item from the source, so that no older image than the "
        "destination's is written. replay exits 3 when some letters are kept.",
        f"{PROG} dead-letters list|replay [--json] [--destination NAME] [SETTINGS]",
    ),
    "demo": Command(
        "a live replication between two local moto servers, end to end",
        "Start two local moto servers, replicate a live workload from one to the other, "
        "and compare the tables at the end.",
        f"{PROG} demo [--seconds SECONDS] [--rate N] [--keys N]",
    ),
}


DEFAULT_COMMAND = "run"
HELP_COMMAND = "help"
HELP_SUMMARY = "this help, or a command's: replicator help status"


EXIT_CODES = (
    ("0", "a clean stop (SIGTERM, SIGINT), a finished copy, verify: equal tables"),
    ("1", "an unexpected error (the log has its traceback)"),
    ("2", "bad input (setting, flag, command) or a failed start-up check"),
    ("3", "a poison record: the destination refuses a stream record (dead-letters replay: "
          "some letters are kept)"),
    ("4", "trimmed data: records left the stream before they were applied"),
    ("5", "verify: the tables differ"),
    ("130", "verify or status stopped by SIGINT; run: a second signal"),
    ("143", "verify or status stopped by SIGTERM; run: a shutdown past its deadline"),
)


SETTINGS_NOTE = (
    "Every setting is a flag and an environment variable (in brackets); a flag wins over "
    "the environment, which wins over a .env file in the working directory. A "
    f"{ENV_PREFIX}* variable that is no setting is an error. Flags may come before or "
    "after the command."
)


#: The commands' own flags, and whether each takes a value. With the settings' flags,
#: they tell a flag's value from the command word (a test checks the parsers agree).
OWN_FLAGS = {"-h": False, "--help": False, "--version": False, "--json": False,
             "--repair": False, "--seconds": True, "--rate": True, "--keys": True,
             "--config": True, "--destination": True}


#: Metavars of the settings that are neither choices nor named by their suffix.
METAVARS = {"task_name": "NAME", "worker_id": "ID", "metrics_port": "PORT",
            "metrics_host": "ADDRESS"}


SUFFIX_METAVARS = {"_endpoint": "URL", "_region": "REGION", "_profile": "PROFILE",
                   "_table": "TABLE", "_interval": "SECONDS", "_timeout": "SECONDS",
                   "_duration": "SECONDS"}


def _wrap(text: str) -> str:
    return textwrap.fill(text, WIDTH)


def _table(rows: Sequence[tuple[str, str]]) -> str:
    """Two columns, the second wrapped under itself."""
    width = max(len(name) for name, _ in rows) + 2
    return "\n".join(
        textwrap.fill(text, WIDTH, initial_indent=f"  {name:<{width}}",
                      subsequent_indent=" " * (width + 2))
        for name, text in rows
    )


class _Exit(Exception):
    """argparse's request to end after --help or --version: ``main`` returns ``status``."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one ``ConfigError`` line instead of usage text, and
    its exits (after --help, --version) as ``_Exit``, so that ``main`` returns a code."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message}; see {self.prog} --help")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            print(message, end="", file=sys.stderr)
        raise _Exit(status)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written (they are wrapped here); help at column 30."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=WIDTH)


def _parser(
    prog: str, *, usage: str | None, description: str, epilog: str | None = None
) -> _Parser:
    parser = _Parser(prog=prog, usage=usage, description=description, epilog=epilog,
                     formatter_class=_Formatter, allow_abbrev=False, add_help=False)
    parser.add_argument("-h", "--help", action="help", help="show this help and exit")
    parser.add_argument("--version", action="version", version=VERSION,
                        help="show the version and exit")
    return parser


def _top_parser() -> _Parser:
    commands = [(name, command.summary) for name, command in COMMANDS.items()]
    description = "\n\n".join([
        _wrap("Keep a DynamoDB table copied into another, in another region or account, "
              "from the source table's stream."),
        "commands:\n" + _table([*commands, (HELP_COMMAND, HELP_SUMMARY)]),
    ])
    epilog = "\n\n".join([
        _wrap("run is the default command: replicator with settings and no command runs. "
              "Settings are flags, before or after the command, REPLICATOR_* environment "
              "variables, or keys of a .env file in the working directory; replicator run "
              "--help lists them. replicator COMMAND --help shows a command's own options, "
              "then the settings."),
        "exit codes:\n" + _table(EXIT_CODES),
    ])
    return _parser(PROG, usage=f"{PROG} [COMMAND] [SETTINGS]\n       {PROG} COMMAND --help",
                   description=description, epilog=epilog)


class _SettingFlag(argparse.Action):
    """Collects every flag given for a setting, in order, in ``namespace.settings_given``:
    argparse would keep only the last, and the error of a bad value must name the flag
    the user typed, not only the setting's variable."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, millis: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.millis = millis

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        flag = option_string or self.dest
        typed = None if self.nargs == 0 else str(values)
        value: Any = self.const if typed is None else typed
        if self.millis:
            try:
                value = float(str(typed)) / 1000.0
            except ValueError:
                raise ConfigError(
                    f"{flag}: {typed!r} is not a number of milliseconds") from None
        given: list[FlagValue] = namespace.__dict__.setdefault(GIVEN, [])
        given.append(FlagValue(self.dest, flag, typed, value))


def _choices(field: FieldInfo) -> tuple[str, ...] | None:
    if get_origin(field.annotation) is Literal:
        return tuple(str(choice) for choice in get_args(field.annotation))
    return None


def _metavar(name: str, field: FieldInfo) -> str | None:
    if _choices(field) is not None:
        return None  # argparse shows the choices: {TRIM_HORIZON,LATEST}
    if field.annotation in (bool, bool | None):
        return "{true,false}"
    if name in METAVARS:
        return METAVARS[name]
    for suffix, metavar in SUFFIX_METAVARS.items():
        if name.endswith(suffix):
            return metavar
    return "N" if field.annotation in (int, float, int | None, float | None) else "VALUE"


def _setting_help(name: str, field: FieldInfo) -> str:
    description = field.description or ""
    if field.is_required():
        where = f"{env_name(name)}; required"
    elif field.default is None:
        # The description says what an unset setting means, as "(default: ...)" or not.
        where = env_name(name)
    else:
        where = f"{env_name(name)}; default: {field.default}"
    return f"{description} [{where}]".replace("%", "%%")


def _java_epilog() -> str:
    return _wrap("The Java cross-region replication tool's flags are accepted too: "
                 + " ".join(JAVA_FLAGS) + ".")


def _settings_parser(command: str) -> _Parser:
    """The parser of a command that takes the settings: its own options, which the
    caller adds, come first in its help, then the settings by subject."""
    spec = COMMANDS[command]
    parser = _parser(f"{PROG} {command}", usage=spec.usage,
                     description=_wrap(spec.description) + "\n\n" + _wrap(SETTINGS_NOTE),
                     epilog=_java_epilog())
    for title, names in GROUPS.items():
        group = parser.add_argument_group(title)
        for name in names:
            field = Settings.model_fields[name]
            group.add_argument(
                flag_name(name), dest=name, action=_SettingFlag, default=argparse.SUPPRESS,
                choices=_choices(field), metavar=_metavar(name, field),
                help=_setting_help(name, field),
            )
    for flag, (name, convert) in JAVA_FLAGS.items():
        if convert is None:  # --dontPublishCloudwatch
            parser.add_argument(flag, dest=name, action=_SettingFlag, nargs=0, const=False,
                                default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        else:
            parser.add_argument(flag, dest=name, action=_SettingFlag,
                                millis=convert == "millis", default=argparse.SUPPRESS,
                                help=argparse.SUPPRESS)
    return parser


def _command_parser(command: str) -> _Parser:
    if command == "demo":
        return _demo_parser()
    if command == "check":
        return _check_parser()
    parser = _settings_parser(command)
    if command == "verify":
        parser.add_argument("--repair", action="store_true",
                            help="write missing and different items, delete extra ones, "
                            "then compare again")
    if command == "dead-letters":
        parser.add_argument("action", choices=("list", "replay"),
                            help="list the dead letters, or replay them")
    if command in ("status", "dead-letters"):
        parser.add_argument("--json", action="store_true",
                            help="print JSON instead of a table")
    if command in ("verify", "status", "dead-letters"):
        parser.add_argument("--destination", metavar="NAME",
                            help="only this destination of the topology (--config), by "
                            "its name; every destination by default")
    return parser


def _positive(kind: type[int] | type[float]) -> Any:
    noun = "a whole number" if kind is int else "a number"

    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0:  # not a number, or nan
            raise argparse.ArgumentTypeError(f"must be {noun} above 0, got {text!r}")
        return value

    return convert


def _check_parser() -> _Parser:
    spec = COMMANDS["check"]
    parser = _parser(f"{PROG} check", usage=spec.usage, description=_wrap(spec.description))
    parser.add_argument("--config", required=True, metavar="FILE",
                        help="the topology file (TOML)")
    return parser


def _demo_parser() -> _Parser:
    from replicator.dev.demo import DEFAULT_RATE

    spec = COMMANDS["demo"]
    parser = _parser(f"{PROG} demo", usage=spec.usage, description=_wrap(spec.description))
    parser.add_argument("--seconds", type=_positive(float), default=8.0, metavar="SECONDS",
                        help="how long the live workload writes (default: %(default)s)")
    parser.add_argument("--rate", type=_positive(int), default=DEFAULT_RATE, metavar="N",
                        help="source writes per second (default: %(default)s)")
    parser.add_argument("--keys", type=_positive(int), default=400, metavar="N",
                        help="distinct item keys the workload writes (default: %(default)s)")
    return parser


def _flags() -> dict[str, bool]:
    """Every flag of every command, and whether it takes a value."""
    flags = {flag_name(name): True for name in Settings.model_fields}
    flags.update({flag: convert is not None for flag, (_, convert) in JAVA_FLAGS.items()})
    return {**flags, **OWN_FLAGS}


def split_command(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """The command word, wherever it stands, and the other arguments in their order.

    The command is the first word that is neither a flag nor a flag's value. None when
    there is none, or when a word that is no command follows a flag no parser knows
    (which may be that flag's value: argparse then names the flag).
    """
    flags = _flags()
    unknown_flag = False
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            break
        if arg.startswith("-") and arg != "-":
            name, equals, _ = arg.partition("=")
            unknown_flag = unknown_flag or name not in flags
            index += 2 if flags.get(name) and not equals else 1
            continue
        if arg in COMMANDS or arg == HELP_COMMAND:
            return arg, [*args[:index], *args[index + 1:]]
        if unknown_flag:
            return None, list(args)
        meant = closest(arg, [*COMMANDS, HELP_COMMAND])
        hint = f" (did you mean {meant}?)" if meant else ""
        raise ConfigError(f"unknown command {arg!r}{hint}: the commands are "
                          f"{', '.join(COMMANDS)} and {HELP_COMMAND}; see {PROG} --help")
    return None, list(args)


def _parse(parser: _Parser, args: Sequence[str]) -> argparse.Namespace:
    """``parse_args``, but an unknown flag's error names the flag it most likely means."""
    namespace, extras = parser.parse_known_args(args)
    if extras:
        # argparse has no public list of a parser's flags. They are compared without
        # the dashes, which every flag shares.
        options = [flag[2:] for flag in parser._option_string_actions if flag.startswith("--")]
        meant = []
        for extra in extras:
            if extra.startswith("--"):
                option = closest(extra[2:].partition("=")[0], options)
                if option is not None:
                    meant.append(f"--{option}")
        hint = f" (did you mean {', '.join(meant)}?)" if meant else ""
        parser.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
    return namespace
