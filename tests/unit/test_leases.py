"""Lease decisions (pure functions) and HeldLease's conditional writes."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.checkpoint import Sentinel
from replicator.errors import LeaseLostError, ThrottledError
from replicator.leases import (
    ExpiryClock,
    HeldLease,
    Lease,
    parent_done,
    plan_deletions,
    plan_new_leases,
    plan_takes,
)
from replicator.records import Shard
from tests.fakes import STREAM_ARN, FakeLeaseStore, on_calls

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


def test_plan_deletions_removes_only_finished_unlisted_rows() -> None:
    leases = {
        "gone-done": lease("gone-done", checkpoint=Sentinel.SHARD_END),
        "listed-done": lease("listed-done", checkpoint=Sentinel.SHARD_END),
        "gone-unfinished": lease("gone-unfinished", checkpoint="10"),
        "listed": lease("listed", owner=ME, checkpoint="20"),
    }
    assert plan_deletions(leases, {"listed-done", "listed"}) == [leases["gone-done"]]


# -- ExpiryClock and plan_takes ----------------------------------------------------------


def test_expiry_is_measured_on_the_observers_clock() -> None:
    clock = ExpiryClock(lease_duration=10.0)
    row = lease("a", owner=OTHER, counter=3)
    assert not clock.expired(row, 1000.0)  # never observed
    clock.observe([row], now=500.0)
    assert not clock.expired(row, 509.9)
    assert clock.expired(row, 510.0)
    # Seen again unchanged: still measured from the first sighting.
    clock.observe([row], now=505.0)
    assert clock.expired(row, 510.0)


def test_a_renewed_or_handed_over_lease_is_not_expired() -> None:
    clock = ExpiryClock(lease_duration=10.0)
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
    clock = ExpiryClock(lease_duration=10.0)
    row = lease("a", owner=OTHER, counter=3)
    clock.observe([row], now=0.0)
    clock.observe([], now=5.0)
    clock.observe([row], now=8.0)
    assert not clock.expired(row, 15.0)
    assert clock.expired(row, 18.0)


def test_plan_takes() -> None:
    clock = ExpiryClock(lease_duration=10.0)
    rows = [
        lease("free"),
        lease("stale", owner=OTHER, counter=5),
        lease("fresh", owner=OTHER, counter=7),
        lease("mine-not-held", owner=ME, counter=2),
        lease("mine-held", owner=ME, counter=9),
        lease("finished-free", checkpoint=Sentinel.SHARD_END),
        lease("finished-stale", owner=OTHER, checkpoint=Sentinel.SHARD_END),
    ]
    clock.observe(rows, now=0.0)
    fresh = replace(rows[2], counter=8)  # renewed since
    clock.observe([*rows[:2], fresh, *rows[3:]], now=10.0)
    current = [*rows[:2], fresh, *rows[3:]]
    taken = plan_takes(current, ME, clock, now=10.0, held={"mine-held"})
    assert [row.shard_id for row in taken] == ["free", "stale", "mine-not-held"]


def test_plan_takes_waits_for_the_full_lease_duration() -> None:
    clock = ExpiryClock(lease_duration=10.0)
    rows = [lease("stale", owner=OTHER, counter=5)]
    clock.observe(rows, now=0.0)
    assert plan_takes(rows, ME, clock, now=9.99, held=set()) == []
    assert plan_takes(rows, ME, clock, now=10.0, held=set()) == rows


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([None, ME, OTHER]),
            st.integers(0, 3),
            st.sampled_from(["TRIM_HORIZON", "SHARD_END", "500"]),
            st.booleans(),
        ),
        max_size=12,
    ),
    st.floats(0, 30),
)
def test_plan_takes_never_takes_finished_or_held_leases(
    rows: list[tuple[str | None, int, str, bool]], elapsed: float
) -> None:
    leases = [lease(f"s{i}", owner=o, counter=c, checkpoint=cp) for i, (o, c, cp, _) in
              enumerate(rows)]
    held = {f"s{i}" for i, (_, _, _, h) in enumerate(rows) if h}
    clock = ExpiryClock(lease_duration=10.0)
    clock.observe(leases, now=0.0)
    taken = plan_takes(leases, ME, clock, now=elapsed, held=held)
    for row in taken:
        assert not row.finished
        assert row.shard_id not in held
        assert row.owner in (None, ME) or elapsed >= 10.0
    for row in leases:
        if not row.finished and row.shard_id not in held and row.owner in (None, ME):
            assert row in taken


# -- HeldLease ------------------------------------------------------------------------------


async def taken_lease(store: FakeLeaseStore, shard_id: str = "a") -> HeldLease:
    row = lease(shard_id)
    assert await store.create_lease(row)
    return HeldLease(store, await store.update_lease(row, new_owner=ME))


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
