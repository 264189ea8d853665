"""Lease decisions (pure functions) and HeldLease's conditional writes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.checkpoint import Sentinel
from replicator.errors import LeaseLostError, ThrottledError, TransientError
from replicator.lease import Lease
from replicator.leases.expiry import LeaseExpiry
from replicator.leases.held import HeldLease
from replicator.records import Shard
from replicator.stream.balance import plan_steal, plan_takes
from replicator.stream.lineage import parent_done, plan_deletions, plan_new_leases
from tests.fakes import STREAM_ARN, FakeLeaseStore, on_calls
from tests.unit.harness import CLOCK

ME, OTHER = "worker-me", "worker-other"


def lease(shard_id: str, *, parent: str | None = None, owner: str | None = None,
          counter: int = 0, checkpoint: str = Sentinel.TRIM_HORIZON) -> Lease:
    return Lease(STREAM_ARN, shard_id, parent, owner, counter, checkpoint)


def closed(shard_id: str, parent: str | None = None) -> Shard:
    return Shard(shard_id, parent, "100", "200")


def open_(shard_id: str, parent: str | None = None) -> Shard:
    return Shard(shard_id, parent, "300")


# -- plan_new_leases -------------------------------------------------------------------


def test_first_start_at_trim_horizon_reads_everything() -> None:
    shards = [closed("a"), open_("b", parent="a"), open_("c")]
    created = plan_new_leases(STREAM_ARN, shards, {}, Sentinel.TRIM_HORIZON)
    assert created == [
        lease("a"),
        lease("b", parent="a"),
        lease("c"),
    ]


def test_first_start_at_latest_finishes_closed_shards_and_starts_open_ones_at_latest() -> None:
    shards = [closed("a"), closed("b", parent="a"), open_("c", parent="b")]
    created = plan_new_leases(STREAM_ARN, shards, {}, Sentinel.LATEST)
    assert created == [
        lease("a", checkpoint=Sentinel.SHARD_END),
        lease("b", parent="a", checkpoint=Sentinel.SHARD_END),
        lease("c", parent="b", checkpoint=Sentinel.LATEST),
    ]


@pytest.mark.parametrize("initial", [Sentinel.LATEST, Sentinel.TRIM_HORIZON])
def test_later_shards_always_start_at_trim_horizon(initial: Sentinel) -> None:
    known = {"a": lease("a", owner=ME, counter=4, checkpoint="150")}
    shards = [open_("a"), open_("b", parent="a"), closed("c", parent="a")]
    created = plan_new_leases(STREAM_ARN, shards, known, initial)
    assert created == [lease("b", parent="a"), lease("c", parent="a")]


def test_no_shards_plan_nothing() -> None:
    assert plan_new_leases(STREAM_ARN, [], {}, Sentinel.LATEST) == []


# -- parent_done and plan_deletions ------------------------------------------------------


def test_parent_done() -> None:
    leases = {
        "root": lease("root"),
        "orphan": lease("orphan", parent="gone"),
        "waiting": lease("waiting", parent="busy"),
        "busy": lease("busy", owner=OTHER, checkpoint="120"),
        "ready": lease("ready", parent="done"),
        "done": lease("done", checkpoint=Sentinel.SHARD_END),
        "blocked": lease("blocked", parent="listed-no-row"),
        "trimmed-parent": lease("trimmed-parent", parent="busy-but-trimmed"),
        "busy-but-trimmed": lease("busy-but-trimmed", owner=OTHER, checkpoint="50"),
    }
    listed = {"root", "orphan", "waiting", "busy", "ready", "done", "blocked",
              "listed-no-row", "trimmed-parent"}
    assert parent_done("root", leases, listed)  # no parent
    assert parent_done("orphan", leases, listed)  # parent trimmed, no row
    assert not parent_done("waiting", leases, listed)  # parent listed, still being read
    assert parent_done("ready", leases, listed)  # parent at SHARD_END
    assert not parent_done("blocked", leases, listed)  # parent listed, row not yet made
    assert parent_done("trimmed-parent", leases, listed)  # unlisted parent's row is stale


def test_plan_deletions_keeps_a_finished_row_until_every_child_was_read() -> None:
    shards = [
        closed("listed-done"), open_("child-a", parent="listed-done"),
        open_("child-b", parent="listed-done"),
        closed("parent-2"), open_("child-c", parent="parent-2"),
        closed("no-children-yet"), open_("listed"),
    ]
    leases = {
        "gone-done": lease("gone-done", checkpoint=Sentinel.SHARD_END),
        "gone-unfinished": lease("gone-unfinished", checkpoint="10"),
        "listed-done": lease("listed-done", checkpoint=Sentinel.SHARD_END),
        "child-a": lease("child-a", parent="listed-done", checkpoint="30"),
        "child-b": lease("child-b", parent="listed-done", checkpoint=Sentinel.TRIM_HORIZON),
        "parent-2": lease("parent-2", checkpoint=Sentinel.SHARD_END),
        "child-c": lease("child-c", parent="parent-2", checkpoint="40"),
        "no-children-yet": lease("no-children-yet", checkpoint=Sentinel.SHARD_END),
        "listed": lease("listed", owner=ME, checkpoint="20"),
    }
    # Unlisted and finished: gone. A parent whose every child was read: gone. A parent
    # with a child still at TRIM_HORIZON, or whose children are not listed yet: kept.
    assert plan_deletions(leases, shards) == [leases["gone-done"], leases["parent-2"]]

    leases["child-b"] = replace(leases["child-b"], checkpoint="31")
    assert leases["listed-done"] in plan_deletions(leases, shards)


def test_a_deleted_parent_is_not_created_again_and_does_not_block_its_read_child() -> None:
    shards = [closed("parent"), open_("child", parent="parent"), open_("fresh", parent="other")]
    leases = {
        "child": lease("child", parent="parent", checkpoint="50"),
        "other": lease("other", checkpoint=Sentinel.TRIM_HORIZON),
    }
    planned = plan_new_leases(STREAM_ARN, shards, leases, Sentinel.TRIM_HORIZON)
    assert [row.shard_id for row in planned] == ["fresh"]
    listed = {shard.shard_id for shard in shards}
    assert parent_done("child", leases, listed)  # read before: its parent was done then
    leases["child"] = replace(leases["child"], checkpoint=Sentinel.TRIM_HORIZON)
    assert not parent_done("child", leases, listed)


# -- LeaseExpiry and plan_takes ----------------------------------------------------------


def test_expiry_is_measured_on_the_observers_clock() -> None:
    clock = LeaseExpiry(lease_duration=10.0)
    row = lease("a", owner=OTHER, counter=3)
    assert not clock.expired(row, 1000.0)  # never observed
    clock.observe([row], now=500.0)
    assert not clock.expired(row, 509.9)
    assert clock.expired(row, 510.0)
    # Seen again unchanged: still measured from the first sighting.
    clock.observe([row], now=505.0)
    assert clock.expired(row, 510.0)


def test_a_renewed_or_handed_over_lease_is_not_expired() -> None:
    clock = LeaseExpiry(lease_duration=10.0)
    row = lease("a", owner=OTHER, counter=3)
    clock.observe([row], now=0.0)
    renewed = replace(row, counter=4)
    clock.observe([renewed], now=9.0)
    assert not clock.expired(renewed, 15.0)
    assert clock.expired(renewed, 19.0)
    # The stale row (the counter this worker saw before) is not expired either.
    assert not clock.expired(row, 100.0)
    handed_over = replace(renewed, owner="worker-third")
    clock.observe([handed_over], now=19.0)
    assert not clock.expired(handed_over, 28.0)


def test_a_row_that_disappears_and_comes_back_starts_afresh() -> None:
    clock = LeaseExpiry(lease_duration=10.0)
    row = lease("a", owner=OTHER, counter=3)
    clock.observe([row], now=0.0)
    clock.observe([], now=5.0)
    clock.observe([row], now=8.0)
    assert not clock.expired(row, 15.0)
    assert clock.expired(row, 18.0)


def test_plan_takes_waits_for_the_full_lease_duration() -> None:
    clock = LeaseExpiry(lease_duration=10.0)
    rows = [lease("stale", owner=OTHER, counter=5)]
    clock.observe(rows, now=0.0)
    assert plan_takes(rows, ME, clock, now=9.99, held=set()) == []
    assert plan_takes(rows, ME, clock, now=10.0, held=set()) == rows


def rows_owned(counts: dict[str | None, int], *, finished: int = 0) -> list[Lease]:
    """Active leases owned as ``counts`` says (None: free), plus finished ones."""
    rows = []
    for owner, count in counts.items():
        for _ in range(count):
            rows.append(lease(f"s{len(rows):02d}", owner=owner, counter=len(rows)))
    for index in range(finished):
        rows.append(lease(f"done{index}", checkpoint=Sentinel.SHARD_END))
    return rows


def observed(rows: list[Lease], now: float = 0.0) -> LeaseExpiry:
    clock = LeaseExpiry(lease_duration=10.0)
    clock.observe(rows, now=now)
    return clock


def test_a_lone_worker_takes_every_free_lease_but_no_finished_one() -> None:
    rows = rows_owned({None: 5}, finished=3)
    taken = plan_takes(rows, ME, observed(rows), now=0.0, held=set())
    assert sorted(row.shard_id for row in taken) == [f"s{i:02d}" for i in range(5)]


def test_free_leases_are_taken_only_up_to_the_fair_share() -> None:
    # 6 active leases, 2 live workers (OTHER holds 2): the fair share is 3.
    rows = rows_owned({OTHER: 2, None: 4})
    taken = plan_takes(rows, ME, observed(rows), now=1.0, held=set())
    assert len(taken) == 3
    assert all(row.owner is None for row in taken)
    assert plan_steal(rows, ME, observed(rows), now=1.0, held=set()) is None  # free ones exist


def test_an_expired_lease_is_taken_and_its_vanished_owner_not_counted() -> None:
    rows = rows_owned({OTHER: 4, ME: 0})
    clock = observed(rows)
    assert plan_takes(rows, ME, clock, now=9.0, held=set()) == []  # OTHER still alive
    taken = plan_takes(rows, ME, clock, now=10.0, held=set())
    # OTHER vanished: it no longer counts as a live worker, so the fair share is all 4.
    assert sorted(row.shard_id for row in taken) == ["s00", "s01", "s02", "s03"]


def test_a_released_lease_is_free_at_once() -> None:
    held_row = lease("a", owner=OTHER, counter=7)
    released = replace(held_row, owner=None, counter=8)
    clock = observed([held_row])
    clock.observe([released], now=0.5)
    assert plan_takes([released], ME, clock, now=0.5, held=set()) == [released]


def test_own_rows_not_held_are_taken_back_first() -> None:
    rows = [lease("a"), lease("b", owner=ME, counter=3), lease("c", owner=OTHER)]
    taken = plan_takes(rows, ME, observed(rows), now=0.0, held=set())
    # Two live workers, three leases: a share of two, and this worker's own row first.
    assert [row.shard_id for row in taken][:1] == ["b"]
    assert len(taken) == 2


def test_at_or_over_the_fair_share_nothing_is_taken_or_stolen() -> None:
    rows = rows_owned({ME: 3, OTHER: 3, None: 0})
    held = {row.key for row in rows if row.owner == ME}
    clock = observed(rows)
    assert plan_takes(rows, ME, clock, now=0.0, held=held) == []
    assert plan_steal(rows, ME, clock, now=0.0, held=held) is None


def test_under_the_share_steals_one_lease_from_the_most_loaded_worker() -> None:
    rows = rows_owned({"worker-a": 2, "worker-b": 5, "worker-c": 5})
    clock = observed(rows)
    # 12 leases, 4 workers: a share of 3. Nothing free: steal one, from the most
    # loaded; the tie between b and c goes to the smaller worker id.
    assert plan_takes(rows, ME, clock, now=1.0, held=set()) == []
    stolen = plan_steal(rows, ME, clock, now=1.0, held=set())
    assert stolen is not None
    assert stolen.owner == "worker-b"


def test_no_steal_from_a_worker_exactly_at_the_share_when_within_one() -> None:
    rows = rows_owned({ME: 1, OTHER: 2})  # share 2: ME is one below, OTHER at it
    held = {row.key for row in rows if row.owner == ME}
    assert plan_steal(rows, ME, observed(rows), now=0.0, held=held) is None
    rows = rows_owned({ME: 0, "worker-a": 3, "worker-b": 3, "worker-c": 3, "worker-d": 3})
    # Share 3: ME is more than one below, so it steals even from workers at the share.
    stolen = plan_steal(rows, ME, observed(rows), now=0.0, held=set())
    assert stolen is not None
    assert stolen.owner == "worker-a"


def test_a_stealer_never_counts_expired_leases_as_load() -> None:
    rows = rows_owned({OTHER: 4})
    clock = observed(rows)
    # Once OTHER's leases expire they are available, not stolen.
    assert plan_steal(rows, ME, clock, now=10.0, held=set()) is None
    assert len(plan_takes(rows, ME, clock, now=10.0, held=set())) == 4


@settings(max_examples=150, deadline=None)
@given(
    shards=st.integers(min_value=1, max_value=16),
    workers=st.integers(min_value=1, max_value=6),
    skew=st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=16),
)
def test_leases_balance_to_within_one_of_the_fair_share(
    shards: int, workers: int, skew: list[int]
) -> None:
    """Every worker runs a cycle in turn, taking and stealing as planned, with conditional
    takes; from any start, the leases settle within one of the fair share, no lease is
    ever unowned at the end, and a settled assignment stays put."""
    names = [f"w{i}" for i in range(workers)]
    owners: dict[str, str | None] = {
        f"s{i:02d}": names[skew[i % len(skew)] % workers] if skew[i % len(skew)] else None
        for i in range(shards)
    }
    counters = dict.fromkeys(owners, 0)

    def table() -> list[Lease]:
        return [lease(shard, owner=owners[shard], counter=counters[shard]) for shard in owners]

    def cycle(worker: str) -> bool:
        rows = table()
        held = {row.key for row in rows if row.owner == worker}
        clock = LeaseExpiry(lease_duration=10.0)
        clock.observe(rows, now=0.0)
        moves = plan_takes(rows, worker, clock, now=0.0, held=held)
        if not moves:
            stolen = plan_steal(rows, worker, clock, now=0.0, held=held)
            moves = [stolen] if stolen is not None else []
        for row in moves:
            if (owners[row.shard_id], counters[row.shard_id]) == (row.owner, row.counter):
                owners[row.shard_id] = worker
                counters[row.shard_id] += 1
        return bool(moves)

    for _ in range(shards * workers + 2):  # bounded: at most one steal per worker per cycle
        moved = [cycle(worker) for worker in names]
        if not any(moved):
            break
    else:
        raise AssertionError(f"still moving after {shards * workers + 2} rounds: {owners}")
    share = -(-shards // workers)
    loads = [sum(1 for owner in owners.values() if owner == name) for name in names]
    assert None not in owners.values()
    assert all(share - 1 <= load <= share for load in loads), loads


# -- HeldLease ------------------------------------------------------------------------------


async def taken_lease(store: FakeLeaseStore, shard_id: str = "a") -> HeldLease:
    row = lease(shard_id)
    assert await store.create_lease(row)
    return HeldLease(store, await store.update_lease(row, new_owner=ME), clock=CLOCK)


async def test_renew_and_checkpoint_bump_the_counter() -> None:
    store = FakeLeaseStore()
    held = await taken_lease(store)
    await held.renew()
    await held.checkpoint("123")
    assert held.lease == lease("a", owner=ME, counter=3, checkpoint="123")
    assert store.row("a") == held.lease
    assert not held.lost


async def test_a_failed_condition_means_the_lease_is_lost() -> None:
    store = FakeLeaseStore()
    held = await taken_lease(store)
    # Another worker took the lease over.
    row = store.row("a")
    assert row is not None
    await store.plant(replace(row, owner=OTHER, counter=row.counter + 1))
    with pytest.raises(LeaseLostError, match="shard a"):
        await held.checkpoint("999")
    assert held.lost
    row = store.row("a")
    assert row is not None
    assert (row.owner, row.checkpoint) == (OTHER, Sentinel.TRIM_HORIZON)
    # Once lost, nothing more is written.
    writes = store.counts["UpdateItem"]
    with pytest.raises(LeaseLostError):
        await held.renew()
    assert store.counts["UpdateItem"] == writes


async def test_a_deleted_row_means_the_lease_is_lost() -> None:
    store = FakeLeaseStore()
    held = await taken_lease(store)
    store.rows.clear()
    with pytest.raises(LeaseLostError):
        await held.renew()
    assert held.lost


async def test_a_throttled_write_is_not_a_lost_lease() -> None:
    store = FakeLeaseStore()
    held = await taken_lease(store)
    store.fault = on_calls({store.counts["UpdateItem"] + 1})
    with pytest.raises(ThrottledError):
        await held.renew()
    assert not held.lost
    await held.renew()
    assert held.lease.counter == 2


async def test_release_clears_the_owner_and_marks_the_lease_gone() -> None:
    store = FakeLeaseStore()
    held = await taken_lease(store)
    await held.release(Sentinel.SHARD_END)
    assert store.row("a") == lease("a", owner=None, counter=2, checkpoint=Sentinel.SHARD_END)
    assert held.lost
    assert store.owner_switches[(STREAM_ARN, "a")] == 2  # taken, then released


async def test_concurrent_renewal_and_checkpoint_are_serialised() -> None:
    store = FakeLeaseStore()
    held = await taken_lease(store)
    async with asyncio.timeout(1):
        await asyncio.gather(held.renew(), held.checkpoint("200"), held.renew())
    assert not held.lost
    assert held.lease.counter == 4
    assert store.row("a") == held.lease
    assert held.lease.checkpoint == "200"


class AnswersLost(FakeLeaseStore):
    """A lease table whose next ``lose`` updates are applied but answered with a dropped
    connection, as when the answer is lost on the way back."""

    lose = 0

    async def update_lease(self, lease: Lease, *, new_owner: str | None,
                           checkpoint: str | None = None,
                           checkpoints: Mapping[str, str] | None = None) -> Lease:
        updated = await super().update_lease(lease, new_owner=new_owner, checkpoint=checkpoint,
                                         checkpoints=checkpoints)
        if self.lose:
            self.lose -= 1
            raise TransientError("UpdateItem: ConnectionClosedError: answer lost",
                                 operation="UpdateItem")
        return updated


async def test_a_write_whose_answer_was_lost_keeps_the_lease() -> None:
    store = AnswersLost()
    lease = Lease(STREAM_ARN, "shard-1", None, "me", 0, Sentinel.TRIM_HORIZON)
    await store.plant(lease)
    held = HeldLease(store, lease, clock=CLOCK, lease_duration=10)
    store.lose = 1
    with pytest.raises(TransientError):
        await held.checkpoint("100")  # applied: the row's counter moved
    await held.renew()  # fails its condition, finds its own write, and writes again
    await held.checkpoint("200")
    assert not held.lost
    row = store.row("shard-1")
    assert row is not None
    assert (row.owner, row.counter, row.checkpoint) == ("me", 3, "200")
    assert held.lease == row


async def test_after_a_lost_answer_a_lease_another_worker_took_is_lost() -> None:
    store = AnswersLost()
    lease = Lease(STREAM_ARN, "shard-1", None, "me", 0, Sentinel.TRIM_HORIZON)
    await store.plant(lease)
    held = HeldLease(store, lease, clock=CLOCK, lease_duration=10)
    store.lose = 1
    with pytest.raises(TransientError):
        await held.renew()
    await store.plant(replace(lease, owner="other", counter=2))  # expired and taken
    with pytest.raises(LeaseLostError):
        await held.renew()
    assert held.lost


async def test_a_renewal_queued_behind_the_release_ends_quietly() -> None:
    store = FakeLeaseStore()
    lease = Lease(STREAM_ARN, "shard-1", None, "me", 0, Sentinel.TRIM_HORIZON)
    await store.plant(lease)
    held = HeldLease(store, lease, clock=CLOCK, lease_duration=10)
    release = asyncio.create_task(held.release("100"))
    await asyncio.sleep(0)  # the release holds the lease's lock
    await held.renew()  # waits for it, then has nothing to renew: no LeaseLostError
    await release
    row = store.row("shard-1")
    assert row is not None
    assert (row.owner, row.counter, row.checkpoint) == (None, 1, "100")
