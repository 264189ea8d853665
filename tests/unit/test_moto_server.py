"""The local moto server's partitions: a new hash key's dict is created once, even when
another write of that hash key runs while it is being created."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from replicator.dev.moto_server import _Partitions

pytestmark = pytest.mark.timeout(10)


class HashKey:
    """A hash key whose hashing is Python code, as moto's DynamoType's is. The second
    time it is hashed (the lookup that finds it missing is the first; storing the new
    partition, the second) it runs ``meanwhile``: what another thread may do then."""

    def __init__(self, value: str, meanwhile: Callable[[], None] | None = None) -> None:
        self.value = value
        self.meanwhile = meanwhile
        self.hashed = 0

    def __hash__(self) -> int:
        self.hashed += 1
        if self.meanwhile is not None and self.hashed == 2:
            run, self.meanwhile = self.meanwhile, None
            run()
        return hash(self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HashKey) and other.value == self.value


def two_sort_keys_at_once(partitions: defaultdict[Any, dict[Any, Any]]) -> dict[Any, Any]:
    """Sort key 0 is put while sort key 1 of the same new hash key is being put."""

    def other_write() -> None:
        partitions[HashKey("p")][1] = "item 1"

    partitions[HashKey("p", meanwhile=other_write)][0] = "item 0"
    return partitions[HashKey("p")]


def test_a_plain_defaultdict_loses_the_other_write() -> None:
    assert two_sort_keys_at_once(defaultdict(dict)) == {0: "item 0"}  # moto as it is


def test_partitions_keep_both_writes() -> None:
    assert two_sort_keys_at_once(_Partitions(dict)) == {0: "item 0", 1: "item 1"}
