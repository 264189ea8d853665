"""``replicator verify`` against moto servers: it finds missing, extra and different
items by key, ``--repair`` fixes them, equal tables pass, and a missing table is a
one-line error with exit code 2.

``cli.main`` runs its own event loop, so the tests call it in a thread; its report
goes to stdout (captured by ``capsys``) and its log lines to stderr.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

from replicator.cli import main
from replicator.copy.verify import TABLES_DIFFER
from replicator.records import Item

from .conftest import (
    DEADLINE,
    DESTINATION_TABLE,
    SOURCE_TABLE,
    ReplicatorProcess,
    Servers,
    create_pair,
    create_table,
    environment_for,
    fill_table,
    numbered_item,
    numbered_key,
)

pytestmark = pytest.mark.integration

ITEMS = 300
#: Scan segments of verify: 150 items a segment, so that BatchGetItem (100 keys at most)
#: is called twice for a page.
SEGMENTS = 2


@pytest.fixture
def verify(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Any]:
    """``replicator verify [args]`` via ``cli.main`` in a thread: (exit code, stdout
    lines, stderr)."""
    env = environment_for(servers, log_level="warning", copy_segments=SEGMENTS)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    async def run(*args: str) -> tuple[int, list[str], str]:
        capsys.readouterr()
        code = await asyncio.wait_for(asyncio.to_thread(main, ["verify", *args]), DEADLINE)
        captured = capsys.readouterr()
        return code, captured.out.splitlines(), captured.err

    return run


async def filled_pair(source: Any, destination: Any) -> list[Item]:
    """Both tables with the same ITEMS items."""
    await create_pair(source, destination)
    rng = random.Random(5)
    items = [numbered_item(rng, index) for index in range(ITEMS)]
    await fill_table(source, items)
    await fill_table(destination, items, table=DESTINATION_TABLE)
    return items


@pytest.mark.timeout(300)
async def test_verify_reports_missing_extra_and_different_items_and_repair_fixes_them(
    source: Any, destination: Any, verify: Callable[..., Any]
) -> None:
    await filled_pair(source, destination)
    await destination.delete_item(TableName=DESTINATION_TABLE, Key=numbered_key(7))
    await destination.put_item(TableName=DESTINATION_TABLE,
                               Item={**numbered_key(9999), "v": {"S": "only here"}})
    await destination.update_item(TableName=DESTINATION_TABLE, Key=numbered_key(12),
                                  UpdateExpression="SET v = :v",
                                  ExpressionAttributeValues={":v": {"N": "-1"}})

    code, out, err = await verify()
    assert code == TABLES_DIFFER, (out, err)
    differences = [
        f"NOT equal: 1 missing, 1 extra, 1 different (source {ITEMS} items, "
        f"destination {ITEMS})",
        "first missing: pk='item-000003', sk='1'",
        "first extra: pk='item-004999', sk='1'",
        "first different: pk='item-000006', sk='0'",
    ]
    assert out == differences
    # Without --repair nothing is written.
    assert "Item" not in await destination.get_item(TableName=DESTINATION_TABLE,
                                                    Key=numbered_key(7))
    assert "Item" in await destination.get_item(TableName=DESTINATION_TABLE,
                                                Key=numbered_key(9999))

    code, out, err = await verify("--repair")
    assert code == 0, (out, err)
    # What differed first, then what was repaired, then the verdict.
    assert out == [*(f"before repair: {line}" for line in differences), "repaired 3 items",
                   f"after repair: equal: {ITEMS} items in each table"]
    restored = await destination.get_item(TableName=DESTINATION_TABLE, Key=numbered_key(12))
    assert restored["Item"]["v"] == {"N": "12"}
    assert "Item" in await destination.get_item(TableName=DESTINATION_TABLE,
                                                Key=numbered_key(7))
    assert "Item" not in await destination.get_item(TableName=DESTINATION_TABLE,
                                                    Key=numbered_key(9999))

    code, out, err = await verify()
    assert code == 0, (out, err)
    assert out == [f"equal: {ITEMS} items in each table"]


@pytest.mark.timeout(240)
async def test_verify_of_equal_tables_exits_0_whatever_the_order_of_sets(
    source: Any, destination: Any, verify: Callable[..., Any]
) -> None:
    await create_pair(source, destination)
    rng = random.Random(6)
    items = [numbered_item(rng, index) for index in range(ITEMS)]
    await fill_table(source, items)

    def reordered(item: Item) -> Item:
        """The same item with its sets listed the other way round."""
        return {name: ({kind: list(reversed(inner))} if kind in ("SS", "NS", "BS")
                       else {kind: inner})
                for name, value in item.items() for kind, inner in value.items()}

    rich = [item for item in items if "ss" in item]
    assert rich
    assert any(len(item["ss"]["SS"]) > 1 for item in rich)
    await fill_table(destination, [reordered(item) for item in items], table=DESTINATION_TABLE)

    code, out, err = await verify()
    assert code == 0, (out, err)
    assert out == [f"equal: {ITEMS} items in each table"]
    # --repair on equal tables writes nothing.
    code, out, err = await verify("--repair")
    assert code == 0, (out, err)
    assert out == [f"equal: {ITEMS} items in each table"]


@pytest.mark.timeout(120)
async def test_verify_with_no_destination_table_exits_2_with_one_line(
    servers: Servers, source: Any, spawn: Callable[..., ReplicatorProcess]
) -> None:
    await create_table(source, SOURCE_TABLE, stream="NEW_AND_OLD_IMAGES")
    process = spawn("verify", environment_for(servers), "verify")
    assert await process.wait(within=DEADLINE) == 2, process.report()
    assert process.stdout() == ""
    assert process.stderr().splitlines() == [
        f"replicator: error: destination table {DESTINATION_TABLE} does not exist in region "
        "eu-west-1: check REPLICATOR_DESTINATION_TABLE and REPLICATOR_DESTINATION_REGION"
    ]


@pytest.mark.timeout(120)
async def test_verify_with_no_source_table_exits_2_with_one_line(
    destination: Any, verify: Callable[..., Any]
) -> None:
    await create_table(destination, DESTINATION_TABLE)
    code, out, err = await verify()
    assert code == 2
    assert out == []
    assert err.splitlines() == [
        f"replicator: error: source table {SOURCE_TABLE} does not exist in region "
        "us-east-1: check REPLICATOR_SOURCE_TABLE and REPLICATOR_SOURCE_REGION"
    ]
