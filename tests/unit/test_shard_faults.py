"""Failures on the way, through the real coordinator, writer pool and shard consumers:
expired iterators, trimmed data, throttling, unprocessed items, poison records."""

from __future__ import annotations

from structlog.testing import capture_logs

from replicator.checkpoint import Sentinel
from replicator.errors import DataLossError, PoisonRecordError
from replicator.lease import Lease
from replicator.records import RecordsPage, sequence_key
from tests.fakes import (
    STREAM_ARN,
    Call,
    FakeDestination,
    FakeLeaseStore,
    FakeStream,
    every_nth,
    expired_iterator,
    item,
    key_of,
    on_calls,
    unprocessed_every,
)
from tests.unit.harness import (
    Replication,
    applied_sequence_numbers,
    caught_up,
    duplicate_writes,
    finished_and_released,
    guard_checkpoints,
    unapplied_up_to,
)


def fill(stream: FakeStream, shard_id: str, count: int, *, keys: int = 4,
         start: int = 0) -> list[str]:
    """``count`` writes over ``keys`` keys, every fifth a delete; their sequence numbers."""
    numbers = []
    for index in range(start, start + count):
        pk = f"{shard_id}-k{index % keys}"
        if index % 5 == 4:
            numbers.append(stream.delete(shard_id, key_of(pk)))
        else:
            numbers.append(stream.put(shard_id, item(pk, v=index)))
    return numbers


# -- expired iterators ----------------------------------------------------------------


async def test_expired_iterator_resumes_after_last_applied_record() -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    checkpoints = guard_checkpoints(stream, dest, store)
    shard = stream.add_shard()
    fill(stream, shard, 30)
    stream.get_records_fault = on_calls({2, 4, 5, 9}, expired_iterator)

    reacquired: list[tuple[str, list[str]]] = []

    def on_call(call: Call) -> None:
        # Each new iterator after an expiry: it must follow the last record handed
        # over, and everything up to that record must be applied by then.
        if call.operation == "GetShardIterator" and call.iterator_type != "TRIM_HORIZON":
            assert call.sequence_number is not None
            reacquired.append((
                call.iterator_type or "",
                [stream.delivered[shard], call.sequence_number,
                 *unapplied_up_to(stream, dest, shard, call.sequence_number)],
            ))

    stream.on_call = on_call
    async with Replication(stream, dest, store, get_records_limit=4) as replication:
        await store.wait_until(caught_up(stream))

    assert replication.stats.expired_iterators == 4
    assert len(reacquired) == 4
    for iterator_type, (delivered, after, *unapplied) in reacquired:
        assert iterator_type == "AFTER_SEQUENCE_NUMBER"
        assert after == delivered
        assert unapplied == []
    # Nothing lost, nothing applied twice.
    assert dest.table == stream.source
    assert duplicate_writes(stream, dest) == []
    assert unapplied_up_to(stream, dest, shard, stream.shards[shard].sequence_numbers[-1]) == []
    assert checkpoints == []


async def test_expired_iterator_before_anything_was_read() -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    shard = stream.add_shard()
    fill(stream, shard, 6)
    stream.get_records_fault = on_calls({1}, expired_iterator)

    async with Replication(stream, dest, store):
        await store.wait_until(caught_up(stream))

    assert [c.iterator_type for c in stream.calls_on(shard, "GetShardIterator")] == [
        "TRIM_HORIZON", "TRIM_HORIZON"
    ]
    assert dest.table == stream.source
    assert duplicate_writes(stream, dest) == []


# -- trimmed data ---------------------------------------------------------------------


def trim_at_third_read(stream: FakeStream, shard_id: str, count: int) -> None:
    """Before the third GetRecords of the shard, trim its first ``count`` records."""

    def on_call(call: Call) -> None:
        if (call.operation == "GetRecords" and call.shard_id == shard_id
                and len(stream.calls_on(shard_id, "GetRecords")) == 3):
            stream.trim(shard_id, count)

    stream.on_call = on_call


async def test_trimmed_data_is_fatal_by_default() -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    checkpoints = guard_checkpoints(stream, dest, store)
    shard = stream.add_shard()
    numbers = fill(stream, shard, 10)
    trim_at_third_read(stream, shard, 8)  # the third read starts at record 6

    with capture_logs() as logs:
        async with Replication(stream, dest, store, get_records_limit=3) as replication:
            await replication.ended()

    fatal = replication.coordinator.fatal
    assert isinstance(fatal, DataLossError)
    assert f"shard {shard}" in str(fatal)
    assert f"sequence number {numbers[5]}" in str(fatal)
    assert replication.stats.trimmed_events == 1
    loud = [e for e in logs if e["event"] == "trimmed data: records lost"]
    assert len(loud) == 1
    assert loud[0]["log_level"] == "error"
    assert loud[0]["skipping"] is False
    assert loud[0]["checkpoint"] == numbers[5]
    # Records 6 and 7 were never applied, and no checkpoint passed them.
    assert set(applied_sequence_numbers(stream, dest)) <= set(numbers[:6])
    assert checkpoints == []
    row = store.row(shard)
    assert row is not None
    assert row.owner is None
    assert row.checkpoint == numbers[5]


async def test_trimmed_data_skipped_when_asked_goes_on_from_trim_horizon() -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    shard = stream.add_shard()
    numbers = fill(stream, shard, 10, keys=10)
    trim_at_third_read(stream, shard, 8)

    with capture_logs() as logs:
        async with Replication(stream, dest, store, get_records_limit=3,
                               skip_trimmed=True) as replication:
            await store.wait_until(caught_up(stream))

    assert replication.coordinator.fatal is None
    assert replication.stats.trimmed_events == 1
    loud = [e for e in logs if e["event"] == "trimmed data: records lost"]
    assert [(e["log_level"], e["skipping"]) for e in loud] == [("error", True)]
    assert [c.iterator_type for c in stream.calls_on(shard, "GetShardIterator")] == [
        "TRIM_HORIZON", "TRIM_HORIZON"
    ]
    applied = applied_sequence_numbers(stream, dest)
    assert sorted(applied, key=sequence_key) == [*numbers[:6], *numbers[8:]]


async def test_checkpoint_beyond_trim_horizon_at_start_is_fatal() -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    shard = stream.add_shard()
    numbers = fill(stream, shard, 10)
    # A previous run checkpointed record 2; records 0..4 have been trimmed since.
    await store.plant(Lease(STREAM_ARN, shard, None, None, 9, numbers[2]))
    stream.trim(shard, 5)

    with capture_logs() as logs:
        async with Replication(stream, dest, store) as replication:
            await replication.ended()

    assert isinstance(replication.coordinator.fatal, DataLossError)
    assert replication.stats.trimmed_events == 1
    assert any(e["event"] == "trimmed data: records lost" and e["log_level"] == "error"
               for e in logs)
    assert dest.log == []
    row = store.row(shard)
    assert row is not None
    assert (row.owner, row.checkpoint) == (None, numbers[2])


# -- throttling -------------------------------------------------------------------------


async def test_throttling_and_unprocessed_items_are_retried_until_applied() -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    checkpoints = guard_checkpoints(stream, dest, store)
    root = stream.add_shard()
    fill(stream, root, 40, keys=12)
    for child in stream.split(root):
        fill(stream, child, 30, keys=12, start=40)
    stream.get_records_fault = every_nth(2)
    stream.get_shard_iterator_fault = every_nth(3)
    dest.fault = every_nth(3)
    dest.unprocessed = unprocessed_every(2)

    async with Replication(stream, dest, store, get_records_limit=7) as replication:
        await store.wait_until(caught_up(stream))

    stats = replication.stats
    assert dest.table == stream.source
    assert duplicate_writes(stream, dest) == []
    assert checkpoints == []
    assert dest.violations == []
    assert stream.injected["GetRecords"] > 0
    assert stream.injected["GetShardIterator"] > 0
    assert dest.injected > 0
    assert dest.unprocessed_calls > 0
    # Every throttle was retried and counted.
    assert stats.throttles["GetRecords"] == stream.injected["GetRecords"]
    assert stats.throttles["GetShardIterator"] == stream.injected["GetShardIterator"]
    assert stats.throttles["BatchWriteItem"] == dest.injected
    assert stats.retries["BatchWriteItem"] == dest.injected
    assert stats.unprocessed_retries == dest.unprocessed_calls
    assert stats.applied_total >= len(dest.log)


async def test_throttled_checkpoint_writes_do_not_stop_replication() -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    root = stream.add_shard()
    fill(stream, root, 20)
    (child,) = stream.split(root, children=1)
    fill(stream, child, 10, start=20)
    # The checkpoint table throttles every other UpdateItem: checkpoints, renewals,
    # and the SHARD_END release all meet it.
    store.fault = lambda call: every_nth(2)(call) if call.operation == "UpdateItem" else None

    async with Replication(stream, dest, store, get_records_limit=3) as replication:
        await store.wait_until(caught_up(stream))

    assert replication.coordinator.fatal is None
    assert store.injected["UpdateItem"] > 0
    assert replication.stats.throttles["UpdateItem"] > 0
    assert dest.table == stream.source
    assert finished_and_released(store, root)


# -- poison records ---------------------------------------------------------------------


async def test_poison_record_stops_the_shard_before_it() -> None:
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    checkpoints = guard_checkpoints(stream, dest, store)
    shard = stream.add_shard()
    before = [stream.put(shard, item(f"ok{i}", v=i)) for i in range(5)]
    poison = stream.put(shard, item("bad", v=99, poison="x" * 10))
    after = [stream.put(shard, item(f"late{i}", v=i)) for i in range(3)]

    async with Replication(stream, dest, store, writers=1, get_records_limit=100) as replication:
        await replication.ended()

    fatal = replication.coordinator.fatal
    assert isinstance(fatal, PoisonRecordError)
    assert f"stream record {poison} of shard {shard}" in str(fatal)
    assert any(f"shard {shard}" in note for note in getattr(fatal, "__notes__", []))
    assert replication.stats.poison_records == 1
    # The other keys of the rejected batch were still applied.
    applied = applied_sequence_numbers(stream, dest)
    assert set(before) <= set(applied)
    assert poison not in applied
    assert not set(after) & set(applied)
    row = store.row(shard)
    assert row is not None
    assert row.owner is None
    assert row.checkpoint == before[-1]
    assert sequence_key(row.checkpoint) < sequence_key(poison)
    assert checkpoints == []
    assert all(lease.checkpoint in (Sentinel.TRIM_HORIZON, *before)
               for _, lease in store.history)


class OneSequenceNumberForTwoWrites(FakeStream):
    """moto under concurrent writes: two records get one sequence number, and the next
    iterator after a page ("after that sequence number") points at the second of them
    again, so a shard that ends with them serves that record for ever."""

    async def get_records(self, iterator: str, limit: int) -> RecordsPage:
        page = await super().get_records(iterator, limit)
        if page.records and page.next_iterator is not None:
            shard_id, _ = self._iterators[page.next_iterator]
            records = self.shards[shard_id].records
            last = page.records[-1]["dynamodb"]["SequenceNumber"]
            first = next(index for index, raw in enumerate(records)
                         if raw["dynamodb"]["SequenceNumber"] == last)
            page = RecordsPage(page.records, self._token(shard_id, first + 1))
        return page


async def test_a_record_served_again_is_not_applied_again_and_the_reader_goes_idle() -> None:
    stream, dest, store = OneSequenceNumberForTwoWrites(), FakeDestination(), FakeLeaseStore()
    shard = stream.add_shard()
    fill(stream, shard, 6)
    stream.put(shard, item("twin-a", v=1))
    stream.put(shard, item("twin-b", v=2))
    records = stream.records(shard)
    records[-1]["dynamodb"]["SequenceNumber"] = records[-2]["dynamodb"]["SequenceNumber"]

    async with Replication(stream, dest, store) as replication:
        await dest.wait_until(lambda table: table == stream.source)
        gets = stream.counts["GetRecords"]
        # Idle from here: a read every idle interval finds nothing new.
        await stream.wait_until(lambda _: stream.counts["GetRecords"] >= gets + 5)
        consumer = replication.coordinator.consumers[replication.key(shard)][0]
        assert consumer.reading.caught_up

    assert replication.stats.records_read == 8  # the twin served again was passed over
    assert replication.stats.applied_total == 8
    assert [w.key for w in dest.log].count((("pk", "S", "twin-b"),)) == 1


async def test_a_record_with_an_older_sequence_number_than_the_last_is_still_applied() -> None:
    """moto again: of three concurrent writes, the one appended last can carry the
    sequence number of the first. It is another write all the same."""
    stream, dest, store = FakeStream(), FakeDestination(), FakeLeaseStore()
    shard = stream.add_shard()
    fill(stream, shard, 4)
    stream.put(shard, item("first", v=1))
    stream.put(shard, item("second", v=2))
    stream.put(shard, item("third", v=3))
    records = stream.records(shard)
    records[-1]["dynamodb"]["SequenceNumber"] = records[-3]["dynamodb"]["SequenceNumber"]

    async with Replication(stream, dest, store) as replication:
        await dest.wait_until(lambda table: table == stream.source)

    assert (("pk", "S", "third"),) in dest.table
    assert replication.stats.records_read == 7
