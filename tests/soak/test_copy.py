"""The bootstrap copy killed with SIGKILL midway on 20,000 items, and resumed.

The integration tier runs the same test (``a_copy_killed_midway_resumes``) on 1,600
small items whose copy is slowed by a write cap; here the table is big enough for
the copy to take its time by itself: no cap, and 1 MB Scan pages (the items are
padded so that a segment spans two). moto serves about 1,400 of these items a
second, and its Scan walks the whole table for every page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.conftest import ReplicatorProcess, Servers
from tests.integration.test_copy import KilledCopy, a_copy_killed_midway_resumes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIG_KILLED_COPY = KilledCopy(items=20_000, pad=400, segment_items_over=200, pause=0.01,
                             midway_within=300, finish_within=300)


@pytest.mark.timeout(1200)
async def test_a_20000_item_copy_killed_midway_resumes_without_copying_finished_segments(
    servers: Servers, source: Any, destination: Any, streams: Any,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await a_copy_killed_midway_resumes(servers, source, destination, streams, spawn,
                                       BIG_KILLED_COPY)
