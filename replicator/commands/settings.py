"""Settings from the environment, a .env file and flags: unknown names refused with the
closest real one, two flags for one setting checked, one-line errors."""

from __future__ import annotations

import difflib
import functools
import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pydantic
from dotenv import dotenv_values
from pydantic import TypeAdapter, ValidationError

from replicator.config import ENV_PREFIX, JAVA_FLAGS, OTHER_VARIABLES, Settings, env_name, flag_name
from replicator.errors import ConfigError

if TYPE_CHECKING:
    from replicator.topology import Topology

#: Where to find every setting's name, for a variable or flag that resembles none.
SETTINGS_LIST = "replicator run --help lists the settings"


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``word`` most likely misspells or abbreviates, if one is close."""
    candidates = list(candidates)
    started = [candidate for candidate in candidates if candidate.startswith(word)]
    if len(started) == 1:
        return started[0]
    matches = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _normalized(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def closest_setting(word: str) -> str | None:
    """The setting a misspelt variable name (without the prefix) or flag most likely means.

    Compared without case, dashes or underscores, so ``SOURCETABLE`` finds
    ``source_table``; the Java tool's flags count too (``BATCH_SIZE``: get_records_limit).
    """
    by_spelling = {_normalized(name): name for name in Settings.model_fields}
    by_spelling.update({_normalized(flag): name for flag, (name, _) in JAVA_FLAGS.items()})
    found = closest(_normalized(word), by_spelling)
    return None if found is None else by_spelling[found]


def unknown_variables(
    environ: Mapping[str, str], env_file: str | Path | None = ".env"
) -> list[str]:
    """One problem for each ``REPLICATOR_*`` name in ``environ`` or ``env_file`` that is
    no setting, naming the setting it most likely means.

    Names are compared without case, as pydantic-settings reads them; a .env key without
    the prefix is not ours to judge (``docker --env-file`` files hold AWS_* keys too).
    """
    accepted = {env_name(name) for name in Settings.model_fields} | OTHER_VARIABLES
    sources: list[tuple[str, Iterable[str]]] = [("in the environment", environ)]
    problems = []
    if env_file is not None and Path(env_file).is_file():
        try:
            sources.append((f"in {env_file}", dotenv_values(env_file, encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{env_file} cannot be read: {exc}")
    for where, names in sources:
        for name in sorted(names):
            if not name.upper().startswith(ENV_PREFIX) or name.upper() in accepted:
                continue
            meant = closest_setting(name[len(ENV_PREFIX):])
            if meant is None:
                problems.append(f"{name} {where} is not a setting and resembles none: "
                                f"{SETTINGS_LIST}")
            else:
                problems.append(f"{name} {where} is not a setting: did you mean "
                                f"{env_name(meant)}?")
    return problems


@functools.cache
def _adapter(name: str) -> TypeAdapter[Any]:
    field = Settings.model_fields[name]
    return TypeAdapter(Annotated[field.annotation, field])  # type: ignore[arg-type]


def parse_setting(name: str, value: Any) -> Any:
    """``value`` checked and converted as the setting ``name`` takes it, on its own.

    Raises ``ValueError`` with pydantic's reason (``Input should be ...``), so that a
    caller can name where the value came from, a flag for example.
    """
    try:
        return _adapter(name).validate_python(value)
    except ValidationError as exc:
        reasons = (str(error["msg"]).removeprefix("Value error, ") for error in exc.errors())
        raise ValueError("; ".join(reasons)) from None


@dataclass(frozen=True)
class FlagValue:
    """A setting's flag as the user typed it, and its value (the Java tool's
    --parentShardPollIntervalMillis already in seconds)."""

    setting: str
    flag: str
    typed: str | None  # None: a flag that takes no value
    value: Any

    def shown(self) -> str:
        return self.flag if self.typed is None else f"{self.flag} {shlex.quote(self.typed)}"


GIVEN = "settings_given"


def resolve_flags(given: Sequence[FlagValue]) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings the flags give, and the flag the user typed for each.

    Each value is checked on its own, so that its error names its flag. Two flags for
    one setting with different values are an error naming both; the same value twice
    is fine.
    """
    values: dict[str, Any] = {}
    first: dict[str, FlagValue] = {}
    problems = []
    for flag in given:
        try:
            value = parse_setting(flag.setting, flag.value)
        except ValueError as exc:
            typed = flag.value if flag.typed is None else flag.typed
            problems.append(f"{flag.flag}: {exc}, got {typed!r}")
            continue
        if flag.setting not in first:
            first[flag.setting], values[flag.setting] = flag, value
        elif values[flag.setting] != value:
            earlier = first[flag.setting]
            problems.append(
                f"{earlier.shown()} and {flag.shown()} both set {env_name(flag.setting)}, "
                "to different values: give one of them")
    if problems:
        raise ConfigError("; ".join(problems))
    return values, {name: flag.flag for name, flag in first.items()}


def load_settings(overrides: Mapping[str, Any], env_file: str | None = ".env", *,
                  flags: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``overrides`` (by setting name), the environment and
    ``env_file``, turning every problem into one ``ConfigError`` line.

    ``flags`` names the flag that gave each override, for the errors to name it.
    """
    unknown = sorted(set(overrides) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"not a setting: {', '.join(unknown)}")
    problems = unknown_variables(os.environ, env_file)
    if problems:  # reported alone: a misspelt variable often explains the rest
        raise ConfigError("; ".join(problems))
    file_values = _env_file_values(env_file)
    config = overrides.get("config") or _given("config", os.environ, file_values)
    if config:
        overrides = {**overrides, **_topology_paths(str(config), overrides, file_values,
                                                    flags or {})}
    try:
        settings = Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except pydantic.ValidationError as exc:
        raise ConfigError(_one_line(exc, flags or {})) from None
    if not config:
        topology_of(settings)  # the single path's rules, checked before anything starts
    return settings


#: The settings a topology file gives instead: its first path's, its task's.
PATH_SETTINGS = (
    "source_table", "source_region", "source_endpoint", "source_streams_endpoint",
    "source_profile", "destination_table", "destination_region", "destination_endpoint",
    "destination_profile", "destination_create", "task_name", "checkpoint_region",
    "checkpoint_endpoint", "checkpoint_profile",
    # A topology file gives each destination its own rules.
    "filter", "include", "exclude", "rename", "transform", "skip_ttl_deletes", "on_poison",
    "max_wcu",
)


def _env_file_values(env_file: str | None) -> dict[str, str | None]:
    if env_file is None or not Path(env_file).is_file():
        return {}
    try:
        return dict(dotenv_values(env_file, encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return {}  # reported by ``unknown_variables``


def _given(name: str, *sources: Mapping[str, str | None]) -> str | None:
    """A setting's value in the environment or a .env file (names without case)."""
    wanted = env_name(name)
    for source in sources:
        for key, value in source.items():
            if key.upper() == wanted and value:
                return value
    return None


def _topology_paths(config: str, overrides: Mapping[str, Any],
                    file_values: Mapping[str, str | None],
                    flags: Mapping[str, str]) -> dict[str, Any]:
    """The settings of a topology's first path, task and checkpoint table; ConfigError
    when a path setting is given beside the topology file."""
    setting = flags.get("config", env_name("config"))
    given = [flags.get(name, env_name(name)) for name in PATH_SETTINGS
             if name in overrides or _given(name, os.environ, file_values) is not None]
    if given:
        raise ConfigError(f"{', '.join(given)}: {setting} names the tables, the task and "
                          "the destinations' rules; "
                          f"unset {'these' if len(given) > 1 else 'it'}, or leave out "
                          f"{setting}")
    topology = load_topology(config, setting=setting)
    return topology.path_values(*topology.destinations()[0])


def topology_of(settings: Settings) -> Topology:
    """The paths the settings name: the topology file's, or their single path's."""
    from replicator.topology import single_path

    if settings.config:
        return load_topology(settings.config, setting=env_name("config"))
    return single_path(settings)


def load_topology(config: str, *, setting: str) -> Topology:
    """The topology in the file ``config`` (named ``setting`` in errors), with every AWS
    profile it names found in the AWS config files; ``ConfigError`` otherwise."""
    from replicator.aws.clients import known_profiles
    from replicator.topology import load

    topology = load(config, setting=setting)
    known = known_profiles()
    problems = []
    for index, path in enumerate(topology.path):
        named = [(f"path[{index}].source", path.source.profile)] + [
            (f"path[{index}] destination {d.name!r}", d.profile) for d in path.destination]
        problems += [f"{where}: AWS profile {profile!r} is not in the AWS config files "
                     "(~/.aws/config, or AWS_CONFIG_FILE): add it, or name another"
                     for where, profile in named if profile is not None and profile not in known]
    if problems:
        raise ConfigError(f"{setting} {config}: " + "; ".join(problems))
    return topology


def _one_line(exc: pydantic.ValidationError, flags: Mapping[str, str]) -> str:
    """Every problem, each naming the flag that gave the value or else its variable."""
    by_variable = {env_name(name): flag for name, flag in flags.items()}

    def as_given(message: str) -> str:
        return re.sub(r"REPLICATOR_[A-Z0-9_]+",
                      lambda match: by_variable.get(match[0], match[0]), message)

    problems = []
    for error in exc.errors():
        location = error["loc"]
        message = str(error["msg"]).removeprefix("Value error, ")
        if not location:  # raised by the model validator: the message says it all
            problems.append(as_given(message))
            continue
        name = str(location[0])
        if name in flags:
            problems.append(f"{flags[name]}: {message}, got {error.get('input')!r}")
        elif error["type"] == "missing":
            problems.append(f"{env_name(name)} ({flag_name(name)}) is required: set it in "
                            "the environment or pass the flag")
        else:
            problems.append(f"{env_name(name)} ({flag_name(name)}) {message}, "
                            f"got {error.get('input')!r}")
    return "; ".join(problems)


