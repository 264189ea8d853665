"""``replicator dead-letters list`` and ``replicator dead-letters replay``: the records
destinations refused for good (``on_poison = "dead-letter"``), shown, and applied
again once what refused them is fixed (``replicator.apply.replay``)."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from typing import Any

import structlog

from replicator.apply.replay import Replay
from replicator.apply.writes import describe_key
from replicator.aws.clients import AwsClients
from replicator.aws.dead_letters import DynamoDeadLetterStore
from replicator.aws.table import DynamoTable, describe_table
from replicator.aws.values import BotoValues
from replicator.clock import SYSTEM_CLOCK
from replicator.commands.endpoints import endpoint_for
from replicator.commands.interrupt import until_signalled
from replicator.commands.settings import topology_of
from replicator.commands.startup import call_checked
from replicator.config import Settings
from replicator.copy.verify import key_names_of
from replicator.dead_letter import DeadLetter, dead_letter_table
from replicator.errors import StartupCheckError
from replicator.ops.status import write_out
from replicator.records import key_id
from replicator.topology import Topology

log = structlog.get_logger("replicator.dead_letters")

#: ``replay``'s exit code when some letters could not be applied (they are kept).
LETTERS_KEPT = 3


async def run_dead_letters(settings: Settings, action: str, *, as_json: bool = False,
                           destination: str | None = None) -> int:
    structlog.contextvars.bind_contextvars(task=settings.task_name, worker_id=settings.worker_id)
    work = (_list(settings, as_json=as_json, destination=destination) if action == "list"
            else _replay(settings, destination=destination))
    return await until_signalled(work, command=f"dead-letters {action}")


def _store(settings: Settings, client: Any) -> DynamoDeadLetterStore:
    return DynamoDeadLetterStore(client, dead_letter_table(str(settings.task_name)),
                                 call_timeout=settings.call_timeout)


def _letters_of(topology: Topology, destination: str | None) -> str | None:
    if destination is not None:
        topology.named(destination)  # ConfigError for a name the topology lacks
    return destination


async def _list(settings: Settings, *, as_json: bool, destination: str | None) -> int:
    chosen = _letters_of(topology_of(settings), destination)
    async with AwsClients() as clients:
        client = await clients.dynamodb(endpoint_for(settings, "checkpoint"),
                                        call_timeout=settings.call_timeout)
        store = _store(settings, client)
        letters = await call_checked(
            lambda: store.list(chosen), what=f"dead-letter table {store.table}",
            setting="REPLICATOR_CHECKPOINT_ENDPOINT", endpoint=settings.checkpoint_endpoint,
            region=settings.checkpoint_region, clock=SYSTEM_CLOCK)
    if as_json:
        write_out(json.dumps([_as_json(letter) for letter in letters], indent=2))
    else:
        write_out(render(letters, store.table))
    return 0


def render(letters: list[DeadLetter], table: str) -> str:
    """A line per letter: destination, source, shard, sequence number, event, key, when,
    and the error."""
    if not letters:
        return f"no dead letters in {table}"
    lines = [f"{len(letters)} dead letter{'s' if len(letters) != 1 else ''} in {table}:"]
    for letter in letters:
        when = datetime.fromtimestamp(letter.stored_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"  {letter.destination}  {letter.source}  {letter.shard_id}  "
                     f"{letter.sequence_number}  {letter.event_name}  "
                     f"{describe_key(key_id(letter.keys))}  {when}Z  {letter.error}")
    return "\n".join(lines)


def _as_json(letter: DeadLetter) -> dict[str, Any]:
    return {"destination": letter.destination, "source": letter.source,
            "shard_id": letter.shard_id, "sequence_number": letter.sequence_number,
            "event_name": letter.event_name, "key": describe_key(key_id(letter.keys)),
            "error": letter.error, "stored_at": letter.stored_at,
            "images_dropped": letter.images_dropped}


async def _replay(settings: Settings, *, destination: str | None) -> int:
    topology = topology_of(settings)
    chosen = _letters_of(topology, destination)
    kept = applied = 0
    timeout = settings.call_timeout
    async with AwsClients() as clients:
        client = await clients.dynamodb(endpoint_for(settings, "checkpoint"),
                                        call_timeout=timeout)
        store = _store(settings, client)
        letters = await store.list(chosen)
        by_destination: dict[str, list[DeadLetter]] = {}
        for letter in letters:
            by_destination.setdefault(letter.destination, []).append(letter)
        for name, own_letters in by_destination.items():
            try:
                source, target = topology.named(name)
            except Exception:  # a destination since removed from the topology
                log.warning("dead letters of a destination the topology no longer has are "
                            "kept", destination=name, letters=len(own_letters))
                kept += len(own_letters)
                continue
            path = topology.for_path(settings, source, target)
            reader = await clients.dynamodb(endpoint_for(path, "source"), call_timeout=timeout)
            writer = await clients.dynamodb(endpoint_for(path, "destination"),
                                            call_timeout=timeout)
            description = await call_checked(
                functools.partial(describe_table, reader, source.table, call_timeout=timeout),
                what=f"source table {source.table}", setting="REPLICATOR_SOURCE_ENDPOINT",
                endpoint=path.source_endpoint, region=path.source_region, clock=SYSTEM_CLOCK)
            if description is None:
                raise StartupCheckError(f"source table {source.table} does not exist: a "
                                        "replay reads each dead-lettered item from it")
            replay = Replay(
                source=DynamoTable(reader, source.table, call_timeout=timeout),
                destination=DynamoTable(writer, target.table, call_timeout=timeout),
                rules=target.rules(BotoValues()),
                key_names=tuple(key_names_of(description)), store=store, clock=SYSTEM_CLOCK)
            for letter in own_letters:
                done = await replay.replay(letter)
                key = describe_key(key_id(letter.keys))
                if done.error is None:
                    applied += 1
                    log.info("dead letter applied and removed", destination=name, key=key)
                else:
                    kept += 1
                    log.warning("dead letter kept", destination=name, key=key,
                                error=done.error)
    write_out(f"{applied} dead letter{'s' if applied != 1 else ''} applied and removed, "
              f"{kept} kept")
    return LETTERS_KEPT if kept else 0
