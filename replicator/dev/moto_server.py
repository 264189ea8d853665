"""``python -m replicator.dev.moto_server``: moto's server, with one thread-safety fix.

Two concurrent writes of the first items of a new hash key could each create its
partition in moto, and one item was lost without an error; the local servers the
project starts create partitions under a lock. See docs/DESIGN.md ("An item moto
loses").
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
