"""The status report, a pure function of the checkpoint rows."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from replicator.errors import ThrottledError
from replicator.lease import WorkerRow
from replicator.ops.heartbeat import Heartbeat, WorkerState
from replicator.ops.status import SourceView, build_report, render_table

ARN, OLD_ARN = "arn:stream/new", "arn:stream/old"
ONE_PATH = [SourceView("orders", ARN, {"destination": "READY"})]


def row(shard_id: str, owner: str | None, checkpoint: str = "100", *,
        arn: str = ARN, parent: str | None = None,
        checkpoints: dict[str, str] | None = None) -> dict[str, Any]:
    return {"stream_arn": arn, "shard_id": shard_id, "parent_shard_id": parent,
            "owner": owner, "lease_counter": 3, "checkpoint": checkpoint,
            "checkpoints": checkpoints or {},
            "owner_switches": 1, "updated_at": "2026-01-01T00:00:00.000+00:00"}


def test_report_counts_each_workers_share_of_the_active_shards() -> None:
    rows = [
        row("s1", "w1"), row("s2", "w1"), row("s3", "w2"), row("s4", None),
        row("s0", None, "SHARD_END"), row("s5", "w2", "SHARD_END", parent="s0"),
        row("x1", "w9", arn=OLD_ARN),
    ]
    report = build_report("task", ONE_PATH, rows)
    assert [shard["shard_id"] for shard in report["shards"]] == ["s0", "s1", "s2", "s3", "s4",
                                                                  "s5"]
    states = {shard["shard_id"]: shard["state"] for shard in report["shards"]}
    assert states == {"s0": "finished", "s1": "leased", "s2": "leased", "s3": "leased",
                      "s4": "free", "s5": "finished"}
    # Finished shards are no one's load; the old stream's rows are not shown.
    assert [(w["worker_id"], w["leases"]) for w in report["workers"]] == [("w1", 2), ("w2", 1)]
    assert report["active_shards"] == 4
    assert report["fair_share"] == 2


def test_without_the_source_every_stream_is_shown_and_no_worker_means_no_share() -> None:
    report = build_report("task", [SourceView("orders", None, {"destination": "READY"})],
                          [row("s1", None), row("x1", None, arn=OLD_ARN),
                           row("eu", None, "READY", arn=f"destinations|{ARN}")])
    assert len(report["shards"]) == 2
    assert report["workers"] == []
    assert report["fair_share"] is None
    text = render_table(report)
    assert "no worker is running (2 active shards)" in text
    assert "source table unreachable" in text


def test_each_destination_shows_its_own_checkpoint_or_where_its_join_starts_it() -> None:
    """A row names the destinations that checkpointed in it; one served from the start
    that it does not name is at the row's checkpoint, one that joined at its copy's
    ``SINCE:``, and one still to be copied is joining."""
    users = "arn:stream/users"
    views = [SourceView("orders", ARN, {"eu": "READY", "us": "SINCE:1800000000",
                                        "ap": None}),
             SourceView("users", users, {"users-eu": "READY"})]
    rows = [row("s1", "w1", "90", checkpoints={"eu": "120", "us": "90"}),
            row("s2", None, "50"),
            row("s1", "w2", "7", arn=users, checkpoints={"users-eu": "7"}),
            row("s0", None, "SHARD_END", arn=users)]
    report = build_report("task", views, rows)
    by_shard = {(shard["source"], shard["shard_id"]): shard["checkpoints"]
                for shard in report["shards"]}
    assert by_shard == {
        ("orders", "s1"): {"eu": "120", "us": "90", "ap": None},
        ("orders", "s2"): {"eu": "50", "us": "SINCE:1800000000", "ap": None},
        ("users", "s0"): {"users-eu": "SHARD_END"},
        ("users", "s1"): {"users-eu": "7"},
    }
    assert report["stream_arn"] is None  # two streams: see "sources"
    assert [[d["state"] for d in source["destinations"]] for source in report["sources"]] \
        == [["streaming", "streaming, joined by a copy begun at 2027-01-15T08:00:00+00:00",
             "joining: to be copied"], ["streaming"]]
    assert report["active_shards"] == 3
    text = render_table(report)
    assert "CHECKPOINT EU  CHECKPOINT US     CHECKPOINT AP" in text
    assert "  -> ap: joining: to be copied" in text
    assert "source users: stream arn:stream/users" in text
    (line,) = [line for line in text.splitlines() if line.startswith("s2 ")]
    assert line.split()[3:6] == ["50", "SINCE:1800000000", "joining"]


def beat(worker_id: str, seconds_ago: float, *, now: float = 1000.0, phase: str = "replicating",
         leases: int = 0) -> WorkerRow:
    return WorkerRow(worker_id, "host-a", 42, phase, leases, f"http://host-a:9{len(worker_id)}",
                     started_at=now - 3600, heartbeat_at=now - seconds_ago)


def test_standby_workers_are_listed_with_no_lease_and_dead_ones_are_not() -> None:
    rows = [row("s1", "w1"), row("s2", "w1"), row("s3", "gone")]
    workers = [beat("w1", 1.0, leases=2), beat("standby", 2.5), beat("dead", 120.0)]
    report = build_report("task", ONE_PATH, rows, workers, now=1000.0, live_within=30.0)
    listed = {w["worker_id"]: w for w in report["workers"]}
    assert set(listed) == {"w1", "standby", "gone"}  # "gone" still owns a lease row
    assert listed["standby"]["leases"] == 0
    assert listed["standby"]["heartbeat_seconds_ago"] == 2.5
    assert listed["standby"]["metrics"] == "http://host-a:97"
    assert listed["w1"]["leases"] == 2
    assert listed["gone"]["heartbeat_seconds_ago"] is None
    assert report["fair_share"] == 1  # 3 active shards among 3 workers
    text = render_table(report)
    assert "  standby: 0 leases, replicating, heartbeat 2.5s ago, host-a pid 42, metrics " \
        "http://host-a:97" in text
    assert "  gone: 1 leases, no heartbeat" in text
    assert "dead" not in text


class Registry:
    """The workers' rows in memory; ``fail`` makes the next put fail."""

    def __init__(self) -> None:
        self.rows: dict[str, WorkerRow] = {}
        self.puts = 0
        self.fail = False

    async def put_worker(self, row: WorkerRow) -> None:
        self.puts += 1
        if self.fail:
            self.fail = False
            raise ThrottledError("PutItem: throttled", operation="PutItem")
        self.rows[row.worker_id] = row

    async def list_workers(self) -> list[WorkerRow]:
        return list(self.rows.values())

    async def delete_worker(self, worker_id: str) -> None:
        self.rows.pop(worker_id, None)


@pytest.mark.timeout(10)
async def test_a_worker_beats_every_interval_survives_a_failed_beat_and_leaves(
    clock: Any,
) -> None:
    registry = Registry()
    walls = iter(range(100, 10_000, 3))
    state = WorkerState("copying", 0, "http://host:9464")
    heartbeat = Heartbeat(registry, worker_id="w1", host="host", pid=7, interval=3.0,
                          clock=clock, state=lambda: state, wall=lambda: float(next(walls)))
    task = asyncio.create_task(heartbeat.run())
    await clock.sleep(0.1)
    assert registry.rows["w1"].phase == "copying"
    registry.fail = True
    await clock.sleep(3.0)  # the second beat fails: logged, the loop goes on
    state = WorkerState("replicating", 2, "http://host:9464")
    await clock.sleep(3.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert registry.puts == 3
    assert heartbeat.beats == 2
    row = registry.rows["w1"]
    assert (row.phase, row.leases, row.pid) == ("replicating", 2, 7)
    assert row.metrics == "http://host:9464"
    assert row.heartbeat_at > row.started_at
    await heartbeat.leave()
    assert registry.rows == {}


@pytest.mark.timeout(10)
async def test_a_changed_phase_is_written_at_once_not_at_the_next_beat(clock: Any) -> None:
    registry = Registry()
    state = WorkerState("starting", 0, None)
    heartbeat = Heartbeat(registry, worker_id="w1", host="host", pid=7, interval=60.0,
                          clock=clock, state=lambda: state)
    task = asyncio.create_task(heartbeat.run())
    await clock.sleep(0.1)
    assert (registry.puts, registry.rows["w1"].phase) == (1, "starting")
    started = clock.monotonic()
    state = WorkerState("replicating", 1, None)
    heartbeat.changed()
    await clock.sleep(0.1)
    assert (registry.puts, registry.rows["w1"].phase) == (2, "replicating")
    assert clock.monotonic() - started < 1.0  # not the 60 s interval
    await clock.sleep(30.0)
    assert registry.puts == 2  # no beat between: the interval starts again
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
