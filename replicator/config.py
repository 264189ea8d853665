"""Settings: environment variables (REPLICATOR_*), a .env file, and command-line flags.

A flag wins over the environment, which wins over the .env file. The Java
cross-region replication tool's flags are accepted as aliases (``JAVA_FLAGS``)
so its users keep their command lines.

Nothing is read loosely: a ``REPLICATOR_*`` variable or ``.env`` key that is no
setting is an error naming the closest setting (``unknown_variables``), since a
misspelt variable would otherwise leave its setting at the default without a word.
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
import string
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from replicator.checkpoint import Sentinel

ENV_PREFIX = "REPLICATOR_"
#: The metrics port when none is set; workers started on one machine with the same
#: settings take the next free ones, up to ``METRICS_PORTS`` in all.
DEFAULT_METRICS_PORT = 9464
METRICS_PORTS = 100
#: Seconds, on top of the call timeout, by which a worker stops writing before its lease
#: could expire in another worker's eyes.
FENCE_SAFETY = 0.25


def _endpoint(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not value.startswith(("http://", "https://")) or len(value) < 10:
        raise ValueError(
            "must be a URL such as http://127.0.0.1:8000 or "
            "https://dynamodb.eu-west-1.amazonaws.com"
        )
    return value.rstrip("/")


Endpoint = Annotated[str | None, AfterValidator(_endpoint)]
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def _all_local(*endpoints: str | None) -> bool:
    """True when at least one endpoint is set and every one set is on this machine."""
    hosts = [urlsplit(endpoint).hostname for endpoint in endpoints if endpoint]
    return bool(hosts) and all(host in LOCAL_HOSTS for host in hosts)


Seconds = Annotated[float, Field(gt=0, le=86400)]


def default_task_name(
    source_region: str, source_table: str, destination_region: str, destination_table: str
) -> str:
    """MD5 of sourceRegion + sourceTable + destinationRegion + destinationTable, as in Java."""
    digest = hashlib.md5(
        (source_region + source_table + destination_region + destination_table).encode(),
        usedforsecurity=False,
    ).hexdigest()
    return f"replicator-{digest}"


def default_worker_id() -> str:
    suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=6))
    return f"{socket.gethostname()}-{os.getpid()}-{suffix}"


class Settings(BaseSettings):
    """Every setting of ``replicator run``. The description is the --help text."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        # Not "forbid": that would refuse every other key of a .env file, AWS_REGION
        # included, and never sees the environment. ``unknown_variables`` judges both.
        extra="ignore",
        validate_default=True,
    )

    # -- topology --------------------------------------------------------------
    config: str | None = Field(
        None,
        description="A topology file (TOML): the task's source tables, each with its "
        "destinations. The source, destination and checkpoint-table settings are then "
        "left unset.",
    )

    # -- source ----------------------------------------------------------------
    source_table: str = Field(min_length=3, max_length=255, description="Source table name.")
    source_region: str | None = Field(
        None, description="Source region (default: AWS_REGION or AWS_DEFAULT_REGION)."
    )
    source_endpoint: Endpoint = Field(None, description="Source DynamoDB endpoint URL.")
    source_streams_endpoint: Endpoint = Field(
        None, description="Source DynamoDB Streams endpoint URL (default: the source endpoint)."
    )
    source_profile: str | None = Field(
        None,
        description="AWS profile whose credentials read the source table and its stream "
        "(default: the standard credential chain).",
    )
    initial_position: Literal["TRIM_HORIZON", "LATEST"] = Field(
        "TRIM_HORIZON",
        description="Where a stream seen for the first time is read from: TRIM_HORIZON "
        "(the oldest record, up to 24 hours back) or LATEST (only new records).",
    )
    on_trimmed_data: Literal["fail", "skip"] = Field(
        "fail",
        description="When records were trimmed before being applied: fail (stop, exit 4) or "
        "skip (log the loss and go on from the oldest record left).",
    )

    # -- destination -----------------------------------------------------------
    destination_table: str = Field(
        min_length=3, max_length=255, description="Destination table name."
    )
    destination_region: str | None = Field(
        None, description="Destination region (default: the source region)."
    )
    destination_endpoint: Endpoint = Field(None, description="Destination DynamoDB endpoint URL.")
    destination_profile: str | None = Field(
        None,
        description="AWS profile whose credentials write the destination table, for "
        "another account (default: the standard credential chain).",
    )
    destination_create: bool = Field(
        False,
        description="Create the destination table when it does not exist, like the source: "
        "its keys, secondary indexes, billing mode and time to live (no stream).",
    )

    # -- selective replication -------------------------------------------------
    filter: str | None = Field(
        None,
        description="Copy only the records this event filter selects: a pattern in the "
        "syntax of Lambda's FilterCriteria, as JSON (needs a NEW_AND_OLD_IMAGES stream).",
    )
    include: str | None = Field(
        None, description="Write only these attributes (comma-separated; the key "
        "attributes are always written).",
    )
    exclude: str | None = Field(
        None, description="Do not write these attributes (comma-separated; never a key "
        "attribute).",
    )
    rename: str | None = Field(
        None, description="Write attributes under other names: old=new pairs, "
        "comma-separated (never a key attribute).",
    )
    transform: str | None = Field(
        None, description="A function package.module:function called with each item (plain "
        "Python values) and the event name; returns the item to write, or None to skip it.",
    )
    skip_ttl_deletes: bool = Field(
        False, description="Do not apply the deletes DynamoDB's time to live makes: the "
        "destination keeps those items.",
    )
    on_poison: Literal["stop", "dead-letter"] = Field(
        "stop", description="A record the destination or the transform refuses for good: "
        "stop (its shard stops, exit 3) or dead-letter (store it in the dead-letter table "
        "TASK-dead-letters and go on).",
    )

    # -- checkpoint table ------------------------------------------------------
    task_name: str | None = Field(
        None,
        min_length=3,
        max_length=255,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Names the checkpoint table; workers with one task name share the shards "
        "(default: replicator-MD5(sourceRegion + sourceTable + destinationRegion + "
        "destinationTable)).",
    )
    worker_id: str | None = Field(
        None, min_length=1, description="This worker's name in the lease rows "
        "(default: host name, process id and a random suffix)."
    )
    checkpoint_region: str | None = Field(
        None, description="Region of the checkpoint table (default: the source region)."
    )
    checkpoint_endpoint: Endpoint = Field(
        None,
        description="Endpoint of the checkpoint table (default: the source endpoint, "
        "unless the checkpoint region is set).",
    )
    checkpoint_profile: str | None = Field(
        None,
        description="AWS profile for the checkpoint table and CloudWatch (default: the "
        "source's).",
    )

    # -- bootstrap copy --------------------------------------------------------
    bootstrap: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Copy the source table before streaming: auto (when the task has no "
        "checkpoints yet, or a copy was interrupted), always, or never.",
    )
    copy_segments: int | None = Field(
        None, ge=1, le=1_000_000,
        description="Parallel Scan segments of the copy (default: 4 per 256 MB of table, "
        "at least 4).",
    )
    copy_concurrency: int = Field(
        8, ge=1, le=1000, description="Segments the copy scans at once."
    )
    copy_writers: int = Field(
        16, ge=1, le=1000, description="BatchWriteItem calls the copy makes at once."
    )
    copy_max_rcu: float | None = Field(
        None, gt=0, description="Cap on the read units per second the copy consumes "
        "(default: no cap)."
    )
    copy_max_wcu: float | None = Field(
        None, gt=0, description="Cap on the write units per second the copy consumes "
        "(default: no cap)."
    )

    # -- tuning ----------------------------------------------------------------
    max_wcu: float | None = Field(
        None, gt=0, description="Cap on the write units per second the stream's writes to "
        "the destination consume, in each worker (default: no cap; the copy has its own, "
        "REPLICATOR_COPY_MAX_WCU).",
    )
    writers: int = Field(8, ge=1, le=256, description="Concurrent destination writers.")
    queue_size: int = Field(
        5000, ge=25, le=1_000_000, description="Records buffered between readers and writers."
    )
    get_records_limit: int = Field(
        1000, ge=1, le=1000, description="Records asked for in each GetRecords call."
    )
    idle_interval: Seconds = Field(
        0.25, description="Seconds to wait after an empty GetRecords before reading again."
    )
    checkpoint_interval: Seconds = Field(
        5.0, description="Seconds between checkpoint writes of a shard."
    )
    detach_after: Seconds = Field(
        1.0, description="Seconds a shard's reader waits for a destination that cannot take "
        "a record before it reads on for the others; the destination then catches up "
        "from its own checkpoint.",
    )
    coordinator_interval: Seconds = Field(
        1.0,
        description="Seconds between reads of the lease table (take leases, start children "
        "whose parents finished).",
    )
    shard_sync_interval: Seconds = Field(
        30.0, description="Seconds between DescribeStream polls for new shards "
        "(also polled at once whenever a shard ends)."
    )
    lease_duration: Seconds = Field(
        10.0, description="Seconds without renewal after which another worker may take a lease."
    )
    lease_renew_interval: Seconds = Field(3.0, description="Seconds between lease renewals.")
    call_timeout: Seconds = Field(5.0, description="Timeout of every AWS call, in seconds.")
    shutdown_timeout: Seconds = Field(
        20.0, description="Seconds allowed after SIGTERM to finish writes in flight and checkpoint."
    )

    # -- metrics and CloudWatch ------------------------------------------------
    metrics_port: int | None = Field(
        None, ge=0, le=65535,
        description="Port of the HTTP endpoint serving /metrics (Prometheus), /healthz and "
        f"/readyz; 0 turns it off (default: {DEFAULT_METRICS_PORT}, or the next free port "
        "above it when other workers on this machine hold it; replicator copy opens none).",
    )
    metrics_host: str = Field(
        "127.0.0.1", min_length=1,
        description="Address the metrics endpoint listens on (0.0.0.0 in a container).",
    )
    cloudwatch: bool | None = Field(
        None,
        description="Publish metrics to CloudWatch (default: on, unless every endpoint set "
        "is on this machine and no CloudWatch endpoint is set; --dontPublishCloudwatch "
        "turns it off).",
    )
    cloudwatch_region: str | None = Field(
        None, description="CloudWatch region (default: the checkpoint table's region)."
    )
    cloudwatch_endpoint: Endpoint = Field(None, description="CloudWatch endpoint URL.")
    cloudwatch_interval: Seconds = Field(
        60.0, description="Seconds between CloudWatch PutMetricData batches."
    )

    # -- logging ---------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Least severe log level written: debug, info, warning or error."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto",
        description="auto (JSON lines unless stdout is a terminal, readable lines when it is), "
        "json or console.",
    )
    progress_interval: Seconds = Field(10.0, description="Seconds between progress log lines.")

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        if self.source_region is None:
            self.source_region = os.environ.get("AWS_REGION") or os.environ.get(
                "AWS_DEFAULT_REGION"
            )
        if not self.source_region:
            raise ValueError(
                "the source region is not set: set REPLICATOR_SOURCE_REGION "
                "(or AWS_REGION), or pass --source-region"
            )
        if self.source_streams_endpoint is None:
            self.source_streams_endpoint = self.source_endpoint
        if self.destination_region is None:
            self.destination_region = self.source_region
        if self.checkpoint_region is None:
            self.checkpoint_region = self.source_region
            if self.checkpoint_endpoint is None:
                self.checkpoint_endpoint = self.source_endpoint
        if self.checkpoint_profile is None:
            self.checkpoint_profile = self.source_profile
        if self.cloudwatch_region is None:
            self.cloudwatch_region = self.checkpoint_region
        if self.cloudwatch is None:
            self.cloudwatch = self.cloudwatch_endpoint is not None or not _all_local(
                self.source_endpoint, self.source_streams_endpoint,
                self.destination_endpoint, self.checkpoint_endpoint,
            )
        if self.task_name is None:
            self.task_name = default_task_name(
                self.source_region,
                self.source_table,
                self.destination_region,
                self.destination_table,
            )
        if self.worker_id is None:
            self.worker_id = default_worker_id()
        if self.lease_renew_interval >= self.lease_duration:
            raise ValueError(
                "REPLICATOR_LEASE_RENEW_INTERVAL must be shorter than REPLICATOR_LEASE_DURATION "
                "(a third of it is usual)"
            )
        if self.lease_duration <= self.lease_renew_interval + self.call_timeout + FENCE_SAFETY:
            raise ValueError(
                "REPLICATOR_LEASE_DURATION must exceed REPLICATOR_LEASE_RENEW_INTERVAL plus "
                f"REPLICATOR_CALL_TIMEOUT plus {FENCE_SAFETY:g}s: a worker stops writing a shard "
                "a call timeout before its lease could expire, so a renewal must fit in between"
            )
        same = (
            self.source_table == self.destination_table
            and self.source_region == self.destination_region
            and self.source_endpoint == self.destination_endpoint
        )
        if same:
            raise ValueError(
                "the destination is the source table itself: change REPLICATOR_DESTINATION_TABLE, "
                "REPLICATOR_DESTINATION_REGION or REPLICATOR_DESTINATION_ENDPOINT"
            )
        return self

    @property
    def initial_sentinel(self) -> Sentinel:
        return Sentinel(self.initial_position)

    def describe(self) -> dict[str, Any]:
        """What is safe to log at start-up: no credentials live in settings."""
        return {
            "source": f"{self.source_region}/{self.source_table}",
            "destination": f"{self.destination_region}/{self.destination_table}",
            "checkpoint_table": f"{self.checkpoint_region}/{self.task_name}",
            "worker_id": self.worker_id,
            "initial_position": self.initial_position,
            "writers": self.writers,
        }


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


#: The settings by subject: the sections of ``--help``, README.md and .env.example.
GROUPS: dict[str, tuple[str, ...]] = {
    "topology": ("config",),
    "source": ("source_table", "source_region", "source_endpoint", "source_streams_endpoint",
               "source_profile", "initial_position", "on_trimmed_data"),
    "destination": ("destination_table", "destination_region", "destination_endpoint",
                    "destination_profile", "destination_create"),
    "selective replication": ("filter", "include", "exclude", "rename", "transform",
                              "skip_ttl_deletes", "on_poison"),
    "checkpoint table": ("task_name", "worker_id", "checkpoint_region", "checkpoint_endpoint",
                         "checkpoint_profile"),
    "bootstrap copy": ("bootstrap", "copy_segments", "copy_concurrency", "copy_writers",
                       "copy_max_rcu", "copy_max_wcu"),
    "tuning": ("max_wcu", "writers", "queue_size", "get_records_limit", "idle_interval",
               "checkpoint_interval", "detach_after", "coordinator_interval", "shard_sync_interval",
               "lease_duration", "lease_renew_interval", "call_timeout", "shutdown_timeout"),
    "metrics and CloudWatch": ("metrics_port", "metrics_host", "cloudwatch",
                               "cloudwatch_region", "cloudwatch_endpoint",
                               "cloudwatch_interval"),
    "logging": ("log_level", "log_format", "progress_interval"),
}


#: The Java tool's flags: flag -> (setting, converter of its value). A None
#: converter marks a flag that takes no value.
JAVA_FLAGS: dict[str, tuple[str, Any]] = {
    "--sourceRegion": ("source_region", str),
    "--sourceTable": ("source_table", str),
    "--sourceEndpoint": ("source_endpoint", str),
    "--sourceStreamsEndpoint": ("source_streams_endpoint", str),
    "--destinationRegion": ("destination_region", str),
    "--destinationTable": ("destination_table", str),
    "--destinationEndpoint": ("destination_endpoint", str),
    "--kclRegion": ("checkpoint_region", str),
    "--kclEndpoint": ("checkpoint_endpoint", str),
    "--taskName": ("task_name", str),
    "--batchSize": ("get_records_limit", str),
    "--parentShardPollIntervalMillis": ("coordinator_interval", "millis"),
    "--dontPublishCloudwatch": ("cloudwatch", None),
}

#: ``REPLICATOR_*`` variables that are read outside ``Settings`` and are no setting.
#: None today: the health check reads REPLICATOR_METRICS_PORT, which is a setting.
OTHER_VARIABLES: frozenset[str] = frozenset()


#: Seconds the longest call may take: a Scan page whose timeout grew (``ScanPacing``).
LONGEST_CALL = 60.0
