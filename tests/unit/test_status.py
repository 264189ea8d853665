"""The status report, a pure function of the checkpoint rows."""

from __future__ import annotations

from typing import Any

from replicator.status import build_report, render_table

ARN, OLD_ARN = "arn:stream/new", "arn:stream/old"


def row(shard_id: str, owner: str | None, checkpoint: str = "100", *,
        arn: str = ARN, parent: str | None = None) -> dict[str, Any]:
    return {"stream_arn": arn, "shard_id": shard_id, "parent_shard_id": parent,
            "owner": owner, "lease_counter": 3, "checkpoint": checkpoint,
            "owner_switches": 1, "updated_at": "2026-01-01T00:00:00.000+00:00"}


def test_report_counts_each_workers_share_of_the_active_shards() -> None:
    rows = [
        row("s1", "w1"), row("s2", "w1"), row("s3", "w2"), row("s4", None),
        row("s0", None, "SHARD_END"), row("s5", "w2", "SHARD_END", parent="s0"),
        row("x1", "w9", arn=OLD_ARN),
    ]
    report = build_report("task", ARN, rows)
    assert [shard["shard_id"] for shard in report["shards"]] == ["s0", "s1", "s2", "s3", "s4",
                                                                  "s5"]
    states = {shard["shard_id"]: shard["state"] for shard in report["shards"]}
    assert states == {"s0": "finished", "s1": "leased", "s2": "leased", "s3": "leased",
                      "s4": "free", "s5": "finished"}
    # Finished shards are no one's load; the old stream's rows are not shown.
    assert report["workers"] == [{"worker_id": "w1", "leases": 2},
                                 {"worker_id": "w2", "leases": 1}]
    assert report["active_shards"] == 4
    assert report["fair_share"] == 2


def test_without_the_source_every_stream_is_shown_and_no_worker_means_no_share() -> None:
    report = build_report("task", None, [row("s1", None), row("x1", None, arn=OLD_ARN)])
    assert len(report["shards"]) == 2
    assert report["workers"] == []
    assert report["fair_share"] is None
    text = render_table(report)
    assert "no worker holds a lease (2 active shards)" in text
    assert "source table unreachable" in text
