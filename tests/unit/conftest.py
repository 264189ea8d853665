"""Unit tests run on virtual time (``tests.clock``): no test waits on the wall clock."""

from __future__ import annotations

from typing import Any

import pytest

from tests.clock import VirtualClock, loop_factories


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    return loop_factories()


@pytest.fixture
def clock() -> VirtualClock:
    """The clock the code under test reads: the virtual time of the test's loop."""
    return VirtualClock()
