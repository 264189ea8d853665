"""Shared test set-up: quiet, structured logs that tests can capture."""

from __future__ import annotations

import os

import pytest

from replicator.dev.local import LOCAL_CREDENTIALS
from replicator.logs import configure_logging


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest tests first: with the suite spread over several processes
    (pytest-xdist), they start at once instead of finishing last, one after another.

    The tests that talk to moto get their timeout enforced from a thread: the
    default (SIGALRM) raises in whatever the event loop runs at that moment, and
    an asyncio callback swallows it (the loop logs it and goes on), so a test stuck
    in a loop was seen running for over ten minutes past its timeout. The
    thread dumps every thread's stack and ends the process; pytest-xdist reports
    the test as failed and starts another process for the rest."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    for item in items:
        if item.get_closest_marker("integration") is None:
            continue
        marker = item.get_closest_marker("timeout")
        seconds = float(config.getini("timeout") or 0)
        if marker is not None:
            seconds = marker.args[0] if marker.args else marker.kwargs.get("timeout", seconds)
        item.add_marker(pytest.mark.timeout(float(seconds), method="thread"), append=False)


@pytest.fixture(autouse=True, scope="session")
def _environment() -> None:
    # Tests talk only to local moto servers: dummy credentials, no profile lookups.
    for name, value in LOCAL_CREDENTIALS.items():
        os.environ[name] = value
    os.environ.pop("AWS_PROFILE", None)
    configure_logging("warning", "json")
