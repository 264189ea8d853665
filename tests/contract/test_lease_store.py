"""The checkpoint table's contract (``LeaseStore``): every write conditional on the
owner and counter the writer last saw, the counter bumped by each, and what a worker
needs to recover from a write whose answer it never got (``HeldLease``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from replicator import errors
from replicator.aws.lease_store import DynamoLeaseStore
from replicator.checkpoint import Sentinel
from replicator.clock import SYSTEM_CLOCK
from replicator.lease import Lease, WorkerRow
from replicator.leases.held import HeldLease
from replicator.protocols import LeaseStore
from tests.fakes import STREAM_ARN

from .conftest import Clients, fresh_name, on_backends, unplayable

#: One event loop for the session, so that its clients are opened once.
pytestmark = pytest.mark.asyncio(loop_scope="session")

OTHER_STREAM_ARN = STREAM_ARN.replace("2024-01-01", "2025-06-30")


def free_lease(shard_id: str = "shardId-0001", *, stream_arn: str = STREAM_ARN,
               parent: str | None = None) -> Lease:
    return Lease(stream_arn=stream_arn, shard_id=shard_id, parent_shard_id=parent,
                 owner=None, counter=0, checkpoint=Sentinel.TRIM_HORIZON)


async def row_of(store: LeaseStore, lease: Lease) -> Lease | None:
    rows = await store.list_leases(lease.stream_arn)
    return next((row for row in rows if row.shard_id == lease.shard_id), None)


async def test_create_lease_creates_a_row_only_when_absent(lease_store: LeaseStore) -> None:
    lease = free_lease(parent="shardId-0000")
    assert await lease_store.create_lease(lease) is True
    assert await lease_store.list_leases(STREAM_ARN) == [lease]

    again = Lease(STREAM_ARN, lease.shard_id, None, "worker-a", 7, "SHARD_END")
    assert await lease_store.create_lease(again) is False
    assert await lease_store.list_leases(STREAM_ARN) == [lease]  # left as it was


async def test_a_created_lease_keeps_its_owner_counter_and_checkpoint(
    lease_store: LeaseStore,
) -> None:
    lease = Lease(STREAM_ARN, "shardId-0002", None, "worker-a", 3, "AT:000123")
    assert await lease_store.create_lease(lease)
    assert await lease_store.list_leases(STREAM_ARN) == [lease]


async def test_list_leases_lists_the_rows_of_one_stream(lease_store: LeaseStore) -> None:
    ours = [free_lease(f"shardId-{n:04d}") for n in (3, 1, 2)]
    theirs = [free_lease(f"shardId-{n:04d}", stream_arn=OTHER_STREAM_ARN) for n in (1, 9)]
    for lease in [*ours, *theirs]:
        assert await lease_store.create_lease(lease)
    listed = await lease_store.list_leases(STREAM_ARN)
    assert sorted(listed, key=lambda lease: lease.shard_id) == sorted(
        ours, key=lambda lease: lease.shard_id)
    assert sorted(row.shard_id for row in await lease_store.list_leases(OTHER_STREAM_ARN)) == [
        "shardId-0001", "shardId-0009"]
    assert await lease_store.list_leases(STREAM_ARN.replace("source", "absent")) == []


async def test_take_renew_checkpoint_and_release_each_bump_the_counter(
    lease_store: LeaseStore,
) -> None:
    lease = free_lease()
    await lease_store.create_lease(lease)

    taken = await lease_store.update_lease(lease, new_owner="worker-a")
    assert (taken.owner, taken.counter, taken.checkpoint) == ("worker-a", 1, "TRIM_HORIZON")
    assert await row_of(lease_store, lease) == taken

    renewed = await lease_store.update_lease(taken, new_owner="worker-a")
    assert (renewed.owner, renewed.counter, renewed.checkpoint) == ("worker-a", 2,
                                                                   "TRIM_HORIZON")
    assert await row_of(lease_store, lease) == renewed

    checkpointed = await lease_store.update_lease(renewed, new_owner="worker-a",
                                                  checkpoint="000000000000000000042")
    assert (checkpointed.owner, checkpointed.counter, checkpointed.checkpoint) == (
        "worker-a", 3, "000000000000000000042")
    assert await row_of(lease_store, lease) == checkpointed

    released = await lease_store.update_lease(checkpointed, new_owner=None,
                                              checkpoint=Sentinel.SHARD_END)
    assert (released.owner, released.counter, released.checkpoint) == (None, 4, "SHARD_END")
    assert await row_of(lease_store, lease) == released

    # A released lease is free: anyone may take it, from the row as it is.
    again = await lease_store.update_lease(released, new_owner="worker-b")
    assert (again.owner, again.counter, again.checkpoint) == ("worker-b", 5, "SHARD_END")
    assert await row_of(lease_store, lease) == again


async def test_a_lease_can_be_handed_from_owner_to_owner(lease_store: LeaseStore) -> None:
    """A steal, or a take of an expired lease: the condition names the old owner."""
    lease = Lease(STREAM_ARN, "shardId-0001", None, "worker-a", 5, "000000000000000000007")
    await lease_store.create_lease(lease)
    stolen = await lease_store.update_lease(lease, new_owner="worker-b")
    assert await row_of(lease_store, lease) == stolen == Lease(
        STREAM_ARN, "shardId-0001", None, "worker-b", 6, "000000000000000000007")


@pytest.mark.parametrize("stale", [
    pytest.param({"counter": 0}, id="an-older-counter"),
    pytest.param({"counter": 2}, id="a-newer-counter"),
    pytest.param({"owner": "worker-b"}, id="another-owner"),
    pytest.param({"owner": None}, id="as-if-unowned"),
])
async def test_a_stale_lease_fails_its_condition_and_changes_nothing(
    lease_store: LeaseStore, stale: dict[str, Any],
) -> None:
    taken = await take(lease_store, free_lease(), "worker-a")  # counter 1
    wrong = replace(taken, **stale)
    # A renewal, a take by another worker, a release with the final checkpoint.
    for new_owner, checkpoint in (("worker-a", None), ("worker-c", None), (None, "SHARD_END")):
        with pytest.raises(errors.ConditionFailedError) as failed:
            await lease_store.update_lease(wrong, new_owner=new_owner, checkpoint=checkpoint)
        assert failed.value.operation == "UpdateItem"
        assert failed.value.code == "ConditionalCheckFailedException"
    assert await row_of(lease_store, taken) == taken


async def test_taking_a_free_lease_requires_it_still_free(lease_store: LeaseStore) -> None:
    """Two workers read the same free row; the second take fails, even with the
    counter right, because the row has an owner by then."""
    lease = free_lease()
    await lease_store.create_lease(lease)
    first = await lease_store.update_lease(lease, new_owner="worker-a")
    with pytest.raises(errors.ConditionFailedError):
        await lease_store.update_lease(lease, new_owner="worker-b")
    # The same counter as the row, but the row is owned: still refused.
    as_if_free = replace(first, owner=None)
    with pytest.raises(errors.ConditionFailedError):
        await lease_store.update_lease(as_if_free, new_owner="worker-b")
    assert await row_of(lease_store, lease) == first


async def test_updating_a_missing_row_fails_and_creates_nothing(
    lease_store: LeaseStore,
) -> None:
    for lease in (free_lease(), Lease(STREAM_ARN, "shardId-0001", None, "worker-a", 3, "LATEST")):
        with pytest.raises(errors.ConditionFailedError):
            await lease_store.update_lease(lease, new_owner="worker-a")
    assert await lease_store.list_leases(STREAM_ARN) == []


async def test_delete_lease_is_conditional_on_the_counter(lease_store: LeaseStore) -> None:
    lease = free_lease()
    await lease_store.create_lease(lease)
    finished = await lease_store.update_lease(
        await lease_store.update_lease(lease, new_owner="worker-a"),
        new_owner=None, checkpoint=Sentinel.SHARD_END,
    )
    for stale in (lease, replace(finished, counter=3)):
        with pytest.raises(errors.ConditionFailedError) as failed:
            await lease_store.delete_lease(stale)
        assert failed.value.operation == "DeleteItem"
    assert await row_of(lease_store, lease) == finished

    # Only the counter is the condition: whoever read the row last may delete it.
    await lease_store.delete_lease(replace(finished, owner="worker-z"))
    assert await lease_store.list_leases(STREAM_ARN) == []
    with pytest.raises(errors.ConditionFailedError):
        await lease_store.delete_lease(finished)  # gone: nothing to delete


async def test_a_write_whose_answer_was_lost_is_seen_in_the_row(
    lease_store: LeaseStore,
) -> None:
    """What ``HeldLease`` relies on after a timeout: the write may have landed, so the
    retry with the old lease fails its condition, and the row then shows this owner
    with the counter one further, which the worker adopts and writes again from."""
    taken = await take(lease_store, free_lease(), "worker-a")
    landed = await lease_store.update_lease(taken, new_owner="worker-a")  # answer "lost"
    with pytest.raises(errors.ConditionFailedError):
        await lease_store.update_lease(taken, new_owner="worker-a", checkpoint="0000042")
    row = await row_of(lease_store, taken)
    assert row is not None
    assert (row.owner, row.counter) == (taken.owner, taken.counter + 1)
    assert row == landed
    adopted = await lease_store.update_lease(row, new_owner="worker-a", checkpoint="0000042")
    assert await row_of(lease_store, taken) == adopted
    assert (adopted.counter, adopted.checkpoint) == (taken.counter + 2, "0000042")


class AnswerLost:
    """A ``LeaseStore`` that, when ``lose_next`` is set, applies the next update and
    then raises the timeout its caller would see had the answer been lost."""

    def __init__(self, store: LeaseStore) -> None:
        self.store = store
        self.lose_next = False

    async def list_leases(self, stream_arn: str) -> list[Lease]:
        return await self.store.list_leases(stream_arn)

    async def create_lease(self, lease: Lease) -> bool:
        return await self.store.create_lease(lease)

    async def update_lease(self, lease: Lease, *, new_owner: str | None,
                           checkpoint: str | None = None,
                           checkpoints: Mapping[str, str] | None = None) -> Lease:
        updated = await self.store.update_lease(lease, new_owner=new_owner,
                                                checkpoint=checkpoint, checkpoints=checkpoints)
        if self.lose_next:
            self.lose_next = False
            raise errors.CallTimeoutError("UpdateItem: no answer within the call timeout "
                                          "(lost by the test)", operation="UpdateItem")
        return updated

    async def delete_lease(self, lease: Lease) -> None:
        await self.store.delete_lease(lease)


async def test_a_held_lease_recovers_its_own_lost_write(lease_store: LeaseStore) -> None:
    taken = await take(lease_store, free_lease(), "worker-a")
    losing = AnswerLost(lease_store)
    held = HeldLease(losing, taken, clock=SYSTEM_CLOCK)
    losing.lose_next = True
    with pytest.raises(errors.CallTimeoutError):
        await held.renew()
    await held.checkpoint("000000000000000000042")  # adopts the row, then writes again
    assert not held.lost
    row = await row_of(lease_store, taken)
    assert row == held.lease
    assert (row.owner, row.counter, row.checkpoint) == ("worker-a", 3, "000000000000000000042")
    await held.release(Sentinel.SHARD_END)
    assert await row_of(lease_store, taken) == Lease(
        STREAM_ARN, taken.shard_id, None, None, 4, "SHARD_END")


async def test_a_held_lease_taken_after_its_lost_write_is_lost(
    lease_store: LeaseStore,
) -> None:
    taken = await take(lease_store, free_lease(), "worker-a")
    losing = AnswerLost(lease_store)
    held = HeldLease(losing, taken, clock=SYSTEM_CLOCK)
    losing.lose_next = True
    with pytest.raises(errors.CallTimeoutError):
        await held.renew()
    row = await row_of(lease_store, taken)
    assert row is not None
    await lease_store.update_lease(row, new_owner="worker-b")  # the lease expired: taken
    with pytest.raises(errors.LeaseLostError):
        await held.renew()
    assert held.lost
    taken_row = await row_of(lease_store, taken)
    assert taken_row is not None
    assert (taken_row.owner, taken_row.counter) == ("worker-b", 3)


@on_backends(fake=unplayable("FakeLeaseStore is always there"))
async def test_a_missing_checkpoint_table_is_resource_not_found(
    clients: Clients | None,
) -> None:
    assert clients is not None
    missing = DynamoLeaseStore(clients.dynamodb, fresh_name("absent"), call_timeout=10)
    with pytest.raises(errors.ResourceNotFoundError) as failed:
        await missing.list_leases(STREAM_ARN)
    assert failed.value.operation == "Query"
    with pytest.raises(errors.ResourceNotFoundError):
        await missing.update_lease(free_lease(), new_owner="worker-a")


# -- the workers' rows -------------------------------------------------------------------

NO_WORKER_ROWS = unplayable("FakeLeaseStore keeps no workers' rows")


def worker(worker_id: str, *, phase: str = "replicating", leases: int = 2,
           metrics: str | None = "http://10.0.0.7:9464/metrics") -> WorkerRow:
    return WorkerRow(worker_id=worker_id, host="host-1", pid=4242, phase=phase, leases=leases,
                     metrics=metrics, started_at=1_700_000_000.25,
                     heartbeat_at=1_700_000_123.5)


@on_backends(fake=NO_WORKER_ROWS)
async def test_workers_rows_are_put_listed_and_deleted(lease_store: Any) -> None:
    await lease_store.create_lease(free_lease())
    one, two = worker("worker-a"), worker("worker-b", phase="copying", leases=0, metrics=None)
    await lease_store.put_worker(one)
    await lease_store.put_worker(two)
    assert sorted(await lease_store.list_workers(), key=lambda row: row.worker_id) == [one, two]
    # A worker's row is written over by the next heartbeat, and is no shard's lease.
    newer = worker("worker-a", leases=5)
    await lease_store.put_worker(newer)
    assert sorted(await lease_store.list_workers(), key=lambda row: row.worker_id) == [
        newer, two]
    assert [lease.shard_id for lease in await lease_store.list_leases(STREAM_ARN)] == [
        "shardId-0001"]
    await lease_store.delete_worker("worker-a")
    await lease_store.delete_worker("worker-never-was")  # no condition: nothing to fail
    assert await lease_store.list_workers() == [two]


# -- helpers ----------------------------------------------------------------------------


async def take(store: LeaseStore, lease: Lease, owner: str) -> Lease:
    assert await store.create_lease(lease)
    return await store.update_lease(lease, new_owner=owner)

