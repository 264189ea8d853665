"""The soak tier (``make soak``): the minute-long tests, kept out of ``make test``.

Three workers under faults and kill -9 every few seconds, a 60-second destination
outage, a 20,000-item copy killed midway. They use the integration tier's fixtures
and helpers (``tests.integration.conftest``), with one difference: each test gets
moto servers of its own, started for it and stopped after it, instead of the
session's servers reset. A heavy test can leave a server busy after it ends (moto's
Scan walks the whole table for every page, and a page nobody waits for any more is
still built), and the next test would wait behind that.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from replicator.dev.local import MotoServer
from tests.integration.conftest import (
    Servers,
    _clean_environment,
    destination,
    source,
    spawn,
    streams,
)

#: The integration tier's fixtures, used here as they are.
__all__ = ["_clean_environment", "destination", "servers", "source", "spawn", "streams"]


@pytest.fixture
def servers() -> Iterator[Servers]:
    """Two moto servers of the test's own: nothing another test left behind, no work
    of this one left for the next."""
    with MotoServer() as source_server, MotoServer() as destination_server:
        yield Servers(source_server, destination_server)
