"""A replication topology: the paths of one task, each source table fanned out to one or
more destinations, read from a TOML file or made from the single-path settings.

Loading validates the whole file and reports every problem in one line (an unknown
key with the closest real one, a path without destinations, two paths writing one
table, a destination that is its own source, a two-way pair, a name used twice).
See docs/DESIGN.md ("Topologies").
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from replicator.config import Endpoint, Settings, default_task_name, env_name
from replicator.errors import ConfigError
from replicator.protocols import ValueCodec
from replicator.rules.pattern import FilterPattern, PatternError
from replicator.rules.projection import Projection
from replicator.rules.selection import OnPoison, Rules
from replicator.rules.transform import Transform, load_function

TableName = Annotated[str, Field(min_length=3, max_length=255, pattern=r"^[a-zA-Z0-9_.-]+$")]
#: A destination's name, in metrics, logs and ``--destination``.
DestinationName = Annotated[str, Field(min_length=1, max_length=64,
                                       pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    """A source table and how to reach it and its stream."""

    table: TableName
    region: str
    endpoint: Endpoint = None
    streams_endpoint: Endpoint = None
    profile: str | None = None

    @property
    def where(self) -> tuple[str, str]:
        """Which table this is: (its endpoint, or its region; its name)."""
        return (self.endpoint or self.region, self.table)


class Destination(_Strict):
    """A destination table of one source."""

    name: DestinationName
    table: TableName
    region: str
    endpoint: Endpoint = None
    profile: str | None = None
    #: Create the table (from the source's description) when it does not exist.
    create: bool = False
    # -- selective replication (docs/DESIGN.md, "Selective replication") --------
    #: A Lambda FilterCriteria pattern, as a table or a JSON string.
    filter: dict[str, Any] | str | None = None
    include: list[str] | None = None
    exclude: list[str] = []
    rename: dict[str, str] = {}
    #: ``package.module:function``.
    transform: str | None = None
    skip_ttl_deletes: bool = False
    on_poison: Literal["stop", "dead-letter"] = "stop"
    #: A cap on the write units a second the stream's writes consume, in each worker.
    max_wcu: Annotated[float, Field(gt=0)] | None = None

    @property
    def where(self) -> tuple[str, str]:
        return (self.endpoint or self.region, self.table)

    @field_validator("filter")
    @classmethod
    def _pattern(cls, value: dict[str, Any] | str | None) -> dict[str, Any] | str | None:
        if value is not None:
            try:
                FilterPattern.parse(value)
            except PatternError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("transform")
    @classmethod
    def _importable(cls, value: str | None) -> str | None:
        if value is not None:
            load_function(value)
        return value

    @model_validator(mode="after")
    def _projection(self) -> Destination:
        problem = Projection.problem(self.include, self.exclude, self.rename)
        if problem is not None:
            raise ValueError(problem)
        return self

    @property
    def projection(self) -> Projection | None:
        if self.include is None and not self.exclude and not self.rename:
            return None
        return Projection(include=None if self.include is None else frozenset(self.include),
                          exclude=frozenset(self.exclude), rename=dict(self.rename))

    @property
    def pattern(self) -> FilterPattern | None:
        return None if self.filter is None else FilterPattern.parse(self.filter)

    def rules(self, codec: ValueCodec | None) -> Rules:
        """The destination's rules; ``codec`` converts items for its transform."""
        transform = None
        if self.transform is not None:
            assert codec is not None, "a transform needs a ValueCodec"
            transform = Transform(self.transform, load_function(self.transform), codec)
        return Rules(filter=self.pattern, transform=transform, projection=self.projection,
                     skip_ttl_deletes=self.skip_ttl_deletes, on_poison=OnPoison(self.on_poison))


class CheckpointTable(_Strict):
    """Where the task's checkpoint table is (default: by the first path's source)."""

    region: str | None = None
    endpoint: Endpoint = None
    profile: str | None = None


class ReplicationPath(_Strict):
    """One source table and the destinations its stream is applied to."""

    source: Source
    destination: list[Destination] = Field(min_length=1)


class Topology(_Strict):
    """Every path of a task. The task names the checkpoint table and the metrics
    namespace of the whole topology."""

    task: TableName
    checkpoint: CheckpointTable = CheckpointTable()
    path: list[ReplicationPath] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Topology:
        problems: list[str] = []
        names: dict[str, int] = {}
        written: dict[tuple[str, str], str] = {}
        sources = {path.source.where: index for index, path in enumerate(self.path)}
        if len(sources) < len(self.path):
            problems.append("two paths read one source table: list its destinations "
                            "under one [[path]]")
        for index, path in enumerate(self.path):
            for destination in path.destination:
                at = f"path[{index}] destination {destination.name!r}"
                if destination.name in names:
                    problems.append(f"{at}: the name is used twice; each destination needs "
                                    "its own")
                names[destination.name] = index
                where = destination.where
                if where == path.source.where:
                    problems.append(f"{at}: table {destination.table} is the path's own "
                                    "source")
                elif where in written:
                    problems.append(f"{at}: table {destination.table} is written by "
                                    f"destination {written[where]!r} too; a table has "
                                    "one source")
                written.setdefault(where, destination.name)
                other = sources.get(where)
                if other is not None and other != index and any(
                    back.where == path.source.where for back in self.path[other].destination
                ):
                    problems.append(
                        f"{at}: tables {path.source.table} and {destination.table} "
                        "replicate into each other; two-way replication is not supported"
                    )
        if problems:
            raise ValueError("; ".join(dict.fromkeys(problems)))
        return self

    def destinations(self) -> list[tuple[Source, Destination]]:
        return [(path.source, destination)
                for path in self.path for destination in path.destination]

    def settings_for(self, source: Source, destination: Destination,
                     **tuning: Any) -> Settings:
        """The single-path settings of one source and destination of the topology, under
        its task, with its checkpoint table (``tuning``: the other settings)."""
        return Settings(**self.path_values(source, destination), **tuning)

    def path_values(self, source: Source, destination: Destination) -> dict[str, Any]:
        """The path settings (source, destination, task, checkpoint table) of one source
        and destination of the topology."""
        first = self.path[0].source
        checkpoint = self.checkpoint
        return {
            "source_table": source.table, "source_region": source.region,
            "source_endpoint": source.endpoint,
            "source_streams_endpoint": source.streams_endpoint or source.endpoint,
            "source_profile": source.profile,
            "destination_table": destination.table, "destination_region": destination.region,
            "destination_endpoint": destination.endpoint,
            "destination_profile": destination.profile,
            "destination_create": destination.create,
            "task_name": self.task,
            "checkpoint_region": checkpoint.region or first.region,
            "checkpoint_endpoint": checkpoint.endpoint or (
                first.endpoint if checkpoint.region is None else None),
            "checkpoint_profile": checkpoint.profile or first.profile,
        }

    def for_path(self, base: Settings, source: Source, destination: Destination) -> Settings:
        """``base`` (the settings the service runs with, under this topology's task and
        checkpoint table) for one source and destination of the topology."""
        values = self.path_values(source, destination)
        return base.model_copy(update={name: value for name, value in values.items()
                                       if name.startswith(("source_", "destination_"))})

    def chosen(self, name: str | None) -> list[tuple[Source, Destination]]:
        """Every destination with its source, or only the one called ``name``."""
        return self.destinations() if name is None else [self.named(name)]

    def named(self, name: str) -> tuple[Source, Destination]:
        """The destination called ``name``, and its source; ConfigError if none is."""
        for source, destination in self.destinations():
            if destination.name == name:
                return source, destination
        known = [destination.name for _, destination in self.destinations()]
        raise ConfigError(f"--destination {name}: no destination of that name in the "
                          f"topology ({', '.join(known)})")


#: The name of the one destination of the single-path settings.
SINGLE_DESTINATION = "destination"


def single_path(settings: Settings) -> Topology:
    """The topology of the single-path settings: their one source and one destination,
    under the settings' task name (by default the Java tool's)."""
    assert settings.source_region is not None
    assert settings.destination_region is not None
    task = settings.task_name or default_task_name(
        settings.source_region, settings.source_table, settings.destination_region,
        settings.destination_table)
    try:
        destination = Destination(
            name=SINGLE_DESTINATION, table=settings.destination_table,
            region=settings.destination_region, endpoint=settings.destination_endpoint,
            profile=settings.destination_profile, create=settings.destination_create,
            **_rule_settings(settings))
    except ValidationError as exc:
        raise ConfigError("; ".join(_setting_problem(error) for error in exc.errors())) from None
    return Topology(task=task, path=[ReplicationPath(
        source=Source(table=settings.source_table, region=settings.source_region,
                      endpoint=settings.source_endpoint,
                      streams_endpoint=settings.source_streams_endpoint,
                      profile=settings.source_profile),
        destination=[destination],
    )])


def _rule_settings(settings: Settings) -> dict[str, Any]:
    """The selective-replication settings as a destination's rules."""
    values: dict[str, Any] = {"filter": settings.filter or None,
                              "transform": settings.transform or None,
                              "skip_ttl_deletes": settings.skip_ttl_deletes,
                              "on_poison": settings.on_poison, "max_wcu": settings.max_wcu}
    if settings.include:
        values["include"] = _names(settings.include)
    if settings.exclude:
        values["exclude"] = _names(settings.exclude)
    if settings.rename:
        rename = {}
        for pair in _names(settings.rename):
            old, equals, new = (part.strip() for part in pair.partition("="))
            if not equals or not old or not new:
                raise ConfigError(f"{env_name('rename')}: {pair!r} is not old=new; write "
                                  "pairs such as email=contact,phone=mobile")
            rename[old] = new
        values["rename"] = rename
    return values


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _setting_problem(error: Any) -> str:
    """A destination's problem as the single-path setting that gave it."""
    message = str(error["msg"]).removeprefix("Value error, ")
    field = next((str(part) for part in error["loc"] if part in Destination.model_fields), "")
    if not field:  # the projection's lists: name them all
        names = ", ".join(env_name(name) for name in ("include", "exclude", "rename"))
        return f"{names}: {message}"
    return f"{env_name(field)}: {message}"


def load(path: str | Path, *, setting: str = "--config") -> Topology:
    """The topology in the TOML file ``path``; ``ConfigError`` (one line, naming the file,
    each problem and where it is) when it cannot be read or is not a valid topology."""
    where = f"{setting} {path}"
    try:
        with Path(path).open("rb") as file:
            raw = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    try:
        return Topology.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {describe(exc)}") from None


def describe(exc: ValidationError) -> str:
    """A topology's problems in one line, each with where it is in the file."""
    problems = []
    for error in exc.errors():
        location = _location(error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            *parent, key = error["loc"]
            message = f"unknown key{_did_you_mean(str(key), _keys_at(parent))}"
        elif error["type"] == "missing":
            message = "is required"
        elif error["type"] == "too_short" and error["loc"][-1:] == ("destination",):
            message = "a path needs at least one [[path.destination]]"
        elif error["type"] == "too_short" and error["loc"] == ("path",):
            message = "the topology needs at least one [[path]]"
        elif "input" in error and not isinstance(error["input"], dict | list):
            message = f"{message}, got {error['input']!r}"
        problems.append(f"{location}: {message}" if location else message)
    return "; ".join(problems)


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


_MODELS: dict[str, type[BaseModel]] = {
    "": Topology, "path": ReplicationPath, "source": Source, "destination": Destination,
    "checkpoint": CheckpointTable,
}


def _keys_at(parent: list[int | str]) -> list[str]:
    names = [part for part in parent if isinstance(part, str)]
    model = _MODELS.get(names[-1] if names else "", Topology)
    return list(model.model_fields)


def _did_you_mean(key: str, keys: list[str]) -> str:
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(keys)})"
