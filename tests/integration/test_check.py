"""``replicator check --config FILE`` on moto servers: every table and endpoint of a
topology checked, without replicating; the first problem in one line, exit 2."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from replicator.cli import main

from .conftest import (
    DEADLINE,
    DESTINATION_REGION,
    SOURCE_REGION,
    Servers,
    create_table,
)


def topology(servers: Servers) -> str:
    source, destination = servers.source.url, servers.destination.url
    return f"""
task = "check-task"

[[path]]
source = {{ table = "orders", region = "{SOURCE_REGION}", endpoint = "{source}" }}

[[path.destination]]
name = "orders-a"
table = "orders-a"
region = "{DESTINATION_REGION}"
endpoint = "{destination}"

[[path.destination]]
name = "orders-b"
table = "orders-b"
region = "{DESTINATION_REGION}"
endpoint = "{destination}"
create = true

[[path]]
source = {{ table = "customers", region = "{SOURCE_REGION}", endpoint = "{source}" }}

[[path.destination]]
name = "customers"
table = "customers"
region = "{DESTINATION_REGION}"
endpoint = "{destination}"
"""


async def check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str],
                ) -> tuple[int, str, str]:
    path = tmp_path / "topology.toml"
    path.write_text(text)
    capsys.readouterr()
    code = await asyncio.wait_for(
        asyncio.to_thread(main, ["check", "--config", str(path)]), DEADLINE)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def tables(source: Any, destination: Any, *, orders_stream: str | None) -> None:
    await create_table(source, "orders", stream=orders_stream)
    await create_table(source, "customers", stream="NEW_IMAGE")
    await create_table(destination, "orders-a")
    await create_table(destination, "customers")


async def test_a_topology_whose_tables_are_right_is_described_and_exits_0(
    servers: Servers, source: Any, destination: Any, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await tables(source, destination, orders_stream="NEW_AND_OLD_IMAGES")
    code, out, err = await check(tmp_path, topology(servers), capsys)
    assert (code, err) == (0, "")
    source_url, destination_url = servers.source.url, servers.destination.url
    assert out.splitlines() == [
        "task check-task: 2 source tables, 3 destinations",
        f"  orders in {source_url}: stream NEW_AND_OLD_IMAGES",
        f"    -> orders-a: orders-a in {destination_url}: ok",
        f"    -> orders-b: orders-b in {destination_url}: created on the first start",
        f"  customers in {source_url}: stream NEW_IMAGE",
        f"    -> customers: customers in {destination_url}: ok",
        f"  checkpoint table check-task in {source_url}: created on the first start",
    ]
    # Nothing was created or written.
    assert "orders-b" not in (await destination.list_tables())["TableNames"]
    assert "check-task" not in (await source.list_tables())["TableNames"]


async def test_a_source_without_a_stream_is_named_with_the_fix(
    servers: Servers, source: Any, destination: Any, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await tables(source, destination, orders_stream=None)
    code, out, err = await check(tmp_path, topology(servers), capsys)
    assert (code, out) == (2, "")
    assert err == ("replicator: error: source table orders has no stream enabled: enable one "
                   "with aws dynamodb update-table --table-name orders --stream-specification "
                   "StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES\n")


async def test_a_missing_destination_that_is_not_to_be_created_is_named(
    servers: Servers, source: Any, destination: Any, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await create_table(source, "orders", stream="NEW_AND_OLD_IMAGES")
    await create_table(source, "customers", stream="NEW_IMAGE")
    code, _, err = await check(tmp_path, topology(servers), capsys)
    assert code == 2
    assert err.startswith("replicator: error: destination table orders-a does not exist in "
                          f"region {DESTINATION_REGION}: create it with the source's key "
                          "schema (pk HASH S, sk RANGE N)")
    assert err.count("\n") == 1
