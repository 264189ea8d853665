"""Unit tests run on virtual time (``tests.clock``): no test waits on the wall clock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from tests.clock import VirtualClock, loop_factories


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    return loop_factories()


@pytest.fixture
def clock() -> VirtualClock:
    """The clock the code under test reads: the virtual time of the test's loop."""
    return VirtualClock()


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """A test that runs ``main`` configures logging onto its captured stderr, which is
    closed once the test ends: the next tests log where the suite did before."""
    config = structlog.get_config()
    yield
    structlog.configure(**config)
