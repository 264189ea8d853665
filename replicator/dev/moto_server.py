"""``python -m replicator.dev.moto_server``: moto's server, with one thread-safety fix.

moto keeps a table's items in a ``defaultdict`` keyed by hash-key objects whose
hashing is Python code. Two requests served at once that both write the first item
of a new hash key (two sort keys of one partition, in two concurrent BatchWriteItem
calls) can both create the partition's dict, and the later one replaces the other's:
one item is lost without an error. DynamoDB never does that, so the local servers
this project starts (tests, the demo, benchmarks) create partitions under a lock.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from moto import server
from moto.dynamodb.models.table import Table


class _Partitions(defaultdict[Any, dict[Any, Any]]):
    """A table's partitions: a missing one is created once, whatever the threads do."""

    _lock = threading.RLock()

    def __missing__(self, key: Any) -> dict[Any, Any]:
        with self._lock:
            return self.setdefault(key, {})


def _safe_partitions() -> None:
    original = Table.__init__

    def __init__(self: Table, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.items = _Partitions(dict, self.items)

    Table.__init__ = __init__  # type: ignore[method-assign]


if __name__ == "__main__":
    _safe_partitions()
    server.main()
