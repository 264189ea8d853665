"""Records refused for good: with ``on_poison = "dead-letter"`` each is stored and its
shard goes on; the rules' outcomes are marked done; a replay never writes an image
older than the destination's."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from replicator.apply.replay import Replay
from replicator.aws.values import BotoValues
from replicator.dead_letter import DeadLetter
from replicator.errors import PoisonRecordError
from replicator.ops.metrics import LiveGauges, StatsCollector, registry_for, render
from replicator.records import EventName, Item, StreamRecord, key_id
from replicator.rules.pattern import FilterPattern
from replicator.rules.selection import OnPoison, Rules
from replicator.rules.transform import Transform
from replicator.stats import Stats
from replicator.stream.tracker import CheckpointTracker
from replicator.stream.writer import WorkItem, WriterPool
from tests.fake_dead_letters import FakeDeadLetterStore
from tests.fakes import FakeDestination, FakeLeaseStore, FakeStream, FakeTable
from tests.unit.harness import CLOCK, FAST, Replication, caught_up

DEAD_LETTER = Rules(on_poison=OnPoison.DEAD_LETTER)


def put_record(index: int, **extra: dict[str, Any]) -> StreamRecord:
    image: Item = {"pk": {"S": f"k{index}"}, "v": {"N": str(index)}, **extra}
    return StreamRecord(shard_id="shard-0", sequence_number=str(100 + index),
                        event_name=EventName.INSERT, keys={"pk": image["pk"]},
                        new_image=image, size_bytes=10, created_at=1_700_000_000.0 + index)


async def write_all(pool: WriterPool, records: list[StreamRecord],
                    tracker: CheckpointTracker) -> None:
    for record in records:
        pending = tracker.add(record.sequence_number, record.created_at)
        await pool.put(WorkItem(record, pending, tracker))
    pool.close()
    async with asyncio.timeout(5):
        await pool.run()


async def test_a_refused_record_is_dead_lettered_and_its_shard_goes_on() -> None:
    destination, store, stats = FakeDestination(), FakeDeadLetterStore(), Stats()
    pool = WriterPool(destination, writers=1, queue_size=100, stats=stats, backoff=FAST,
                      clock=CLOCK, path=("orders", "eu"), rules=DEAD_LETTER,
                      dead_letters=store)
    records = [put_record(index, **({"poison": {"S": "yes"}} if index == 3 else {}))
               for index in range(6)]
    tracker = CheckpointTracker("TRIM_HORIZON")
    await write_all(pool, records, tracker)

    assert tracker.failure is None
    assert tracker.checkpointable == records[-1].sequence_number
    assert set(destination.table) == {records[i].key for i in (0, 1, 2, 4, 5)}
    (letter,) = await store.list()
    assert (letter.destination, letter.source, letter.shard_id, letter.sequence_number,
            letter.event_name) == ("eu", "orders", "shard-0", "103", "INSERT")
    assert letter.keys == {"pk": {"S": "k3"}}
    assert letter.new_image == records[3].new_image
    assert "poison" in letter.error
    assert stats.dead_lettered[("orders", "eu")] == 1
    assert stats.dead_letters_stored == 1


def raise_on_odd(value: dict[str, Any], event_name: str) -> dict[str, Any]:
    if int(value["v"]) % 2:
        raise ValueError("odd")
    return value


@pytest.mark.parametrize("on_poison", [OnPoison.STOP, OnPoison.DEAD_LETTER])
async def test_a_record_the_transform_rejects_stops_its_shard_or_is_dead_lettered(
        on_poison: OnPoison) -> None:
    destination, store, stats = FakeDestination(), FakeDeadLetterStore(), Stats()
    rules = Rules(transform=Transform("tests:raise_on_odd", raise_on_odd, BotoValues()),
                  on_poison=on_poison)
    pool = WriterPool(destination, writers=1, queue_size=100, stats=stats, backoff=FAST,
                      clock=CLOCK, path=("orders", "eu"), rules=rules, dead_letters=store)
    records = [put_record(index) for index in range(4)]
    tracker = CheckpointTracker("TRIM_HORIZON")
    await write_all(pool, records, tracker)

    if on_poison is OnPoison.STOP:
        assert isinstance(tracker.failure, PoisonRecordError)
        assert "the rules of the destination reject stream record 101" in str(tracker.failure)
        assert "raised ValueError: odd" in str(tracker.failure)
        # The shard stopped before its batch was written: nothing of it is checkpointed.
        assert destination.table == {}
        assert tracker.checkpointable == "TRIM_HORIZON"
        assert await store.list() == []
    else:
        assert set(destination.table) == {records[0].key, records[2].key}
        assert tracker.failure is None
        assert tracker.checkpointable == records[-1].sequence_number
        assert [letter.sequence_number for letter in await store.list()] == ["101", "103"]
        assert stats.rule_outcomes[("orders", "eu", "transformed")] == 2


async def test_filtered_records_are_marked_done_and_never_written() -> None:
    destination, stats = FakeDestination(), Stats()
    rules = Rules(filter=FilterPattern.parse({"dynamodb": {"NewImage": {"v": {"N": [
        {"numeric": [">=", 3]}]}}}}))
    pool = WriterPool(destination, writers=2, queue_size=100, stats=stats, backoff=FAST,
                      clock=CLOCK, path=("orders", "eu"), rules=rules)
    records = [put_record(index) for index in range(6)]
    tracker = CheckpointTracker("TRIM_HORIZON")
    await write_all(pool, records, tracker)

    assert set(destination.table) == {records[i].key for i in (3, 4, 5)}
    assert tracker.drained
    assert tracker.checkpointable == records[-1].sequence_number
    assert stats.rule_outcomes[("orders", "eu", "filtered")] == 3


def letter_for(image: Item, sequence_number: str = "103") -> DeadLetter:
    return DeadLetter(destination="eu", source="orders", shard_id="shard-0",
                      sequence_number=sequence_number, event_name="MODIFY",
                      keys={"pk": image["pk"]},
                      new_image=image, old_image=None, error="refused", stored_at=1.0)


class ChangedWhileReplaying(FakeTable):
    """A source whose item is written again, and applied by the stream, right after the
    replay's first read of it: the replay's write is older than the destination's."""

    def __init__(self, items: list[Item], newer: Item, destination: FakeTable) -> None:
        super().__init__(items)
        self.newer = newer
        self.destination = destination

    async def batch_get(self, keys: list[Item]) -> tuple[list[Item], list[Item]]:
        found = await super().batch_get(keys)
        if self.counts["BatchGetItem"] == 1:
            key = key_id({"pk": self.newer["pk"]})
            self.items[key] = self.newer
            self.destination.items[key] = self.newer  # the stream applies it
        return found


async def test_a_replay_never_leaves_an_image_older_than_the_sources() -> None:
    old = {"pk": {"S": "k3"}, "v": {"N": "1"}}
    newer = {"pk": {"S": "k3"}, "v": {"N": "2"}}
    destination = FakeTable()
    source = ChangedWhileReplaying([old], newer, destination)
    store = FakeDeadLetterStore()
    letter = letter_for(old)
    await store.put(letter)
    replay = Replay(source=source, destination=destination, rules=Rules(),
                    key_names=("pk",), store=store, clock=CLOCK, backoff=FAST)
    async with asyncio.timeout(5):
        done = await replay.replay(letter)

    assert done.error is None
    assert done.reads == 3  # the first read's image, then the newer one, then unchanged
    assert destination.items == {key_id({"pk": newer["pk"]}): newer}
    assert await store.list() == []


async def test_a_replay_applies_what_the_rules_make_of_the_sources_item() -> None:
    selected = {"pk": {"S": "k1"}, "tenant": {"S": "acme"}}
    left = {"pk": {"S": "k2"}, "tenant": {"S": "other"}}
    destination = FakeTable([left])  # k2 left the filter while its letter waited
    source = FakeTable([selected, left])
    store = FakeDeadLetterStore()
    rules = Rules(filter=FilterPattern.parse(
        {"dynamodb": {"NewImage": {"tenant": {"S": ["acme"]}}}}))
    replay = Replay(source=source, destination=destination, rules=rules, key_names=("pk",),
                    store=store, clock=CLOCK, backoff=FAST)
    for sequence_number, image in (("103", selected), ("104", left)):
        await store.put(letter_for(image, sequence_number))
    async with asyncio.timeout(5):
        for letter in await store.list():
            assert (await replay.replay(letter)).error is None
    assert list(destination.items.values()) == [selected]


async def test_a_letter_the_destination_still_refuses_is_kept() -> None:
    image = {"pk": {"S": "k1"}, "poison": {"S": "yes"}}
    store = FakeDeadLetterStore()
    await store.put(letter_for(image))
    replay = Replay(source=FakeTable([image]), destination=FakeTable(), rules=Rules(),
                    key_names=("pk",), store=store, clock=CLOCK, backoff=FAST)
    async with asyncio.timeout(5):
        done = await replay.replay((await store.list())[0])
    assert done.error is not None
    assert "the destination rejects it" in done.error
    assert len(await store.list()) == 1


def test_the_rules_outcomes_and_dead_letters_are_exposed_per_destination() -> None:
    stats = Stats()
    for _ in range(3):
        stats.count_skipped("filtered", ("orders", "eu"))
    stats.count_skipped("ttl_delete", ("orders", "ap"))
    stats.count_dead_letter(("orders", "eu"))
    stats.dead_letters_stored = 7
    collector = StatsCollector(stats, task="t", worker="w", gauges=LiveGauges)
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(
                   render(registry_for(collector)).decode())
               for sample in family.samples}
    path = (("destination", "eu"), ("source", "orders"), ("task", "t"), ("worker", "w"))
    assert samples[("replicator_records_filtered_total", path)] == 3
    assert samples[("replicator_records_dead_lettered_total", path)] == 1
    ap = (("destination", "ap"), ("source", "orders"), ("task", "t"), ("worker", "w"))
    assert samples[("replicator_ttl_deletes_skipped_total", ap)] == 1
    assert samples[("replicator_dead_letters", (("task", "t"), ("worker", "w")))] == 7


async def test_a_filtered_shard_with_ttl_deletes_skipped_ends_with_what_the_rules_select(
) -> None:
    stream, destination, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    shard = stream.add_shard()

    def tenant_item(pk: str, tenant: str, version: int) -> Item:
        return {"pk": {"S": pk}, "tenant": {"S": tenant}, "v": {"N": str(version)}}

    for index in range(6):
        stream.put(shard, tenant_item(f"k{index}", "acme" if index % 2 else "other", 0))
    stream.put(shard, tenant_item("k0", "acme", 1))     # k0 enters the filter
    stream.put(shard, tenant_item("k1", "other", 1))    # k1 leaves it
    stream.delete(shard, {"pk": {"S": "k3"}}, by_ttl=True)   # expired: kept
    stream.delete(shard, {"pk": {"S": "k5"}})                # deleted: deleted
    stream.put(shard, tenant_item("k2", "other", 1))    # filtered, the last record
    rules = Rules(filter=FilterPattern.parse(
        {"dynamodb": {"NewImage": {"tenant": {"S": ["acme"]}}}}), skip_ttl_deletes=True)
    async with Replication(stream, destination, store, rules=rules) as replication:
        await store.wait_until(caught_up(stream))  # the filtered last record is done

    assert destination.table == {
        key_id({"pk": {"S": "k0"}}): tenant_item("k0", "acme", 1),
        key_id({"pk": {"S": "k3"}}): tenant_item("k3", "acme", 0),
    }
    outcomes = replication.stats.rule_outcomes
    assert outcomes[("source", "destination", "ttl_delete")] == 1
    assert outcomes[("source", "destination", "filtered")] == 4  # k0, k2, k4; k2 again
